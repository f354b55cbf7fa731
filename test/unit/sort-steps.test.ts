// The sliced sort behind snapshots: the same order as a stable Array.prototype.sort, and work between
// two yields bounded however long the input.

import t from 'tap';
import fc from 'fast-check';
import { MERGE_STEP, SORT_RUN, sortSteps } from '../../src/registry/sort-steps.ts';

function runThrough<T>(g: Generator<void, T, void>): { value: T; steps: number } {
  let steps = 0;
  for (;;) {
    const r = g.next();
    if (r.done) return { value: r.value, steps };
    steps++;
  }
}

t.test('sorts like a stable sort by key, around every run boundary, and leaves the input alone', async (t) => {
  // Few distinct keys (many ties, so stability shows) and lengths across several runs.
  const key = fc.string({ unit: fc.constantFrom('a', 'b', 'é', '\u{1F600}', 'B'), maxLength: 3 });
  const len = fc.oneof(fc.nat({ max: 40 }), fc.integer({ min: SORT_RUN - 2, max: 3 * SORT_RUN + 2 }));
  fc.assert(
    fc.property(len, fc.infiniteStream(key), (n, keys) => {
      const items = Array.from({ length: n }, (_, i) => ({ k: keys.next().value as string, i }));
      const copy = items.slice();
      const { value } = runThrough(sortSteps(items, (x) => x.k));
      const expected = items.slice().sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0));
      return value.length === n && value.every((x, j) => x === expected[j]) && items.every((x, j) => x === copy[j]);
    }),
    { numRuns: 150 },
  );
  t.pass('150 random inputs sorted as a stable sort sorts them');
});

t.test('the work between two yields is bounded, not proportional to the input', async (t) => {
  const n = 100_000;
  const keys = Array.from({ length: n }, (_, i) => `service:inst-${(i * 7919) % 100_003}`);
  let calls = 0;
  let most = 0;
  const g = sortSteps(
    Array.from({ length: n }, (_, i) => i),
    (i) => {
      calls++;
      return keys[i]!;
    },
  );
  let steps = 0;
  let result: number[] | undefined;
  for (;;) {
    const r = g.next();
    most = Math.max(most, calls);
    calls = 0;
    if (r.done) {
      result = r.value;
      break;
    }
    steps++;
  }
  // A run: about 2·SORT_RUN·log2(SORT_RUN) key reads; a merge step: 2 per element moved.
  const bound = 2 * SORT_RUN * Math.log2(SORT_RUN) + 2 * MERGE_STEP;
  t.ok(most <= bound, `at most ${bound} key reads between yields (most: ${most})`);
  t.ok(steps >= n / MERGE_STEP, `${steps} yields`);
  t.ok(result.every((x, j) => j === 0 || keys[result[j - 1]!]! <= keys[x]!), 'sorted');
});
