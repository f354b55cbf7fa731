// The follower's renewal forwarder (src/health/renewals.ts): concurrent renewals leave in few
// batches, each renewal gets its own result, failures reach every waiting renewal, and the parser
// of the internal API's items.

import t from 'tap';
import { SiderError } from '../../raft/errors.ts';
import { RenewalForwarder, parseRenewItems } from '../../src/health/renewals.ts';
import type { RenewItem, RenewResult } from '../../src/health/renewals.ts';

/** A leader stand-in whose answers the test releases. */
class FakeLeader {
  batches: RenewItem[][] = [];
  #release: (() => void)[] = [];
  answer: (item: RenewItem) => RenewResult = () => ({ ok: true });
  fail: Error | undefined;
  send = (items: RenewItem[]): Promise<RenewResult[]> => {
    this.batches.push(items);
    return new Promise((resolve, reject) => {
      this.#release.push(() => (this.fail ? reject(this.fail) : resolve(items.map((i) => this.answer(i)))));
    });
  };
  releaseAll(): number {
    const r = this.#release;
    this.#release = [];
    for (const f of r) f();
    return r.length;
  }
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

t.test('10,000 concurrent renewals travel in a handful of requests', async (t) => {
  const leader = new FakeLeader();
  const fwd = new RenewalForwarder({ send: leader.send, maxInFlight: 2, maxBatch: 4096, minIntervalMs: 0 });
  const all = Array.from({ length: 10_000 }, (_, i) => fwd.renew('default', `c${i}`, 'passing', ''));
  // Bounded: each round releases what is in flight; the queue drains in a few rounds.
  for (let round = 0; round < 50 && leader.batches.reduce((n, b) => n + b.length, 0) < 10_000; round++) {
    await turn();
    leader.releaseAll();
    await turn();
  }
  leader.releaseAll();
  await Promise.all(all);
  t.equal(leader.batches.reduce((n, b) => n + b.length, 0), 10_000, 'every renewal was sent once');
  t.ok(fwd.requests <= 4, `${fwd.requests} requests for 10,000 renewals`);
  t.equal(fwd.requests, leader.batches.length);
});

t.test('with the defaults a renewal alone leaves at once; renewals arriving while two batches travel wait for the next', async (t) => {
  const leader = new FakeLeader();
  const fwd = new RenewalForwarder({ send: leader.send });
  const a = fwd.renew('default', 'a', 'passing', '');
  await turn();
  t.equal(leader.batches.length, 1, 'sent without waiting for company');
  const b = fwd.renew('default', 'b', 'passing', '');
  await turn();
  t.equal(leader.batches.length, 2, 'a second batch may travel');
  const more = [fwd.renew('default', 'c', 'warning', 'x'), fwd.renew('default', 'd', 'critical', 'y')];
  await turn();
  t.equal(leader.batches.length, 2, 'a third waits');
  leader.releaseAll();
  await Promise.all([a, b]);
  await turn();
  t.equal(leader.batches.length, 3);
  t.same(leader.batches[2], [
    ['default', 'c', 'warning', 'x'],
    ['default', 'd', 'critical', 'y'],
  ]);
  leader.releaseAll();
  await Promise.all(more);
});

t.test('batches leave at most once per minIntervalMs: a renewal right after a batch waits for the next slot', async (t) => {
  const leader = new FakeLeader();
  const fwd = new RenewalForwarder({ send: leader.send, minIntervalMs: 1_000, burst: 1 });
  const first = fwd.renew('default', 'a', 'passing', '');
  await turn();
  t.equal(leader.batches.length, 1, 'the first leaves at once');
  leader.releaseAll();
  await first;
  const second = fwd.renew('default', 'b', 'passing', '');
  const third = fwd.renew('default', 'c', 'passing', '');
  await turn();
  await turn();
  t.equal(leader.batches.length, 1, 'the next waits out the interval');
  // Bounded wait for the slot (1 s after the first batch).
  for (let i = 0; i < 200 && leader.batches.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
  t.same(leader.batches[1], [
    ['default', 'b', 'passing', ''],
    ['default', 'c', 'passing', ''],
  ], 'and both share it');
  leader.releaseAll();
  await Promise.all([second, third]);
  t.throws(() => new RenewalForwarder({ send: leader.send, minIntervalMs: -1 }), { code: 'SIDER_CONFIG' });
});

t.test('after a quiet spell up to `burst` batches leave back to back, then one per minIntervalMs', async (t) => {
  const leader = new FakeLeader();
  const fwd = new RenewalForwarder({ send: leader.send, minIntervalMs: 1_000, burst: 3 });
  // Each renewal arrives as soon as the previous batch came back (a client that renews in a loop).
  for (let i = 1; i <= 3; i++) {
    const p = fwd.renew('default', `c${i}`, 'passing', '');
    await turn();
    t.equal(leader.batches.length, i, `batch ${i} left without waiting out the interval`);
    leader.releaseAll();
    await p;
  }
  const fourth = fwd.renew('default', 'c4', 'passing', '');
  const fifth = fwd.renew('default', 'c5', 'passing', '');
  await turn();
  await turn();
  t.equal(leader.batches.length, 3, 'the burst is spent: the next waits for a credit');
  // Bounded wait for the credit (about 1 s after the first batch).
  for (let i = 0; i < 200 && leader.batches.length < 4; i++) await new Promise((r) => setTimeout(r, 10));
  t.same(leader.batches[3], [
    ['default', 'c4', 'passing', ''],
    ['default', 'c5', 'passing', ''],
  ], 'and the waiting renewals share it');
  leader.releaseAll();
  await Promise.all([fourth, fifth]);
  t.throws(() => new RenewalForwarder({ send: leader.send, burst: 0 }), { code: 'SIDER_CONFIG', message: /burst/ });
});

t.test('with the defaults a renewal right after a batch came back leaves at once (the interval allows bursts)', async (t) => {
  const leader = new FakeLeader();
  const fwd = new RenewalForwarder({ send: leader.send });
  const first = fwd.renew('default', 'a', 'passing', '');
  await turn();
  leader.releaseAll();
  await first;
  const second = fwd.renew('default', 'b', 'passing', '');
  await turn();
  t.equal(leader.batches.length, 2, 'not held back for minIntervalMs');
  for (let i = 0; i < 100 && leader.batches.length < 2; i++) await new Promise((r) => setTimeout(r, 5));
  leader.releaseAll();
  await second;
});

t.test("each renewal gets its own result: one check's 404 does not fail the others", async (t) => {
  const leader = new FakeLeader();
  leader.answer = ([, id]) =>
    id === 'gone' ? { ok: false, code: 'SIDER_BAD_REQUEST', status: 404, error: 'CheckID "gone" does not have associated TTL' } : { ok: true };
  const fwd = new RenewalForwarder({ send: leader.send });
  const ok = fwd.renew('default', 'ok', 'passing', '');
  const gone = fwd.renew('default', 'gone', 'passing', '');
  await turn();
  leader.releaseAll();
  await ok;
  await t.rejects(gone, { code: 'SIDER_BAD_REQUEST', status: 404, message: 'CheckID "gone" does not have associated TTL' });
});

t.test('a failed request fails every renewal it carried with a retryable error, then the next batch goes', async (t) => {
  const leader = new FakeLeader();
  const fwd = new RenewalForwarder({ send: leader.send, maxInFlight: 1, minIntervalMs: 0 });
  leader.fail = new Error('connection refused');
  const first = [fwd.renew('default', 'a', 'passing', ''), fwd.renew('default', 'b', 'passing', '')];
  await turn();
  const later = fwd.renew('default', 'c', 'passing', '');
  leader.releaseAll();
  for (const p of first) await t.rejects(p, { code: 'SIDER_NO_LEADER', status: 503 });
  leader.fail = undefined;
  await turn();
  leader.releaseAll();
  await later;
  t.equal(leader.batches.length, 2);
  const wrongCount = new RenewalForwarder({ send: async () => [] });
  await t.rejects(wrongCount.renew('default', 'a', 'passing', ''), { code: 'SIDER_INTERNAL' });
  const sider = new RenewalForwarder({
    send: async () => {
      throw new SiderError('SIDER_NO_LEADER', 'no leader');
    },
  });
  await t.rejects(sider.renew('default', 'a', 'passing', ''), { code: 'SIDER_NO_LEADER', message: 'no leader' });
});

t.test('batches are bounded by count and by size; the queue is bounded too', async (t) => {
  const leader = new FakeLeader();
  const fwd = new RenewalForwarder({ send: leader.send, maxInFlight: 1, maxBatch: 3, maxQueued: 10, minIntervalMs: 0 });
  const ps = Array.from({ length: 10 }, (_, i) => fwd.renew('default', `c${i}`, 'passing', ''));
  await t.rejects(fwd.renew('default', 'x', 'passing', ''), { code: 'SIDER_OVERLOADED', status: 429 });
  for (let round = 0; round < 10 && leader.batches.length < 4; round++) {
    await turn();
    leader.releaseAll();
  }
  leader.releaseAll();
  await Promise.all(ps);
  t.same(
    leader.batches.map((b) => b.length),
    [3, 3, 3, 1],
  );
  const big = new FakeLeader();
  const fwd2 = new RenewalForwarder({ send: big.send, maxInFlight: 1, minIntervalMs: 0 });
  const out = 'x'.repeat(100_000);
  const qs = Array.from({ length: 5 }, (_, i) => fwd2.renew('default', `c${i}`, 'passing', out));
  for (let round = 0; round < 10 && big.batches.reduce((n, b) => n + b.length, 0) < 5; round++) {
    await turn();
    big.releaseAll();
  }
  big.releaseAll();
  await Promise.all(qs);
  t.ok(big.batches.every((b) => b.reduce((n, [, , , o]) => n + o.length, 0) <= 300_000), 'no batch over ~256 K characters');
  t.throws(() => new RenewalForwarder({ send: big.send, maxInFlight: 0 }), { code: 'SIDER_CONFIG' });
});

t.test('the internal API parses renew items strictly', async (t) => {
  t.same(parseRenewItems([['default', 'c1', 'passing', '']]), [['default', 'c1', 'passing', '']]);
  t.throws(() => parseRenewItems({}), { message: 'items: must be an array' });
  t.throws(() => parseRenewItems([['default', 'c1', 'ok', '']]), { message: /items\[0\]/ });
  t.throws(() => parseRenewItems([['default', 'c1', 'passing']]), { message: /items\[0\]/ });
  t.throws(() => parseRenewItems([['default', 1, 'passing', '']]), { message: /items\[0\]/ });
  t.throws(() => parseRenewItems(Array.from({ length: 5000 }, () => ['d', 'c', 'passing', ''])), { message: /more than 4096/ });
});
