// The driver: runs the pure core against real time, durable storage, snapshot files, a transport
// and the application's state machine, and turns proposals and reads into promises.

import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { RaftCore } from './core.ts';
import type { CoreStatus } from './core.ts';
import { encodeConfChange } from './codec.ts';
import { SiderError, invariant } from './errors.ts';
import { afterWrite, mustSync, sendableDuringWrite, splitMessages } from './persist-rules.ts';
import type { DurableVote } from './persist-rules.ts';
import type { RaftStorage, SnapshotStore, StateMachine, Transport, TransportReport } from './ports.ts';
import type { ConfChange, Entry, HardState, Membership, Message, NodeId, ReadState, Ready, Snapshot, SnapshotMeta } from './types.ts';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type Logger = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

/** Optional instrumentation (metrics). Called synchronously on the driver's path: must be cheap and not throw. */
export interface RaftObserver {
  /** A synced write of entries and hard state took `ms`. */
  fsync?(ms: number): void;
  /** A proposal made on this node was committed and applied `ms` after it was proposed. */
  committed?(ms: number): void;
  /** The role changed (every transition, including to preCandidate and candidate). */
  roleChanged?(role: string, term: number): void;
  /** A message from `from` was delivered. */
  received?(from: NodeId): void;
  /**
   * Leader: follower `peer` acknowledged an append with entries `ms` after this node sent it (the
   * transport both ways and the follower's own write). Each append sent is reported once.
   */
  appendAcked?(peer: NodeId, ms: number): void;
}

/** Appends awaiting acknowledgement remembered per follower for appendAcked (the oldest are dropped). */
const MAX_TIMED_APPENDS = 64;

export interface RaftNodeOptions {
  id: NodeId;
  storage: RaftStorage;
  snapshots: SnapshotStore;
  /** Built once the cluster ID is known (read from the data directory, or made at bootstrap). */
  transport: (clusterId: string) => Transport;
  stateMachine: StateMachine;
  /** Fresh data directory: start a new cluster with this node as its only voter at `addr`. */
  bootstrap?: { addr: string };
  /**
   * The cluster this node belongs to. A fresh data directory joining an existing cluster must be
   * given it; a data directory of another cluster is refused.
   */
  clusterId?: string;
  tickMs?: number;
  heartbeatTicks?: number;
  electionTicks?: number;
  /** Take a snapshot every this many applied entries (DESIGN: 8192), at the earliest. */
  snapshotThreshold?: number;
  /**
   * And only once the entries applied since the last snapshot hold at least this many times its
   * size in bytes (default 1; 0 = count entries only). Encoding a snapshot costs in proportion to
   * the state, so a fixed entry count makes the cost per entry grow with the state; this keeps it
   * constant, while the log kept in memory and replayed at start stays within a multiple of the
   * state's encoded size.
   */
  snapshotLogRatio?: number;
  /**
   * Each snapshot waits for its entry and byte thresholds times a factor drawn in [1, 1 + this)
   * (default 0.5; 0 = exactly the thresholds), so that the servers of a cluster, which apply the
   * same log, do not all encode and write their snapshots at the same moment (as hashicorp/raft
   * staggers its snapshot checks).
   */
  snapshotJitter?: number;
  /** Entries kept behind a snapshot for slow followers. */
  trailingEntries?: number;
  /** How often to check whether a smaller snapshot is due (entries ≥ snapshotTimerMinEntries). */
  snapshotCheckMs?: number;
  snapshotTimerMinEntries?: number;
  maxUncommittedBytes?: number;
  maxEntriesPerMsg?: number;
  maxBytesPerMsg?: number;
  /** Bound on proposals waiting for commit on this node. */
  maxPendingProposals?: number;
  random?: () => number;
  log?: Logger;
  observer?: RaftObserver;
}

export interface ProposeResult {
  index: number;
  /** What the state machine's apply() returned. */
  result: unknown;
}

