// The registry's replicated state: the deterministic state machine behind Raft's StateMachine port
// (the only writer of registry state), its indexes (DESIGN §3), and the read interface over it.

import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { SiderError } from '../../raft/errors.ts';
import type { SnapshotWriter, StateMachine } from '../../raft/ports.ts';
import type { Entry, SnapshotMeta } from '../../raft/types.ts';
import { compactSnapshotInstance, decodeCommand, decodeSnapshot, encodeCommandKnown, SNAPSHOT_FORMAT, SNAPSHOT_VERSION, SNAPSHOT_VERSION_OBJECTS } from './command-codec.ts';
import type { DecodeResult, SnapshotData, SnapshotNamespace } from './command-codec.ts';
import { aggregateHealth } from './health.ts';
import type {
  ApplyResult,
  Check,
  CheckSpec,
  CheckStatus,
  CheckChanges,
  CheckTimes,
  HealthStateReader,
  Instance,
  RegistryCommand,
  RegistryReader,
  ServerInfo,
  ServiceEntry,
} from './model.ts';
import { checkChangeKey } from './model.ts';
import { catalogKey, namespaceKey, serviceKey, Watchers } from './watchers.ts';
import { LazyRows, SnapshotCache, encodeSnapshotSliced, pause } from './snapshot-encoder.ts';
import { canonicalJson } from './canonical-json.ts';
import { sortSteps } from './sort-steps.ts';
import { shiftOldest } from '../../raft/shift-oldest.ts';

/** Check output kept per check, in UTF-8 bytes (Consul's default limit). */
export const MAX_CHECK_OUTPUT_BYTES = 4096;
export const DEFAULT_TOMBSTONE_LIMIT = 10_000;
export const DEFAULT_DEDUP_LIMIT = 100_000;
/**
 * Proposals remembered by encodeProposal. Beyond this many not yet applied (a backlog far past the
 * benchmark's load), all are forgotten: those entries are then decoded when applied, as a follower does.
 */
const KNOWN_PROPOSALS_LIMIT = 65_536;
/**
 * A snapshot is built in slices of this much work with pauses of this length between them, so it
 * takes at most about a third of the event loop while it runs (measured: the p99 of registrations
 * under load drops from ~65 to ~53 ms against back-to-back slices, at the same throughput).
 */
const SNAPSHOT_SLICE_MS = 2;
const SNAPSHOT_PAUSE_MS = 4;

export interface RegistryStateMachineOptions {
  /**
   * Deleted services remembered per namespace (oldest dropped first). Part of the replicated
   * behaviour: every node of a cluster must use the same value (tests lower it).
   */
  tombstoneLimit?: number;
  /** Request IDs remembered for dedup (oldest dropped first). Same on every node, like the above. */
  dedupLimit?: number;
  /** Where a throwing watcher callback is reported (see Watchers). */
  onWatcherError?: (err: unknown) => void;
}

/** Per service: its instances as ready-made, immutable ServiceEntry records, and read caches. */
interface ServiceState {
  readonly name: string;
  /** Index of the last change to this service's result. */
  index: number;
  /** Instance ID → entry. Entries are replaced on change, never mutated (snapshots share them). */
  readonly entries: Map<string, ServiceEntry>;
  /** Tag → number of instances carrying it: the catalog's tag set without a scan. */
  readonly tagCounts: Map<string, number>;
  /** Instance IDs sorted by Node then ID; survives check-only changes. */
  order: string[] | null;
  sorted: ServiceEntry[] | null;
  checks: Check[] | null;
  tags: string[] | null;
  /** `Service '<name>' check`, the Name of a check registered without one: its checks share this string. */
  readonly defaultCheckName: string;
}

interface NamespaceState {
  readonly name: string;
  /** Index of the last change of anything in the namespace. */
  index: number;
  /** Index of the last change to the set of service names or their tag sets. */
  catalogIndex: number;
  /** Only services with at least one instance. */
  readonly services: Map<string, ServiceState>;
  /** CheckID → check: IDs are unique per namespace. */
  readonly checks: Map<string, Check>;
  /** CheckID → its replicated times (records replaced, never mutated: snapshots share them). */
  readonly checkTimes: Map<string, CheckTimes>;
  /** Deleted service → index of its deletion, in deletion order (the first is evicted first). */
  readonly tombstones: Map<string, number>;
  instanceCount: number;
  servicesView: [string, string[]][] | null;
  instancesView: Instance[] | null;
  checksView: Check[] | null;
}

/** What snapshot() captures synchronously: shallow copies sharing immutable records. */
interface Captured {
  index: number;
  namespaces: {
    name: string;
    index: number;
    catalogIndex: number;
    services: { name: string; index: number; entries: ServiceEntry[] }[];
    tombstones: [string, number][];
    /** The check IDs of checkTimes and their times, at the same positions (flat copies, no pair per check). */
    checkIds: string[];
    checkTimes: CheckTimes[];
  }[];
  servers: ServerInfo[];
  dedupRids: string[];
  dedupResults: ApplyResult[];
}

type RegisterCommand = Extract<RegistryCommand, { type: 'register' }>;
type DeregisterCommand = Extract<RegistryCommand, { type: 'deregister' }>;
type CheckStatusCommand = Extract<RegistryCommand, { type: 'checkStatus' }>;
type AddCheckCommand = Extract<RegistryCommand, { type: 'addCheck' }>;
type RemoveCheckCommand = Extract<RegistryCommand, { type: 'removeCheck' }>;
type TtlCheckpointCommand = Extract<RegistryCommand, { type: 'ttlCheckpoint' }>;
type RestoreCommand = Extract<RegistryCommand, { type: 'restore' }>;

/** Check changes listed for takeCheckChanges() before it answers "every check" instead. */
const CHECK_CHANGES_LIMIT = 65_536;

const CHANGED: ApplyResult = Object.freeze({ ok: true, changed: true });
const UNCHANGED: ApplyResult = Object.freeze({ ok: true, changed: false });

function badRequest(error: string): ApplyResult {
  return { ok: false, error, status: 400 };
}

