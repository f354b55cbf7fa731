// Quorum arithmetic for a single (non-joint) configuration of voters.

import type { NodeId } from './types.ts';

export function quorumSize(voters: number): number {
  return Math.floor(voters / 2) + 1;
}

/**
 * The largest value that a quorum of voters has reached (e.g. the highest log index replicated on
 * a majority). Voters missing from `value` count as 0. An empty voter set has no quorum: 0.
 */
export function quorumValue(voters: readonly NodeId[], value: (id: NodeId) => number): number {
  if (voters.length === 0) return 0;
  const vals = voters.map(value).sort((a, b) => b - a);
  return vals[quorumSize(voters.length) - 1]!;
}

export type VoteResult = 'won' | 'lost' | 'pending';

/** Tallies granted/rejected votes among `voters`; votes from non-voters are ignored. */
export function voteResult(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  const q = quorumSize(voters.length);
  let granted = 0;
  let rejected = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === true) granted++;
    else if (v === false) rejected++;
  }
  if (granted >= q) return 'won';
  if (rejected > voters.length - q) return 'lost';
  return 'pending';
}
