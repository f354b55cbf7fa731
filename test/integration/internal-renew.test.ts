// The leader's /v1/internal/renew (forwarded TTL renewals) is answered before Koa: the same status,
// headers and JSON body as the Koa route for every kind of request, the same signature check, a
// 413 that closes the connection, and the request still counted in the metrics.

import t from 'tap';
import { signRequest } from '../../src/cluster-auth.ts';
import { startKeyedLeader } from '../support/in-process-server.ts';

const KEY = 'internal-renew-test-cluster-key-0123';

interface Reply {
  status: number;
  type: string | undefined;
  length: string | undefined;
  connection: string | undefined;
  text: string;
}

t.test('the /v1/internal/renew fast path answers exactly as the Koa route', async (t) => {
  const { pool } = await startKeyedLeader(t, KEY, 'sider-renew-fast-');
  const call = async (method: string, path: string, body: Buffer | undefined, sign = true): Promise<Reply> => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (sign) Object.assign(headers, signRequest(KEY, method, path, body ?? Buffer.alloc(0)));
    const res = await pool.request({ method: method as 'POST', path, headers, ...(body ? { body } : {}), signal: AbortSignal.timeout(5_000) });
    const h = res.headers;
    return {
      status: res.statusCode,
      type: h['content-type'] as string | undefined,
      length: h['content-length'] as string | undefined,
      connection: h.connection as string | undefined,
      text: await res.body.text(),
    };
  };
  const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

  let r = await call('PUT', '/v1/agent/service/register', json({ Name: 'api', ID: 'api-1', Port: 80, Check: { CheckID: 'api-1-ttl', TTL: '30s', Status: 'passing' } }), false);
  t.equal(r.status, 200, r.text);
  const index = async (): Promise<string> => {
    const res = await pool.request({ method: 'GET', path: '/v1/health/checks/api' });
    await res.body.text();
    return res.headers['x-consul-index'] as string;
  };
  const before = await index();

  // `?x=1` sends the same request to the Koa route (the fast path takes the bare path only); the
  // signature covers the URL, so each is signed for its own.
  const cases: [string, Buffer, boolean][] = [
    ['a renewal that keeps the status', json({ items: [['default', 'api-1-ttl', 'passing', '']] }), true],
    ['an unknown check among known ones', json({ items: [['default', 'api-1-ttl', 'passing', ''], ['default', 'nope', 'passing', '']] }), true],
    ['a malformed item', json({ items: [['default', 'api-1-ttl', 'fine', '']] }), true],
    ['items not an array', json({ items: 'x' }), true],
    ['a body that is not JSON', Buffer.from('{"items": ['), true],
    ['an unsigned request', json({ items: [['default', 'api-1-ttl', 'critical', 'forged']] }), false],
  ];
  for (const [what, body, sign] of cases) {
    const fast = await call('POST', '/v1/internal/renew', body, sign);
    const koa = await call('POST', '/v1/internal/renew?x=1', body, sign);
    t.same(fast, koa, what);
  }
  t.match(JSON.parse((await call('POST', '/v1/internal/renew', cases[1]![1], true)).text), {
    results: [{ ok: true }, { ok: false, status: 404, error: 'CheckID "nope" does not have associated TTL' }],
  });
  t.equal((await call('POST', '/v1/internal/renew', cases[5]![1], false)).status, 401, 'unsigned is refused');
  t.equal((await call('POST', '/v1/internal/renew', cases[2]![1], true)).status, 400);
  t.equal(await index(), before, 'renewals that keep the status moved no index; the refused ones changed nothing');
  const health = await pool.request({ method: 'GET', path: '/v1/health/checks/api' });
  t.match(JSON.parse(await health.body.text()), [{ CheckID: 'api-1-ttl', Status: 'passing', Output: '' }], 'the forged critical was not applied');

  // A status change through the fast path is one Raft write, like through the route.
  r = await call('POST', '/v1/internal/renew', json({ items: [['default', 'api-1-ttl', 'warning', 'slow']] }));
  t.same(JSON.parse(r.text), { results: [{ ok: true }] });
  const changed = await pool.request({ method: 'GET', path: '/v1/health/checks/api' });
  t.match(JSON.parse(await changed.body.text()), [{ CheckID: 'api-1-ttl', Status: 'warning', Output: 'slow' }]);

  // A body over the limit: 413, and the connection is closed so the pool's next request is answered.
  const huge = json({ items: [['default', 'api-1-ttl', 'passing', 'x'.repeat(3 << 20)]] });
  const refused = await call('POST', '/v1/internal/renew', huge);
  t.equal(refused.status, 413, refused.text);
  t.equal(refused.connection, 'close');
  t.match(JSON.parse(refused.text), { code: 'SIDER_BAD_REQUEST', message: 'internal request body exceeds 1048576 bytes' });
  for (let i = 0; i < 3; i++) {
    t.equal((await call('POST', '/v1/internal/renew', cases[0]![1])).status, 200, `request ${i + 1} after the 413 is answered on the same pool`);
  }

  // Counted under the route's label, with its status, though Koa never saw it.
  const m = await pool.request({ method: 'GET', path: '/metrics' });
  const text = await m.body.text();
  const count = (status: number): number => Number(new RegExp(`^sider_http_requests_total\\{path="/v1/internal/renew",status="${status}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
  // 7 answered before Koa and 2 by it; 2 + 1 unsigned; 3 × 2 + 1 bad; the oversized one.
  t.same([count(200), count(401), count(400), count(413)], [9, 3, 7, 1], 'every request counted once, with its status');
});
