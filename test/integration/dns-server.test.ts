// The DNS server on real loopback sockets over an in-memory registry: Node's resolver (c-ares) and
// dig over UDP, TCP and EDNS0, truncation of a 100-instance service, response codes for bad and
// unsupported queries, SERVFAIL on internal errors, the stale counter, and a garbage flood.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connect } from 'node:net';
import { Resolver } from 'node:dns/promises';
import t from 'tap';
import { startServer } from '../../bin/server.ts';
import { loadServerConfig } from '../../src/config.ts';
import { DnsServer } from '../../dns/server.ts';
import type { DnsServerOptions } from '../../dns/server.ts';
import { QTYPE, RCODE } from '../../dns/wire.ts';
import type { RegistryReader } from '../../src/registry/model.ts';
import { LocalRegistry } from '../support/local-registry.ts';
import { freePort, waitFor } from '../support/ports.ts';
import { register } from '../support/dns-registry.ts';
import { NO_DIG, buildQuery, dig, parseReply, tcpExchange, udpExchange } from '../support/dns-client.ts';

interface Harness {
  reg: LocalRegistry;
  dns: DnsServer;
  port: number;
  resolver: Resolver;
}

async function start(tt: { teardown: (fn: () => unknown) => void }, opts: DnsServerOptions & { reader?: RegistryReader } = {}): Promise<Harness> {
  const reg = new LocalRegistry({ httpAddr: '127.0.0.1:8500' });
  await register(reg, 'api', 'a1', { address: '10.0.0.1', port: 8080, tags: ['v1'] });
  await register(reg, 'api', 'a2', { address: '10.0.0.2', port: 8081, tags: ['v2'], status: 'warning' });
  await register(reg, 'api', 'a3', { address: '10.0.0.3', port: 8082, status: 'critical' });
  await register(reg, 'api', 'a6', { address: 'fd00::6', port: 8086 });
  await register(reg, 'web', 'w1', { address: 'web.example.com', port: 80 });
  for (let i = 0; i < 100; i++) await register(reg, 'big', `b${i}`, { address: `10.1.0.${i + 1}`, port: 9000 + i });
  const dns = await DnsServer.listen(opts.reader ?? reg.reader, { host: '127.0.0.1', port: 0, ...opts });
  tt.teardown(() => dns.close());
  const resolver = new Resolver({ timeout: 3000, tries: 1 });
  resolver.setServers([`127.0.0.1:${dns.port}`]);
  return { reg, dns, port: dns.port, resolver };
}

t.test("Node's resolver (c-ares) gets A, AAAA and SRV records and the right errors", async (t) => {
  const h = await start(t);
  t.same((await h.resolver.resolve4('api.default.sider')).sort(), ['10.0.0.1', '10.0.0.2'], 'passing and warning, not critical');
  t.same(await h.resolver.resolve6('api.default.sider'), ['fd00::6']);
  t.same(await h.resolver.resolve4('V1.API.default.sider'), ['10.0.0.1'], 'tag, any case');
  const srv = await h.resolver.resolveSrv('_api._tcp.default.sider');
  t.same(
    srv.map((r) => `${r.priority} ${r.weight} ${r.port} ${r.name}`).sort(),
    ['1 1 8080 0a000001.addr.sider', '1 1 8081 0a000002.addr.sider', '1 1 8086 fd000000000000000000000000000006.addr.sider'],
  );
  t.same(await h.resolver.resolve4('0a000001.addr.sider'), ['10.0.0.1'], 'an SRV target resolves');
  t.same(await h.resolver.resolveCname('web.default.sider'), ['web.example.com']);
  await t.rejects(h.resolver.resolve4('nope.default.sider'), { code: 'ENOTFOUND' }, 'NXDOMAIN');
  await t.rejects(h.resolver.resolveTxt('api.default.sider'), { code: 'ENODATA' }, 'NODATA');
  await t.rejects(h.resolver.resolve4('example.com'), { code: 'EREFUSED' }, 'outside the zone');
  const soa = await h.resolver.resolveSoa('sider');
  t.match(soa, { nsname: 'ns.sider', hostmaster: 'hostmaster.sider', minttl: 0 });
  // c-ares retries over TCP when the UDP answer is truncated: all 100 come back.
  t.equal((await h.resolver.resolveSrv('big.default.sider')).length, 100);
  t.equal((await h.resolver.resolve4('big.default.sider')).length, 100);
  t.ok(h.dns.stats.tcp > 0, 'the retry came over TCP');
});

