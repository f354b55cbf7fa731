// Failed requests (5xx) are logged, but not one line each: without a leader every request fails
// alike, thousands a second under load.

import t from 'tap';
import { SiderError } from '../../raft/errors.ts';
import { errorReply } from '../../http/errors.ts';
import type { HttpLogger } from '../../http/errors.ts';

function logger(): { log: HttpLogger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return { log: (_level, msg, fields) => lines.push({ msg, ...fields }), lines };
}

t.test('the same failure on the same route is logged once per interval; every request still gets its answer', async (t) => {
  const { log, lines } = logger();
  for (let i = 0; i < 1_000; i++) {
    const r = errorReply(new SiderError('SIDER_NO_LEADER', 'no leader; retry'), log, 'PUT', '/v1/agent/service/register');
    if (r.status !== 503 || r.message !== 'no leader; retry\n') t.fail(`answer ${i}: ${r.status} ${r.message}`);
  }
  t.equal(lines.length, 1, '1,000 failures, one line');
  t.match(lines[0], { msg: 'http request failed', code: 'SIDER_NO_LEADER', status: 503, path: '/v1/agent/service/register' });
  errorReply(new SiderError('SIDER_STOPPED', 'stopping'), log, 'PUT', '/v1/agent/service/register');
  t.equal(lines.length, 2, 'another code is logged on its own');
});

t.test('many routes cannot buy a line each, and each logger has its own budget', async (t) => {
  const a = logger();
  for (let i = 0; i < 500; i++) errorReply(new SiderError('SIDER_NO_LEADER', 'x'), a.log, 'GET', `/v1/health/service/s${i}`);
  t.equal(a.lines.length, 64, '500 routes, 64 lines');
  const b = logger();
  errorReply(new SiderError('SIDER_NO_LEADER', 'x'), b.log, 'GET', '/v1/health/service/s0');
  t.equal(b.lines.length, 1);
});

t.test('client errors (4xx) are not logged', async (t) => {
  const { log, lines } = logger();
  const r = errorReply(new SiderError('SIDER_BAD_REQUEST', 'Name: missing'), log, 'PUT', '/v1/agent/service/register');
  t.equal(r.status, 400);
  t.equal(lines.length, 0);
});
