// An internal request refused for its size (413) closes its connection: a pooled connection that
// still carried the unread rest of the body must not swallow or stall the next forwarded request.

import t from 'tap';
import { signRequest } from '../../src/cluster-auth.ts';
import { startKeyedLeader } from '../support/in-process-server.ts';

const KEY = 'oversize-test-cluster-key-0123456789';

t.test('a 413 on the internal API does not poison the connection pool', async (t) => {
  const { pool } = await startKeyedLeader(t, KEY, 'sider-413-');
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
