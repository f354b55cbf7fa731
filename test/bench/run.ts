// `npm run bench [-- --only raft-commit|level-fsync|snapshot-write|snapshot-encode|http-read|http-blocking|watch-cycle|http-register|health-probes|agent|dns|ttl-renew|metrics|failover] [--mode direct|http]
// [--levels 1,16,64,256] [--duration-ms 5000] [--held 50000] [--cpu-prof-dir DIR]`: runs the benchmarks, prints tables, writes JSON.

import { spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runAgentBench } from './agent.ts';
import { runDnsBench } from './dns.ts';
import { runFailover } from './failover.ts';
import type { FailoverResult } from './failover.ts';
import type { DnsBenchResult } from './dns.ts';
import type { AgentBenchResult } from './agent.ts';
import { runHealthProbes } from './health-probes.ts';
import type { ProbeBenchResult } from './health-probes.ts';
import { fixedLoopMs, formatFixedLoop } from './machine-speed.ts';
import { runHttpBlocking } from './http-blocking.ts';
import type { BlockingResult, HeldEstimate, HeldResult } from './http-blocking.ts';
import { runHttpRead } from './http-read.ts';
import type { ReadResult } from './http-read.ts';
import { formatRegisterMedians, median, meetsRegisterTarget, registerMedians, runHttpRegister, runHttpRegisterRuns } from './http-register.ts';
import type { RegisterMedians, RegisterResult } from './http-register.ts';
import { runLevelFsync } from './level-fsync.ts';
import { runSnapshotEncode, snapshotEncodeLines } from './snapshot-encode.ts';
import type { SnapshotEncodeResult } from './snapshot-encode.ts';
import { runSnapshotWrite, snapshotWriteTable } from './snapshot-write.ts';
import type { SnapshotWriteResult } from './snapshot-write.ts';
import { runMetricsBench } from './metrics.ts';
import { runWatchCycle } from './watch-cycle.ts';
import type { WatchCycleResult } from './watch-cycle.ts';
import type { MetricsBenchResult } from './metrics.ts';
import type { FsyncResult } from './level-fsync.ts';
import { runRaftCommit } from './raft-commit.ts';
import { runTtlRenew } from './ttl-renew.ts';
import type { RenewResult } from './ttl-renew.ts';
import type { CommitMode, CommitResult } from './raft-commit.ts';

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    mode: { type: 'string' },
    levels: { type: 'string', default: '1,16,64,256' },
    'duration-ms': { type: 'string', default: '5000' },
    held: { type: 'string', default: '50000' },
    'cpu-prof-dir': { type: 'string' },
  },
});

/** wrk (test/bench/install-deps.sh) drives a second run of the HTTP write benchmarks when installed. */
const hasWrk = spawnSync('sh', ['-c', 'command -v wrk'], { stdio: 'ignore' }).status === 0;

function die(message: string): never {
  console.error(`bench: ${message}`);
  process.exit(2);
}

const BENCHES = ['level-fsync', 'snapshot-write', 'snapshot-encode', 'raft-commit', 'http-read', 'http-blocking', 'watch-cycle', 'http-register', 'health-probes', 'agent', 'dns', 'ttl-renew', 'metrics', 'failover'] as const;
type Bench = (typeof BENCHES)[number];
const only = values.only;
if (only !== undefined && !(BENCHES as readonly string[]).includes(only)) die(`--only must be one of ${BENCHES.join(', ')}, got ${only}`);
const runs = (b: Bench): boolean => only === undefined || only === b;
const mode = values.mode;
if (mode !== undefined && mode !== 'direct' && mode !== 'http') die(`--mode must be direct or http, got ${mode}`);
const levels = values.levels.split(',').map(Number);
if (levels.some((n) => !Number.isInteger(n) || n < 1 || n > 4096)) die(`--levels must be integers in [1, 4096], got ${values.levels}`);
const durationMs = Number(values['duration-ms']);
if (!Number.isInteger(durationMs) || durationMs < 100 || durationMs > 600_000) die('--duration-ms must be an integer in [100, 600000]');
const held = Number(values.held);
if (!Number.isInteger(held) || held < 1 || held > 200_000) die('--held must be an integer in [1, 200000]');
const cpuProfDir = values['cpu-prof-dir'];

