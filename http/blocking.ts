// Blocking queries (DESIGN §3): `?index=N&wait=D` parsing, and parking a request that must wait: a
// small record per request until its index passes N, the wait (plus jitter) runs out or the client
// leaves; one deadline timer for all of them, answers written straight to the socket, a per-server cap.

import { STATUS_CODES } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Context } from 'koa';
import { SiderError } from '../raft/errors.ts';
import { queryValue } from './consistency.ts';
import { parseDurationNs } from './duration.ts';
import { TickBuckets } from '../src/tick-heap.ts';

export const DEFAULT_WAIT_MS = 5 * 60_000;
export const MAX_WAIT_MS = 10 * 60_000;
/** Consul's JitterFraction: up to wait/16 is added so that many watchers do not wake together. */
export const JITTER_FRACTION = 16;
export const DEFAULT_MAX_BLOCKING_QUERIES = 60_000;
/**
 * Deadlines are kept in buckets this wide, served by one timer: a query answers at its deadline
 * rounded up to the next bucket boundary (never early, at most this much late).
 */
export const DEADLINE_BUCKET_MS = 100;
/**
 * Parked queries answered per event-loop turn. One change can wake tens of thousands; answering
 * them all in one turn would stall the loop (and with it Raft heartbeats) for a long while. At
 * ~17 µs of main-thread CPU an answer (half of it the kernel's loopback send) 256 is a turn of
 * ~4 ms; 64, 256, 1,024 and 10,000 gave the same wake-up latencies (within the noise) for 10,000
 * watchers on 2 vCPUs.
 */
export const DEFAULT_WAKE_CHUNK = 256;

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

/** A complete answer: status, headers as a flat [name, value, …] list, body. */
export interface ParkedReply {
  status: number;
  headers: readonly string[];
  body: Buffer;
}

/**
 * What every parked query of one kind (same route, namespace and body-shaping parameters) shares:
 * made once per key, not per request. `render` describes the state at the moment it is called and
 * must not throw (errors become their error reply); it is called at most once per variant per
 * batch of answers, however many queries of this kind are answered in it.
 */
export interface ParkTarget {
  readonly watch: WatchFn;
  /** `variant` is the caller's small non-negative integer (e.g. pretty-printing, consistency). */
  render(variant: number): ParkedReply;
}

export interface BlockingQueriesOptions {
  /** At most this many requests held at once on this server; more get 429. Default 60,000. */
  max?: number;
  /** [0, 1) source for the jitter; Math.random by default. */
  random?: () => number;
  /** Parked queries answered per event-loop turn. Default 256. */
  wakeChunk?: number;
  /** Receives what went wrong writing an answer (never thrown: the other answers go on). */
  onError?: (err: unknown) => void;
}

const PARKED = 0;
const QUEUED = 1;
const DONE = 2;

/** Parked queries of one kind waiting past the same index: one registry watcher for all of them. */
interface Group {
  readonly kind: Kind;
  readonly after: number;
  waiters: Waiter[];
  cancel: (() => void) | null;
  fired: boolean;
}

interface Kind {
  readonly owner: BlockingQueries;
  readonly key: string;
  readonly target: ParkTarget;
  readonly groups: Map<number, Group>;
  /** Replies rendered in batch `batch`, by variant. */
  batch: number;
  replies: (ParkedReply | undefined)[];
  /** The batch's replies as written on keep-alive connections, by variant. */
  wires: (Wire | undefined)[];
}

/** One parked request: all that is kept of it besides the socket's own objects. */
interface Waiter {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly group: Group;
  readonly variant: number;
  /** An HTTP/1.1 GET with nothing set on its response: it may be answered with a shared Wire. */
  readonly plain: boolean;
  state: number;
  /** Position in its group's array (swap-remove). */
  gslot: number;
  /** Deadline bucket and position in it; tick -1 once out of the deadline structure. */
  tick: number;
  slot: number;
}

const kWaiter = Symbol('sider.parkedWaiter');
type WithWaiter = { [kWaiter]?: Waiter | undefined };

/**
 * Parks blocking requests and counts them (the count is the metric). One per server; several apps
 * may share one as long as their kind keys differ.
 *
 * A parked request's Koa middleware has returned (`ctx.respond = false`); what remains is a
 * `Waiter` in its group (one registry watcher per kind and index) and in one deadline bucket. A
 * change or a deadline moves waiters to the answer queue, drained `wakeChunk` per turn; each
 * kind's reply is rendered once per drained batch. The first answer of a reply in a batch is
 * written with `writeHead` + `end`; later ones on keep-alive connections get the bytes Node wrote
 * for it (a Wire) in one socket write, which is most of what a wake costs the server besides
 * the kernel's send and Node's own bookkeeping of a finished response.
 */
