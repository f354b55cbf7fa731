// One chaos run: N real `sider server` processes, each in its own network namespace (test/support/
// netlab.ts), formed with -bootstrap-expect/-retry-join as in production; the workload of
// workload.ts against random servers; the faults of a schedule (schedule.ts) applied one after the
// other, each healed and the cluster given time to recover before the next. Then everything is
// healed, the cluster must converge within a bound, and the run checks:
//   - the recorded history is linearizable (per `<service>/<instance>` key, test/support/
//     linearizability.ts);
//   - every acknowledged registration of the ledger (instances registered once, never touched
//     again) is on every server, and nothing that was never sent;
//   - no client saw X-Consul-Index go backwards for a service;
//   - every server answers and all agree (stale reads identical) within `convergeMs` of the last heal,
//     and after each fault the cluster answered again within the same bound;
//   - no server exited by itself.
// Only processes started here are signalled, by PID.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkLinearizable, kvModel } from '../support/linearizability.ts';
import { HOST_HTTP_PORT, HOST_RAFT_PORT, NetLab } from '../support/netlab.ts';
import { signRequest } from '../../src/cluster-auth.ts';
import { SiderHttp, SiderProcess } from '../support/server-process.ts';
import type { SiderServerSpec } from '../support/server-process.ts';
import { ledgerProblems } from './checks.ts';
import { describeStep } from './schedule.ts';
import type { FaultStep, Schedule, Target } from './schedule.ts';
import { serviceName, sleep, Workload } from './workload.ts';
import type { WorkloadStats } from './workload.ts';

export interface ChaosOptions {
  schedule: Schedule;
  workers?: number;
  services?: number;
  idsPerService?: number;
  /** Bound on recovery after each fault and on convergence after the last (default 30 s). */
  convergeMs?: number;
  /** Budget of the linearizability search (default 120 s). */
  checkTimeoutMs?: number;
  /** Progress lines (each fault as it is applied, with whom it hit). */
  log?: (line: string) => void;
  /** Extra flags for every server. */
  extraArgs?: string[];
}

export interface ChaosReport {
  ok: boolean;
  failures: string[];
  /** What each step did, resolved ("kill -9 the leader (s2)"), with its measured recovery time. */
  applied: string[];
  stats: WorkloadStats;
  operations: number;
  /** Acknowledged ledger registrations found on every server at the end. */
  ledgerChecked: number;
  recoveryMs: number[];
  convergenceMs: number;
  checkMs: number;
  /** Server output tails, for a failed run. */
  logs: string;
}

const KEY = 'chaos-cluster-key-0123456789abcdef';
const PROBE_SERVICE = serviceName(0);

type NodeState = 'up' | 'paused' | 'down';

/** The servers of one run and what was done to them. */
class ChaosCluster {
  readonly lab: NetLab;
  readonly http = new SiderHttp();
  readonly specs: SiderServerSpec[];
  readonly procs: SiderProcess[] = [];
  readonly state: NodeState[];
  /** Every process started, and whether its end was our doing. */
  readonly #all: { p: SiderProcess; killed: boolean }[] = [];

  readonly #root: string;
  /** Replacements so far (each new server gets a new Raft ID: a removed one is never reused). */
  #replaced = 0;

  constructor(lab: NetLab, root: string, extraArgs: string[]) {
    this.lab = lab;
    this.#root = root;
    const n = lab.hosts.length;
    const https = lab.hosts.map((_, i) => `${lab.addr(i)}:${HOST_HTTP_PORT}`);
    this.specs = lab.hosts.map((ns, i) => ({
      id: `s${i + 1}`,
      http: https[i]!,
      raft: `${lab.addr(i)}:${HOST_RAFT_PORT}`,
      dir: join(root, `s${i + 1}`),
      clusterKey: KEY,
      netns: ns,
      extraArgs: ['-bootstrap-expect', String(n), ...https.filter((_, j) => j !== i).flatMap((a) => ['-retry-join', a]), '-dns', '127.0.0.1:8600', ...extraArgs],
    }));
    this.state = this.specs.map(() => 'down');
  }

  get size(): number {
    return this.specs.length;
  }

  name(i: number): string {
    return this.specs[i]!.id;
  }