const machine = {
  cores: availableParallelism(),
  cpu: cpus()[0]?.model ?? 'unknown',
  memGiB: Math.round(totalmem() / 2 ** 30),
  node: process.version,
  platform: `${process.platform}-${process.arch}`,
};
console.log(`machine: ${machine.cores} cores (${machine.cpu}), ${machine.memGiB} GiB, node ${machine.node}`);
// This VM's speed moves between hours; the loop's time before and after says how fast it ran.
const loopMs: { before: number; after?: number } = { before: fixedLoopMs() };
console.log(`machine speed at the start: ${formatFixedLoop(loopMs.before)}`);

let fsync: FsyncResult[] = [];
let commit: CommitResult[] = [];
if (runs('level-fsync')) {
  console.log('\n== LevelDB synced writes (this disk)');
  fsync = await runLevelFsync({ durationMs: Math.min(durationMs, 3_000) });
  console.table(
    fsync.map((r) => ({
      case: r.case,
      'writes/s': Math.round(r.writesPerSec),
      'entries/s': Math.round(r.entriesPerSec),
      'p50 ms': r.p50Ms.toFixed(2),
      'p99 ms': r.p99Ms.toFixed(2),
    })),
  );
}
let snapshotWrite: SnapshotWriteResult[] = [];
if (runs('snapshot-write')) {
  console.log('\n== Synced Raft log writes while a 45 MB snapshot file is written (whole, or in flushed 4 MiB chunks)');
  snapshotWrite = await runSnapshotWrite({ rounds: 3 });
  console.table(snapshotWriteTable(snapshotWrite));
}
let snapshotEncode: SnapshotEncodeResult | null = null;
if (runs('snapshot-encode')) {
  console.log("\n== Snapshot encoding (the register benchmark's instances; main-thread time, 3 machines)");
  snapshotEncode = await runSnapshotEncode({ from: 10_000, to: 50_000, machines: 3 });
  for (const line of snapshotEncodeLines(snapshotEncode)) console.log(line);
}
if (runs('raft-commit')) {
  console.log('\n== Raft commits, 3 nodes on loopback, fsync on, ~100-byte commands');
  commit = await runRaftCommit({
    levels,
    durationMs,
    ...(mode ? { modes: [mode as CommitMode] } : {}),
    ...(cpuProfDir ? { cpuProfDir } : {}),
  });
  console.table(
    commit.map((r) => ({
      mode: r.mode,
      proposers: r.proposers,
      'commits/s': Math.round(r.opsPerSec),
      'p50 ms': r.p50Ms.toFixed(1),
      'p99 ms': r.p99Ms.toFixed(1),
      'max ms': r.maxMs.toFixed(1),
      errors: Object.values(r.errors).reduce((a, b) => a + b, 0),
      'cpu %': Object.values(r.cpu).join('/'),
      'fsyncs/s': r.leaderFsyncsPerSec === undefined ? '' : Math.round(r.leaderFsyncsPerSec),
      'entries/fsync': r.leaderEntriesPerFsync === undefined ? '' : r.leaderEntriesPerFsync.toFixed(1),
    })),
  );
  const target = commit.find((r) => r.mode === 'direct' && r.proposers === 64);
  if (target) {
    const ok = target.opsPerSec >= 5_000 && target.p99Ms <= 50;
    console.log(
      `target (64 proposers, direct): ≥ 5000 commits/s with p99 ≤ 50 ms — measured ${Math.round(target.opsPerSec)}/s, p99 ${target.p99Ms.toFixed(1)} ms: ${ok ? 'met' : 'NOT met'}`,
    );
  }
}

