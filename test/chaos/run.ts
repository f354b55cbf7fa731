// `npm run chaos [-- --nodes 3,5] [--duration 120] [--seed N] [--runs K] [--kinds kill,pause,...]
// [--schedule FILE]`: fault-injection runs against real servers in network namespaces (root only).
// Each run prints its seed and schedule (also as one JSON line, for --schedule) before it starts, and
// its verdict after; the exit status is 1 if any run failed, 2 on usage errors or no root.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { whyNoNetlab } from '../support/netlab.ts';
import { runChaos } from './chaos.ts';
import type { ChaosReport } from './chaos.ts';
import { describeStep, FAULT_KINDS, makeSchedule, parseSchedule } from './schedule.ts';
import type { FaultKind, Schedule } from './schedule.ts';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '3,5' },
    duration: { type: 'string', default: '120' },
    seed: { type: 'string' },
    runs: { type: 'string', default: '1' },
    kinds: { type: 'string' },
    schedule: { type: 'string' },
    workers: { type: 'string', default: '6' },
  },
});

function die(message: string): never {
  console.error(`chaos: ${message}`);
  process.exit(2);
}

const why = whyNoNetlab();
if (why) die(`${why} (the suite puts each server in its own network namespace)`);
const nodes = values.nodes.split(',').map(Number);
if (nodes.some((n) => !Number.isInteger(n) || n < 3 || n > 7)) die(`--nodes: a list of integers 3..7, got ${values.nodes}`);
const durationS = Number(values.duration);
if (!(durationS >= 10 && durationS <= 3_600)) die(`--duration: seconds in [10, 3600], got ${values.duration}`);
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1 || runs > 100) die(`--runs: an integer in [1, 100], got ${values.runs}`);
const workers = Number(values.workers);
if (!Number.isInteger(workers) || workers < 1 || workers > 64) die(`--workers: an integer in [1, 64], got ${values.workers}`);
let kinds: FaultKind[] | undefined;
if (values.kinds !== undefined) {
  kinds = values.kinds.split(',') as FaultKind[];
  const bad = kinds.filter((k) => !FAULT_KINDS.includes(k));
  if (bad.length > 0) die(`--kinds: unknown ${bad.join(', ')}; known: ${FAULT_KINDS.join(', ')}`);
}
const firstSeed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
if (!Number.isInteger(firstSeed) || firstSeed < 0) die(`--seed: a non-negative integer, got ${values.seed}`);

const schedules: Schedule[] = [];
if (values.schedule !== undefined) {
  try {
    schedules.push(parseSchedule(readFileSync(values.schedule, 'utf8')));
  } catch (err) {
    die(`--schedule ${values.schedule}: ${(err as Error).message}`);
  }
} else {
  for (let r = 0; r < runs; r++) {
    for (const n of nodes) schedules.push(makeSchedule({ seed: firstSeed + r, nodes: n, durationMs: durationS * 1000, ...(kinds ? { kinds } : {}) }));
  }
}

const stamp = (): string => new Date().toISOString().slice(11, 19);
let failed = 0;
for (const schedule of schedules) {
  console.log(`\n=== chaos: ${schedule.nodes} servers, seed ${schedule.seed}, ${schedule.durationMs / 1000} s, ${schedule.steps.length} faults`);
  console.log(`rerun: npm run chaos -- --nodes ${schedule.nodes} --duration ${schedule.durationMs / 1000} --seed ${schedule.seed}${kinds ? ` --kinds ${kinds.join(',')}` : ''}`);
  for (const s of schedule.steps) console.log(`  ${describeStep(s)}`);
  console.log(`schedule JSON: ${JSON.stringify(schedule)}`);
  const report = await runChaos({ schedule, workers, log: (line) => console.log(`[${stamp()}] ${line}`) });
  printReport(report);
  if (!report.ok) failed++;
}
console.log(`\nchaos: ${schedules.length - failed} of ${schedules.length} runs passed`);
process.exit(failed > 0 ? 1 : 0);

function printReport(r: ChaosReport): void {
  const s = r.stats;
  console.log(
    `operations recorded ${r.operations}; ledger ${s.ledger.acked} acked / ${s.ledger.unknown} unknown; registers ${s.registers.acked} acked / ${s.registers.unknown} unknown; ` +
      `deregisters ${s.deregisters.acked} acked / ${s.deregisters.absent} absent / ${s.deregisters.unknown} unknown; ` +
      `reads ${s.reads.ok} ok / ${s.reads.failed} failed; blocking ${s.watches.ok} ok / ${s.watches.failed} failed; ` +
      `renewals ${s.renewals.ok} ok / ${s.renewals.failed} failed`,
  );
  const rec = [...r.recoveryMs].sort((a, b) => a - b);
  const max = rec.length > 0 ? Math.round(rec[rec.length - 1]!) : 0;
  console.log(
    `recovery after each fault: max ${max} ms; convergence at the end ${Math.round(r.convergenceMs)} ms; ` +
      `ledger ${r.ledgerChecked} acknowledged registrations found on every server; linearizability check ${Math.round(r.checkMs)} ms`,
  );
  if (r.ok) {
    console.log('verdict: PASS');
    return;
  }
  console.log(`verdict: FAIL\n${r.failures.map((f) => `  - ${f}`).join('\n')}`);
  console.log(r.logs);
}
