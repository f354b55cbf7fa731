// TTL renewals on their way to the leader's deadline table: the interface the HTTP routes call, the
// per-renewal result carried by the internal API, and the follower's batching forwarder (many
// concurrent renewals → one signed request to the leader).

import { SiderError, isSiderError } from '../../raft/errors.ts';
import type { SiderErrorCode } from '../../raft/errors.ts';
import type { CheckStatus } from '../registry/model.ts';

/** Renews (or sets the status of) a TTL check. Rejects with a SiderError (404 with Consul's text, 503 no leader…). */
export interface CheckRenewer {
  renew(ns: string, checkId: string, status: CheckStatus, output: string): Promise<void>;
}

/** One renewal as the internal API carries it: [ns, checkId, status, output]. */
export type RenewItem = [ns: string, checkId: string, status: CheckStatus, output: string];

/** The internal API path a follower forwards batches of renewals to (signed like the others). */
export const INTERNAL_RENEW = '/v1/internal/renew';
/** Renewals in one forwarded batch at most. */
export const MAX_RENEW_BATCH = 4096;
/** Characters of one batch at most (×3 for UTF-8 stays under the internal API's 1 MiB body limit). */
const MAX_BATCH_CHARS = 256 * 1024;

const STATUSES: readonly string[] = ['passing', 'warning', 'critical'];

/** Validates the `items` of an internal renew request (a peer's, but parsed like any input). */
export function parseRenewItems(v: unknown): RenewItem[] {
  if (!Array.isArray(v)) throw new SiderError('SIDER_BAD_REQUEST', 'items: must be an array');
  if (v.length > MAX_RENEW_BATCH) throw new SiderError('SIDER_BAD_REQUEST', `items: more than ${MAX_RENEW_BATCH} renewals`);
  return v.map((x: unknown, i): RenewItem => {
    if (!Array.isArray(x) || x.length !== 4 || !x.every((f) => typeof f === 'string') || !STATUSES.includes(x[2] as string)) {
      throw new SiderError('SIDER_BAD_REQUEST', `items[${i}]: must be [ns, checkId, passing|warning|critical, output]`);
    }
    return [x[0] as string, x[1] as string, x[2] as CheckStatus, x[3] as string];
  });
}

export type RenewResult = { ok: true } | { ok: false; code: SiderErrorCode; status: number; error: string };

/** Consul's answer for a status update of an unknown or non-TTL check (clients match on it). */
export function notTtlError(checkId: string): SiderError {
  return new SiderError('SIDER_BAD_REQUEST', `CheckID "${checkId}" does not have associated TTL`, { status: 404 });
}

export function toRenewResult(err: unknown): RenewResult {
  if (isSiderError(err)) return { ok: false, code: err.code, status: err.status, error: err.message };
  return { ok: false, code: 'SIDER_INTERNAL', status: 500, error: 'internal error' };
}

export function fromRenewResult(r: RenewResult): void {
  if (!r.ok) throw new SiderError(r.code, r.error, { status: r.status });
}

export interface RenewalForwarderOptions {
  /** Sends one batch to the leader and returns one result per item, in order. */
  send: (items: RenewItem[]) => Promise<RenewResult[]>;
  /** Batches in flight at once (default 8): beyond, new renewals queue into the next batch. */
  maxInFlight?: number;
  /**
   * Batches leave at most this often (default 2 ms): renewals arriving in between share the next
   * one, so a follower sends at most 1000 / minIntervalMs requests/s whatever the renewal rate.
   */
  minIntervalMs?: number;
  /** Renewals per request at most (default 2048). */
  maxBatch?: number;
  /** Renewals waiting at most (default 100,000); beyond, a renewal fails at once with 429. */
  maxQueued?: number;
}

