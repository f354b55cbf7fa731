// RaftLog: the core's in-memory log — terms around the snapshot offset, §5.3 follower append with
// conflict truncation, §5.4.1 up-to-date comparison, bounded slices, compaction and restore.

import t from 'tap';
import fc from 'fast-check';
import { RaftLog } from '../../raft/raft-log.ts';
import { entrySize } from '../../raft/codec.ts';
import type { Entry } from '../../raft/types.ts';

function ent(index: number, term: number, size = 0): Entry {
  return { index, term, type: 'normal', data: new Uint8Array(size), rid: '' };
}

/** Entries offset+1.. with the given terms. */
function ents(terms: number[], offset = 0): Entry[] {
  return terms.map((term, i) => ent(offset + 1 + i, term));
}

function terms(l: RaftLog): number[] {
  return l.entries.map((e) => e.term);
}

t.test('a new log refuses gaps and a commit beyond its end', async (t) => {
  t.throws(() => new RaftLog(0, 0, [ent(1, 1), ent(3, 1)], 0), /not contiguous/);
  t.throws(() => new RaftLog(0, 0, ents([1, 1]), 3), /beyond last index/);
  const l = new RaftLog(5, 2, ents([2, 3], 5), 0);
  t.equal(l.committed, 5, 'commit is at least the snapshot offset');
  t.equal(l.firstIndex(), 6);
  t.equal(l.lastIndex(), 7);
  t.equal(l.stable, 7, 'loaded entries are stable');
  t.equal(l.unstableFrom, 8);
});

t.test('term() answers for the offset and the entries, and nothing outside', async (t) => {
  const l = new RaftLog(5, 2, ents([2, 3], 5), 0);
  t.equal(l.term(5), 2);
  t.equal(l.term(6), 2);
  t.equal(l.term(7), 3);
  t.equal(l.term(4), undefined, 'compacted');
  t.equal(l.term(8), undefined, 'beyond the end');
  t.equal(l.lastTerm(), 3);
  t.equal(new RaftLog(5, 2, [], 0).lastTerm(), 2, 'an empty log ends at its snapshot');
  t.equal(l.entry(5), undefined);
  t.equal(l.entry(6)?.term, 2);
});

t.test('isUpToDate compares last terms first, then lengths (§5.4.1)', async (t) => {
  const l = new RaftLog(0, 0, ents([1, 1, 2]), 0);
  t.ok(l.isUpToDate(3, 2), 'same last entry');
  t.ok(l.isUpToDate(4, 2), 'longer, same term');
  t.ok(l.isUpToDate(1, 3), 'shorter but newer term');
  t.notOk(l.isUpToDate(2, 2), 'shorter, same term');
  t.notOk(l.isUpToDate(9, 1), 'longer but older term');
});

t.test('maybeAppend refuses when the log lacks prevIndex/prevTerm', async (t) => {
  const l = new RaftLog(0, 0, ents([1, 1]), 0);
  t.equal(l.maybeAppend(3, 1, [ent(4, 1)], () => t.fail('no truncation')), null, 'gap');
  t.equal(l.maybeAppend(2, 2, [ent(3, 2)], () => t.fail('no truncation')), null, 'term mismatch');
  t.same(terms(l), [1, 1], 'log unchanged');
});

t.test('maybeAppend appends and returns the last matching index', async (t) => {
  const l = new RaftLog(0, 0, ents([1]), 0);
  t.equal(l.maybeAppend(1, 1, [ent(2, 2), ent(3, 2)], () => t.fail('no truncation')), 3);
  t.same(terms(l), [1, 2, 2]);
  t.equal(l.maybeAppend(3, 2, [], () => t.fail('no truncation')), 3, 'heartbeat-like empty append');
});

t.test('maybeAppend truncates a conflicting suffix and reports where', async (t) => {
  const l = new RaftLog(0, 0, ents([1, 2, 2, 2]), 1);
  l.stable = 4;
  l.unstableFrom = 5;
  const truncated: number[] = [];
  t.equal(l.maybeAppend(1, 1, [ent(2, 2), ent(3, 3)], (i) => truncated.push(i)), 3);
  t.same(truncated, [3]);
  t.same(terms(l), [1, 2, 3], 'entry 4 of the old term is gone, 3 replaced');
  t.equal(l.stable, 2, 'replaced entries are no longer stable');
  t.equal(l.unstableFrom, 3, 'the replacement must be persisted');
});

t.test('a late duplicate append does not truncate entries it does not contradict', async (t) => {
  const l = new RaftLog(0, 0, ents([1, 2, 2, 2]), 0);
  t.equal(l.maybeAppend(1, 1, [ent(2, 2)], () => t.fail('no truncation')), 2, 'reports only what it covered');
  t.same(terms(l), [1, 2, 2, 2], 'the longer log stays');
});

t.test('maybeAppend never truncates committed entries', async (t) => {
  const l = new RaftLog(0, 0, ents([1, 2, 2]), 2);
  t.throws(() => l.maybeAppend(1, 1, [ent(2, 3)], () => {}), /at or below commit/);
});

t.test('maybeAppend skips entries covered by the snapshot', async (t) => {
  const l = new RaftLog(5, 2, ents([2], 5), 5);
  t.equal(l.maybeAppend(5, 2, [ent(6, 2), ent(7, 3)], () => t.fail('no truncation')), 7);
  t.same(terms(l), [2, 3]);
});

