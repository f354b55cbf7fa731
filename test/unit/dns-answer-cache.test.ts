// Encoded answers and the replies built from them, decoded with dns2's parser: the question echoed
// as spelled, one computation per change, rotation, whole-record truncation, OPT, bounds.

import t from 'tap';
import { Packet } from 'dns2';
import { AnswerCache } from '../../dns/answer-cache.ts';
import type { QueryInfo } from '../../dns/answer-cache.ts';
import { DnsResolver } from '../../dns/resolver.ts';
import { QTYPE, RCODE } from '../../dns/wire.ts';
import { LocalRegistry } from '../support/local-registry.ts';
import { register } from '../support/dns-registry.ts';

function query(name: string, qtype: number, o: Partial<QueryInfo> = {}): QueryInfo {
  return { id: 0x1234, rd: true, name, qtype, qclass: 1, edns: null, limit: 512, ...o };
}

function decode(buf: Buffer): Packet {
  const p = Packet.parse(buf);
  if (p.errors.length > 0) throw new Error(`reply does not parse: ${p.errors.map((e) => e.message).join('; ')}`);
  return p;
}

/** A deterministic random source cycling through the given values. */
function cycle(values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}

async function bigRegistry(n: number): Promise<LocalRegistry> {
  const reg = new LocalRegistry();
  for (let i = 0; i < n; i++) await register(reg, 'big', `b${i}`, { address: `10.1.${i >> 8}.${i & 255}`, port: 1000 + i });
  return reg;
}

t.test('the question is echoed exactly as asked (0x20 case) with the query ID, and a cached answer serves every spelling', async (t) => {
  const reg = new LocalRegistry();
  await register(reg, 'api', 'a1', { address: '10.0.0.1' });
  const cache = new AnswerCache(new DnsResolver(reg.reader));
  const a = decode(cache.reply(query('aPi.DeFault.siDER', QTYPE.A, { id: 7 })).buf);
  t.equal(a.header.id, 7);
  t.equal(a.header.qr, 1);
  t.equal(a.header.aa, 1);
  t.equal(a.header.rd, 1);
  t.equal(a.header.ra, 0);
  t.same(a.questions, [{ name: 'aPi.DeFault.siDER', type: QTYPE.A, class: 1 }]);
  t.same(a.answers.map((r) => [r.name.toLowerCase(), r.type, (r as unknown as { address: string }).address]), [['api.default.sider', QTYPE.A, '10.0.0.1']]);
  const b = decode(cache.reply(query('API.default.SIDER', QTYPE.A, { id: 65535, rd: false })).buf);
  t.equal(b.header.id, 65535);
  t.equal(b.header.rd, 0);
  t.same(b.questions[0]!.name, 'API.default.SIDER');
  t.equal(cache.misses, 1, 'computed once');
  t.equal(cache.hits, 1, 'served from the cache the second time');
});

t.test('an answer is recomputed once per change of its service and not otherwise', async (t) => {
  const reg = new LocalRegistry();
  await register(reg, 'api', 'a1', { address: '10.0.0.1' });
  await register(reg, 'web', 'w1', { address: '10.0.0.9' });
  const cache = new AnswerCache(new DnsResolver(reg.reader));
  for (let i = 0; i < 50; i++) cache.reply(query('api.default.sider', QTYPE.A, { id: i }));
  t.equal(cache.misses, 1);
  await register(reg, 'web', 'w2', { address: '10.0.0.10' });
  for (let i = 0; i < 50; i++) cache.reply(query('api.default.sider', QTYPE.A, { id: i }));
  t.equal(cache.misses, 1, 'another service changed: still cached');
  await register(reg, 'api', 'a2', { address: '10.0.0.2' });
  let reply = decode(cache.reply(query('api.default.sider', QTYPE.A)).buf);
  t.equal(cache.misses, 2, 'recomputed after the change');
  t.equal(reply.answers.length, 2);
  await register(reg, 'api', 'a2', { address: '10.0.0.2', status: 'critical' });
  reply = decode(cache.reply(query('api.default.sider', QTYPE.A)).buf);
  t.equal(cache.misses, 3, 'a health change is a change');
  t.equal(reply.answers.length, 1);
});

t.test('answers are rotated per query: every instance comes first in turn, every reply holds all of them', async (t) => {
  const reg = await bigRegistry(4);
  const cache = new AnswerCache(new DnsResolver(reg.reader), { random: cycle([0, 0.25, 0.5, 0.75]) });
  const firsts = new Set<string>();
  for (let i = 0; i < 4; i++) {
    const p = decode(cache.reply(query('big.default.sider', QTYPE.SRV)).buf);
    const ports = p.answers.map((r) => (r as unknown as { port: number }).port);
    t.same([...ports].sort(), [1000, 1001, 1002, 1003], 'all records');
    t.same(ports, [0, 1, 2, 3].map((k) => 1000 + ((i + k) % 4)), 'in rotated order');
    firsts.add(String(ports[0]));
    t.equal(p.additionals.length, 4, 'every target address in the additional section');
  }
  t.equal(firsts.size, 4);
});

