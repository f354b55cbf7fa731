// Bounded logging of repeated refusals: one line per key per interval, the next one counting what was
// left out, and a bounded number of keys.

import t from 'tap';
import { LogThrottle } from '../../raft/log-throttle.ts';

t.test('one occurrence per key per interval; the next admitted one counts those left out', async (t) => {
  let now = 1_000;
  const th = new LogThrottle(10_000, 16, () => now);
  t.equal(th.admit('a'), 0, 'the first is admitted');
  for (let i = 0; i < 25; i++) t.equal(th.admit('a'), null);
  t.equal(th.admit('b'), 0, 'another key is counted on its own');
  now += 9_999;
  t.equal(th.admit('a'), null, 'still inside the interval');
  now += 1;
  t.equal(th.admit('a'), 26, 'after the interval: admitted, with 26 left out');
  t.equal(th.admit('a'), null);
  now += 10_000;
  t.equal(th.admit('a'), 1);
  t.equal(th.admit('b'), 0, 'b had nothing left out');
});

t.test('it remembers at most maxKeys keys, dropping the least recently admitted', async (t) => {
  let now = 0;
  const th = new LogThrottle(1_000, 3, () => now);
  for (const k of ['a', 'b', 'c']) th.admit(k);
  now += 1_000;
  th.admit('a');
  th.admit('d');
  t.equal(th.size, 3);
  t.equal(th.admit('a'), null, 'a was admitted again last, so it stayed');
  t.equal(th.admit('b'), 0, 'b went first: it is new again');
  for (let i = 0; i < 10_000; i++) th.admit(`k${i}`);
  t.equal(th.size, 3, 'still bounded');
});

t.test('an interval of 0 admits everything', async (t) => {
  const th = new LogThrottle(0, 4, () => 5);
  t.same([th.admit('x'), th.admit('x'), th.admit('x')], [0, 0, 0]);
});