let httpRead: ReadResult[] = [];
if (runs('http-read')) {
  console.log('\n== Registry reads: GET /v1/health/service/:name (10 instances), 64 connections, 3 sider servers on loopback');
  httpRead = await runHttpRead({ durationMs, ...(cpuProfDir ? { cpuProfDir } : {}) });
  // wrk takes a fraction of the CPU undici takes from the servers on the same 2 cores (as for registrations).
  if (hasWrk) httpRead.push(...(await runHttpRead({ durationMs, client: 'wrk' })));
  else console.log('(wrk not installed — bash test/bench/install-deps.sh — so only the undici client runs)');
  console.table(
    httpRead.map((r) => ({
      client: r.client,
      case: r.case,
      target: r.target,
      'req/s': Math.round(r.opsPerSec),
      'p50 ms': r.p50Ms.toFixed(2),
      'p99 ms': r.p99Ms.toFixed(2),
      errors: Object.values(r.errors).reduce((a, b) => a + b, 0),
      'vs bare': r.ratioToBare === undefined ? '' : r.ratioToBare.toFixed(2),
      'cpu %': Object.entries(r.cpu).map(([k, v]) => `${k} ${v}`).join(', '),
    })),
  );
  // A verdict per load generator: this VM's speed moves between minutes, and either client is a fair one.
  for (const client of ['undici', 'wrk'] as const) {
    const mine = httpRead.filter((r) => r.client === client);
    if (mine.length === 0) continue;
    const best = (c: string): number => Math.max(0, ...mine.filter((r) => r.case === c).map((r) => r.opsPerSec));
    console.log(
      `targets (${client}): default ≥ 10000 req/s — best ${Math.round(best('default'))}: ${best('default') >= 10_000 ? 'met' : 'NOT met'}; ` +
        `?stale ≥ 15000 req/s — best ${Math.round(best('stale'))}: ${best('stale') >= 15_000 ? 'met' : 'NOT met'}`,
    );
  }
}

let httpBlocking: BlockingResult[] = [];
if (runs('http-blocking')) {
  console.log(`\n== Blocking queries: ${held} held on one node; wake-ups by one registration`);
  httpBlocking = await runHttpBlocking({ held, ...(cpuProfDir ? { cpuProfDir } : {}) });
  const wakes = httpBlocking.filter((r) => r.case === 'wake');
  console.table(
    wakes.map((r) => ({
      cluster: r.cluster,
      client: r.client,
      watchers: r.watchers,
      answered: r.answered,
      'write ms': r.writeMs.toFixed(1),
      'ack→answer p50': r.fromAck.p50.toFixed(1),
      'p99': r.fromAck.p99.toFixed(1),
      'max': r.fromAck.max.toFixed(1),
      'send→answer p99': r.fromSend.p99.toFixed(1),
      'server cpu ms': Math.round(r.serverCpuSeconds * 1000),
    })),
  );
  const estimate = httpBlocking.find((r): r is HeldEstimate => r.case === 'held-estimate');
  const measured = httpBlocking.find((r): r is HeldResult => r.case === 'held' && r.pipelining === 1 && r.held === held);
  const rss = measured?.serverRssHeldMiB ?? estimate?.fitMiB;
  if (rss !== undefined) console.log(`target: ${held} held with RSS ≤ 1024 MiB — ${measured ? '' : 'estimated '}${rss.toFixed(0)} MiB: ${rss <= 1024 ? 'met' : 'NOT met'}`);
  // Judged as DESIGN §10 states the peers' figures: the median of the measured rounds' p99s.
  const judge = (client: string, watchers: number, limitMs: number): void => {
    const rounds = wakes.filter((r) => r.watchers === watchers && r.cluster === '1 node' && r.client === client);
    if (rounds.length === 0) return;
    const p99 = median(rounds.map((r) => r.fromAck.p99));
    const all = rounds.every((r) => r.answered === watchers);
    const what = watchers === 10_000 ? '10000 woken' : `${watchers} watchers`;
    console.log(
      `target (${client} client): ${what}, p99 ≤ ${limitMs} ms after the ack — median of ${rounds.length} ${p99.toFixed(1)} ms ` +
        `(rounds ${rounds.map((r) => r.fromAck.p99.toFixed(1)).join(', ')}): ${p99 <= limitMs && all ? 'met' : 'NOT met'}`,
    );
  };
  for (const client of new Set(wakes.map((r) => r.client))) {
    judge(client, 10_000, 200);
    judge(client, 1_000, 50);
  }
}

