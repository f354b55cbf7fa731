// The cost of observability: one /metrics scrape of a registry holding 1,000 services × 10
// instances (after a change, and again with nothing changed), and the per-event cost of the hooks
// on hot paths (the DNS latency histogram, the HTTP counter and histogram, the Raft peer contact).

import { performance } from 'node:perf_hooks';
import { Histogram, Registry } from 'prom-client';
import { ServerMetrics, LeanHistogram } from '../../src/metrics.ts';
import { encodeCommand } from '../../src/registry/command-codec.ts';
import type { CheckSpec, RegistryCommand } from '../../src/registry/model.ts';
import { RegistryStateMachine } from '../../src/registry/state-machine.ts';

export interface MetricsBenchResult {
  case: string;
  p50Ms: number;
  p99Ms: number;
  /** Exposition size, scrape cases only. */
  bytes?: number;
  /** Nanoseconds per event, hook cases only. */
  nsPerOp?: number;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

function ttl(id: string): CheckSpec {
  return {
    CheckID: id, Name: id, Type: 'ttl', Status: 'passing', Notes: '', Output: '', Interval: '', Timeout: '', TTL: '30s', DeregisterCriticalServiceAfter: '',
    SuccessBeforePassing: 0, FailuresBeforeCritical: 0, HTTP: '', Method: '', Header: {}, TCP: '', GRPC: '', GRPCUseTLS: false, TLSSkipVerify: false, Args: [],
  };
}

export async function runMetricsBench(opts: { services?: number; perService?: number; scrapes?: number } = {}): Promise<MetricsBenchResult[]> {
  const services = opts.services ?? 1000;
  const perService = opts.perService ?? 10;
  const scrapes = opts.scrapes ?? 30;
  const sm = new RegistryStateMachine();
  let index = 0;
  const apply = (cmd: RegistryCommand): void => {
    sm.apply({ index: ++index, term: 1, type: 'normal', rid: '', data: encodeCommand(cmd) });
  };
  for (let s = 0; s < services; s++) {
    for (let i = 0; i < perService; i++) {
      const id = `svc-${s}-${i}`;
      apply({
        type: 'register', ns: 'default', node: 'n1', replaceExistingChecks: false, now: 1, checks: [ttl(`service:${id}`)],
        instance: { Service: `svc-${s}`, ID: id, Address: `10.${s >> 8}.${s & 255}.${i + 1}`, Port: 80, Tags: [], Meta: {}, Weights: { Passing: 1, Warning: 1 }, TaggedAddresses: {}, EnableTagOverride: false },
      });
    }
  }
  const metrics = new ServerMetrics({ nodeId: 'n1', reader: sm });
  const out: MetricsBenchResult[] = [];
  for (const changed of [true, false]) {
    const ms: number[] = [];
    let bytes = 0;
    for (let k = 0; k < scrapes; k++) {
      // A check status change moves the global index: the registry totals are recomputed.
      if (changed) apply({ type: 'checkStatus', ns: 'default', checkId: 'service:svc-0-0', status: k % 2 ? 'passing' : 'warning', output: '', now: 1 });
      const t0 = performance.now();
      bytes = (await metrics.scrape(false)).body.length;
      ms.push(performance.now() - t0);
    }
    ms.sort((a, b) => a - b);
    out.push({ case: `scrape, ${services}×${perService} instances, ${changed ? 'after a change' : 'unchanged'}`, p50Ms: quantile(ms, 0.5), p99Ms: quantile(ms, 0.99), bytes });
  }

  const perOp = (name: string, n: number, fn: (i: number) => void): void => {
    for (let i = 0; i < 10_000; i++) fn(i);
    const t0 = performance.now();
    for (let i = 0; i < n; i++) fn(i);
    out.push({ case: name, p50Ms: 0, p99Ms: 0, nsPerOp: ((performance.now() - t0) * 1e6) / n });
  };
  const values = Float64Array.from({ length: 1024 }, (_, i) => (i % 97) * 1e-5);
  const lean = new LeanHistogram('lean_seconds', 'h', [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1]);
  perOp('DNS latency observe (lean histogram)', 2_000_000, (i) => lean.observe(values[i & 1023]!));
  const promH = new Histogram({ name: 'prom_seconds', help: 'h', buckets: [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1], registers: [new Registry()] });
  perOp('same with a prom-client histogram (not used)', 2_000_000, (i) => promH.observe(values[i & 1023]!));
  perOp('HTTP request: counter + histogram by route', 1_000_000, (i) => {
    metrics.httpRequests.inc({ path: '/v1/health/service/:name', status: '200' });
    metrics.httpDuration.observe({ path: '/v1/health/service/:name' }, values[i & 1023]!);
  });
  perOp('Raft message received (peer contact)', 2_000_000, (i) => metrics.peerContact(i & 1 ? 'n2' : 'n3'));
  return out;
}
