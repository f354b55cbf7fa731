// `npm run sim -- --seeds N [--from S] [--nodes 3|5] [--bug skipFsync] [--seed S --trace]`: runs
// simulation seeds; a failure prints its seed, fault schedule and how to replay it.

import { parseArgs } from 'node:util';
import { runSim } from './sim-cluster.ts';
import type { PlantedBug } from './sim-cluster.ts';

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '20' },
    from: { type: 'string', default: '1' },
    seed: { type: 'string' },
    nodes: { type: 'string' },
    bug: { type: 'string' },
    trace: { type: 'boolean', default: false },
    'active-ms': { type: 'string' },
    crashes: { type: 'boolean', default: false },
  },
});

const bug = values.bug as PlantedBug | undefined;
if (bug !== undefined && bug !== 'skipFsync') {
  console.error(`--bug: unknown planted bug ${JSON.stringify(bug)} (known: skipFsync)`);
  process.exit(2);
}
const seeds = values.seed !== undefined ? [Number(values.seed)] : Array.from({ length: Number(values.seeds) }, (_, i) => Number(values.from) + i);
let failed = 0;
const started = Date.now();
for (const seed of seeds) {
  for (const nodes of values.nodes ? [Number(values.nodes)] : [3, 5]) {
    const t0 = Date.now();
    const r = runSim({ seed, nodes, bug, keepTrace: values.trace, faultMix: values.crashes ? 'crashes' : 'all', ...(values['active-ms'] ? { activeMs: Number(values['active-ms']) } : {}) });
    const s = r.stats;
    const line = `seed=${seed} nodes=${nodes} ${r.ok ? 'ok  ' : 'FAIL'} ops=${s.ops} acked=${s.acked} unknown=${s.unknown} leaders=${s.leaders} crashes=${s.crashes} snapInstalls=${s.snapshotsInstalled} duringWrite=${s.appliedDuringWrite}/${s.readsDuringWrite}/${s.sentDuringWrite}/${s.roundsDuringWrite} conf=${s.membershipChanges} commit=${s.finalCommit} hash=${r.traceHash.slice(0, 12)} ${Date.now() - t0}ms`;
    console.log(line);
    if (!r.ok) {
      failed++;
      console.log(`  failure: ${r.failure}`);
      console.log(`  schedule:\n    ${r.schedule.join('\n    ')}`);
      console.log(`  replay: npm run sim -- --seed ${seed} --nodes ${nodes}${bug ? ` --bug ${bug}` : ''} --trace`);
    }
    if (values.trace) for (const l of r.trace) console.log(`  ${l}`);
  }
}
console.log(`${seeds.length} seeds, ${failed} failed, ${Date.now() - started}ms`);
process.exit(failed ? 1 : 0);
