// Server assembly, the one place that wires every layer together (bin/ sits above http/, src/ and
// raft/): the registry state machine on a Raft node (LevelDB, snapshot files, HTTP transport), the
// RegistryService over it, and the HTTP API; bootstrap, join, restart and -force-new-cluster.

import { mkdir } from 'node:fs/promises';
import { join as joinPath } from 'node:path';
import type { Server } from 'node:http';
import { FileSnapshotStore } from '../raft/file-snapshot-store.ts';
import { HttpTransport } from '../raft/http-transport.ts';
import { LevelStorage } from '../raft/level-storage.ts';
import { RaftNode } from '../raft/node.ts';
import { forceNewCluster } from '../raft/recover.ts';
import type { Logger } from '../raft/node.ts';
import { isSiderError, SiderError } from '../raft/errors.ts';
import { createHttpApp, listenHttp } from '../http/app.ts';
import { BlockingQueries } from '../http/blocking.ts';
import { currentRequest, instrumentHttpServer, observability } from '../http/metrics.ts';
import { DnsServer } from '../dns/server.ts';
import { parseDurationMs } from '../http/duration.ts';
import { agentLeave, internalApi, internalRenewFastPath, operatorAuth } from '../http/internal.ts';
import { addFastPath } from '../http/check-routes.ts';
import { formCluster } from './formation.ts';
import { postInternal } from './internal-post.ts';
import { snapshotRoutes } from '../http/snapshot-routes.ts';
import type { ServerConfig } from '../src/config.ts';
import { isWildcard, parseHostPort } from '../src/config.ts';
import { createLogger, logsAt } from '../src/log.ts';
import { IdleGc } from '../src/idle-gc.ts';
import { ServerMetrics } from '../src/metrics.ts';
import { observeHealthProposals, observeRaftEvents, observeWrites } from '../src/observe.ts';
import { Readiness } from '../src/readiness.ts';
import { INTERNAL_JOIN, RaftRegistry } from '../src/raft-registry.ts';
import { REGISTRY_DATA_VERSION, REGISTRY_SNAPSHOT_LOG_RATIO } from '../src/registry/command-codec.ts';
import { LeaderHealth } from '../src/health/leader.ts';
import { INTERNAL_RENEW, RenewalForwarder } from '../src/health/renewals.ts';
import type { CheckRenewer, RenewResult } from '../src/health/renewals.ts';
import { CheckScheduler } from '../src/health/scheduler.ts';
import { RegistryStateMachine } from '../src/registry/state-machine.ts';

export interface SiderServer {
  config: ServerConfig;
  raft: RaftNode;
  registry: RaftRegistry;
  state: RegistryStateMachine;
  /** Health checking on the leader (TTL table, probes, DeregisterCriticalServiceAfter). */
  health: LeaderHealth;
  http: Server;
  /** Bound HTTP address host:port. */
  httpAddr: string;
  /** The DNS server (undefined with `-dns off`) and its bound address host:port ('' when off). */
  dns: DnsServer | undefined;
  dnsAddr: string;
  log: Logger;
  /** Prometheus metrics (GET /metrics) and readiness (GET /v1/agent/ready). */
  metrics: ServerMetrics;
  readiness: Readiness;
  /** Resolves once the server has left the cluster (PUT /v1/agent/leave) and closed: exit then. */
  left: Promise<void>;
  close(): Promise<void>;
  /**
   * SIGTERM/SIGINT: hands leadership to another voter first when this server leads (bounded), then
   * closes. Membership is kept: a rolling restart brings the same server back.
   */
  shutdown(): Promise<void>;
}

/** Asks a member's internal API to add this server; returns the cluster ID. Retries while no leader. */
async function requestJoin(cfg: ServerConfig, via: string, raftAddr: string, log: Logger): Promise<string> {
  const deadline = Date.now() + 60_000;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const { statusCode, text } = await postInternal(cfg.clusterKey, via, INTERNAL_JOIN, { id: cfg.raftId, addr: raftAddr }, 15_000);
      if (statusCode === 200) {
        const v = JSON.parse(text) as { clusterId?: unknown };
        if (typeof v.clusterId === 'string') return v.clusterId;
        last = 'no cluster id in the answer';
      } else {
        last = `HTTP ${statusCode}: ${text.slice(0, 300)}`;
        // Refusals that retrying cannot fix (409, another membership change in progress, can be).
        if (statusCode === 400 || statusCode === 401 || statusCode === 403) break;
      }
    } catch (err) {
      last = (err as Error).message;
    }
    log('warn', 'join attempt failed; retrying', { join: via, error: last });
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new SiderError('SIDER_CONFIG', `cannot join the cluster through ${via}: ${last}`);
}

