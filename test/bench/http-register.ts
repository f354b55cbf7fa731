// Registration benchmark (issue #3): PUT /v1/agent/service/register with unique IDs and a TTL check
// through HTTP on a 3-node loopback cluster (fsync on), 64 concurrent clients, to the leader and spread.

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SiderCluster, closedLoop, cpuUsPerOp, formatCpu, formatErrors, formatLatency, formatUsPerOp, getText, httpError, registration, spreadPools } from './http-read.ts';
import type { LoopResult } from './http-read.ts';
import { wrkLoop } from './wrk.ts';
import { fixedLoopMs, formatFixedLoop } from './machine-speed.ts';

export interface RegisterResult extends LoopResult {
  /** The load generator. */
  client: RegisterClient;
  /** Where the registrations went. */
  target: string;
  clients: number;
  /** Distinct services the instances were spread over. */
  services: number;
  /** CPU per registration in each process, µs (from `cpu` and the count). */
  cpuUsPerOp: Record<string, number>;
  /** Registrations answered 200 since the cluster formed, warm-up and earlier cases included (to relate CPU profiles to work). */
  answeredSoFar: number;
  /** Load right before the measurement, on the same cluster (every round has its own, after the earlier rounds). */
  warmupMs: number;
}

/** undici in this process (default), or wrk (C; http-register.lua builds the same bodies). */
export type RegisterClient = 'undici' | 'wrk';

const WRK_SCRIPT = fileURLToPath(new URL('./http-register.lua', import.meta.url));

export interface RegisterOptions {
  client?: RegisterClient;
  durationMs?: number;
  warmupMs?: number;
  clients?: number;
  cpuProfDir?: string;
  /** More options for node on each server, e.g. ['--trace-gc'] (diagnostics). */
  nodeArgs?: string[];
  /** Each server's whole output also goes to `<dir>/<id>.log`, chunks stamped `@<epoch ms>`. */
  serverLogDir?: string;
  /** Each server's `/metrics` after the last case goes to `<dir>/<id>.prom` (histograms cover the whole run). */
  metricsDir?: string;
  /** Run only these cases (default both). */
  cases?: ('leader' | 'all')[];
  /**
   * Measure each case this many times in a row on the same cluster (wrk only; default 1): the
   * registry grows by every round's registrations, so CPU per registration that grows with the
   * registry's size shows from round to round (answeredSoFar says how large it was).
   */
  rounds?: number;
  log?: (line: string) => void;
}

const SERVICES = 256;

