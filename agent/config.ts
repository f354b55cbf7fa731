// `sider agent` configuration: command-line flags and the JSON config file of local services and
// their checks (Consul's service-definition shape, any key case), validated with the field's path.

import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { SiderError } from '../raft/errors.ts';
import { parseFlags, unknownFlag } from '../src/flags.ts';
import { NODE_NAME, parseCatalogRegisterBody } from '../http/catalog-register.ts';
import { formatDurationMs } from '../http/duration.ts';
import { checkShape, foldKey, normalizeKeys, registerShape } from '../http/normalize.ts';
import type { ObjectShape } from '../http/normalize.ts';
import {
  LIMITS,
  durationValueNs,
  isPlainObject,
  optBool as fieldBool,
  optInt as fieldInt,
  optString as fieldString,
  parseAddress,
  parseHostPort,
  parseId,
  parseNamespace,
  parseServiceName,
  typeName,
} from '../http/register-parse.ts';
import type { ProbeDefinition } from '../src/health/types.ts';
import { MAINTENANCE_CHECK_PREFIX } from '../src/registry/health.ts';
import type { CheckStatus } from '../src/registry/model.ts';
import { registrationBody } from './registration.ts';

export const AGENT_USAGE = `usage: sider agent -config-file FILE [flags]

  -config-file FILE          JSON file of the services to register and their checks (required;
                             see deploy/agent.example.json)
  -server host:port          a server's HTTP address; repeat for several (replaces the file's "servers")
  -enable-script-checks      allow "args" (script) checks of the config file to run
  -log-level debug|info|warn|error, -log-format json|text

Services are registered (PUT /v1/catalog/register) under the agent's node: "node_name" (default
the host name) is their Consul Node, "advertise_addr" (optional) its address.
Every check is registered with the servers as a TTL check. The agent runs http, tcp, grpc and
args checks itself, sends each status change, and renews the status at ~2/3 of a TTL of
max(3 x interval, interval + timeout + 10s): if the agent dies, its checks expire to critical.
"ttl" checks of the file are renewed by the application (PUT /v1/agent/check/pass/<id> on any
server); the agent only keeps them registered and never sets their status after the first
registration. Every sync_interval (jittered) it compares each service with the servers and
re-registers what is missing or different; a renewal answered "does not have associated TTL"
re-registers at once. SIGTERM/SIGINT deregister every service (at most 5 s), then exit 0.

Exit codes: 0 after SIGTERM/SIGINT, 2 for a bad config or flags.`;

/** Bounds (CONVENTIONS: a limit on everything). */
export const AGENT_LIMITS = {
  servers: 64,
  services: 256,
  tokenLength: 512,
  bodyLength: 64 * 1024,
} as const;

const MS_PER_HOUR = 3_600_000;
/** Consul's default probe timeouts: 10 s for HTTP/TCP/gRPC, 30 s for scripts. */
const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_SCRIPT_TIMEOUT_MS = 30_000;
/** The server refuses TTLs above a day; renewals do not depend on the probe interval, so cap there. */
const MAX_TTL_MS = 24 * MS_PER_HOUR;

export type AgentCheckKind = 'ttl' | 'http' | 'tcp' | 'grpc' | 'cmd';

/** One check of the config file, validated. */
export interface AgentCheck {
  /** Where it sits in the file, for messages: `services[0].checks[1]`. */
  path: string;
  id: string;
  name: string;
  kind: AgentCheckKind;
  /** The probe the agent runs; absent for ttl checks (the application renews those). */
  probe?: ProbeDefinition;
  intervalMs: number;
  timeoutMs: number;
  /** The TTL registered with the server: as given for ttl checks, derived for the agent's own. */
  ttlMs: number;
  successBeforePassing: number;
  failuresBeforeCritical: number;
  /** Go duration or ''. */
  deregisterCriticalServiceAfter: string;
  /** Initial status ('' = the server's default, critical). */
  status: CheckStatus | '';
  /** What the server shows in Notes. */
  notes: string;
}

