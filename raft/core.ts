// The pure Raft state machine: tick(), step(), propose(), readIndex() in; Ready out. No timers,
// clock, randomness (a seeded generator is handed in), promises or I/O.

import { SiderError, invariant } from './errors.ts';
import { decodeConfChange, encodeConfChange, entrySize } from './codec.ts';
import { applyConfChange, isMember, isVoter, validateConfChange } from './membership.ts';
import { quorumSize, quorumValue, voteResult } from './quorum.ts';
import { RaftLog } from './raft-log.ts';
import { cloneMembership, emptyMembership, emptyMessage } from './types.ts';
import type {
  ConfChange,
  Entry,
  HardState,
  Membership,
  Message,
  MessageType,
  NodeId,
  ReadState,
  Ready,
  Role,
  Snapshot,
  SnapshotMeta,
  SoftState,
} from './types.ts';

/** AppendEntries in flight per follower unless `CoreConfig.maxInflight` says otherwise; HttpTransport opens as many bulk connections per peer. */
export const DEFAULT_MAX_INFLIGHT = 4;

export interface CoreConfig {
  id: NodeId;
  /** Ticks between heartbeats (default 1; with a 100 ms tick that is DESIGN's 100 ms). */
  heartbeatTicks?: number;
  /** Base election timeout in ticks; the randomized timeout is in [electionTicks, 2·electionTicks). */
  electionTicks?: number;
  /** Seeded generator returning [0, 1). The only source of randomness. */
  random: () => number;
  /** Entries per AppendEntries message. */
  maxEntriesPerMsg?: number;
  /** Bytes per AppendEntries message (at least one entry is always sent). */
  maxBytesPerMsg?: number;
  /** AppendEntries messages in flight per follower in the replicate state. Default DEFAULT_MAX_INFLIGHT. */
  maxInflight?: number;
  /** Proposals fail fast with SIDER_TOO_MANY_UNCOMMITTED beyond this many uncommitted bytes. */
  maxUncommittedBytes?: number;
  /** Pending linearizable reads (local and forwarded) beyond which readIndex() fails fast. */
  maxPendingReads?: number;
  /** Learners are promoted to voters once caught up (default true). */
  autoPromote?: boolean;
}

/** What was on disk at start. */
export interface CoreInit {
  hardState: HardState | null;
  /** The newest snapshot's metadata (null when none): the log starts after it. */
  snapshot: SnapshotMeta | null;
  /** Stored entries after the snapshot's index (contiguous). Older trailing entries may be included. */
  entries: Entry[];
}

export interface PeerStatus {
  match: number;
  next: number;
  state: ProgressState;
  recentActive: boolean;
  learner: boolean;
}

export interface CoreStatus {
  id: NodeId;
  role: Role;
  leader: NodeId;
  term: number;
  vote: NodeId;
  commit: number;
  applied: number;
  lastIndex: number;
  firstIndex: number;
  membership: Membership;
  /** Ticks since this node last heard from a leader (0 on the leader). */
  ticksSinceLeader: number;
  leadTransferee: NodeId;
  uncommittedBytes: number;
  /** Leader only. */
  peers: Record<NodeId, PeerStatus>;
}

type ProgressState = 'probe' | 'replicate' | 'snapshot';

interface Progress {
  match: number;
  next: number;
  state: ProgressState;
  /** Probe: an append was sent and no answer yet; wait before sending another. */
  probeSent: boolean;
  /** Last index carried by each AppendEntries in flight (replicate state). */
  inflights: number[];
  pendingSnapshot: number;
  recentActive: boolean;
  /** Highest read-round sequence this peer acknowledged. */
  readAck: number;
  /** Highest commit index this peer was told (capped at the entries the message let it match). */
  commitSent: number;
}

interface PendingRead {
  seq: number;
  index: number;
  ctx: number;
  /** '' for a read asked on this node; otherwise the follower to answer. */
  from: NodeId;
}

const responseTypes = new Set<MessageType>(['appResp', 'heartbeatResp', 'voteResp', 'preVoteResp', 'readIndexResp']);

export class RaftCore {
  readonly id: NodeId;
  #heartbeatTicks: number;
  #electionTicks: number;
  #random: () => number;
  #maxEntries: number;
  #maxBytes: number;
  #maxInflight: number;
  #maxUncommitted: number;
  #maxPendingReads: number;
  #autoPromote: boolean;

  #term = 0;
  #vote: NodeId = '';
  #role: Role = 'follower';
  #leader: NodeId = '';
  #log: RaftLog;

  /** Membership as of log.offset, and every conf entry after it (config applies on append). */
  #baseMembership: Membership;
  #confs: { index: number; membership: Membership }[] = [];
  #membershipChanged = false;
  /** Index of the latest conf entry in the log (0 if none after the offset). */
  #lastConfIndex = 0;

  #snapshotMeta: SnapshotMeta | null;
  #pendingSnapshot: Snapshot | null = null;

  #electionElapsed = 0;
  #heartbeatElapsed = 0;
  #randomizedElectionTimeout = 0;

  #votes = new Map<NodeId, boolean>();
  #progress = new Map<NodeId, Progress>();
  #leadTransferee: NodeId = '';
  #uncommittedBytes = 0;

  #readSeq = 0;
  #readRoundInFlight = 0;
  #queuedReads: PendingRead[] = [];
  #pendingReads: PendingRead[] = [];
  /** Reads forwarded by this follower to the leader, by ctx. */
  #forwardedReads = new Set<number>();
  #readStates: ReadState[] = [];
  #droppedReads: number[] = [];