export async function startServer(cfg: ServerConfig, opts: { log?: Logger } = {}): Promise<SiderServer> {
  const log = opts.log ?? createLogger({ level: cfg.logLevel, format: cfg.logFormat, node: cfg.raftId });
  await mkdir(cfg.raftDir, { recursive: true });
  const raftAddr = cfg.raftAdvertise || cfg.raftBind;
  const storage = new LevelStorage(joinPath(cfg.raftDir, 'raft'));
  const snapshots = new FileSnapshotStore(joinPath(cfg.raftDir, 'snapshots'));

  // A fresh data directory either bootstraps or joins; one with an identity just restarts.
  let clusterId: string | undefined;
  await storage.open();
  const identity = await storage.loadIdentity();
  await storage.close();
  if (cfg.forceNewCluster) {
    if (!identity) {
      throw new SiderError('SIDER_CONFIG', `-force-new-cluster: data directory ${cfg.raftDir} is fresh, there is no Raft state to recover; point -raft-dir at a surviving member's data directory`);
    }
    await recoverAlone(cfg, storage, snapshots, raftAddr, log);
  }
  let bootstrap = cfg.bootstrap && !identity;
  if (!identity && cfg.join) {
    clusterId = await requestJoin(cfg, cfg.join, raftAddr, log);
    log('info', 'joined cluster', { clusterId, via: cfg.join });
  } else if (!identity && (cfg.bootstrapExpect > 0 || cfg.retryJoin.length > 0)) {
    const d = await formCluster(cfg, raftAddr, log, (via) => requestJoin(cfg, via, raftAddr, log));
    if (d.bootstrap) bootstrap = true;
    else {
      clusterId = d.clusterId;
      log('info', 'joined cluster', { clusterId, via: d.via });
    }
  } else if (!identity && !cfg.bootstrap) {
    throw new SiderError('SIDER_CONFIG', `data directory ${cfg.raftDir} is fresh: start with -bootstrap (new cluster), -join host:port or -bootstrap-expect N -retry-join host:port`);
  }

  const state = new RegistryStateMachine();
  const metrics = new ServerMetrics({ nodeId: cfg.raftId, reader: state });
  const raft = await RaftNode.open({
    id: cfg.raftId,
    storage,
    snapshots,
    stateMachine: state,
    ...(bootstrap ? { bootstrap: { addr: raftAddr } } : {}),
    ...(clusterId ? { clusterId } : {}),
    tickMs: cfg.tickMs,
    electionTicks: cfg.electionTicks,
    snapshotLogRatio: REGISTRY_SNAPSHOT_LOG_RATIO,
    log,
    observer: metrics.raftObserver(),
    transport: (cid) =>
      new HttpTransport({
        id: cfg.raftId,
        clusterId: cid,
        listen: cfg.raftBind,
        advertise: raftAddr,
        dataVersion: REGISTRY_DATA_VERSION,
        ...(cfg.clusterKey ? { clusterKey: cfg.clusterKey } : { allowInsecureLoopback: true }),
        log: (level, msg, fields) => log(level, msg, fields),
      }),
  });

  metrics.setRaft(() => raft.status());
  const offObserve = raft.on(observeRaftEvents(metrics, log));
  // Registrations proposed here are applied here without decoding them again (encodeProposal).
  const registry = new RaftRegistry({ raft, reader: state, nodeName: cfg.nodeName, clusterKey: cfg.clusterKey, encode: (cmd) => state.encodeProposal(cmd) });

  // Health checking runs on the leader only; a follower forwards renewals there in batches.
  const health = new LeaderHealth({
    state,
    propose: observeHealthProposals((cmd) => registry.applyOnLeader(cmd, ''), { metrics, log, state }),
    barrier: async () => {
      await raft.readBarrier(5_000);
    },
    durationMs: parseDurationMs,
    graceMs: cfg.ttlFailoverGraceMs,
    enableScriptChecks: cfg.enableScriptChecks,
    scheduler: (onTransition) => new CheckScheduler({ onTransition, allowScripts: cfg.enableScriptChecks, log }),
    log,
  });
  const forwarder = new RenewalForwarder({
    send: async (items) => (await registry.forwardToLeader<{ results: RenewResult[] }>(INTERNAL_RENEW, { items })).results,
  });
  const renewer: CheckRenewer = {
    renew: (ns, checkId, status, output) =>
      isLeader(raft) ? health.renew(ns, checkId, status, output) : forwarder.renew(ns, checkId, status, output),
  };
  const offHealth = raft.on((ev) => {
    if (ev.type === 'leader') {
      if (ev.leader === raft.id) void health.start();
      else health.stop();
    } else if (ev.type === 'fatal') {
      health.stop();
    }
  });
  if (isLeader(raft)) void health.start();
  metrics.setTtlChecks(() => health.ttlChecks);

  // Ready once a ReadIndex barrier confirmed by a leader has been applied here, and while a leader is known.
  const readiness = new Readiness({
    barrier: () => registry.readBarrier('default'),
    knownLeader: () => raft.leader() !== '',
    applied: () => raft.status().applied,
    log,
  });
  readiness.start();
  metrics.setReady(() => readiness.state().ready);

  let resolveLeft!: () => void;
  const left = new Promise<void>((r) => {
    resolveLeft = r;
  });

  const blocking = new BlockingQueries();
  metrics.setBlockingHeld(() => blocking.held);
  // Writes received here are logged and counted here (who, what, index).
  const observed = observeWrites(registry, { metrics, log, who: () => currentRequest()?.remote });
  // currentRequest() is read only for the write log lines' `remote`: no request context when the
  // log drops them (at warn or error).
  const trackWrites = logsAt(log, 'info');
  const app = createHttpApp(observed, {
    datacenter: cfg.datacenter,
    nodeName: cfg.nodeName,
    nodeId: cfg.raftId,
    enableScriptChecks: cfg.enableScriptChecks,
    renewer,
    blocking,
    // 5xx answers and handler errors are logged (the bodies say only "internal error").
    log,
    trackWrites,
  });
  // Ahead of the public routes: request metrics and the metrics/readiness endpoints, the signed
  // internal API, and the signature check on membership changes.
  app.middleware.unshift(
    observability({ metrics, readiness, log, logRequests: cfg.logLevel === 'debug', trackWrites }),
    internalApi({
      registry,
      clusterKey: cfg.clusterKey,
      clusterId: raft.clusterId,
      log,
      renewals: health,
      status: () => ({ id: raft.id, raftAddr, clusterId: raft.clusterId, leader: raft.status().leader }),
    }),
    operatorAuth({ clusterKey: cfg.clusterKey, log }),
    agentLeave({ clusterKey: cfg.clusterKey, log, leave: () => leaveCluster(raft, registry, log), afterLeave: () => void srv.close().then(resolveLeft, resolveLeft) }),
    snapshotRoutes({ service: observed, state, isLeader: () => isLeader(raft), clusterKey: cfg.clusterKey, log }),
  );
  // Forwarded TTL renewals reach the leader's table before Koa (same answers as the route above).
  addFastPath(app, internalRenewFastPath({ clusterKey: cfg.clusterKey, log, renewals: health }));
  const { host, port } = parseHostPort(cfg.http, '-http');
  let http: Server;
  let dns: DnsServer | undefined;
  try {
    dns = await startDns(cfg, state, registry, log, metrics);
    http = await listenHttp(app, host, port);
    instrumentHttpServer(http, metrics, cfg.logLevel === 'debug' ? { logRequests: log } : {});
  } catch (err) {
    await dns?.close();
    readiness.close();
    offObserve();
    offHealth();
    health.close();
    await registry.close();
    await raft.close();
    throw err;
  }
  // Young-generation collections while idle, not in the next burst (a change waking every held
  // query). Started once the server is up: a start that failed leaves no timer behind.
  const idleGc =
    cfg.idleGcMs > 0
      ? new IdleGc({
          intervalMs: cfg.idleGcMs,
          onCollect: (ms, young) => log('debug', 'idle-time young-generation collection', { ms: Math.round(ms * 10) / 10, young: Math.round(young * 100) / 100 }),
        })
      : null;
  idleGc?.start();
  const bound = http.address();
  const httpAddr = typeof bound === 'object' && bound ? `${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}` : cfg.http;
  const advertised = cfg.httpAdvertise || (isWildcard(host) ? `127.0.0.1:${port}` : httpAddr);

  // Every server records where its HTTP API is, so followers can forward writes to the leader.
  let publishing = false;
  let closed = false;
  const publish = async (): Promise<void> => {
    if (publishing || closed) return;
    publishing = true;
    try {
      for (let attempt = 0; !closed; attempt++) {
        const mine = state.servers().find((s) => s.ID === cfg.raftId);
        if (mine && mine.HTTPAddr === advertised && mine.RaftAddr === raftAddr) return;
        try {
          await registry.write({ type: 'server', server: { ID: cfg.raftId, HTTPAddr: advertised, RaftAddr: raftAddr }, now: 0 });
          log('info', 'published server address', { http: advertised, raft: raftAddr });
          return;
        } catch (err) {
          if (attempt % 10 === 0) log('debug', 'cannot publish server address yet', { error: (err as Error).message });
          await new Promise((r) => setTimeout(r, Math.min(2000, 100 * (attempt + 1))));
        }
      }
    } finally {
      publishing = false;
    }
  };
  const offLeader = raft.on((ev) => {
    if (ev.type === 'leader' && ev.leader) void publish();
  });
  void publish();

  log('info', 'sider server started', { http: httpAddr, raft: raftAddr, dir: cfg.raftDir, clusterId: raft.clusterId, bootstrapped: bootstrap });
  let closing: Promise<void> | undefined;
  const srv: SiderServer = {
    config: cfg,
    raft,
    registry,
    state,
    health,
    http,
    httpAddr,
    dns,
    dnsAddr: dns?.address ?? '',
    log,
    metrics,
    readiness,
    left,
    close() {
      closing ??= closeAll();
      return closing;
    },
    async shutdown() {
      await handOffLeadership(raft, log).catch((err: unknown) => log('warn', 'shutdown: leadership transfer failed', { error: (err as Error).message }));
      await srv.close();
    },
  };
  const closeAll = async (): Promise<void> => {
    closed = true;
    idleGc?.stop();
    readiness.close();
    await dns?.close();
    offLeader();
    offHealth();
    offObserve();
    health.close();
    http.closeAllConnections();
    await new Promise<void>((r) => http.close(() => r()));
    await registry.close();
    await raft.close();
    log('info', 'sider server stopped', {});
  };
  return srv;
}

