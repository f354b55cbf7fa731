// The contract between the probe library (probes.ts, scheduler.ts) and its two users: the leader's
// prober (checks registered through the API) and `sider agent` (checks of its local config file).

import type { CheckStatus } from '../registry/model.ts';

/** Longest check output kept (bytes of UTF-8); longer output is cut and marked. DESIGN §5 / issue #4. */
export const MAX_CHECK_OUTPUT = 4096;

/** What to probe. Exactly one of http / tcp / grpc / args is set, matching `type`. */
export interface ProbeDefinition {
  type: 'http' | 'tcp' | 'grpc' | 'cmd';
  /** http: URL (http: or https:). */
  http?: string;
  /** http: method, default GET. */
  method?: string;
  /** http: extra request headers. */
  header?: Record<string, string[]>;
  /** http: request body. */
  body?: string;
  /** http/grpc: skip TLS certificate verification. */
  tlsSkipVerify?: boolean;
  /** http: do not follow redirects (Consul's DisableRedirects; by default up to 10 are followed). */
  disableRedirects?: boolean;
  /** tcp: host:port. */
  tcp?: string;
  /** grpc: host:port, optionally `/service` (grpc.health.v1 service name). */
  grpc?: string;
  grpcUseTls?: boolean;
  /** cmd: argv; never run through a shell. */
  args?: string[];
}

export interface ProbeResult {
  status: CheckStatus;
  /** Human-readable, at most MAX_CHECK_OUTPUT bytes. */
  output: string;
}

/** One check as the scheduler runs it. */
export interface ScheduledCheck {
  /** Caller's identity for the check (e.g. `ns\u0000checkId`); reported back on transitions. */
  key: string;
  probe: ProbeDefinition;
  intervalMs: number;
  /** Per-probe timeout. */
  timeoutMs: number;
  /** Consecutive passing results needed to go from non-passing to passing (≥ 1; Consul's 0 means 1). */
  successBeforePassing: number;
  /** Consecutive failing results needed to go from passing/warning to critical (≥ 1). */
  failuresBeforeCritical: number;
  /** The status the caller currently records for the check (the registry's, or the agent's). */
  status: CheckStatus;
}

/** Called once per status transition (never for a result that keeps the status). */
export type TransitionFn = (key: string, status: CheckStatus, output: string) => void;