t.test('after a successful append the follower holds the leader prefix (property)', async () => {
  // Leader and follower share a prefix, then the follower has a divergent suffix of other terms.
  const arb = fc
    .record({
      shared: fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 8 }),
      leaderTail: fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 8 }),
      followerTail: fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 8 }),
    })
    .map(({ shared, leaderTail, followerTail }) => {
      const s = [...shared].sort((a, b) => a - b);
      const base = s.length ? s[s.length - 1]! : 1;
      // Leader's tail uses even terms above base, follower's odd ones: they conflict everywhere.
      const lt = leaderTail.map((d) => base + 2 + 2 * d).sort((a, b) => a - b);
      const ft = followerTail.map((d) => base + 1 + 2 * d).sort((a, b) => a - b);
      return { leader: [...s, ...lt], follower: [...s, ...ft], sharedLen: s.length };
    })
    .chain((x) =>
      fc.record({
        x: fc.constant(x),
        prev: fc.integer({ min: 0, max: x.sharedLen }),
        extra: fc.integer({ min: 0, max: x.leader.length }),
      }),
    );
  fc.assert(
    fc.property(arb, ({ x, prev, extra }) => {
      const hi = Math.min(x.leader.length, prev + extra);
      const l = new RaftLog(0, 0, ents(x.follower), 0);
      const leaderLog = ents(x.leader);
      const prevTerm = prev === 0 ? 0 : x.leader[prev - 1]!;
      const last = l.maybeAppend(prev, prevTerm, leaderLog.slice(prev, hi), () => {});
      if (last !== hi) return false;
      for (let i = 1; i <= hi; i++) if (l.term(i) !== x.leader[i - 1]) return false;
      return true;
    }),
    { numRuns: 1000 },
  );
});

t.test('slice is bounded by count and bytes but always carries one entry', async (t) => {
  const l = new RaftLog(0, 0, [ent(1, 1, 100), ent(2, 1, 100), ent(3, 1, 100), ent(4, 1, 1000)], 0);
  const one = entrySize(l.entries[0]!);
  t.same(
    l.slice(1, 4).map((e) => e.index),
    [1, 2, 3, 4],
  );
  t.same(
    l.slice(1, 4, 2).map((e) => e.index),
    [1, 2],
    'count',
  );
  t.same(
    l.slice(1, 4, Infinity, 2 * one).map((e) => e.index),
    [1, 2],
    'bytes',
  );
  t.same(
    l.slice(4, 4, Infinity, 10).map((e) => e.index),
    [4],
    'an entry larger than the limit still goes alone',
  );
  t.same(l.slice(5, 9), [], 'nothing beyond the end');
  t.throws(() => new RaftLog(2, 1, ents([1], 2), 0).slice(2, 3), /below offset/);
});

t.test('commitTo only moves forward and never past the end', async (t) => {
  const l = new RaftLog(0, 0, ents([1, 1]), 0);
  t.equal(l.commitTo(1), true);
  t.equal(l.commitTo(1), false);
  t.equal(l.commitTo(0), false);
  t.equal(l.committed, 1);
  t.throws(() => l.commitTo(3), /beyond last index/);
});

t.test('findConflictByTerm finds the last index whose term is at most the given one', async (t) => {
  const l = new RaftLog(2, 1, ents([1, 2, 2, 4, 4], 2), 0);
  t.equal(l.findConflictByTerm(7, 4), 7);
  t.equal(l.findConflictByTerm(7, 3), 5);
  t.equal(l.findConflictByTerm(7, 2), 5);
  t.equal(l.findConflictByTerm(7, 1), 3);
  t.equal(l.findConflictByTerm(7, 0), 2, 'falls back to the offset');
  t.equal(l.findConflictByTerm(99, 4), 7, 'clamped to the last index');
});

t.test('compact drops applied entries and keeps the term at the new offset', async (t) => {
  const l = new RaftLog(0, 0, ents([1, 1, 2, 2]), 3);
  l.applied = 3;
  t.throws(() => l.compact(4), /beyond applied/);
  l.compact(2);
  t.equal(l.offset, 2);
  t.equal(l.offsetTerm, 1);
  t.same(terms(l), [2, 2]);
  t.equal(l.term(2), 1);
  l.compact(1);
  t.equal(l.offset, 2, 'compacting below the offset is a no-op');
});

t.test('restore replaces the whole log with a snapshot position', async (t) => {
  const l = new RaftLog(0, 0, ents([1, 1, 2]), 1);
  l.restore(10, 3);
  t.equal(l.lastIndex(), 10);
  t.equal(l.lastTerm(), 3);
  t.equal(l.committed, 10);
  t.equal(l.applied, 10);
  t.equal(l.stable, 10);
  t.equal(l.unstableFrom, 11);
  t.ok(l.matchTerm(10, 3));
});

t.test('truncateFrom refuses to cut committed entries', async (t) => {
  const l = new RaftLog(0, 0, ents([1, 1, 2]), 2);
  t.throws(() => l.truncateFrom(2), /at or below commit/);
  l.truncateFrom(3);
  t.equal(l.lastIndex(), 2);
});
