// One test per Raft rule the pure core must keep (elections, log replication, commitment, reads,
// flow control, snapshots), each driven through the small in-process harness.

import t from 'tap';
import { RaftCore } from '../../raft/core.ts';
import { sendableDuringWrite } from '../../raft/persist-rules.ts';
import { emptyMessage } from '../../raft/types.ts';
import type { Entry, Message, MessageType, NodeId } from '../../raft/types.ts';
import { CoreHarness, addrOf, confEntry, dataEntry, initialLog, mulberry32, errorCode } from '../support/core-harness.ts';

function msg(type: MessageType, from: NodeId, to: NodeId, term: number, fields: Partial<Message> = {}): Message {
  return { ...emptyMessage(type, from, to, term), ...fields };
}

/** A 3-voter cluster with n1 elected at term 2 and everything delivered. */
function three(opts: Parameters<typeof CoreHarness.cluster>[1] = {}): CoreHarness {
  const h = CoreHarness.cluster(['n1', 'n2', 'n3'], opts);
  h.elect('n1');
  return h;
}

function since(h: CoreHarness, mark: number): string[] {
  return h.trace.slice(mark);
}

function count(lines: string[], re: RegExp): number {
  return lines.filter((l) => re.test(l)).length;
}

const code = errorCode;

/**
 * Each follower that `sent` addresses with a message of `type` steps it, handles its Ready at once
 * (writes, answers) and the leader steps the answers: what happens while the leader's own Ready
 * is still being written.
 */
function followersAnswer(h: CoreHarness, leader: RaftCore, sent: Message[], type: MessageType): void {
  for (const m of sent.filter((x) => x.type === type)) {
    const f = h.core(m.to);
    f.step(m);
    const frd = f.ready();
    f.advance(frd);
    for (const r of frd.messages) if (r.to === leader.id) leader.step(r);
  }
}

// ---- elections ----------------------------------------------------------------------------------

t.test('a candidate with a shorter log cannot win (§5.4.1)', async (t) => {
  const base = initialLog(['n1', 'n2', 'n3']);
  const longer = [...base, dataEntry(6, 2, 'x')];
  const h = new CoreHarness();
  h.addNode('n1', { hardState: { term: 2, vote: '', commit: 5 }, snapshot: null, entries: longer });
  h.addNode('n2', { hardState: { term: 2, vote: '', commit: 5 }, snapshot: null, entries: base });
  h.addNode('n3', { hardState: { term: 2, vote: '', commit: 5 }, snapshot: null, entries: longer });
  h.tick('n2', 60);
  t.equal(h.leader(), '', 'n2 never wins');
  t.equal(h.core('n2').status().term, 2, 'its failed pre-votes never raised a term');
  t.ok(count(h.trace, /n1 -> n2 preVoteResp term=2 rejected/) > 0, 'n1 refuses the pre-vote');
  t.ok(count(h.trace, /n3 -> n2 preVoteResp term=2 rejected/) > 0, 'n3 refuses the pre-vote');
  // Even a real vote (no pre-vote) is refused.
  h.inject(msg('vote', 'n2', 'n1', 3, { index: 5, logTerm: 1 }));
  h.deliverAll();
  t.match(h.trace.at(-1), /n1 -> n2 voteResp term=3 rejected/);
  h.elect('n3');
  t.equal(h.leader(), 'n3', 'a node with the longest log wins');
});

t.test('a candidate with a longer log of an older term cannot win (§5.4.1)', async (t) => {
  // The voter ends at 6/3; the candidate at 8/1 (three more entries, all of term 1).
  const newShort = [...initialLog(['n1', 'n2', 'n3']), dataEntry(6, 3, 'z')];
  const core = new RaftCore({ id: 'n1', random: mulberry32(1) }, { hardState: { term: 3, vote: '', commit: 5 }, snapshot: null, entries: newShort });
  core.step(msg('vote', 'n2', 'n1', 4, { index: 8, logTerm: 1 }));
  const rd = core.ready();
  t.match(rd.messages, [{ type: 'voteResp', to: 'n2', reject: true }]);
  t.same(rd.hardState, { term: 4, vote: '', commit: 5 }, 'the term moves on but no vote is recorded');
});

