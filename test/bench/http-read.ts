// Read benchmark (issue #3): GET /v1/health/service/:name (10 instances) on a 3-node cluster of `sider
// server` children, default and ?stale, against a bare node:http server; plus the shared child-process helpers.

import { spawn } from 'node:child_process';
import type { ChildProcessByStdio } from 'node:child_process';
import { createWriteStream, readFileSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Agent, Pool, request } from 'undici';
import { freePort, waitFor } from '../support/ports.ts';
import { siderNodeArgv } from '../support/server-process.ts';
import { percentile } from './level-fsync.ts';
import { wrkLoop } from './wrk.ts';

const THIS_FILE = fileURLToPath(import.meta.url);
const CLK_TCK = 100;
const LOG_KEEP = 64 * 1024;

// ---- /proc readings (Linux) ------------------------------------------------------------------

/** utime+stime of a process in seconds, or NaN when it cannot be read. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return Number.NaN;
  }
}

/** A field of /proc/<pid>/status in KiB (VmRSS, VmHWM), or NaN. */
export function statusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** Open file descriptors of a process (sockets included), or NaN. */
export function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return Number.NaN;
  }
}

export function cpuSnapshot(pids: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) out[name] = cpuSeconds(pid);
  return out;
}

/** CPU used per process between two snapshots, as a percentage of one core. */
export function cpuPercent(before: Record<string, number>, after: Record<string, number>, seconds: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of Object.keys(before)) out[name] = Math.round(((after[name]! - before[name]!) / seconds) * 100);
  return out;
}

/** Error counts as `NAME=n NAME=n`, empty when there were none. */
export function formatErrors(errors: Record<string, number>): string {
  return Object.entries(errors)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}

/** `p50 x ms  p99 y ms  max z ms`, the latency part of every benchmark line. */
export function formatLatency(r: { p50Ms: number; p99Ms: number; maxMs: number; corrected?: { p50Ms: number; p99Ms: number } }): string {
  const corrected = r.corrected ? `  (wrk corrected: p50 ${r.corrected.p50Ms.toFixed(2)} ms  p99 ${r.corrected.p99Ms.toFixed(2)} ms)` : '';
  return `p50 ${r.p50Ms.toFixed(2)} ms  p99 ${r.p99Ms.toFixed(2)} ms  max ${r.maxMs.toFixed(1)} ms${corrected}`;
}

/** CPU microseconds per operation by process, as `name n, name n`. */
export function formatUsPerOp(us: Record<string, number>): string {
  return Object.entries(us)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
}

export function formatCpu(cpu: Record<string, number>): string {
  return Object.entries(cpu)
    .map(([k, v]) => `${k} ${v}%`)
    .join(', ');
}

/** Monotonic clock in ms (CLOCK_MONOTONIC), comparable between processes on one machine. */
export function monoMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

// ---- sider server children -------------------------------------------------------------------

export interface SiderNodeSpec {
  id: string;
  http: string;
  raft: string;
  dir: string;
  bootstrap?: boolean;
  /** HTTP address of a member to join through. */
  join?: string;
  /** Options for node itself, e.g. ['--cpu-prof', '--cpu-prof-dir', dir] (written on a clean exit). */
  nodeArgs?: string[];
  /** Raise the open-files limit of the child to this (through `sh -c 'ulimit -n N && exec node …'`). */
  nofile?: number;
  /** -log-level (default warn); the last 64 KiB of output are kept in `log`. */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Also append all of the child's output to this file, each chunk after a line `@<epoch ms>` (diagnostics). */
  logFile?: string;
}

/** Children still running, killed if the benchmark process exits without tearing down. */
const live = new Set<SiderProc | ChildProcessByStdio<null, Readable, Readable>>();
let exitHookInstalled = false;
function track(p: SiderProc | ChildProcessByStdio<null, Readable, Readable>): void {
  live.add(p);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const killAll = (): void => {
    for (const c of live) {
      const child = c instanceof SiderProc ? c.child : c;
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  };
  process.once('exit', killAll);
  // Interrupted (Ctrl-C, timeout): take the children down too, then exit as the signal would.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      killAll();
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  }
}

