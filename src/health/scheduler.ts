// Runs a set of probe checks on their intervals (one timer for all of them, a bounded number of probes
// in flight, a FIFO of due checks) and turns their results into status transitions through the
// SuccessBeforePassing / FailuresBeforeCritical thresholds. Used by the leader's prober and the agent.
//
// Threshold rules (Consul's StatusHandler, with one deliberate difference):
// - Results fall in two classes, as in Consul: ok (passing, warning) and critical. Each class has a
//   streak counter; a result resets the other class's counter.
// - critical result: the status becomes critical once `failuresBeforeCritical` critical results are
//   in a row.
// - passing result: the status becomes passing once `successBeforePassing` ok results are in a row.
//   Warnings count toward that streak, as in Consul: warning → passing does not restart the count.
// - warning result: from passing the status becomes warning at once (a degradation the service
//   reports itself); from critical it needs the same `successBeforePassing` streak as passing does,
//   because warning is usable (DNS serves it) and leaving critical is what the threshold guards.
// - Difference from Consul: Consul starts both counters at their thresholds, so the first result of a
//   new check applies at once. Here they start at 0: a new (critical) check needs the full streak to
//   become usable, and a scheduler built on a new leader after failover does not flip a passing check
//   on its first failed probe.
// - The caller's `status` (given to sync) is the truth; the scheduler's status moves optimistically
//   when it reports a transition. If the caller's next sync still carries the old status (its write
//   failed or is not applied yet), the scheduler adopts it and the next qualifying result reports the
//   transition again: onTransition may repeat, and the caller should treat it as idempotent.

import type { Logger } from '../../raft/node.ts';
import { SiderError } from '../../raft/errors.ts';
import { canonicalJson } from '../registry/canonical-json.ts';
import type { CheckStatus } from '../registry/model.ts';
import { runProbe as defaultRunProbe } from './probes.ts';
import type { ProbeDefinition, ScheduledCheck, TransitionFn } from './types.ts';

export interface CheckSchedulerOptions {
  onTransition: TransitionFn;
  /** Probes in flight at most (default 64). */
  concurrency?: number;
  /** Whether cmd probes may run (passed to runProbe). */
  allowScripts?: boolean;
  /** Injectable for tests. */
  runProbe?: typeof defaultRunProbe;
  /** Monotonic milliseconds (default performance.now). */
  now?: () => number;
  /** Uniform in [0, 1), for the first-run offsets (default Math.random). */
  random?: () => number;
  /** Where an exception thrown by onTransition is reported (it is caught, never rethrown). */
  log?: Logger;
}

export const DEFAULT_PROBE_CONCURRENCY = 64;
/** setTimeout's largest delay; longer waits re-arm. */
const MAX_TIMER_MS = 2 ** 31 - 1;

type EntryState = 'waiting' | 'queued' | 'blocked' | 'running' | 'dead';

interface Entry {
  readonly key: string;
  /** Canonical form of everything that, when changed, makes the check a new one. */
  readonly sig: string;
  readonly probe: ProbeDefinition;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly successBeforePassing: number;
  readonly failuresBeforeCritical: number;
  status: CheckStatus;
  okStreak: number;
  criticalStreak: number;
  due: number;
  state: EntryState;
  /** Bumped whenever the entry leaves the heap some other way, making its old heap node stale. */
  gen: number;
  abort: AbortController | undefined;
}

interface HeapNode {
  due: number;
  seq: number;
  gen: number;
  entry: Entry;
}

export class CheckScheduler {
  readonly #onTransition: TransitionFn;
  readonly #concurrency: number;
  readonly #allowScripts: boolean;
  readonly #runProbe: typeof defaultRunProbe;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #log: Logger | undefined;

