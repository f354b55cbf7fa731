// The follower's write forwarder: concurrent writes share a request, each gets its own result in
// order, a failed request fails each of its writes, and batches respect their bounds.

import t from 'tap';
import { SiderError } from '../../raft/errors.ts';
import { MAX_WRITE_BATCH, WriteForwarder, parseForwardedWrites } from '../../src/forward-writes.ts';
import type { ForwardedResult, ForwardedWrite } from '../../src/forward-writes.ts';
import type { RegistryCommand } from '../../src/registry/model.ts';

function cmd(id: string, extra = ''): RegistryCommand {
  return { type: 'deregister', ns: 'default', service: `svc${extra}`, id, now: 0 };
}

/** A leader stand-in: answers each write with index = 100 + its position overall, or a refusal for id "bad". */
function fakeLeader(): { batches: ForwardedWrite[][]; send: (w: ForwardedWrite[]) => Promise<ForwardedResult[]>; release: () => void } {
  const batches: ForwardedWrite[][] = [];
  let gate: (() => void) | null = null;
  let blocked: Promise<void> | null = null;
  let n = 0;
  return {
    batches,
    send: async (writes) => {
      batches.push(writes);
      if (blocked) await blocked;
      return writes.map((w): ForwardedResult => {
        n++;
        if ((w.cmd as { id: string }).id === 'bad') return { ok: false, code: 'SIDER_BAD_REQUEST', status: 400, error: 'bad write' };
        return { ok: true, result: { ok: true, changed: true }, index: 100 + n };
      });
    },
    release: () => {
      if (!blocked) {
        blocked = new Promise((r) => (gate = r));
        return;
      }
      gate?.();
      blocked = null;
    },
  };
}

t.test('writes of one event-loop turn leave in one request, each answered with its own result', async (t) => {
  const leader = fakeLeader();
  const f = new WriteForwarder({ send: leader.send });
  const outcomes = await Promise.allSettled([f.forward(cmd('a'), 'r1'), f.forward(cmd('bad'), 'r2'), f.forward(cmd('c'), 'r3')]);
  t.equal(f.requests, 1, 'one request');
  t.same(
    leader.batches[0]!.map((w) => w.rid),
    ['r1', 'r2', 'r3'],
    'the request carries every write with its request ID, in order',
  );
  t.same(outcomes[0], { status: 'fulfilled', value: { result: { ok: true, changed: true }, index: 101 } });
  t.equal(outcomes[1]!.status, 'rejected');
  const err = (outcomes[1] as PromiseRejectedResult).reason as SiderError;
  t.equal(err.code, 'SIDER_BAD_REQUEST');
  t.equal(err.status, 400);
  t.equal(err.message, 'bad write');
  t.same(outcomes[2], { status: 'fulfilled', value: { result: { ok: true, changed: true }, index: 103 } });
});

t.test('writes arriving while the batches are in flight queue into the next one', async (t) => {
  const leader = fakeLeader();
  leader.release(); // block the leader
  const f = new WriteForwarder({ send: leader.send, maxInFlight: 1 });
  const first = f.forward(cmd('a'), 'r1');
  await new Promise((r) => setImmediate(r));
  const later = Array.from({ length: 50 }, (_, i) => f.forward(cmd(`w${i}`), `q${i}`));
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
  t.equal(leader.batches.length, 1, 'nothing more leaves while the one allowed batch travels');
  leader.release(); // unblock
  await first;
  await Promise.all(later);
  t.equal(leader.batches.length, 2, 'the 50 waiting writes left together');
  t.equal(leader.batches[1]!.length, 50);
});

t.test('a failed request fails each of its writes with a SiderError', async (t) => {
  const f = new WriteForwarder({
    send: async () => {
      throw new Error('connection refused');
    },
  });
  const outcomes = await Promise.allSettled([f.forward(cmd('a'), 'r1'), f.forward(cmd('b'), 'r2')]);
  for (const o of outcomes) {
    t.equal(o.status, 'rejected');
    t.equal(((o as PromiseRejectedResult).reason as SiderError).code, 'SIDER_NO_LEADER');
  }
  const short = new WriteForwarder({ send: async () => [] });
  const r = await Promise.allSettled([short.forward(cmd('a'), 'r1')]);
  t.equal(((r[0] as PromiseRejectedResult).reason as SiderError).code, 'SIDER_INTERNAL', 'a result count mismatch is refused');
});

t.test('batches stay under the count and size bounds', async (t) => {
  const leader = fakeLeader();
  const f = new WriteForwarder({ send: leader.send, maxBatch: 10, maxInFlight: 100 });
  await Promise.all(Array.from({ length: 35 }, (_, i) => f.forward(cmd(`w${i}`), `r${i}`)));
  t.same(
    leader.batches.map((b) => b.length),
    [10, 10, 10, 5],
  );
  const big = fakeLeader();
  const g = new WriteForwarder({ send: big.send, maxInFlight: 100 });
  const padding = 'x'.repeat(100_000);
  await Promise.all(Array.from({ length: 7 }, (_, i) => g.forward(cmd(`w${i}`, padding), `r${i}`)));
  t.ok(big.batches.length >= 3, `large writes are split over several requests (${big.batches.length})`);
  for (const b of big.batches) t.ok(JSON.stringify({ writes: b }).length < 1 << 20, 'each request body fits the 1 MiB limit');
});

t.test('too many waiting writes fail fast with 429', async (t) => {
  const leader = fakeLeader();
  leader.release();
  const f = new WriteForwarder({ send: leader.send, maxInFlight: 1, maxQueued: 3 });
  const pending = [f.forward(cmd('a'), 'r0')];
  await new Promise((r) => setImmediate(r));
  for (let i = 1; i <= 3; i++) pending.push(f.forward(cmd('a'), `r${i}`));
  await t.rejects(f.forward(cmd('a'), 'r4'), { code: 'SIDER_OVERLOADED', status: 429 });
  leader.release();
  await Promise.all(pending);
});

t.test('the leader refuses a malformed batch, naming the write', async (t) => {
  t.same(parseForwardedWrites([{ cmd: { type: 'x' }, rid: 'r' }]), [{ cmd: { type: 'x' }, rid: 'r' }]);
  t.throws(() => parseForwardedWrites('nope'), { message: 'writes: must be an array' });
  t.throws(() => parseForwardedWrites([{ cmd: {}, rid: 'r' }, { cmd: [], rid: 'r' }]), { message: /^writes\[1\]: must be/ });
  t.throws(() => parseForwardedWrites([{ cmd: {}, rid: 5 }]), { message: /^writes\[0\]/ });
  t.throws(() => parseForwardedWrites(Array.from({ length: MAX_WRITE_BATCH + 1 }, () => ({ cmd: {}, rid: 'r' }))), { message: /more than/ });
});
