// Commit throughput and latency of a 3-node loopback cluster with fsync on (LevelDB, HTTP transport):
// 'direct' proposes on an in-process leader (followers are kv-server children); 'http' goes end to end.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { FileSnapshotStore } from '../../raft/file-snapshot-store.ts';
import { HttpTransport } from '../../raft/http-transport.ts';
import { LevelStorage } from '../../raft/level-storage.ts';
import { RaftNode } from '../../raft/node.ts';
import { SiderError } from '../../raft/errors.ts';
import type { TransportReport } from '../../raft/ports.ts';
import type { Entry, HardState, Message } from '../../raft/types.ts';
import { KvMachine, encodeKvCommand } from '../support/kv-machine.ts';
import { KvCluster } from '../support/kv-cluster.ts';
import { waitFor } from '../support/ports.ts';
import { formatCpu, formatErrors, formatLatency } from './http-read.ts';
import type { LoopResult } from './http-read.ts';
import { percentile } from './level-fsync.ts';

export type CommitMode = 'direct' | 'http';

/** A load loop's result (ops = proposals started and committed inside the window) plus the commit specifics. */
export interface CommitResult extends LoopResult {
  mode: CommitMode;
  proposers: number;
  /** Leader event-loop lag p99, ms (direct mode: the bench process is the leader). */
  loopDelayP99Ms?: number;
  /** Leader: synced storage writes per second and entries per write (direct mode). */
  leaderFsyncsPerSec?: number;
  leaderEntriesPerFsync?: number;
  /** Leader: AppendEntries messages per second and entries per message (direct mode). */
  appMsgsPerSec?: number;
  entriesPerAppMsg?: number;
  /** Leader: duration of one synced storage write (LevelDB batch with sync), ms. */
  fsyncP50Ms?: number;
  fsyncP99Ms?: number;
  /** Leader: `app` sent → its `appResp` received (HTTP both ways + the follower's fsync), ms. */
  replicationRttP50Ms?: number;
  replicationRttP99Ms?: number;
}

export interface CommitOptions {
  modes?: CommitMode[];
  levels?: number[];
  /** Measured window per level. */
  durationMs?: number;
  /** Unmeasured ramp-up before each window. */
  warmupMs?: number;
  /** Bound on proposals per level. */
  maxOpsPerLevel?: number;
  /** When set, kv-server children write CPU profiles here (they are stopped with SIGTERM). */
  cpuProfDir?: string;
  log?: (line: string) => void;
}

const KEY = 'bench-cluster-key-0123456789abcdef';
const CLK_TCK = 100;
const ELD_RESOLUTION_MS = 10;

/** ~100-byte command: the shape of a small registry write. */
function payload(client: string, seq: number): Uint8Array {
  return encodeKvCommand({ client, seq, op: 'put', key: `k${seq % 16}`, value: 'x'.repeat(100 - 52 - client.length - String(seq).length) });
}

/** Counts the leader's synced writes (each one LevelDB fsync) and times them. */
class CountingStorage extends LevelStorage {
  saves = 0;
  entries = 0;
  latencies: number[] = [];
  override async save(hs: HardState | null, entries: Entry[]): Promise<void> {
    this.saves++;
    this.entries += entries.length;
    const t0 = performance.now();
    await super.save(hs, entries);
    if (this.latencies.length < 1_000_000) this.latencies.push(performance.now() - t0);
  }
}

