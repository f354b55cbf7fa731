// Validation of PUT /v1/catalog/register bodies (Consul's CatalogRegistration): a registration that
// names its node (Node, Address), used by `sider agent` so its instances carry the agent's name.

import { SiderError } from '../raft/errors.ts';
import type { CheckSpec, InstanceSpec } from '../src/registry/model.ts';
import { checkShape, normalizeKeys, registerShape } from './normalize.ts';
import type { ObjectShape } from './normalize.ts';
import { badRequest, isPlainObject, optString, parseAddress, parseCheck, parseCheckList, parseId, parseNamespace, parseRegisterBody, typeName } from './register-parse.ts';
import type { RegisterParseOptions } from './register-parse.ts';

/** Node names (Consul's Node, `sider agent`'s node_name, server IDs): 1–128 of these characters. */
export const NODE_NAME = /^[A-Za-z0-9_.-]{1,128}$/;

/** Consul's HealthCheckDefinition; the `consul` npm client spells its durations `…Duration`. */
const definitionShape: ObjectShape = {
  kind: 'object',
  fields: checkShape.fields,
  aliases: {
    ...checkShape.aliases,
    IntervalDuration: 'Interval',
    TimeoutDuration: 'Timeout',
    DeregisterCriticalServiceAfterDuration: 'DeregisterCriticalServiceAfter',
  },
};

/** Consul's HealthCheck: the probe's fields in `Definition` (Sider also takes them beside it). */
const catalogCheckShape: ObjectShape = {
  kind: 'object',
  fields: { ...checkShape.fields, Node: 'value', ServiceName: 'value', ServiceTags: 'value', Type: 'value', Namespace: 'value', Definition: definitionShape },
  aliases: checkShape.aliases ?? {},
};

/** Consul's NodeService names the service `Service`; Sider's register body calls it `Name`. */
const catalogServiceShape: ObjectShape = { kind: 'object', fields: registerShape.fields, aliases: { Service: 'Name' } };

const catalogRegisterShape: ObjectShape = {
  kind: 'object',
  fields: {
    ID: 'value',
    Node: 'value',
    Address: 'value',
    Datacenter: 'value',
    TaggedAddresses: 'value',
    NodeMeta: 'userMap',
    Service: catalogServiceShape,
    Check: catalogCheckShape,
    Checks: { kind: 'array', of: catalogCheckShape },
    SkipNodeUpdate: 'value',
    Namespace: 'value',
    Partition: 'value',
    Locality: 'value',
  },
};

export interface ParsedCatalogRegistration {
  /** The body's (or its Service's) Namespace when given, reconciled with ?ns by the caller. */
  namespace: string | undefined;
  /** The body's Datacenter, '' when not given (the caller refuses another one). */
  datacenter: string;
  node: string;
  /** '' when not given. */
  nodeAddress: string;
  instance: InstanceSpec;
  checks: CheckSpec[];
}

function fail(field: string, message: string): never {
  throw badRequest(`${field}: ${message}`);
}

function given(v: unknown): boolean {
  return v !== undefined && v !== null && v !== '';
}

/** Runs a parser whose messages start with a field path relative to `prefix`, and adds it. */
function under<T>(prefix: string, fn: () => T, rename: (field: string) => string): T {
  try {
    return fn();
  } catch (err) {
    if (!(err instanceof SiderError) || err.code !== 'SIDER_BAD_REQUEST') throw err;
    const m = /^([^:\s]+): ([\s\S]*)$/.exec(err.message);
    if (!m) throw badRequest(`${prefix}: ${err.message}`);
    throw badRequest(`${prefix}.${rename(m[1]!)}: ${m[2]!}`);
  }
}

/**
 * The check at `field` (a normalized HealthCheck): its Definition's fields moved beside the others,
 * so the agent-register check parser validates it, and error messages keep saying `Definition.X`.
 */
function parseCatalogCheck(
  raw: unknown,
  field: string,
  ctx: { node: string; serviceName: string; serviceId: string; opts: RegisterParseOptions },
): CheckSpec {
  if (!isPlainObject(raw)) fail(field, `must be an object, not ${typeName(raw)}`);
  if (given(raw.Node) && raw.Node !== ctx.node) fail(`${field}.Node`, `must be the registration's Node ${JSON.stringify(ctx.node)}, not ${JSON.stringify(raw.Node)}`);
  if (!given(raw.ServiceID)) fail(`${field}.ServiceID`, `required: Sider has no node-level checks, give the Service's ID ${JSON.stringify(ctx.serviceId)}`);
  const serviceId = parseId(raw.ServiceID, `${field}.ServiceID`);
  if (serviceId !== ctx.serviceId) fail(`${field}.ServiceID`, `must be the registered Service's ID ${JSON.stringify(ctx.serviceId)}, not ${JSON.stringify(serviceId)}`);
  const flat: Record<string, unknown> = { ...raw };
  const fromDefinition = new Set<string>();
  if (given(raw.Definition)) {
    if (!isPlainObject(raw.Definition)) fail(`${field}.Definition`, `must be an object, not ${typeName(raw.Definition)}`);
    for (const [k, v] of Object.entries(raw.Definition)) {
      if (k === 'ServiceID' || k === 'CheckID' || k === 'Name' || k === 'Status' || k === 'Notes' || k === 'Output') continue;
      if (given(flat[k]) && given(v)) fail(`${field}.Definition.${k}`, `also given as ${field}.${k}: give it once`);
      if (given(v) || !given(flat[k])) {
        flat[k] = v;
        fromDefinition.add(k);
      }
    }
  }
  try {
    return parseCheck(flat, field, ctx.serviceName, ctx.opts);
  } catch (err) {
    if (!(err instanceof SiderError) || err.code !== 'SIDER_BAD_REQUEST' || !err.message.startsWith(`${field}.`)) throw err;
    const rest = err.message.slice(field.length + 1);
    const key = /^[A-Za-z0-9]+/.exec(rest)?.[0] ?? '';
    throw fromDefinition.has(key) ? badRequest(`${field}.Definition.${rest}`) : err;
  }
}

