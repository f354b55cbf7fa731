// One conformance suite per storage port, run against every implementation: RaftStorage
// (MemoryStorage, LevelStorage) and SnapshotStore (MemorySnapshotStore, FileSnapshotStore).

import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileSnapshotStore } from '../../raft/file-snapshot-store.ts';
import { LevelStorage } from '../../raft/level-storage.ts';
import { MemorySnapshotStore, MemoryStorage } from '../../raft/memory-storage.ts';
import type { RaftStorage, SnapshotStore } from '../../raft/ports.ts';
import type { Entry, Snapshot, SnapshotMeta } from '../../raft/types.ts';

/** The part of a tap test the suites need: cleanup runs when the subtest ends. */
interface Teardown {
  teardown(fn: () => unknown): void;
}

interface StorageHarness {
  storage: RaftStorage;
  /** Closes the storage and opens it again on the same data ("restart"). */
  reopen(): Promise<RaftStorage>;
  cleanup(): Promise<void>;
}

interface SnapshotHarness {
  store: SnapshotStore;
  /** A store over the same data, as after a restart. */
  reopen(): SnapshotStore;
  cleanup(): Promise<void>;
}

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'sider-storage-'));
}

function entry(index: number, term: number, text = `e${index}t${term}`): Entry {
  return { index, term, type: 'normal', data: Buffer.from(text), rid: index % 2 === 0 ? `rid-${index}` : '' };
}

function entries(lo: number, hi: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = lo; i <= hi; i++) out.push(entry(i, term));
  return out;
}

/** Entries with their bytes as hex, so Buffers and Uint8Arrays compare equal. */
function plain(es: Entry[]): unknown[] {
  return es.map((e) => ({ ...e, data: Buffer.from(e.data).toString('hex') }));
}