/** Counts AppendEntries and times the replication round trip: `app` sent → matching `appResp`. */
class CountingTransport extends HttpTransport {
  appMsgs = 0;
  appEntries = 0;
  rtts: number[] = [];
  #sent = new Map<string, number>();
  override send(m: Message): void {
    if (m.type === 'app') {
      this.appMsgs++;
      this.appEntries += m.entries.length;
      const last = m.entries.at(-1);
      if (last && this.#sent.size < 100_000) this.#sent.set(`${m.to}:${last.index}`, performance.now());
    }
    super.send(m);
  }
  override start(deliver: (m: Message) => void, report: (r: TransportReport) => void): Promise<void> {
    return super.start((m) => {
      if (m.type === 'appResp' && !m.reject) {
        const key = `${m.from}:${m.index}`;
        const t0 = this.#sent.get(key);
        if (t0 !== undefined) {
          this.#sent.delete(key);
          if (this.rtts.length < 1_000_000) this.rtts.push(performance.now() - t0);
        }
      }
      deliver(m);
    }, report);
  }
}

/** utime+stime of a process in seconds (Linux /proc), or NaN when it cannot be read. */
async function procCpuSeconds(pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return Number.NaN;
  }
}

function selfCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

interface Window {
  ops: number;
  errors: Record<string, number>;
  seconds: number;
  lat: number[];
}

/** Runs `proposers` loops of `op` through warmup and a measured window; each loop bounded by count and time. */
async function drive(proposers: number, warmupMs: number, durationMs: number, maxOps: number, op: (p: number, seq: number) => Promise<void>, onWindowStart: () => void): Promise<Window> {
  const lat: number[] = [];
  const errors: Record<string, number> = {};
  const t0 = performance.now();
  const start = t0 + warmupMs;
  const end = start + durationMs;
  let started = 0;
  let ops = 0;
  let windowOpen = false;
  const timer = setTimeout(() => {
    windowOpen = true;
    onWindowStart();
  }, warmupMs);
  await Promise.all(
    Array.from({ length: proposers }, async (_, p) => {
      for (let seq = 1; started < maxOps; seq++) {
        const begin = performance.now();
        if (begin >= end) break;
        started++;
        try {
          await op(p, seq);
          const done = performance.now();
          if (begin >= start && done <= end) {
            ops++;
            lat.push(done - begin);
          }
        } catch (err) {
          const code = err instanceof SiderError ? err.code : (err as Error).name || 'Error';
          if (begin >= start) errors[code] = (errors[code] ?? 0) + 1;
          // An error path must not spin: wait a little before the next proposal.
          await new Promise((r) => setTimeout(r, 10));
        }
      }
    }),
  );
  clearTimeout(timer);
  if (!windowOpen) onWindowStart();
  lat.sort((a, b) => a - b);
  return { ops, errors, seconds: durationMs / 1000, lat };
}

function summarize(mode: CommitMode, proposers: number, w: Window, cpu: Record<string, number>): CommitResult {
  return {
    mode,
    proposers,
    ops: w.ops,
    errors: w.errors,
    seconds: w.seconds,
    opsPerSec: w.ops / w.seconds,
    p50Ms: percentile(w.lat, 50),
    p99Ms: percentile(w.lat, 99),
    maxMs: w.lat.at(-1) ?? 0,
    cpu,
  };
}

async function cpuSnapshot(pids: Record<string, number>): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) out[name] = pid === process.pid ? selfCpuSeconds() : await procCpuSeconds(pid);
  return out;
}

function cpuPercent(before: Record<string, number>, after: Record<string, number>, seconds: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of Object.keys(before)) out[name] = Math.round(((after[name]! - before[name]!) / seconds) * 100);
  return out;
}

