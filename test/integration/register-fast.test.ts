// The registration fast path (http/register-fast.ts) against the Koa route it stands in for: two
// apps assembled as `sider server` assembles its own (request metrics, write logging), one asked in
// the fast path's form and one with `x=1` added (a parameter the route ignores, so Koa answers);
// their raw answers, writes, log lines and metrics must be identical. Then a 3-server cluster: a
// follower forwards what its fast path takes to the leader.

import t from 'tap';
import { SiderError } from '../../raft/errors.ts';
import { checkFailures, checkRequestLines, httpCounts, rawRequest, requestLines, side } from '../support/fast-path.ts';
import type { Failure } from '../support/fast-path.ts';
import { SiderCluster } from '../support/server-process.ts';

interface Req {
  /** Path and query as the fast path takes them. */
  path: string;
  body?: string | Buffer;
  headers?: Record<string, string>;
  /** Send the body chunked instead of with a Content-Length. */
  chunked?: boolean;
}

/** The same request with a query parameter the route ignores, so that Koa answers it. */
function viaKoa(r: Req): Req {
  return { ...r, path: `${r.path}${r.path.includes('?') ? '&' : '?'}x=1` };
}

function wire(r: Req): string {
  const body = r.body === undefined ? '' : Buffer.isBuffer(r.body) ? r.body.toString('latin1') : Buffer.from(r.body).toString('latin1');
  const lines = [`PUT ${r.path} HTTP/1.1`, 'Host: 127.0.0.1'];
  for (const [k, v] of Object.entries(r.headers ?? {})) lines.push(`${k}: ${v}`);
  if (r.chunked) {
    lines.push('Transfer-Encoding: chunked');
    const chunks = body === '' ? '' : `${Buffer.byteLength(body, 'latin1').toString(16)}\r\n${body}\r\n`;
    return `${lines.join('\r\n')}\r\n\r\n${chunks}0\r\n\r\n`;
  }
  lines.push(`Content-Length: ${Buffer.byteLength(body, 'latin1')}`);
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}

/** A write as the front end handed it over, without its time stamp (and rid when the client chose none). */
function writeOf(w: { cmd: unknown; rid: string | undefined }, ridGiven: boolean): unknown {
  const { now: _now, ...cmd } = w.cmd as Record<string, unknown>;
  return ridGiven ? { cmd, rid: w.rid } : { cmd };
}

const JSON_LIMIT = 4096;
const ttl = (id: string, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ Name: 'api', ID: id, Address: '10.0.0.5', Port: 8080, Tags: ['v1'], Meta: { zone: 'a' }, Check: { CheckID: `${id}-ttl`, TTL: '30s', Status: 'passing' }, ...extra });

