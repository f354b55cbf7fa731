// The DNS flags of `sider server`: defaults, disabling, normalization and errors naming the flag.

import t from 'tap';
import { loadServerConfig } from '../../src/config.ts';

t.test('DNS is on 127.0.0.1:8600 for zone sider by default, TTL 0, warning served, no Consul names', async (t) => {
  const c = loadServerConfig(['-raft-id', 'n1'], {});
  t.equal(c.dns, '127.0.0.1:8600');
  t.equal(c.dnsZone, 'sider');
  t.equal(c.dnsTtl, 0);
  t.equal(c.dnsOnlyPassing, false);
  t.equal(c.dnsConsulDomain, '');
});

t.test("-dns off or '' disables DNS, from flags and the environment", async (t) => {
  t.equal(loadServerConfig(['-raft-id', 'n1', '-dns', 'off'], {}).dns, '');
  t.equal(loadServerConfig(['-raft-id', 'n1', '-dns', ''], {}).dns, '');
  t.equal(loadServerConfig(['-raft-id', 'n1'], { SIDER_DNS: 'off' }).dns, '');
  t.equal(loadServerConfig(['-raft-id', 'n1', '--dns=:53'], {}).dns, ':53');
});

t.test('the DNS options are read and normalized', async (t) => {
  const c = loadServerConfig(
    ['-raft-id', 'n1', '-dns', '127.0.0.1:5353', '-dns-zone', 'Disco.Example.', '-dns-ttl', '30', '-dns-only-passing', '-dns-consul-domain', 'CONSUL'],
    {},
  );
  t.equal(c.dns, '127.0.0.1:5353');
  t.equal(c.dnsZone, 'disco.example');
  t.equal(c.dnsTtl, 30);
  t.equal(c.dnsOnlyPassing, true);
  t.equal(c.dnsConsulDomain, 'consul');
  t.equal(loadServerConfig(['-raft-id', 'n1'], { SIDER_DNS_TTL: '5', SIDER_DNS_ONLY_PASSING: 'true' }).dnsTtl, 5);
});

t.test('bad DNS options are refused with the flag named', async (t) => {
  const bad: [string[], RegExp][] = [
    [['-dns', 'nonsense'], /-dns: expected host:port/],
    [['-dns', '127.0.0.1:70000'], /-dns: expected host:port/],
    [['-dns-zone', 'bad zone'], /-dns-zone/],
    [['-dns-zone', ''], /-dns-zone/],
    [['-dns-zone', 'a..b'], /-dns-zone/],
    [['-dns-ttl', '-1'], /-dns-ttl/],
    [['-dns-ttl', '86401'], /-dns-ttl/],
    [['-dns-ttl', 'soon'], /-dns-ttl/],
    [['-dns-consul-domain', 'sider'], /-dns-consul-domain/],
    [['-dns-consul-domain', 'x.sider'], /-dns-consul-domain/],
    [['-dns-consul-domain', 'under_score'], /-dns-consul-domain/],
  ];
  for (const [argv, re] of bad) {
    t.throws(() => loadServerConfig(['-raft-id', 'n1', ...argv], {}), { code: 'SIDER_CONFIG', message: re }, argv.join(' '));
  }
});
