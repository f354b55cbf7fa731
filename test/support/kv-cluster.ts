// Spawns, kills (-9) and restarts kv-server child processes, forms a 3-node cluster out of them,
// and a retrying undici client that follows leader hints. Only PIDs started here are ever signalled.

import { spawn } from 'node:child_process';
import type { ChildProcessByStdio } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { freePort, waitFor } from './ports.ts';

export const KV_SERVER = fileURLToPath(new URL('./kv-server.ts', import.meta.url));
/** Keep this much of a child's stderr for failure messages. */
const STDERR_KEEP = 64 * 1024;

export interface KvNodeSpec {
  id: string;
  raft: string;
  http: string;
  dir: string;
  bootstrap?: boolean;
  clusterId?: string;
  /** Passed in the environment (SIDER_CLUSTER_KEY), never on the command line. */
  key?: string;
  tickMs?: number;
  extraArgs?: string[];
  /** Options for node itself, e.g. ['--cpu-prof', '--cpu-prof-dir', dir] (written on a clean exit). */
  nodeArgs?: string[];
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One kv-server child process. */
export class KvProcess {
  readonly spec: KvNodeSpec;
  readonly child: ChildProcessByStdio<null, Readable, Readable>;
  readonly pid: number;
  readonly exited: Promise<ExitStatus>;
  #stderr = '';
  #exit: ExitStatus | null = null;

  constructor(spec: KvNodeSpec) {
    this.spec = spec;
    const args = [...(spec.nodeArgs ?? []), KV_SERVER, '--id', spec.id, '--raft', spec.raft, '--http', spec.http, '--dir', spec.dir];
    if (spec.bootstrap) args.push('--bootstrap');
    if (spec.clusterId) args.push('--cluster-id', spec.clusterId);
    if (spec.tickMs !== undefined) args.push('--tick-ms', String(spec.tickMs));
    args.push(...(spec.extraArgs ?? []));
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.SIDER_CLUSTER_KEY;
    if (spec.key !== undefined) env.SIDER_CLUSTER_KEY = spec.key;
    this.child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    if (this.child.pid === undefined) throw new Error(`could not spawn kv-server ${spec.id}`);
    this.pid = this.child.pid;
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (s: string) => {
      this.#stderr += s;
      if (this.#stderr.length > STDERR_KEEP * 2) this.#stderr = this.#stderr.slice(-STDERR_KEEP);
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.#exit = { code, signal };
        resolve(this.#exit);
      });
    });
  }

  get stderr(): string {
    return this.#stderr;
  }

  get running(): boolean {
    return this.#exit === null;
  }