t.test('an instance that turns critical is no longer returned; the cached answer follows the registry', async (t) => {
  const h = await start(t);
  t.same((await h.resolver.resolve4('v1.api.default.sider')).sort(), ['10.0.0.1']);
  await register(h.reg, 'api', 'a1', { address: '10.0.0.1', port: 8080, tags: ['v1'], status: 'critical' });
  await t.rejects(h.resolver.resolve4('v1.api.default.sider'), { code: 'ENOTFOUND' });
  t.same(await h.resolver.resolve4('api.default.sider'), ['10.0.0.2']);
  await register(h.reg, 'api', 'a1', { address: '10.0.0.1', port: 8080, tags: ['v1'], status: 'passing' });
  t.same(await h.resolver.resolve4('v1.api.default.sider'), ['10.0.0.1']);
});

t.test('dig over UDP, TCP and EDNS0; a 100-instance service truncates over UDP and is whole over TCP', { skip: NO_DIG }, async (t) => {
  const h = await start(t);
  const a = await dig(h.port, ['api.default.sider', 'A']);
  t.equal(a.status, 'NOERROR');
  t.ok(a.flags.includes('aa'), 'authoritative');
  t.notOk(a.flags.includes('ra'), 'not recursive');
  t.same(a.answers.map((l) => l.split(' ')[4]).sort(), ['10.0.0.1', '10.0.0.2']);

  const tcp = await dig(h.port, ['+tcp', 'api.default.sider', 'SRV']);
  t.equal(tcp.status, 'NOERROR');
  t.equal(tcp.counts.answer, 3);
  t.match(tcp.text, /0a000001\.addr\.sider\.\s+0\s+IN\s+A\s+10\.0\.0\.1/, 'target address in the additional section');

  const nx = await dig(h.port, ['nope.default.sider', 'A']);
  t.equal(nx.status, 'NXDOMAIN');
  t.equal(nx.counts.authority, 1);
  t.match(nx.text, /sider\.\s+0\s+IN\s+SOA\s+ns\.sider\. hostmaster\.sider\./);
  const nodata = await dig(h.port, ['api.default.sider', 'TXT']);
  t.equal(nodata.status, 'NOERROR');
  t.equal(nodata.counts.answer, 0);
  t.equal(nodata.counts.authority, 1);
  t.equal((await dig(h.port, ['example.com', 'A'])).status, 'REFUSED');
  t.equal((await dig(h.port, ['+tcp', 'sider', 'AXFR'])).text.includes('Transfer failed'), true, 'AXFR refused');

  // Without EDNS0: 512 bytes, TC set, as many whole answers as fit.
  const udp = await dig(h.port, ['+noedns', '+ignore', 'big.default.sider', 'SRV']);
  t.ok(udp.flags.includes('tc'), 'TC set');
  t.ok(udp.counts.answer > 0 && udp.counts.answer < 100, `partial answers over UDP (${udp.counts.answer})`);
  t.equal(udp.answers.length, udp.counts.answer, 'every answer counted was received whole');
  t.match(udp.text, /MSG SIZE\s+rcvd: (\d+)/);
  t.ok(Number(/MSG SIZE\s+rcvd: (\d+)/.exec(udp.text)![1]) <= 512);
  // EDNS0 1232: more fit, our OPT is echoed.
  const edns = await dig(h.port, ['+bufsize=1232', '+ignore', 'big.default.sider', 'A']);
  t.ok(edns.flags.includes('tc'));
  t.ok(edns.counts.answer > udp.counts.answer && edns.counts.answer < 100, `more answers with EDNS0 (${edns.counts.answer})`);
  t.match(edns.text, /EDNS: version: 0, flags:; udp: 4096/);
  t.ok(Number(/MSG SIZE\s+rcvd: (\d+)/.exec(edns.text)![1]) <= 1232);
  // EDNS0 4096: all 100 A records fit (16 bytes each).
  const big = await dig(h.port, ['+bufsize=4096', 'big.default.sider', 'A']);
  t.notOk(big.flags.includes('tc'));
  t.equal(big.counts.answer, 100);
  // TCP: everything, answers and glue.
  const whole = await dig(h.port, ['+tcp', 'big.default.sider', 'SRV']);
  t.notOk(whole.flags.includes('tc'));
  t.equal(whole.counts.answer, 100);
  t.equal(whole.counts.additional, 101, '100 addresses and the OPT');
  // dig retries over TCP on its own when it sees TC.
  const retried = await dig(h.port, ['+noedns', 'big.default.sider', 'SRV']);
  t.equal(retried.counts.answer, 100);
  t.match(retried.text, /Truncated, retrying in TCP mode/);
});

