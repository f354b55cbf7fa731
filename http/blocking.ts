// Blocking queries (DESIGN §3): `?index=N&wait=D` parsing, holding a request on a registry watcher
// until its index passes N, the wait (plus jitter) runs out or the client leaves, and a per-server cap.

import type { Context } from 'koa';
import { SiderError } from '../raft/errors.ts';
import { queryValue } from './consistency.ts';
import { parseDurationNs } from './duration.ts';

export const DEFAULT_WAIT_MS = 5 * 60_000;
export const MAX_WAIT_MS = 10 * 60_000;
/** Consul's JitterFraction: up to wait/16 is added so that many watchers do not wake together. */
export const JITTER_FRACTION = 16;
export const DEFAULT_MAX_BLOCKING_QUERIES = 60_000;

export interface BlockingParams {
  /** The index the client has seen; the request is held while the result's index is ≤ this. */
  index: number;
  /** How long to hold, before jitter. */
  waitMs: number;
}

/**
 * `index` (a non-negative integer) and `wait` (a Go duration; 0 or absent = 5 min, clamped to
 * 10 min as Consul does). Returns null when the request must be answered at once (no index, or 0).
 */
export function parseBlockingParams(query: Context['query']): BlockingParams | null {
  const rawIndex = queryValue(query, 'index');
  const rawWait = queryValue(query, 'wait');
  let waitMs = DEFAULT_WAIT_MS;
  if (rawWait !== undefined && rawWait !== '') {
    let ns: bigint;
    try {
      ns = parseDurationNs(rawWait);
    } catch (err) {
      throw new SiderError('SIDER_BAD_REQUEST', `wait: ${(err as Error).message}`);
    }
    if (ns < 0n) throw new SiderError('SIDER_BAD_REQUEST', `wait: must not be negative, got ${JSON.stringify(rawWait)}`);
    if (ns > 0n) waitMs = Math.min(MAX_WAIT_MS, Number(ns / 1_000_000n) || 1);
  }
  if (rawIndex === undefined || rawIndex === '') return null;
  if (!/^[0-9]{1,16}$/.test(rawIndex) || !Number.isSafeInteger(Number(rawIndex))) {
    throw new SiderError('SIDER_BAD_REQUEST', `index: invalid value ${JSON.stringify(rawIndex.slice(0, 64))}: expected a non-negative integer`);
  }
  const index = Number(rawIndex);
  return index === 0 ? null : { index, waitMs };
}

/** Registers `fire` to run once the watched index exceeds `after`; returns its cancel function. */
export type WatchFn = (after: number, fire: () => void) => () => void;

export type HoldOutcome = 'changed' | 'timeout' | 'closed';

export interface BlockingQueriesOptions {
  /** At most this many requests held at once on this server; more get 429. Default 60,000. */
  max?: number;
  /** [0, 1) source for the jitter; Math.random by default. */
  random?: () => number;
}

/** Holds blocking requests and counts them. One per server (the count is the metric). */
/** Held queries answered per event-loop turn after a change. */
const WAKE_CHUNK = 256;

export class BlockingQueries {
  readonly max: number;
  readonly #random: () => number;
  #held = 0;

  constructor(opts: BlockingQueriesOptions = {}) {
    const max = opts.max ?? DEFAULT_MAX_BLOCKING_QUERIES;
    if (!Number.isInteger(max) || max < 0) throw new SiderError('SIDER_CONFIG', `maxBlockingQueries: must be a non-negative integer, got ${max}`);
    this.max = max;
    this.#random = opts.random ?? Math.random;
  }

  /**
   * Wake-ups queued for answering. One change can wake tens of thousands of held queries; answering
   * them all in one turn would stall the event loop (and with it Raft heartbeats) for a second, so
   * they are released WAKE_CHUNK at a time, one chunk per event-loop turn.
   */
  #wakeQueue: (() => void)[] = [];
  #wakeHead = 0;
  #draining = false;

  #wake(release: () => void): void {
    this.#wakeQueue.push(release);
    if (this.#draining) return;
    this.#draining = true;
    setImmediate(() => this.#drain());
  }

  #drain(): void {
    const end = Math.min(this.#wakeHead + WAKE_CHUNK, this.#wakeQueue.length);
    for (; this.#wakeHead < end; this.#wakeHead++) this.#wakeQueue[this.#wakeHead]!();
    if (this.#wakeHead < this.#wakeQueue.length) {
      setImmediate(() => this.#drain());
      return;
    }
    this.#wakeQueue = [];
    this.#wakeHead = 0;
    this.#draining = false;
  }

  /** Requests currently held. */
  get held(): number {
    return this.#held;
  }

  /**
   * Holds `ctx` until `watch` fires (the index passed `after`), `waitMs` plus up to waitMs/16 of
   * jitter elapse, or the client goes away; the watcher and timer are released in every case.
   * Throws 429 (SIDER_OVERLOADED, retryable) when `max` requests are already held.
   */
  async hold(ctx: Context, after: number, waitMs: number, watch: WatchFn): Promise<HoldOutcome> {
    if (this.#held >= this.max) {
      throw new SiderError('SIDER_OVERLOADED', `too many blocking queries held on this server (${this.max}); retry later or use another server`, {
        status: 429,
      });
    }
    const res = ctx.res;
    // The request's own 'close' may have fired already once a body was read (TOOLCHAIN): the
    // response's 'close' before it finished, or a destroyed socket, is what says the client left.
    if (res.destroyed || ctx.req.socket.destroyed) return 'closed';
    this.#held++;
    try {
      return await new Promise<HoldOutcome>((resolve) => {
        let settled = false;
        let cancel: (() => void) | undefined;
        const finish = (outcome: HoldOutcome): void => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          res.off('close', onClose);
          cancel?.();
          resolve(outcome);
        };
        const onClose = (): void => {
          if (!res.writableFinished) finish('closed');
        };
        const jitter = Math.floor(this.#random() * (waitMs / JITTER_FRACTION));
        const timer = setTimeout(() => finish('timeout'), waitMs + jitter);
        res.once('close', onClose);
        cancel = watch(after, () => this.#wake(() => finish('changed')));
        // A watcher that fired synchronously left `cancel` unset when finish ran: release it now.
        if (settled) cancel();
      });
    } finally {
      this.#held--;
    }
  }
}