/** One `node bin/sider.ts server` child. Only its own PID is ever signalled. */
export class SiderProc {
  readonly spec: SiderNodeSpec;
  readonly child: ChildProcessByStdio<null, Readable, Readable>;
  readonly pid: number;
  readonly exited: Promise<void>;
  #log = '';

  constructor(spec: SiderNodeSpec) {
    this.spec = spec;
    const serverArgs = ['server', '-raft-id', spec.id, '-http', spec.http, '-raft-bind', spec.raft, '-raft-dir', spec.dir, '-dns', 'off', '-log-level', spec.logLevel ?? 'warn'];
    if (spec.bootstrap) serverArgs.push('-bootstrap');
    if (spec.join) serverArgs.push('-join', spec.join);
    const args = siderNodeArgv(serverArgs, spec.nodeArgs);
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SIDER_')) env[k] = v;
    const opts = { stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'], env };
    // `exec` keeps the PID: the shell becomes node with the raised limit.
    this.child = spec.nofile
      ? spawn('/bin/sh', ['-c', `ulimit -n ${Math.floor(spec.nofile)} && exec "$0" "$@"`, process.execPath, ...args], opts)
      : spawn(process.execPath, args, opts);
    if (this.child.pid === undefined) throw new Error(`could not spawn sider server ${spec.id}`);
    this.pid = this.child.pid;
    track(this);
    const file = spec.logFile ? createWriteStream(spec.logFile, { flags: 'a' }) : null;
    for (const s of [this.child.stdout, this.child.stderr]) {
      s.setEncoding('utf8');
      s.on('data', (chunk: string) => {
        this.#log += chunk;
        file?.write(`@${Date.now()}\n${chunk}`);
        if (this.#log.length > LOG_KEEP * 2) this.#log = this.#log.slice(-LOG_KEEP);
      });
    }
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    if (file) this.child.once('close', () => file.end());
    void this.exited.then(() => live.delete(this));
  }

  get log(): string {
    return this.#log;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGTERM (a clean close, which writes a CPU profile), then SIGKILL after `graceMs`. */
  async stop(graceMs = 5_000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => {
      if (this.running) this.child.kill('SIGKILL');
    }, graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

export interface ClusterOptions {
  size: number;
  nodeArgs?: string[];
  nofile?: number;
  logLevel?: SiderNodeSpec['logLevel'];
  /** Each server's whole output also goes to `<logDir>/<id>.log` (see SiderNodeSpec.logFile). */
  logDir?: string;
  log?: (line: string) => void;
}

const probeAgent = new Agent({ connections: 4, keepAliveTimeout: 1_000 });

/** GET with a deadline through a small private agent; the body is read as text. */
export async function getText(url: string, timeoutMs = 5_000): Promise<{ status: number; headers: Record<string, string>; text: string }> {
  const res = await request(url, { dispatcher: probeAgent, signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.body.text();
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
  return { status: res.statusCode, headers, text };
}

/** PUT a JSON body; returns the status and text. */
export async function putJson(url: string, body: unknown, timeoutMs = 10_000): Promise<{ status: number; text: string }> {
  const res = await request(url, {
    method: 'PUT',
    dispatcher: probeAgent,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: res.statusCode, text: await res.body.text() };
}

/** A registration body: one instance with a TTL check, the shape of a typical Consul agent's. */
export function registration(service: string, id: string, n: number): Record<string, unknown> {
  return {
    Name: service,
    ID: id,
    Address: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`,
    Port: 8080,
    Tags: ['v1', 'http'],
    Meta: { version: '1.2.3' },
    Check: { TTL: '10m' },
  };
}

/** A cluster of `sider server` children on loopback, fsync on (the default), in a temp directory. */
export class SiderCluster {
  readonly procs = new Map<string, SiderProc>();
  readonly dir: string;
  readonly #opts: ClusterOptions;

  private constructor(dir: string, opts: ClusterOptions) {
    this.dir = dir;
    this.#opts = opts;
  }

  static async start(opts: ClusterOptions): Promise<SiderCluster> {
    if (opts.logDir) await mkdir(opts.logDir, { recursive: true });
    const c = new SiderCluster(await mkdtemp(join(tmpdir(), 'sider-bench-')), opts);
    try {
      await c.#form();
    } catch (err) {
      const logs = c.logTails(3000);
      await c.teardown();
      throw new Error(`${(err as Error).message}\n${logs}`);
    }
    return c;
  }

  get ids(): string[] {
    return [...this.procs.keys()];
  }

  http(id: string): string {
    return this.procs.get(id)!.spec.http;
  }

  pid(id: string): number {
    return this.procs.get(id)!.pid;
  }

  /** The PIDs whose CPU a load window reads: this client and every server, the leader's name marked. */
  pids(leader: string): Record<string, number> {
    const out: Record<string, number> = { client: process.pid };
    for (const id of this.ids) out[id === leader ? `${id}(leader)` : id] = this.pid(id);
    return out;
  }

  /** The last `chars` of every server's output, one section per server, to attach to an error. */
  logTails(chars: number): string {
    return [...this.procs.values()].map((p) => `--- ${p.spec.id}:\n${p.log.slice(-chars)}`).join('\n');
  }

  async #form(): Promise<void> {
    const { size } = this.#opts;
    for (let i = 1; i <= size; i++) {
      const id = `n${i}`;
      const spec: SiderNodeSpec = {
        id,
        http: `127.0.0.1:${await freePort()}`,
        raft: `127.0.0.1:${await freePort()}`,
        dir: join(this.dir, id),
        ...(i === 1 ? { bootstrap: true } : { join: this.http('n1') }),
        ...(this.#opts.nodeArgs ? { nodeArgs: this.#opts.nodeArgs } : {}),
        ...(this.#opts.nofile ? { nofile: this.#opts.nofile } : {}),
        ...(this.#opts.logLevel ? { logLevel: this.#opts.logLevel } : {}),
        ...(this.#opts.logDir ? { logFile: join(this.#opts.logDir, `${id}.log`) } : {}),
      };
      const p = new SiderProc(spec);
      this.procs.set(id, p);
      await waitFor(
        `${id} answers with a known leader`,
        async () => {
          if (!p.running) throw new Error(`${id} exited`);
          const r = await getText(`http://${spec.http}/v1/status/leader`, 1_000);
          return r.status === 200 && r.text !== '""';
        },
        30_000,
        50,
      );
    }
    await waitFor(
      `${size} voters`,
      async () => {
        const r = await getText(`http://${this.http('n1')}/v1/operator/raft/configuration?stale`, 1_000);
        const conf = JSON.parse(r.text) as { Servers: { Voter: boolean }[] };
        return conf.Servers.length === size && conf.Servers.every((s) => s.Voter);
      },
      30_000,
      50,
    );
    // A write through every node proves forwarding works (the leader has published its address).
    for (const id of this.ids) {
      await waitFor(
        `a write through ${id}`,
        async () => (await putJson(`http://${this.http(id)}/v1/agent/service/register`, registration('bench-probe', `probe-${id}`, 1), 5_000)).status === 200,
        30_000,
        100,
      );
    }
    this.#opts.log?.(`cluster of ${size} formed: ${this.ids.map((id) => `${id} pid ${this.pid(id)} http ${this.http(id)}`).join(', ')}`);
  }

  /** The current leader's ID, asked of n1 (stale read of the Raft configuration). */
  async leader(): Promise<string> {
    return waitFor(
      'a leader',
      async () => {
        const r = await getText(`http://${this.http('n1')}/v1/operator/raft/configuration?stale`, 1_000);
        return (JSON.parse(r.text) as { Servers: { ID: string; Leader: boolean }[] }).Servers.find((s) => s.Leader)?.ID ?? '';
      },
      15_000,
      50,
    );
  }

  /** Registers `count` instances of `service` (IDs `<service>-<i>`) through `via`. */
  async populate(service: string, count: number, via = 'n1'): Promise<void> {
    for (let i = 1; i <= count; i++) {
      const r = await putJson(`http://${this.http(via)}/v1/agent/service/register`, registration(service, `${service}-${i}`, i));
      if (r.status !== 200) throw new Error(`registering ${service}-${i}: HTTP ${r.status} ${r.text}`);
    }
  }

  async teardown(graceMs = 5_000): Promise<void> {
    await Promise.all([...this.procs.values()].map((p) => p.stop(graceMs)));
    await rm(this.dir, { recursive: true, force: true });
  }
}

// ---- closed-loop load ------------------------------------------------------------------------

export interface LoopOptions {
  /** Concurrent loops (each one request in flight). */
  workers: number;
  warmupMs: number;
  durationMs: number;
  /** Bound on requests started in total. */
  maxOps: number;
  op: (worker: number, seq: number) => Promise<void>;
  /** Processes whose CPU is read at the window's edges. */
  pids: Record<string, number>;
  /**
   * Offered load in requests/s over all workers (paced, not closed-loop): each worker starts a
   * request every workers/rate seconds, and latency is measured from the scheduled start, so a
   * server that falls behind is charged the wait (no coordinated omission). Absent: closed loop.
   */
  rate?: number;
}

export interface LoopResult {
  /** Requests started and finished inside the measured window. */
  ops: number;
  errors: Record<string, number>;
  seconds: number;
  opsPerSec: number;
  /** Of the requests made (every client). */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /**
   * wrk only: its own percentiles, after its coordinated-omission correction (each latency of at
   * least twice a connection's mean interval between requests adds the requests that interval would
   * have started meanwhile; see wrk-common.lua). Higher than the above whenever requests stall.
   */
  corrected?: { p50Ms: number; p99Ms: number };
  /** CPU per process over the window, % of one core. */
  cpu: Record<string, number>;
}

/** An HTTP status other than the expected one, named so that errors group by status. */
export function httpError(status: number, text = ''): Error {
  return Object.assign(new Error(`HTTP ${status}: ${text.slice(0, 200)}`), { name: `HTTP_${status}` });
}

/** Runs `workers` loops of `op` through a warm-up and a measured window; each loop bounded by count and time. */
export async function closedLoop(o: LoopOptions): Promise<LoopResult> {
  const lat: number[] = [];
  const errors: Record<string, number> = {};
  const t0 = performance.now();
  const start = t0 + o.warmupMs;
  const end = start + o.durationMs;
  let started = 0;
  let ops = 0;
  let cpu0: Record<string, number> | null = null;
  let cpu1: Record<string, number> | null = null;
  let tCpu0 = 0;
  let tCpu1 = 0;
  const open = setTimeout(() => {
    cpu0 = cpuSnapshot(o.pids);
    tCpu0 = performance.now();
  }, o.warmupMs);
  const close = setTimeout(() => {
    cpu1 = cpuSnapshot(o.pids);
    tCpu1 = performance.now();
  }, o.warmupMs + o.durationMs);
  await Promise.all(
    Array.from({ length: o.workers }, async (_, w) => {
      const interval = o.rate ? (o.workers * 1000) / o.rate : 0;
      let next = t0 + (w * interval) / o.workers;
      for (let seq = 1; started < o.maxOps; seq++) {
        let begin = performance.now();
        if (interval > 0) {
          // Timers round their delay down to whole milliseconds: wait until the scheduled start.
          while (begin < next) {
            await new Promise((r) => setTimeout(r, Math.max(1, Math.ceil(next - begin))));
            begin = performance.now();
          }
          begin = next;
          next += interval;
        }
        if (begin >= end) break;
        started++;
        try {
          await o.op(w, seq);
          const done = performance.now();
          if (begin >= start && done <= end) {
            ops++;
            lat.push(done - begin);
          }
        } catch (err) {
          const name = (err as { code?: string }).code ?? (err as Error).name ?? 'Error';
          if (begin >= start) errors[name] = (errors[name] ?? 0) + 1;
          // An error path must not spin.
          await new Promise((r) => setTimeout(r, 10));
        }
      }
    }),
  );
  clearTimeout(open);
  clearTimeout(close);
  if (!cpu0) {
    cpu0 = cpuSnapshot(o.pids);
    tCpu0 = performance.now();
  }
  if (!cpu1) {
    cpu1 = cpuSnapshot(o.pids);
    tCpu1 = performance.now();
  }
  lat.sort((a, b) => a - b);
  const seconds = o.durationMs / 1000;
  return {
    ops,
    errors,
    seconds,
    opsPerSec: ops / seconds,
    p50Ms: percentile(lat, 50),
    p99Ms: percentile(lat, 99),
    maxMs: lat.at(-1) ?? 0,
    cpu: cpuPercent(cpu0, cpu1, Math.max(0.001, (tCpu1 - tCpu0) / 1000)),
  };
}

/** CPU per operation in each process over the window, µs (from a result's CPU % and op count). */
export function cpuUsPerOp(r: LoopResult): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(r.cpu)) out[k] = r.ops > 0 ? Math.round(((v / 100) * r.seconds * 1e6) / r.ops) : 0;
  return out;
}

/** Pools of `total` connections spread over `origins` (the first ones get the remainder). */
export function spreadPools(origins: string[], total: number, extra: Pool.Options = {}): Pool[] {
  return origins.map(
    (o, i) =>
      new Pool(`http://${o}`, {
        connections: Math.floor(total / origins.length) + (i < total % origins.length ? 1 : 0),
        pipelining: 1,
        keepAliveTimeout: 30_000,
        headersTimeout: 15_000,
        bodyTimeout: 15_000,
        ...extra,
      }),
  );
}

// ---- the read benchmark ----------------------------------------------------------------------

export interface ReadResult extends LoopResult {
  case: string;
  /** The load generator. */
  client: ReadClient;
  /** Where the load went. */
  target: string;
  connections: number;
  bodyBytes: number;
  /** Requests/s relative to the bare node:http server in the same run. */
  ratioToBare?: number;
}

/** undici in this process (default), or wrk (C; http-read.lua sends the same GET). */
export type ReadClient = 'undici' | 'wrk';

const WRK_READ_SCRIPT = fileURLToPath(new URL('./http-read.lua', import.meta.url));

export interface ReadOptions {
  /**
   * The load generator. undici shares the 2 cores with the servers at 40 – 95 % of one core; wrk
   * takes a fraction of that, as in the register and renewal benchmarks. The bare server is
   * measured with the same client.
   */
  client?: ReadClient;
  durationMs?: number;
  warmupMs?: number;
  connections?: number;
  instances?: number;
  cpuProfDir?: string;
  log?: (line: string) => void;
}

const READ_SERVICE = 'bench-read';

/** The bare server: `node http-read.ts --bare-server FILE` serves FILE's {headers, body} on every request. */
function bareServerMain(file: string): void {
  const { headers, body } = JSON.parse(readFileSync(file, 'utf8')) as { headers: Record<string, string>; body: string };
  const buf = Buffer.from(body);
  const server = createServer({ keepAliveTimeout: 65_000 }, (_req, res) => {
    res.writeHead(200, { ...headers, 'content-length': String(buf.length) });
    res.end(buf);
  });
  server.listen(0, '127.0.0.1', () => {
    const a = server.address();
    process.stdout.write(`${JSON.stringify({ port: typeof a === 'object' && a ? a.port : 0 })}\n`);
  });
  process.on('SIGTERM', () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}

async function startBare(file: string, nodeArgs: string[]): Promise<{ child: ChildProcessByStdio<null, Readable, Readable>; addr: string }> {
  const child = spawn(process.execPath, [...nodeArgs, THIS_FILE, '--bare-server', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  void new Promise((r) => child.once('exit', r)).then(() => live.delete(child));
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error('bare server did not start')), 10_000);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s: string) => {
      buf += s;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      resolve((JSON.parse(buf.slice(0, nl)) as { port: number }).port);
    });
    child.once('exit', () => reject(new Error('bare server exited')));
  });
  return { child, addr: `127.0.0.1:${port}` };
}

