// Binary encoding of entries, membership, conf changes and messages, for disk and wire. Input from
// disk or the network is untrusted: every decode checks bounds and throws SIDER_BAD_REQUEST (wire)
// or the caller maps it to SIDER_CORRUPT_STORE (disk).

import { crc32 } from 'node:zlib';
import { SiderError } from './errors.ts';
import type {
  ConfChange,
  ConfChangeOp,
  Entry,
  EntryType,
  HardState,
  Membership,
  Message,
  MessageType,
  Snapshot,
  SnapshotMeta,
} from './types.ts';

const entryTypes: EntryType[] = ['normal', 'conf', 'noop'];
/** Every message type, in wire-code order (append only: the index is the code on the wire). */
export const messageTypes: readonly MessageType[] = [
  'app',
  'appResp',
  'heartbeat',
  'heartbeatResp',
  'preVote',
  'preVoteResp',
  'vote',
  'voteResp',
  'snap',
  'timeoutNow',
  'readIndex',
  'readIndexResp',
];
const confOps: ConfChangeOp[] = ['addLearner', 'promote', 'remove', 'bootstrap'];

/** `v`, a non-negative safe integer, as 64 bits big-endian at `at`: two 32-bit halves, no BigInt. */
export function writeU64BE(buf: Buffer, v: number, at: number): void {
  buf.writeUInt32BE(Math.floor(v / 0x1_0000_0000), at);
  buf.writeUInt32BE(v >>> 0, at + 4);
}

/** Growable byte writer. */
export class Writer {
  #buf: Buffer;
  #len = 0;
  constructor(initial = 256) {
    this.#buf = Buffer.allocUnsafe(initial);
  }
  #ensure(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.#len + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.#buf.copy(next, 0, 0, this.#len);
    this.#buf = next;
  }
  u8(v: number): this {
    this.#ensure(1);
    this.#buf[this.#len++] = v;
    return this;
  }
  u32(v: number): this {
    this.#ensure(4);
    this.#buf.writeUInt32BE(v >>> 0, this.#len);
    this.#len += 4;
    return this;
  }
  /** Non-negative integer up to 2^53 (big-endian 64 bits; see writeU64BE). */
  num(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`not a non-negative safe integer: ${v}`);
    this.#ensure(8);
    writeU64BE(this.#buf, v, this.#len);
    this.#len += 8;
    return this;
  }
  bytes(b: Uint8Array): this {
    this.u32(b.length);
    this.#ensure(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
    return this;
  }
  /** UTF-8, length-prefixed like bytes(), written in place. */
  str(s: string): this {
    const n = Buffer.byteLength(s, 'utf8');
    this.u32(n);
    this.#ensure(n);
    this.#len += this.#buf.write(s, this.#len, n, 'utf8');
    return this;
  }
  finish(): Buffer {
    return this.#buf.subarray(0, this.#len);
  }
}

