// Scripted multi-step scenarios for the pure core: membership changes, partitions and rejoins,
// leadership transfer. Each asserts key trace lines and final states, not whole traces.

import t from 'tap';
import type { NodeId } from '../../raft/types.ts';
import { CoreHarness, addrOf, errorCode } from '../support/core-harness.ts';

const code = errorCode;

function count(lines: string[], re: RegExp): number {
  return lines.filter((l) => re.test(l)).length;
}

/** Ticks every node until `pred` holds (at most `max` rounds); returns the rounds it took. */
function tickUntil(h: CoreHarness, pred: () => boolean, max = 200): number {
  for (let i = 0; i < max; i++) {
    if (pred()) return i;
    h.tickAll();
  }
  throw new Error(`condition not reached in ${max} ticks`);
}

function voters(h: CoreHarness, id: NodeId): string[] {
  return [...h.core(id).membership().voters].sort();
}

t.test('a leader commits an entry of its own term before any membership change (Ongaro 2015)', async (t) => {
  const h = CoreHarness.cluster(['n1', 'n2', 'n3']);
  const undo = h.hold(['appResp']);
  h.elect('n1');
  t.equal(h.core('n1').status().commit, 5, 'the no-op is not committed yet');
  t.equal(code(() => h.core('n1').proposeConfChange({ op: 'addLearner', id: 'n4', addr: addrOf('n4') })), 'SIDER_CONF_CHANGE_PENDING');
  t.doesNotThrow(() => h.propose('n1', 'data'), 'ordinary proposals are accepted meanwhile');
  undo();
  h.release();
  h.deliverAll();
  t.equal(h.core('n1').status().commit, 7);
  h.addNode('n4');
  h.addNode('n5');
  t.doesNotThrow(() => h.core('n1').proposeConfChange({ op: 'addLearner', id: 'n4', addr: addrOf('n4') }));
  t.equal(
    code(() => h.core('n1').proposeConfChange({ op: 'addLearner', id: 'n5', addr: addrOf('n5') })),
    'SIDER_CONF_CHANGE_PENDING',
    'only one uncommitted change at a time',
  );
  h.deliverAll();
  t.doesNotThrow(() => h.core('n1').proposeConfChange({ op: 'addLearner', id: 'n5', addr: addrOf('n5') }), 'accepted once the first commits');
  h.deliverAll();
  t.same(h.core('n1').membership().learners, ['n4', 'n5']);
});

t.test('a new leader inherits the uncommitted change and accepts another only after its no-op commits', async (t) => {
  const h = CoreHarness.cluster(['n1', 'n2', 'n3']);
  h.elect('n1');
  h.addNode('n4');
  h.drop(['app'], 'n1', 'n3');
  h.hold(['appResp'], 'n2', 'n1');
  h.core('n1').proposeConfChange({ op: 'addLearner', id: 'n4', addr: addrOf('n4') });
  h.deliverAll();
  t.same(h.core('n2').membership().learners, ['n4'], 'n2 has the change, uncommitted');
  h.crash('n1');
  h.heal();
  h.held = [];
  tickUntil(h, () => h.leader() !== '' && h.leader() !== 'n1');
  const leader = h.leader();
  t.equal(leader, 'n2', 'only n2 has the longest log');
  t.same(h.core('n3').membership().learners, ['n4'], 'the change reached n3 with the new leader');
  t.ok(h.core('n2').status().commit >= 7, 'committed together with the new no-op');
});

t.test('a partitioned node rejoins without disrupting the leader and catches up', async (t) => {
  const h = CoreHarness.cluster(['n1', 'n2', 'n3']);
  h.elect('n1');
  const term = h.core('n1').status().term;
  const undo = h.isolate('n3');
  for (let i = 0; i < 5; i++) h.propose('n1', `v${i}`);
  h.tickAll(100);
  t.equal(h.core('n3').status().term, term, 'pre-vote kept the isolated node at its term');
  t.not(h.core('n3').status().role, 'leader');
  const mark = h.trace.length;
  undo();
  h.tickAll(30);
  t.equal(h.leader(), 'n1', 'the leader is unchanged');
  t.equal(h.core('n1').status().term, term, 'no new term');
  t.notOk(
    h.trace.slice(mark).some((l) => / vote /.test(l) || /is candidate/.test(l)),
    'no election happened after the rejoin',
  );
  t.same(h.appliedData('n3'), ['v0', 'v1', 'v2', 'v3', 'v4'], 'it caught up');
});