/**
 * -force-new-cluster: rewrites the data directory before the node starts (raft/recover.ts) and says
 * loudly what it kept. Only this start is affected: the rewrite is what later starts find.
 */
async function recoverAlone(cfg: ServerConfig, storage: LevelStorage, snapshots: FileSnapshotStore, raftAddr: string, log: Logger): Promise<void> {
  const r = await forceNewCluster({ storage, snapshots, id: cfg.raftId });
  if (!r.rewritten) {
    log('warn', 'force-new-cluster: this server already is the only member; nothing rewritten, cluster ID kept. Remove -force-new-cluster', {
      clusterId: r.clusterId,
      commitIndex: r.commit,
    });
    return;
  }
  log('warn', 'FORCE-NEW-CLUSTER (UNSAFE): this server is now the only voter of a new cluster; committed writes it had not received are lost. Remove -force-new-cluster before the next start, and never restart the old members on their data', {
    previousClusterId: r.previousClusterId,
    clusterId: r.clusterId,
    snapshotIndex: r.snapshotIndex,
    storedCommitIndex: r.storedCommit,
    keptThroughIndex: r.lastIndex,
    keptPastStoredCommit: r.keptPastStoredCommit,
    entriesDiscarded: 0,
    commitIndex: r.commit,
    term: r.term,
    previousVoters: r.previous.voters,
    previousLearners: r.previous.learners,
    removed: r.changes.filter((c) => c.op === 'remove').map((c) => c.id),
    voters: r.membership.voters,
  });
  const recorded = r.membership.addrs[cfg.raftId];
  if (recorded !== undefined && recorded !== raftAddr) {
    log('warn', 'force-new-cluster: the configuration keeps this server\'s recorded Raft address, not -raft-advertise/-raft-bind; servers that join will use the recorded one', {
      recorded,
      given: raftAddr,
    });
  }
}

