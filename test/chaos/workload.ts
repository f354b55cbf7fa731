// The clients of a chaos run: workers that register, deregister, renew and read through HTTP against
// random servers, and one blocking-query watcher per service. Every register, deregister and read is
// recorded as an operation on one logical clock for the linearizability checker, with the key
// `<service>/<instance ID>` and the instance's `Meta.chaos` value as the key's value ('' = absent):
// register = put(value), deregister = put(''), a 404 from deregister = get → '' (the server answers
// it after a ReadIndex round), a read of the service = one get per instance ID of its pool. Anything
// but a clear answer (a timeout, a 5xx, a reset) is an unknown outcome: the write may have happened.
// Each client also remembers the highest X-Consul-Index it saw per service; a smaller one later is a
// violation (default-consistency reads and blocking queries must never go back in time).

import { randomUUID } from 'node:crypto';
import { Agent, request } from 'undici';
import type { KvOperation } from '../support/linearizability.ts';
import { mulberry32 } from '../support/random.ts';
import { IndexWatch } from './checks.ts';

export interface WorkloadOptions {
  /** HTTP addresses (host:port) of every server, down or not: clients do not know. */
  servers: string[];
  seed: number;
  workers: number;
  services: number;
  idsPerService: number;
  /** TTL of each instance's check; renewals keep it passing. */
  ttl: string;
}

export interface WorkloadStats {
  ledger: { acked: number; unknown: number };
  registers: { acked: number; unknown: number };
  deregisters: { acked: number; absent: number; unknown: number };
  reads: { ok: number; failed: number };
  watches: { ok: number; failed: number };
  renewals: { ok: number; failed: number };
}

const READ_TIMEOUT_MS = 4_000;
const WRITE_TIMEOUT_MS = 8_000;
const WATCH_WAIT = '2s';
/** wait + Consul's jitter (wait/16) + slack. */
const WATCH_TIMEOUT_MS = 5_000;

export const LEDGER_SERVICE = 'chaos-ledger';

export function serviceName(s: number): string {
  return `chaos-${String.fromCharCode(97 + s)}`;
}

export function instanceId(s: number, i: number): string {
  return `${serviceName(s)}-${i}`;
}

interface Reply {
  status: number;
  index: number;
  text: string;
}

export class Workload {
  readonly history: KvOperation[] = [];
  /** X-Consul-Index going backwards (or missing) for a client. */
  readonly violations: string[] = [];
  /** Ledger registrations (each a new instance, never touched again): acknowledged, and every one tried. */
  readonly ledgerAcked = new Set<string>();
  readonly ledgerTried = new Set<string>();
  readonly stats: WorkloadStats = {
    ledger: { acked: 0, unknown: 0 },
    registers: { acked: 0, unknown: 0 },
    deregisters: { acked: 0, absent: 0, unknown: 0 },
    reads: { ok: 0, failed: 0 },
    watches: { ok: 0, failed: 0 },
    renewals: { ok: 0, failed: 0 },
  };
  /** Answers that made no sense (a 400 to a well-formed request, an unparsable body): test or server bugs. */
  readonly oddities: string[] = [];
  readonly #opts: WorkloadOptions;
  readonly #agent = new Agent({ connections: 16, keepAliveTimeout: 2_000, connectTimeout: 2_000 });
  #clock = 0;
  #stopping = false;
  #running: Promise<void>[] = [];

  constructor(opts: WorkloadOptions) {
    this.#opts = opts;
  }

  /** The logical clock: every call and return event gets the next number, so none tie. */
  tick(): number {
    return ++this.#clock;
  }

