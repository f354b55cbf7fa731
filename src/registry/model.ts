// The registry's data model (DESIGN §2), the commands that change it through Raft, and the read
// interface every front end (HTTP, DNS, metrics) uses. Field names follow Consul's JSON.

import type { SnapshotData } from './command-codec.ts';

export type CheckStatus = 'passing' | 'warning' | 'critical';
/** `maintenance` is the check maintenance mode adds (`_service_maintenance:<id>`); never registered by clients. */
export type CheckType = 'ttl' | 'http' | 'tcp' | 'grpc' | 'cmd' | 'maintenance';
/** Aggregated health of an instance: worst wins, maintenance > critical > warning > passing. */
export type Health = 'passing' | 'warning' | 'critical' | 'maintenance';

export interface Weights {
  Passing: number;
  Warning: number;
}

export interface TaggedAddress {
  Address: string;
  Port: number;
}

/** What a registration says about an instance (validated and normalized by the HTTP layer). */
export interface InstanceSpec {
  Service: string;
  /** Defaults to the service name. */
  ID: string;
  Address: string;
  Port: number;
  Tags: string[];
  Meta: Record<string, string>;
  Weights: Weights;
  TaggedAddresses: Record<string, TaggedAddress>;
  EnableTagOverride: boolean;
}

/** A stored instance. Identity is Namespace/Service/ID. */
export interface Instance extends InstanceSpec {
  Namespace: string;
  /** Name of the agent or server that registered it (Consul's Node). */
  Node: string;
  /** The node's address as its registration gave it (Consul's Node.Address); '' = not given. */
  NodeAddress: string;
  CreateIndex: number;
  ModifyIndex: number;
}

/** What a registration says about a check (validated and normalized by the HTTP layer). */
export interface CheckSpec {
  /** Already derived when the registration gave none: `service:<id>` or `service:<id>:<n>`. */
  CheckID: string;
  Name: string;
  Type: CheckType;
  /** '' = not given: a new check starts critical; a re-registered one keeps its status. */
  Status: CheckStatus | '';
  Notes: string;
  Output: string;
  /** Go durations as given ('10s'), '' when unset. */
  Interval: string;
  Timeout: string;
  TTL: string;
  DeregisterCriticalServiceAfter: string;
  SuccessBeforePassing: number;
  FailuresBeforeCritical: number;
  /** Probe definitions (used by the health checker, issue #4). */
  HTTP: string;
  Method: string;
  Header: Record<string, string[]>;
  TCP: string;
  GRPC: string;
  GRPCUseTLS: boolean;
  TLSSkipVerify: boolean;
  Args: string[];
}

export interface Check extends Omit<CheckSpec, 'Status'> {
  Namespace: string;
  Status: CheckStatus;
  ServiceID: string;
  ServiceName: string;
  Node: string;
  CreateIndex: number;
  ModifyIndex: number;
}

/** A Sider server, as recorded in the replicated state (used to forward writes to the leader). */
export interface ServerInfo {
  ID: string;
  /** HTTP API address host:port that other servers can reach. */
  HTTPAddr: string;
  RaftAddr: string;
}

/**
 * The commands proposed through Raft. `now` is the leader's clock (ms) stamped at proposal time:
 * apply() never reads a clock. Data carried in an entry is JSON of one command (a registration in
 * the compact array form of command-codec.ts).
 */
export type RegistryCommand =
  | {
      type: 'register';
      ns: string;
      node: string;
      /** Consul's catalog register `Address` (the node's); absent or '' = not given. */
      nodeAddress?: string;
      instance: InstanceSpec;
      checks: CheckSpec[];
      /** Consul's ?replace-existing-checks: drop the instance's checks not in `checks`. */
      replaceExistingChecks: boolean;
      now: number;
    }
  | { type: 'deregister'; ns: string; service: string; id: string; now: number }
  | { type: 'checkStatus'; ns: string; checkId: string; status: CheckStatus; output: string; now: number }
  /** Upserts one check on an existing instance (PUT /v1/agent/check/register, maintenance mode). */
  | { type: 'addCheck'; ns: string; service: string; id: string; check: CheckSpec; now: number }
  | { type: 'removeCheck'; ns: string; checkId: string; now: number }
  /**
   * The leader's last TTL renewal times and the interval it saw between a check's renewals, so that
   * a new leader knows them after a failover (like etcd's lease checkpoints). Moves no index and
   * wakes no watcher.
   */
  | { type: 'ttlCheckpoint'; entries: [ns: string, checkId: string, renewedAtMs: number, renewIntervalMs: number][]; now: number }
  | { type: 'server'; server: ServerInfo; now: number }
  /**
   * Replaces every namespace with the snapshot's (`PUT /v1/snapshot`). Every registry index becomes
   * the entry's own index, so no index a client saw goes backwards; servers and the request-ID
   * table are this cluster's and are kept; replicated check times restart at `now`.
   */
  | { type: 'restore'; snapshot: SnapshotData; now: number };