  #msgs: Message[] = [];
  #prevSoft: SoftState;
  #prevHard: HardState;

  constructor(cfg: CoreConfig, init: CoreInit) {
    this.id = cfg.id;
    this.#heartbeatTicks = cfg.heartbeatTicks ?? 1;
    this.#electionTicks = cfg.electionTicks ?? 10;
    invariant(this.#electionTicks > this.#heartbeatTicks, 'electionTicks must exceed heartbeatTicks');
    this.#random = cfg.random;
    this.#maxEntries = cfg.maxEntriesPerMsg ?? 512;
    this.#maxBytes = cfg.maxBytesPerMsg ?? 1 << 20;
    this.#maxInflight = cfg.maxInflight ?? DEFAULT_MAX_INFLIGHT;
    this.#maxUncommitted = cfg.maxUncommittedBytes ?? 64 << 20;
    this.#maxPendingReads = cfg.maxPendingReads ?? 100_000;
    this.#autoPromote = cfg.autoPromote ?? true;

    const snap = init.snapshot;
    this.#snapshotMeta = snap;
    const offset = snap?.index ?? 0;
    const entries = init.entries.filter((e) => e.index > offset);
    this.#log = new RaftLog(offset, snap?.term ?? 0, entries, init.hardState?.commit ?? 0);
    this.#baseMembership = snap ? cloneMembership(snap.membership) : emptyMembership();
    for (const e of entries) if (e.type === 'conf') this.#recordConf(e);
    this.#membershipChanged = true;
    if (init.hardState) {
      this.#term = init.hardState.term;
      this.#vote = init.hardState.vote;
    }
    this.#resetRandomizedElectionTimeout();
    this.#prevSoft = { leader: '', role: 'follower' };
    this.#prevHard = { term: this.#term, vote: this.#vote, commit: this.#log.committed };
  }

  // ---- configuration --------------------------------------------------------------------------

  membership(): Membership {
    return this.#confs.length ? this.#confs[this.#confs.length - 1]!.membership : this.#baseMembership;
  }

  /** The configuration in effect at `index` (the last conf entry at or before it). */
  membershipAt(index: number): Membership {
    invariant(index >= this.#log.offset, `membershipAt(${index}) below log offset ${this.#log.offset}`);
    let m = this.#baseMembership;
    for (const c of this.#confs) {
      if (c.index > index) break;
      m = c.membership;
    }
    return m;
  }

  #recordConf(e: Entry): void {
    let cc: ConfChange;
    try {
      cc = decodeConfChange(e.data);
    } catch {
      return; // an undecodable conf entry changes nothing, identically on every node
    }
    this.#confs.push({ index: e.index, membership: applyConfChange(this.membership(), cc) });
    this.#lastConfIndex = e.index;
    this.#onMembershipChange();
  }

  #onTruncate(from: number): void {
    let changed = false;
    while (this.#confs.length && this.#confs[this.#confs.length - 1]!.index >= from) {
      this.#confs.pop();
      changed = true;
    }
    if (changed) {
      this.#lastConfIndex = this.#confs.length ? this.#confs[this.#confs.length - 1]!.index : 0;
      this.#onMembershipChange();
    }
  }

