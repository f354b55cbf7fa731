// The storage rewrite behind `-force-new-cluster` (raft/recover.ts) on real LevelDB and snapshot files
// in temp directories: what it keeps, what it appends, what it refuses, and that a RaftNode started
// on the result leads alone and applies everything that was kept.

import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeConfChange, encodeConfChange } from '../../raft/codec.ts';
import { isSiderError } from '../../raft/errors.ts';
import { FileSnapshotStore } from '../../raft/file-snapshot-store.ts';
import { LevelStorage } from '../../raft/level-storage.ts';
import { MemoryNetwork } from '../../raft/memory-transport.ts';
import { RaftNode } from '../../raft/node.ts';
import type { StateMachine } from '../../raft/ports.ts';
import { forceNewCluster } from '../../raft/recover.ts';
import type { ConfChange, Entry, HardState, Membership, SnapshotMeta } from '../../raft/types.ts';
import { loadServerConfig } from '../../src/config.ts';

interface Scope {
  teardown(fn: () => unknown): void;
}

interface Dir {
  root: string;
  storage: () => LevelStorage;
  snapshots: () => FileSnapshotStore;
}

async function dataDir(t: Scope): Promise<Dir> {
  const root = await mkdtemp(join(tmpdir(), 'sider-recover-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  return { root, storage: () => new LevelStorage(join(root, 'raft')), snapshots: () => new FileSnapshotStore(join(root, 'snapshots')) };
}

function conf(index: number, term: number, cc: ConfChange): Entry {
  return { index, term, type: 'conf', rid: '', data: encodeConfChange(cc) };
}

function normal(index: number, term: number): Entry {
  return { index, term, type: 'normal', rid: '', data: Buffer.from(`w${index}`) };
}

/** Entries 1..5 forming the cluster n1, n2, n3 (all voters), in term 1. */
function formation(): Entry[] {
  return [
    conf(1, 1, { op: 'bootstrap', id: 'n1', addr: '127.0.0.1:1' }),
    conf(2, 1, { op: 'addLearner', id: 'n2', addr: '127.0.0.1:2' }),
    conf(3, 1, { op: 'promote', id: 'n2' }),
    conf(4, 1, { op: 'addLearner', id: 'n3', addr: '127.0.0.1:3' }),
    conf(5, 1, { op: 'promote', id: 'n3' }),
  ];
}

const threeVoters: Membership = {
  voters: ['n1', 'n2', 'n3'],
  learners: [],
  addrs: { n1: '127.0.0.1:1', n2: '127.0.0.1:2', n3: '127.0.0.1:3' },
  removed: [],
};

async function write(dir: Dir, opts: { identity?: { clusterId: string; nodeId: string }; hardState?: HardState; entries?: Entry[] }): Promise<void> {
  const s = dir.storage();
  await s.open();
  if (opts.identity) await s.saveIdentity(opts.identity);
  if (opts.entries?.length || opts.hardState) await s.save(opts.hardState ?? null, opts.entries ?? []);
  await s.close();
}

interface Stored {
  identity: { clusterId: string; nodeId: string } | null;
  hardState: HardState | null;
  first: number;
  last: number;
  entries: Entry[];
}

async function read(dir: Dir): Promise<Stored> {
  const s = dir.storage();
  await s.open();
  try {
    const first = s.firstIndex();
    const last = s.lastIndex();
    return {
      identity: await s.loadIdentity(),
      hardState: await s.loadHardState(),
      first,
      last,
      entries: last > 0 ? await s.loadEntries(first, last) : [],
    };
  } finally {
    await s.close();
  }
}

/** Records the data of every applied normal entry; its snapshots are that list as JSON. */
class ListMachine implements StateMachine {
  applied: string[] = [];
  restoredFrom = 0;
  apply(e: Entry): unknown {
    this.applied.push(Buffer.from(e.data).toString());
    return null;
  }
  snapshot() {
    const data = Buffer.from(JSON.stringify(this.applied));
    return async () => data;
  }
  restore(data: Uint8Array, meta: SnapshotMeta): void {
    this.applied = JSON.parse(Buffer.from(data).toString()) as string[];
    this.restoredFrom = meta.index;
  }
}

/** Starts a RaftNode on the directory, waits until it leads and has applied `through`, closes it. */
async function runAlone(dir: Dir, through: number): Promise<{ machine: ListMachine; leader: string; voters: string[]; clusterId: string; applied: number }> {
  const machine = new ListMachine();
  const net = new MemoryNetwork();
  const node = await RaftNode.open({
    id: 'n1',
    storage: dir.storage(),
    snapshots: dir.snapshots(),
    stateMachine: machine,
    transport: () => net.transport('n1'),
    tickMs: 10,
  });
  try {
    const deadline = Date.now() + 10_000;
    while (!(node.status().leader === 'n1' && node.status().applied > through) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    // A write in the new cluster commits with this server alone.
    const wrote = await node.propose(Buffer.from('after'));
    const st = node.status();
    return { machine, leader: st.leader, voters: st.membership.voters, clusterId: node.clusterId, applied: wrote.index };
  } finally {
    await node.close();
  }
}

t.test('keeps every entry, including those past the stored commit index, and leaves this server the only voter', async (t) => {
  const dir = await dataDir(t);
  const log = [...formation()];
  for (let i = 6; i <= 20; i++) log.push(normal(i, i <= 10 ? 1 : 2));
  // The hard state says 12: entries 13..20 may have been acknowledged by the lost leader after
  // this follower stored them (the commit index moves on disk only with the next synced batch).
  await write(dir, { identity: { clusterId: 'old', nodeId: 'n1' }, hardState: { term: 3, vote: 'n2', commit: 12 }, entries: log });

  const r = await forceNewCluster({ storage: dir.storage(), snapshots: dir.snapshots(), id: 'n1', clusterId: 'new' });
  t.equal(r.rewritten, true);
  t.equal(r.previousClusterId, 'old');
  t.equal(r.clusterId, 'new');
  t.equal(r.storedCommit, 12);
  t.equal(r.lastIndex, 20);
  t.equal(r.keptPastStoredCommit, 8);
  t.same(r.previous.voters, ['n1', 'n2', 'n3']);
  t.same(r.changes, [{ op: 'remove', id: 'n2' }, { op: 'remove', id: 'n3' }]);
  t.same(r.membership.voters, ['n1']);
  t.same(r.membership.learners, []);
  t.same(r.membership.removed, ['n2', 'n3']);
  t.equal(r.commit, 22);

  const after = await read(dir);
  t.same(after.identity, { clusterId: 'new', nodeId: 'n1' });
  t.same(after.hardState, { term: 3, vote: 'n2', commit: 22 });
  t.equal(after.first, 1);
  t.equal(after.last, 22);
  for (let i = 0; i < 20; i++) t.same(Buffer.from(after.entries[i]!.data), Buffer.from(log[i]!.data), `entry ${i + 1} unchanged`);
  const appended = after.entries.slice(20);
  t.same(appended.map((e) => [e.index, e.term, e.type]), [[21, 3, 'conf'], [22, 3, 'conf']]);
  t.same(appended.map((e) => decodeConfChange(e.data)), [{ op: 'remove', id: 'n2' }, { op: 'remove', id: 'n3' }]);

  // A node started on it (without the flag: the rewrite is what later starts find) leads alone
  // and applies every kept write.
  const run = await runAlone(dir, 22);
  t.equal(run.leader, 'n1');
  t.same(run.voters, ['n1']);
  t.equal(run.clusterId, 'new');
  const kept = log.filter((e) => e.type === 'normal').map((e) => `w${e.index}`);
  t.same(run.machine.applied, [...kept, 'after']);
  t.ok(run.applied > 22, 'the new write follows the configuration entries');
});

t.test('recovers when the state is partly in a snapshot file and partly in the log', async (t) => {
  const dir = await dataDir(t);
  const snapData = Buffer.from(JSON.stringify(['s1', 's2', 's3']));
  await dir.snapshots().save({ meta: { index: 10, term: 2, membership: threeVoters }, data: snapData });
  // Trailing entries 7..10 behind the snapshot, 11..16 after it with a learner added at 12.
  const log: Entry[] = [];
  for (let i = 7; i <= 16; i++) log.push(i === 12 ? conf(12, 2, { op: 'addLearner', id: 'n4', addr: '127.0.0.1:4' }) : normal(i, 2));
  await write(dir, { identity: { clusterId: 'old', nodeId: 'n1' }, hardState: { term: 2, vote: '', commit: 15 }, entries: log });

  const r = await forceNewCluster({ storage: dir.storage(), snapshots: dir.snapshots(), id: 'n1' });
  t.equal(r.snapshotIndex, 10);
  t.equal(r.lastIndex, 16);
  t.equal(r.keptPastStoredCommit, 1);
  t.same(r.previous.learners, ['n4'], 'the configuration is the snapshot\'s plus the log\'s changes');
  t.same(r.changes.map((c) => `${c.op} ${c.id}`), ['remove n2', 'remove n3', 'remove n4']);
  t.not(r.clusterId, 'old');
  t.match(r.clusterId, /^[0-9a-f-]{36}$/, 'a random UUID');
  t.equal(r.commit, 19);

  const after = await read(dir);
  t.equal(after.first, 7, 'the trailing entries are kept');
  t.equal(after.last, 19);
  t.same(after.hardState, { term: 2, vote: '', commit: 19 });

  const run = await runAlone(dir, 19);
  t.equal(run.machine.restoredFrom, 10);
  t.same(run.machine.applied, ['s1', 's2', 's3', 'w11', 'w13', 'w14', 'w15', 'w16', 'after']);
  t.same(run.voters, ['n1']);
});

t.test('recovers when the log lies wholly behind the snapshot', async (t) => {
  const dir = await dataDir(t);
  await dir.snapshots().save({ meta: { index: 10, term: 2, membership: threeVoters }, data: Buffer.from('["s"]') });
  await write(dir, { identity: { clusterId: 'old', nodeId: 'n1' }, hardState: { term: 2, vote: '', commit: 10 }, entries: formation() });

  const r = await forceNewCluster({ storage: dir.storage(), snapshots: dir.snapshots(), id: 'n1' });
  t.equal(r.lastIndex, 10);
  t.equal(r.commit, 12);
  const after = await read(dir);
  t.equal(after.first, 11, 'the log restarts after the snapshot');
  t.equal(after.last, 12);
  const run = await runAlone(dir, 12);
  t.same(run.machine.applied, ['s', 'after']);
});

t.test('a learner survivor is promoted before the others are removed', async (t) => {
  const dir = await dataDir(t);
  const log = [
    conf(1, 1, { op: 'bootstrap', id: 'n2', addr: '127.0.0.1:2' }),
    conf(2, 1, { op: 'addLearner', id: 'n1', addr: '127.0.0.1:1' }),
    normal(3, 1),
  ];
  await write(dir, { identity: { clusterId: 'old', nodeId: 'n1' }, hardState: { term: 1, vote: '', commit: 3 }, entries: log });
  const r = await forceNewCluster({ storage: dir.storage(), snapshots: dir.snapshots(), id: 'n1' });
  t.same(r.changes, [{ op: 'promote', id: 'n1' }, { op: 'remove', id: 'n2' }]);
  t.same(r.membership.voters, ['n1']);
  const run = await runAlone(dir, 5);
  t.same(run.machine.applied, ['w3', 'after']);
});

t.test('the only member already: nothing is rewritten and the cluster ID is kept', async (t) => {
  const dir = await dataDir(t);
  await write(dir, { identity: { clusterId: 'old', nodeId: 'n1' }, hardState: { term: 1, vote: '', commit: 2 }, entries: [formation()[0]!, normal(2, 1)] });
  const r = await forceNewCluster({ storage: dir.storage(), snapshots: dir.snapshots(), id: 'n1' });
  t.equal(r.rewritten, false);
  t.equal(r.clusterId, 'old');
  const after = await read(dir);
  t.equal(after.last, 2);
  t.same(after.identity, { clusterId: 'old', nodeId: 'n1' });
});

/** Refusals leave the directory exactly as it was. */
interface RefusalScope {
  ok(value: unknown, message: string): boolean;
  same(found: unknown, wanted: unknown, message: string): boolean;
}

async function refused(t: RefusalScope, dir: Dir, id: string, message: RegExp): Promise<void> {
  const before = await read(dir);
  const err = await forceNewCluster({ storage: dir.storage(), snapshots: dir.snapshots(), id }).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(isSiderError(err, 'SIDER_CONFIG') && message.test(err.message), `refused with SIDER_CONFIG ${message}: ${String(err)}`);
  t.same(await read(dir), before, 'nothing changed');
}

t.test('refuses a fresh directory, an empty one, another node\'s, and one whose configuration lacks this server', async (t) => {
  await refused(t, await dataDir(t), 'n1', /-force-new-cluster: the data directory is fresh/);

  const empty = await dataDir(t);
  await write(empty, { identity: { clusterId: 'old', nodeId: 'n1' } });
  await refused(t, empty, 'n1', /holds no log and no snapshot/);

  const other = await dataDir(t);
  await write(other, { identity: { clusterId: 'old', nodeId: 'n2' }, hardState: { term: 1, vote: '', commit: 5 }, entries: formation() });
  await refused(t, other, 'n1', /belongs to node "n2"/);

  const removed = await dataDir(t);
  const log = [...formation(), conf(6, 1, { op: 'remove', id: 'n3' })];
  await write(removed, { identity: { clusterId: 'old', nodeId: 'n3' }, hardState: { term: 1, vote: '', commit: 6 }, entries: log });
  await refused(t, removed, 'n3', /"n3" is not a member/);
});

t.test('the flag: -force-new-cluster, SIDER_FORCE_NEW_CLUSTER or the config file key; off by default', async (t) => {
  const base = ['-raft-id', 'n1'];
  t.equal(loadServerConfig(base, {}).forceNewCluster, false);
  t.equal(loadServerConfig([...base, '-force-new-cluster'], {}).forceNewCluster, true);
  t.equal(loadServerConfig([...base, '--force-new-cluster'], {}).forceNewCluster, true);
  t.equal(loadServerConfig(base, { SIDER_FORCE_NEW_CLUSTER: '1' }).forceNewCluster, true);
  t.equal(loadServerConfig(base, { SIDER_FORCE_NEW_CLUSTER: 'false' }).forceNewCluster, false);
  const dir = await dataDir(t);
  const file = join(dir.root, 'sider.json');
  await writeFile(file, JSON.stringify({ 'force-new-cluster': true }));
  t.equal(loadServerConfig([...base, '-config-file', file], {}).forceNewCluster, true);
  t.throws(() => loadServerConfig(base, { SIDER_FORCE_NEW_CLUSTER: 'yes please' }), /SIDER_FORCE_NEW_CLUSTER: expected true or false/);
});