/**
 * Replicated times of a check, stamped from the leader's clock in the commands (kept out of the
 * API's JSON): when its TTL was last known renewed (registration, addCheck, a status or output
 * change, a checkpoint) and since when it has had its current status (DeregisterCriticalServiceAfter).
 */
export interface CheckTimes {
  renewedAt: number;
  statusSince: number;
  /** The client's renewal interval as the leader last checkpointed it; 0 = unknown. */
  renewIntervalMs: number;
}

/** The key of a check in CheckChanges (and in the leader's TTL table): namespace NUL CheckID. */
export function checkChangeKey(ns: string, checkId: string): string {
  return `${ns}\u0000${checkId}`;
}

/**
 * Checks added, changed (record or replicated times) or removed since the previous take, by
 * checkChangeKey; `all` = too many to list, or the whole state was replaced: look at every check.
 */
export interface CheckChanges {
  all: boolean;
  keys: string[];
}

/** What the leader's health checking reads besides RegistryReader (local state, shared objects). */
export interface HealthStateReader {
  check(ns: string, checkId: string): Check | undefined;
  checkTimes(ns: string, checkId: string): CheckTimes | undefined;
  /** Every check of every namespace, in no particular order (cheap: no sorted view is built). */
  forEachCheck(fn: (c: Check) => void): void;
  /**
   * The checks changed since the previous call (the first call answers `all`), and forgets them,
   * so that the leader's health checking follows the state without walking every check. Renewal
   * checkpoints are not changes (the leader that proposes them already holds those times).
   */
  takeCheckChanges(): CheckChanges;
}

/** What apply() returns for a command (the proposer sees it). */
export type ApplyResult = { ok: true; changed: boolean } | { ok: false; error: string; status: number };

/** One element of /v1/health/service: the instance, its checks, and their aggregate. */
export interface ServiceEntry {
  instance: Instance;
  checks: Check[];
  health: Health;
}

/**
 * The one read interface of the registry. Every method reads the node's local in-memory state
 * (consistency is decided before calling, see RegistryService.readBarrier). Returned objects are
 * shared and must not be mutated. Every index is ≥ 1.
 */
export interface RegistryReader {
  /** Raft index of the last applied entry that changed state (the global index). */
  index(): number;
  /** Index of the last change to this service's result (instances, checks); see DESIGN §3. */
  serviceIndex(ns: string, service: string): number;
  /** Index of the last change to the namespace's set of services or their tags. */
  catalogIndex(ns: string): number;
  /** Index of the last change of anything in the namespace (checks by state, agent views). */
  namespaceIndex(ns: string): number;
  /** Namespaces holding at least one instance, sorted. */
  namespaces(): string[];
  /** Service name → union of its instances' tags (sorted, unique). Sorted by name. */
  services(ns: string): [string, string[]][];
  /** Instances of a service with their checks and aggregate health, sorted by node then ID. */
  serviceEntries(ns: string, service: string): ServiceEntry[];
  /** Every instance in the namespace, sorted by service then ID. */
  instances(ns: string): Instance[];
  instance(ns: string, service: string, id: string): Instance | undefined;
  /** Instances with this ID in the namespace (any service), sorted by service. */
  instancesById(ns: string, id: string): Instance[];
  /** In serviceEntries order (Node, then instance ID), each instance's checks by CheckID. */
  checksOfService(ns: string, service: string): Check[];
  /** Sorted by service name, instance ID, then CheckID. */
  checksInState(ns: string, state: CheckStatus | 'any'): Check[];
  /** Sorted by ID. */
  servers(): ServerInfo[];
  /**
   * Calls `fire` once, soon after the watched index exceeds `after` (or right away if it already
   * does). Returns a cancel function; cancelled or fired waiters cost nothing further.
   */
  watchService(ns: string, service: string, after: number, fire: () => void): () => void;
  watchCatalog(ns: string, after: number, fire: () => void): () => void;
  watchNamespace(ns: string, after: number, fire: () => void): () => void;
}