/** Code-unit order: the same on every node, unlike localeCompare. */
function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function atLeastOne(index: number): number {
  return index < 1 ? 1 : index;
}

/** Truncates to at most MAX_CHECK_OUTPUT_BYTES of UTF-8 without splitting a character. */
export function capOutput(output: string): string {
  // A UTF-16 string of n units is at most 3n UTF-8 bytes: short strings skip the encode.
  if (output.length * 3 <= MAX_CHECK_OUTPUT_BYTES) return output;
  const bytes = Buffer.from(output, 'utf8');
  if (bytes.length <= MAX_CHECK_OUTPUT_BYTES) return output;
  let end = MAX_CHECK_OUTPUT_BYTES;
  // Back up over continuation bytes (10xxxxxx) to the start of the character that straddles the cut.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString('utf8');
}

/** Deep equality of JSON values; object key order does not matter, array order does. */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameJson(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ao = a as Record<string, unknown>;
  const bo = b as Record<string, unknown>;
  const keys = Object.keys(ao);
  if (keys.length !== Object.keys(bo).length) return false;
  for (const k of keys) if (!Object.hasOwn(bo, k) || !sameJson(ao[k], bo[k])) return false;
  return true;
}

/**
 * Moves the tag counts from an instance's old tags to its new ones. Returns whether the service's
 * tag set changed (a tag appeared or disappeared), which is what moves the catalog index.
 */
function retag(counts: Map<string, number>, oldTags: readonly string[], newTags: readonly string[]): boolean {
  if (oldTags.length > FEW_TAGS || newTags.length > FEW_TAGS) return retagSets(counts, new Set(oldTags), new Set(newTags));
  // The same walk over first occurrences as retagSets, without building two sets per registration.
  let changed = false;
  for (let i = 0; i < oldTags.length; i++) {
    const t = oldTags[i]!;
    if (oldTags.indexOf(t) === i && !newTags.includes(t) && untag(counts, t)) changed = true;
  }
  for (let i = 0; i < newTags.length; i++) {
    const t = newTags[i]!;
    if (newTags.indexOf(t) === i && !oldTags.includes(t) && tag(counts, t)) changed = true;
  }
  return changed;
}

/** Tag lists up to this long are compared by scanning; longer ones through sets. */
const FEW_TAGS = 16;

function retagSets(counts: Map<string, number>, before: ReadonlySet<string>, after: ReadonlySet<string>): boolean {
  let changed = false;
  for (const t of before) if (!after.has(t) && untag(counts, t)) changed = true;
  for (const t of after) if (!before.has(t) && tag(counts, t)) changed = true;
  return changed;
}

/** One instance fewer has tag `t`; true when none has it any more. */
function untag(counts: Map<string, number>, t: string): boolean {
  const n = (counts.get(t) ?? 1) - 1;
  if (n > 0) {
    counts.set(t, n);
    return false;
  }
  counts.delete(t);
  return true;
}

/** One instance more has tag `t`; true when it is the first. */
function tag(counts: Map<string, number>, t: string): boolean {
  const n = (counts.get(t) ?? 0) + 1;
  counts.set(t, n);
  return n === 1;
}

function newService(name: string, index: number): ServiceState {
  return { name, index, entries: new Map(), tagCounts: new Map(), order: null, sorted: null, checks: null, tags: null, defaultCheckName: `Service '${name}' check` };
}

function newNamespace(name: string): NamespaceState {
  return {
    name,
    index: 0,
    catalogIndex: 0,
    services: new Map(),
    checks: new Map(),
    checkTimes: new Map(),
    tombstones: new Map(),
    instanceCount: 0,
    servicesView: null,
    instancesView: null,
    checksView: null,
  };
}

/**
 * The stored check for a registered spec on instance ns/service/id. A spec without a Status keeps
 * the existing check's status and output (a new one starts critical). Returns `old` itself when
 * nothing differs, so callers can tell "unchanged" by identity.
 */
function buildCheck(c: CheckSpec, ns: string, service: string, id: string, node: string, old: Check | undefined, index: number, sharedName = ''): Check {
  const keepState = c.Status === '' && old !== undefined;
  const check: Check = {
    CheckID: c.CheckID,
    // The service's copy of the default name rather than one per check (only memory differs).
    Name: c.Name === sharedName ? sharedName : c.Name,
    Type: c.Type,
    Status: keepState ? old.Status : c.Status === '' ? 'critical' : c.Status,
    Notes: c.Notes,
    Output: keepState ? old.Output : capOutput(c.Output),
    Interval: c.Interval,
    Timeout: c.Timeout,
    TTL: c.TTL,
    DeregisterCriticalServiceAfter: c.DeregisterCriticalServiceAfter,
    SuccessBeforePassing: c.SuccessBeforePassing,
    FailuresBeforeCritical: c.FailuresBeforeCritical,
    HTTP: c.HTTP,
    Method: c.Method,
    Header: c.Header,
    TCP: c.TCP,
    GRPC: c.GRPC,
    GRPCUseTLS: c.GRPCUseTLS,
    TLSSkipVerify: c.TLSSkipVerify,
    Args: c.Args,
    Namespace: ns,
    ServiceID: id,
    ServiceName: service,
    Node: node,
    CreateIndex: old?.CreateIndex ?? index,
    ModifyIndex: old?.ModifyIndex ?? index,
  };
  if (old && sameJson(old, check)) return old;
  return old ? { ...check, ModifyIndex: index } : check;
}

/** Times of a check just stored as `check` (changed or new) at leader time `now`. */
function timesAfterChange(old: Check | undefined, oldTimes: CheckTimes | undefined, check: Check, now: number): CheckTimes {
  const statusSince = old && oldTimes && old.Status === check.Status ? oldTimes.statusSince : now;
  return { renewedAt: now, statusSince, renewIntervalMs: oldTimes?.renewIntervalMs ?? 0 };
}

function byCheckId(a: Check, b: Check): number {
  return cmp(a.CheckID, b.CheckID);
}

