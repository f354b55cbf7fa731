// The DNS resolver as a table: name and type → response code, answers, authority, additional,
// over an in-memory registry; health filtering, weights, CNAMEs, tags, namespaces, Consul forms,
// dependencies for caching, and properties over arbitrary names.

import t from 'tap';
import fc from 'fast-check';
import { DnsResolver } from '../../dns/resolver.ts';
import type { Resolution } from '../../dns/resolver.ts';
import { QTYPE, RCODE } from '../../dns/wire.ts';
import type { DnsRecord } from '../../dns/wire.ts';
import { LocalRegistry } from '../support/local-registry.ts';
import { register } from '../support/dns-registry.ts';

const { A, AAAA, SRV, ANY, TXT, SOA, NS, CNAME, MX, AXFR, IXFR } = QTYPE;

function show(r: DnsRecord): string {
  switch (r.type) {
    case 'A':
    case 'AAAA':
      return `${r.name} ${r.type} ${r.address}`;
    case 'CNAME':
      return `${r.name} CNAME ${r.target}`;
    case 'NS':
      return `${r.name} NS ${r.host}`;
    case 'SRV':
      return `${r.name} SRV ${r.priority} ${r.weight} ${r.port} ${r.target}`;
    case 'SOA':
      return `${r.name} SOA ${r.mname} ${r.rname} ${r.serial} ${r.minimum}`;
  }
}

const sorted = (rs: DnsRecord[]): string[] => rs.map(show).sort();

/** The registry every table row runs against. */
async function fixture(): Promise<LocalRegistry> {
  // node-1 published HTTP address 10.0.0.1:8500 (LocalRegistry's default server record).
  const reg = new LocalRegistry({ httpAddr: '10.0.0.1:8500' });
  const w = { Passing: 10, Warning: 3 };
  await register(reg, 'api', 'a1', { address: '10.0.0.1', port: 80, tags: ['v1', 'Primary'], weights: w });
  await register(reg, 'api', 'a2', { address: '10.0.0.2', port: 81, tags: ['v2'], status: 'warning', weights: w });
  await register(reg, 'api', 'a3', { address: '10.0.0.3', port: 82, tags: ['v1'], status: 'critical', weights: w });
  await register(reg, 'api', 'a4', { address: '10.0.0.4', port: 83, tags: ['v1'], status: 'maintenance', weights: w });
  await register(reg, 'api', 'a5', { address: '2001:db8::5', port: 85, status: 'none', weights: w });
  await register(reg, 'web', 'w1', { address: 'Web-1.example.com', port: 80 });
  await register(reg, 'web', 'w2', { address: 'web-2.example.com.', port: 80 });
  await register(reg, 'mixed', 'm1', { address: '10.0.1.1', port: 80 });
  await register(reg, 'mixed', 'm2', { address: 'host.example.com', port: 80 });
  await register(reg, 'down', 'd1', { address: '10.0.2.1', status: 'critical' });
  await register(reg, 'noaddr', 'n1', { address: '', port: 90, node: 'node-1' });
  await register(reg, 'noaddr', 'n2', { address: '', port: 91, node: 'agent-x' });
  await register(reg, 'agentaddr', 'g1', { address: '', port: 92, node: 'agent-y', nodeAddress: '10.0.4.4' });
  await register(reg, 'agentaddr', 'g2', { address: '10.0.4.5', port: 93, node: 'agent-y', nodeAddress: '10.0.4.4' });
  await register(reg, 'dup', 'x1', { address: '10.0.3.1', port: 80 });
  await register(reg, 'dup', 'x2', { address: '10.0.3.1', port: 80 });
  await register(reg, 'api', 'p1', { ns: 'prod', address: '10.9.9.9', port: 80 });
  return reg;
}

const SOA_DEFAULT = 'sider SOA ns.sider hostmaster.sider 1 0';

interface Row {
  name: string;
  qtype: number;
  rcode: number;
  answers?: string[];
  authority?: string[];
  additional?: string[];
  mode?: 'all' | 'one';
  aa?: boolean;
}

