// The agent's server client against loopback HTTP servers that fail on purpose: it fails over on a
// connection error, a 5xx or a 429, sticks to the server that answered, returns 4xx answers as they
// are, keeps one request ID across attempts, and names every server when none could serve.

import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import t from 'tap';
import { ServerClient } from '../../agent/server-client.ts';
import { freePort } from '../support/ports.ts';

interface FakeServer {
  addr: string;
  /** Request IDs (x-sider-request-id) seen, in order; '' when absent. */
  seen: string[];
  answer: { status: number; body: string };
  close(): Promise<void>;
}

async function fake(status: number, body = ''): Promise<FakeServer> {
  const f: Partial<FakeServer> = { seen: [], answer: { status, body } };
  const srv: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    f.seen!.push(String(req.headers['x-sider-request-id'] ?? ''));
    req.resume();
    req.on('end', () => {
      res.statusCode = f.answer!.status;
      res.end(f.answer!.body);
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()));
  const a = srv.address();
  f.addr = `127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
  f.close = () => {
    srv.closeAllConnections();
    return new Promise((resolve) => srv.close(() => resolve()));
  };
  return f as FakeServer;
}

const quiet = (): void => {};

t.test('fails over past a dead server and a 503, then sticks to the one that answered', async (t) => {
  const dead = `127.0.0.1:${await freePort()}`;
  const busy = await fake(503, 'no leader');
  const good = await fake(200, 'fine');
  t.teardown(() => Promise.all([busy.close(), good.close()]));
  const logs: string[] = [];
  const client = new ServerClient({ servers: [dead, busy.addr, good.addr], log: (_l, msg) => logs.push(msg) });
  t.teardown(() => client.close());

  const r = await client.request('PUT', '/v1/agent/service/register', { body: { Name: 'x' }, requestId: 'rid-1' });
  t.same(r, { status: 200, text: 'fine', server: good.addr });
  t.same(busy.seen, ['rid-1']);
  t.same(good.seen, ['rid-1'], 'the same request ID on every attempt');
  t.equal(client.current, good.addr);
  t.ok(logs.includes('using another server'));

  await client.request('GET', '/v1/health/service/x');
  t.equal(busy.seen.length, 1, 'the next request went straight to the server that answered');
  t.equal(good.seen.length, 2);
});

t.test('a 4xx is an answer, not a reason to fail over', async (t) => {
  const refusing = await fake(404, 'CheckID "c" does not have associated TTL');
  const other = await fake(200);
  t.teardown(() => Promise.all([refusing.close(), other.close()]));
  const client = new ServerClient({ servers: [refusing.addr, other.addr], log: quiet });
  t.teardown(() => client.close());
  const r = await client.request('PUT', '/v1/agent/check/update/c', { body: { Status: 'passing' } });
  t.equal(r.status, 404);
  t.match(r.text, /does not have associated TTL/);
  t.equal(other.seen.length, 0);
});

t.test('a 429 fails over like a 5xx', async (t) => {
  const overloaded = await fake(429, 'too many');
  const good = await fake(200);
  t.teardown(() => Promise.all([overloaded.close(), good.close()]));
  const client = new ServerClient({ servers: [overloaded.addr, good.addr], log: quiet });
  t.teardown(() => client.close());
  t.equal((await client.request('GET', '/x')).server, good.addr);
});

t.test('when no server can serve, the error names each one and why', async (t) => {
  const dead = `127.0.0.1:${await freePort()}`;
  const broken = await fake(500, 'boom');
  t.teardown(() => broken.close());
  const client = new ServerClient({ servers: [dead, broken.addr], log: quiet });
  t.teardown(() => client.close());
  await t.rejects(client.request('GET', '/v1/health/service/x'), {
    code: 'SIDER_NO_LEADER',
    message: new RegExp(`no server could serve GET /v1/health/service/x: ${dead}: .*ECONNREFUSED.*; ${broken.addr}: HTTP 500 boom`),
  });
});

t.test('a slow server is abandoned after the attempt timeout; an aborted request stops at once', async (t) => {
  const hung: Server = createServer(() => {
    // never answers
  });
  await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', () => resolve()));
  const a = hung.address();
  const hungAddr = `127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
  const good = await fake(200, 'ok');
  t.teardown(async () => {
    hung.closeAllConnections();
    await new Promise((resolve) => hung.close(resolve));
    await good.close();
  });
  const client = new ServerClient({ servers: [hungAddr, good.addr], log: quiet, attemptTimeoutMs: 300 });
  t.teardown(() => client.close());
  t.equal((await client.request('GET', '/x')).server, good.addr);

  const only = new ServerClient({ servers: [hungAddr], log: quiet, attemptTimeoutMs: 60_000 });
  t.teardown(() => only.close());
  const ctl = new AbortController();
  const p = only.request('GET', '/x', { signal: ctl.signal });
  ctl.abort(new Error('stopping'));
  await t.rejects(p, { message: 'stopping' });
});
