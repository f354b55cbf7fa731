// Quorum arithmetic checked against naive references: majority size, the highest value a majority
// has reached, and vote tallies.

import t from 'tap';
import fc from 'fast-check';
import { quorumSize, quorumValue, voteResult } from '../../raft/quorum.ts';
import type { VoteResult } from '../../raft/quorum.ts';

const voterIds = fc.uniqueArray(
  fc.integer({ min: 1, max: 30 }).map((i) => `n${i}`),
  { maxLength: 9 },
);

/** The largest v (among the values present, or 0) such that a majority of voters has at least v. */
function naiveQuorumValue(voters: string[], value: (id: string) => number): number {
  if (voters.length === 0) return 0;
  const vals = voters.map(value);
  let best = 0;
  for (const v of [0, ...vals]) {
    const atLeast = vals.filter((x) => x >= v).length;
    if (atLeast * 2 > voters.length && v > best) best = v;
  }
  return best;
}

function naiveVoteResult(voters: string[], votes: Map<string, boolean>): VoteResult {
  const granted = voters.filter((id) => votes.get(id) === true).length;
  const unknown = voters.filter((id) => !votes.has(id)).length;
  if (granted * 2 > voters.length) return 'won';
  if ((granted + unknown) * 2 <= voters.length) return 'lost';
  return 'pending';
}

t.test('quorumSize is the smallest strict majority', async (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 1000 }), (n) => {
      const q = quorumSize(n);
      return q * 2 > n && (q - 1) * 2 <= n;
    }),
  );
  t.equal(quorumSize(1), 1);
  t.equal(quorumSize(2), 2);
  t.equal(quorumSize(3), 2);
  t.equal(quorumSize(4), 3);
  t.equal(quorumSize(5), 3);
});

t.test('quorumValue is the largest value a majority has reached', async (t) => {
  fc.assert(
    fc.property(voterIds, fc.dictionary(fc.integer({ min: 1, max: 30 }).map((i) => `n${i}`), fc.nat(50)), (voters, vals) => {
      const value = (id: string): number => vals[id] ?? 0;
      return quorumValue(voters, value) === naiveQuorumValue(voters, value);
    }),
    { numRuns: 2000 },
  );
  t.equal(quorumValue([], () => 7), 0, 'no voters, no quorum');
  t.equal(quorumValue(['a'], () => 7), 7, 'a single voter is its own quorum');
  const m: Record<string, number> = { a: 10, b: 8, c: 3 };
  t.equal(quorumValue(['a', 'b', 'c'], (id) => m[id]!), 8);
  t.equal(quorumValue(['a', 'b', 'c', 'd'], (id) => m[id] ?? 0), 3, 'a missing voter counts as 0');
});

t.test('voteResult wins with a majority, loses when a majority is out of reach, else pends', async (t) => {
  const voteMap = fc.array(fc.tuple(fc.integer({ min: 1, max: 30 }).map((i) => `n${i}`), fc.boolean()), { maxLength: 12 });
  fc.assert(
    fc.property(voterIds, voteMap, (voters, pairs) => {
      const votes = new Map(pairs);
      return voteResult(voters, votes) === naiveVoteResult(voters, votes);
    }),
    { numRuns: 2000 },
  );
  const v = ['a', 'b', 'c'];
  t.equal(voteResult(v, new Map([['a', true]])), 'pending');
  t.equal(voteResult(v, new Map([['a', true], ['b', true]])), 'won');
  t.equal(voteResult(v, new Map([['a', true], ['b', false], ['c', false]])), 'lost');
  t.equal(voteResult(v, new Map([['a', true], ['x', true], ['y', true]])), 'pending', 'votes from non-voters do not count');
  t.equal(voteResult(['a', 'b', 'c', 'd'], new Map([['a', true], ['b', true], ['c', false]])), 'pending', 'a tie is not a win');
  t.equal(voteResult(['a', 'b', 'c', 'd'], new Map([['a', true], ['b', false], ['c', false]])), 'lost');
});
