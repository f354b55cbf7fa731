// The HTTP Raft transport on real loopback sockets: authentication, cluster isolation, body limits,
// bad input, the insecure-loopback rule, and control traffic overtaking a large snapshot.

import { createHmac } from 'node:crypto';
import { Readable } from 'node:stream';
import t from 'tap';
import { request } from 'undici';
import { encodeMessages } from '../../raft/codec.ts';
import { HttpTransport, RAFT_MESSAGES_PATH } from '../../raft/http-transport.ts';
import type { HttpTransportOptions } from '../../raft/http-transport.ts';
import type { TransportReport } from '../../raft/ports.ts';
import { emptyMessage } from '../../raft/types.ts';
import type { Message, NodeId } from '../../raft/types.ts';

const KEY = 'integration-secret-key-0123456789';
const CLUSTER = 'cluster-1';

interface LogLine {
  level: string;
  msg: string;
  fields: Record<string, unknown> | undefined;
}

/** Every line logged by any transport in this file: checked at the end for leaked secrets. */
const allLogs: LogLine[] = [];
/** Signatures sent by hand in this file, which must not appear in logs either. */
const sentSignatures: string[] = [];

interface Node {
  transport: HttpTransport;
  delivered: Message[];
  reports: TransportReport[];
  logs: LogLine[];
  url: string;
}

