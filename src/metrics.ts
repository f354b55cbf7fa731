// Prometheus metrics of one server (DESIGN §9, issue #6): one prom-client Registry per server;
// gauges are read at scrape time (collect()) from the registry reader, the Raft status, the DNS
// counters and the HTTP layer, and event counters and latency histograms are fed by hooks.
// Label cardinality is bounded: at most `maxServiceSeries` services (by instance count) get their
// own series, the rest are summed under service="_other".

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Metric, RegistryContentType } from 'prom-client';
import type { CoreStatus } from '../raft/core.ts';
import type { CheckStatus, Health, RegistryReader } from './registry/model.ts';

/** Label value of everything past a cap. */
export const OTHER = '_other';
/** Services (namespace, service pairs) with their own instance series; the rest are summed. */
export const DEFAULT_MAX_SERVICE_SERIES = 1000;
/** Namespaces that keep their own `_other` series; past them namespace="_other" too. */
export const DEFAULT_MAX_NAMESPACE_SERIES = 100;
/** Client addresses with their own connection-count series. */
export const DEFAULT_MAX_CLIENT_SERIES = 20;

/** What the metrics read of a Raft node: RaftNode.status(). */
export type RaftStatusView = Pick<CoreStatus, 'id' | 'role' | 'leader' | 'term' | 'commit' | 'lastIndex' | 'firstIndex' | 'membership' | 'uncommittedBytes' | 'peers'> & {
  applied: number;
  lastContactMs: number;
};

/** The DNS server's counters (dns/server.ts's DnsStats extends these; src/ does not import dns/). */
export interface DnsCounters {
  udp: number;
  tcp: number;
  /** By query type mnemonic (A, AAAA, SRV, ANY, …; OTHER for the rest). */
  byType: Record<string, number>;
  /** By response code name (NOERROR, NXDOMAIN, …). */
  byRcode: Record<string, number>;
  /** UDP replies sent with TC set. */
  truncated: number;
  /** Packets not answered: responses (QR=1), shorter than a header, or unparseable. */
  dropped: number;
  /** Replies that were SERVFAIL because of an internal error. */
  internalErrors: number;
  /** Queries answered from local state while out of contact with a leader. */
  staleNoLeader: number;
  cacheHits: number;
  cacheMisses: number;
}

export interface MetricsOptions {
  /** This server's Raft ID (the `node` label of sider_raft_leader). */
  nodeId: string;
  reader: RegistryReader;
  /** Process defaults (memory, CPU, GC, handles, event-loop lag). Default true. */
  defaultMetrics?: boolean;
  maxServiceSeries?: number;
  maxNamespaceSeries?: number;
  maxClientSeries?: number;
  /** Clock for "seconds since" gauges (ms). Default Date.now. */
  now?: () => number;
}

const ROLES = ['follower', 'preCandidate', 'candidate', 'leader'] as const;
const CHECK_STATUSES: readonly CheckStatus[] = ['passing', 'warning', 'critical'];
const HEALTHS: readonly Health[] = ['passing', 'warning', 'critical', 'maintenance'];

const HTTP_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const FSYNC_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
const COMMIT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];
const SNAPSHOT_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const DNS_BUCKETS = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1];

/**
 * A label-less histogram whose `observe` is a few array operations (prom-client's costs ~0.3 µs,
 * a few percent of a DNS answer). Exposed through the registry like prom-client's own.
 */
