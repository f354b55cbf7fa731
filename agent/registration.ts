// What the agent tells the server about one configured service: the catalog register body (its own
// node; every check a TTL check: the agent runs the probes, the server only times the renewals), and
// how a server's view of the instance differs from it (the periodic sync re-registers on any difference).

import { formatDurationMs } from '../http/duration.ts';
import { isMaintenanceCheck } from '../src/registry/health.ts';
import type { CheckStatus } from '../src/registry/model.ts';
import type { AgentCheck, AgentService } from './config.ts';

/** The status (and output) a registration sets for a check; nothing = keep the server's. */
export interface CheckRegistrationState {
  Status?: CheckStatus;
  Output?: string;
}

/** The node the agent registers its services as (Consul's Node and its Address). */
export interface AgentNode {
  name: string;
  /** '' = not configured: the server shows the service's address as the node's. */
  address: string;
}

/**
 * PUT /v1/catalog/register body (Consul's CatalogRegistration), so that the instance carries the
 * agent's node name and address. The namespace travels in `?ns=`. `stateOf` decides per check
 * whether the registration sets its status.
 */
export function registrationBody(node: AgentNode, svc: AgentService, stateOf: (check: AgentCheck) => CheckRegistrationState): Record<string, unknown> {
  const body: Record<string, unknown> = { Node: node.name };
  if (node.address !== '') body.Address = node.address;
  body.Service = {
    Service: svc.name,
    ID: svc.id,
    Address: svc.address,
    Port: svc.port,
    Tags: svc.tags,
    Meta: svc.meta,
    Weights: svc.weights,
    EnableTagOverride: svc.enableTagOverride,
  };
  body.Checks = svc.checks.map((c) => {
    const check: Record<string, unknown> = {
      Node: node.name,
      CheckID: c.id,
      Name: c.name,
      Notes: c.notes,
      ServiceID: svc.id,
    };
    const state = stateOf(c);
    if (state.Status !== undefined) check.Status = state.Status;
    if (state.Output !== undefined) check.Output = state.Output;
    const definition: Record<string, unknown> = { TTL: formatDurationMs(c.ttlMs) };
    if (c.deregisterCriticalServiceAfter !== '') definition.DeregisterCriticalServiceAfter = c.deregisterCriticalServiceAfter;
    check.Definition = definition;
    return check;
  });
  return body;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function sameMeta(a: unknown, b: Record<string, string>): boolean {
  if (!isObject(a)) return Object.keys(b).length === 0;
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return sameJson(ka, kb) && kb.every((k) => a[k] === b[k]);
}

/** Go duration strings compare by value ("1m" = "60s"); the server may show either form. */
function sameDuration(a: unknown, ms: number, parse: (s: string) => number): boolean {
  if (typeof a !== 'string' || a === '') return ms === 0;
  try {
    return parse(a) === ms;
  } catch {
    return false;
  }
}

export interface ServerView {
  /** Why the server's instance differs from the configured one; '' when it does not. */
  difference: string;
  /** The check IDs the server holds for the instance. */
  checkIds: Set<string>;
  /** Server status of each of the instance's checks. */
  statuses: Map<string, string>;
  /** Checks on the instance that the agent does not define (maintenance checks excluded). */
  extraChecks: string[];
}

/**
 * Compares one element of GET /v1/health/service/:name (or undefined when the instance is absent)
 * with the configured service. `wantStatus` gives the status the agent holds for a check it runs
 * (undefined for TTL checks the application renews: their status is the application's business).
 */
export function compareWithServer(
  node: AgentNode,
  svc: AgentService,
  entry: unknown,
  wantStatus: (check: AgentCheck) => CheckStatus | undefined,
  parseDurationMs: (s: string) => number,
): ServerView {
  const view: ServerView = { difference: '', checkIds: new Set(), statuses: new Map(), extraChecks: [] };
  if (!isObject(entry) || !isObject(entry.Service)) {
    view.difference = 'not registered';
    return view;
  }
  const s = entry.Service;
  const checks = Array.isArray(entry.Checks) ? entry.Checks.filter(isObject) : [];
  for (const c of checks) {
    const id = String(c.CheckID);
    view.checkIds.add(id);
    view.statuses.set(id, String(c.Status));
  }
  const diffs: string[] = [];
  // Registered through another server's node, or by an agent without this node name / address.
  const n = isObject(entry.Node) ? entry.Node : {};
  if (n.Node !== node.name) diffs.push('node');
  else if (node.address !== '' && n.Address !== node.address) diffs.push('node address');
  if (s.Address !== svc.address) diffs.push('address');
  if (s.Port !== svc.port) diffs.push('port');
  if (!sameJson(s.Tags ?? [], svc.tags)) diffs.push('tags');
  if (!sameMeta(s.Meta, svc.meta)) diffs.push('meta');
  const w = isObject(s.Weights) ? s.Weights : {};
  if (w.Passing !== svc.weights.Passing || w.Warning !== svc.weights.Warning) diffs.push('weights');
  if ((s.EnableTagOverride === true) !== svc.enableTagOverride) diffs.push('enable_tag_override');
  const mine = new Set<string>();
  for (const want of svc.checks) {
    mine.add(want.id);
    const have = checks.find((c) => c.CheckID === want.id);
    if (!have) {
      diffs.push(`check ${want.id} missing`);
      continue;
    }
    const def = isObject(have.Definition) ? have.Definition : {};
    // Not every server shows a check's TTL; compare it where it is shown.
    const ttl = def.TTL ?? have.TTL;
    if (have.Type !== 'ttl' || (ttl !== undefined && !sameDuration(ttl, want.ttlMs, parseDurationMs))) diffs.push(`check ${want.id} type or TTL`);
    if (have.Name !== want.name || have.Notes !== want.notes) diffs.push(`check ${want.id} name or notes`);
    // Shown only when set.
    const deregister = def.DeregisterCriticalServiceAfter ?? '';
    if (!sameDuration(deregister, want.deregisterCriticalServiceAfter === '' ? 0 : parseDurationMs(want.deregisterCriticalServiceAfter), parseDurationMs)) {
      diffs.push(`check ${want.id} deregister_critical_service_after`);
    }
    const status = wantStatus(want);
    if (status !== undefined && have.Status !== status) diffs.push(`check ${want.id} is ${String(have.Status)} on the server, ${status} here`);
  }
  view.extraChecks = [...view.checkIds].filter((id) => !mine.has(id) && !isMaintenanceCheck(id));
  view.difference = diffs.join(', ');
  return view;
}
