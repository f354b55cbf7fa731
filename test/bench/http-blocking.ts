// Blocking-query benchmark (issue #3): server RSS with 50,000 held queries, and the time from a write's
// acknowledgement until 10,000 and 1,000 held watchers are answered (by a minimal raw-socket client and
// by undici). Run with `--holder` it is a client child.

import { fork, spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { responseFrame } from '../support/http-frame.ts';
import { waitFor } from '../support/ports.ts';
import { parseExposition, sumOf } from '../support/prom-text.ts';
import { percentile } from './level-fsync.ts';
import { SiderCluster, cpuSeconds, fdCount, formatErrors, getText, monoMs, putJson, registration, statusKiB } from './http-read.ts';

const THIS_FILE = fileURLToPath(import.meta.url);
/** Connections one holder child opens at most (its open-files limit is the machine's default, 20,000 here). */
const PER_HOLDER = 12_500;
/** Server descriptors that are not held connections and may close while the queries are being held. */
const FD_SLACK = 16;

/**
 * How a holder sends its one-per-connection requests and reads the answers: `undici` (a Pool, as real
 * Node clients do) or `raw` (a socket per request, the answer's status line and Content-Length parsed
 * by hand: a client costing a fraction of undici's CPU, so that the timings show the server more than
 * the clients, which share its two cores).
 */
export type WakeClient = 'undici' | 'raw' | 'c';

/** The C holder (wake-holder.c), compiled on first use; undefined when there is no C compiler. */
let cHolderBinary: string | null | undefined = null;

function cHolder(): string | undefined {
  if (cHolderBinary !== null) return cHolderBinary;
  const source = fileURLToPath(new URL('./wake-holder.c', import.meta.url));
  const hash = createHash('sha256').update(readFileSync(source)).digest('hex').slice(0, 16);
  // In the project's own cache directory, not a shared temp directory someone else could write to.
  const dir = fileURLToPath(new URL('../../node_modules/.cache/sider-bench/', import.meta.url));
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const bin = join(dir, `wake-holder-${hash}`);
  if (!existsSync(bin)) {
    const cc = spawnSync('cc', ['-O2', '-o', `${bin}.tmp`, source], { encoding: 'utf8' });
    if (cc.error || cc.status !== 0) {
      cHolderBinary = undefined;
      return undefined;
    }
    renameSync(`${bin}.tmp`, bin);
  }
  cHolderBinary = bin;
  return bin;
}

// ---- the holder child: N blocking GETs (one per connection, or pipelined), each answer timestamped -----

type ToHolder =
  | { op: 'hold'; origin: string; paths: string[]; count: number; localAddress: string; pipelining: number; client: WakeClient }
  | { op: 'stats' }
  | { op: 'report' }
  | { op: 'close' };

interface HolderStats {
  op: 'stats';
  dispatched: number;
  connected: number;
  /** Requests not yet written to a connection. */
  pending: number;
  done: number;
  statuses: Record<string, number>;
  errors: Record<string, number>;
  rssKiB: number;
}

interface HolderReport {
  op: 'report';
  /** monoMs() at which each answer's body was complete. */
  times: number[];
}

type FromHolder = { op: 'hold' } | HolderStats | HolderReport | { op: 'close' };

function holderMain(): void {
  let pool: Pool | null = null;
  const sockets: Socket[] = [];
  let dispatched = 0;
  let rawConnected = 0;
  let rawPending = 0;
  const times: number[] = [];
  const statuses: Record<string, number> = {};
  const errors: Record<string, number> = {};
  const send = (m: FromHolder): void => {
    process.send!(m);
  };
  const countError = (err: unknown): void => {
    const name = (err as { code?: string }).code ?? (err as Error).name ?? 'Error';
    errors[name] = (errors[name] ?? 0) + 1;
  };
  /** Lets the connections of one batch open before the next (the server's listen backlog is 511). */
  const settle = async (busy: () => boolean): Promise<void> => {
    const deadline = Date.now() + 5_000;
    while (busy() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  };
  // One connection per held request, as real clients do: undici, each answer timestamped when complete.
  const hold = async (m: Extract<ToHolder, { op: 'hold' }>): Promise<void> => {
    pool = new Pool(m.origin, {
      connections: m.count,
      pipelining: 1,
      localAddress: m.localAddress,
      // No timeouts under 10 minutes: the queries wait 5.
      headersTimeout: 11 * 60_000,
      bodyTimeout: 11 * 60_000,
      keepAliveTimeout: 60_000,
      connectTimeout: 30_000,
    });
    const p = pool;
    while (dispatched < m.count) {
      const n = Math.min(500, m.count - dispatched);
      for (let i = 0; i < n; i++) {
        const path = m.paths[dispatched % m.paths.length]!;
        dispatched++;
        p.request({ method: 'GET', path }).then(async (res) => {
          await res.body.dump({ limit: 1 << 24 });
          times.push(monoMs());
          statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
        }, countError);
      }
      await settle(() => p.stats.pending > 50);
    }
  };
  // `pipelining` requests written at once on each raw socket (HTTP/1.1 pipelining; Node's server
  // handles them concurrently): more held queries than the open-files limit allows sockets. Any
  // byte back counts as an (early) answer; these are only held, never woken.
  const holdPipelined = async (m: Extract<ToHolder, { op: 'hold' }>): Promise<void> => {
    const url = new URL(m.origin);
    while (dispatched < m.count) {
      for (let i = 0; i < 500 && dispatched < m.count; i++) {
        const k = Math.min(m.pipelining, m.count - dispatched);
        let text = '';
        for (let j = 0; j < k; j++) text += `GET ${m.paths[(dispatched + j) % m.paths.length]} HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`;
        dispatched += k;
        rawPending++;
        const sock = connect({ host: url.hostname, port: Number(url.port), localAddress: m.localAddress }, () => {
          rawPending--;
          rawConnected++;
          sock.write(text);
        });
        sock.once('data', () => times.push(monoMs()));
        sock.on('error', countError);
        sockets.push(sock);
      }
      await settle(() => rawPending > 50);
    }
  };
  // One raw socket per request; an answer counts when its whole body (Content-Length) has arrived.
  const holdRaw = async (m: Extract<ToHolder, { op: 'hold' }>): Promise<void> => {
    const url = new URL(m.origin);
    while (dispatched < m.count) {
      for (let i = 0; i < 500 && dispatched < m.count; i++) {
        const text = `GET ${m.paths[dispatched % m.paths.length]} HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`;
        dispatched++;
        rawPending++;
        const sock = connect({ host: url.hostname, port: Number(url.port), localAddress: m.localAddress }, () => {
          rawPending--;
          rawConnected++;
          sock.write(text);
        });
        let got = '';
        const onData = (d: Buffer): void => {
          got += d.toString('latin1');
          const f = responseFrame(got);
          if (!f) return;
          sock.off('data', onData);
          if (Number.isNaN(f.end)) {
            countError({ code: 'NO_CONTENT_LENGTH' });
            return;
          }
          times.push(monoMs());
          statuses[f.status] = (statuses[f.status] ?? 0) + 1;
        };
        sock.on('data', onData);
        sock.on('error', countError);
        sockets.push(sock);
      }
      await settle(() => rawPending > 50);
    }
  };
  process.on('message', (m: ToHolder) => {
    switch (m.op) {
      case 'hold':
        void (m.pipelining > 1 ? holdPipelined(m) : m.client === 'raw' ? holdRaw(m) : hold(m));
        send({ op: 'hold' });
        break;
      case 'stats':
        send({
          op: 'stats',
          dispatched,
          connected: pool ? pool.stats.connected : rawConnected,
          pending: pool ? pool.stats.pending : rawPending,
          done: times.length,
          statuses,
          errors,
          rssKiB: statusKiB(process.pid, 'VmRSS'),
        });
        break;
      case 'report':
        send({ op: 'report', times });
        break;
      case 'close':
        for (const sk of sockets) sk.destroy();
        void (pool?.destroy() ?? Promise.resolve()).finally(() => {
          send({ op: 'close' });
          process.disconnect();
          process.exit(0);
        });
        break;
    }
  });
  // The parent went away: do not linger holding sockets.
  process.on('disconnect', () => process.exit(0));
}

type Question = 'stats' | 'report' | 'close';

/** What both kinds of holder share: answers matched to questions by op, stats, report, closing. */
abstract class HolderBase {
  protected child: ChildProcess | null = null;
  #exited: Promise<void> = Promise.resolve();
  #waiting: { op: string; resolve: (m: FromHolder) => void }[] = [];

  abstract hold(origin: string, paths: string[], count: number, localAddress: string, pipelining: number, client: WakeClient): Promise<void>;

  /** Puts a question to the child. */
  protected abstract send(op: Question): void;

  get pid(): number {
    return this.child?.pid ?? 0;
  }

  protected attach(child: ChildProcess): void {
    this.child = child;
    this.#exited = new Promise((r) => child.once('exit', () => r()));
  }

  /** An answer from the child: settles the oldest question of its op. */
  protected deliver(m: FromHolder): void {
    const i = this.#waiting.findIndex((w) => w.op === m.op);
    if (i >= 0) this.#waiting.splice(i, 1)[0]!.resolve(m);
  }

  /** Waits for the answer of op (`send` puts the question; 'hold' is answered unasked by the C holder). */
  protected ask<T extends FromHolder>(op: string, timeoutMs: number, send: () => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`holder ${this.pid} did not answer ${op}`)), timeoutMs);
      this.#waiting.push({
        op,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r as T);
        },
      });
      send();
    });
  }

  stats(): Promise<HolderStats> {
    return this.ask<HolderStats>('stats', 30_000, () => this.send('stats'));
  }

  async report(): Promise<number[]> {
    return (await this.ask<HolderReport>('report', 60_000, () => this.send('report'))).times;
  }

  /** Closes its connections and exits; SIGKILL (its own PID only) if it does not within 10 s. */
  async close(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    try {
      await this.ask('close', 10_000, () => this.send('close'));
    } catch {
      // killed by the timer
    }
    await this.#exited;
    clearTimeout(timer);
  }
}

