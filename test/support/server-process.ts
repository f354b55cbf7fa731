// Real `sider server` child processes for integration tests: spawn on free loopback ports with temp
// data directories, wait for a leader or for voter status, kill -9 / SIGTERM / restart, and a
// three-server cluster (bootstrap + two joins, cluster key in the environment). Only PIDs started
// here are ever signalled.

import { spawn } from 'node:child_process';
import type { ChildProcessByStdio } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { SERVER_NODE_FLAGS } from '../../src/node-flags.ts';
import { freePort, waitFor } from './ports.ts';

export const SIDER_BIN = fileURLToPath(new URL('../../bin/sider.ts', import.meta.url));
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * node's arguments for `bin/sider.ts <args>`: first the flags every launcher gives a server
 * (src/node-flags.ts), so tests and benchmarks run what ships; then `nodeArgs` (a benchmark's own),
 * which win over them.
 */
export function siderNodeArgv(args: readonly string[], nodeArgs: readonly string[] = []): string[] {
  return [...SERVER_NODE_FLAGS, ...nodeArgs, SIDER_BIN, ...args];
}
/** Keep this much of a child's output for failure messages. */
const OUTPUT_KEEP = 64 * 1024;

export interface SiderServerSpec {
  /** -raft-id (also the node name). */
  id: string;
  /** -http host:port. */
  http: string;
  /** -raft-bind host:port. */
  raft: string;
  /** -raft-dir. */
  dir: string;
  bootstrap?: boolean;
  /** -join: HTTP address of a member. */
  join?: string;
  /** Passed as SIDER_CLUSTER_KEY in the environment, never on the command line. */
  clusterKey?: string;
  extraArgs?: string[];
  /** Run inside this network namespace (`ip netns exec`; the PID is still the server's own). */
  netns?: string;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The argv after `node bin/sider.ts`. */
export function serverArgs(spec: SiderServerSpec): string[] {
  const args = ['server', '-http', spec.http, '-raft-bind', spec.raft, '-raft-id', spec.id, '-raft-dir', spec.dir];
  if (spec.bootstrap) args.push('-bootstrap');
  if (spec.join) args.push('-join', spec.join);
  // DNS defaults to 127.0.0.1:8600: test servers take a free port unless the test picks one.
  if (!(spec.extraArgs ?? []).includes('-dns')) args.push('-dns', '127.0.0.1:0');
  args.push(...(spec.extraArgs ?? []));
  return args;
}

/**
 * One `node bin/sider.ts <args>` child process (server, agent, CLI). Its stdout and stderr are kept
 * (the tail, when long) for failure messages and log assertions.
 */
export class SiderChild {
  readonly child: ChildProcessByStdio<null, Readable, Readable>;
  readonly pid: number;
  readonly exited: Promise<ExitStatus>;
  /** Names the process in error messages. */
  readonly label: string;
  #output = '';
  #exit: ExitStatus | null = null;

  /**
   * `opts.netns` runs it inside that network namespace; `opts.command` runs that command line instead
   * of `node bin/sider.ts <args>` (e.g. a wrapper that ends by exec'ing node, keeping the PID).
   */
  constructor(args: string[], label: string, envExtra: NodeJS.ProcessEnv = {}, opts: { netns?: string; command?: { cmd: string; argv: string[]; cwd?: string } } = {}) {
    this.label = label;
    const env: NodeJS.ProcessEnv = {};
    // Nothing from the test runner's environment configures the child behind the test's back.
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SIDER_')) env[k] = v;
    Object.assign(env, envExtra);
    // `ip netns exec` enters the namespace and then execs node, so the PID is node's own.
    const { netns, command } = opts;
    const nodeArgv = siderNodeArgv(args);
    let [cmd, argv] = netns === undefined ? [process.execPath, nodeArgv] : ['ip', ['netns', 'exec', netns, process.execPath, ...nodeArgv]];
    if (command) [cmd, argv] = [command.cmd, command.argv];
    this.child = spawn(cmd, argv, { cwd: command?.cwd ?? REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env });
    if (this.child.pid === undefined) throw new Error(`could not spawn ${label}`);
    this.pid = this.child.pid;
    const keep = (s: string): void => {
      this.#output += s;
      if (this.#output.length > OUTPUT_KEEP * 2) this.#output = this.#output.slice(-OUTPUT_KEEP);
    };
    this.child.stdout.setEncoding('utf8');
    this.child.stderr.setEncoding('utf8');
    this.child.stdout.on('data', keep);
    this.child.stderr.on('data', keep);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.#exit = { code, signal };
        resolve(this.#exit);
      });
    });
  }

  /** Everything the process printed (the tail, when long). */
  get output(): string {
    return this.#output;
  }

  get running(): boolean {
    return this.#exit === null;
  }

  /** The JSON log lines printed so far (other lines skipped). */
  logLines(): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const line of this.#output.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // a line cut by the tail window
      }
    }
    return out;
  }

  /** Waits for the process to exit by itself; kills it (-9) and rejects if it has not within `ms`. */
  async waitExit(ms = 30_000): Promise<ExitStatus> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`${this.label} (pid ${this.pid}) did not exit within ${ms} ms:\n${this.#output.slice(-4000)}`));
      }, ms);
    });
    try {
      return await Promise.race([this.exited, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGKILL: no chance to flush or close anything. */
  async kill9(): Promise<ExitStatus> {
    if (this.running) this.child.kill('SIGKILL');
    return this.exited;
  }
}

/** One `sider server` child process. */
export class SiderProcess extends SiderChild {
  readonly spec: SiderServerSpec;

  constructor(spec: SiderServerSpec) {
    super(serverArgs(spec), `sider server ${spec.id}`, spec.clusterKey !== undefined ? { SIDER_CLUSTER_KEY: spec.clusterKey } : {}, spec.netns === undefined ? {} : { netns: spec.netns });
    this.spec = spec;
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  async stop(graceMs = 10_000): Promise<ExitStatus> {
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

// ---- HTTP --------------------------------------------------------------------------------------

export interface HttpReply {
  status: number;
  headers: Record<string, string>;
  text: string;
}

export interface CallOptions {
  body?: unknown;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

/** Plain HTTP to Sider servers over one undici Agent; network errors throw, HTTP errors are replies. */
export class SiderHttp {
  readonly #agent = new Agent({ connections: 32, keepAliveTimeout: 5_000 });

  async call(addr: string, method: 'GET' | 'PUT' | 'POST', path: string, opts: CallOptions = {}): Promise<HttpReply> {
    const headers: Record<string, string> = { ...opts.headers };
    let body: string | null = null;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] = 'application/json';
    }
    const res = await request(`http://${addr}${path}`, {
      method,
      headers,
      body,
      dispatcher: this.#agent,
      signal: AbortSignal.timeout(opts.timeoutMs ?? 5_000),
    });
    const text = await res.body.text();
    const flat: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.headers)) flat[k] = Array.isArray(v) ? v.join(', ') : String(v);
    return { status: res.statusCode, headers: flat, text };
  }

  /** A 200's body parsed as JSON; anything else throws with the status and body. */
  async json(addr: string, path: string, timeoutMs = 5_000): Promise<unknown> {
    const r = await this.call(addr, 'GET', path, { timeoutMs });
    if (r.status !== 200) throw new Error(`GET ${path} on ${addr}: HTTP ${r.status} ${r.text.trim()}`);
    return JSON.parse(r.text) as unknown;
  }

  /** The leader's Raft address as this server sees it ('' when none). */
  async leader(addr: string): Promise<string> {
    const v = await this.json(addr, '/v1/status/leader', 2_000);
    return typeof v === 'string' ? v : '';
  }

  /** /v1/operator/raft/configuration (a linearizable read), parsed. */
  async raftServers(addr: string): Promise<{ ID: string; Address: string; Leader: boolean; Voter: boolean }[]> {
    const v = await this.json(addr, '/v1/operator/raft/configuration', 5_000);
    const servers = typeof v === 'object' && v !== null ? (v as Record<string, unknown>).Servers : undefined;
    if (!Array.isArray(servers)) throw new Error(`no Servers in the raft configuration from ${addr}: ${JSON.stringify(v)}`);
    return servers.map((s: unknown) => {
      const o = (typeof s === 'object' && s !== null ? s : {}) as Record<string, unknown>;
      return { ID: String(o.ID), Address: String(o.Address), Leader: o.Leader === true, Voter: o.Voter === true };
    });
  }

  close(): Promise<void> {
    return this.#agent.close();
  }
}

// ---- starting ----------------------------------------------------------------------------------

/** Loopback HTTP and Raft ports and a data directory under `root` for server `id`. */
export async function allocateSpec(root: string, id: string, extra: Partial<SiderServerSpec> = {}): Promise<SiderServerSpec> {
  return {
    id,
    http: `127.0.0.1:${await freePort()}`,
    raft: `127.0.0.1:${await freePort()}`,
    dir: join(root, id),
    ...extra,
  };
}

/** Rejects as soon as `p` exits, with its output; never resolves otherwise. */
function exitedEarly(p: SiderProcess): Promise<never> {
  return p.exited.then((st) => {
    throw new Error(`sider server ${p.spec.id} exited (code ${st.code}, signal ${st.signal}) before it was ready:\n${p.output.slice(-4000)}`);
  });
}

/**
 * Waits until the server answers /v1/status/leader with a leader and, with `voter`, until its own
 * raft configuration lists it as a voter. Rejects early (with its output) if the process exits.
 */
export async function waitReady(p: SiderProcess, http: SiderHttp, opts: { voter?: boolean; timeoutMs?: number } = {}): Promise<void> {
  const ms = opts.timeoutMs ?? 30_000;
  const ready = waitFor(
    `sider server ${p.spec.id} at ${p.spec.http} to know a leader${opts.voter ? ' and be a voter' : ''}`,
    async () => {
      if ((await http.leader(p.spec.http)) === '') return false;
      if (!opts.voter) return true;
      return (await http.raftServers(p.spec.http)).some((s) => s.ID === p.spec.id && s.Voter);
    },
    ms,
    50,
  );
  const early = exitedEarly(p);
  early.catch(() => {});
  try {
    await Promise.race([ready, early]);
  } catch (err) {
    if (p.running) throw new Error(`${(err as Error).message}\n--- output of ${p.spec.id} (pid ${p.pid})\n${p.output.slice(-4000)}`, { cause: err });
    throw err;
  }
}

// ---- cluster -----------------------------------------------------------------------------------

export interface SiderClusterOptions {
  ids?: string[];
  /** Cluster key (SIDER_CLUSTER_KEY) for every server; none = plaintext on loopback. */
  clusterKey?: string;
  /** Extra flags for every server. */
  extraArgs?: string[];
}

/** The part of a tap test that `teardownWith` uses. */
export interface TestScope {
  teardown(fn: () => unknown): void;
  passing(): boolean;
  comment(...message: unknown[]): void;
}

/**
 * Servers on loopback, each with its own data directory under a temp root: the first bootstraps,
 * the others join it by its HTTP address. Restarts reuse the same flags and directory.
 */
export class SiderCluster {
  readonly root: string;
  readonly http = new SiderHttp();
  readonly specs = new Map<string, SiderServerSpec>();
  readonly procs = new Map<string, SiderProcess>();
  /** Every process ever started here (the only ones teardown signals). */
  readonly #all: SiderProcess[] = [];

  private constructor(root: string) {
    this.root = root;
  }

  /** Allocates ports and directories; starts nothing. */
  static async create(opts: SiderClusterOptions = {}): Promise<SiderCluster> {
    const c = new SiderCluster(await mkdtemp(join(tmpdir(), 'sider-srv-')));
    const ids = opts.ids ?? ['s1', 's2', 's3'];
    for (const id of ids) {
      const extra: Partial<SiderServerSpec> = {};
      if (opts.clusterKey !== undefined) extra.clusterKey = opts.clusterKey;
      if (opts.extraArgs) extra.extraArgs = opts.extraArgs;
      c.specs.set(id, await allocateSpec(c.root, id, extra));
    }
    const [first, ...rest] = ids;
    c.spec(first!).bootstrap = true;
    for (const id of rest) c.spec(id).join = c.spec(first!).http;
    return c;
  }

  /** Creates and forms a cluster (bootstrap, then the joiners started together); tears down on failure. */
  static async start(opts: SiderClusterOptions = {}): Promise<SiderCluster> {
    const c = await SiderCluster.create(opts);
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

  spec(id: string): SiderServerSpec {
    const s = this.specs.get(id);
    if (!s) throw new Error(`unknown server ${id}`);
    return s;
  }

  addr(id: string): string {
    return this.spec(id).http;
  }

  running(id: string): boolean {
    return this.procs.get(id)?.running === true;
  }

  /** Starts the bootstrap server, waits for it to lead, then starts every joiner at once. */
  async form(timeoutMs = 30_000): Promise<void> {
    const [first, ...rest] = this.ids;
    await this.startServer(first!, { timeoutMs });
    await Promise.all(rest.map((id) => this.startServer(id, { voter: true, timeoutMs })));
    await this.waitVoters(this.ids, timeoutMs);
  }

  /** Starts (or restarts) `id` with its flags and directory and waits until it is ready. */
  async startServer(id: string, opts: { voter?: boolean; timeoutMs?: number } = {}): Promise<SiderProcess> {
    const p = this.spawn(id);
    try {
      await waitReady(p, this.http, opts);
    } catch (err) {
      await p.kill9();
      throw err;
    }
    return p;
  }

  /** Spawns `id` without waiting for anything. */
  spawn(id: string): SiderProcess {
    const old = this.procs.get(id);
    if (old?.running) throw new Error(`${id} is already running (pid ${old.pid})`);
    const p = new SiderProcess(this.spec(id));
    this.#all.push(p);
    this.procs.set(id, p);
    return p;
  }

  /** Starts a process that is not a member (e.g. a joiner with a wrong key); torn down with the rest. */
  spawnExtra(spec: SiderServerSpec): SiderProcess {
    const p = new SiderProcess(spec);
    this.#all.push(p);
    return p;
  }

  async kill9(id: string): Promise<ExitStatus | undefined> {
    return this.procs.get(id)?.kill9();
  }

  async stop(id: string, graceMs?: number): Promise<ExitStatus | undefined> {
    return this.procs.get(id)?.stop(graceMs);
  }

  /** The ID of the server that running servers name as leader (their answers must agree). */
  async leader(timeoutMs = 20_000): Promise<string> {
    return waitFor(
      'an agreed leader among the running servers',
      async () => {
        const seen = new Set<string>();
        for (const id of this.ids) {
          if (!this.running(id)) continue;
          seen.add(await this.http.leader(this.addr(id)));
        }
        if (seen.size !== 1) return '';
        const [raftAddr] = [...seen];
        return this.ids.find((id) => this.spec(id).raft === raftAddr && this.running(id)) ?? '';
      },
      timeoutMs,
      50,
    );
  }

  /** Waits until a running server's configuration has exactly these voters and no learners. */
  async waitVoters(voters: string[], timeoutMs = 20_000): Promise<void> {
    const want = [...voters].sort().join(',');
    await waitFor(
      `voters ${want}`,
      async () => {
        for (const id of this.ids) {
          if (!this.running(id)) continue;
          const servers = await this.http.raftServers(this.addr(id)).catch(() => null);
          if (!servers) continue;
          const got = servers.filter((s) => s.Voter).map((s) => s.ID).sort().join(',');
          if (got === want && servers.every((s) => s.Voter)) return true;
        }
        return false;
      },
      timeoutMs,
      50,
    );
  }

  /** Output of every process started, for failure messages. */
  logs(tail = 3000): string {
    return this.#all.map((p) => `--- ${p.spec.id} (pid ${p.pid}, ${p.running ? 'running' : 'exited'})\n${p.output.slice(-tail)}`).join('\n');
  }

  /** Tears this cluster down when `t` ends and, if `t` failed, prints what the servers logged. */
  teardownWith(t: TestScope): this {
    t.teardown(() => this.teardown());
    t.teardown(() => {
      if (!t.passing()) t.comment(this.logs());
    });
    return this;
  }

  /** Kills (-9) every process this cluster started, closes the HTTP client, removes the temp root. */
  async teardown(): Promise<void> {
    await Promise.all(this.#all.map((p) => p.kill9()));
    await this.http.close().catch(() => {});
    await rm(this.root, { recursive: true, force: true });
  }
}

/** A temp directory for tests that manage their own processes; removed by the returned function. */
export async function tempRoot(prefix = 'sider-srv-'): Promise<{ root: string; remove: () => Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), prefix));
  return { root, remove: () => rm(root, { recursive: true, force: true }) };
}
