// One conformance suite for the Raft `Transport` port, run against the in-memory twin and the HTTP
// transport (the latter on 127.0.0.1 sockets, so this file is not socket-free).

import { createServer } from 'node:net';
import t from 'tap';
import { messageTypes } from '../../raft/codec.ts';
import { HttpTransport } from '../../raft/http-transport.ts';
import { MemoryNetwork } from '../../raft/memory-transport.ts';
import type { Transport, TransportReport } from '../../raft/ports.ts';
import { emptyMessage } from '../../raft/types.ts';
import type { Entry, Message, MessageType, NodeId } from '../../raft/types.ts';

interface Node {
  id: NodeId;
  transport: Transport;
  delivered: Message[];
  reports: TransportReport[];
}

interface Cluster {
  nodes: Record<NodeId, Node>;
  addrs: Record<NodeId, string>;
  /** An address where no node of this implementation listens. */
  deadAddr: string;
  close(): Promise<void>;
}

/** Builds started transports for `ids`, each knowing every other by `setPeers`. */
type ClusterFactory = (ids: NodeId[]) => Promise<Cluster>;

async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** Bytes 0..255 repeated, offset by `seed`, so every byte value crosses the wire. */
function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 7 + seed) & 0xff;
  return out;
}

function entry(index: number, type: Entry['type'], data: Uint8Array, rid = ''): Entry {
  return { index, term: 3, type, data, rid };
}

const allTypes = messageTypes;

/** One message of `type` from `from` to `to`, with every field the type uses set to non-zero values. */
function sample(type: MessageType, from: NodeId, to: NodeId, seq: number): Message {
  const m = emptyMessage(type, from, to, 3 + seq);
  m.index = 100 + seq;
  m.logTerm = 2;
  m.commit = 90 + seq;
  m.ctx = 7 + seq;
  m.hint = type === 'appResp' ? 42 : 0;
  m.hintTerm = type === 'appResp' ? 2 : 0;
  m.reject = type.endsWith('Resp') && seq % 2 === 0;
  if (type === 'app') {
    m.entries = [
      entry(101, 'normal', bytes(1000, seq), 'client-1:req-9'),
      entry(102, 'conf', bytes(17, seq + 1)),
      entry(103, 'noop', new Uint8Array(0)),
    ];
  }
  if (type === 'snap') {
    m.snapshot = {
      meta: {
        index: 500,
        term: 3,
        membership: { voters: ['a', 'b'], learners: ['c'], addrs: { a: 'x:1', b: 'y:2', c: 'z:3' }, removed: ['old'] },
      },
      data: bytes(300_000, seq),
    };
  }
  return m;
}

/** A comparable form: byte arrays as hex, so Buffer and Uint8Array compare equal. */
function plain(m: Message): unknown {
  return {
    ...m,
    entries: m.entries.map((e) => ({ ...e, data: Buffer.from(e.data).toString('hex') })),
    snapshot: m.snapshot ? { ...m.snapshot, data: Buffer.from(m.snapshot.data).toString('hex') } : null,
  };
}

function unreachable(n: Node, to: NodeId): boolean {
  return n.reports.some((r) => r.kind === 'unreachable' && r.to === to);
}

