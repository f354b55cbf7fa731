// The leader's TTL deadline table (src/health/ttl.ts) with numbers for clocks: renewals, the expiry
// scan, checkpoints, syncing with the replicated state, and the failover rule — including a
// property: a client that renews within its TTL is never expired early after a failover.

import t from 'tap';
import fc from 'fast-check';
import { TtlTable, failoverDeadline, splitTtlKey, ttlKey } from '../../src/health/ttl.ts';
import type { TtlCheckInfo } from '../../src/health/ttl.ts';

const OPTS = { checkpointMs: 1_000, graceMs: 2_000, slackMs: 500 };

function info(checkId: string, over: Partial<TtlCheckInfo> = {}): TtlCheckInfo {
  return { ns: 'default', checkId, ttlMs: 10_000, renewedAt: 1_000, renewIntervalMs: 0, ...over };
}

t.test('keys split back into namespace and check ID', async (t) => {
  t.same(splitTtlKey(ttlKey('team-a', 'service:api:1')), ['team-a', 'service:api:1']);
});

t.test('a renewal moves the deadline to now + TTL; an overdue check is reported once until renewed', async (t) => {
  const table = new TtlTable(OPTS);
  table.sync([info('c1', { renewedAt: 1_000 })]);
  const k = ttlKey('default', 'c1');
  t.equal(table.deadline(k), 11_000, 'a check new to the table counts from its registration');
  t.ok(table.renew(k, 5_000));
  t.equal(table.deadline(k), 15_000);
  t.same(table.due(14_999), [], 'not yet due');
  t.same(table.due(15_000), [k]);
  t.ok(table.isExpiring(k));
  t.same(table.due(20_000), [], 'reported once');
  table.retry(k);
  t.same(table.due(20_000), [k], 'reported again after a failed expiry');
  table.renew(k, 21_000);
  t.notOk(table.isExpiring(k));
  t.equal(table.deadline(k), 31_000);
  t.same(table.due(30_999), []);
  t.same(table.due(31_000), [k], 'a renewed check that had expired is watched again');
  t.notOk(table.renew(ttlKey('default', 'nope'), 1), 'an unknown key is refused');
});

t.test('due() honours its limit', async (t) => {
  const table = new TtlTable(OPTS);
  table.sync([info('a'), info('b'), info('c')]);
  t.equal(table.due(1e9, 2).length, 2);
  t.equal(table.due(1e9, 2).length, 1, 'the rest on the next scan');
});

t.test('due() reports in deadline order, ties by key, whatever order the checks were learnt in', async (t) => {
  const checks = [info('b', { renewedAt: 1_000 }), info('c', { renewedAt: 950 }), info('a', { renewedAt: 1_000 }), info('d', { renewedAt: 1_020 })];
  const key = (id: string) => ttlKey('default', id);
  for (const order of [checks, [...checks].reverse()]) {
    const table = new TtlTable(OPTS);
    for (const c of order) table.add(c);
    t.same(table.due(11_050), ['c', 'a', 'b', 'd'].map(key), 'one bucket, sorted');
    const limited = new TtlTable(OPTS);
    limited.sync(order);
    t.same(limited.due(11_050, 2), ['c', 'a'].map(key), 'the earliest under a limit');
    t.same(limited.due(11_050, 2), ['b', 'd'].map(key), 'the rest, in order, on the next scan');
  }
});

t.test('sync adds new checks, drops vanished ones, follows TTL changes and newer replicated renewals', async (t) => {
  const table = new TtlTable(OPTS);
  table.sync([info('a', { renewedAt: 0, ttlMs: 5_000 }), info('b')]);
  const a = ttlKey('default', 'a');
  const b = ttlKey('default', 'b');
  table.renew(a, 2_000);
  table.sync([info('a', { renewedAt: 0, ttlMs: 8_000 })]);
  t.equal(table.deadline(a), 10_000, 'a new TTL counts from the last renewal');
  t.notOk(table.has(b), 'b is gone');
  t.same(table.takeCheckpoint(), [['default', 'a', 2_000, 0]], "a vanished check's renewal is not checkpointed");
  table.sync([info('a', { renewedAt: 9_000, ttlMs: 8_000 })]);
  t.equal(table.deadline(a), 17_000, 'a newer replicated renewal (a status change) moves the deadline');
  table.add(info('c', { renewedAt: 3_000 }));
  t.equal(table.deadline(ttlKey('default', 'c')), 13_000);
  table.add(info('c', { renewedAt: 99_000 }));
  t.equal(table.deadline(ttlKey('default', 'c')), 13_000, 'add does not touch a known check');
});

