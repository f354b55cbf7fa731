// The short fault-injection run inside `npm test` (the long one is `npm run chaos`): three and then
// five real servers, each in its own network namespace, under a client load, through one fault of
// every kind (kill -9, SIGSTOP, symmetric / one-way partitions, leader isolation, a bridge, a
// whole-cluster kill -9, a server replaced by a fresh one) in a seeded order. The seed is printed;
// SIDER_CHAOS_SEED=<seed> reruns the same schedule. Needs root (ip netns, iptables); skipped with
// the reason otherwise.

import t from 'tap';
import { whyNoNetlab } from '../support/netlab.ts';
import { runChaos } from '../chaos/chaos.ts';
import { describeStep, FAULT_KINDS, makeSchedule } from '../chaos/schedule.ts';

const skip = whyNoNetlab();
const envSeed = process.env.SIDER_CHAOS_SEED;
const seed = envSeed !== undefined && /^\d+$/.test(envSeed) ? Number(envSeed) : Math.floor(Math.random() * 2 ** 31);

for (const nodes of [3, 5]) {
  t.test(`${nodes} servers survive one fault of every kind under load (seed ${seed})`, { skip, timeout: 240_000 }, async (t) => {
    const schedule = makeSchedule({ seed, nodes, durationMs: 55_000 });
    t.comment(`rerun: SIDER_CHAOS_SEED=${seed} npx tap test/integration/chaos.test.ts, or npm run chaos -- --nodes ${nodes} --duration 50 --seed ${seed}`);
    for (const s of schedule.steps) t.comment(describeStep(s));
    const kinds = new Set(schedule.steps.map((s) => s.kind));
    t.same([...kinds].sort(), [...FAULT_KINDS].sort(), 'the schedule has a fault of every kind');

    const report = await runChaos({ schedule, log: (line) => t.comment(line), checkTimeoutMs: 60_000 });
    const s = report.stats;
    t.comment(
      `recorded ${report.operations} operations; ${s.ledger.acked} ledger and ${s.registers.acked} other registrations acknowledged; ` +
        `recovery max ${Math.round(Math.max(0, ...report.recoveryMs))} ms; check ${Math.round(report.checkMs)} ms`,
    );
    if (!report.ok) t.comment(report.logs);
    t.same(report.failures, [], 'linearizable, nothing acknowledged lost, indexes monotonic, recovered and converged (same state, exact voters), no crash');
    t.equal(report.applied.length, schedule.steps.length, 'every fault was applied and healed');
    t.ok(s.ledger.acked > 0 && s.registers.acked > 0 && s.reads.ok > 0 && s.watches.ok > 0 && s.renewals.ok > 0, 'every kind of client operation succeeded at times');
  });
}