  start(): void {
    const { workers, services, seed } = this.#opts;
    for (let w = 0; w < workers; w++) this.#running.push(this.#worker(w, mulberry32(seed * 7919 + w)));
    for (let s = 0; s < services; s++) this.#running.push(this.#watcher(s, mulberry32(seed * 104_729 + s)));
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.all(this.#running);
    this.#running = [];
  }

  async close(): Promise<void> {
    await this.stop();
    await this.#agent.close();
  }

  /** Reads every service from `server` with default consistency and records it (the final reads). */
  async readAll(server: string, client: string): Promise<boolean> {
    let ok = true;
    for (let s = 0; s < this.#opts.services; s++) ok = (await this.#read(new IndexWatch(client), server, s, '')) && ok;
    return ok;
  }

  /** `Meta.chaos` of every instance of every service on `server` with ?stale (no history). */
  async snapshot(server: string): Promise<Map<string, string> | null> {
    const out = new Map<string, string>();
    for (let s = 0; s < this.#opts.services; s++) {
      const r = await this.#http(server, 'GET', `/v1/health/service/${serviceName(s)}?stale`, undefined, READ_TIMEOUT_MS).catch(() => null);
      if (r === null || r.status !== 200) return null;
      const values = this.#parseValues(r.text, s);
      if (values === null) return null;
      for (const [k, v] of values) out.set(k, v);
    }
    return out;
  }

  async #worker(w: number, rnd: () => number): Promise<void> {
    const client = `w${w}`;
    const { servers, services, idsPerService } = this.#opts;
    const seen = new IndexWatch(client);
    // Bounded: at most this many operations per worker, whatever the run's length.
    for (let seq = 1; seq <= 200_000 && !this.#stopping; seq++) {
      const server = servers[Math.floor(rnd() * servers.length)]!;
      const s = Math.floor(rnd() * services);
      const i = Math.floor(rnd() * idsPerService);
      const x = rnd();
      let ok: boolean;
      if (x < 0.4) ok = await this.#read(seen, server, s, '');
      else if (x < 0.45) ok = await this.#ledger(server, `${client}-${seq}`);
      else if (x < 0.75) ok = await this.#register(server, s, i, `${client}.${seq}`);
      else if (x < 0.85) ok = await this.#deregister(server, s, i);
      else ok = await this.#renew(server, s, i);
      // A refused connection (a server that is down) comes back at once: do not spin on it.
      if (!ok) await sleep(50 + rnd() * 100);
    }
  }

  async #watcher(s: number, rnd: () => number): Promise<void> {
    const { servers } = this.#opts;
    const seen = new IndexWatch(`watch-${serviceName(s)}`);
    for (let n = 0; n < 100_000 && !this.#stopping; n++) {
      const server = servers[Math.floor(rnd() * servers.length)]!;
      const ok = await this.#read(seen, server, s, `?index=${seen.next(serviceName(s))}&wait=${WATCH_WAIT}`);
      if (!ok) await sleep(100 + rnd() * 200);
    }
  }