async function stopChild(child: ChildProcessByStdio<null, Readable, Readable>, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

export async function runHttpRead(opts: ReadOptions = {}): Promise<ReadResult[]> {
  const durationMs = opts.durationMs ?? 5_000;
  const warmupMs = opts.warmupMs ?? 1_000;
  const connections = opts.connections ?? 64;
  const client = opts.client ?? 'undici';
  const log = opts.log ?? ((line: string) => console.log(line));
  const nodeArgs = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : [];
  const graceMs = opts.cpuProfDir ? 15_000 : 5_000;
  const cluster = await SiderCluster.start({ size: 3, nodeArgs, log });
  const results: ReadResult[] = [];
  let bare: Awaited<ReturnType<typeof startBare>> | null = null;
  try {
    await cluster.populate(READ_SERVICE, opts.instances ?? 10);
    const leader = await cluster.leader();
    const follower = cluster.ids.find((id) => id !== leader)!;
    const path = `/v1/health/service/${READ_SERVICE}`;
    const sample = await getText(`http://${cluster.http(leader)}${path}`);
    if (sample.status !== 200) throw new Error(`sample read: HTTP ${sample.status}`);
    const entries = (JSON.parse(sample.text) as unknown[]).length;
    const bodyBytes = Buffer.byteLength(sample.text);
    log(`read: ${path} → ${entries} entries, ${bodyBytes} bytes; leader ${leader}`);
    const headers: Record<string, string> = {};
    for (const h of ['content-type', 'x-consul-index', 'x-index', 'x-consul-knownleader', 'x-consul-lastcontact', 'x-consul-effective-consistency']) {
      if (sample.headers[h] !== undefined) headers[h] = sample.headers[h];
    }
    const bodyFile = join(cluster.dir, 'bare-body.json');
    await writeFile(bodyFile, JSON.stringify({ headers, body: sample.text }));
    bare = await startBare(bodyFile, nodeArgs);

    const pids = cluster.pids(leader);
    const cases: { name: string; targets: string[]; query: string; pids: Record<string, number> }[] = [
      { name: 'default', targets: [leader], query: '', pids },
      { name: 'default', targets: cluster.ids, query: '', pids },
      { name: 'stale', targets: [follower], query: '?stale', pids },
      { name: 'stale', targets: [leader], query: '?stale', pids },
      { name: 'bare node:http', targets: ['bare'], query: '', pids: { client: process.pid, bare: bare.child.pid! } },
    ];
    for (const c of cases) {
      const origins = c.targets.map((t) => (t === 'bare' ? bare!.addr : cluster.http(t)));
      const p = `${path}${c.query}`;
      const target = c.targets.length === 1 ? (c.targets[0] === leader ? `leader ${leader}` : c.targets[0] === 'bare' ? 'bare' : `follower ${c.targets[0]}`) : `all ${c.targets.length}`;
      let r: LoopResult;
      let conns = connections;
      if (client === 'wrk') {
        // One wrk thread per target: the connections are rounded down to a multiple of the targets.
        ({ result: r, connections: conns } = await wrkLoop({ script: WRK_READ_SCRIPT, origins, connections, env: { READ_PATH: p }, warmupMs, durationMs, pids: c.pids }));
      } else {
        const pools = spreadPools(origins, connections);
        try {
          r = await closedLoop({
            workers: connections,
            warmupMs,
            durationMs,
            maxOps: 2_000_000,
            pids: c.pids,
            op: async (w) => {
              const res = await pools[w % pools.length]!.request({ method: 'GET', path: p });
              if (res.statusCode !== 200) throw httpError(res.statusCode, await res.body.text());
              await res.body.dump({ limit: 1 << 20 });
            },
          });
        } finally {
          await Promise.all(pools.map((pl) => pl.close()));
        }
      }
      const rr: ReadResult = { case: c.name, client, target, connections: conns, bodyBytes, ...r };
      results.push(rr);
      log(formatRead(rr));
    }
    const bareRate = results.find((r) => r.target === 'bare')?.opsPerSec ?? 0;
    for (const r of results) if (bareRate > 0) r.ratioToBare = r.opsPerSec / bareRate;
  } finally {
    if (bare) await stopChild(bare.child, graceMs);
    await cluster.teardown(graceMs);
  }
  return results;
}

export function formatRead(r: ReadResult): string {
  const errs = formatErrors(r.errors);
  return (
    `${r.case.padEnd(14)} (${r.client}) → ${r.target.padEnd(12)} ${r.connections} conns: ${r.opsPerSec.toFixed(0).padStart(6)} req/s  ` +
    `${formatLatency(r)}${errs ? `  errors: ${errs}` : ''} | cpu: ${formatCpu(r.cpu)}`
  );
}

if (import.meta.main) {
  const i = process.argv.indexOf('--bare-server');
  if (i >= 0) bareServerMain(process.argv[i + 1] ?? '');
  else {
    // `node test/bench/http-read.ts [--client undici|wrk]`
    const j = process.argv.indexOf('--client');
    const client = j >= 0 ? process.argv[j + 1] : undefined;
    if (client !== undefined && client !== 'undici' && client !== 'wrk') throw new Error(`--client must be undici or wrk, got ${client}`);
    await runHttpRead(client ? { client } : {});
    await probeAgent.close();
  }
}
