// The wire form of registry commands inside Raft entries (JSON of one RegistryCommand), and the
// defensive parsers that turn untrusted JSON (entries, snapshots) back into typed records.

import { SiderError } from '../../raft/errors.ts';
import type {
  ApplyResult,
  Check,
  CheckSpec,
  CheckStatus,
  CheckType,
  Instance,
  InstanceSpec,
  RegistryCommand,
  ServerInfo,
  TaggedAddress,
  Weights,
} from './model.ts';

export type DecodeResult = { ok: true; command: RegistryCommand } | { ok: false; error: string };

const textDecoder = new TextDecoder('utf-8', { fatal: true });

/**
 * The format of the registry's entry data, which a server gives its Raft transport (dataVersion):
 * servers of different versions refuse each other's messages, so none is sent entries it cannot
 * read. 1: registrations in the compact form (before it, servers knew no data version and spoke an
 * older Raft message format, which this one refuses too). 2: snapshots (which InstallSnapshot
 * carries) in the compact form, SNAPSHOT_VERSION 2.
 */
export const REGISTRY_DATA_VERSION = 2;

/**
 * A command as entry data. Registrations, the bulk of the log, take the compact form (a JSON array
 * by position, see compactRegister): a third of the bytes of the object form, cheaper to stringify
 * and parse, and fewer log bytes also mean fewer snapshots (taken by log bytes). Every other command
 * is the JSON of its object. Servers that read only the object form must not receive compact
 * entries: see REGISTRY_DATA_VERSION.
 */
export function encodeCommand(cmd: RegistryCommand): Uint8Array {
  return Buffer.from(JSON.stringify(cmd.type === 'register' ? compactRegister(cmd) : cmd), 'utf8');
}

/** In JSON.stringify's output: the escape it writes for a lone surrogate (pairs are written as they are). */
const LONE_SURROGATE_ESCAPE = /\\ud[89a-f]/;

/**
 * encodeCommand, and the command decodeCommand will read back from those bytes when that is known
 * without decoding them: for a registration, its compact form read by the same reader that reads
 * it from JSON. The reader keeps only strings, booleans, finite numbers (-0 read as 0) and plain
 * arrays and objects of them (no Date, no toJSON), which JSON carries unchanged, so both reads give
 * the same command (a property test holds them equal). `decoded` is undefined for other commands,
 * for a registration holding a lone surrogate (see below) and for one the reader refuses
 * (decodeCommand then reports why, as before).
 */
export function encodeCommandKnown(cmd: RegistryCommand): { data: Uint8Array; decoded: RegistryCommand | undefined } {
  if (cmd.type !== 'register') return { data: encodeCommand(cmd), decoded: undefined };
  const compact = compactRegister(cmd);
  const json = JSON.stringify(compact);
  const data = Buffer.from(json, 'utf8');
  // A lone surrogate (JSON writes it as an escape, \ud800 – \udfff) is not taken as read: V8 13.6
  // (Node 24.21) parses a one-character key written that way as "\" once a "\" key has been
  // interned in the process, so what a follower reads may not be what this node holds. Such a
  // registration is decoded here too, as every node decodes it.
  if (LONE_SURROGATE_ESCAPE.test(json)) return { data, decoded: undefined };
  try {
    return { data, decoded: readCompactRegister(compact) };
  } catch (err) {
    if (err instanceof SiderError) return { data, decoded: undefined };
    throw err;
  }
}

/**
 * Decodes entry data, in either form. Never throws: the data was committed by a leader, so a bad
 * entry must be refused identically on every node, not crash them all.
 */
export function decodeCommand(data: Uint8Array): DecodeResult {
  let value: unknown;
  try {
    value = JSON.parse(textDecoder.decode(data));
  } catch {
    return { ok: false, error: 'command is not valid UTF-8 JSON' };
  }
  if (!Array.isArray(value)) return parseCommand(value);
  try {
    return { ok: true, command: readCompactRegister(value) };
  } catch (err) {
    if (err instanceof SiderError) return { ok: false, error: err.message };
    throw err;
  }
}

