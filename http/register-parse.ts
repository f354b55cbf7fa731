// Validation of untrusted request bodies and names: a register body becomes an InstanceSpec and its
// CheckSpecs (Consul's rules and defaults), deregister and Raft join/remove bodies, and a request's
// namespace and request ID.

import { BlockList, isIP } from 'node:net';
import { SiderError } from '../raft/errors.ts';
import { MAINTENANCE_CHECK_PREFIX } from '../src/registry/health.ts';
import type { CheckSpec, CheckStatus, CheckType, InstanceSpec, TaggedAddress, Weights } from '../src/registry/model.ts';
import { formatDurationNs, parseDurationNs } from './duration.ts';
import { checkShape, deregisterShape, normalizeKeys, raftJoinShape, raftRemoveShape, registerShape } from './normalize.ts';
import type { ObjectShape } from './normalize.ts';

/** Bounds on what one registration may carry (CONVENTIONS: a limit on every body). */
export const LIMITS = {
  idLength: 128,
  tags: 64,
  tagLength: 255,
  metaPairs: 64,
  metaKeyLength: 128,
  metaValueLength: 512,
  taggedAddresses: 16,
  checks: 32,
  checkNameLength: 256,
  notesLength: 1024,
  outputLength: 4096,
  urlLength: 2048,
  headers: 32,
  headerValues: 16,
  headerValueLength: 1024,
  args: 64,
  argLength: 1024,
  /** Weights go into DNS SRV records (16 bits). */
  weight: 65535,
  threshold: 1000,
} as const;

const NS_PER_SECOND = 1_000_000_000n;
const NS_PER_HOUR = 3600n * NS_PER_SECOND;
/** Consul raises shorter check intervals to 1 s and shorter DeregisterCriticalServiceAfter to 1 min. */
const MIN_INTERVAL_NS = NS_PER_SECOND;
const MIN_DEREGISTER_NS = 60n * NS_PER_SECOND;
/** Interval, Timeout and TTL stay within a day (the checker's timers), Deregister… within a week. */
const MAX_CHECK_DURATION_NS = 24n * NS_PER_HOUR;
const MAX_DEREGISTER_NS = 168n * NS_PER_HOUR;

export function badRequest(message: string): SiderError {
  return new SiderError('SIDER_BAD_REQUEST', message);
}

function fail(field: string, message: string): never {
  throw badRequest(`${field}: ${message}`);
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/**
 * A duration as Consul's JSON carries it — a Go duration string ("10s") or whole nanoseconds — in
 * nanoseconds; anything else goes to `reject` with the field and the reason.
 */
export function durationValueNs(v: unknown, field: string, reject: (field: string, message: string) => never): bigint {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) reject(field, `invalid duration ${v}: give a string like "10s" or whole nanoseconds`);
    return BigInt(v);
  }
  if (typeof v !== 'string') reject(field, `must be a duration string like "10s", not ${typeName(v)}`);
  const known = durationsNs.get(v);
  if (known !== undefined) return known;
  let ns: bigint;
  try {
    ns = parseDurationNs(v);
  } catch (err) {
    return reject(field, (err as Error).message);
  }
  if (v.length <= DURATION_KEPT_LENGTH) {
    if (durationsNs.size >= DURATIONS_KEPT) durationsNs.clear();
    durationsNs.set(v, ns);
  }
  return ns;
}

/**
 * Durations already parsed, by text: registrations repeat a few TTLs and intervals, and parsing one
 * (BigInt arithmetic) cost about as much as the rest of a check's fields. Only valid ones are kept,
 * and only short ones (Go accepts "0h0h…" of any length); emptied when full.
 */
const durationsNs = new Map<string, bigint>();
const DURATIONS_KEPT = 1024;
const DURATION_KEPT_LENGTH = 32;

// null counts as absent everywhere: Consul's Go client sends `"Check": null, "Checks": null`.
export function optString(v: unknown, field: string, maxLength: number): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') fail(field, `must be a string, not ${typeName(v)}`);
  if (v.length > maxLength) fail(field, `longer than ${maxLength} characters`);
  return v;
}

export function optBool(v: unknown, field: string): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') fail(field, `must be true or false, not ${typeName(v)}`);
  return v;
}

