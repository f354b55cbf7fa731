// Idle-time collection of V8's young generation: when the event loop has been nearly idle for a
// whole interval and the young generation holds enough, it is collected then, not in the next burst.
//
// Why: a server holding thousands of blocking queries has the objects of the queries parked since
// the last scavenge in its young generation. Left there, the scavenge comes during the next burst
// of work, typically the one change that wakes them all, and copies every one of them while the
// answers wait (measured: 25 – 40 ms on the main thread plus its helper threads for 10,000 held
// queries on 2 vCPUs). Collected while idle, the same copying costs nobody a wait, and the burst
// starts with an empty young generation. Chrome does the same with its idle-time tasks.

import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';
import { SiderError } from '../raft/errors.ts';

export interface IdleGcOptions {
  /** How often the loop's utilization is looked at (ms). Default 250. */
  intervalMs?: number;
  /** An interval is idle when the loop was busy at most this fraction of it. Default 0.05. */
  maxUtilization?: number;
  /** Collect when the young generation is at least this full (0 – 1). Default 0.1. */
  minYoungFraction?: number;
  /** Told after each collection: how long it took (ms) and how full the young generation was. */
  onCollect?: (ms: number, youngFraction: number) => void;
}

/** What the policy reads and does; the defaults are V8's and Node's, a test hands in its own. */
export interface IdleGcRuntime {
  /** Event-loop utilization (0 – 1) since the previous call (the first call: since the start). */
  utilization(): number;
  /** How full the young generation is (0 – 1). */
  youngFraction(): number;
  /** A synchronous young-generation collection. */
  collectYoung(): void;
}

export const DEFAULT_IDLE_GC_INTERVAL_MS = 250;
export const MIN_IDLE_GC_INTERVAL_MS = 10;

export class IdleGc {
  readonly #intervalMs: number;
  readonly #maxUtilization: number;
  readonly #minYoung: number;
  readonly #rt: IdleGcRuntime;
  readonly #onCollect: ((ms: number, youngFraction: number) => void) | undefined;
  #timer: NodeJS.Timeout | null = null;
  #collections = 0;
  #collectMs = 0;

  constructor(opts: IdleGcOptions = {}, runtime?: IdleGcRuntime) {
    const intervalMs = opts.intervalMs ?? DEFAULT_IDLE_GC_INTERVAL_MS;
    const maxUtilization = opts.maxUtilization ?? 0.05;
    const minYoung = opts.minYoungFraction ?? 0.1;
    if (!Number.isInteger(intervalMs) || intervalMs < MIN_IDLE_GC_INTERVAL_MS || intervalMs > 60_000) {
      throw new SiderError('SIDER_CONFIG', `idle GC intervalMs: must be an integer in [${MIN_IDLE_GC_INTERVAL_MS}, 60000], got ${intervalMs}`);
    }
    if (!(maxUtilization >= 0 && maxUtilization <= 1)) throw new SiderError('SIDER_CONFIG', `idle GC maxUtilization: must be in [0, 1], got ${maxUtilization}`);
    if (!(minYoung >= 0 && minYoung <= 1)) throw new SiderError('SIDER_CONFIG', `idle GC minYoungFraction: must be in [0, 1], got ${minYoung}`);
    this.#intervalMs = intervalMs;
    this.#maxUtilization = maxUtilization;
    this.#minYoung = minYoung;
    this.#rt = runtime ?? v8Runtime();
    this.#onCollect = opts.onCollect;
  }

  /** Young-generation collections made so far, and the milliseconds they took. */
  get collections(): { count: number; ms: number } {
    return { count: this.#collections, ms: this.#collectMs };
  }

  start(): void {
    if (this.#timer) return;
    this.#rt.utilization();
    this.#timer = setInterval(() => this.check(), this.#intervalMs);
    // Never what keeps a process alive.
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  /**
   * One look (the timer's; public for tests): collects when the interval since the last look was
   * idle and the young generation is full enough. Returns whether it collected.
   */
  check(): boolean {
    const busy = this.#rt.utilization();
    if (busy > this.#maxUtilization) return false;
    const young = this.#rt.youngFraction();
    if (young < this.#minYoung) return false;
    const t0 = performance.now();
    this.#rt.collectYoung();
    const ms = performance.now() - t0;
    this.#collectMs += ms;
    this.#collections++;
    this.#onCollect?.(ms, young);
    // The collection itself (and its report) must not count as the next interval's work.
    this.#rt.utilization();
    return true;
  }
}

let gcFn: ((opts: { type: 'minor' }) => void) | undefined;

/**
 * V8's own: `--expose-gc` set at run time gives new contexts a `gc` function (the main context's
 * globals stay as they were), which takes `{ type: 'minor' }` for a young-generation collection.
 */
function v8Runtime(): IdleGcRuntime {
  if (!gcFn) {
    v8.setFlagsFromString('--expose-gc');
    gcFn = vm.runInNewContext('gc') as (opts: { type: 'minor' }) => void;
  }
  const gc = gcFn;
  let last = performance.eventLoopUtilization();
  return {
    utilization() {
      const now = performance.eventLoopUtilization();
      const d = performance.eventLoopUtilization(now, last);
      last = now;
      return d.utilization;
    },
    youngFraction() {
      for (const s of v8.getHeapSpaceStatistics()) {
        if (s.space_name !== 'new_space') continue;
        const cap = s.space_used_size + s.space_available_size;
        return cap > 0 ? s.space_used_size / cap : 0;
      }
      return 0;
    },
    collectYoung() {
      gc({ type: 'minor' });
    },
  };
}