t.test('a node restarted with a higher term is brought back without losing committed entries', async (t) => {
  const h = CoreHarness.cluster(['n1', 'n2', 'n3']);
  h.elect('n1');
  h.propose('n1', 'a');
  h.deliverAll();
  // n3 had (say) campaigned without pre-vote and persisted a much higher term.
  h.crash('n3');
  const st = h.store('n3');
  st.hardState = { ...st.hardState!, term: 9, vote: 'n3' };
  h.restart('n3');
  h.tickAll(60);
  const leader = h.leader();
  t.not(leader, '', 'a leader exists');
  t.ok(h.core(leader).status().term > 9, 'the cluster moved past the high term');
  h.propose(leader, 'b');
  h.deliverAll();
  for (const id of ['n1', 'n2', 'n3']) t.same(h.appliedData(id), ['a', 'b'], `${id} applied both`);
});

t.test('a removed node that keeps campaigning does not disrupt the cluster', async (t) => {
  const h = CoreHarness.cluster(['n1', 'n2', 'n3']);
  h.elect('n1');
  const term = h.core('n1').status().term;
  const undo = h.isolate('n3'); // n3 never learns it was removed
  h.core('n1').proposeConfChange({ op: 'remove', id: 'n3' });
  h.deliverAll();
  t.same(voters(h, 'n1'), ['n1', 'n2']);
  t.equal(h.core('n1').status().commit, h.core('n1').status().lastIndex, 'the removal commits without n3');
  h.tickAll(50);
  undo();
  const mark = h.trace.length;
  h.tickAll(100);
  const lines = h.trace.slice(mark);
  t.ok(count(lines, /n3 -> n[12] preVote/) > 0, 'n3 still campaigns');
  t.equal(count(lines, /n[12] -> n3 preVoteResp term=\d+ granted/), 0, 'nobody grants it');
  t.equal(count(lines, /n1 -> n3 (app|heartbeat)/), 0, 'the leader no longer talks to it');
  t.equal(h.leader(), 'n1');
  t.equal(h.core('n1').status().term, term, 'the term did not move');
  h.propose('n1', 'still-works');
  h.deliverAll();
  t.same(h.appliedData('n2'), ['still-works']);
});

t.test('a removed node receives the entry removing it and stops campaigning', async (t) => {
  const h = CoreHarness.cluster(['n1', 'n2', 'n3']);
  h.elect('n1');
  h.core('n1').proposeConfChange({ op: 'remove', id: 'n3' });
  h.deliverAll();
  h.tick('n1');
  t.same(voters(h, 'n3'), ['n1', 'n2'], 'n3 applied its own removal');
  h.isolate('n3');
  const mark = h.trace.length;
  h.tickAll(100);
  t.equal(count(h.trace.slice(mark), /n3 -> /), 0, 'n3 sends nothing');
  t.equal(h.core('n3').status().role, 'follower');
});

