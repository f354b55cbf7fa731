// shiftOldest (raft/shift-oldest.ts) deletes what `map.keys().next()` would find, whatever was
// added, deleted, re-added or cleared in between, and stays cheap on a map that keeps dropping its
// first entry (the naive way walks every hole left by earlier deletions).

import t from 'tap';
import fc from 'fast-check';
import { shiftOldest } from '../../raft/shift-oldest.ts';

type Op = { op: 'set' | 'delete'; key: number } | { op: 'shift' } | { op: 'clear' };

for (const kind of ['Map', 'Set'] as const) t.test(`property (${kind}): the key shifted is the first in insertion order, under any mix of changes`, async () => {
  const key = fc.nat(30);
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 5, arbitrary: fc.record({ op: fc.constant('set' as const), key }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), key }) },
    { weight: 4, arbitrary: fc.record({ op: fc.constant('shift' as const) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('clear' as const) }) },
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
      const map = kind === 'Map' ? new Map<number, number>() : new Set<number>();
      const model: number[] = []; // keys in insertion order
      for (const o of ops) {
        if (o.op === 'set') {
          if (!map.has(o.key)) model.push(o.key);
          if (map instanceof Map) map.set(o.key, o.key);
          else map.add(o.key);
        } else if (o.op === 'delete') {
          map.delete(o.key);
          const i = model.indexOf(o.key);
          if (i >= 0) model.splice(i, 1);
        } else if (o.op === 'clear') {
          map.clear();
          model.length = 0;
        } else if (shiftOldest(map) !== model.shift()) {
          return false;
        }
        if (map.size !== model.length) return false;
      }
      return [...map.keys()].join() === model.join();
    }),
    { numRuns: 500 },
  );
});

t.test('a bounded FIFO of 100,000 keys keeps its order through 300,000 more and several table rebuilds', async (t) => {
  const map = new Map<string, number>();
  const limit = 100_000;
  let wrong = 0;
  for (let n = 0; n < 400_000; n++) {
    map.set(`k${n}`, n);
    if (map.size > limit && shiftOldest(map) !== `k${n - limit}`) wrong++;
  }
  t.equal(wrong, 0);
  t.equal(map.size, limit);
  t.equal(map.keys().next().value, 'k300000');
});

t.test('an empty map gives undefined, and a map emptied by shifting takes new keys', async (t) => {
  const map = new Map<string, number>();
  t.equal(shiftOldest(map), undefined);
  map.set('a', 1);
  t.equal(shiftOldest(map), 'a');
  t.equal(shiftOldest(map), undefined);
  map.set('b', 2).set('c', 3);
  t.equal(shiftOldest(map), 'b');
  t.same([...map.keys()], ['c']);
});
