// Snapshot serialization that neither blocks the event loop nor re-encodes what has not changed: the
// same bytes as JSON.stringify of the snapshot document (each leaf written by the caller's
// leafJson), produced in slices with a yield between them, copying the bytes of each unchanged
// instance (with its checks) from the previous snapshot, a run of adjacent ones at a time.

import { performance } from 'node:perf_hooks';

/**
 * A long list of small rows (the dedup table, a namespace's check times) that the encoder makes a
 * chunk of ARRAY_SLICE rows at a time, just before writing it: no row outlives its chunk. Built
 * whole, such a list stayed alive while the whole snapshot was encoded (hundreds of ms), and the
 * garbage collector copied its rows (100,000 dedup pairs, a tuple per check) from one young space
 * to the next and into the old one, in pauses of tens of ms. JSON.stringify writes it whole
 * (toJSON), so the bytes are those of the built list.
 */
export class LazyRows<T> {
  readonly length: number;
  readonly #rows: (from: number, to: number) => T[];

  /** `rows(from, to)` makes rows [from, to) of `length`. */
  constructor(length: number, rows: (from: number, to: number) => T[]) {
    this.length = length;
    this.#rows = rows;
  }

  rows(from: number, to: number): T[] {
    return this.#rows(from, Math.min(to, this.length));
  }

  toJSON(): T[] {
    return this.rows(0, this.length);
  }
}

/**
 * Where each cached element's encoding sits in the previous snapshot's bytes, so the next snapshot
 * copies those bytes instead of encoding the element again. Valid only because the elements are
 * never mutated once made: the registry's elements are its stored entries, the same object for an
 * instance until the instance or its checks change, and then a new one. Every encode replaces both fields at its end
 * (one pair, so a cache is always consistent): elements of the new snapshot only, located in its
 * bytes — which Raft keeps in memory as its latest snapshot anyway, so the cache adds no JS string
 * per instance to the heap (it used to hold each element's JSON, about as much heap again as the
 * registry itself).
 */
export class SnapshotCache implements CachePositions {
  /** The bytes of the snapshot the positions point into. */
  bytes: Buffer = Buffer.alloc(0);
  /** element → start × LENGTH_SPAN + byte length, in `bytes`. */
  at = new WeakMap<object, number>();

  clear(): void {
    this.bytes = Buffer.alloc(0);
    this.at = new WeakMap();
  }
}

interface CachePositions {
  readonly bytes: Buffer;
  readonly at: WeakMap<object, number>;
}

/** Positions pack as start × LENGTH_SPAN + length: longer elements (2 MiB) are not cached. */
const LENGTH_SPAN = 2 ** 21;
/** Nor are elements starting this far in (4 GiB): the packed number stays an exact integer. */
const START_LIMIT = 2 ** 32;

export interface SnapshotEncodeOptions {
  /** Positions of the previous snapshot's elements of `instances` arrays (see SnapshotCache). */
  cache?: SnapshotCache;
  /**
   * The JSON of a leaf, an object element of an `instances` array: JSON.stringify by default. The
   * registry's leaves are its stored records, written in the compact snapshot form.
   */
  leafJson?: (leaf: object) => string;
  /** Longest stretch of synchronous work before yielding to the event loop. Default 4 ms. */
  sliceMs?: number;
  /**
   * How long to stay away after each slice (0: just let pending events run, setImmediate). A pause
   * keeps a large snapshot from taking most of the CPU while it runs: it takes longer instead.
   */
  pauseMs?: number;
  /** Expected size in bytes (e.g. the previous snapshot's), so the output rarely has to grow. */
  sizeHint?: number;
}

