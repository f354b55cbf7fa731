// Bounded logging of repeated refusals: one line per key per interval, the next one counting what was
// left out; a bounded number of keys, and of lines per interval whatever the keys.

import t from 'tap';
import { LogThrottle } from '../../raft/log-throttle.ts';

t.test('one occurrence per key per interval; the next admitted one counts those left out', async (t) => {
  let now = 1_000;
  const th = new LogThrottle(10_000, { maxKeys: 16, now: () => now });
  t.same(th.admit('a'), { suppressed: 0, suppressedOther: 0 }, 'the first is admitted');
  for (let i = 0; i < 25; i++) t.equal(th.admit('a'), null);
  t.same(th.admit('b'), { suppressed: 0, suppressedOther: 0 }, 'another key is counted on its own');
  now += 9_999;
  t.equal(th.admit('a'), null, 'still inside the interval');
  now += 1;
  t.same(th.admit('a'), { suppressed: 26, suppressedOther: 0 }, 'after the interval: admitted, with 26 left out');
  t.equal(th.admit('a'), null);
  now += 10_000;
  t.equal(th.admit('a')?.suppressed, 1);
  t.equal(th.admit('b')?.suppressed, 0, 'b had nothing left out');
});

t.test('it remembers at most maxKeys keys, dropping the least recently admitted', async (t) => {
  let now = 0;
  const th = new LogThrottle(1_000, { maxKeys: 3, maxPerInterval: 1_000_000, now: () => now });
  for (const k of ['a', 'b', 'c']) th.admit(k);
  now += 1_000;
  th.admit('a');
  th.admit('d');
  t.equal(th.size, 3);
  t.equal(th.admit('a'), null, 'a was admitted again last, so it stayed');
  t.same(th.admit('b'), { suppressed: 0, suppressedOther: 0 }, 'b went first: it is new again');
  for (let i = 0; i < 10_000; i++) th.admit(`k${i}`);
  t.equal(th.size, 3, 'still bounded');
});

t.test('new keys cannot buy a line each: at most maxPerInterval per interval, the rest counted', async (t) => {
  let now = 0;
  const th = new LogThrottle(1_000, { maxPerInterval: 5, now: () => now });
  const admitted = Array.from({ length: 100 }, (_, i) => th.admit(`claimed-sender-${i}`)).filter((a) => a !== null);
  t.equal(admitted.length, 5, '100 distinct keys, 5 lines');
  now += 1_000;
  t.same(th.admit('another'), { suppressed: 0, suppressedOther: 95 }, 'the next line counts the 95 left out');
  t.equal(th.admit('yet-another')?.suppressedOther, 0, 'counted once');
});

t.test('an interval of 0 admits everything', async (t) => {
  const th = new LogThrottle(0, { maxKeys: 4, now: () => 5 });
  t.same([th.admit('x'), th.admit('x'), th.admit('x')].map((a) => a?.suppressed), [0, 0, 0]);
});