export class BlockingQueries {
  readonly max: number;
  readonly #random: () => number;
  readonly #wakeChunk: number;
  readonly #onError: (err: unknown) => void;
  #held = 0;
  #kinds = new Map<string, Kind>();

  readonly #deadlines = new TickBuckets<Waiter>();
  #timer: NodeJS.Timeout | null = null;
  #timerTick = Infinity;

  #queue: (Waiter | undefined)[] = [];
  #head = 0;
  #draining = false;
  #batch = 0;
  #shared = 0;

  constructor(opts: BlockingQueriesOptions = {}) {
    const max = opts.max ?? DEFAULT_MAX_BLOCKING_QUERIES;
    if (!Number.isInteger(max) || max < 0) throw new SiderError('SIDER_CONFIG', `maxBlockingQueries: must be a non-negative integer, got ${max}`);
    const chunk = opts.wakeChunk ?? DEFAULT_WAKE_CHUNK;
    if (!Number.isInteger(chunk) || chunk < 1 || chunk > 1_000_000) throw new SiderError('SIDER_CONFIG', `wakeChunk: must be an integer in [1, 1000000], got ${chunk}`);
    this.max = max;
    this.#wakeChunk = chunk;
    this.#random = opts.random ?? Math.random;
    this.#onError =
      opts.onError ??
      ((err) =>
        queueMicrotask(() => {
          throw err;
        }));
  }

  /** Requests currently held (parked or queued for their answer). */
  get held(): number {
    return this.#held;
  }

  /** Answers written from a batch's shared buffer (see Wire) rather than by writeHead + end. */
  get sharedAnswers(): number {
    return this.#shared;
  }