t.test('a node votes at most once per term, also after a restart from its hard state', async (t) => {
  const h = CoreHarness.cluster(['n1', 'n2', 'n3']);
  const vote = (from: NodeId): Message => msg('vote', from, 'n3', 2, { index: 5, logTerm: 1 });
  h.inject(vote('n1'));
  h.deliverAll();
  t.match(h.trace.at(-1), /n3 -> n1 voteResp term=2 granted/);
  t.same(h.store('n3').hardState, { term: 2, vote: 'n1', commit: 5 }, 'the vote is persisted');
  h.inject(vote('n2'));
  h.deliverAll();
  t.match(h.trace.at(-1), /n3 -> n2 voteResp term=2 rejected/, 'a second candidate in the same term is refused');
  h.crash('n3');
  h.restart('n3');
  h.inject(vote('n2'));
  h.deliverAll();
  t.match(h.trace.at(-1), /n3 -> n2 voteResp term=2 rejected/, 'still refused after a restart');
  h.inject(vote('n1'));
  h.deliverAll();
  t.match(h.trace.at(-1), /n3 -> n1 voteResp term=2 granted/, 'the same candidate may ask again');
});

t.test('pre-vote does not bump the term of a partitioned node', async (t) => {
  const h = three();
  const term = h.core('n1').status().term;
  h.isolate('n3');
  h.tickAll(100);
  t.equal(h.core('n3').status().term, term, 'the isolated node keeps its term');
  t.ok(count(h.trace, /n3 -> n\d preVote /) > 0, 'it did try to campaign');
  t.equal(count(h.trace, /n3 -> n\d vote /), 0, 'but never reached a real election');
  t.equal(h.leader(), 'n1');
  t.equal(h.core('n1').status().term, term);
});

t.test('check-quorum makes an isolated leader step down', async (t) => {
  const h = three();
  const term = h.core('n1').status().term;
  h.isolate('n1');
  h.tick('n1', 30);
  const s = h.core('n1').status();
  t.equal(s.role, 'follower');
  t.equal(s.leader, '');
  t.equal(s.term, term, 'stepping down does not change the term');
  t.ok(h.trace.includes(`n1 is follower term=${term}`));
});

t.test('followers ignore votes while they hear from a leader', async (t) => {
  const h = three();
  const mark = h.trace.length;
  h.inject(msg('preVote', 'n3', 'n2', 3, { index: 99, logTerm: 2 }));
  h.inject(msg('vote', 'n3', 'n2', 3, { index: 99, logTerm: 2 }));
  h.deliverAll();
  t.equal(count(since(h, mark), /n2 -> n3/), 0, 'no answer at all');
  t.equal(h.core('n2').status().term, 2, 'term unchanged');
  t.equal(h.core('n2').status().leader, 'n1');
  // A leadership-transfer vote (ctx = 1) is not ignored.
  h.inject(msg('vote', 'n3', 'n2', 3, { index: 99, logTerm: 2, ctx: 1 }));
  h.deliverAll();
  t.ok(since(h, mark).includes('n2 -> n3 voteResp term=3 granted'));
});

t.test('a leader appends a no-op of its term on election', async (t) => {
  const h = three();
  const lv = h.core('n1').logView();
  const last = lv.entries.at(-1)!;
  t.equal(last.type, 'noop');
  t.equal(last.term, 2);
  t.equal(lv.committed, last.index, 'and commits it');
  for (const id of ['n1', 'n2', 'n3']) t.equal(h.store(id).applied.at(-1)?.type, 'noop', `${id} applied it`);
});

// ---- log replication and commitment -----------------------------------------------------------