let watchCycle: WatchCycleResult | undefined;
if (runs('watch-cycle')) {
  console.log('\n== Watch cycle: 4,000 watchers asking again after every change, server CPU per watcher per change');
  watchCycle = await runWatchCycle({ changes: 20 });
}

let httpRegister: RegisterResult[] = [];
const REGISTER_RUNS = 3;
/**
 * Load before the judged runs' measurement: the servers' steady state. On the 2-vCPU VM of
 * 2026-12-08, V8 was still completing 90 – 360 optimizations a second on the leader in the first
 * seconds of load and about 10 a second only after 10 s (`--trace-opt`, README "Performance",
 * sixteenth session). The cold-start runs (3 s, what the target was judged on until then) are
 * still run and reported.
 */
const REGISTER_STEADY_WARMUP_MS = 10_000;
const REGISTER_COLD_WARMUP_MS = 3_000;
const REGISTER_ROUNDS = 4;
/** The growth check: one cluster, wrk to the leader, REGISTER_ROUNDS measurements in a row. */
let registerRounds: RegisterResult[] = [];
/** The medians of the wrk runs to the leader in steady state, which the target is judged on. */
let registerLeaderMedians: RegisterMedians | undefined;
/** The same after a cold start (3 s of load before measuring), reported beside them. */
let registerColdMedians: RegisterMedians | undefined;
if (runs('http-register')) {
  console.log('\n== Registrations: PUT /v1/agent/service/register (TTL check), 64 clients, 3 sider servers on loopback, fsync on');
  httpRegister = await runHttpRegister({ durationMs, ...(cpuProfDir ? { cpuProfDir } : {}) });
  if (hasWrk) {
    // The target is judged as DESIGN §10 states the peers' figures: 3 runs (fresh clusters), medians.
    httpRegister.push(...(await runHttpRegisterRuns(REGISTER_RUNS, { durationMs, warmupMs: REGISTER_STEADY_WARMUP_MS, client: 'wrk', cases: ['leader'] })));
    httpRegister.push(...(await runHttpRegisterRuns(REGISTER_RUNS, { durationMs, warmupMs: REGISTER_COLD_WARMUP_MS, client: 'wrk', cases: ['leader'] })));
    httpRegister.push(...(await runHttpRegister({ durationMs, client: 'wrk', cases: ['all'] })));
    // One cluster measured REGISTER_ROUNDS times in a row: CPU per registration must not grow with
    // the registry (it did, 2026-12-07, once the request-ID table was full: see README).
    registerRounds = await runHttpRegister({ durationMs, warmupMs: 1_000, client: 'wrk', cases: ['leader'], rounds: REGISTER_ROUNDS });
  } else console.log('(wrk not installed — bash test/bench/install-deps.sh — so only the undici client runs)');
  console.table(
    httpRegister.map((r) => ({
      client: r.client,
      target: r.target,
      'registrations/s': Math.round(r.opsPerSec),
      'p50 ms': r.p50Ms.toFixed(1),
      'p99 ms': r.p99Ms.toFixed(1),
      'p99 ms, wrk corrected': r.corrected ? r.corrected.p99Ms.toFixed(1) : '—',
      'max ms': r.maxMs.toFixed(1),
      errors: Object.values(r.errors).reduce((a, b) => a + b, 0),
      'cpu %': Object.entries(r.cpu).map(([k, v]) => `${k} ${v}`).join(', '),
    })),
  );
  if (registerRounds.length > 0) {
    const leaderUs = (r: RegisterResult): string => String(Object.entries(r.cpuUsPerOp).find(([k]) => k.includes('(leader)'))?.[1] ?? '?');
    console.log(
      `registry growing (one cluster, ${registerRounds.length} rounds of wrk to the leader): ` +
        registerRounds.map((r) => `${Math.round(r.opsPerSec)}/s, leader ${leaderUs(r)} µs/registration after ${r.answeredSoFar}`).join('; '),
    );
  }
  const leaderRuns = (warmupMs: number): RegisterResult[] =>
    httpRegister.filter((r) => r.client === 'wrk' && r.target.startsWith('leader ') && r.warmupMs === warmupMs);
  const steady = leaderRuns(REGISTER_STEADY_WARMUP_MS);
  const cold = leaderRuns(REGISTER_COLD_WARMUP_MS);
  if (cold.length > 0) {
    registerColdMedians = registerMedians(cold);
    console.log(`cold start (not judged): ${formatRegisterMedians(`wrk, ${cold[0]!.target}, ${REGISTER_COLD_WARMUP_MS / 1000} s warm-up`, registerColdMedians)}`);
  }
  if (steady.length > 0) {
    registerLeaderMedians = registerMedians(steady);
    console.log(formatRegisterMedians(`wrk, ${steady[0]!.target}, ${REGISTER_STEADY_WARMUP_MS / 1000} s warm-up`, registerLeaderMedians));
  }
  for (const r of httpRegister) {
    const ok = meetsRegisterTarget(r);
    const corrected = r.corrected ? ` (wrk's coordinated-omission-corrected p99: ${r.corrected.p99Ms.toFixed(1)} ms)` : '';
    console.log(`target (${r.client}, ${r.target}, ${r.warmupMs / 1000} s warm-up): ≥ 5000/s with p99 ≤ 50 ms — ${Math.round(r.opsPerSec)}/s, p99 ${r.p99Ms.toFixed(1)} ms${corrected}: ${ok ? 'met' : 'NOT met'}`);
  }
}

