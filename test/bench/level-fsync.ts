// Reference numbers for this disk: how many synced LevelDB writes per second (single puts, batches
// of 64, and 16 concurrent synced writers), the ceiling under any Raft group commit built on it.

import { Level } from 'level';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

export interface FsyncResult {
  case: string;
  /** Synced writes (puts or batches) completed. */
  writes: number;
  /** Entries written (= writes for single puts). */
  entries: number;
  seconds: number;
  writesPerSec: number;
  entriesPerSec: number;
  /** Latency of one synced write, ms. */
  p50Ms: number;
  p99Ms: number;
}

export interface FsyncOptions {
  /** Per case. */
  durationMs?: number;
  /** Bound on writes per case. */
  maxWrites?: number;
  dir?: string;
}

const VALUE = Buffer.alloc(100, 0x61);

function key(n: number): Buffer {
  const k = Buffer.allocUnsafe(9);
  k[0] = 0x65;
  k.writeBigUInt64BE(BigInt(n), 1);
  return k;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function measure(
  name: string,
  perWrite: number,
  writers: number,
  durationMs: number,
  maxWrites: number,
  write: () => Promise<void>,
): Promise<FsyncResult> {
  const lat: number[] = [];
  const start = performance.now();
  const end = start + durationMs;
  let writes = 0;
  await Promise.all(
    Array.from({ length: writers }, async () => {
      while (performance.now() < end && writes < maxWrites) {
        writes++;
        const t0 = performance.now();
        await write();
        lat.push(performance.now() - t0);
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  lat.sort((a, b) => a - b);
  return {
    case: name,
    writes,
    entries: writes * perWrite,
    seconds,
    writesPerSec: writes / seconds,
    entriesPerSec: (writes * perWrite) / seconds,
    p50Ms: percentile(lat, 50),
    p99Ms: percentile(lat, 99),
  };
}

export async function runLevelFsync(opts: FsyncOptions = {}): Promise<FsyncResult[]> {
  const durationMs = opts.durationMs ?? 2_000;
  const maxWrites = opts.maxWrites ?? 200_000;
  const dir = await mkdtemp(join(opts.dir ?? tmpdir(), 'sider-bench-level-'));
  const db = new Level<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  await db.open();
  const results: FsyncResult[] = [];
  try {
    let n = 0;
    results.push(
      await measure('synced put, 1 writer', 1, 1, durationMs, maxWrites, () => db.put(key(++n), VALUE, { sync: true })),
    );
    results.push(
      await measure('synced batch of 64, 1 writer', 64, 1, durationMs, maxWrites, () => {
        const ops = Array.from({ length: 64 }, () => ({ type: 'put' as const, key: key(++n), value: VALUE }));
        return db.batch(ops, { sync: true });
      }),
    );
    results.push(
      await measure('synced put, 16 concurrent writers', 1, 16, durationMs, maxWrites, () => db.put(key(++n), VALUE, { sync: true })),
    );
  } finally {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  }
  return results;
}

if (import.meta.main) {
  for (const r of await runLevelFsync()) console.log(JSON.stringify(r));
}