export function optInt(v: unknown, field: string, min: number, max: number, dflt: number): number {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v)) fail(field, `must be an integer, not ${typeof v === 'number' ? v : typeName(v)}`);
  if (v < min || v > max) fail(field, `must be between ${min} and ${max}, not ${v}`);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Names

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Namespace names are DNS labels in lower case (they appear in `<svc>.<ns>.sider`): 1–63 of
 * a–z, 0–9 and '-', not starting or ending with '-'. Upper case is refused rather than folded, so
 * that one namespace has one spelling everywhere.
 */
export function parseNamespace(v: unknown, field = 'namespace'): string {
  if (typeof v !== 'string') fail(field, `must be a string, not ${typeName(v)}`);
  if (!LABEL.test(v)) {
    fail(field, `invalid namespace ${JSON.stringify(v)}: use 1-63 lower-case letters, digits and "-", starting and ending with a letter or digit`);
  }
  return v;
}

/**
 * Service names are DNS labels: 1–63 letters, digits and '-', not starting or ending with '-'.
 * They are case-insensitive like DNS (and Consul's catalog): stored and looked up in lower case.
 */
export function parseServiceName(v: unknown, field = 'Name'): string {
  if (typeof v !== 'string') fail(field, `must be a string, not ${typeName(v)}`);
  const lower = v.toLowerCase();
  if (!LABEL.test(lower)) {
    fail(field, `invalid service name ${JSON.stringify(v)}: use 1-63 letters, digits and "-", starting and ending with a letter or digit`);
  }
  return lower;
}

/**
 * The namespace of a request: `?ns=`, the X-Sider-Namespace header ('' when absent) and a body's
 * Namespace, each optional; given more than once they must agree.
 */
export function pickNamespace(fromQuery: string | undefined, fromHeader: string, fromBody: string | undefined, dflt: string): string {
  const given: [string, string][] = [];
  if (fromQuery !== undefined && fromQuery !== '') given.push(['?ns', parseNamespace(fromQuery, 'ns')]);
  if (fromHeader !== '') given.push(['X-Sider-Namespace', parseNamespace(fromHeader, 'X-Sider-Namespace')]);
  if (fromBody !== undefined) given.push(['Namespace', fromBody]);
  const first = given[0];
  if (!first) return dflt;
  for (const [where, ns] of given) {
    if (ns !== first[1]) throw badRequest(`namespace given as ${JSON.stringify(first[1])} by ${first[0]} but ${JSON.stringify(ns)} by ${where}`);
  }
  return first[1];
}

/**
 * A write's request ID: the client's X-Sider-Request-Id (a retried write is applied once), or ''
 * when it sent none. No ID is made up here: one no client knows cannot come again, so on the
 * leader it would only fill the dedup table; the registry gives a forwarded write its own
 * (RaftRegistry.write), since the forwarder's retries do repeat it.
 */
export function parseRequestId(header: string): string {
  if (header === '') return '';
  if (header.length > 128 || !/^[\x21-\x7e]+$/.test(header)) throw badRequest('X-Sider-Request-Id: 1-128 printable ASCII characters');
  return header;
}