t.test('checkpoints carry each renewed check once, with its latest time and interval; requeue puts them back', async (t) => {
  const table = new TtlTable(OPTS);
  table.sync([info('a', { renewedAt: 1_000 }), info('b', { renewedAt: 1_000 })]);
  const a = ttlKey('default', 'a');
  t.same(table.takeCheckpoint(), [], 'nothing renewed, no entry');
  table.renew(a, 2_000);
  table.renew(a, 2_500);
  table.renew(a, 4_000);
  const cp = table.takeCheckpoint();
  t.same(cp, [['default', 'a', 4_000, 1_500]], 'latest time; the larger of the last two intervals');
  t.same(table.takeCheckpoint(), [], 'taken');
  table.requeue(cp);
  t.same(table.takeCheckpoint(), [['default', 'a', 4_000, 1_500]], 'requeued after a failed proposal');
  table.renew(a, 5_000);
  table.renew(ttlKey('default', 'b'), 5_000);
  t.equal(table.takeCheckpoint(1).length, 1, 'bounded');
  t.equal(table.takeCheckpoint(1).length, 1, 'the rest next time');
});

t.test('the failover rule: max(min(R + TTL + P + slack + min(I, TTL), L + TTL + slack), L + grace)', async (t) => {
  const at = (renewedAt: number, ttlMs: number, renewIntervalMs: number, leaderSince: number): number =>
    failoverDeadline(info('a', { renewedAt, ttlMs, renewIntervalMs }), leaderSince, OPTS);
  t.equal(at(10_000, 10_000, 4_000, 22_000), 10_000 + 10_000 + 1_000 + 500 + 4_000, 'from the last known renewal');
  t.equal(at(10_000, 10_000, 0, 22_000), 31_500, 'unknown interval counts as TTL');
  t.equal(at(10_000, 10_000, 50_000, 22_000), 31_500, 'capped at TTL');
  t.equal(at(10_000, 10_000, 4_000, 12_000), 12_000 + 10_000 + 500, "never later than etcd's rule (L + TTL)");
  t.equal(at(0, 1_000, 0, 100_000), 102_000, 'grace after the election');
  const table = new TtlTable(OPTS);
  table.start([info('a', { renewedAt: 10_000, ttlMs: 10_000, renewIntervalMs: 4_000 })], 30_000);
  t.equal(table.deadline(ttlKey('default', 'a')), 32_000, 'start() applies it (grace wins here)');
});

t.test('regression: a 30 s TTL renewed every 20 s is not expired early after a failover', async (t) => {
  // Renewed at 0 (checkpointed), then at 20 s on the old leader, which died before checkpointing
  // it. Its real deadline is 50 s; R + TTL + P alone would have expired it at 31 s.
  const d = failoverDeadline(info('a', { renewedAt: 0, ttlMs: 30_000, renewIntervalMs: 20_000 }), 22_000, OPTS);
  t.ok(d >= 50_000, `deadline ${d} ≥ 50000`);
});

/**
 * Simulates an old leader: a client renews every `interval` ms (with jitter), the old leader's table
 * checkpoints every P ms and each checkpoint commits `commitMs` later unless the leader died first;
 * the replicated record keeps the latest time and its interval (the state machine's rule). Returns
 * the new leader's deadline and the real deadline (last acknowledged renewal + TTL).
 */
