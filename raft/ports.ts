// The ports through which the Raft driver reaches the outside world. Each has a durable or
// networked implementation and an in-memory twin; one conformance suite runs against both.

import type { Entry, HardState, Membership, Message, NodeId, Snapshot, SnapshotMeta } from './types.ts';

/** Who owns a data directory: written once, checked at every start. */
export interface Identity {
  clusterId: string;
  nodeId: NodeId;
}

/** Term, vote and commit, plus the data directory's identity. Every write is synced. */
export interface StableStore {
  loadIdentity(): Promise<Identity | null>;
  saveIdentity(identity: Identity): Promise<void>;
  loadHardState(): Promise<HardState | null>;
  saveHardState(hs: HardState): Promise<void>;
}

/** The Raft log. Entries carry checksums on disk; a bad checksum or a gap refuses to load. */
export interface LogStore {
  /** Index of the first stored entry, or 0 when empty. Valid after `open()`. */
  firstIndex(): number;
  /** Index of the last stored entry, or 0 when empty. Valid after `open()`. */
  lastIndex(): number;
  /** Entries [lo, hi] inclusive, verified. Throws SIDER_CORRUPT_STORE on checksum failure or gap. */
  loadEntries(lo: number, hi: number): Promise<Entry[]>;
  /** Removes every entry with index ≥ entries[0].index, then stores entries (contiguous), synced. */
  appendEntries(entries: Entry[]): Promise<void>;
  /** Removes every entry with index ≤ through (after a snapshot covers them). */
  compact(through: number): Promise<void>;
}

/** LogStore and StableStore in one store so that group commit is one synced batch. */
export interface RaftStorage extends LogStore, StableStore {
  open(): Promise<void>;
  close(): Promise<void>;
  /**
   * Group commit: replace-suffix-and-append `entries` and set `hardState` in one synced write. (A
   * hard state that moved only `commit` need not be durable — it is recovered from the log, etcd's
   * MustSync rule — so the driver does not write it on its own but with the next synced batch.)
   */
  save(hardState: HardState | null, entries: Entry[]): Promise<void>;
}

/**
 * Snapshot files: written to a temp name, fsynced, renamed, directory fsynced; each carries a
 * checksum, its last index/term and membership; only the newest `retain` are kept.
 */
export interface SnapshotStore {
  save(snapshot: Snapshot): Promise<void>;
  /** The newest snapshot, verified; null when none. Throws SIDER_CORRUPT_STORE on a bad file. */
  latest(): Promise<Snapshot | null>;
  /** Metadata of the stored snapshots, newest first. */
  list(): Promise<SnapshotMeta[]>;
}

export type TransportReport =
  | { kind: 'unreachable'; to: NodeId }
  | { kind: 'snapshot'; to: NodeId; ok: boolean };

/**
 * Carries Raft messages between nodes. Messages are one-way (a response is a message sent back).
 * Bulk traffic (`app`, `snap`) and control traffic (heartbeats, votes, everything else) use
 * separate connections so control never waits behind bulk. Every request is authenticated.
 */
export interface Transport {
  /** Starts accepting messages for this node; `deliver` is called once per authenticated message. */
  start(deliver: (m: Message) => void, report: (r: TransportReport) => void): Promise<void>;
  /** Where peers are. Called whenever the membership changes. */
  setPeers(addrs: Record<NodeId, string>): void;
  /** Queues `m` for its destination. Never throws for network errors: they come back as reports. */
  send(m: Message): void;
  close(): Promise<void>;
}

/** A point-in-time view captured synchronously by `snapshot()`, serialized later off the apply path. */
export type SnapshotWriter = () => Promise<Uint8Array>;

/** The application replicated by Raft. `apply` must be deterministic: no clock, randomness or I/O. */
export interface StateMachine {
  /** Applies a committed `normal` entry; the return value goes to the proposer. */
  apply(entry: Entry): unknown;
  /** Captures the state as of the last applied entry, quickly; the returned writer serializes it. */
  snapshot(): SnapshotWriter;
  /** Replaces the whole state with a snapshot's. */
  restore(data: Uint8Array, meta: SnapshotMeta): void;
}

export type { Membership };