// IDs travel in URL paths: no '/', '?', '#', whitespace or control characters. Case is kept.
const ID_CHARS = /^[^\s/?#\p{Cc}]+$/u;

/** Service and check IDs: 1–128 characters, none of '/', '?', '#', whitespace or controls. */
export function parseId(v: unknown, field: string): string {
  if (typeof v !== 'string') fail(field, `must be a string, not ${typeName(v)}`);
  if (v.length === 0) fail(field, 'must not be empty');
  if (v.length > LIMITS.idLength) fail(field, `longer than ${LIMITS.idLength} characters`);
  if (!ID_CHARS.test(v)) fail(field, `invalid ID ${JSON.stringify(v)}: no "/", "?", "#", whitespace or control characters`);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Addresses

/** 0.0.0.0 and `::`, in any spelling (an IPv4-mapped ::ffff:0.0.0.0 too). */
const unspecified = new BlockList();
unspecified.addAddress('0.0.0.0', 'ipv4');
unspecified.addAddress('::', 'ipv6');

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

/** An IP literal (not 0.0.0.0 or ::, which name no host) or a host name. '' only when allowed. */
export function parseAddress(v: unknown, field: string, allowEmpty: boolean): string {
  const s = optString(v, field, 253);
  if (s === '') {
    if (allowEmpty) return '';
    fail(field, 'must not be empty');
  }
  const family = isIP(s);
  if (family !== 0) {
    // isIP takes IPv4 only as four decimal numbers without leading zeros: 0.0.0.0 has one spelling.
    if (family === 4 ? s === '0.0.0.0' : unspecified.check(s, 'ipv6')) {
      fail(field, `${JSON.stringify(s)} is the unspecified address, which no client can reach; give the instance's own address`);
    }
    return s;
  }
  if (!HOSTNAME.test(s)) fail(field, `invalid address ${JSON.stringify(s)}: give an IP address or a host name`);
  return s;
}

/** host:port with port 1–65535 (IPv6 in brackets). */
export function parseHostPort(v: string, field: string): string {
  const m = /^(\[[^\]]+\]|[^:[\]]+):(\d{1,5})$/.exec(v);
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535) fail(field, `invalid address ${JSON.stringify(v)}: expected host:port`);
  const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
  if (m[1]!.startsWith('[') && isIP(host) !== 6) fail(field, `invalid address ${JSON.stringify(v)}: expected host:port`);
  if (!m[1]!.startsWith('[') && isIP(host) === 0 && !HOSTNAME.test(host)) fail(field, `invalid host in ${JSON.stringify(v)}`);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Durations

/**
 * A Go duration given as a string ("10s") or, like Consul, a number of nanoseconds. Returns the
 * string to store ('' when absent or zero).
 */
function optDuration(v: unknown, field: string, opts: { min?: bigint; max: bigint }): string {
  if (v === undefined || v === null || v === '') return '';
  const ns = durationValueNs(v, field, fail);
  if (ns < 0n) fail(field, `must not be negative, got ${JSON.stringify(v)}`);
  if (ns === 0n) return '';
  if (ns > opts.max) fail(field, `must be at most ${formatDurationNs(opts.max)}, got ${JSON.stringify(v)}`);
  if (opts.min !== undefined && ns < opts.min) return formatDurationNs(opts.min);
  return typeof v === 'string' ? v : formatDurationNs(ns);
}

// ---------------------------------------------------------------------------------------------
// Maps and lists

function parseTags(v: unknown, field: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) fail(field, `must be an array of strings, not ${typeName(v)}`);
  if (v.length > LIMITS.tags) fail(field, `more than ${LIMITS.tags} tags`);
  return v.map((t, i) => {
    if (typeof t !== 'string') fail(`${field}[${i}]`, `must be a string, not ${typeName(t)}`);
    if (t.length > LIMITS.tagLength) fail(`${field}[${i}]`, `longer than ${LIMITS.tagLength} characters`);
    return t;
  });
}

const META_KEY = /^[A-Za-z0-9_-]+$/;

function parseMeta(v: unknown, field: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (!isPlainObject(v)) fail(field, `must be an object of strings, not ${typeName(v)}`);
  const keys = Object.keys(v);
  if (keys.length > LIMITS.metaPairs) fail(field, `more than ${LIMITS.metaPairs} pairs`);
  // A fresh object, keys in the same order (Object.fromEntries' result, without its iterator
  // protocol, which cost more than the checks): "__proto__" is defined as an own data property.
  const out: Record<string, string> = {};
  for (const k of keys) {
    const val = v[k];
    if (k.length > LIMITS.metaKeyLength) fail(`${field}.${k.slice(0, 32)}…`, `key longer than ${LIMITS.metaKeyLength} characters`);
    if (!META_KEY.test(k)) fail(`${field}[${JSON.stringify(k)}]`, 'keys may contain only letters, digits, "_" and "-"');
    if (typeof val !== 'string') fail(`${field}.${k}`, `must be a string, not ${typeName(val)}`);
    if (val.length > LIMITS.metaValueLength) fail(`${field}.${k}`, `longer than ${LIMITS.metaValueLength} characters`);
    if (k === '__proto__') Object.defineProperty(out, k, { value: val, enumerable: true, writable: true, configurable: true });
    else out[k] = val;
  }
  return out;
}

function parseWeights(v: unknown): Weights {
  if (v === undefined || v === null) return { Passing: 1, Warning: 1 };
  if (!isPlainObject(v)) fail('Weights', `must be an object, not ${typeName(v)}`);
  return {
    Passing: optInt(v.Passing, 'Weights.Passing', 1, LIMITS.weight, 1),
    Warning: optInt(v.Warning, 'Weights.Warning', 0, LIMITS.weight, 1),
  };
}