async function until(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

async function startNode(
  tt: { teardown: (fn: () => unknown) => void },
  opts: Partial<HttpTransportOptions> & { id: NodeId },
): Promise<Node> {
  const logs: LogLine[] = [];
  const transport = new HttpTransport({
    clusterId: CLUSTER,
    listen: '127.0.0.1:0',
    clusterKey: KEY,
    log: (level, msg, fields) => {
      const line = { level, msg, fields };
      logs.push(line);
      allLogs.push(line);
    },
    ...opts,
  });
  tt.teardown(() => transport.close());
  const node: Node = { transport, delivered: [], reports: [], logs, url: '' };
  await transport.start(
    (m) => node.delivered.push(m),
    (r) => node.reports.push(r),
  );
  node.url = `http://${transport.address()}${RAFT_MESSAGES_PATH}`;
  return node;
}

function heartbeat(from: NodeId, to: NodeId, ctx = 1): Message {
  const m = emptyMessage('heartbeat', from, to, 2);
  m.ctx = ctx;
  return m;
}

/** Hand-made requests send no x-sider-from-addr, which the signature then covers as ''. */
function sign(key: string, cluster: string, from: string, timestamp: string, body: Uint8Array): string {
  const sig = createHmac('sha256', key).update(`${cluster}\n${from}\n\n${timestamp}\n`).update(body).digest('hex');
  sentSignatures.push(sig);
  return sig;
}

interface RawOptions {
  body: Uint8Array | Readable;
  /** The bytes signed; defaults to `body` when it is a byte array. */
  signed?: Uint8Array;
  key?: string;
  cluster?: string;
  from?: string;
  /** The sender named in the signature; defaults to `from`. */
  signFrom?: string;
  timestamp?: number;
  method?: 'POST' | 'GET' | 'PUT';
}

/** A hand-made request: returns the status and drains the response. */
async function raw(url: string, o: RawOptions): Promise<number> {
  const from = o.from ?? 'a';
  const cluster = o.cluster ?? CLUSTER;
  const timestamp = String(o.timestamp ?? Date.now());
  const signed = o.signed ?? (o.body instanceof Uint8Array ? o.body : new Uint8Array(0));
  const res = await request(url, {
    method: o.method ?? 'POST',
    headers: {
      'content-type': 'application/octet-stream',
      'x-sider-cluster': cluster,
      'x-sider-from': from,
      'x-sider-timestamp': timestamp,
      'x-sider-auth': sign(o.key ?? KEY, cluster, o.signFrom ?? from, timestamp, signed),
    },
    body: o.body,
    signal: AbortSignal.timeout(10_000),
  });
  await res.body.dump();
  return res.statusCode;
}

function rejected(node: Node, status: number): boolean {
  return node.logs.some((l) => l.level === 'warn' && l.fields?.status === status);
}

t.test('messages between two keyed nodes are delivered', async (t) => {
  const a = await startNode(t, { id: 'a' });
  const b = await startNode(t, { id: 'b' });
  a.transport.setPeers({ a: a.transport.address(), b: b.transport.address() });
  a.transport.send(heartbeat('a', 'b', 9));
  await until('delivery', () => b.delivered.length === 1);
  t.equal(b.delivered[0]!.ctx, 9);
  t.same(a.reports, [], 'no failure reported');
});

t.test('a node that knows no peers yet can answer a sender it has never been told about', async (t) => {
  // Regression: a freshly joined node has no configuration until the leader's log reaches it,
  // so it must learn where the leader is from the leader's own (signed) requests.
  const a = await startNode(t, { id: 'a' });
  const b = await startNode(t, { id: 'b' });
  a.transport.setPeers({ b: b.transport.address() });
  a.transport.send(emptyMessage('heartbeat', 'a', 'b', 2));
  await until('b hears a', () => b.delivered.length === 1);
  b.transport.send(emptyMessage('heartbeatResp', 'b', 'a', 2));
  await until('a hears b', () => a.delivered.length === 1);
  t.equal(a.delivered[0]!.type, 'heartbeatResp');
  b.transport.setPeers({});
  b.transport.send(emptyMessage('heartbeatResp', 'b', 'a', 2));
  await until('a hears b after an empty configuration', () => a.delivered.length === 2);
  t.same(b.reports, [], 'no unreachable reports');
});

t.test('a request signed with the wrong key is rejected with 401 and nothing is delivered', async (t) => {
  const b = await startNode(t, { id: 'b' });
  const a = await startNode(t, { id: 'a', clusterKey: 'some-other-secret-key-987654' });
  a.transport.setPeers({ b: b.transport.address() });
  a.transport.send(heartbeat('a', 'b'));
  await until('unreachable report', () => a.reports.some((r) => r.kind === 'unreachable' && r.to === 'b'));
  t.ok(rejected(b, 401), 'the receiver logged a 401');

  const body = encodeMessages([heartbeat('a', 'b')]);
  t.equal(await raw(b.url, { body, key: 'wrong-key-wrong-key-wrong' }), 401, 'wrong key');
  t.equal(await raw(b.url, { body, signed: Buffer.from('other bytes') }), 401, 'signature over other bytes');
  t.equal(await raw(b.url, { body, signFrom: 'c' }), 401, 'signature made for another sender');
  const res = await request(b.url, {
    method: 'POST',
    headers: { 'x-sider-cluster': CLUSTER, 'x-sider-from': 'a' },
    body,
  });
  await res.body.dump();
  t.equal(res.statusCode, 401, 'no authentication headers');
  t.same(b.delivered, [], 'nothing was delivered');
});

t.test('nodes of different entry data versions refuse each other (400), nodes of the same one talk', async (t) => {
  const b = await startNode(t, { id: 'b', dataVersion: 1 });
  const a = await startNode(t, { id: 'a' });
  a.transport.setPeers({ b: b.transport.address() });
  a.transport.send(heartbeat('a', 'b'));
  await until('unreachable report', () => a.reports.some((r) => r.kind === 'unreachable' && r.to === 'b'));
  t.ok(rejected(b, 400), 'the receiver logged a 400');
  t.same(b.delivered, [], 'nothing was delivered');
  const c = await startNode(t, { id: 'c', dataVersion: 1 });
  c.transport.setPeers({ b: b.transport.address() });
  c.transport.send(heartbeat('c', 'b'));
  await until('delivery', () => b.delivered.length === 1);
  t.equal(b.delivered[0]?.from, 'c');
});

t.test('a request naming another cluster id is rejected with 403', async (t) => {
  const b = await startNode(t, { id: 'b' });
  const body = encodeMessages([heartbeat('a', 'b')]);
  t.equal(await raw(b.url, { body, cluster: 'cluster-2' }), 403);
  const other = await startNode(t, { id: 'a', clusterId: 'cluster-2' });
  other.transport.setPeers({ b: b.transport.address() });
  other.transport.send(heartbeat('a', 'b'));
  await until('unreachable report', () => other.reports.some((r) => r.kind === 'unreachable'));
  t.ok(rejected(b, 403), 'the receiver logged a 403');
  t.same(b.delivered, [], 'nothing was delivered');
});

t.test('a peer that keeps sending what is refused gets one warning per interval, not one per request', async (t) => {
  const b = await startNode(t, { id: 'b', rejectLogIntervalMs: 300 });
  const body = encodeMessages([heartbeat('a', 'b')]);
  const lines = (): LogLine[] => b.logs.filter((l) => l.msg === 'raft transport rejected request');
  for (let i = 0; i < 20; i++) t.equal(await raw(b.url, { body, cluster: 'cluster-2' }), 403);
  t.equal(lines().length, 1, 'twenty refusals, one line');
  t.equal(await raw(b.url, { body, cluster: CLUSTER, key: 'another-key-of-32-bytes-0123456789' }), 401);
  t.equal(lines().length, 2, 'another reason is logged on its own');
  await new Promise((resolve) => setTimeout(resolve, 350));
  t.equal(await raw(b.url, { body, cluster: 'cluster-2' }), 403);
  t.equal(lines().length, 3);
  t.equal(lines()[2]!.fields?.suppressed, 19, 'the next line says how many were left out');
  t.same(b.delivered, [], 'nothing was delivered');
});

t.test('claiming a different sender on every refused request does not buy a warning each', async (t) => {
  const b = await startNode(t, { id: 'b', rejectLogIntervalMs: 60_000 });
  const body = encodeMessages([heartbeat('a', 'b')]);
  for (let i = 0; i < 30; i++) t.equal(await raw(b.url, { body, cluster: 'cluster-2', from: `x${i}` }), 403);
  t.equal(b.logs.filter((l) => l.msg === 'raft transport rejected request').length, 1, 'thirty senders claimed, one line');
});

t.test('a stale or future timestamp is rejected even with a valid signature', async (t) => {
  const b = await startNode(t, { id: 'b' });
  const body = encodeMessages([heartbeat('a', 'b')]);
  t.equal(await raw(b.url, { body, timestamp: Date.now() - 120_000 }), 401, 'two minutes old');
  t.equal(await raw(b.url, { body, timestamp: Date.now() + 120_000 }), 401, 'two minutes ahead');
  t.same(b.delivered, [], 'nothing was delivered');
  t.equal(await raw(b.url, { body, timestamp: Date.now() - 5_000 }), 204, 'a few seconds of skew is fine');
  await until('delivery', () => b.delivered.length === 1);
});

t.test('a garbage body with a valid signature gets 400 and the server keeps working', async (t) => {
  const b = await startNode(t, { id: 'b' });
  t.equal(await raw(b.url, { body: Buffer.from('not a raft message batch') }), 400, 'garbage');
  t.equal(await raw(b.url, { body: Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]) }), 400, 'forged count');
  t.equal(await raw(b.url, { body: new Uint8Array(0) }), 400, 'empty');
  const valid = encodeMessages([heartbeat('a', 'b')]);
  t.equal(await raw(b.url, { body: Buffer.concat([valid, Buffer.from([0])]) }), 400, 'trailing byte');
  t.same(b.delivered, [], 'nothing was delivered');
  t.equal(await raw(b.url, { body: valid }), 204, 'a valid request still works');
  t.equal(b.delivered.length, 1);
});