/** Validates an already-parsed value as a RegistryCommand; the result holds only known fields. */
export function parseCommand(value: unknown): DecodeResult {
  try {
    return { ok: true, command: readCommand(value) };
  } catch (err) {
    if (err instanceof SiderError) return { ok: false, error: err.message };
    throw err;
  }
}

/** The compact register form's first element (the form's name and version). */
const COMPACT_REGISTER = 'r1';

type RegisterCommand = Extract<RegistryCommand, { type: 'register' }>;

/**
 * `["r1", ns, node, nodeAddress | null, instance, checks, replaceExistingChecks, now]`, the instance
 * as `[Service, ID, Address, Port, Tags, Meta, Weights.Passing, Weights.Warning, TaggedAddresses,
 * EnableTagOverride]` and each check as its CheckSpec fields in declaration order (see
 * readCompactCheck). Only the fields the object form's reader keeps are written.
 */
function compactRegister(cmd: RegisterCommand): unknown[] {
  const i = cmd.instance;
  return [
    COMPACT_REGISTER,
    cmd.ns,
    cmd.node,
    cmd.nodeAddress ?? null,
    [i.Service, i.ID, i.Address, i.Port, i.Tags, i.Meta, i.Weights.Passing, i.Weights.Warning, i.TaggedAddresses, i.EnableTagOverride],
    cmd.checks.map(checkSpecValues),
    cmd.replaceExistingChecks,
    cmd.now,
  ];
}

function tuple(v: unknown, path: string, length: number): unknown[] {
  if (!Array.isArray(v) || v.length !== length || !plain(v)) bad(path, `must be an array of ${length} elements`);
  return v;
}

/** The compact form back to the command the object form gives: the same checks, field names in errors. */
function readCompactRegister(v: unknown[]): RegisterCommand {
  if (v[0] !== COMPACT_REGISTER) bad('command', `an array command must start with "${COMPACT_REGISTER}"`);
  const a = tuple(v, 'command', 8);
  const checks = a[5];
  if (!Array.isArray(checks)) bad('checks', 'must be an array');
  return {
    type: 'register',
    ns: nonEmpty(a[1], 'ns'),
    node: str(a[2], 'node'),
    ...(a[3] === null ? {} : { nodeAddress: str(a[3], 'nodeAddress') }),
    instance: instanceSpecFrom(tuple(a[4], 'instance', 10), 'instance'),
    checks: checks.map((c, n) => readCompactCheck(c, `checks[${n}]`)),
    replaceExistingChecks: bool(a[6], 'replaceExistingChecks'),
    now: num(a[7], 'now'),
  };
}

function readCompactCheck(v: unknown, path: string): CheckSpec {
  return checkSpecFrom(tuple(v, path, CHECK_SPEC_FIELDS.length), path);
}

// --- readers: each returns a fresh object with a fixed key order, or throws SIDER_BAD_REQUEST
// naming the offending field. Fresh objects matter: unknown keys never reach the state, and
// Object.fromEntries keeps a `__proto__` key an ordinary own property.

/** `path.field`, or `path` alone: built only when a message or a nested path needs it. */
function fieldPath(path: string, field?: string): string {
  return field === undefined ? path : `${path}.${field}`;
}

function bad(path: string, what: string, field?: string): never {
  throw new SiderError('SIDER_BAD_REQUEST', `${fieldPath(path, field)}: ${what}`);
}

// The readers below take the path of the value they read and, optionally, its field name within
// it: `path.field` is then built only for an error message, not for every field of every entry
// applied.

/**
 * Whether JSON carries `v` as it is: an ordinary object or array, without a toJSON of its own. Parsed
 * JSON always is; the check matters for commands read in memory (encodeCommandKnown), where a
 * Date or a class instance would read differently from its JSON.
 */
function plain(v: object): boolean {
  const proto: unknown = Object.getPrototypeOf(v);
  return (proto === Object.prototype || proto === Array.prototype || proto === null) && typeof (v as { toJSON?: unknown }).toJSON !== 'function';
}

