// Consul's JSON shapes, field for field with the types Consul's Go client decodes (CatalogService,
// ServiceEntry, AgentService, HealthCheck, AgentMember…), and the filter schemas of those shapes.

import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import type { Check, CheckType, Instance, ServiceEntry } from '../src/registry/model.ts';
import { formatDurationNs, parseDurationNs } from './duration.ts';
import type { FilterType } from './filter.ts';

/** What rendering needs to know beyond the registry's records. */
export interface RenderContext {
  datacenter: string;
  /** Address of a server that registered an instance (its Node), '' if unknown or not a server. */
  nodeAddress(node: string): string;
}

/** Consul node IDs are UUIDs: a stable one derived from the node name, the same on every server. */
const uuidCache = new Map<string, string>();

export function nodeUuid(node: string): string {
  let id = uuidCache.get(node);
  if (id !== undefined) return id;
  const h = createHash('sha256').update(`sider-node:${node}`).digest('hex');
  id = `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
  // Node names are few (servers and agents); bound the memo anyway.
  if (uuidCache.size >= 10_000) uuidCache.clear();
  uuidCache.set(node, id);
  return id;
}

/** A stored Go duration in Go's canonical form ("120000ms" → "2m0s"); '' when unset or invalid. */
function canonicalDuration(s: string): string {
  if (s === '') return '';
  try {
    return formatDurationNs(parseDurationNs(s));
  } catch {
    return '';
  }
}

/** Consul calls command checks "script". */
function consulCheckType(t: CheckType): string {
  return t === 'cmd' ? 'script' : t;
}

/** Node.TaggedAddresses: a map of strings (lan, wan and their per-family forms). */
function nodeTaggedAddresses(address: string): Record<string, string> {
  if (address === '') return {};
  const out: Record<string, string> = { lan: address, wan: address };
  const family = isIP(address);
  if (family === 4) {
    out.lan_ipv4 = address;
    out.wan_ipv4 = address;
  } else if (family === 6) {
    out.lan_ipv6 = address;
    out.wan_ipv6 = address;
  }
  return out;
}

/**
 * Node.Address: the node's own when its registration gave one (catalog register, `sider agent`);
 * otherwise the instance's address, then its server's (Consul clients read it as the host).
 */
function nodeAddressOf(inst: Instance, rc: RenderContext): string {
  if (inst.NodeAddress !== '') return inst.NodeAddress;
  return inst.Address !== '' ? inst.Address : rc.nodeAddress(inst.Node);
}

function taggedAddresses(inst: Instance): Record<string, { Address: string; Port: number }> {
  return Object.fromEntries(Object.entries(inst.TaggedAddresses).map(([k, v]) => [k, { Address: v.Address, Port: v.Port }]));
}

/** HealthCheckDefinition: only what is set, durations as Go strings (the Go client parses them). */
function checkDefinition(c: Check): Record<string, unknown> {
  const d: Record<string, unknown> = {};
  if (c.HTTP !== '') {
    d.HTTP = c.HTTP;
    if (c.Method !== '') d.Method = c.Method;
    if (Object.keys(c.Header).length > 0) d.Header = c.Header;
  }
  if (c.TLSSkipVerify) d.TLSSkipVerify = true;
  if (c.TCP !== '') d.TCP = c.TCP;
  if (c.GRPC !== '') d.GRPC = c.GRPC;
  if (c.GRPCUseTLS) d.GRPCUseTLS = true;
  const interval = canonicalDuration(c.Interval);
  if (interval !== '') d.Interval = interval;
  const timeout = canonicalDuration(c.Timeout);
  if (timeout !== '') d.Timeout = timeout;
  const dcsa = canonicalDuration(c.DeregisterCriticalServiceAfter);
  if (dcsa !== '') d.DeregisterCriticalServiceAfter = dcsa;
  return d;
}

/** api.HealthCheck. `serviceTags` are the instance's tags (Consul copies them into each check). */
export function renderCheck(c: Check, serviceTags: readonly string[]): Record<string, unknown> {
  return {
    Node: c.Node,
    CheckID: c.CheckID,
    Name: c.Name,
    Status: c.Status,
    Notes: c.Notes,
    Output: c.Output,
    ServiceID: c.ServiceID,
    ServiceName: c.ServiceName,
    ServiceTags: [...serviceTags],
    Type: consulCheckType(c.Type),
    Interval: canonicalDuration(c.Interval),
    Timeout: canonicalDuration(c.Timeout),
    ExposedPort: 0,
    Definition: checkDefinition(c),
    Namespace: c.Namespace,
    CreateIndex: c.CreateIndex,
    ModifyIndex: c.ModifyIndex,
  };
}

/** The node fields api.Node and api.CatalogService open with, in Consul's order. */
function nodeFields(inst: Instance, rc: RenderContext): Record<string, unknown> {
  const address = nodeAddressOf(inst, rc);
  return {
    ID: nodeUuid(inst.Node),
    Node: inst.Node,
    Address: address,
    Datacenter: rc.datacenter,
    TaggedAddresses: nodeTaggedAddresses(address),
  };
}

function weightsOf(inst: Instance): { Passing: number; Warning: number } {
  return { Passing: inst.Weights.Passing, Warning: inst.Weights.Warning };
}

/** api.Node for the node that registered an instance. */
function renderNode(inst: Instance, rc: RenderContext): Record<string, unknown> {
  return {
    ...nodeFields(inst, rc),
    Meta: {},
    CreateIndex: inst.CreateIndex,
    ModifyIndex: inst.ModifyIndex,
  };
}

/** api.AgentService as found in a health entry (with indexes). */
function renderEntryService(inst: Instance): Record<string, unknown> {
  return {
    ID: inst.ID,
    Service: inst.Service,
    Tags: [...inst.Tags],
    Address: inst.Address,
    TaggedAddresses: taggedAddresses(inst),
    Meta: { ...inst.Meta },
    Port: inst.Port,
    Weights: weightsOf(inst),
    EnableTagOverride: inst.EnableTagOverride,
    Namespace: inst.Namespace,
    CreateIndex: inst.CreateIndex,
    ModifyIndex: inst.ModifyIndex,
  };
}

/** One element of /v1/health/service/:name (api.ServiceEntry). */
export function renderHealthEntry(e: ServiceEntry, rc: RenderContext): Record<string, unknown> {
  return {
    Node: renderNode(e.instance, rc),
    Service: renderEntryService(e.instance),
    Checks: e.checks.map((c) => renderCheck(c, e.instance.Tags)),
  };
}

/** One element of /v1/catalog/service/:name (api.CatalogService). */
export function renderCatalogService(inst: Instance, rc: RenderContext): Record<string, unknown> {
  return {
    ...nodeFields(inst, rc),
    NodeMeta: {},
    ServiceKind: '',
    ServiceID: inst.ID,
    ServiceName: inst.Service,
    ServiceAddress: inst.Address,
    ServiceTaggedAddresses: taggedAddresses(inst),
    ServiceTags: [...inst.Tags],
    ServiceMeta: { ...inst.Meta },
    ServicePort: inst.Port,
    ServiceWeights: weightsOf(inst),
    ServiceEnableTagOverride: inst.EnableTagOverride,
    Namespace: inst.Namespace,
    CreateIndex: inst.CreateIndex,
    ModifyIndex: inst.ModifyIndex,
  };
}

/** A value of /v1/agent/services and /v1/agent/service/:id (api.AgentService). */
export function renderAgentService(inst: Instance, rc: RenderContext): Record<string, unknown> {
  return {
    ID: inst.ID,
    Service: inst.Service,
    Tags: [...inst.Tags],
    Meta: { ...inst.Meta },
    Port: inst.Port,
    Address: inst.Address,
    TaggedAddresses: taggedAddresses(inst),
    Weights: weightsOf(inst),
    EnableTagOverride: inst.EnableTagOverride,
    Datacenter: rc.datacenter,
    Namespace: inst.Namespace,
    CreateIndex: inst.CreateIndex,
    ModifyIndex: inst.ModifyIndex,
  };
}

/**
 * /v1/agent/services: ID → service. IDs are unique per service, not per namespace, so a second
 * instance with an ID already listed is keyed `<service>/<id>` ('/' never occurs in an ID).
 */
export function renderAgentServices(instances: readonly Instance[], rc: RenderContext): Record<string, unknown> {
  const out: [string, unknown][] = [];
  const used = new Set<string>();
  for (const inst of instances) {
    const key = used.has(inst.ID) ? `${inst.Service}/${inst.ID}` : inst.ID;
    used.add(key);
    out.push([key, renderAgentService(inst, rc)]);
  }
  return Object.fromEntries(out);
}

/** /v1/catalog/services: name → tags. */
export function renderCatalogServices(services: readonly (readonly [string, readonly string[]])[]): Record<string, string[]> {
  return Object.fromEntries(services.map(([name, tags]) => [name, [...tags]]));
}

/** api.AgentMember. Port is a uint16 and every tag a string in Consul's Go client. */
export interface MemberInfo {
  name: string;
  /** host:port the member is reached on for cluster traffic (its Raft address). */
  raftAddr: string;
  httpAddr: string;
  voter: boolean;
  leader: boolean;
}

export function splitHostPort(addr: string): { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(addr);
  if (!m) return { host: addr, port: 0 };
  const port = Number(m[2]);
  return { host: m[1]!, port: port <= 65535 ? port : 0 };
}

export function renderMember(m: MemberInfo, datacenter: string, version: string): Record<string, unknown> {
  const { host, port } = splitHostPort(m.raftAddr);
  return {
    Name: m.name,
    Addr: host,
    Port: port,
    Tags: {
      role: 'consul',
      dc: datacenter,
      id: nodeUuid(m.name),
      port: String(port),
      build: version,
      vsn: '2',
      vsn_min: '2',
      vsn_max: '3',
      raft_vsn: '3',
      voter: m.voter ? 'true' : 'false',
      leader: m.leader ? 'true' : 'false',
      http: m.httpAddr,
    },
    // Serf's "alive".
    Status: 1,
    ProtocolMin: 1,
    ProtocolMax: 5,
    ProtocolCur: 2,
    DelegateMin: 2,
    DelegateMax: 5,
    DelegateCur: 4,
  };
}

// ---------------------------------------------------------------------------------------------
// Filter schemas: the selectable fields of each rendered shape.

const stringMap: FilterType = { map: 'string' };
const taggedAddressMap: FilterType = { map: { struct: { Address: 'string', Port: 'number' } } };
const weights: FilterType = { struct: { Passing: 'number', Warning: 'number' } };

const checkStruct = {
  Node: 'string',
  CheckID: 'string',
  Name: 'string',
  Status: 'string',
  Notes: 'string',
  Output: 'string',
  ServiceID: 'string',
  ServiceName: 'string',
  ServiceTags: { list: 'string' },
  Type: 'string',
  Interval: 'string',
  Timeout: 'string',
  Namespace: 'string',
  CreateIndex: 'number',
  ModifyIndex: 'number',
} satisfies Record<string, FilterType>;

export const CHECK_SCHEMA: FilterType = { struct: checkStruct };

const agentServiceStruct = {
  ID: 'string',
  Service: 'string',
  Tags: { list: 'string' },
  Address: 'string',
  TaggedAddresses: taggedAddressMap,
  Meta: stringMap,
  Port: 'number',
  Weights: weights,
  EnableTagOverride: 'bool',
  Namespace: 'string',
  CreateIndex: 'number',
  ModifyIndex: 'number',
} satisfies Record<string, FilterType>;

export const AGENT_SERVICE_SCHEMA: FilterType = { struct: { ...agentServiceStruct, Datacenter: 'string' } };

export const HEALTH_ENTRY_SCHEMA: FilterType = {
  struct: {
    Node: {
      struct: {
        ID: 'string',
        Node: 'string',
        Address: 'string',
        Datacenter: 'string',
        TaggedAddresses: stringMap,
        Meta: stringMap,
      },
    },
    Service: { struct: agentServiceStruct },
    Checks: { list: { struct: checkStruct } },
  },
};

export const CATALOG_SERVICE_SCHEMA: FilterType = {
  struct: {
    ID: 'string',
    Node: 'string',
    Address: 'string',
    Datacenter: 'string',
    TaggedAddresses: stringMap,
    NodeMeta: stringMap,
    ServiceID: 'string',
    ServiceName: 'string',
    ServiceAddress: 'string',
    ServiceTaggedAddresses: taggedAddressMap,
    ServiceTags: { list: 'string' },
    ServiceMeta: stringMap,
    ServicePort: 'number',
    ServiceWeights: weights,
    ServiceEnableTagOverride: 'bool',
    Namespace: 'string',
    CreateIndex: 'number',
    ModifyIndex: 'number',
  },
};