interface PendingProposal {
  term: number;
  /** performance.now() at propose. */
  at: number;
  resolve: (r: ProposeResult) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

interface PendingRead {
  resolve: (index: number) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  index: number;
}

export class RaftNode {
  readonly id: NodeId;
  readonly clusterId: string;
  #opts: RaftNodeOptions;
  #core: RaftCore;
  #storage: RaftStorage;
  #snapshots: SnapshotStore;
  #transport: Transport;
  #sm: StateMachine;
  #log: Logger;

  #proposals = new Map<number, PendingProposal>();
  #readCtx = 0;
  #reads = new Map<number, PendingRead>();
  /** Reads whose index is known, waiting for apply (ordered by index). */
  #waitingReads: PendingRead[] = [];
  #applied: number;
  #appliedWaiters: { index: number; resolve: () => void }[] = [];

  #latestSnapshot: Snapshot | null;
  #lastSnapIndex: number;
  /** Bytes of the data of entries applied after #lastSnapIndex. */
  #bytesSinceSnap = 0;
  /** This snapshot's threshold factor (snapshotJitter), drawn after each snapshot. */
  #snapFactor = 1;
  /** Encoded size of the latest snapshot. */
  #lastSnapBytes: number;
  #snapshotting = false;
  #lastLeader: NodeId = '';
  #durable: DurableVote;
  /** The latest commit-only hard state, not written yet (it goes with the next synced batch). */
  #pendingHard: HardState | null = null;
  #lastContact = Date.now();
  /** Leader, per follower: [last index, sent at] of each append with entries not yet acknowledged. */
  #timedAppends = new Map<NodeId, [number, number][]>();

  #running = false;
  #looping = false;
  /** A Ready's entries are being written (synced); see #takeDuringWrite. */
  #writing = false;
  #again = false;
  /** The pending #readRoundSoon. */
  #roundImmediate: NodeJS.Immediate | null = null;
  #fatal: Error | null = null;
  #tickTimer: NodeJS.Timeout | null = null;
  #snapTimer: NodeJS.Timeout | null = null;
  #listeners = new Set<(ev: RaftEvent) => void>();

  private constructor(
    opts: RaftNodeOptions,
    clusterId: string,
    core: RaftCore,
    snapshot: Snapshot | null,
    transport: Transport,
  ) {
    this.id = opts.id;
    this.clusterId = clusterId;
    this.#opts = opts;
    this.#core = core;
    this.#storage = opts.storage;
    this.#snapshots = opts.snapshots;
    this.#sm = opts.stateMachine;
    this.#transport = transport;
    this.#log = opts.log ?? (() => {});
    this.#latestSnapshot = snapshot;
    this.#lastSnapIndex = snapshot?.meta.index ?? 0;
    this.#lastSnapBytes = snapshot?.data.length ?? 0;
    this.#drawSnapFactor();
    this.#applied = this.#lastSnapIndex;
    const st = core.status();
    this.#durable = { term: st.term, vote: st.vote };
  }