/**
 * Validates and normalizes the body of PUT /v1/catalog/register (any key case): `Node` (required,
 * node_name's rules), the node's `Address` (optional), one `Service`, and its checks in `Check` /
 * `Checks` (each with `ServiceID` = the Service's ID: Sider has no node-level checks). NodeMeta,
 * TaggedAddresses, ID and SkipNodeUpdate are accepted and ignored (Sider keeps no node records).
 * Every problem is a SIDER_BAD_REQUEST whose message starts with the field's path.
 */
export function parseCatalogRegisterBody(input: unknown, opts: RegisterParseOptions): ParsedCatalogRegistration {
  if (!isPlainObject(input)) throw badRequest(`request body must be a JSON object, not ${typeName(input)}`);
  const body = normalizeKeys(input, catalogRegisterShape) as Record<string, unknown>;

  if (!given(body.Node)) fail('Node', 'required: the name of the node the service runs on');
  if (typeof body.Node !== 'string' || !NODE_NAME.test(body.Node)) {
    fail('Node', `invalid node name ${JSON.stringify(body.Node)}: 1-128 letters, digits, "_", "." or "-"`);
  }
  const node = body.Node;
  const nodeAddress = parseAddress(body.Address, 'Address', true);
  const datacenter = optString(body.Datacenter, 'Datacenter', 64);

  if (!given(body.Service)) fail('Service', 'required: Sider registers service instances, not bare nodes');
  if (!isPlainObject(body.Service)) fail('Service', `must be an object, not ${typeName(body.Service)}`);
  const svc = body.Service;
  if (given(svc.Check) || given(svc.Checks)) fail(`Service.${given(svc.Check) ? 'Check' : 'Checks'}`, 'give the checks beside the Service, in Check or Checks');
  if (!given(svc.Name)) fail('Service.Service', 'required');
  const parsed = under('Service', () => parseRegisterBody(svc, opts), (f) => (f === 'Name' ? 'Service' : f));
  const { instance } = parsed;

  let namespace = parsed.namespace;
  if (given(body.Namespace)) {
    const top = parseNamespace(body.Namespace, 'Namespace');
    if (namespace !== undefined && namespace !== top) fail('Namespace', `${JSON.stringify(top)} but Service.Namespace is ${JSON.stringify(namespace)}`);
    namespace = top;
  }

  const ctx = { node, serviceName: instance.Service, serviceId: instance.ID, opts };
  const checks = parseCheckList(body, instance.ID, (value, field) => parseCatalogCheck(value, field, ctx));
  return { namespace, datacenter, node, nodeAddress, instance, checks };
}

const catalogDeregisterShape: ObjectShape = {
  kind: 'object',
  fields: { Node: 'value', Datacenter: 'value', ServiceID: 'value', CheckID: 'value', Namespace: 'value', Partition: 'value' },
};

export interface ParsedCatalogDeregistration {
  namespace: string | undefined;
  datacenter: string;
  node: string;
  /** '' when not given. */
  serviceId: string;
  /** '' when not given. */
  checkId: string;
}

/**
 * Validates the body of PUT /v1/catalog/deregister (Consul's CatalogDeregister, any key case):
 * `Node` (required), and at most one of `ServiceID` (that instance of the node) and `CheckID` (that
 * check of the node); with neither, every instance of the node. Errors name the field.
 */
export function parseCatalogDeregisterBody(input: unknown): ParsedCatalogDeregistration {
  if (!isPlainObject(input)) throw badRequest(`request body must be a JSON object, not ${typeName(input)}`);
  const body = normalizeKeys(input, catalogDeregisterShape) as Record<string, unknown>;
  if (!given(body.Node)) fail('Node', 'required: the node whose service or check is removed');
  if (typeof body.Node !== 'string' || !NODE_NAME.test(body.Node)) {
    fail('Node', `invalid node name ${JSON.stringify(body.Node)}: 1-128 letters, digits, "_", "." or "-"`);
  }
  const serviceId = given(body.ServiceID) ? parseId(body.ServiceID, 'ServiceID') : '';
  const checkId = given(body.CheckID) ? parseId(body.CheckID, 'CheckID') : '';
  if (serviceId !== '' && checkId !== '') fail('CheckID', 'give ServiceID or CheckID, not both');
  return {
    namespace: given(body.Namespace) ? parseNamespace(body.Namespace, 'Namespace') : undefined,
    datacenter: optString(body.Datacenter, 'Datacenter', 64),
    node: body.Node,
    serviceId,
    checkId,
  };
}
