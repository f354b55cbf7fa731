// A real server with a cluster key: membership changes and the internal API need the key's
// signature; unsigned or wrongly signed requests change nothing and are logged without secrets.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { startServer } from '../../bin/server.ts';
import { signRequest } from '../../src/cluster-auth.ts';
import { loadServerConfig } from '../../src/config.ts';
import { freePort, waitFor } from '../support/ports.ts';

const KEY = 'security-test-cluster-key-0123456789';

t.test('membership changes and the internal API require the cluster signature', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sider-sec-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const http = `127.0.0.1:${await freePort()}`;
  const raft = `127.0.0.1:${await freePort()}`;
  const lines: string[] = [];
  const cfg = loadServerConfig(['-bootstrap', '-raft-id', 's1', '-raft-dir', dir, '-http', http, '-raft-bind', raft, '-raft-tick-ms', '20', '-dns', '127.0.0.1:0'], { SIDER_CLUSTER_KEY: KEY });
  const srv = await startServer(cfg, { log: (level, msg, fields) => lines.push(JSON.stringify({ level, msg, ...fields })) });
  t.teardown(() => srv.close());
  await waitFor('leader', () => srv.raft.status().role === 'leader');

  const post = async (path: string, payload: unknown, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> => {
    const body = Buffer.from(JSON.stringify(payload));
    const res = await request(`http://${http}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
    return { status: res.statusCode, text: await res.body.text() };
  };
  const signed = (path: string, payload: unknown, key = KEY): Record<string, string> =>
    signRequest(key, 'POST', path, Buffer.from(JSON.stringify(payload)));

  const join1 = { ID: 'rogue', Addr: '127.0.0.1:1' };
  t.equal((await post('/v1/raft/join', join1)).status, 401, 'unsigned join refused');
  t.equal((await post('/v1/raft/join', join1, signed('/v1/raft/join', join1, 'a-different-key-0123456789'))).status, 401, 'wrong key refused');
  t.same(srv.raft.status().membership.learners, [], 'nothing was added');
  t.equal((await post('/v1/internal/apply', { cmd: {}, rid: 'x' })).status, 401, 'unsigned internal apply refused');
  t.equal((await post('/v1/internal/join', { id: 'rogue', addr: '127.0.0.1:1' })).status, 401, 'unsigned internal join refused');

  const remove = { ID: 'nobody' };
  const r = await post('/v1/raft/remove', remove, signed('/v1/raft/remove', remove));
  t.equal(r.status, 400, 'a signed request passes authentication and reaches validation');
  t.match(r.text, /nobody/);

  t.ok(lines.some((l) => l.includes('membership change refused')), 'refusals are logged');
  t.notOk(lines.some((l) => l.includes(KEY)), 'the key is never logged');
});
