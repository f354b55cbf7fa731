// Damaged or contended stores: LevelStorage and FileSnapshotStore refuse corrupt data with
// SIDER_CORRUPT_STORE, a locked data directory with SIDER_CONFIG, and ignore crash leftovers.

import t from 'tap';
import { Level } from 'level';
import { mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { FileSnapshotStore, crc32Sliced, snapshotFileName } from '../../raft/file-snapshot-store.ts';
import { LevelStorage } from '../../raft/level-storage.ts';
import type { Entry, Snapshot } from '../../raft/types.ts';

interface Teardown {
  teardown(fn: () => unknown): void;
}

async function tempDir(t: Teardown): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sider-corrupt-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function entries(lo: number, hi: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = lo; i <= hi; i++) out.push({ index: i, term, type: 'normal', data: Buffer.from(`value-${i}`), rid: '' });
  return out;
}

/** LevelStorage's key for log entry `index`: 'e' followed by the index as 8 bytes big-endian. */
function entryKey(index: number): Buffer {
  const key = Buffer.alloc(9);
  key[0] = 0x65;
  key.writeBigUInt64BE(BigInt(index), 1);
  return key;
}

/** A LevelStorage directory holding entries 1..5, a hard state and an identity, closed. */
async function populated(t: Teardown): Promise<string> {
  const dir = await tempDir(t);
  const s = new LevelStorage(dir);
  await s.open();
  await s.saveIdentity({ clusterId: 'c', nodeId: 'n1' });
  await s.save({ term: 1, vote: 'n1', commit: 2 }, entries(1, 5, 1));
  await s.close();
  return dir;
}

/** Opens the raw database (the store must be closed), lets `edit` damage it, closes it. */
async function withRawDb(dir: string, edit: (db: Level<Buffer, Buffer>) => Promise<void>): Promise<void> {
  const db = new Level<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  await db.open();
  try {
    await edit(db);
  } finally {
    await db.close();
  }
}

async function openStorage(t: Teardown, dir: string): Promise<LevelStorage> {
  const s = new LevelStorage(dir);
  await s.open();
  t.teardown(() => s.close());
  return s;
}

t.test('LevelStorage', async (t) => {
  t.test('a flipped byte in a stored entry fails loadEntries with SIDER_CORRUPT_STORE', async (t) => {
    const dir = await populated(t);
    await withRawDb(dir, async (db) => {
      const value = await db.get(entryKey(3));
      t.ok(value);
      value![value!.length - 6]! ^= 0x01;
      await db.put(entryKey(3), value!);
    });
    const s = await openStorage(t, dir);
    t.equal(s.lastIndex(), 5, 'open learns the bounds from the keys');
    await t.rejects(s.loadEntries(1, 5), { code: 'SIDER_CORRUPT_STORE', message: /log entry 3/ });
    await t.rejects(s.loadEntries(3, 3), { code: 'SIDER_CORRUPT_STORE' });
    t.equal((await s.loadEntries(4, 5)).length, 2, 'intact entries still load');
  });

  t.test('a truncated entry value fails loadEntries with SIDER_CORRUPT_STORE', async (t) => {
    const dir = await populated(t);
    await withRawDb(dir, (db) => db.put(entryKey(5), Buffer.from([1, 2])));
    const s = await openStorage(t, dir);
    await t.rejects(s.loadEntries(5, 5), { code: 'SIDER_CORRUPT_STORE' });
  });

  t.test('an entry stored under another index’s key is refused', async (t) => {
    const dir = await populated(t);
    await withRawDb(dir, async (db) => {
      await db.put(entryKey(2), (await db.get(entryKey(4)))!);
    });
    const s = await openStorage(t, dir);
    await t.rejects(s.loadEntries(2, 2), { code: 'SIDER_CORRUPT_STORE' });
  });

  t.test('a missing middle entry is detected as a gap at open', async (t) => {
    const dir = await populated(t);
    await withRawDb(dir, (db) => db.del(entryKey(3)));
    const s = new LevelStorage(dir);
    await t.rejects(s.open(), { code: 'SIDER_CORRUPT_STORE', message: /gap/ });
    // The failed open released the database: it can be opened again.
    await withRawDb(dir, async () => {});
  });

  t.test('a malformed key in the log range is refused at open', async (t) => {
    const dir = await populated(t);
    await withRawDb(dir, (db) => db.put(Buffer.from('e123'), Buffer.from('x')));
    await t.rejects(new LevelStorage(dir).open(), { code: 'SIDER_CORRUPT_STORE' });
  });

  t.test('a corrupt hard state is refused at open', async (t) => {
    const dir = await populated(t);
    await withRawDb(dir, async (db) => {
      const key = Buffer.from('s/hard-state');
      const value = (await db.get(key))!;
      value[0]! ^= 0xff;
      await db.put(key, value);
    });
    await t.rejects(new LevelStorage(dir).open(), { code: 'SIDER_CORRUPT_STORE', message: /hard state/ });
  });

  t.test('a corrupt identity is refused at open', async (t) => {
    const dir = await populated(t);
    await withRawDb(dir, (db) => db.put(Buffer.from('s/identity'), Buffer.from('{"clusterId":')));
    await t.rejects(new LevelStorage(dir).open(), { code: 'SIDER_CORRUPT_STORE', message: /identity/ });
  });

  t.test('a second open of the same directory fails with SIDER_CONFIG', async (t) => {
    const dir = await populated(t);
    const first = await openStorage(t, dir);
    await t.rejects(new LevelStorage(dir).open(), {
      code: 'SIDER_CONFIG',
      message: /data directory .* is in use by another process/,
    });
    await first.close();
    const again = await openStorage(t, dir);
    t.equal(again.lastIndex(), 5, 'the directory opens once the first holder closed it');
  });
});