/** [name, request, expected status]: every class of answer the route gives, in an order where state matters. */
const CASES: [string, Req, number][] = [
  ['a new registration with a TTL check', { path: '/v1/agent/service/register', body: ttl('api-1') }, 200],
  ['the same again (nothing changes)', { path: '/v1/agent/service/register', body: ttl('api-1') }, 200],
  ['a re-registration that changes the port', { path: '/v1/agent/service/register', body: ttl('api-1', { Port: 9090 }) }, 200],
  [
    'several checks, snake_case keys, chunked',
    { path: '/v1/agent/service/register', chunked: true, body: JSON.stringify({ name: 'web', id: 'web-1', port: 80, checks: [{ ttl: '10s' }, { tcp: '127.0.0.1:9', interval: '5s' }] }) },
    200,
  ],
  ['replace-existing-checks', { path: '/v1/agent/service/register?replace-existing-checks', body: JSON.stringify({ Name: 'web', ID: 'web-1', Port: 80, Check: { TTL: '10s' } }) }, 200],
  ['replace-existing-checks=false', { path: '/v1/agent/service/register?replace-existing-checks=false', body: JSON.stringify({ Name: 'web', ID: 'web-1', Port: 81 }) }, 200],
  ['?ns= and this ?dc=', { path: '/v1/agent/service/register?ns=team-a&dc=DC1', body: ttl('api-2') }, 200],
  ['the namespace header', { path: '/v1/agent/service/register', headers: { 'X-Sider-Namespace': 'team-b' }, body: ttl('api-3') }, 200],
  ['a request ID of the client', { path: '/v1/agent/service/register', headers: { 'X-Sider-Request-Id': 'rid-42' }, body: ttl('api-4') }, 200],
  ['an application/json body with a BOM', { path: '/v1/agent/service/register', headers: { 'Content-Type': 'application/json' }, body: `\uFEFF${ttl('api-5')}` }, 200],
  ['an empty body', { path: '/v1/agent/service/register' }, 400],
  ['no Name', { path: '/v1/agent/service/register', body: '{"Port": 1}' }, 400],
  ['an invalid service name', { path: '/v1/agent/service/register', body: '{"Name": "no_such name"}' }, 400],
  ['a Port of the wrong type', { path: '/v1/agent/service/register', body: '{"Name": "api", "Port": "80"}' }, 400],
  ['Tags not an array', { path: '/v1/agent/service/register', body: '{"Name": "api", "Tags": "a"}' }, 400],
  ['a bad Meta key', { path: '/v1/agent/service/register', body: '{"Name": "api", "Meta": {"a b": "c"}}' }, 400],
  ['the address 0.0.0.0', { path: '/v1/agent/service/register', body: '{"Name": "api", "Address": "0.0.0.0"}' }, 400],
  ['a check with two kinds', { path: '/v1/agent/service/register', body: '{"Name": "api", "Check": {"TTL": "10s", "HTTP": "http://x/"}}' }, 400],
  ['a script check (disabled)', { path: '/v1/agent/service/register', body: '{"Name": "api", "Check": {"Args": ["true"], "Interval": "10s"}}' }, 400],
  ['a bad duration', { path: '/v1/agent/service/register', body: '{"Name": "api", "Check": {"TTL": "10 parsecs"}}' }, 400],
  ['malformed JSON', { path: '/v1/agent/service/register', body: '{"Name": "api",' }, 400],
  ['a JSON number body', { path: '/v1/agent/service/register', body: '5' }, 400],
  ['a JSON array body', { path: '/v1/agent/service/register', body: '[1]' }, 400],
  ['a __proto__ key', { path: '/v1/agent/service/register', body: '{"Name": "api", "__proto__": {"x": 1}}' }, 400],
  ['namespaces that disagree (query, body)', { path: '/v1/agent/service/register?ns=team-a', body: ttl('api-6', { Namespace: 'team-b' }) }, 400],
  ['namespaces that disagree (header, query)', { path: '/v1/agent/service/register?ns=team-a', headers: { 'X-Sider-Namespace': 'team-b' }, body: ttl('api-6') }, 400],
  ['an invalid ?ns=', { path: '/v1/agent/service/register?ns=Team', body: ttl('api-6') }, 400],
  ['an invalid namespace header', { path: '/v1/agent/service/register', headers: { 'X-Sider-Namespace': '-x' }, body: ttl('api-6') }, 400],
  ['a bad replace-existing-checks', { path: '/v1/agent/service/register?replace-existing-checks=maybe', body: ttl('api-6') }, 400],
  ['a bad request ID', { path: '/v1/agent/service/register', headers: { 'X-Sider-Request-Id': 'x'.repeat(129) }, body: ttl('api-6') }, 400],
  ['a check ID of another instance (refused by the state machine)', { path: '/v1/agent/service/register', body: JSON.stringify({ Name: 'api', ID: 'api-7', Check: { CheckID: 'api-1-ttl', TTL: '10s' } }) }, 400],
  ['a declared body over the limit', { path: '/v1/agent/service/register', body: `{"Name": "api", "Notes": "${'x'.repeat(JSON_LIMIT)}"}` }, 413],
  ['a chunked body over the limit', { path: '/v1/agent/service/register', chunked: true, body: `{"Name": "api", "Notes": "${'x'.repeat(JSON_LIMIT)}"}` }, 413],
];

