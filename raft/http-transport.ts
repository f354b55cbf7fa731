// The Raft transport over HTTP/1.1: a node:http server that accepts authenticated batches of
// messages, and undici pools that send them on a control lane and a bulk lane per peer.

import { createHmac, timingSafeEqual, type Hmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIPv4, isIPv6 } from 'node:net';
import { Pool } from 'undici';
import { decodeMessages, encodeMessages, entrySize } from './codec.ts';
import { DEFAULT_MAX_INFLIGHT } from './core.ts';
import { deadline } from './deadline.ts';
import { SiderError } from './errors.ts';
import { LogThrottle, leftOut } from './log-throttle.ts';
import type { Transport, TransportReport } from './ports.ts';
import type { Message, NodeId } from './types.ts';

/** The one route of the Raft port. */
export const RAFT_MESSAGES_PATH = '/raft/v1/messages';

/** Requests whose timestamp is further than this from the receiver's clock are refused. */
export const MAX_CLOCK_SKEW_MS = 60_000;

export type TransportLogLevel = 'info' | 'warn' | 'error';
export type TransportLog = (level: TransportLogLevel, msg: string, fields?: Record<string, unknown>) => void;

export interface HttpTransportOptions {
  /** This node's id: every accepted message must be addressed to it. */
  id: NodeId;
  /** Sent as `x-sider-cluster` and covered by the signature; requests naming another id get 403. */
  clusterId: string;
  /** 'host:port' to listen on (IPv6 as '[::1]:port'); port 0 picks a free port, see `address()`. */
  listen: string;
  /**
   * The address peers reach this node at, sent with every request (signed) so that a peer that
   * does not know this node yet can answer. Default: the bound listen address.
   */
  advertise?: string;
  /** Shared secret (at least 16 bytes) that signs every request. */
  clusterKey?: string;
  /** Without `clusterKey`, allow plaintext, unauthenticated traffic when everything is on loopback. */
  allowInsecureLoopback?: boolean;
  log?: TransportLog;
  /** Largest request body accepted (and the largest snapshot that can travel). Default 64 MiB. */
  maxBodyBytes?: number;
  /**
   * The application's entry data version (codec.ts encodeMessages; default 0): a server whose
   * version differs refuses this one's messages, and this one refuses its.
   */
  dataVersion?: number;
  /** Connections per peer for `app` and `snap` traffic, each carrying one request at a time. Default: the core's DEFAULT_MAX_INFLIGHT. */
  bulkConnections?: number;
  /** Messages queued per peer and lane before the oldest is dropped. Default 4096. */
  maxQueuedMessages?: number;
  /** Deadline of one control request (heartbeats, votes, responses). Default 1000 ms. */
  controlTimeoutMs?: number;
  /** Deadline of one request of `app` messages. Default 5000 ms. */
  bulkTimeoutMs?: number;
  /** Deadline of one `snap` request. Default 60000 ms. */
  snapshotTimeoutMs?: number;
  /**
   * How long a received request is held open so that messages this node sends back to its sender
   * meanwhile travel in the response instead of a request of their own (a follower's append
   * acknowledgement rides back on the append's response). 0 answers every request at once.
   * Default 25 ms.
   */
  replyWaitMs?: number;
  /**
   * A refused request is logged at most once per this many ms for each status, reason and remote
   * address, and at most 64 refusals in all per this many ms; the next line logged says how many
   * were left out (`suppressed`: of its kind; `suppressedOther`: of others). Default 10000.
   */
  rejectLogIntervalMs?: number;
}

const MiB = 1024 * 1024;
const DEFAULT_MAX_BODY = 64 * MiB;
/** Bulk requests carry at most this many bytes of messages (approximately), unless one message is larger. */
const MAX_BATCH_BYTES = 4 * MiB;
const MAX_BATCH_MESSAGES = 1024;
const ID_PATTERN = /^[\x21-\x7e]{1,128}$/;
const MAX_BULK_CONNECTIONS = 16;
/** Requests held open per sender waiting for a reply (a sender has at most its bulk connections + 1 control in flight). */
const MAX_PARKED_PER_PEER = MAX_BULK_CONNECTIONS + 1;
/** Request header by which a sender says it reads messages from a 200 response. */
const REPLY_HEADER = 'x-sider-reply';
/** Messages that call for an answer: a request carrying one is held open for it. */
const ASKING: ReadonlySet<Message['type']> = new Set(['app', 'heartbeat', 'preVote', 'vote', 'readIndex', 'timeoutNow']);

type LaneKind = 'control' | 'bulk';

