// Seeded whole-cluster simulations run in `npm test`: invariants after every step, a linearizable
// client history, every acknowledged write kept, bit-for-bit replay, and a planted bug caught.

import t from 'tap';
import { runSim } from './sim-cluster.ts';
import type { SimOptions, SimResult } from './sim-cluster.ts';

const SEEDS = Number(process.env.SIDER_SIM_SEEDS ?? 25);

function explain(r: SimResult, o: SimOptions): string {
  return [
    `seed ${r.seed} (${o.nodes} nodes${o.faultMix ? `, ${o.faultMix}` : ''}${o.bug ? `, bug ${o.bug}` : ''}) failed: ${r.failure}`,
    'fault schedule:',
    ...r.schedule.map((s) => `  ${s}`),
    `replay: npm run sim -- --seed ${r.seed} --nodes ${o.nodes}${o.faultMix === 'crashes' ? ' --crashes' : ''}${o.bug ? ` --bug ${o.bug}` : ''} --trace`,
  ].join('\n');
}

for (const nodes of [3, 5]) {
  t.test(`clusters of ${nodes} stay safe and linearizable under random faults (${SEEDS} seeds)`, async (t) => {
    let duringWrite = 0;
    let readsDuringWrite = 0;
    let sentDuringWrite = 0;
    let roundsDuringWrite = 0;
    for (let seed = 1; seed <= SEEDS; seed++) {
      const o: SimOptions = { seed, nodes };
      const r = runSim(o);
      t.ok(r.ok, `seed ${seed}: ${r.stats.acked} acknowledged ops, ${r.stats.leaders} leaderships`, r.ok ? {} : { diag: explain(r, o) });
      if (!r.ok) t.comment(explain(r, o));
      t.ok(r.stats.acked > 100, `seed ${seed} made progress`);
      duringWrite += r.stats.appliedDuringWrite;
      readsDuringWrite += r.stats.readsDuringWrite;
      sentDuringWrite += r.stats.sentDuringWrite;
      roundsDuringWrite += r.stats.roundsDuringWrite;
    }
    t.ok(duringWrite > 0, `entries were applied during their node's own write (${duringWrite})`);
    t.ok(readsDuringWrite > 0, `reads were confirmed during their node's own write (${readsDuringWrite})`);
    t.ok(sentDuringWrite > 0, `heartbeats, their answers and read indexes were sent during their node's own write (${sentDuringWrite})`);
    t.ok(roundsDuringWrite > 0, `leaders started read rounds during their own write (${roundsDuringWrite})`);
  });
}

t.test('clusters stay safe when the leader and followers crash over and over', async (t) => {
  for (let seed = 1; seed <= Math.ceil(SEEDS / 2); seed++) {
    for (const nodes of [3, 5]) {
      const o: SimOptions = { seed, nodes, faultMix: 'crashes' };
      const r = runSim(o);
      t.ok(r.ok, `seed ${seed} nodes ${nodes}`);
      if (!r.ok) t.comment(explain(r, o));
    }
  }
});

t.test('the same seed replays to the same trace hash', async (t) => {
  for (const seed of [7, 8]) {
    const a = runSim({ seed, nodes: 5 });
    const b = runSim({ seed, nodes: 5 });
    t.equal(a.traceHash, b.traceHash, `seed ${seed}`);
    t.same(a.schedule, b.schedule);
  }
  t.not(runSim({ seed: 1, nodes: 3 }).traceHash, runSim({ seed: 2, nodes: 3 }).traceHash, 'different seeds differ');
});

t.test('a planted bug (acknowledging writes without fsync) is caught', async (t) => {
  let caught = 0;
  const failures: string[] = [];
  for (let seed = 1; seed <= 5; seed++) {
    const r = runSim({ seed, nodes: 3, faultMix: 'crashes', bug: 'skipFsync' });
    if (!r.ok) {
      caught++;
      failures.push(`seed ${seed}: ${r.failure.split('\n')[0]}`);
    }
  }
  t.ok(caught >= 1, `caught in ${caught} of 5 seeds`);
  t.comment(failures.join('\n'));
});