/** One service instance of the config file, validated. */
export interface AgentService {
  path: string;
  name: string;
  id: string;
  address: string;
  port: number;
  tags: string[];
  meta: Record<string, string>;
  weights: { Passing: number; Warning: number };
  enableTagOverride: boolean;
  checks: AgentCheck[];
}

export interface AgentConfig {
  /** The config file it came from. */
  file: string;
  /** The Node its instances carry (node_name; default the host name). */
  nodeName: string;
  /** Their Node.Address (advertise_addr), '' when not configured. */
  nodeAddress: string;
  /** HTTP addresses host:port, tried in order. */
  servers: string[];
  namespace: string;
  /** Sent as X-Consul-Token when set; never logged. */
  token: string;
  enableScriptChecks: boolean;
  syncIntervalMs: number;
  services: AgentService[];
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  logFormat: 'json' | 'text';
}

function configError(message: string): SiderError {
  return new SiderError('SIDER_CONFIG', message);
}

function fail(path: string, message: string): never {
  throw configError(`${path}: ${message}`);
}

function absent(v: unknown): boolean {
  return v === undefined || v === null || v === '';
}

/** Runs a validator of http/register-parse.ts, whose messages start with the field name given. */
function via<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw configError((err as Error).message);
  }
}

// ---- key spelling ------------------------------------------------------------------------------

const agentShape: ObjectShape = {
  kind: 'object',
  fields: {
    NodeName: 'value',
    AdvertiseAddr: 'value',
    Servers: 'value',
    Namespace: 'value',
    Token: 'value',
    EnableScriptChecks: 'value',
    SyncInterval: 'value',
    // Services and checks are normalized one by one, so that messages carry the file's paths.
    Services: 'value',
    Service: 'value',
  },
};

const serviceShape: ObjectShape = { ...registerShape, fields: { ...registerShape.fields, Checks: 'value', Check: 'value' } };

/** Canonical (normalized) field → the name used in messages, as in the documented file shape. */
const TOP_FIELDS: Record<string, string> = {
  NodeName: 'node_name',
  AdvertiseAddr: 'advertise_addr',
  Servers: 'servers',
  Namespace: 'namespace',
  Token: 'token',
  EnableScriptChecks: 'enable_script_checks',
  SyncInterval: 'sync_interval',
  Services: 'services',
  Service: 'service',
};
const SERVICE_FIELDS: Record<string, string> = {
  Name: 'name',
  ID: 'id',
  Address: 'address',
  Port: 'port',
  Tags: 'tags',
  Meta: 'meta',
  Weights: 'weights',
  EnableTagOverride: 'enable_tag_override',
  Checks: 'checks',
  Check: 'check',
};
const CHECK_FIELDS: Record<string, string> = {
  CheckID: 'id',
  Name: 'name',
  Notes: 'notes',
  Status: 'status',
  HTTP: 'http',
  Method: 'method',
  Header: 'header',
  Body: 'body',
  DisableRedirects: 'disable_redirects',
  TLSSkipVerify: 'tls_skip_verify',
  TCP: 'tcp',
  GRPC: 'grpc',
  GRPCUseTLS: 'grpc_use_tls',
  Args: 'args',
  TTL: 'ttl',
  Interval: 'interval',
  Timeout: 'timeout',
  SuccessBeforePassing: 'success_before_passing',
  FailuresBeforeCritical: 'failures_before_critical',
  DeregisterCriticalServiceAfter: 'deregister_critical_service_after',
};

/**
 * Refuses keys this agent does not know (a typo must not silently drop a setting), named as the
 * file spells them (`original` is the object before normalization).
 */
function onlyKnown(obj: Record<string, unknown>, known: Record<string, string>, path: string, original: unknown): void {
  for (const k of Object.keys(obj)) {
    if (Object.hasOwn(known, k)) continue;
    const spelled = isPlainObject(original) ? (Object.keys(original).find((o) => foldKey(o) === foldKey(k)) ?? k) : k;
    fail(`${path}${path === '' ? '' : '.'}${spelled}`, 'unknown or unsupported field');
  }
}