const rows: Row[] = [
  // Service names: passing and warning served, critical and maintenance not; both families.
  { name: 'api.default.sider', qtype: A, rcode: RCODE.NOERROR, answers: ['api.default.sider A 10.0.0.1', 'api.default.sider A 10.0.0.2'] },
  { name: 'api.default.sider', qtype: AAAA, rcode: RCODE.NOERROR, answers: ['api.default.sider AAAA 2001:db8::5'] },
  { name: 'API.Default.SIDER', qtype: A, rcode: RCODE.NOERROR, answers: ['api.default.sider A 10.0.0.1', 'api.default.sider A 10.0.0.2'] },
  {
    name: 'api.default.sider',
    qtype: ANY,
    rcode: RCODE.NOERROR,
    answers: ['api.default.sider A 10.0.0.1', 'api.default.sider A 10.0.0.2', 'api.default.sider AAAA 2001:db8::5'],
  },
  {
    name: 'api.default.sider',
    qtype: SRV,
    rcode: RCODE.NOERROR,
    answers: [
      'api.default.sider SRV 1 10 80 0a000001.addr.sider',
      'api.default.sider SRV 1 10 85 20010db8000000000000000000000005.addr.sider',
      'api.default.sider SRV 1 3 81 0a000002.addr.sider',
    ],
    additional: ['0a000001.addr.sider A 10.0.0.1', '0a000002.addr.sider A 10.0.0.2', '20010db8000000000000000000000005.addr.sider AAAA 2001:db8::5'],
  },
  // A known name without records of the type: NODATA with the SOA.
  { name: 'api.default.sider', qtype: TXT, rcode: RCODE.NOERROR, answers: [], authority: [SOA_DEFAULT] },
  { name: 'api.default.sider', qtype: MX, rcode: RCODE.NOERROR, answers: [], authority: [SOA_DEFAULT] },
  { name: 'api.default.sider', qtype: CNAME, rcode: RCODE.NOERROR, answers: [], authority: [SOA_DEFAULT] },
  // Tags, case-insensitive, only among usable instances.
  { name: 'v1.api.default.sider', qtype: A, rcode: RCODE.NOERROR, answers: ['v1.api.default.sider A 10.0.0.1'] },
  { name: 'PRIMARY.api.default.sider', qtype: A, rcode: RCODE.NOERROR, answers: ['primary.api.default.sider A 10.0.0.1'] },
  { name: 'v2.api.default.sider', qtype: SRV, rcode: RCODE.NOERROR, answers: ['v2.api.default.sider SRV 1 3 81 0a000002.addr.sider'], additional: ['0a000002.addr.sider A 10.0.0.2'] },
  { name: 'v3.api.default.sider', qtype: A, rcode: RCODE.NXDOMAIN, answers: [], authority: [SOA_DEFAULT] },
  // RFC 2782 names: _tcp = every instance, another protocol label = a tag; SRV only.
  {
    name: '_api._tcp.default.sider',
    qtype: SRV,
    rcode: RCODE.NOERROR,
    answers: [
      '_api._tcp.default.sider SRV 1 10 80 0a000001.addr.sider',
      '_api._tcp.default.sider SRV 1 10 85 20010db8000000000000000000000005.addr.sider',
      '_api._tcp.default.sider SRV 1 3 81 0a000002.addr.sider',
    ],
  },
  { name: '_api._tcp.default.sider', qtype: ANY, rcode: RCODE.NOERROR, answers: ['_api._tcp.default.sider SRV 1 10 80 0a000001.addr.sider', '_api._tcp.default.sider SRV 1 10 85 20010db8000000000000000000000005.addr.sider', '_api._tcp.default.sider SRV 1 3 81 0a000002.addr.sider'] },
  { name: '_api._tcp.default.sider', qtype: A, rcode: RCODE.NOERROR, answers: [], authority: [SOA_DEFAULT] },
  { name: '_api._v2.default.sider', qtype: SRV, rcode: RCODE.NOERROR, answers: ['_api._v2.default.sider SRV 1 3 81 0a000002.addr.sider'] },
  { name: '_api._v9.default.sider', qtype: SRV, rcode: RCODE.NXDOMAIN, answers: [], authority: [SOA_DEFAULT] },
  // Hostname addresses: one CNAME per reply for A/AAAA; SRV targets are the hostnames, no glue.
  { name: 'web.default.sider', qtype: A, rcode: RCODE.NOERROR, mode: 'one', answers: ['web.default.sider CNAME web-1.example.com', 'web.default.sider CNAME web-2.example.com'] },
  { name: 'web.default.sider', qtype: CNAME, rcode: RCODE.NOERROR, mode: 'one', answers: ['web.default.sider CNAME web-1.example.com', 'web.default.sider CNAME web-2.example.com'] },
  { name: 'web.default.sider', qtype: SRV, rcode: RCODE.NOERROR, answers: ['web.default.sider SRV 1 1 80 web-1.example.com', 'web.default.sider SRV 1 1 80 web-2.example.com'], additional: [] },
  // Addresses win over a CNAME for the family they cover.
  { name: 'mixed.default.sider', qtype: A, rcode: RCODE.NOERROR, answers: ['mixed.default.sider A 10.0.1.1'] },
  { name: 'mixed.default.sider', qtype: AAAA, rcode: RCODE.NOERROR, mode: 'one', answers: ['mixed.default.sider CNAME host.example.com'] },
  { name: 'mixed.default.sider', qtype: CNAME, rcode: RCODE.NOERROR, answers: [] },
  // No usable instance, unknown service or namespace: NXDOMAIN with the SOA.
  { name: 'down.default.sider', qtype: A, rcode: RCODE.NXDOMAIN, answers: [], authority: [SOA_DEFAULT] },
  { name: 'down.default.sider', qtype: SRV, rcode: RCODE.NXDOMAIN, answers: [], authority: [SOA_DEFAULT] },
  { name: 'nope.default.sider', qtype: A, rcode: RCODE.NXDOMAIN, answers: [], authority: [SOA_DEFAULT] },
  { name: 'api.nons.sider', qtype: A, rcode: RCODE.NXDOMAIN, answers: [], authority: [SOA_DEFAULT] },
  { name: 'a.b.c.default.sider', qtype: A, rcode: RCODE.NXDOMAIN, answers: [], authority: [SOA_DEFAULT] },
  { name: 'x._api._tcp.default.sider', qtype: SRV, rcode: RCODE.NXDOMAIN, answers: [] },
  { name: 'bad_label.default.sider', qtype: A, rcode: RCODE.NXDOMAIN, answers: [] },
  { name: 'api.Bad_NS.sider', qtype: A, rcode: RCODE.NXDOMAIN, answers: [] },
  // Instances without an address use their node's published address; unknown nodes are left out.
  { name: 'noaddr.default.sider', qtype: A, rcode: RCODE.NOERROR, answers: ['noaddr.default.sider A 10.0.0.1'] },
  // ...or the address their registration gave their node; their own address comes first.
  { name: 'agentaddr.default.sider', qtype: A, rcode: RCODE.NOERROR, answers: ['agentaddr.default.sider A 10.0.4.4', 'agentaddr.default.sider A 10.0.4.5'] },
  // The same address twice is one record (RFC 2181 §5).
  { name: 'dup.default.sider', qtype: A, rcode: RCODE.NOERROR, answers: ['dup.default.sider A 10.0.3.1'] },
  { name: 'dup.default.sider', qtype: SRV, rcode: RCODE.NOERROR, answers: ['dup.default.sider SRV 1 1 80 0a000301.addr.sider'] },
  // Other namespaces.
  { name: 'api.prod.sider', qtype: A, rcode: RCODE.NOERROR, answers: ['api.prod.sider A 10.9.9.9'] },
  // Empty non-terminals: NODATA while the namespace has services (RFC 8020), NXDOMAIN otherwise.
  { name: 'default.sider', qtype: A, rcode: RCODE.NOERROR, answers: [], authority: [SOA_DEFAULT] },
  { name: '_tcp.default.sider', qtype: SRV, rcode: RCODE.NOERROR, answers: [], authority: [SOA_DEFAULT] },
  { name: 'addr.sider', qtype: A, rcode: RCODE.NOERROR, answers: [] },
  { name: 'empty.sider', qtype: A, rcode: RCODE.NXDOMAIN, answers: [], authority: [SOA_DEFAULT] },
  // <hex>.addr names (SRV targets).
  { name: '0a000001.addr.sider', qtype: A, rcode: RCODE.NOERROR, answers: ['0a000001.addr.sider A 10.0.0.1'] },
  { name: '0A000001.ADDR.sider', qtype: A, rcode: RCODE.NOERROR, answers: ['0a000001.addr.sider A 10.0.0.1'] },
  { name: '0a000001.addr.sider', qtype: AAAA, rcode: RCODE.NOERROR, answers: [], authority: [SOA_DEFAULT] },
  { name: '20010db8000000000000000000000005.addr.sider', qtype: AAAA, rcode: RCODE.NOERROR, answers: ['20010db8000000000000000000000005.addr.sider AAAA 2001:db8:0:0:0:0:0:5'] },
  { name: '0a00001.addr.sider', qtype: A, rcode: RCODE.NXDOMAIN, answers: [] },
  { name: 'zz000001.addr.sider', qtype: A, rcode: RCODE.NXDOMAIN, answers: [] },
  { name: 'x.0a000001.addr.sider', qtype: A, rcode: RCODE.NXDOMAIN, answers: [] },
  // Zone apex.
  { name: 'sider', qtype: SOA, rcode: RCODE.NOERROR, answers: [SOA_DEFAULT] },
  { name: 'SIDER', qtype: NS, rcode: RCODE.NOERROR, answers: ['sider NS ns.sider'] },
  { name: 'sider', qtype: ANY, rcode: RCODE.NOERROR, answers: [SOA_DEFAULT, 'sider NS ns.sider'] },
  { name: 'sider', qtype: A, rcode: RCODE.NOERROR, answers: [], authority: [SOA_DEFAULT] },
  { name: 'ns.sider', qtype: A, rcode: RCODE.NOERROR, answers: [] },
  // Zone transfers are not implemented.
  { name: 'sider', qtype: AXFR, rcode: RCODE.NOTIMP, answers: [] },
  { name: 'sider', qtype: IXFR, rcode: RCODE.NOTIMP, answers: [] },
  // Outside the zone: REFUSED, not authoritative, no SOA.
  { name: 'example.com', qtype: A, rcode: RCODE.REFUSED, answers: [], authority: [], aa: false },
  { name: 'xsider', qtype: A, rcode: RCODE.REFUSED, answers: [], aa: false },
  { name: 'sider.com', qtype: A, rcode: RCODE.REFUSED, answers: [], aa: false },
  { name: '', qtype: NS, rcode: RCODE.REFUSED, answers: [], aa: false },
  { name: 'api.service.consul', qtype: A, rcode: RCODE.REFUSED, answers: [], aa: false },
];

