// The follower-to-leader batching shared by forwarded writes (forward-writes.ts) and forwarded TTL
// renewals (health/renewals.ts): items queue, leave in batches bounded by count and size, at most
// `maxInFlight` batches travel at once, and each item is settled with its own result.

import { SiderError, isSiderError } from '../raft/errors.ts';
import type { SiderErrorCode } from '../raft/errors.ts';

/** What the leader answers per item: success with a value, or the error to reject it with. */
export type ItemResult<V> = ({ ok: true } & V) | ItemFailure;
export type ItemFailure = { ok: false; code: SiderErrorCode; status: number; error: string };

/** The leader's answer for an item that failed with `err`; anything but a SiderError stays opaque. */
export function itemFailure(err: unknown): ItemFailure {
  if (isSiderError(err)) return { ok: false, code: err.code, status: err.status, error: err.message };
  return { ok: false, code: 'SIDER_INTERNAL', status: 500, error: 'internal error' };
}

export interface BatchForwarderOptions<I, V> {
  /** Names the items in error messages ("writes", "renewals"). */
  what: string;
  /** Sends one batch to the leader and returns one result per item, in order. */
  send: (items: I[]) => Promise<ItemResult<V>[]>;
  maxInFlight: number;
  maxBatch: number;
  /** Items waiting at most; beyond, an item fails at once with 429. */
  maxQueued: number;
  /** Characters of one batch at most (sizes come from `size`); a batch always takes one item. */
  maxBatchChars: number;
  size: (item: I) => number;
  /** One batch per this interval on average (0 = no limit: at the end of the event-loop turn). */
  minIntervalMs?: number;
  /**
   * With minIntervalMs: a token bucket of `burst` sends (default 1), refilled one per interval, so
   * up to `burst` batches may leave back to back and at most 1000 / minIntervalMs per second after.
   */
  burst?: number;
}

interface Waiting<I, V> {
  item: I;
  chars: number;
  resolve: (v: ItemResult<V> & { ok: true }) => void;
  reject: (err: Error) => void;
}

export class BatchForwarder<I, V> {
  readonly #o: Required<BatchForwarderOptions<I, V>>;
  #queue: Waiting<I, V>[] = [];
  #inFlight = 0;
  #scheduled = false;
  /** Sends allowed now (a token bucket refilled one per minIntervalMs, up to burst). */
  #credits: number;
  #creditsAt = performance.now();
  /** Requests sent so far (for tests and metrics). */
  requests = 0;

  constructor(name: string, opts: BatchForwarderOptions<I, V>) {
    this.#o = { minIntervalMs: 0, burst: 1, ...opts };
    this.#credits = this.#o.burst;
    const min = this.#o.minIntervalMs;
    if (!(min >= 0 && min <= 1000)) throw new SiderError('SIDER_CONFIG', `${name}: minIntervalMs must be in [0, 1000], got ${min}`);
    for (const [field, v] of [
      ['maxInFlight', opts.maxInFlight],
      ['maxBatch', opts.maxBatch],
      ['maxQueued', opts.maxQueued],
      ['burst', this.#o.burst],
    ] as const) {
      if (!Number.isInteger(v) || v < 1) throw new SiderError('SIDER_CONFIG', `${name}: ${field} must be a positive integer, got ${v}`);
    }
  }

  /** Queues `item`; resolves with its successful result, rejects with a SiderError. */
  submit(item: I): Promise<ItemResult<V> & { ok: true }> {
    if (this.#queue.length >= this.#o.maxQueued) {
      return Promise.reject(new SiderError('SIDER_OVERLOADED', `too many ${this.#o.what} waiting to be forwarded to the leader; retry`));
    }
    const chars = this.#o.size(item);
    return new Promise((resolve, reject) => {
      this.#queue.push({ item, chars, resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight >= this.#o.maxInFlight || this.#queue.length === 0) return;
    this.#scheduled = true;
    const run = (): void => {
      this.#scheduled = false;
      this.#flush();
    };
    // Items of the same event-loop turn share the batch.
    const wait = this.#o.minIntervalMs > 0 ? (1 - this.#refill()) * this.#o.minIntervalMs : 0;
    if (wait > 0) setTimeout(run, Math.ceil(wait));
    else setImmediate(run);
  }

  /** Adds the credits earned since the last call; returns the credits available. */
  #refill(): number {
    const now = performance.now();
    this.#credits = Math.min(this.#o.burst, this.#credits + (now - this.#creditsAt) / this.#o.minIntervalMs);
    this.#creditsAt = now;
    return this.#credits;
  }

  #flush(): void {
    while (this.#inFlight < this.#o.maxInFlight && this.#queue.length > 0) {
      if (this.#o.minIntervalMs > 0) {
        if (this.#refill() < 1) break;
        this.#credits -= 1;
      }
      let n = 0;
      let chars = 0;
      while (n < this.#queue.length && n < this.#o.maxBatch && (n === 0 || chars + this.#queue[n]!.chars <= this.#o.maxBatchChars)) {
        chars += this.#queue[n]!.chars;
        n++;
      }
      const batch = this.#queue.splice(0, n);
      this.#inFlight++;
      this.requests++;
      void this.#deliver(batch);
    }
    this.#schedule();
  }

  async #deliver(batch: Waiting<I, V>[]): Promise<void> {
    try {
      const results = await this.#o.send(batch.map((w) => w.item));
      if (!Array.isArray(results) || results.length !== batch.length) {
        throw new SiderError('SIDER_INTERNAL', `the leader answered ${Array.isArray(results) ? results.length : 'no'} results for ${batch.length} ${this.#o.what}`);
      }
      batch.forEach((w, i) => {
        const r = results[i]!;
        if (r.ok) w.resolve(r);
        else w.reject(new SiderError(r.code, r.error, { status: r.status }));
      });
    } catch (err) {
      const e = isSiderError(err) ? err : new SiderError('SIDER_NO_LEADER', `forwarding ${this.#o.what} to the leader failed: ${(err as Error).message}`);
      for (const w of batch) w.reject(e);
    } finally {
      this.#inFlight--;
      this.#schedule();
    }
  }
}
