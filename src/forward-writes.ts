// Writes received by a follower on their way to the leader: the batching forwarder (concurrent
// writes → one signed request), the batch's wire form, and the leader's per-write results.

import { SiderError } from '../raft/errors.ts';
import { BatchForwarder } from './batch-forwarder.ts';
import type { ItemResult } from './batch-forwarder.ts';
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
export type ForwardedResult = ItemResult<{ result: ApplyResult; index: number }>;

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

/**
 * A follower's forwarder: writes that arrive while `maxInFlight` batches are travelling wait and
 * leave together in the next batch, so the leader handles one HTTP request per batch instead of
 * one per write (each write is still its own Raft proposal with its own request ID and result). A
 * write alone leaves at the end of the current event-loop turn.
 */
export class WriteForwarder {
  readonly #batches: BatchForwarder<ForwardedWrite, { result: ApplyResult; index: number }>;

  constructor(opts: WriteForwarderOptions) {
    this.#batches = new BatchForwarder<ForwardedWrite, { result: ApplyResult; index: number }>('WriteForwarder', {
      what: 'writes',
      send: opts.send,
      maxInFlight: opts.maxInFlight ?? 2,
      maxBatch: Math.min(opts.maxBatch ?? MAX_WRITE_BATCH, MAX_WRITE_BATCH),
      maxQueued: opts.maxQueued ?? 100_000,
      maxBatchChars: MAX_BATCH_CHARS,
      // Sized once, so that batches stay under the leader's body limit.
      size: (w) => JSON.stringify(w.cmd).length + w.rid.length + 32,
    });
  }

  /** Requests sent so far (for tests and metrics). */
  get requests(): number {
    return this.#batches.requests;
  }

  /** Resolves with the leader's apply result and the entry's index; rejects with a SiderError. */
  async forward(cmd: RegistryCommand, rid: string): Promise<{ result: ApplyResult; index: number }> {
    const r = await this.#batches.submit({ cmd, rid });
    return { result: r.result, index: r.index };
  }
}