function raftStorageSuite(name: string, make: () => Promise<StorageHarness>): void {
  t.test(`RaftStorage conformance: ${name}`, async (t) => {
    async function setup(t: Teardown): Promise<StorageHarness> {
      const h = await make();
      t.teardown(h.cleanup);
      return h;
    }

    t.test('a fresh store is empty', async (t) => {
      const { storage } = await setup(t);
      t.equal(await storage.loadIdentity(), null);
      t.equal(await storage.loadHardState(), null);
      t.equal(storage.firstIndex(), 0);
      t.equal(storage.lastIndex(), 0);
      t.same(await storage.loadEntries(1, 0), []);
    });

    t.test('entries, hard state and identity survive a reopen', async (t) => {
      const h = await setup(t);
      await h.storage.saveIdentity({ clusterId: 'c1', nodeId: 'n1' });
      await h.storage.save({ term: 2, vote: 'n1', commit: 3 }, entries(1, 5, 2));
      t.equal(h.storage.firstIndex(), 1);
      t.equal(h.storage.lastIndex(), 5);
      const storage = await h.reopen();
      t.equal(storage.firstIndex(), 1);
      t.equal(storage.lastIndex(), 5);
      t.same(plain(await storage.loadEntries(1, 5)), plain(entries(1, 5, 2)));
      t.same(await storage.loadHardState(), { term: 2, vote: 'n1', commit: 3 });
      t.same(await storage.loadIdentity(), { clusterId: 'c1', nodeId: 'n1' });
    });

    t.test('entry types, empty data and request ids round-trip', async (t) => {
      const h = await setup(t);
      const es: Entry[] = [
        { index: 1, term: 1, type: 'noop', data: new Uint8Array(0), rid: '' },
        { index: 2, term: 1, type: 'conf', data: Uint8Array.from([0, 1, 2, 255]), rid: 'r-ü' },
        { index: 3, term: 1, type: 'normal', data: Buffer.alloc(70_000, 7), rid: 'x'.repeat(300) },
      ];
      await h.storage.appendEntries(es);
      const storage = await h.reopen();
      t.same(plain(await storage.loadEntries(1, 3)), plain(es));
    });

    t.test('save with only a hard state leaves the log alone, and the last hard state wins', async (t) => {
      const h = await setup(t);
      await h.storage.appendEntries(entries(1, 3, 1));
      await h.storage.save({ term: 1, vote: '', commit: 0 }, []);
      await h.storage.saveHardState({ term: 4, vote: 'n2', commit: 2 });
      await h.storage.save({ term: 5, vote: 'n3', commit: 3 }, []);
      const storage = await h.reopen();
      t.equal(storage.lastIndex(), 3);
      t.same(await storage.loadHardState(), { term: 5, vote: 'n3', commit: 3 });
    });

    t.test('saving nothing changes nothing', async (t) => {
      const { storage } = await setup(t);
      await storage.save(null, []);
      await storage.appendEntries([]);
      t.equal(storage.lastIndex(), 0);
      t.equal(await storage.loadHardState(), null);
    });

    t.test('the identity is overwritten by a later saveIdentity', async (t) => {
      const h = await setup(t);
      await h.storage.saveIdentity({ clusterId: 'c1', nodeId: 'n1' });
      await h.storage.saveIdentity({ clusterId: 'c2', nodeId: 'n9' });
      const storage = await h.reopen();
      t.same(await storage.loadIdentity(), { clusterId: 'c2', nodeId: 'n9' });
    });

    t.test('appending over a suffix replaces it and drops what followed', async (t) => {
      const h = await setup(t);
      await h.storage.appendEntries(entries(1, 6, 1));
      await h.storage.save({ term: 2, vote: 'n2', commit: 2 }, entries(3, 4, 2));
      t.equal(h.storage.lastIndex(), 4);
      const storage = await h.reopen();
      t.equal(storage.firstIndex(), 1);
      t.equal(storage.lastIndex(), 4);
      t.same(plain(await storage.loadEntries(1, 4)), plain([...entries(1, 2, 1), ...entries(3, 4, 2)]));
    });

    t.test('appending a longer suffix replaces the overlap and extends the log', async (t) => {
      const h = await setup(t);
      await h.storage.appendEntries(entries(1, 3, 1));
      await h.storage.appendEntries(entries(2, 8, 3));
      const storage = await h.reopen();
      t.equal(storage.lastIndex(), 8);
      t.same(plain(await storage.loadEntries(1, 8)), plain([entry(1, 1), ...entries(2, 8, 3)]));
    });

    t.test('appending right after the last entry extends the log', async (t) => {
      const { storage } = await setup(t);
      await storage.appendEntries(entries(1, 2, 1));
      await storage.appendEntries(entries(3, 4, 1));
      t.equal(storage.lastIndex(), 4);
      t.same(plain(await storage.loadEntries(1, 4)), plain(entries(1, 4, 1)));
    });

    t.test('an append that would leave a gap is refused as a broken invariant', async (t) => {
      const { storage } = await setup(t);
      await storage.appendEntries(entries(1, 2, 1));
      await t.rejects(storage.appendEntries(entries(4, 5, 1)), { name: 'InvariantError' });
      await t.rejects(storage.save({ term: 9, vote: '', commit: 0 }, [entry(3, 1), entry(5, 1)]), {
        name: 'InvariantError',
      });
      t.equal(storage.lastIndex(), 2);
      t.same(await storage.loadHardState(), null, 'a refused save writes nothing');
      await t.rejects(storage.appendEntries([entry(0, 1)]), { name: 'InvariantError' });
    });

    t.test('an empty log accepts its first append at any index', async (t) => {
      const h = await setup(t);
      await h.storage.appendEntries(entries(100, 102, 7));
      const storage = await h.reopen();
      t.equal(storage.firstIndex(), 100);
      t.equal(storage.lastIndex(), 102);
      t.same(plain(await storage.loadEntries(100, 102)), plain(entries(100, 102, 7)));
    });

    t.test('compact removes the prefix and the indices follow', async (t) => {
      const h = await setup(t);
      await h.storage.appendEntries(entries(1, 10, 1));
      await h.storage.compact(4);
      t.equal(h.storage.firstIndex(), 5);
      t.equal(h.storage.lastIndex(), 10);
      await h.storage.compact(2);
      t.equal(h.storage.firstIndex(), 5, 'compacting below firstIndex does nothing');
      const storage = await h.reopen();
      t.equal(storage.firstIndex(), 5);
      t.equal(storage.lastIndex(), 10);
      t.same(plain(await storage.loadEntries(5, 10)), plain(entries(5, 10, 1)));
      await t.rejects(storage.loadEntries(4, 6), { name: 'InvariantError' });
    });

    t.test('compacting through the last entry empties the log, which then accepts any start', async (t) => {
      const h = await setup(t);
      await h.storage.appendEntries(entries(1, 5, 1));
      await h.storage.compact(5);
      t.equal(h.storage.firstIndex(), 0);
      t.equal(h.storage.lastIndex(), 0);
      await h.storage.compact(9);
      await h.storage.appendEntries(entries(10, 11, 2));
      const storage = await h.reopen();
      t.equal(storage.firstIndex(), 10);
      t.equal(storage.lastIndex(), 11);
      t.same(plain(await storage.loadEntries(10, 11)), plain(entries(10, 11, 2)));
    });

    t.test('compacting past the last entry empties the log', async (t) => {
      const h = await setup(t);
      await h.storage.appendEntries(entries(1, 5, 1));
      await h.storage.compact(50);
      const storage = await h.reopen();
      t.equal(storage.firstIndex(), 0);
      t.equal(storage.lastIndex(), 0);
    });

    t.test('compacting an empty log does nothing', async (t) => {
      const { storage } = await setup(t);
      await storage.compact(10);
      t.equal(storage.firstIndex(), 0);
      t.equal(storage.lastIndex(), 0);
    });

    t.test('an append that starts before firstIndex replaces the whole log', async (t) => {
      const h = await setup(t);
      await h.storage.appendEntries(entries(1, 10, 1));
      await h.storage.compact(5);
      await h.storage.appendEntries(entries(3, 7, 2));
      const storage = await h.reopen();
      t.equal(storage.firstIndex(), 3);
      t.equal(storage.lastIndex(), 7);
      t.same(plain(await storage.loadEntries(3, 7)), plain(entries(3, 7, 2)));
    });

    t.test('loadEntries returns exactly [lo, hi] and refuses ranges outside the log', async (t) => {
      const { storage } = await setup(t);
      await storage.appendEntries(entries(1, 10, 1));
      t.same(plain(await storage.loadEntries(4, 6)), plain(entries(4, 6, 1)));
      t.same(plain(await storage.loadEntries(10, 10)), plain([entry(10, 1)]));
      t.same(await storage.loadEntries(5, 4), [], 'lo > hi is an empty range');
      await t.rejects(storage.loadEntries(0, 3), { name: 'InvariantError' });
      await t.rejects(storage.loadEntries(8, 11), { name: 'InvariantError' });
    });

    t.test('loadEntries on an empty log refuses any non-empty range', async (t) => {
      const { storage } = await setup(t);
      await t.rejects(storage.loadEntries(1, 1), { name: 'InvariantError' });
    });

    t.test('entries read back are not affected by later changes to the caller’s buffers', async (t) => {
      const { storage } = await setup(t);
      const e = entry(1, 1, 'abc');
      await storage.appendEntries([e]);
      e.data[0] = 0x7a;
      const [back] = await storage.loadEntries(1, 1);
      t.equal(Buffer.from(back!.data).toString(), 'abc');
    });

    t.test('writes issued without waiting are applied in call order', async (t) => {
      const h = await setup(t);
      await Promise.all([
        h.storage.appendEntries(entries(1, 20, 1)),
        h.storage.save({ term: 2, vote: 'a', commit: 5 }, entries(15, 25, 2)),
        h.storage.compact(10),
        h.storage.saveHardState({ term: 3, vote: 'b', commit: 12 }),
      ]);
      const storage = await h.reopen();
      t.equal(storage.firstIndex(), 11);
      t.equal(storage.lastIndex(), 25);
      t.same(plain(await storage.loadEntries(11, 25)), plain([...entries(11, 14, 1), ...entries(15, 25, 2)]));
      t.same(await storage.loadHardState(), { term: 3, vote: 'b', commit: 12 });
    });

    t.test('a closed store refuses to be used', async (t) => {
      const { storage } = await setup(t);
      await storage.close();
      await t.rejects(storage.loadHardState(), { name: 'InvariantError' });
      await t.rejects(storage.appendEntries(entries(1, 1, 1)), { name: 'InvariantError' });
    });
  });
}