t.test('an old-term entry on a majority is not committed until an entry of the current term is (Figure 8)', async (t) => {
  const ids = ['s1', 's2', 's3', 's4', 's5'];
  const base = initialLog(ids); // 9 entries, term 1, committed
  const h = new CoreHarness({ cfg: { maxEntriesPerMsg: 1 } });
  const add = (id: NodeId, term: number, extra: Entry[]): void => {
    h.addNode(id, { hardState: { term, vote: '', commit: 9 }, snapshot: null, entries: [...base, ...extra] });
  };
  add('s1', 4, [dataEntry(10, 2, 'from-term-2')]); // (a): s1 led term 2 and reached s2
  add('s2', 4, [dataEntry(10, 2, 'from-term-2')]);
  add('s3', 4, []);
  add('s4', 4, []);
  add('s5', 3, [dataEntry(10, 3, 'from-term-3')]); // (b): s5 led term 3 alone
  // (c): s1 leads term 5 and gets index 10 onto s3 — a majority with s1, s2 — but its own no-op
  // (index 11, term 5) reaches only s2: not a majority.
  h.drop([], '*', 's5');
  h.drop(['app'], 's1', 's4');
  h.rule((m) =>
    m.type === 'app' && m.to === 's3' && m.entries.some((e) => e.term === 5) && h.core('s3').status().lastIndex >= 10
      ? 'drop'
      : undefined,
  );
  h.elect('s1');
  h.tick('s1', 3);
  t.equal(h.core('s3').logView().entries.at(-1)?.term, 2, 's3 holds the term-2 entry');
  t.equal(h.core('s1').status().peers.s3!.match, 10, 'and the leader knows it');
  t.equal(h.core('s1').status().commit, 9, 'replicated on s1, s2, s3 yet not committed');
  // (d): s1 crashes; s5 can win with s3 and s4 and overwrite index 10 everywhere.
  h.crash('s1');
  h.heal();
  for (const id of ['s2', 's3', 's4']) {
    h.crash(id);
    h.restart(id);
  }
  h.elect('s5');
  h.tick('s5', 3);
  for (const id of ['s2', 's3', 's4', 's5']) {
    t.equal(h.core(id).logView().entries.find((e) => e.index === 10)?.term, 3, `${id} has s5's entry at 10`);
    t.ok(h.core(id).status().commit >= 10, `${id} committed it`);
  }
  h.restart('s1');
  h.tickAll(5);
  t.equal(h.core('s1').logView().entries.find((e) => e.index === 10)?.term, 3, 's1 lost its uncommitted entry');
  t.notOk(
    h.store('s1').applied.some((a) => a.data === 'from-term-2'),
    'no node ever applied the term-2 entry',
  );
});

t.test('an old-term entry commits together with the first entry of the current term (Figure 8 e)', async (t) => {
  const ids = ['s1', 's2', 's3', 's4', 's5'];
  const base = initialLog(ids);
  const h = new CoreHarness();
  for (const id of ids) {
    const extra = id === 's1' || id === 's2' ? [dataEntry(10, 2, 'from-term-2')] : [];
    h.addNode(id, { hardState: { term: 4, vote: '', commit: 9 }, snapshot: null, entries: [...base, ...extra] });
  }
  h.elect('s1');
  t.equal(h.core('s1').status().commit, 11, 'index 10 (term 2) and the no-op (term 5) commit at once');
  t.same(h.appliedData('s3'), ['from-term-2']);
});

t.test('a follower drops a conflicting suffix and takes the leader log (log matching)', async (t) => {
  const base = initialLog(['n1', 'n2', 'n3']);
  // n2 led term 2 and appended entries nobody else has; n1 and n3 hold two entries of term 3.
  const stale = [
    dataEntry(6, 2, 'stale-a'),
    confEntry(7, 2, { op: 'addLearner', id: 'n9', addr: addrOf('n9') }),
    dataEntry(8, 2, 'stale-b'),
  ];
  const newer = [dataEntry(6, 3, 'x'), dataEntry(7, 3, 'y')];
  const h = new CoreHarness();
  h.addNode('n1', { hardState: { term: 3, vote: '', commit: 5 }, snapshot: null, entries: [...base, ...newer] });
  h.addNode('n2', { hardState: { term: 2, vote: 'n2', commit: 5 }, snapshot: null, entries: [...base, ...stale] });
  h.addNode('n3', { hardState: { term: 3, vote: '', commit: 5 }, snapshot: null, entries: [...base, ...newer] });
  t.same(h.core('n2').membership().learners, ['n9'], 'the uncommitted conf entry is in effect on n2');
  h.elect('n1');
  h.propose('n1', 'fresh');
  h.deliverAll();
  t.ok(h.trace.includes('n2 -> n1 appResp term=4 reject index=7 hint=7/2'), 'n2 rejects the probe and hints at its term');
  t.ok(h.trace.includes('n1 -> n2 app term=4 prev=5/1 ents=3 commit=5'), 'the leader jumps back past the whole term-2 suffix');
  const leaderLog = h.core('n1').logView().entries.map((e) => `${e.index}/${e.term}`);
  t.same(
    h.core('n2').logView().entries.map((e) => `${e.index}/${e.term}`),
    leaderLog,
    'identical logs',
  );
  t.same(
    h.store('n2').entries.map((e) => `${e.index}/${e.term}`),
    leaderLog,
    'the stored log was rewritten too',
  );
  t.same(h.core('n2').membership().learners, [], 'the truncated conf entry no longer applies');
  t.same(h.appliedData('n2'), ['x', 'y', 'fresh']);
});