function byServiceThenIds(a: Check, b: Check): number {
  return cmp(a.ServiceName, b.ServiceName) || cmp(a.ServiceID, b.ServiceID) || cmp(a.CheckID, b.CheckID);
}

/**
 * The registry state machine. Applied by the Raft driver only (one entry at a time, in log order);
 * read by everything else through the RegistryReader methods, whose results are shared and must
 * not be mutated.
 */
export class RegistryStateMachine implements StateMachine, RegistryReader, HealthStateReader {
  #namespaces = new Map<string, NamespaceState>();
  #servers = new Map<string, ServerInfo>();
  #serversView: ServerInfo[] | null = null;
  /** Global index: the entry index of the last change. */
  #index = 0;
  /** rid → result, in apply order (Map iteration order is insertion order: first = oldest). */
  #dedup = new Map<string, ApplyResult>();
  /** Entry data proposed here → its command (encodeProposal), until applied. */
  #known = new Map<Uint8Array, RegistryCommand>();
  /** Where the last snapshot holds each instance with its checks: copied by the next while unchanged. */
  readonly #snapshotCache = new SnapshotCache();
  /** Size of the last snapshot written and its instance count, to size the next one's buffer. */
  #snapshotSize = { bytes: 0, instances: 0 };
  #watchers: Watchers;
  /** Watch keys whose index moved during the current apply; notified when it ends. */
  #touched = new Set<string>();
  /** Checks changed since the last takeCheckChanges(), as checkChangeKey(ns, checkId). */
  #checkChanges = new Set<string>();
  /** Set when more than CHECK_CHANGES_LIMIT changed or the whole state was replaced: "every check". */
  #allChecksChanged = true;
  readonly #tombstoneLimit: number;
  readonly #dedupLimit: number;