interface Lane {
  kind: LaneKind;
  pool: Pool;
  queue: Message[];
  inFlight: number;
  maxInFlight: number;
  scheduled: boolean;
}

interface Peer {
  id: NodeId;
  addr: string;
  control: Lane;
  bulk: Lane;
  /** Removed by setPeers or close: its requests no longer report. */
  retired: boolean;
  /** Whether the last request failed, so that failures are logged once per outage. */
  failing: boolean;
}

interface HostPort {
  host: string;
  port: number;
}

/** A received request held open: messages for its sender go into its response. */
interface ParkedReply {
  from: NodeId;
  res: ServerResponse;
  timer: NodeJS.Timeout;
  /** Messages gathered for the response; null until the first one. */
  batch: Message[] | null;
  bytes: number;
  /** The index an acknowledgement must reach to answer the request's appends (0: it carried none). */
  appended: number;
}

/**
 * The index an acknowledgement must reach to answer the appends in `messages`: the last entry of
 * each, or for an empty one (it carries the commit index) the index it follows. 0 when none.
 */
function lastAppended(messages: readonly Message[]): number {
  let last = 0;
  for (const m of messages) {
    if (m.type === 'app') last = Math.max(last, m.entries.length > 0 ? m.entries[m.entries.length - 1]!.index : m.index);
  }
  return last;
}

/** Parses 'host:port' or '[v6]:port'. Returns null when malformed. */
function parseHostPort(addr: string): HostPort | null {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(addr) ?? /^([^:[\]\s/]+):(\d{1,5})$/.exec(addr);
  if (!m) return null;
  const host = m[1]!;
  const port = Number(m[2]);
  if (port > 65535) return null;
  if (addr.startsWith('[') && !isIPv6(host)) return null;
  return { host, port };
}

/** 127.0.0.0/8, ::1 (also as an IPv4-mapped 127/8 address) and the name `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost') return true;
  if (isIPv4(h)) return h.startsWith('127.');
  if (isIPv6(h)) {
    if (h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
    return mapped !== null && mapped[1]!.startsWith('127.');
  }
  return false;
}

function configError(message: string): SiderError {
  return new SiderError('SIDER_CONFIG', message);
}

function boundedInt(value: number | undefined, fallback: number, min: number, max: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw configError(`transport option ${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return typeof v === 'string' ? v : undefined;
}

function signature(key: string, clusterId: string, from: string, fromAddr: string, timestamp: string): Hmac {
  return createHmac('sha256', key).update(`${clusterId}\n${from}\n${fromAddr}\n${timestamp}\n`);
}

/** A response carrying messages is signed apart from requests, so neither can pass for the other. */
function replySignature(key: string, clusterId: string, from: string, to: string, timestamp: string): Hmac {
  return createHmac('sha256', key).update(`reply\n${clusterId}\n${from}\n${to}\n${timestamp}\n`);
}

function approxSize(m: Message): number {
  let n = 128 + m.from.length + m.to.length;
  for (const e of m.entries) n += entrySize(e);
  if (m.snapshot) n += m.snapshot.data.length + 256;
  return n;
}

/**
 * `Transport` over HTTP. Each request is `POST /raft/v1/messages` whose body is `encodeMessages` of a
 * batch addressed to one peer, with headers `x-sider-cluster`, `x-sider-from`, and, with a cluster
 * key, `x-sider-timestamp` (ms since the epoch) and `x-sider-auth` = hex HMAC-SHA256(key,
 * `${clusterId}\n${from}\n${fromAddr}\n${timestamp}\n` + body, where fromAddr is the sender's
 * advertised address in `x-sider-from-addr`). The receiver refuses timestamps more than 60 s
 * from its clock; a captured request can be replayed within that window, which Raft tolerates (it
 * already copes with duplicated and reordered messages). The key authenticates, it does not
 * encrypt: traffic is plaintext. mTLS is out of this transport's scope for now (README "Known
 * limitations").
 *
 * Per peer there are two undici pools: the control lane (one connection, one request in flight)
 * carries everything but `app` and `snap`, which go on the bulk lane (`bulkConnections`, one request
 * in flight on each; by default as many as the Raft core's appends in flight per follower), so
 * heartbeats and votes never wait behind appends or snapshots. Messages sent
 * while a lane is busy are batched into its next request; a `snap` message always travels alone.
 *
 * Replies: a request carrying messages that call for an answer (appends, heartbeats, votes, read
 * requests, TimeoutNow) is held open for up to `replyWaitMs`, and control messages this node sends
 * to that sender meanwhile go back in the response (200, signed like a request but over
 * `reply\n${clusterId}\n${from}\n${to}\n${timestamp}\n` + body) instead of in a request of their
 * own: a follower's acknowledgement of an append rides back on the append's response, which halves
 * the HTTP exchanges of replication. Otherwise the response is 204. Only senders that send
 * `x-sider-reply: 1` get replies, and a response that fails its checks delivers nothing.
 * Failures come back as `unreachable` reports; every `snap` also reports its outcome. Reports are
 * delivered asynchronously, never from inside `send()`.
 */