t.test('stale appResp, voteResp and heartbeatResp delivered late change nothing', async (t) => {
  const h = three();
  for (let i = 0; i < 3; i++) h.propose('n1', `v${i}`);
  h.deliverAll();
  const before = h.core('n1').status();
  t.equal(before.peers.n2!.match, 9);
  h.inject(msg('appResp', 'n2', 'n1', 2, { index: 6 }));
  h.inject(msg('appResp', 'n2', 'n1', 2, { index: 7, reject: true, hint: 5, hintTerm: 1 }));
  h.inject(msg('appResp', 'n2', 'n1', 1, { index: 3 }));
  h.inject(msg('voteResp', 'n3', 'n1', 2, { reject: true }));
  h.inject(msg('voteResp', 'n2', 'n1', 1));
  h.inject(msg('preVoteResp', 'n3', 'n1', 2, { reject: true }));
  h.inject(msg('heartbeatResp', 'n2', 'n1', 1, { ctx: 99 }));
  h.deliverAll();
  const after = h.core('n1').status();
  t.equal(after.role, 'leader');
  t.equal(after.term, before.term);
  t.equal(after.commit, before.commit);
  t.same(after.peers.n2, before.peers.n2, 'progress of n2 unchanged');
  // A heartbeatResp with an old read context does not release a newer read.
  h.hold(['heartbeatResp']);
  h.core('n1').readIndex(1);
  h.deliverAll();
  h.inject(msg('heartbeatResp', 'n2', 'n1', 2, { ctx: 0 }));
  h.inject(msg('heartbeatResp', 'n3', 'n1', 2, { ctx: 0 }));
  h.deliverAll();
  t.same(h.store('n1').readStates, [], 'not released by acknowledgements of an older round');
  h.heal();
  h.release();
  h.deliverAll();
  t.same(h.store('n1').readStates, [{ ctx: 1, index: 9 }]);
});

t.test('reordered and duplicated appends leave the follower log intact', async (t) => {
  const h = three();
  h.hold(['app'], 'n1', 'n2');
  for (let i = 0; i < 4; i++) {
    h.propose('n1', `v${i}`);
    h.deliverAll();
  }
  const held = [...h.held];
  h.heal();
  h.release(() => true, { reverse: true });
  h.deliverAll();
  h.tick('n1', 3);
  t.same(h.appliedData('n2'), ['v0', 'v1', 'v2', 'v3']);
  const lastIndex = h.core('n2').status().lastIndex;
  for (const m of held) h.inject(m); // duplicates of every old append
  h.deliverAll();
  t.equal(h.core('n2').status().lastIndex, lastIndex, 'a late old append does not truncate');
  t.same(h.core('n2').logView().entries.map((e) => e.term), h.core('n1').logView().entries.map((e) => e.term));
});

t.test('what an acknowledgement commits during the leader\'s own write is taken once (takeCommitted) and left out of the next Ready', async (t) => {
  const h = three();
  const n1 = h.core('n1');
  const { index } = h.propose('n1', 'a');
  const rd = n1.ready(); // the leader starts writing 'a' and sends it
  t.same(rd.entries.map((e) => e.index), [index], "the Ready hands out 'a' for writing");
  t.same(n1.takeCommitted(), [], 'nothing committed yet');
  // Both followers write and acknowledge it before the leader's own write ends.
  followersAnswer(h, n1, rd.messages, 'app');
  t.equal(n1.status().commit, index, 'committed on the followers while the leader still writes');
  t.same(n1.takeCommitted().map((e) => e.index), [index], 'taken during the write');
  t.equal(n1.status().applied, index, 'and counted as handed to the state machine');
  t.same(n1.takeCommitted(), [], 'taken once');
  n1.advance(rd);
  const next = n1.ready();
  t.notOk(next.committed.some((e) => e.index === index), 'the next Ready leaves it out');
  n1.advance(next);
  t.notOk(n1.hasReady(), 'and nothing is left pending for it');
});

