// The leader's in-memory TTL deadline table (DESIGN §5): renewals move deadlines here without a
// Raft entry, a scan finds overdue checks, renewals are collected for periodic checkpoints, and the
// failover rule gives a new leader deadlines that never expire a healthy check early. Pure: every
// method takes the time from its caller (the leader's clock, ms), so tests drive it with numbers.

import { checkChangeKey } from '../registry/model.ts';
import { TickBuckets } from '../tick-heap.ts';
import { shiftOldest } from '../../raft/shift-oldest.ts';

/** Width of one deadline bucket (ms): the expiry scan visits buckets, not every check. */
export const TTL_BUCKET_MS = 100;

/** One TTL check as the table learns it from the replicated state. */
export interface TtlCheckInfo {
  ns: string;
  checkId: string;
  ttlMs: number;
  /** Replicated time of the last known renewal (registration, status change, checkpoint); 0 = none. */
  renewedAt: number;
  /** Replicated estimate of the client's renewal interval (from checkpoints); 0 = unknown. */
  renewIntervalMs: number;
}

export interface TtlTableOptions {
  /** How often the leader checkpoints renewal times (P in the failover rule). */
  checkpointMs: number;
  /** Time clients get to find a new leader before it expires anything (grace in the failover rule). */
  graceMs: number;
  /**
   * Added to P for the latency of committing a checkpoint and the scan period: a renewal is
   * replicated at most P + slack after it was made, while the leader works. Default 500 ms.
   */
  slackMs?: number;
}

/**
 * `ns \0 checkId` (the registry's checkChangeKey, so changed-check keys are table keys): namespaces
 * are DNS labels and check IDs have no control characters.
 */
export const ttlKey: (ns: string, checkId: string) => string = checkChangeKey;

export function splitTtlKey(key: string): [string, string] {
  const i = key.indexOf('\u0000');
  return [key.slice(0, i), key.slice(i + 1)];
}

/**
 * The deadline a new leader gives a TTL check (DESIGN §5, issue #4):
 *
 *   max(min(R + TTL + P + slack + I, L + TTL + slack), L + grace)
 *
 * R is the last renewal time the replicated state knows (a checkpoint, the registration, or a
 * status change; a check never renewed counts from its registration), P the checkpoint period, I
 * the client's renewal interval as last checkpointed, capped at TTL (TTL when unknown), and L the
 * time this node became leader.
 *
 * - R + TTL + P + slack + I: the old leader may have acknowledged one renewal it never
 *   checkpointed (made after its last committed checkpoint), about I after R, so the check's real
 *   deadline may be as late as R + I + TTL (+ P + slack when the client renews faster than
 *   checkpoints are taken). Without the I term a check with a 30 s TTL renewed every 20 s would be
 *   expired 10 s early after a failover.
 * - L + TTL + slack: no renewal was acknowledged after the old leader stopped, which is before L
 *   (a leader that loses its quorum steps down within an election timeout; a new one is elected
 *   no sooner), so this is never early either. It caps the deadline at etcd's rule (every lease
 *   reset to its full TTL on election): never later than etcd, earlier when the instance stopped
 *   renewing well before the failover.
 * - L + grace: clients get time to find the new leader.
 */
export function failoverDeadline(info: TtlCheckInfo, leaderSince: number, opts: TtlTableOptions): number {
  const interval = info.renewIntervalMs > 0 ? Math.min(info.renewIntervalMs, info.ttlMs) : info.ttlMs;
  const slack = opts.slackMs ?? 500;
  const fromRenewal = info.renewedAt + info.ttlMs + opts.checkpointMs + slack + interval;
  return Math.max(Math.min(fromRenewal, leaderSince + info.ttlMs + slack), leaderSince + opts.graceMs);
}

interface Entry {
  readonly key: string;
  readonly ns: string;
  readonly checkId: string;
  ttlMs: number;
  /** Leader-clock time of the last renewal this table knows. */
  lastRenewal: number;
  /** The last two intervals between renewals seen here (ms; 0 = not seen). */
  interval1: number;
  interval2: number;
  deadline: number;
  /** An expiry was reported for the current deadline and not yet renewed or retried. */
  expiring: boolean;
  /**
   * The bucket this entry waits in (NaN: in none — it is expiring). Lazy: a renewal only moves
   * `deadline` later, and the entry moves to its new bucket when the old one comes due, so a
   * renewal costs no bucket work and an entry is re-bucketed about once per TTL.
   */
  slot: number;
}