const TAGGED_KEY = /^[A-Za-z0-9_-]{1,64}$/;

function parseTaggedAddresses(v: unknown): Record<string, TaggedAddress> {
  if (v === undefined || v === null) return {};
  if (!isPlainObject(v)) fail('TaggedAddresses', `must be an object, not ${typeName(v)}`);
  const entries = Object.entries(v);
  if (entries.length > LIMITS.taggedAddresses) fail('TaggedAddresses', `more than ${LIMITS.taggedAddresses} entries`);
  const out: [string, TaggedAddress][] = [];
  for (const [k, val] of entries) {
    const f = `TaggedAddresses.${k}`;
    if (!TAGGED_KEY.test(k)) fail(`TaggedAddresses[${JSON.stringify(k.slice(0, 64))}]`, 'keys are 1-64 letters, digits, "_" or "-"');
    if (!isPlainObject(val)) fail(f, `must be an object {Address, Port}, not ${typeName(val)}`);
    out.push([k, { Address: parseAddress(val.Address, `${f}.Address`, false), Port: optInt(val.Port, `${f}.Port`, 0, 65535, 0) }]);
  }
  return Object.fromEntries(out);
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function parseHeader(v: unknown, field: string): Record<string, string[]> {
  if (v === undefined || v === null) return {};
  if (!isPlainObject(v)) fail(field, `must be an object of string arrays, not ${typeName(v)}`);
  const entries = Object.entries(v);
  if (entries.length > LIMITS.headers) fail(field, `more than ${LIMITS.headers} headers`);
  const out: [string, string[]][] = [];
  for (const [name, raw] of entries) {
    const f = `${field}.${name}`;
    if (!HEADER_NAME.test(name) || name.length > 256) fail(`${field}[${JSON.stringify(name.slice(0, 64))}]`, 'invalid header name');
    // Consul wants arrays; a single string is taken as a one-element array.
    const values: unknown[] = typeof raw === 'string' ? [raw] : Array.isArray(raw) ? raw : fail(f, `must be an array of strings, not ${typeName(raw)}`);
    if (values.length > LIMITS.headerValues) fail(f, `more than ${LIMITS.headerValues} values`);
    out.push([
      name,
      values.map((hv, i) => {
        if (typeof hv !== 'string') fail(`${f}[${i}]`, `must be a string, not ${typeName(hv)}`);
        if (hv.length > LIMITS.headerValueLength) fail(`${f}[${i}]`, `longer than ${LIMITS.headerValueLength} characters`);
        if (/[\r\n\0]/.test(hv)) fail(`${f}[${i}]`, 'must not contain CR, LF or NUL');
        return hv;
      }),
    ]);
  }
  return Object.fromEntries(out);
}

// ---------------------------------------------------------------------------------------------
// Checks

const STATUSES: readonly string[] = ['passing', 'warning', 'critical'];
/** Consul check kinds Sider does not run. */
const UNSUPPORTED = ['DockerContainerID', 'H2PING', 'UDP', 'AliasService', 'AliasNode', 'OSService'] as const;
const UNSUPPORTED_KEYS: ReadonlySet<string> = new Set(UNSUPPORTED);

export interface RegisterParseOptions {
  /** Whether `Args` (script) checks may be registered over HTTP (DESIGN §5: off by default). */
  enableScriptChecks: boolean;
}

/** `field` is the check's path in the body ('Check', 'Checks[1]'), '' when the check is the whole body. */
export function parseCheck(raw: unknown, field: string, serviceName: string, opts: RegisterParseOptions): CheckSpec {
  const pre = field === '' ? '' : `${field}.`;
  if (!isPlainObject(raw)) fail(field || 'check', `must be an object, not ${typeName(raw)}`);
  // Looked up only when the check has such a key: reading six absent keys cost a quarter of a check.
  if (Object.keys(raw).some((k) => UNSUPPORTED_KEYS.has(k))) {
    for (const k of UNSUPPORTED) {
      if (raw[k] !== undefined && raw[k] !== null && raw[k] !== '') fail(`${pre}${k}`, `${k} checks are not supported`);
    }
  }
  const given: { name: string; type: CheckType }[] = [];
  const present = (v: unknown): boolean => v !== undefined && v !== null && v !== '' && !(Array.isArray(v) && v.length === 0);
  if (present(raw.TTL)) given.push({ name: 'TTL', type: 'ttl' });
  if (present(raw.HTTP)) given.push({ name: 'HTTP', type: 'http' });
  if (present(raw.TCP)) given.push({ name: 'TCP', type: 'tcp' });
  if (present(raw.GRPC)) given.push({ name: 'GRPC', type: 'grpc' });
  if (present(raw.Args)) given.push({ name: 'Args', type: 'cmd' });
  if (given.length === 0) fail(field || 'check', 'give one of TTL, HTTP, TCP, GRPC or Args');
  if (given.length > 1) fail(field || 'check', `give only one of TTL, HTTP, TCP, GRPC or Args, not ${given.map((g) => g.name).join(' and ')}`);
  const type = given[0]!.type;

  const status = raw.Status === undefined || raw.Status === null || raw.Status === '' ? '' : raw.Status;
  if (status !== '' && (typeof status !== 'string' || !STATUSES.includes(status))) {
    fail(`${pre}Status`, `must be "passing", "warning" or "critical", not ${JSON.stringify(status)}`);
  }

  const spec: CheckSpec = {
    CheckID: raw.CheckID === undefined || raw.CheckID === null || raw.CheckID === '' ? '' : parseId(raw.CheckID, `${pre}CheckID`),
    Name: optString(raw.Name, `${pre}Name`, LIMITS.checkNameLength) || `Service '${serviceName}' check`,
    Type: type,
    Status: status as CheckStatus | '',
    Notes: optString(raw.Notes, `${pre}Notes`, LIMITS.notesLength),
    Output: optString(raw.Output, `${pre}Output`, LIMITS.outputLength),
    Interval: optDuration(raw.Interval, `${pre}Interval`, { min: MIN_INTERVAL_NS, max: MAX_CHECK_DURATION_NS }),
    Timeout: optDuration(raw.Timeout, `${pre}Timeout`, { max: MAX_CHECK_DURATION_NS }),
    TTL: optDuration(raw.TTL, `${pre}TTL`, { max: MAX_CHECK_DURATION_NS }),
    DeregisterCriticalServiceAfter: optDuration(raw.DeregisterCriticalServiceAfter, `${pre}DeregisterCriticalServiceAfter`, {
      min: MIN_DEREGISTER_NS,
      max: MAX_DEREGISTER_NS,
    }),
    SuccessBeforePassing: optInt(raw.SuccessBeforePassing, `${pre}SuccessBeforePassing`, 0, LIMITS.threshold, 0),
    FailuresBeforeCritical: optInt(raw.FailuresBeforeCritical, `${pre}FailuresBeforeCritical`, 0, LIMITS.threshold, 0),
    HTTP: '',
    Method: '',
    Header: parseHeader(raw.Header, `${pre}Header`),
    TCP: '',
    GRPC: '',
    GRPCUseTLS: optBool(raw.GRPCUseTLS, `${pre}GRPCUseTLS`),
    TLSSkipVerify: optBool(raw.TLSSkipVerify, `${pre}TLSSkipVerify`),
    Args: [],
  };
  if (spec.CheckID.startsWith(MAINTENANCE_CHECK_PREFIX)) fail(`${pre}CheckID`, `the prefix ${JSON.stringify(MAINTENANCE_CHECK_PREFIX)} is reserved for maintenance mode`);

  switch (type) {
    case 'ttl':
      if (spec.TTL === '') fail(`${pre}TTL`, 'must be a positive duration');
      break;
    case 'http': {
      const url = optString(raw.HTTP, `${pre}HTTP`, LIMITS.urlLength);
      let parsed: URL | undefined;
      try {
        parsed = new URL(url);
      } catch {
        parsed = undefined;
      }
      if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) fail(`${pre}HTTP`, `invalid URL ${JSON.stringify(url)}: expected http:// or https://`);
      spec.HTTP = url;
      const method = optString(raw.Method, `${pre}Method`, 16);
      if (method !== '' && !/^[A-Za-z]+$/.test(method)) fail(`${pre}Method`, `invalid HTTP method ${JSON.stringify(method)}`);
      spec.Method = method.toUpperCase();
      break;
    }
    case 'tcp':
      spec.TCP = parseHostPort(optString(raw.TCP, `${pre}TCP`, 260), `${pre}TCP`);
      break;
    case 'grpc': {
      const target = optString(raw.GRPC, `${pre}GRPC`, 512);
      const slash = target.indexOf('/');
      parseHostPort(slash < 0 ? target : target.slice(0, slash), `${pre}GRPC`);
      spec.GRPC = target;
      break;
    }
    case 'cmd': {
      if (!opts.enableScriptChecks) {
        fail(`${pre}Args`, 'script checks are disabled on this server (they run only when it is started with -enable-script-checks)');
      }
      const args = raw.Args;
      if (!Array.isArray(args)) fail(`${pre}Args`, `must be an array of strings, not ${typeName(args)}`);
      if (args.length > LIMITS.args) fail(`${pre}Args`, `more than ${LIMITS.args} arguments`);
      spec.Args = args.map((a, i) => {
        if (typeof a !== 'string') fail(`${pre}Args[${i}]`, `must be a string, not ${typeName(a)}`);
        if (a.length > LIMITS.argLength) fail(`${pre}Args[${i}]`, `longer than ${LIMITS.argLength} characters`);
        return a;
      });
      break;
    }
  }
  if (type !== 'ttl' && spec.Interval === '') fail(`${pre}Interval`, `required for ${given[0]!.name} checks`);
  return spec;
}