t.test('an oversized body is rejected with 413 and the server keeps working', async (t) => {
  const b = await startNode(t, { id: 'b', maxBodyBytes: 64 * 1024 });
  const big = Buffer.alloc(64 * 1024 + 1, 7);
  t.equal(await raw(b.url, { body: big }), 413, 'declared length over the limit');
  async function* chunks(): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < 5; i++) yield Buffer.alloc(16 * 1024, i);
  }
  t.equal(await raw(b.url, { body: Readable.from(chunks()) }), 413, 'chunked body counted past the limit');
  t.same(b.delivered, [], 'nothing was delivered');
  t.equal(await raw(b.url, { body: encodeMessages([heartbeat('a', 'b')]) }), 204, 'a valid request still works');

  const a = await startNode(t, { id: 'a' });
  a.transport.setPeers({ b: b.transport.address() });
  const snap = emptyMessage('snap', 'a', 'b', 2);
  snap.snapshot = {
    meta: { index: 10, term: 2, membership: { voters: ['a', 'b'], learners: [], addrs: {}, removed: [] } },
    data: Buffer.alloc(100 * 1024, 1),
  };
  a.transport.send(snap);
  await until('snapshot report', () => a.reports.some((r) => r.kind === 'snapshot'));
  t.same(a.reports.find((r) => r.kind === 'snapshot'), { kind: 'snapshot', to: 'b', ok: false }, 'snapshot failed');
  t.ok(a.reports.some((r) => r.kind === 'unreachable'), 'and the peer is reported unreachable');
});

