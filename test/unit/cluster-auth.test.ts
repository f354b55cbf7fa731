// Signed server-to-server requests: a signature covers method, path, time and body.

import t from 'tap';
import { signRequest, verifyRequest } from '../../src/cluster-auth.ts';

const KEY = 'a-cluster-key-of-enough-length';
const body = Buffer.from('{"id":"n2"}');

t.test('a request signed with the key verifies', async (t) => {
  const h = signRequest(KEY, 'POST', '/v1/internal/join', body);
  t.ok(verifyRequest(KEY, 'post', '/v1/internal/join', body, h));
});

t.test('any change to key, method, path, body or an old timestamp fails', async (t) => {
  const now = Date.now();
  const h = signRequest(KEY, 'POST', '/v1/internal/join', body, now);
  t.notOk(verifyRequest('another-key-of-enough-length', 'POST', '/v1/internal/join', body, h, now), 'key');
  t.notOk(verifyRequest(KEY, 'PUT', '/v1/internal/join', body, h, now), 'method');
  t.notOk(verifyRequest(KEY, 'POST', '/v1/internal/apply', body, h, now), 'path');
  t.notOk(verifyRequest(KEY, 'POST', '/v1/internal/join', Buffer.from('{"id":"n3"}'), h, now), 'body');
  t.notOk(verifyRequest(KEY, 'POST', '/v1/internal/join', body, h, now + 61_000), 'stale');
  t.notOk(verifyRequest(KEY, 'POST', '/v1/internal/join', body, {}, now), 'missing headers');
  t.notOk(verifyRequest(KEY, 'POST', '/v1/internal/join', body, { ...h, 'x-sider-auth': 'zz' }, now), 'malformed');
});
