// The held-query memory estimate of the blocking benchmark (test/bench/http-blocking.ts): when one
// server may not open 50,000 sockets here, its RSS for them is a line fitted to a stepped run of as
// many as it may, with the per-query / per-connection split taken from a pipelined run.

import t from 'tap';
import { heldEstimate, leastSquares } from '../../test/bench/http-blocking.ts';
import type { HeldResult } from '../../test/bench/http-blocking.ts';

const BEFORE_MIB = 120;

/** A held run whose server grew by `growthKiB(held, connections)`, RSS read after each step. */
function run(held: number, connections: number, growthKiB: (held: number, connections: number) => number, steps: number[] = [held]): HeldResult {
  const points = steps.map((h) => ({ held: h, rssMiB: BEFORE_MIB + growthKiB(h, Math.round((h * connections) / held)) / 1024 }));
  return {
    case: 'held',
    held,
    connections,
    pipelining: Math.ceil(held / connections),
    services: 5,
    holders: 1,
    setupSeconds: 1,
    serverRssBeforeMiB: BEFORE_MIB,
    serverRssHeldMiB: points.at(-1)!.rssMiB,
    serverHwmMiB: points.at(-1)!.rssMiB,
    perQueryKiB: growthKiB(held, connections) / held,
    serverFds: connections + 30,
    holderRssMiB: [100],
    releaseSeconds: 1,
    points,
  };
}

t.test('leastSquares: the line through points on a line, and refusals', async (t) => {
  const { slope, intercept } = leastSquares([1, 2, 3, 4], [5, 7, 9, 11]);
  t.equal(slope, 2);
  t.equal(intercept, 3);
  const noisy = leastSquares([0, 1, 2], [0, 2, 1]);
  t.equal(noisy.slope, 0.5);
  t.equal(noisy.intercept, 0.5);
  t.throws(() => leastSquares([1], [1]), /two or more points/);
  t.throws(() => leastSquares([1, 2], [1]), /two or more points/);
  t.throws(() => leastSquares([3, 3], [1, 2]), /every x is the same/);
});

t.test('an exactly linear server: fixed part, per query and per connection recovered', async (t) => {
  // 100 MiB fixed, 5 KiB per held query, 10 KiB per connection.
  const g = (held: number, conns: number): number => 100 * 1024 + 5 * held + 10 * conns;
  const one = run(19_000, 19_000, g, [4_750, 9_500, 14_250, 19_000]);
  const piped = run(50_000, 16_667, g);
  const e = heldEstimate(50_000, 'limit', one, piped);
  t.equal(e.case, 'held-estimate');
  t.equal(e.points, 4);
  t.ok(Math.abs(e.fixedMiB - 100) < 1e-6, `fixed ${e.fixedMiB}`);
  t.ok(Math.abs(e.perQueryKiB - 5) < 1e-6, `per query ${e.perQueryKiB}`);
  t.ok(Math.abs(e.perConnectionKiB - 10) < 1e-6, `per connection ${e.perConnectionKiB}`);
  t.ok(Math.abs(e.fitMiB - (BEFORE_MIB + 100 + (50_000 * 15) / 1024)) < 1e-6, `fit ${e.fitMiB}`);
  t.ok(e.maxResidualMiB < 1e-6, 'every point on the line');
  t.ok(Math.abs(e.linearMiB - (BEFORE_MIB + (50_000 * g(19_000, 19_000)) / 19_000 / 1024)) < 1e-6, 'proportional to the largest run');
  t.same(
    e.perQueryAtStepsKiB.map((k) => Math.round(k * 100) / 100),
    [4_750, 9_500, 14_250, 19_000].map((h) => Math.round((g(h, h) / h) * 100) / 100),
  );
});

t.test('one point off the line: it shows as the residual, and moves the estimate less than a two-point line would', async (t) => {
  const g = (held: number, conns: number): number => 100 * 1024 + 5 * held + 10 * conns;
  const one = run(19_000, 19_000, g, [4_750, 9_500, 14_250, 19_000]);
  // The 9,500 point 40 MiB low (as a run that happened to collect garbage just before reading).
  one.points[1] = { held: 9_500, rssMiB: one.points[1]!.rssMiB - 40 };
  const piped = run(50_000, 16_667, g);
  const e = heldEstimate(50_000, 'limit', one, piped);
  const exact = BEFORE_MIB + 100 + (50_000 * 15) / 1024;
  t.ok(e.maxResidualMiB > 10, `residual ${e.maxResidualMiB}`);
  // A line through the low 9,500 point and the 19,000 point only (the old two-point estimate).
  const twoPoint = leastSquares([9_500, 19_000], [one.points[1]!.rssMiB - BEFORE_MIB, one.points[3]!.rssMiB - BEFORE_MIB]);
  const twoPointMiB = BEFORE_MIB + twoPoint.intercept + 50_000 * twoPoint.slope;
  t.ok(Math.abs(e.fitMiB - exact) < Math.abs(twoPointMiB - exact), `fitted ${e.fitMiB.toFixed(0)}, two-point ${twoPointMiB.toFixed(0)}, exact ${exact.toFixed(0)}`);
});
