// DNS wire format for replies (RFC 1035): record encoding with compression only against the
// echoed question, header and OPT writing, and address helpers. Requests are parsed by dns2.

/** Query and record types this server knows by name (RFC 1035, 3596, 2782, 6891, 1995). */
export const QTYPE = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  OPT: 41,
  IXFR: 251,
  AXFR: 252,
  MAILB: 253,
  MAILA: 254,
  ANY: 255,
} as const;

const QTYPE_NAME = new Map<number, string>(Object.entries(QTYPE).map(([k, v]) => [v, k]));

/** A type's mnemonic, or `TYPE<n>` (RFC 3597) for the others. */
export function qtypeName(t: number): string {
  return QTYPE_NAME.get(t) ?? `TYPE${t}`;
}

export const RCODE = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  /** Extended (RFC 6891): only expressible with an OPT record. */
  BADVERS: 16,
} as const;

const RCODE_NAME = new Map<number, string>(Object.entries(RCODE).map(([k, v]) => [v, k]));

export function rcodeName(r: number): string {
  return RCODE_NAME.get(r) ?? `RCODE${r}`;
}

export const CLASS_IN = 1;
export const CLASS_ANY = 255;
export const HEADER_LEN = 12;
/** An OPT pseudo-record with no options: root name, type, class, TTL, RDLENGTH. */
export const OPT_LEN = 11;

export type DnsRecord = { name: string; ttl: number } & (
  | { type: 'A'; address: string }
  | { type: 'AAAA'; address: string }
  | { type: 'CNAME'; target: string }
  | { type: 'NS'; host: string }
  | { type: 'SRV'; priority: number; weight: number; port: number; target: string }
  | { type: 'SOA'; mname: string; rname: string; serial: number; refresh: number; retry: number; expire: number; minimum: number }
);

/** ASCII-only lower-casing is what DNS means by case-insensitive; other bytes never match a label here. */
export function lowerName(name: string): string {
  return name.toLowerCase();
}

/** Wire length of an uncompressed name given without the trailing dot ('' = root). */
export function nameWireLength(name: string): number {
  return name === '' ? 1 : name.length + 2;
}

/**
 * Offsets of every suffix of the question name in a reply whose question starts at byte 12:
 * 'a.b.sider' → {'a.b.sider': 12, 'b.sider': 14, 'sider': 16}. Names that end in one of these
 * suffixes are compressed against the question, and only against it: records never point into
 * each other, so any subset of them, in any order, is a valid message.
 */
export function questionSuffixes(qname: string): Map<string, number> {
  const out = new Map<string, number>();
  if (qname === '') return out;
  let off = HEADER_LEN;
  let start = 0;
  for (;;) {
    out.set(qname.slice(start), off);
    const dot = qname.indexOf('.', start);
    if (dot < 0) break;
    off += dot - start + 1;
    start = dot + 1;
  }
  return out;
}

/** Appends an encoded name to `out`: labels up to the longest suffix found in `suffixes`, then a pointer. */
function pushName(out: number[], name: string, suffixes: Map<string, number> | null): void {
  let start = 0;
  while (name !== '' && start < name.length) {
    const rest = start === 0 ? name : name.slice(start);
    const ptr = suffixes?.get(rest);
    if (ptr !== undefined) {
      out.push(0xc0 | (ptr >> 8), ptr & 0xff);
      return;
    }
    let dot = name.indexOf('.', start);
    if (dot < 0) dot = name.length;
    const len = dot - start;
    if (len < 1 || len > 63) throw new Error(`name ${JSON.stringify(name)}: label length ${len}`);
    out.push(len);
    for (let i = start; i < dot; i++) out.push(name.charCodeAt(i) & 0xff);
    start = dot + 1;
  }
  out.push(0);
}

function push16(out: number[], v: number): void {
  out.push((v >>> 8) & 0xff, v & 0xff);
}