t.test('name and type → rcode and records', async (t) => {
  const r = new DnsResolver((await fixture()).reader, { nodeName: 'node-1' });
  for (const row of rows) {
    const label = `${row.name || '.'} ${row.qtype}`;
    const res = r.resolve(row.name, row.qtype);
    t.equal(res.rcode, row.rcode, `${label}: rcode`);
    if (row.answers) t.same(sorted(res.answers), [...row.answers].sort(), `${label}: answers`);
    if (row.authority) t.same(sorted(res.authority), row.authority, `${label}: authority`);
    if (row.additional) t.same(sorted(res.additional), [...row.additional].sort(), `${label}: additional`);
    if (row.mode) t.equal(res.answerMode, row.mode, `${label}: answer mode`);
    t.equal(res.authoritative, row.aa ?? true, `${label}: AA`);
    // A negative answer carries the SOA; a positive one does not.
    if (row.rcode === RCODE.NXDOMAIN || (row.rcode === RCODE.NOERROR && res.answers.length === 0)) {
      t.equal(res.authority.length, 1, `${label}: SOA in authority`);
    }
  }
});

t.test('only-passing leaves warning instances out, and a service left with none is NXDOMAIN', async (t) => {
  const reg = await fixture();
  await register(reg, 'warn', 'w1', { address: '10.0.5.1', status: 'warning' });
  const r = new DnsResolver(reg.reader, { onlyPassing: true });
  t.same(sorted(r.resolve('api.default.sider', A).answers), ['api.default.sider A 10.0.0.1']);
  t.equal(r.resolve('warn.default.sider', A).rcode, RCODE.NXDOMAIN);
  t.equal(new DnsResolver(reg.reader).resolve('warn.default.sider', A).rcode, RCODE.NOERROR);
});