function transportConformance(name: string, makeCluster: ClusterFactory): void {
  t.test(`${name} transport`, async (t) => {
    t.test('messages of every type arrive intact at the node they are addressed to', async (t) => {
      const c = await makeCluster(['a', 'b', 'c']);
      t.teardown(() => c.close());
      const { a, b } = c.nodes as Record<'a' | 'b' | 'c', Node>;
      const toB = allTypes.map((type, i) => sample(type, 'a', 'b', i));
      const toC = allTypes.map((type, i) => sample(type, 'a', 'c', i + 100));
      for (let i = 0; i < allTypes.length; i++) {
        a.transport.send(toB[i]!);
        a.transport.send(toC[i]!);
      }
      const cNode = c.nodes.c!;
      await until('all messages', () => b.delivered.length === toB.length && cNode.delivered.length === toC.length);
      const byType = (ms: Message[]): unknown[] =>
        [...ms].sort((x, y) => allTypes.indexOf(x.type) - allTypes.indexOf(y.type)).map(plain);
      t.same(byType(b.delivered), toB.map(plain), 'b received exactly its messages');
      t.same(byType(cNode.delivered), toC.map(plain), 'c received exactly its messages');
      await until('snapshot reports', () => a.reports.filter((r) => r.kind === 'snapshot').length === 2);
      t.same(
        a.reports.filter((r) => r.kind === 'snapshot').sort((x, y) => (x.to < y.to ? -1 : 1)),
        [
          { kind: 'snapshot', to: 'b', ok: true },
          { kind: 'snapshot', to: 'c', ok: true },
        ],
        'a delivered snapshot reports success',
      );
      t.notOk(unreachable(a, 'b') || unreachable(a, 'c'), 'no unreachable report for live peers');
      t.same(a.delivered, [], 'the sender receives nothing');
    });

    t.test('control messages sent in a burst arrive in order and complete', async (t) => {
      const c = await makeCluster(['a', 'b']);
      t.teardown(() => c.close());
      const { a, b } = c.nodes as Record<'a' | 'b', Node>;
      for (let i = 0; i < 500; i++) a.transport.send(sample('heartbeat', 'a', 'b', i));
      await until('500 heartbeats', () => b.delivered.length === 500);
      t.same(
        b.delivered.map((m) => m.ctx),
        Array.from({ length: 500 }, (_, i) => 7 + i),
        'in send order',
      );
    });

    t.test('replies travel back over the same transports', async (t) => {
      const c = await makeCluster(['a', 'b']);
      t.teardown(() => c.close());
      const { a, b } = c.nodes as Record<'a' | 'b', Node>;
      a.transport.send(sample('vote', 'a', 'b', 1));
      await until('vote', () => b.delivered.length === 1);
      b.transport.send(sample('voteResp', 'b', 'a', 1));
      await until('vote response', () => a.delivered.length === 1);
      t.equal(a.delivered[0]!.type, 'voteResp');
      t.equal(a.delivered[0]!.from, 'b');
    });

    t.test('the receiver gets its own copy of the bytes', async (t) => {
      const c = await makeCluster(['a', 'b']);
      t.teardown(() => c.close());
      const { a, b } = c.nodes as Record<'a' | 'b', Node>;
      const sent = sample('app', 'a', 'b', 5);
      const before = plain(sent);
      a.transport.send(sent);
      await until('append', () => b.delivered.length === 1);
      b.delivered[0]!.entries[0]!.data.fill(0);
      b.delivered[0]!.entries.pop();
      t.same(plain(sent), before, 'the sender’s message is untouched');
    });

    t.test('a message to a peer that is not listening is reported unreachable', async (t) => {
      const c = await makeCluster(['a', 'b']);
      t.teardown(() => c.close());
      const { a } = c.nodes as Record<'a' | 'b', Node>;
      a.transport.setPeers({ ...c.addrs, ghost: c.deadAddr });
      a.transport.send(sample('heartbeat', 'a', 'ghost', 1));
      await until('unreachable report', () => unreachable(a, 'ghost'));
      a.transport.send(sample('snap', 'a', 'ghost', 2));
      await until('snapshot failure', () => a.reports.some((r) => r.kind === 'snapshot' && r.to === 'ghost'));
      t.same(
        a.reports.filter((r) => r.kind === 'snapshot'),
        [{ kind: 'snapshot', to: 'ghost', ok: false }],
        'the snapshot is reported failed',
      );
    });

    t.test('a message to an id missing from setPeers is reported unreachable', async (t) => {
      const c = await makeCluster(['a', 'b']);
      t.teardown(() => c.close());
      const { a, b } = c.nodes as Record<'a' | 'b', Node>;
      a.transport.send(sample('vote', 'a', 'nobody', 1));
      await until('unreachable report', () => unreachable(a, 'nobody'));
      a.transport.setPeers({ a: c.addrs.a! });
      a.transport.send(sample('heartbeat', 'a', 'b', 1));
      await until('unreachable report for removed peer', () => unreachable(a, 'b'));
      t.same(b.delivered, [], 'a removed peer receives nothing');
      a.transport.setPeers(c.addrs);
      a.transport.send(sample('heartbeat', 'a', 'b', 2));
      await until('delivery after re-adding', () => b.delivered.length === 1);
      t.pass('a peer added back receives messages again');
    });

    t.test('close() is clean', async (t) => {
      const c = await makeCluster(['a', 'b']);
      t.teardown(() => c.close());
      const { a, b } = c.nodes as Record<'a' | 'b', Node>;
      a.transport.send(sample('heartbeat', 'a', 'b', 1));
      await until('delivery', () => b.delivered.length === 1);
      await b.transport.close();
      await b.transport.close();
      t.pass('close resolves and can be called twice');
      a.transport.send(sample('heartbeat', 'a', 'b', 2));
      await until('unreachable report for a closed peer', () => unreachable(a, 'b'));
      t.equal(b.delivered.length, 1, 'a closed node receives nothing');
      const reportsBefore = b.reports.length;
      t.doesNotThrow(() => b.transport.send(sample('heartbeat', 'b', 'a', 3)), 'send after close does not throw');
      await a.transport.close();
      t.equal(a.delivered.length, 0, 'nothing reached a');
      t.equal(b.reports.length, reportsBefore, 'a closed transport reports nothing');
    });
  });
}