/** Containers walked into, so that each of their elements is a unit of work (and a yield point). */
const DESCEND = new Set(['namespaces', 'services', 'instances']);
/** The container whose elements are immutable records: encoded once, then reused. */
const CACHED_ELEMENTS = 'instances';
/** Elements of other arrays (dedup table, tombstones, servers…) are encoded this many at a time. */
const ARRAY_SLICE = 512;
/** Texts shorter than this are gathered and encoded together; longer ones go straight in. */
const SHORT_CHARS = 256;
/** The output buffer starts at least this large (and at the caller's size hint). */
const INITIAL_BYTES = 64 * 1024;
/** How many units of work run between two looks at the clock. */
const CLOCK_EVERY = 32;

/** A join or copy of the finished output moves at most this many bytes per slice. */
const COPY_SLICE_BYTES = 4 * 1024 * 1024;

class Output {
  /** Filled chunks, then the one being written (#buf). Growing never copies what is written. */
  #done: Buffer[] = [];
  /** Bytes in #done. */
  #doneBytes = 0;
  #buf: Buffer;
  #len = 0;
  /** Short texts gathered before one write into the buffer. */
  #pending = '';
  readonly #sliceMs: number;
  readonly #pauseMs: number;
  #sliceStart = performance.now();
  #units = 0;

  constructor(sliceMs: number, pauseMs: number, sizeHint: number) {
    this.#sliceMs = sliceMs;
    this.#pauseMs = pauseMs;
    this.#buf = Buffer.allocUnsafe(Math.max(INITIAL_BYTES, sizeHint));
  }

