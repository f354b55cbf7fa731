// Encoded answers, computed once per change of what they depend on (a service's index, a
// namespace's catalog index, node addresses), and the per-query reply assembled from them: header
// with the query's ID, the question as the client spelled it, the answers in a rotated order, and
// as many whole records as the transport allows (TC set when answers had to be left out).

import type { Dependency, DnsResolver, Resolution } from './resolver.ts';
import { HEADER_LEN, OPT_LEN, encodeRecord, nameWireLength, questionSuffixes, writeHeader, writeOpt, writeQuestion } from './wire.ts';
import { shiftOldest } from '../src/collections.ts';

/** What a reply needs to know about the query. */
export interface QueryInfo {
  id: number;
  rd: boolean;
  /** The question name as decoded (the client's case, no trailing dot). */
  name: string;
  qtype: number;
  qclass: number;
  /** Present when the query carried an OPT record. */
  edns: { doFlag: boolean } | null;
  /** Largest reply the transport may carry (512, the client's EDNS size, or 65535 over TCP). */
  limit: number;
}

export interface Reply {
  buf: Buffer;
  rcode: number;
  truncated: boolean;
}

/** Records of one section back to back, with each record's end offset. */
interface Section {
  bytes: Buffer;
  ends: number[];
}

interface Entry {
  dependency: Dependency;
  nodeAddresses: [string, string][];
  rcode: number;
  aa: boolean;
  answers: Section;
  answerMode: 'all' | 'one';
  authority: Section;
  additional: Section;
}

export interface AnswerCacheOptions {
  /** Bound on cached (name, type) answers; the oldest is dropped beyond it. Default 50,000. */
  maxEntries?: number;
  /** UDP payload size advertised in our OPT record. Default 4096. */
  udpSize?: number;
  /** Source of randomness for the rotation, in [0, 1). Default Math.random. */
  random?: () => number;
}

function section(records: Buffer[]): Section {
  const ends: number[] = [];
  let n = 0;
  for (const r of records) {
    n += r.length;
    ends.push(n);
  }
  return { bytes: Buffer.concat(records, n), ends };
}

/** Byte range of record i of a section. */
function start(s: Section, i: number): number {
  return i === 0 ? 0 : s.ends[i - 1]!;
}

export class AnswerCache {
  readonly #resolver: DnsResolver;
  readonly #map = new Map<string, Entry>();
  readonly #max: number;
  readonly #udpSize: number;
  readonly #random: () => number;
  hits = 0;
  misses = 0;

  constructor(resolver: DnsResolver, opts: AnswerCacheOptions = {}) {
    this.#resolver = resolver;
    this.#max = opts.maxEntries ?? 50_000;
    this.#udpSize = opts.udpSize ?? 4096;
    this.#random = opts.random ?? Math.random;
  }

  get size(): number {
    return this.#map.size;
  }