export class HttpTransport implements Transport {
  readonly #id: NodeId;
  readonly #clusterId: string;
  readonly #listen: HostPort;
  #advertise = '';
  readonly #key: string | undefined;
  readonly #insecure: boolean;
  readonly #log: TransportLog;
  readonly #maxBody: number;
  readonly #dataVersion: number;
  readonly #bulkConnections: number;
  readonly #maxQueued: number;
  readonly #timeouts: Record<'control' | 'bulk' | 'snapshot', number>;
  readonly #replyWaitMs: number;
  /** Refused requests are logged through this: a misconfigured or foreign peer keeps sending. */
  readonly #rejectLog: LogThrottle;

  #server: Server | null = null;
  #deliver: ((m: Message) => void) | null = null;
  #report: ((r: TransportReport) => void) | null = null;
  #started = false;
  #closed = false;
  #closing: Promise<void> | null = null;

  #peers = new Map<NodeId, Peer>();
  /** The addresses last given to setPeers (the configuration). */
  #configured: Record<NodeId, string> = {};
  /**
   * Addresses learned from authenticated requests of peers the configuration does not (yet) name:
   * a node that has just joined knows no configuration until the leader's log reaches it, and must
   * still be able to answer the leader.
   */
  #learned = new Map<NodeId, string>();
  /** Peers whose address was refused (malformed, or non-loopback without a key): id → address. */
  #refused = new Map<NodeId, string>();
  /** Pools of removed peers still finishing their requests. */
  #retiring = new Set<Pool>();
  /** Requests held open per sender, oldest first. */
  #parked = new Map<NodeId, ParkedReply[]>();
  /** Per peer, the held request whose response is gathering messages in this turn. */
  #filling = new Map<NodeId, ParkedReply>();
  #pendingUnreachable = new Set<NodeId>();

  readonly #advertiseOpt: string;