  text(s: string): void {
    if (s.length < SHORT_CHARS) {
      this.#pending += s;
      if (this.#pending.length >= SHORT_CHARS * 4) this.#flush();
      return;
    }
    this.#flush();
    this.#write(s);
  }

  /**
   * Counts `count` units of work (elements written). Returns a promise to await when the current
   * slice has run long enough (it resolves on a later turn of the event loop), otherwise null: no
   * await per unit.
   */
  unit(count = 1): Promise<void> | null {
    const before = this.#units;
    this.#units += count;
    if (Math.floor(before / CLOCK_EVERY) === Math.floor(this.#units / CLOCK_EVERY)) return null;
    return this.bigUnit();
  }

  /** As unit(), for a unit as large as CLOCK_EVERY ordinary ones (ARRAY_SLICE elements): looks at the clock every time. */
  bigUnit(): Promise<void> | null {
    if (performance.now() - this.#sliceStart < this.#sliceMs) return null;
    return this.#yield();
  }

  #yield(): Promise<void> {
    return pause(this.#pauseMs).then(() => {
      this.#sliceStart = performance.now();
    });
  }

  /**
   * The whole output as one buffer. Written into a single chunk with little room left over (the
   * size hint was right), that chunk itself; otherwise joined into an exact-size buffer a few MB per
   * slice, so that neither a large copy nor the page faults of fresh memory stall the event loop.
   */
  async finish(): Promise<Buffer> {
    this.#flush();
    const parts = [...this.#done, this.#buf.subarray(0, this.#len)];
    const total = this.#doneBytes + this.#len;
    // The snapshot is kept in memory: do not keep much unused room with it.
    if (parts.length === 1 && this.#buf.length - this.#len <= this.#len >> 2) return parts[0]!;
    const out = Buffer.allocUnsafe(total);
    let at = 0;
    for (const part of parts) {
      for (let from = 0; from < part.length; from += COPY_SLICE_BYTES) {
        at += part.copy(out, at, from, Math.min(part.length, from + COPY_SLICE_BYTES));
        await this.#yield();
      }
    }
    return out;
  }

  #flush(): void {
    if (this.#pending === '') return;
    this.#write(this.#pending);
    this.#pending = '';
  }

  /** Encodes straight into the output: no intermediate joined string or buffer. */
  #write(s: string): void {
    // A UTF-16 unit becomes at most 3 bytes of UTF-8.
    this.#room(s.length * 3);
    this.#len += this.#buf.write(s, this.#len, 'utf8');
  }

  /** Makes room for `need` more bytes in the current chunk. */
  #room(need: number): void {
    if (this.#len + need > this.#buf.length) {
      // A new chunk (as large as everything so far): what is written stays where it is.
      this.#done.push(this.#buf.subarray(0, this.#len));
      this.#doneBytes += this.#len;
      this.#buf = Buffer.allocUnsafe(Math.max(this.#buf.length, this.#doneBytes, need));
      this.#len = 0;
    }
  }

  /** Writes one cached element's JSON; returns where it went (packed, see SnapshotCache; -1: too far or too long to cache). */
  elementJson(json: string): number {
    this.#flush();
    this.#room(json.length * 3);
    const at = this.#doneBytes + this.#len;
    this.#len += this.#buf.write(json, this.#len, 'utf8');
    return packPosition(at, this.#doneBytes + this.#len - at);
  }

  /**
   * Copies bytes [start, end) of `from` (the previous snapshot: one cached element, or a run of them
   * with their commas); returns where they went in the output.
   */
  copyBytes(from: Buffer, start: number, end: number): number {
    this.#flush();
    this.#room(end - start);
    const at = this.#doneBytes + this.#len;
    this.#len += from.copy(this.#buf, this.#len, start, end);
    return at;
  }
}

function packPosition(start: number, length: number): number {
  return length < LENGTH_SPAN && start < START_LIMIT ? start * LENGTH_SPAN + length : -1;
}

/** Lets other work run: for `ms` milliseconds, or (0) until pending events have run. */
export function pause(ms: number): Promise<void> {
  return new Promise<void>((resolve) => (ms > 0 ? setTimeout(resolve, ms) : setImmediate(resolve)));
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The byte JSON writes between two elements of an array. */
const COMMA = 0x2c;
/** A run of elements copied at once ends after this many bytes (a slice's worth of copying). */
const RUN_BYTES = 256 * 1024;

/** One encode: its output, how leaves are written, and (with a cache) where elements were and go. */
interface Encoding {
  out: Output;
  leafJson: (leaf: object) => string;
  /** With a cache: where the last snapshot holds each leaf (as the cache was when this encode began), and where this one puts them. */
  positions: { prev: CachePositions; next: WeakMap<object, number> } | null;
}

/**
 * Writes the cached leaves arr[i], arr[i+1], … that can be copied together and returns how many it
 * wrote (at least 1). A leaf unchanged since the last snapshot is copied from that snapshot's
 * bytes, and so are the leaves that followed it there, one comma apart, and follow it here too (in
 * a registry that changed little, most of each service): one copy for the run instead of one per
 * leaf. Any other leaf gets its JSON. Each written leaf's place is remembered.
 */
function writeCachedRun(enc: Encoding, arr: readonly unknown[], i: number): number {
  const { out } = enc;
  const { prev, next } = enc.positions!;
  const el = arr[i] as object;
  const packed = prev.at.get(el);
  if (packed === undefined) {
    const at = out.elementJson(enc.leafJson(el));
    if (at >= 0) next.set(el, at);
    return 1;
  }
  const bytes = prev.bytes;
  const start = Math.floor(packed / LENGTH_SPAN);
  let end = start + (packed % LENGTH_SPAN);
  // The run's old positions, looked up once: run[k] is arr[i + k]'s.
  const run = runPositions;
  run.length = 0;
  run.push(packed);
  while (i + run.length < arr.length && end - start < RUN_BYTES && bytes[end] === COMMA) {
    const following = arr[i + run.length];
    if (!isObject(following)) break;
    const p = prev.at.get(following);
    if (p === undefined || Math.floor(p / LENGTH_SPAN) !== end + 1) break;
    end += 1 + (p % LENGTH_SPAN);
    run.push(p);
  }
  const at = out.copyBytes(bytes, start, end);
  for (let k = 0; k < run.length; k++) {
    const p = run[k]!;
    const moved = packPosition(at + (Math.floor(p / LENGTH_SPAN) - start), p % LENGTH_SPAN);
    if (moved >= 0) next.set(arr[i + k] as object, moved);
  }
  return run.length;
}

/** writeCachedRun's scratch list (encodes do not interleave within one call). */
const runPositions: number[] = [];

function isObject(v: unknown): v is object {
  return typeof v === 'object' && v !== null;
}

async function writeArray(enc: Encoding, key: string, arr: readonly unknown[]): Promise<void> {
  const { out } = enc;
  if (!DESCEND.has(key)) return writeChunked(out, arr.length, (from, to) => arr.slice(from, to));
  // Elements of the innermost walked container are leaves (cached when possible); the others are walked.
  const leaves = key === CACHED_ELEMENTS;
  out.text('[');
  for (let i = 0; i < arr.length; ) {
    if (i > 0) out.text(',');
    const el = arr[i];
    let written = 1;
    if (leaves && isObject(el)) {
      if (enc.positions) written = writeCachedRun(enc, arr, i);
      else out.text(enc.leafJson(el));
    } else if (isPlainObject(el)) await writeObject(enc, el);
    else out.text(JSON.stringify(el) ?? 'null');
    i += written;
    const pause = out.unit(written);
    if (pause) await pause;
  }
  out.text(']');
}

/**
 * A long list of small items (a LazyRows list, or an array too long to write at once), ARRAY_SLICE
 * items per JSON.stringify: the bytes JSON.stringify gives for the whole list.
 */
async function writeChunked(out: Output, length: number, items: (from: number, to: number) => unknown[]): Promise<void> {
  out.text('[');
  for (let i = 0; i < length; i += ARRAY_SLICE) {
    if (i > 0) out.text(',');
    out.text(JSON.stringify(items(i, i + ARRAY_SLICE)).slice(1, -1));
    const pause = out.bigUnit();
    if (pause) await pause;
  }
  out.text(']');
}

/** An object whose array members are walked element by element, with yields between elements. */
async function writeObject(enc: Encoding, obj: Record<string, unknown>): Promise<void> {
  const { out } = enc;
  out.text('{');
  let first = true;
  for (const key of Object.keys(obj)) {
    const v = obj[key];
    const name = first ? `${JSON.stringify(key)}:` : `,${JSON.stringify(key)}:`;
    if (Array.isArray(v) && (DESCEND.has(key) || v.length > ARRAY_SLICE)) {
      out.text(name);
      await writeArray(enc, key, v);
    } else if (v instanceof LazyRows) {
      out.text(name);
      await writeChunked(out, v.length, (from, to) => v.rows(from, to));
    } else {
      // JSON.stringify semantics: a member whose value does not serialize (undefined) is left out.
      const s = JSON.stringify(v) as string | undefined;
      if (s === undefined) continue;
      out.text(name);
      out.text(s);
    }
    first = false;
  }
  out.text('}');
}

/**
 * A snapshot document's JSON as UTF-8 bytes, identical to `JSON.stringify(data)` once each leaf (an
 * element of an `instances` array) is replaced by the value whose JSON `leafJson` gives, produced
 * in slices of at most about `sliceMs` of work with the event loop free (for `pauseMs`) in
 * between. With a cache, unchanged leaves are copied from the previous snapshot's bytes, and the
 * cache then points into these bytes (which must not be modified afterwards).
 */
export async function encodeSnapshotSliced(data: object, opts: SnapshotEncodeOptions = {}): Promise<Buffer> {
  const out = new Output(opts.sliceMs ?? 4, opts.pauseMs ?? 0, opts.sizeHint ?? 0);
  const cache = opts.cache;
  const positions = cache ? { prev: { bytes: cache.bytes, at: cache.at }, next: new WeakMap<object, number>() } : null;
  await writeObject({ out, leafJson: opts.leafJson ?? JSON.stringify, positions }, data as Record<string, unknown>);
  const bytes = await out.finish();
  if (cache && positions) {
    cache.bytes = bytes;
    cache.at = positions.next;
  }
  return bytes;
}