function obj(v: unknown, path: string, field?: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || !plain(v)) bad(path, 'must be an object', field);
  return v as Record<string, unknown>;
}

function str(v: unknown, path: string, field?: string): string {
  if (typeof v !== 'string') bad(path, 'must be a string', field);
  return v;
}

function nonEmpty(v: unknown, path: string, field?: string): string {
  const s = str(v, path, field);
  if (s === '') bad(path, 'must not be empty', field);
  return s;
}

function bool(v: unknown, path: string, field?: string): boolean {
  if (typeof v !== 'boolean') bad(path, 'must be a boolean', field);
  return v;
}

function num(v: unknown, path: string, field?: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) bad(path, 'must be a finite number', field);
  // -0 is read as 0, as JSON writes it: a value read before and after encoding is the same.
  return v === 0 ? 0 : v;
}

function nat(v: unknown, path: string, max = Number.MAX_SAFE_INTEGER, field?: string): number {
  const n = num(v, path, field);
  if (!Number.isInteger(n) || n < 0 || n > max) bad(path, `must be an integer in [0, ${max}]`, field);
  return n;
}

// Shared, frozen values for what most stored records hold (no tags, no meta, no header, default
// weights): one object instead of one per record means fewer objects for the garbage collector to
// copy. Records are never mutated once stored (the snapshot cache relies on that too); frozen, a
// mutation would throw (modules are strict) instead of changing every record at once.
const NO_STRINGS: string[] = Object.freeze([]) as unknown as string[];
const NO_ENTRIES: Record<string, never> = Object.freeze({});
const DEFAULT_WEIGHTS: Weights = Object.freeze({ Passing: 1, Warning: 1 });

function strArray(v: unknown, path: string, field?: string): string[] {
  if (!Array.isArray(v) || !plain(v)) bad(path, 'must be an array', field);
  if (v.length === 0) return NO_STRINGS;
  for (let i = 0; i < v.length; i++) {
    if (typeof v[i] !== 'string') bad(`${fieldPath(path, field)}[${i}]`, 'must be a string');
  }
  return v.slice() as string[];
}

function record<T>(v: unknown, path: string, item: (x: unknown, p: string) => T, field?: string): Record<string, T> {
  const entries = Object.entries(obj(v, path, field));
  if (entries.length === 0) return NO_ENTRIES;
  const at = fieldPath(path, field);
  return Object.fromEntries(entries.map(([k, x]) => [k, item(x, `${at}.${k}`)]));
}

function weights(passing: unknown, warning: unknown, path: string): Weights {
  const p = nat(passing, path, undefined, 'Weights.Passing');
  const w = nat(warning, path, undefined, 'Weights.Warning');
  return p === 1 && w === 1 ? DEFAULT_WEIGHTS : { Passing: p, Warning: w };
}

const checkStatuses: readonly string[] = ['passing', 'warning', 'critical'];
const checkTypes: readonly string[] = ['ttl', 'http', 'tcp', 'grpc', 'cmd', 'maintenance'];

export function readCheckStatus(v: unknown, path: string, field?: string): CheckStatus {
  if (typeof v !== 'string' || !checkStatuses.includes(v)) bad(path, 'must be passing, warning or critical', field);
  return v as CheckStatus;
}

function readCheckType(v: unknown, path: string, field?: string): CheckType {
  if (typeof v !== 'string' || !checkTypes.includes(v)) bad(path, 'must be one of ttl, http, tcp, grpc, cmd, maintenance', field);
  return v as CheckType;
}

function readTaggedAddress(v: unknown, path: string): TaggedAddress {
  const o = obj(v, path);
  return { Address: str(o.Address, `${path}.Address`), Port: nat(o.Port, `${path}.Port`, 65535) };
}

export function readInstanceSpec(v: unknown, path: string): InstanceSpec {
  const o = obj(v, path);
  const weights = obj(o.Weights, `${path}.Weights`);
  return instanceSpecFrom([o.Service, o.ID, o.Address, o.Port, o.Tags, o.Meta, weights.Passing, weights.Warning, o.TaggedAddresses, o.EnableTagOverride], path);
}

