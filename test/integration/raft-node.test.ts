// The driver on real components in one process: LevelDB, snapshot files, the HTTP transport.

import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { FileSnapshotStore } from '../../raft/file-snapshot-store.ts';
import { HttpTransport } from '../../raft/http-transport.ts';
import { LevelStorage } from '../../raft/level-storage.ts';
import { RaftNode } from '../../raft/node.ts';
import type { RaftNodeOptions } from '../../raft/node.ts';
import { KvMachine, encodeKvCommand } from '../support/kv-machine.ts';
import type { KvResult } from '../support/kv-machine.ts';
import { freePort, waitFor } from '../support/ports.ts';

const KEY = 'integration-test-cluster-key-0123456789';

interface Member {
  id: string;
  addr: string;
  dir: string;
  sm: KvMachine;
  node: RaftNode;
}

async function openMember(
  t: { teardown(fn: () => unknown): void },
  id: string,
  addr: string,
  dir: string,
  extra: Partial<RaftNodeOptions> = {},
): Promise<Member> {
  const sm = new KvMachine();
  const node = await RaftNode.open({
    id,
    storage: new LevelStorage(join(dir, 'raft')),
    snapshots: new FileSnapshotStore(join(dir, 'snapshots')),
    stateMachine: sm,
    transport: (clusterId) => new HttpTransport({ id, clusterId, listen: addr, clusterKey: KEY }),
    tickMs: 20,
    electionTicks: 10,
    // These tests count entries up to an exact snapshot threshold.
    snapshotJitter: 0,
    ...extra,
  });
  t.teardown(() => node.close());
  return { id, addr, dir, sm, node };
}

let seq = 0;
async function put(m: Member, key: string, value: string, op: 'put' | 'append' = 'put'): Promise<KvResult> {
  const s = ++seq;
  const r = await m.node.propose(encodeKvCommand({ client: 'test', seq: s, op, key, value }), `test:${s}`);
  return r.result as KvResult;
}

t.test('a single node bootstraps, commits, snapshots, and restores everything after a restart', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sider-node-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const addr = `127.0.0.1:${await freePort()}`;
  let m = await openMember(t, 'n1', addr, dir, { bootstrap: { addr }, snapshotThreshold: 50, trailingEntries: 10 });
  await waitFor('leader', () => m.node.status().role === 'leader');
  for (let i = 0; i < 120; i++) await put(m, `k${i % 7}`, `v${i}`, 'append');
  const expected = m.sm.digest();
  await waitFor('snapshot files', async () => (await readdir(join(dir, 'snapshots'))).filter((f) => f.endsWith('.snap')).length === 2);
  const clusterId = m.node.clusterId;
  await m.node.close();

  m = await openMember(t, 'n1', addr, dir);
  t.equal(m.node.clusterId, clusterId, 'cluster id kept');
  await waitFor('leader again', () => m.node.status().role === 'leader');
  await m.node.readBarrier();
  t.equal(m.sm.digest(), expected, 'state after restart equals state before');
  t.ok(m.node.status().firstIndex > 1, 'log was compacted behind the snapshot');
  await m.node.close();

  await t.rejects(openMember(t, 'n1', addr, dir, { clusterId: 'another-cluster' }), { code: 'SIDER_FOREIGN_CLUSTER' }, 'a data directory of another cluster is refused');
  await t.rejects(openMember(t, 'n2', addr, dir), { code: 'SIDER_CONFIG' }, 'a data directory of another node is refused');
});

t.test('a snapshot is also taken on a timer when fewer entries than the threshold accumulated', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sider-snaptimer-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const addr = `127.0.0.1:${await freePort()}`;
  const m = await openMember(t, 'n1', addr, dir, {
    bootstrap: { addr },
    snapshotThreshold: 1_000_000,
    snapshotCheckMs: 50,
    snapshotTimerMinEntries: 10,
  });
  await waitFor('leader', () => m.node.status().role === 'leader');
  const snaps = async (): Promise<number> => (await readdir(join(dir, 'snapshots')).catch(() => [])).filter((f) => f.endsWith('.snap')).length;
  for (let i = 0; i < 5; i++) await put(m, 'k', `${i}`);
  t.equal(await snaps(), 0, 'no snapshot below the timer minimum');
  for (let i = 0; i < 10; i++) await put(m, 'k', `${i}`);
  await waitFor('timer snapshot', async () => (await snaps()) === 1);
});

