// Watch-cycle benchmark (issue #3): what continuous watching costs the server. N watchers hold a
// blocking query on one service, as Consul's watch helper and Prometheus' Consul discovery do, and
// ask again with the new index as soon as they are answered. Each change then costs the server
// one answer and one new parked query per watcher: measured as server CPU per watcher per change.

import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { parseExposition, sumOf } from '../support/prom-text.ts';
import { responseFrame } from '../support/http-frame.ts';
import { waitFor } from '../support/ports.ts';
import { SiderCluster, cpuSeconds, getText, putJson, registration } from './http-read.ts';
import { median } from './http-register.ts';

export interface WatchCycleOptions {
  /** Watchers, one connection each (default 4,000). */
  watchers?: number;
  /** Changes measured (default 10), after `warmups` unmeasured ones (default 2). */
  changes?: number;
  warmups?: number;
  log?: (line: string) => void;
}

export interface WatchCycleResult {
  watchers: number;
  /** Server CPU per watcher to park the first query of each (connection set-up included), µs. */
  firstParkUs: number;
  /** Server CPU per watcher for each measured change: its answer and its next parked query, µs. */
  perChangeUs: number[];
  /** Median of perChangeUs. */
  medianUs: number;
  /** Time from the write's ack to the last watcher parked again, per change, ms. */
  cycleMs: number[];
}

const SERVICE = 'bench-cycle';
/** Every wait below is bounded by this. */
const DEADLINE_MS = 60_000;

/** One watcher: a keep-alive connection that asks again with the index of each answer. */
class Watcher {
  readonly socket: net.Socket;
  #buf = '';
  #onAnswer: () => void;

  constructor(addr: string, onAnswer: () => void) {
    const [host, port] = [addr.slice(0, addr.lastIndexOf(':')), Number(addr.slice(addr.lastIndexOf(':') + 1))];
    this.socket = net.connect(port, host);
    this.#onAnswer = onAnswer;
    this.socket.setEncoding('latin1');
    this.socket.on('data', (d: string) => this.#read(d));
    this.socket.on('error', () => {});
  }

  ask(index: number): void {
    this.socket.write(`GET /v1/health/service/${SERVICE}?index=${index}&wait=5m HTTP/1.1\r\nHost: bench\r\n\r\n`);
  }

  #read(d: string): void {
    this.#buf += d;
    for (let f = responseFrame(this.#buf); f; f = responseFrame(this.#buf)) {
      const index = Number(/\r\nx-consul-index: *(\d+)/i.exec(f.head)?.[1] ?? NaN);
      if (!f.head.startsWith('HTTP/1.1 200 ') || !Number.isFinite(f.end) || !Number.isFinite(index)) {
        this.socket.destroy(new Error(`unexpected answer: ${f.head.slice(0, 200)}`));
        return;
      }
      this.#buf = this.#buf.slice(f.end);
      this.#onAnswer();
      this.ask(index);
    }
  }
}

/** Queries held on the server, as its `sider_watchers_active` gauge reports them. */
async function held(http: string): Promise<number> {
  return sumOf(parseExposition((await getText(`http://${http}/metrics`)).text), 'sider_watchers_active');
}

export async function runWatchCycle(opts: WatchCycleOptions = {}): Promise<WatchCycleResult> {
  const watchers = opts.watchers ?? 4_000;
  const changes = opts.changes ?? 10;
  const warmups = opts.warmups ?? 2;
  const log = opts.log ?? ((line: string) => console.log(line));
  const cluster = await SiderCluster.start({ size: 1, log });
  const all: Watcher[] = [];
  try {
    const http = cluster.http('n1');
    const pid = cluster.pid('n1');
    await cluster.populate(SERVICE, 10);
    const first = await getText(`http://${http}/v1/health/service/${SERVICE}`);
    const index = Number(first.headers['x-consul-index']);
    let answered = 0;
    for (let i = 0; i < watchers; i++) all.push(new Watcher(http, () => answered++));
    await Promise.all(all.map((w) => new Promise((r) => (w.socket.connecting ? w.socket.once('connect', r) : r(null)))));
    const cpu0 = cpuSeconds(pid);
    for (const w of all) w.ask(index);
    await waitFor(`${watchers} parked`, async () => (await held(http)) >= watchers, DEADLINE_MS);
    const firstParkUs = ((cpuSeconds(pid) - cpu0) * 1e6) / watchers;
    const perChangeUs: number[] = [];
    const cycleMs: number[] = [];
    for (let c = 0; c < warmups + changes; c++) {
      await new Promise((r) => setTimeout(r, 300));
      answered = 0;
      const cpu1 = cpuSeconds(pid);
      const r = await putJson(`http://${http}/v1/agent/service/register`, registration(SERVICE, `${SERVICE}-x${c}`, 100 + c));
      if (r.status !== 200) throw new Error(`change ${c}: HTTP ${r.status} ${r.text}`);
      const acked = performance.now();
      await waitFor(`change ${c} answered and parked again`, async () => answered >= watchers && (await held(http)) >= watchers, DEADLINE_MS);
      if (c < warmups) continue;
      cycleMs.push(performance.now() - acked);
      perChangeUs.push(((cpuSeconds(pid) - cpu1) * 1e6) / watchers);
    }
    const result = { watchers, firstParkUs, perChangeUs, medianUs: median(perChangeUs), cycleMs };
    log(formatWatchCycle(result));
    return result;
  } finally {
    for (const w of all) w.socket.destroy();
    await cluster.teardown();
  }
}

export function formatWatchCycle(r: WatchCycleResult): string {
  return (
    `watch cycle, ${r.watchers} watchers re-asking after every change (1 node): first park ${r.firstParkUs.toFixed(1)} µs server CPU per watcher; ` +
    `per change (answer + next park) median ${r.medianUs.toFixed(1)} µs per watcher [${r.perChangeUs.map((u) => u.toFixed(1)).join(', ')}] ` +
    `(CPU read at 10 ms ticks, and /metrics polls included); all parked again ${Math.round(median(r.cycleMs))} ms after the ack (median)`
  );
}

if (import.meta.main) {
  // `node test/bench/watch-cycle.ts [--watchers N] [--changes N]`
  const { values } = parseArgs({ options: { watchers: { type: 'string' }, changes: { type: 'string' } } });
  const watchers = values.watchers === undefined ? undefined : Number(values.watchers);
  const changes = values.changes === undefined ? undefined : Number(values.changes);
  if (watchers !== undefined && (!Number.isInteger(watchers) || watchers < 1 || watchers > 15_000)) throw new Error(`--watchers must be an integer in [1, 15000], got ${values.watchers}`);
  if (changes !== undefined && (!Number.isInteger(changes) || changes < 1 || changes > 100)) throw new Error(`--changes must be an integer in [1, 100], got ${values.changes}`);
  await runWatchCycle({ ...(watchers ? { watchers } : {}), ...(changes ? { changes } : {}) });
}