  /** The reply to a well-formed query. The name must be writable (see isWritableName). */
  reply(q: QueryInfo): Reply {
    const lname = q.name.toLowerCase();
    const key = `${q.qtype} ${lname}`;
    let e = this.#map.get(key);
    if (e !== undefined && this.#resolver.isCurrent(e)) {
      this.hits++;
    } else {
      this.misses++;
      const res = this.#resolver.resolve(lname, q.qtype);
      // Names outside our zones are not cached: anyone can make up as many as they like.
      if (res.zone === '') return this.bare(q, res.rcode, res.authoritative);
      e = encodeEntry(lname, res);
      if (!this.#map.has(key) && this.#map.size >= this.#max) shiftOldest(this.#map);
      this.#map.set(key, e);
    }
    return this.#assemble(e, q);
  }

  /** A reply with the question (when `q.name` is given) and no records: REFUSED, NOTIMP, SERVFAIL, BADVERS… */
  bare(q: QueryInfo, rcode: number, aa = false): Reply {
    const qlen = HEADER_LEN + nameWireLength(q.name) + 4;
    const buf = Buffer.allocUnsafe(qlen + (q.edns ? OPT_LEN : 0));
    writeHeader(buf, { id: q.id, aa, tc: false, rd: q.rd, rcode, qdcount: 1, ancount: 0, nscount: 0, arcount: q.edns ? 1 : 0 });
    const off = writeQuestion(buf, HEADER_LEN, q.name, q.qtype, q.qclass);
    if (q.edns) writeOpt(buf, off, this.#udpSize, rcode, q.edns.doFlag);
    return { buf, rcode, truncated: false };
  }

  /** A reply with no question at all (FORMERR for a query whose question cannot be echoed). */
  headerOnly(id: number, rd: boolean, rcode: number): Reply {
    const buf = Buffer.allocUnsafe(HEADER_LEN);
    writeHeader(buf, { id, aa: false, tc: false, rd, rcode, qdcount: 0, ancount: 0, nscount: 0, arcount: 0 });
    return { buf, rcode, truncated: false };
  }

  #assemble(e: Entry, q: QueryInfo): Reply {
    const qEnd = HEADER_LEN + nameWireLength(q.name) + 4;
    const optLen = q.edns ? OPT_LEN : 0;
    const room = q.limit - qEnd - optLen;
    const an = e.answers;
    const n = an.ends.length;
    const first = n > 1 ? Math.floor(this.#random() * n) % n : 0;

    // Answers: all of them from `first` on, wrapping around (or just `first` in 'one' mode).
    let count = e.answerMode === 'one' ? Math.min(n, 1) : n;
    let answerBytes = 0;
    for (let k = 0; k < count; k++) {
      const i = (first + k) % n;
      const size = an.ends[i]! - start(an, i);
      if (answerBytes + size > room) {
        count = k;
        break;
      }
      answerBytes += size;
    }
    const truncated = count < (e.answerMode === 'one' ? Math.min(n, 1) : n);
    // Authority and additional only when every answer fits; additional records one by one as room allows.
    const auth = truncated || answerBytes + e.authority.bytes.length > room ? null : e.authority;
    let addCount = 0;
    let addBytes = 0;
    if (!truncated) {
      const left = room - answerBytes - (auth ? auth.bytes.length : 0);
      const ad = e.additional;
      while (addCount < ad.ends.length && ad.ends[addCount]! <= left) addCount++;
      addBytes = addCount === 0 ? 0 : ad.ends[addCount - 1]!;
    }

    const authBytes = auth ? auth.bytes.length : 0;
    const buf = Buffer.allocUnsafe(qEnd + answerBytes + authBytes + addBytes + optLen);
    writeHeader(buf, {
      id: q.id,
      aa: e.aa,
      tc: truncated,
      rd: q.rd,
      rcode: e.rcode,
      qdcount: 1,
      ancount: count,
      nscount: auth ? auth.ends.length : 0,
      arcount: addCount + (q.edns ? 1 : 0),
    });
    let off = writeQuestion(buf, HEADER_LEN, q.name, q.qtype, q.qclass);
    if (e.answerMode === 'one' || count < n) {
      for (let k = 0; k < count; k++) {
        const i = (first + k) % n;
        off += an.bytes.copy(buf, off, start(an, i), an.ends[i]!);
      }
    } else if (n > 0) {
      // The whole rotation in two copies: [first, n) then [0, first).
      const cut = start(an, first);
      off += an.bytes.copy(buf, off, cut);
      off += an.bytes.copy(buf, off, 0, cut);
    }
    if (auth) off += auth.bytes.copy(buf, off);
    if (addBytes > 0) off += e.additional.bytes.copy(buf, off, 0, addBytes);
    if (q.edns) writeOpt(buf, off, this.#udpSize, e.rcode, q.edns.doFlag);
    return { buf, rcode: e.rcode, truncated };
  }
}

/** Encodes a resolution for a question name of this spelling (any case: compression offsets depend only on lengths). */
export function encodeEntry(lname: string, res: Resolution): Entry {
  const suffixes = questionSuffixes(lname);
  const enc = (records: Resolution['answers']): Section => section(records.map((r) => encodeRecord(r, suffixes)));
  return {
    dependency: res.dependency,
    nodeAddresses: res.nodeAddresses,
    rcode: res.rcode,
    aa: res.authoritative,
    answers: enc(res.answers),
    answerMode: res.answerMode,
    authority: enc(res.authority),
    additional: enc(res.additional),
  };
}
