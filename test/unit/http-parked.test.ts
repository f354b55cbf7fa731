// Parked blocking queries (http/blocking.ts, serveRead in http/app.ts) on a real loopback socket over
// an in-memory registry: answers written outside Koa carry exactly the Koa path's status, headers
// and body; deadlines, disconnects, the cap and per-kind bodies.

import { request as httpRequest } from 'node:http';
import type { Server } from 'node:http';
import { connect } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type Koa from 'koa';
import t from 'tap';
import { createHttpApp } from '../../http/app.ts';
import { BlockingQueries } from '../../http/blocking.ts';
import type { BlockingQueriesOptions } from '../../http/blocking.ts';
import { LocalRegistry, listenForTest } from '../support/local-registry.ts';

interface Raw {
  status: number;
  /** Header [name, value] pairs as sent, in order, without Date. */
  headers: [string, string][];
  body: string;
}

interface Harness {
  reg: LocalRegistry;
  blocking: BlockingQueries;
  server: Server;
  port: number;
  get(path: string, opts?: { method?: string; signal?: AbortSignal }): Promise<Raw>;
  register(body: unknown): Promise<void>;
  deregister(id: string): Promise<void>;
}

async function start(tt: { teardown: (fn: () => unknown) => void }, opts: BlockingQueriesOptions = {}, onApp?: (app: Koa) => void): Promise<Harness> {
  const reg = new LocalRegistry();
  const blocking = new BlockingQueries({ max: 1000, ...opts });
  const app = createHttpApp(reg, { blocking });
  onApp?.(app);
  const { server, port } = await listenForTest(tt, app);
  const get: Harness['get'] = (path, o = {}) =>
    new Promise((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path, method: o.method ?? 'GET', agent: false, ...(o.signal ? { signal: o.signal } : {}) }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const headers: [string, string][] = [];
          for (let i = 0; i < res.rawHeaders.length; i += 2) if (res.rawHeaders[i]!.toLowerCase() !== 'date') headers.push([res.rawHeaders[i]!, res.rawHeaders[i + 1]!]);
          resolve({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  const put = async (path: string, body: unknown): Promise<void> => {
    const text = JSON.stringify(body ?? {});
    const r = await new Promise<number>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path, method: 'PUT', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end(text);
    });
    if (r !== 200) throw new Error(`PUT ${path}: HTTP ${r}`);
  };
  return {
    reg,
    blocking,
    server,
    port,
    get,
    register: (body) => put('/v1/agent/service/register', body),
    deregister: (id) => put(`/v1/agent/service/deregister/${encodeURIComponent(id)}`, undefined),
  };
}

async function until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function header(r: Raw, name: string): string | undefined {
  return r.headers.find(([k]) => k.toLowerCase() === name.toLowerCase())?.[1];
}

function indexOf(r: Raw): number {
  return Number(header(r, 'X-Consul-Index'));
}

const withQuery = (path: string, q: string): string => `${path}${path.includes('?') ? '&' : '?'}${q}`;

t.test('a parked query answers with exactly the headers and body of a non-blocking read of the same state', async (t) => {
  const h = await start(t);
  h.reg.lastContactMs = 42.4;
  await h.register({ Name: 'web', ID: 'w1', Tags: ['a'], Check: { TTL: '10s' } });
  const paths = [
    '/v1/health/service/web',
    '/v1/health/service/web?pretty',
    '/v1/health/service/web?stale',
    '/v1/health/service/web?consistent&pretty',
    '/v1/catalog/service/web?tag=a',
    '/v1/catalog/services',
    '/v1/health/checks/web',
    '/v1/health/state/any',
    '/v1/agent/services',
    '/v1/agent/service/w1',
  ];
  for (const [i, path] of paths.entries()) {
    const before = await h.get(path);
    const held = h.get(withQuery(path, `index=${indexOf(before)}&wait=30s`));
    await until(`${path} parked`, () => h.blocking.held === 1);
    // A new tag moves the service's, the catalog's and the namespace's index.
    await h.register({ Name: 'web', ID: 'w1', Tags: ['a', `t${i}`], Check: { TTL: '10s' } });
    const woken = await held;
    const now = await h.get(path);
    t.equal(woken.status, 200, `${path}: 200`);
    t.ok(indexOf(woken) > indexOf(before), `${path}: a higher index`);
    t.same(woken.headers, now.headers, `${path}: the same headers, in the same order, as a non-blocking read`);
    t.equal(woken.body, now.body, `${path}: the same body`);
  }
  const names = (await h.get('/v1/health/service/web')).headers.map(([k]) => k);
  t.same(
    names.slice(0, 7),
    ['X-Consul-Index', 'X-Index', 'X-Consul-KnownLeader', 'X-Consul-LastContact', 'X-Consul-Effective-Consistency', 'Content-Type', 'Content-Length'],
    'the read headers, then the content headers',
  );
  t.equal(header(await h.get('/v1/health/service/web?stale'), 'X-Consul-Effective-Consistency'), 'stale');
  t.equal(h.blocking.held, 0);
  t.equal(h.reg.activeWatches, 0);
  t.same(h.blocking.stats, { kinds: 0, groups: 0, buckets: 0, queued: 0 });
});

t.test('?pretty is honoured by a parked query', async (t) => {
  const h = await start(t);
  await h.register({ Name: 'web' });
  const index = indexOf(await h.get('/v1/catalog/services'));
  const pretty = h.get(`/v1/catalog/services?index=${index}&pretty`);
  const plain = h.get(`/v1/catalog/services?index=${index}`);
  await until('both parked', () => h.blocking.held === 2);
  t.same(h.blocking.stats.kinds, 1, 'one kind: ?pretty does not change what is watched');
  await h.register({ Name: 'db' });
  const [p, q] = await Promise.all([pretty, plain]);
  t.equal(p.body, `${JSON.stringify({ db: [], web: [] }, null, 4)}\n`);
  t.equal(q.body, JSON.stringify({ db: [], web: [] }));
});

t.test('on its deadline a parked query answers 200 with the unchanged index and current data', async (t) => {
  const h = await start(t, { random: () => 0.999 });
  await h.register({ Name: 'web' });
  const first = await h.get('/v1/health/service/web');
  const started = Date.now();
  const r = await h.get(`/v1/health/service/web?index=${indexOf(first)}&wait=320ms`);
  const took = Date.now() - started;
  t.equal(r.status, 200);
  t.equal(indexOf(r), indexOf(first));
  t.equal(r.body, first.body);
  t.ok(took >= 320, `not before the wait (${took} ms)`);
  t.equal(h.blocking.held, 0);
  t.equal(h.reg.activeWatches, 0, 'the watcher is released on timeout');
  t.same(h.blocking.stats, { kinds: 0, groups: 0, buckets: 0, queued: 0 });
});

t.test('a shorter deadline parked after a longer one is answered first; the longer one stays', async (t) => {
  const h = await start(t);
  await h.register({ Name: 'web' });
  const index = indexOf(await h.get('/v1/health/service/web'));
  const ac = new AbortController();
  const long = h.get(`/v1/health/service/web?index=${index}&wait=10m`, { signal: ac.signal });
  await until('the long one parked', () => h.blocking.held === 1);
  const short = await h.get(`/v1/health/service/web?index=${index}&wait=150ms`);
  t.equal(short.status, 200);
  t.equal(indexOf(short), index);
  t.equal(h.blocking.held, 1, 'the 10-minute query is still parked');
  t.equal(h.reg.activeWatches, 1, 'with its one watcher');
  ac.abort();
  await t.rejects(long);
  await until('released', () => h.blocking.held === 0 && h.reg.activeWatches === 0);
});

t.test('queries with many different deadlines are each answered, none before its wait', async (t) => {
  const h = await start(t);
  await h.register({ Name: 'web' });
  const index = indexOf(await h.get('/v1/health/service/web'));
  // Parked in an order unlike their deadlines', so that the earliest deadline changes as they come.
  const waits = Array.from({ length: 20 }, (_, i) => 100 + ((i * 7) % 20) * 25);
  const started = Date.now();
  const answers = await Promise.all(
    waits.map(async (w) => {
      const r = await h.get(`/v1/health/service/web?index=${index}&wait=${w}ms`);
      return { w, r, took: Date.now() - started };
    }),
  );
  for (const { w, r, took } of answers) {
    t.equal(r.status, 200);
    t.equal(indexOf(r), index);
    t.ok(took >= w, `wait ${w} ms: answered after ${took} ms`);
  }
  t.equal(h.blocking.held, 0);
  t.same(h.blocking.stats, { kinds: 0, groups: 0, buckets: 0, queued: 0 });
});

t.test('a client that disconnects releases its waiter at once, and the last one its watcher', async (t) => {
  const h = await start(t);
  await h.register({ Name: 'web' });
  const index = indexOf(await h.get('/v1/health/service/web'));
  const acs = [new AbortController(), new AbortController(), new AbortController()];
  const held = acs.map((ac) => h.get(`/v1/health/service/web?index=${index}&wait=30s`, { signal: ac.signal }));
  await until('three parked', () => h.blocking.held === 3);
  t.equal(h.reg.activeWatches, 1, 'one registry watcher for the three (same kind, same index)');
  acs[0]!.abort();
  await t.rejects(held[0]!);
  await until('one released', () => h.blocking.held === 2);
  t.equal(h.reg.activeWatches, 1);
  acs[1]!.abort();
  acs[2]!.abort();
  await Promise.allSettled(held);
  await until('all released', () => h.blocking.held === 0 && h.reg.activeWatches === 0);
  t.same(h.blocking.stats, { kinds: 0, groups: 0, buckets: 0, queued: 0 });
  t.equal(h.reg.state.watcherCount, 0);
});

t.test('pipelined queries on one connection are released when it closes', async (t) => {
  const h = await start(t);
  await h.register({ Name: 'web' });
  const index = indexOf(await h.get('/v1/health/service/web'));
  const sock = connect({ host: '127.0.0.1', port: h.port });
  await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
  const req = (q: string): string => `GET /v1/health/service/web?index=${index}&wait=30s${q} HTTP/1.1\r\nHost: x\r\n\r\n`;
  sock.write(req('') + req('&pretty') + req('&stale'));
  await until('three parked', () => h.blocking.held === 3);
  sock.destroy();
  await until('released', () => h.blocking.held === 0 && h.reg.activeWatches === 0);
  t.same(h.blocking.stats, { kinds: 0, groups: 0, buckets: 0, queued: 0 });
});

t.test('pipelined parked queries are answered in order on their connection', async (t) => {
  const h = await start(t);
  await h.register({ Name: 'web' });
  const index = indexOf(await h.get('/v1/health/service/web'));
  const sock = connect({ host: '127.0.0.1', port: h.port });
  t.teardown(() => sock.destroy());
  await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
  let text = '';
  sock.on('data', (d: Buffer) => (text += d.toString('latin1')));
  sock.write(
    `GET /v1/health/service/web?index=${index}&wait=30s&pretty HTTP/1.1\r\nHost: x\r\n\r\n` + `GET /v1/health/service/web?index=${index}&wait=30s HTTP/1.1\r\nHost: x\r\n\r\n`,
  );
  await until('both parked', () => h.blocking.held === 2);
  await h.register({ Name: 'web', ID: 'w2' });
  await until('two answers', () => text.split('HTTP/1.1 200 OK').length === 3);
  const [, first, second] = text.split('HTTP/1.1 200 OK');
  t.match(first!, /\n {4}\{/, 'the pretty one first');
  t.notMatch(second!, /\n {4}\{/);
});

t.test('a change wakes every parked query of its key, each kind with its own body', async (t) => {
  const h = await start(t, { wakeChunk: 3 });
  await h.register({ Name: 'web', ID: 'w1', Tags: ['a'], Check: { TTL: '10s', Status: 'passing' } });
  await h.register({ Name: 'web', ID: 'w2', Tags: ['b'], Check: { TTL: '10s' } });
  await h.register({ Name: 'db', ID: 'd1' });
  const webIndex = indexOf(await h.get('/v1/health/service/web'));
  const dbIndex = indexOf(await h.get('/v1/health/service/db'));
  const kinds = [
    '/v1/health/service/web',
    '/v1/health/service/web?tag=a',
    '/v1/health/service/web?tag=b',
    '/v1/health/service/web?passing',
    '/v1/health/service/web?filter=Service.ID%20%3D%3D%20%22w2%22',
    '/v1/catalog/service/web?tag=a%26tag%3Db',
  ];
  const per = 4;
  const held: Promise<Raw>[] = [];
  // Two groups per kind: past webIndex and past webIndex + 1 (db's registration came later, so the
  // change below moves web's index beyond both).
  for (const k of kinds) for (let i = 0; i < per; i++) held.push(h.get(withQuery(k, `index=${webIndex + (i % 2)}&wait=30s`)));
  const ac = new AbortController();
  const db = h.get(`/v1/health/service/db?index=${dbIndex}&wait=30s`, { signal: ac.signal });
  await until('parked', () => h.blocking.held === kinds.length * per + 1);
  t.equal(h.blocking.stats.kinds, kinds.length + 1, 'one kind per route and body-shaping parameters');
  t.equal(h.blocking.stats.groups, kinds.length * 2 + 1, 'one group per kind and index');
  await h.register({ Name: 'web', ID: 'w3', Tags: ['a', 'b'], Check: { TTL: '10s' } });
  const answers = await Promise.all(held);
  t.equal(h.blocking.held, 1, 'the query on db is still parked');
  for (let k = 0; k < kinds.length; k++) {
    const now = await h.get(kinds[k]!);
    for (let i = 0; i < per; i++) {
      const a = answers[k * per + i]!;
      t.equal(a.status, 200);
      t.equal(a.body, now.body, `${kinds[k]} #${i}: the body of its own kind`);
    }
  }
  const bodies = new Set(kinds.map((_, k) => answers[k * per]!.body));
  if (bodies.size !== kinds.length) t.comment(kinds.map((k, i) => `${k}: ${answers[i * per]!.body}`).join('\n'));
  t.equal(bodies.size, kinds.length, 'every kind got a different body');
  t.equal(JSON.parse(answers[5 * per]!.body).length, 0, 'one tag "a&tag=b", not the tags a and b');
  ac.abort();
  await t.rejects(db);
  await until('released', () => h.blocking.held === 0 && h.reg.activeWatches === 0);
});

t.test('a parked query whose render fails answers with the error middleware\'s status and text', async (t) => {
  const h = await start(t);
  await h.register({ Name: 'web', ID: 'w1' });
  const path = '/v1/agent/service/w1';
  const index = indexOf(await h.get(path));
  const held = h.get(`${path}?index=${index}&wait=30s`);
  await until('parked', () => h.blocking.held === 1);
  await h.deregister('w1');
  const r = await held;
  const direct = await h.get(path);
  t.equal(r.status, 404);
  t.equal(direct.status, 404);
  t.equal(r.body, direct.body, 'the same message');
  t.match(r.body, /unknown service ID "w1"/);
  t.same(r.headers, direct.headers, 'the same headers');
  t.equal(header(r, 'Content-Type'), 'text/plain; charset=utf-8');
});

t.test('beyond the cap a query gets 429; the held count stays exact through answers and disconnects', async (t) => {
  const h = await start(t, { max: 2 });
  await h.register({ Name: 'web' });
  const index = indexOf(await h.get('/v1/health/service/web'));
  const ac = new AbortController();
  const a = h.get(`/v1/health/service/web?index=${index}&wait=30s`, { signal: ac.signal });
  const b = h.get(`/v1/catalog/services?index=${index}&wait=30s`);
  await until('two parked', () => h.blocking.held === 2);
  const refused = await h.get(`/v1/health/service/web?index=${index}&wait=30s`);
  t.equal(refused.status, 429);
  t.match(refused.body, /too many blocking queries/);
  t.equal(header(refused, 'Content-Type'), 'text/plain; charset=utf-8');
  ac.abort();
  await t.rejects(a);
  await until('one left', () => h.blocking.held === 1);
  const c = h.get(`/v1/health/service/web?index=${index}&wait=30s`);
  await until('two again', () => h.blocking.held === 2);
  await h.register({ Name: 'web', Tags: ['x'] });
  const [rb, rc] = await Promise.all([b, c]);
  t.equal(rb.status, 200);
  t.equal(rc.status, 200);
  t.equal(h.blocking.held, 0);
  t.equal(h.reg.activeWatches, 0);
});

t.test('HEAD on a parked query answers the headers only', async (t) => {
  const h = await start(t);
  await h.register({ Name: 'web' });
  const before = await h.get('/v1/health/service/web', { method: 'HEAD' });
  const held = h.get(`/v1/health/service/web?index=${indexOf(before)}&wait=30s`, { method: 'HEAD' });
  await until('parked', () => h.blocking.held === 1);
  await h.register({ Name: 'web', ID: 'w2' });
  const r = await held;
  const now = await h.get('/v1/health/service/web', { method: 'HEAD' });
  t.equal(r.status, 200);
  t.equal(r.body, '');
  t.same(r.headers, now.headers);
});

t.test('bad parameters are refused with 400 before anything is parked', async (t) => {
  const h = await start(t);
  await h.register({ Name: 'web' });
  for (const [q, field] of [
    ['index=abc', 'index'],
    ['index=5&wait=forever', 'wait'],
    ['index=5&wait=-1s', 'wait'],
    ['index=5&stale&consistent', 'stale'],
    ['index=5&pretty=maybe', 'pretty'],
    ['index=5&filter=%3D%3D', 'filter'],
  ] as const) {
    const r = await h.get(`/v1/health/service/web?${q}`);
    t.equal(r.status, 400, q);
    t.match(r.body, field, `${q}: names ${field}`);
  }
  t.equal(h.blocking.held, 0);
  t.equal(h.reg.activeWatches, 0);
});

t.test('a parked query keeps no Koa context alive', async (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const parked: WeakRef<object>[] = [];
  const h = await start(t, {}, (app) => {
    app.middleware.unshift(async (ctx, next) => {
      if (ctx.querystring.includes('index=')) parked.push(new WeakRef(ctx));
      await next();
    });
  });
  await h.register({ Name: 'web' });
  const index = indexOf(await h.get('/v1/health/service/web'));
  // `pretty` keeps the first out of the read fast path (http/read-fast.ts), which parks the third
  // without making a Koa context at all.
  const held = [
    h.get(`/v1/health/service/web?index=${index}&wait=30s&pretty`),
    h.get(`/v1/catalog/services?index=${index}&wait=30s&pretty`),
    h.get(`/v1/health/service/web?index=${index}&wait=30s`),
  ];
  await until('parked', () => h.blocking.held === 3);
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
  gc();
  t.equal(parked.length, 2, 'two went through Koa');
  t.equal(parked.filter((r) => r.deref() !== undefined).length, 0, 'both contexts collected while parked');
  await h.register({ Name: 'web', Tags: ['x'] });
  const answers = await Promise.all(held);
  t.same(
    answers.map((a) => a.status),
    [200, 200, 200],
  );
});

t.test('the wake chunk size is validated', async (t) => {
  t.throws(() => new BlockingQueries({ wakeChunk: 0 }), /wakeChunk/);
  t.throws(() => new BlockingQueries({ wakeChunk: 1.5 }), /wakeChunk/);
});
