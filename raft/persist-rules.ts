// What must be durable before what. The driver and the simulator both take the rules from here,
// so the simulation checks the rules the driver runs.

import type { Message, Ready } from './types.ts';

/** The term and vote as last written with fsync. */
export interface DurableVote {
  term: number;
  vote: string;
}

/**
 * etcd's MustSync: new entries, a snapshot, or a changed term or vote must be synced before
 * anything that depends on them; a hard state that changes only `commit` need not be (the commit
 * index is recovered from the log after a crash).
 */
export function mustSync(rd: Ready, durable: DurableVote): boolean {
  if (rd.entries.length > 0 || rd.snapshot) return true;
  const hs = rd.hardState;
  return hs !== null && (hs.term !== durable.term || hs.vote !== durable.vote);
}

/**
 * Messages that claim nothing about what the node is writing, sent once the term they carry is
 * durable even while a write is in progress, also between Readys: a leader's heartbeat (it
 * carries the leader's term, a commit index no higher than what the follower holds, and a read
 * round's number), a heartbeat's answer (it says only that this node follows that leader in that
 * term), and a read index asked or answered (the answer is the leader's commit index, durable on a
 * quorum). They make linearizable reads under write load wait for no fsync of unrelated entries.
 */
export function sendableDuringWrite(m: Message, durableTerm: number): boolean {
  return (
    m.term === durableTerm &&
    (m.type === 'heartbeat' || m.type === 'heartbeatResp' || m.type === 'readIndex' || m.type === 'readIndexResp')
  );
}

/**
 * Raft thesis §10.2.1: a leader may send AppendEntries and heartbeats while its own write is in
 * progress, provided the term they carry is already durable (its own copy counts towards commit
 * only after the write, through `advance`); so may any node the other messages of
 * `sendableDuringWrite`. Everything else — votes, append responses, TimeoutNow — waits for the
 * write.
 */
export function splitMessages(rd: Ready, durable: DurableVote): { early: Message[]; late: Message[] } {
  const hs = rd.hardState;
  const termDurable = hs === null || (hs.term === durable.term && hs.vote === durable.vote);
  if (!termDurable) return { early: [], late: rd.messages };
  const early: Message[] = [];
  const late: Message[] = [];
  for (const m of rd.messages) {
    if (m.type === 'app' ? m.term === durable.term : sendableDuringWrite(m, durable.term)) early.push(m);
    else late.push(m);
  }
  return { early, late };
}

/** The durable vote after `rd` has been written with the given sync decision. */
export function afterWrite(rd: Ready, durable: DurableVote, synced: boolean): DurableVote {
  return synced && rd.hardState ? { term: rd.hardState.term, vote: rd.hardState.vote } : durable;
}