t.test('the question comes back exactly as asked (0x20 case) and answers rotate between queries', async (t) => {
  const h = await start(t);
  const q = buildQuery('bIg.DeFaUlT.sIdEr', QTYPE.A, { id: 0xbeef, edns: 4096 });
  const firsts = new Set<string>();
  for (let i = 0; i < 40; i++) {
    const r = await udpExchange(h.port, q);
    t.ok(r, 'answered');
    if (!r) return;
    t.equal(r.readUInt16BE(0), 0xbeef);
    // Question section: bytes 12.. of the query up to its end minus the OPT record (11 bytes).
    t.same(r.subarray(12, q.length - 11), q.subarray(12, q.length - 11), 'question bytes identical');
    const p = parseReply(r);
    t.equal(p.answers.length, 100);
    firsts.add((p.answers[0] as unknown as { address: string }).address);
  }
  t.ok(firsts.size > 5, `rotation: ${firsts.size} different first answers in 40 queries`);
});

t.test('response codes for malformed and unsupported queries', async (t) => {
  const h = await start(t);
  const rcode = (b: Buffer | null): number => (b ? b[3]! & 0x0f : -1);
  // Two questions: FORMERR.
  const two = buildQuery('api.default.sider', QTYPE.A);
  const twoQ = Buffer.concat([two, two.subarray(12)]);
  twoQ.writeUInt16BE(2, 4);
  t.equal(rcode(await udpExchange(h.port, twoQ)), RCODE.FORMERR, 'two questions');
  // No question: FORMERR, over UDP and TCP.
  const none = Buffer.from('abcd01000000000000000000', 'hex');
  t.equal(rcode(await udpExchange(h.port, none)), RCODE.FORMERR, 'no question (udp)');
  const [tcpNone] = await tcpExchange(h.port, [none], 1);
  t.equal(rcode(tcpNone ?? null), RCODE.FORMERR, 'no question (tcp)');
  // Opcode STATUS (2): NOTIMP.
  t.equal(rcode(await udpExchange(h.port, buildQuery('api.default.sider', QTYPE.A, { opcode: 2 }))), RCODE.NOTIMP);
  // EDNS version 1: BADVERS (16 = extended rcode 1 in the OPT, 0 in the header).
  const bad = await udpExchange(h.port, buildQuery('api.default.sider', QTYPE.A, { edns: 1232, ednsVersion: 1 }));
  t.equal(parseReply(bad!).header.rcode, RCODE.BADVERS);
  // CHAOS class: REFUSED.
  t.equal(rcode(await udpExchange(h.port, buildQuery('version.bind', QTYPE.TXT, { qclass: 3 }))), RCODE.REFUSED);
  // AXFR / IXFR: NOTIMP, over TCP where transfers are asked.
  const [axfr] = await tcpExchange(h.port, [buildQuery('sider', QTYPE.AXFR)], 1);
  t.equal(rcode(axfr ?? null), RCODE.NOTIMP);
  t.equal(rcode(await udpExchange(h.port, buildQuery('sider', QTYPE.IXFR))), RCODE.NOTIMP);
  // A response (QR=1) gets no answer at all.
  const resp = buildQuery('api.default.sider', QTYPE.A);
  resp[2]! |= 0x80;
  t.equal(await udpExchange(h.port, resp, 300), null, 'QR=1 dropped');
  // Several queries pipelined on one TCP connection are each answered.
  const piped = await tcpExchange(h.port, [buildQuery('api.default.sider', QTYPE.A, { id: 1 }), buildQuery('web.default.sider', QTYPE.A, { id: 2 }), buildQuery('nope.default.sider', QTYPE.A, { id: 3 })], 3);
  t.same(piped.map((b) => b.readUInt16BE(0)).sort(), [1, 2, 3]);
  t.same(piped.map((b) => [b.readUInt16BE(0), rcode(b)]).sort(), [[1, 0], [2, 0], [3, RCODE.NXDOMAIN]]);
});

t.test('an internal error answers SERVFAIL and the server goes on answering', async (t) => {
  const reg = new LocalRegistry();
  await register(reg, 'api', 'a1', { address: '10.0.0.1' });
  let fail = true;
  const reader: RegistryReader = new Proxy(reg.reader, {
    get(target, prop, receiver) {
      if (prop === 'serviceEntries' && fail) {
        return () => {
          throw new Error('planted failure');
        };
      }
      return Reflect.get(target, prop, receiver) as unknown;
    },
  });
  const logs: string[] = [];
  const h = await start(t, { reader, log: (level, msg) => logs.push(`${level} ${msg}`) });
  const r = await udpExchange(h.port, buildQuery('api.default.sider', QTYPE.A));
  t.equal(r![3]! & 0x0f, RCODE.SERVFAIL);
  t.equal(h.dns.stats.internalErrors, 1);
  t.ok(logs.includes('error dns query failed'));
  fail = false;
  const ok = await udpExchange(h.port, buildQuery('api.default.sider', QTYPE.A));
  t.equal(ok![3]! & 0x0f, RCODE.NOERROR);
  t.equal(parseReply(ok!).answers.length, 1);
});