function snapshotStoreSuite(name: string, make: (retain?: number) => Promise<SnapshotHarness>): void {
  t.test(`SnapshotStore conformance: ${name}`, async (t) => {
    async function setup(t: Teardown, retain?: number): Promise<SnapshotHarness> {
      const h = await make(retain);
      t.teardown(h.cleanup);
      return h;
    }

    function snap(index: number, term: number, text = `state@${index}`): Snapshot {
      return {
        meta: {
          index,
          term,
          membership: {
            voters: ['a', 'b', 'c'],
            learners: ['d'],
            addrs: { a: '10.0.0.1:7000', b: '10.0.0.2:7000', c: '10.0.0.3:7000', d: '10.0.0.4:7000' },
            removed: ['old'],
          },
        },
        data: Buffer.from(text),
      };
    }

    function plainSnap(s: Snapshot | null): unknown {
      return s && { meta: s.meta, data: Buffer.from(s.data).toString('hex') };
    }

    const ids = (metas: SnapshotMeta[]): string[] => metas.map((m) => `${m.index}/${m.term}`);

    t.test('a fresh store has no snapshot', async (t) => {
      const { store } = await setup(t);
      t.equal(await store.latest(), null);
      t.same(await store.list(), []);
    });

    t.test('latest returns the saved snapshot, also after a reopen', async (t) => {
      const h = await setup(t);
      await h.store.save(snap(10, 2));
      t.same(plainSnap(await h.store.latest()), plainSnap(snap(10, 2)));
      const store = h.reopen();
      t.same(plainSnap(await store.latest()), plainSnap(snap(10, 2)));
      t.same(await store.list(), [snap(10, 2).meta]);
    });

    t.test('a snapshot of several write chunks (4 MiB each) and an odd tail reads back byte for byte', async (t) => {
      const h = await setup(t);
      const data = Buffer.alloc(9 * 1024 * 1024 + 12_345);
      for (let i = 0; i + 4 <= data.length; i += 4) data.writeUInt32BE((i * 2_654_435_761) >>> 0, i);
      const big: Snapshot = { meta: snap(40, 3).meta, data };
      await h.store.save(big);
      const back = await h.reopen().latest();
      t.same(back?.meta, big.meta);
      t.ok(back && Buffer.from(back.data).equals(data), 'the same bytes');
    });

    t.test('only the newest two are kept by default', async (t) => {
      const h = await setup(t);
      await h.store.save(snap(10, 1));
      await h.store.save(snap(20, 1));
      await h.store.save(snap(30, 2));
      t.same(ids(await h.store.list()), ['30/2', '20/1']);
      const store = h.reopen();
      t.same(ids(await store.list()), ['30/2', '20/1']);
      t.same(plainSnap(await store.latest()), plainSnap(snap(30, 2)));
    });

    t.test('retain sets how many are kept', async (t) => {
      const { store } = await setup(t, 3);
      for (const i of [1, 2, 3, 4, 5]) await store.save(snap(i * 10, 1));
      t.same(ids(await store.list()), ['50/1', '40/1', '30/1']);
    });

    t.test('newest means highest index, not last saved', async (t) => {
      const { store } = await setup(t);
      await store.save(snap(30, 3));
      await store.save(snap(10, 1));
      t.same(ids(await store.list()), ['30/3', '10/1']);
      t.equal((await store.latest())?.meta.index, 30);
      await store.save(snap(5, 1));
      t.same(ids(await store.list()), ['30/3', '10/1'], 'an older snapshot is pruned at once');
    });

    t.test('saving the same index and term again replaces the snapshot', async (t) => {
      const { store } = await setup(t);
      await store.save(snap(10, 1, 'first'));
      await store.save(snap(10, 1, 'second'));
      t.same(ids(await store.list()), ['10/1']);
      t.same(plainSnap(await store.latest()), plainSnap(snap(10, 1, 'second')));
    });

    t.test('empty data and an empty membership round-trip', async (t) => {
      const h = await setup(t);
      const s: Snapshot = {
        meta: { index: 1, term: 1, membership: { voters: [], learners: [], addrs: {}, removed: [] } },
        data: new Uint8Array(0),
      };
      await h.store.save(s);
      t.same(plainSnap(await h.reopen().latest()), plainSnap(s));
    });

    t.test('large data round-trips', async (t) => {
      const h = await setup(t);
      const data = Buffer.alloc(3 * 1024 * 1024);
      for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
      await h.store.save({ meta: snap(7, 1).meta, data });
      const back = await h.reopen().latest();
      t.ok(back && Buffer.from(back.data).equals(data));
    });

    t.test('saves issued without waiting all complete, and retain still holds', async (t) => {
      const { store } = await setup(t);
      await Promise.all([1, 2, 3, 4].map((i) => store.save(snap(i, 1))));
      t.same(ids(await store.list()), ['4/1', '3/1']);
    });

    t.test('retain below 1 is a configuration error', async (t) => {
      await t.rejects(setup(t, 0), { code: 'SIDER_CONFIG' });
    });
  });
}

raftStorageSuite('MemoryStorage', async () => {
  const storage = new MemoryStorage();
  await storage.open();
  return {
    storage,
    async reopen() {
      await storage.close();
      await storage.open();
      return storage;
    },
    async cleanup() {
      await storage.close();
    },
  };
});

raftStorageSuite('LevelStorage', async () => {
  const dir = await tempDir();
  let storage = new LevelStorage(dir);
  await storage.open();
  return {
    storage,
    async reopen() {
      await storage.close();
      storage = new LevelStorage(dir);
      await storage.open();
      return storage;
    },
    async cleanup() {
      await storage.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

snapshotStoreSuite('MemorySnapshotStore', async (retain) => {
  const store = new MemorySnapshotStore(retain);
  return { store, reopen: () => store, cleanup: async () => {} };
});

snapshotStoreSuite('FileSnapshotStore', async (retain) => {
  const dir = await tempDir();
  const cleanup = () => rm(dir, { recursive: true, force: true });
  // A directory that does not exist yet: the store creates it.
  const snapDir = join(dir, 'snapshots', 'nested');
  try {
    const store = new FileSnapshotStore(snapDir, retain);
    return { store, reopen: () => new FileSnapshotStore(snapDir, retain), cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
});