/** Parent side of one Node holder child (this file run with --holder), over IPC. */
class Holder extends HolderBase {
  constructor() {
    super();
    const child = fork(THIS_FILE, ['--holder'], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.attach(child);
    child.on('message', (m: FromHolder) => this.deliver(m));
  }

  protected send(op: Question): void {
    this.child!.send({ op });
  }

  async hold(origin: string, paths: string[], count: number, localAddress: string, pipelining: number, client: WakeClient): Promise<void> {
    await this.ask('hold', 30_000, () => this.child!.send({ op: 'hold', origin, paths, count, localAddress, pipelining, client } satisfies ToHolder));
  }
}

/** A holder that is the C program (client "c"): the same messages as JSON lines on its stdin/stdout. */
class CHolder extends HolderBase {
  protected send(op: Question): void {
    this.child!.stdin!.write(`${op}\n`);
  }

  async hold(origin: string, paths: string[], count: number, localAddress: string, pipelining: number): Promise<void> {
    const bin = cHolder();
    if (!bin) throw new Error('the C holder needs a C compiler (cc): bash test/bench/install-deps.sh');
    if (paths.length !== 1 || pipelining !== 1) throw new Error('the C holder holds one path, one request per connection');
    const url = new URL(origin);
    const child = spawn(bin, [url.hostname, url.port, localAddress, String(count), paths[0]!], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.attach(child);
    let partial = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      partial += chunk;
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        this.deliver(JSON.parse(partial.slice(0, nl)) as FromHolder);
        partial = partial.slice(nl + 1);
      }
    });
    // It says {"op":"hold"} by itself once every request is on a connection.
    await this.ask('hold', 120_000, () => {});
  }
}