/** Leader in this process, followers as kv-server children; proposers call node.propose(). */
async function runDirect(o: Required<Omit<CommitOptions, 'cpuProfDir' | 'modes'>> & Pick<CommitOptions, 'cpuProfDir'>): Promise<CommitResult[]> {
  const cluster = await KvCluster.create({ key: KEY, ...(o.cpuProfDir ? { nodeArgs: ['--cpu-prof', '--cpu-prof-dir', o.cpuProfDir] } : {}) });
  const leaderSpec = cluster.spec('n1');
  const storage = new CountingStorage(join(leaderSpec.dir, 'raft'));
  let transport: CountingTransport | null = null;
  let node: RaftNode | null = null;
  const results: CommitResult[] = [];
  try {
    node = await RaftNode.open({
      id: 'n1',
      storage,
      snapshots: new FileSnapshotStore(join(leaderSpec.dir, 'snapshots')),
      stateMachine: new KvMachine(),
      transport: (clusterId) => {
        transport = new CountingTransport({ id: 'n1', clusterId, listen: leaderSpec.raft, clusterKey: KEY });
        return transport;
      },
      bootstrap: { addr: leaderSpec.raft },
      tickMs: 100,
      heartbeatTicks: 1,
      electionTicks: 10,
    });
    const leader = node;
    await waitFor('n1 leads', () => leader.status().role === 'leader', 10_000);
    for (const id of ['n2', 'n3']) {
      cluster.spec(id).clusterId = leader.clusterId;
      await cluster.startNode(id);
      await leader.addServer(id, cluster.spec(id).raft);
      await waitFor(`${id} is a voter`, () => leader.status().membership.voters.includes(id), 15_000);
    }
    o.log(`direct: 3-node cluster formed (leader in-process pid ${process.pid}, followers ${cluster.procs.get('n2')!.pid}, ${cluster.procs.get('n3')!.pid})`);
    const pids = { leader: process.pid, n2: cluster.procs.get('n2')!.pid, n3: cluster.procs.get('n3')!.pid };
    const t = transport as CountingTransport | null;
    for (const level of o.levels) {
      const eld = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
      let cpu0: Record<string, number> = {};
      let s0 = { saves: 0, entries: 0, app: 0, appEntries: 0 };
      const w = await drive(
        level,
        o.warmupMs,
        o.durationMs,
        o.maxOpsPerLevel,
        async (p, seq) => {
          await leader.propose(payload(`d${level}-${p}`, seq), `d${level}-${p}:${seq}`);
        },
        () => {
          eld.enable();
          s0 = { saves: storage.saves, entries: storage.entries, app: t?.appMsgs ?? 0, appEntries: t?.appEntries ?? 0 };
          storage.latencies = [];
          if (t) t.rtts = [];
          void cpuSnapshot(pids).then((c) => (cpu0 = c));
        },
      );
      const cpu1 = await cpuSnapshot(pids);
      eld.disable();
      // CPU is read a few ms after the window closes, while stragglers finish; close enough for a hint.
      const r = summarize('direct', level, w, cpuPercent(cpu0, cpu1, w.seconds));
      const saves = storage.saves - s0.saves;
      const apps = (t?.appMsgs ?? 0) - s0.app;
      // The histogram holds whole timer intervals: lag is what exceeds the resolution.
      r.loopDelayP99Ms = Math.max(0, eld.percentile(99) / 1e6 - ELD_RESOLUTION_MS);
      r.leaderFsyncsPerSec = saves / w.seconds;
      r.leaderEntriesPerFsync = saves ? (storage.entries - s0.entries) / saves : 0;
      r.appMsgsPerSec = apps / w.seconds;
      r.entriesPerAppMsg = apps ? ((t?.appEntries ?? 0) - s0.appEntries) / apps : 0;
      const fs = storage.latencies.sort((a, b) => a - b);
      r.fsyncP50Ms = percentile(fs, 50);
      r.fsyncP99Ms = percentile(fs, 99);
      const rtts = (t?.rtts ?? []).sort((a, b) => a - b);
      r.replicationRttP50Ms = percentile(rtts, 50);
      r.replicationRttP99Ms = percentile(rtts, 99);
      results.push(r);
      o.log(formatResult(r));
    }
  } finally {
    await node?.close().catch(() => {});
    await cluster.teardown(o.cpuProfDir ? 10_000 : 0);
  }
  return results;
}