t.test('other paths and methods get 404 and 405', async (t) => {
  const b = await startNode(t, { id: 'b' });
  const base = `http://${b.transport.address()}`;
  const notFound = await request(`${base}/raft/v1/other`, { method: 'POST', body: 'x' });
  await notFound.body.dump();
  t.equal(notFound.statusCode, 404);
  const wrongMethod = await request(b.url, { method: 'GET' });
  await wrongMethod.body.dump();
  t.equal(wrongMethod.statusCode, 405);
  t.equal(wrongMethod.headers.allow, 'POST');
});

t.test('a message addressed to another node or claiming another sender is dropped', async (t) => {
  const b = await startNode(t, { id: 'b' });
  const body = encodeMessages([heartbeat('a', 'c', 1), heartbeat('x', 'b', 2), heartbeat('a', 'b', 3)]);
  t.equal(await raw(b.url, { body }), 204);
  t.same(
    b.delivered.map((m) => m.ctx),
    [3],
    'only the message from the signing sender to this node',
  );
  t.equal(b.logs.filter((l) => l.msg.includes('misaddressed')).length, 2, 'each drop is logged');
});

t.test('without a key, loopback nodes with allowInsecureLoopback exchange messages', async (t) => {
  const opts = { clusterKey: undefined, allowInsecureLoopback: true };
  const a = await startNode(t, { id: 'a', ...opts });
  const b = await startNode(t, { id: 'b', ...opts, listen: 'localhost:0' });
  a.transport.setPeers({ b: b.transport.address() });
  b.transport.setPeers({ a: `localhost:${a.transport.address().split(':')[1]}` });
  a.transport.send(heartbeat('a', 'b'));
  await until('delivery to b', () => b.delivered.length === 1);
  b.transport.send(heartbeat('b', 'a'));
  await until('delivery to a', () => a.delivered.length === 1);
  t.pass('both directions work');
});

t.test('without a key, anything off loopback is refused', async (t) => {
  /** Builds and starts a transport, then closes it: rejects with whatever either step threw. */
  const attempt = async (opts: Partial<HttpTransportOptions>, peers: Record<NodeId, string> = {}): Promise<void> => {
    const tr = new HttpTransport({ id: 'a', clusterId: CLUSTER, listen: '127.0.0.1:0', ...opts });
    tr.setPeers(peers);
    try {
      await tr.start(
        () => {},
        () => {},
      );
    } finally {
      await tr.close();
    }
  };
  const config = { code: 'SIDER_CONFIG' };
  await t.rejects(attempt({}), config, 'no key and no allowInsecureLoopback');
  await t.rejects(attempt({ allowInsecureLoopback: true, listen: '0.0.0.0:0' }), config, 'a wildcard listen address');
  await t.rejects(attempt({ allowInsecureLoopback: true, listen: '192.0.2.1:0' }), config, 'a non-loopback listen address');
  await t.rejects(
    attempt({ allowInsecureLoopback: true }, { b: '10.1.2.3:8501' }),
    config,
    'a non-loopback peer given before start',
  );
  await t.rejects(
    attempt({ allowInsecureLoopback: true }, { b: 'raft-2.internal:8501' }),
    config,
    'a peer named by a non-loopback host name',
  );
  await t.resolves(attempt({ allowInsecureLoopback: true, listen: '[::1]:0' }, { b: '127.0.0.2:8501', c: '[::1]:8501' }));

  const b = await startNode(t, { id: 'b', clusterKey: undefined, allowInsecureLoopback: true });
  const a = await startNode(t, { id: 'a', clusterKey: undefined, allowInsecureLoopback: true });
  a.transport.setPeers({ b: b.transport.address(), c: '192.0.2.1:8501' });
  t.ok(
    a.logs.some((l) => l.level === 'error' && l.fields?.peer === 'c'),
    'a non-loopback peer given later is logged as an error',
  );
  a.transport.send(heartbeat('a', 'c'));
  await until('unreachable report', () => a.reports.some((r) => r.kind === 'unreachable' && r.to === 'c'));
  a.transport.send(heartbeat('a', 'b'));
  await until('delivery to the loopback peer', () => b.delivered.length === 1);
  t.pass('the loopback peer is still served');
});