t.test('queries answered while out of contact with a leader are counted', async (t) => {
  let contact = { knownLeader: true, lastContactMs: 0 };
  const h = await start(t, { leaderContact: () => contact, staleAfterMs: 2000 });
  await h.resolver.resolve4('api.default.sider');
  t.equal(h.dns.stats.staleNoLeader, 0);
  contact = { knownLeader: false, lastContactMs: 0 };
  // The contact is sampled every 50 ms: poll until a query is counted (bounded).
  for (let i = 0; i < 100 && h.dns.stats.staleNoLeader === 0; i++) {
    await h.resolver.resolve4('api.default.sider');
    await new Promise((r) => setTimeout(r, 20));
  }
  t.ok(h.dns.stats.staleNoLeader > 0, 'counted without a known leader');
  t.equal((await h.resolver.resolve4('api.default.sider')).length, 2, 'and still answered from local state');
  contact = { knownLeader: true, lastContactMs: 5000 };
  const before = h.dns.stats.staleNoLeader;
  await new Promise((r) => setTimeout(r, 60));
  await h.resolver.resolve4('api.default.sider');
  t.equal(h.dns.stats.staleNoLeader, before + 1, 'a leader not heard from for too long counts too');
  contact = { knownLeader: true, lastContactMs: 100 };
  await new Promise((r) => setTimeout(r, 60));
  await h.resolver.resolve4('api.default.sider');
  t.equal(h.dns.stats.staleNoLeader, before + 1, 'in contact again');
  t.ok(h.dns.stats.byType.A! > 0 && h.dns.stats.byRcode.NOERROR! > 0, 'counted by type and rcode');
});

/** Garbage of the kinds that break DNS parsers, each at most 600 bytes. */
function garbage(i: number): Buffer {
  const valid = buildQuery('api.default.sider', QTYPE.A, { id: i & 0xffff });
  switch (i % 8) {
    case 0:
      return randomBytes(1 + (i % 600));
    case 1:
      return valid.subarray(0, i % valid.length); // truncated
    case 2: {
      const b = Buffer.from(valid);
      b.writeUInt16BE(0xffff, 4);
      b.writeUInt16BE(0xffff, 6);
      b.writeUInt16BE(0xffff, 8);
      b.writeUInt16BE(0xffff, 10);
      return b; // every count 0xFFFF
    }
    case 3: {
      // 250 one-byte labels, then more: a name longer than 255 bytes.
      const labels = Buffer.alloc(520);
      for (let k = 0; k < 260; k++) {
        labels[2 * k] = 1;
        labels[2 * k + 1] = 0x61;
      }
      return Buffer.concat([Buffer.from('12340100000100000000000', 'hex'), Buffer.from([0]), labels, Buffer.from([0, 0, 1, 0, 1])]).subarray(0, 600);
    }
    case 4:
      // A compression pointer to itself, and a two-pointer loop.
      return i % 16 < 8
        ? Buffer.from('123401000001000000000000c00c00010001', 'hex')
        : Buffer.from('123401000001000000000000c00ec00c00010001', 'hex');
    case 5: {
      const b = Buffer.from(valid);
      b[2]! |= 0x80; // QR=1
      return b;
    }
    case 6: {
      const b = Buffer.from(valid);
      b[12 + (i % (valid.length - 12))] = i & 0xff; // one byte of the question corrupted
      return b;
    }
    default: {
      const b = Buffer.concat([valid, randomBytes(i % 64)]);
      b.writeUInt16BE(1 + (i % 3), 10); // bogus additional records
      return b;
    }
  }
}