  readonly #entries = new Map<string, Entry>();
  /** Min-heap of waiting entries by (due, seq); nodes of entries that moved on are stale and skipped. */
  #heap: HeapNode[] = [];
  #seq = 0;
  /** Due checks waiting for a probe slot, oldest first. */
  #queue: Entry[] = [];
  #queueHead = 0;
  /** The entry whose probe is in flight, per key (a removed or replaced entry may still be winding down). */
  readonly #running = new Map<string, Entry>();
  #inFlight = 0;
  #timer: NodeJS.Timeout | undefined;
  #timerDue = Infinity;

  constructor(opts: CheckSchedulerOptions) {
    const concurrency = opts.concurrency ?? DEFAULT_PROBE_CONCURRENCY;
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 100_000) {
      throw new SiderError('SIDER_CONFIG', `concurrency must be an integer in [1, 100000], got ${String(concurrency)}`);
    }
    this.#onTransition = opts.onTransition;
    this.#concurrency = concurrency;
    this.#allowScripts = opts.allowScripts === true;
    this.#runProbe = opts.runProbe ?? defaultRunProbe;
    this.#now = opts.now ?? (() => performance.now());
    this.#random = opts.random ?? Math.random;
    this.#log = opts.log;
  }

  /** Checks currently scheduled. */
  get size(): number {
    return this.#entries.size;
  }

  /** Probes in flight now (including those of removed checks still winding down). */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Replaces the set of checks. New keys start (first run at a random point of their interval),
   * missing keys stop, a key whose probe, interval, timeout or thresholds changed restarts as new;
   * an unchanged key keeps its counters and schedule and takes the caller's `status`. Results of
   * probes in flight for stopped or restarted checks are dropped. Throws SIDER_BAD_REQUEST (naming
   * the key and field) before changing anything when a check is malformed.
   */
  sync(checks: readonly ScheduledCheck[]): void {
    const incoming = new Map<string, { check: ScheduledCheck; sig: string }>();
    for (const c of checks) {
      validate(c);
      if (incoming.has(c.key)) throw new SiderError('SIDER_BAD_REQUEST', `check ${JSON.stringify(c.key)}: key appears twice`);
      incoming.set(c.key, { check: c, sig: signature(c) });
    }
    for (const [key, e] of this.#entries) {
      const next = incoming.get(key);
      if (!next || next.sig !== e.sig) this.#remove(e);
    }
    const now = this.#now();
    for (const { check, sig } of incoming.values()) this.#upsert(check, sig, now);
    this.#compactIfStale();
    this.#arm();
  }

  /**
   * What sync does, for the given keys only (the checks whose state changed): a check with
   * `check` undefined stops; any other starts, restarts or takes the new status as in sync. The
   * rest keep running. Validates every check before changing anything, like sync.
   */
  update(changes: readonly { key: string; check: ScheduledCheck | undefined }[]): void {
    const sigs: string[] = [];
    for (const { key, check } of changes) {
      if (!check) continue;
      validate(check);
      if (check.key !== key) throw new SiderError('SIDER_BAD_REQUEST', `check ${JSON.stringify(check.key)}: given under key ${JSON.stringify(key)}`);
      sigs.push(signature(check));
    }
    const now = this.#now();
    let i = 0;
    for (const { key, check } of changes) {
      const e = this.#entries.get(key);
      if (!check) {
        if (e) this.#remove(e);
        continue;
      }
      const sig = sigs[i++]!;
      if (e && e.sig !== sig) this.#remove(e);
      this.#upsert(check, sig, now);
    }
    this.#compactIfStale();
    this.#arm();
  }

  /** A check that is running with the same signature takes the new status; otherwise it starts. */
  #upsert(check: ScheduledCheck, sig: string, now: number): void {
    const e = this.#entries.get(check.key);
    if (e) {
      e.status = check.status;
      return;
    }
    const entry: Entry = {
      key: check.key,
      sig,
      probe: structuredClone(check.probe),
      intervalMs: check.intervalMs,
      timeoutMs: check.timeoutMs,
      successBeforePassing: threshold(check.successBeforePassing),
      failuresBeforeCritical: threshold(check.failuresBeforeCritical),
      status: check.status,
      okStreak: 0,
      criticalStreak: 0,
      due: now + this.#random() * check.intervalMs,
      state: 'waiting',
      gen: 0,
      abort: undefined,
    };
    this.#entries.set(check.key, entry);
    this.#push(entry);
  }

  /** Stops every check and aborts the probes in flight. The scheduler may be given checks again. */
  stop(): void {
    for (const e of this.#entries.values()) this.#remove(e);
    this.#heap = [];
    this.#queue = [];
    this.#queueHead = 0;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerDue = Infinity;
  }

  #remove(e: Entry): void {
    this.#entries.delete(e.key);
    e.state = 'dead';
    e.gen++;
    e.abort?.abort();
  }

  // --- timer and heap -------------------------------------------------------------------------

  #push(e: Entry): void {
    const node: HeapNode = { due: e.due, seq: this.#seq++, gen: e.gen, entry: e };
    const h = this.#heap;
    h.push(node);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(node, h[p]!)) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = node;
  }

  #pop(): HeapNode | undefined {
    const h = this.#heap;
    const top = h[0];
    const last = h.pop();
    if (top === undefined || last === undefined || h.length === 0) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const c = r < h.length && before(h[r]!, h[l]!) ? r : l;
      if (!before(h[c]!, last)) break;
      h[i] = h[c]!;
      i = c;
    }
    h[i] = last;
    return top;
  }

  /** The earliest live node, dropping stale ones on top. */
  #peek(): HeapNode | undefined {
    for (;;) {
      const top = this.#heap[0];
      if (top === undefined || isLive(top)) return top;
      this.#pop();
    }
  }

  /** Rebuilds the heap when stale nodes (of removed checks) outnumber live ones. */
  #compactIfStale(): void {
    if (this.#heap.length <= 2 * this.#entries.size + 1024) return;
    const live = this.#heap.filter(isLive);
    this.#heap = [];
    for (const n of live) this.#push(n.entry);
  }

  #arm(): void {
    const top = this.#peek();
    if (top === undefined) {
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#timerDue = Infinity;
      return;
    }
    if (this.#timer && this.#timerDue <= top.due) return;
    if (this.#timer) clearTimeout(this.#timer);
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, Math.ceil(top.due - this.#now())));
    this.#timerDue = top.due;
    this.#timer = setTimeout(() => this.#fire(), delay);
  }

  #fire(): void {
    this.#timer = undefined;
    this.#timerDue = Infinity;
    const now = this.#now();
    for (;;) {
      const top = this.#peek();
      if (top === undefined || top.due > now) break;
      this.#pop();
      top.entry.state = 'queued';
      this.#queue.push(top.entry);
    }
    this.#pump();
    this.#arm();
  }

  // --- running probes -------------------------------------------------------------------------

  #pump(): void {
    while (this.#inFlight < this.#concurrency && this.#queueHead < this.#queue.length) {
      const e = this.#queue[this.#queueHead++]!;
      if (e.state !== 'queued') continue;
      // A replaced entry of the same key is still winding down: wait for it (never two at once).
      if (this.#running.has(e.key)) {
        e.state = 'blocked';
        continue;
      }
      this.#start(e);
    }
    if (this.#queueHead === this.#queue.length) {
      this.#queue = [];
      this.#queueHead = 0;
    } else if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#queueHead);
      this.#queueHead = 0;
    }
  }

  #start(e: Entry): void {
    e.state = 'running';
    const ctl = new AbortController();
    e.abort = ctl;
    this.#running.set(e.key, e);
    this.#inFlight++;
    let p: Promise<{ status: CheckStatus; output: string }>;
    try {
      p = this.#runProbe(e.probe, { timeoutMs: e.timeoutMs, allowScripts: this.#allowScripts, signal: ctl.signal });
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (r) => this.#finish(e, r.status, r.output),
      (err: unknown) => this.#finish(e, 'critical', `probe failed: ${err instanceof Error ? err.message : String(err)}`),
    );
  }

  #finish(e: Entry, status: CheckStatus, output: string): void {
    this.#inFlight--;
    if (this.#running.get(e.key) === e) this.#running.delete(e.key);
    e.abort = undefined;
    if (e.state === 'running') {
      this.#apply(e, status, output);
      // The entry may have been removed by onTransition calling sync/stop.
      if (e.state === 'running') {
        e.state = 'waiting';
        e.due = Math.max(e.due + e.intervalMs, this.#now());
        this.#push(e);
      }
    } else {
      // A stopped or replaced check: drop the result, release a successor waiting for this key.
      const cur = this.#entries.get(e.key);
      if (cur && cur.state === 'blocked') {
        cur.state = 'queued';
        this.#queue.push(cur);
      }
    }
    this.#pump();
    this.#arm();
  }

  #apply(e: Entry, result: CheckStatus, output: string): void {
    let to: CheckStatus | undefined;
    if (result === 'critical') {
      e.criticalStreak++;
      e.okStreak = 0;
      if (e.status !== 'critical' && e.criticalStreak >= e.failuresBeforeCritical) to = 'critical';
    } else {
      e.okStreak++;
      e.criticalStreak = 0;
      if (result === 'passing') {
        if (e.status !== 'passing' && e.okStreak >= e.successBeforePassing) to = 'passing';
      } else if (e.status === 'passing') {
        to = 'warning';
      } else if (e.status === 'critical' && e.okStreak >= e.successBeforePassing) {
        to = 'warning';
      }
    }
    if (to === undefined) return;
    e.status = to;
    try {
      this.#onTransition(e.key, to, output);
    } catch (err) {
      this.#log?.('error', 'health check transition handler failed', { key: e.key, status: to, err: String(err) });
    }
  }
}

