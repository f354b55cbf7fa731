// How fast this machine runs JavaScript right now: a fixed CPU-bound loop, timed. The VM these
// benchmarks run on has run the same loop anywhere from 350 to 1,750 ms between sessions (README
// "Performance"), so `npm run bench` prints it before and after, to read the results by.

import { performance } from 'node:perf_hooks';

export const FIXED_LOOP_ITERATIONS = 3e8;

/** Milliseconds the fixed loop takes (the same arithmetic every time; its result is checked so it is not optimized away). */
export function fixedLoopMs(iterations = FIXED_LOOP_ITERATIONS): number {
  const t0 = performance.now();
  let x = 0;
  for (let i = 0; i < iterations; i++) x = (x * 31 + i) | 0;
  const ms = performance.now() - t0;
  if (x === 0.5) throw new Error('unreachable: an integer loop gave a fraction');
  return ms;
}

export function formatFixedLoop(ms: number): string {
  return `fixed JavaScript loop (3·10⁸ iterations of x = (x * 31 + i) | 0): ${ms.toFixed(0)} ms`;
}