  constructor(opts: HttpTransportOptions) {
    this.#advertiseOpt = opts.advertise ?? '';
    if (typeof opts.id !== 'string' || !ID_PATTERN.test(opts.id)) {
      throw configError('transport option id must be 1 to 128 printable ASCII characters without spaces');
    }
    if (typeof opts.clusterId !== 'string' || !ID_PATTERN.test(opts.clusterId)) {
      throw configError('transport option clusterId must be 1 to 128 printable ASCII characters without spaces');
    }
    const listen = parseHostPort(opts.listen);
    if (!listen) throw configError(`transport option listen must be 'host:port', got '${opts.listen}'`);
    if (opts.clusterKey !== undefined && Buffer.byteLength(opts.clusterKey) < 16) {
      throw configError('transport option clusterKey must be at least 16 bytes long');
    }
    this.#id = opts.id;
    this.#clusterId = opts.clusterId;
    this.#listen = listen;
    this.#key = opts.clusterKey;
    this.#insecure = opts.clusterKey === undefined;
    if (this.#insecure) {
      if (opts.allowInsecureLoopback !== true) {
        throw configError(
          'transport option clusterKey is required: Raft traffic must be authenticated ' +
            '(allowInsecureLoopback permits plaintext only when every address is on loopback)',
        );
      }
      if (!isLoopbackHost(listen.host)) {
        throw configError(
          `transport option clusterKey is required to listen on non-loopback address '${opts.listen}'`,
        );
      }
    }
    this.#log = opts.log ?? (() => {});
    this.#maxBody = boundedInt(opts.maxBodyBytes, DEFAULT_MAX_BODY, 1024, 1024 * MiB, 'maxBodyBytes');
    this.#dataVersion = boundedInt(opts.dataVersion, 0, 0, 0xffff_ffff, 'dataVersion');
    this.#bulkConnections = boundedInt(opts.bulkConnections, DEFAULT_MAX_INFLIGHT, 1, MAX_BULK_CONNECTIONS, 'bulkConnections');
    this.#maxQueued = boundedInt(opts.maxQueuedMessages, 4096, 1, 1_000_000, 'maxQueuedMessages');
    this.#timeouts = {
      control: boundedInt(opts.controlTimeoutMs, 1000, 1, 600_000, 'controlTimeoutMs'),
      bulk: boundedInt(opts.bulkTimeoutMs, 5000, 1, 600_000, 'bulkTimeoutMs'),
      snapshot: boundedInt(opts.snapshotTimeoutMs, 60_000, 1, 3_600_000, 'snapshotTimeoutMs'),
    };
    this.#replyWaitMs = boundedInt(opts.replyWaitMs, 25, 0, 1000, 'replyWaitMs');
    this.#rejectLog = new LogThrottle(boundedInt(opts.rejectLogIntervalMs, 10_000, 0, 3_600_000, 'rejectLogIntervalMs'));
  }

  async start(deliver: (m: Message) => void, report: (r: TransportReport) => void): Promise<void> {
    if (this.#started || this.#closed) throw new SiderError('SIDER_STOPPED', 'transport already started or closed');
    const [refused] = this.#refused;
    if (this.#insecure && refused) {
      throw configError(`peer ${refused[0]} at '${refused[1]}' is refused: ${this.#refusedWhy(refused[1])}`);
    }
    this.#started = true;
    this.#deliver = deliver;
    this.#report = report;
    const server = createServer({
      headersTimeout: 10_000,
      requestTimeout: this.#timeouts.snapshot + 30_000,
      keepAliveTimeout: 30_000,
    });
    server.on('request', (req, res) => this.#handle(req, res));
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        reject(new SiderError('SIDER_CONFIG', `cannot listen on '${this.#formatListen()}': ${err.message}`, { cause: err }));
      };
      server.once('error', onError);
      server.listen({ host: this.#listen.host, port: this.#listen.port }, () => {
        server.off('error', onError);
        server.on('error', (err) => this.#log('error', 'raft transport server error', { error: err.message }));
        resolve();
      });
    });
    this.#advertise = this.#advertiseOpt || this.address();
    this.#log('info', 'raft transport listening', { address: this.address(), authenticated: !this.#insecure });
  }

  /** The bound 'host:port' (IPv6 in brackets). Valid after `start()` resolved. */
  address(): string {
    const a = this.#server?.address();
    if (!a || typeof a === 'string') throw new SiderError('SIDER_STOPPED', 'transport is not listening');
    return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  }

  setPeers(configured: Record<NodeId, string>): void {
    if (this.#closed) return;
    this.#configured = { ...configured };
    const addrs: Record<NodeId, string> = {};
    for (const [id, addr] of this.#learned) if (!(id in configured)) addrs[id] = addr;
    Object.assign(addrs, configured);
    for (const [id, peer] of this.#peers) {
      if (addrs[id] !== peer.addr || id === this.#id) this.#retire(peer);
    }
    this.#refused.clear();
    for (const [id, addr] of Object.entries(addrs)) {
      if (id === this.#id || this.#peers.has(id)) continue;
      const hp = parseHostPort(addr);
      if (!hp || hp.port === 0 || (this.#insecure && !isLoopbackHost(hp.host))) {
        this.#refused.set(id, addr);
        this.#log('error', 'raft transport will not send to peer', { peer: id, addr, reason: this.#refusedWhy(addr) });
      } else {
        this.#peers.set(id, this.#newPeer(id, addr, hp));
      }
    }
  }

  /**
   * Queues `m` for `m.to`. Keeps a reference to `m` until it is encoded: the caller must not mutate
   * it afterwards. Dropped silently before `start()` and after `close()`.
   */
  send(m: Message): void {
    if (!this.#started || this.#closed) return;
    // Control messages may ride back on a held response; appends and snapshots keep their lane.
    if (m.type !== 'app' && m.type !== 'snap' && this.#intoReply(m)) return;
    const peer = this.#peers.get(m.to);
    if (!peer) {
      if (m.type === 'snap') this.#emit({ kind: 'snapshot', to: m.to, ok: false });
      this.#unreachable(m.to);
      return;
    }
    const lane = m.type === 'app' || m.type === 'snap' ? peer.bulk : peer.control;
    if (lane.queue.length >= this.#maxQueued) {
      const dropped = lane.queue.shift()!;
      if (dropped.type === 'snap') this.#emit({ kind: 'snapshot', to: peer.id, ok: false });
      if (!peer.failing) {
        this.#log('warn', 'raft transport queue full, dropping oldest message', { peer: peer.id, lane: lane.kind });
      }
      this.#unreachable(peer.id);
    }
    lane.queue.push(m);
    this.#schedule(peer, lane);
  }

  /** Pumps `lane` once at the end of this turn, so that every message the driver sends in one turn shares a request. */
  #schedule(peer: Peer, lane: Lane): void {
    if (lane.scheduled) return;
    lane.scheduled = true;
    queueMicrotask(() => {
      lane.scheduled = false;
      this.#pump(peer, lane);
    });
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    for (const list of this.#parked.values()) while (list.length > 0) this.#release(list[0]!, 503);
    for (const p of this.#filling.values()) this.#release(p, 503);
    this.#parked.clear();
    this.#filling.clear();
    const pools = [...this.#retiring];
    for (const peer of this.#peers.values()) {
      peer.retired = true;
      peer.control.queue.length = 0;
      peer.bulk.queue.length = 0;
      pools.push(peer.control.pool, peer.bulk.pool);
    }
    this.#peers.clear();
    this.#retiring.clear();
    const waits: Promise<unknown>[] = pools.map((p) => p.destroy().catch(() => {}));
    const server = this.#server;
    if (server?.listening) {
      waits.push(new Promise<void>((resolve) => server.close(() => resolve())));
      server.closeAllConnections();
    }
    await Promise.all(waits);
  }

  #formatListen(): string {
    const { host, port } = this.#listen;
    return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
  }

  #refusedWhy(addr: string): string {
    const hp = parseHostPort(addr);
    return hp && hp.port !== 0 ? 'it is not on loopback and no clusterKey is set' : "it is not 'host:port'";
  }

  #newPeer(id: NodeId, addr: string, hp: HostPort): Peer {
    const origin = `http://${isIPv6(hp.host) ? `[${hp.host}]` : hp.host}:${hp.port}`;
    const lane = (kind: LaneKind, connections: number, maxInFlight: number): Lane => ({
      kind,
      pool: new Pool(origin, { connections, pipelining: 1, keepAliveTimeout: 20_000 }),
      queue: [],
      inFlight: 0,
      maxInFlight,
      scheduled: false,
    });
    return {
      id,
      addr,
      control: lane('control', 1, 1),
      bulk: lane('bulk', this.#bulkConnections, this.#bulkConnections),
      retired: false,
      failing: false,
    };
  }

  #retire(peer: Peer): void {
    peer.retired = true;
    this.#peers.delete(peer.id);
    for (const lane of [peer.control, peer.bulk]) {
      // A snapshot that will never be sent must still be reported, or its sender would wait for it.
      for (const m of lane.queue) if (m.type === 'snap') this.#emit({ kind: 'snapshot', to: peer.id, ok: false });
      lane.queue.length = 0;
      const pool = lane.pool;
      this.#retiring.add(pool);
      void pool
        .close()
        .catch(() => {})
        .finally(() => this.#retiring.delete(pool));
    }
  }

  #pump(peer: Peer, lane: Lane): void {
    while (!peer.retired && lane.inFlight < lane.maxInFlight && lane.queue.length > 0) {
      const batch = this.#takeBatch(lane.queue);
      lane.inFlight++;
      void this.#post(peer, lane, batch).finally(() => {
        lane.inFlight--;
        this.#pump(peer, lane);
      });
    }
  }

  #takeBatch(queue: Message[]): Message[] {
    if (queue[0]!.type === 'snap') return queue.splice(0, 1);
    let n = 0;
    let bytes = 0;
    while (n < queue.length && n < MAX_BATCH_MESSAGES) {
      const m = queue[n]!;
      if (m.type === 'snap') break;
      const size = approxSize(m);
      if (n > 0 && bytes + size > MAX_BATCH_BYTES) break;
      bytes += size;
      n++;
    }
    return queue.splice(0, n);
  }

  async #post(peer: Peer, lane: Lane, batch: Message[]): Promise<void> {
    const isSnap = batch[0]!.type === 'snap';
    let ok = false;
    let failure = '';
    try {
      const body = encodeMessages(batch, this.#dataVersion);
      const timestamp = String(Date.now());
      const headers: Record<string, string> = {
        'content-type': 'application/octet-stream',
        'x-sider-cluster': this.#clusterId,
        'x-sider-from': this.#id,
        'x-sider-from-addr': this.#advertise,
      };
      if (this.#key !== undefined) {
        headers['x-sider-timestamp'] = timestamp;
        headers['x-sider-auth'] = signature(this.#key, this.#clusterId, this.#id, this.#advertise, timestamp)
          .update(body)
          .digest('hex');
      }
      if (!isSnap) headers[REPLY_HEADER] = '1';
      const timeout = isSnap ? this.#timeouts.snapshot : this.#timeouts[lane.kind];
      const { signal, done } = deadline(timeout);
      try {
        const res = await lane.pool.request({ method: 'POST', path: RAFT_MESSAGES_PATH, headers, body, signal });
        if (res.statusCode === 200 && !isSnap) {
          failure = await this.#readReply(peer, res.headers, res.body);
        } else {
          await res.body.dump({ limit: 64 * 1024, signal });
        }
        ok = res.statusCode >= 200 && res.statusCode < 300 && failure === '';
        if (res.statusCode < 200 || res.statusCode >= 300) failure = `HTTP ${res.statusCode}`;
        if (res.statusCode === 413) failure += ` (request of ${body.length} bytes exceeds the peer's maxBodyBytes)`;
      } finally {
        done();
      }
    } catch (err) {
      failure = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    }
    if (this.#closed) return;
    if (peer.retired) {
      if (isSnap) this.#emit({ kind: 'snapshot', to: peer.id, ok });
      return;
    }
    if (ok) {
      if (peer.failing) this.#log('info', 'raft peer reachable again', { peer: peer.id });
      peer.failing = false;
    } else {
      // Logged once per outage: heartbeats to a dead peer fail ten times a second.
      if (!peer.failing || isSnap) {
        this.#log('warn', 'raft transport send failed', {
          peer: peer.id,
          lane: lane.kind,
          messages: batch.length,
          error: failure,
        });
      }
      peer.failing = true;
      this.#unreachable(peer.id);
    }
    if (isSnap) this.#emit({ kind: 'snapshot', to: peer.id, ok });
  }

  #unreachable(to: NodeId): void {
    if (this.#pendingUnreachable.size === 0) {
      queueMicrotask(() => {
        const ids = [...this.#pendingUnreachable];
        this.#pendingUnreachable.clear();
        for (const id of ids) this.#emit({ kind: 'unreachable', to: id });
      });
    }
    this.#pendingUnreachable.add(to);
  }

  #emit(r: TransportReport): void {
    queueMicrotask(() => {
      if (!this.#closed) this.#report?.(r);
    });
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    req.on('error', () => {});
    res.on('error', () => {});
    const path = (req.url ?? '').split('?')[0];
    if (path !== RAFT_MESSAGES_PATH) return this.#reject(req, res, 404, 'not found');
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      return this.#reject(req, res, 405, 'method not allowed');
    }
    if (this.#closed) return this.#reject(req, res, 503, 'transport closed');
    const cluster = header(req, 'x-sider-cluster');
    if (cluster !== this.#clusterId) {
      return this.#reject(req, res, 403, 'foreign or missing cluster id', { cluster: cluster?.slice(0, 128) });
    }
    const from = header(req, 'x-sider-from') ?? '';
    if (!ID_PATTERN.test(from)) return this.#reject(req, res, 400, 'missing or malformed x-sider-from');
    const fromAddr = header(req, 'x-sider-from-addr') ?? '';
    if (fromAddr.length > 300) return this.#reject(req, res, 400, 'malformed x-sider-from-addr');
    const declared = header(req, 'content-length');
    if (declared !== undefined && Number(declared) > this.#maxBody) {
      return this.#reject(req, res, 413, 'body too large', { from, bytes: Number(declared), max: this.#maxBody });
    }
    let mac: Hmac | null = null;
    let auth = '';
    if (this.#key !== undefined) {
      const timestamp = header(req, 'x-sider-timestamp') ?? '';
      auth = header(req, 'x-sider-auth') ?? '';
      if (!/^\d{1,16}$/.test(timestamp) || !/^[0-9a-fA-F]{64}$/.test(auth)) {
        return this.#reject(req, res, 401, 'missing or malformed authentication headers', { from });
      }
      const skew = Date.now() - Number(timestamp);
      if (Math.abs(skew) > MAX_CLOCK_SKEW_MS) {
        return this.#reject(req, res, 401, 'timestamp outside the accepted window', { from, skewMs: skew });
      }
      mac = signature(this.#key, this.#clusterId, from, fromAddr, timestamp);
    }

    const chunks: Buffer[] = [];
    let received = 0;
    let done = false;
    const onData = (chunk: Buffer): void => {
      if (done) return;
      received += chunk.length;
      if (received > this.#maxBody) {
        done = true;
        req.off('data', onData);
        req.pause();
        this.#reject(req, res, 413, 'body too large', { from, max: this.#maxBody });
        return;
      }
      mac?.update(chunk);
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.on('end', () => {
      if (done) return;
      done = true;
      if (mac) {
        const expected = mac.digest();
        const given = Buffer.from(auth, 'hex');
        if (!timingSafeEqual(expected, given)) return this.#reject(req, res, 401, 'bad signature', { from });
      }
      let messages: Message[];
      try {
        messages = decodeMessages(Buffer.concat(chunks, received), this.#dataVersion);
      } catch (err) {
        return this.#reject(req, res, 400, 'undecodable body', { from, error: (err as Error).message });
      }
      if (this.#closed) return this.#reject(req, res, 503, 'transport closed');
      this.#learn(from, fromAddr);
      try {
        for (const m of messages) {
          if (m.to !== this.#id || m.from !== from) {
            this.#log('warn', 'raft transport dropped misaddressed message', {
              from,
              msgFrom: m.from,
              to: m.to,
              type: m.type,
            });
            continue;
          }
          this.#deliver!(m);
        }
      } catch (err) {
        this.#log('error', 'raft transport deliver failed', { from, error: (err as Error).message });
        res.writeHead(500).end();
        return;
      }
      if (this.#replyWaitMs > 0 && header(req, REPLY_HEADER) === '1' && messages.some((m) => ASKING.has(m.type))) {
        this.#park(from, res, lastAppended(messages));
      } else {
        res.writeHead(204).end();
      }
    });
  }

  // ---- replies: messages back to a sender in the response to its request ----------------------

  /** Holds `res` open for up to replyWaitMs; it is answered 204 if nothing goes back meanwhile. */
  #park(from: NodeId, res: ServerResponse, appended: number): void {
    let list = this.#parked.get(from);
    if (!list) {
      list = [];
      this.#parked.set(from, list);
    }
    if (list.length >= MAX_PARKED_PER_PEER) this.#release(list[0]!, 204);
    const p: ParkedReply = {
      from,
      res,
      batch: null,
      bytes: 0,
      appended,
      timer: setTimeout(() => this.#release(p, 204), this.#replyWaitMs),
    };
    list.push(p);
    // The sender gave up (deadline, close): nothing can go back on it any more.
    res.once('close', () => {
      if (!res.writableFinished) this.#unpark(p);
    });
  }

  #unpark(p: ParkedReply): void {
    clearTimeout(p.timer);
    const list = this.#parked.get(p.from);
    if (list) {
      const i = list.indexOf(p);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.#parked.delete(p.from);
    }
    if (this.#filling.get(p.from) === p) this.#filling.delete(p.from);
  }

  /** Answers a held request with no messages. */
  #release(p: ParkedReply, status: 204 | 503): void {
    this.#unpark(p);
    if (p.batch) {
      // Gathered messages that could not go back this way take the ordinary path.
      for (const m of p.batch) this.#sendOnLane(m);
      p.batch = null;
    }
    if (!p.res.headersSent && !p.res.destroyed) p.res.writeHead(status).end();
  }

  /** Puts `m` into a held response to its destination, if there is one; false otherwise. */
  #intoReply(m: Message): boolean {
    let p = this.#filling.get(m.to);
    const size = approxSize(m);
    if (p && (p.batch!.length >= MAX_BATCH_MESSAGES || p.bytes + size > MAX_BATCH_BYTES)) return false;
    if (!p) {
      const list = this.#parked.get(m.to);
      while (list && list.length > 0 && list[0]!.res.destroyed) this.#unpark(list[0]!);
      const first = list?.[0];
      if (!first || size > MAX_BATCH_BYTES) return false;
      p = first;
      list.shift();
      if (list.length === 0) this.#parked.delete(m.to);
      clearTimeout(p.timer);
      p.batch = [];
      this.#filling.set(m.to, p);
      // Deferred so that every message the driver sends in one turn shares the response.
      queueMicrotask(() => this.#flushReply(p!));
    }
    p.batch!.push(m);
    p.bytes += size;
    return true;
  }

  #flushReply(p: ParkedReply): void {
    if (this.#filling.get(p.from) === p) this.#filling.delete(p.from);
    const batch = p.batch;
    p.batch = null;
    if (!batch || batch.length === 0) return;
    if (p.res.destroyed || p.res.headersSent) {
      for (const m of batch) this.#sendOnLane(m);
      return;
    }
    const body = encodeMessages(batch, this.#dataVersion);
    const headers: Record<string, string> = {
      'content-type': 'application/octet-stream',
      'content-length': String(body.length),
      'x-sider-cluster': this.#clusterId,
      'x-sider-from': this.#id,
    };
    if (this.#key !== undefined) {
      const timestamp = String(Date.now());
      headers['x-sider-timestamp'] = timestamp;
      headers['x-sider-auth'] = replySignature(this.#key, this.#clusterId, this.#id, p.from, timestamp).update(body).digest('hex');
    }
    p.res.writeHead(200, headers).end(body);
    this.#releaseAcknowledged(p.from, batch);
  }

  /**
   * Answers 204 the requests from `to` whose appends the acknowledgement in `sent` covers. This
   * node handles the appends of several requests in one write and acknowledges them once, on one
   * response; the others would otherwise stay held until the next acknowledgement or replyWaitMs,
   * keeping the sender's bulk connections busy while its next appends wait for one.
   */
  #releaseAcknowledged(to: NodeId, sent: readonly Message[]): void {
    let acked = 0;
    for (const m of sent) if (m.type === 'appResp' && !m.reject && m.index > acked) acked = m.index;
    const list = acked > 0 ? this.#parked.get(to) : undefined;
    if (!list) return;
    for (const q of list.filter((q) => q.appended > 0 && q.appended <= acked && q.batch === null)) this.#release(q, 204);
  }

  /** The control-lane path of send(), for messages a held response could not take after all. */
  #sendOnLane(m: Message): void {
    if (this.#closed) return;
    const peer = this.#peers.get(m.to);
    if (!peer) {
      this.#unreachable(m.to);
      return;
    }
    peer.control.queue.push(m);
    this.#schedule(peer, peer.control);
  }

  /**
   * Reads, checks and delivers the messages of a 200 response from `peer`. Returns '' on success,
   * else why the response was refused (nothing of it is delivered then).
   */
  async #readReply(peer: Peer, headers: Record<string, string | string[] | undefined>, body: AsyncIterable<Buffer>): Promise<string> {
    const chunks: Buffer[] = [];
    let received = 0;
    for await (const chunk of body) {
      received += chunk.length;
      if (received > this.#maxBody) return `reply larger than ${this.#maxBody} bytes`;
      chunks.push(chunk);
    }
    const buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received);
    const one = (name: string): string => {
      const v = headers[name];
      return typeof v === 'string' ? v : '';
    };
    if (one('x-sider-cluster') !== this.#clusterId || one('x-sider-from') !== peer.id) return 'reply from the wrong cluster or node';
    if (this.#key !== undefined) {
      const timestamp = one('x-sider-timestamp');
      const auth = one('x-sider-auth');
      if (!/^\d{1,16}$/.test(timestamp) || !/^[0-9a-fA-F]{64}$/.test(auth)) return 'reply without authentication';
      if (Math.abs(Date.now() - Number(timestamp)) > MAX_CLOCK_SKEW_MS) return 'reply timestamp outside the accepted window';
      const expected = replySignature(this.#key, this.#clusterId, peer.id, this.#id, timestamp).update(buf).digest();
      if (!timingSafeEqual(expected, Buffer.from(auth, 'hex'))) return 'reply with a bad signature';
    }
    let messages: Message[];
    try {
      messages = decodeMessages(buf, this.#dataVersion);
    } catch (err) {
      return `undecodable reply: ${(err as Error).message}`;
    }
    if (this.#closed || peer.retired) return '';
    for (const m of messages) {
      if (m.to !== this.#id || m.from !== peer.id || m.type === 'snap' || m.type === 'app') {
        this.#log('warn', 'raft transport dropped misaddressed message', { from: peer.id, msgFrom: m.from, to: m.to, type: m.type });
        continue;
      }
      this.#deliver!(m);
    }
    return '';
  }

  /** Remembers where an authenticated sender the configuration does not name can be reached. */
  #learn(from: NodeId, addr: string): void {
    if (!addr || from === this.#id || from in this.#configured || this.#learned.get(from) === addr) return;
    if (this.#learned.size >= 64 && !this.#learned.has(from)) return;
    this.#learned.set(from, addr);
    this.setPeers(this.#configured);
  }

  /** Answers an error and closes the connection, so an unread body is not read any further. */
  #reject(
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    reason: string,
    fields: Record<string, unknown> = {},
  ): void {
    const remote = req.socket.remoteAddress;
    // Not keyed by the claimed sender: an unauthenticated request can claim any.
    const admitted = this.#rejectLog.admit(`${status}\n${reason}\n${remote ?? ''}`);
    if (admitted !== null) {
      this.#log('warn', 'raft transport rejected request', {
        status,
        reason,
        remote,
        method: req.method,
        path: (req.url ?? '').slice(0, 128),
        ...fields,
        ...leftOut(admitted),
      });
    }
    if (res.headersSent) return;
    res.shouldKeepAlive = false;
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
    res.end(`${reason}\n`);
  }
}