t.test('weights come from Weights.Passing or Weights.Warning by the instance health, clamped to 16 bits', async (t) => {
  const reg = new LocalRegistry();
  await register(reg, 's', 'p', { address: '10.0.0.1', port: 1, weights: { Passing: 7, Warning: 2 } });
  await register(reg, 's', 'w', { address: '10.0.0.2', port: 2, status: 'warning', weights: { Passing: 7, Warning: 2 } });
  await register(reg, 's', 'big', { address: '10.0.0.3', port: 3, weights: { Passing: 100_000, Warning: 1 } });
  const res = new DnsResolver(reg.reader).resolve('s.default.sider', SRV);
  t.same(
    res.answers.map((a) => (a.type === 'SRV' ? [a.port, a.weight, a.priority] : [])).sort(),
    [
      [1, 7, 1],
      [2, 2, 1],
      [3, 65535, 1],
    ],
  );
});

t.test('TTL option sets every record TTL and the SOA minimum (negative-caching TTL)', async (t) => {
  const r = new DnsResolver((await fixture()).reader, { ttl: 30, serial: 1234 });
  const pos = r.resolve('api.default.sider', SRV);
  t.ok([...pos.answers, ...pos.additional].every((a) => a.ttl === 30));
  const neg = r.resolve('nope.default.sider', A);
  const soa = neg.authority[0]!;
  t.equal(soa.ttl, 30);
  t.match(soa, { type: 'SOA', minimum: 30, serial: 1234 });
});

