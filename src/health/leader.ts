// Health checking on the leader (DESIGN §5): the TTL deadline table and its renewals, the expiry
// scan, renewal checkpoints, probes of HTTP/TCP/gRPC (and, when enabled, script) checks, and
// DeregisterCriticalServiceAfter. Everything starts when this node becomes leader and stops when it
// loses leadership; every status change is a Raft command proposed here.

import { SiderError } from '../../raft/errors.ts';
import type { Logger } from '../../raft/node.ts';
import type { ApplyResult, Check, CheckStatus, HealthStateReader, RegistryCommand, RegistryReader } from '../registry/model.ts';
import { capOutput } from '../registry/state-machine.ts';
import { itemFailure } from '../batch-forwarder.ts';
import { notTtlError } from './renewals.ts';
import type { CheckRenewer, RenewItem, RenewResult } from './renewals.ts';
import { TtlTable, splitTtlKey, ttlKey } from './ttl.ts';
import type { TtlCheckInfo } from './ttl.ts';
import type { ScheduledCheck, TransitionFn } from './types.ts';
import { shiftOldest } from '../../raft/shift-oldest.ts';

/** What the expiry scan writes into a TTL check's Output (Consul's text). */
export const TTL_EXPIRED_OUTPUT = 'TTL expired';

/** The part of CheckScheduler (scheduler.ts) the leader uses. */
export interface ProbeScheduler {
  sync(checks: ScheduledCheck[]): void;
  update(changes: { key: string; check: ScheduledCheck | undefined }[]): void;
  stop(): void;
}

/** Why the leader proposes a health command (for logs and metrics). */
export type HealthProposeReason = 'renewal' | 'ttl-expired' | 'probe' | 'checkpoint' | 'critical-timeout';

export interface LeaderHealthOptions {
  state: RegistryReader & HealthStateReader;
  /** Proposes a command on this node as leader and resolves with what apply() returned. */
  propose: (cmd: RegistryCommand, reason?: HealthProposeReason) => Promise<ApplyResult>;
  /** Resolves once this node, as leader, has applied everything committed before the call (ReadIndex). */
  barrier: () => Promise<void>;
  /** A stored Go duration ("10s") in ms. */
  durationMs: (s: string) => number;
  /** The leader's clock (ms). Default Date.now. */
  now?: () => number;
  /** Expiry scan period (default 200 ms). */
  scanMs?: number;
  /** Checkpoint period (default 1000 ms). */
  checkpointMs?: number;
  /** Time clients get to reach a new leader before it expires anything (default 2000 ms). */
  graceMs?: number;
  /** How often DeregisterCriticalServiceAfter is checked (default 1000 ms). */
  reapMs?: number;
  /**
   * At most one re-sync of the deadline table, the probes and the DeregisterCriticalServiceAfter
   * candidates with the state per this period (default 1000 ms). A re-sync looks only at the checks
   * changed since the last one (the state's takeCheckChanges), at every check only after a restore
   * or a flood of changes. A renewal adds its own check at once; a new check's deadline comes from
   * its replicated registration time, so a late re-sync never delays an expiry by more than this.
   */
  resyncMs?: number;
  /** Builds the probe scheduler (scheduler.ts's CheckScheduler in a server). None = no probes. */
  scheduler?: (onTransition: TransitionFn) => ProbeScheduler;
  /** Whether script (cmd) checks registered through the API are run. */
  enableScriptChecks?: boolean;
  /** Status changes (expiries, probe transitions) in flight at most. Default 1024. */
  maxInFlight?: number;
  /** How long a renewal waits for a just-elected leader to be ready. Default 5000 ms. */
  readyWaitMs?: number;
  /** Run the scan and checkpoint timers (default true; tests call scan() and checkpoint() instead). */
  timers?: boolean;
  log?: Logger;
}