  constructor(opts: RegistryStateMachineOptions = {}) {
    this.#tombstoneLimit = opts.tombstoneLimit ?? DEFAULT_TOMBSTONE_LIMIT;
    this.#dedupLimit = opts.dedupLimit ?? DEFAULT_DEDUP_LIMIT;
    if (!Number.isInteger(this.#tombstoneLimit) || this.#tombstoneLimit < 0) {
      throw new SiderError('SIDER_CONFIG', `tombstoneLimit must be a non-negative integer, got ${this.#tombstoneLimit}`);
    }
    if (!Number.isInteger(this.#dedupLimit) || this.#dedupLimit < 0) {
      throw new SiderError('SIDER_CONFIG', `dedupLimit must be a non-negative integer, got ${this.#dedupLimit}`);
    }
    this.#watchers = opts.onWatcherError ? new Watchers({ onError: opts.onWatcherError }) : new Watchers();
  }

  // ---------------------------------------------------------------- StateMachine

  /**
   * The entry data of a command this node proposes, remembering what decodeCommand would read
   * from those bytes (encodeCommandKnown) so that applying the entry here does not decode it
   * again: the leader applies what it proposed, followers decode as before. A memo of a pure
   * function of the bytes (entry data is never modified), so a stale one is still right; bounded,
   * since an entry proposed just before losing leadership may never be applied here.
   */
  encodeProposal(cmd: RegistryCommand): Uint8Array {
    const { data, decoded } = encodeCommandKnown(cmd);
    if (decoded) {
      if (this.#known.size >= KNOWN_PROPOSALS_LIMIT) this.#known.clear();
      this.#known.set(data, decoded);
    }
    return data;
  }

  /**
   * Applies one committed `normal` entry. Depends only on the entry and the prior state. Watchers
   * of every index the entry moved fire synchronously before this returns.
   */
  apply(entry: Entry): ApplyResult {
    const known = this.#known.size === 0 ? undefined : this.#known.get(entry.data);
    if (known) this.#known.delete(entry.data);
    if (entry.rid !== '') {
      const seen = this.#dedup.get(entry.rid);
      if (seen) return seen;
    }
    const decoded: DecodeResult = known ? { ok: true, command: known } : decodeCommand(entry.data);
    const result = decoded.ok ? this.#execute(decoded.command, entry.index) : badRequest(decoded.error);
    if (entry.rid !== '' && this.#dedupLimit > 0) {
      this.#dedup.set(entry.rid, result);
      if (this.#dedup.size > this.#dedupLimit) shiftOldest(this.#dedup);
    }
    if (result.ok && result.changed) this.#index = entry.index;
    if (this.#touched.size > 0) {
      const touched = [...this.#touched];
      this.#touched.clear();
      for (const key of touched) this.#watchers.notify(key, entry.index);
    }
    return result;
  }

  /**
   * Captures the state synchronously: entries, checks and servers are immutable, so this copies
   * only the containers (O(instances) pointer copies). The writer sorts and encodes later, in
   * slices that leave the event loop free, reusing the encoding of records unchanged since the
   * last snapshot (which is why records must never be mutated once stored).
   */
  snapshot(): SnapshotWriter {
    const captured = this.#capture();
    const cache = this.#snapshotCache;
    let instances = 0;
    for (const ns of this.#namespaces.values()) instances += ns.instanceCount;
    // The last snapshot's size, scaled by how much the registry grew since (+1/16): the output
    // then rarely needs a second chunk and a join.
    const last = this.#snapshotSize;
    const grown = last.instances > 0 ? Math.max(1, instances / last.instances) : 1;
    const sizeHint = Math.ceil(last.bytes * grown * (17 / 16));
    return async () => {
      const data = await toSnapshotDocumentSliced(captured);
      const bytes = await encodeSnapshotSliced(data, { cache, leafJson: entryJson, sliceMs: SNAPSHOT_SLICE_MS, pauseMs: SNAPSHOT_PAUSE_MS, sizeHint });
      this.#snapshotSize = { bytes: bytes.length, instances };
      return bytes;
    };
  }

  /**
   * Replaces the whole state with a snapshot's. The data is parsed and checked completely before
   * anything is replaced: a bad snapshot throws SIDER_BAD_REQUEST and leaves the state as it was.
   * Every watcher fires afterwards (any index may have moved, in either direction).
   */
  restore(data: Uint8Array, _meta?: SnapshotMeta): void {
    const snap = decodeSnapshot(data);
    const namespaces = new Map<string, NamespaceState>();
    for (const [i, sn] of snap.namespaces.entries()) {
      if (namespaces.has(sn.name)) throw new SiderError('SIDER_BAD_REQUEST', `snapshot.namespaces[${i}]: duplicate namespace "${sn.name}"`);
      namespaces.set(sn.name, buildNamespace(sn, `snapshot.namespaces[${i}]`));
    }
    const servers = new Map<string, ServerInfo>();
    for (const s of snap.servers) servers.set(s.ID, s);
    this.#namespaces = namespaces;
    this.#servers = servers;
    this.#serversView = null;
    this.#index = snap.index;
    this.#dedup = new Map(snap.dedup);
    // Every record is new: nothing the cache points at can come again (and its bytes can go).
    this.#snapshotCache.clear();
    this.#touched.clear();
    this.#everyCheckChanged();
    this.#watchers.fireAll();
  }

  /** sha256 (hex) of a canonical serialization of the whole replicated state. For tests and checks. */
  digest(): string {
    return createHash('sha256').update(canonicalJson(toSnapshotData(this.#capture()))).digest('hex');
  }

  /** Blocking queries currently held on this node. */
  get watcherCount(): number {
    return this.#watchers.size;
  }

  // ---------------------------------------------------------------- commands

  #execute(cmd: RegistryCommand, index: number): ApplyResult {
    switch (cmd.type) {
      case 'register':
        return this.#register(cmd, index);
      case 'deregister':
        return this.#deregister(cmd, index);
      case 'checkStatus':
        return this.#checkStatus(cmd, index);
      case 'server':
        return this.#server(cmd.server);
      case 'addCheck':
        return this.#addCheck(cmd, index);
      case 'removeCheck':
        return this.#removeCheck(cmd, index);
      case 'ttlCheckpoint':
        return this.#ttlCheckpoint(cmd);
      case 'restore':
        return this.#restoreCommand(cmd, index);
    }
  }

  /**
   * Replaces every namespace with the snapshot's, checked completely first (a bad document changes
   * nothing). Every index becomes `index`, which is above anything this registry ever answered, so
   * no client's index goes backwards; namespaces that disappear stay as empty ones at `index`.
   * Servers and the dedup table belong to this cluster and are kept. Every watcher fires.
   */
  #restoreCommand(cmd: RestoreCommand, index: number): ApplyResult {
    const namespaces = new Map<string, NamespaceState>();
    try {
      for (const [i, sn] of cmd.snapshot.namespaces.entries()) {
        if (namespaces.has(sn.name)) return badRequest(`snapshot.namespaces[${i}]: duplicate namespace "${sn.name}"`);
        namespaces.set(sn.name, buildNamespace(sn, `snapshot.namespaces[${i}]`));
      }
    } catch (err) {
      if (err instanceof SiderError) return badRequest(err.message);
      throw err;
    }
    for (const name of this.#namespaces.keys()) if (!namespaces.has(name)) namespaces.set(name, newNamespace(name));
    for (const ns of namespaces.values()) {
      ns.index = index;
      ns.catalogIndex = index;
      for (const svc of ns.services.values()) svc.index = index;
      for (const name of ns.tombstones.keys()) ns.tombstones.set(name, index);
      // Renewal times were another clock's: every TTL restarts from the restore.
      for (const [id, t] of ns.checkTimes) ns.checkTimes.set(id, { renewedAt: cmd.now, statusSince: cmd.now, renewIntervalMs: t.renewIntervalMs });
    }
    this.#namespaces = namespaces;
    this.#touched.clear();
    this.#everyCheckChanged();
    this.#watchers.fireAll();
    return CHANGED;
  }

  #register(cmd: RegisterCommand, index: number): ApplyResult {
    const spec = cmd.instance;
    const existingNs = this.#namespaces.get(cmd.ns);
    const existingSvc = existingNs?.services.get(spec.Service);
    // Stored records share their service's and namespace's name strings rather than each keeping
    // the copy its entry was decoded with (same text: only memory differs).
    const service = existingSvc?.name ?? spec.Service;
    const nsName = existingNs?.name ?? cmd.ns;
    const id = spec.ID === '' ? service : spec.ID;
    const prev = existingSvc?.entries.get(id);

    // Everything is validated before anything changes: nothing is half-applied.
    const given = new Set<string>();
    /** The stored check of each given CheckID (by the test below, this instance's own), in order. */
    const owned: (Check | undefined)[] = [];
    for (const c of cmd.checks) {
      if (given.has(c.CheckID)) return badRequest(`CheckID "${c.CheckID}" is given more than once in the registration`);
      given.add(c.CheckID);
      const owner = existingNs?.checks.get(c.CheckID);
      if (owner && (owner.ServiceName !== service || owner.ServiceID !== id)) {
        return badRequest(
          `CheckID "${c.CheckID}" already belongs to instance "${owner.ServiceID}" of service "${owner.ServiceName}"`,
        );
      }
      owned.push(owner);
    }

    let instance: Instance = {
      Service: service,
      ID: id,
      Address: spec.Address,
      Port: spec.Port,
      Tags: spec.Tags,
      Meta: spec.Meta,
      Weights: spec.Weights,
      TaggedAddresses: spec.TaggedAddresses,
      EnableTagOverride: spec.EnableTagOverride,
      Namespace: nsName,
      Node: cmd.node,
      NodeAddress: cmd.nodeAddress ?? '',
      CreateIndex: prev?.instance.CreateIndex ?? index,
      ModifyIndex: prev?.instance.ModifyIndex ?? index,
    };
    const instanceChanged = !prev || !sameJson(prev.instance, instance);
    if (prev && !instanceChanged) instance = prev.instance;
    else if (prev) instance = { ...instance, ModifyIndex: index };

    let checksChanged = false;
    const checks: Check[] = [];
    for (const [i, c] of cmd.checks.entries()) {
      const old = owned[i];
      const check = buildCheck(c, nsName, service, id, cmd.node, old, index, existingSvc?.defaultCheckName);
      if (check !== old) checksChanged = true;
      checks.push(check);
    }
    const prevChecks = prev?.checks ?? [];
    for (const old of prevChecks) {
      if (given.has(old.CheckID)) continue;
      // Consul semantics: checks left out of a registration survive unless told to replace them.
      if (cmd.replaceExistingChecks) checksChanged = true;
      else checks.push(old);
    }
    if (!instanceChanged && !checksChanged) return UNCHANGED;
    checks.sort(byCheckId);

    const ns = existingNs ?? this.#createNamespace(cmd.ns);
    let svc = ns.services.get(service);
    if (!svc) {
      svc = newService(service, index);
      ns.services.set(service, svc);
      ns.tombstones.delete(service);
      this.#touchCatalog(ns, index);
    }
    if (checksChanged) {
      // A new instance (the common registration) has no previous checks: no maps to build.
      const oldTimes = prevChecks.length === 0 ? undefined : new Map<string, CheckTimes | undefined>();
      for (const old of prevChecks) {
        oldTimes?.set(old.CheckID, ns.checkTimes.get(old.CheckID));
        ns.checks.delete(old.CheckID);
        ns.checkTimes.delete(old.CheckID);
        this.#checkChanged(ns.name, old.CheckID);
      }
      const byId = prevChecks.length === 0 ? undefined : new Map(prevChecks.map((c) => [c.CheckID, c]));
      for (const c of checks) {
        ns.checks.set(c.CheckID, c);
        const old = byId?.get(c.CheckID);
        const times = oldTimes?.get(c.CheckID);
        ns.checkTimes.set(c.CheckID, c === old && times ? times : timesAfterChange(old, times, c, cmd.now));
        this.#checkChanged(ns.name, c.CheckID);
      }
      ns.checksView = null;
    }
    if (instanceChanged) {
      if (retag(svc.tagCounts, prev?.instance.Tags ?? [], instance.Tags)) {
        svc.tags = null;
        this.#touchCatalog(ns, index);
      }
      if (!prev) ns.instanceCount++;
      if (!prev || prev.instance.Node !== instance.Node) svc.order = null;
      ns.instancesView = null;
    }
    svc.entries.set(id, { instance, checks, health: aggregateHealth(checks) });
    this.#touchService(ns, svc, index);
    return CHANGED;
  }

  #deregister(cmd: DeregisterCommand, index: number): ApplyResult {
    const ns = this.#namespaces.get(cmd.ns);
    const svc = ns?.services.get(cmd.service);
    const prev = svc?.entries.get(cmd.id);
    if (!ns || !svc || !prev) return UNCHANGED;
    for (const c of prev.checks) {
      ns.checks.delete(c.CheckID);
      ns.checkTimes.delete(c.CheckID);
      this.#checkChanged(ns.name, c.CheckID);
    }
    if (prev.checks.length > 0) ns.checksView = null;
    svc.entries.delete(cmd.id);
    svc.order = null;
    ns.instanceCount--;
    ns.instancesView = null;
    if (svc.entries.size === 0) {
      ns.services.delete(svc.name);
      this.#tombstone(ns, svc.name, index);
      this.#touchCatalog(ns, index);
    } else if (retag(svc.tagCounts, prev.instance.Tags, [])) {
      svc.tags = null;
      this.#touchCatalog(ns, index);
    }
    this.#touchService(ns, svc, index);
    return CHANGED;
  }

  #checkStatus(cmd: CheckStatusCommand, index: number): ApplyResult {
    const ns = this.#namespaces.get(cmd.ns);
    const old = ns?.checks.get(cmd.checkId);
    if (!ns || !old) return { ok: false, error: `CheckID "${cmd.checkId}" does not have associated TTL`, status: 404 };
    const output = capOutput(cmd.output);
    if (old.Status === cmd.status && old.Output === output) return UNCHANGED;
    const svc = ns.services.get(old.ServiceName);
    const entry = svc?.entries.get(old.ServiceID);
    if (!svc || !entry) throw new Error(`registry invariant violated: check "${old.CheckID}" has no instance`);
    const check: Check = { ...old, Status: cmd.status, Output: output, ModifyIndex: index };
    ns.checks.set(check.CheckID, check);
    ns.checkTimes.set(check.CheckID, timesAfterChange(old, ns.checkTimes.get(old.CheckID), check, cmd.now));
    this.#checkChanged(ns.name, check.CheckID);
    ns.checksView = null;
    const checks = entry.checks.map((c) => (c.CheckID === check.CheckID ? check : c));
    svc.entries.set(old.ServiceID, { instance: entry.instance, checks, health: aggregateHealth(checks) });
    this.#touchService(ns, svc, index);
    return CHANGED;
  }

  #addCheck(cmd: AddCheckCommand, index: number): ApplyResult {
    const ns = this.#namespaces.get(cmd.ns);
    const svc = ns?.services.get(cmd.service);
    const entry = svc?.entries.get(cmd.id);
    if (!ns || !svc || !entry) {
      return { ok: false, error: `ServiceID: unknown service instance "${cmd.id}" of service "${cmd.service}" in namespace "${cmd.ns}"`, status: 404 };
    }
    const old = ns.checks.get(cmd.check.CheckID);
    if (old && (old.ServiceName !== cmd.service || old.ServiceID !== cmd.id)) {
      return badRequest(`CheckID "${old.CheckID}" already belongs to instance "${old.ServiceID}" of service "${old.ServiceName}"`);
    }
    const check = buildCheck(cmd.check, cmd.ns, cmd.service, cmd.id, entry.instance.Node, old, index);
    if (check === old) return UNCHANGED;
    ns.checks.set(check.CheckID, check);
    ns.checkTimes.set(check.CheckID, timesAfterChange(old, ns.checkTimes.get(check.CheckID), check, cmd.now));
    this.#checkChanged(ns.name, check.CheckID);
    ns.checksView = null;
    const checks = old ? entry.checks.map((c) => (c.CheckID === check.CheckID ? check : c)) : [...entry.checks, check].sort(byCheckId);
    svc.entries.set(cmd.id, { instance: entry.instance, checks, health: aggregateHealth(checks) });
    this.#touchService(ns, svc, index);
    return CHANGED;
  }

  #removeCheck(cmd: RemoveCheckCommand, index: number): ApplyResult {
    const ns = this.#namespaces.get(cmd.ns);
    const old = ns?.checks.get(cmd.checkId);
    if (!ns || !old) return { ok: false, error: `Unknown check ID "${cmd.checkId}"`, status: 404 };
    const svc = ns.services.get(old.ServiceName);
    const entry = svc?.entries.get(old.ServiceID);
    if (!svc || !entry) throw new Error(`registry invariant violated: check "${old.CheckID}" has no instance`);
    ns.checks.delete(old.CheckID);
    ns.checkTimes.delete(old.CheckID);
    this.#checkChanged(ns.name, old.CheckID);
    ns.checksView = null;
    const checks = entry.checks.filter((c) => c.CheckID !== old.CheckID);
    svc.entries.set(old.ServiceID, { instance: entry.instance, checks, health: aggregateHealth(checks) });
    this.#touchService(ns, svc, index);
    return CHANGED;
  }

  /**
   * Records renewal times only: no index moves and no watcher wakes (the API shows none of it).
   * Not a check change for takeCheckChanges(): checkpoints carry the proposing leader's own
   * renewals, which its deadline table already holds, and a new leader builds its table from the
   * whole state after applying everything committed before it took over.
   */
  #ttlCheckpoint(cmd: TtlCheckpointCommand): ApplyResult {
    for (const [nsName, checkId, renewedAt, renewIntervalMs] of cmd.entries) {
      const ns = this.#namespaces.get(nsName);
      const times = ns?.checkTimes.get(checkId);
      if (!ns || !times || renewedAt <= times.renewedAt) continue;
      ns.checkTimes.set(checkId, { renewedAt, statusSince: times.statusSince, renewIntervalMs });
    }
    return UNCHANGED;
  }

  #server(server: ServerInfo): ApplyResult {
    const prev = this.#servers.get(server.ID);
    if (prev && sameJson(prev, server)) return UNCHANGED;
    this.#servers.set(server.ID, server);
    this.#serversView = null;
    return CHANGED;
  }

  #createNamespace(name: string): NamespaceState {
    const ns = newNamespace(name);
    this.#namespaces.set(name, ns);
    return ns;
  }