/** Bounds-checked reader over untrusted bytes. */
export class Reader {
  #buf: Buffer;
  #pos = 0;
  constructor(buf: Uint8Array) {
    this.#buf = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  #need(n: number, what: string): void {
    if (this.#pos + n > this.#buf.length) throw bad(`truncated input reading ${what}`);
  }
  u8(what: string): number {
    this.#need(1, what);
    return this.#buf[this.#pos++]!;
  }
  u32(what: string): number {
    this.#need(4, what);
    const v = this.#buf.readUInt32BE(this.#pos);
    this.#pos += 4;
    return v;
  }
  num(what: string): number {
    this.#need(8, what);
    const hi = this.#buf.readUInt32BE(this.#pos);
    const lo = this.#buf.readUInt32BE(this.#pos + 4);
    this.#pos += 8;
    // Number.MAX_SAFE_INTEGER is 2^53 - 1: a high half above 2^21 - 1 is out of range.
    if (hi > 0x1f_ffff) throw bad(`${what} out of range`);
    return hi * 0x1_0000_0000 + lo;
  }
  bytes(what: string): Buffer {
    const n = this.u32(what);
    this.#need(n, what);
    const out = this.#buf.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }
  str(what: string): string {
    return this.bytes(what).toString('utf8');
  }
  /** Count of a repeated field, bounded by the bytes left so a forged count cannot allocate much. */
  count(what: string, minItemBytes: number): number {
    const n = this.u32(what);
    if (n * minItemBytes > this.remaining()) throw bad(`${what} count ${n} exceeds input`);
    return n;
  }
  remaining(): number {
    return this.#buf.length - this.#pos;
  }
  end(what: string): void {
    if (this.#pos !== this.#buf.length) throw bad(`${this.#buf.length - this.#pos} trailing bytes after ${what}`);
  }
}

function bad(message: string): SiderError {
  return new SiderError('SIDER_BAD_REQUEST', message);
}

function enumIndex<T>(list: readonly T[], v: T, what: string): number {
  const i = list.indexOf(v);
  if (i < 0) throw bad(`unknown ${what} ${String(v)}`);
  return i;
}

function enumValue<T>(list: readonly T[], i: number, what: string): T {
  const v = list[i];
  if (v === undefined) throw bad(`unknown ${what} code ${i}`);
  return v;
}

/** Smallest encoded entry: index 8 + term 8 + type 1 + rid length 4 + data length 4 (both empty). */
const MIN_ENTRY_BYTES = 25;

export function writeEntry(w: Writer, e: Entry): void {
  w.num(e.index).num(e.term).u8(enumIndex(entryTypes, e.type, 'entry type')).str(e.rid).bytes(e.data);
}

export function readEntry(r: Reader): Entry {
  const index = r.num('entry.index');
  const term = r.num('entry.term');
  const type = enumValue(entryTypes, r.u8('entry.type'), 'entry type');
  const rid = r.str('entry.rid');
  const data = r.bytes('entry.data');
  return { index, term, type, rid, data };
}

/** An entry as stored on disk: the encoding followed by its CRC-32. */
export function encodeStoredEntry(e: Entry): Buffer {
  const w = new Writer(64 + e.data.length + 3 * e.rid.length);
  writeEntry(w, e);
  return w.u32(crc32(w.finish())).finish();
}

/** Decodes and verifies a stored entry; throws SIDER_CORRUPT_STORE on any mismatch. */
export function decodeStoredEntry(buf: Uint8Array, expectIndex: number): Entry {
  try {
    if (buf.length < 4) throw bad('entry shorter than its checksum');
    const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    const body = b.subarray(0, b.length - 4);
    if (crc32(body) !== b.readUInt32BE(b.length - 4)) throw bad('checksum mismatch');
    const r = new Reader(body);
    const e = readEntry(r);
    r.end('entry');
    if (e.index !== expectIndex) throw bad(`entry under key ${expectIndex} says index ${e.index}`);
    return e;
  } catch (err) {
    throw new SiderError('SIDER_CORRUPT_STORE', `log entry ${expectIndex} is corrupt: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

export function writeMembership(w: Writer, m: Membership): void {
  w.u32(m.voters.length);
  for (const id of m.voters) w.str(id);
  w.u32(m.learners.length);
  for (const id of m.learners) w.str(id);
  const addrs = Object.entries(m.addrs).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  w.u32(addrs.length);
  for (const [id, addr] of addrs) w.str(id).str(addr);
  w.u32(m.removed.length);
  for (const id of m.removed) w.str(id);
}

export function readMembership(r: Reader): Membership {
  const voters: string[] = [];
  for (let n = r.count('voters', 4); n > 0; n--) voters.push(r.str('voter'));
  const learners: string[] = [];
  for (let n = r.count('learners', 4); n > 0; n--) learners.push(r.str('learner'));
  const addrs: Record<string, string> = {};
  for (let n = r.count('addrs', 8); n > 0; n--) {
    const id = r.str('addr id');
    addrs[id] = r.str('addr');
  }
  const removed: string[] = [];
  for (let n = r.count('removed', 4); n > 0; n--) removed.push(r.str('removed id'));
  return { voters, learners, addrs, removed };
}

export function encodeConfChange(cc: ConfChange): Buffer {
  return new Writer(64)
    .u8(enumIndex(confOps, cc.op, 'conf change op'))
    .str(cc.id)
    .str(cc.addr ?? '')
    .finish();
}

export function decodeConfChange(buf: Uint8Array): ConfChange {
  const r = new Reader(buf);
  const op = enumValue(confOps, r.u8('conf.op'), 'conf change op');
  const id = r.str('conf.id');
  const addr = r.str('conf.addr');
  r.end('conf change');
  return addr === '' ? { op, id } : { op, id, addr };
}

export function writeSnapshotMeta(w: Writer, m: SnapshotMeta): void {
  w.num(m.index).num(m.term);
  writeMembership(w, m.membership);
}

export function readSnapshotMeta(r: Reader): SnapshotMeta {
  const index = r.num('snapshot.index');
  const term = r.num('snapshot.term');
  const membership = readMembership(r);
  return { index, term, membership };
}

export function encodeHardState(hs: HardState): Buffer {
  return new Writer(32).num(hs.term).str(hs.vote).num(hs.commit).finish();
}

export function decodeHardState(buf: Uint8Array): HardState {
  const r = new Reader(buf);
  const hs = { term: r.num('term'), vote: r.str('vote'), commit: r.num('commit') };
  r.end('hard state');
  return hs;
}

/**
 * The message format's version. 2: every message also names the application's entry data version
 * (see encodeMessages). A server refuses a message of another version as bad input.
 */
const MESSAGE_VERSION = 2;

export function writeMessage(w: Writer, m: Message, dataVersion = 0): void {
  w.u8(MESSAGE_VERSION)
    .u32(dataVersion)
    .u8(enumIndex(messageTypes, m.type, 'message type'))
    .str(m.from)
    .str(m.to)
    .num(m.term)
    .num(m.index)
    .num(m.logTerm)
    .num(m.commit)
    .u8(m.reject ? 1 : 0)
    .num(m.hint)
    .num(m.hintTerm)
    .num(m.ctx);
  w.u32(m.entries.length);
  for (const e of m.entries) writeEntry(w, e);
  if (m.snapshot) {
    w.u8(1);
    writeSnapshotMeta(w, m.snapshot.meta);
    w.bytes(m.snapshot.data);
  } else {
    w.u8(0);
  }
}

export function readMessage(r: Reader, dataVersion = 0): Message {
  const version = r.u8('message version');
  if (version !== MESSAGE_VERSION) throw bad(`unsupported message version ${version}`);
  const theirs = r.u32('entry data version');
  if (theirs !== dataVersion) throw bad(`entry data version ${theirs}, this server's is ${dataVersion}`);
  const type = enumValue(messageTypes, r.u8('message type'), 'message type');
  const from = r.str('from');
  const to = r.str('to');
  const term = r.num('term');
  const index = r.num('index');
  const logTerm = r.num('logTerm');
  const commit = r.num('commit');
  const reject = r.u8('reject') === 1;
  const hint = r.num('hint');
  const hintTerm = r.num('hintTerm');
  const ctx = r.num('ctx');
  const entries: Entry[] = [];
  for (let n = r.count('entries', MIN_ENTRY_BYTES); n > 0; n--) entries.push(readEntry(r));
  let snapshot: Snapshot | null = null;
  if (r.u8('snapshot flag') === 1) {
    const meta = readSnapshotMeta(r);
    snapshot = { meta, data: r.bytes('snapshot.data') };
  }
  return { type, from, to, term, index, logTerm, commit, reject, hint, hintTerm, ctx, entries, snapshot };
}

/** A batch of messages for one HTTP request body. */
/**
 * A batch of messages. `dataVersion` is the application's format of entry data (0 unless it says
 * otherwise): decodeMessages refuses messages of another, so servers that could not read each
 * other's entries never exchange any — the application raises it when it writes entries its older
 * versions cannot read (they would refuse what the others apply).
 */
export function encodeMessages(ms: Message[], dataVersion = 0): Buffer {
  // Sized for the entries up front: an append of a few hundred entries is not copied on growing.
  let size = 256;
  for (const m of ms) for (const e of m.entries) size += entrySize(e);
  const w = new Writer(size);
  w.u32(ms.length);
  for (const m of ms) writeMessage(w, m, dataVersion);
  return w.finish();
}

export function decodeMessages(buf: Uint8Array, dataVersion = 0): Message[] {
  const r = new Reader(buf);
  const out: Message[] = [];
  for (let n = r.count('messages', 64); n > 0; n--) out.push(readMessage(r, dataVersion));
  r.end('message batch');
  return out;
}

/** Size an entry adds to a message or to the uncommitted budget (approximate, for limits). */
export function entrySize(e: Entry): number {
  return e.data.length + e.rid.length + 32;
}