// ---- scalars -----------------------------------------------------------------------------------
// The HTTP API's field validators (same messages), raising SIDER_CONFIG instead of SIDER_BAD_REQUEST.

const optString = (v: unknown, path: string, maxLength: number): string => via(() => fieldString(v, path, maxLength));
const optBool = (v: unknown, path: string): boolean => via(() => fieldBool(v, path));
const optInt = (v: unknown, path: string, min: number, max: number, dflt: number): number => via(() => fieldInt(v, path, min, max, dflt));

/** A Go duration string ("10s") or whole nanoseconds, as milliseconds; `dflt` when absent. */
function optDurationMs(v: unknown, path: string, opts: { min: number; max: number; dflt: number; clampMin?: boolean }): number {
  if (absent(v)) return opts.dflt;
  const ns = durationValueNs(v, path, fail);
  const ms = Number(ns) / 1e6;
  if (ms <= 0) fail(path, `must be a positive duration, got ${JSON.stringify(v)}`);
  if (ms > opts.max) fail(path, `must be at most ${formatDurationMs(opts.max)}, got ${JSON.stringify(v)}`);
  if (ms < opts.min) {
    if (opts.clampMin) return opts.min;
    fail(path, `must be at least ${formatDurationMs(opts.min)}, got ${JSON.stringify(v)}`);
  }
  return ms;
}

function parseTags(v: unknown, path: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) fail(path, `must be an array of strings, not ${typeName(v)}`);
  if (v.length > LIMITS.tags) fail(path, `more than ${LIMITS.tags} tags`);
  return v.map((t, i) => optString(t, `${path}[${i}]`, LIMITS.tagLength) || fail(`${path}[${i}]`, 'must be a non-empty string'));
}

const META_KEY = /^[A-Za-z0-9_-]+$/;

function parseMeta(v: unknown, path: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (!isPlainObject(v)) fail(path, `must be an object of strings, not ${typeName(v)}`);
  const entries = Object.entries(v);
  if (entries.length > LIMITS.metaPairs) fail(path, `more than ${LIMITS.metaPairs} pairs`);
  for (const [k, val] of entries) {
    if (k.length > LIMITS.metaKeyLength || !META_KEY.test(k)) fail(`${path}[${JSON.stringify(k.slice(0, 64))}]`, `keys are 1-${LIMITS.metaKeyLength} letters, digits, "_" or "-"`);
    if (typeof val !== 'string') fail(`${path}.${k}`, `must be a string, not ${typeName(val)}`);
    if (val.length > LIMITS.metaValueLength) fail(`${path}.${k}`, `longer than ${LIMITS.metaValueLength} characters`);
  }
  return Object.fromEntries(entries) as Record<string, string>;
}