export async function runHttpRegister(opts: RegisterOptions = {}): Promise<RegisterResult[]> {
  const durationMs = opts.durationMs ?? 5_000;
  const warmupMs = opts.warmupMs ?? 1_000;
  const clients = opts.clients ?? 64;
  const rounds = opts.rounds ?? 1;
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`rounds must be a positive integer, got ${rounds}`);
  if (rounds > 1 && opts.client !== 'wrk') throw new Error('rounds > 1 needs the wrk client');
  const log = opts.log ?? ((line: string) => console.log(line));
  const nodeArgs = [...(opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : []), ...(opts.nodeArgs ?? [])];
  const graceMs = opts.cpuProfDir ? 15_000 : 5_000;
  const cluster = await SiderCluster.start({ size: 3, nodeArgs, log, ...(opts.serverLogDir ? { logDir: opts.serverLogDir } : {}) });
  const results: RegisterResult[] = [];
  /** Registrations answered 200 over the whole run (warm-up included), to relate profiles to work. */
  let completed = 0;
  try {
    const leader = await cluster.leader();
    const pids = cluster.pids(leader);
    const wanted = opts.cases ?? ['leader', 'all'];
    const cases = [
      { name: 'leader', target: `leader ${leader}`, origins: [cluster.http(leader)] },
      { name: 'all', target: `all ${cluster.ids.length}`, origins: cluster.ids.map((id) => cluster.http(id)) },
    ].filter((c) => wanted.includes(c.name as 'leader' | 'all'));
    for (const [ci, c] of cases.entries()) {
      if (opts.client === 'wrk') {
        for (let round = 0; round < rounds; round++) {
          const prefix = round === 0 ? `wrk${ci}` : `wrk${ci}r${round}`;
          const { result: r } = await wrkLoop({ script: WRK_SCRIPT, origins: c.origins, connections: clients, env: { REG_PREFIX: prefix }, warmupMs, durationMs, pids });
          completed += r.ops;
          const rr: RegisterResult = { client: 'wrk', target: c.target, clients, services: SERVICES, ...r, cpuUsPerOp: cpuUsPerOp(r), answeredSoFar: completed, warmupMs };
          results.push(rr);
          log(`${formatRegister(rr)}${rounds > 1 ? ` | round ${round + 1}/${rounds}, ${completed} measured registrations so far (warm-ups add more)` : ''}`);
        }
        continue;
      }
      const pools = spreadPools(c.origins, clients);
      try {
        const r = await closedLoop({
          workers: clients,
          warmupMs,
          durationMs,
          maxOps: 1_000_000,
          pids,
          op: async (w, seq) => {
            const n = ci * 10_000_000 + w * 100_000 + seq;
            const res = await pools[w % pools.length]!.request({
              method: 'PUT',
              path: '/v1/agent/service/register',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify(registration(`bench-reg-${(w * 7 + seq) % SERVICES}`, `reg-${ci}-${w}-${seq}`, n)),
            });
            const text = await res.body.text();
            if (res.statusCode !== 200) throw httpError(res.statusCode, text);
            completed++;
          },
        });
        const rr: RegisterResult = { client: 'undici', target: c.target, clients, services: SERVICES, ...r, cpuUsPerOp: cpuUsPerOp(r), answeredSoFar: completed, warmupMs };
        results.push(rr);
        log(formatRegister(rr));
      } finally {
        await Promise.all(pools.map((p) => p.close()));
      }
    }
    if (opts.metricsDir) await saveMetrics(cluster, opts.metricsDir);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${cluster.logTails(2000)}`);
  } finally {
    await cluster.teardown(graceMs);
  }
  return results;
}

async function saveMetrics(cluster: SiderCluster, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const id of cluster.ids) {
    const { text } = await getText(`http://${cluster.http(id)}/metrics`, 10_000);
    await writeFile(join(dir, `${id}.prom`), text);
  }
}

export function formatRegister(r: RegisterResult): string {
  const errs = formatErrors(r.errors);
  return (
    `register (${r.client}) → ${r.target.padEnd(10)} ${r.clients} clients: ${r.opsPerSec.toFixed(0).padStart(6)} /s  ` +
    `${formatLatency(r)}${errs ? `  errors: ${errs}` : ''} | cpu: ${formatCpu(r.cpu)}` +
    ` | µs/op: ${formatUsPerOp(r.cpuUsPerOp)}`
  );
}

/** `runs` fresh clusters in turn, each measured as runHttpRegister does; every result, in order. */
export async function runHttpRegisterRuns(runs: number, opts: RegisterOptions): Promise<RegisterResult[]> {
  const results: RegisterResult[] = [];
  for (let i = 0; i < runs; i++) results.push(...(await runHttpRegister(opts)));
  return results;
}

/** The middle value (the lower middle of an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)] ?? NaN;
}

/**
 * DESIGN §10's way of stating a figure: several runs, each on a fresh cluster, and the median of
 * each measure (rate, p99, wrk's corrected p99) taken separately, as the peers' figures were.
 */
export interface RegisterMedians {
  runs: number;
  opsPerSec: number;
  p99Ms: number;
  correctedP99Ms?: number;
  /** The rate and p99 of every run, in order. */
  each: { opsPerSec: number; p99Ms: number }[];
}

export function registerMedians(results: RegisterResult[]): RegisterMedians {
  const corrected = results.flatMap((r) => (r.corrected ? [r.corrected.p99Ms] : []));
  return {
    runs: results.length,
    opsPerSec: median(results.map((r) => r.opsPerSec)),
    p99Ms: median(results.map((r) => r.p99Ms)),
    ...(corrected.length === results.length && corrected.length > 0 ? { correctedP99Ms: median(corrected) } : {}),
    each: results.map((r) => ({ opsPerSec: r.opsPerSec, p99Ms: r.p99Ms })),
  };
}