export class LeanHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #bounds: readonly number[];
  readonly #counts: Float64Array;
  #sum = 0;
  #count = 0;

  constructor(name: string, help: string, bounds: readonly number[]) {
    this.name = name;
    this.help = help;
    this.#bounds = bounds;
    this.#counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    const b = this.#bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.#counts[i]!++;
    this.#sum += v;
    this.#count++;
  }

  get(): { name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: { value: number; labels: Record<string, string | number>; metricName: string }[] } {
    const values: { value: number; labels: Record<string, string | number>; metricName: string }[] = [];
    let acc = 0;
    for (let i = 0; i < this.#bounds.length; i++) {
      acc += this.#counts[i]!;
      values.push({ value: acc, labels: { le: this.#bounds[i]! }, metricName: `${this.name}_bucket` });
    }
    values.push({ value: this.#count, labels: { le: '+Inf' }, metricName: `${this.name}_bucket` });
    values.push({ value: this.#sum, labels: {}, metricName: `${this.name}_sum` });
    values.push({ value: this.#count, labels: {}, metricName: `${this.name}_count` });
    return { name: this.name, help: this.help, type: 'histogram', aggregator: 'sum', values };
  }

  reset(): void {
    this.#counts.fill(0);
    this.#sum = 0;
    this.#count = 0;
  }
}

/** The `keep` largest of `counts` by value, the rest summed under OTHER (absent when nothing is left over). */
export function capByCount(counts: Map<string, number>, keep: number): Map<string, number> {
  if (counts.size <= keep) return counts;
  const sorted = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  const out = new Map(sorted.slice(0, keep));
  let rest = 0;
  for (const [, n] of sorted.slice(keep)) rest += n;
  out.set(OTHER, (out.get(OTHER) ?? 0) + rest);
  return out;
}

/**
 * Instance counts per (namespace, service) with bounded series: the `maxServices` largest pairs
 * keep their labels; the others are summed per namespace under service="_other", for the
 * `maxNamespaces` namespaces with the most instances left over, and past those under
 * namespace="_other", service="_other". Sums by namespace stay exact up to that second cap.
 */
export function capInstanceSeries(
  pairs: readonly (readonly [ns: string, service: string, count: number])[],
  maxServices: number,
  maxNamespaces: number,
): [ns: string, service: string, count: number][] {
  if (pairs.length <= maxServices) return pairs.map(([a, b, c]) => [a, b, c]);
  const sorted = [...pairs].sort((a, b) => b[2] - a[2] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : 1));
  const out: [string, string, number][] = sorted.slice(0, maxServices).map(([a, b, c]) => [a, b, c]);
  const restByNs = new Map<string, number>();
  for (const [ns, , n] of sorted.slice(maxServices)) restByNs.set(ns, (restByNs.get(ns) ?? 0) + n);
  for (const [ns, n] of capByCount(restByNs, maxNamespaces)) out.push([ns, OTHER, n]);
  return out;
}

interface RegistryTotals {
  index: number;
  instances: [string, string, number][];
  services: Map<string, number>;
  checks: Record<CheckStatus, number>;
  health: Record<Health, number>;
}

export class ServerMetrics {
  readonly registry = new Registry<RegistryContentType>();
  readonly nodeId: string;
  readonly #reader: RegistryReader;
  readonly #now: () => number;
  readonly #maxServices: number;
  readonly #maxNamespaces: number;
  readonly #maxClients: number;

  // Sources attached by the composition root once they exist.
  #raft: (() => RaftStatusView) | undefined;
  #dns: (() => DnsCounters | undefined) | undefined;
  #blockingHeld: (() => number) | undefined;
  #ttlChecks: (() => number) | undefined;
  #ready: (() => boolean) | undefined;

  #totals: RegistryTotals | undefined;
  readonly #peerContact = new Map<string, number>();
  readonly #watchers = new Map<string, number>();
  readonly #clients = new Map<string, number>();
  #lastLeader = '';
  /** Scrapes run one at a time (an OpenMetrics scrape renames counters while it runs). */
  #scraping: Promise<unknown> = Promise.resolve();
  readonly #counterNames = new Map<{ name: string }, string>();

  // Hook-fed series.
  readonly httpRequests: Counter<'path' | 'status'>;
  readonly httpDuration: Histogram<'path'>;
  readonly httpConnectionsOpened: Counter;
  readonly registrations: Counter;
  readonly deregistrations: Counter<'source'>;
  readonly ttlExpiries: Counter;
  readonly checkTransitions: Counter<'status'>;
  readonly electionsStarted: Counter;
  readonly electionsWon: Counter;
  readonly leaderChanges: Counter;
  readonly commitDuration: LeanHistogram;
  readonly fsyncDuration: Histogram;
  readonly appendRtt: Histogram<'peer'>;
  readonly snapshots: Counter<'kind'>;
  readonly snapshotDuration: Histogram;
  readonly snapshotBytes: Gauge;
  readonly dnsLatency: LeanHistogram;

  constructor(opts: MetricsOptions) {
    this.nodeId = opts.nodeId;
    this.#reader = opts.reader;
    this.#now = opts.now ?? Date.now;
    this.#maxServices = opts.maxServiceSeries ?? DEFAULT_MAX_SERVICE_SERIES;
    this.#maxNamespaces = opts.maxNamespaceSeries ?? DEFAULT_MAX_NAMESPACE_SERIES;
    this.#maxClients = opts.maxClientSeries ?? DEFAULT_MAX_CLIENT_SERIES;
    const registers = [this.registry];
    // Read by the collect() functions, whose `this` is the metric.
    const totals = (): RegistryTotals => this.#registryTotals();
    const raft = (): RaftStatusView | undefined => this.#raft?.();
    const dns = (): DnsCounters | undefined => this.#dns?.();
    const ttlChecks = (): number => this.#ttlChecks?.() ?? 0;
    const blockingHeld = (): number => this.#blockingHeld?.() ?? 0;
    const ready = (): boolean => this.#ready?.() ?? false;
    const readerIndex = (): number => this.#reader.index();
    const now = this.#now;
    const nodeId = this.nodeId;
    const peerContact = this.#peerContact;
    const watchers = this.#watchers;
    const clients = this.#clients;
    const maxServices = this.#maxServices;
    const maxNamespaces = this.#maxNamespaces;
    const maxClients = this.#maxClients;

    // ---- registry
    new Gauge({
      name: 'sider_registry_instances_total',
      help: `Service instances per namespace and service (the ${this.#maxServices} largest services; the rest summed under service="${OTHER}").`,
      labelNames: ['namespace', 'service'],
      registers,
      collect() {
        this.reset();
        for (const [namespace, service, n] of totals().instances) this.set({ namespace, service }, n);
      },
    });
    new Gauge({
      name: 'sider_registry_instances_by_health',
      help: 'Service instances by aggregated health (worst check wins).',
      labelNames: ['health'],
      registers,
      collect() {
        const t = totals();
        for (const h of HEALTHS) this.set({ health: h }, t.health[h]);
      },
    });
    new Gauge({
      name: 'sider_registry_checks_total',
      help: 'Health checks by status.',
      labelNames: ['status'],
      registers,
      collect() {
        const t = totals();
        for (const s of CHECK_STATUSES) this.set({ status: s }, t.checks[s]);
      },
    });
    new Gauge({
      name: 'sider_registry_services',
      help: `Services per namespace (the ${this.#maxNamespaces} largest namespaces; the rest summed under namespace="${OTHER}").`,
      labelNames: ['namespace'],
      registers,
      collect() {
        this.reset();
        for (const [namespace, n] of capByCount(totals().services, maxNamespaces)) this.set({ namespace }, n);
      },
    });
    new Gauge({
      name: 'sider_registry_index',
      help: 'Global index: Raft index of the last applied entry that changed the registry.',
      registers,
      collect() {
        this.set(readerIndex());
      },
    });
    this.registrations = new Counter({
      name: 'sider_registry_registrations_total',
      help: 'Registrations applied (new or re-registered instances), counted on the server that received them.',
      registers,
    });
    this.deregistrations = new Counter({
      name: 'sider_registry_deregistrations_total',
      help: 'Instances removed, counted on the server that received the deregistration (source="api") or on the leader (source="critical_timeout": DeregisterCriticalServiceAfter).',
      labelNames: ['source'],
      registers,
    });

    // ---- health checking
    this.ttlExpiries = new Counter({ name: 'sider_health_ttl_expiries_total', help: 'TTL checks turned critical by the leader because their TTL ran out.', registers });
    this.checkTransitions = new Counter({
      name: 'sider_health_check_transitions_total',
      help: 'Check status changes proposed by the leader (TTL renewals, expiries and probes), by new status.',
      labelNames: ['status'],
      registers,
    });
    new Gauge({
      name: 'sider_health_ttl_checks',
      help: "TTL checks in the leader's deadline table (0 on followers).",
      registers,
      collect() {
        this.set(ttlChecks());
      },
    });

    // ---- Raft
    const raftGauge = (name: string, help: string, read: (st: RaftStatusView) => number): void => {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const st = raft();
          if (st) this.set(read(st));
        },
      });
    };
    new Gauge({
      name: 'sider_raft_leader',
      help: 'Whether this node (label node) is the Raft leader: 1 or 0.',
      labelNames: ['node'],
      registers,
      collect() {
        const st = raft();
        this.reset();
        this.set({ node: nodeId }, st?.role === 'leader' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'sider_raft_role',
      help: 'Raft role of this node: 1 for the current role, 0 for the others.',
      labelNames: ['role'],
      registers,
      collect() {
        const st = raft();
        for (const r of ROLES) this.set({ role: r }, st?.role === r ? 1 : 0);
      },
    });
    raftGauge('sider_raft_has_leader', 'Whether this node knows a leader: 1 or 0.', (st) => (st.leader ? 1 : 0));
    raftGauge('sider_raft_voter', 'Whether this node is a voter (0: a learner or not a member).', (st) => (st.membership.voters.includes(st.id) ? 1 : 0));
    raftGauge('sider_raft_term', 'Current Raft term.', (st) => st.term);
    raftGauge('sider_raft_commit_index', 'Highest log index known committed.', (st) => st.commit);
    raftGauge('sider_raft_applied_index', 'Highest log index applied to the registry on this node.', (st) => st.applied);
    raftGauge('sider_raft_last_log_index', 'Index of the last entry in the log.', (st) => st.lastIndex);
    raftGauge('sider_raft_first_log_index', 'Index of the first entry still in the log (older ones are in a snapshot).', (st) => st.firstIndex);
    raftGauge('sider_raft_uncommitted_bytes', 'Bytes of proposed, not yet committed entries (leader).', (st) => st.uncommittedBytes);
    raftGauge('sider_raft_last_contact_seconds', 'Seconds since this node last heard from a leader (0 on the leader).', (st) => st.lastContactMs / 1000);
    new Gauge({
      name: 'sider_raft_members',
      help: 'Members of the Raft configuration by kind.',
      labelNames: ['kind'],
      registers,
      collect() {
        const st = raft();
        if (!st) return;
        this.set({ kind: 'voter' }, st.membership.voters.length);
        this.set({ kind: 'learner' }, st.membership.learners.length);
      },
    });
    new Gauge({
      name: 'sider_raft_peer_match_index',
      help: 'Highest log index known replicated on each peer (on the leader only).',
      labelNames: ['peer'],
      registers,
      collect() {
        this.reset();
        const st = raft();
        if (!st) return;
        for (const [peer, p] of Object.entries(st.peers)) if (peer !== st.id) this.set({ peer }, p.match);
      },
    });
    new Gauge({
      name: 'sider_raft_peer_lag_entries',
      help: "Entries each peer is behind the leader's last log index (on the leader only).",
      labelNames: ['peer'],
      registers,
      collect() {
        this.reset();
        const st = raft();
        if (!st) return;
        for (const [peer, p] of Object.entries(st.peers)) if (peer !== st.id) this.set({ peer }, Math.max(0, st.lastIndex - p.match));
      },
    });
    new Gauge({
      name: 'sider_raft_peer_last_contact_seconds',
      help: 'Seconds since the last Raft message from each member (members heard from since start).',
      labelNames: ['peer'],
      registers,
      collect() {
        this.reset();
        const st = raft();
        if (!st) return;
        const t = now();
        for (const peer of Object.keys(st.membership.addrs)) {
          const at = peerContact.get(peer);
          if (peer !== st.id && at !== undefined) this.set({ peer }, (t - at) / 1000);
        }
      },
    });
    this.electionsStarted = new Counter({ name: 'sider_raft_elections_started_total', help: 'Elections this node started (became candidate after a successful pre-vote).', registers });
    this.electionsWon = new Counter({ name: 'sider_raft_elections_won_total', help: 'Elections this node won (became leader).', registers });
    this.leaderChanges = new Counter({ name: 'sider_raft_leader_changes_total', help: 'Times this node saw a new leader.', registers });
    // Observed once per proposal (per registration on the leader): the lean histogram.
    this.commitDuration = new LeanHistogram(
      'sider_raft_commit_duration_seconds',
      'Proposal to commit-and-apply latency of proposals made on this node (leader).',
      COMMIT_BUCKETS,
    );
    this.registry.registerMetric(this.commitDuration as unknown as Metric);
    this.appendRtt = new Histogram({
      name: 'sider_raft_peer_append_rtt_seconds',
      help: 'Leader: time from sending entries to a follower to its acknowledgement of them (transport both ways and the follower\'s own write).',
      labelNames: ['peer'],
      buckets: FSYNC_BUCKETS,
      registers,
    });
    this.fsyncDuration = new Histogram({
      name: 'sider_raft_fsync_duration_seconds',
      help: 'Duration of each synced write of log entries and hard state (one per batch).',
      buckets: FSYNC_BUCKETS,
      registers,
    });
    this.snapshots = new Counter({
      name: 'sider_raft_snapshots_total',
      help: 'Snapshots taken here (kind="taken") or received from the leader (kind="installed").',
      labelNames: ['kind'],
      registers,
    });
    this.snapshotDuration = new Histogram({ name: 'sider_raft_snapshot_duration_seconds', help: 'Time to serialize and write a snapshot.', buckets: SNAPSHOT_BUCKETS, registers });
    this.snapshotBytes = new Gauge({ name: 'sider_raft_snapshot_size_bytes', help: 'Size of the last snapshot taken or installed.', registers });

    // ---- HTTP
    this.httpRequests = new Counter({
      name: 'sider_http_requests_total',
      help: 'HTTP requests by route template (path) and status; unknown routes under path="unmatched". Blocking queries count when answered (status 499: the client left first).',
      labelNames: ['path', 'status'],
      registers,
    });
    this.httpDuration = new Histogram({
      name: 'sider_http_request_duration_seconds',
      help: 'HTTP request latency by route template, excluding the time blocking queries are held.',
      labelNames: ['path'],
      buckets: HTTP_BUCKETS,
      registers,
    });
    new Gauge({
      name: 'sider_http_blocking_queries_held',
      help: 'Blocking queries currently held on this server.',
      registers,
      collect() {
        this.set(blockingHeld());
      },
    });
    new Gauge({
      name: 'sider_watchers_active',
      help: `Blocking queries held per watched service (service="_catalog": catalog/services, "_namespace": namespace-wide views; past ${this.#maxServices} services summed under "${OTHER}").`,
      labelNames: ['service'],
      registers,
      collect() {
        this.reset();
        for (const [service, n] of capByCount(watchers, maxServices)) this.set({ service }, n);
      },
    });
    new Gauge({
      name: 'sider_http_connections',
      help: `Open HTTP connections per client address (the ${this.#maxClients} clients with the most; the rest summed under client="${OTHER}").`,
      labelNames: ['client'],
      registers,
      collect() {
        this.reset();
        for (const [client, n] of capByCount(clients, maxClients)) this.set({ client }, n);
      },
    });
    this.httpConnectionsOpened = new Counter({ name: 'sider_http_connections_opened_total', help: 'HTTP connections accepted.', registers });
    new Gauge({
      name: 'sider_ready',
      help: 'Whether GET /v1/agent/ready answers 200: 1 or 0.',
      registers,
      collect() {
        this.set(ready() ? 1 : 0);
      },
    });

    // ---- DNS
    const dnsCounter = (name: string, help: string, read: (d: DnsCounters) => number): void => {
      new Counter({
        name,
        help,
        registers,
        collect() {
          const d = dns();
          this.reset();
          if (d) this.inc(read(d));
        },
      });
    };
    const dnsLabelled = (name: string, help: string, label: string, read: (d: DnsCounters) => Record<string, number>): void => {
      new Counter({
        name,
        help,
        labelNames: [label],
        registers,
        collect() {
          const d = dns();
          this.reset();
          if (d) for (const [k, n] of Object.entries(read(d))) this.inc({ [label]: k }, n);
        },
      });
    };
    dnsLabelled('sider_dns_queries_total', 'DNS queries answered, by query type (OTHER: types without their own label).', 'qtype', (d) => d.byType);
    dnsLabelled('sider_dns_responses_total', 'DNS responses by response code.', 'rcode', (d) => d.byRcode);
    dnsLabelled('sider_dns_queries_by_transport_total', 'DNS queries answered by transport.', 'transport', (d) => ({ udp: d.udp, tcp: d.tcp }));
    dnsCounter('sider_dns_truncated_total', 'UDP answers sent truncated (TC set).', (d) => d.truncated);
    dnsCounter('sider_dns_stale_answers_total', 'DNS answers given from local state while out of contact with a leader.', (d) => d.staleNoLeader);
    dnsCounter('sider_dns_dropped_total', 'DNS packets dropped unanswered (responses, runts, unparseable).', (d) => d.dropped);
    dnsCounter('sider_dns_internal_errors_total', 'DNS queries answered SERVFAIL because of an internal error.', (d) => d.internalErrors);
    dnsCounter('sider_dns_cache_hits_total', 'DNS answers served from the encoded-answer cache.', (d) => d.cacheHits);
    dnsCounter('sider_dns_cache_misses_total', 'DNS answers computed and encoded.', (d) => d.cacheMisses);
    this.dnsLatency = new LeanHistogram(
      'sider_dns_request_duration_seconds',
      'Time to answer a parsed DNS query (lookup and encoding; not socket time).',
      DNS_BUCKETS,
    );
    this.registry.registerMetric(this.dnsLatency as unknown as Metric);

    // Every known label value exists from the start, so a rate() over it is defined before its first event.
    for (const source of ['api', 'critical_timeout']) this.deregistrations.inc({ source }, 0);
    for (const status of CHECK_STATUSES) this.checkTransitions.inc({ status }, 0);
    for (const kind of ['taken', 'installed']) this.snapshots.inc({ kind }, 0);

    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    for (const m of this.registry.getMetricsAsArray()) {
      if ((m as unknown as { type?: string }).type === 'counter') this.#counterNames.set(m as unknown as { name: string }, m.name);
    }
  }

  // ---------------------------------------------------------------------------- sources

  /** RaftNode.status. */
  setRaft(status: () => RaftStatusView): void {
    this.#raft = status;
  }

  setDns(stats: () => DnsCounters | undefined): void {
    this.#dns = stats;
  }

  setBlockingHeld(held: () => number): void {
    this.#blockingHeld = held;
  }

  setTtlChecks(count: () => number): void {
    this.#ttlChecks = count;
  }

  setReady(ready: () => boolean): void {
    this.#ready = ready;
  }

  // ---------------------------------------------------------------------------- hooks

  /** Hooks for RaftNodeOptions.observer (called on the driver's path: cheap, never throw). */
  raftObserver(): {
    fsync(ms: number): void;
    committed(ms: number): void;
    roleChanged(role: string): void;
    received(from: string): void;
    appendAcked(peer: string, ms: number): void;
  } {
    return {
      fsync: (ms) => this.fsyncDuration.observe(ms / 1000),
      committed: (ms) => this.commitDuration.observe(ms / 1000),
      appendAcked: (peer, ms) => this.appendRtt.observe({ peer }, ms / 1000),
      roleChanged: (role) => this.roleChanged(role),
      received: (from) => this.peerContact(from),
    };
  }

  /** A Raft message arrived from `peer`. */
  peerContact(peer: string): void {
    this.#peerContact.set(peer, this.#now());
  }

  /** Raft role changed (every transition, from RaftNode's observer). */
  roleChanged(role: string): void {
    if (role === 'candidate') this.electionsStarted.inc();
    else if (role === 'leader') this.electionsWon.inc();
  }

  /** The known leader changed ('' = none known). */
  leaderChanged(leader: string): void {
    if (leader !== '' && leader !== this.#lastLeader) this.leaderChanges.inc();
    if (leader !== '') this.#lastLeader = leader;
  }

  snapshotTaken(bytes: number, ms: number): void {
    this.snapshots.inc({ kind: 'taken' });
    this.snapshotDuration.observe(ms / 1000);
    this.snapshotBytes.set(bytes);
  }

  snapshotInstalled(): void {
    this.snapshots.inc({ kind: 'installed' });
  }

  /** A blocking query on `service` was parked (released with watcherReleased). */
  watcherParked(service: string): void {
    this.#watchers.set(service, (this.#watchers.get(service) ?? 0) + 1);
  }

  watcherReleased(service: string): void {
    const n = (this.#watchers.get(service) ?? 0) - 1;
    if (n > 0) this.#watchers.set(service, n);
    else this.#watchers.delete(service);
  }

  connectionOpened(client: string): void {
    this.httpConnectionsOpened.inc();
    this.#clients.set(client, (this.#clients.get(client) ?? 0) + 1);
  }

  connectionClosed(client: string): void {
    const n = (this.#clients.get(client) ?? 0) - 1;
    if (n > 0) this.#clients.set(client, n);
    else this.#clients.delete(client);
  }

  // ---------------------------------------------------------------------------- exposition

  /**
   * The exposition text and its content type: Prometheus text format 0.0.4, or OpenMetrics 1.0.0
   * when `openMetrics`. Scrapes are serialized: prom-client's OpenMetrics output renames counters
   * (drops `_total`) in place, and the names are put back before the next scrape runs.
   */
  scrape(openMetrics: boolean): Promise<{ contentType: string; body: string }> {
    const run = async (): Promise<{ contentType: string; body: string }> => {
      if (!openMetrics) return { contentType: Registry.PROMETHEUS_CONTENT_TYPE, body: await this.registry.metrics() };
      this.registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
      try {
        return { contentType: Registry.OPENMETRICS_CONTENT_TYPE, body: await this.registry.metrics() };
      } finally {
        this.registry.setContentType(Registry.PROMETHEUS_CONTENT_TYPE);
        for (const [m, name] of this.#counterNames) m.name = name;
      }
    };
    const result = this.#scraping.then(run, run);
    this.#scraping = result.catch(() => {});
    return result;
  }

  // ---------------------------------------------------------------------------- registry totals

  /** Recomputed only when the registry's global index moved since the last scrape. */
  #registryTotals(): RegistryTotals {
    const r = this.#reader;
    const index = r.index();
    if (this.#totals && this.#totals.index === index) return this.#totals;
    const pairs: [string, string, number][] = [];
    const services = new Map<string, number>();
    const checks: Record<CheckStatus, number> = { passing: 0, warning: 0, critical: 0 };
    const health: Record<Health, number> = { passing: 0, warning: 0, critical: 0, maintenance: 0 };
    for (const ns of r.namespaces()) {
      const names = r.services(ns);
      services.set(ns, names.length);
      for (const [name] of names) {
        const entries = r.serviceEntries(ns, name);
        pairs.push([ns, name, entries.length]);
        for (const e of entries) {
          health[e.health]++;
          for (const c of e.checks) checks[c.Status]++;
        }
      }
    }
    this.#totals = { index, instances: capInstanceSeries(pairs, this.#maxServices, this.#maxNamespaces), services, checks, health };
    return this.#totals;
  }
}
