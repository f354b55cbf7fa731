// What must be durable before what (raft/persist-rules.ts): which writes are synced, and which
// messages may leave while a write is in progress.

import t from 'tap';
import { afterWrite, mustSync, sendableDuringWrite, splitMessages } from '../../raft/persist-rules.ts';
import { emptyMessage } from '../../raft/types.ts';
import type { Message, MessageType, Ready } from '../../raft/types.ts';
import { dataEntry } from '../support/core-harness.ts';

function msg(type: MessageType, term: number): Message {
  return emptyMessage(type, 'n1', 'n2', term);
}

function ready(fields: Partial<Ready>): Ready {
  return { softState: null, hardState: null, snapshot: null, entries: [], messages: [], committed: [], readStates: [], droppedReads: [], membership: null, ...fields };
}

const durable = { term: 3, vote: 'n1' };

t.test('mustSync: entries, a snapshot, or a new term or vote; not a commit index alone', async (t) => {
  t.ok(mustSync(ready({ entries: [dataEntry(5, 3, 'x')] }), durable), 'entries');
  t.ok(mustSync(ready({ hardState: { term: 4, vote: '', commit: 4 } }), durable), 'a new term');
  t.ok(mustSync(ready({ hardState: { term: 3, vote: 'n2', commit: 4 } }), durable), 'a new vote');
  t.notOk(mustSync(ready({ hardState: { term: 3, vote: 'n1', commit: 9 } }), durable), 'only the commit index');
  t.notOk(mustSync(ready({}), durable), 'nothing');
});

t.test('sendableDuringWrite: heartbeats, their answers and read indexes of the durable term only', async (t) => {
  for (const type of ['heartbeat', 'heartbeatResp', 'readIndex', 'readIndexResp'] as const) {
    t.ok(sendableDuringWrite(msg(type, 3), 3), `${type} of the durable term`);
    t.notOk(sendableDuringWrite(msg(type, 4), 3), `${type} of a term not yet durable`);
  }
  for (const type of ['appResp', 'vote', 'voteResp', 'preVoteResp', 'timeoutNow', 'snap', 'app'] as const) {
    t.notOk(sendableDuringWrite(msg(type, 3), 3), `${type} is not`);
  }
});

t.test('splitMessages: what leaves before the write and what after it', async (t) => {
  const messages = [msg('app', 3), msg('appResp', 3), msg('heartbeat', 3), msg('heartbeatResp', 3), msg('readIndexResp', 3), msg('voteResp', 3), msg('readIndex', 3)];
  const { early, late } = splitMessages(ready({ messages, entries: [dataEntry(5, 3, 'x')] }), durable);
  t.same(early.map((m) => m.type), ['app', 'heartbeat', 'heartbeatResp', 'readIndexResp', 'readIndex']);
  t.same(late.map((m) => m.type), ['appResp', 'voteResp']);
  // A Ready that changes the term (or vote): everything waits for the write.
  const newTerm = splitMessages(ready({ messages: [msg('heartbeatResp', 4), msg('app', 4)], hardState: { term: 4, vote: '', commit: 4 } }), durable);
  t.same(newTerm.early, [], 'nothing before a new term is durable');
  t.equal(newTerm.late.length, 2);
});

t.test('afterWrite: the durable vote moves only with a synced hard state', async (t) => {
  const rd = ready({ hardState: { term: 4, vote: 'n3', commit: 4 } });
  t.same(afterWrite(rd, durable, true), { term: 4, vote: 'n3' });
  t.same(afterWrite(rd, durable, false), durable);
  t.same(afterWrite(ready({}), durable, true), durable);
});
