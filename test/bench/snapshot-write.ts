// What writing a large snapshot file does to the Raft log's synced writes on the same disk: a
// LevelStorage appends one entry every 3 ms (each a synced batch, as the driver writes them) while
// a FileSnapshotStore saves a snapshot of --mb MB, written whole (flushed once at the end) or in
// chunks of --chunk-mb MB each flushed before the next. Reports the log writes' latency while the
// snapshot is written. Bounded: --rounds (≤ 10) of each, a few seconds each.
//
//   node test/bench/snapshot-write.ts [--mb 45] [--chunk-mb 4] [--rounds 3] [--dir DIR]

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { FileSnapshotStore } from '../../raft/file-snapshot-store.ts';
import { LevelStorage } from '../../raft/level-storage.ts';
import type { Snapshot } from '../../raft/types.ts';
import { percentile } from './level-fsync.ts';

export interface SnapshotWriteResult {
  mode: string;
  snapshotMs: number;
  /** Synced log writes that overlapped the snapshot's save. */
  logWrites: number;
  logP50Ms: number;
  logP99Ms: number;
  logMaxMs: number;
}

const LOG_EVERY_MS = 3;
const ENTRY_DATA = Buffer.alloc(300, 0x61);

async function round(dir: string, data: Buffer, chunkBytes: number, nextIndex: { v: number }, storage: LevelStorage): Promise<SnapshotWriteResult> {
  const store = new FileSnapshotStore(join(dir, 'snapshots'), 2, chunkBytes);
  const lat: { at: number; ms: number }[] = [];
  let writing = true;
  const logger = (async () => {
    // Bounded by the snapshot's end (plus 100 ms) and by 20 s.
    const stopBy = performance.now() + 20_000;
    while (writing && performance.now() < stopBy) {
      const t0 = performance.now();
      const index = nextIndex.v++;
      await storage.save({ term: 1, vote: 'a', commit: index }, [{ index, term: 1, type: 'normal', rid: '', data: ENTRY_DATA }]);
      lat.push({ at: t0, ms: performance.now() - t0 });
      await new Promise((r) => setTimeout(r, LOG_EVERY_MS));
    }
  })();
  await new Promise((r) => setTimeout(r, 200));
  const snap: Snapshot = { meta: { index: nextIndex.v, term: 1, membership: { voters: ['a'], learners: [], addrs: { a: '127.0.0.1:1' }, removed: [] } }, data };
  const start = performance.now();
  await store.save(snap);
  const end = performance.now();
  await new Promise((r) => setTimeout(r, 100));
  writing = false;
  await logger;
  const during = lat.filter((l) => l.at + l.ms >= start && l.at <= end + 100).map((l) => l.ms).sort((a, b) => a - b);
  return {
    mode: chunkBytes === 0 ? 'whole' : `chunks of ${chunkBytes / 1024 / 1024} MiB`,
    snapshotMs: end - start,
    logWrites: during.length,
    logP50Ms: percentile(during, 50),
    logP99Ms: percentile(during, 99),
    logMaxMs: during.at(-1) ?? 0,
  };
}

export async function runSnapshotWrite(opts: { mb?: number; chunkMb?: number; rounds?: number; dir?: string } = {}): Promise<SnapshotWriteResult[]> {
  const mb = Math.min(Math.max(opts.mb ?? 45, 1), 512);
  const chunkBytes = Math.max(1, Math.round((opts.chunkMb ?? 4) * 1024 * 1024));
  const rounds = Math.min(Math.max(opts.rounds ?? 3, 1), 10);
  const dir = await mkdtemp(join(opts.dir ?? tmpdir(), 'sider-bench-snapwrite-'));
  const storage = new LevelStorage(join(dir, 'raft'));
  await storage.open();
  const results: SnapshotWriteResult[] = [];
  try {
    const nextIndex = { v: 1 };
    const data = Buffer.alloc(mb * 1024 * 1024, 0x7b);
    for (let i = 0; i < rounds; i++) {
      // Interleaved, so that the disk's drift affects both alike.
      results.push(await round(dir, data, 0, nextIndex, storage));
      results.push(await round(dir, data, chunkBytes, nextIndex, storage));
    }
  } finally {
    await storage.close();
    await rm(dir, { recursive: true, force: true });
  }
  return results;
}

/** The rows `console.table` prints (here and in run.ts). */
export function snapshotWriteTable(results: SnapshotWriteResult[]): Record<string, string | number>[] {
  return results.map((r) => ({
    mode: r.mode,
    'snapshot ms': r.snapshotMs.toFixed(0),
    'log writes': r.logWrites,
    'log p50 ms': r.logP50Ms.toFixed(1),
    'log p99 ms': r.logP99Ms.toFixed(1),
    'log max ms': r.logMaxMs.toFixed(1),
  }));
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: { mb: { type: 'string' }, 'chunk-mb': { type: 'string' }, rounds: { type: 'string' }, dir: { type: 'string' } },
  });
  const results = await runSnapshotWrite({
    ...(values.mb ? { mb: Number(values.mb) } : {}),
    ...(values['chunk-mb'] ? { chunkMb: Number(values['chunk-mb']) } : {}),
    ...(values.rounds ? { rounds: Number(values.rounds) } : {}),
    ...(values.dir ? { dir: values.dir } : {}),
  });
  console.table(snapshotWriteTable(results));
}