/** Three kv-server children; proposers POST /kv/put to the leader over undici. */
async function runHttp(o: Required<Omit<CommitOptions, 'cpuProfDir' | 'modes'>> & Pick<CommitOptions, 'cpuProfDir'>): Promise<CommitResult[]> {
  const cluster = await KvCluster.start({ key: KEY, ...(o.cpuProfDir ? { nodeArgs: ['--cpu-prof', '--cpu-prof-dir', o.cpuProfDir] } : {}) });
  const results: CommitResult[] = [];
  try {
    const leaderId = await cluster.waitLeader();
    const leaderHttp = cluster.spec(leaderId).http;
    const pids: Record<string, number> = { client: process.pid };
    for (const id of cluster.ids) pids[id === leaderId ? `leader(${id})` : id] = cluster.procs.get(id)!.pid;
    o.log(`http: 3-node kv-server cluster formed, leader ${leaderId} at ${leaderHttp}`);
    for (const level of o.levels) {
      const pool = new Pool(`http://${leaderHttp}`, { connections: level, pipelining: 1, keepAliveTimeout: 10_000 });
      let cpu0: Record<string, number> = {};
      try {
        const w = await drive(
          level,
          o.warmupMs,
          o.durationMs,
          o.maxOpsPerLevel,
          async (p, seq) => {
            const client = `h${level}-${p}`;
            const res = await pool.request({
              method: 'POST',
              path: '/kv/put',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ client, seq, key: `k${seq % 16}`, value: 'x'.repeat(40) }),
              signal: AbortSignal.timeout(15_000),
            });
            const text = await res.body.text();
            if (res.statusCode !== 200) {
              let code = `HTTP_${res.statusCode}`;
              try {
                code = String((JSON.parse(text) as { code?: unknown }).code ?? code);
              } catch {
                // not JSON: keep the status
              }
              throw Object.assign(new Error(code), { name: code });
            }
          },
          () => void cpuSnapshot(pids).then((c) => (cpu0 = c)),
        );
        const cpu1 = await cpuSnapshot(pids);
        const r = summarize('http', level, w, cpuPercent(cpu0, cpu1, w.seconds));
        results.push(r);
        o.log(formatResult(r));
      } finally {
        await pool.close();
      }
    }
  } finally {
    await cluster.teardown(o.cpuProfDir ? 10_000 : 0);
  }
  return results;
}

export function formatResult(r: CommitResult): string {
  const errs = formatErrors(r.errors);
  const cpu = formatCpu(r.cpu);
  const extra =
    r.mode === 'direct'
      ? `\n         leader: loop lag p99 ${r.loopDelayP99Ms?.toFixed(1)} ms; ${r.leaderFsyncsPerSec?.toFixed(0)} fsyncs/s × ${r.leaderEntriesPerFsync?.toFixed(1)} entries, ` +
        `fsync p50 ${r.fsyncP50Ms?.toFixed(2)} p99 ${r.fsyncP99Ms?.toFixed(2)} ms; ` +
        `${r.appMsgsPerSec?.toFixed(0)} app msgs/s × ${r.entriesPerAppMsg?.toFixed(1)} entries, app→appResp p50 ${r.replicationRttP50Ms?.toFixed(2)} p99 ${r.replicationRttP99Ms?.toFixed(2)} ms`
      : '';
  return (
    `${r.mode.padEnd(6)} ${String(r.proposers).padStart(4)} proposers: ${r.opsPerSec.toFixed(0).padStart(6)} commits/s  ` +
    `${formatLatency(r)}` +
    `${errs ? `  errors: ${errs}` : ''} | cpu: ${cpu}${extra}`
  );
}

export async function runRaftCommit(opts: CommitOptions = {}): Promise<CommitResult[]> {
  const o = {
    levels: opts.levels ?? [1, 16, 64, 256],
    durationMs: opts.durationMs ?? 5_000,
    warmupMs: opts.warmupMs ?? 500,
    maxOpsPerLevel: opts.maxOpsPerLevel ?? 250_000,
    cpuProfDir: opts.cpuProfDir,
    log: opts.log ?? ((line: string) => console.log(line)),
  };
  const results: CommitResult[] = [];
  for (const mode of opts.modes ?? ['direct', 'http']) {
    results.push(...(mode === 'direct' ? await runDirect(o) : await runHttp(o)));
  }
  return results;
}

if (import.meta.main) await runRaftCommit();