let nextLocal = 10;
/** A distinct loopback source address per holder, so that no source runs out of ephemeral ports. */
function localAddress(): string {
  nextLocal = nextLocal >= 250 ? 10 : nextLocal + 1;
  return `127.0.0.${nextLocal}`;
}

function sumInto(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

export interface HeldSet {
  holders: HolderBase[];
  /** Connections opened to the server. */
  connections: number;
  /** Seconds from the first request sent until all were held. */
  setupSeconds: number;
}

export interface HoldOptions {
  /** Held requests per connection (HTTP/1.1 pipelining); 1 = one connection each, as real clients do. */
  pipelining?: number;
  /** At least this many client children. */
  children?: number;
  /** One-per-connection requests: undici (default) or the raw client. */
  client?: WakeClient;
}

/** Holds `count` blocking GETs (cycling over `paths`) on `origin` from client children; waits until the server holds them all. */
export async function holdAll(origin: string, serverPid: number, paths: string[], count: number, o: HoldOptions = {}, log?: (l: string) => void): Promise<HeldSet> {
  const pipelining = o.pipelining ?? 1;
  const n = Math.max(o.children ?? 1, Math.ceil(count / pipelining / PER_HOLDER));
  const shares = Array.from({ length: n }, (_, i) => Math.floor(count / n) + (i < count % n ? 1 : 0));
  let connections = 0;
  const holders: HolderBase[] = Array.from({ length: n }, () => (o.client === 'c' ? new CHolder() : new Holder()));
  const t0 = performance.now();
  // The connections of an earlier case may still be closing on the server: count from a settled number.
  let fd0 = fdCount(serverPid);
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 200));
    const now = fdCount(serverPid);
    if (now === fd0) break;
    fd0 = now;
  }
  let lastLog = performance.now();
  try {
    for (let i = 0; i < n; i++) await holders[i]!.hold(origin, paths, shares[i]!, localAddress(), pipelining, o.client ?? 'undici');
    // Held = every connection open on the server, nothing answered, and the server idle (all parsed).
    await waitFor(
      `${count} queries sent and their connections open on the server`,
      async () => {
        const st = await Promise.all(holders.map((h) => h.stats()));
        const done = st.reduce((a, s) => a + s.done, 0);
        const errs = st.reduce((a, s) => a + Object.values(s.errors).reduce((x, y) => x + y, 0), 0);
        if (log && performance.now() - lastLog > 10_000) {
          lastLog = performance.now();
          log(`  … ${st.reduce((a, s) => a + s.dispatched, 0)} sent, ${st.reduce((a, s) => a + s.connected, 0)} connected (server fds ${fdCount(serverPid)})`);
        }
        if (done > 0 || errs > 0) throw new Error(`held queries answered early: ${done} done, errors ${JSON.stringify(st.map((s) => s.errors))}, statuses ${JSON.stringify(st.map((s) => s.statuses))}`);
        connections = st.reduce((a, s) => a + s.connected, 0);
        // A few descriptors of the server's own (Raft connections, LevelDB files) may close meanwhile.
        return st.every((s, i) => s.dispatched === shares[i] && s.pending === 0) && fdCount(serverPid) - fd0 >= connections - FD_SLACK;
      },
      300_000,
      100,
    ).catch((err: unknown) => {
      // waitFor swallows the early-answer error until its deadline; rethrow it with the count seen.
      throw new Error(`${(err as Error).message} (server fds ${fdCount(serverPid)}, started with ${fd0})`);
    });
    await untilIdle(serverPid);
    const st = await Promise.all(holders.map((h) => h.stats()));
    if (st.some((s) => s.done > 0)) throw new Error('held queries answered early');
    return { holders, connections, setupSeconds: (performance.now() - t0) / 1000 };
  } catch (err) {
    await Promise.all(holders.map((h) => h.close()));
    throw err;
  }
}