  /** Opens the data directory, checks its identity, restores state and starts the node. */
  static async open(opts: RaftNodeOptions): Promise<RaftNode> {
    const { storage, snapshots } = opts;
    await storage.open();
    try {
      let identity = await storage.loadIdentity();
      if (identity) {
        if (identity.nodeId !== opts.id) {
          throw new SiderError('SIDER_CONFIG', `data directory belongs to node ${JSON.stringify(identity.nodeId)}, not ${JSON.stringify(opts.id)}`);
        }
        if (opts.clusterId && opts.clusterId !== identity.clusterId) {
          throw new SiderError(
            'SIDER_FOREIGN_CLUSTER',
            `data directory belongs to cluster ${identity.clusterId}, not ${opts.clusterId}; refusing to start`,
          );
        }
      } else if (opts.bootstrap) {
        identity = { clusterId: opts.clusterId ?? randomUUID(), nodeId: opts.id };
        await storage.saveIdentity(identity);
        const cc: ConfChange = { op: 'bootstrap', id: opts.id, addr: opts.bootstrap.addr };
        const first: Entry = { index: 1, term: 1, type: 'conf', rid: '', data: encodeConfChange(cc) };
        await storage.save({ term: 1, vote: '', commit: 1 }, [first]);
        opts.log?.('info', 'raft: bootstrapped a new cluster', { clusterId: identity.clusterId, node: opts.id });
      } else if (opts.clusterId) {
        identity = { clusterId: opts.clusterId, nodeId: opts.id };
        await storage.saveIdentity(identity);
      } else {
        throw new SiderError('SIDER_CONFIG', 'fresh data directory: bootstrap a new cluster or join an existing one');
      }

      const snapshot = await snapshots.latest();
      if (snapshot) opts.stateMachine.restore(snapshot.data, snapshot.meta);
      const hardState = await storage.loadHardState();
      const first = storage.firstIndex();
      const last = storage.lastIndex();
      const from = Math.max(first, (snapshot?.meta.index ?? 0) + 1);
      const entries = last >= from && first > 0 ? await storage.loadEntries(from, last) : [];
      if (snapshot && entries.length && entries[0]!.index !== snapshot.meta.index + 1) {
        throw new SiderError('SIDER_CORRUPT_STORE', `log starts at ${entries[0]!.index} but the snapshot ends at ${snapshot.meta.index}`);
      }
      if (!snapshot && entries.length && entries[0]!.index !== 1) {
        throw new SiderError('SIDER_CORRUPT_STORE', `log starts at ${entries[0]!.index} and there is no snapshot`);
      }
      const core = new RaftCore(
        {
          id: opts.id,
          random: opts.random ?? Math.random, // only spreads election timeouts
          heartbeatTicks: opts.heartbeatTicks ?? 1,
          electionTicks: opts.electionTicks ?? 10,
          maxUncommittedBytes: opts.maxUncommittedBytes,
          maxEntriesPerMsg: opts.maxEntriesPerMsg,
          maxBytesPerMsg: opts.maxBytesPerMsg,
        },
        { hardState, snapshot: snapshot?.meta ?? null, entries },
      );
      const transport = opts.transport(identity.clusterId);
      const node = new RaftNode(opts, identity.clusterId, core, snapshot, transport);
      await node.#start();
      return node;
    } catch (err) {
      await storage.close().catch(() => {});
      throw err;
    }
  }