function isLive(n: HeapNode): boolean {
  return n.entry.state === 'waiting' && n.entry.gen === n.gen && n.entry.due === n.due;
}

function before(a: HeapNode, b: HeapNode): boolean {
  return a.due < b.due || (a.due === b.due && a.seq < b.seq);
}

/** Consul's 0 (or an absent value) means 1. */
function threshold(n: number): number {
  return Math.max(1, Math.floor(n));
}

const STATUSES: readonly string[] = ['passing', 'warning', 'critical'];
const PROBE_TYPES: readonly string[] = ['http', 'tcp', 'grpc', 'cmd'];

function validate(c: ScheduledCheck): void {
  const bad = (field: string, why: string): never => {
    throw new SiderError('SIDER_BAD_REQUEST', `check ${JSON.stringify(c?.key)}: ${field} ${why}`);
  };
  if (typeof c !== 'object' || c === null) bad('check', 'must be an object');
  if (typeof c.key !== 'string') bad('key', 'must be a string');
  if (typeof c.probe !== 'object' || c.probe === null || !PROBE_TYPES.includes(c.probe.type)) bad('probe.type', `must be one of ${PROBE_TYPES.join(', ')}`);
  const ms = (field: 'intervalMs' | 'timeoutMs'): void => {
    const v = c[field];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > 7 * 24 * 3600_000) bad(field, `must be a number of milliseconds in (0, 1 week], got ${String(v)}`);
  };
  ms('intervalMs');
  ms('timeoutMs');
  for (const field of ['successBeforePassing', 'failuresBeforeCritical'] as const) {
    const v = c[field];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1_000_000) bad(field, `must be a number in [0, 1000000], got ${String(v)}`);
  }
  if (!STATUSES.includes(c.status)) bad('status', `must be one of ${STATUSES.join(', ')}`);
}

function signature(c: ScheduledCheck): string {
  return canonicalJson([c.probe, c.intervalMs, c.timeoutMs, threshold(c.successBeforePassing), threshold(c.failuresBeforeCritical)]);
}