t.test('a leader that removes itself leads until the change commits, then steps down', async (t) => {
  const h = CoreHarness.cluster(['n1', 'n2', 'n3']);
  h.elect('n1');
  const term = h.core('n1').status().term;
  const undo = h.hold(['appResp']);
  h.core('n1').proposeConfChange({ op: 'remove', id: 'n1' });
  h.deliverAll();
  t.equal(h.core('n1').status().role, 'leader', 'still leading while the change is uncommitted');
  t.same(voters(h, 'n1'), ['n2', 'n3']);
  t.doesNotThrow(() => h.propose('n1', 'during'), 'and still accepting proposals');
  h.deliverAll();
  undo();
  h.release();
  h.deliverAll();
  t.equal(h.core('n1').status().role, 'follower', 'steps down once it commits');
  t.ok(h.trace.includes(`n1 is follower term=${term}`));
  tickUntil(h, () => h.leader() !== '');
  const leader = h.leader();
  t.ok(leader === 'n2' || leader === 'n3', `${leader} was elected`);
  t.ok(h.core(leader).status().term > term);
  h.propose(leader, 'after');
  h.deliverAll();
  t.same(h.appliedData(leader), ['during', 'after']);
  const mark = h.trace.length;
  h.tickAll(60);
  t.equal(count(h.trace.slice(mark), /n1 -> /), 0, 'the old leader stays quiet');
  t.equal(h.leader(), leader);
});

t.test('a leader that crashes while removing itself from two voters does not deadlock the cluster', async (t) => {
  // Regression: n1 (restarted, its removal uncommitted) held the longest log but, no longer a voter
  // in its latest configuration, never campaigned; n2, still counting n1 as a voter, needed n1's
  // vote and n1 refused it for having a shorter log. No leader could ever be elected.
  const h = CoreHarness.cluster(['n1', 'n2']);
  h.elect('n1');
  h.propose('n1', 'before');
  h.deliverAll();
  const undo = h.drop(['app'], 'n1', 'n2');
  h.core('n1').proposeConfChange({ op: 'remove', id: 'n1' });
  h.deliverAll();
  h.crash('n1');
  undo();
  h.restart('n1');
  t.same(voters(h, 'n1'), ['n2'], 'n1 restarts with its removal in the log');
  t.same(voters(h, 'n2'), ['n1', 'n2'], 'n2 never saw it');
  tickUntil(h, () => h.leader() === 'n2' && voters(h, 'n2').join() === 'n2', 300);
  t.equal(h.core('n1').status().role, 'follower');
  h.propose('n2', 'after');
  h.deliverAll();
  t.same(h.appliedData('n2'), ['before', 'after']);
});

t.test('a leader whose self-removal is cut off by check-quorum does not deadlock the cluster', async (t) => {
  const h = CoreHarness.cluster(['n1', 'n2', 'n3', 'n4']);
  h.elect('n1');
  h.crash('n4'); // one voter of four down: the cluster must still make progress
  const undo = h.drop(['app', 'heartbeat'], 'n1');
  h.core('n1').proposeConfChange({ op: 'remove', id: 'n1' });
  h.tick('n1', 25);
  t.equal(h.core('n1').status().role, 'follower', 'check-quorum made n1 step down with its removal uncommitted');
  undo();
  tickUntil(h, () => h.leader() !== '' && h.leader() !== 'n1' && voters(h, h.leader()).join() === 'n2,n3,n4', 300);
  const leader = h.leader();
  h.propose(leader, 'x');
  h.deliverAll();
  t.same(h.appliedData(leader), ['x']);
});

t.test('leadership transfer catches a lagging target up, then hands over', async (t) => {
  const h = CoreHarness.cluster(['n1', 'n2', 'n3']);
  h.elect('n1');
  const term = h.core('n1').status().term;
  const undo = h.isolate('n3');
  for (let i = 0; i < 5; i++) h.propose('n1', `v${i}`);
  h.tickAll(3);
  undo();
  t.ok(h.core('n3').status().lastIndex < h.core('n1').status().lastIndex, 'n3 lags');
  const last = h.core('n1').status().lastIndex;
  const mark = h.trace.length;
  h.core('n1').transferLeadership('n3');
  t.equal(h.core('n1').status().leadTransferee, 'n3');
  t.equal(code(() => h.propose('n1', 'refused')), 'SIDER_TRANSFER_IN_PROGRESS');
  for (let i = 0; i < 10 && h.leader() !== 'n3'; i++) h.tick('n1');
  t.equal(h.leader(), 'n3', 'the target won');
  const lines = h.trace.slice(mark);
  const timeoutAt = lines.indexOf('n1 -> n3 timeoutNow term=2');
  t.ok(timeoutAt >= 0, 'timeoutNow was sent');
  t.ok(lines.slice(0, timeoutAt).includes(`n3 -> n1 appResp term=2 index=${last}`), 'only after n3 caught up');
  t.ok(lines.includes(`n3 -> n1 vote term=${term + 1} last=${last}/2 transfer`), 'a transfer vote, which n1 must not ignore');
  t.equal(h.core('n3').status().term, term + 1);
  t.equal(h.core('n1').status().role, 'follower');
  h.propose('n3', 'new-leader');
  h.deliverAll();
  t.same(h.appliedData('n1'), ['v0', 'v1', 'v2', 'v3', 'v4', 'new-leader']);
});

