// An internal request refused for its size (413) closes its connection: a pooled connection that
// still carried the unread rest of the body must not swallow or stall the next forwarded request.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Pool } from 'undici';
import { startServer } from '../../bin/server.ts';
import { signRequest } from '../../src/cluster-auth.ts';
import { loadServerConfig } from '../../src/config.ts';
import { freePort, waitFor } from '../support/ports.ts';

const KEY = 'oversize-test-cluster-key-0123456789';

t.test('a 413 on the internal API does not poison the connection pool', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sider-413-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const http = `127.0.0.1:${await freePort()}`;
  const raft = `127.0.0.1:${await freePort()}`;
  const cfg = loadServerConfig(['-bootstrap', '-raft-id', 's1', '-raft-dir', dir, '-http', http, '-raft-bind', raft, '-raft-tick-ms', '20', '-dns', 'off'], { SIDER_CLUSTER_KEY: KEY });
  const srv = await startServer(cfg, { log: () => {} });
  t.teardown(() => srv.close());
  await waitFor('leader', () => srv.raft.status().role === 'leader');

  // One connection, as a forwarding pool to a busy leader would reuse it.
  const pool = new Pool(`http://${http}`, { connections: 1 });
  t.teardown(() => pool.close());
  const post = async (path: string, body: Buffer): Promise<number> => {
    const res = await pool.request({
      method: 'POST',
      path,
      body,
      headers: { 'content-type': 'application/json', ...signRequest(KEY, 'POST', path, body) },
      signal: AbortSignal.timeout(5_000),
    });
    await res.body.text();
    return res.statusCode;
  };

  const huge = Buffer.from(JSON.stringify({ cmd: { type: 'server', pad: 'x'.repeat(3 << 20) }, rid: 'big' }));
  t.equal(await post('/v1/internal/apply', huge), 413, 'an oversized internal body is refused');
  for (let i = 0; i < 3; i++) {
    const small = Buffer.from(JSON.stringify({ id: 'x' }));
    t.equal(await post('/v1/internal/join', small), 400, `request ${i + 1} after the 413 is answered on the same pool`);
  }
});