interface Waiting {
  item: RenewItem;
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * A follower's forwarder: renewals leave in batches, at most one every `minIntervalMs` and at most
 * `maxInFlight` travelling at once, so N renewals/s cost at most 1000 / minIntervalMs requests/s
 * rather than N. A renewal arriving after a quiet spell leaves at the end of the event-loop turn.
 */
export class RenewalForwarder implements CheckRenewer {
  readonly #send: RenewalForwarderOptions['send'];
  readonly #maxInFlight: number;
  readonly #maxBatch: number;
  readonly #maxQueued: number;
  readonly #minIntervalMs: number;
  #queue: Waiting[] = [];
  #inFlight = 0;
  #scheduled = false;
  #lastSent = -Infinity;
  /** Requests sent so far (for tests and metrics). */
  requests = 0;

  constructor(opts: RenewalForwarderOptions) {
    this.#send = opts.send;
    this.#maxInFlight = opts.maxInFlight ?? 8;
    this.#minIntervalMs = opts.minIntervalMs ?? 2;
    if (!(this.#minIntervalMs >= 0 && this.#minIntervalMs <= 1000)) throw new SiderError('SIDER_CONFIG', `RenewalForwarder: minIntervalMs must be in [0, 1000], got ${this.#minIntervalMs}`);
    this.#maxBatch = Math.min(opts.maxBatch ?? 2048, MAX_RENEW_BATCH);
    this.#maxQueued = opts.maxQueued ?? 100_000;
    for (const [name, v] of [
      ['maxInFlight', this.#maxInFlight],
      ['maxBatch', this.#maxBatch],
      ['maxQueued', this.#maxQueued],
    ] as const) {
      if (!Number.isInteger(v) || v < 1) throw new SiderError('SIDER_CONFIG', `RenewalForwarder: ${name} must be a positive integer, got ${v}`);
    }
  }

  renew(ns: string, checkId: string, status: CheckStatus, output: string): Promise<void> {
    if (this.#queue.length >= this.#maxQueued) {
      return Promise.reject(new SiderError('SIDER_OVERLOADED', 'too many TTL renewals waiting to be forwarded to the leader; retry'));
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ item: [ns, checkId, status, output], resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight >= this.#maxInFlight || this.#queue.length === 0) return;
    this.#scheduled = true;
    const run = (): void => {
      this.#scheduled = false;
      this.#flush();
    };
    // Renewals of the same event-loop turn (and of the rest of the interval) share the batch.
    const wait = this.#lastSent + this.#minIntervalMs - performance.now();
    if (wait > 0) setTimeout(run, Math.ceil(wait));
    else setImmediate(run);
  }

  #flush(): void {
    if (this.#inFlight < this.#maxInFlight && this.#queue.length > 0) {
      this.#lastSent = performance.now();
      // Bounded by count and by characters (the internal API takes bodies up to 1 MiB).
      let n = 0;
      let chars = 0;
      while (n < this.#queue.length && n < this.#maxBatch && (n === 0 || chars < MAX_BATCH_CHARS)) {
        const [ns, id, , out] = this.#queue[n]!.item;
        chars += ns.length + id.length + out.length + 32;
        n++;
      }
      const batch = n === this.#queue.length ? this.#queue : this.#queue.slice(0, n);
      this.#queue = n === this.#queue.length ? [] : this.#queue.slice(n);
      this.#inFlight++;
      this.requests++;
      void this.#deliver(batch);
    }
    this.#schedule();
  }

  async #deliver(batch: Waiting[]): Promise<void> {
    try {
      const results = await this.#send(batch.map((w) => w.item));
      if (!Array.isArray(results) || results.length !== batch.length) {
        throw new SiderError('SIDER_INTERNAL', `the leader answered ${Array.isArray(results) ? results.length : 'no'} results for ${batch.length} renewals`);
      }
      batch.forEach((w, i) => {
        const r = results[i]!;
        if (r.ok) w.resolve();
        else w.reject(new SiderError(r.code, r.error, { status: r.status }));
      });
    } catch (err) {
      const e = isSiderError(err) ? err : new SiderError('SIDER_NO_LEADER', `forwarding renewals to the leader failed: ${(err as Error).message}`);
      for (const w of batch) w.reject(e);
    } finally {
      this.#inFlight--;
      this.#schedule();
    }
  }
}