/** Waits until `pid` uses under 3% of a core over two consecutive 250 ms intervals (at most 60 s). */
async function untilIdle(pid: number): Promise<void> {
  let quiet = 0;
  let last = cpuSeconds(pid);
  const deadline = Date.now() + 60_000;
  while (quiet < 2 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    const now = cpuSeconds(pid);
    quiet = now - last < 0.0075 ? quiet + 1 : 0;
    last = now;
  }
}

/** CPU a process has used (user and system, all threads; clock ticks, 10 ms) and what its main thread ran and waited for a CPU (schedstat, ns). */
interface ProcCpu {
  userS: number;
  sysS: number;
  mainRunS: number;
  mainWaitS: number;
}

/** A thread's running time and time runnable but waiting for a CPU (schedstat, ns). */
function schedstat(pid: number, tid: number | string): [number, number] {
  const [run, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').trim().split(' ').map(Number);
  return [run!, wait!];
}

/** Running time (ns) of each of `pid`'s threads but the main one, summed. */
function helperThreadsNs(pid: number): number {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return Number.NaN;
  }
  let sum = 0;
  for (const tid of tids) {
    if (tid === String(pid)) continue;
    try {
      sum += schedstat(pid, tid)[0];
    } catch {
      // The thread ended meanwhile.
    }
  }
  return sum;
}

/** The server's own collection counters (prom-client's default metrics on GET /metrics); major counts every kind but minor. */
async function gcCounters(http: string): Promise<{ minor: number; major: number; seconds: number }> {
  const e = parseExposition((await getText(`http://${http}/metrics`)).text);
  const minor = sumOf(e, 'nodejs_gc_duration_seconds_count', { kind: 'minor' });
  return { minor, major: sumOf(e, 'nodejs_gc_duration_seconds_count') - minor, seconds: sumOf(e, 'nodejs_gc_duration_seconds_sum') };
}

function procCpu(pid: number): ProcCpu {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const [run, wait] = schedstat(pid, pid);
    return { userS: Number(f[11]) / 100, sysS: Number(f[12]) / 100, mainRunS: run / 1e9, mainWaitS: wait / 1e9 };
  } catch {
    return { userS: Number.NaN, sysS: Number.NaN, mainRunS: Number.NaN, mainWaitS: Number.NaN };
  }
}

function cpuSince(a: ProcCpu, b: ProcCpu): ProcCpu {
  return { userS: b.userS - a.userS, sysS: b.sysS - a.sysS, mainRunS: b.mainRunS - a.mainRunS, mainWaitS: b.mainWaitS - a.mainWaitS };
}

function sumCpu(xs: ProcCpu[]): ProcCpu {
  return xs.reduce((a, x) => ({ userS: a.userS + x.userS, sysS: a.sysS + x.sysS, mainRunS: a.mainRunS + x.mainRunS, mainWaitS: a.mainWaitS + x.mainWaitS }), {
    userS: 0,
    sysS: 0,
    mainRunS: 0,
    mainWaitS: 0,
  });
}

async function indexOf(http: string, path: string): Promise<number> {
  const r = await getText(`http://${http}${path}`);
  if (r.status !== 200) throw new Error(`GET ${path}: HTTP ${r.status}`);
  return Number(r.headers['x-consul-index']);
}

/** This process's open-files limits (children inherit them). */
function nofileLimits(): { soft: number; hard: number } {
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  const n = (v: string | undefined): number => (v === undefined ? 1024 : v === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(v));
  return { soft: n(m?.[1]), hard: n(m?.[2]) };
}

/** Whether a child may raise its open-files limit to `n` (needs CAP_SYS_RESOURCE above the hard limit). */
function canRaiseNofile(n: number): boolean {
  return spawnSync('/bin/sh', ['-c', `ulimit -n ${n}`], { stdio: 'ignore' }).status === 0;
}

// ---- results ---------------------------------------------------------------------------------

export interface HeldResult {
  case: 'held';
  held: number;
  connections: number;
  /** Held queries per connection. */
  pipelining: number;
  services: number;
  holders: number;
  setupSeconds: number;
  serverRssBeforeMiB: number;
  serverRssHeldMiB: number;
  serverHwmMiB: number;
  /** (held RSS − before) / held. */
  perQueryKiB: number;
  serverFds: number;
  holderRssMiB: number[];
  /** Seconds until the server's descriptors were back near the start after the clients left. */
  releaseSeconds: number;
  /** Server RSS after each step (one step: after all of them). */
  points: HeldPoint[];
}

export interface HeldPoint {
  held: number;
  rssMiB: number;
}

/**
 * RSS for `held` queries one per connection, derived from two measured runs when the open-files
 * limit forbids measuring it. Model: RSS growth = fixed + held × query + connections × connection.
 * The fixed part is real: under the burst of requests V8's young generation grows and stays,
 * whatever the count.
 */