/** The largest of the last two observed intervals: a conservative estimate of the client's period. */
function intervalOf(e: Entry): number {
  return Math.max(e.interval1, e.interval2);
}

function byDeadlineThenKey(a: Entry, b: Entry): number {
  return a.deadline - b.deadline || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}

export class TtlTable {
  readonly #opts: TtlTableOptions;
  readonly #entries = new Map<string, Entry>();
  /** Keys renewed since the last checkpoint was taken. */
  #renewed = new Set<string>();
  /** Entries by deadline bucket (floor(deadline / TTL_BUCKET_MS)); may hold stale ones (see Entry.slot). */
  readonly #buckets = new TickBuckets<Entry>();
  /** References in #buckets to entries that no longer wait there (see #leftBucket). */
  #stale = 0;

  constructor(opts: TtlTableOptions) {
    if (!(opts.checkpointMs > 0) || !(opts.graceMs >= 0) || (opts.slackMs !== undefined && !(opts.slackMs >= 0))) {
      throw new RangeError(`TtlTable: checkpointMs must be > 0 and graceMs, slackMs ≥ 0, got ${JSON.stringify(opts)}`);
    }
    this.#opts = opts;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Replaces the table on becoming leader: every deadline by the failover rule. */
  start(checks: Iterable<TtlCheckInfo>, leaderSince: number): void {
    this.clear();
    for (const c of checks) this.#insert(ttlKey(c.ns, c.checkId), c, failoverDeadline(c, leaderSince, this.#opts), c.renewIntervalMs);
  }

  /**
   * Brings the table in line with the replicated state while leading: TTL checks new to it get
   * deadline = registration (renewal) time + TTL, vanished ones are dropped, a changed TTL or a
   * newer replicated renewal (a status change, a re-registration) moves the deadline.
   */
  sync(checks: Iterable<TtlCheckInfo>): void {
    const seen = new Set<string>();
    for (const c of checks) {
      const key = ttlKey(c.ns, c.checkId);
      seen.add(key);
      this.update(key, c);
    }
    for (const key of this.#entries.keys()) if (!seen.has(key)) this.update(key, undefined);
  }

  /**
   * What sync does for one check whose state changed: `c` is its TTL information now, undefined
   * when it is gone or no longer a TTL check (its entry is dropped).
   */
  update(key: string, c: TtlCheckInfo | undefined): void {
    const e = this.#entries.get(key);
    if (!c) {
      if (!e) return;
      this.#entries.delete(key);
      this.#renewed.delete(key);
      if (!Number.isNaN(e.slot)) this.#leftBucket();
      return;
    }
    if (!e) {
      this.add(c);
      return;
    }
    if (c.renewedAt > e.lastRenewal) {
      e.lastRenewal = c.renewedAt;
      e.deadline = Math.max(e.deadline, c.renewedAt + c.ttlMs);
      e.expiring = false;
    }
    if (c.ttlMs !== e.ttlMs) {
      e.ttlMs = c.ttlMs;
      e.deadline = e.lastRenewal + c.ttlMs;
    }
    // The deadline may have moved earlier (a shorter TTL) or the entry may have left its bucket.
    if (!e.expiring) this.#schedule(e);
  }

  has(key: string): boolean {
    return this.#entries.has(key);
  }

  /** Adds one check the table does not know yet (registered since the last sync), as sync would. */
  add(c: TtlCheckInfo): void {
    const key = ttlKey(c.ns, c.checkId);
    if (!this.#entries.has(key)) this.#insert(key, c, c.renewedAt + c.ttlMs, 0);
  }

  /** A new entry for `c` with this deadline and last known renewal interval, in its bucket. */
  #insert(key: string, c: TtlCheckInfo, deadline: number, interval1: number): void {
    const e: Entry = {
      key,
      ns: c.ns,
      checkId: c.checkId,
      ttlMs: c.ttlMs,
      lastRenewal: c.renewedAt,
      interval1,
      interval2: 0,
      deadline,
      expiring: false,
      slot: NaN,
    };
    this.#entries.set(key, e);
    this.#schedule(e);
  }

  /** A renewal at `now`: deadline = now + TTL. Returns false when the table does not know the key. */
  renew(key: string, now: number): boolean {
    const e = this.#entries.get(key);
    if (!e) return false;
    if (e.lastRenewal > 0 && now > e.lastRenewal) {
      e.interval2 = e.interval1;
      e.interval1 = now - e.lastRenewal;
    }
    e.lastRenewal = Math.max(e.lastRenewal, now);
    e.deadline = e.lastRenewal + e.ttlMs;
    e.expiring = false;
    // A no-op when it already waits in an earlier bucket (it moves on when that one comes due);
    // only an entry that had expired (in no bucket) is put back.
    this.#schedule(e);
    this.#renewed.add(key);
    return true;
  }

  /**
   * Keys overdue at `now` that have not been reported yet; each is marked as expiring and is not
   * reported again until renewed (or `retry`). At most `limit` keys. Visits only the buckets that
   * came due, so its cost follows the checks whose (possibly old) deadline passed, not the table.
   * The keys come in deadline order, ties by key: the expiries a scan proposes do not depend on the
   * order the table learnt its checks in (a full re-sync and a changed-checks one propose the same).
   */
  due(now: number, limit = Infinity): string[] {
    const current = Math.floor(now / TTL_BUCKET_MS);
    const overdue: Entry[] = [];
    /** Entries of buckets visited now that are not due yet but belong at or before `current`. */
    const keep: Entry[] = [];
    for (let b = this.#buckets.takeDue(current); b; b = this.#buckets.takeDue(current)) {
      const [tick, list] = b;
      for (const e of list) {
        if (e.slot !== tick || this.#entries.get(e.key) !== e) {
          this.#stale--; // moved or gone: the reference this bucket held is dropped now
          continue;
        }
        e.slot = NaN;
        if (e.expiring) continue;
        if (e.deadline > now) {
          if (Math.floor(e.deadline / TTL_BUCKET_MS) <= current) keep.push(e);
          else this.#schedule(e);
          continue;
        }
        overdue.push(e);
      }
      if (overdue.length >= limit) break;
    }
    overdue.sort(byDeadlineThenKey);
    const out: string[] = [];
    for (const e of overdue) {
      if (out.length >= limit) {
        keep.push(e); // overdue still: back into a bucket at or before `current`, for the next scan
        continue;
      }
      e.expiring = true;
      out.push(e.key);
    }
    for (const e of keep) this.#schedule(e);
    return out;
  }

  /** Puts `e` into the bucket of its deadline unless it already waits in that bucket or an earlier one. */
  #schedule(e: Entry): void {
    const tick = Math.floor(e.deadline / TTL_BUCKET_MS);
    if (e.slot <= tick) return;
    if (!Number.isNaN(e.slot)) this.#leftBucket();
    e.slot = tick;
    this.#buckets.add(tick, e);
  }

  /**
   * An entry left a bucket without it coming due (removed, or moved to an earlier bucket), leaving
   * a stale reference there until then — possibly a long TTL away. When the stale ones outnumber
   * the table, every bucket is rebuilt (amortized O(1) per change).
   */
  #leftBucket(): void {
    if (++this.#stale <= Math.max(1024, this.#entries.size)) return;
    this.#buckets.clear();
    this.#stale = 0;
    for (const e of this.#entries.values()) {
      e.slot = NaN;
      if (!e.expiring) this.#schedule(e);
    }
  }

  /** Stale bucket references (for tests). */
  get staleInBuckets(): number {
    return this.#stale;
  }

  /** The expiry of `key` was not applied (e.g. the proposal failed): report it again on a later scan. */
  retry(key: string): void {
    const e = this.#entries.get(key);
    if (e?.expiring) {
      e.expiring = false;
      this.#schedule(e);
    }
  }

  isExpiring(key: string): boolean {
    return this.#entries.get(key)?.expiring === true;
  }

  deadline(key: string): number | undefined {
    return this.#entries.get(key)?.deadline;
  }

  /**
   * The renewals since the last checkpoint, as ttlCheckpoint entries [ns, checkId, renewedAt,
   * intervalMs], and forgets them. `requeue` puts them back when the checkpoint could not be written.
   */
  takeCheckpoint(max = Infinity): [string, string, number, number][] {
    const out: [string, string, number, number][] = [];
    while (out.length < max) {
      const key = shiftOldest(this.#renewed);
      if (key === undefined) break;
      const e = this.#entries.get(key);
      if (e) out.push([e.ns, e.checkId, e.lastRenewal, intervalOf(e)]);
    }
    return out;
  }

  requeue(entries: readonly [string, string, number, number][]): void {
    for (const [ns, checkId] of entries) {
      const key = ttlKey(ns, checkId);
      if (this.#entries.has(key)) this.#renewed.add(key);
    }
  }

  clear(): void {
    this.#entries.clear();
    this.#renewed.clear();
    this.#buckets.clear();
    this.#stale = 0;
  }
}