t.test('FileSnapshotStore', async (t) => {
  const snap = (index: number, term: number): Snapshot => ({
    meta: { index, term, membership: { voters: ['a'], learners: [], addrs: { a: '127.0.0.1:1' }, removed: [] } },
    data: Buffer.from(`snapshot data at ${index}`),
  });

  async function stored(t: Teardown): Promise<{ dir: string; file: string }> {
    const dir = await tempDir(t);
    const store = new FileSnapshotStore(dir);
    await store.save(snap(5, 1));
    await store.save(snap(9, 2));
    return { dir, file: join(dir, snapshotFileName({ index: 9, term: 2 })) };
  }

  async function damage(file: string, edit: (b: Buffer) => Buffer): Promise<void> {
    await writeFile(file, edit(await readFile(file)));
  }

  t.test('a flipped data byte fails latest with SIDER_CORRUPT_STORE naming the file', async (t) => {
    const { dir, file } = await stored(t);
    await damage(file, (b) => {
      b[b.length - 10]! ^= 0x40;
      return b;
    });
    await t.rejects(new FileSnapshotStore(dir).latest(), {
      code: 'SIDER_CORRUPT_STORE',
      message: new RegExp(snapshotFileName({ index: 9, term: 2 })),
    });
  });

  t.test('a flipped checksum byte fails latest', async (t) => {
    const { dir, file } = await stored(t);
    await damage(file, (b) => {
      b[b.length - 1]! ^= 0x01;
      return b;
    });
    await t.rejects(new FileSnapshotStore(dir).latest(), { code: 'SIDER_CORRUPT_STORE' });
  });

  t.test('a truncated file fails latest', async (t) => {
    const { dir, file } = await stored(t);
    await damage(file, (b) => b.subarray(0, b.length - 7));
    await t.rejects(new FileSnapshotStore(dir).latest(), { code: 'SIDER_CORRUPT_STORE' });
    await damage(file, (b) => b.subarray(0, 10));
    await t.rejects(new FileSnapshotStore(dir).latest(), { code: 'SIDER_CORRUPT_STORE' });
    await t.rejects(new FileSnapshotStore(dir).list(), { code: 'SIDER_CORRUPT_STORE' });
  });

  t.test('an empty file fails latest', async (t) => {
    const { dir, file } = await stored(t);
    await writeFile(file, Buffer.alloc(0));
    await t.rejects(new FileSnapshotStore(dir).latest(), { code: 'SIDER_CORRUPT_STORE' });
  });

  t.test('bad magic bytes fail latest and list', async (t) => {
    const { dir, file } = await stored(t);
    await damage(file, (b) => {
      b.write('XXXXXXXX', 0, 'latin1');
      return b;
    });
    await t.rejects(new FileSnapshotStore(dir).latest(), { code: 'SIDER_CORRUPT_STORE', message: /magic/ });
    await t.rejects(new FileSnapshotStore(dir).list(), { code: 'SIDER_CORRUPT_STORE', message: /magic/ });
  });

  t.test('a file whose header disagrees with its name is refused', async (t) => {
    const { dir, file } = await stored(t);
    await rename(file, join(dir, snapshotFileName({ index: 12, term: 2 })));
    await t.rejects(new FileSnapshotStore(dir).latest(), { code: 'SIDER_CORRUPT_STORE', message: /index 9/ });
  });

  t.test('temp files left by a crash are ignored, then removed by the next save', async (t) => {
    const { dir } = await stored(t);
    const leftovers = [`.tmp-${snapshotFileName({ index: 20, term: 3 })}-999-0`, '.tmp-garbage'];
    for (const name of leftovers) await writeFile(join(dir, name), 'half-written');
    const store = new FileSnapshotStore(dir);
    t.equal((await store.latest())?.meta.index, 9);
    t.same(
      (await store.list()).map((m) => m.index),
      [9, 5],
    );
    await store.save(snap(11, 2));
    t.same((await readdir(dir)).sort(), [snapshotFileName({ index: 9, term: 2 }), snapshotFileName({ index: 11, term: 2 })]);
  });

  t.test('unrelated files in the directory are left alone', async (t) => {
    const { dir } = await stored(t);
    await writeFile(join(dir, 'README'), 'not a snapshot');
    const store = new FileSnapshotStore(dir);
    await store.save(snap(11, 2));
    t.same(
      (await store.list()).map((m) => m.index),
      [11, 9],
    );
    t.ok((await readdir(dir)).includes('README'));
  });
});

t.test('the snapshot checksum computed a slice at a time equals crc32 over the whole', async (t) => {
  const MiB = 1024 * 1024;
  const data = Buffer.alloc(3 * MiB + 17);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
  for (const n of [0, 1, MiB - 1, MiB, MiB + 1, 2 * MiB, data.length]) {
    const part = data.subarray(0, n);
    t.equal(await crc32Sliced(part), crc32(part), `${n} bytes`);
    t.equal(await crc32Sliced(part, 0x1234abcd), crc32(part, 0x1234abcd), `${n} bytes after a header`);
  }
});