/** Consul's default probe timeout. */
const DEFAULT_PROBE_TIMEOUT_MS = 10_000;
/** Entries per ttlCheckpoint command (keeps one entry well under the transport's message limit). */
const CHECKPOINT_CHUNK = 2048;
/**
 * Changed checks a re-sync takes in one turn of the event loop; the rest follow in later turns
 * (setImmediate), so that a second of registrations (thousands of new checks) does not hold the
 * loop and every request waiting on it for tens of milliseconds: 1 – 4 ms of work per turn here.
 */
export const RESYNC_SLICE = 128;
/** Distinct duration texts #ms remembers. */
const DURATIONS_KEPT = 1024;

interface Pending {
  status: CheckStatus;
  output: string;
  done: Promise<void>;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function notLeader(): SiderError {
  return new SiderError('SIDER_NOT_LEADER', 'this server is not the leader (leadership moved); retry');
}

export class LeaderHealth implements CheckRenewer {
  readonly #o: Required<Omit<LeaderHealthOptions, 'scheduler' | 'log'>> & Pick<LeaderHealthOptions, 'scheduler' | 'log'>;
  readonly #table: TtlTable;
  /** Bumped on every start and stop: async work of an older epoch drops its results. */
  #epoch = 0;
  #active = false;
  #activation: Promise<void> | null = null;
  #leaderSince = 0;
  #timers: NodeJS.Timeout[] = [];
  #scheduler: ProbeScheduler | null = null;
  /** Global index the table and the scheduler were last synced at. */
  #syncedIndex = -1;
  #pending = new Map<string, Pending>();
  #inFlight = 0;
  #checkpointing = false;
  #reaping = new Set<string>();
  /** Critical checks with DeregisterCriticalServiceAfter (ttlKeys) as of the last re-sync: what #reap looks at. */
  #reapable = new Set<string>();
  #lastReap = 0;
  #lastResync = -Infinity;
  /** Changed checks a re-sync has still to look at, in order (a long re-sync goes on in later turns). */
  #resyncPending = new Set<string>();
  #resyncDraining = false;
  /** #ms's answers by text (at most DURATIONS_KEPT; emptied when full). */
  #durations = new Map<string, number | undefined>();
  #closed = false;

  constructor(opts: LeaderHealthOptions) {
    this.#o = {
      now: Date.now,
      scanMs: 200,
      checkpointMs: 1000,
      graceMs: 2000,
      reapMs: 1000,
      resyncMs: 1000,
      enableScriptChecks: false,
      maxInFlight: 1024,
      readyWaitMs: 5000,
      timers: true,
      ...opts,
    };
    this.#table = new TtlTable({ checkpointMs: this.#o.checkpointMs, graceMs: this.#o.graceMs, slackMs: this.#o.scanMs + 300 });
  }

  /** Whether the table is built and the timers run (this node leads and has caught up). */
  get active(): boolean {
    return this.#active;
  }

  /** TTL checks in the deadline table. */
  get ttlChecks(): number {
    return this.#table.size;
  }

  /** Deadline of a TTL check in the table (ms, leader clock); undefined when not there. For tests. */
  deadline(ns: string, checkId: string): number | undefined {
    return this.#table.deadline(ttlKey(ns, checkId));
  }

