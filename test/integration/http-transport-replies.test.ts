// Replies in the HTTP Raft transport: an answer rides back in the response to the request that asked
// for it, a reply that fails its checks delivers nothing, and senders that do not ask get 204.

import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import t from 'tap';
import { request } from 'undici';
import { encodeMessages } from '../../raft/codec.ts';
import { HttpTransport, RAFT_MESSAGES_PATH } from '../../raft/http-transport.ts';
import type { HttpTransportOptions } from '../../raft/http-transport.ts';
import type { TransportReport } from '../../raft/ports.ts';
import { emptyMessage } from '../../raft/types.ts';
import type { Message, NodeId } from '../../raft/types.ts';

const KEY = 'replies-test-secret-key-0123456789';
const CLUSTER = 'cluster-r';

interface Node {
  transport: HttpTransport;
  delivered: Message[];
  reports: TransportReport[];
  /** Calls `answer` for every delivered message (to reply from inside deliver, as a driver would later). */
  onDeliver: ((m: Message) => void) | null;
}

async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

async function startNode(tt: { teardown: (fn: () => unknown) => void }, opts: Partial<HttpTransportOptions> & { id: NodeId }): Promise<Node> {
  const transport = new HttpTransport({ clusterId: CLUSTER, listen: '127.0.0.1:0', clusterKey: KEY, ...opts });
  tt.teardown(() => transport.close());
  const node: Node = { transport, delivered: [], reports: [], onDeliver: null };
  await transport.start(
    (m) => {
      node.delivered.push(m);
      node.onDeliver?.(m);
    },
    (r) => node.reports.push(r),
  );
  return node;
}

function msg(type: Message['type'], from: NodeId, to: NodeId, ctx = 0): Message {
  const m = emptyMessage(type, from, to, 3);
  m.ctx = ctx;
  return m;
}

t.test('an answer travels back in the response, even when its destination cannot be reached directly', async (t) => {
  const a = await startNode(t, { id: 'a' });
  const b = await startNode(t, { id: 'b' });
  a.transport.setPeers({ b: b.transport.address() });
  // b is told a wrong address for a: a request of b's own could never arrive.
  b.transport.setPeers({ a: '127.0.0.1:1' });
  b.onDeliver = (m) => {
    if (m.type === 'heartbeat') setImmediate(() => b.transport.send(msg('heartbeatResp', 'b', 'a', m.ctx)));
  };
  a.transport.send(msg('heartbeat', 'a', 'b', 41));
  await until('the answer', () => a.delivered.length === 1);
  t.equal(a.delivered[0]!.type, 'heartbeatResp');
  t.equal(a.delivered[0]!.ctx, 41, 'it is the answer to the heartbeat');
  t.same(b.reports, [], 'b never needed its own request to a');
});

t.test('a request nobody answers is released after the reply wait, and the lane moves on', async (t) => {
  const a = await startNode(t, { id: 'a' });
  const b = await startNode(t, { id: 'b', replyWaitMs: 20 });
  a.transport.setPeers({ b: b.transport.address() });
  b.transport.setPeers({ a: a.transport.address() });
  // The control lane has one request in flight: each heartbeat can leave only once the request
  // before it was answered, and b never sends anything back.
  for (let i = 1; i <= 5; i++) {
    a.transport.send(msg('heartbeat', 'a', 'b', i));
    await until(`heartbeat ${i} at b`, () => b.delivered.length === i);
  }
  t.same(
    b.delivered.map((m) => m.ctx),
    [1, 2, 3, 4, 5],
  );
  t.same(a.reports, [], 'no failure: each held request was answered 204 when the wait ran out');
  b.transport.send(msg('heartbeatResp', 'b', 'a', 5));
  await until('delivery to a by its own request', () => a.delivered.length === 1);
});

t.test('a reply with a bad signature delivers nothing and counts as a failed send', async (t) => {
  const a = await startNode(t, { id: 'a' });
  const answer = encodeMessages([msg('heartbeatResp', 'b', 'a', 9)]);
  const fake = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const timestamp = String(Date.now());
      const auth = createHmac('sha256', 'not-the-cluster-key-0123456789').update(`reply\n${CLUSTER}\nb\na\n${timestamp}\n`).update(answer).digest('hex');
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-sider-cluster': CLUSTER, 'x-sider-from': 'b', 'x-sider-timestamp': timestamp, 'x-sider-auth': auth });
      res.end(answer);
    });
  });
  await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => fake.close(() => resolve())));
  const addr = fake.address();
  a.transport.setPeers({ b: `127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}` });
  a.transport.send(msg('heartbeat', 'a', 'b', 9));
  await until('a failure report', () => a.reports.length > 0);
  t.same(a.reports, [{ kind: 'unreachable', to: 'b' }]);
  t.same(a.delivered, [], 'the forged answer was not delivered');
});

