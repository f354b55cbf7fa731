// FileSnapshotStore writes a snapshot in flushed chunks (syncChunkBytes): every chunk size gives the
// same file, read back byte for byte; a bad size is a configuration error.

import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { FileSnapshotStore } from '../../raft/file-snapshot-store.ts';
import type { Snapshot } from '../../raft/types.ts';

const data = Buffer.alloc(3 * 1024 * 1024 + 777);
for (let i = 0; i + 4 <= data.length; i += 4) data.writeUInt32BE((i * 2_654_435_761) >>> 0, i);
const snap: Snapshot = { meta: { index: 9, term: 2, membership: { voters: ['a'], learners: [], addrs: { a: '127.0.0.1:1' }, removed: [] } }, data };

t.test('whole, one-byte-odd and MiB chunks write the same file and read back the same bytes', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'sider-snapchunks-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const files: Buffer[] = [];
  for (const chunk of [0, 1024 * 1024, 1024 * 1024 + 1, 64 * 1024 * 1024]) {
    const dir = join(root, `c${chunk}`);
    await new FileSnapshotStore(dir, 2, chunk).save(snap);
    const back = await new FileSnapshotStore(dir).latest();
    t.ok(back && Buffer.from(back.data).equals(data), `chunks of ${chunk}: the same bytes`);
    const [name] = await readdir(dir);
    files.push(await readFile(join(dir, name!)));
  }
  t.ok(files.every((f) => f.equals(files[0]!)), 'identical files');
});

t.test('a negative or fractional chunk size is refused', async (t) => {
  for (const bad of [-1, 1.5, Number.NaN]) t.throws(() => new FileSnapshotStore(join(tmpdir(), 'unused'), 2, bad), { code: 'SIDER_CONFIG' });
});