// ---------------------------------------------------------------------------------------------
// Bodies

export interface ParsedRegistration {
  /** The body's Namespace, when it gave one (reconciled with ?ns and the header by the caller). */
  namespace: string | undefined;
  instance: InstanceSpec;
  checks: CheckSpec[];
}

function requireObject(body: unknown): Record<string, unknown> {
  if (!isPlainObject(body)) throw badRequest(`request body must be a JSON object, not ${typeName(body)}`);
  return body;
}

function optNamespace(v: unknown): string | undefined {
  return v === undefined || v === null || v === '' ? undefined : parseNamespace(v, 'Namespace');
}

/**
 * Validates and normalizes the body of PUT /v1/agent/service/register (any key case). Every
 * problem is a SIDER_BAD_REQUEST whose message starts with the field's path.
 */
export function parseRegisterBody(input: unknown, opts: RegisterParseOptions): ParsedRegistration {
  const body = requireObject(normalizeKeys(input, registerShape));
  if (body.Name === undefined || body.Name === null || body.Name === '') fail('Name', 'required');
  const name = parseServiceName(body.Name, 'Name');
  const id = body.ID === undefined || body.ID === null || body.ID === '' ? name : parseId(body.ID, 'ID');
  if (body.Kind !== undefined && body.Kind !== null && body.Kind !== '') fail('Kind', `service kind ${JSON.stringify(body.Kind)} is not supported`);

  const instance: InstanceSpec = {
    Service: name,
    ID: id,
    Address: parseAddress(body.Address, 'Address', true),
    Port: optInt(body.Port, 'Port', 0, 65535, 0),
    Tags: parseTags(body.Tags, 'Tags'),
    Meta: parseMeta(body.Meta, 'Meta'),
    Weights: parseWeights(body.Weights),
    TaggedAddresses: parseTaggedAddresses(body.TaggedAddresses),
    EnableTagOverride: optBool(body.EnableTagOverride, 'EnableTagOverride'),
  };

  const checks = parseCheckList(body, id, (value, field) => parseCheck(value, field, name, opts));
  return { namespace: optNamespace(body.Namespace), instance, checks };
}

