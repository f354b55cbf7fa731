// The service-read fast path (http/read-fast.ts) against the Koa routes it stands in for: two apps
// assembled as `sider server` assembles its own, holding the same registrations, one asked in the
// fast path's form and one with `x=1` added (a parameter the routes ignore, so Koa answers). Their
// raw answers, barriers, request metrics and log lines must be identical.

import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import t from 'tap';
import { SiderError } from '../../raft/errors.ts';
import { plainServiceRead } from '../../http/read-fast.ts';
import { checkFailures, checkRequestLines, httpCounts, rawRequest, requestLines, side } from '../support/fast-path.ts';
import { waitFor } from '../support/ports.ts';
import { parseExposition, sumOf } from '../support/prom-text.ts';
import type { Failure, Side } from '../support/fast-path.ts';

function get(path: string, headers: Record<string, string> = {}, method = 'GET'): string {
  const lines = [`${method} ${path} HTTP/1.1`, 'Host: 127.0.0.1'];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** The same path with a query parameter the routes ignore, so that Koa answers it. */
function viaKoa(path: string): string {
  return `${path}${path.includes('?') ? '&' : '?'}x=1`;
}

function put(path: string, body: unknown): string {
  const text = JSON.stringify(body);
  return `PUT ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`;
}

/** Registers an instance of `api` with a TTL check in that status, through the app. */
async function register(s: Side, ns: string, id: string, status: 'passing' | 'critical', tags = ['v1']): Promise<void> {
  const body = { Name: 'api', ID: id, Address: '10.0.0.5', Port: 8080, Tags: tags, Meta: { zone: 'a' }, Check: { CheckID: `${id}-ttl`, TTL: '30s', Status: status } };
  const r = await rawRequest(s.port, put(`/v1/agent/service/register?ns=${ns}`, body));
  if (r.head[0] !== 'HTTP/1.1 200 OK') throw new Error(`register ${id}: ${r.head[0]} ${r.body}`);
}

/** Both sides hold the same registrations at the same indexes (request counts reset after). */
async function populate(s: Side): Promise<void> {
  await register(s, 'default', 'api-1', 'passing');
  await register(s, 'default', 'api-2', 'critical', ['v2']);
  await register(s, 'team-a', 'api-3', 'passing');
  s.metrics.httpRequests.reset();
  s.metrics.httpDuration.reset();
  s.logs.length = 0;
}

/** [name, path, headers, expected status]: answered by the fast path. */
const FAST: [string, string, Record<string, string>, number][] = [
  ['health, default consistency', '/v1/health/service/api', {}, 200],
  ['health, ?stale', '/v1/health/service/api?stale', {}, 200],
  ['health, ?stale=true', '/v1/health/service/api?stale=true', {}, 200],
  ['health, ?consistent', '/v1/health/service/api?consistent', {}, 200],
  ['health, ?passing', '/v1/health/service/api?passing', {}, 200],
  ['health, ?passing=false', '/v1/health/service/api?passing=false', {}, 200],
  ['health, ?passing&stale', '/v1/health/service/api?passing&stale', {}, 200],
  ['health, an upper-case name', '/v1/health/service/API', {}, 200],
  ['health, ?ns=', '/v1/health/service/api?ns=team-a', {}, 200],
  ['health, the namespace header', '/v1/health/service/api', { 'X-Sider-Namespace': 'team-a' }, 200],
  ['health, this ?dc=', '/v1/health/service/api?dc=DC1', {}, 200],
  ['health, an empty ?dc=', '/v1/health/service/api?dc=', {}, 200],
  ['health, an unknown service', '/v1/health/service/nothing', {}, 200],
  ['catalog, default consistency', '/v1/catalog/service/api', {}, 200],
  ['catalog, ?stale', '/v1/catalog/service/api?stale', {}, 200],
  ['catalog, ?ns= and the same header', '/v1/catalog/service/api?ns=team-a', { 'X-Sider-Namespace': 'team-a' }, 200],
  ['a blocking index already passed', '/v1/health/service/api?index=1&wait=10s', {}, 200],
  ['index=0', '/v1/catalog/service/api?index=0', {}, 200],
  ['a wait without an index', '/v1/health/service/api?wait=1s&stale', {}, 200],
  ['a tag', '/v1/health/service/api?tag=v1', {}, 200],
  ['a tag in another case', '/v1/health/service/api?tag=V2', {}, 200],
  ['two tags', '/v1/health/service/api?tag=v1&passing&tag=v2', {}, 200],
  ['an empty tag', '/v1/health/service/api?tag=', {}, 200],
  ['a tag on the catalog', '/v1/catalog/service/api?tag=v2&stale', {}, 200],
];

/** Requests the fast path leaves to Koa (answered the same on both sides). */
const KOA: [string, string, Record<string, string>, string?][] = [
  ['a bad index', '/v1/health/service/api?index=x1', {}],
  ['a bad wait', '/v1/health/service/api?wait=5parsecs', {}],
  ['an encoded tag', '/v1/health/service/api?tag=v%31', {}],
  ['a filter', '/v1/health/service/api?filter=Service.Port%20%3D%3D%208080', {}],
  ['pretty', '/v1/health/service/api?pretty', {}],
  ['?passing on the catalog (ignored there)', '/v1/catalog/service/api?passing', {}],
  ['?stale and ?consistent', '/v1/health/service/api?stale&consistent', {}],
  ['a bad ?passing', '/v1/health/service/api?passing=maybe', {}],
  ['an invalid name', '/v1/health/service/-api', {}],
  ['a name with an underscore', '/v1/health/service/no_such', {}],
  ['an invalid ?ns=', '/v1/health/service/api?ns=Team', {}],
  ['namespaces that disagree', '/v1/health/service/api?ns=team-a', { 'X-Sider-Namespace': 'team-b' }],
  ['?ns twice', '/v1/health/service/api?ns=a&ns=b', {}],
  ['another ?dc=', '/v1/health/service/api?dc=dc2', {}],
  ['percent-encoding', '/v1/health/service/api?ns=team%2Da', {}],
  ['a trailing slash', '/v1/health/service/api/', {}],
  ['an upper-case path', '/V1/health/service/api', {}],
  ['another method (405)', '/v1/health/service/api', {}, 'POST'],
];

t.test('the fast path answers and counts exactly as the Koa routes', async (t) => {
  const fast = await side(t);
  const koa = await side(t);
  await populate(fast);
  await populate(koa);
  for (const [name, path, headers, status] of FAST) {
    const seen = [fast.koaSeen, koa.koaSeen];
    const barriers = [fast.reg.barriers.length, koa.reg.barriers.length];
    const a = await rawRequest(fast.port, get(path, headers));
    const b = await rawRequest(koa.port, get(viaKoa(path), headers));
    t.equal(a.head[0], `HTTP/1.1 ${status} OK`, `${name}: status`);
    t.same(a, b, `${name}: the same bytes`);
    t.equal(fast.koaSeen, seen[0], `${name}: answered without Koa`);
    t.equal(koa.koaSeen, seen[1]! + 1, `${name}: the other app's request went through Koa`);
    t.same(fast.reg.barriers.slice(barriers[0]), koa.reg.barriers.slice(barriers[1]), `${name}: the same barrier`);
  }
  const passing = await rawRequest(fast.port, get('/v1/health/service/api?passing'));
  await rawRequest(koa.port, get(viaKoa('/v1/health/service/api?passing')));
  t.same(
    JSON.parse(passing.body).map((e: { Service: { ID: string } }) => e.Service.ID),
    ['api-1'],
    '?passing leaves out the critical instance',
  );
  t.same(fast.reg.barriers.slice(0, 4), ['default', 'stale', 'stale', 'default'], 'default and ?consistent wait for ReadIndex, ?stale does not');
  const idsOf = async (path: string): Promise<string[]> => JSON.parse((await rawRequest(fast.port, get(path))).body).map((e: { Service: { ID: string } }) => e.Service.ID);
  t.same(await idsOf('/v1/health/service/api?tag=V2'), ['api-2'], 'a tag selects, in any case');
  t.same(await idsOf('/v1/health/service/api?tag=v1&tag=v2'), [], 'two tags: instances with both');
  await rawRequest(koa.port, get(viaKoa('/v1/health/service/api?tag=V2')));
  await rawRequest(koa.port, get(viaKoa('/v1/health/service/api?tag=v1&tag=v2')));
  for (const [name, path, headers, method] of KOA) {
    const before = fast.koaSeen;
    const a = await rawRequest(fast.port, get(path, headers, method));
    const b = await rawRequest(koa.port, get(path, headers, method));
    t.equal(fast.koaSeen, before + 1, `${name}: left to Koa (${a.head[0]})`);
    t.same(a, b, `${name}: the same answer`);
  }
  t.same(await httpCounts(fast.metrics), await httpCounts(koa.metrics), 'the same request counts and latency observations');
  const counts = await httpCounts(fast.metrics);
  t.ok(counts['requests /v1/health/service/:name 200']! > FAST.length && counts['requests /v1/catalog/service/:name 200']! >= 4, 'counted under the routes\' templates');
  t.same(fast.logs, koa.logs, 'the same log lines');
});

t.test('with request logging (-log-level debug) the fast path writes the same request line as Koa', async (t) => {
  const fast = await side(t, {}, true);
  const koa = await side(t, {}, true);
  await populate(fast);
  await populate(koa);
  // Koa's line names the path, not the query: the extra parameter leaves it alike.
  await checkRequestLines(t, fast, koa, FAST.map(([, path, headers]) => [get(path, headers), get(viaKoa(path), headers)] as const));
  t.match(requestLines(fast)[0], { level: 'debug', fields: { method: 'GET', path: '/v1/health/service/api', route: '/v1/health/service/:name', status: 200, ms: 'number', remote: '127.0.0.1' } });
});

t.test('a failed barrier: 503 without a leader, 500 for anything unexpected (logged), as Koa answers', async (t) => {
  const fast = await side(t);
  const koa = await side(t);
  const failures: Failure[] = [
    ['no leader', () => new SiderError('SIDER_NO_LEADER', 'no cluster leader is known; retry later'), 503],
    ['a bug', () => new Error('boom'), 500],
  ];
  await checkFailures(t, fast, koa, failures, get('/v1/health/service/api'), get(viaKoa('/v1/health/service/api')));
  t.equal(fast.koaSeen, 0, 'neither went through Koa');
});

t.test('a cached body is renewed when anything changes', async (t) => {
  const fast = await side(t);
  await populate(fast);
  const ids = async (): Promise<string[]> => JSON.parse((await rawRequest(fast.port, get('/v1/health/service/api'))).body).map((e: { Service: { ID: string } }) => e.Service.ID);
  t.same(await ids(), ['api-1', 'api-2']);
  await register(fast, 'default', 'api-4', 'passing');
  t.same(await ids(), ['api-1', 'api-2', 'api-4'], 'a new instance shows at once');
  await fast.reg.write({ type: 'deregister', ns: 'default', service: 'api', id: 'api-1', now: 0 });
  t.same(await ids(), ['api-2', 'api-4'], 'a removed one is gone');
  t.equal(fast.koaSeen, 0);
});

/** Held watchers on `service` as the metrics report them. */
async function watchers(s: Side, service = 'api'): Promise<number> {
  return sumOf(parseExposition((await s.metrics.scrape(false)).body), 'sider_watchers_active', { service });
}

t.test('blocking queries: parked, woken, timed out and refused as the Koa routes do', async (t) => {
  const fast = await side(t, { maxBlockingQueries: 2 });
  const koa = await side(t, { maxBlockingQueries: 2 });
  await populate(fast);
  await populate(koa);
  const index = Number(/^X-Consul-Index: (\d+)$/m.exec((await rawRequest(fast.port, get('/v1/health/service/api'))).head.join('\n'))?.[1]);
  await rawRequest(koa.port, get(viaKoa('/v1/health/service/api')));
  t.ok(index > 0, `the service's index (${index})`);

  // Woken by a change: the same answer, parked the same way.
  const path = `/v1/health/service/api?index=${index}&wait=30s&passing`;
  const a = rawRequest(fast.port, get(path), 10_000);
  const b = rawRequest(koa.port, get(viaKoa(path)), 10_000);
  await waitFor('both queries held', async () => (await watchers(fast)) === 1 && (await watchers(koa)) === 1);
  t.equal(fast.koaSeen, 0, 'parked without Koa');
  await register(fast, 'default', 'api-5', 'passing');
  await register(koa, 'default', 'api-5', 'passing');
  const [wa, wb] = await Promise.all([a, b]);
  t.equal(wa.head[0], 'HTTP/1.1 200 OK');
  t.same(wa, wb, 'woken: the same bytes');
  t.same(JSON.parse(wa.body).map((e: { Service: { ID: string } }) => e.Service.ID), ['api-1', 'api-5'], 'the new instance is in the answer');
  t.equal(await watchers(fast), 0, 'released');

  // Timed out: the unchanged index, after the wait (and at most wait/16 of jitter).
  const current = Number(/^X-Consul-Index: (\d+)$/m.exec(wa.head.join('\n'))?.[1]);
  const slow = `/v1/catalog/service/api?index=${current}&wait=300ms&stale`;
  const t0 = performance.now();
  const [ta, tb] = await Promise.all([rawRequest(fast.port, get(slow)), rawRequest(koa.port, get(viaKoa(slow)))]);
  const took = performance.now() - t0;
  t.ok(took >= 290 && took < 3_000, `answered after the wait (${Math.round(took)} ms)`);
  t.same(ta, tb, 'timed out: the same bytes');
  t.match(ta.head, [/200 OK/, `X-Consul-Index: ${current}`], 'with the unchanged index');

  // A client that leaves while held: released and counted as having left, on both.
  const gone = `/v1/health/service/api?index=${current}&wait=30s`;
  const socketOf = (port: number, p: string): Promise<import('node:net').Socket> =>
    new Promise((resolve) => {
      const sock = connect({ host: '127.0.0.1', port }, () => {
        sock.write(get(p));
        resolve(sock);
      });
    });
  const sa = await socketOf(fast.port, gone);
  const sb = await socketOf(koa.port, viaKoa(gone));
  await waitFor('both held', async () => (await watchers(fast)) === 1 && (await watchers(koa)) === 1);
  sa.destroy();
  sb.destroy();
  await waitFor('both released', async () => (await watchers(fast)) === 0 && (await watchers(koa)) === 0);

  // At the cap (2 here): 429, as the route answers.
  const held = [rawRequest(fast.port, get(gone), 10_000), rawRequest(fast.port, get(gone), 10_000), rawRequest(koa.port, get(viaKoa(gone)), 10_000), rawRequest(koa.port, get(viaKoa(gone)), 10_000)];
  await waitFor('two held on each', async () => (await watchers(fast)) === 2 && (await watchers(koa)) === 2);
  const [ra, rb] = await Promise.all([rawRequest(fast.port, get(gone)), rawRequest(koa.port, get(viaKoa(gone)))]);
  t.equal(ra.head[0], 'HTTP/1.1 429 Too Many Requests');
  t.same(ra, rb, 'over the cap: the same bytes');
  await register(fast, 'default', 'api-6', 'passing');
  await register(koa, 'default', 'api-6', 'passing');
  const answers = await Promise.all(held);
  t.same(answers.slice(0, 2), answers.slice(2), 'the held ones woken alike');

  t.equal(fast.koaSeen, 0, 'no blocking query went through Koa');
  t.same(await httpCounts(fast.metrics), await httpCounts(koa.metrics), 'the same request counts (499 for the one that left) and latency observations (none for held ones)');
  t.match(await httpCounts(fast.metrics), { 'requests /v1/health/service/:name 499': 1, 'requests /v1/health/service/:name 429': 1 });
});

t.test('plainServiceRead: the form taken before Koa', async (t) => {
  t.match(plainServiceRead('/v1/health/service/web?passing&ns=a', 'dc1'), { kind: 'health', name: 'web', path: '/v1/health/service/web', querystring: 'passing&ns=a', query: { passing: '', ns: 'a' } });
  t.match(plainServiceRead('/v1/catalog/service/web', 'dc1'), { kind: 'catalog', name: 'web', querystring: '', query: {} });
  t.same(plainServiceRead('/v1/health/service/web?tag=a&tag=b&tag=c', 'dc1')?.query, { tag: ['a', 'b', 'c'] }, 'tag repeated: an array, as Koa gives it');
  t.same(plainServiceRead('/v1/health/service/web?tag=a', 'dc1')?.query, { tag: 'a' });
  for (const url of ['/v1/health/service/', '/v1/health/service/a/b', '/v1/health/services/web', '/v1/health/service/web?=x', '/v1/health/service/web?&stale', '/v1/health/service/web?stale=a=b', `/v1/health/service/${'a'.repeat(64)}`, '/v1/health/service/web?__proto__']) {
    t.equal(plainServiceRead(url, 'dc1'), null, url);
  }
});
