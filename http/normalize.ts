// Key normalization of request bodies: PascalCase, camelCase, snake_case or any case in, Consul's
// canonical PascalCase out, driven by a schema so that user-data maps (Meta, Header) keep their keys.

import { SiderError } from '../raft/errors.ts';

/** How a field's value is treated. */
export type FieldShape =
  /** A scalar or anything this layer does not look into: left as is. */
  | 'value'
  /** A map whose keys are user data (Meta, Header): keys and values left as is. */
  | 'userMap'
  | ObjectShape
  | { kind: 'array'; of: FieldShape }
  /** A map with user-data keys whose values are objects (TaggedAddresses): values normalized. */
  | { kind: 'map'; of: FieldShape };

export interface ObjectShape {
  kind: 'object';
  /** Canonical field name → shape. */
  fields: Record<string, FieldShape>;
  /** Other accepted spellings → canonical field name (e.g. ScriptArgs → Args). */
  aliases?: Record<string, string>;
}

/** The folded form two spellings of one field share: lower case, without '_' and '-'. */
export function foldKey(key: string): string {
  return key.replace(/[_-]/g, '').toLowerCase();
}

interface CompiledShape {
  byFold: Map<string, string>;
  /** Keys as clients spelled them → canonical name (or the key itself), at most RAW_CACHE_LIMIT. */
  byRaw: Map<string, string>;
  /** The shape's fields (a Map: a record looked up by every key of every body was slower). */
  fields: Map<string, FieldShape>;
}

/** Spellings remembered per shape: the few each client library uses, not every key anyone sends. */
const RAW_CACHE_LIMIT = 256;
/** Longer keys are folded each time (no field name comes near it). */
const RAW_CACHE_KEY_LENGTH = 64;

const compiled = new WeakMap<ObjectShape, CompiledShape>();

function compile(shape: ObjectShape): CompiledShape {
  let c = compiled.get(shape);
  if (c) return c;
  const byFold = new Map<string, string>();
  for (const name of Object.keys(shape.fields)) byFold.set(foldKey(name), name);
  for (const [alias, name] of Object.entries(shape.aliases ?? {})) byFold.set(foldKey(alias), name);
  c = { byFold, byRaw: new Map(), fields: new Map(Object.entries(shape.fields)) };
  compiled.set(shape, c);
  return c;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function normalizeValue(value: unknown, shape: FieldShape, path: string): unknown {
  if (shape === 'value' || shape === 'userMap') return value;
  if (shape.kind === 'object') return normalizeKeys(value, shape, path);
  if (shape.kind === 'array') {
    if (!Array.isArray(value)) return value;
    return value.map((v, i) => normalizeValue(v, shape.of, `${path}[${i}]`));
  }
  if (!isPlainObject(value)) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalizeValue(v, shape.of, `${path}.${k}`)]));
}

/** The canonical name of a key as a client spelled it (remembered, up to RAW_CACHE_LIMIT spellings). */
function canonicalName(c: CompiledShape, key: string): string {
  let name = c.byRaw.get(key);
  if (name === undefined) {
    name = c.byFold.get(foldKey(key)) ?? key;
    // Short keys only: a client's made-up keys can be as long as its body.
    if (c.byRaw.size < RAW_CACHE_LIMIT && key.length <= RAW_CACHE_KEY_LENGTH) c.byRaw.set(key, name);
  }
  return name;
}

/**
 * Whether `value` is already what normalizeValue would return for it: every key of every object
 * the shape looks into spelled canonically. Nothing is allocated, so the common request (from a
 * client that sends Consul's own spelling) is not copied.
 */
function isCanonical(value: unknown, shape: FieldShape): boolean {
  if (shape === 'value' || shape === 'userMap') return true;
  if (shape.kind === 'object') return isCanonicalObject(value, shape);
  if (shape.kind === 'array') {
    if (!Array.isArray(value)) return true;
    for (const v of value) if (!isCanonical(v, shape.of)) return false;
    return true;
  }
  if (!isPlainObject(value)) return true;
  for (const k in value) if (Object.hasOwn(value, k) && !isCanonical(value[k], shape.of)) return false;
  return true;
}

function isCanonicalObject(value: unknown, shape: ObjectShape): boolean {
  if (!isPlainObject(value)) return true;
  const c = compile(shape);
  for (const key of Object.keys(value)) {
    if (canonicalName(c, key) !== key) return false;
    const fieldShape = c.fields.get(key);
    if (fieldShape !== undefined && !isCanonical(value[key], fieldShape)) return false;
  }
  return true;
}