/**
 * An InstanceSpec from `[Service, ID, Address, Port, Tags, Meta, Weights.Passing, Weights.Warning,
 * TaggedAddresses, EnableTagOverride]` (the compact register form's instance).
 */
function instanceSpecFrom(f: readonly unknown[], path: string): InstanceSpec {
  return {
    Service: nonEmpty(f[0], path, 'Service'),
    // '' is tolerated here and defaulted to the service name when applied.
    ID: str(f[1], path, 'ID'),
    Address: str(f[2], path, 'Address'),
    Port: nat(f[3], path, 65535, 'Port'),
    Tags: strArray(f[4], path, 'Tags'),
    Meta: record(f[5], path, str, 'Meta'),
    Weights: weights(f[6], f[7], path),
    TaggedAddresses: record(f[8], path, readTaggedAddress, 'TaggedAddresses'),
    EnableTagOverride: bool(f[9], path, 'EnableTagOverride'),
  };
}

export function readCheckSpec(v: unknown, path: string): CheckSpec {
  const o = obj(v, path);
  return checkSpecFrom(CHECK_SPEC_FIELDS.map((name) => o[name]), path);
}

/** CheckSpec's fields in the order of the compact register form. */
const CHECK_SPEC_FIELDS = [
  'CheckID',
  'Name',
  'Type',
  'Status',
  'Notes',
  'Output',
  'Interval',
  'Timeout',
  'TTL',
  'DeregisterCriticalServiceAfter',
  'SuccessBeforePassing',
  'FailuresBeforeCritical',
  'HTTP',
  'Method',
  'Header',
  'TCP',
  'GRPC',
  'GRPCUseTLS',
  'TLSSkipVerify',
  'Args',
] as const satisfies readonly (keyof CheckSpec)[];

/**
 * A check's CheckSpec fields in CHECK_SPEC_FIELDS order, as both compact forms (register entries,
 * snapshots) write them: spelt out, which is faster than a map over the names, so the order lives
 * here and in CHECK_SPEC_FIELDS (the readers'); the round-trip properties hold the two together.
 */
function checkSpecValues(c: CheckSpec): unknown[] {
  return [
    c.CheckID, c.Name, c.Type, c.Status, c.Notes, c.Output, c.Interval, c.Timeout, c.TTL, c.DeregisterCriticalServiceAfter,
    c.SuccessBeforePassing, c.FailuresBeforeCritical, c.HTTP, c.Method, c.Header, c.TCP, c.GRPC, c.GRPCUseTLS, c.TLSSkipVerify, c.Args,
  ];
}

/** Each CheckSpec field's position in the compact form, from CHECK_SPEC_FIELDS. */
const CHECK_FIELD_AT = Object.fromEntries(CHECK_SPEC_FIELDS.map((name, i) => [name, i])) as Record<(typeof CHECK_SPEC_FIELDS)[number], number>;

/** A CheckSpec from its fields in CHECK_SPEC_FIELDS order (the compact register form's check). */
function checkSpecFrom(f: readonly unknown[], path: string): CheckSpec {
  const at = CHECK_FIELD_AT;
  const status = f[at.Status];
  return {
    CheckID: nonEmpty(f[at.CheckID], path, 'CheckID'),
    Name: str(f[at.Name], path, 'Name'),
    Type: readCheckType(f[at.Type], path, 'Type'),
    Status: status === '' ? '' : readCheckStatus(status, path, 'Status'),
    Notes: str(f[at.Notes], path, 'Notes'),
    Output: str(f[at.Output], path, 'Output'),
    Interval: str(f[at.Interval], path, 'Interval'),
    Timeout: str(f[at.Timeout], path, 'Timeout'),
    TTL: str(f[at.TTL], path, 'TTL'),
    DeregisterCriticalServiceAfter: str(f[at.DeregisterCriticalServiceAfter], path, 'DeregisterCriticalServiceAfter'),
    SuccessBeforePassing: nat(f[at.SuccessBeforePassing], path, undefined, 'SuccessBeforePassing'),
    FailuresBeforeCritical: nat(f[at.FailuresBeforeCritical], path, undefined, 'FailuresBeforeCritical'),
    HTTP: str(f[at.HTTP], path, 'HTTP'),
    Method: str(f[at.Method], path, 'Method'),
    Header: record(f[at.Header], path, strArray, 'Header'),
    TCP: str(f[at.TCP], path, 'TCP'),
    GRPC: str(f[at.GRPC], path, 'GRPC'),
    GRPCUseTLS: bool(f[at.GRPCUseTLS], path, 'GRPCUseTLS'),
    TLSSkipVerify: bool(f[at.TLSSkipVerify], path, 'TLSSkipVerify'),
    Args: strArray(f[at.Args], path, 'Args'),
  };
}