t.test('a UDP reply that does not fit holds as many whole answers as fit, TC set, and TCP holds them all', async (t) => {
  const reg = await bigRegistry(100);
  const cache = new AnswerCache(new DnsResolver(reg.reader));
  const small = cache.reply(query('big.default.sider', QTYPE.SRV));
  t.ok(small.buf.length <= 512);
  t.ok(small.truncated);
  const p = decode(small.buf);
  t.equal(p.header.tc, 1);
  t.ok(p.answers.length > 5 && p.answers.length < 100, `partial answers (${p.answers.length})`);
  t.equal(p.header.ancount, p.answers.length, 'whole records only');
  t.equal(p.additionals.length, 0);
  // The next record would not have fitted.
  t.ok(small.buf.length + 39 > 512);

  const a = cache.reply(query('big.default.sider', QTYPE.A));
  const pa = decode(a.buf);
  t.equal(pa.header.tc, 1);
  t.equal(pa.answers.length, Math.floor((512 - 12 - 21 - 4) / 16));

  // EDNS0 with 4096: every SRV record fits, the glue only partly; TC stays clear (RFC 2181 §9).
  const edns = cache.reply(query('big.default.sider', QTYPE.SRV, { edns: { doFlag: false }, limit: 4096 }));
  const pe = decode(edns.buf);
  t.ok(edns.buf.length <= 4096);
  t.equal(pe.header.tc, 0);
  t.equal(pe.answers.length, 100);
  const glue = pe.additionals.filter((r) => r.type === QTYPE.A).length;
  t.ok(glue > 0 && glue < 100, `partial glue (${glue})`);
  t.equal(pe.additionals.filter((r) => r.type === QTYPE.OPT).length, 1, 'OPT still last');

  const tcp = decode(cache.reply(query('big.default.sider', QTYPE.SRV, { limit: 65535 })).buf);
  t.equal(tcp.header.tc, 0);
  t.equal(tcp.answers.length, 100);
  t.equal(tcp.additionals.length, 100);
});

t.test('a truncated rotation still starts at the rotated record', async (t) => {
  const reg = await bigRegistry(100);
  const cache = new AnswerCache(new DnsResolver(reg.reader), { random: cycle([0.995]) });
  const p = decode(cache.reply(query('big.default.sider', QTYPE.A)).buf);
  const addrs = p.answers.map((r) => (r as unknown as { address: string }).address);
  t.same(addrs.slice(0, 2), ['10.1.0.99', '10.1.0.0'], 'wraps around');
});

t.test('EDNS0: our OPT is appended with our UDP size and the DO bit copied; BADVERS travels in the OPT', async (t) => {
  const reg = new LocalRegistry();
  await register(reg, 'api', 'a1', { address: '10.0.0.1' });
  const cache = new AnswerCache(new DnsResolver(reg.reader));
  const p = decode(cache.reply(query('api.default.sider', QTYPE.A, { edns: { doFlag: true }, limit: 1232 })).buf);
  const opt = p.additionals.find((r) => r.type === QTYPE.OPT) as unknown as { class: number; doFlag: boolean; version: number };
  t.equal(opt.class, 4096);
  t.equal(opt.doFlag, true);
  t.equal(opt.version, 0);
  const bad = decode(cache.bare(query('api.default.sider', QTYPE.A, { edns: { doFlag: false } }), RCODE.BADVERS).buf);
  t.equal(bad.header.rcode, RCODE.BADVERS);
  t.equal(bad.answers.length, 0);
  const noEdns = decode(cache.reply(query('api.default.sider', QTYPE.A)).buf);
  t.equal(noEdns.additionals.length, 0, 'no OPT when the client sent none');
});

t.test("a hostname-only service answers one CNAME per reply, and each of them in turn", async (t) => {
  const reg = new LocalRegistry();
  await register(reg, 'web', 'w1', { address: 'one.example.com' });
  await register(reg, 'web', 'w2', { address: 'two.example.com' });
  const cache = new AnswerCache(new DnsResolver(reg.reader), { random: cycle([0.1, 0.6]) });
  const seen = new Set<string>();
  for (let i = 0; i < 2; i++) {
    const p = decode(cache.reply(query('web.default.sider', QTYPE.A)).buf);
    t.equal(p.answers.length, 1);
    t.equal(p.answers[0]!.type, QTYPE.CNAME);
    seen.add((p.answers[0] as unknown as { domain: string }).domain);
  }
  t.same([...seen].sort(), ['one.example.com', 'two.example.com']);
});

t.test('negative answers carry the SOA and are cached; names outside the zone are not', async (t) => {
  const reg = new LocalRegistry();
  const cache = new AnswerCache(new DnsResolver(reg.reader), { maxEntries: 10 });
  const nx = decode(cache.reply(query('nope.default.sider', QTYPE.A)).buf);
  t.equal(nx.header.rcode, RCODE.NXDOMAIN);
  t.equal(nx.authorities.length, 1);
  t.equal(nx.authorities[0]!.type, QTYPE.SOA);
  t.equal(nx.authorities[0]!.name, 'sider');
  const out = decode(cache.reply(query('example.com', QTYPE.A)).buf);
  t.equal(out.header.rcode, RCODE.REFUSED);
  t.equal(out.header.aa, 0);
  t.equal(cache.size, 1, 'the REFUSED name was not cached');
  for (let i = 0; i < 100; i++) cache.reply(query(`n${i}.default.sider`, QTYPE.A));
  t.equal(cache.size, 10, 'bounded');
});