t.test('a configured zone replaces sider, and ns.<zone> answers with the configured addresses', async (t) => {
  const r = new DnsResolver((await fixture()).reader, { zone: 'Disco.Example.', nsAddresses: ['127.0.0.1', '::1', 'not-an-ip'] });
  t.equal(r.zone, 'disco.example');
  t.same(sorted(r.resolve('api.default.disco.example', A).answers), ['api.default.disco.example A 10.0.0.1', 'api.default.disco.example A 10.0.0.2']);
  t.equal(r.resolve('api.default.sider', A).rcode, RCODE.REFUSED);
  t.same(sorted(r.resolve('ns.disco.example', A).answers), ['ns.disco.example A 127.0.0.1']);
  t.same(sorted(r.resolve('ns.disco.example', AAAA).answers), ['ns.disco.example AAAA ::1']);
  const ns = r.resolve('disco.example', NS);
  t.same(sorted(ns.answers), ['disco.example NS ns.disco.example']);
  t.same(sorted(ns.additional), ['ns.disco.example A 127.0.0.1', 'ns.disco.example AAAA ::1']);
  t.same(sorted(r.resolve('api.default.disco.example', SRV).answers), [
    'api.default.disco.example SRV 1 10 80 0a000001.addr.disco.example',
    'api.default.disco.example SRV 1 10 85 20010db8000000000000000000000005.addr.disco.example',
    'api.default.disco.example SRV 1 3 81 0a000002.addr.disco.example',
  ]);
});