let healthProbes: ProbeBenchResult | undefined;
if (runs('health-probes')) {
  console.log('\n== Health probes: 10000 HTTP checks every 10 s, one scheduler, real probes, targets in another process');
  const r = await runHealthProbes();
  healthProbes = r;
  console.table([
    {
      'probes/s': Math.round(r.probesPerSec),
      'wanted/s': Math.round(r.wantedPerSec),
      'gap p50 ms': Math.round(r.gapMs.p50),
      'gap p99 ms': Math.round(r.gapMs.p99),
      'gap max ms': Math.round(r.gapMs.max),
      late: r.lateStarts,
      starved: r.starved,
      failures: Object.values(r.failures).reduce((a, b) => a + b, 0),
      'cpu %': r.cpuPct.toFixed(1),
      'cpu µs/probe': Math.round(r.cpuUsPerProbe),
      'loop p99 ms': r.loopDelayMs.p99.toFixed(1),
      'conn/req': r.connectionsPerRequest.toFixed(2),
    },
  ]);
  if (Object.keys(r.failures).length > 0) console.log('failures:', r.failures);
  const ok = r.lateStarts === 0 && r.starved === 0 && r.probesPerSec >= r.wantedPerSec * 0.95;
  console.log(`target: 10000 checks at 10 s without falling behind — ${ok ? 'met' : 'NOT met'} (prober CPU ${r.cpuPct.toFixed(1)} % of one core)`);
}

