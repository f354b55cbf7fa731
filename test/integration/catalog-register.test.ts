// PUT /v1/catalog/register on a real `sider server`: the `consul` npm client registers an instance
// under its own node, whose name and address Consul's read paths show and which survives a restart;
// bad bodies are 400s naming the field that change nothing.

import t from 'tap';
import Consul from 'consul';
import { waitFor } from '../support/ports.ts';
import { SiderCluster } from '../support/server-process.ts';

interface HealthEntry {
  Node: { ID: string; Node: string; Address: string };
  Service: { ID: string; Port: number; Tags: string[] };
  Checks: { CheckID: string; Node: string; Status: string; Type: string; ServiceID: string }[];
}

interface CatalogEntry {
  ID: string;
  Node: string;
  Address: string;
  ServiceID: string;
  ServicePort: number;
}

t.test('catalog register names the node; Consul clients read it back', async (t) => {
  const cluster = (await SiderCluster.start({ ids: ['c1'] })).teardownWith(t);
  const addr = cluster.addr('c1');
  const http = cluster.http;
  const [host, port] = addr.split(':') as [string, string];
  const consul = new Consul({ host, port: Number(port) });
  t.teardown(() => consul.destroy());

  const health = async (): Promise<{ index: string; entries: HealthEntry[] }> => {
    const r = await http.call(addr, 'GET', '/v1/health/service/cache');
    t.equal(r.status, 200, r.text);
    return { index: r.headers['x-consul-index']!, entries: JSON.parse(r.text) as HealthEntry[] };
  };

  // The consul client's shape: lower-case keys, a catalog check with a TCP definition (the server's
  // own HTTP port, so the leader's probe passes).
  await consul.catalog.register({
    node: 'edge-7',
    address: '127.0.0.7',
    service: { id: 'cache-1', service: 'cache', port: 6379, tags: ['v1'] },
    check: { checkid: 'cache-1-tcp', name: 'cache port', node: 'edge-7', serviceid: 'cache-1', definition: { tcp: addr, intervalduration: '1s' } },
  });
  const passing = (await waitFor(
    'cache-1-tcp to pass',
    async () => {
      const { entries } = await health();
      return entries[0]?.Checks[0]?.Status === 'passing' ? entries[0] : undefined;
    },
    20_000,
    100,
  )) as HealthEntry;
  t.same([passing.Node.Node, passing.Node.Address], ['edge-7', '127.0.0.7'], 'health: Node.Node and Node.Address');
  t.match(passing.Checks[0], { CheckID: 'cache-1-tcp', Node: 'edge-7', ServiceID: 'cache-1', Type: 'tcp' });
  const viaClient = (await consul.health.service('cache')) as HealthEntry[];
  t.equal(viaClient[0]?.Node.Node, 'edge-7', 'the consul client reads the node back');
  const nodes = (await consul.catalog.service.nodes('cache')) as CatalogEntry[];
  t.same(nodes.map((n) => [n.Node, n.Address, n.ServiceID, n.ServicePort]), [['edge-7', '127.0.0.7', 'cache-1', 6379]], 'catalog: Node and Address');
  t.equal(nodes[0]!.ID, passing.Node.ID, 'one node ID on both paths');

  const before = await health();
  const raw = await http.call(addr, 'PUT', '/v1/catalog/register', {
    body: { Node: 'edge-7', Address: '127.0.0.7', Service: { Service: 'cache', ID: 'cache-1', Port: 6379, Tags: ['v1'] } },
  });
  t.same([raw.status, raw.text], [200, 'true'], "Consul's answer");
  t.equal((await health()).index, before.index, 'the same registration again (checks left out survive) moved no index');

  const bad: [string, unknown, RegExp][] = [
    ['bad node name', { Node: 'edge 7', Service: { Service: 'cache', ID: 'cache-1' } }, /^Node: invalid node name "edge 7"/],
    ['no node', { Address: '127.0.0.7', Service: { Service: 'cache', ID: 'cache-1' } }, /^Node: required/],
    ['unspecified address', { Node: 'edge-8', Address: '::', Service: { Service: 'cache', ID: 'cache-1' } }, /^Address: /],
    ['another datacenter', { Node: 'edge-8', Datacenter: 'dc9', Service: { Service: 'cache', ID: 'cache-1' } }, /^Datacenter: "dc9" is not this cluster's \("dc1"\)/],
    ['node-level check', { Node: 'edge-8', Service: { Service: 'cache', ID: 'cache-1' }, Check: { CheckID: 'n', Definition: { TCP: addr, Interval: '1s' } } }, /^Check\.ServiceID: required/],
    ['bad check interval', { Node: 'edge-8', Service: { Service: 'cache', ID: 'cache-1' }, Checks: [{ ServiceID: 'cache-1', Definition: { TCP: addr, Interval: 'often' } }] }, /^Checks\[0\]\.Definition\.Interval: /],
    ['not JSON object', ['edge-8'], /^request body must be a JSON object/],
  ];
  for (const [what, body, message] of bad) {
    const r = await http.call(addr, 'PUT', '/v1/catalog/register', { body });
    t.equal(r.status, 400, `${what}: 400`);
    t.match(r.text, message, `${what}: names the field`);
  }
  const after = await health();
  t.equal(after.index, before.index, 'no refused body moved the index');
  t.same(after.entries.map((e) => [e.Node.Node, e.Node.Address, e.Service.ID]), [['edge-7', '127.0.0.7', 'cache-1']], 'nothing changed');

  // The node survives a restart (replayed from the log on disk).
  await cluster.kill9('c1');
  await cluster.startServer('c1');
  const back = (await waitFor('cache-1 after the restart', async () => (await health()).entries[0], 20_000, 100)) as HealthEntry;
  t.same([back.Node.Node, back.Node.Address], ['edge-7', '127.0.0.7'], 'after a restart');

  t.equal((await http.call(addr, 'PUT', '/v1/agent/service/deregister/cache-1')).status, 200);
  t.same((await health()).entries, []);
});

t.test('catalog deregister: a service, a check, or every instance of a node; bad bodies change nothing', async (t) => {
  const cluster = (await SiderCluster.start({ ids: ['d1'] })).teardownWith(t);
  const addr = cluster.addr('d1');
  const http = cluster.http;
  const [host, port] = addr.split(':') as [string, string];
  const consul = new Consul({ host, port: Number(port) });
  t.teardown(() => consul.destroy());
  const reg = async (node: string, id: string, checks: string[] = []): Promise<void> => {
    const r = await http.call(addr, 'PUT', '/v1/catalog/register', {
      body: { Node: node, Service: { Service: 'web', ID: id, Port: 80 }, Checks: checks.map((c) => ({ CheckID: c, ServiceID: id, Status: 'passing', Definition: { TTL: '10m' } })) },
    });
    t.equal(r.status, 200, r.text);
  };
  const ids = async (): Promise<string[]> => (JSON.parse((await http.call(addr, 'GET', '/v1/catalog/service/web')).text) as CatalogEntry[]).map((e) => `${e.Node}/${e.ServiceID}`).sort();
  const checks = async (): Promise<string[]> => (JSON.parse((await http.call(addr, 'GET', '/v1/health/checks/web')).text) as { CheckID: string }[]).map((c) => c.CheckID).sort();
  await reg('host-a', 'web-1', ['web-1-ttl', 'web-1-extra']);
  await reg('host-a', 'web-2');
  await reg('host-b', 'web-3');
  t.same(await ids(), ['host-a/web-1', 'host-a/web-2', 'host-b/web-3']);

  // Bad bodies: 400 naming the field, nothing removed, no index move.
  const before = (await http.call(addr, 'GET', '/v1/catalog/service/web')).headers['x-consul-index'];
  for (const [body, field] of [
    [{}, /^Node: required/],
    [{ Node: 'bad name!' }, /^Node: invalid node name/],
    [{ Node: 'host-a', ServiceID: 'web-1', CheckID: 'web-1-ttl' }, /^CheckID: give ServiceID or CheckID, not both/],
    [{ Node: 'host-a', ServiceID: 5 }, /^ServiceID: must be a string/],
    [{ Node: 'host-a', Datacenter: 'elsewhere' }, /^Datacenter: "elsewhere" is not this cluster's/],
    [[], /request body must be a JSON object/],
  ] as const) {
    const r = await http.call(addr, 'PUT', '/v1/catalog/deregister', { body });
    t.equal(r.status, 400, `${JSON.stringify(body)} → 400`);
    t.match(r.text, field);
  }
  t.equal((await http.call(addr, 'GET', '/v1/catalog/service/web')).headers['x-consul-index'], before, 'no index moved');
  t.same(await ids(), ['host-a/web-1', 'host-a/web-2', 'host-b/web-3']);

  // A check of the node (another node's name removes nothing).
  t.equal((await http.call(addr, 'PUT', '/v1/catalog/deregister', { body: { Node: 'host-b', CheckID: 'web-1-extra' } })).text, 'true');
  t.same(await checks(), ['web-1-extra', 'web-1-ttl']);
  t.equal((await http.call(addr, 'PUT', '/v1/catalog/deregister', { body: { node: 'host-a', checkid: 'web-1-extra' } })).text, 'true', 'any key case');
  t.same(await checks(), ['web-1-ttl']);
  // A service of the node, through the consul client; a service of another node is left alone.
  await consul.catalog.deregister({ node: 'host-b', serviceid: 'web-1' });
  t.same(await ids(), ['host-a/web-1', 'host-a/web-2', 'host-b/web-3']);
  await consul.catalog.deregister({ node: 'host-a', serviceid: 'web-1' });
  t.same(await ids(), ['host-a/web-2', 'host-b/web-3']);
  // Every instance of a node.
  await consul.catalog.deregister('host-a');
  t.same(await ids(), ['host-b/web-3']);
  // Nothing left to remove: still true, nothing changes.
  const r = await http.call(addr, 'PUT', '/v1/catalog/deregister', { body: { Node: 'host-a', ServiceID: 'web-9' } });
  t.equal(r.status, 200);
  t.equal(r.text, 'true');
  t.same(await ids(), ['host-b/web-3']);
});
