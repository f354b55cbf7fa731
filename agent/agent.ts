// The Sider agent: keeps the services of its config file registered with the servers, runs their
// checks locally and reports the results as TTL check updates, and deregisters them when stopped.
//
// Every check is registered as a TTL check. For checks the agent runs (http/tcp/grpc/args) it sends
// each status change at once and renews the unchanged status at ~2/3 of the TTL, so that if the
// agent dies its checks expire to critical on the server and the leader never probes targets that
// may be reachable only from this host. TTL checks of the file are renewed by the application.

import { randomUUID } from 'node:crypto';
import { parseDurationMs } from '../http/duration.ts';
import type { Logger } from '../src/log.ts';
import type { ScheduledCheck } from '../src/health/types.ts';
import { CheckScheduler } from '../src/health/scheduler.ts';
import type { CheckStatus } from '../src/registry/model.ts';
import type { AgentCheck, AgentConfig, AgentService } from './config.ts';
import { compareWithServer, registrationBody } from './registration.ts';
import type { AgentNode, CheckRegistrationState } from './registration.ts';
import { ServerClient } from './server-client.ts';
import type { ServerReply } from './server-client.ts';

/** The server's answer to a status update of a check it does not hold (Consul's text). */
const NO_TTL = 'does not have associated TTL';
/** Retry delays after a failed sync or report grow to this. */
const MAX_BACKOFF_MS = 30_000;
/** Shutdown deregistrations together get this long. */
const STOP_DEREGISTER_MS = 5_000;

export interface AgentOptions {
  config: AgentConfig;
  log: Logger;
  /** Bound on one request to one server (default 10 s). */
  attemptTimeoutMs?: number;
}

/** A check the agent runs, with what it last learned and what it last told the server. */
interface LocalCheck {
  check: AgentCheck;
  service: ServiceState;
  status: CheckStatus;
  output: string;
  /** An update request is in flight. */
  sending: boolean;
  /** A transition arrived while sending: send again when done. */
  again: boolean;
  timer: NodeJS.Timeout | undefined;
  failures: number;
}

interface ServiceState {
  svc: AgentService;
  /** Needs a sync (read, compare, re-register if different). */
  dirty: boolean;
  /** A registration was sent at least once (so shutdown deregisters it). */
  attempted: boolean;
  /** The server acknowledged a registration (reports before that would only meet 404s). */
  registered: boolean;
  /** The last refusal logged (so a persistent 4xx is logged once, not every retry). */
  lastRefusal: string;
}

export interface StopResult {
  deregistered: string[];
  failed: string[];
}

function jitter(ms: number, spread: number): number {
  return ms * (1 - spread / 2 + Math.random() * spread);
}

export class Agent {
  readonly #cfg: AgentConfig;
  readonly #log: Logger;
  readonly #client: ServerClient;
  readonly #services: ServiceState[];
  /** The node its instances carry (node_name, advertise_addr). */
  readonly #node: AgentNode;
  readonly #local = new Map<string, LocalCheck>();
  readonly #abort = new AbortController();
  readonly #runId = randomUUID();
  #seq = 0;
  #scheduler: CheckScheduler | undefined;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #stopping = false;
  #stopped: Promise<StopResult> | undefined;
  readonly #reports = new Set<Promise<void>>();