export function readServerInfo(v: unknown, path: string): ServerInfo {
  const o = obj(v, path);
  return {
    ID: nonEmpty(o.ID, `${path}.ID`),
    HTTPAddr: str(o.HTTPAddr, `${path}.HTTPAddr`),
    RaftAddr: str(o.RaftAddr, `${path}.RaftAddr`),
  };
}

/** A stored instance as written in a snapshot (same key order as the state machine builds). */
export function readInstance(v: unknown, path: string): Instance {
  const o = obj(v, path);
  // Absent from snapshots written before instances recorded their node's address.
  return instanceFrom(readInstanceSpec(o, path), path, o.Namespace, o.Node, o.NodeAddress === undefined ? '' : o.NodeAddress, o.CreateIndex, o.ModifyIndex);
}

/** A stored instance from its spec and the fields a stored one adds (either snapshot form). */
function instanceFrom(spec: InstanceSpec, path: string, ns: unknown, node: unknown, nodeAddress: unknown, createIndex: unknown, modifyIndex: unknown): Instance {
  return {
    ...spec,
    ID: nonEmpty(spec.ID, path, 'ID'),
    Namespace: nonEmpty(ns, path, 'Namespace'),
    Node: str(node, path, 'Node'),
    NodeAddress: str(nodeAddress, path, 'NodeAddress'),
    CreateIndex: nat(createIndex, path, undefined, 'CreateIndex'),
    ModifyIndex: nat(modifyIndex, path, undefined, 'ModifyIndex'),
  };
}

/** A stored check as written in a snapshot (same key order as the state machine builds). */
export function readCheck(v: unknown, path: string): Check {
  const o = obj(v, path);
  return checkFrom(readCheckSpec(o, path), path, o);
}

/** A stored check from its spec and the fields a stored one adds or settles (either snapshot form). */
function checkFrom(spec: CheckSpec, path: string, o: Record<string, unknown>): Check {
  return {
    ...spec,
    Status: readCheckStatus(o.Status, path, 'Status'),
    Namespace: nonEmpty(o.Namespace, path, 'Namespace'),
    ServiceID: nonEmpty(o.ServiceID, path, 'ServiceID'),
    ServiceName: nonEmpty(o.ServiceName, path, 'ServiceName'),
    Node: str(o.Node, path, 'Node'),
    CreateIndex: nat(o.CreateIndex, path, undefined, 'CreateIndex'),
    ModifyIndex: nat(o.ModifyIndex, path, undefined, 'ModifyIndex'),
  };
}

/** A stored apply result (the dedup table in a snapshot). */
export function readApplyResult(v: unknown, path: string): ApplyResult {
  const o = obj(v, path);
  if (o.ok === true) return { ok: true, changed: bool(o.changed, `${path}.changed`) };
  if (o.ok === false) return { ok: false, error: str(o.error, `${path}.error`), status: nat(o.status, `${path}.status`, 999) };
  return bad(`${path}.ok`, 'must be a boolean');
}