t.test("Consul's names for the default namespace, when enabled", async (t) => {
  const r = new DnsResolver((await fixture()).reader, { consulDomain: 'consul' });
  t.same(sorted(r.resolve('api.service.consul', A).answers), ['api.service.consul A 10.0.0.1', 'api.service.consul A 10.0.0.2']);
  t.same(sorted(r.resolve('V1.api.service.CONSUL', A).answers), ['v1.api.service.consul A 10.0.0.1']);
  t.same(sorted(r.resolve('_api._v2.service.consul', SRV).answers), ['_api._v2.service.consul SRV 1 3 81 0a000002.addr.consul']);
  t.same(sorted(r.resolve('0a000002.addr.consul', A).answers), ['0a000002.addr.consul A 10.0.0.2']);
  t.equal(r.resolve('api.service.consul', A).zone, 'consul');
  t.equal(r.resolve('nope.service.consul', A).rcode, RCODE.NXDOMAIN);
  t.same(sorted(r.resolve('nope.service.consul', A).authority), ['consul SOA ns.consul hostmaster.consul 1 0']);
  t.equal(r.resolve('api.node.consul', A).rcode, RCODE.NXDOMAIN, 'only the service form');
  t.equal(r.resolve('service.consul', A).rcode, RCODE.NOERROR, 'empty non-terminal');
  t.equal(r.resolve('consul', SOA).answers.length, 1);
  t.equal(r.resolve('api.prod.consul', A).rcode, RCODE.NXDOMAIN, 'namespaces other than default are not in the Consul form');
  // The main zone is unaffected.
  t.equal(r.resolve('api.default.sider', A).answers.length, 2);
});

t.test('bad options are refused with the field named', async (t) => {
  const reg = new LocalRegistry();
  t.throws(() => new DnsResolver(reg.reader, { zone: 'bad zone' }), { code: 'SIDER_CONFIG', message: /zone/ });
  t.throws(() => new DnsResolver(reg.reader, { zone: '' }), { code: 'SIDER_CONFIG', message: /zone/ });
  t.throws(() => new DnsResolver(reg.reader, { zone: 'a..b' }), { code: 'SIDER_CONFIG' });
  t.throws(() => new DnsResolver(reg.reader, { consulDomain: 'sider' }), { code: 'SIDER_CONFIG', message: /consulDomain/ });
  t.throws(() => new DnsResolver(reg.reader, { consulDomain: 'x.sider' }), { code: 'SIDER_CONFIG', message: /consulDomain/ });
  t.throws(() => new DnsResolver(reg.reader, { zone: 'a.consul', consulDomain: 'consul' }), { code: 'SIDER_CONFIG', message: /consulDomain/ });
  t.throws(() => new DnsResolver(reg.reader, { ttl: -1 }), { code: 'SIDER_CONFIG', message: /ttl/ });
  t.throws(() => new DnsResolver(reg.reader, { ttl: 1.5 }), { code: 'SIDER_CONFIG', message: /ttl/ });
  t.throws(() => new DnsResolver(reg.reader, { serial: -1 }), { code: 'SIDER_CONFIG', message: /serial/ });
});