function isLeader(raft: RaftNode): boolean {
  return raft.leader() === raft.id;
}

/** If this server leads a cluster with other voters, hands leadership to the most caught-up one; the new leader's ID ('' when not the leader). */
async function handOffLeadership(raft: LeavingRaft, log: Logger, deadline = Date.now() + 3_000): Promise<string> {
  const st = raft.status();
  if (st.leader !== raft.id) return '';
  const others = st.membership.voters.filter((v) => v !== raft.id);
  // The most caught-up voter first: it can take over at once.
  others.sort((a, b) => (st.peers[b]?.match ?? 0) - (st.peers[a]?.match ?? 0));
  for (const to of others) {
    if (Date.now() >= deadline) break;
    try {
      await raft.transferLeadership(to, Math.max(100, Math.min(5_000, deadline - Date.now())));
      log('info', 'leadership handed off', { to });
      return to;
    } catch (err) {
      log('warn', 'leadership transfer failed', { to, error: (err as Error).message });
    }
  }
  throw new SiderError('SIDER_TIMEOUT', 'could not hand leadership to another voter', { status: 503 });
}

/** Leaving for good takes at most this long; past it the server answers an error and keeps running. */
const LEAVE_TIMEOUT_MS = 10_000;
/** Between two requests for this server's removal that a leader refused for now. */
const LEAVE_RETRY_MS = 50;

