// The Consul-compatible HTTP API on a real loopback socket over an in-memory registry: every
// endpoint and its JSON field types, headers, namespaces, bad input, blocking queries.

import t from 'tap';
import { request } from 'undici';
import type { Server } from 'node:http';
import { SiderError } from '../../raft/errors.ts';
import { createHttpApp } from '../../http/app.ts';
import type { HttpAppOptions, ListenOptions } from '../../http/app.ts';
import { BlockingQueries } from '../../http/blocking.ts';
import { LocalRegistry, listenForTest } from '../support/local-registry.ts';
import type { LocalRegistryOptions } from '../support/local-registry.ts';

interface Reply {
  status: number;
  headers: Record<string, string>;
  text: string;
  json: () => unknown;
}

interface Harness {
  reg: LocalRegistry;
  blocking: BlockingQueries;
  server: Server;
  base: string;
  logs: { level: string; msg: string; fields: Record<string, unknown> | undefined }[];
  req(method: string, path: string, opts?: { body?: unknown; raw?: string | Buffer; headers?: Record<string, string>; signal?: AbortSignal }): Promise<Reply>;
  register(body: unknown, query?: string, headers?: Record<string, string>): Promise<Reply>;
}

async function start(
  tt: { teardown: (fn: () => unknown) => void },
  opts: { app?: Partial<HttpAppOptions>; listen?: ListenOptions; registry?: LocalRegistryOptions; maxBlocking?: number } = {},
): Promise<Harness> {
  const reg = new LocalRegistry(opts.registry);
  const blocking = new BlockingQueries({ max: opts.maxBlocking ?? 1000 });
  const logs: Harness['logs'] = [];
  const app = createHttpApp(reg, { blocking, log: (level, msg, fields) => logs.push({ level, msg, fields }), ...opts.app });
  const { server, port } = await listenForTest(tt, app, opts.listen);
  const base = `http://127.0.0.1:${port}`;
  const req: Harness['req'] = async (method, path, o = {}) => {
    const headers: Record<string, string> = { ...o.headers };
    let body: string | Buffer | undefined = o.raw;
    if (o.body !== undefined) {
      body = JSON.stringify(o.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await request(`${base}${path}`, { method: method as 'GET', headers, body, ...(o.signal ? { signal: o.signal } : {}) });
    const text = await res.body.text();
    const flat: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.headers)) flat[k] = Array.isArray(v) ? v.join(', ') : String(v);
    return { status: res.statusCode, headers: flat, text, json: () => JSON.parse(text) as unknown };
  };
  return {
    reg,
    blocking,
    server,
    base,
    logs,
    req,
    register: (body, query = '', headers = {}) => req('PUT', `/v1/agent/service/register${query}`, { body, headers }),
  };
}

async function until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

type Kind = 'string' | 'number' | 'boolean' | 'array' | 'object' | 'stringArray' | 'stringMap';

/** Asserts the JSON types Consul's Go client decodes into (string, int, bool, []string, map…). */
function types(tt: { equal: (a: unknown, b: unknown, m: string) => unknown }, obj: unknown, spec: Record<string, Kind>, where: string): void {
  const o = obj as Record<string, unknown>;
  for (const [k, kind] of Object.entries(spec)) {
    const v = o[k];
    let actual: string = v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
    if (kind === 'number' && typeof v === 'number' && !Number.isInteger(v)) actual = 'non-integer';
    if (kind === 'stringArray' && Array.isArray(v)) actual = v.every((x) => typeof x === 'string') ? 'stringArray' : 'array';
    if (kind === 'stringMap' && actual === 'object') actual = Object.values(v as object).every((x) => typeof x === 'string') ? 'stringMap' : 'object';
    tt.equal(actual, kind, `${where}.${k} is ${kind}`);
  }
}

const nodeSpec: Record<string, Kind> = {
  ID: 'string',
  Node: 'string',
  Address: 'string',
  Datacenter: 'string',
  TaggedAddresses: 'stringMap',
  Meta: 'stringMap',
  CreateIndex: 'number',
  ModifyIndex: 'number',
};
const serviceSpec: Record<string, Kind> = {
  ID: 'string',
  Service: 'string',
  Tags: 'stringArray',
  Address: 'string',
  TaggedAddresses: 'object',
  Meta: 'stringMap',
  Port: 'number',
  Weights: 'object',
  EnableTagOverride: 'boolean',
  Namespace: 'string',
  CreateIndex: 'number',
  ModifyIndex: 'number',
};
const checkSpec: Record<string, Kind> = {
  Node: 'string',
  CheckID: 'string',
  Name: 'string',
  Status: 'string',
  Notes: 'string',
  Output: 'string',
  ServiceID: 'string',
  ServiceName: 'string',
  ServiceTags: 'stringArray',
  Type: 'string',
  Interval: 'string',
  Timeout: 'string',
  ExposedPort: 'number',
  Definition: 'object',
  CreateIndex: 'number',
  ModifyIndex: 'number',
};

const webBody = {
  ID: 'web-1',
  Name: 'web',
  Tags: ['primary', 'v1'],
  Address: '10.1.0.5',
  Port: 8080,
  Meta: { version: '1.0' },
  TaggedAddresses: { lan: { Address: '10.1.0.5', Port: 8080 }, wan: { Address: '198.18.0.1', Port: 80 } },
  Weights: { Passing: 10, Warning: 1 },
  Checks: [
    { TTL: '30s', Status: 'passing' },
    { HTTP: 'http://10.1.0.5:8080/health', Interval: '120000ms', Timeout: '2s', Status: 'passing' },
  ],
};