t.test('an answer stays current until its service changes (health included), then is recomputed', async (t) => {
  const reg = await fixture();
  const r = new DnsResolver(reg.reader);
  const before = r.resolve('api.default.sider', A);
  const other = r.resolve('web.default.sider', A);
  const ent = r.resolve('default.sider', A);
  const nx = r.resolve('new.default.sider', A);
  t.ok(r.isCurrent(before) && r.isCurrent(other) && r.isCurrent(ent) && r.isCurrent(nx));
  // a1 turns critical: only api's answer is stale.
  await register(reg, 'api', 'a1', { address: '10.0.0.1', port: 80, tags: ['v1', 'Primary'], status: 'critical', weights: { Passing: 10, Warning: 3 } });
  t.notOk(r.isCurrent(before), 'api changed');
  t.ok(r.isCurrent(other), 'web did not');
  t.ok(r.isCurrent(nx), 'an unrelated unknown name did not');
  t.same(sorted(r.resolve('api.default.sider', A).answers), ['api.default.sider A 10.0.0.2']);
  // A new service: its NXDOMAIN and the namespace's ENT answers go stale.
  await register(reg, 'new', 'n1', { address: '10.0.7.1' });
  t.notOk(r.isCurrent(nx), 'the new service');
  t.notOk(r.isCurrent(ent), 'the namespace gained a service');
  t.equal(r.resolve('new.default.sider', A).rcode, RCODE.NOERROR);
  // Re-registering identical content moves no index: the answer stays current.
  const again = r.resolve('new.default.sider', A);
  await register(reg, 'new', 'n1', { address: '10.0.7.1' });
  t.ok(r.isCurrent(again));
});

t.test("an answer using a node's address goes stale when that node's server address changes", async (t) => {
  const reg = await fixture();
  const r = new DnsResolver(reg.reader, { nodeName: 'node-1' });
  const res = r.resolve('noaddr.default.sider', A);
  t.same(res.nodeAddresses.sort(), [
    ['agent-x', ''],
    ['node-1', '10.0.0.1'],
  ]);
  t.ok(r.isCurrent(res));
  await reg.write({ type: 'server', server: { ID: 'node-1', HTTPAddr: '10.0.0.77:8500', RaftAddr: '10.0.0.77:8501' }, now: 1 });
  t.notOk(r.isCurrent(res));
  t.same(sorted(r.resolve('noaddr.default.sider', A).answers), ['noaddr.default.sider A 10.0.0.77']);
  // The agent's node appears with a wildcard address: still no usable address.
  await reg.write({ type: 'server', server: { ID: 'agent-x', HTTPAddr: '0.0.0.0:8500', RaftAddr: '10.0.0.78:8501' }, now: 1 });
  t.equal(r.nodeAddress('agent-x'), '');
});

const labelArb = fc.oneof(
  fc.constantFrom('api', 'default', 'sider', 'addr', 'ns', '_tcp', '_api', 'v1', 'consul', 'service', '0a000001', 'web', 'prod', 'Api', 'SIDER'),
  fc.stringMatching(/^[a-zA-Z0-9_-]{1,12}$/),
  fc.string({ minLength: 1, maxLength: 8 }).filter((s) => !s.includes('.')),
);
const nameArb = fc.array(labelArb, { maxLength: 6 }).map((ls) => ls.join('.'));
const qtypeArb = fc.oneof(fc.constantFrom(A, AAAA, SRV, ANY, TXT, SOA, NS, CNAME, AXFR), fc.integer({ min: 0, max: 65535 }));

t.test('properties: never throws, answers only with known rcodes, and case does not matter', async (t) => {
  const reg = await fixture();
  const r = new DnsResolver(reg.reader, { consulDomain: 'consul' });
  const strip = (res: Resolution): unknown => ({ ...res, nodeAddresses: [] });
  fc.assert(
    fc.property(nameArb, qtypeArb, fc.array(fc.boolean(), { maxLength: 64 }), (name, qtype, flips) => {
      const res = r.resolve(name, qtype);
      if (![RCODE.NOERROR, RCODE.NXDOMAIN, RCODE.REFUSED, RCODE.NOTIMP].includes(res.rcode as 0)) return false;
      // Every answer is owned by the name asked (lower case).
      if (!res.answers.every((a) => a.name === name.toLowerCase() || a.type === 'SOA' || a.type === 'NS')) return false;
      const flipped = [...name].map((c, i) => (flips[i % Math.max(1, flips.length)] ? c.toUpperCase() : c.toLowerCase())).join('');
      const again = r.resolve(flipped, qtype);
      return JSON.stringify(strip(again)) === JSON.stringify(strip(res));
    }),
    { numRuns: 3000 },
  );
  t.pass('properties held');
});