/**
 * The `Check` and `Checks` of a registration body, each parsed by `parseOne`. Consul puts `Check`
 * first, then `Checks`, and numbers derived IDs over the combined list (DESIGN §2's names for
 * unnamed checks: `service:<id>`, or `service:<id>:<n>` when there are several). A check ID given
 * twice is a 400 naming the second.
 */
export function parseCheckList(body: Record<string, unknown>, serviceId: string, parseOne: (value: unknown, field: string) => CheckSpec): CheckSpec[] {
  const raw: { value: unknown; field: string }[] = [];
  if (body.Check !== undefined && body.Check !== null) raw.push({ value: body.Check, field: 'Check' });
  if (body.Checks !== undefined && body.Checks !== null) {
    if (!Array.isArray(body.Checks)) fail('Checks', `must be an array, not ${typeName(body.Checks)}`);
    body.Checks.forEach((value: unknown, i) => raw.push({ value, field: `Checks[${i}]` }));
  }
  if (raw.length > LIMITS.checks) fail('Checks', `more than ${LIMITS.checks} checks`);
  const checks: CheckSpec[] = [];
  const seen = new Set<string>();
  raw.forEach(({ value, field }, i) => {
    const check = parseOne(value, field);
    if (check.CheckID === '') check.CheckID = raw.length > 1 ? `service:${serviceId}:${i + 1}` : `service:${serviceId}`;
    if (seen.has(check.CheckID)) fail(`${field}.CheckID`, `${JSON.stringify(check.CheckID)} appears more than once`);
    seen.add(check.CheckID);
    checks.push(check);
  });
  return checks;
}