  /** One read of service `s` (blocking when `query` has an index); records a get per pool ID. */
  async #read(seen: IndexWatch, server: string, s: number, query: string): Promise<boolean> {
    const svc = serviceName(s);
    const blocking = query !== '';
    const call = this.tick();
    let r: Reply;
    try {
      r = await this.#http(server, 'GET', `/v1/health/service/${svc}${query}`, undefined, blocking ? WATCH_TIMEOUT_MS : READ_TIMEOUT_MS);
    } catch {
      this.#count(blocking, false);
      return false;
    }
    const ret = this.tick();
    const values = r.status === 200 ? this.#parseValues(r.text, s) : null;
    if (values === null) {
      if (r.status === 200 || r.status === 400) this.oddities.push(`GET ${svc}${query} on ${server}: ${r.status} ${r.text.slice(0, 200)}`);
      this.#count(blocking, false);
      return false;
    }
    this.#count(blocking, true);
    for (const [key, value] of values) this.history.push({ client: 0, input: { op: 'get', key, value: '' }, call, ret, output: { value } });
    const violation = seen.observe(svc, server, r.index);
    if (violation !== null) this.violations.push(violation);
    return true;
  }

  #count(blocking: boolean, ok: boolean): void {
    const c = blocking ? this.stats.watches : this.stats.reads;
    if (ok) c.ok++;
    else c.failed++;
  }

  /** `Meta.chaos` per pool ID of service `s` ('' when absent), or null for a body that is not one. */
  #parseValues(text: string, s: number): Map<string, string> | null {
    let entries: unknown;
    try {
      entries = JSON.parse(text);
    } catch {
      return null;
    }
    if (!Array.isArray(entries)) return null;
    const out = new Map<string, string>();
    for (let i = 0; i < this.#opts.idsPerService; i++) out.set(`${serviceName(s)}/${instanceId(s, i)}`, '');
    for (const e of entries as { Service?: { ID?: unknown; Meta?: Record<string, unknown> } }[]) {
      const id = e?.Service?.ID;
      const v = e?.Service?.Meta?.chaos;
      if (typeof id !== 'string' || typeof v !== 'string') return null;
      const key = `${serviceName(s)}/${id}`;
      if (!out.has(key)) return null;
      out.set(key, v);
    }
    return out;
  }

  async #register(server: string, s: number, i: number, value: string): Promise<boolean> {
    const svc = serviceName(s);
    const id = instanceId(s, i);
    const body = {
      Name: svc,
      ID: id,
      Address: '192.0.2.10',
      Port: 8000 + i,
      Meta: { chaos: value },
      Check: { CheckID: `service:${id}`, TTL: this.#opts.ttl, Status: 'passing' },
    };
    const op: KvOperation = { client: 0, input: { op: 'put', key: `${svc}/${id}`, value }, call: this.tick(), ret: Infinity, output: {} };
    this.history.push(op);
    const r = await this.#http(server, 'PUT', '/v1/agent/service/register', body, WRITE_TIMEOUT_MS).catch(() => null);
    if (r?.status === 200) {
      op.ret = this.tick();
      this.stats.registers.acked++;
      return true;
    }
    if (r?.status === 400) this.oddities.push(`register ${id} on ${server}: 400 ${r.text.slice(0, 200)}`);
    this.stats.registers.unknown++;
    return false;
  }

  async #deregister(server: string, s: number, i: number): Promise<boolean> {
    const svc = serviceName(s);
    const id = instanceId(s, i);
    const key = `${svc}/${id}`;
    const call = this.tick();
    const r = await this.#http(server, 'PUT', `/v1/agent/service/deregister/${id}`, undefined, WRITE_TIMEOUT_MS).catch(() => null);
    if (r?.status === 200) {
      this.history.push({ client: 0, input: { op: 'put', key, value: '' }, call, ret: this.tick(), output: {} });
      this.stats.deregisters.acked++;
      return true;
    }
    if (r?.status === 404) {
      this.history.push({ client: 0, input: { op: 'get', key, value: '' }, call, ret: this.tick(), output: { value: '' } });
      this.stats.deregisters.absent++;
      return true;
    }
    if (r?.status === 400) this.oddities.push(`deregister ${id} on ${server}: 400 ${r.text.slice(0, 200)}`);
    this.history.push({ client: 0, input: { op: 'put', key, value: '' }, call, ret: Infinity, output: {} });
    this.stats.deregisters.unknown++;
    return false;
  }

  /**
   * Registers a new instance of LEDGER_SERVICE that nothing touches again: once acknowledged it must
   * be on every server at the end, whatever the faults did.
   */
  async #ledger(server: string, id: string): Promise<boolean> {
    this.ledgerTried.add(id);
    const body = { Name: LEDGER_SERVICE, ID: id, Address: '192.0.2.20', Port: 9000 };
    const r = await this.#http(server, 'PUT', '/v1/agent/service/register', body, WRITE_TIMEOUT_MS).catch(() => null);
    if (r?.status === 200) {
      this.ledgerAcked.add(id);
      this.stats.ledger.acked++;
      return true;
    }
    if (r?.status === 400) this.oddities.push(`register ${id} on ${server}: 400 ${r.text.slice(0, 200)}`);
    this.stats.ledger.unknown++;
    return false;
  }

  /** The ledger instance IDs `server` holds (?stale), or null when it does not answer. */
  async ledgerState(server: string): Promise<Set<string> | null> {
    const r = await this.#http(server, 'GET', `/v1/catalog/service/${LEDGER_SERVICE}?stale`, undefined, READ_TIMEOUT_MS).catch(() => null);
    if (r === null || r.status !== 200) return null;
    try {
      return new Set((JSON.parse(r.text) as { ServiceID: string }[]).map((e) => e.ServiceID));
    } catch {
      return null;
    }
  }

  /** A TTL renewal: not in the history (it changes no registration), only counted. */
  async #renew(server: string, s: number, i: number): Promise<boolean> {
    const r = await this.#http(server, 'PUT', `/v1/agent/check/pass/service:${instanceId(s, i)}`, undefined, WRITE_TIMEOUT_MS).catch(() => null);
    // 200, or the "does not have associated TTL" answer for an instance not registered now.
    const ok = r !== null && (r.status === 200 || (r.status === 404 && r.text.includes('does not have associated TTL')));
    if (ok) this.stats.renewals.ok++;
    else this.stats.renewals.failed++;
    return ok;
  }

  async #http(server: string, method: 'GET' | 'PUT', path: string, body: unknown, timeoutMs: number): Promise<Reply> {
    const res = await request(`http://${server}${path}`, {
      method,
      headers: { 'content-type': 'application/json', 'x-sider-request-id': randomUUID() },
      body: body === undefined ? null : JSON.stringify(body),
      dispatcher: this.#agent,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.body.text();
    const idx = res.headers['x-consul-index'];
    return { status: res.statusCode, index: Number(Array.isArray(idx) ? idx[0] : (idx ?? 0)), text };
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