  constructor(opts: AgentOptions) {
    this.#cfg = opts.config;
    this.#node = { name: opts.config.nodeName, address: opts.config.nodeAddress };
    this.#log = opts.log;
    this.#client = new ServerClient({ servers: opts.config.servers, token: opts.config.token, log: opts.log, attemptTimeoutMs: opts.attemptTimeoutMs });
    this.#services = opts.config.services.map((svc) => ({ svc, dirty: true, attempted: false, registered: false, lastRefusal: '' }));
    for (const state of this.#services) {
      for (const check of state.svc.checks) {
        if (!check.probe) continue;
        this.#local.set(check.id, {
          check,
          service: state,
          status: check.status === '' ? 'critical' : check.status,
          output: '',
          sending: false,
          again: false,
          timer: undefined,
          failures: 0,
        });
      }
    }
  }

  /** Starts the checks and the registration loop; returns at once (servers may be unreachable yet). */
  start(): void {
    if (this.#loop) throw new Error('agent already started');
    const checks: ScheduledCheck[] = [...this.#local.values()].map((l) => ({
      key: l.check.id,
      probe: l.check.probe!,
      intervalMs: l.check.intervalMs,
      timeoutMs: l.check.timeoutMs,
      // Consul's 0 means 1 for both thresholds.
      successBeforePassing: Math.max(1, l.check.successBeforePassing),
      failuresBeforeCritical: Math.max(1, l.check.failuresBeforeCritical),
      status: l.status,
    }));
    this.#log('info', 'sider agent started', {
      servers: this.#cfg.servers,
      namespace: this.#cfg.namespace,
      services: this.#services.map((s) => `${s.svc.name}/${s.svc.id}`),
      localChecks: checks.length,
    });
    if (checks.length > 0) {
      this.#scheduler = new CheckScheduler({
        onTransition: (key, status, output) => this.#onTransition(key, status, output),
        allowScripts: this.#cfg.enableScriptChecks,
        log: this.#log,
      });
      this.#scheduler.sync(checks);
    }
    this.#loop = this.#syncLoop();
  }

  /** The server requests go to first. */
  get server(): string {
    return this.#client.current;
  }

  // ---- registration and periodic sync ----------------------------------------------------------

  #ns(): string {
    return this.#cfg.namespace === 'default' ? '' : `?ns=${encodeURIComponent(this.#cfg.namespace)}`;
  }

  #requestId(): string {
    return `agent-${this.#runId}-${++this.#seq}`;
  }

  /** Wakes the loop for a dirty service now instead of at the next periodic sync. */
  #kick(): void {
    this.#wake?.();
  }

  async #sleep(ms: number): Promise<void> {
    if (this.#stopping) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
    this.#wake = undefined;
  }

  async #syncLoop(): Promise<void> {
    let nextFull = 0;
    let backoff = 1000;
    while (!this.#stopping) {
      if (Date.now() >= nextFull) {
        for (const s of this.#services) s.dirty = true;
        nextFull = Date.now() + jitter(this.#cfg.syncIntervalMs, 0.25);
      }
      let failed = false;
      for (const s of this.#services) {
        if (this.#stopping) break;
        if (!s.dirty) continue;
        try {
          s.dirty = false;
          await this.#syncService(s);
        } catch (err) {
          s.dirty = true;
          failed = true;
          if (this.#stopping) break;
          this.#log('warn', 'cannot sync service with the servers; retrying', { service: s.svc.name, id: s.svc.id, error: (err as Error).message, retryMs: backoff });
        }
      }
      if (this.#stopping) break;
      const wait = failed ? jitter(backoff, 0.2) : Math.max(0, nextFull - Date.now());
      backoff = failed ? Math.min(backoff * 2, MAX_BACKOFF_MS, this.#cfg.syncIntervalMs) : 1000;
      if (this.#services.some((s) => s.dirty) && !failed) continue;
      await this.#sleep(wait);
    }
  }

  /** What the agent holds for a check it runs (undefined for the application's TTL checks). */
  #wantStatus(check: AgentCheck): CheckStatus | undefined {
    return this.#local.get(check.id)?.status;
  }

  /** Reads the server's view of the instance, re-registers it if it differs, drops foreign checks. */
  async #syncService(s: ServiceState): Promise<void> {
    const signal = this.#abort.signal;
    const read = await this.#client.request('GET', `/v1/health/service/${encodeURIComponent(s.svc.name)}${this.#ns()}`, { signal });
    if (read.status !== 200) throw new Error(`GET /v1/health/service/${s.svc.name}: HTTP ${read.status} ${read.text.trim().slice(0, 300)}`);
    const entries = JSON.parse(read.text) as unknown;
    const entry = Array.isArray(entries)
      ? entries.find((e: unknown) => typeof e === 'object' && e !== null && (e as { Service?: { ID?: unknown } }).Service?.ID === s.svc.id)
      : undefined;
    const view = compareWithServer(this.#node, s.svc, entry, (c) => this.#wantStatus(c), parseDurationMs);
    const sent = new Map<string, CheckStatus>();
    if (view.difference !== '') {
      const body = registrationBody(this.#node, s.svc, (c): CheckRegistrationState => {
        const local = this.#local.get(c.id);
        if (local) {
          sent.set(c.id, local.status);
          return { Status: local.status, Output: local.output };
        }
        // The application's TTL checks: its status stands; a missing one starts as configured.
        return !view.checkIds.has(c.id) && c.status !== '' ? { Status: c.status } : {};
      });
      s.attempted = true;
      const reply = await this.#client.request('PUT', `/v1/catalog/register${this.#ns()}`, { body, requestId: this.#requestId(), signal });
      if (reply.status !== 200) {
        const refusal = `HTTP ${reply.status} ${reply.text.trim().slice(0, 500)}`;
        if (refusal !== s.lastRefusal) this.#log('error', 'the server refused the registration', { service: s.svc.name, id: s.svc.id, server: reply.server, error: refusal });
        s.lastRefusal = refusal;
        throw new Error(`registration refused: ${refusal}`);
      }
      s.lastRefusal = '';
      s.registered = true;
      this.#log('info', entry === undefined ? 'registered service' : 're-registered service', { service: s.svc.name, id: s.svc.id, server: reply.server, reason: view.difference });
    } else {
      s.registered = true;
    }
    for (const c of s.svc.checks) {
      const local = this.#local.get(c.id);
      if (!local) continue;
      const sentStatus = sent.get(c.id);
      if (sentStatus !== undefined && sentStatus !== local.status) {
        // A transition arrived while the registration was in flight.
        this.#report(local);
      } else if (!local.sending && local.timer === undefined) {
        // A check the registration just created has a fresh TTL; any other may be close to its
        // deadline (this agent restarted, or never renewed it yet): renew it now.
        if (sentStatus !== undefined && !view.checkIds.has(c.id)) this.#scheduleRenewal(local, this.#renewMs(local));
        else this.#report(local);
      }
    }
    for (const id of view.extraChecks) {
      const reply = await this.#client.request('PUT', `/v1/agent/check/deregister/${encodeURIComponent(id)}${this.#ns()}`, { requestId: this.#requestId(), signal });
      if (reply.status === 200) this.#log('info', 'removed a check the config does not define', { service: s.svc.name, id: s.svc.id, check: id });
      else this.#log('warn', 'cannot remove a check the config does not define', { service: s.svc.name, id: s.svc.id, check: id, error: `HTTP ${reply.status} ${reply.text.trim().slice(0, 200)}` });
    }
  }

  // ---- results of local checks ----------------------------------------------------------------

  #onTransition(key: string, status: CheckStatus, output: string): void {
    const local = this.#local.get(key);
    if (!local || this.#stopping) return;
    // The scheduler may repeat a transition; sending it again is harmless.
    if (local.status !== status) this.#log('info', 'check changed status', { check: key, service: local.service.svc.id, from: local.status, to: status, output: output.slice(0, 200) });
    local.status = status;
    local.output = output;
    // Until the service is registered, its registration will carry the status.
    if (local.service.registered) this.#report(local);
  }

  /** About 2/3 of the TTL, a little jittered so many checks do not renew in step. */
  #renewMs(local: LocalCheck): number {
    return jitter((local.check.ttlMs * 2) / 3, 0.1);
  }

  #scheduleRenewal(local: LocalCheck, ms: number): void {
    clearTimeout(local.timer);
    if (this.#stopping) return;
    local.timer = setTimeout(() => {
      local.timer = undefined;
      this.#report(local);
    }, ms);
  }

  /** Sends the check's status (a change or a renewal); one request per check at a time. */
  #report(local: LocalCheck): void {
    if (this.#stopping) return;
    if (local.sending) {
      local.again = true;
      return;
    }
    local.sending = true;
    clearTimeout(local.timer);
    local.timer = undefined;
    const p = this.#sendUpdate(local).finally(() => {
      this.#reports.delete(p);
      local.sending = false;
      if (local.again) {
        local.again = false;
        this.#report(local);
      }
    });
    this.#reports.add(p);
  }

  async #sendUpdate(local: LocalCheck): Promise<void> {
    const id = local.check.id;
    const status = local.status;
    let reply: ServerReply;
    try {
      reply = await this.#client.request('PUT', `/v1/agent/check/update/${encodeURIComponent(id)}${this.#ns()}`, {
        body: { Status: status, Output: local.output },
        signal: this.#abort.signal,
      });
    } catch (err) {
      if (this.#stopping) return;
      local.failures++;
      const retry = Math.min(this.#renewMs(local), 1000 * 2 ** Math.min(local.failures, 5));
      this.#log('warn', 'cannot report check status; retrying', { check: id, status, error: (err as Error).message, retryMs: Math.round(retry) });
      this.#scheduleRenewal(local, retry);
      return;
    }
    if (reply.status === 200) {
      local.failures = 0;
      this.#log('debug', 'reported check status', { check: id, status, server: reply.server });
      this.#scheduleRenewal(local, this.#renewMs(local));
      return;
    }
    if (reply.status === 404 && reply.text.includes(NO_TTL)) {
      // The registry lost the check (state wiped, or someone deregistered it): put it back now.
      // The registration carries the current status, and renewals resume from there.
      this.#log('warn', 'the server does not know the check; re-registering its service', { check: id, service: local.service.svc.id, server: reply.server });
      local.service.dirty = true;
      local.failures = 0;
      this.#kick();
      this.#scheduleRenewal(local, this.#renewMs(local));
      return;
    }
    local.failures++;
    const retry = Math.min(this.#renewMs(local), 1000 * 2 ** Math.min(local.failures, 5));
    this.#log('warn', 'the server refused a check status update', { check: id, status, server: reply.server, error: `HTTP ${reply.status} ${reply.text.trim().slice(0, 300)}` });
    this.#scheduleRenewal(local, retry);
  }

  // ---- shutdown --------------------------------------------------------------------------------

  /**
   * Stops the checks and the loop, then deregisters every service a registration was sent for
   * (within 5 s in all). Safe to call more than once.
   */
  stop(): Promise<StopResult> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<StopResult> {
    this.#stopping = true;
    this.#scheduler?.stop();
    for (const local of this.#local.values()) clearTimeout(local.timer);
    this.#abort.abort(new Error('agent stopping'));
    this.#wake?.();
    await this.#loop?.catch(() => {});
    await Promise.allSettled(this.#reports);

    const deadline = AbortSignal.timeout(STOP_DEREGISTER_MS);
    const result: StopResult = { deregistered: [], failed: [] };
    await Promise.all(
      this.#services
        .filter((s) => s.attempted)
        .map(async (s) => {
          const name = `${s.svc.name}/${s.svc.id}`;
          try {
            const reply = await this.#client.request('PUT', `/v1/agent/service/deregister${this.#ns()}`, {
              body: { Service: s.svc.name, ID: s.svc.id },
              requestId: this.#requestId(),
              signal: deadline,
            });
            if (reply.status !== 200) throw new Error(`HTTP ${reply.status} ${reply.text.trim().slice(0, 300)}`);
            result.deregistered.push(name);
            this.#log('info', 'deregistered service', { service: s.svc.name, id: s.svc.id, server: reply.server });
          } catch (err) {
            result.failed.push(name);
            this.#log('error', 'cannot deregister service', { service: s.svc.name, id: s.svc.id, error: deadline.aborted ? `no answer within ${STOP_DEREGISTER_MS} ms` : (err as Error).message });
          }
        }),
    );
    await this.#client.close().catch(() => {});
    this.#log('info', 'sider agent stopped', { deregistered: result.deregistered.length, failed: result.failed.length });
    return result;
  }
}