export interface HeldEstimate {
  case: 'held-estimate';
  held: number;
  why: string;
  /** Points of the stepped one-per-connection run the line was fitted to. */
  points: number;
  /** Fixed growth: the fitted line's intercept. */
  fixedMiB: number;
  /** Split of the marginal cost: per held query (request, response, waiter) and per connection (socket, parser). */
  perQueryKiB: number;
  perConnectionKiB: number;
  /** before + fixed + held × (query + connection): the fitted line at `held`. */
  fitMiB: number;
  /** The largest distance of a measured point from the line (how straight the growth was). */
  maxResidualMiB: number;
  /** before + held × (growth per query in the largest run): counts the fixed part `held / max` times over. */
  linearMiB: number;
  /** Growth per query + connection at each step of the stepped run (a linearity check). */
  perQueryAtStepsKiB: number[];
}

export interface WakeResult {
  case: 'wake';
  cluster: string;
  client: WakeClient;
  watchers: number;
  holders: number;
  /** Wall-clock time the write was sent (to line up with server logs). */
  writeAt: string;
  /** Write sent → acknowledged, ms. */
  writeMs: number;
  answered: number;
  statuses: Record<string, number>;
  errors: Record<string, number>;
  /** Acknowledgement → each watcher's answer complete, ms (negative: before the acknowledgement was read). */
  fromAck: { p50: number; p99: number; max: number; min: number };
  /** Write sent → each answer, ms. */
  fromSend: { p50: number; p99: number; max: number };
  /** Server CPU seconds from the write until the last answer. */
  serverCpuSeconds: number;
  /**
   * The same window split: the server's user and system CPU (all threads: GC and JIT workers too),
   * its main thread's running time and time spent runnable but waiting for a CPU; the client
   * processes' (holders') CPU, and their main threads' waits. Clients and server share the 2 cores.
   */
  server: ProcCpu;
  clients: ProcCpu;
  /**
   * Running time of the server's threads other than the main one in the same window, ms: V8's
   * workers (optimizing compiler, parallel scavenge, concurrent marking) and libuv's. Large when
   * the wake path is still being compiled or a collection runs during the wake.
   */
  helperThreadsMs: number;
  /** Collections the server made in the window (its own nodejs_gc_duration_seconds). */
  gc: { minor: number; major: number; ms: number };
  /** Acknowledgement → the last answer, ms (the wake's wall time). */
  wallMs: number;
}

export type BlockingResult = HeldResult | HeldEstimate | WakeResult;

export interface BlockingOptions {
  held?: number;
  /**
   * Unmeasured wakes of the same size before each measured one (default 1): the first wake of a
   * process runs the wake path in V8's lower tiers; a server under steady watch load has it compiled.
   */
  warmups?: number;
  /**
   * Unmeasured wakes before the first measured case of each cluster (default 3). After one, V8's
   * optimizing compiler was still at work during the measured wake on 2 vCPUs (80 – 90 ms of
   * helper-thread time in a ~250 ms wake, taken from the holders' share of the cores); after
   * three, 5 – 20 ms.
   */
  firstWarmups?: number;
  /**
   * Measured wakes per case (default 3): DESIGN §10 states its figures as medians of 3 runs, and
   * on this project's 2-vCPU VMs the same wake's p99 moves by a third between runs.
   */
  rounds?: number;
  wakeCounts?: number[];
  cpuProfDir?: string;
  /** Run the wake cases on a 3-node cluster too (watchers on a follower, the write to the leader). Default true. */
  threeNode?: boolean;
  /** Clients the wake cases are run with, in turn. Default c (when a C compiler is there), raw, then undici. */
  clients?: WakeClient[];
  log?: (line: string) => void;
}

const WATCH_SERVICES = 5;