function readCommand(v: unknown): RegistryCommand {
  const o = obj(v, 'command');
  switch (o.type) {
    case 'register': {
      if (!Array.isArray(o.checks)) bad('checks', 'must be an array');
      return {
        type: 'register',
        ns: nonEmpty(o.ns, 'ns'),
        node: str(o.node, 'node'),
        // Absent from entries written before registrations could name their node's address.
        ...(o.nodeAddress === undefined ? {} : { nodeAddress: str(o.nodeAddress, 'nodeAddress') }),
        instance: readInstanceSpec(o.instance, 'instance'),
        checks: o.checks.map((c, i) => readCheckSpec(c, `checks[${i}]`)),
        replaceExistingChecks: bool(o.replaceExistingChecks, 'replaceExistingChecks'),
        now: num(o.now, 'now'),
      };
    }
    case 'deregister':
      return {
        type: 'deregister',
        ns: nonEmpty(o.ns, 'ns'),
        service: nonEmpty(o.service, 'service'),
        id: nonEmpty(o.id, 'id'),
        now: num(o.now, 'now'),
      };
    case 'checkStatus':
      return {
        type: 'checkStatus',
        ns: nonEmpty(o.ns, 'ns'),
        checkId: nonEmpty(o.checkId, 'checkId'),
        status: readCheckStatus(o.status, 'status'),
        output: str(o.output, 'output'),
        now: num(o.now, 'now'),
      };
    case 'server':
      return { type: 'server', server: readServerInfo(o.server, 'server'), now: num(o.now, 'now') };
    case 'addCheck':
      return {
        type: 'addCheck',
        ns: nonEmpty(o.ns, 'ns'),
        service: nonEmpty(o.service, 'service'),
        id: nonEmpty(o.id, 'id'),
        check: readCheckSpec(o.check, 'check'),
        now: num(o.now, 'now'),
      };
    case 'removeCheck':
      return { type: 'removeCheck', ns: nonEmpty(o.ns, 'ns'), checkId: nonEmpty(o.checkId, 'checkId'), now: num(o.now, 'now') };
    case 'ttlCheckpoint':
      return {
        type: 'ttlCheckpoint',
        entries: arr(o.entries, 'entries', (e, p): [string, string, number, number] => {
          if (!Array.isArray(e) || e.length !== 4) bad(p, 'must be [ns, checkId, renewedAtMs, renewIntervalMs]');
          return [nonEmpty(e[0], `${p}[0]`), nonEmpty(e[1], `${p}[1]`), num(e[2], `${p}[2]`), num(e[3], `${p}[3]`)];
        }),
        now: num(o.now, 'now'),
      };
    case 'restore':
      return { type: 'restore', snapshot: readSnapshotData(o.snapshot, 'snapshot'), now: num(o.now, 'now') };
    default:
      return bad('type', 'must be register, deregister, checkStatus, addCheck, removeCheck, ttlCheckpoint, server or restore');
  }
}

// --- snapshots: the registry's whole state as one JSON document (written by snapshot(), read by
// restore(); also what `/v1/snapshot` carries, so it is parsed as untrusted input).

export const SNAPSHOT_FORMAT = 'sider-registry';
/**
 * The object form: each instance as `{instance, checks}` (SnapshotInstance). Snapshots written
 * before 2026-12-07 are in it, and so is SnapshotData, what a snapshot is read into and what a
 * restore command carries in the log.
 */
export const SNAPSHOT_VERSION_OBJECTS = 1;
/**
 * The compact form, what snapshots are written in: each instance with its checks as one array
 * (compactSnapshotInstance), a third of the bytes of the object form and cheaper to write and read.
 * Both forms are read.
 */
export const SNAPSHOT_VERSION = 2;

/**
 * The registry's snapshotLogRatio (raft/node.ts): a snapshot once the entries applied since the
 * last one hold 2.5 times its bytes. A registration's entry (266 bytes for the benchmark's) is about
 * as large as its instance in a compact snapshot (306 with its check times); in the object form
 * the instance took 874, so ratio 1 let about 3.3 entries per instance pile up between snapshots.
 * 2.5 keeps the log held in memory, kept on disk and replayed at start within what it was (about
 * 2.9 entries per instance), while each snapshot costs about half of what it did.
 */