t.test('the fast path answers, writes, logs and counts exactly as the Koa route', async (t) => {
  const fast = await side(t, { jsonLimit: JSON_LIMIT });
  const koa = await side(t, { jsonLimit: JSON_LIMIT });
  for (const [name, req, status] of CASES) {
    const seenBefore = [fast.koaSeen, koa.koaSeen];
    const writesBefore = [fast.reg.writes.length, koa.reg.writes.length];
    const a = await rawRequest(fast.port, wire(req));
    const b = await rawRequest(koa.port, wire(viaKoa(req)));
    t.equal(a.head[0], `HTTP/1.1 ${status} ${status === 200 ? 'OK' : status === 400 ? 'Bad Request' : 'Payload Too Large'}`, `${name}: status`);
    t.same(a, b, `${name}: the same bytes`);
    t.equal(fast.koaSeen, seenBefore[0], `${name}: answered without Koa`);
    t.equal(koa.koaSeen, seenBefore[1]! + 1, `${name}: the other app's request went through Koa`);
    const ridGiven = req.headers?.['X-Sider-Request-Id'] !== undefined;
    t.same(fast.reg.writes.slice(writesBefore[0]).map((w) => writeOf(w, ridGiven)), koa.reg.writes.slice(writesBefore[1]).map((w) => writeOf(w, ridGiven)), `${name}: the same write`);
  }
  t.ok(fast.reg.writes.length >= 10, 'the successful cases wrote');
  t.same(fast.reg.state.instances('default'), koa.reg.state.instances('default'), 'the same instances');
  t.same(fast.reg.state.checksInState('default', 'any'), koa.reg.state.checksInState('default', 'any'), 'the same checks');
  t.same(fast.reg.state.instances('team-a'), koa.reg.state.instances('team-a'));
  t.same(fast.reg.state.instances('team-b'), koa.reg.state.instances('team-b'));
  t.same(await httpCounts(fast.metrics), await httpCounts(koa.metrics), 'the same request counts, latency observations and registrations');
  t.match(await httpCounts(fast.metrics), { 'requests /v1/agent/service/register 200': 10, 'requests /v1/agent/service/register 400': 21, 'requests /v1/agent/service/register 413': 2 });
  t.same(fast.logs, koa.logs, 'the same log lines');
  t.match(
    fast.logs.find((l) => l.msg === 'registered service instance'),
    { level: 'info', fields: { ns: 'default', service: 'api', id: 'api-1', remote: '127.0.0.1', index: Number } },
    'a registration is logged with its client',
  );
});

t.test('without write tracking (a server logging at warn) no request context is made, on either path', async (t) => {
  const s = await side(t, { jsonLimit: JSON_LIMIT, trackWrites: false });
  const body = JSON.stringify({ Name: 'api', ID: 'api-9', Port: 80 });
  const fast = await rawRequest(s.port, wire({ path: '/v1/agent/service/register', body }));
  const koa = await rawRequest(s.port, wire(viaKoa({ path: '/v1/agent/service/register', body: JSON.stringify({ Name: 'api', ID: 'api-10', Port: 80 }) })));
  t.equal(fast.head[0]?.split(' ')[1], '200');
  t.equal(koa.head[0]?.split(' ')[1], '200');
  t.equal(s.koaSeen, 1, 'one of each');
  const lines = s.logs.filter((l) => l.msg === 'registered service instance');
  t.same(lines.map((l) => l.fields?.id), ['api-9', 'api-10']);
  t.ok(lines.every((l) => l.fields !== undefined && !('remote' in l.fields)), 'no client known to the write');
});

t.test('with request logging (-log-level debug) the fast path writes the same request line as Koa', async (t) => {
  const fast = await side(t, { jsonLimit: JSON_LIMIT }, true);
  const koa = await side(t, { jsonLimit: JSON_LIMIT }, true);
  await checkRequestLines(t, fast, koa, CASES.map(([, req]) => [wire(req), wire(viaKoa(req))] as const));
  t.match(requestLines(fast)[0], { level: 'debug', fields: { method: 'PUT', path: '/v1/agent/service/register', route: '/v1/agent/service/register', status: 200, ms: 'number', remote: '127.0.0.1' } });
});