transportConformance('memory', async (ids) => {
  const network = new MemoryNetwork();
  const addrs: Record<NodeId, string> = Object.fromEntries(ids.map((id) => [id, `mem:${id}`]));
  const nodes: Record<NodeId, Node> = {};
  for (const id of ids) {
    const node: Node = { id, transport: network.transport(id), delivered: [], reports: [] };
    await node.transport.start(
      (m) => node.delivered.push(m),
      (r) => node.reports.push(r),
    );
    node.transport.setPeers(addrs);
    nodes[id] = node;
  }
  return {
    nodes,
    addrs,
    deadAddr: 'mem:ghost',
    close: async () => {
      await Promise.all(Object.values(nodes).map((n) => n.transport.close()));
    },
  };
});

t.test('memory network partitions block delivery one way or both, and heal restores it', async (t) => {
  const network = new MemoryNetwork();
  const addrs = { a: 'mem:a', b: 'mem:b' };
  const nodes = (['a', 'b'] as const).map((id) => {
    const node: Node = { id, transport: network.transport(id), delivered: [], reports: [] };
    node.transport.setPeers(addrs);
    return node;
  });
  const [a, b] = nodes as [Node, Node];
  for (const n of nodes) {
    await n.transport.start(
      (m) => n.delivered.push(m),
      (r) => n.reports.push(r),
    );
  }
  t.teardown(() => Promise.all(nodes.map((n) => n.transport.close())));

  network.partition('a', 'b', { oneWay: true });
  a.transport.send(sample('heartbeat', 'a', 'b', 1));
  b.transport.send(sample('heartbeatResp', 'b', 'a', 1));
  await until('a’s report and b’s delivery', () => unreachable(a, 'b') && a.delivered.length === 1);
  t.same(b.delivered, [], 'a → b is blocked');
  t.notOk(unreachable(b, 'a'), 'b → a still works');

  network.heal('a', 'b');
  network.partition('a', 'b');
  b.transport.send(sample('heartbeatResp', 'b', 'a', 2));
  await until('b’s report', () => unreachable(b, 'a'));
  t.equal(a.delivered.length, 1, 'a two-way partition blocks b → a too');

  network.heal();
  a.transport.send(sample('heartbeat', 'a', 'b', 3));
  await until('delivery after heal', () => b.delivered.length === 1);
  t.pass('heal() restores every link');
});

async function freePortAddr(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (!addr || typeof addr === 'string') throw new Error('no port');
  return `127.0.0.1:${addr.port}`;
}

transportConformance('http', async (ids) => {
  const nodes: Record<NodeId, Node> = {};
  const transports: HttpTransport[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(transports.map((tr) => tr.close()));
  };
  try {
    for (const id of ids) {
      const transport = new HttpTransport({
        id,
        clusterId: 'conformance',
        listen: '127.0.0.1:0',
        clusterKey: 'conformance-key-0123456789',
      });
      transports.push(transport);
      const node: Node = { id, transport, delivered: [], reports: [] };
      await transport.start(
        (m) => node.delivered.push(m),
        (r) => node.reports.push(r),
      );
      nodes[id] = node;
    }
    const addrs = Object.fromEntries(transports.map((tr, i) => [ids[i]!, tr.address()]));
    for (const tr of transports) tr.setPeers(addrs);
    return { nodes, addrs, deadAddr: await freePortAddr(), close };
  } catch (err) {
    await close();
    throw err;
  }
});
