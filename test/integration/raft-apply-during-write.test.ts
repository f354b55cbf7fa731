// What a message commits or confirms is acted on while the node's own write is still in progress
// (raft/node.ts #takeDuringWrite): the leader answers a proposal, and a read asked with it or during
// the write, before its fsync of that entry finishes; and reads are confirmed while both followers' writes are held,
// because heartbeat answers and read indexes leave during a write (persist-rules.ts). The driver
// with in-memory storage and network (real timers, hence this folder); a gated storage holds one
// write until released.

import t from 'tap';
import { MemoryNetwork } from '../../raft/memory-transport.ts';
import { MemoryStorage } from '../../raft/memory-storage.ts';
import type { RaftNode } from '../../raft/node.ts';
import type { Entry, HardState } from '../../raft/types.ts';
import { openThreeVoters } from '../support/memory-cluster.ts';
import type { MemoryMember } from '../support/memory-cluster.ts';
import { waitFor } from '../support/ports.ts';

const COMMON = { tickMs: 10, snapshotCheckMs: 3_600_000 };

/** Storage whose write of an entry with the given data waits until released. */
class GatedStorage extends MemoryStorage {
  #hold = '';
  #release: (() => void) | null = null;
  holding = false;
  hold(data: string): void {
    this.#hold = data;
  }
  release(): void {
    this.#release?.();
  }
  override async save(hardState: HardState | null, entries: Entry[]): Promise<void> {
    if (this.#hold && entries.some((e) => Buffer.from(e.data).toString() === this.#hold)) {
      this.#hold = '';
      this.holding = true;
      await new Promise<void>((r) => (this.#release = r));
      this.holding = false;
    }
    await super.save(hardState, entries);
  }
}

t.test("the leader answers a proposal the followers committed, and a read they confirmed, while its own write is held", async (t) => {
  const { leader, followers } = await openThreeVoters(t, new MemoryNetwork(), () => new GatedStorage(), COMMON);
  const { node: n1, sm: m1, storage } = leader;
  await n1.propose(Buffer.from('second'));

  storage.hold('held');
  let answer: unknown = null;
  let answeredWhileHeld = false;
  const proposal = n1.propose(Buffer.from('held')).then((r) => {
    answer = r.result;
    answeredWhileHeld = storage.holding;
  });
  // A linearizable read asked in the same turn: its heartbeat round leaves with the held write,
  // and the followers' answers confirm it while that write is still in progress.
  const commitAtRead = n1.status().commit;
  let readIndex = -1;
  let readAnsweredWhileHeld = false;
  const read = n1.readBarrier(5_000).then((i) => {
    readIndex = i;
    readAnsweredWhileHeld = storage.holding;
  });
  await waitFor("n1's write of the entry to start", () => storage.holding, 10_000);
  await waitFor('the proposal and the read to be answered', () => answer !== null && readIndex >= 0, 10_000).catch((err: Error) => {
    storage.release();
    throw err;
  });
  t.equal(answer, 'applied held', 'the proposal got its apply result');
  t.ok(answeredWhileHeld, "answered while the leader's own write was still held");
  t.same(m1.applied.slice(-2), ['second', 'held'], 'applied once, in order');
  t.equal(n1.status().applied, n1.status().commit, 'applied caught up with the commit');
  t.ok(readAnsweredWhileHeld, "a read asked with the proposal was answered while the leader's write was still held");
  t.ok(readIndex >= commitAtRead, 'at the commit index it was asked at, or later');

  storage.release();
  await Promise.all([proposal, read]);
  await n1.propose(Buffer.from('after'));
  for (const f of followers) await waitFor('followers to apply', () => f.sm.applied.at(-1) === 'after', 10_000);
  t.same(m1.applied.slice(-3), ['second', 'held', 'after'], 'nothing applied twice after the write ends');
  for (const f of followers) t.same(f.sm.applied.slice(-3), ['second', 'held', 'after'], `${f.node.status().id} has the same state`);
  t.same((await storage.loadEntries(storage.lastIndex(), storage.lastIndex())).map((e) => Buffer.from(e.data).toString()), ['after'], 'the held write landed, then the next');
});

/**
 * Holds the leader's write of a new entry and, once that write has started, asks `reader` for a
 * read barrier (before, a leader started the read's quorum round only at its next Ready, after the
 * write). Returns the read's index and whether it was answered while the write was still held.
 */
async function readDuringHeldWrite(
  leader: MemoryMember<GatedStorage>,
  reader: RaftNode,
): Promise<{ index: number; whileHeld: boolean }> {
  const { node, storage } = leader;
  storage.hold('held');
  const proposal = node.propose(Buffer.from('held'));
  await waitFor("the leader's write of the entry to start", () => storage.holding, 10_000);
  let index = -1;
  let whileHeld = false;
  const read = reader.readBarrier(5_000).then((i) => {
    index = i;
    whileHeld = storage.holding;
  });
  try {
    await waitFor('the read to be answered', () => index >= 0, 2_000);
  } finally {
    storage.release();
  }
  await Promise.all([proposal, read]);
  return { index, whileHeld };
}

t.test("a read asked on the leader after its write started is confirmed while that write is held: the round does not wait for it", async (t) => {
  const { leader } = await openThreeVoters(t, new MemoryNetwork(), () => new GatedStorage(), COMMON);
  const read = await readDuringHeldWrite(leader, leader.node);
  t.ok(read.whileHeld, "answered while the leader's write was still held");
  t.ok(read.index >= 1, `at a committed index (${read.index})`);
});

t.test("a follower's read that reaches the leader during its write is confirmed while that write is held", async (t) => {
  const { leader, followers } = await openThreeVoters(t, new MemoryNetwork(), () => new GatedStorage(), COMMON);
  const n2 = followers[0]!;
  await waitFor('n2 to apply the first entry', () => n2.sm.applied.at(-1) === 'first', 10_000);
  const read = await readDuringHeldWrite(leader, n2.node);
  t.ok(read.whileHeld, "answered while the leader's write was still held");
  t.ok(read.index >= 1, `at a committed index (${read.index})`);
});

t.test("reads are confirmed while the followers' own writes are held: heartbeat answers and read indexes do not wait for an fsync", async (t) => {
  const { leader, followers } = await openThreeVoters(t, new MemoryNetwork(), () => new GatedStorage(), COMMON);
  const n1 = leader.node;
  await n1.propose(Buffer.from('second'));
  const commit = n1.status().commit;
  for (const f of followers) await waitFor('followers to apply', () => f.node.status().applied >= commit, 10_000);

  // Both followers start writing an entry and hold the write: it cannot commit.
  for (const f of followers) f.storage.hold('stuck');
  const stuck = n1.propose(Buffer.from('stuck')).catch(() => undefined);
  const release = (): void => {
    for (const f of followers) f.storage.release();
  };
  try {
    await waitFor("the followers' writes to be held", () => followers.every((f) => f.storage.holding), 10_000);
    // The leader's read needs one follower's heartbeat answer; both are in the middle of a write.
    const leaderRead = await n1.readBarrier(3_000);
    t.ok(leaderRead >= commit, "the leader's read is confirmed");
    t.ok(followers.every((f) => f.storage.holding), "while both followers' writes were still held");
    // A follower's own read: its question to the leader and the answer pass its write too.
    const followerRead = await followers[0]!.node.readBarrier(3_000);
    t.ok(followerRead >= commit, "a follower's read is confirmed");
    t.ok(followers[0]!.storage.holding, 'while its own write was still held');
    t.equal(n1.status().commit, commit, 'and the held entry is not committed');
  } finally {
    release();
  }
  await stuck;
  await waitFor('the held entry to commit once written', () => n1.status().commit > commit, 10_000);
});