export interface ParsedDeregistration {
  namespace: string | undefined;
  /** '' when only the ID was given. */
  service: string;
  id: string;
}

/** The body of PUT /v1/agent/service/deregister: {Namespace?, Service?, ID?}, one of Service/ID. */
export function parseDeregisterBody(input: unknown): ParsedDeregistration {
  const body = requireObject(normalizeKeys(input, deregisterShape));
  const hasService = body.Service !== undefined && body.Service !== null && body.Service !== '';
  const hasId = body.ID !== undefined && body.ID !== null && body.ID !== '';
  if (!hasService && !hasId) fail('ID', 'give ID, Service, or both');
  const service = hasService ? parseServiceName(body.Service, 'Service') : '';
  return { namespace: optNamespace(body.Namespace), service, id: hasId ? parseId(body.ID, 'ID') : service };
}

const SERVER_ID = /^[A-Za-z0-9_.-]{1,128}$/;

function parseServerId(v: unknown): string {
  if (v === undefined || v === null || v === '') fail('ID', 'required');
  if (typeof v !== 'string' || !SERVER_ID.test(v)) fail('ID', `invalid server ID ${JSON.stringify(v)}: 1-128 letters, digits, "_", "." or "-"`);
  return v;
}

/** The body of /v1/raft/join: {ID, Addr} (the new server's Raft address host:port). */
export function parseRaftJoinBody(input: unknown): { id: string; addr: string } {
  const body = requireObject(normalizeKeys(input, raftJoinShape));
  const id = parseServerId(body.ID);
  const addr = optString(body.Addr, 'Addr', 260);
  if (addr === '') fail('Addr', 'required');
  return { id, addr: parseHostPort(addr, 'Addr') };
}

/** The body of /v1/raft/remove: {ID}. */
export function parseRaftRemoveBody(input: unknown): { id: string } {
  const body = requireObject(normalizeKeys(input, raftRemoveShape));
  return { id: parseServerId(body.ID) };
}

const checkRegisterShape: ObjectShape = { kind: 'object', fields: { ...checkShape.fields, Namespace: 'value' }, aliases: checkShape.aliases ?? {} };

export interface ParsedCheckRegistration {
  namespace: string | undefined;
  /** The instance the check belongs to (Sider has no node-level checks). */
  serviceId: string;
  check: CheckSpec;
}

/**
 * The body of PUT /v1/agent/check/register (Consul's AgentCheckRegistration, any key case): Name
 * and ServiceID required, the check ID defaults to the Name (as in Consul), and the check itself is
 * validated exactly as in a service registration (one of TTL, HTTP, TCP, GRPC or Args…).
 */
export function parseCheckRegistration(input: unknown, opts: RegisterParseOptions): ParsedCheckRegistration {
  const body = requireObject(normalizeKeys(input, checkRegisterShape));
  if (body.Name === undefined || body.Name === null || body.Name === '') fail('Name', 'required');
  if (body.ServiceID === undefined || body.ServiceID === null || body.ServiceID === '') {
    fail('ServiceID', 'required: Sider has no node-level checks, give the ID of the service instance the check belongs to');
  }
  const serviceId = parseId(body.ServiceID, 'ServiceID');
  const check = parseCheck(body, '', serviceId, opts);
  if (check.CheckID === '') {
    // Consul uses the Name as the ID when none is given; it must then be a valid ID.
    check.CheckID = parseId(check.Name, 'Name (the check ID when ID is not given)');
    if (check.CheckID.startsWith(MAINTENANCE_CHECK_PREFIX)) fail('Name', `the prefix ${JSON.stringify(MAINTENANCE_CHECK_PREFIX)} is reserved for maintenance mode`);
  }
  return { namespace: optNamespace(body.Namespace), serviceId, check };
}