async function runHeld(
  count: number,
  pipelining: number,
  nofile: number | undefined,
  nodeArgs: string[],
  graceMs: number,
  log: (l: string) => void,
  steps = 1,
): Promise<HeldResult> {
  const cluster = await SiderCluster.start({ size: 1, nodeArgs, ...(nofile ? { nofile } : {}), log });
  const sets: HeldSet[] = [];
  try {
    const http = cluster.http('n1');
    const pid = cluster.pid('n1');
    const paths: string[] = [];
    for (let s = 0; s < WATCH_SERVICES; s++) {
      const service = `bench-watch-${s}`;
      await cluster.populate(service, 10);
      const path = `/v1/health/service/${service}`;
      paths.push(`${path}?index=${await indexOf(http, path)}&wait=5m`);
    }
    await untilIdle(pid);
    const rss0 = statusKiB(pid, 'VmRSS');
    log(
      `held: server pid ${pid} RSS ${(rss0 / 1024).toFixed(0)} MiB; holding ${count} queries on ${WATCH_SERVICES} services, ${pipelining} per connection` +
        `${steps > 1 ? `, in ${steps} steps` : ''} …`,
    );
    // Each step adds its share on top of the ones before (its own client children); the server's
    // RSS is read once it holds them all and is idle again.
    const points: HeldPoint[] = [];
    let sofar = 0;
    for (let k = 0; k < steps; k++) {
      const part = Math.floor(count / steps) + (k < count % steps ? 1 : 0);
      sets.push(await holdAll(`http://${http}`, pid, paths, part, { pipelining }, log));
      sofar += part;
      points.push({ held: sofar, rssMiB: statusKiB(pid, 'VmRSS') / 1024 });
      if (steps > 1) log(`  step ${k + 1}/${steps}: ${sofar} held, server RSS ${points.at(-1)!.rssMiB.toFixed(0)} MiB`);
    }
    const rss1 = points.at(-1)!.rssMiB * 1024;
    const fds = fdCount(pid);
    const holders = sets.flatMap((h) => h.holders);
    const hst = await Promise.all(holders.map((h) => h.stats()));
    const setupSeconds = sets.reduce((a, h) => a + h.setupSeconds, 0);
    const connections = sets.reduce((a, h) => a + h.connections, 0);
    const t0 = performance.now();
    const fdBase = fds - connections;
    await Promise.all(holders.map((h) => h.close()));
    sets.length = 0;
    await waitFor('the server to release the connections', () => fdCount(pid) <= fdBase + 100, 120_000, 50);
    return {
      case: 'held',
      held: count,
      connections,
      pipelining,
      services: WATCH_SERVICES,
      holders: hst.length,
      setupSeconds,
      serverRssBeforeMiB: rss0 / 1024,
      serverRssHeldMiB: rss1 / 1024,
      serverHwmMiB: statusKiB(pid, 'VmHWM') / 1024,
      perQueryKiB: (rss1 - rss0) / count,
      serverFds: fds,
      holderRssMiB: hst.map((s) => Math.round(s.rssKiB / 1024)),
      releaseSeconds: (performance.now() - t0) / 1000,
      points,
    };
  } finally {
    await Promise.all(sets.flatMap((h) => h.holders).map((h) => h.close()));
    await cluster.teardown(graceMs);
  }
}

/** Steps in which the largest one-per-connection run adds its queries (RSS read after each). */
const HELD_STEPS = 4;

/**
 * `target` held queries one per connection when the open-files limit allows it. Otherwise (here:
 * 20,000, and no CAP_SYS_RESOURCE to raise it) two measured runs: as many as the limit allows one
 * per connection, added in HELD_STEPS steps on one server, and `target` pipelined over fewer
 * connections; and the estimate they give.
 */
async function runHeldCases(target: number, nodeArgs: string[], graceMs: number, log: (l: string) => void): Promise<BlockingResult[]> {
  const margin = 1_000;
  const { soft, hard } = nofileLimits();
  if (target + margin <= soft) return [await runHeld(target, 1, undefined, nodeArgs, graceMs, log)];
  if (canRaiseNofile(target + margin)) return [await runHeld(target, 1, target + margin, nodeArgs, graceMs, log)];
  const max = Math.floor((Math.min(soft, hard) - margin) / 1_000) * 1_000;
  const why = `open-files limit ${soft}/${hard} (soft/hard) and no permission to raise it: one server process cannot hold ${target} sockets`;
  log(`held: ${why}; measuring up to ${max} one per connection in ${HELD_STEPS} steps and ${target} pipelined`);
  const one = await runHeld(max, 1, undefined, nodeArgs, graceMs, log, HELD_STEPS);
  log(formatBlocking(one));
  const piped = await runHeld(target, Math.ceil(target / max), undefined, nodeArgs, graceMs, log);
  log(formatBlocking(piped));
  return [one, piped, heldEstimate(target, why, one, piped)];
}

/**
 * The estimate for `target` held one per connection. Growth Δ (KiB) = a + q·held + c·connections:
 * a least-squares line through the stepped run's points gives the slope s = q + c and the
 * intercept a; the pipelined run (held ≠ connections) splits s.
 */
export function heldEstimate(target: number, why: string, one: HeldResult, piped: HeldResult): HeldEstimate {
  const before = one.serverRssBeforeMiB * 1024;
  const xs = one.points.map((p) => p.held);
  const ys = one.points.map((p) => p.rssMiB * 1024 - before);
  const { slope, intercept } = leastSquares(xs, ys);
  const residuals = xs.map((x, i) => ys[i]! - (intercept + slope * x));
  const growth = (r: HeldResult): number => (r.serverRssHeldMiB - r.serverRssBeforeMiB) * 1024;
  const q = (growth(piped) - intercept - slope * piped.connections) / (piped.held - piped.connections);
  return {
    case: 'held-estimate',
    held: target,
    why,
    points: one.points.length,
    fixedMiB: intercept / 1024,
    perQueryKiB: q,
    perConnectionKiB: slope - q,
    fitMiB: (before + intercept + target * slope) / 1024,
    maxResidualMiB: Math.max(...residuals.map(Math.abs)) / 1024,
    linearMiB: (before + (target * growth(one)) / one.held) / 1024,
    perQueryAtStepsKiB: xs.map((x, i) => ys[i]! / x),
  };
}