  /**
   * Takes server i out of the configuration (signed /v1/raft/remove to the leader, retried while
   * leadership settles), kills it and wipes its data; `start(i)` then runs a fresh server with a new
   * ID on the same host, which finds the cluster through -retry-join and joins it.
   */
  async replace(i: number): Promise<string> {
    const old = this.specs[i]!.id;
    const body = Buffer.from(JSON.stringify({ ID: old }));
    const deadline = Date.now() + 20_000;
    let last = '';
    for (;;) {
      const l = await this.leader();
      if (l !== null) {
        const r = await this.http
          .call(this.addr(l), 'PUT', '/v1/raft/remove', { body: { ID: old }, headers: signRequest(KEY, 'PUT', '/v1/raft/remove', body), timeoutMs: 10_000 })
          .catch((err: Error) => ({ status: 0, text: err.message }));
        if (r.status === 200) break;
        last = `${r.status} ${r.text.trim()}`;
      }
      if (Date.now() > deadline) throw new Error(`could not remove ${old}: ${last || 'no leader'}`);
      await sleep(200);
    }
    await this.kill9(i);
    await rm(this.specs[i]!.dir, { recursive: true, force: true });
    const id = `s${i + 1}r${++this.#replaced}`;
    this.specs[i] = { ...this.specs[i]!, id, dir: join(this.#root, id) };
    return id;
  }

  /** The voters a running server's configuration lists (sorted), or null. */
  async voters(): Promise<{ voters: string[]; all: string[] } | null> {
    for (let i = 0; i < this.size; i++) {
      const servers = await this.http.raftServers(this.addr(i)).catch(() => null);
      if (servers) return { voters: servers.filter((x) => x.Voter).map((x) => x.ID).sort(), all: servers.map((x) => x.ID).sort() };
    }
    return null;
  }

  addr(i: number): string {
    return this.specs[i]!.http;
  }

  start(i: number): void {
    if (this.state[i] !== 'down') throw new Error(`${this.name(i)} is ${this.state[i]}`);
    const p = new SiderProcess(this.specs[i]!);
    this.procs[i] = p;
    this.#all.push({ p, killed: false });
    this.state[i] = 'up';
  }

  async kill9(i: number): Promise<void> {
    const p = this.procs[i];
    if (!p || this.state[i] === 'down') return;
    const rec = this.#all.find((r) => r.p === p);
    if (rec) rec.killed = true;
    await p.kill9();
    this.state[i] = 'down';
  }

  pause(i: number): void {
    if (this.state[i] !== 'up') return;
    process.kill(this.procs[i]!.pid, 'SIGSTOP');
    this.state[i] = 'paused';
  }

  resume(i: number): void {
    if (this.state[i] !== 'paused') return;
    process.kill(this.procs[i]!.pid, 'SIGCONT');
    this.state[i] = 'up';
  }

  /** The index of the server most running servers name as leader, or null. */
  async leader(): Promise<number | null> {
    const votes = new Map<string, number>();
    await Promise.all(
      this.specs.map(async (_, i) => {
        if (this.state[i] !== 'up') return;
        const l = await this.http.leader(this.addr(i)).catch(() => '');
        if (l !== '') votes.set(l, (votes.get(l) ?? 0) + 1);
      }),
    );
    let best: string | null = null;
    for (const [l, v] of votes) if (best === null || v > votes.get(best)!) best = l;
    const i = this.specs.findIndex((s) => s.raft === best);
    return i >= 0 && this.state[i] === 'up' ? i : null;
  }

  /** Processes that ended without being killed here. */
  crashed(): string[] {
    return this.#all
      .filter((r) => !r.killed && !r.p.running)
      .map((r) => `${r.p.spec.id} (pid ${r.p.pid}) exited by itself:\n${r.p.output.slice(-3000)}`);
  }

  logs(tail = 4000): string {
    return this.#all.map((r) => `--- ${r.p.spec.id} (pid ${r.p.pid}, ${r.p.running ? 'running' : 'exited'})\n${r.p.output.slice(-tail)}`).join('\n');
  }

  /** For a signal handler: SIGKILL every process still running, synchronously. */
  killAllSync(): void {
    for (const r of this.#all) {
      if (!r.p.running) continue;
      r.killed = true;
      try {
        process.kill(r.p.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }

  async teardown(): Promise<void> {
    for (let i = 0; i < this.size; i++) if (this.state[i] === 'paused') this.resume(i);
    await Promise.all(
      this.#all.map(async (r) => {
        r.killed = true;
        await r.p.kill9();
      }),
    );
    await this.http.close().catch(() => {});
  }
}

/** Applies one step and returns what it did and how to undo it. */
async function applyStep(c: ChaosCluster, step: FaultStep): Promise<{ what: string; heal: () => Promise<void> }> {
  const n = c.size;
  const all = Array.from({ length: n }, (_, i) => i);
  const resolve = async (t: Target): Promise<number> => {
    if (t !== 'leader') return t;
    const l = await c.leader();
    return l ?? all.find((i) => c.state[i] === 'up') ?? 0;
  };
  const name = (i: number): string => c.name(i);
  switch (step.kind) {
    case 'kill': {
      const i = await resolve(step.node);
      await c.kill9(i);
      return { what: `killed ${name(i)}`, heal: async () => c.start(i) };
    }
    case 'pause': {
      const i = await resolve(step.node);
      c.pause(i);
      return { what: `paused ${name(i)}`, heal: async () => c.resume(i) };
    }
    case 'partition':
      c.lab.split(step.side, step.rest);
      return { what: `cut ${c.lab.blocked().length} directed links`, heal: async () => c.lab.heal() };
    case 'one-way': {
      const from = await resolve(step.from);
      const to = step.to === 'others' ? all.filter((i) => i !== from) : step.to.filter((i) => i !== from);
      for (const x of to) c.lab.block(from, x);
      return { what: `${name(from)} ↛ {${to.map(name).join(',')}}`, heal: async () => c.lab.heal() };
    }
    case 'isolate-leader': {
      const l = await resolve('leader');
      c.lab.split([l], all.filter((i) => i !== l));
      return { what: `isolated ${name(l)}`, heal: async () => c.lab.heal() };
    }
    case 'bridge':
      c.lab.split(step.left, step.right);
      return { what: `blocked ${c.lab.blocked().join(' ')}`, heal: async () => c.lab.heal() };
    case 'replace': {
      const i = await resolve(step.node);
      const was = name(i);
      const id = await c.replace(i);
      return { what: `removed and wiped ${was}; ${id} takes its place`, heal: async () => c.start(i) };
    }
    case 'restart-all':
      await Promise.all(all.map((i) => c.kill9(i)));
      return {
        what: 'killed every server',
        heal: async () => {
          for (const i of all) c.start(i);
        },
      };
  }
}

/** Waits until every server answers a default-consistency read; returns the time taken, or null at the bound. */
async function waitAnswering(c: ChaosCluster, boundMs: number): Promise<number | null> {
  const t0 = performance.now();
  while (performance.now() - t0 < boundMs) {
    const ok = await Promise.all(
      c.specs.map((_, i) =>
        c.http
          .call(c.addr(i), 'GET', `/v1/health/service/${PROBE_SERVICE}`, { timeoutMs: 2_000 })
          .then((r) => r.status === 200)
          .catch(() => false),
      ),
    );
    if (ok.every(Boolean)) return performance.now() - t0;
    await sleep(100);
  }
  return null;
}

export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  const { schedule } = opts;
  const log = opts.log ?? ((): void => {});
  const convergeMs = opts.convergeMs ?? 30_000;
  const failures: string[] = [];
  const applied: string[] = [];
  const recoveryMs: number[] = [];
  const root = await mkdtemp(join(tmpdir(), 'sider-chaos-'));
  const lab = NetLab.create(schedule.nodes);
  const cluster = new ChaosCluster(lab, root, opts.extraArgs ?? []);
  // Interrupted (Ctrl-C, or tap's timeout): no server may outlive the run, no namespace stay behind.
  const onSignal = (sig: NodeJS.Signals): void => {
    cluster.killAllSync();
    lab.destroySync();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const services = opts.services ?? 3;
  const idsPerService = opts.idsPerService ?? 4;
  const workload = new Workload({
    servers: cluster.specs.map((s) => s.http),
    seed: schedule.seed,
    workers: opts.workers ?? 6,
    services,
    idsPerService,
    ttl: '60s',
  });
  let convergenceMs = NaN;
  let checkMs = 0;
  let ledgerChecked = 0;
  let logs = '';
  try {
    log(`servers s1..s${schedule.nodes} in namespaces ${lab.hosts.join(', ')} on ${lab.subnet}.0/24`);
    for (let i = 0; i < cluster.size; i++) cluster.start(i);
    const formed = await waitAnswering(cluster, 60_000);
    if (formed === null) throw new Error(`the cluster did not form within 60 s\n${cluster.logs()}`);
    log(`formed in ${Math.round(formed)} ms; load starts`);

    workload.start();
    const t0 = performance.now();
    for (const step of schedule.steps) {
      const wait = step.atMs - (performance.now() - t0);
      if (wait > 0) await sleep(wait);
      const started = performance.now() - t0;
      const { what, heal } = await applyStep(cluster, step);
      log(`${describeStep(step)} → ${what} at t=${(started / 1000).toFixed(1)}s`);
      await sleep(step.holdMs);
      await heal();
      const rec = await waitAnswering(cluster, convergeMs);
      const line = `${describeStep(step)} → ${what}; ${rec === null ? `NOT answering ${convergeMs} ms after healing` : `every server answered ${Math.round(rec)} ms after healing`}`;
      applied.push(line);
      if (rec === null) {
        failures.push(line);
        break;
      }
      recoveryMs.push(rec);
      log(`  recovered in ${Math.round(rec)} ms`);
    }
    const rest = schedule.durationMs - (performance.now() - t0);
    if (rest > 0 && failures.length === 0) await sleep(rest);

    // Everything healed already; convergence: every server answers and all hold the same state.
    const tc = performance.now();
    let agreed = false;
    while (performance.now() - tc < convergeMs) {
      const snaps = await Promise.all(cluster.specs.map((s) => workload.snapshot(s.http)));
      if (snaps.every((m) => m !== null) && snaps.every((m) => sameMap(m!, snaps[0]!))) {
        agreed = true;
        break;
      }
      await sleep(200);
    }
    // And the configuration is exactly the current servers, all voters (replaced ones gone).
    const want = cluster.specs.map((x) => x.id).sort();
    let conf: { voters: string[]; all: string[] } | null = null;
    while (performance.now() - tc < convergeMs) {
      conf = await cluster.voters();
      if (conf && conf.voters.join() === want.join() && conf.all.join() === want.join()) break;
      await sleep(200);
    }
    convergenceMs = performance.now() - tc;
    await workload.stop();
    if (!agreed) failures.push(`the servers did not converge (stale reads identical) within ${convergeMs} ms of the end`);
    if (!conf || conf.voters.join() !== want.join() || conf.all.join() !== want.join()) {
      failures.push(`the configuration is ${JSON.stringify(conf)}, not exactly the voters ${want.join(',')}, ${convergeMs} ms after the end`);
    }

    // Final reads after the load stopped, one per server, into the history.
    for (let i = 0; i < cluster.size; i++) {
      if (!(await workload.readAll(cluster.addr(i), `final-${cluster.name(i)}`))) failures.push(`final read on ${cluster.name(i)} failed`);
    }

    // Every acknowledged registration survives: the ledger on every server, nothing never sent.
    // (The pool keys' final values are checked by the final reads in the linearizability check.)
    for (let i = 0; i < cluster.size; i++) {
      const held = await workload.ledgerState(cluster.addr(i));
      if (held === null) failures.push(`${cluster.name(i)} did not answer the ledger read`);
      else failures.push(...ledgerProblems(cluster.name(i), workload.ledgerAcked, workload.ledgerTried, held));
    }
    ledgerChecked = workload.ledgerAcked.size;

    failures.push(...workload.violations);
    for (const o of workload.oddities) failures.push(`unexpected answer: ${o}`);
    for (const c of cluster.crashed()) failures.push(c);
    const acked = workload.stats.registers.acked + workload.stats.deregisters.acked;
    if (acked < 20) failures.push(`the load hardly ran: ${acked} acknowledged writes`);

    const tk = performance.now();
    const verdict = checkLinearizable(kvModel, workload.history, { timeoutMs: opts.checkTimeoutMs ?? 120_000 });
    checkMs = performance.now() - tk;
    if (verdict.ok === false) failures.push(`history not linearizable:\n${verdict.witness}`);
    else if (verdict.ok === 'unknown') failures.push(`the linearizability check ran out of time (${Math.round(checkMs)} ms)`);
  } catch (err) {
    failures.push(`run aborted: ${(err as Error).stack ?? String(err)}`);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await workload.close().catch(() => {});
    if (failures.length > 0) logs = cluster.logs();
    await cluster.teardown();
    lab.destroySync();
    await rm(root, { recursive: true, force: true });
  }
  return {
    ok: failures.length === 0,
    failures,
    applied,
    stats: workload.stats,
    operations: workload.history.length,
    ledgerChecked,
    recoveryMs,
    convergenceMs,
    checkMs,
    logs,
  };
}

function sameMap(a: Map<string, string>, b: Map<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}