function failover(p: { ttl: number; interval: number; jitter: number[]; die: number; electionMs: number; commitMs: number }): {
  deadline: number;
  real: number;
  lastRenewal: number;
} {
  const old = new TtlTable(OPTS);
  const key = ttlKey('default', 'a');
  old.sync([info('a', { renewedAt: 0, ttlMs: p.ttl })]);
  const replicated = { renewedAt: 0, interval: 0 };
  const events: { at: number; kind: 'renew' | 'checkpoint' }[] = [];
  let at = 0;
  for (let i = 0; at <= p.die; i++) {
    at += Math.max(1, p.interval + (p.jitter[i % p.jitter.length] ?? 0));
    if (at <= p.die) events.push({ at, kind: 'renew' });
  }
  for (let c = OPTS.checkpointMs; c <= p.die; c += OPTS.checkpointMs) events.push({ at: c, kind: 'checkpoint' });
  events.sort((a, b) => a.at - b.at || (a.kind === 'renew' ? -1 : 1));
  let lastRenewal = 0;
  for (const e of events) {
    if (e.kind === 'renew') {
      old.renew(key, e.at);
      lastRenewal = e.at;
    } else {
      const committed = e.at + p.commitMs <= p.die;
      for (const [, , renewedAt, interval] of old.takeCheckpoint()) {
        if (committed && renewedAt > replicated.renewedAt) Object.assign(replicated, { renewedAt, interval });
      }
    }
  }
  const leaderSince = p.die + p.electionMs;
  const deadline = failoverDeadline(info('a', { renewedAt: replicated.renewedAt, ttlMs: p.ttl, renewIntervalMs: replicated.interval }), leaderSince, OPTS);
  return { deadline, real: lastRenewal + p.ttl, lastRenewal };
}

t.test('property: a client renewing at up to 2/3 of its TTL is never expired early after a failover', async (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1_000, max: 120_000 }),
      fc.double({ min: 0.01, max: 2 / 3, noNaN: true }),
      fc.array(fc.integer({ min: -50, max: 50 }), { minLength: 1, maxLength: 8 }),
      fc.integer({ min: 0, max: 400_000 }),
      fc.integer({ min: 300, max: 5_000 }),
      fc.integer({ min: 0, max: 100 }),
      (ttl, fraction, jitter, die, electionMs, commitMs) => {
        const interval = Math.max(50, Math.floor(ttl * fraction));
        const r = failover({ ttl, interval, jitter, die, electionMs, commitMs });
        return r.deadline >= r.real;
      },
    ),
    { numRuns: 2_000 },
  );
  t.pass('property held');
});

t.test('property: a client that stopped renewing is expired within the documented bound', async (t) => {
  // Whatever was checkpointed, the deadline is at most min(R + TTL + P + slack + TTL, L + TTL +
  // slack), or L + grace, with R the client's real last renewal.
  fc.assert(
    fc.property(
      fc.integer({ min: 1_000, max: 60_000 }),
      fc.double({ min: 0.05, max: 2 / 3, noNaN: true }),
      fc.integer({ min: 10_000, max: 200_000 }),
      fc.integer({ min: 300, max: 5_000 }),
      (ttl, fraction, stop, electionMs) => {
        const interval = Math.max(50, Math.floor(ttl * fraction));
        const r = failover({ ttl, interval, jitter: [0], die: stop, electionMs, commitMs: 10 });
        const leaderSince = stop + electionMs;
        const bound = Math.max(Math.min(r.lastRenewal + ttl + OPTS.checkpointMs + OPTS.slackMs + ttl, leaderSince + ttl + OPTS.slackMs), leaderSince + OPTS.graceMs);
        return r.deadline <= bound;
      },
    ),
    { numRuns: 1_000 },
  );
  t.pass('property held');
});

t.test('bad options are refused', async (t) => {
  t.throws(() => new TtlTable({ checkpointMs: 0, graceMs: 1 }), RangeError);
  t.throws(() => new TtlTable({ checkpointMs: 1, graceMs: -1 }), RangeError);
});

type TableOp =
  | { op: 'add'; k: number; back: number; ttl: number }
  | { op: 'renew'; k: number }
  | { op: 'update'; k: number; back: number; ttl: number }
  | { op: 'remove'; k: number }
  | { op: 'retry'; k: number }
  | { op: 'due'; limit: number }
  | { op: 'start' }
  | { op: 'wait'; ms: number };