t.test('a follower takes only committed entries it has been handed to write', async (t) => {
  const h = new CoreHarness();
  const n2 = h.addNode('n2', { hardState: { term: 2, vote: '', commit: 5 }, snapshot: null, entries: initialLog(['n1', 'n2', 'n3']) });
  n2.advance(n2.ready());
  // Entry 6 arrives already committed by the leader: it is applied with the Ready that writes it.
  n2.step(msg('app', 'n1', 'n2', 2, { index: 5, logTerm: 1, entries: [dataEntry(6, 2, 'x')], commit: 6 }));
  t.equal(n2.status().commit, 6);
  t.same(n2.takeCommitted(), [], 'committed, but not handed out for writing yet');
  const rd6 = n2.ready();
  t.same(rd6.entries.map((e) => e.index), [6]);
  t.same(rd6.committed.map((e) => e.index), [6], 'the Ready that writes it applies it');
  n2.advance(rd6);
  // Entry 7 arrives uncommitted; during its write, entry 8 arrives with commit 7.
  n2.step(msg('app', 'n1', 'n2', 2, { index: 6, logTerm: 2, entries: [dataEntry(7, 2, 'y')], commit: 6 }));
  const rd7 = n2.ready();
  t.same(rd7.committed, [], 'entry 7 not committed yet');
  n2.step(msg('app', 'n1', 'n2', 2, { index: 7, logTerm: 2, entries: [dataEntry(8, 2, 'z')], commit: 8 }));
  t.equal(n2.status().commit, 8);
  t.same(n2.takeCommitted().map((e) => e.index), [7], 'entry 7 (being written) is taken; entry 8 (not handed out) is not');
  n2.advance(rd7);
  const rd8 = n2.ready();
  t.same(rd8.entries.map((e) => e.index), [8]);
  t.same(rd8.committed.map((e) => e.index), [8], 'the next Ready applies only entry 8');
});

// ---- linearizable reads -----------------------------------------------------------------------

t.test('many concurrent reads share one heartbeat round', async (t) => {
  const h = three();
  const sentBefore = h.sent.length;
  for (let ctx = 1; ctx <= 100; ctx++) h.core('n1').readIndex(ctx);
  h.deliverAll();
  const heartbeats = h.sent.slice(sentBefore).filter((m) => m.type === 'heartbeat');
  t.equal(heartbeats.length, 2, 'one heartbeat per follower');
  const commit = h.core('n1').status().commit;
  t.equal(h.store('n1').readStates.length, 100);
  t.ok(h.store('n1').readStates.every((r) => r.index === commit));
});

t.test('reads issued during a round wait for the next one, which also batches them', async (t) => {
  const h = three();
  h.hold(['heartbeatResp']);
  h.core('n1').readIndex(1);
  h.deliverAll();
  for (let ctx = 2; ctx <= 20; ctx++) h.core('n1').readIndex(ctx);
  h.deliverAll();
  const mark = h.sent.length;
  h.heal();
  h.release();
  h.deliverAll();
  t.same(
    h.store('n1').readStates.map((r) => r.ctx),
    Array.from({ length: 20 }, (_, i) => i + 1),
  );
  t.equal(h.sent.slice(mark).filter((m) => m.type === 'heartbeat').length, 2, 'one more round for the 19 queued');
});

t.test('a follower obtains its read index from the leader', async (t) => {
  const h = three();
  h.propose('n1', 'x');
  h.deliverAll();
  const mark = h.trace.length;
  h.core('n2').readIndex(42);
  h.deliverAll();
  t.match(since(h, mark), [/n2 -> n1 readIndex term=2 ctx=42/]);
  t.same(h.store('n2').readStates, [{ ctx: 42, index: h.core('n1').status().commit }]);
});

t.test("a read confirmed during the leader's own write is taken once (takeReadStates) and left out of the next Ready", async (t) => {
  const h = three();
  const n1 = h.core('n1');
  const commitBefore = n1.status().commit;
  h.propose('n1', 'a');
  n1.readIndex(7);
  const rd = n1.ready(); // the leader starts writing 'a'; the read's heartbeat round leaves with it
  const beats = rd.messages.filter((m) => m.type === 'heartbeat');
  t.equal(beats.length, 2, 'one heartbeat per follower');
  t.same(n1.takeReadStates(), [], 'not confirmed yet');
  followersAnswer(h, n1, beats, 'heartbeat');
  t.same(n1.takeReadStates(), [{ ctx: 7, index: commitBefore }], "confirmed by the followers' answers while the leader still writes");
  t.same(n1.takeReadStates(), [], 'taken once');
  n1.advance(rd);
  const next = n1.ready();
  t.same(next.readStates, [], 'the next Ready leaves it out');
  n1.advance(next);
});

