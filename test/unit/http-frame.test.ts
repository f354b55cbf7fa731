// The raw clients' response framing (test/support/http-frame.ts): where a response read off a
// socket ends, so a client neither takes half an answer nor runs into the next one.

import t from 'tap';
import { responseFrame } from '../../test/support/http-frame.ts';

const ONE = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello';

t.test('a whole response: head, status, body bounds', async (t) => {
  const f = responseFrame(ONE);
  t.same(f, { head: 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5', status: '200', bodyStart: ONE.length - 5, end: ONE.length });
  t.equal(ONE.slice(f!.bodyStart, f!.end), 'hello');
});

t.test('null until the head and the whole body have arrived', async (t) => {
  t.equal(responseFrame(''), null);
  t.equal(responseFrame(ONE.slice(0, 20)), null, 'half a head');
  t.equal(responseFrame(ONE.slice(0, -1)), null, 'a body one byte short');
});

t.test('pipelined answers: the first ends where the second starts', async (t) => {
  const two = `${ONE}HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n`;
  const f = responseFrame(two)!;
  t.equal(f.end, ONE.length);
  const g = responseFrame(two.slice(f.end))!;
  t.equal(g.status, '404');
  t.equal(g.end, two.length - ONE.length, 'a header name in any case, an empty body');
});

t.test('a head without Content-Length: whole, its end unknown (NaN)', async (t) => {
  const f = responseFrame('HTTP/1.1 100 Continue\r\n\r\n');
  t.equal(f?.status, '100');
  t.ok(Number.isNaN(f?.end));
});