function parseWeights(v: unknown, path: string): { Passing: number; Warning: number } {
  if (v === undefined || v === null) return { Passing: 1, Warning: 1 };
  // Already normalized with the service (registerShape.Weights).
  const w = v;
  if (!isPlainObject(w)) fail(path, `must be an object {passing, warning}, not ${typeName(v)}`);
  onlyKnown(w, { Passing: 'passing', Warning: 'warning' }, path, w);
  return {
    Passing: optInt(w.Passing, `${path}.passing`, 1, LIMITS.weight, 1),
    Warning: optInt(w.Warning, `${path}.warning`, 0, LIMITS.weight, 1),
  };
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function parseHeader(v: unknown, path: string): Record<string, string[]> {
  if (v === undefined || v === null) return {};
  if (!isPlainObject(v)) fail(path, `must be an object of string arrays, not ${typeName(v)}`);
  const entries = Object.entries(v);
  if (entries.length > LIMITS.headers) fail(path, `more than ${LIMITS.headers} headers`);
  return Object.fromEntries(
    entries.map(([name, raw]) => {
      if (!HEADER_NAME.test(name) || name.length > 256) fail(`${path}[${JSON.stringify(name.slice(0, 64))}]`, 'invalid header name');
      const values: unknown[] = typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw : fail(`${path}.${name}`, `must be an array of strings, not ${typeName(raw)}`);
      if (values.length > LIMITS.headerValues) fail(`${path}.${name}`, `more than ${LIMITS.headerValues} values`);
      return [
        name,
        values.map((hv, i) => {
          const s = optString(hv, `${path}.${name}[${i}]`, LIMITS.headerValueLength);
          if (typeof hv !== 'string') fail(`${path}.${name}[${i}]`, 'must be a string');
          if (/[\r\n\0]/.test(s)) fail(`${path}.${name}[${i}]`, 'must not contain CR, LF or NUL');
          return s;
        }),
      ];
    }),
  );
}

// ---- checks ------------------------------------------------------------------------------------

const STATUSES: readonly string[] = ['passing', 'warning', 'critical'];

/**
 * The TTL an agent-run check is registered with: long enough that a probe that runs its full
 * timeout plus scheduling slack never lets it lapse, short enough that a dead agent is noticed.
 */
export function derivedTtlMs(intervalMs: number, timeoutMs: number): number {
  return Math.min(MAX_TTL_MS, Math.max(3 * intervalMs, intervalMs + timeoutMs + 10_000));
}

/** One line telling an operator what the agent runs for this check (the server's Notes). */
function describeProbe(nodeName: string, probe: ProbeDefinition): string {
  let what: string;
  switch (probe.type) {
    case 'http':
      what = `HTTP ${probe.method || 'GET'} ${probe.http}`;
      break;
    case 'tcp':
      what = `TCP ${probe.tcp}`;
      break;
    case 'grpc':
      what = `gRPC ${probe.grpc}${probe.grpcUseTls ? ' (TLS)' : ''}`;
      break;
    case 'cmd':
      what = `script ${JSON.stringify(probe.args)}`;
      break;
  }
  return `run by sider agent ${nodeName}: ${what}`;
}

function parseCheck(raw: unknown, path: string, svc: { name: string; id: string }, ctx: { nodeName: string; enableScriptChecks: boolean; defaultId: string }): AgentCheck {
  const c = normalizeAt(raw, checkShape, path);
  onlyKnown(c, CHECK_FIELDS, path, raw);
  const kinds: { field: string; kind: AgentCheckKind }[] = [];
  const present = (v: unknown): boolean => !absent(v) && !(Array.isArray(v) && v.length === 0);
  if (present(c.TTL)) kinds.push({ field: 'ttl', kind: 'ttl' });
  if (present(c.HTTP)) kinds.push({ field: 'http', kind: 'http' });
  if (present(c.TCP)) kinds.push({ field: 'tcp', kind: 'tcp' });
  if (present(c.GRPC)) kinds.push({ field: 'grpc', kind: 'grpc' });
  if (present(c.Args)) kinds.push({ field: 'args', kind: 'cmd' });
  if (kinds.length === 0) fail(path, 'give one of http, tcp, grpc, args or ttl');
  if (kinds.length > 1) fail(path, `give only one of http, tcp, grpc, args or ttl, not ${kinds.map((k) => k.field).join(' and ')}`);
  const kind = kinds[0]!.kind;

  const id = absent(c.CheckID) ? ctx.defaultId : via(() => parseId(c.CheckID, `${path}.id`));
  if (id.startsWith(MAINTENANCE_CHECK_PREFIX)) fail(`${path}.id`, `the prefix ${JSON.stringify(MAINTENANCE_CHECK_PREFIX)} is reserved for maintenance mode`);
  const name = optString(c.Name, `${path}.name`, LIMITS.checkNameLength) || `Service '${svc.name}' check`;
  const status = absent(c.Status) ? '' : c.Status;
  if (status !== '' && (typeof status !== 'string' || !STATUSES.includes(status))) {
    fail(`${path}.status`, `must be "passing", "warning" or "critical", not ${JSON.stringify(status)}`);
  }
  const userNotes = optString(c.Notes, `${path}.notes`, LIMITS.notesLength);
  const check: AgentCheck = {
    path,
    id,
    name,
    kind,
    intervalMs: 0,
    timeoutMs: 0,
    ttlMs: 0,
    successBeforePassing: optInt(c.SuccessBeforePassing, `${path}.success_before_passing`, 0, LIMITS.threshold, 0),
    failuresBeforeCritical: optInt(c.FailuresBeforeCritical, `${path}.failures_before_critical`, 0, LIMITS.threshold, 0),
    deregisterCriticalServiceAfter: absent(c.DeregisterCriticalServiceAfter)
      ? ''
      : formatDurationMs(optDurationMs(c.DeregisterCriticalServiceAfter, `${path}.deregister_critical_service_after`, { min: 60_000, max: 168 * MS_PER_HOUR, dflt: 0, clampMin: true })),
    status: status as CheckStatus | '',
    notes: userNotes,
  };

  if (kind === 'ttl') {
    check.ttlMs = optDurationMs(c.TTL, `${path}.ttl`, { min: 1, max: MAX_TTL_MS, dflt: 0 });
    for (const [field, msgName] of [['Interval', 'interval'], ['Timeout', 'timeout'], ['Method', 'method'], ['Header', 'header'], ['Body', 'body']] as const) {
      if (!absent(c[field])) fail(`${path}.${msgName}`, 'has no meaning for a ttl check (the application renews it)');
    }
    return check;
  }

  if (absent(c.Interval)) fail(`${path}.interval`, `required for ${kinds[0]!.field} checks`);
  // Like Consul, intervals below a second are raised to one.
  check.intervalMs = optDurationMs(c.Interval, `${path}.interval`, { min: 1000, max: MAX_TTL_MS, dflt: 0, clampMin: true });
  check.timeoutMs = optDurationMs(c.Timeout, `${path}.timeout`, { min: 1, max: 10 * 60_000, dflt: kind === 'cmd' ? DEFAULT_SCRIPT_TIMEOUT_MS : DEFAULT_TIMEOUT_MS });
  check.ttlMs = derivedTtlMs(check.intervalMs, check.timeoutMs);
  let probe: ProbeDefinition;
  switch (kind) {
    case 'http': {
      const url = optString(c.HTTP, `${path}.http`, LIMITS.urlLength);
      let parsed: URL | undefined;
      try {
        parsed = new URL(url);
      } catch {
        parsed = undefined;
      }
      if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) fail(`${path}.http`, `invalid URL ${JSON.stringify(url)}: expected http:// or https://`);
      const method = optString(c.Method, `${path}.method`, 16);
      if (method !== '' && !/^[A-Za-z]+$/.test(method)) fail(`${path}.method`, `invalid HTTP method ${JSON.stringify(method)}`);
      probe = { type: 'http', http: url, method: method.toUpperCase() || 'GET', header: parseHeader(c.Header, `${path}.header`) };
      const body = optString(c.Body, `${path}.body`, AGENT_LIMITS.bodyLength);
      if (body !== '') probe.body = body;
      if (optBool(c.TLSSkipVerify, `${path}.tls_skip_verify`)) probe.tlsSkipVerify = true;
      if (optBool(c.DisableRedirects, `${path}.disable_redirects`)) probe.disableRedirects = true;
      break;
    }
    case 'tcp':
      probe = { type: 'tcp', tcp: via(() => parseHostPort(optString(c.TCP, `${path}.tcp`, 260), `${path}.tcp`)) };
      break;
    case 'grpc': {
      const target = optString(c.GRPC, `${path}.grpc`, 512);
      const slash = target.indexOf('/');
      via(() => parseHostPort(slash < 0 ? target : target.slice(0, slash), `${path}.grpc`));
      probe = { type: 'grpc', grpc: target };
      if (optBool(c.GRPCUseTLS, `${path}.grpc_use_tls`)) probe.grpcUseTls = true;
      if (optBool(c.TLSSkipVerify, `${path}.tls_skip_verify`)) probe.tlsSkipVerify = true;
      break;
    }
    case 'cmd': {
      if (!ctx.enableScriptChecks) {
        fail(
          `${path}.args`,
          `check ${JSON.stringify(id)} is a script check, and script checks are disabled: set "enable_script_checks": true in the agent config or start the agent with -enable-script-checks`,
        );
      }
      const args = c.Args;
      if (!Array.isArray(args)) fail(`${path}.args`, `must be an array of strings, not ${typeName(args)}`);
      if (args.length > LIMITS.args) fail(`${path}.args`, `more than ${LIMITS.args} arguments`);
      probe = {
        type: 'cmd',
        args: args.map((a, i) => {
          if (typeof a !== 'string') fail(`${path}.args[${i}]`, `must be a string, not ${typeName(a)}`);
          if (a.length > LIMITS.argLength) fail(`${path}.args[${i}]`, `longer than ${LIMITS.argLength} characters`);
          return a;
        }),
      };
      if (probe.args![0] === '') fail(`${path}.args[0]`, 'the program must not be empty');
      break;
    }
  }
  if (kind !== 'http') {
    for (const [field, msgName] of [['Method', 'method'], ['Header', 'header'], ['Body', 'body'], ['DisableRedirects', 'disable_redirects']] as const) {
      if (!absent(c[field])) fail(`${path}.${msgName}`, `only http checks take ${msgName}`);
    }
  }
  check.probe = probe;
  const own = describeProbe(ctx.nodeName, probe);
  check.notes = (userNotes === '' ? own : `${userNotes} (${own})`).slice(0, LIMITS.notesLength);
  return check;
}

