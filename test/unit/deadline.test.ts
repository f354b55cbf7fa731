// raft/deadline.ts: a request deadline that aborts like AbortSignal.timeout, and whose timer is
// cleared when the request ends first.

import t from 'tap';
import { deadline } from '../../raft/deadline.ts';

t.test('aborts after the time with a TimeoutError, as AbortSignal.timeout does', async (t) => {
  const { signal } = deadline(20);
  t.notOk(signal.aborted);
  await new Promise((r) => setTimeout(r, 60));
  t.ok(signal.aborted);
  t.equal((signal.reason as Error).name, 'TimeoutError');
  t.match((signal.reason as Error).message, /timeout/);
});

t.test('done() before the time: the signal never aborts', async (t) => {
  const { signal, done } = deadline(20);
  done();
  await new Promise((r) => setTimeout(r, 60));
  t.notOk(signal.aborted);
});
