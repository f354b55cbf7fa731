// What the front ends need from a server besides reading: writing through Raft (forwarded to the
// leader from a follower), choosing a read consistency, and cluster status and membership.

import type { ApplyResult, RegistryCommand, RegistryReader } from './model.ts';

/** `default` and `consistent` are linearizable (ReadIndex); `stale` reads local state at once. */
export type Consistency = 'default' | 'consistent' | 'stale';

export interface RaftServerView {
  ID: string;
  /** Raft address. */
  Address: string;
  Leader: boolean;
  Voter: boolean;
}

export interface RegistryService {
  readonly reader: RegistryReader;
  /** This server's name: the Node of instances registered through it. */
  readonly nodeName: string;
  /**
   * Applies `cmd` through Raft: on the leader it is proposed (with `now` restamped from the
   * leader's clock), on a follower forwarded to the leader. Resolves once the entry is applied on
   * this node, with what apply() returned and the entry's index. Rejects with a SiderError
   * (SIDER_NO_LEADER, SIDER_TIMEOUT, SIDER_TOO_MANY_UNCOMMITTED, …).
   */
  write(cmd: RegistryCommand, rid?: string): Promise<{ result: ApplyResult; index: number }>;
  /** Resolves when a read with this consistency may be served from `reader` on this node. */
  readBarrier(consistency: Consistency): Promise<void>;
  /** For X-Consul-KnownLeader and X-Consul-LastContact. */
  readMeta(): { knownLeader: boolean; lastContactMs: number };
  /** Raft address of the leader, '' when none is known. */
  leaderAddr(): string;
  /** Raft addresses of the voters. */
  peers(): string[];
  raftConfiguration(): { servers: RaftServerView[]; index: number };
  /** Adds a server (as a learner, promoted once caught up). Leader or forwarded. */
  joinServer(id: string, raftAddr: string): Promise<void>;
  removeServer(id: string): Promise<void>;
}