  /** Resolves with the ready line; rejects (with the child's stderr) if it exits first or is slow. */
  ready(timeoutMs = 15_000): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      let buf = '';
      const onData = (chunk: Buffer): void => {
        buf += chunk.toString('utf8');
        const nl = buf.indexOf('\n');
        if (nl < 0) return;
        cleanup();
        try {
          const line = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
          if (line.ready !== true) throw new Error('not a ready line');
          resolve(line);
        } catch {
          reject(new Error(`kv-server ${this.spec.id} printed ${JSON.stringify(buf.slice(0, nl))} instead of its ready line`));
        }
      };
      const onExit = (code: number | null, signal: string | null): void => {
        cleanup();
        reject(new Error(`kv-server ${this.spec.id} exited (code ${code}, signal ${signal}) before it was ready:\n${this.#stderr.slice(-4000)}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`kv-server ${this.spec.id} not ready within ${timeoutMs} ms:\n${this.#stderr.slice(-4000)}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.child.stdout.off('data', onData);
        this.child.off('exit', onExit);
      };
      if (!this.running) {
        onExit(this.#exit!.code, this.#exit!.signal);
        return;
      }
      this.child.stdout.on('data', onData);
      this.child.once('exit', onExit);
    });
  }

  /** SIGKILL: no chance to flush or close anything. */
  async kill9(): Promise<ExitStatus> {
    if (this.running) this.child.kill('SIGKILL');
    return this.exited;
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  async stop(graceMs = 5_000): Promise<ExitStatus> {
    if (!this.running) return this.exited;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Starts a kv-server and waits for its ready line. */
export async function startKv(spec: KvNodeSpec, timeoutMs = 15_000): Promise<KvProcess> {
  const p = new KvProcess(spec);
  try {
    await p.ready(timeoutMs);
  } catch (err) {
    await p.kill9();
    throw err;
  }
  return p;
}

// ---- client ------------------------------------------------------------------------------------

export interface KvReply {
  status: number;
  body: Record<string, unknown>;
}

export class KvHttpError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'KvHttpError';
    this.status = status;
    this.code = code;
  }
}

export interface RetryOptions {
  /** Give up after this long (ms). */
  deadlineMs?: number;
  /** Deadline of one HTTP request (ms). */
  requestTimeoutMs?: number;
}

/** Answers worth retrying elsewhere or later: not the leader, no leader, timeouts, overload, a pending change. */
function retryable(status: number): boolean {
  return status === 503 || status === 504 || status === 429 || status === 409;
}

/**
 * A client of a kv-server cluster: node id → HTTP address. Writes and reads go to the node last
 * known to lead; a 503 with a leader hint moves there, a connection error or no hint moves to the
 * next node. A retried write repeats its (client, seq), so the state machine applies it once.
 */
export class KvClient {
  readonly #addrs: Map<string, string>;
  readonly #agent: Agent;
  #preferred = '';
  /** Requests sent again after a failed or redirected attempt. */
  retries = 0;

  constructor(addrs: Record<string, string>, connectionsPerNode = 16) {
    this.#addrs = new Map(Object.entries(addrs));
    this.#agent = new Agent({ connections: connectionsPerNode, pipelining: 1, keepAliveTimeout: 10_000 });
  }

  setAddr(id: string, http: string): void {
    this.#addrs.set(id, http);
  }

  /** One request to one node; network errors throw, HTTP errors come back as a reply. */
  async call(id: string, method: 'GET' | 'POST', path: string, body?: unknown, timeoutMs = 6_000): Promise<KvReply> {
    const addr = this.#addrs.get(id);
    if (!addr) throw new Error(`unknown node ${id}`);
    const res = await request(`http://${addr}${path}`, {
      method,
      dispatcher: this.#agent,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? null : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.body.text();
    let parsed: unknown = {};
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch {
      parsed = { message: text };
    }
    return { status: res.statusCode, body: typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : {} };
  }

  /** Sends to the leader, following hints, until a 2xx or a non-retryable answer or the deadline. */
  async toLeader(method: 'GET' | 'POST', path: string, body?: unknown, opts: RetryOptions = {}): Promise<Record<string, unknown>> {
    const deadline = Date.now() + (opts.deadlineMs ?? 20_000);
    const ids = [...this.#addrs.keys()];
    let target = this.#preferred || ids[0]!;
    let attempt = 0;
    let last = '';
    while (Date.now() < deadline) {
      if (++attempt > 1) this.retries++;
      let hint = '';
      try {
        const r = await this.call(target, method, path, body, Math.min(opts.requestTimeoutMs ?? 6_000, Math.max(1, deadline - Date.now())));
        if (r.status >= 200 && r.status < 300) {
          this.#preferred = target;
          return r.body;
        }
        const code = typeof r.body.code === 'string' ? r.body.code : '';
        last = `${target}: HTTP ${r.status} ${code} ${String(r.body.message ?? '')}`;
        if (!retryable(r.status)) throw new KvHttpError(r.status, code, last);
        hint = typeof r.body.leader === 'string' ? r.body.leader : '';
      } catch (err) {
        if (err instanceof KvHttpError) throw err;
        last = `${target}: ${(err as Error).message}`;
      }
      if (hint && hint !== target && this.#addrs.has(hint)) {
        target = hint;
        continue; // a fresh hint is worth trying at once
      }
      target = ids[(ids.indexOf(target) + 1) % ids.length]!;
      // Back off a little once every node has been tried: an election takes about a second.
      if (attempt % ids.length === 0) await new Promise((r) => setTimeout(r, Math.min(200, 20 * attempt)));
    }
    throw new Error(`no answer for ${method} ${path} within the deadline; last: ${last}`);
  }

  /** `duplicate`: this (client, seq) had already been applied (an earlier attempt got through). */
  async write(
    op: 'put' | 'append',
    client: string,
    seq: number,
    key: string,
    value: string,
    opts?: RetryOptions,
  ): Promise<{ value: string; index: number; duplicate: boolean }> {
    const r = await this.toLeader('POST', `/kv/${op}`, { client, seq, key, value }, opts);
    return { value: String(r.value), index: Number(r.index), duplicate: r.duplicate === true };
  }

  /** A linearizable read served by node `id` itself (ReadIndex; a follower asks the leader). */
  async readOn(id: string, key: string, opts: RetryOptions = {}): Promise<{ value: string; index: number }> {
    const deadline = Date.now() + (opts.deadlineMs ?? 20_000);
    let last = '';
    while (Date.now() < deadline) {
      try {
        const r = await this.call(id, 'GET', `/kv/get?key=${encodeURIComponent(key)}`, undefined, opts.requestTimeoutMs ?? 6_000);
        if (r.status === 200) return { value: String(r.body.value), index: Number(r.body.index) };
        last = `HTTP ${r.status} ${String(r.body.code)} ${String(r.body.message)}`;
        if (!retryable(r.status)) throw new KvHttpError(r.status, String(r.body.code), last);
      } catch (err) {
        if (err instanceof KvHttpError) throw err;
        last = (err as Error).message;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`node ${id} gave no linearizable read of ${key} within the deadline; last: ${last}`);
  }

  async status(id: string): Promise<Record<string, unknown>> {
    const r = await this.call(id, 'GET', '/status', undefined, 2_000);
    if (r.status !== 200) throw new Error(`status of ${id}: HTTP ${r.status}`);
    return r.body;
  }

  close(): Promise<void> {
    return this.#agent.close();
  }
}

// ---- cluster -----------------------------------------------------------------------------------

export interface KvClusterOptions {
  ids?: string[];
  key?: string;
  tickMs?: number;
  extraArgs?: string[];
  nodeArgs?: string[];
  /** Data directories go under here (a fresh temp directory by default, removed on teardown). */
  root?: string;
}

/** The voters listed in a /status answer (parsed, since it comes off the wire). */
function votersOf(status: Record<string, unknown>): string[] {
  const m = status.membership;
  const v = typeof m === 'object' && m !== null ? (m as Record<string, unknown>).voters : undefined;
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

/** A cluster of kv-server processes on loopback. */
export class KvCluster {
  readonly root: string;
  readonly specs = new Map<string, KvNodeSpec>();
  readonly procs = new Map<string, KvProcess>();
  readonly client: KvClient;
  clusterId = '';
  #ownRoot: boolean;
  #all: KvProcess[] = [];

  private constructor(root: string, ownRoot: boolean, specs: KvNodeSpec[]) {
    this.root = root;
    this.#ownRoot = ownRoot;
    for (const s of specs) this.specs.set(s.id, s);
    this.client = new KvClient(Object.fromEntries(specs.map((s) => [s.id, s.http])));
  }

  /** Allocates ports and directories; starts nothing. */
  static async create(opts: KvClusterOptions = {}): Promise<KvCluster> {
    const ids = opts.ids ?? ['n1', 'n2', 'n3'];
    const root = opts.root ?? (await mkdtemp(join(tmpdir(), 'sider-kv-')));
    const specs: KvNodeSpec[] = [];
    for (const id of ids) {
      specs.push({
        id,
        raft: `127.0.0.1:${await freePort()}`,
        http: `127.0.0.1:${await freePort()}`,
        dir: join(root, id),
        ...(opts.key !== undefined ? { key: opts.key } : {}),
        ...(opts.tickMs !== undefined ? { tickMs: opts.tickMs } : {}),
        ...(opts.extraArgs ? { extraArgs: opts.extraArgs } : {}),
        ...(opts.nodeArgs ? { nodeArgs: opts.nodeArgs } : {}),
      });
    }
    return new KvCluster(root, opts.root === undefined, specs);
  }

  /** Creates and forms a cluster: the first node bootstraps, the others join one at a time. */
  static async start(opts: KvClusterOptions = {}): Promise<KvCluster> {
    const c = await KvCluster.create(opts);
    try {
      await c.form();
    } catch (err) {
      await c.teardown();
      throw err;
    }
    return c;
  }

  get ids(): string[] {
    return [...this.specs.keys()];
  }

  spec(id: string): KvNodeSpec {
    const s = this.specs.get(id);
    if (!s) throw new Error(`unknown node ${id}`);
    return s;
  }

  /** Bootstraps the first node, then starts and joins each other node until all are voters. */
  async form(deadlineMs = 30_000): Promise<void> {
    const [first, ...rest] = this.ids;
    const firstSpec = this.spec(first!);
    firstSpec.bootstrap = true;
    await this.startNode(first!);
    await waitFor(`${first} leads`, async () => (await this.client.status(first!)).role === 'leader', deadlineMs);
    this.clusterId = String((await this.client.status(first!)).clusterId);
    for (const id of rest) {
      const spec = this.spec(id);
      spec.clusterId = this.clusterId;
      await this.startNode(id);
      await this.client.toLeader('POST', '/join', { id, addr: spec.raft }, { deadlineMs });
      await this.waitVoters(this.ids.slice(0, this.ids.indexOf(id) + 1), deadlineMs);
    }
  }

  async startNode(id: string, timeoutMs = 15_000): Promise<KvProcess> {
    const old = this.procs.get(id);
    if (old?.running) throw new Error(`${id} is already running (pid ${old.pid})`);
    const p = new KvProcess(this.spec(id));
    this.#all.push(p);
    this.procs.set(id, p);
    try {
      await p.ready(timeoutMs);
    } catch (err) {
      await p.kill9();
      throw err;
    }
    return p;
  }

  async kill9(id: string): Promise<void> {
    await this.procs.get(id)?.kill9();
  }

  async restart(id: string): Promise<KvProcess> {
    await this.kill9(id);
    return this.startNode(id);
  }

  /** Waits until some running node says it leads with every listed voter; returns its id. */
  async waitVoters(voters: string[], deadlineMs = 20_000): Promise<string> {
    const want = [...voters].sort().join(',');
    return waitFor(
      `voters ${want}`,
      async () => {
        for (const id of this.ids) {
          if (!this.procs.get(id)?.running) continue;
          const st = await this.client.status(id).catch(() => null);
          if (st?.role !== 'leader') continue;
          if (votersOf(st).sort().join(',') === want) return id;
        }
        return '';
      },
      deadlineMs,
      50,
    );
  }

  /** Waits for a running node that says it leads (and has committed in its term); returns its id. */
  async waitLeader(deadlineMs = 20_000, exclude: string[] = []): Promise<string> {
    return waitFor(
      'a leader',
      async () => {
        for (const id of this.ids) {
          if (exclude.includes(id) || !this.procs.get(id)?.running) continue;
          const st = await this.client.status(id).catch(() => null);
          if (st?.role === 'leader') return id;
        }
        return '';
      },
      deadlineMs,
      50,
    );
  }

  /** Stderr of every process started, for failure messages. */
  logs(tail = 3000): string {
    return this.#all.map((p) => `--- ${p.spec.id} (pid ${p.pid})\n${p.stderr.slice(-tail)}`).join('\n');
  }

  /**
   * Kills every process this cluster started (SIGTERM first with `graceMs`, else straight -9),
   * closes the client, removes its temp directory.
   */
  async teardown(graceMs = 0): Promise<void> {
    await Promise.all(this.#all.map((p) => (graceMs > 0 ? p.stop(graceMs) : p.kill9())));
    await this.client.close().catch(() => {});
    if (this.#ownRoot) await rm(this.root, { recursive: true, force: true });
  }
}