t.test('a flood of garbage over UDP and TCP never stops the server answering valid queries', async (t) => {
  const h = await start(t);
  const sock = createSocket('udp4');
  t.teardown(() => sock.close());
  let replies = 0;
  sock.on('message', () => replies++);
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const N = 4000;
  for (let i = 0; i < N; i++) {
    await new Promise<void>((resolve) => sock.send(garbage(i), h.port, '127.0.0.1', () => resolve()));
    if (i % 500 === 499) {
      // The flood outruns the server and the kernel drops datagrams from the full socket buffer,
      // the valid query's among them: retry as a stub resolver does (bounded).
      let r: Buffer | null = null;
      for (let attempt = 0; attempt < 10 && !r; attempt++) r = await udpExchange(h.port, buildQuery('api.default.sider', QTYPE.A), 500);
      t.ok(r && (r[3]! & 0x0f) === RCODE.NOERROR, `valid query answered after ${i + 1} garbage datagrams`);
    }
  }
  // TCP: garbage frames, a frame longer than what follows, and raw junk without framing.
  for (let i = 0; i < 16; i++) {
    await tcpExchange(h.port, [garbage(i), garbage(i + 1)], 2, 300).catch(() => []);
  }
  await new Promise<void>((resolve) => {
    const s = connect(h.port, '127.0.0.1', () => {
      s.end(Buffer.concat([Buffer.from([0xff, 0xff]), randomBytes(100)]));
    });
    s.on('error', () => resolve());
    s.on('close', () => resolve());
    s.resume();
  });
  const [after] = await tcpExchange(h.port, [buildQuery('api.default.sider', QTYPE.A)], 1);
  t.equal(after![3]! & 0x0f, RCODE.NOERROR, 'TCP still answers');
  t.same((await h.resolver.resolve4('api.default.sider')).sort(), ['10.0.0.1', '10.0.0.2'], 'UDP still answers');
  t.ok(h.dns.stats.dropped > 0, `garbage dropped (${h.dns.stats.dropped})`);
  t.ok((h.dns.stats.byRcode.FORMERR ?? 0) > 0, `garbage answered FORMERR (${h.dns.stats.byRcode.FORMERR})`);
  t.equal(h.dns.stats.internalErrors, 0, 'no internal error');
  t.ok(replies > 0);
});

t.test('close() returns with idle TCP clients connected, and ports are released', async (t) => {
  const reg = new LocalRegistry();
  const dns = await DnsServer.listen(reg.reader, { host: '127.0.0.1', port: 0 });
  const s = connect(dns.port, '127.0.0.1');
  s.on('error', () => {});
  await new Promise<void>((r) => s.once('connect', () => r()));
  await dns.close();
  await dns.close();
  // The same port can be bound again (UDP and TCP).
  const again = await DnsServer.listen(reg.reader, { host: '127.0.0.1', port: dns.port });
  t.equal(again.port, dns.port);
  await again.close();
  s.destroy();
});

t.test('a taken port is an error, not a crash', async (t) => {
  const reg = new LocalRegistry();
  const first = await DnsServer.listen(reg.reader, { host: '127.0.0.1', port: 0 });
  t.teardown(() => first.close());
  await t.rejects(DnsServer.listen(reg.reader, { host: '127.0.0.1', port: first.port }), { code: 'EADDRINUSE' });
});

t.test("the README's DNS examples work against a real sider server", { skip: NO_DIG }, async (t) => {
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
  const block = /```sh\n([\s\S]*?)```/.exec(readme.slice(readme.indexOf('## DNS')));
  if (!block) throw new Error('README "DNS" has no sh block');
  const lines = block[1]!.split('\n').filter((l) => l.startsWith('curl ') || l.startsWith('dig '));
  t.ok(lines.filter((l) => l.startsWith('dig ')).length >= 3, 'dig lines found');
  const dir = await mkdtemp(join(tmpdir(), 'sider-dns-readme-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const http = `127.0.0.1:${await freePort()}`;
  const cfg = loadServerConfig(['-bootstrap', '-raft-id', 'node1', '-raft-dir', dir, '-http', http, '-raft-bind', `127.0.0.1:${await freePort()}`, '-raft-tick-ms', '20', '-dns', '127.0.0.1:0'], {});
  const srv = await startServer(cfg, { log: () => {} });
  t.teardown(() => srv.close());
  await waitFor('leader', () => srv.raft.status().role === 'leader');
  t.ok(srv.dns, 'DNS is on');
  const dnsPort = srv.dns!.port;
  t.equal(srv.dnsAddr, `127.0.0.1:${dnsPort}`);
  const run = promisify(execFile);
  const outputs: string[] = [];
  for (const line of lines) {
    const cmd = line.replaceAll('127.0.0.1:8500', http).replaceAll('-p 8600', `-p ${dnsPort} +time=2 +tries=1`);
    const { stdout } = await run('sh', ['-c', cmd], { timeout: 15_000 });
    outputs.push(stdout.trim());
  }
  const digs = outputs.slice(lines.findIndex((l) => l.startsWith('dig ')));
  t.same(digs, ['10.0.0.5', '1 1 8080 0a000005.addr.sider.', '10.0.0.5', '10.0.0.5'], 'each dig line answers');
  t.ok(srv.dns!.stats.queries >= 4);
});