/** normalizeKeys of one object of the file, refusing a non-object; messages start with `path`. */
function normalizeAt(raw: unknown, shape: ObjectShape, path: string): Record<string, unknown> {
  if (!isPlainObject(raw)) fail(path, `must be an object, not ${typeName(raw)}`);
  return via(() => normalizeKeys(raw, shape, path) as Record<string, unknown>);
}

// ---- services ----------------------------------------------------------------------------------

function parseService(input: unknown, path: string, ctx: { nodeName: string; enableScriptChecks: boolean; checkIds: Map<string, string> }): AgentService {
  const raw = normalizeAt(input, serviceShape, path);
  onlyKnown(raw, SERVICE_FIELDS, path, input);
  if (absent(raw.Name)) fail(`${path}.name`, 'required');
  const name = via(() => parseServiceName(raw.Name, `${path}.name`));
  const id = absent(raw.ID) ? name : via(() => parseId(raw.ID, `${path}.id`));
  const svc: AgentService = {
    path,
    name,
    id,
    address: via(() => parseAddress(raw.Address, `${path}.address`, true)),
    port: optInt(raw.Port, `${path}.port`, 0, 65535, 0),
    tags: parseTags(raw.Tags, `${path}.tags`),
    meta: parseMeta(raw.Meta, `${path}.meta`),
    weights: parseWeights(raw.Weights, `${path}.weights`),
    enableTagOverride: optBool(raw.EnableTagOverride, `${path}.enable_tag_override`),
    checks: [],
  };
  const rawChecks: { value: unknown; path: string }[] = [];
  if (!absent(raw.Check)) rawChecks.push({ value: raw.Check, path: `${path}.check` });
  if (!absent(raw.Checks)) {
    if (!Array.isArray(raw.Checks)) fail(`${path}.checks`, `must be an array, not ${typeName(raw.Checks)}`);
    raw.Checks.forEach((value: unknown, i) => rawChecks.push({ value, path: `${path}.checks[${i}]` }));
  }
  if (rawChecks.length > LIMITS.checks) fail(`${path}.checks`, `more than ${LIMITS.checks} checks`);
  rawChecks.forEach(({ value, path: checkPath }, i) => {
    // The server's derivation, so IDs match what a plain registration would have made.
    const defaultId = rawChecks.length > 1 ? `service:${id}:${i + 1}` : `service:${id}`;
    const check = parseCheck(value, checkPath, svc, { ...ctx, defaultId });
    const earlier = ctx.checkIds.get(check.id);
    if (earlier !== undefined) fail(`${checkPath}.id`, `check ID ${JSON.stringify(check.id)} is already used by ${earlier}`);
    ctx.checkIds.set(check.id, checkPath);
    svc.checks.push(check);
  });
  return svc;
}