t.test('a sender that does not ask for replies gets 204 and answers take their own request', async (t) => {
  const b = await startNode(t, { id: 'b', replyWaitMs: 1000 });
  b.transport.setPeers({ a: '127.0.0.1:1' });
  b.onDeliver = (m) => {
    if (m.type === 'heartbeat') setImmediate(() => b.transport.send(msg('heartbeatResp', 'b', 'a', m.ctx)));
  };
  const body = encodeMessages([msg('heartbeat', 'a', 'b', 5)]);
  const timestamp = String(Date.now());
  const res = await request(`http://${b.transport.address()}${RAFT_MESSAGES_PATH}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/octet-stream',
      'x-sider-cluster': CLUSTER,
      'x-sider-from': 'a',
      'x-sider-timestamp': timestamp,
      'x-sider-auth': createHmac('sha256', KEY).update(`${CLUSTER}\na\n\n${timestamp}\n`).update(body).digest('hex'),
    },
    body,
    signal: AbortSignal.timeout(5_000),
  });
  const text = await res.body.text();
  t.equal(res.statusCode, 204, 'no reply without x-sider-reply');
  t.equal(text, '');
  t.equal(b.delivered.length, 1);
  await until('the answer tried its own request', () => b.reports.length > 0);
  t.same(b.reports, [{ kind: 'unreachable', to: 'a' }], 'the answer went to the (unreachable) address of a, not into the response');
});

/** An append of entries from..to (index from-1 precedes them). */
function append(from: NodeId, to: NodeId, first: number, last: number): Message {
  const m = msg('app', from, to);
  m.index = first - 1;
  m.logTerm = 3;
  for (let i = first; i <= last; i++) m.entries.push({ index: i, term: 3, type: 'normal', data: new Uint8Array([i & 255]), rid: '' });
  return m;
}

function appendAck(from: NodeId, to: NodeId, index: number): Message {
  const m = msg('appResp', from, to);
  m.index = index;
  return m;
}

t.test('one acknowledgement answers every held request whose appends it covers, and no other', async (t) => {
  const a = await startNode(t, { id: 'a', bulkConnections: 2 });
  // Without the release, a covered request would stay held for this long.
  const b = await startNode(t, { id: 'b', replyWaitMs: 1000 });
  a.transport.setPeers({ b: b.transport.address() });
  // b can reach a only through held responses.
  b.transport.setPeers({ a: '127.0.0.1:1' });
  // Two appends, each in a request of its own (one per turn), on a's two bulk connections.
  a.transport.send(append('a', 'b', 1, 10));
  await until('append 1..10 at b', () => b.delivered.length === 1);
  a.transport.send(append('a', 'b', 11, 20));
  await until('append 11..20 at b', () => b.delivered.length === 2);
  // b wrote both and acknowledges once (as a follower does for appends handled in one write).
  b.transport.send(appendAck('b', 'a', 20));
  await until('the acknowledgement at a', () => a.delivered.length === 1);
  t.equal(a.delivered[0]!.index, 20);
  // Both connections are free again: two more appends, in requests of their own, reach b at once
  // (the second would wait out the 1 s reply wait on a connection still held otherwise).
  const sent = Date.now();
  a.transport.send(append('a', 'b', 21, 30));
  await until('append 21..30 at b', () => b.delivered.length === 3, 900);
  a.transport.send(append('a', 'b', 31, 40));
  await until('append 31..40 at b', () => b.delivered.length === 4, 900);
  t.ok(Date.now() - sent < 900, 'neither waited for a held connection');
  // An acknowledgement of 30 answers the request of 21..30 only: the one of 31..40 stays held for
  // its own, which can reach a no other way.
  b.transport.send(appendAck('b', 'a', 30));
  await until('the acknowledgement of 30 at a', () => a.delivered.length === 2);
  b.transport.send(appendAck('b', 'a', 40));
  await until('the acknowledgement of 40 at a', () => a.delivered.length === 3);
  t.same(
    a.delivered.map((m) => m.index),
    [20, 30, 40],
  );
  t.same(b.reports, [], 'every acknowledgement went back in a held response');
  t.same(a.reports, []);
});