t.test('failed writes: 503 without a leader, 500 for anything unexpected (logged)', async (t) => {
  const fast = await side(t);
  const koa = await side(t);
  const failures: Failure[] = [
    ['no leader', () => new SiderError('SIDER_NO_LEADER', 'no cluster leader is known; retry later'), 503],
    ['not leader', () => new SiderError('SIDER_NOT_LEADER', 'not the leader'), 503],
    ['a bug', () => new Error('boom'), 500],
  ];
  const req: Req = { path: '/v1/agent/service/register', body: ttl('api-1') };
  await checkFailures(t, fast, koa, failures, wire(req), wire(viaKoa(req)));
  t.equal(fast.koaSeen, 0, 'none of them went through Koa');
});

t.test('requests the fast path leaves to Koa', async (t) => {
  const fast = await side(t);
  const body = ttl('api-1');
  const gzip = (await import('node:zlib')).gzipSync(body);
  const koaOnly: Req[] = [
    { path: '/v1/agent/service/register?pretty', body },
    { path: '/v1/agent/service/register?ns=a&ns=b', body },
    { path: '/v1/agent/service/register?ns=team%2Da', body },
    { path: '/v1/agent/service/register?dc=dc2', body },
    { path: '/v1/agent/service/register/', body },
    { path: '/V1/agent/service/register', body },
    { path: '/v1/agent/service/register', headers: { 'Content-Encoding': 'gzip' }, body: gzip },
    { path: '/v1/agent/service/register', headers: { Expect: '100-continue' }, body },
  ];
  for (const req of koaOnly) {
    const before = fast.koaSeen;
    const r = await rawRequest(fast.port, wire(req));
    t.equal(fast.koaSeen, before + 1, `${req.path} ${JSON.stringify(req.headers ?? {})}: ${r.head[0]}`);
  }
  t.equal(fast.reg.state.instances('default').length, 1, 'the gzip body was registered by the route');
});

t.test('a follower forwards what its fast path takes to the leader, answering as the route', async (t) => {
  const cluster = (await SiderCluster.start({ ids: ['f1', 'f2', 'f3'] })).teardownWith(t);
  const leader = await cluster.leader();
  const follower = cluster.ids.find((id) => id !== leader)!;
  const port = (id: string): number => Number(cluster.addr(id).split(':')[1]);
  const pairs: [string, Req, number][] = [
    ['a registration', { path: '/v1/agent/service/register', body: ttl('fwd-1') }, 200],
    ['a re-registration', { path: '/v1/agent/service/register?replace-existing-checks', body: ttl('fwd-1') }, 200],
    ['a bad body', { path: '/v1/agent/service/register', body: '{"Name": "api", "Port": -1}' }, 400],
    ['a refused apply', { path: '/v1/agent/service/register', body: JSON.stringify({ Name: 'api', ID: 'fwd-2', Check: { CheckID: 'fwd-1-ttl', TTL: '10s' } }) }, 400],
  ];
  for (const [name, req, status] of pairs) {
    for (const id of [follower, leader]) {
      const a = await rawRequest(port(id), wire(req));
      const b = await rawRequest(port(id), wire(viaKoa(req)));
      t.equal(a.head[0]?.split(' ')[1], String(status), `${name} on ${id === leader ? 'the leader' : 'a follower'}: ${a.body}`);
      t.same(a, b, `${name} on ${id === leader ? 'the leader' : 'a follower'}: the same bytes`);
    }
  }
  const entries = (await cluster.http.json(cluster.addr(leader), '/v1/health/service/api')) as { Service: { ID: string; Port: number } }[];
  t.same(
    entries.map((e) => e.Service.ID),
    ['fwd-1'],
    'the leader has the forwarded instance, and nothing of the refused ones',
  );
  const metrics = await cluster.http.call(cluster.addr(follower), 'GET', '/metrics');
  const count = (status: string): number => Number(new RegExp(`^sider_http_requests_total\\{path="/v1/agent/service/register",status="${status}"\\} (\\d+)$`, 'm').exec(metrics.text)?.[1] ?? -1);
  t.equal(count('200'), 4, 'the follower counted both paths of both registrations');
  t.equal(count('400'), 4, 'and of both refusals');
  const logged = cluster.procs.get(follower)!.logLines().filter((l) => l.msg === 'registered service instance' && l.id === 'fwd-1');
  t.equal(logged.length, 4, 'each registration is logged once by the follower that took it');
  t.ok(logged.every((l) => l.remote === '127.0.0.1'), 'with its client');
});
