// Idle-time young-generation collection: the policy (collect only after an idle interval, only when
// the young generation is full enough, the collection not counted as the next interval's work), its
// option bounds, the -idle-gc-ms flag, and V8's own runtime really emptying the young generation.

import t from 'tap';
import { IdleGc, type IdleGcRuntime } from '../../src/idle-gc.ts';
import { loadServerConfig } from '../../src/config.ts';

/** A runtime whose readings the test sets; records the calls. */
function fake(): IdleGcRuntime & { busy: number[]; young: number; collected: number; utilizationCalls: number } {
  const rt = {
    busy: [] as number[],
    young: 0,
    collected: 0,
    utilizationCalls: 0,
    utilization() {
      rt.utilizationCalls++;
      return rt.busy.shift() ?? 0;
    },
    youngFraction() {
      return rt.young;
    },
    collectYoung() {
      rt.collected++;
      rt.young = 0;
    },
  };
  return rt;
}

t.test('collects after an idle interval when the young generation is full enough', async (t) => {
  const rt = fake();
  const gc = new IdleGc({ maxUtilization: 0.05, minYoungFraction: 0.1 }, rt);
  rt.young = 0.5;
  rt.busy = [0.01];
  t.equal(gc.check(), true);
  t.equal(rt.collected, 1);
  t.equal(gc.collections.count, 1);
  t.ok(gc.collections.ms >= 0);
});

t.test('each collection is reported with its time and how full the young generation was', async (t) => {
  const rt = fake();
  const seen: [number, number][] = [];
  const gc = new IdleGc({ onCollect: (ms, young) => seen.push([ms, young]) }, rt);
  rt.young = 0.42;
  t.equal(gc.check(), true);
  rt.young = 0.05;
  t.equal(gc.check(), false);
  t.equal(seen.length, 1);
  t.equal(seen[0]![1], 0.42);
  t.ok(seen[0]![0] >= 0);
});

t.test('a busy interval never collects, however full the young generation', async (t) => {
  const rt = fake();
  const gc = new IdleGc({ maxUtilization: 0.05 }, rt);
  rt.young = 0.99;
  rt.busy = [0.06, 0.5, 1];
  t.equal(gc.check(), false);
  t.equal(gc.check(), false);
  t.equal(gc.check(), false);
  t.equal(rt.collected, 0);
});

t.test('an idle interval with a nearly empty young generation does not collect', async (t) => {
  const rt = fake();
  const gc = new IdleGc({ minYoungFraction: 0.1 }, rt);
  rt.young = 0.09;
  rt.busy = [0];
  t.equal(gc.check(), false);
  t.equal(rt.collected, 0);
  // Stays idle and nothing is allocated: never collects.
  for (let i = 0; i < 10; i++) t.equal(gc.check(), false);
});

t.test('the collection itself is not counted as the next interval', async (t) => {
  const rt = fake();
  const gc = new IdleGc({}, rt);
  rt.young = 0.5;
  rt.busy = [0, 0.9, 0];
  const before = rt.utilizationCalls;
  t.equal(gc.check(), true);
  // One reading to decide, one right after the collection to restart the measurement.
  t.equal(rt.utilizationCalls - before, 2);
  rt.young = 0.5;
  t.equal(gc.check(), true, 'the reading taken after the collection (0.9) was dropped');
});

t.test('option bounds are checked when built', async (t) => {
  const rt = fake();
  t.throws(() => new IdleGc({ intervalMs: 9 }, rt), { code: 'SIDER_CONFIG', message: /intervalMs/ });
  t.throws(() => new IdleGc({ intervalMs: 60_001 }, rt), { code: 'SIDER_CONFIG' });
  t.throws(() => new IdleGc({ intervalMs: 1.5 }, rt), { code: 'SIDER_CONFIG' });
  t.throws(() => new IdleGc({ maxUtilization: 1.5 }, rt), { code: 'SIDER_CONFIG', message: /maxUtilization/ });
  t.throws(() => new IdleGc({ minYoungFraction: -0.1 }, rt), { code: 'SIDER_CONFIG', message: /minYoungFraction/ });
  t.throws(() => new IdleGc({ minYoungFraction: Number.NaN }, rt), { code: 'SIDER_CONFIG' });
});

t.test('start and stop: the timer does not keep the process alive and stop is idempotent', async (t) => {
  const rt = fake();
  const gc = new IdleGc({ intervalMs: 10 }, rt);
  gc.start();
  gc.start();
  rt.young = 0.5;
  await new Promise((r) => setTimeout(r, 60));
  gc.stop();
  gc.stop();
  t.ok(rt.collected >= 1, `collected ${rt.collected} times while idle`);
  const n = rt.collected;
  rt.young = 0.5;
  await new Promise((r) => setTimeout(r, 40));
  t.equal(rt.collected, n, 'no collection after stop');
});

t.test('-idle-gc-ms: default 250, 0 turns it off, 1 – 9 and out-of-range values are refused', async (t) => {
  const env = {};
  t.equal(loadServerConfig([], env).idleGcMs, 250);
  t.equal(loadServerConfig(['-idle-gc-ms', '0'], env).idleGcMs, 0);
  t.equal(loadServerConfig(['-idle-gc-ms', '1000'], env).idleGcMs, 1000);
  t.equal(loadServerConfig([], { SIDER_IDLE_GC_MS: '500' }).idleGcMs, 500);
  t.throws(() => loadServerConfig(['-idle-gc-ms', '5'], env), { code: 'SIDER_CONFIG', message: /-idle-gc-ms/ });
  t.throws(() => loadServerConfig(['-idle-gc-ms', '60001'], env), { code: 'SIDER_CONFIG', message: /idle-gc-ms/ });
  t.throws(() => loadServerConfig(['-idle-gc-ms', 'soon'], env), { code: 'SIDER_CONFIG', message: /idle-gc-ms/ });
});

t.test("V8's runtime: an idle check empties a young generation that holds survivors", async (t) => {
  const gc = new IdleGc({ maxUtilization: 1, minYoungFraction: 0 });
  // Objects that survive: the collection must copy them out of the young generation.
  const keep: { i: number; s: string }[] = [];
  for (let i = 0; i < 50_000; i++) keep.push({ i, s: `x${i}` });
  const { getHeapSpaceStatistics } = await import('node:v8');
  const young = (): number => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_used_size;
  const before = young();
  t.equal(gc.check(), true);
  // Survivors of a first scavenge stay young; the second promotes them.
  gc.check();
  const after = young();
  t.ok(after < before, `young generation ${before} → ${after} bytes`);
  t.equal(gc.collections.count, 2);
  t.equal(keep.length, 50_000);
});