/**
 * Returns `input` with every known key spelled canonically, recursively per `shape`: `input` itself
 * when it already is, otherwise a copy (the input is never modified).
 * Unknown keys are kept as given (the parser ignores them). Anything that is not an object is
 * returned unchanged for the parser to reject. Two spellings of one field in the same object are
 * a SIDER_BAD_REQUEST naming both. `path` prefixes field names in messages ("Checks[1]").
 */
export function normalizeKeys(input: unknown, shape: ObjectShape, path = ''): unknown {
  if (!isPlainObject(input)) return input;
  // Keys spelled canonically throughout: the input is its own normal form. (Two spellings of one
  // field need a key that is not canonical, so none can be present.)
  if (isCanonicalObject(input, shape)) return input;
  const c = compile(shape);
  const seen = new Map<string, string>();
  const out: [string, unknown][] = [];
  const prefix = path === '' ? '' : `${path}.`;
  for (const [key, value] of Object.entries(input)) {
    const name = canonicalName(c, key);
    const earlier = seen.get(name);
    if (earlier !== undefined) {
      throw new SiderError(
        'SIDER_BAD_REQUEST',
        `${prefix}${name}: given more than once (as ${JSON.stringify(earlier)} and ${JSON.stringify(key)})`,
      );
    }
    seen.set(name, key);
    // A Map: a "__proto__" key finds no shape (a record would give Object.prototype).
    const fieldShape = c.fields.get(name);
    out.push([name, fieldShape === undefined ? value : normalizeValue(value, fieldShape, `${prefix}${name}`)]);
  }
  // fromEntries defines own properties: a "__proto__" key stays data, never a prototype.
  return Object.fromEntries(out);
}

export const checkShape: ObjectShape = {
  kind: 'object',
  fields: {
    CheckID: 'value',
    Name: 'value',
    Status: 'value',
    Notes: 'value',
    Output: 'value',
    Interval: 'value',
    Timeout: 'value',
    TTL: 'value',
    DeregisterCriticalServiceAfter: 'value',
    SuccessBeforePassing: 'value',
    FailuresBeforeWarning: 'value',
    FailuresBeforeCritical: 'value',
    HTTP: 'value',
    Method: 'value',
    Header: 'userMap',
    Body: 'value',
    DisableRedirects: 'value',
    TCP: 'value',
    TCPUseTLS: 'value',
    UDP: 'value',
    GRPC: 'value',
    GRPCUseTLS: 'value',
    TLSServerName: 'value',
    TLSSkipVerify: 'value',
    Args: 'value',
    DockerContainerID: 'value',
    Shell: 'value',
    H2PING: 'value',
    H2PingUseTLS: 'value',
    AliasNode: 'value',
    AliasService: 'value',
    OSService: 'value',
    ServiceID: 'value',
  },
  // Consul's Go client sends Args as "ScriptArgs"; agent config files call the check ID "id".
  aliases: { ScriptArgs: 'Args', ID: 'CheckID' },
};

const taggedAddressShape: ObjectShape = { kind: 'object', fields: { Address: 'value', Port: 'value' } };

export const registerShape: ObjectShape = {
  kind: 'object',
  fields: {
    ID: 'value',
    Name: 'value',
    Tags: 'value',
    Address: 'value',
    Port: 'value',
    Meta: 'userMap',
    Weights: { kind: 'object', fields: { Passing: 'value', Warning: 'value' } },
    TaggedAddresses: { kind: 'map', of: taggedAddressShape },
    EnableTagOverride: 'value',
    Check: checkShape,
    Checks: { kind: 'array', of: checkShape },
    Namespace: 'value',
    Kind: 'value',
    Proxy: 'value',
    Connect: 'value',
    SocketPath: 'value',
    Partition: 'value',
    Locality: 'value',
  },
};

export const deregisterShape: ObjectShape = { kind: 'object', fields: { Namespace: 'value', Service: 'value', ID: 'value' } };
export const raftJoinShape: ObjectShape = { kind: 'object', fields: { ID: 'value', Addr: 'value' }, aliases: { Address: 'Addr' } };
export const raftRemoveShape: ObjectShape = { kind: 'object', fields: { ID: 'value' } };
