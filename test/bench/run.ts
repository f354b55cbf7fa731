// `npm run bench [-- --only raft-commit|level-fsync] [--mode direct|http] [--levels 1,16,64,256]
// [--duration-ms 5000] [--cpu-prof-dir DIR]`: runs the benchmarks, prints a table, writes JSON.

import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runLevelFsync } from './level-fsync.ts';
import type { FsyncResult } from './level-fsync.ts';
import { runRaftCommit } from './raft-commit.ts';
import type { CommitMode, CommitResult } from './raft-commit.ts';

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    mode: { type: 'string' },
    levels: { type: 'string', default: '1,16,64,256' },
    'duration-ms': { type: 'string', default: '5000' },
    'cpu-prof-dir': { type: 'string' },
  },
});

function die(message: string): never {
  console.error(`bench: ${message}`);
  process.exit(2);
}

const only = values.only;
if (only !== undefined && only !== 'raft-commit' && only !== 'level-fsync') die(`--only must be raft-commit or level-fsync, got ${only}`);
const mode = values.mode;
if (mode !== undefined && mode !== 'direct' && mode !== 'http') die(`--mode must be direct or http, got ${mode}`);
const levels = values.levels.split(',').map(Number);
if (levels.some((n) => !Number.isInteger(n) || n < 1 || n > 4096)) die(`--levels must be integers in [1, 4096], got ${values.levels}`);
const durationMs = Number(values['duration-ms']);
if (!Number.isInteger(durationMs) || durationMs < 100 || durationMs > 600_000) die('--duration-ms must be an integer in [100, 600000]');

const machine = {
  cores: availableParallelism(),
  cpu: cpus()[0]?.model ?? 'unknown',
  memGiB: Math.round(totalmem() / 2 ** 30),
  node: process.version,
  platform: `${process.platform}-${process.arch}`,
};
console.log(`machine: ${machine.cores} cores (${machine.cpu}), ${machine.memGiB} GiB, node ${machine.node}`);

let fsync: FsyncResult[] = [];
let commit: CommitResult[] = [];
if (only !== 'raft-commit') {
  console.log('\n== LevelDB synced writes (this disk)');
  fsync = await runLevelFsync({ durationMs: Math.min(durationMs, 3_000) });
  console.table(
    fsync.map((r) => ({
      case: r.case,
      'writes/s': Math.round(r.writesPerSec),
      'entries/s': Math.round(r.entriesPerSec),
      'p50 ms': r.p50Ms.toFixed(2),
      'p99 ms': r.p99Ms.toFixed(2),
    })),
  );
}
if (only !== 'level-fsync') {
  console.log('\n== Raft commits, 3 nodes on loopback, fsync on, ~100-byte commands');
  commit = await runRaftCommit({
    levels,
    durationMs,
    ...(mode ? { modes: [mode as CommitMode] } : {}),
    ...(values['cpu-prof-dir'] ? { cpuProfDir: values['cpu-prof-dir'] } : {}),
  });
  console.table(
    commit.map((r) => ({
      mode: r.mode,
      proposers: r.proposers,
      'commits/s': Math.round(r.opsPerSec),
      'p50 ms': r.p50Ms.toFixed(1),
      'p99 ms': r.p99Ms.toFixed(1),
      'max ms': r.maxMs.toFixed(1),
      errors: Object.values(r.errors).reduce((a, b) => a + b, 0),
      'cpu %': Object.values(r.cpu).join('/'),
      'fsyncs/s': r.leaderFsyncsPerSec === undefined ? '' : Math.round(r.leaderFsyncsPerSec),
      'entries/fsync': r.leaderEntriesPerFsync === undefined ? '' : r.leaderEntriesPerFsync.toFixed(1),
    })),
  );
  const target = commit.find((r) => r.mode === 'direct' && r.proposers === 64);
  if (target) {
    const ok = target.opsPerSec >= 5_000 && target.p99Ms <= 50;
    console.log(
      `target (64 proposers, direct): ≥ 5000 commits/s with p99 ≤ 50 ms — measured ${Math.round(target.opsPerSec)}/s, p99 ${target.p99Ms.toFixed(1)} ms: ${ok ? 'met' : 'NOT met'}`,
    );
  }
}

const dir = fileURLToPath(new URL('./results/', import.meta.url));
await mkdir(dir, { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const file = `${dir}${stamp}.json`;
await writeFile(file, `${JSON.stringify({ date: new Date().toISOString(), machine, levelFsync: fsync, raftCommit: commit }, null, 2)}\n`);
console.log(`\nresults written to ${file}`);
