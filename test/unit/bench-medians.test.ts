// The registration benchmark's verdict (test/bench/http-register.ts): DESIGN §10 states figures as
// medians of runs, each measure taken separately, so the target is judged on those.

import t from 'tap';
import { formatRegisterMedians, registerMedians } from '../../test/bench/http-register.ts';
import type { RegisterResult } from '../../test/bench/http-register.ts';

function run(opsPerSec: number, p99Ms: number, correctedP99Ms?: number): RegisterResult {
  return {
    client: 'wrk',
    target: 'leader n1',
    clients: 64,
    services: 256,
    ops: opsPerSec * 8,
    opsPerSec,
    p50Ms: 5,
    p99Ms,
    maxMs: 100,
    errors: {},
    cpu: {},
    cpuUsPerOp: {},
    answeredSoFar: 0,
    warmupMs: 10_000,
    ...(correctedP99Ms === undefined ? {} : { corrected: { p50Ms: 5, p99Ms: correctedP99Ms } }),
  } as RegisterResult;
}

t.test('each measure is the median of its own values, and the verdict is on those', async (t) => {
  const m = registerMedians([run(4_000, 60, 70), run(6_000, 20, 25), run(5_100, 40, 80)]);
  t.equal(m.opsPerSec, 5_100);
  t.equal(m.p99Ms, 40);
  t.equal(m.correctedP99Ms, 70);
  t.same(m.each.map((r) => r.opsPerSec), [4_000, 6_000, 5_100], 'every run kept, in order');
  t.match(formatRegisterMedians('wrk, leader', m), /median of 3 runs\): .* 5100\/s, p99 40\.0 ms \(wrk's corrected p99 70\.0 ms\): met \[runs: 4000\/s 60\.0 ms, 6000\/s 20\.0 ms, 5100\/s 40\.0 ms\]/);
  t.match(formatRegisterMedians('wrk, leader', registerMedians([run(4_900, 10), run(6_000, 10), run(4_000, 10)])), /4900\/s.*: NOT met/);
  t.match(formatRegisterMedians('wrk, leader', registerMedians([run(6_000, 51), run(6_000, 49), run(6_000, 60)])), /p99 51\.0 ms.*: NOT met/);
});

t.test('an even count takes the lower middle; a corrected p99 only when every run has one', async (t) => {
  const m = registerMedians([run(6_000, 30, 35), run(4_000, 45)]);
  t.equal(m.opsPerSec, 4_000);
  t.equal(m.p99Ms, 30);
  t.equal(m.correctedP99Ms, undefined);
});