t.test("a read asked during the leader's own write starts its round then (startReadRound), not at the next Ready", async (t) => {
  const h = three();
  const n1 = h.core('n1');
  h.propose('n1', 'a');
  const rd = n1.ready(); // the leader starts writing 'a'
  t.notOk(n1.startReadRound(), 'no read queued: no round');
  const commitAtRead = n1.status().commit;
  n1.readIndex(8);
  n1.readIndex(9);
  t.ok(n1.startReadRound(), 'the queued reads start one round');
  t.notOk(n1.startReadRound(), 'only one round in flight');
  const beats = n1.takeMessages((m) => sendableDuringWrite(m, n1.status().term));
  t.same(beats.map((m) => m.type), ['heartbeat', 'heartbeat'], 'its heartbeats may leave during the write');
  followersAnswer(h, n1, beats, 'heartbeat');
  t.same(n1.takeReadStates(), [{ ctx: 8, index: commitAtRead }, { ctx: 9, index: commitAtRead }], 'both confirmed while the leader still writes');
  n1.advance(rd);
  const next = n1.ready();
  t.same(next.readStates, [], 'the next Ready leaves them out');
  t.notOk(next.messages.some((m) => m.type === 'heartbeat'), 'and starts no second round for them');
  n1.advance(next);
});

t.test('a leader that has not committed in its term delays reads', async (t) => {
  const h = CoreHarness.cluster(['n1', 'n2', 'n3']);
  h.hold(['appResp']);
  h.elect('n1');
  h.core('n1').readIndex(7);
  h.deliverAll();
  t.equal(h.core('n1').status().commit, 5, 'the no-op is not committed');
  t.same(h.store('n1').readStates, [], 'the read waits');
  h.heal();
  h.release();
  h.deliverAll();
  t.same(h.store('n1').readStates, [{ ctx: 7, index: 6 }], 'served at the no-op once it commits');
});

t.test('reads are dropped when the leader steps down', async (t) => {
  const h = three();
  h.core('n2').readIndex(5); // will be forwarded while n1 is cut off
  h.isolate('n1');
  h.core('n1').readIndex(1);
  h.core('n1').readIndex(2);
  h.deliverAll();
  t.same(h.store('n1').readStates, []);
  h.tick('n1', 30);
  t.equal(h.core('n1').status().role, 'follower');
  t.same([...h.store('n1').droppedReads].sort(), [1, 2]);
  // The follower's forwarded read is dropped once it learns of a new term.
  h.tickAll(40);
  t.not(h.leader(), '');
  t.same(h.store('n2').droppedReads, [5]);
  t.same(h.store('n2').readStates, []);
});

t.test('a read on a node that knows no leader is dropped at once', async (t) => {
  const h = CoreHarness.cluster(['n1', 'n2', 'n3']);
  h.core('n2').readIndex(3);
  h.deliverAll();
  t.same(h.store('n2').droppedReads, [3]);
});

// ---- flow control -----------------------------------------------------------------------------

t.test('proposals beyond maxUncommittedBytes fail fast with SIDER_TOO_MANY_UNCOMMITTED', async (t) => {
  const h = three({ cfg: { maxUncommittedBytes: 200 } });
  const undo = h.drop(['app']);
  const payload = 'x'.repeat(64); // 64 + 32 = 96 bytes against the budget
  h.propose('n1', payload);
  h.propose('n1', payload);
  t.equal(code(() => h.propose('n1', payload)), 'SIDER_TOO_MANY_UNCOMMITTED');
  t.equal(h.core('n1').status().uncommittedBytes, 192);
  h.deliverAll();
  undo();
  h.tick('n1', 3);
  t.equal(h.core('n1').status().uncommittedBytes, 0, 'the budget is returned on commit');
  t.doesNotThrow(() => h.propose('n1', payload));
  h.deliverAll();
  t.doesNotThrow(() => h.propose('n1', 'y'.repeat(1000)), 'one oversized entry passes when nothing is pending');
  t.equal(code(() => h.propose('n1', 'z')), 'SIDER_TOO_MANY_UNCOMMITTED', 'but nothing after it');
});

