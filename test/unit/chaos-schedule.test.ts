// The chaos schedule is a pure function of its seed: the same seed gives the same faults (a failing
// run is rerun exactly), every kind comes first once, indexes are in range, and a printed schedule
// parses back to itself while a damaged one is refused naming the step.

import t from 'tap';
import { FAULT_KINDS, makeSchedule, parseSchedule } from '../chaos/schedule.ts';

t.test('same seed, same schedule; another seed, another', async (t) => {
  const a = makeSchedule({ seed: 42, nodes: 5, durationMs: 120_000 });
  t.same(makeSchedule({ seed: 42, nodes: 5, durationMs: 120_000 }), a);
  t.notSame(makeSchedule({ seed: 43, nodes: 5, durationMs: 120_000 }).steps, a.steps);
});

t.test('every kind first, steps in order and within range, never overlapping', async (t) => {
  for (let seed = 0; seed < 200; seed++) {
    for (const nodes of [3, 5, 7]) {
      const s = makeSchedule({ seed, nodes, durationMs: 20_000 });
      const firstKinds = s.steps.slice(0, FAULT_KINDS.length).map((x) => x.kind).sort();
      if (JSON.stringify(firstKinds) !== JSON.stringify([...FAULT_KINDS].sort())) return t.fail(`seed ${seed}: first steps ${firstKinds.join(',')}`);
      let end = 0;
      for (const step of s.steps) {
        if (step.atMs < end) return t.fail(`seed ${seed}: overlapping steps`);
        end = step.atMs + step.holdMs;
        if (end > s.durationMs) return t.fail(`seed ${seed}: a step past the duration`);
        if (step.kind === 'partition') {
          const all = [...step.side, ...step.rest].sort((x, y) => x - y);
          if (JSON.stringify(all) !== JSON.stringify([...Array(nodes).keys()]) || step.side.length > Math.floor(nodes / 2)) return t.fail(`seed ${seed}: bad partition ${JSON.stringify(step)}`);
        }
        if (step.kind === 'bridge' && (step.left.length === 0 || step.right.length === 0 || [...step.left, ...step.right].includes(step.bridge))) return t.fail(`seed ${seed}: bad bridge ${JSON.stringify(step)}`);
        if (step.kind === 'one-way' && typeof step.from === 'number' && step.to !== 'others' && (step.to.length === 0 || step.to.includes(step.from))) return t.fail(`seed ${seed}: bad one-way ${JSON.stringify(step)}`);
      }
      parseSchedule(JSON.stringify(s));
    }
  }
  t.pass('200 seeds × 3 sizes');
});

t.test('kinds can be restricted; bad options and damaged schedules are refused', async (t) => {
  const s = makeSchedule({ seed: 1, nodes: 3, durationMs: 60_000, kinds: ['pause'] });
  t.ok(s.steps.length > 3 && s.steps.every((x) => x.kind === 'pause'));
  t.throws(() => makeSchedule({ seed: 1, nodes: 2, durationMs: 60_000 }), /nodes/);
  t.throws(() => makeSchedule({ seed: 1, nodes: 3, durationMs: 60_000, kinds: ['flood' as never] }), /unknown fault kind/);
  const good = makeSchedule({ seed: 9, nodes: 3, durationMs: 30_000 });
  t.same(parseSchedule(JSON.stringify(good)), good);
  const bad = structuredClone(good);
  const i = bad.steps.findIndex((x) => x.kind === 'kill');
  (bad.steps[i] as { node: unknown }).node = 3;
  t.throws(() => parseSchedule(JSON.stringify(bad)), new RegExp(`steps\\[${i}\\]: a server index out of range`));
  t.throws(() => parseSchedule('{"nodes":3}'), /expected/);
});