const tableOp: fc.Arbitrary<TableOp> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant('add' as const), k: fc.nat(5), back: fc.nat(6_000), ttl: fc.constantFrom(1, 50, 100, 250, 1_000, 5_000, 3_600_000) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('renew' as const), k: fc.nat(5) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('update' as const), k: fc.nat(5), back: fc.nat(6_000), ttl: fc.constantFrom(50, 100, 250, 1_000, 5_000, 3_600_000) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('remove' as const), k: fc.nat(5) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('retry' as const), k: fc.nat(5) }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('due' as const), limit: fc.constantFrom(Infinity, Infinity, 1, 3) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'start' as const }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('wait' as const), ms: fc.constantFrom(0, 1, 49, 99, 100, 101, 250, 1_000, 6_000) }) },
);

t.test('property: the bucketed expiry scan reports exactly the overdue, unreported checks a full walk would', async (t) => {
  fc.assert(
    fc.property(fc.array(tableOp, { minLength: 1, maxLength: 120 }), (ops) => {
      const table = new TtlTable(OPTS);
      const known = new Set<string>();
      let now = 10_000;
      for (const o of ops) {
        switch (o.op) {
          case 'add':
            table.add(info(`c${o.k}`, { renewedAt: now - o.back, ttlMs: o.ttl }));
            known.add(ttlKey('default', `c${o.k}`));
            break;
          case 'renew':
            table.renew(ttlKey('default', `c${o.k}`), now);
            break;
          case 'update':
            table.update(ttlKey('default', `c${o.k}`), info(`c${o.k}`, { renewedAt: now - o.back, ttlMs: o.ttl }));
            known.add(ttlKey('default', `c${o.k}`));
            break;
          case 'remove':
            table.update(ttlKey('default', `c${o.k}`), undefined);
            break;
          case 'retry':
            table.retry(ttlKey('default', `c${o.k}`));
            break;
          case 'start':
            table.start(
              [...known].filter((k) => table.has(k)).map((k) => info(splitTtlKey(k)[1], { renewedAt: now - 1_000, ttlMs: 2_000 })),
              now,
            );
            break;
          case 'wait':
            now += o.ms;
            break;
          case 'due': {
            // What a walk over every entry finds (the deadline and flag are read from the entries).
            const expected = [...known].filter((k) => table.has(k) && !table.isExpiring(k) && table.deadline(k)! <= now).sort();
            const got = table.due(now, o.limit);
            const sorted = [...got].sort();
            if (o.limit === Infinity) {
              if (JSON.stringify(sorted) !== JSON.stringify(expected)) throw new Error(`at ${now}: due ${JSON.stringify(sorted)}, a full walk ${JSON.stringify(expected)}`);
            } else {
              if (got.length !== Math.min(o.limit, expected.length)) throw new Error(`at ${now}: ${got.length} with limit ${o.limit}, ${expected.length} due`);
              if (!got.every((k) => expected.includes(k))) throw new Error(`at ${now}: reported ${JSON.stringify(got)}, not all due (${JSON.stringify(expected)})`);
              if (new Set(got).size !== got.length) throw new Error('a key reported twice');
            }
            for (const k of got) if (!table.isExpiring(k)) throw new Error(`${k} reported but not marked expiring`);
            break;
          }
        }
        if (table.staleInBuckets < 0) throw new Error(`stale count ${table.staleInBuckets}`);
      }
      return true;
    }),
    { numRuns: 20_000 },
  );
  t.pass('property held');
});

t.test('removed long-TTL checks do not pile up in the deadline buckets', async (t) => {
  const table = new TtlTable(OPTS);
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 3_000; i++) table.add(info(`r${round}-${i}`, { renewedAt: 0, ttlMs: 86_400_000 }));
    for (let i = 0; i < 3_000; i++) table.update(ttlKey('default', `r${round}-${i}`), undefined);
    t.ok(table.staleInBuckets <= 1_024, `round ${round}: ${table.staleInBuckets} stale references`);
  }
  t.equal(table.size, 0);
  table.add(info('live', { renewedAt: 0, ttlMs: 1_000 }));
  t.same(table.due(1_000), [ttlKey('default', 'live')], 'still finds what is due after rebuilds');
});