export const REGISTRY_SNAPSHOT_LOG_RATIO = 2.5;

export interface SnapshotInstance {
  instance: Instance;
  /** Sorted by CheckID. */
  checks: Check[];
}

export interface SnapshotService {
  name: string;
  index: number;
  /** Sorted by ID. */
  instances: SnapshotInstance[];
}

export interface SnapshotNamespace {
  name: string;
  index: number;
  catalogIndex: number;
  /** Sorted by name; only services with at least one instance. */
  services: SnapshotService[];
  /** Deleted services and the index of their deletion, oldest first (the eviction order). */
  tombstones: [string, number][];
  /**
   * [checkId, renewedAt, statusSince, renewIntervalMs] of the namespace's checks, sorted by check
   * ID. Absent in snapshots written before health checking: every time is then 0.
   */
  checkTimes?: [string, number, number, number][];
}

/** A snapshot as read (the object form, whichever form it was written in). */
export interface SnapshotData {
  format: typeof SNAPSHOT_FORMAT;
  version: typeof SNAPSHOT_VERSION_OBJECTS;
  /** The global index. */
  index: number;
  /** Sorted by name. */
  namespaces: SnapshotNamespace[];
  /** Sorted by ID. */
  servers: ServerInfo[];
  /** The request-ID dedup table, oldest first (the eviction order). */
  dedup: [string, ApplyResult][];
}

export function encodeSnapshot(data: SnapshotData): Uint8Array {
  return Buffer.from(JSON.stringify(data), 'utf8');
}

/**
 * An instance with its checks in the compact snapshot form (version 2):
 * `[[ID, Address, Port, Tags, Meta, Weights.Passing, Weights.Warning, TaggedAddresses,
 * EnableTagOverride, Node, NodeAddress, CreateIndex, ModifyIndex], checks]`, each check as its
 * CheckSpec fields in the compact register form's order followed by `Node, CreateIndex,
 * ModifyIndex`. What the snapshot holds elsewhere is left out: the namespace (both records'
 * Namespace), the service (Service, each check's ServiceName) and the instance's ID (each check's
 * ServiceID); the reader refuses records filed elsewhere, so these were always equal.
 */
export function compactSnapshotInstance(instance: Instance, checks: readonly Check[]): unknown[] {
  const i = instance;
  const compactChecks: unknown[][] = [];
  for (const c of checks) {
    const values = checkSpecValues(c);
    values.push(c.Node, c.CreateIndex, c.ModifyIndex);
    compactChecks.push(values);
  }
  return [
    [i.ID, i.Address, i.Port, i.Tags, i.Meta, i.Weights.Passing, i.Weights.Warning, i.TaggedAddresses, i.EnableTagOverride, i.Node, i.NodeAddress, i.CreateIndex, i.ModifyIndex],
    compactChecks,
  ];
}

/** The compact form's check: CheckSpec fields, then these. */
const COMPACT_CHECK_LENGTH = CHECK_SPEC_FIELDS.length + 3;

/** compactSnapshotInstance's element back to the object form, filed under `ns` and `service`. */
function readCompactSnapshotInstance(v: unknown, path: string, ns: string, service: string): SnapshotInstance {
  const [rawInstance, rawChecks] = tuple(v, path, 2);
  const at = `${path}[0]`;
  const f = tuple(rawInstance, at, 13);
  const instance = instanceFrom(instanceSpecFrom([service, ...f.slice(0, 9)], at), at, ns, f[9], f[10], f[11], f[12]);
  const checks = arr(rawChecks, `${path}[1]`, (c, p) => {
    const g = tuple(c, p, COMPACT_CHECK_LENGTH);
    const n = CHECK_SPEC_FIELDS.length;
    return checkFrom(checkSpecFrom(g, p), p, { Status: g[CHECK_FIELD_AT.Status], Namespace: ns, ServiceID: instance.ID, ServiceName: service, Node: g[n], CreateIndex: g[n + 1], ModifyIndex: g[n + 2] });
  });
  return { instance, checks };
}