/** The target of issue #3: ≥ 5,000 registrations/s with p99 ≤ 50 ms (of one run, or of medians). */
export function meetsRegisterTarget(r: { opsPerSec: number; p99Ms: number }): boolean {
  return r.opsPerSec >= 5_000 && r.p99Ms <= 50;
}

/** The target of issue #3 on medians. */
export function formatRegisterMedians(label: string, m: RegisterMedians): string {
  const ok = meetsRegisterTarget(m);
  const each = m.each.map((r) => `${Math.round(r.opsPerSec)}/s ${r.p99Ms.toFixed(1)} ms`).join(', ');
  const corrected = m.correctedP99Ms === undefined ? '' : ` (wrk's corrected p99 ${m.correctedP99Ms.toFixed(1)} ms)`;
  return (
    `target (${label}, median of ${m.runs} run${m.runs === 1 ? '' : 's'}): ≥ 5000/s with p99 ≤ 50 ms — ` +
    `${Math.round(m.opsPerSec)}/s, p99 ${m.p99Ms.toFixed(1)} ms${corrected}: ${ok ? 'met' : 'NOT met'} [runs: ${each}]`
  );
}

if (import.meta.main) {
  // Direct runs: `node test/bench/http-register.ts [--case leader|all] [--client undici|wrk] [--duration-ms N] [--warmup-ms N]
  // [--runs N] [--rounds N] [--cpu-prof-dir DIR] [--node-args='--trace-gc …'] [--server-log-dir DIR] [--metrics-dir DIR]` (--node-args needs
  // the '='). With --runs N (one case), N fresh clusters in turn and the medians (DESIGN §10); with --rounds N
  // (wrk), N measurements in a row on each cluster, the registry growing between them.
  const { values } = parseArgs({
    options: {
      case: { type: 'string' },
      runs: { type: 'string' },
      rounds: { type: 'string' },
      client: { type: 'string' },
      'duration-ms': { type: 'string' },
      'warmup-ms': { type: 'string' },
      'cpu-prof-dir': { type: 'string' },
      'node-args': { type: 'string' },
      'server-log-dir': { type: 'string' },
      'metrics-dir': { type: 'string' },
    },
  });
  const client = values.client;
  if (client !== undefined && client !== 'undici' && client !== 'wrk') throw new Error(`--client must be undici or wrk, got ${client}`);
  const only = values.case;
  if (only !== undefined && only !== 'leader' && only !== 'all') throw new Error(`--case must be leader or all, got ${only}`);
  const runs = values.runs === undefined ? 1 : Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 50) throw new Error(`--runs must be an integer in [1, 50], got ${values.runs}`);
  if (runs > 1 && only === undefined) throw new Error('--runs needs --case leader or --case all');
  const opts: RegisterOptions = {
    ...(only ? { cases: [only] } : {}),
    ...(values.rounds ? { rounds: Number(values.rounds) } : {}),
    ...(client ? { client } : {}),
    ...(values['duration-ms'] ? { durationMs: Number(values['duration-ms']) } : {}),
    ...(values['warmup-ms'] ? { warmupMs: Number(values['warmup-ms']) } : {}),
    ...(values['cpu-prof-dir'] ? { cpuProfDir: values['cpu-prof-dir'] } : {}),
    ...(values['node-args'] ? { nodeArgs: values['node-args'].split(/\s+/).filter(Boolean) } : {}),
    ...(values['server-log-dir'] ? { serverLogDir: values['server-log-dir'] } : {}),
    ...(values['metrics-dir'] ? { metricsDir: values['metrics-dir'] } : {}),
  };
  console.log(`machine speed at the start: ${formatFixedLoop(fixedLoopMs())}`);
  const results = await runHttpRegisterRuns(runs, opts);
  if (runs > 1) console.log(formatRegisterMedians(`${client ?? 'undici'}, ${only}`, registerMedians(results)));
  console.log(`machine speed at the end: ${formatFixedLoop(fixedLoopMs())}`);
}
