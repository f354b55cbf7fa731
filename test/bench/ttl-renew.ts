// TTL renewal benchmark (issue #4): N instances with TTL checks on a 3-node loopback cluster, 64
// connections sending `PUT /v1/agent/check/pass/:id` spread over every server (followers forward to
// the leader in batches) or to the leader only. Renewals that keep the status write nothing to Raft.
// Reports latency per target server and the undici client's own event-loop delay; `--client wrk`
// drives the same load from wrk (ttl-renew.lua) to take most of the load generator's CPU away.

import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { SiderCluster, closedLoop, cpuUsPerOp, formatCpu, formatErrors, formatLatency, formatUsPerOp, getText, httpError, putJson, spreadPools } from './http-read.ts';
import type { LoopResult } from './http-read.ts';
import { percentile } from './level-fsync.ts';
import { wrkLoop } from './wrk.ts';

/** The load generator: undici in this process (default), or wrk (C, one thread per server). */
export type RenewClient = 'undici' | 'wrk';

const WRK_SCRIPT = fileURLToPath(new URL('./ttl-renew.lua', import.meta.url));

export interface RenewResult extends LoopResult {
  client: RenewClient;
  target: string;
  connections: number;
  checks: number;
  /** X-Consul-Index before and after the window: renewals that keep the status must not move it. */
  indexBefore: number;
  indexAfter: number;
  cpuUsPerOp: Record<string, number>;
  /** wrk's think time per connection (ms), when one was set. */
  thinkMs?: number;
  /** Load sent before the measured window (ms). */
  warmupMs: number;
  /** Client-side latency per server the requests went to (name → ops, p50, p99, max in ms). */
  perTarget: Record<string, { ops: number; p50Ms: number; p99Ms: number; maxMs: number }>;
  /** The undici client's event-loop delay over the run, ms: its own share of the latencies. */
  clientLoopDelayMs?: { p50: number; p99: number; max: number };
}

export interface RenewOptions {
  durationMs?: number;
  warmupMs?: number;
  connections?: number;
  checks?: number;
  cpuProfDir?: string;
  cases?: ('all' | 'leader')[];
  client?: RenewClient;
  /** Paced offered load (renewals/s over all connections) instead of a closed loop; undici only. */
  rate?: number;
  /** wrk only: each connection waits this long (ms) after an answer before its next request. */
  thinkMs?: number;
  log?: (line: string) => void;
}

async function globalIndex(addr: string): Promise<number> {
  return Number((await getText(`http://${addr}/v1/health/state/any?stale`)).headers['x-consul-index']);
}