  #onMembershipChange(): void {
    this.#membershipChanged = true;
    if (this.#role !== 'leader') return;
    const m = this.membership();
    for (const id of [...m.voters, ...m.learners]) {
      if (!this.#progress.has(id)) this.#progress.set(id, this.#newProgress(0));
    }
    this.#pruneProgress();
    if (this.#leadTransferee && !isVoter(m, this.#leadTransferee)) this.#leadTransferee = '';
    // A smaller quorum may now be satisfied.
    this.#maybeCommit();
  }

  /**
   * Forgets peers that are no longer members. A removed node keeps getting appends and heartbeats
   * until its removal commits and it has been told so (or it stops answering), so that it learns it
   * was removed and stops campaigning; it never counts in a quorum meanwhile.
   */
  #pruneProgress(): void {
    const m = this.membership();
    const committed = this.membershipAt(this.#log.committed);
    // Deleting the current key while iterating a Map is safe.
    for (const [id, pr] of this.#progress) {
      if (id === this.id || isMember(m, id) || isMember(committed, id)) continue;
      const told = Math.min(pr.match, pr.commitSent);
      const knows = told >= this.#log.offset && !isMember(this.membershipAt(told), id);
      if (knows || !pr.recentActive) this.#progress.delete(id);
    }
  }

  /**
   * May campaign: a voter of the latest configuration, or a voter whose own removal is not yet
   * committed (votes are still counted among the latest configuration's voters only). Such a node
   * may hold the only copy of its removal, and the remaining voters, not having it, may need its
   * vote, which it refuses them for their shorter logs: without this no leader could be elected.
   */
  #promotable(): boolean {
    return isVoter(this.membership(), this.id) || isVoter(this.membershipAt(this.#log.committed), this.id);
  }

  // ---- public inputs --------------------------------------------------------------------------

  tick(): void {
    if (this.#role === 'leader') this.#tickLeader();
    else this.#tickElection();
  }

  #tickElection(): void {
    this.#electionElapsed++;
    // The sole voter has nobody to disrupt or wait for: it need not sit out an election timeout
    // (a single-node server serves writes on its first tick instead of after 1-2 s).
    const v = this.membership().voters;
    const alone = v.length === 1 && v[0] === this.id;
    if (this.#promotable() && (alone || this.#electionElapsed >= this.#randomizedElectionTimeout)) {
      this.#electionElapsed = 0;
      this.#campaign('preVote');
    }
  }

  #tickLeader(): void {
    this.#heartbeatElapsed++;
    this.#electionElapsed++;
    if (this.#electionElapsed >= this.#electionTicks) {
      this.#electionElapsed = 0;
      if (!this.#checkQuorum()) {
        this.#becomeFollower(this.#term, '');
        return;
      }
      this.#leadTransferee = ''; // a transfer that has not finished within an election timeout is aborted
    }
    if (this.#heartbeatElapsed >= this.#heartbeatTicks) {
      this.#heartbeatElapsed = 0;
      this.#bcastHeartbeat(this.#readRoundInFlight || this.#readSeq);
      this.#pruneProgress();
      this.#maybePromoteLearner();
    }
  }

  /** Appends application data; returns where it will commit if this leader keeps its term. */
  propose(data: Uint8Array, rid = ''): { index: number; term: number } {
    this.#checkCanPropose();
    const size = data.length + rid.length + 32;
    if (this.#uncommittedBytes > 0 && this.#uncommittedBytes + size > this.#maxUncommitted) {
      throw new SiderError(
        'SIDER_TOO_MANY_UNCOMMITTED',
        `too many uncommitted bytes (${this.#uncommittedBytes} + ${size} > ${this.#maxUncommitted}); retry later`,
      );
    }
    this.#uncommittedBytes += size;
    return this.#appendEntry('normal', data, rid);
  }

  /** Proposes a single-server membership change (validated against the latest configuration). */
  proposeConfChange(cc: ConfChange): { index: number; term: number } {
    this.#checkCanPropose();
    if (!this.#committedOwnTerm()) {
      throw new SiderError('SIDER_CONF_CHANGE_PENDING', 'leader has not yet committed an entry in its term; retry');
    }
    if (this.#lastConfIndex > this.#log.committed) {
      throw new SiderError('SIDER_CONF_CHANGE_PENDING', 'another configuration change is not yet committed; retry');
    }
    if (cc.op === 'bootstrap') throw new SiderError('SIDER_CONF_CHANGE_INVALID', 'bootstrap is not a runtime change');
    validateConfChange(this.membership(), cc);
    return this.#appendEntry('conf', encodeConfChange(cc), '');
  }

  /**
   * Asks for a linearizable read index. The answer comes later as a ReadState with this `ctx` (a
   * number unique among this node's outstanding reads) or as a dropped read.
   */
  readIndex(ctx: number): void {
    if (this.#pendingReadCount() >= this.#maxPendingReads) {
      throw new SiderError('SIDER_TOO_MANY_UNCOMMITTED', `too many pending reads (${this.#maxPendingReads})`);
    }
    if (this.#role === 'leader') {
      this.#leaderRead({ seq: 0, index: 0, ctx, from: '' });
      return;
    }
    if (!this.#leader) {
      this.#droppedReads.push(ctx);
      return;
    }
    this.#forwardedReads.add(ctx);
    const m = this.#msg('readIndex', this.#leader);
    m.ctx = ctx;
    this.#send(m);
  }

  /** Starts handing leadership to `to` (a voter). Proposals are refused until it finishes or aborts. */
  transferLeadership(to: NodeId): void {
    if (this.#role !== 'leader') throw this.#notLeader();
    if (to === this.id) return;
    if (!isVoter(this.membership(), to)) {
      throw new SiderError('SIDER_CONF_CHANGE_INVALID', `cannot transfer leadership to ${JSON.stringify(to)}: not a voter`);
    }
    this.#leadTransferee = to;
    this.#electionElapsed = 0;
    const pr = this.#progress.get(to)!;
    if (pr.match === this.#log.lastIndex()) this.#send(this.#msg('timeoutNow', to));
    else this.#sendAppend(to);
  }

  /** Transport feedback. */
  reportUnreachable(to: NodeId): void {
    const pr = this.#progress.get(to);
    if (this.#role !== 'leader' || !pr) return;
    if (pr.state === 'replicate') this.#becomeProbe(pr);
  }

  reportSnapshot(to: NodeId, ok: boolean): void {
    const pr = this.#progress.get(to);
    if (this.#role !== 'leader' || !pr || pr.state !== 'snapshot') return;
    if (ok) {
      pr.next = Math.max(pr.match + 1, pr.pendingSnapshot + 1);
    } else {
      pr.next = pr.match + 1;
    }
    pr.pendingSnapshot = 0;
    this.#becomeProbe(pr);
    pr.probeSent = ok; // after success wait for the follower's answer; after failure retry on next heartbeat
  }

  /**
   * Tells the core a snapshot at `meta.index` (≤ applied) is durable. Entries up to
   * meta.index − keepTrailing are dropped from memory; returns that index so the driver compacts
   * its LogStore through it (0 when nothing is dropped).
   */
  compact(meta: SnapshotMeta, keepTrailing: number): number {
    invariant(meta.index <= this.#log.applied, `snapshot ${meta.index} beyond applied ${this.#log.applied}`);
    if (!this.#snapshotMeta || meta.index > this.#snapshotMeta.index) this.#snapshotMeta = meta;
    const through = meta.index - keepTrailing;
    if (through <= this.#log.offset) return 0;
    this.#baseMembership = this.membershipAt(through);
    this.#confs = this.#confs.filter((c) => c.index > through);
    this.#log.compact(through);
    return through;
  }

  // ---- step -----------------------------------------------------------------------------------

  step(m: Message): void {
    if (m.to !== this.id) return;
    if (m.term > this.#term) {
      if (m.type === 'preVote' || m.type === 'vote') {
        const force = m.ctx === 1;
        const inLease = this.#leader !== '' && this.#electionElapsed < this.#electionTicks;
        if (!force && inLease) return; // §9.6: ignore disruptive votes while a leader is heard from
      }
      if (m.type === 'preVote') {
        // never change term for a pre-vote
      } else if (m.type === 'preVoteResp' && !m.reject) {
        // the term in a granted pre-vote response is the one we would campaign for
      } else {
        const fromLeader = m.type === 'app' || m.type === 'heartbeat' || m.type === 'snap';
        this.#becomeFollower(m.term, fromLeader ? m.from : '');
      }
    } else if (m.term < this.#term) {
      if (m.type === 'app' || m.type === 'heartbeat') {
        // A stale leader (or this node advanced its term while partitioned): tell it our term so it
        // steps down and the cluster can elect a leader at a term this node will accept.
        this.#send(this.#msg('appResp', m.from));
      } else if (m.type === 'preVote') {
        const r = this.#msg('preVoteResp', m.from);
        r.reject = true;
        this.#send(r);
      } else if (m.type === 'readIndex') {
        const r = this.#msg('readIndexResp', m.from);
        r.ctx = m.ctx;
        r.reject = true;
        this.#send(r);
      }
      return;
    }

    if (m.type === 'preVote' || m.type === 'vote') {
      this.#handleVoteRequest(m);
      return;
    }

    switch (this.#role) {
      case 'leader':
        this.#stepLeader(m);
        break;
      case 'preCandidate':
      case 'candidate':
        this.#stepCandidate(m);
        break;
      case 'follower':
        this.#stepFollower(m);
        break;
    }
  }

  #handleVoteRequest(m: Message): void {
    const pre = m.type === 'preVote';
    const canVote =
      this.#vote === m.from ||
      (this.#vote === '' && this.#leader === '') ||
      (pre && m.term > this.#term);
    const resp = this.#msg(pre ? 'preVoteResp' : 'voteResp', m.from);
    if (canVote && this.#log.isUpToDate(m.index, m.logTerm)) {
      resp.term = m.term;
      if (!pre) {
        this.#electionElapsed = 0;
        this.#vote = m.from;
      }
    } else {
      resp.reject = true;
    }
    this.#send(resp);
  }

  #stepFollower(m: Message): void {
    switch (m.type) {
      case 'app':
        this.#electionElapsed = 0;
        this.#leader = m.from;
        this.#handleAppend(m);
        break;
      case 'heartbeat':
        this.#electionElapsed = 0;
        this.#leader = m.from;
        this.#handleHeartbeat(m);
        break;
      case 'snap':
        this.#electionElapsed = 0;
        this.#leader = m.from;
        this.#handleSnapshot(m);
        break;
      case 'timeoutNow':
        if (this.#promotable()) this.#campaign('transfer');
        break;
      case 'readIndex':
        // Not the leader (any more): refuse so the asker fails fast and retries.
        {
          const r = this.#msg('readIndexResp', m.from);
          r.ctx = m.ctx;
          r.reject = true;
          this.#send(r);
        }
        break;
      case 'readIndexResp':
        if (!this.#forwardedReads.delete(m.ctx)) break;
        if (m.reject) this.#droppedReads.push(m.ctx);
        else this.#readStates.push({ ctx: m.ctx, index: m.index });
        break;
      default:
        break;
    }
  }

  #stepCandidate(m: Message): void {
    switch (m.type) {
      case 'app':
      case 'heartbeat':
      case 'snap':
        // A leader exists for our term.
        this.#becomeFollower(m.term, m.from);
        this.#stepFollower(m);
        break;
      case 'preVoteResp':
      case 'voteResp': {
        if ((m.type === 'preVoteResp') !== (this.#role === 'preCandidate')) break;
        this.#votes.set(m.from, !m.reject);
        const res = voteResult(this.membership().voters, this.#votes);
        if (res === 'won') {
          if (this.#role === 'preCandidate') this.#campaign('election');
          else this.#becomeLeader();
        } else if (res === 'lost') {
          this.#becomeFollower(this.#term, '');
        }
        break;
      }
      case 'readIndex': {
        const r = this.#msg('readIndexResp', m.from);
        r.ctx = m.ctx;
        r.reject = true;
        this.#send(r);
        break;
      }
      default:
        break;
    }
  }

  #stepLeader(m: Message): void {
    const pr = this.#progress.get(m.from);
    if (m.type === 'readIndex') {
      if (!pr) return;
      this.#leaderRead({ seq: 0, index: 0, ctx: m.ctx, from: m.from });
      return;
    }
    if (!pr) return;
    if (responseTypes.has(m.type)) pr.recentActive = true;
    switch (m.type) {
      case 'appResp':
        this.#handleAppendResponse(m, pr);
        break;
      case 'heartbeatResp':
        if (pr.state === 'probe') pr.probeSent = false;
        // Appends in flight may have been lost: the follower is alive, so let one more through.
        if (pr.state === 'replicate' && pr.inflights.length >= this.#maxInflight) pr.inflights.shift();
        if (pr.match < this.#log.lastIndex()) this.#sendAppend(m.from);
        if (m.ctx > pr.readAck) {
          pr.readAck = m.ctx;
          this.#advanceReads();
        }
        break;
      default:
        break;
    }
  }

  #handleAppendResponse(m: Message, pr: Progress): void {
    if (m.reject) {
      if (pr.state === 'replicate') {
        if (m.index <= pr.match) return; // stale
        pr.next = pr.match + 1;
        this.#becomeProbe(pr);
      } else if (pr.state === 'probe') {
        if (m.index !== pr.next - 1) return; // stale: not the probe we are waiting for
        let nextProbe = m.hint;
        if (m.hintTerm > 0) nextProbe = this.#log.findConflictByTerm(m.hint, m.hintTerm);
        pr.next = Math.max(Math.min(m.index, nextProbe + 1), pr.match + 1);
        pr.probeSent = false;
      } else {
        return; // snapshot in progress
      }
      this.#sendAppend(m.from);
      return;
    }
    const oldPaused = this.#paused(pr);
    if (m.index > pr.match) {
      pr.match = m.index;
      pr.next = Math.max(pr.next, m.index + 1);
      pr.inflights = pr.inflights.filter((last) => last > m.index);
      if (pr.state === 'probe') {
        this.#becomeReplicate(pr);
      } else if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) {
        pr.pendingSnapshot = 0;
        this.#becomeProbe(pr);
        this.#becomeReplicate(pr);
      }
      // A commit this causes reaches followers from ready(), once per Ready, not once per response.
      this.#maybeCommit();
      if (oldPaused || pr.next <= this.#log.lastIndex()) this.#sendAppend(m.from);
      if (m.from === this.#leadTransferee && pr.match === this.#log.lastIndex()) {
        this.#send(this.#msg('timeoutNow', m.from));
      }
    } else if (pr.state === 'probe') {
      pr.probeSent = false;
      if (pr.next <= this.#log.lastIndex()) this.#sendAppend(m.from);
    }
  }

  #handleAppend(m: Message): void {
    const resp = this.#msg('appResp', m.from);
    if (m.index < this.#log.committed) {
      resp.index = this.#log.committed;
      this.#send(resp);
      return;
    }
    const last = this.#log.maybeAppend(m.index, m.logTerm, m.entries, (from) => this.#onTruncate(from));
    if (last === null) {
      resp.index = m.index;
      resp.reject = true;
      const hint = this.#log.findConflictByTerm(Math.min(m.index, this.#log.lastIndex()), m.logTerm);
      resp.hint = hint;
      resp.hintTerm = this.#log.term(hint) ?? 0;
      this.#send(resp);
      return;
    }
    for (const e of m.entries) {
      if (e.type === 'conf' && e.index > this.#log.offset && e.index > this.#lastConfIndex) this.#recordConf(e);
    }
    this.#log.commitTo(Math.min(m.commit, last));
    resp.index = last;
    this.#send(resp);
  }

  #handleHeartbeat(m: Message): void {
    this.#log.commitTo(Math.min(m.commit, this.#log.lastIndex()));
    const r = this.#msg('heartbeatResp', m.from);
    r.ctx = m.ctx;
    this.#send(r);
  }

  #handleSnapshot(m: Message): void {
    const snap = m.snapshot;
    const resp = this.#msg('appResp', m.from);
    if (!snap) return;
    const { index, term } = snap.meta;
    if (index <= this.#log.committed) {
      resp.index = this.#log.committed;
    } else if (this.#log.matchTerm(index, term)) {
      // We already hold the snapshot's last entry: just fast-forward the commit.
      this.#log.commitTo(index);
      resp.index = this.#log.committed;
    } else {
      this.#log.restore(index, term);
      this.#baseMembership = cloneMembership(snap.meta.membership);
      this.#confs = [];
      this.#lastConfIndex = 0;
      this.#membershipChanged = true;
      this.#snapshotMeta = snap.meta;
      this.#pendingSnapshot = snap;
      resp.index = index;
    }
    this.#send(resp);
  }

  // ---- elections ------------------------------------------------------------------------------

  #campaign(kind: 'preVote' | 'election' | 'transfer'): void {
    if (kind === 'preVote') {
      this.#role = 'preCandidate';
      this.#leader = '';
      this.#votes = new Map();
    } else {
      this.#becomeCandidate();
    }
    const pre = kind === 'preVote';
    const term = pre ? this.#term + 1 : this.#term;
    this.#votes.set(this.id, true);
    const voters = this.membership().voters;
    if (voteResult(voters, this.#votes) === 'won') {
      if (pre) this.#campaign('election');
      else this.#becomeLeader();
      return;
    }
    for (const id of voters) {
      if (id === this.id) continue;
      const m = this.#msg(pre ? 'preVote' : 'vote', id);
      m.term = term;
      m.index = this.#log.lastIndex();
      m.logTerm = this.#log.lastTerm();
      m.ctx = kind === 'transfer' ? 1 : 0;
      this.#send(m);
    }
  }

  #becomeCandidate(): void {
    this.#reset(this.#term + 1);
    this.#vote = this.id;
    this.#role = 'candidate';
    this.#votes = new Map();
  }

  #becomeFollower(term: number, leader: NodeId): void {
    this.#reset(term);
    this.#role = 'follower';
    this.#leader = leader;
  }

  #becomeLeader(): void {
    invariant(this.#role === 'candidate', 'only a candidate becomes leader');
    this.#reset(this.#term);
    this.#role = 'leader';
    this.#leader = this.id;
    const m = this.membership();
    for (const id of [...m.voters, ...m.learners]) {
      this.#progress.set(id, this.#newProgress(id === this.id ? this.#log.stable : 0));
    }
    // §8: a no-op entry of the new term so earlier entries commit and reads can be served.
    this.#appendEntry('noop', new Uint8Array(0), '');
  }

  #reset(term: number): void {
    if (term !== this.#term) {
      this.#term = term;
      this.#vote = '';
    }
    const wasLeader = this.#role === 'leader';
    this.#leader = '';
    this.#electionElapsed = 0;
    this.#heartbeatElapsed = 0;
    this.#resetRandomizedElectionTimeout();
    this.#votes = new Map();
    this.#progress = new Map();
    this.#leadTransferee = '';
    this.#uncommittedBytes = 0;
    if (wasLeader) this.#dropLeaderReads();
    for (const ctx of this.#forwardedReads) this.#droppedReads.push(ctx);
    this.#forwardedReads.clear();
  }

  #resetRandomizedElectionTimeout(): void {
    this.#randomizedElectionTimeout = this.#electionTicks + Math.floor(this.#random() * this.#electionTicks);
  }

  #checkQuorum(): boolean {
    const voters = this.membership().voters;
    let active = 0;
    for (const id of voters) {
      if (id === this.id) {
        active++;
        continue;
      }
      const pr = this.#progress.get(id);
      if (pr?.recentActive) active++;
    }
    for (const pr of this.#progress.values()) pr.recentActive = false;
    // A leader that removed itself keeps leading until that change commits; it is not a voter.
    return active >= quorumSize(voters.length);
  }

  // ---- replication ----------------------------------------------------------------------------

  #newProgress(match: number): Progress {
    return {
      match,
      next: this.#log.lastIndex() + 1,
      state: 'probe',
      probeSent: false,
      inflights: [],
      pendingSnapshot: 0,
      recentActive: true,
      readAck: 0,
      commitSent: 0,
    };
  }

  #becomeProbe(pr: Progress): void {
    pr.state = 'probe';
    pr.probeSent = false;
    pr.inflights = [];
    if (pr.next <= pr.match) pr.next = pr.match + 1;
  }

  #becomeReplicate(pr: Progress): void {
    pr.state = 'replicate';
    pr.probeSent = false;
    pr.inflights = [];
    pr.next = pr.match + 1;
  }

  #paused(pr: Progress): boolean {
    if (pr.state === 'probe') return pr.probeSent;
    if (pr.state === 'replicate') return pr.inflights.length >= this.#maxInflight;
    return true;
  }

  #appendEntry(type: Entry['type'], data: Uint8Array, rid: string): { index: number; term: number } {
    const e: Entry = { index: this.#log.lastIndex() + 1, term: this.#term, type, data, rid };
    this.#log.append([e]);
    if (type === 'conf') this.#recordConf(e);
    return { index: e.index, term: e.term };
  }

  #checkCanPropose(): void {
    if (this.#role !== 'leader') throw this.#notLeader();
    if (this.#leadTransferee) {
      throw new SiderError('SIDER_TRANSFER_IN_PROGRESS', `leadership is being transferred to ${this.#leadTransferee}`, {
        detail: { leader: this.id, transferee: this.#leadTransferee },
      });
    }
  }

  #notLeader(): SiderError {
    return this.#leader
      ? new SiderError('SIDER_NOT_LEADER', `not the leader; the leader is ${this.#leader}`, {
          detail: { leader: this.#leader },
        })
      : new SiderError('SIDER_NO_LEADER', 'no leader is known at the moment', { detail: { leader: '' } });
  }

  #committedOwnTerm(): boolean {
    return this.#log.term(this.#log.committed) === this.#term;
  }

  /** Sends what `to` is missing; with `sendIfEmpty` also an empty append (to probe or carry the commit). */
  #sendAppend(to: NodeId, sendIfEmpty = true): void {
    if (to === this.id) return;
    const pr = this.#progress.get(to);
    if (!pr || this.#paused(pr)) return;
    if (!sendIfEmpty && pr.next > this.#log.lastIndex()) return;
    const prevIndex = pr.next - 1;
    const prevTerm = this.#log.term(prevIndex);
    if (prevTerm === undefined || pr.next <= this.#log.offset) {
      this.#sendSnapshot(to, pr);
      return;
    }
    const entries = this.#log.slice(pr.next, this.#log.lastIndex(), this.#maxEntries, this.#maxBytes);
    const m = this.#msg('app', to);
    m.index = prevIndex;
    m.logTerm = prevTerm;
    m.entries = entries;
    m.commit = this.#log.committed;
    pr.commitSent = Math.max(pr.commitSent, Math.min(m.commit, prevIndex + entries.length));
    if (pr.state === 'replicate' && entries.length > 0) {
      const last = entries[entries.length - 1]!.index;
      pr.next = last + 1;
      pr.inflights.push(last);
    } else if (pr.state === 'probe') {
      pr.probeSent = true;
    }
    this.#send(m);
  }

  #sendSnapshot(to: NodeId, pr: Progress): void {
    const meta = this.#snapshotMeta;
    if (!meta) return; // the log is compacted only after a snapshot exists
    const m = this.#msg('snap', to);
    // The driver fills `data` from its snapshot store (the newest, whose meta this is).
    m.snapshot = { meta, data: new Uint8Array(0) };
    pr.state = 'snapshot';
    pr.pendingSnapshot = meta.index;
    pr.inflights = [];
    this.#send(m);
  }

  #bcastHeartbeat(ctx: number): void {
    for (const [id, pr] of this.#progress) {
      if (id === this.id) continue;
      const m = this.#msg('heartbeat', id);
      m.commit = Math.min(pr.match, this.#log.committed);
      pr.commitSent = Math.max(pr.commitSent, m.commit);
      m.ctx = ctx;
      this.#send(m);
    }
  }

  /** §5.4.2: only an entry of the current term is committed by counting replicas. */
  #maybeCommit(): boolean {
    if (this.#role !== 'leader') return false;
    const self = this.#progress.get(this.id);
    if (self) self.match = this.#log.stable;
    const voters = this.membership().voters;
    const mci = quorumValue(voters, (id) => this.#progress.get(id)?.match ?? 0);
    if (mci <= this.#log.committed || this.#log.term(mci) !== this.#term) return false;
    const before = this.#log.committed;
    const wasOwn = this.#committedOwnTerm();
    this.#log.commitTo(mci);
    for (let i = before + 1; i <= mci; i++) {
      const e = this.#log.entry(i)!;
      if (e.type === 'normal' && e.term === this.#term) this.#uncommittedBytes -= entrySize(e);
    }
    if (this.#uncommittedBytes < 0) this.#uncommittedBytes = 0;
    if (!wasOwn && this.#committedOwnTerm()) this.#startReadRound();
    this.#pruneProgress();
    // A leader that removed itself steps down once the change commits.
    if (!isMember(this.membership(), this.id) && this.#lastConfIndex <= this.#log.committed) {
      this.#becomeFollower(this.#term, '');
    }
    return true;
  }

  #maybePromoteLearner(): void {
    if (!this.#autoPromote || this.#leadTransferee) return;
    const m = this.membership();
    if (m.learners.length === 0 || !this.#committedOwnTerm() || this.#lastConfIndex > this.#log.committed) return;
    for (const id of m.learners) {
      const pr = this.#progress.get(id);
      if (pr && pr.recentActive && pr.match >= this.#log.committed) {
        this.proposeConfChange({ op: 'promote', id });
        return;
      }
    }
  }

  // ---- linearizable reads ---------------------------------------------------------------------

  #pendingReadCount(): number {
    return this.#queuedReads.length + this.#pendingReads.length + this.#forwardedReads.size;
  }

  /**
   * Starts the quorum round for the reads queued on this leader now, if one is due, rather than at
   * the next ready(); returns whether it did. For a driver whose write is in progress: it calls
   * this once per event-loop turn, so the reads asked in that turn share the round, and sends the
   * round's heartbeats with `takeMessages` (persist-rules.ts `sendableDuringWrite`).
   */
  startReadRound(): boolean {
    if (!this.#readRoundDue()) return false;
    this.#startReadRound();
    return true;
  }

  /** Queues a read; the round starts in ready() (or startReadRound()), so every read asked before it shares one round. */
  #leaderRead(r: PendingRead): void {
    this.#queuedReads.push(r);
  }

  #readRoundDue(): boolean {
    return (
      this.#role === 'leader' && this.#readRoundInFlight === 0 && this.#queuedReads.length > 0 && this.#committedOwnTerm()
    );
  }

  /** One quorum round confirms leadership for every read queued before it started. */
  #startReadRound(): void {
    if (this.#queuedReads.length === 0 || !this.#committedOwnTerm()) return;
    const seq = ++this.#readSeq;
    for (const r of this.#queuedReads) {
      r.seq = seq;
      r.index = this.#log.committed;
      this.#pendingReads.push(r);
    }
    this.#queuedReads = [];
    this.#readRoundInFlight = seq;
    this.#bcastHeartbeat(seq);
    this.#advanceReads();
  }

  #advanceReads(): void {
    const voters = this.membership().voters;
    const acked = quorumValue(voters, (id) => (id === this.id ? this.#readSeq : (this.#progress.get(id)?.readAck ?? 0)));
    let released = 0;
    while (released < this.#pendingReads.length && this.#pendingReads[released]!.seq <= acked) released++;
    if (released === 0) return;
    for (const r of this.#pendingReads.splice(0, released)) {
      if (r.from === '') {
        this.#readStates.push({ ctx: r.ctx, index: r.index });
      } else {
        const m = this.#msg('readIndexResp', r.from);
        m.ctx = r.ctx;
        m.index = r.index;
        this.#send(m);
      }
    }
    if (this.#readRoundInFlight <= acked) {
      this.#readRoundInFlight = 0;
      this.#startReadRound();
    }
  }

  #dropLeaderReads(): void {
    for (const r of [...this.#queuedReads, ...this.#pendingReads]) {
      if (r.from === '') {
        this.#droppedReads.push(r.ctx);
      } else {
        const m = this.#msg('readIndexResp', r.from);
        m.ctx = r.ctx;
        m.reject = true;
        this.#msgs.push(m);
      }
    }
    this.#queuedReads = [];
    this.#pendingReads = [];
    this.#readRoundInFlight = 0;
  }

  // ---- output ---------------------------------------------------------------------------------

  #msg(type: MessageType, to: NodeId): Message {
    return emptyMessage(type, this.id, to, this.#term);
  }

  #send(m: Message): void {
    this.#msgs.push(m);
  }

  hasReady(): boolean {
    const l = this.#log;
    return (
      this.#msgs.length > 0 ||
      l.unstableFrom <= l.lastIndex() ||
      l.committed > l.applied ||
      this.#pendingSnapshot !== null ||
      this.#readStates.length > 0 ||
      this.#droppedReads.length > 0 ||
      this.#membershipChanged ||
      this.#readRoundDue() ||
      this.#hardStateChanged() ||
      this.#softStateChanged()
    );
  }

  #hardStateChanged(): boolean {
    const p = this.#prevHard;
    return p.term !== this.#term || p.vote !== this.#vote || p.commit !== this.#log.committed;
  }

  #softStateChanged(): boolean {
    return this.#prevSoft.leader !== this.#leader || this.#prevSoft.role !== this.#role;
  }

  /** See `Ready` for the driver's obligations. Call `advance(ready)` before the next `ready()`. */
  ready(): Ready {
    const l = this.#log;
    if (this.#readRoundDue()) this.#startReadRound();
    // Everything proposed since the last Ready goes out in one append per follower; a follower
    // that has nothing new gets an empty append only when it can learn a newer commit index.
    if (this.#role === 'leader') {
      for (const [id, pr] of this.#progress) this.#sendAppend(id, pr.commitSent < Math.min(l.committed, pr.next - 1));
    }
    const entries = l.unstableFrom <= l.lastIndex() ? l.entries.slice(l.unstableFrom - l.offset - 1) : [];
    const committed = l.committed > l.applied ? l.slice(l.applied + 1, l.committed) : [];
    const rd: Ready = {
      softState: this.#softStateChanged() ? { leader: this.#leader, role: this.#role } : null,
      hardState: this.#hardStateChanged() ? { term: this.#term, vote: this.#vote, commit: l.committed } : null,
      snapshot: this.#pendingSnapshot,
      entries,
      messages: this.#msgs,
      committed,
      readStates: this.#readStates,
      droppedReads: this.#droppedReads,
      membership: this.#membershipChanged ? cloneMembership(this.membership()) : null,
    };
    this.#msgs = [];
    this.#readStates = [];
    this.#droppedReads = [];
    this.#pendingSnapshot = null;
    this.#membershipChanged = false;
    if (rd.softState) this.#prevSoft = rd.softState;
    if (rd.hardState) this.#prevHard = rd.hardState;
    l.unstableFrom = l.lastIndex() + 1;
    if (committed.length) l.applied = committed[committed.length - 1]!.index;
    return rd;
  }

  /**
   * Committed entries not handed out yet, for a driver that applies them between `ready()` and
   * `advance()`, while that Ready's write is in progress: an acknowledgement that commits entries
   * need not wait for the fsync of newer ones. Only entries already handed out for writing (in
   * this or an earlier Ready) are taken, so nothing is applied, and no snapshot taken, beyond what
   * the driver holds or is writing. The next Ready leaves the taken entries out.
   */
  takeCommitted(): Entry[] {
    const l = this.#log;
    const upTo = Math.min(l.committed, l.unstableFrom - 1);
    if (upTo <= l.applied) return [];
    const taken = l.slice(l.applied + 1, upTo);
    l.applied = upTo;
    return taken;
  }

  /**
   * Confirmed read indexes not handed out yet, for a driver that answers reads between `ready()`
   * and `advance()`, while that Ready's write is in progress: a read index is a commit index
   * confirmed by a quorum round, and serving it needs only the entries up to it applied, nothing
   * from the local write. The next Ready leaves the taken ones out.
   */
  takeReadStates(): ReadState[] {
    if (this.#readStates.length === 0) return [];
    const taken = this.#readStates;
    this.#readStates = [];
    return taken;
  }

  /**
   * Messages waiting for the next Ready that `pick` says may leave now, taken out (in order), for
   * a driver that sends them while a Ready's write is in progress (persist-rules.ts
   * `sendableDuringWrite`).
   */
  takeMessages(pick: (m: Message) => boolean): Message[] {
    if (!this.#msgs.some(pick)) return [];
    const taken: Message[] = [];
    const rest: Message[] = [];
    for (const m of this.#msgs) (pick(m) ? taken : rest).push(m);
    this.#msgs = rest;
    return taken;
  }

  /** The driver has persisted, sent and applied what `rd` asked for. */
  advance(rd: Ready): void {
    const last = rd.entries[rd.entries.length - 1];
    if (last && this.#log.matchTerm(last.index, last.term)) {
      this.#log.stable = Math.max(this.#log.stable, last.index);
    }
    if (rd.snapshot) this.#log.stable = Math.max(this.#log.stable, rd.snapshot.meta.index);
    if (this.#role === 'leader') this.#maybeCommit();
  }

  /** The known leader ('' when none): what status().leader says, without building the status. */
  leader(): NodeId {
    return this.#leader;
  }

  status(): CoreStatus {
    const peers: Record<NodeId, PeerStatus> = {};
    const m = this.membership();
    if (this.#role === 'leader') {
      for (const [id, pr] of this.#progress) {
        peers[id] = {
          match: pr.match,
          next: pr.next,
          state: pr.state,
          recentActive: pr.recentActive,
          learner: m.learners.includes(id),
        };
      }
    }
    return {
      id: this.id,
      role: this.#role,
      leader: this.#leader,
      term: this.#term,
      vote: this.#vote,
      commit: this.#log.committed,
      applied: this.#log.applied,
      lastIndex: this.#log.lastIndex(),
      firstIndex: this.#log.firstIndex(),
      membership: cloneMembership(m),
      ticksSinceLeader: this.#role === 'leader' ? 0 : this.#electionElapsed,
      leadTransferee: this.#leadTransferee,
      uncommittedBytes: this.#uncommittedBytes,
      peers,
    };
  }

  /** For invariant checks in tests: the in-memory log (do not mutate). */
  logView(): { offset: number; offsetTerm: number; entries: readonly Entry[]; committed: number; stable: number } {
    const l = this.#log;
    return { offset: l.offset, offsetTerm: l.offsetTerm, entries: l.entries, committed: l.committed, stable: l.stable };
  }
}