  /** Distinct kinds with parked queries, and registry watchers they use (for tests and diagnostics). */
  get stats(): { kinds: number; groups: number; buckets: number; queued: number } {
    let groups = 0;
    for (const k of this.#kinds.values()) groups += k.groups.size;
    return { kinds: this.#kinds.size, groups, buckets: this.#deadlines.size, queued: this.#queue.length - this.#head };
  }

  /**
   * Parks `res` until `target.watch` fires past `after`, `waitMs` plus up to waitMs/16 of jitter
   * elapse (rounded up to the deadline bucket), or the client goes away. `makeTarget` runs only
   * when no query of kind `key` is parked yet. The caller must already have checked that the index
   * is not past `after`, and must not touch `res` afterwards (set `ctx.respond = false`).
   * Throws 429 (SIDER_OVERLOADED, retryable) when `max` requests are already held; returns false
   * (nothing parked, nobody to answer) when the client has already gone.
   */
  park(req: IncomingMessage, res: ServerResponse, key: string, makeTarget: () => ParkTarget, after: number, waitMs: number, variant: number): boolean {
    if (this.#held >= this.max) {
      throw new SiderError('SIDER_OVERLOADED', `too many blocking queries held on this server (${this.max}); retry later or use another server`, {
        status: 429,
      });
    }
    // The request's own 'close' may have fired already once a body was read (TOOLCHAIN): the
    // response's 'close' before it finished, or a destroyed socket, is what says the client left.
    if (res.destroyed || req.socket.destroyed) return false;
    let kind = this.#kinds.get(key);
    if (!kind) {
      kind = { owner: this, key, target: makeTarget(), groups: new Map(), batch: -1, replies: [], wires: [] };
      this.#kinds.set(key, kind);
    }
    let group = kind.groups.get(after);
    let fresh = false;
    if (!group) {
      group = { kind, after, waiters: [], cancel: null, fired: false };
      kind.groups.set(after, group);
      fresh = true;
    }
    const plain = req.method === 'GET' && req.httpVersion === '1.1' && req.headers.expect === undefined && res.getHeaderNames().length === 0;
    const w: Waiter = { req, res, group, variant, plain, state: PARKED, gslot: group.waiters.length, tick: -1, slot: 0 };
    group.waiters.push(w);
    this.#held++;
    const jitter = Math.floor(this.#random() * (waitMs / JITTER_FRACTION));
    this.#addDeadline(w, performance.now() + waitMs + jitter);
    (req as WithWaiter)[kWaiter] = w;
    // Also emitted for a pipelined response still queued behind another when the socket closes.
    // Never removed: once the waiter is done the listener finds nothing to release (cheaper than
    // a removeListener per answer, 10,000 of them in one wake).
    res.on('close', onResClose);
    // What Node's server does with an unread request once its response finishes (resume it, let
    // it end and be destroyed), done now rather than inside the wake. A GET's body is empty.
    if (!req.readableEnded) req.resume();
    if (fresh) {
      const g = group;
      g.cancel = kind.target.watch(after, () => this.#fire(g));
      // A watcher that fired synchronously found no cancel to clear: release it now.
      if (g.fired) g.cancel();
    }
    return true;
  }

  /** The client left: drop its waiter wherever it is. */
  release(req: IncomingMessage): void {
    const w = (req as WithWaiter)[kWaiter];
    if (!w || w.state === DONE) return;
    if (w.state === PARKED) {
      this.#removeDeadline(w);
      this.#leaveGroup(w);
    }
    this.#done(w);
  }

  // ---------------------------------------------------------------------------- groups

  #leaveGroup(w: Waiter): void {
    const g = w.group;
    const arr = g.waiters;
    const last = arr.pop()!;
    if (last !== w) {
      arr[w.gslot] = last;
      last.gslot = w.gslot;
    }
    if (arr.length === 0 && !g.fired) {
      g.fired = true;
      g.cancel?.();
      this.#dropGroup(g);
    }
  }

  #dropGroup(g: Group): void {
    const kind = g.kind;
    if (kind.groups.get(g.after) === g) kind.groups.delete(g.after);
    if (kind.groups.size === 0 && this.#kinds.get(kind.key) === kind) this.#kinds.delete(kind.key);
  }

  /** The watched index passed the group's: every waiter in it is answered. */
  #fire(g: Group): void {
    if (g.fired) return;
    g.fired = true;
    this.#dropGroup(g);
    const ws = g.waiters;
    g.waiters = [];
    for (const w of ws) {
      this.#removeDeadline(w);
      this.#enqueue(w);
    }
  }

  // ---------------------------------------------------------------------------- deadlines

  #addDeadline(w: Waiter, at: number): void {
    const tick = Math.ceil(at / DEADLINE_BUCKET_MS);
    w.tick = tick;
    w.slot = this.#deadlines.add(tick, w);
    // A new bucket (position 0: emptied ones are deleted) may be due before the armed timer.
    if (w.slot === 0 && tick < this.#timerTick) this.#arm(tick);
  }

  #removeDeadline(w: Waiter): void {
    if (w.tick < 0) return;
    const bucket = this.#deadlines.bucket(w.tick)!;
    const last = bucket.pop()!;
    if (last !== w) {
      bucket[w.slot] = last;
      last.slot = w.slot;
    }
    if (bucket.length === 0) this.#deadlines.delete(w.tick);
    w.tick = -1;
  }

  #arm(tick: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerTick = tick;
    this.#timer = setTimeout(() => this.#onTimer(), Math.max(0, tick * DEADLINE_BUCKET_MS - performance.now()));
    // Held sockets keep a server alive; the timer alone must not keep a process.
    this.#timer.unref();
  }

