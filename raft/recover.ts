// Disaster recovery after quorum is lost (`sider server -force-new-cluster`): rewrites a survivor's
// data directory so that it is the only voter of a new cluster, keeping every entry it holds.

import { randomUUID } from 'node:crypto';
import { decodeConfChange, encodeConfChange } from './codec.ts';
import { SiderError, invariant } from './errors.ts';
import { applyConfChange, isMember } from './membership.ts';
import type { RaftStorage, SnapshotStore } from './ports.ts';
import { cloneMembership, emptyMembership } from './types.ts';
import type { ConfChange, Entry, Membership, NodeId } from './types.ts';

/** Entries read per step while replaying the log's configuration changes. */
const READ_CHUNK = 4096;

export interface ForceNewClusterOptions {
  /** The data directory's log and stable store, closed: opened and closed here. */
  storage: RaftStorage;
  snapshots: SnapshotStore;
  /** This server's Raft ID; must be the directory's owner. */
  id: NodeId;
  /** The new cluster's ID (default: a random UUID). */
  clusterId?: string;
}

export interface ForceNewClusterReport {
  /** False when this server already was the only member: nothing was written, the cluster ID kept. */
  rewritten: boolean;
  previousClusterId: string;
  clusterId: string;
  /** Last index covered by the newest snapshot (0 without one). */
  snapshotIndex: number;
  /** The commit index the hard state recorded (it may lag what the cluster had committed). */
  storedCommit: number;
  /** Last entry held before the rewrite (snapshot or log); every entry up to it is kept. */
  lastIndex: number;
  /** Entries after the stored commit index that were kept and are now committed. */
  keptPastStoredCommit: number;
  /** The configuration the directory held, and the one it holds now. */
  previous: Membership;
  membership: Membership;
  /** The configuration entries appended (promote this server if it was a learner, remove every other member). */
  changes: ConfChange[];
  /** The new commit index: the last appended configuration entry. */
  commit: number;
  term: number;
}

function refuse(message: string): SiderError {
  return new SiderError('SIDER_CONFIG', `-force-new-cluster: ${message}`);
}

/**
 * Makes `id` the only voter of the Raft state in `storage`/`snapshots`, as etcd's
 * `--force-new-cluster` does, and gives the directory a new cluster ID so that the old members,
 * should they come back with their data, are refused by every transport and join check of the new
 * cluster instead of disrupting it.
 *
 * Every entry this server holds is kept and committed: Sider writes a commit index that moved on
 * its own only with the next synced batch (persist-rules.ts), and a follower learns of a commit one
 * heartbeat after the leader acknowledged it, so entries past the stored commit index can be writes
 * acknowledged to clients; the others were never acknowledged (their outcome was "unknown"), and a
 * normally elected leader would commit them too. Appended: one `promote` if this server is a
 * learner, then one `remove` per other member (removed IDs are never reused, as after any removal),
 * all in the hard state's term, and the hard state's commit moved to the last of them.
 *
 * Writes, each synced: the identity with the new cluster ID first, then the configuration entries
 * and the hard state in one batch. A crash between the two leaves a directory that can talk to
 * nobody (new cluster ID, old membership) until this is run again. Refuses (SIDER_CONFIG) a fresh
 * or empty directory, another node's, and one whose configuration does not name this server.
 */
export async function forceNewCluster(opts: ForceNewClusterOptions): Promise<ForceNewClusterReport> {
  const { storage, snapshots, id } = opts;
  await storage.open();
  try {
    const identity = await storage.loadIdentity();
    if (!identity) throw refuse('the data directory is fresh (no Raft state to recover); point -raft-dir at a surviving member\'s data directory');
    if (identity.nodeId !== id) {
      throw refuse(`the data directory belongs to node ${JSON.stringify(identity.nodeId)}, not ${JSON.stringify(id)}`);
    }
    // Verified whole, as RaftNode.open will read it.
    const snapshot = (await snapshots.latest())?.meta ?? null;
    const snapIndex = snapshot?.index ?? 0;
    const hs = await storage.loadHardState();
    let first = storage.firstIndex();
    let last = storage.lastIndex();
    if (last > 0 && last <= snapIndex) {
      // The log lies wholly behind the snapshot: it restarts after it.
      await storage.compact(last);
      first = 0;
      last = 0;
    }
    if (!snapshot && last === 0) throw refuse('the data directory holds no log and no snapshot: nothing to recover');
    const from = Math.max(first, snapIndex + 1);
    if (last > 0 && from !== snapIndex + 1) {
      throw new SiderError('SIDER_CORRUPT_STORE', `log starts at ${first} but the snapshot ends at ${snapIndex}; refusing to recover`);
    }

    // The configuration in effect at the last entry: the snapshot's, then every conf entry after it.
    let membership = snapshot ? cloneMembership(snapshot.membership) : emptyMembership();
    let lastTerm = snapshot?.term ?? 0;
    for (let lo = from; last > 0 && lo <= last; lo += READ_CHUNK) {
      const chunk: Entry[] = await storage.loadEntries(lo, Math.min(last, lo + READ_CHUNK - 1));
      for (const e of chunk) {
        if (e.type === 'conf') {
          let cc: ConfChange | null = null;
          try {
            cc = decodeConfChange(e.data);
          } catch {
            // The core ignores an undecodable conf entry on every node; so does this replay.
          }
          if (cc) membership = applyConfChange(membership, cc);
        }
        lastTerm = e.term;
      }
    }
    const lastIndex = Math.max(last, snapIndex);
    const storedCommit = hs?.commit ?? 0;
    const previous = cloneMembership(membership);
    if (!isMember(membership, id)) {
      throw refuse(`server ${JSON.stringify(id)} is not a member of the configuration in its data directory (voters ${JSON.stringify(membership.voters)}, learners ${JSON.stringify(membership.learners)}); recover from a member's directory`);
    }

    const changes: ConfChange[] = [];
    if (membership.learners.includes(id)) changes.push({ op: 'promote', id });
    for (const other of [...membership.voters, ...membership.learners].filter((x) => x !== id).sort()) changes.push({ op: 'remove', id: other });
    const report = {
      previousClusterId: identity.clusterId,
      snapshotIndex: snapIndex,
      storedCommit,
      lastIndex,
      keptPastStoredCommit: Math.max(0, lastIndex - Math.max(storedCommit, snapIndex)),
      previous,
      changes,
    };
    if (changes.length === 0) {
      return { ...report, rewritten: false, clusterId: identity.clusterId, membership, commit: Math.max(storedCommit, snapIndex), term: hs?.term ?? lastTerm };
    }

    const term = Math.max(hs?.term ?? 0, lastTerm);
    const entries: Entry[] = changes.map((cc, i) => {
      membership = applyConfChange(membership, cc);
      return { index: lastIndex + 1 + i, term, type: 'conf', rid: '', data: encodeConfChange(cc) };
    });
    invariant(
      membership.voters.length === 1 && membership.voters[0] === id && membership.learners.length === 0,
      `force-new-cluster left voters ${JSON.stringify(membership.voters)} learners ${JSON.stringify(membership.learners)}`,
    );
    const commit = lastIndex + entries.length;
    const clusterId = opts.clusterId ?? randomUUID();
    // The new identity first: a crash before the log is rewritten then leaves a directory that no
    // old member can talk to, rather than a lone voter under the old cluster ID.
    await storage.saveIdentity({ clusterId, nodeId: id });
    await storage.save({ term, vote: hs?.term === term ? hs.vote : '', commit }, entries);
    return { ...report, rewritten: true, clusterId, membership, commit, term };
  } finally {
    await storage.close();
  }
}