t.test('a short key or a malformed listen address is a configuration error', async (t) => {
  const base = { id: 'a', clusterId: CLUSTER, listen: '127.0.0.1:0', clusterKey: KEY };
  t.throws(() => new HttpTransport({ ...base, clusterKey: 'short' }), { code: 'SIDER_CONFIG' });
  t.throws(() => new HttpTransport({ ...base, listen: '127.0.0.1' }), { code: 'SIDER_CONFIG' });
  t.throws(() => new HttpTransport({ ...base, maxBodyBytes: -1 }), { code: 'SIDER_CONFIG' });
  t.throws(() => new HttpTransport({ ...base, clusterId: 'two words' }), { code: 'SIDER_CONFIG' });
});

t.test('a heartbeat overtakes a large snapshot and appends that fill the bulk lane', async (t) => {
  const a = await startNode(t, { id: 'a' });
  const b = await startNode(t, { id: 'b' });
  a.transport.setPeers({ b: b.transport.address() });
  const data = Buffer.alloc(20 * 1024 * 1024);
  for (let i = 0; i < data.length; i += 4096) data[i] = i & 0xff;
  const snap = emptyMessage('snap', 'a', 'b', 2);
  snap.snapshot = {
    meta: { index: 1000, term: 2, membership: { voters: ['a', 'b'], learners: [], addrs: {}, removed: [] } },
    data,
  };
  const app = emptyMessage('app', 'a', 'b', 2);
  app.entries = [{ index: 1001, term: 2, type: 'normal', data: Buffer.alloc(8 * 1024 * 1024, 3), rid: '' }];
  // The snapshot and the append take both bulk slots; the heartbeat must not wait for either.
  a.transport.send(snap);
  a.transport.send(app);
  a.transport.send(heartbeat('a', 'b', 77));
  await until('all three messages', () => b.delivered.length === 3, 30_000);
  t.equal(b.delivered[0]!.type, 'heartbeat', 'the heartbeat arrived first');
  const snapIn = b.delivered.find((m) => m.type === 'snap');
  t.ok(snapIn && Buffer.from(snapIn.snapshot!.data).equals(data), 'the snapshot arrived intact');
  await until('snapshot report', () => a.reports.some((r) => r.kind === 'snapshot'));
  t.same(a.reports, [{ kind: 'snapshot', to: 'b', ok: true }], 'the snapshot is reported delivered');
});

t.test('appends sent while the bulk lane is busy all arrive', async (t) => {
  const a = await startNode(t, { id: 'a' });
  const b = await startNode(t, { id: 'b' });
  a.transport.setPeers({ b: b.transport.address() });
  const total = 2000;
  for (let i = 1; i <= total; i++) {
    const m = emptyMessage('app', 'a', 'b', 2);
    m.index = i;
    m.entries = [{ index: i, term: 2, type: 'normal', data: Buffer.from(`entry ${i}`), rid: '' }];
    a.transport.send(m);
    // Yield now and then so that requests start while later appends are still being queued.
    if (i % 100 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  await until('all appends', () => b.delivered.length === total);
  t.same(
    b.delivered.map((m) => m.index).sort((x, y) => x - y),
    Array.from({ length: total }, (_, i) => i + 1),
    'every append arrived once',
  );
  t.same(a.reports, [], 'no failure reported');
});

t.test('a removed peer is no longer sent to', async (t) => {
  const a = await startNode(t, { id: 'a' });
  const b = await startNode(t, { id: 'b' });
  a.transport.setPeers({ b: b.transport.address() });
  a.transport.send(heartbeat('a', 'b', 1));
  await until('delivery', () => b.delivered.length === 1);
  a.transport.setPeers({});
  a.transport.send(heartbeat('a', 'b', 2));
  await until('unreachable report', () => a.reports.some((r) => r.kind === 'unreachable'));
  t.equal(b.delivered.length, 1);
});

t.test('no log line carries the cluster key or a signature', async (t) => {
  t.ok(allLogs.length > 0, 'there were log lines to check');
  const text = JSON.stringify(allLogs);
  for (const secret of [KEY, 'some-other-secret-key-987654', ...sentSignatures]) {
    t.notOk(text.includes(secret), `log does not contain ${secret.slice(0, 6)}…`);
  }
});