/** What leaving uses of the Raft node and of the registry (a test hands in its own). */
export type LeavingRaft = Pick<RaftNode, 'id' | 'status' | 'transferLeadership'>;
export type LeavingRegistry = Pick<RaftRegistry, 'removeServer'>;

/**
 * Refusals of a removal that come before anything is proposed, and pass: a leader just elected
 * (the hand-off makes one) takes no membership change until it has committed an entry of its
 * term, nor one while another is pending; leadership may also move meanwhile.
 */
const LEAVE_RETRYABLE = new Set(['SIDER_CONF_CHANGE_PENDING', 'SIDER_NOT_LEADER', 'SIDER_NO_LEADER', 'SIDER_TRANSFER_IN_PROGRESS']);

/**
 * PUT /v1/agent/leave: hands leadership to another voter if this server leads, waits for a new
 * leader, and has it remove this server from the configuration, asking again (until the deadline)
 * while the leader refuses for now.
 */
export async function leaveCluster(raft: LeavingRaft, registry: LeavingRegistry, log: Logger, timeoutMs = LEAVE_TIMEOUT_MS): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  const st = raft.status();
  const others = st.membership.voters.filter((v) => v !== raft.id);
  if (st.membership.voters.includes(raft.id) && others.length === 0) {
    throw new SiderError('SIDER_CONF_CHANGE_INVALID', 'the only voter cannot leave its cluster; stop it instead', { status: 409 });
  }
  log('info', 'leaving the cluster', { leader: st.leader, voters: st.membership.voters });
  const transferredTo = await handOffLeadership(raft, log, deadline - 2_000);
  for (let leader = raft.status().leader; leader === '' || leader === raft.id; leader = raft.status().leader) {
    if (Date.now() > deadline) throw new SiderError('SIDER_TIMEOUT', 'leave: no other leader; still a member', { status: 503 });
    await new Promise((r) => setTimeout(r, 20));
  }
  for (let attempt = 1; ; attempt++) {
    try {
      await registry.removeServer(raft.id);
      break;
    } catch (err) {
      if (!isSiderError(err) || !LEAVE_RETRYABLE.has(err.code) || Date.now() + LEAVE_RETRY_MS > deadline) throw err;
      // A removal answered with an error may still have been made (a leader that fails
      // over before answering): no longer a member is a leave done.
      if (!isMember(raft)) break;
      log('debug', 'leave: removal refused for now; asking again', { attempt, code: err.code });
      await new Promise((r) => setTimeout(r, LEAVE_RETRY_MS));
    }
  }
  log('info', 'left the cluster', { transferredTo, leader: raft.status().leader });
  return { id: raft.id, transferredTo };
}

function isMember(raft: LeavingRaft): boolean {
  const m = raft.status().membership;
  return m.voters.includes(raft.id) || m.learners.includes(raft.id);
}

/** The DNS server of `-dns` (none with `-dns off`): answers from this node's local state (DESIGN §7). */
async function startDns(cfg: ServerConfig, state: RegistryStateMachine, registry: RaftRegistry, log: Logger, metrics: ServerMetrics): Promise<DnsServer | undefined> {
  if (cfg.dns === '') return undefined;
  const { host, port } = parseHostPort(cfg.dns, '-dns');
  let dns: DnsServer;
  try {
    dns = await DnsServer.listen(state, {
      host,
      port,
      zone: cfg.dnsZone,
      ttl: cfg.dnsTtl,
      onlyPassing: cfg.dnsOnlyPassing,
      consulDomain: cfg.dnsConsulDomain,
      // Constant for the process, so cached negative answers stay valid; nothing transfers the zone.
      serial: Math.floor(Date.now() / 1000),
      nsAddresses: isWildcard(host) ? [] : [host],
      nodeName: cfg.nodeName,
      nodeId: cfg.raftId,
      leaderContact: () => registry.readMeta(),
      // Out of contact: no leader heard from for longer than the longest election timeout.
      staleAfterMs: 2 * cfg.electionTicks * cfg.tickMs,
      observeLatency: (s) => metrics.dnsLatency.observe(s),
      log,
    });
  } catch (err) {
    throw new SiderError('SIDER_CONFIG', `-dns ${cfg.dns}: cannot listen: ${(err as Error).message}`, { cause: err });
  }
  log('info', 'dns server started', { dns: dns.address, zone: cfg.dnsZone });
  const stats = dns.stats;
  metrics.setDns(() => stats);
  return dns;
}