function push32(out: number[], v: number): void {
  out.push((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
}

const TYPE_CODE: Record<DnsRecord['type'], number> = {
  A: QTYPE.A,
  AAAA: QTYPE.AAAA,
  CNAME: QTYPE.CNAME,
  NS: QTYPE.NS,
  SRV: QTYPE.SRV,
  SOA: QTYPE.SOA,
};

/**
 * One resource record in wire form. Owner names and the names inside CNAME, NS and SOA data are
 * compressed against the question; SRV targets never are (RFC 2782).
 */
export function encodeRecord(rec: DnsRecord, suffixes: Map<string, number>): Buffer {
  const out: number[] = [];
  pushName(out, rec.name, suffixes);
  push16(out, TYPE_CODE[rec.type]);
  push16(out, CLASS_IN);
  push32(out, Math.min(Math.max(0, Math.floor(rec.ttl)), 0x7fffffff));
  const rdStart = out.length;
  push16(out, 0);
  switch (rec.type) {
    case 'A': {
      const b = ipv4Bytes(rec.address);
      if (!b) throw new Error(`A record: invalid address ${JSON.stringify(rec.address)}`);
      out.push(...b);
      break;
    }
    case 'AAAA': {
      const b = ipv6Bytes(rec.address);
      if (!b) throw new Error(`AAAA record: invalid address ${JSON.stringify(rec.address)}`);
      out.push(...b);
      break;
    }
    case 'CNAME':
      pushName(out, rec.target, suffixes);
      break;
    case 'NS':
      pushName(out, rec.host, suffixes);
      break;
    case 'SRV':
      push16(out, rec.priority);
      push16(out, rec.weight);
      push16(out, rec.port);
      pushName(out, rec.target, null);
      break;
    case 'SOA':
      pushName(out, rec.mname, suffixes);
      pushName(out, rec.rname, suffixes);
      push32(out, rec.serial);
      push32(out, rec.refresh);
      push32(out, rec.retry);
      push32(out, rec.expire);
      push32(out, rec.minimum);
      break;
  }
  const rdlen = out.length - rdStart - 2;
  out[rdStart] = rdlen >>> 8;
  out[rdStart + 1] = rdlen & 0xff;
  return Buffer.from(out);
}

/** Fields of a reply header. */
export interface ReplyHeader {
  id: number;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  /** Low 4 bits go in the header; the rest belongs in the OPT record. */
  rcode: number;
  qdcount: number;
  ancount: number;
  nscount: number;
  arcount: number;
}

export function writeHeader(buf: Buffer, h: ReplyHeader): void {
  buf.writeUInt16BE(h.id & 0xffff, 0);
  // QR=1, opcode QUERY, RA=0 (not recursive), Z/AD/CD clear.
  buf[2] = 0x80 | (h.aa ? 0x04 : 0) | (h.tc ? 0x02 : 0) | (h.rd ? 0x01 : 0);
  buf[3] = h.rcode & 0x0f;
  buf.writeUInt16BE(h.qdcount, 4);
  buf.writeUInt16BE(h.ancount, 6);
  buf.writeUInt16BE(h.nscount, 8);
  buf.writeUInt16BE(h.arcount, 10);
}

/**
 * Writes the question exactly as the client spelled it (case included, for 0x20-randomizing
 * resolvers) at `off`; returns the offset after it. `name` is dns2's decoded form: labels joined
 * by '.', one character per byte.
 */
export function writeQuestion(buf: Buffer, off: number, name: string, qtype: number, qclass: number): number {
  if (name !== '') {
    let start = 0;
    for (;;) {
      let dot = name.indexOf('.', start);
      if (dot < 0) dot = name.length;
      buf[off++] = dot - start;
      off += buf.write(name.slice(start, dot), off, 'latin1');
      if (dot === name.length) break;
      start = dot + 1;
    }
  }
  buf[off++] = 0;
  buf.writeUInt16BE(qtype, off);
  buf.writeUInt16BE(qclass, off + 2);
  return off + 4;
}

/** Writes an OPT record advertising `udpSize`, carrying the upper rcode bits and the DO bit. */
export function writeOpt(buf: Buffer, off: number, udpSize: number, rcode: number, doFlag: boolean): number {
  buf[off] = 0;
  buf.writeUInt16BE(QTYPE.OPT, off + 1);
  buf.writeUInt16BE(udpSize, off + 3);
  buf[off + 5] = (rcode >>> 4) & 0xff;
  buf[off + 6] = 0; // EDNS version 0
  buf[off + 7] = doFlag ? 0x80 : 0;
  buf[off + 8] = 0;
  buf.writeUInt16BE(0, off + 9);
  return off + OPT_LEN;
}

/** Whether a name as decoded can be written back label by label (no empty or over-long labels). */
export function isWritableName(name: string): boolean {
  if (name === '') return true;
  if (name.length > 253) return false;
  let start = 0;
  for (;;) {
    let dot = name.indexOf('.', start);
    if (dot < 0) dot = name.length;
    const len = dot - start;
    if (len < 1 || len > 63) return false;
    if (dot === name.length) return true;
    start = dot + 1;
  }
}

// ---- addresses ----

export function ipv4Bytes(s: string): number[] | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out.push(n);
  }
  return out;
}

/** 16 bytes of an IPv6 address (with '::' and an optional dotted IPv4 tail); no zone IDs. */
export function ipv6Bytes(s: string): number[] | undefined {
  if (s.length > 45 || !/^[0-9a-fA-F:.]+$/.test(s)) return undefined;
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const parseGroups = (part: string): number[] | undefined => {
    if (part === '') return [];
    const groups = part.split(':');
    const out: number[] = [];
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i]!;
      if (i === groups.length - 1 && g.includes('.')) {
        const v4 = ipv4Bytes(g);
        if (!v4) return undefined;
        out.push(...v4);
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      const n = parseInt(g, 16);
      out.push(n >> 8, n & 0xff);
    }
    return out;
  };
  const head = parseGroups(halves[0]!);
  if (!head) return undefined;
  if (halves.length === 1) return head.length === 16 ? head : undefined;
  const tail = parseGroups(halves[1]!);
  if (!tail || head.length + tail.length > 14) return undefined;
  return [...head, ...Array.from({ length: 16 - head.length - tail.length }, () => 0), ...tail];
}

function hex(bytes: readonly number[]): string {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

/** The `<hex>` label of an address: 8 hex digits for IPv4, 32 for IPv6 (as Consul's `.addr.` names). */
export function addressHex(address: string): string | undefined {
  const v4 = ipv4Bytes(address);
  if (v4) return hex(v4);
  const v6 = ipv6Bytes(address);
  return v6 ? hex(v6) : undefined;
}

/** The address a `<hex>` label names, in text form, or undefined. */
export function hexAddress(label: string): { family: 4 | 6; address: string } | undefined {
  if (!/^[0-9a-f]+$/.test(label)) return undefined;
  if (label.length === 8) {
    const b = label.match(/../g)!.map((h) => parseInt(h, 16));
    return { family: 4, address: b.join('.') };
  }
  if (label.length === 32) {
    const groups = label.match(/.{4}/g)!.map((h) => parseInt(h, 16).toString(16));
    return { family: 6, address: groups.join(':') };
  }
  return undefined;
}