/** The least-squares line y = intercept + slope·x through two or more points. */
export function leastSquares(xs: readonly number[], ys: readonly number[]): { slope: number; intercept: number } {
  const n = xs.length;
  if (n < 2 || ys.length !== n) throw new Error(`leastSquares: needs two or more points, got ${n} and ${ys.length} values`);
  const mx = xs.reduce((a, x) => a + x, 0) / n;
  const my = ys.reduce((a, y) => a + y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i]! - mx) * (ys[i]! - my);
    sxx += (xs[i]! - mx) ** 2;
  }
  if (sxx === 0) throw new Error('leastSquares: every x is the same');
  const slope = sxy / sxx;
  return { slope, intercept: my - slope * mx };
}

/** `watchers` blocking queries held on `holdOn`, one registration through `writeVia`: when is each answered? */
export async function runWake(
  cluster: SiderCluster,
  label: string,
  holdOn: string,
  writeVia: string,
  watchers: number,
  log: (l: string) => void,
  client: WakeClient = 'undici',
  round = '',
): Promise<WakeResult> {
  // A service per case (and round): each change must be a real one (a repeated registration moves no index).
  const service = `bench-wake-${watchers}-${client}${round}`;
  await cluster.populate(service, 10, writeVia);
  const http = cluster.http(holdOn);
  const pid = cluster.pid(holdOn);
  const path = `/v1/health/service/${service}`;
  // The holding node must have applied the last registration before its index is read.
  const index = await waitFor('the index on the holding node', async () => indexOf(http, path), 10_000);
  const held = await holdAll(`http://${http}`, pid, [`${path}?index=${index}&wait=5m`], watchers, { children: watchers >= 5_000 ? 2 : 1, client });
  try {
    const holderPids = held.holders.map((h) => h.pid);
    const gc0 = await gcCounters(http);
    const helpers0 = helperThreadsNs(pid);
    const server0 = procCpu(pid);
    const clients0 = holderPids.map(procCpu);
    const cpu0 = cpuSeconds(pid);
    const writeAt = new Date().toISOString();
    const tSend = monoMs();
    const w = await putJson(`http://${cluster.http(writeVia)}/v1/agent/service/register`, registration(service, `${service}-new`, 99));
    const tAck = monoMs();
    if (w.status !== 200) throw new Error(`the change: HTTP ${w.status} ${w.text}`);
    // Every watcher should answer; wait (bounded) for the last one.
    const deadline = Date.now() + 60_000;
    let answered = 0;
    while (Date.now() < deadline) {
      const st = await Promise.all(held.holders.map((h) => h.stats()));
      answered = st.reduce((a, s) => a + s.done + Object.values(s.errors).reduce((x, y) => x + y, 0), 0);
      if (answered >= watchers) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const cpu1 = cpuSeconds(pid);
    const server = cpuSince(server0, procCpu(pid));
    const helperThreadsMs = (helperThreadsNs(pid) - helpers0) / 1e6;
    const gc1 = await gcCounters(http);
    const clients = sumCpu(holderPids.map((p, i) => cpuSince(clients0[i]!, procCpu(p))));
    const st = await Promise.all(held.holders.map((h) => h.stats()));
    const statuses: Record<string, number> = {};
    const errors: Record<string, number> = {};
    for (const s of st) {
      sumInto(statuses, s.statuses);
      sumInto(errors, s.errors);
    }
    const times = (await Promise.all(held.holders.map((h) => h.report()))).flat();
    const fromAck = times.map((t) => t - tAck).sort((a, b) => a - b);
    const fromSend = times.map((t) => t - tSend).sort((a, b) => a - b);
    const r: WakeResult = {
      case: 'wake',
      cluster: label,
      client,
      watchers,
      holders: held.holders.length,
      writeAt,
      writeMs: tAck - tSend,
      answered: times.length,
      statuses,
      errors,
      fromAck: { p50: percentile(fromAck, 50), p99: percentile(fromAck, 99), max: fromAck.at(-1) ?? 0, min: fromAck[0] ?? 0 },
      fromSend: { p50: percentile(fromSend, 50), p99: percentile(fromSend, 99), max: fromSend.at(-1) ?? 0 },
      serverCpuSeconds: cpu1 - cpu0,
      server,
      clients,
      helperThreadsMs,
      gc: { minor: gc1.minor - gc0.minor, major: gc1.major - gc0.major, ms: (gc1.seconds - gc0.seconds) * 1000 },
      wallMs: fromAck.at(-1) ?? 0,
    };
    log(formatBlocking(r));
    return r;
  } finally {
    await Promise.all(held.holders.map((h) => h.close()));
  }
}

export async function runHttpBlocking(opts: BlockingOptions = {}): Promise<BlockingResult[]> {
  const log = opts.log ?? ((line: string) => console.log(line));
  const nodeArgs = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : [];
  const graceMs = opts.cpuProfDir ? 15_000 : 5_000;
  const wakeCounts = opts.wakeCounts ?? [10_000, 1_000];
  const results: BlockingResult[] = [];

  const held = await runHeldCases(opts.held ?? 50_000, nodeArgs, graceMs, log);
  results.push(...held);
  log(formatBlocking(held.at(-1)!));

  const layouts: { size: number; label: string }[] = [{ size: 1, label: '1 node' }];
  if (opts.threeNode ?? true) layouts.push({ size: 3, label: '3 nodes, watchers on a follower, write to the leader' });
  for (const layout of layouts) {
    const cluster = await SiderCluster.start({ size: layout.size, nodeArgs, log });
    try {
      const leader = await cluster.leader();
      const holdOn = layout.size === 1 ? leader : cluster.ids.find((id) => id !== leader)!;
      const clients = opts.clients ?? (cHolder() ? (['c', 'raw', 'undici'] as const) : (['raw', 'undici'] as const));
      if (!cHolder()) log('(no C compiler — bash test/bench/install-deps.sh — so the C holder does not run)');
      let first = true;
      for (const client of clients) {
        for (const n of wakeCounts) {
          const warmups = first ? (opts.firstWarmups ?? 3) : (opts.warmups ?? 1);
          first = false;
          for (let w = 0; w < warmups; w++) await runWake(cluster, layout.label, holdOn, leader, n, (l) => log(`  (warm-up) ${l}`), client, `-warmup${w}`);
          for (let r = 0; r < (opts.rounds ?? 3); r++) results.push(await runWake(cluster, layout.label, holdOn, leader, n, log, client, r === 0 ? '' : `-round${r}`));
        }
      }
    } finally {
      await cluster.teardown(graceMs);
    }
  }
  return results;
}

function perAnswer(seconds: number, answers: number): string {
  return ((seconds * 1e6) / answers).toFixed(1);
}

export function formatBlocking(r: BlockingResult): string {
  if (r.case === 'held-estimate') {
    return (
      `held ${r.held} one per connection, estimated (${r.why}): server RSS ≈ ${r.fitMiB.toFixed(0)} MiB ` +
      `(a line fitted to ${r.points} points: fixed growth ${r.fixedMiB.toFixed(0)} MiB + ${(r.perQueryKiB + r.perConnectionKiB).toFixed(1)} KiB per query+connection, ` +
      `points within ${r.maxResidualMiB.toFixed(1)} MiB of it; proportional to the largest run ${r.linearMiB.toFixed(0)} MiB; ` +
      `growth per query+connection at the steps ${r.perQueryAtStepsKiB.map((k) => k.toFixed(1)).join(' / ')} KiB; ` +
      `split from the pipelined run: ${r.perQueryKiB.toFixed(1)} KiB per held query + ${r.perConnectionKiB.toFixed(1)} KiB per connection)`
    );
  }
  if (r.case === 'held') {
    return (
      `held ${r.held} blocking queries over ${r.connections} connections (${r.services} services, ${r.holders} client processes, set up in ${r.setupSeconds.toFixed(1)} s): ` +
      `server RSS ${r.serverRssBeforeMiB.toFixed(0)} → ${r.serverRssHeldMiB.toFixed(0)} MiB (${r.perQueryKiB.toFixed(1)} KiB per query; high-water ${r.serverHwmMiB.toFixed(0)} MiB), ` +
      `${r.serverFds} fds; clients' RSS ${r.holderRssMiB.join('/')} MiB; released in ${r.releaseSeconds.toFixed(1)} s`
    );
  }
  const errs = formatErrors(r.errors);
  return (
    `wake ${String(r.watchers).padStart(6)} watchers (${r.cluster}, ${r.client} client): write acked in ${r.writeMs.toFixed(1)} ms; ${r.answered}/${r.watchers} answered ` +
    `${JSON.stringify(r.statuses)}${errs ? ` errors: ${errs}` : ''}; from ack p50 ${r.fromAck.p50.toFixed(1)} p99 ${r.fromAck.p99.toFixed(1)} max ${r.fromAck.max.toFixed(1)} ms ` +
    `(first ${r.fromAck.min.toFixed(1)}); from send p99 ${r.fromSend.p99.toFixed(1)} ms; server CPU ${(r.serverCpuSeconds * 1000).toFixed(0)} ms` +
    `\n      per answer: server ${perAnswer(r.server.userS + r.server.sysS, r.watchers)} µs CPU (user ${perAnswer(r.server.userS, r.watchers)}, system ${perAnswer(r.server.sysS, r.watchers)}; ` +
    `main thread ran ${perAnswer(r.server.mainRunS, r.watchers)} and waited ${perAnswer(r.server.mainWaitS, r.watchers)} for a CPU), ` +
    `clients ${perAnswer(r.clients.userS + r.clients.sysS, r.watchers)} µs CPU (user ${perAnswer(r.clients.userS, r.watchers)}, system ${perAnswer(r.clients.sysS, r.watchers)}; main threads waited ${perAnswer(r.clients.mainWaitS, r.watchers)}); ` +
    `last answer ${r.wallMs.toFixed(0)} ms after the ack` +
    `\n      server's other threads ran ${r.helperThreadsMs.toFixed(0)} ms; collections during the wake: ${r.gc.minor} minor, ${r.gc.major} major (${r.gc.ms.toFixed(1)} ms)`
  );
}

if (import.meta.main) {
  if (process.argv.includes('--holder')) holderMain();
  else await runHttpBlocking();
}