t.test('no more than maxInflight (default 4) appends are in flight to a follower in replicate state', async (t) => {
  const h = three();
  t.equal(h.core('n1').status().peers.n2!.state, 'replicate');
  h.hold(['app'], 'n1', 'n2');
  for (let i = 0; i < 6; i++) {
    h.propose('n1', `v${i}`);
    h.deliverAll();
  }
  const withEntries = h.held.filter((m) => m.entries.length > 0);
  t.equal(withEntries.length, 4, 'only four appends carry entries');
  h.heal();
  h.release();
  h.deliverAll();
  h.tick('n1', 2);
  t.same(h.appliedData('n2'), ['v0', 'v1', 'v2', 'v3', 'v4', 'v5'], 'the rest follow as acknowledgements arrive');
});

t.test('a follower whose in-flight appends were all lost recovers on the next heartbeat', async (t) => {
  const h = three();
  const undo = h.drop(['app'], 'n1', 'n2');
  for (let i = 0; i < 4; i++) {
    h.propose('n1', `v${i}`);
    h.deliverAll();
  }
  undo();
  h.tick('n1', 2);
  t.same(h.appliedData('n2'), ['v0', 'v1', 'v2', 'v3']);
  t.equal(h.core('n1').status().peers.n2!.match, h.core('n1').status().lastIndex);
});

t.test('appends are bounded by maxEntriesPerMsg and maxBytesPerMsg', async (t) => {
  const h = three({ cfg: { maxEntriesPerMsg: 3, maxBytesPerMsg: 400 } });
  const undo = h.isolate('n3');
  for (let i = 0; i < 10; i++) h.propose('n1', `e${i}`);
  h.propose('n1', 'L'.repeat(200)); // 232 bytes
  h.propose('n1', 'M'.repeat(200));
  h.propose('n1', 'H'.repeat(1000)); // larger than the limit on its own
  h.deliverAll();
  undo();
  h.tick('n1', 5);
  const apps = h.sent.filter((m) => m.type === 'app' && m.to === 'n3' && m.entries.length > 0);
  t.ok(apps.length >= 5);
  t.ok(apps.every((m) => m.entries.length <= 3), 'at most 3 entries per message');
  for (const m of apps) {
    const bytes = m.entries.reduce((n, e) => n + e.data.length + 32, 0);
    t.ok(m.entries.length === 1 || bytes <= 400, `message at ${m.index} within 400 bytes (${bytes})`);
  }
  t.ok(apps.some((m) => m.entries.length === 1 && m.entries[0]!.data.length === 1000), 'the oversized entry went alone');
  t.same(h.appliedData('n3'), h.appliedData('n1'));
});

// ---- snapshots --------------------------------------------------------------------------------

t.test('a lagging follower receives a snapshot after compaction and catches up', async (t) => {
  const h = three();
  const undo = h.isolate('n3');
  for (let i = 0; i < 20; i++) h.propose('n1', `v${i}`);
  h.deliverAll();
  h.tick('n1', 2);
  const through = h.compact('n1', 2);
  t.equal(through, h.core('n1').status().commit - 2);
  t.equal(h.core('n1').status().firstIndex, through + 1);
  h.propose('n1', 'after');
  h.deliverAll();
  const mark = h.trace.length;
  undo();
  h.tick('n1', 3);
  const lines = since(h, mark);
  t.ok(count(lines, /n1 -> n3 snap term=2 snap=/) === 1, 'exactly one snapshot sent');
  t.ok(lines.some((l) => /n3 installs snapshot/.test(l)));
  t.same(h.appliedData('n3'), h.appliedData('n1'), 'same state machine');
  t.equal(h.appliedData('n3').at(-1), 'after');
  t.same(h.core('n3').membership(), h.core('n1').membership(), 'membership came with the snapshot');
  t.equal(h.core('n1').status().peers.n3!.state, 'replicate');
  // A restart of n3 starts from its snapshot.
  h.crash('n3');
  h.restart('n3');
  h.tickAll(3);
  t.same(h.appliedData('n3'), h.appliedData('n1'));
});

t.test('the sole voter elects itself on its first tick; a voter with peers waits out the timeout', async (t) => {
  const one = CoreHarness.single('n1');
  one.tick('n1', 1);
  one.deliverAll();
  t.equal(one.core('n1').status().role, 'leader', 'single voter leads after one tick');

  const three = CoreHarness.cluster(['n1', 'n2', 'n3']);
  three.tick('n1', 1);
  three.deliverAll();
  t.equal(three.core('n1').status().role, 'follower', 'one tick is not an election timeout with peers');
});