  async #start(): Promise<void> {
    this.#running = true;
    await this.#transport.start(
      (m) => this.#deliver(m),
      (r) => this.#report(r),
    );
    this.#setPeers(this.#core.membership());
    const tickMs = this.#opts.tickMs ?? 100;
    this.#tickTimer = setInterval(() => {
      this.#core.tick();
      this.#kick();
    }, tickMs);
    const checkMs = this.#opts.snapshotCheckMs ?? 60_000;
    this.#snapTimer = setInterval(() => {
      if (this.#applied - this.#lastSnapIndex >= (this.#opts.snapshotTimerMinEntries ?? 1024)) this.#takeSnapshot();
    }, checkMs);
    this.#snapTimer.unref();
    this.#kick();
  }

  // ---- public API -----------------------------------------------------------------------------

  /**
   * Proposes `data`; resolves with the apply result once committed and applied here. Rejects with
   * SIDER_NOT_LEADER / SIDER_NO_LEADER (detail.leader, detail.leaderAddr) on a follower, or with
   * SIDER_TIMEOUT when the outcome is unknown (the entry may still commit later).
   */
  propose(data: Uint8Array, rid = '', timeoutMs = 10_000): Promise<ProposeResult> {
    this.#checkRunning();
    if (this.#proposals.size >= (this.#opts.maxPendingProposals ?? 100_000)) {
      return Promise.reject(new SiderError('SIDER_TOO_MANY_UNCOMMITTED', 'too many proposals waiting for commit'));
    }
    let pos: { index: number; term: number };
    try {
      pos = this.#core.propose(data, rid);
    } catch (err) {
      return Promise.reject(this.#withLeaderAddr(err));
    }
    this.#kick();
    return this.#track(pos, timeoutMs);
  }

  #track(pos: { index: number; term: number }, timeoutMs: number): Promise<ProposeResult> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#proposals.delete(pos.index);
        reject(new SiderError('SIDER_TIMEOUT', `proposal at index ${pos.index} not committed within ${timeoutMs} ms; it may still be applied`));
      }, timeoutMs);
      this.#proposals.set(pos.index, { term: pos.term, at: performance.now(), resolve, reject, timer });
    });
  }

  /**
   * Linearizable read barrier (ReadIndex): resolves with an index once this node has applied
   * everything committed before the call; the caller then reads its state machine.
   */
  readBarrier(timeoutMs = 5_000): Promise<number> {
    this.#checkRunning();
    const ctx = ++this.#readCtx;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#reads.delete(ctx);
        this.#waitingReads = this.#waitingReads.filter((r) => r !== pending);
        reject(new SiderError('SIDER_TIMEOUT', `read index not confirmed within ${timeoutMs} ms`));
      }, timeoutMs);
      const pending: PendingRead = { resolve, reject, timer, index: 0 };
      this.#reads.set(ctx, pending);
      try {
        this.#core.readIndex(ctx);
      } catch (err) {
        clearTimeout(timer);
        this.#reads.delete(ctx);
        reject(this.#withLeaderAddr(err));
        return;
      }
      // Neither a follower's question to the leader nor, on a leader, the read's quorum round need
      // wait for this node's write in progress.
      if (this.#writing) {
        this.#sendEarly();
        this.#readRoundSoon();
      }
      this.#kick();
    });
  }

  /** Adds a server as a learner; the leader promotes it once it has caught up. Leader only. */
  async addServer(id: NodeId, addr: string, timeoutMs = 10_000): Promise<void> {
    await this.#confChange({ op: 'addLearner', id, addr }, timeoutMs);
  }

  /** Removes a server (voter or learner). Leader only. */
  async removeServer(id: NodeId, timeoutMs = 10_000): Promise<void> {
    await this.#confChange({ op: 'remove', id }, timeoutMs);
  }

  async #confChange(cc: ConfChange, timeoutMs: number): Promise<void> {
    this.#checkRunning();
    let pos: { index: number; term: number };
    try {
      pos = this.#core.proposeConfChange(cc);
    } catch (err) {
      throw this.#withLeaderAddr(err);
    }
    this.#kick();
    await this.#track(pos, timeoutMs);
  }

  /** Hands leadership to `to` and waits until someone else leads (or the transfer times out). */
  async transferLeadership(to: NodeId, timeoutMs = 5_000): Promise<void> {
    this.#checkRunning();
    try {
      this.#core.transferLeadership(to);
    } catch (err) {
      throw this.#withLeaderAddr(err);
    }
    this.#kick();
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const st = this.#core.status();
      if (st.role !== 'leader') return;
      if (!st.leadTransferee) throw new SiderError('SIDER_TIMEOUT', `leadership transfer to ${to} was aborted`);
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new SiderError('SIDER_TIMEOUT', `leadership transfer to ${to} did not finish within ${timeoutMs} ms`);
  }

  /** Resolves once this node has applied `index`. */
  waitApplied(index: number): Promise<void> {
    if (this.#applied >= index) return Promise.resolve();
    return new Promise((resolve) => this.#appliedWaiters.push({ index, resolve }));
  }

  status(): CoreStatus & { applied: number; clusterId: string; lastContactMs: number } {
    const st = this.#core.status();
    return {
      ...st,
      applied: this.#applied,
      clusterId: this.clusterId,
      lastContactMs: this.lastContactMs(),
    };
  }

  /** The known leader's ID ('' when none): status().leader, cheaply (read on every request). */
  leader(): NodeId {
    return this.#core.leader();
  }

  /** Milliseconds since the leader was last heard from (0 on the leader itself). */
  lastContactMs(): number {
    return this.#core.leader() === this.id ? 0 : Date.now() - this.#lastContact;
  }

  /** Raft address of the current leader ('' when unknown). */
  leaderAddr(): string {
    const leader = this.#core.leader();
    return leader ? (this.#core.membership().addrs[leader] ?? '') : '';
  }

  on(listener: (ev: RaftEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Stops timers and the transport, fails what is pending, closes the storage. */
  async close(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    if (this.#tickTimer) clearInterval(this.#tickTimer);
    if (this.#snapTimer) clearInterval(this.#snapTimer);
    if (this.#roundImmediate) clearImmediate(this.#roundImmediate);
    this.#roundImmediate = null;
    const stopped = new SiderError('SIDER_STOPPED', 'raft node is shutting down');
    for (const p of this.#proposals.values()) {
      clearTimeout(p.timer);
      p.reject(stopped);
    }
    this.#proposals.clear();
    for (const r of this.#reads.values()) {
      clearTimeout(r.timer);
      r.reject(stopped);
    }
    this.#reads.clear();
    this.#waitingReads = [];
    await this.#transport.close();
    while (this.#looping || this.#snapshotting) await new Promise((r) => setTimeout(r, 5));
    if (this.#pendingHard && !this.#fatal) {
      // A clean stop records how far the log was known committed (a restart applies that much at once).
      await this.#storage.save(this.#pendingHard, []).catch(() => {});
      this.#pendingHard = null;
    }
    await this.#storage.close();
  }

  // ---- the loop ---------------------------------------------------------------------------------

  #checkRunning(): void {
    if (this.#fatal) throw new SiderError('SIDER_STOPPED', `raft node stopped after a fatal error: ${this.#fatal.message}`);
    if (!this.#running) throw new SiderError('SIDER_STOPPED', 'raft node is not running');
  }

  #withLeaderAddr(err: unknown): unknown {
    if (err instanceof SiderError && (err.code === 'SIDER_NOT_LEADER' || err.code === 'SIDER_NO_LEADER')) {
      err.detail.leaderAddr = this.leaderAddr();
    }
    return err;
  }

  #deliver(m: Message): void {
    if (!this.#running) return;
    if (m.type === 'app' || m.type === 'heartbeat' || m.type === 'snap') this.#lastContact = Date.now();
    this.#opts.observer?.received?.(m.from);
    if (m.type === 'appResp') this.#appendAnswered(m);
    this.#core.step(m);
    if (this.#writing) {
      // A follower's read asked of this leader: its round need not wait for the write either.
      if (m.type === 'readIndex') this.#readRoundSoon();
      if (!this.#takeDuringWrite()) return;
    }
    this.#kick();
  }

  #report(r: TransportReport): void {
    if (!this.#running) return;
    if (r.kind === 'unreachable') this.#core.reportUnreachable(r.to);
    else this.#core.reportSnapshot(r.to, r.ok);
    this.#kick();
  }

  /** Runs the Ready loop soon; calls while it runs make it go round again (group commit). */
  #kick(): void {
    if (this.#looping) {
      this.#again = true;
      return;
    }
    if (!this.#running) return;
    this.#looping = true;
    // At the end of this event-loop turn rather than at once: everything the requests and peer
    // messages already waiting in this turn propose lands in the same Ready (one fsync, one append
    // per follower) instead of the first one starting a write on its own.
    setImmediate(() => {
      this.#loop().catch((err: unknown) => this.#die(err));
    });
  }

  async #loop(): Promise<void> {
    try {
      do {
        this.#again = false;
        while (this.#running && this.#core.hasReady()) {
          const rd = this.#core.ready();
          await this.#handleReady(rd);
          // Same between Readys: let the I/O that arrived during the write reach the core first.
          if (rd.entries.length > 0 && this.#core.hasReady()) await new Promise<void>((resolve) => setImmediate(resolve));
        }
      } while (this.#again && this.#running);
    } finally {
      this.#looping = false;
    }
  }

  async #handleReady(rd: Ready): Promise<void> {
    // A leader's appends and heartbeats may leave while its own write is in progress.
    const { early, late } = splitMessages(rd, this.#durable);
    for (const m of early) this.#send(m);
    // 1. A snapshot from the leader replaces state wholesale.
    if (rd.snapshot) await this.#installSnapshot(rd.snapshot);
    // 2. Apply what is committed before this Ready's own write, not after it (as etcd does): a
    //    committed entry is durable on a quorum and final, so applying it needs nothing from the
    //    local write, and the proposers and forwarded writes waiting for it are not held up by an
    //    fsync of newer, unrelated entries. A crash before the write loses nothing: the state is
    //    rebuilt from the snapshot and log, and the leader sends the entries again. A snapshot is
    //    only taken after the write (below), so none covers entries this node does not hold yet.
    for (const e of rd.committed) this.#apply(e);
    //    Reads whose index a quorum confirmed likewise need nothing from the write: each is answered
    //    once its index is applied.
    for (const rs of rd.readStates) this.#readConfirmed(rs);
    this.#releaseReads();
    // 3. Entries and hard state: one synced batch (everything proposed meanwhile rides along in
    //    the next one). A hard state that moved only the commit index need not be durable (it is
    //    recovered from the log, persist-rules.ts): it is not written on its own but with the next
    //    batch that has to be synced anyway, which saves a LevelDB write per commit advance.
    if (rd.entries.length || rd.hardState) {
      const sync = mustSync(rd, this.#durable);
      if (sync) {
        const t0 = performance.now();
        // While the write is in progress, what a message commits is applied, and the reads it
        // confirms answered, at once (see #takeDuringWrite); not while a snapshot from the
        // leader is being installed.
        this.#writing = !rd.snapshot;
        try {
          await this.#storage.save(rd.hardState ?? this.#pendingHard, rd.entries);
        } finally {
          this.#writing = false;
        }
        this.#opts.observer?.fsync?.(performance.now() - t0);
        this.#pendingHard = null;
        this.#durable = afterWrite(rd, this.#durable, true);
      } else {
        this.#pendingHard = rd.hardState;
      }
    }
    // 4. Only now may anything that depends on it leave.
    for (const m of late) this.#send(m);
    if (rd.membership) this.#setPeers(rd.membership);
    if (rd.softState) this.#onSoftState(rd.softState.leader, rd.softState.role);
    // 5. Fail the reads the core gave up on. (Confirmed reads were answered in step 2 or, once
    //    applied, by #takeDuringWrite: nothing is applied after the write.)
    for (const ctx of rd.droppedReads) {
      const r = this.#reads.get(ctx);
      if (!r) continue;
      this.#reads.delete(ctx);
      clearTimeout(r.timer);
      r.reject(this.#withLeaderAddr(new SiderError('SIDER_NO_LEADER', 'leadership changed while confirming a read; retry')) as Error);
    }
    this.#core.advance(rd);
    if (this.#snapshotDue()) this.#takeSnapshot();
  }

  #send(m: Message): void {
    if (m.type === 'app' && m.entries.length > 0 && this.#opts.observer?.appendAcked) {
      let sent = this.#timedAppends.get(m.to);
      if (!sent) this.#timedAppends.set(m.to, (sent = []));
      if (sent.length === MAX_TIMED_APPENDS) sent.shift();
      sent.push([m.entries[m.entries.length - 1]!.index, performance.now()]);
    }
    if (m.type === 'snap') {
      const snap = this.#latestSnapshot;
      if (!snap) {
        this.#core.reportSnapshot(m.to, false);
        return;
      }
      this.#transport.send({ ...m, snapshot: snap });
      return;
    }
    this.#transport.send(m);
  }

  /** Reports the appends an acknowledgement covers; a refusal forgets the follower's (they are sent again). */
  #appendAnswered(m: Message): void {
    const sent = this.#timedAppends.get(m.from);
    if (!sent) return;
    if (m.reject) {
      this.#timedAppends.delete(m.from);
      return;
    }
    const now = performance.now();
    let n = 0;
    while (n < sent.length && sent[n]![0] <= m.index) this.#opts.observer?.appendAcked?.(m.from, now - sent[n++]![1]);
    if (n > 0) sent.splice(0, n);
  }

  #apply(e: Entry): void {
    let result: unknown = undefined;
    if (e.type === 'normal') result = this.#sm.apply(e);
    if (e.type === 'conf') this.#emit({ type: 'membership', membership: this.#core.membershipAt(e.index), index: e.index });
    this.#applied = e.index;
    this.#bytesSinceSnap += e.data.length;
    const p = this.#proposals.get(e.index);
    if (p) {
      this.#proposals.delete(e.index);
      clearTimeout(p.timer);
      if (p.term === e.term) {
        this.#opts.observer?.committed?.(performance.now() - p.at);
        p.resolve({ index: e.index, result });
      }
      else p.reject(new SiderError('SIDER_PROPOSAL_DROPPED', `proposal at index ${e.index} was replaced after a leader change; retry`));
    }
    if (this.#appliedWaiters.length) {
      const due = this.#appliedWaiters.filter((w) => w.index <= e.index);
      if (due.length) {
        this.#appliedWaiters = this.#appliedWaiters.filter((w) => w.index > e.index);
        for (const w of due) w.resolve();
      }
    }
  }

  /**
   * Applies, during this node's own write, the entries a message just committed: the leader's
   * acknowledgements mostly arrive while it syncs newer entries, and the proposers (HTTP requests)
   * waiting for the committed ones need not wait for that fsync. Safe for the reason committed
   * entries are applied before a Ready's write: they are final (durable on a quorum). The core
   * hands out only entries it has already handed out for writing. Reads a message confirms (a
   * quorum's heartbeat answers on the leader, the leader's answer on a follower) are taken too.
   * Returns false when an apply failed: as in the Ready loop, that stops the node.
   */
  #takeDuringWrite(): boolean {
    try {
      const entries = this.#core.takeCommitted();
      for (const e of entries) this.#apply(e);
      // Reads whose quorum round a message just confirmed are answered once applied, too.
      const reads = this.#core.takeReadStates();
      for (const rs of reads) this.#readConfirmed(rs);
      if (entries.length || reads.length) this.#releaseReads();
    } catch (err) {
      this.#die(err);
      return false;
    }
    // And heartbeats, their answers and read indexes (asked or answered) leave now, not after the write.
    this.#sendEarly();
    return true;
  }

  /**
   * On a leader whose write is in progress, starts the round for the reads asked in this event-loop
   * turn at its end (all of them share it) instead of after the write; the round's heartbeats leave
   * at once. If the write has ended by then, the next Ready starts the round as usual.
   */
  #readRoundSoon(): void {
    if (this.#roundImmediate) return;
    this.#roundImmediate = setImmediate(() => {
      this.#roundImmediate = null;
      if (this.#running && this.#writing && this.#core.startReadRound()) this.#takeDuringWrite();
    });
  }

  /** Sends the waiting messages that may leave during the write (persist-rules.ts). */
  #sendEarly(): void {
    const term = this.#durable.term;
    for (const m of this.#core.takeMessages((x) => sendableDuringWrite(x, term))) this.#send(m);
  }

  /** A read's index is confirmed: it is answered once this node has applied that index. */
  #readConfirmed(rs: ReadState): void {
    const r = this.#reads.get(rs.ctx);
    if (!r) return;
    this.#reads.delete(rs.ctx);
    r.index = rs.index;
    this.#waitingReads.push(r);
  }

  #releaseReads(): void {
    if (!this.#waitingReads.length) return;
    const keep: PendingRead[] = [];
    for (const r of this.#waitingReads) {
      if (r.index <= this.#applied) {
        clearTimeout(r.timer);
        r.resolve(r.index);
      } else {
        keep.push(r);
      }
    }
    this.#waitingReads = keep;
  }

  async #installSnapshot(snap: Snapshot): Promise<void> {
    await this.#snapshots.save(snap);
    this.#sm.restore(snap.data, snap.meta);
    // The snapshot replaces the whole log.
    const last = this.#storage.lastIndex();
    if (last > 0) await this.#storage.compact(Math.max(last, snap.meta.index));
    this.#latestSnapshot = snap;
    this.#lastSnapIndex = snap.meta.index;
    this.#lastSnapBytes = snap.data.length;
    this.#bytesSinceSnap = 0;
    this.#applied = snap.meta.index;
    // Proposals waiting on indexes the snapshot covers will never be seen applied here.
    for (const [index, p] of this.#proposals) {
      if (index <= snap.meta.index) {
        clearTimeout(p.timer);
        this.#proposals.delete(index);
        p.reject(new SiderError('SIDER_TIMEOUT', `proposal at index ${index} was covered by an installed snapshot; outcome unknown`));
      }
    }
    this.#log('info', 'raft: installed snapshot from leader', { index: snap.meta.index, term: snap.meta.term, bytes: snap.data.length });
    this.#emit({ type: 'snapshot-installed', meta: snap.meta });
  }

  /** Enough entries since the last snapshot, and (snapshotLogRatio) enough bytes for its size. */
  #snapshotDue(): boolean {
    if (this.#applied - this.#lastSnapIndex < (this.#opts.snapshotThreshold ?? 8192) * this.#snapFactor) return false;
    return this.#bytesSinceSnap >= (this.#opts.snapshotLogRatio ?? 1) * this.#lastSnapBytes * this.#snapFactor;
  }

  #drawSnapFactor(): void {
    this.#snapFactor = 1 + Math.random() * (this.#opts.snapshotJitter ?? 0.5);
  }

  /** Captures the state now (synchronously) and writes it out while applying continues. */
  #takeSnapshot(): void {
    if (this.#snapshotting || !this.#running) return;
    const index = this.#applied;
    if (index <= this.#lastSnapIndex) return;
    const view = this.#core.logView();
    const term = index === view.offset ? view.offsetTerm : view.entries[index - view.offset - 1]?.term;
    invariant(term !== undefined, `no term for applied index ${index}`);
    const meta: SnapshotMeta = { index, term, membership: this.#core.membershipAt(index) };
    const writer = this.#sm.snapshot();
    const bytesCovered = this.#bytesSinceSnap;
    this.#snapshotting = true;
    const started = Date.now();
    (async () => {
      try {
        const data = await writer();
        const snap = { meta, data };
        await this.#snapshots.save(snap);
        // A newer snapshot from the leader may have been installed while this one was written: the
        // older one must not replace it (the store itself keeps the newest by index).
        if (index <= this.#lastSnapIndex) return;
        this.#latestSnapshot = snap;
        this.#lastSnapIndex = index;
        this.#lastSnapBytes = data.length;
        this.#bytesSinceSnap = Math.max(0, this.#bytesSinceSnap - bytesCovered);
        this.#drawSnapFactor();
        if (!this.#running) return;
        const through = this.#core.compact(meta, this.#opts.trailingEntries ?? 4096);
        if (through > 0) await this.#storage.compact(through);
        this.#log('info', 'raft: snapshot taken', { index, term, bytes: data.length, ms: Date.now() - started, compactedThrough: through });
        this.#emit({ type: 'snapshot', meta, bytes: data.length, ms: Date.now() - started });
      } catch (err) {
        this.#log('error', 'raft: snapshot failed', { index, error: (err as Error).message });
      } finally {
        this.#snapshotting = false;
      }
    })();
  }

  #setPeers(m: Membership): void {
    const addrs: Record<NodeId, string> = {};
    for (const [id, addr] of Object.entries(m.addrs)) if (id !== this.id) addrs[id] = addr;
    this.#transport.setPeers(addrs);
  }

  #onSoftState(leader: NodeId, role: string): void {
    if (role !== 'leader') this.#timedAppends.clear();
    this.#opts.observer?.roleChanged?.(role, this.#core.status().term);
    if (leader !== this.#lastLeader) {
      this.#lastLeader = leader;
      this.#log('info', 'raft: leader changed', { node: this.id, leader: leader || '(none)', role, term: this.#core.status().term });
      this.#emit({ type: 'leader', leader, role });
    } else {
      this.#log('info', 'raft: role changed', { node: this.id, role, term: this.#core.status().term });
    }
  }

  #emit(ev: RaftEvent): void {
    for (const l of this.#listeners) {
      try {
        l(ev);
      } catch {
        // a listener's failure is its own
      }
    }
  }

  #die(err: unknown): void {
    // Storage failed or an invariant broke: this node must not go on serving.
    this.#fatal = err instanceof Error ? err : new Error(String(err));
    this.#log('error', 'raft: fatal error, node stopping', { error: this.#fatal.message });
    this.#emit({ type: 'fatal', error: this.#fatal });
    void this.close();
  }
}

export type RaftEvent =
  | { type: 'leader'; leader: NodeId; role: string }
  | { type: 'membership'; membership: Membership; index: number }
  | { type: 'snapshot'; meta: SnapshotMeta; bytes: number; ms: number }
  | { type: 'snapshot-installed'; meta: SnapshotMeta }
  | { type: 'fatal'; error: Error };
