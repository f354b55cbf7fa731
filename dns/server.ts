// The DNS server: dns2's UDP and TCP servers on one host:port, every request answered from the
// node's local registry state (stale mode) through the answer cache, SERVFAIL on any internal
// error (the one place DNS maps errors), and counters for the metrics endpoint.

import type { RemoteInfo } from 'node:dgram';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { TCPServer, UDPServer } from 'dns2';
import type { Packet } from 'dns2';
import type { DnsCounters } from '../src/metrics.ts';
import type { RegistryReader } from '../src/registry/model.ts';
import { AnswerCache } from './answer-cache.ts';
import type { QueryInfo, Reply } from './answer-cache.ts';
import { DnsResolver } from './resolver.ts';
import type { DnsResolverOptions } from './resolver.ts';
import { CLASS_ANY, CLASS_IN, HEADER_LEN, QTYPE, RCODE, isWritableName, qtypeName, rcodeName, writeHeader } from './wire.ts';

export type DnsLogger = (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

export interface DnsServerOptions extends DnsResolverOptions {
  /** Listen address (default 127.0.0.1, like the HTTP API). UDP and TCP share the port. */
  host?: string;
  /** Default 8600; 0 picks a free port (the same one for UDP and TCP). */
  port?: number;
  /** Whether this node is in contact with a leader (for the stale counter). */
  leaderContact?: () => { knownLeader: boolean; lastContactMs: number };
  /** Out of contact = no known leader, or none heard from for longer than this (default 2000 ms). */
  staleAfterMs?: number;
  log?: DnsLogger;
  maxCacheEntries?: number;
  /** TCP connections idle this long are closed (RFC 7766 §6.2.3; default 10 s). */
  tcpIdleMs?: number;
  /** Concurrent TCP connections beyond this are refused (default 1024). */
  maxTcpConnections?: number;
  /** Receives the time (seconds) spent answering each parsed query, socket I/O excluded (the latency metric). */
  observeLatency?: (seconds: number) => void;
}

/** UDP payload size we accept and advertise; the largest UDP reply we send. */
export const MAX_UDP_PAYLOAD = 4096;
/** Without EDNS0, a UDP reply is at most this long (RFC 1035 §4.2.1). */
export const CLASSIC_UDP_PAYLOAD = 512;
const MAX_TCP_MESSAGE = 65535;
/** A TCP client that does not read its replies is cut off once this much is queued for it. */
const MAX_TCP_BACKLOG = 1024 * 1024;

/**
 * Counters read by the metrics endpoint (issue #6): src/metrics.ts's DnsCounters (type and rcode keys
 * are bounded sets), plus the number of queries answered (every rcode).
 */
export interface DnsStats extends DnsCounters {
  queries: number;
}

function newStats(): DnsStats {
  return { queries: 0, udp: 0, tcp: 0, byType: {}, byRcode: {}, truncated: 0, dropped: 0, internalErrors: 0, staleNoLeader: 0, cacheHits: 0, cacheMisses: 0 };
}

type Transport = 'udp' | 'tcp';

/** dns2's UDP server, with QR=1 and header-only garbage refused before dns2 parses it. */
class ScreenedUdpServer extends UDPServer {
  screen: (data: Buffer, rinfo: RemoteInfo) => boolean = () => true;

  override handle(data: Buffer, rinfo: RemoteInfo): void {
    let pass = false;
    try {
      pass = this.screen(data, rinfo);
    } catch {
      // A datagram the screen cannot judge is left to dns2's own checks.
      pass = true;
    }
    // dns2 catches its parse errors and our 'request' listener catches everything else.
    if (pass) super.handle(data, rinfo);
  }
}

export class DnsServer {
  readonly resolver: DnsResolver;
  readonly cache: AnswerCache;
  readonly stats: DnsStats = newStats();
  readonly #opts: DnsServerOptions;
  readonly #log: DnsLogger;
  #udp: ScreenedUdpServer | undefined;
  #tcp: TCPServer | undefined;
  readonly #sockets = new Set<Socket>();
  #host = '';
  #port = 0;
  #contactSampledAt = -Infinity;
  #outOfContact = false;
  #errorsLogged = 0;
  #closed = false;

  /** Builds the resolver and cache; `listen` opens the sockets. `handle` works without them. */
  constructor(reader: RegistryReader, opts: DnsServerOptions = {}) {
    this.#opts = opts;
    this.#log = opts.log ?? (() => {});
    this.resolver = new DnsResolver(reader, opts);
    this.cache = new AnswerCache(this.resolver, { udpSize: MAX_UDP_PAYLOAD, ...(opts.maxCacheEntries ? { maxEntries: opts.maxCacheEntries } : {}) });
  }

  /** Creates a server and binds UDP and TCP on the same port. */
  static async listen(reader: RegistryReader, opts: DnsServerOptions = {}): Promise<DnsServer> {
    const srv = new DnsServer(reader, opts);
    await srv.#bind(opts.host ?? '127.0.0.1', opts.port ?? 8600);
    return srv;
  }

  get host(): string {
    return this.#host;
  }

  get port(): number {
    return this.#port;
  }

  /** host:port as bound ('[::1]:8600' for IPv6). */
  get address(): string {
    return this.#host.includes(':') ? `[${this.#host}]:${this.#port}` : `${this.#host}:${this.#port}`;
  }

  async #bind(host: string, port: number): Promise<void> {
    const type = host.includes(':') ? 'udp6' : 'udp4';
    // With port 0 the UDP port is picked first and TCP must get the same one: retry if it is taken.
    for (let attempt = 0; ; attempt++) {
      const udp = new ScreenedUdpServer({ type });
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind(port, host, () => {
          udp.off('error', reject);
          resolve();
        });
      });
      const bound = udp.address().port;
      const tcp = new TCPServer({ idleTimeout: this.#opts.tcpIdleMs ?? 10_000 } as unknown as ConstructorParameters<typeof TCPServer>[0]);
      try {
        await new Promise<void>((resolve, reject) => {
          tcp.once('error', reject);
          tcp.listen({ port: bound, host, exclusive: true }, () => {
            tcp.off('error', reject);
            resolve();
          });
        });
      } catch (err) {
        udp.close();
        if (port === 0 && (err as NodeJS.ErrnoException).code === 'EADDRINUSE' && attempt < 20) continue;
        throw err;
      }
      this.#wire(udp, tcp);
      this.#host = host;
      this.#port = bound;
      return;
    }
  }

  #wire(udp: ScreenedUdpServer, tcp: TCPServer): void {
    this.#udp = udp;
    this.#tcp = tcp;
    udp.screen = (data, rinfo) => this.#screen(udp, data, rinfo);
    udp.on('request', (req: Packet, send: (r: Buffer) => Promise<Buffer>) => this.#respond(req, 'udp', send));
    udp.on('requestError', () => this.stats.dropped++);
    udp.on('error', (err: Error) => this.#log('warn', 'dns udp socket error', { error: err.message }));

    tcp.maxConnections = this.#opts.maxTcpConnections ?? 1024;
    tcp.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.once('close', () => this.#sockets.delete(s));
    });
    tcp.on('request', (req: Packet, send: (r: Buffer) => unknown, client: Socket) => {
      if (client.writableLength > MAX_TCP_BACKLOG) {
        client.destroy();
        return;
      }
      this.#respond(req, 'tcp', send);
    });
    tcp.on('requestError', () => this.stats.dropped++);
    tcp.on('error', (err: Error) => this.#log('warn', 'dns tcp server error', { error: err.message }));
  }

  /**
   * Before dns2 parses a datagram: drop what is not a query (too short, QR=1), and answer FORMERR
   * at once to a standard query whose counts no query has (dns2 would build an error per record).
   */
  #screen(udp: ScreenedUdpServer, data: Buffer, rinfo: RemoteInfo): boolean {
    if (data.length < HEADER_LEN || (data[2]! & 0x80) !== 0) {
      this.stats.dropped++;
      return false;
    }
    const opcode = (data[2]! >> 3) & 0x0f;
    if (opcode === 0 && (data.readUInt16BE(4) !== 1 || data.readUInt16BE(6) !== 0 || data.readUInt16BE(8) !== 0 || data.readUInt16BE(10) > 2)) {
      const reply = this.cache.headerOnly(data.readUInt16BE(0), (data[2]! & 0x01) !== 0, RCODE.FORMERR);
      this.#count(reply, 'udp', 'OTHER');
      this.#sendUdp(udp, reply.buf, rinfo);
      return false;
    }
    return true;
  }

  #sendUdp(udp: ScreenedUdpServer, buf: Buffer, rinfo: RemoteInfo): void {
    udp.send(buf, rinfo.port, rinfo.address, (err) => {
      if (err) this.#log('debug', 'dns udp send failed', { error: err.message });
    });
  }

  #respond(req: Packet, transport: Transport, send: (r: Buffer) => unknown): void {
    const observe = this.#opts.observeLatency;
    const start = observe ? performance.now() : 0;
    const buf = this.handle(req, transport);
    if (observe) observe((performance.now() - start) / 1000);
    if (buf === null) return;
    try {
      // dns2's UDP send returns a promise that rejects once the socket is closed.
      const p = send(buf);
      if (p instanceof Promise) p.catch((err: unknown) => this.#log('debug', 'dns send failed', { error: (err as Error).message }));
    } catch (err) {
      this.#log('debug', 'dns send failed', { error: (err as Error).message });
    }
  }

  /** The reply to one parsed request, or null to send nothing. Never throws. */
  handle(req: Packet, transport: Transport): Buffer | null {
    const h = req.header;
    let q: QueryInfo | undefined;
    let typeName = 'OTHER';
    try {
      if (h.qr) {
        this.stats.dropped++;
        return null;
      }
      const rd = h.rd === 1;
      const question = req.questions.length === 1 ? req.questions[0] : undefined;
      const echo = question !== undefined && typeof question.name === 'string' && isWritableName(question.name);
      const opts = req.additionals.filter((r) => r.type === QTYPE.OPT);
      const opt = opts[0] as (Packet['additionals'][number] & { version?: number; doFlag?: boolean }) | undefined;
      const udpLimit = opt ? Math.min(Math.max(opt.class, CLASSIC_UDP_PAYLOAD), MAX_UDP_PAYLOAD) : CLASSIC_UDP_PAYLOAD;
      if (echo) {
        typeName = QTYPE_LABELS.has(question.type) ? qtypeName(question.type) : 'OTHER';
        q = {
          id: h.id,
          rd,
          name: question.name,
          qtype: question.type,
          qclass: question.class,
          edns: opt ? { doFlag: opt.doFlag === true } : null,
          limit: transport === 'udp' ? udpLimit : MAX_TCP_MESSAGE,
        };
      }
      let reply: Reply;
      if (h.opcode !== 0) {
        reply = q ? this.cache.bare(q, RCODE.NOTIMP) : this.cache.headerOnly(h.id, rd, RCODE.NOTIMP);
      } else if (!q || req.errors.length > 0 || opts.length > 1 || (opt && opt.name !== '') || q.qtype === QTYPE.OPT) {
        reply = this.cache.headerOnly(h.id, rd, RCODE.FORMERR);
      } else if (opt && (opt.version ?? 0) !== 0) {
        reply = this.cache.bare(q, RCODE.BADVERS);
      } else if (q.qclass !== CLASS_IN && q.qclass !== CLASS_ANY) {
        reply = this.cache.bare(q, RCODE.REFUSED);
      } else {
        reply = this.cache.reply(q);
        if (reply.rcode !== RCODE.REFUSED && this.#isOutOfContact()) this.stats.staleNoLeader++;
      }
      this.#count(reply, transport, typeName);
      return reply.buf;
    } catch (err) {
      this.stats.internalErrors++;
      if (this.#errorsLogged < 20 || this.#errorsLogged % 1000 === 0) {
        this.#log('error', 'dns query failed', { error: (err as Error).stack ?? String(err), name: q?.name });
      }
      this.#errorsLogged++;
      return this.#servfail(h, q, transport, typeName);
    }
  }

  #servfail(h: Packet['header'], q: QueryInfo | undefined, transport: Transport, typeName: string): Buffer | null {
    try {
      const reply = q ? this.cache.bare(q, RCODE.SERVFAIL) : this.cache.headerOnly(Number(h.id) & 0xffff, h.rd === 1, RCODE.SERVFAIL);
      this.#count(reply, transport, typeName);
      return reply.buf;
    } catch {
      const buf = Buffer.alloc(HEADER_LEN);
      writeHeader(buf, { id: Number(h.id) & 0xffff, aa: false, tc: false, rd: false, rcode: RCODE.SERVFAIL, qdcount: 0, ancount: 0, nscount: 0, arcount: 0 });
      return buf;
    }
  }

  #count(reply: Reply, transport: Transport, typeName: string): void {
    const s = this.stats;
    s.queries++;
    s[transport]++;
    s.byType[typeName] = (s.byType[typeName] ?? 0) + 1;
    const rc = rcodeName(reply.rcode);
    s.byRcode[rc] = (s.byRcode[rc] ?? 0) + 1;
    if (reply.truncated) s.truncated++;
    s.cacheHits = this.cache.hits;
    s.cacheMisses = this.cache.misses;
  }

  /** Sampled at most every 50 ms: asking Raft for its status on every query would cost more than the answer. */
  #isOutOfContact(): boolean {
    const contact = this.#opts.leaderContact;
    if (!contact) return false;
    const now = Date.now();
    if (now - this.#contactSampledAt >= 50) {
      this.#contactSampledAt = now;
      const c = contact();
      this.#outOfContact = !c.knownLeader || c.lastContactMs > (this.#opts.staleAfterMs ?? 2000);
    }
    return this.#outOfContact;
  }

  /** Stops both listeners and cuts open TCP connections. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const udp = this.#udp;
    const tcp = this.#tcp;
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
    await Promise.all([
      udp ? new Promise<void>((r) => udp.close(() => r())) : undefined,
      tcp ? new Promise<void>((r) => tcp.close(() => r())) : undefined,
    ]);
  }
}

/** Query types counted under their own name. */
const QTYPE_LABELS = new Set<number>(Object.values(QTYPE));
