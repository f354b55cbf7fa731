// Probe scheduling benchmark (issue #4): many HTTP checks at a 10 s interval run by one CheckScheduler
// with the real runProbe, against HTTP targets in a separate process (so the CPU measured here is the
// prober's). Reports probes/s, how far runs drift from the interval (falling behind), failures, and
// the prober's CPU.

import { spawn } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { runProbe } from '../../src/health/probes.ts';
import { CheckScheduler } from '../../src/health/scheduler.ts';
import type { ScheduledCheck } from '../../src/health/types.ts';

export interface ProbeBenchResult {
  checks: number;
  intervalMs: number;
  concurrency: number;
  /** Length of the measured window (after one interval of warm-up), s. */
  seconds: number;
  probes: number;
  probesPerSec: number;
  /** The rate the checks ask for: checks / interval. */
  wantedPerSec: number;
  /** Non-passing results in the window (the targets always answer 200). */
  failures: Record<string, number>;
  /** Time between two consecutive probe starts of one check, ms (ideal: the interval). */
  gapMs: { p50: number; p99: number; max: number };
  /** Starts later than interval + 10 % after the previous one. */
  lateStarts: number;
  /** Checks that never ran in the window. */
  starved: number;
  /** Prober CPU over the window, % of one core (user + system). */
  cpuPct: number;
  /** CPU per probe, µs. */
  cpuUsPerProbe: number;
  /** Event-loop delay of the prober, ms. */
  loopDelayMs: { p99: number; max: number };
  /** Target process: TCP connections accepted per request (1 = no keep-alive). */
  connectionsPerRequest: number;
}

export interface ProbeBenchOptions {
  checks?: number;
  intervalMs?: number;
  concurrency?: number;
  /** Target ports (spreads the client's ephemeral ports over several destinations). */
  targetPorts?: number;
  log?: (line: string) => void;
}

// The targets: one process, several loopback ports, 200 for every request; reports its counters on
// stdin "stats".
const TARGET_SCRIPT = `
const http = require('node:http');
const n = Number(process.argv[1]);
let requests = 0, connections = 0;
const ports = [];
let ready = 0;
for (let i = 0; i < n; i++) {
  const s = http.createServer((req, res) => { requests++; res.end('ok'); });
  s.on('connection', () => { connections++; });
  s.keepAliveTimeout = 5000;
  s.listen(0, '127.0.0.1', () => { ports.push(s.address().port); if (++ready === n) console.log('ports ' + ports.join(',')); });
}
require('node:readline').createInterface({ input: process.stdin }).on('line', (l) => {
  if (l === 'stats') console.log('stats ' + requests + ' ' + connections);
});
`;

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export async function runHealthProbes(opts: ProbeBenchOptions = {}): Promise<ProbeBenchResult> {
  const checksN = opts.checks ?? 10_000;
  const intervalMs = opts.intervalMs ?? 10_000;
  const concurrency = opts.concurrency ?? 64;
  const targetPorts = opts.targetPorts ?? 16;
  const log = opts.log ?? ((line: string) => console.log(line));

  const target = spawn(process.execPath, ['-e', TARGET_SCRIPT, String(targetPorts)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: target.stdout! });
  const waiters: ((line: string) => void)[] = [];
  lines.on('line', (l) => waiters.shift()?.(l));
  const nextLine = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('target process did not answer')), 10_000);
      waiters.push((l) => {
        clearTimeout(timer);
        resolve(l);
      });
    });
  let sched: CheckScheduler | undefined;
  try {
    const portsLine = await nextLine();
    const ports = portsLine.replace(/^ports /, '').split(',').map(Number);
    log(`targets: ${ports.length} ports in process ${target.pid}; ${checksN} HTTP checks every ${intervalMs} ms, concurrency ${concurrency}`);

    let measuring = false;
    let probes = 0;
    const failures: Record<string, number> = {};
    const lastStart = new Map<string, number>();
    const gaps: number[] = [];
    const ranInWindow = new Set<string>();
    let late = 0;
    const timed: typeof runProbe = async (def, o) => {
      const key = def.http!;
      const now = performance.now();
      const prev = lastStart.get(key);
      lastStart.set(key, now);
      if (measuring) {
        ranInWindow.add(key);
        if (prev !== undefined) {
          const gap = now - prev;
          gaps.push(gap);
          if (gap > intervalMs * 1.1) late++;
        }
      }
      const r = await runProbe(def, o);
      if (measuring) {
        probes++;
        if (r.status !== 'passing') {
          const why = r.output.replace(/^HTTP GET \S+: /, '').slice(0, 60);
          failures[why] = (failures[why] ?? 0) + 1;
        }
      }
      return r;
    };
    sched = new CheckScheduler({ onTransition: () => {}, concurrency, runProbe: timed });
    const checks: ScheduledCheck[] = Array.from({ length: checksN }, (_, i) => ({
      key: `c${i}`,
      probe: { type: 'http', http: `http://127.0.0.1:${ports[i % ports.length]}/health/${i}` },
      intervalMs,
      timeoutMs: 5_000,
      successBeforePassing: 1,
      failuresBeforeCritical: 1,
      status: 'passing',
    }));
    sched.sync(checks);
    // Warm-up: one interval, in which every check makes its first run.
    await new Promise((r) => setTimeout(r, intervalMs));
    target.stdin!.write('stats\n');
    const [, req0, conn0] = (await nextLine()).split(' ').map(Number);
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    measuring = true;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 2 * intervalMs));
    measuring = false;
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    loop.disable();
    target.stdin!.write('stats\n');
    const [, req1, conn1] = (await nextLine()).split(' ').map(Number);
    sched.stop();
    gaps.sort((a, b) => a - b);
    const cpuUs = cpu.user + cpu.system;
    return {
      checks: checksN,
      intervalMs,
      concurrency,
      seconds,
      probes,
      probesPerSec: probes / seconds,
      wantedPerSec: checksN / (intervalMs / 1000),
      failures,
      gapMs: { p50: pct(gaps, 50), p99: pct(gaps, 99), max: gaps[gaps.length - 1] ?? 0 },
      lateStarts: late,
      starved: checksN - ranInWindow.size,
      cpuPct: (cpuUs / 1e6 / seconds) * 100,
      cpuUsPerProbe: probes > 0 ? cpuUs / probes : 0,
      loopDelayMs: { p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 },
      connectionsPerRequest: (conn1! - conn0!) / Math.max(1, req1! - req0!),
    };
  } finally {
    sched?.stop();
    target.kill('SIGKILL');
    lines.close();
  }
}