t.test('a transfer to an unreachable target aborts after an election timeout', async (t) => {
  const h = CoreHarness.cluster(['n1', 'n2', 'n3']);
  h.elect('n1');
  h.isolate('n3');
  h.core('n1').transferLeadership('n3');
  t.equal(code(() => h.propose('n1', 'x')), 'SIDER_TRANSFER_IN_PROGRESS');
  h.tick('n1', 9);
  t.equal(h.core('n1').status().leadTransferee, 'n3', 'still waiting one tick before the timeout');
  h.tick('n1');
  t.equal(h.core('n1').status().leadTransferee, '', 'aborted');
  t.equal(h.core('n1').status().role, 'leader', 'n1 keeps leading (n2 is still with it)');
  t.doesNotThrow(() => h.propose('n1', 'x'));
});

t.test('a new node joins as a learner, catches up and is promoted automatically', async (t) => {
  const h = CoreHarness.single('n1');
  h.elect('n1');
  for (let i = 0; i < 5; i++) h.propose('n1', `v${i}`);
  h.deliverAll();
  for (const id of ['n2', 'n3']) {
    h.addNode(id);
    h.core('n1').proposeConfChange({ op: 'addLearner', id, addr: addrOf(id) });
    h.deliverAll();
    t.ok(h.core('n1').membership().learners.includes(id), `${id} is a learner first`);
    tickUntil(h, () => h.core('n1').membership().voters.includes(id) && h.core('n1').status().commit === h.core('n1').status().lastIndex, 20);
    t.ok(h.trace.some((l) => l.startsWith(`n1 -> ${id} app`)), `${id} was replicated to`);
  }
  t.same(voters(h, 'n1'), ['n1', 'n2', 'n3']);
  t.same(voters(h, 'n3'), ['n1', 'n2', 'n3'], 'n3 learned the final configuration');
  h.propose('n1', 'last');
  h.deliverAll();
  for (const id of ['n1', 'n2', 'n3']) t.same(h.appliedData(id), ['v0', 'v1', 'v2', 'v3', 'v4', 'last'], `${id} state`);
  // The cluster of three survives the loss of n1.
  h.crash('n1');
  tickUntil(h, () => h.leader() !== '');
  t.ok(['n2', 'n3'].includes(h.leader()));
});

t.test('a learner is promoted only when enabled and reachable, and never campaigns', async (t) => {
  const h = CoreHarness.cluster(['n1', 'n2', 'n3'], { learners: ['n4'], cfg: { autoPromote: false } });
  h.elect('n1');
  h.tickAll(5);
  t.same(h.core('n1').membership().learners, ['n4'], 'no promotion without autoPromote');
  h.crash('n1');
  const mark = h.trace.length;
  h.tickAll(100);
  t.equal(count(h.trace.slice(mark), /n4 -> \S+ (preVote|vote)/), 0, 'n4 never campaigns');
  t.not(h.leader(), 'n4');
  t.not(h.leader(), '');

  const g = CoreHarness.single('n1');
  g.elect('n1');
  g.addNode('n2');
  g.isolate('n2');
  g.core('n1').proposeConfChange({ op: 'addLearner', id: 'n2', addr: addrOf('n2') });
  g.tickAll(30);
  t.same(g.core('n1').membership().learners, ['n2'], 'an unreachable learner stays a learner');
  t.same(g.core('n1').membership().voters, ['n1']);
});