// ---- the file ----------------------------------------------------------------------------------

export interface AgentFlags {
  configFile: string;
  /** -server flags; empty = the file's list. */
  servers: string[];
  enableScriptChecks: boolean;
  logLevel: AgentConfig['logLevel'];
  logFormat: AgentConfig['logFormat'];
  help: boolean;
}

/** Validates a parsed config file. `file` names it in messages (every message starts with it). */
export function parseAgentConfig(input: unknown, file: string, flags: Partial<AgentFlags> = {}): AgentConfig {
  try {
    return parseAgentConfigInner(input, file, flags);
  } catch (err) {
    if (err instanceof SiderError) throw configError(`config file ${file}: ${err.message}`);
    throw err;
  }
}

function parseAgentConfigInner(input: unknown, file: string, flags: Partial<AgentFlags>): AgentConfig {
  if (!isPlainObject(input)) throw configError(`must be a JSON object, not ${typeName(input)}`);
  let top: Record<string, unknown>;
  try {
    top = normalizeKeys(input, agentShape) as Record<string, unknown>;
  } catch (err) {
    throw configError((err as Error).message);
  }
  onlyKnown(top, TOP_FIELDS, '', input);

  const nodeName = absent(top.NodeName) ? hostname().replace(/[^a-zA-Z0-9_.-]/g, '-').slice(0, 128) || 'agent' : optString(top.NodeName, 'node_name', 128);
  if (!NODE_NAME.test(nodeName)) fail('node_name', '1-128 letters, digits, "_", "." or "-"');
  const nodeAddress = via(() => parseAddress(top.AdvertiseAddr, 'advertise_addr', true));

  let servers: string[];
  if (flags.servers && flags.servers.length > 0) {
    servers = flags.servers.map((s, i) => via(() => parseHostPort(s, `-server (${i + 1}.)`)));
  } else {
    if (absent(top.Servers)) fail('servers', 'required: the HTTP addresses (host:port) of one or more servers');
    if (!Array.isArray(top.Servers)) fail('servers', `must be an array of "host:port" strings, not ${typeName(top.Servers)}`);
    if (top.Servers.length === 0) fail('servers', 'must name at least one server');
    servers = top.Servers.map((s: unknown, i) => {
      if (typeof s !== 'string') fail(`servers[${i}]`, `must be a "host:port" string, not ${typeName(s)}`);
      return via(() => parseHostPort(s, `servers[${i}]`));
    });
  }
  if (servers.length > AGENT_LIMITS.servers) fail('servers', `more than ${AGENT_LIMITS.servers} servers`);

  const namespace = absent(top.Namespace) ? 'default' : via(() => parseNamespace(top.Namespace, 'namespace'));
  const token = optString(top.Token, 'token', AGENT_LIMITS.tokenLength);
  if (/[\r\n\0]/.test(token)) fail('token', 'must not contain CR, LF or NUL');
  const enableScriptChecks = optBool(top.EnableScriptChecks, 'enable_script_checks') || flags.enableScriptChecks === true;
  const syncIntervalMs = optDurationMs(top.SyncInterval, 'sync_interval', { min: 1000, max: MS_PER_HOUR, dflt: 30_000 });

  const rawServices: { value: unknown; path: string }[] = [];
  if (!absent(top.Service)) rawServices.push({ value: top.Service, path: 'service' });
  if (!absent(top.Services)) {
    if (!Array.isArray(top.Services)) fail('services', `must be an array, not ${typeName(top.Services)}`);
    top.Services.forEach((value: unknown, i) => rawServices.push({ value, path: `services[${i}]` }));
  }
  if (rawServices.length === 0) fail('services', 'required: at least one service to register');
  if (rawServices.length > AGENT_LIMITS.services) fail('services', `more than ${AGENT_LIMITS.services} services`);

  const checkIds = new Map<string, string>();
  const identities = new Map<string, string>();
  const services = rawServices.map(({ value, path }) => {
    const svc = parseService(value, path, { nodeName, enableScriptChecks, checkIds });
    // Like Consul's agent, one service ID per agent (it is how the instance is deregistered).
    const earlier = identities.get(svc.id);
    if (earlier !== undefined) fail(`${path}.id`, `service ID ${JSON.stringify(svc.id)} is already used by ${earlier}`);
    identities.set(svc.id, path);
    // What the agent will send must pass the server's own validation (same code).
    via(() => {
      try {
        parseCatalogRegisterBody(registrationBody({ name: nodeName, address: nodeAddress }, svc, () => ({})), { enableScriptChecks: false });
      } catch (err) {
        throw configError(`${path}: the server would refuse this service: ${(err as Error).message}`);
      }
    });
    return svc;
  });

  return {
    file,
    nodeName,
    nodeAddress,
    servers,
    namespace,
    token,
    enableScriptChecks,
    syncIntervalMs,
    services,
    logLevel: flags.logLevel ?? 'info',
    logFormat: flags.logFormat ?? 'json',
  };
}

