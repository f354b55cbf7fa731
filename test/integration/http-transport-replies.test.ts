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
