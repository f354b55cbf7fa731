// LevelStorage compaction in small batches: appends queued while a long compaction runs go in between
// its batches, and the log stays contiguous and correct, also after a reopen.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { LevelStorage } from '../../raft/level-storage.ts';
import type { Entry } from '../../raft/types.ts';

function entry(index: number): Entry {
  return { index, term: 1, type: 'normal', data: Buffer.from(`e${index}`), rid: '' };
}

/** A LevelStorage opened in a fresh directory; closed and removed when the test ends. */
async function openFresh(t: { teardown: (fn: () => unknown) => void }, prefix: string): Promise<{ dir: string; storage: LevelStorage }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const storage = new LevelStorage(dir);
  await storage.open();
  return { dir, storage };
}

t.test('appends interleave with a compaction of thousands of entries', async (t) => {
  const fresh = await openFresh(t, 'sider-compact-');
  const dir = fresh.dir;
  let storage = fresh.storage;
  t.teardown(() => storage.close());
  const total = 6000;
  for (let i = 1; i <= total; i += 500) await storage.save(null, Array.from({ length: 500 }, (_, k) => entry(i + k)));
  t.equal(storage.lastIndex(), total);

  const order: string[] = [];
  const compacting = storage.compact(5000).then(() => order.push('compacted'));
  // Queued right after the compaction started: it must not wait for all of it.
  const appended = storage.save({ term: 1, vote: '', commit: total }, [entry(total + 1)]).then(() => {
    order.push(`appended with firstIndex ${storage.firstIndex()}`);
  });
  await Promise.all([compacting, appended]);
  t.equal(order.length, 2);
  t.equal(order[1], 'compacted', 'the compaction finished after the append');
  t.match(order[0], /^appended with firstIndex (\d+)$/);
  const firstAtAppend = Number(/(\d+)$/.exec(order[0]!)![1]);
  t.ok(firstAtAppend > 1 && firstAtAppend < 5001, `the append went in part-way through the compaction (first index then ${firstAtAppend})`);

  t.equal(storage.firstIndex(), 5001);
  t.equal(storage.lastIndex(), total + 1);
  const loaded = await storage.loadEntries(5001, total + 1);
  t.same(
    loaded.map((e) => e.index),
    Array.from({ length: total + 1 - 5000 }, (_, i) => 5001 + i),
    'the entries left are contiguous and intact',
  );

  await storage.close();
  storage = new LevelStorage(dir);
  await storage.open();
  t.equal(storage.firstIndex(), 5001, 'after a reopen the log starts where the compaction ended');
  t.equal(storage.lastIndex(), total + 1);
  t.equal((await storage.loadHardState())?.commit, total);
});

t.test('a batch that fails part-way (an entry that cannot be encoded) writes nothing and leaves the log usable', async (t) => {
  const { storage } = await openFresh(t, 'sider-batch-');
  t.teardown(() => storage.close());
  await storage.save({ term: 1, vote: '', commit: 0 }, [entry(1), entry(2), entry(3)]);
  // Overwrites 2..3 and would delete nothing else; the bad type throws while the batch is being made.
  const bad = { ...entry(3), type: 'bogus' } as unknown as Entry;
  await t.rejects(storage.save({ term: 2, vote: 'x', commit: 1 }, [{ ...entry(2), term: 2 }, bad]), /unknown entry type/);
  t.equal(storage.lastIndex(), 3);
  t.same((await storage.loadEntries(1, 3)).map((e) => [e.index, e.term]), [[1, 1], [2, 1], [3, 1]], 'entry 2 was not overwritten');
  t.same(await storage.loadHardState(), { term: 1, vote: '', commit: 0 }, 'nor the hard state');
  await storage.save(null, [entry(4)]);
  t.equal(storage.lastIndex(), 4, 'later appends still work');
});

t.test('entry keys past 2^32 keep their order and read back after a reopen', async (t) => {
  const first = 2 ** 32 - 2;
  const fresh = await openFresh(t, 'sider-keys-');
  const dir = fresh.dir;
  let storage = fresh.storage;
  await storage.save(null, [entry(first), entry(first + 1), entry(first + 2), entry(first + 3)]);
  await storage.close();
  storage = new LevelStorage(dir);
  await storage.open();
  t.teardown(() => storage.close());
  t.equal(storage.firstIndex(), first);
  t.equal(storage.lastIndex(), first + 3);
  t.same((await storage.loadEntries(first, first + 3)).map((e) => e.data.toString()), [0, 1, 2, 3].map((k) => `e${first + k}`));
});