  #onTimer(): void {
    this.#timer = null;
    this.#timerTick = Infinity;
    // Timers may fire up to a millisecond before the monotonic clock reaches the target.
    const due = Math.floor((performance.now() + 1) / DEADLINE_BUCKET_MS);
    for (let b = this.#deadlines.takeDue(due); b; b = this.#deadlines.takeDue(due)) {
      for (const w of b[1]) {
        w.tick = -1;
        this.#leaveGroup(w);
        this.#enqueue(w);
      }
    }
    const next = this.#deadlines.firstTick();
    if (next !== undefined) this.#arm(next);
  }

  // ---------------------------------------------------------------------------- answers

  #enqueue(w: Waiter): void {
    w.state = QUEUED;
    this.#queue.push(w);
    if (this.#draining) return;
    this.#draining = true;
    setImmediate(() => this.#drain());
  }

  #drain(): void {
    const batch = ++this.#batch;
    const q = this.#queue;
    let answered = 0;
    while (this.#head < q.length && answered < this.#wakeChunk) {
      const w = q[this.#head]!;
      q[this.#head++] = undefined;
      if (w.state !== QUEUED) continue;
      answered++;
      this.#answer(w, batch);
    }
    if (this.#head < q.length) {
      setImmediate(() => this.#drain());
      return;
    }
    this.#queue = [];
    this.#head = 0;
    this.#draining = false;
  }

  #answer(w: Waiter, batch: number): void {
    this.#done(w);
    const res = w.res as NodeResponse;
    if (res.destroyed || res.writableEnded) return;
    try {
      const kind = w.group.kind;
      const reply = this.#reply(kind, w.variant, batch);
      const wire = w.plain ? kind.wires[w.variant] : undefined;
      if (wire && sameWire(wire, res)) {
        // What writeHead + end would write, as one buffer; end() then only finishes the response
        // (no header left to send, no body), so Node's keep-alive and pipelining go on as usual.
        res.statusCode = wire.status;
        res.statusMessage = wire.statusMessage;
        res._header = wire.header;
        res._headerSent = true;
        res.socket!.write(wire.bytes);
        res.end();
        this.#shared++;
        return;
      }
      // The reason phrase is explicit: Koa set the parked response's to its 200's "OK".
      res.writeHead(reply.status, STATUS_CODES[reply.status] ?? 'unknown', reply.headers as string[]);
      if (w.plain && wire === undefined) {
        const made = wireOf(res, reply);
        if (made) kind.wires[w.variant] = made;
      }
      res.end(reply.body);
    } catch (err) {
      // The reply is malformed or the socket refused it: this client gets nothing, the rest go on.
      res.destroy();
      this.#onError(err);
    }
  }

  #reply(kind: Kind, variant: number, batch: number): ParkedReply {
    if (kind.batch !== batch) {
      kind.batch = batch;
      kind.replies = [];
      kind.wires = [];
    }
    let reply = kind.replies[variant];
    if (!reply) {
      reply = kind.target.render(variant);
      kind.replies[variant] = reply;
    }
    return reply;
  }

  #done(w: Waiter): void {
    w.state = DONE;
    this.#held--;
    const req = w.req as WithWaiter;
    req[kWaiter] = undefined;
  }
}

/** The fields of Node's ServerResponse (node:_http_outgoing, _http_server) a Wire is made from and written with. */
type NodeResponse = ServerResponse & {
  _header: string | null;
  _headerSent: boolean;
  _hasBody: boolean;
  shouldKeepAlive: boolean;
  maxRequestsOnConnectionReached: boolean;
  _keepAliveTimeout: number;
  _maxRequestsPerSocket: number;
  _defaultKeepAlive: boolean;
  socket: (Socket & { _httpMessage?: unknown }) | null;
};

/**
 * One reply of one batch as Node wrote it for a keep-alive GET: the header block `writeHead` made
 * (status line, the reply's headers, Date, Connection and Keep-Alive) and that block with the body,
 * shared by the batch's later answers on connections whose response would get the same block. A
 * batch is one event-loop turn, within which Node's Date does not change either.
 */
interface Wire {
  status: number;
  statusMessage: string;
  header: string;
  bytes: Buffer;
  sendDate: boolean;
  keepAliveTimeout: number;
  maxRequestsPerSocket: number;
  defaultKeepAlive: boolean;
}

/** Made right after `writeHead` on a keep-alive response; null when that response is not one. */
function wireOf(res: NodeResponse, reply: ParkedReply): Wire | null {
  const header = res._header;
  if (!keepsAlive(res) || res._hasBody !== true || typeof header !== 'string' || !header.endsWith('\r\n\r\n')) return null;
  return {
    status: res.statusCode,
    statusMessage: res.statusMessage,
    header,
    bytes: Buffer.concat([Buffer.from(header, 'latin1'), reply.body]),
    sendDate: res.sendDate,
    keepAliveTimeout: res._keepAliveTimeout,
    maxRequestsPerSocket: res._maxRequestsPerSocket,
    defaultKeepAlive: res._defaultKeepAlive,
  };
}

function keepsAlive(res: NodeResponse): boolean {
  return res.shouldKeepAlive === true && res.maxRequestsOnConnectionReached === false;
}

/** Whether writeHead would make `wire.header` for `res`, and `res` owns its socket now (not queued behind a pipelined one). */
function sameWire(wire: Wire, res: NodeResponse): boolean {
  const sock = res.socket;
  return (
    keepsAlive(res) &&
    res._header === null &&
    sock !== null &&
    sock._httpMessage === res &&
    sock.writable &&
    res.sendDate === wire.sendDate &&
    res._keepAliveTimeout === wire.keepAliveTimeout &&
    res._maxRequestsPerSocket === wire.maxRequestsPerSocket &&
    res._defaultKeepAlive === wire.defaultKeepAlive
  );
}

// A shared listener (no closure per parked request); `this` is the emitter.
function onResClose(this: ServerResponse): void {
  if (this.writableFinished) return;
  release(this.req);
}

function release(req: IncomingMessage): void {
  (req as WithWaiter)[kWaiter]?.group.kind.owner.release(req);
}