t.test('three nodes: join as learners, promote, replicate, read on a follower, transfer, remove', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'sider-3node-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const addrs = await Promise.all([1, 2, 3].map(async () => `127.0.0.1:${await freePort()}`));
  const n1 = await openMember(t, 'n1', addrs[0]!, join(root, 'n1'), { bootstrap: { addr: addrs[0]! }, snapshotThreshold: 40, trailingEntries: 5 });
  await waitFor('n1 leader', () => n1.node.status().role === 'leader');
  // Entries written before the others join reach them through a snapshot (log compacted).
  for (let i = 0; i < 100; i++) await put(n1, 'early', `${i};`, 'append');
  await waitFor('n1 compacted', () => n1.node.status().firstIndex > 50);

  const members = [n1];
  for (const [i, id] of ['n2', 'n3'].entries()) {
    const addr = addrs[i + 1]!;
    const m = await openMember(t, id, addr, join(root, id), { clusterId: n1.node.clusterId });
    members.push(m);
    await n1.node.addServer(id, addr);
    await waitFor(`${id} promoted`, () => n1.node.status().membership.voters.includes(id));
  }
  t.same(n1.node.status().membership.voters.sort(), ['n1', 'n2', 'n3']);

  const r = await put(n1, 'k', 'hello');
  t.equal(r.value, 'hello');
  const follower = members[1]!;
  await follower.node.readBarrier();
  t.equal(follower.sm.get('k'), 'hello', 'a linearizable read on a follower sees the write');
  t.equal(follower.sm.get('early'), n1.sm.get('early'), 'follower got the early entries via snapshot');

  await t.rejects(follower.node.propose(new Uint8Array(1)), { code: 'SIDER_NOT_LEADER' }, 'followers refuse proposals and name the leader');

  await n1.node.transferLeadership('n2');
  await waitFor('n2 leads', () => members[1]!.node.status().role === 'leader');
  const n2 = members[1]!;
  await put(n2, 'k', 'after-transfer');
  await n2.node.removeServer('n1');
  await waitFor('n1 removed', () => !n2.node.status().membership.voters.includes('n1'));
  await t.rejects(n2.node.addServer('n1', addrs[0]!), { code: 'SIDER_CONF_CHANGE_INVALID' }, 'a removed id is never reused');
  await put(n2, 'k', 'two-node');
  await members[2]!.node.readBarrier();
  t.equal(members[2]!.sm.get('k'), 'two-node');
});

t.test('the leader times each follower\'s acknowledgement of the entries it sends, and stops when it stops leading', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'sider-rtt-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const addrs = await Promise.all([1, 2, 3].map(async () => `127.0.0.1:${await freePort()}`));
  const acked: [string, number][] = [];
  const n1 = await openMember(t, 'n1', addrs[0]!, join(root, 'n1'), {
    bootstrap: { addr: addrs[0]! },
    observer: { appendAcked: (peer, ms) => acked.push([peer, ms]) },
  });
  await waitFor('n1 leader', () => n1.node.status().role === 'leader');
  const members = [n1];
  for (const [i, id] of ['n2', 'n3'].entries()) {
    const m = await openMember(t, id, addrs[i + 1]!, join(root, id), { clusterId: n1.node.clusterId });
    members.push(m);
    await n1.node.addServer(id, addrs[i + 1]!);
    await waitFor(`${id} promoted`, () => n1.node.status().membership.voters.includes(id));
  }
  // Both followers have acknowledged everything so far: what follows is timed from here.
  await waitFor('followers caught up', () => ['n2', 'n3'].every((id) => n1.node.status().peers[id]?.match === n1.node.status().lastIndex));
  acked.length = 0;
  // One proposal at a time: each goes out in an append of its own to each follower.
  for (let i = 0; i < 20; i++) await put(n1, 'k', `v${i}`);
  await waitFor('every append acknowledged', () => ['n2', 'n3'].every((id) => acked.filter(([p]) => p === id).length >= 20));
  for (const id of ['n2', 'n3']) {
    const times = acked.filter(([p]) => p === id).map(([, ms]) => ms);
    t.ok(times.length >= 20 && times.length <= 25, `${id}: one time per append (${times.length} for 20 proposals)`);
    t.ok(times.every((ms) => Number.isFinite(ms) && ms >= 0 && ms < 10_000), `${id}: times are durations`);
  }
  t.same(new Set(acked.map(([p]) => p)), new Set(['n2', 'n3']), 'only followers are timed');

  await n1.node.transferLeadership('n2');
  await waitFor('n2 leads', () => members[1]!.node.status().role === 'leader');
  const before = acked.length;
  for (let i = 0; i < 5; i++) await put(members[1]!, 'k', `w${i}`);
  await members[0]!.node.readBarrier();
  t.equal(acked.length, before, 'a follower times nothing');
});