  /**
   * This node became leader: once it has applied everything committed (its first ReadIndex), the
   * TTL table is built with the failover rule (ttl.ts failoverDeadline), the probes start and the
   * timers run. Idempotent while leading. Resolves when ready (or when leadership ended first).
   */
  start(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#activation) return this.#activation;
    const epoch = ++this.#epoch;
    this.#leaderSince = this.#o.now();
    this.#activation = (async () => {
      // Bounded by leadership: stop() moves the epoch and ends the loop.
      while (epoch === this.#epoch) {
        try {
          await this.#o.barrier();
          break;
        } catch {
          await sleep(50);
        }
      }
      if (epoch !== this.#epoch) return;
      // Everything is built from the whole state: the changes so far are in it.
      this.#o.state.takeCheckChanges();
      this.#table.start(this.#ttlInfos(), this.#leaderSince);
      this.#syncedIndex = this.#o.state.index();
      this.#rebuildReapable();
      if (this.#o.scheduler) {
        this.#scheduler = this.#o.scheduler((key, status, output) => this.#onTransition(epoch, key, status, output));
        this.#syncProbes();
      }
      this.#active = true;
      if (this.#o.timers) this.#timers.push(setInterval(() => this.scan(), this.#o.scanMs), setInterval(() => void this.checkpoint(), this.#o.checkpointMs));
      this.#o.log?.('info', 'health: leader checks started', { ttlChecks: this.#table.size, leaderSince: this.#leaderSince });
    })();
    return this.#activation;
  }

  /** Leadership lost (or the server stops): every timer, probe and in-memory deadline goes. */
  stop(): void {
    this.#epoch++;
    const wasActive = this.#active;
    this.#active = false;
    this.#activation = null;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    this.#scheduler?.stop();
    this.#scheduler = null;
    this.#table.clear();
    this.#pending.clear();
    this.#reaping.clear();
    this.#reapable.clear();
    this.#syncedIndex = -1;
    this.#lastResync = -Infinity;
    this.#resyncPending.clear();
    if (wasActive) this.#o.log?.('info', 'health: leader checks stopped', {});
  }

  close(): void {
    this.#closed = true;
    this.stop();
  }

  // ------------------------------------------------------------------------------- renewals

