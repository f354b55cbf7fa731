// Writes received by a follower on their way to the leader: the batching forwarder (concurrent
// writes → one signed request), the batch's wire form, and the leader's per-write results.

import { SiderError, isSiderError } from '../raft/errors.ts';
import type { SiderErrorCode } from '../raft/errors.ts';
import type { ApplyResult, RegistryCommand } from './registry/model.ts';

/** The internal API path a follower forwards batches of writes to (signed like the others). */
export const INTERNAL_APPLY_BATCH = '/v1/internal/apply-batch';
/** Writes in one forwarded batch at most. */
export const MAX_WRITE_BATCH = 1024;
/** JSON characters of one batch at most (×3 for UTF-8 stays under the internal API's 1 MiB body limit). */
const MAX_BATCH_CHARS = 300 * 1024;

/** One write as the batch carries it: the command and its request ID (dedup works per write). */
export interface ForwardedWrite {
  cmd: RegistryCommand;
  rid: string;
}

/** What the leader answers per write, in the batch's order. */
export type ForwardedResult =
  | { ok: true; result: ApplyResult; index: number }
  | { ok: false; code: SiderErrorCode; status: number; error: string };

/** Validates the `writes` of an internal apply-batch request (a peer's, but parsed like any input). */
export function parseForwardedWrites(v: unknown): ForwardedWrite[] {
  if (!Array.isArray(v)) throw new SiderError('SIDER_BAD_REQUEST', 'writes: must be an array');
  if (v.length > MAX_WRITE_BATCH) throw new SiderError('SIDER_BAD_REQUEST', `writes: more than ${MAX_WRITE_BATCH} writes`);
  return v.map((x: unknown, i): ForwardedWrite => {
    const o = typeof x === 'object' && x !== null ? (x as Record<string, unknown>) : {};
    if (typeof o.cmd !== 'object' || o.cmd === null || Array.isArray(o.cmd) || typeof o.rid !== 'string') {
      throw new SiderError('SIDER_BAD_REQUEST', `writes[${i}]: must be {cmd: object, rid: string}`);
    }
    // The command is validated where every node validates it: when the entry is applied.
    return { cmd: o.cmd as RegistryCommand, rid: o.rid };
  });
}

export function toForwardedError(err: unknown): ForwardedResult {
  if (isSiderError(err)) return { ok: false, code: err.code, status: err.status, error: err.message };
  return { ok: false, code: 'SIDER_INTERNAL', status: 500, error: 'internal error' };
}

export interface WriteForwarderOptions {
  /** Sends one batch to the leader and returns one result per write, in order. */
  send: (writes: ForwardedWrite[]) => Promise<ForwardedResult[]>;
  /** Batches in flight at once (default 2): while they travel, new writes queue into the next. */
  maxInFlight?: number;
  /** Writes per request at most (default and ceiling MAX_WRITE_BATCH). */
  maxBatch?: number;
  /** Writes waiting at most (default 100,000); beyond, a write fails at once with 429. */
  maxQueued?: number;
}

interface Waiting {
  write: ForwardedWrite;
  chars: number;
  resolve: (r: { result: ApplyResult; index: number }) => void;
  reject: (err: Error) => void;
}

/**
 * A follower's forwarder: writes that arrive while `maxInFlight` batches are travelling wait and
 * leave together in the next batch, so the leader handles one HTTP request per batch instead of
 * one per write (each write is still its own Raft proposal with its own request ID and result). A
 * write alone leaves at the end of the current event-loop turn.
 */
export class WriteForwarder {
  readonly #send: WriteForwarderOptions['send'];
  readonly #maxInFlight: number;
  readonly #maxBatch: number;
  readonly #maxQueued: number;
  #queue: Waiting[] = [];
  #inFlight = 0;
  #scheduled = false;
  /** Requests sent so far (for tests and metrics). */
  requests = 0;

  constructor(opts: WriteForwarderOptions) {
    this.#send = opts.send;
    this.#maxInFlight = opts.maxInFlight ?? 2;
    this.#maxBatch = Math.min(opts.maxBatch ?? MAX_WRITE_BATCH, MAX_WRITE_BATCH);
    this.#maxQueued = opts.maxQueued ?? 100_000;
    for (const [name, v] of [
      ['maxInFlight', this.#maxInFlight],
      ['maxBatch', this.#maxBatch],
      ['maxQueued', this.#maxQueued],
    ] as const) {
      if (!Number.isInteger(v) || v < 1) throw new SiderError('SIDER_CONFIG', `WriteForwarder: ${name} must be a positive integer, got ${v}`);
    }
  }

  /** Resolves with the leader's apply result and the entry's index; rejects with a SiderError. */
  forward(cmd: RegistryCommand, rid: string): Promise<{ result: ApplyResult; index: number }> {
    if (this.#queue.length >= this.#maxQueued) {
      return Promise.reject(new SiderError('SIDER_OVERLOADED', 'too many writes waiting to be forwarded to the leader; retry'));
    }
    // Sized once here, so that batches stay under the leader's body limit.
    const chars = JSON.stringify(cmd).length + rid.length + 32;
    return new Promise((resolve, reject) => {
      this.#queue.push({ write: { cmd, rid }, chars, resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight >= this.#maxInFlight || this.#queue.length === 0) return;
    this.#scheduled = true;
    // Writes of the same event-loop turn share the batch.
    setImmediate(() => {
      this.#scheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    while (this.#inFlight < this.#maxInFlight && this.#queue.length > 0) {
      let n = 0;
      let chars = 0;
      while (n < this.#queue.length && n < this.#maxBatch && (n === 0 || chars + this.#queue[n]!.chars <= MAX_BATCH_CHARS)) {
        chars += this.#queue[n]!.chars;
        n++;
      }
      const batch = this.#queue.splice(0, n);
      this.#inFlight++;
      this.requests++;
      void this.#deliver(batch);
    }
  }

  async #deliver(batch: Waiting[]): Promise<void> {
    try {
      const results = await this.#send(batch.map((w) => w.write));
      if (!Array.isArray(results) || results.length !== batch.length) {
        throw new SiderError('SIDER_INTERNAL', `the leader answered ${Array.isArray(results) ? results.length : 'no'} results for ${batch.length} writes`);
      }
      batch.forEach((w, i) => {
        const r = results[i]!;
        if (r.ok) w.resolve({ result: r.result, index: r.index });
        else w.reject(new SiderError(r.code, r.error, { status: r.status }));
      });
    } catch (err) {
      const e = isSiderError(err) ? err : new SiderError('SIDER_NO_LEADER', `forwarding writes to the leader failed: ${(err as Error).message}`);
      for (const w of batch) w.reject(e);
    } finally {
      this.#inFlight--;
      this.#schedule();
    }
  }
}