/** Parses snapshot bytes; throws SIDER_BAD_REQUEST naming the offending field. */
export function decodeSnapshot(bytes: Uint8Array): SnapshotData {
  let value: unknown;
  try {
    value = JSON.parse(textDecoder.decode(bytes));
  } catch (err) {
    throw new SiderError('SIDER_BAD_REQUEST', 'snapshot: not valid UTF-8 JSON', { cause: err });
  }
  return readSnapshotData(value, 'snapshot');
}

/** Validates an already-parsed snapshot document; throws SIDER_BAD_REQUEST naming the field under `path`. */
export function readSnapshotData(value: unknown, path: string): SnapshotData {
  const o = obj(value, path);
  if (o.format !== SNAPSHOT_FORMAT) bad(`${path}.format`, `must be "${SNAPSHOT_FORMAT}"`);
  if (o.version !== SNAPSHOT_VERSION && o.version !== SNAPSHOT_VERSION_OBJECTS) bad(`${path}.version`, `must be ${SNAPSHOT_VERSION_OBJECTS} or ${SNAPSHOT_VERSION}`);
  const compact = o.version === SNAPSHOT_VERSION;
  return {
    format: SNAPSHOT_FORMAT,
    version: SNAPSHOT_VERSION_OBJECTS,
    index: nat(o.index, `${path}.index`),
    namespaces: arr(o.namespaces, `${path}.namespaces`, (ns, p) => readSnapshotNamespace(ns, p, compact)),
    servers: arr(o.servers, `${path}.servers`, readServerInfo),
    dedup: arr(o.dedup, `${path}.dedup`, (v, p) => {
      const [rid, result] = pair(v, p);
      return [nonEmpty(rid, `${p}[0]`), readApplyResult(result, `${p}[1]`)];
    }),
  };
}

function arr<T>(v: unknown, path: string, item: (x: unknown, p: string) => T): T[] {
  if (!Array.isArray(v)) bad(path, 'must be an array');
  return v.map((x, i) => item(x, `${path}[${i}]`));
}

function pair(v: unknown, path: string): [unknown, unknown] {
  if (!Array.isArray(v) || v.length !== 2) bad(path, 'must be a pair');
  return [v[0], v[1]];
}

function readSnapshotNamespace(v: unknown, path: string, compact: boolean): SnapshotNamespace {
  const o = obj(v, path);
  const name = nonEmpty(o.name, `${path}.name`);
  return {
    name,
    index: nat(o.index, `${path}.index`),
    catalogIndex: nat(o.catalogIndex, `${path}.catalogIndex`),
    services: arr(o.services, `${path}.services`, (s, p) => {
      const so = obj(s, p);
      const service = nonEmpty(so.name, `${p}.name`);
      return {
        name: service,
        index: nat(so.index, `${p}.index`),
        instances: arr(so.instances, `${p}.instances`, (x, q) => {
          if (compact) return readCompactSnapshotInstance(x, q, name, service);
          const xo = obj(x, q);
          return { instance: readInstance(xo.instance, `${q}.instance`), checks: arr(xo.checks, `${q}.checks`, readCheck) };
        }),
      };
    }),
    tombstones: arr(o.tombstones, `${path}.tombstones`, (t, p) => {
      const [name, index] = pair(t, p);
      return [nonEmpty(name, `${p}[0]`), nat(index, `${p}[1]`)];
    }),
    ...(o.checkTimes === undefined
      ? {}
      : {
          checkTimes: arr(o.checkTimes, `${path}.checkTimes`, (t, p): [string, number, number, number] => {
            if (!Array.isArray(t) || t.length !== 4) bad(p, 'must be [checkId, renewedAt, statusSince, renewIntervalMs]');
            return [nonEmpty(t[0], `${p}[0]`), num(t[1], `${p}[1]`), num(t[2], `${p}[2]`), num(t[3], `${p}[3]`)];
          }),
        }),
  };
}