  /**
   * A TTL renewal (pass/warn/fail/update) on the leader: the deadline moves at once; a Raft entry
   * is written only when the status or output differs from the replicated check (or from a change
   * already on its way), and the promise resolves when it is applied.
   */
  async renew(ns: string, checkId: string, status: CheckStatus, output: string): Promise<void> {
    if (!this.#active) await this.#ready();
    const epoch = this.#epoch;
    let check = this.#o.state.check(ns, checkId);
    if (!check) {
      // Registered through another server a moment ago: look again once everything committed is applied.
      await this.#o.barrier();
      if (epoch !== this.#epoch) throw notLeader();
      check = this.#o.state.check(ns, checkId);
    }
    if (!check || check.Type !== 'ttl') throw notTtlError(checkId);
    const out = capOutput(output);
    const key = ttlKey(ns, checkId);
    if (!this.#table.has(key)) {
      const info = this.#ttlInfo(check);
      if (info) this.#table.add(info);
    }
    this.#table.renew(key, this.#o.now());
    const pending = this.#pending.get(key);
    if (pending) {
      if (pending.status === status && pending.output === out) return pending.done;
    } else if (check.Status === status && check.Output === out) {
      return;
    }
    return this.#setStatus(key, status, out);
  }

  /** The leader side of /v1/internal/renew: one result per renewal, in order. */
  async renewBatch(items: readonly RenewItem[]): Promise<RenewResult[]> {
    return Promise.all(
      items.map(([ns, checkId, status, output]) =>
        this.renew(ns, checkId, status, output).then(
          (): RenewResult => ({ ok: true }),
          itemFailure,
        ),
      ),
    );
  }

  async #ready(): Promise<void> {
    const activation = this.#activation;
    if (!activation) throw notLeader();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([activation, new Promise<void>((r) => (timer = setTimeout(r, this.#o.readyWaitMs)))]);
    } finally {
      clearTimeout(timer);
    }
    if (!this.#active) throw notLeader();
  }

  /** Proposes a status for a check; concurrent renewals with the same status share the proposal. */
  #setStatus(key: string, status: CheckStatus, output: string, reason: HealthProposeReason = 'renewal'): Promise<void> {
    const [ns, checkId] = splitTtlKey(key);
    const done = this.#o.propose({ type: 'checkStatus', ns, checkId, status, output, now: 0 }, reason).then((r) => {
      if (!r.ok) throw r.status === 404 ? notTtlError(checkId) : new SiderError('SIDER_BAD_REQUEST', r.error, { status: r.status });
    });
    const entry: Pending = { status, output, done };
    this.#pending.set(key, entry);
    const clear = (): void => {
      if (this.#pending.get(key) === entry) this.#pending.delete(key);
    };
    done.then(clear, clear);
    return done;
  }

  // ------------------------------------------------------------------------------- timers

  /**
   * The expiry scan (every scanMs): re-syncs with the state if it changed, proposes `critical`
   * "TTL expired" for overdue checks (at most maxInFlight status changes in flight, each check once
   * until renewed), and every reapMs applies DeregisterCriticalServiceAfter.
   */
  scan(): void {
    if (!this.#active) return;
    const now = this.#o.now();
    // Coalesced: at most one re-sync per scan, whatever the number of entries applied meanwhile.
    if (this.#o.state.index() !== this.#syncedIndex && now - this.#lastResync >= this.#o.resyncMs) {
      this.#lastResync = now;
      this.#resync();
    }
    const room = this.#o.maxInFlight - this.#inFlight;
    if (room > 0) {
      for (const key of this.#table.due(now, room)) {
        const [ns, checkId] = splitTtlKey(key);
        const check = this.#o.state.check(ns, checkId);
        if (!check || check.Type !== 'ttl') continue;
        if (!this.#pending.has(key) && check.Status === 'critical' && check.Output === TTL_EXPIRED_OUTPUT) continue;
        this.#inFlight++;
        this.#setStatus(key, 'critical', TTL_EXPIRED_OUTPUT, 'ttl-expired')
          .catch((err: unknown) => {
            this.#table.retry(key);
            this.#o.log?.('debug', 'health: TTL expiry not applied', { ns, checkId, error: (err as Error).message });
          })
          .finally(() => this.#inFlight--);
      }
    }
    if (now - this.#lastReap >= this.#o.reapMs) {
      this.#lastReap = now;
      this.#reap(now);
    }
  }

  /** Proposes the renewals made since the last checkpoint (nothing when there were none). Every checkpointMs. */
  async checkpoint(): Promise<void> {
    if (!this.#active || this.#checkpointing) return;
    const epoch = this.#epoch;
    this.#checkpointing = true;
    try {
      for (;;) {
        const entries = this.#table.takeCheckpoint(CHECKPOINT_CHUNK);
        if (entries.length === 0) return;
        try {
          await this.#o.propose({ type: 'ttlCheckpoint', entries, now: 0 }, 'checkpoint');
        } catch (err) {
          if (epoch === this.#epoch) this.#table.requeue(entries);
          this.#o.log?.('debug', 'health: TTL checkpoint not written', { error: (err as Error).message });
          return;
        }
        if (epoch !== this.#epoch || entries.length < CHECKPOINT_CHUNK) return;
      }
    } finally {
      this.#checkpointing = false;
    }
  }

  /**
   * DeregisterCriticalServiceAfter, from the replicated "status since" time (survives failover).
   * Looks only at the critical checks that have one (kept by the re-sync), read afresh from the state.
   */
  #reap(now: number): void {
    for (const key of this.#reapable) {
      const [keyNs, checkId] = splitTtlKey(key);
      const c = this.#o.state.check(keyNs, checkId);
      if (!c || c.Status !== 'critical' || c.DeregisterCriticalServiceAfter === '') {
        this.#reapable.delete(key);
        continue;
      }
      const ns = c.Namespace;
      const limit = this.#ms(c.DeregisterCriticalServiceAfter);
      if (limit === undefined) continue;
      const since = this.#o.state.checkTimes(ns, c.CheckID)?.statusSince || this.#leaderSince;
      if (now - since <= limit) continue;
      const instanceKey = `${ns}\u0000${c.ServiceName}\u0000${c.ServiceID}`;
      if (this.#reaping.has(instanceKey)) continue;
      this.#reaping.add(instanceKey);
      const epoch = this.#epoch;
      this.#o.log?.('info', 'health: deregistering an instance critical for longer than DeregisterCriticalServiceAfter', {
        ns,
        service: c.ServiceName,
        id: c.ServiceID,
        checkId: c.CheckID,
        after: c.DeregisterCriticalServiceAfter,
      });
      this.#o
        .propose({ type: 'deregister', ns, service: c.ServiceName, id: c.ServiceID, now: 0 }, 'critical-timeout')
        .catch((err: unknown) => this.#o.log?.('warn', 'health: deregistration failed', { ns, id: c.ServiceID, error: (err as Error).message }))
        .finally(() => {
          if (epoch === this.#epoch) this.#reaping.delete(instanceKey);
        });
    }
  }

  // ------------------------------------------------------------------------------- probes

  #onTransition(epoch: number, key: string, status: CheckStatus, output: string): void {
    if (epoch !== this.#epoch || !this.#active) return;
    const [ns, checkId] = splitTtlKey(key);
    const check = this.#o.state.check(ns, checkId);
    if (!check || check.Type === 'ttl' || check.Type === 'maintenance') return;
    const out = capOutput(output);
    if (check.Status === status && check.Output === out && !this.#pending.has(key)) return;
    this.#inFlight++;
    this.#setStatus(key, status, out, 'probe')
      .catch((err: unknown) => this.#o.log?.('debug', 'health: probe transition not applied', { ns, checkId, error: (err as Error).message }))
      .finally(() => this.#inFlight--);
  }

  #resync(): void {
    this.#syncedIndex = this.#o.state.index();
    const changes = this.#o.state.takeCheckChanges();
    if (changes.all) {
      // Everything is read afresh: what an unfinished re-sync had left is in it.
      this.#resyncPending.clear();
      this.#table.sync(this.#ttlInfos());
      this.#rebuildReapable();
      this.#syncProbes();
      return;
    }
    // A key still pending keeps its place: the look reads the check's state as it is then.
    for (const key of changes.keys) this.#resyncPending.add(key);
    this.#drainResync();
  }

  /**
   * Looks at up to RESYNC_SLICE pending checks now, and at the rest in later turns of the event
   * loop; a later re-sync (scan) adds to the same set. Ends when leadership does (stop() empties
   * it).
   */
  #drainResync(): void {
    const keys: string[] = [];
    while (keys.length < RESYNC_SLICE) {
      const key = shiftOldest(this.#resyncPending);
      if (key === undefined) break;
      keys.push(key);
    }
    if (this.#resyncPending.size > 0 && !this.#resyncDraining) {
      this.#resyncDraining = true;
      setImmediate(() => {
        this.#resyncDraining = false;
        if (this.#active && this.#resyncPending.size > 0) this.#drainResync();
      });
    }
    this.#resyncKeys(keys);
  }

  #resyncKeys(keys: readonly string[]): void {
    const probes: { key: string; check: ScheduledCheck | undefined }[] = [];
    for (const key of keys) {
      const [ns, checkId] = splitTtlKey(key);
      const c = this.#o.state.check(ns, checkId);
      this.#table.update(key, c && this.#ttlInfo(c));
      if (c) this.#trackReapable(key, c);
      else this.#reapable.delete(key);
      if (this.#scheduler) probes.push({ key, check: c && this.#scheduled(c) });
    }
    if (this.#scheduler && probes.length > 0) {
      try {
        this.#scheduler.update(probes);
      } catch (err) {
        this.#o.log?.('error', 'health: probe scheduler refused the checks', { error: (err as Error).message });
      }
    }
  }

  /** The DeregisterCriticalServiceAfter candidates from every check (on taking over, after a restore). */
  #rebuildReapable(): void {
    this.#reapable.clear();
    this.#o.state.forEachCheck((c) => this.#trackReapable(ttlKey(c.Namespace, c.CheckID), c));
  }

  #trackReapable(key: string, c: Check): void {
    if (c.Status === 'critical' && c.DeregisterCriticalServiceAfter !== '') this.#reapable.add(key);
    else this.#reapable.delete(key);
  }

  #syncProbes(): void {
    if (!this.#scheduler) return;
    const probes: ScheduledCheck[] = [];
    this.#o.state.forEachCheck((c) => {
      const s = this.#scheduled(c);
      if (s) probes.push(s);
    });
    try {
      this.#scheduler.sync(probes);
    } catch (err) {
      this.#o.log?.('error', 'health: probe scheduler refused the checks', { error: (err as Error).message });
    }
  }

  #scheduled(c: Check): ScheduledCheck | undefined {
    const type = c.Type;
    if (type !== 'http' && type !== 'tcp' && type !== 'grpc' && !(type === 'cmd' && this.#o.enableScriptChecks)) return undefined;
    const intervalMs = this.#ms(c.Interval);
    if (intervalMs === undefined) return undefined;
    const timeoutMs = c.Timeout === '' ? DEFAULT_PROBE_TIMEOUT_MS : (this.#ms(c.Timeout) ?? DEFAULT_PROBE_TIMEOUT_MS);
    const probe: ScheduledCheck['probe'] = { type };
    if (type === 'http') {
      probe.http = c.HTTP;
      if (c.Method !== '') probe.method = c.Method;
      if (Object.keys(c.Header).length > 0) probe.header = c.Header;
      if (c.TLSSkipVerify) probe.tlsSkipVerify = true;
    } else if (type === 'tcp') {
      probe.tcp = c.TCP;
    } else if (type === 'grpc') {
      probe.grpc = c.GRPC;
      if (c.GRPCUseTLS) probe.grpcUseTls = true;
      if (c.TLSSkipVerify) probe.tlsSkipVerify = true;
    } else {
      probe.args = c.Args;
    }
    return {
      key: ttlKey(c.Namespace, c.CheckID),
      probe,
      intervalMs,
      timeoutMs,
      successBeforePassing: Math.max(1, c.SuccessBeforePassing),
      failuresBeforeCritical: Math.max(1, c.FailuresBeforeCritical),
      status: c.Status,
    };
  }

  #ttlInfos(): TtlCheckInfo[] {
    const out: TtlCheckInfo[] = [];
    this.#o.state.forEachCheck((c) => {
      const info = this.#ttlInfo(c);
      if (info) out.push(info);
    });
    return out;
  }

  #ttlInfo(c: Check): TtlCheckInfo | undefined {
    if (c.Type !== 'ttl') return undefined;
    const ttlMs = this.#ms(c.TTL);
    if (ttlMs === undefined) return undefined;
    const times = this.#o.state.checkTimes(c.Namespace, c.CheckID);
    // 0 = never known (a snapshot from before health checking): count from now.
    const renewedAt = times && times.renewedAt > 0 ? times.renewedAt : this.#o.now();
    return { ns: c.Namespace, checkId: c.CheckID, ttlMs, renewedAt, renewIntervalMs: times?.renewIntervalMs ?? 0 };
  }

  /**
   * A stored duration in ms, or undefined when it is not a positive one (never for stored checks).
   * Remembered by text: checks share a few TTLs and intervals, and a re-sync looks at thousands.
   */
  #ms(s: string): number | undefined {
    const known = this.#durations.get(s);
    if (known !== undefined || this.#durations.has(s)) return known;
    let ms: number | undefined;
    try {
      const v = this.#o.durationMs(s);
      ms = Number.isFinite(v) && v > 0 ? v : undefined;
    } catch {
      ms = undefined;
    }
    if (this.#durations.size >= DURATIONS_KEPT) this.#durations.clear();
    this.#durations.set(s, ms);
    return ms;
  }
}