  /** The service's result changed at `index` (and so did its namespace). */
  #touchService(ns: NamespaceState, svc: ServiceState, index: number): void {
    svc.index = index;
    svc.sorted = null;
    svc.checks = null;
    ns.index = index;
    this.#touched.add(serviceKey(ns.name, svc.name));
    this.#touched.add(namespaceKey(ns.name));
  }

  #touchCatalog(ns: NamespaceState, index: number): void {
    ns.catalogIndex = index;
    ns.servicesView = null;
    this.#touched.add(catalogKey(ns.name));
  }

  /**
   * Remembers a deleted service's last index so a blocking query on it wakes and reads []. Bounded:
   * beyond the limit the oldest is dropped, and its index falls back to the catalog index (which
   * this same deletion moves past it), so its watchers are woken too.
   */
  #tombstone(ns: NamespaceState, service: string, index: number): void {
    ns.tombstones.delete(service);
    ns.tombstones.set(service, index);
    while (ns.tombstones.size > this.#tombstoneLimit) {
      const oldest = shiftOldest(ns.tombstones);
      if (oldest === undefined) break;
      this.#touched.add(serviceKey(ns.name, oldest));
    }
  }

  #capture(): Captured {
    const namespaces: Captured['namespaces'] = [];
    for (const ns of this.#namespaces.values()) {
      const services: Captured['namespaces'][number]['services'] = [];
      for (const svc of ns.services.values()) services.push({ name: svc.name, index: svc.index, entries: [...svc.entries.values()] });
      namespaces.push({
        name: ns.name,
        index: ns.index,
        catalogIndex: ns.catalogIndex,
        services,
        tombstones: [...ns.tombstones],
        checkIds: [...ns.checkTimes.keys()],
        checkTimes: [...ns.checkTimes.values()],
      });
    }
    return {
      index: this.#index,
      namespaces,
      servers: [...this.#servers.values()],
      dedupRids: [...this.#dedup.keys()],
      dedupResults: [...this.#dedup.values()],
    };
  }

  // ---------------------------------------------------------------- HealthStateReader

  check(ns: string, checkId: string): Check | undefined {
    return this.#namespaces.get(ns)?.checks.get(checkId);
  }

  checkTimes(ns: string, checkId: string): CheckTimes | undefined {
    return this.#namespaces.get(ns)?.checkTimes.get(checkId);
  }

  forEachCheck(fn: (c: Check) => void): void {
    for (const ns of this.#namespaces.values()) for (const c of ns.checks.values()) fn(c);
  }

  takeCheckChanges(): CheckChanges {
    const out: CheckChanges = this.#allChecksChanged ? { all: true, keys: [] } : { all: false, keys: [...this.#checkChanges] };
    this.#checkChanges.clear();
    this.#allChecksChanged = false;
    return out;
  }

  /** A check was added, changed or removed (its record or its times). */
  #checkChanged(ns: string, checkId: string): void {
    if (this.#allChecksChanged) return;
    this.#checkChanges.add(checkChangeKey(ns, checkId));
    // Nobody took the changes for a long while (a follower): "every check" costs nothing to keep.
    if (this.#checkChanges.size > CHECK_CHANGES_LIMIT) this.#everyCheckChanged();
  }

  #everyCheckChanged(): void {
    this.#allChecksChanged = true;
    this.#checkChanges.clear();
  }

  // ---------------------------------------------------------------- RegistryReader

  index(): number {
    return atLeastOne(this.#index);
  }

  serviceIndex(ns: string, service: string): number {
    const n = this.#namespaces.get(ns);
    if (!n) return 1;
    const svc = n.services.get(service);
    if (svc) return atLeastOne(svc.index);
    const tomb = n.tombstones.get(service);
    // A never-seen (or forgotten) service: the catalog index is ≥ any index it could have had.
    return atLeastOne(tomb ?? n.catalogIndex);
  }

  catalogIndex(ns: string): number {
    return atLeastOne(this.#namespaces.get(ns)?.catalogIndex ?? 0);
  }

  namespaceIndex(ns: string): number {
    return atLeastOne(this.#namespaces.get(ns)?.index ?? 0);
  }

  /** Namespaces holding at least one instance, sorted. */
  namespaces(): string[] {
    const out: string[] = [];
    for (const ns of this.#namespaces.values()) if (ns.instanceCount > 0) out.push(ns.name);
    return out.sort(cmp);
  }

  services(ns: string): [string, string[]][] {
    const n = this.#namespaces.get(ns);
    if (!n) return [];
    if (!n.servicesView) {
      n.servicesView = [...n.services.values()]
        .sort((a, b) => cmp(a.name, b.name))
        .map((svc): [string, string[]] => [svc.name, serviceTags(svc)]);
    }
    return n.servicesView;
  }

  serviceEntries(ns: string, service: string): ServiceEntry[] {
    const svc = this.#namespaces.get(ns)?.services.get(service);
    if (!svc) return [];
    if (!svc.sorted) {
      if (!svc.order) {
        const entries = svc.entries;
        svc.order = [...entries.keys()].sort((a, b) => {
          const x = entries.get(a)!.instance;
          const y = entries.get(b)!.instance;
          return cmp(x.Node, y.Node) || cmp(x.ID, y.ID);
        });
      }
      svc.sorted = svc.order.map((id) => svc.entries.get(id)!);
    }
    return svc.sorted;
  }

  instances(ns: string): Instance[] {
    const n = this.#namespaces.get(ns);
    if (!n) return [];
    if (!n.instancesView) {
      const out: Instance[] = [];
      for (const [name] of this.services(ns)) {
        const svc = n.services.get(name)!;
        for (const id of [...svc.entries.keys()].sort(cmp)) out.push(svc.entries.get(id)!.instance);
      }
      n.instancesView = out;
    }
    return n.instancesView;
  }

  instance(ns: string, service: string, id: string): Instance | undefined {
    return this.#namespaces.get(ns)?.services.get(service)?.entries.get(id)?.instance;
  }

  /** Sorted by service name. */
  instancesById(ns: string, id: string): Instance[] {
    const n = this.#namespaces.get(ns);
    if (!n) return [];
    const out: Instance[] = [];
    for (const [name] of this.services(ns)) {
      const e = n.services.get(name)?.entries.get(id);
      if (e) out.push(e.instance);
    }
    return out;
  }

  /** In serviceEntries order (Node, then instance ID), each instance's checks by CheckID. */
  checksOfService(ns: string, service: string): Check[] {
    const svc = this.#namespaces.get(ns)?.services.get(service);
    if (!svc) return [];
    svc.checks ??= this.serviceEntries(ns, service).flatMap((e) => e.checks);
    return svc.checks;
  }

  /** Sorted by service name, instance ID, then CheckID. */
  checksInState(ns: string, state: CheckStatus | 'any'): Check[] {
    const n = this.#namespaces.get(ns);
    if (!n) return [];
    n.checksView ??= [...n.checks.values()].sort(byServiceThenIds);
    return state === 'any' ? n.checksView : n.checksView.filter((c) => c.Status === state);
  }

  /** Sorted by ID. */
  servers(): ServerInfo[] {
    this.#serversView ??= [...this.#servers.values()].sort((a, b) => cmp(a.ID, b.ID));
    return this.#serversView;
  }

  watchService(ns: string, service: string, after: number, fire: () => void): () => void {
    return this.#watchers.watch(serviceKey(ns, service), this.serviceIndex(ns, service), after, fire);
  }

  watchCatalog(ns: string, after: number, fire: () => void): () => void {
    return this.#watchers.watch(catalogKey(ns), this.catalogIndex(ns), after, fire);
  }

  watchNamespace(ns: string, after: number, fire: () => void): () => void {
    return this.#watchers.watch(namespaceKey(ns), this.namespaceIndex(ns), after, fire);
  }
}

function serviceTags(svc: ServiceState): string[] {
  svc.tags ??= [...svc.tagCounts.keys()].sort(cmp);
  return svc.tags;
}

type Rows<T> = T[] | LazyRows<T>;

/**
 * The snapshot document as the writer encodes it: its instances are the stored entries themselves
 * (immutable, so the encoder's cache can key on them), written in the compact form (entryJson);
 * its long lists of rows are LazyRows, made only as they are written.
 */
interface SnapshotDocument {
  format: typeof SNAPSHOT_FORMAT;
  version: typeof SNAPSHOT_VERSION;
  index: number;
  namespaces: {
    name: string;
    index: number;
    catalogIndex: number;
    services: { name: string; index: number; instances: ServiceEntry[] }[];
    tombstones: [string, number][];
    checkTimes: Rows<[string, number, number, number]>;
  }[];
  servers: ServerInfo[];
  dedup: Rows<[string, ApplyResult]>;
}

/** A stored entry as a snapshot element (the compact form). */
function entryJson(e: object): string {
  const entry = e as ServiceEntry;
  return JSON.stringify(compactSnapshotInstance(entry.instance, entry.checks));
}

/**
 * The snapshot document of a capture: sorted, in the wire shape. Written as steps (a generator that
 * pauses after each service and within the long sorts and lists) so that the snapshot writer can
 * build it in slices between other work, while digest() runs it straight through. The dedup table
 * and the check times are LazyRows: their rows are made only as the encoder writes them.
 */
function* snapshotDataSteps(c: Captured): Generator<void, SnapshotDocument, void> {
  const namespaces: SnapshotDocument['namespaces'] = [];
  for (const ns of c.namespaces.sort((a, b) => cmp(a.name, b.name))) {
    const services: SnapshotDocument['namespaces'][number]['services'] = [];
    for (const svc of ns.services.sort((a, b) => cmp(a.name, b.name))) {
      services.push({
        name: svc.name,
        index: svc.index,
        instances: svc.entries.sort((a, b) => cmp(a.instance.ID, b.instance.ID)),
      });
      yield;
    }
    // One per check of the namespace, tens of thousands: sorted in steps too.
    const ids = ns.checkIds;
    const times = ns.checkTimes;
    const order = yield* sortSteps(
      Array.from({ length: ids.length }, (_, i) => i),
      (i) => ids[i]!,
    );
    const checkTimes = lazyRows(order.length, (k): [string, number, number, number] => {
      const i = order[k]!;
      const t = times[i]!;
      return [ids[i]!, t.renewedAt, t.statusSince, t.renewIntervalMs];
    });
    yield;
    namespaces.push({ name: ns.name, index: ns.index, catalogIndex: ns.catalogIndex, services, tombstones: ns.tombstones, checkTimes });
  }
  const { dedupRids, dedupResults } = c;
  const dedup = lazyRows(dedupRids.length, (i): [string, ApplyResult] => [dedupRids[i]!, dedupResults[i]!]);
  return {
    format: SNAPSHOT_FORMAT,
    version: SNAPSHOT_VERSION,
    index: c.index,
    namespaces,
    servers: c.servers.sort((a, b) => cmp(a.ID, b.ID)),
    dedup,
  };
}

/** `length` rows made by `row`, a chunk at a time as they are read (see LazyRows). */
function lazyRows<T>(length: number, row: (i: number) => T): LazyRows<T> {
  return new LazyRows(length, (from, to) => {
    const out: T[] = [];
    for (let i = from; i < to; i++) out.push(row(i));
    return out;
  });
}

/**
 * The snapshot document as plain data in the object form (as a snapshot is read), its LazyRows
 * made whole: what digest() hashes, the same whichever form snapshots are written in.
 */
function toSnapshotData(c: Captured): SnapshotData {
  const steps = snapshotDataSteps(c);
  let r = steps.next();
  while (!r.done) r = steps.next();
  const doc = r.value;
  const whole = <T>(rows: T[] | LazyRows<T>): T[] => (rows instanceof LazyRows ? rows.toJSON() : rows);
  return {
    ...doc,
    version: SNAPSHOT_VERSION_OBJECTS,
    namespaces: doc.namespaces.map((ns) => ({
      ...ns,
      services: ns.services.map((svc) => ({ ...svc, instances: svc.instances.map((e) => ({ instance: e.instance, checks: e.checks })) })),
      checkTimes: whole(ns.checkTimes),
    })),
    dedup: whole(doc.dedup),
  };
}

/**
 * The snapshot document in slices of about SNAPSHOT_SLICE_MS of work, pausing between them; its
 * long lists of rows are LazyRows, made only as the encoder writes them.
 */
async function toSnapshotDocumentSliced(c: Captured): Promise<SnapshotDocument> {
  const steps = snapshotDataSteps(c);
  let start = performance.now();
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    if (performance.now() - start >= SNAPSHOT_SLICE_MS) {
      await pause(SNAPSHOT_PAUSE_MS);
      start = performance.now();
    }
  }
}

/** Rebuilds one namespace from a snapshot, checking what the parser cannot (consistency). */
function buildNamespace(sn: SnapshotNamespace, path: string): NamespaceState {
  const fail = (where: string, what: string): never => {
    throw new SiderError('SIDER_BAD_REQUEST', `${path}${where}: ${what}`);
  };
  const ns = newNamespace(sn.name);
  ns.index = sn.index;
  ns.catalogIndex = sn.catalogIndex;
  for (const [i, ss] of sn.services.entries()) {
    const where = `.services[${i}]`;
    if (ns.services.has(ss.name)) fail(where, `duplicate service "${ss.name}"`);
    if (ss.instances.length === 0) fail(where, 'a service without instances is stored as a tombstone');
    const svc = newService(ss.name, ss.index);
    for (const [j, si] of ss.instances.entries()) {
      const w = `${where}.instances[${j}]`;
      const inst = si.instance;
      if (inst.Namespace !== sn.name || inst.Service !== ss.name) fail(w, 'instance is filed under the wrong namespace or service');
      if (svc.entries.has(inst.ID)) fail(w, `duplicate instance ID "${inst.ID}"`);
      for (const c of si.checks) {
        if (c.Namespace !== sn.name || c.ServiceName !== ss.name || c.ServiceID !== inst.ID) {
          fail(w, `check "${c.CheckID}" is filed under the wrong instance`);
        }
        if (ns.checks.has(c.CheckID)) fail(w, `duplicate CheckID "${c.CheckID}"`);
        ns.checks.set(c.CheckID, c);
      }
      const checks = [...si.checks].sort(byCheckId);
      svc.entries.set(inst.ID, { instance: inst, checks, health: aggregateHealth(checks) });
      retag(svc.tagCounts, [], inst.Tags);
      ns.instanceCount++;
    }
    ns.services.set(ss.name, svc);
  }
  for (const [name, index] of sn.tombstones) {
    if (ns.services.has(name)) fail('.tombstones', `service "${name}" is both live and deleted`);
    ns.tombstones.set(name, index);
  }
  const times = new Map((sn.checkTimes ?? []).map(([id, renewedAt, statusSince, renewIntervalMs]) => [id, { renewedAt, statusSince, renewIntervalMs }]));
  for (const id of times.keys()) if (!ns.checks.has(id)) fail('.checkTimes', `times of unknown check "${id}"`);
  // Snapshots from before health checking carry no times: 0 = "never known".
  for (const id of ns.checks.keys()) ns.checkTimes.set(id, times.get(id) ?? { renewedAt: 0, statusSince: 0, renewIntervalMs: 0 });
  return ns;
}