let agentBench: AgentBenchResult | undefined;
if (runs('agent')) {
  console.log('\n== sider agent: 256 services x 2 local checks (HTTP + TCP, 1 s interval), one server, one agent process');
  const r = await runAgentBench();
  agentBench = r;
  console.table([
    {
      checks: r.checks,
      'converge ms': Math.round(r.convergeMs),
      'agent cpu %': r.agentCpuPct.toFixed(1),
      'agent RSS MiB': Math.round(r.agentRssMiB),
      'server cpu %': r.serverCpuPct.toFixed(1),
      'renewals/s': Math.round(r.renewalsPerSec),
      'fail→critical ms': Math.round(r.failToCriticalMs),
      'SIGTERM→gone ms': Math.round(r.stopMs),
      exit: r.exitCode,
    },
  ]);
}

let dnsBench: DnsBenchResult[] = [];
if (runs('dns')) {
  console.log('\n== DNS: dnsperf, A/SRV mix over 1000 services x 10 instances + 5 % unknown names, one sider server (CPU 0), dnsperf on CPU 1');
  dnsBench = await runDnsBench({ durationMs: Math.max(durationMs, 5_000) });
  console.table(
    dnsBench.map((r) => ({
      target: r.target,
      run: r.run,
      'queries/s': Math.round(r.queriesPerSec),
      completed: r.completed,
      lost: r.lost,
      'avg ms': r.avgLatencyMs.toFixed(2),
      'max ms': r.maxLatencyMs.toFixed(1),
      'server cpu %': r.serverCpuPct.toFixed(0),
      'cpu µs/query': r.cpuUsPerQuery.toFixed(1),
      rcodes: r.rcodes,
    })),
  );
  const sider = dnsBench.filter((r) => r.target === 'sider').map((r) => r.queriesPerSec).sort((a, b) => a - b);
  const median = sider[Math.floor(sider.length / 2)] ?? 0;
  console.log(`target: ≥ 50000 queries/s on one node — median ${Math.round(median)}/s: ${median >= 50_000 ? 'met' : 'NOT met'}`);
  for (const ref of ['knot (1 UDP worker)', 'bind (named -n 1)']) {
    const q = dnsBench.filter((r) => r.target === ref).map((r) => r.queriesPerSec).sort((a, b) => a - b);
    const m = q[Math.floor(q.length / 2)];
    if (m) console.log(`sider / ${ref}: ${(median / m).toFixed(2)} (medians ${Math.round(median)} vs ${Math.round(m)} queries/s)`);
  }
}

let ttlRenew: RenewResult[] = [];
if (runs('ttl-renew')) {
  console.log('\n== TTL renewals: PUT /v1/agent/check/pass/:id, 1000 TTL checks, 64 connections, 3 sider servers on loopback');
  ttlRenew = await runTtlRenew({ durationMs });
  // The target load from a cheap client: 96 connections that each wait 3 ms after an answer (≈ 20,000/s
  // offered), measured in the servers' steady state (after a 4 s warm-up; in the first seconds after
  // start V8 still compiles and collects the set-up's garbage) and, for comparison, from 1 s after start.
  if (hasWrk) {
    for (const warmupMs of [4_000, 1_000]) {
      ttlRenew.push(...(await runTtlRenew({ durationMs, warmupMs, client: 'wrk', cases: ['all'], connections: 96, thinkMs: 3 })));
    }
  }
  console.table(
    ttlRenew.map((r) => ({
      client: `${r.client}${r.thinkMs ? ` think ${r.thinkMs} ms` : ''}, warm-up ${r.warmupMs / 1000} s`,
      target: r.target,
      'renewals/s': Math.round(r.opsPerSec),
      'p50 ms': r.p50Ms.toFixed(2),
      'p99 ms': r.p99Ms.toFixed(2),
      'p99 ms, wrk corrected': r.corrected ? r.corrected.p99Ms.toFixed(2) : '—',
      'max ms': r.maxMs.toFixed(1),
      errors: Object.values(r.errors).reduce((a, b) => a + b, 0),
      'index moved': r.indexAfter - r.indexBefore,
      'cpu %': Object.entries(r.cpu).map(([k, v]) => `${k} ${v}`).join(', '),
    })),
  );
  for (const r of ttlRenew) {
    const ok = r.opsPerSec >= 20_000 && r.p99Ms <= 5;
    // What the row is: the closed-loop undici rows saturate the machine (the client itself takes the
    // most CPU); the wrk rows offer ≈ the target load, measured after a 4 s warm-up (the servers'
    // steady state) and from 1 s after start (cold, for comparison).
    const what = r.client === 'undici' ? 'saturation' : r.warmupMs >= 4_000 ? 'target load, steady state' : 'target load, cold start';
    console.log(`target (${r.client}${r.thinkMs ? ` think ${r.thinkMs} ms` : ''}, ${r.target}; ${what}): ≥ 20000/s with p99 ≤ 5 ms — ${Math.round(r.opsPerSec)}/s, p99 ${r.p99Ms.toFixed(2)} ms: ${ok ? 'met' : 'NOT met'}`);
  }
}