t.test('node IDs are never reused', async (t) => {
  const h = CoreHarness.cluster(['n1', 'n2', 'n3']);
  h.elect('n1');
  h.core('n1').proposeConfChange({ op: 'remove', id: 'n3' });
  h.deliverAll();
  t.same(h.core('n1').membership().removed, ['n3']);
  t.throws(() => h.core('n1').proposeConfChange({ op: 'addLearner', id: 'n3', addr: addrOf('n3') }), {
    code: 'SIDER_CONF_CHANGE_INVALID',
    message: /never reused/,
  });
  t.throws(() => h.core('n1').proposeConfChange({ op: 'bootstrap', id: 'n9', addr: addrOf('n9') }), {
    code: 'SIDER_CONF_CHANGE_INVALID',
  });
});

t.test('a crashed leader is replaced and no committed entry is lost', async (t) => {
  const h = CoreHarness.cluster(['n1', 'n2', 'n3', 'n4', 'n5']);
  h.elect('n1');
  for (let i = 0; i < 3; i++) h.propose('n1', `c${i}`);
  h.deliverAll();
  h.isolate('n1');
  h.propose('n1', 'lost'); // never leaves n1
  h.deliverAll();
  h.crash('n1');
  h.heal();
  tickUntil(h, () => h.leader() !== '');
  const leader = h.leader();
  h.propose(leader, 'next');
  h.deliverAll();
  h.restart('n1');
  h.tickAll(20);
  for (const id of ['n1', 'n2', 'n3', 'n4', 'n5']) t.same(h.appliedData(id), ['c0', 'c1', 'c2', 'next'], `${id} state`);
});

for (const applyBetween of [false, true]) {
  const how = applyBetween ? ', and what they commit applied during the write,' : '';
  t.test(`messages stepped while a Ready is being persisted${how} keep logs and state machines consistent`, async (t) => {
    // The driver steps incoming messages during its disk write, between ready() and advance(); the
    // real one also applies what they commit then (takeCommitted).
    const h = CoreHarness.cluster(['n1', 'n2', 'n3', 'n4', 'n5'], { interleave: true, applyBetween, cfg: { maxEntriesPerMsg: 2 } });
    h.elect('n1');
    for (let round = 0; round < 4; round++) {
      const leader = h.leader();
      const cut = h.isolate(leader);
      for (let i = 0; i < 3; i++) h.propose(leader, `lost-${round}-${i}`); // never replicated: truncated later
      h.deliverAll();
      tickUntil(h, () => h.leader() !== '' && h.leader() !== leader);
      const next = h.leader();
      for (let i = 0; i < 4; i++) h.propose(next, `r${round}-${i}`);
      const readAt = h.core(next).status().commit;
      h.core(next).readIndex(100 + round);
      h.deliverAll();
      const read = h.store(next).readStates.find((r) => r.ctx === 100 + round);
      t.ok(read && read.index >= readAt, `round ${round}: the read is confirmed at or after the commit index it was asked at`);
      cut();
      h.tickAll(15);
    }
    const leader = h.leader();
    const want = h.appliedData(leader);
    t.equal(want.length, 16);
    t.notOk(want.some((d) => d.startsWith('lost')), 'entries of isolated leaders never applied');
    for (const id of ['n1', 'n2', 'n3', 'n4', 'n5']) {
      t.same(h.appliedData(id), want, `${id} state`);
      t.same(
        h.store(id).entries.map((e) => `${e.index}/${e.term}`),
        h.store(leader).entries.map((e) => `${e.index}/${e.term}`),
        `${id} stored log`,
      );
    }
    if (applyBetween) {
      t.ok(h.takenBetween > 0, `entries were applied during writes (${h.takenBetween})`);
      t.ok(h.readsBetween > 0, `reads were confirmed during writes (${h.readsBetween})`);
    }
  });
}