export async function runTtlRenew(opts: RenewOptions = {}): Promise<RenewResult[]> {
  const durationMs = opts.durationMs ?? 5_000;
  const warmupMs = opts.warmupMs ?? 1_000;
  const connections = opts.connections ?? 64;
  const checks = opts.checks ?? 1_000;
  const log = opts.log ?? ((line: string) => console.log(line));
  const nodeArgs = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : [];
  const graceMs = opts.cpuProfDir ? 15_000 : 5_000;
  const cluster = await SiderCluster.start({ size: 3, nodeArgs, log });
  const results: RenewResult[] = [];
  try {
    const leader = await cluster.leader();
    // Registered 32 at a time; every check passing with a TTL the run cannot outlast.
    for (let i = 0; i < checks; i += 32) {
      await Promise.all(
        Array.from({ length: Math.min(32, checks - i) }, async (_, k) => {
          const n = i + k;
          const r = await putJson(`http://${cluster.http(leader)}/v1/agent/service/register`, {
            Name: `ttl-${n % 64}`,
            ID: `inst-${n}`,
            Port: 8080,
            Check: { CheckID: `ttl-${n}`, TTL: '5m', Status: 'passing' },
          });
          if (r.status !== 200) throw new Error(`registering inst-${n}: HTTP ${r.status} ${r.text}`);
        }),
      );
    }
    const pids = cluster.pids(leader);
    const wanted = opts.cases ?? ['all', 'leader'];
    const cases = [
      { name: 'all', target: `all ${cluster.ids.length}`, origins: cluster.ids.map((id) => cluster.http(id)) },
      { name: 'leader', target: `leader ${leader}`, origins: [cluster.http(leader)] },
    ].filter((c) => wanted.includes(c.name as 'all' | 'leader'));
    for (const c of cases) {
      if (opts.client === 'wrk') {
        const indexBefore = await globalIndex(cluster.http(leader));
        const { result: r, connections: conns } = await wrkLoop({
          script: WRK_SCRIPT,
          origins: c.origins,
          connections,
          env: { RENEW_CHECKS: String(checks), RENEW_THINK_MS: String(opts.thinkMs ?? 0) },
          warmupMs,
          durationMs,
          pids,
        });
        const indexAfter = await globalIndex(cluster.http(leader));
        const rr: RenewResult = {
          client: 'wrk',
          target: c.target,
          connections: conns,
          checks,
          warmupMs,
          indexBefore,
          indexAfter,
          ...r,
          ...(opts.thinkMs ? { thinkMs: opts.thinkMs } : {}),
          cpuUsPerOp: cpuUsPerOp(r),
          perTarget: {},
        };
        results.push(rr);
        log(formatRenew(rr));
        continue;
      }
      const pools = spreadPools(c.origins, connections);
      const names = c.origins.map((o) => {
        const id = cluster.ids.find((i) => cluster.http(i) === o)!;
        return id === leader ? `${id}(leader)` : id;
      });
      const lat: number[][] = pools.map(() => []);
      try {
        const indexBefore = await globalIndex(cluster.http(leader));
        // The same window as closedLoop's (it starts counting warmupMs after it is called).
        const windowStart = performance.now() + warmupMs;
        const windowEnd = windowStart + durationMs;
        const loopDelay = monitorEventLoopDelay({ resolution: 1 });
        loopDelay.enable();
        const r = await closedLoop({
          workers: connections,
          ...(opts.rate ? { rate: opts.rate } : {}),
          warmupMs,
          durationMs,
          maxOps: 5_000_000,
          pids,
          op: async (w, seq) => {
            const n = (w * 7919 + seq * 104_729) % checks;
            const begin = performance.now();
            const res = await pools[w % pools.length]!.request({ method: 'PUT', path: `/v1/agent/check/pass/ttl-${n}` });
            const text = await res.body.text();
            if (res.statusCode !== 200) throw httpError(res.statusCode, text);
            const done = performance.now();
            if (begin >= windowStart && done <= windowEnd) lat[w % pools.length]!.push(done - begin);
          },
        });
        loopDelay.disable();
        const clientLoopDelayMs = { p50: loopDelay.percentile(50) / 1e6, p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 };
        const perTarget: RenewResult['perTarget'] = {};
        lat.forEach((l, i) => {
          l.sort((a, b) => a - b);
          perTarget[names[i]!] = { ops: l.length, p50Ms: percentile(l, 50), p99Ms: percentile(l, 99), maxMs: l.at(-1) ?? 0 };
        });
        const indexAfter = await globalIndex(cluster.http(leader));
        const rr: RenewResult = { client: 'undici', target: c.target, connections, checks, warmupMs, indexBefore, indexAfter, ...r, cpuUsPerOp: cpuUsPerOp(r), perTarget, clientLoopDelayMs };
        results.push(rr);
        log(formatRenew(rr));
      } finally {
        await Promise.all(pools.map((p) => p.close()));
      }
    }
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${cluster.logTails(2000)}`);
  } finally {
    await cluster.teardown(graceMs);
  }
  return results;
}

export function formatRenew(r: RenewResult): string {
  const errs = formatErrors(r.errors);
  return (
    `renew (${r.client}) → ${r.target.padEnd(10)} ${r.connections} conns${r.thinkMs ? ` (think ${r.thinkMs} ms)` : ''}, ${r.checks} checks, warm-up ${r.warmupMs / 1000} s: ${r.opsPerSec.toFixed(0).padStart(6)} /s  ` +
    `${formatLatency(r)}  index ${r.indexBefore}→${r.indexAfter}` +
    `${errs ? `  errors: ${errs}` : ''} | cpu: ${formatCpu(r.cpu)} | µs/op: ${formatUsPerOp(r.cpuUsPerOp)}` +
    (r.clientLoopDelayMs
      ? `\n    client event-loop delay (1 ms timer): p50 ${r.clientLoopDelayMs.p50.toFixed(2)} p99 ${r.clientLoopDelayMs.p99.toFixed(2)} max ${r.clientLoopDelayMs.max.toFixed(1)} ms`
      : '') +
    (Object.keys(r.perTarget).length > 1
      ? `\n    by server: ${Object.entries(r.perTarget)
          .map(([k, v]) => `${k} ${v.ops} ops p50 ${v.p50Ms.toFixed(2)} p99 ${v.p99Ms.toFixed(2)} max ${v.maxMs.toFixed(1)} ms`)
          .join('; ')}`
      : '')
  );
}

if (import.meta.main) {
  // Direct runs: `node test/bench/ttl-renew.ts [--case all|leader] [--client undici|wrk] [--rate N] [--think-ms N (wrk)] [--connections N] [--duration-ms N] [--warmup-ms N] [--checks N] [--cpu-prof-dir DIR]`.
  const { values } = parseArgs({
    options: { case: { type: 'string' }, client: { type: 'string' }, 'duration-ms': { type: 'string' }, 'warmup-ms': { type: 'string' }, checks: { type: 'string' }, 'cpu-prof-dir': { type: 'string' }, rate: { type: 'string' }, 'think-ms': { type: 'string' }, connections: { type: 'string' } },
  });
  const thinkMs = values['think-ms'] === undefined ? undefined : Number(values['think-ms']);
  if (thinkMs !== undefined && !(Number.isInteger(thinkMs) && thinkMs >= 1 && thinkMs <= 1_000)) throw new Error(`--think-ms must be an integer in [1, 1000], got ${values['think-ms']}`);
  if (thinkMs !== undefined && values.client !== 'wrk') throw new Error('--think-ms needs --client wrk');
  const rate = values.rate === undefined ? undefined : Number(values.rate);
  if (rate !== undefined && !(Number.isInteger(rate) && rate >= 100 && rate <= 1_000_000)) throw new Error(`--rate must be an integer in [100, 1000000], got ${values.rate}`);
  const only = values.case;
  if (only !== undefined && only !== 'all' && only !== 'leader') throw new Error(`--case must be all or leader, got ${only}`);
  const client = values.client;
  if (client !== undefined && client !== 'undici' && client !== 'wrk') throw new Error(`--client must be undici or wrk, got ${client}`);
  await runTtlRenew({
    ...(only ? { cases: [only] } : {}),
    ...(client ? { client } : {}),
    ...(rate ? { rate } : {}),
    ...(thinkMs ? { thinkMs } : {}),
    ...(values.connections ? { connections: Number(values.connections) } : {}),
    ...(values['duration-ms'] ? { durationMs: Number(values['duration-ms']) } : {}),
    ...(values['warmup-ms'] ? { warmupMs: Number(values['warmup-ms']) } : {}),
    ...(values.checks ? { checks: Number(values.checks) } : {}),
    ...(values['cpu-prof-dir'] ? { cpuProfDir: values['cpu-prof-dir'] } : {}),
  });
}