let metricsBench: MetricsBenchResult[] = [];
if (runs('metrics')) {
  console.log('\n== Observability: /metrics scrape of 1,000 services × 10 instances; cost per hook on hot paths');
  metricsBench = await runMetricsBench();
  console.table(
    metricsBench.map((r) => ({
      case: r.case,
      'p50 ms': r.nsPerOp === undefined ? r.p50Ms.toFixed(2) : '',
      'p99 ms': r.nsPerOp === undefined ? r.p99Ms.toFixed(2) : '',
      'KiB': r.bytes === undefined ? '' : Math.round(r.bytes / 1024),
      'ns/event': r.nsPerOp === undefined ? '' : Math.round(r.nsPerOp),
    })),
  );
}

let failover: FailoverResult | undefined;
if (runs('failover')) {
  console.log('\n== Failover: kill -9 the leader of 3 sider servers (loopback, fsync on, default timeouts) under 16 registering clients; 20 trials');
  failover = await runFailover();
  const s = failover.summary;
  const row = (k: keyof FailoverResult['summary']['p50'], what: string): Record<string, string> => ({
    'from the kill to': what,
    'p50 ms': s.p50[k].toFixed(0),
    'p99 ms': s.p99[k].toFixed(0),
    'max ms': s.max[k].toFixed(0),
  });
  console.table([row('electedSeenMs', 'a survivor names the new leader'), row('firstAckMs', 'first acknowledged write'), row('firstAckOnLeaderMs', 'first write acknowledged by the new leader itself')]);
  console.log(`steady load: ${Math.round(s.steadyWritesPerSec)} acknowledged writes/s; client backoff after a failed attempt ${s.backoffMs} ms`);
  const ok = s.p50.firstAckMs <= 1_000 && s.p99.firstAckMs <= 2_000;
  console.log(
    `targets: DESIGN §10 median ≤ 1000 ms and p99 ≤ 2000 ms — ${s.p50.firstAckMs.toFixed(0)} / ${s.p99.firstAckMs.toFixed(0)} ms: ${ok ? 'met' : 'NOT met'}; ` +
      `issue #7 p99 ≤ 2500 ms: ${s.p99.firstAckMs <= 2_500 ? 'met' : 'NOT met'} (p99 of ${s.trials} trials is their maximum)`,
  );
}

loopMs.after = fixedLoopMs();
console.log(`\nmachine speed at the end: ${formatFixedLoop(loopMs.after)}`);

const dir = fileURLToPath(new URL('./results/', import.meta.url));
await mkdir(dir, { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const file = `${dir}${stamp}.json`;
await writeFile(file, `${JSON.stringify({ date: new Date().toISOString(), machine: { ...machine, fixedLoopMs: loopMs }, levelFsync: fsync, snapshotWrite, snapshotEncode, raftCommit: commit, httpRead, httpBlocking, watchCycle, httpRegister, registerLeaderMedians, registerColdMedians, registerRounds, healthProbes, agent: agentBench, dns: dnsBench, ttlRenew, metrics: metricsBench, failover }, null, 2)}\n`);
console.log(`\nresults written to ${file}`);
