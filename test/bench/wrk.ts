// wrk as a load generator for the HTTP benchmarks (ttl-renew, http-register, http-read): a warm-up run, then
// the measured one, with every process's CPU read inside the window. wrk (C) costs the shared
// 2 cores far less than an undici client in Node. Scripts load wrk-common.lua, whose done() prints
// one JSON line: {"requests","durationUs","p50Us","p99Us","p50CorrectedUs","p99CorrectedUs","maxUs",
// "observedError","status","connect","read","write","timeout"}. p50/p99 are of the requests made,
// as the undici client's are; the "Corrected" ones are wrk's own, after its coordinated-omission
// correction (see wrk-common.lua).

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { cpuPercent, cpuSnapshot } from './http-read.ts';
import type { LoopResult } from './http-read.ts';

/** setup() and done() of every script (each loads it with dofile). */
const COMMON = fileURLToPath(new URL('./wrk-common.lua', import.meta.url));

export interface WrkOptions {
  /** Path of the Lua script. */
  script: string;
  /** host:port of each target; the script decides which thread sends where (one thread per target). */
  origins: string[];
  /** Connections in all (rounded down to a multiple of the targets). */
  connections: number;
  /** Passed to the script (environment variables). */
  env: Record<string, string>;
  warmupMs: number;
  durationMs: number;
  /** Processes whose CPU is reported, by name (wrk is added). */
  pids: Record<string, number>;
}

/** The measured run, and the connections wrk opened (`connections` rounded down to a multiple of the targets). */
export async function wrkLoop(o: WrkOptions): Promise<{ result: LoopResult; connections: number }> {
  const threads = o.origins.length;
  const connections = Math.floor(o.connections / threads) * threads;
  const run = async (ms: number, measure: boolean, env: Record<string, string>): Promise<LoopResult> => {
    const args = ['-t', String(threads), '-c', String(connections), '-d', `${Math.max(1, Math.round(ms / 1000))}s`, '--timeout', '15s', '-s', o.script, `http://${o.origins[0]}`];
    const child = spawn('wrk', args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, WRK_TARGETS: o.origins.join(','), WRK_COMMON: COMMON, WRK_CONNECTIONS: String(connections), ...env },
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
    const all = { ...o.pids, wrk: child.pid! };
    // CPU is read 0.5 s in and 0.5 s before the end, while wrk still runs.
    let cpu: Record<string, number> = {};
    const sample = measure
      ? (async () => {
          await new Promise((r) => setTimeout(r, 500));
          const a = cpuSnapshot(all);
          const t0 = performance.now();
          await new Promise((r) => setTimeout(r, ms - 1_000));
          cpu = cpuPercent(a, cpuSnapshot(all), (performance.now() - t0) / 1000);
        })()
      : Promise.resolve();
    // wrk stops itself after -d; this only bounds a wrk that hangs.
    const killer = setTimeout(() => child.kill('SIGKILL'), ms + 30_000);
    const [code] = (await once(child, 'exit')) as [number | null];
    clearTimeout(killer);
    await sample;
    const line = out.split('\n').find((l) => l.startsWith('{"requests"'));
    if (code !== 0 || !line) throw new Error(`wrk exited with ${code}: ${out.slice(-2000)}`);
    const w = JSON.parse(line) as {
      requests: number;
      durationUs: number;
      p50Us: number;
      p99Us: number;
      p50CorrectedUs: number;
      p99CorrectedUs: number;
      maxUs: number;
      observedError: string;
      status: number;
      connect: number;
      read: number;
      write: number;
      timeout: number;
    };
    if (w.observedError !== '') throw new Error(`wrk's observed latencies could not be rebuilt: ${w.observedError}`);
    const errors: Record<string, number> = {};
    for (const k of ['status', 'connect', 'read', 'write', 'timeout'] as const) if (w[k] > 0) errors[k] = w[k];
    const seconds = w.durationUs / 1e6;
    return {
      ops: w.requests,
      errors,
      seconds,
      opsPerSec: w.requests / seconds,
      p50Ms: w.p50Us / 1000,
      p99Ms: w.p99Us / 1000,
      maxMs: w.maxUs / 1000,
      corrected: { p50Ms: w.p50CorrectedUs / 1000, p99Ms: w.p99CorrectedUs / 1000 },
      cpu,
    };
  };
  // The warm-up run is told so (WRK_WARMUP=1): scripts that must not repeat a request (unique IDs) use it.
  await run(o.warmupMs, false, { ...o.env, WRK_WARMUP: '1' });
  return { result: await run(o.durationMs, true, { ...o.env, WRK_WARMUP: '0' }), connections };
}
