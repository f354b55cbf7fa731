// The data that crosses the boundaries of the Raft library: log entries, membership, messages,
// hard state, snapshots, and the `Ready` record the pure core hands to its driver.

export type NodeId = string;

/** `normal` carries application data; `conf` a membership change; `noop` is the leader's election entry. */
export type EntryType = 'normal' | 'conf' | 'noop';

export interface Entry {
  index: number;
  term: number;
  type: EntryType;
  /** Application bytes for `normal`; an encoded `ConfChange` (see codec) for `conf`; empty for `noop`. */
  data: Uint8Array;
  /**
   * Client request ID given at proposal time, carried verbatim so the application can drop a
   * retried duplicate when it applies the entry. Empty string when the client gave none.
   */
  rid: string;
}

/**
 * The cluster configuration. Single-server changes only: each `conf` entry changes one member.
 * `removed` remembers every ID ever removed so an ID is never reused (IDs are unique forever).
 */
export interface Membership {
  voters: NodeId[];
  learners: NodeId[];
  /** Raft address (host:port) of every current member. */
  addrs: Record<NodeId, string>;
  removed: NodeId[];
}

/** `bootstrap` makes `id` the sole voter of an empty configuration (first entry of a new cluster). */
export type ConfChangeOp = 'addLearner' | 'promote' | 'remove' | 'bootstrap';

export interface ConfChange {
  op: ConfChangeOp;
  id: NodeId;
  /** Required for `addLearner`. */
  addr?: string;
}

/** Persisted before any message that depends on it is sent. */
export interface HardState {
  term: number;
  /** Candidate voted for in `term`, or '' for none. */
  vote: NodeId;
  commit: number;
}

export interface SnapshotMeta {
  index: number;
  term: number;
  membership: Membership;
}

export interface Snapshot {
  meta: SnapshotMeta;
  data: Uint8Array;
}

export type MessageType =
  | 'app'
  | 'appResp'
  | 'heartbeat'
  | 'heartbeatResp'
  | 'preVote'
  | 'preVoteResp'
  | 'vote'
  | 'voteResp'
  | 'snap'
  | 'timeoutNow'
  | 'readIndex'
  | 'readIndexResp';

/**
 * One Raft RPC. A flat record (like etcd's raftpb.Message) so that it encodes simply; fields not
 * used by a type are left at their zero values.
 *
 * - `app`: prevIndex/prevTerm, entries, commit.
 * - `appResp`: index = the follower's last matching index on success; on reject, index = the
 *   rejected prevIndex and hint/hintTerm say where the follower's log ends or conflicts.
 * - `heartbeat`: commit (bounded by the follower's match), ctx = read-round sequence.
 * - `heartbeatResp`: ctx echoed.
 * - `preVote`/`vote`: index/logTerm = candidate's last log entry; ctx = 1 for a leadership
 *   transfer (the receiver must not ignore it for having heard from a leader recently).
 * - `preVoteResp`/`voteResp`: reject.
 * - `snap`: snapshot (meta and data; the sender's driver fills data).
 * - `readIndex`: ctx = the follower's read context. `readIndexResp`: ctx echoed, index = read index
 *   (or reject = true if the leader could not serve it).
 */
export interface Message {
  type: MessageType;
  from: NodeId;
  to: NodeId;
  term: number;
  index: number;
  logTerm: number;
  commit: number;
  entries: Entry[];
  reject: boolean;
  hint: number;
  hintTerm: number;
  ctx: number;
  snapshot: Snapshot | null;
}

export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader';

export interface SoftState {
  leader: NodeId;
  role: Role;
}

/** A linearizable read may be served once the state machine has applied `index`. */
export interface ReadState {
  ctx: number;
  index: number;
}

/**
 * What the core asks its driver to do. The driver must, in this order:
 *  1. if `snapshot` is set, persist it (snapshot store) and restore the state machine from it;
 *  2. apply `committed` in order (committed entries are final: this may happen before, during or
 *     after step 3, as in etcd; RaftNode does it before, so answers do not wait for step 3);
 *  3. persist `entries` (an entry whose index is ≤ the last stored index replaces that index and
 *     everything after it) and `hardState`, durably (`sync: true`) and in one batch;
 *  4. only then send `messages` (a vote or an acknowledgement must never leave before the state it
 *     promises is on disk; persist-rules.ts `splitMessages` says which may leave before), fail
 *     `droppedReads`; answer `readStates` once their index is applied (any time after step 2);
 *  5. call `core.advance(ready)`.
 * The driver calls `ready()` again only after `advance()`. Between `ready()` and `advance()`
 * (while the write of step 3 is in progress) it may step messages, and then take what they
 * committed (`takeCommitted()`, applied after this Ready's `committed`), the reads they confirmed
 * (`takeReadStates()`) and the messages `sendableDuringWrite` allows (`takeMessages()`); a leader's
 * driver may also start the quorum round of reads asked meanwhile (`startReadRound()`, whose
 * heartbeats `takeMessages()` then hands out). The next Ready leaves out what was taken.
 */
export interface Ready {
  softState: SoftState | null;
  hardState: HardState | null;
  snapshot: Snapshot | null;
  entries: Entry[];
  messages: Message[];
  committed: Entry[];
  readStates: ReadState[];
  /** Read contexts the core gave up on (leadership lost, no leader): fail them, the client may retry. */
  droppedReads: number[];
  /** Set when the configuration in effect changed (on append, not commit): update the transport's peers. */
  membership: Membership | null;
}

export function emptyMessage(type: MessageType, from: NodeId, to: NodeId, term: number): Message {
  return {
    type,
    from,
    to,
    term,
    index: 0,
    logTerm: 0,
    commit: 0,
    entries: [],
    reject: false,
    hint: 0,
    hintTerm: 0,
    ctx: 0,
    snapshot: null,
  };
}

export function emptyMembership(): Membership {
  return { voters: [], learners: [], addrs: {}, removed: [] };
}

export function cloneMembership(m: Membership): Membership {
  return {
    voters: [...m.voters],
    learners: [...m.learners],
    addrs: { ...m.addrs },
    removed: [...m.removed],
  };
}