function headerIndex(r: Reply): number {
  return Number(r.headers['x-consul-index']);
}

t.test('register, then every read shows the instance in Consul\'s shapes and types', async (t) => {
  const h = await start(t);
  const reg = await h.register(webBody);
  t.equal(reg.status, 200);
  t.equal(reg.text, '');
  await h.register({ Name: 'db', Port: 5432, Check: { TCP: 'db.internal:5432', Interval: '10s' } });

  const w = h.reg.writes[0]!;
  t.equal(w.cmd.type, 'register');
  if (w.cmd.type === 'register') {
    t.equal(w.cmd.ns, 'default');
    t.equal(w.cmd.node, 'node-1');
    t.equal(w.cmd.replaceExistingChecks, false);
    t.equal(typeof w.cmd.now, 'number');
    t.same(
      w.cmd.checks.map((c) => c.CheckID),
      ['service:web-1:1', 'service:web-1:2'],
    );
  }
  t.equal(w.rid, '', 'no request ID made up when the client gives none');

  // /v1/health/service/:name
  const hs = await h.req('GET', '/v1/health/service/web');
  t.equal(hs.status, 200);
  t.match(hs.headers['content-type'], /^application\/json/);
  const entries = hs.json() as Record<string, unknown>[];
  t.equal(entries.length, 1);
  const e = entries[0]!;
  t.same(Object.keys(e), ['Node', 'Service', 'Checks']);
  types(t, e.Node, nodeSpec, 'Node');
  types(t, e.Service, serviceSpec, 'Service');
  const node = e.Node as Record<string, unknown>;
  t.equal(node.Node, 'node-1');
  t.equal(node.Address, '10.1.0.5', 'Node.Address is the service address when it has one');
  t.equal(node.Datacenter, 'dc1');
  t.match(node.ID, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  t.same(node.TaggedAddresses, { lan: '10.1.0.5', wan: '10.1.0.5', lan_ipv4: '10.1.0.5', wan_ipv4: '10.1.0.5' });
  const svc = e.Service as Record<string, unknown>;
  t.same(svc.Tags, ['primary', 'v1']);
  t.same(svc.Weights, { Passing: 10, Warning: 1 });
  t.same(svc.TaggedAddresses, { lan: { Address: '10.1.0.5', Port: 8080 }, wan: { Address: '198.18.0.1', Port: 80 } });
  t.same(svc.Meta, { version: '1.0' });
  t.equal(svc.Port, 8080);
  const checks = e.Checks as Record<string, unknown>[];
  t.equal(checks.length, 2);
  for (const c of checks) types(t, c, checkSpec, `Checks[${String(c.CheckID)}]`);
  const http = checks.find((c) => c.Type === 'http')!;
  t.equal(http.Interval, '2m0s', 'durations in Go canonical form');
  t.equal(http.Timeout, '2s');
  t.same(http.Definition, { HTTP: 'http://10.1.0.5:8080/health', Interval: '2m0s', Timeout: '2s' });
  t.same(http.ServiceTags, ['primary', 'v1']);
  const ttl = checks.find((c) => c.Type === 'ttl')!;
  t.same(ttl.Definition, {}, 'a TTL check has an empty Definition');
  t.equal(ttl.Interval, '');
  t.equal(ttl.Status, 'passing');

  // /v1/catalog/service/:name
  const cs = await h.req('GET', '/v1/catalog/service/web');
  t.equal(cs.status, 200);
  const rows = cs.json() as Record<string, unknown>[];
  t.equal(rows.length, 1);
  types(
    t,
    rows[0],
    {
      ID: 'string',
      Node: 'string',
      Address: 'string',
      Datacenter: 'string',
      TaggedAddresses: 'stringMap',
      NodeMeta: 'stringMap',
      ServiceID: 'string',
      ServiceName: 'string',
      ServiceAddress: 'string',
      ServiceTags: 'stringArray',
      ServiceMeta: 'stringMap',
      ServicePort: 'number',
      ServiceWeights: 'object',
      ServiceEnableTagOverride: 'boolean',
      ServiceTaggedAddresses: 'object',
      CreateIndex: 'number',
      ModifyIndex: 'number',
    },
    'CatalogService',
  );
  t.match(rows[0], { ServiceID: 'web-1', ServiceName: 'web', ServiceAddress: '10.1.0.5', ServicePort: 8080, ServiceWeights: { Passing: 10, Warning: 1 } });

  // /v1/catalog/services
  const all = await h.req('GET', '/v1/catalog/services');
  t.same(all.json(), { db: [], web: ['primary', 'v1'] });

  // The db instance has no address: Node.Address falls back to its server's published address.
  const db = (await h.req('GET', '/v1/health/service/db')).json() as { Node: { Address: string }; Service: { Address: string }; Checks: { Status: string; Type: string; Definition: unknown }[] }[];
  t.equal(db[0]!.Service.Address, '');
  t.equal(db[0]!.Node.Address, '10.0.0.1');
  t.equal(db[0]!.Checks[0]!.Status, 'critical', 'a new check without Status starts critical');
  t.same(db[0]!.Checks[0]!.Definition, { TCP: 'db.internal:5432', Interval: '10s' });

  // /v1/health/checks/:service and /v1/health/state/:state
  const hc = await h.req('GET', '/v1/health/checks/web');
  t.equal((hc.json() as unknown[]).length, 2);
  for (const c of hc.json() as unknown[]) types(t, c, checkSpec, 'health/checks');
  const crit = (await h.req('GET', '/v1/health/state/critical')).json() as { ServiceName: string }[];
  t.same(
    crit.map((c) => c.ServiceName),
    ['db'],
  );
  t.equal(((await h.req('GET', '/v1/health/state/any')).json() as unknown[]).length, 3);
  t.equal(((await h.req('GET', '/v1/health/state/passing')).json() as unknown[]).length, 2);
  t.same((await h.req('GET', '/v1/health/state/warning')).json(), []);
  const badState = await h.req('GET', '/v1/health/state/sick');
  t.equal(badState.status, 400);
  t.match(badState.text, /state: must be any, passing, warning or critical/);

  // /v1/agent/services and /v1/agent/service/:id
  const as = (await h.req('GET', '/v1/agent/services')).json() as Record<string, Record<string, unknown>>;
  t.same(Object.keys(as), ['db', 'web-1']);
  types(
    t,
    as['web-1'],
    { ID: 'string', Service: 'string', Tags: 'stringArray', Meta: 'stringMap', Port: 'number', Address: 'string', Weights: 'object', EnableTagOverride: 'boolean', Datacenter: 'string' },
    'AgentService',
  );
  t.match(as['web-1'], { ID: 'web-1', Service: 'web', Port: 8080, Datacenter: 'dc1' });
  const one = await h.req('GET', '/v1/agent/service/web-1');
  t.equal(one.status, 200);
  t.match(one.json(), { ID: 'web-1', Service: 'web', Weights: { Passing: 10, Warning: 1 } });
  const none = await h.req('GET', '/v1/agent/service/nope');
  t.equal(none.status, 404);
  t.match(none.text, /unknown service ID "nope"/);
});

t.test('unknown services read as [] with 200 and an index of at least 1', async (t) => {
  const h = await start(t);
  for (const path of ['/v1/health/service/ghost', '/v1/catalog/service/ghost', '/v1/health/checks/ghost', '/v1/health/state/any']) {
    const r = await h.req('GET', path);
    t.equal(r.status, 200, path);
    t.equal(r.text, '[]', path);
    t.ok(headerIndex(r) >= 1, `${path} index ≥ 1`);
  }
  t.equal((await h.req('GET', '/v1/catalog/services')).text, '{}');
  t.equal((await h.req('GET', '/v1/agent/services')).text, '{}');
});

t.test('every read answers the Consul headers; consistency modes', async (t) => {
  const h = await start(t);
  await h.register({ Name: 'web' });
  h.reg.lastContactMs = 12.6;
  const paths = [
    '/v1/catalog/services',
    '/v1/catalog/service/web',
    '/v1/health/service/web',
    '/v1/health/checks/web',
    '/v1/health/state/any',
    '/v1/agent/services',
    '/v1/agent/service/web',
    '/v1/agent/self',
    '/v1/agent/members',
    '/v1/status/leader',
    '/v1/status/peers',
    '/v1/operator/raft/configuration',
  ];
  for (const path of paths) {
    const r = await h.req('GET', path);
    t.equal(r.status, 200, path);
    t.ok(headerIndex(r) >= 1, `${path}: X-Consul-Index ≥ 1`);
    t.equal(r.headers['x-index'], r.headers['x-consul-index'], `${path}: X-Index`);
    t.equal(r.headers['x-consul-knownleader'], 'true', `${path}: KnownLeader`);
    t.equal(r.headers['x-consul-lastcontact'], '13', `${path}: LastContact in whole ms`);
    t.ok(['leader', 'stale'].includes(r.headers['x-consul-effective-consistency'] ?? ''), `${path}: Effective-Consistency`);
  }

  h.reg.barriers.length = 0;
  const dflt = await h.req('GET', '/v1/health/service/web');
  t.equal(dflt.headers['x-consul-effective-consistency'], 'leader');
  const cons = await h.req('GET', '/v1/health/service/web?consistent');
  t.equal(cons.headers['x-consul-effective-consistency'], 'consistent');
  const stale = await h.req('GET', '/v1/health/service/web?stale');
  t.equal(stale.headers['x-consul-effective-consistency'], 'stale');
  t.same(h.reg.barriers, ['default', 'default', 'stale'], 'default and ?consistent wait for a ReadIndex barrier; ?stale does not');
  const both = await h.req('GET', '/v1/health/service/web?stale&consistent');
  t.equal(both.status, 400);
  t.match(both.text, /give \?stale or \?consistent, not both/);
  const badFlag = await h.req('GET', '/v1/health/service/web?stale=maybe');
  t.equal(badFlag.status, 400);

  h.reg.knownLeader = false;
  h.reg.lastContactMs = Number.POSITIVE_INFINITY;
  const noLeader = await h.req('GET', '/v1/catalog/services?stale');
  t.equal(noLeader.headers['x-consul-knownleader'], 'false');
  t.match(noLeader.headers['x-consul-lastcontact'], /^\d+$/, 'LastContact stays an integer');

  // A barrier failure is the service's error, with its status.
  h.reg.failNext = new SiderError('SIDER_NO_LEADER', 'no cluster leader is known; retry later');
  const failed = await h.req('GET', '/v1/health/service/web');
  t.equal(failed.status, 503);
  t.equal(failed.text, 'no cluster leader is known; retry later\n');
  t.match(failed.headers['content-type'], /^text\/plain/);
  t.notOk(failed.headers['x-consul-index'], 'no read headers on an error');
});

t.test('?passing, repeated ?tag (AND, any case), ?filter and ?pretty', async (t) => {
  const h = await start(t);
  await h.register({ Name: 'api', ID: 'a1', Tags: ['blue', 'v1'], Meta: { zone: 'eu' }, Port: 1, Check: { TTL: '10s', Status: 'passing' } });
  await h.register({ Name: 'api', ID: 'a2', Tags: ['Blue', 'v2'], Meta: { zone: 'us' }, Port: 2, Check: { TTL: '10s', Status: 'warning' } });
  await h.register({ Name: 'api', ID: 'a3', Tags: ['green'], Port: 3, Check: { TTL: '10s' } });
  const ids = async (q: string): Promise<string[]> => {
    const r = await h.req('GET', `/v1/health/service/api${q}`);
    t.equal(r.status, 200, q);
    return (r.json() as { Service: { ID: string } }[]).map((e) => e.Service.ID);
  };
  t.same(await ids(''), ['a1', 'a2', 'a3']);
  t.same(await ids('?passing'), ['a1'], 'passing only: warning and critical are left out');
  t.same(await ids('?passing=true'), ['a1']);
  t.same(await ids('?passing=false'), ['a1', 'a2', 'a3']);
  t.same(await ids('?tag=blue'), ['a1', 'a2'], 'tags match case-insensitively');
  t.same(await ids('?tag=blue&tag=v2'), ['a2'], 'repeated tags all must match');
  t.same(await ids('?tag=nope'), []);
  t.same(await ids(`?filter=${encodeURIComponent('Service.Meta.zone == "eu"')}`), ['a1']);
  t.same(await ids(`?filter=${encodeURIComponent('"green" in Service.Tags or Service.Port == 2')}`), ['a2', 'a3']);
  t.same(await ids(`?filter=${encodeURIComponent('Checks.Status == warning')}`), ['a2']);
  const bad = await h.req('GET', `/v1/health/service/api?filter=${encodeURIComponent('Service.Meta.zone = "eu"')}`);
  t.equal(bad.status, 400);
  t.match(bad.text, /^filter "Service\.Meta\.zone = \\"eu\\"": position 19: /);

  const cat = (await h.req('GET', '/v1/catalog/service/api?tag=v1')).json() as { ServiceID: string }[];
  t.same(
    cat.map((r) => r.ServiceID),
    ['a1'],
  );
  const catFilter = (await h.req('GET', `/v1/catalog/service/api?filter=${encodeURIComponent('ServicePort > 1')}`));
  t.equal(catFilter.status, 400);
  const agentFiltered = (await h.req('GET', `/v1/agent/services?filter=${encodeURIComponent('Port == 3')}`)).json();
  t.same(Object.keys(agentFiltered as object), ['a3']);

  const pretty = await h.req('GET', '/v1/catalog/services?pretty');
  t.equal(pretty.text, '{\n    "api": [\n        "Blue",\n        "blue",\n        "green",\n        "v1",\n        "v2"\n    ]\n}\n');
});

t.test('service names are case-insensitive; IDs are kept as given', async (t) => {
  const h = await start(t);
  t.equal((await h.register({ Name: 'Web-API', ID: 'Web-API-1' })).status, 200);
  const r = (await h.req('GET', '/v1/health/service/WEB-api')).json() as { Service: { Service: string; ID: string } }[];
  t.equal(r.length, 1);
  t.equal(r[0]!.Service.Service, 'web-api');
  t.equal(r[0]!.Service.ID, 'Web-API-1');
  const bad = await h.req('GET', '/v1/health/service/bad_name');
  t.equal(bad.status, 400);
  t.match(bad.text, /^service name: invalid service name "bad_name"/);
});

t.test('namespaces: ?ns, X-Sider-Namespace and body Namespace; isolated; validated', async (t) => {
  const h = await start(t);
  t.equal((await h.register({ Name: 'web', ID: 'q' }, '?ns=prod')).status, 200);
  t.equal((await h.register({ Name: 'web', ID: 'hdr' }, '', { 'X-Sider-Namespace': 'prod' })).status, 200);
  t.equal((await h.register({ Name: 'web', ID: 'body', Namespace: 'prod' })).status, 200);
  t.equal((await h.register({ Name: 'web', ID: 'agree', Namespace: 'prod' }, '?ns=prod')).status, 200);
  t.equal((await h.register({ Name: 'web', ID: 'plain' })).status, 200);
  const prod = (await h.req('GET', '/v1/health/service/web?ns=prod')).json() as { Service: { ID: string; Namespace: string } }[];
  t.same(
    prod.map((e) => e.Service.ID),
    ['agree', 'body', 'hdr', 'q'],
  );
  t.ok(prod.every((e) => e.Service.Namespace === 'prod'));
  const viaHeader = (await h.req('GET', '/v1/catalog/service/web', { headers: { 'X-Sider-Namespace': 'prod' } })).json() as unknown[];
  t.equal(viaHeader.length, 4);
  const dflt = (await h.req('GET', '/v1/health/service/web')).json() as { Service: { ID: string } }[];
  t.same(
    dflt.map((e) => e.Service.ID),
    ['plain'],
  );
  t.same((await h.req('GET', '/v1/catalog/services?ns=empty')).json(), {});

  const conflict = await h.register({ Name: 'web', Namespace: 'prod' }, '?ns=dev');
  t.equal(conflict.status, 400);
  t.match(conflict.text, /namespace given as "dev" by \?ns but "prod" by Namespace/);
  for (const [q, hdr] of [
    ['?ns=Prod', undefined],
    ['?ns=a_b', undefined],
    ['?ns=-x', undefined],
    ['', 'UPPER'],
  ] as const) {
    const r = await h.req('GET', `/v1/catalog/services${q}`, hdr ? { headers: { 'X-Sider-Namespace': hdr } } : {});
    t.equal(r.status, 400, `${q} ${hdr ?? ''}`);
    t.match(r.text, /invalid namespace/);
  }
  const badBodyNs = await h.register({ Name: 'web', Namespace: 'Nope' });
  t.equal(badBodyNs.status, 400);
  t.match(badBodyNs.text, /^Namespace: invalid namespace "Nope"/);
});

t.test('deregister by path and by JSON body; ambiguous and unknown IDs', async (t) => {
  const h = await start(t);
  await h.register({ Name: 'web', ID: 'w1', Check: { TTL: '10s' } });
  await h.register({ Name: 'web', ID: 'shared' });
  await h.register({ Name: 'api', ID: 'shared' });

  const byPath = await h.req('PUT', '/v1/agent/service/deregister/w1');
  t.equal(byPath.status, 200);
  t.equal(byPath.text, '');
  const last = h.reg.writes.at(-1)!.cmd;
  t.match(last, { type: 'deregister', ns: 'default', service: 'web', id: 'w1' });
  t.same(
    ((await h.req('GET', '/v1/health/service/web')).json() as { Service: { ID: string } }[]).map((e) => e.Service.ID),
    ['shared'],
  );
  t.same((await h.req('GET', '/v1/health/checks/web')).json(), [], 'its checks went with it');

  const ambiguous = await h.req('PUT', '/v1/agent/service/deregister/shared');
  t.equal(ambiguous.status, 400);
  t.match(ambiguous.text, /several services have ID "shared" \(api, web\): deregister with PUT \/v1\/agent\/service\/deregister and a JSON body/);

  const unknown = await h.req('PUT', '/v1/agent/service/deregister/ghost');
  t.equal(unknown.status, 404);
  t.match(unknown.text, /unknown service ID "ghost" in namespace "default"/);

  const byJson = await h.req('PUT', '/v1/agent/service/deregister', { body: { service: 'api', id: 'shared' } });
  t.equal(byJson.status, 200);
  t.same(Object.keys((await h.req('GET', '/v1/catalog/services')).json() as object), ['web']);
  const byJsonId = await h.req('PUT', '/v1/agent/service/deregister', { body: { ID: 'shared' } });
  t.equal(byJsonId.status, 200, 'an ID alone works once it is unambiguous');
  t.same((await h.req('GET', '/v1/catalog/services')).json(), {});
  const empty = await h.req('PUT', '/v1/agent/service/deregister', { body: {} });
  t.equal(empty.status, 400);
  t.match(empty.text, /^ID: give ID, Service, or both/);

  await h.register({ Name: 'web', ID: 'n1' }, '?ns=prod');
  const wrongNs = await h.req('PUT', '/v1/agent/service/deregister/n1');
  t.equal(wrongNs.status, 404, 'deregistering looks in the request\'s namespace only');
  t.equal((await h.req('PUT', '/v1/agent/service/deregister/n1?ns=prod')).status, 200);
});

t.test('writes: request IDs, replace-existing-checks, apply refusals, script checks', async (t) => {
  const h = await start(t);
  await h.register({ Name: 'web', ID: 'w1' }, '?replace-existing-checks', { 'X-Sider-Request-Id': 'client-req-42' });
  const w = h.reg.writes.at(-1)!;
  t.equal(w.rid, 'client-req-42');
  t.match(w.cmd, { type: 'register', replaceExistingChecks: true });
  await h.register({ Name: 'web', ID: 'w1' }, '?replace-existing-checks=false');
  t.match(h.reg.writes.at(-1)!.cmd, { replaceExistingChecks: false });
  const badRid = await h.register({ Name: 'web' }, '', { 'X-Sider-Request-Id': 'x'.repeat(129) });
  t.equal(badRid.status, 400);

  // The state machine's own refusal comes back with its status and message.
  await h.register({ Name: 'web', ID: 'w2', Check: { CheckID: 'mine', TTL: '10s' } });
  const stolen = await h.register({ Name: 'api', ID: 'a1', Check: { CheckID: 'mine', TTL: '10s' } });
  t.equal(stolen.status, 400);
  t.match(stolen.text, /CheckID "mine" already belongs to instance "w2" of service "web"/);

  const script = await h.register({ Name: 'web', Check: { Args: ['/bin/true'], Interval: '10s' } });
  t.equal(script.status, 400);
  t.match(script.text, /^Check\.Args: script checks are disabled/);

  const h2 = await start(t, { app: { enableScriptChecks: true } });
  t.equal((await h2.register({ Name: 'web', Check: { ScriptArgs: ['/bin/true'], Interval: '10s' } })).status, 200);
  const c = ((await h2.req('GET', '/v1/health/checks/web')).json() as { Type: string }[])[0]!;
  t.equal(c.Type, 'script', 'command checks are "script" in Consul\'s terms');
});

t.test('bad input: every kind gets a plain-text 4xx naming the problem', async (t) => {
  const h = await start(t, { app: { jsonLimit: 4096 } });
  const cases: [string, string, { raw?: string; body?: unknown; headers?: Record<string, string> }, number, RegExp][] = [
    ['PUT', '/v1/agent/service/register', { raw: '{"Name": "web",', headers: { 'content-type': 'application/json' } }, 400, /^malformed JSON body: /],
    ['PUT', '/v1/agent/service/register', { raw: '"just a string"', headers: { 'content-type': 'application/json' } }, 400, /^malformed JSON body: /],
    ['PUT', '/v1/agent/service/register', { raw: '', headers: { 'content-type': 'application/json' } }, 400, /^Name: required/],
    ['PUT', '/v1/agent/service/register', { raw: '[1,2]' }, 400, /^request body must be a JSON object, not an array/],
    ['PUT', '/v1/agent/service/register', { body: { Tags: ['a'] } }, 400, /^Name: required\n$/],
    ['PUT', '/v1/agent/service/register', { body: { Name: 'web', Port: 'eighty' } }, 400, /^Port: must be an integer, not a string/],
    ['PUT', '/v1/agent/service/register', { body: { Name: 'web', Tags: 'x' } }, 400, /^Tags: must be an array of strings/],
    ['PUT', '/v1/agent/service/register', { body: { Name: 'web', Address: '0.0.0.0' } }, 400, /^Address: "0.0.0.0" is the unspecified address/],
    ['PUT', '/v1/agent/service/register', { body: { Name: 'web', Address: '::' } }, 400, /^Address: "::" is the unspecified address/],
    ['PUT', '/v1/agent/service/register', { body: { Name: 'web service' } }, 400, /^Name: invalid service name "web service"/],
    ['PUT', '/v1/agent/service/register', { body: { Name: 'web', Checks: [{ TTL: '10s' }, { HTTP: 'http://x/', Interval: '5x' }] } }, 400, /^Checks\[1\]\.Interval: invalid duration "5x": unknown unit "x"/],
    ['PUT', '/v1/agent/service/register', { body: { Name: 'web', Check: { TTL: 'forever' } } }, 400, /^Check\.TTL: invalid duration "forever"/],
    ['PUT', '/v1/agent/service/register', { body: { Name: 'web', Meta: { k: 'v'.repeat(5000) } } }, 413, /^request body larger than 4096 bytes/],
    ['PUT', '/v1/agent/service/register?ns=BAD', { body: { Name: 'web' } }, 400, /^ns: invalid namespace "BAD"/],
    ['GET', '/v1/health/service/web?index=abc', {}, 400, /^index: invalid value "abc": expected a non-negative integer/],
    ['GET', '/v1/health/service/web?index=-1', {}, 400, /^index: invalid value "-1"/],
    ['GET', '/v1/health/service/web?index=5&wait=10', {}, 400, /^wait: invalid duration "10": missing unit/],
    ['GET', '/v1/health/service/web?index=5&wait=-1s', {}, 400, /^wait: must not be negative/],
    ['GET', '/v1/health/service/web?wait=soon', {}, 400, /^wait: invalid duration "soon"/],
    ['GET', '/v1/health/service/web?ns=a&ns=b', {}, 400, /^query parameter ns given 2 times/],
    ['GET', '/v1/health/service/web?dc=dc2', {}, 404, /^unknown datacenter "dc2": this cluster is "dc1"/],
    ['GET', '/v1/agent/service/a%2Fb', {}, 400, /^service ID: invalid ID "a\/b"/],
    ['GET', '/v1/agent/service/%E0%A4%A', {}, 400, /^malformed percent-encoding in the URL path/],
    ['POST', '/v1/raft/join', { body: { ID: 'n2' } }, 400, /^Addr: required/],
    ['POST', '/v1/raft/remove', { body: {} }, 400, /^ID: required/],
  ];
  for (const [method, path, o, status, re] of cases) {
    const r = await h.req(method, path, o);
    const name = `${method} ${path} ${(o.raw ?? JSON.stringify(o.body ?? '')).slice(0, 60)}`;
    t.equal(r.status, status, name);
    t.match(r.text, re, name);
    t.match(r.headers['content-type'], /^text\/plain/, `${name}: plain text`);
  }
  t.equal(h.reg.writes.length, 0, 'nothing bad reached the registry');

  // curl --data sends application/x-www-form-urlencoded; the body is still JSON to us.
  const curlish = await h.req('PUT', '/v1/agent/service/register', { raw: '{"Name":"curl"}', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  t.equal(curlish.status, 200);
  // The default limit is 1 MiB.
  const h2 = await start(t);
  const big = await h2.req('PUT', '/v1/agent/service/register', { raw: JSON.stringify({ Name: 'web', Notes: 'x'.repeat(1024 * 1024) }) });
  t.equal(big.status, 413);
  t.match(big.text, /request body larger than 1048576 bytes/);
});

t.test('unknown routes are 404, wrong methods 405, out-of-scope endpoints 404', async (t) => {
  const h = await start(t);
  for (const [method, path] of [
    ['GET', '/nope'],
    ['GET', '/v1/kv/foo'],
    ['GET', '/v1/snapshot'],
    ['GET', '/metrics'],
  ] as const) {
    const r = await h.req(method, path);
    t.equal(r.status, 404, `${method} ${path}`);
    t.match(r.text, /^no such endpoint: /);
  }
  const get = await h.req('GET', '/v1/agent/service/register');
  t.equal(get.status, 404, 'GET register falls on /v1/agent/service/:id, which knows no "register"');
  for (const [method, path, allow] of [
    ['POST', '/v1/agent/service/register', /PUT/],
    ['PUT', '/v1/health/service/web', /GET/],
    ['DELETE', '/v1/catalog/services', /GET/],
    ['GET', '/v1/raft/join', /POST/],
  ] as const) {
    const r = await h.req(method, path);
    t.equal(r.status, 405, `${method} ${path}`);
    t.match(r.headers.allow, allow, `${method} ${path}: Allow`);
    t.match(r.text, /^method .* not allowed/);
  }
});

t.test('a failure inside the server is 500 "internal error" with no stack trace', async (t) => {
  const h = await start(t);
  h.reg.failNext = new TypeError('secret detail at Object.<anonymous> (/srv/x.ts:1:1)');
  const r = await h.register({ Name: 'web' });
  t.equal(r.status, 500);
  t.equal(r.text, 'internal error\n');
  t.notMatch(r.text, /secret|\bat\b|\.ts/);
  t.ok(h.logs.some((l) => l.level === 'error' && String(l.fields?.error).includes('secret detail')), 'logged on the server instead');
  h.reg.failNext = new SiderError('SIDER_TIMEOUT', 'timed out waiting for the leader');
  const timeout = await h.register({ Name: 'web' });
  t.equal(timeout.status, 504);
  t.equal(timeout.text, 'timed out waiting for the leader\n');
});

t.test('agent/self, agent/members, status, raft configuration, join and remove', async (t) => {
  const h = await start(t, { app: { datacenter: 'eu1', version: '9.9.9', revision: 'abc' }, registry: { nodeName: 'n1', raftAddr: '127.0.0.1:8301', httpAddr: '127.0.0.1:8500' } });
  const self = (await h.req('GET', '/v1/agent/self?dc=EU1')).json() as { Config: Record<string, unknown>; Member: Record<string, unknown>; Meta: unknown };
  t.same(self.Config, {
    Datacenter: 'eu1',
    PrimaryDatacenter: 'eu1',
    NodeName: 'n1',
    NodeID: self.Config.NodeID,
    Server: true,
    Revision: 'abc',
    Version: '9.9.9',
    BuildDate: '',
  });
  t.match(self.Config.NodeID, /^[0-9a-f-]{36}$/);
  for (const v of Object.values(self)) t.equal(typeof v, 'object', 'every top-level value is an object (Go: map[string]map[string]interface{})');
  const memberSpec: Record<string, Kind> = { Name: 'string', Addr: 'string', Port: 'number', Tags: 'stringMap', Status: 'number', ProtocolMin: 'number', ProtocolMax: 'number', ProtocolCur: 'number', DelegateMin: 'number', DelegateMax: 'number', DelegateCur: 'number' };
  types(t, self.Member, memberSpec, 'Member');
  t.match(self.Member, { Name: 'n1', Addr: '127.0.0.1', Port: 8301, Status: 1, Tags: { role: 'consul', dc: 'eu1', http: '127.0.0.1:8500' } });

  t.equal((await h.req('GET', '/v1/status/leader')).text, '"127.0.0.1:8301"');
  t.same((await h.req('GET', '/v1/status/peers')).json(), ['127.0.0.1:8301']);

  const join = await h.req('POST', '/v1/raft/join', { body: { ID: 'n2', Addr: '127.0.0.2:8301' } });
  t.equal(join.status, 200);
  t.equal((await h.req('PUT', '/v1/raft/join', { body: { id: 'n3', addr: '127.0.0.3:8301' } })).status, 200);
  const again = await h.req('POST', '/v1/raft/join', { body: { ID: 'n2', Addr: '127.0.0.2:8301' } });
  t.equal(again.status, 200, 'a retried join at the same address succeeds');
  const dup = await h.req('POST', '/v1/raft/join', { body: { ID: 'n2', Addr: '127.0.0.9:8301' } });
  t.equal(dup.status, 400);
  t.match(dup.text, /already a member/);

  const conf = await h.req('GET', '/v1/operator/raft/configuration');
  const c = conf.json() as { Servers: Record<string, unknown>[]; Index: number };
  t.equal(typeof c.Index, 'number');
  t.equal(headerIndex(conf), c.Index);
  t.same(
    c.Servers.map((s) => [s.ID, s.Node, s.Address, s.Leader, s.Voter, s.ProtocolVersion]),
    [
      ['n1', 'n1', '127.0.0.1:8301', true, true, '3'],
      ['n2', 'n2', '127.0.0.2:8301', false, false, '3'],
      ['n3', 'n3', '127.0.0.3:8301', false, false, '3'],
    ],
  );
  const members = (await h.req('GET', '/v1/agent/members')).json() as Record<string, unknown>[];
  t.equal(members.length, 3);
  for (const m of members) types(t, m, memberSpec, `members[${String(m.Name)}]`);

  t.equal((await h.req('POST', '/v1/raft/remove', { body: { ID: 'n3' } })).status, 200);
  t.equal((await h.req('PUT', '/v1/raft/remove', { body: { ID: 'n2' } })).status, 200);
  const gone = await h.req('POST', '/v1/raft/remove', { body: { ID: 'n2' } });
  t.equal(gone.status, 400);
  t.equal(((await h.req('GET', '/v1/agent/members')).json() as unknown[]).length, 1);
});

t.test('status/leader is "" without a leader', async (t) => {
  const h = await start(t);
  await h.req('POST', '/v1/raft/join', { body: { ID: 'n2', Addr: '127.0.0.2:8301' } });
  await h.req('POST', '/v1/raft/remove', { body: { ID: 'node-1' } });
  t.equal((await h.req('GET', '/v1/status/leader')).text, '""');
  t.same((await h.req('GET', '/v1/status/peers')).json(), []);
});

t.test('blocking: a change wakes the query, which answers with a higher index', async (t) => {
  const h = await start(t);
  await h.register({ Name: 'web', ID: 'w1' });
  const first = await h.req('GET', '/v1/health/service/web');
  const index = headerIndex(first);
  const started = Date.now();
  // Go's client sends the wait in milliseconds.
  const held = h.req('GET', `/v1/health/service/web?index=${index}&wait=120000ms`);
  await until('the query to be held', () => h.blocking.held === 1 && h.reg.activeWatches === 1);
  // A change to another service does not wake it.
  await h.register({ Name: 'other' });
  await new Promise((r) => setTimeout(r, 50));
  t.equal(h.blocking.held, 1, 'still held after an unrelated change');
  await h.register({ Name: 'web', ID: 'w2' });
  const r = await held;
  t.equal(r.status, 200);
  t.ok(headerIndex(r) > index, 'a higher index');
  t.equal((r.json() as unknown[]).length, 2);
  t.ok(Date.now() - started < 60_000);
  t.equal(h.blocking.held, 0);
  t.equal(h.reg.activeWatches, 0);

  // A no-op re-registration moves no index and wakes nobody.
  const idx2 = headerIndex(r);
  const held2 = h.req('GET', `/v1/health/service/web?index=${idx2}&wait=400ms`);
  await until('held', () => h.blocking.held === 1);
  await h.register({ Name: 'web', ID: 'w2' });
  const r2 = await held2;
  t.equal(headerIndex(r2), idx2, 'timed out with the unchanged index');

  // An index already behind answers at once.
  const t0 = Date.now();
  const behind = await h.req('GET', `/v1/health/service/web?index=1&wait=10s`);
  t.equal(behind.status, 200);
  t.ok(Date.now() - t0 < 5000);
  t.equal(h.blocking.held, 0);
});

t.test('blocking: on timeout the query answers 200 with current data and the unchanged index', async (t) => {
  const h = await start(t);
  await h.register({ Name: 'web' });
  const index = headerIndex(await h.req('GET', '/v1/catalog/services'));
  const started = Date.now();
  const r = await h.req('GET', `/v1/catalog/services?index=${index}&wait=300ms`);
  const took = Date.now() - started;
  t.equal(r.status, 200);
  t.equal(headerIndex(r), index);
  t.same(r.json(), { web: [] });
  t.ok(took >= 290, `held for the wait (${took} ms)`);
  // Only that the wait asked for was the one held (not the 5 min default), with room for a loaded
  // CI machine: the jitter (≤ wait/16) is floor(random × wait / JITTER_FRACTION) in blocking.ts.
  t.ok(took < 300 + 300 / 16 + 5_000, `answered when the 300 ms wait ran out, not at the default 5 min (${took} ms)`);
  t.equal(h.reg.activeWatches, 0, 'the watcher is released on timeout');
});

t.test('blocking: every blocking endpoint holds and wakes on its own index', async (t) => {
  const h = await start(t);
  await h.register({ Name: 'web', Check: { TTL: '10s' } });
  const endpoints: [string, () => Promise<Reply>][] = [
    ['/v1/catalog/services', () => h.register({ Name: `svc${Date.now()}` })],
    ['/v1/catalog/service/web', () => h.register({ Name: 'web', Tags: [`t${Date.now()}`] })],
    ['/v1/health/checks/web', () => h.register({ Name: 'web', Meta: { at: String(Date.now()) }, Check: { TTL: '10s' } })],
    ['/v1/health/state/any', () => h.register({ Name: 'web', Meta: { at: `${Date.now()}x` }, Check: { TTL: '10s' } })],
    ['/v1/agent/services', () => h.register({ Name: `agent${Date.now()}` })],
    ['/v1/agent/service/web', () => h.register({ Name: 'web', Port: Date.now() % 60000, Check: { TTL: '10s' } })],
  ];
  for (const [path, change] of endpoints) {
    const index = headerIndex(await h.req('GET', path));
    const held = h.req('GET', `${path}${path.includes('?') ? '&' : '?'}index=${index}&wait=30s`);
    await until(`${path} held`, () => h.blocking.held === 1);
    await change();
    const r = await held;
    t.equal(r.status, 200, path);
    t.ok(headerIndex(r) > index, `${path}: woke with a higher index`);
  }
  t.equal(h.reg.activeWatches, 0);
});

t.test('blocking: a client that goes away releases its watcher and its slot', async (t) => {
  const h = await start(t);
  await h.register({ Name: 'web' });
  const index = headerIndex(await h.req('GET', '/v1/health/service/web'));
  const ac = new AbortController();
  const held = h.req('GET', `/v1/health/service/web?index=${index}&wait=5m`, { signal: ac.signal });
  await until('held', () => h.blocking.held === 1 && h.reg.activeWatches === 1);
  ac.abort();
  await t.rejects(held);
  await until('the watcher to be released', () => h.blocking.held === 0 && h.reg.activeWatches === 0);
  t.equal(h.reg.state.watcherCount, 0, 'the state machine holds no waiter either');
});

t.test('blocking: beyond the per-server limit a query gets 429', async (t) => {
  const h = await start(t, { maxBlocking: 1 });
  await h.register({ Name: 'web' });
  const index = headerIndex(await h.req('GET', '/v1/health/service/web'));
  const held = h.req('GET', `/v1/health/service/web?index=${index}&wait=5s`);
  await until('held', () => h.blocking.held === 1);
  const refused = await h.req('GET', `/v1/health/service/web?index=${index}&wait=5s`);
  t.equal(refused.status, 429);
  t.match(refused.text, /too many blocking queries/);
  const nonBlocking = await h.req('GET', '/v1/health/service/web');
  t.equal(nonBlocking.status, 200, 'non-blocking reads are not limited');
  await h.register({ Name: 'web', ID: 'w2' });
  t.equal((await held).status, 200);
});

t.test('a hold longer than the request timeout is not cut by the server', async (t) => {
  const h = await start(t, { listen: { requestTimeoutMs: 300, headersTimeoutMs: 300, checkIntervalMs: 50 } });
  await h.register({ Name: 'web' });
  const index = headerIndex(await h.req('GET', '/v1/health/service/web'));
  const started = Date.now();
  const r = await h.req('GET', `/v1/health/service/web?index=${index}&wait=1s`);
  t.equal(r.status, 200);
  t.ok(Date.now() - started >= 990, 'held the whole second');
  t.equal(h.server.timeout, 0);
});
