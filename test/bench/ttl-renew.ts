// TTL renewal benchmark (issue #4): N instances with TTL checks on a 3-node loopback cluster, 64
// connections sending `PUT /v1/agent/check/pass/:id` spread over every server (followers forward to
// the leader in batches) or to the leader only. Renewals that keep the status write nothing to Raft.

import { parseArgs } from 'node:util';
import { SiderCluster, closedLoop, cpuUsPerOp, formatCpu, formatErrors, getText, httpError, putJson, spreadPools } from './http-read.ts';
import type { LoopResult } from './http-read.ts';

export interface RenewResult extends LoopResult {
  target: string;
  connections: number;
  checks: number;
  /** X-Consul-Index before and after the window: renewals that keep the status must not move it. */
  indexBefore: number;
  indexAfter: number;
  cpuUsPerOp: Record<string, number>;
}

export interface RenewOptions {
  durationMs?: number;
  warmupMs?: number;
  connections?: number;
  checks?: number;
  cpuProfDir?: string;
  cases?: ('all' | 'leader')[];
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
      const pools = spreadPools(c.origins, connections);
      try {
        const indexBefore = await globalIndex(cluster.http(leader));
        const r = await closedLoop({
          workers: connections,
          warmupMs,
          durationMs,
          maxOps: 5_000_000,
          pids,
          op: async (w, seq) => {
            const n = (w * 7919 + seq * 104_729) % checks;
            const res = await pools[w % pools.length]!.request({ method: 'PUT', path: `/v1/agent/check/pass/ttl-${n}` });
            const text = await res.body.text();
            if (res.statusCode !== 200) throw httpError(res.statusCode, text);
          },
        });
        const indexAfter = await globalIndex(cluster.http(leader));
        const rr: RenewResult = { target: c.target, connections, checks, indexBefore, indexAfter, ...r, cpuUsPerOp: cpuUsPerOp(r) };
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
    `renew → ${r.target.padEnd(10)} ${r.connections} conns, ${r.checks} checks: ${r.opsPerSec.toFixed(0).padStart(6)} /s  ` +
    `p50 ${r.p50Ms.toFixed(2)} ms  p99 ${r.p99Ms.toFixed(2)} ms  max ${r.maxMs.toFixed(1)} ms  index ${r.indexBefore}→${r.indexAfter}` +
    `${errs ? `  errors: ${errs}` : ''} | cpu: ${formatCpu(r.cpu)} | µs/op: ${Object.entries(r.cpuUsPerOp)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`
  );
}

if (import.meta.main) {
  // Direct runs: `node test/bench/ttl-renew.ts [--case all|leader] [--duration-ms N] [--checks N] [--cpu-prof-dir DIR]`.
  const { values } = parseArgs({
    options: { case: { type: 'string' }, 'duration-ms': { type: 'string' }, checks: { type: 'string' }, 'cpu-prof-dir': { type: 'string' } },
  });
  const only = values.case;
  if (only !== undefined && only !== 'all' && only !== 'leader') throw new Error(`--case must be all or leader, got ${only}`);
  await runTtlRenew({
    ...(only ? { cases: [only] } : {}),
    ...(values['duration-ms'] ? { durationMs: Number(values['duration-ms']) } : {}),
    ...(values.checks ? { checks: Number(values.checks) } : {}),
    ...(values['cpu-prof-dir'] ? { cpuProfDir: values['cpu-prof-dir'] } : {}),
  });
}