/** Reads and validates the file named by the flags. Every failure is a SIDER_CONFIG naming the file. */
export function loadAgentConfig(flags: AgentFlags): AgentConfig {
  const file = flags.configFile;
  let raw: string;
  try {
    raw = readFileSync(file, 'utf8');
  } catch (err) {
    throw configError(`config file ${file}: ${(err as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(raw) as unknown;
  } catch (err) {
    throw configError(`config file ${file}: not valid JSON: ${(err as Error).message}`);
  }
  return parseAgentConfig(value, file, flags);
}

/** Parses the flags after `sider agent`. */
export function parseAgentFlags(argv: string[]): AgentFlags {
  const args = parseFlags(argv, {
    boolean: ['enable-script-checks', 'help', 'h'],
    string: ['config-file', 'log-level', 'log-format', 'server'],
    array: ['server'],
  });
  const unknown = unknownFlag(args, ['config-file', 'server', 'enable-script-checks', 'log-level', 'log-format', 'help', 'h']);
  if (unknown !== undefined) throw configError(`unknown flag -${unknown} (see sider agent -help)`);
  if (args._.length > 0) throw configError(`unexpected argument ${JSON.stringify(String(args._[0]))}`);
  const help = args.help === true || args.h === true;
  const single = (name: string): string | undefined => {
    const v = args[name] as unknown;
    if (Array.isArray(v)) throw configError(`-${name} given more than once`);
    return v === undefined ? undefined : String(v);
  };
  const configFile = single('config-file') ?? '';
  if (configFile === '' && !help) throw configError('-config-file is required (see sider agent -help)');
  const logLevel = single('log-level') ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) throw configError(`-log-level: expected debug, info, warn or error, got ${JSON.stringify(logLevel)}`);
  const logFormat = single('log-format') ?? 'json';
  if (!['json', 'text'].includes(logFormat)) throw configError(`-log-format: expected json or text, got ${JSON.stringify(logFormat)}`);
  const servers = ((args.server as unknown[] | undefined) ?? []).flatMap((s) => String(s).split(',')).map((s) => s.trim()).filter((s) => s !== '');
  return {
    configFile,
    servers,
    enableScriptChecks: args['enable-script-checks'] === true,
    logLevel: logLevel as AgentFlags['logLevel'],
    logFormat: logFormat as AgentFlags['logFormat'],
    help,
  };
}
