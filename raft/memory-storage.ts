// In-memory twins of the storage ports (RaftStorage, SnapshotStore) for unit and simulation tests.
// Same contracts as LevelStorage and FileSnapshotStore, held in plain arrays; nothing is ever lost.

import { SiderError, invariant } from './errors.ts';
import type { Identity, RaftStorage, SnapshotStore } from './ports.ts';
import { cloneMembership } from './types.ts';
import type { Entry, HardState, Snapshot, SnapshotMeta } from './types.ts';

/**
 * The caller's side of `appendEntries`/`save`, shared by every RaftStorage: entries are contiguous
 * with indices ≥ 1, and on a non-empty log they start at or before lastIndex+1 (a later start
 * would leave a gap). Violations are driver bugs, so they throw InvariantError.
 */
export function checkAppend(entries: Entry[], lastIndex: number): void {
  const start = entries[0]?.index;
  if (start === undefined) return;
  invariant(Number.isSafeInteger(start) && start >= 1, `entries start at index ${start}`);
  invariant(
    lastIndex === 0 || start <= lastIndex + 1,
    `append at ${start} would leave a gap after last index ${lastIndex}`,
  );
  for (let i = 1; i < entries.length; i++) {
    invariant(entries[i]!.index === start + i, `entries not contiguous at position ${i}`);
  }
}

/**
 * The caller's side of `loadEntries`, shared by every RaftStorage: `lo > hi` is an empty range
 * (returns false), otherwise [lo, hi] must lie inside [firstIndex, lastIndex] (compacted or
 * missing entries are the caller's to check first; asking for them throws InvariantError).
 */
export function checkLoadRange(lo: number, hi: number, first: number, last: number): boolean {
  invariant(Number.isSafeInteger(lo) && Number.isSafeInteger(hi), `loadEntries(${lo}, ${hi}): not integers`);
  if (lo > hi) return false;
  invariant(first !== 0 && lo >= first && hi <= last, `loadEntries(${lo}, ${hi}) outside stored log [${first}, ${last}]`);
  return true;
}

/** Validates a snapshot store's `retain` setting. */
export function checkRetain(retain: number): void {
  if (!Number.isSafeInteger(retain) || retain < 1) {
    throw new SiderError('SIDER_CONFIG', `snapshot retain must be an integer ≥ 1, got ${retain}`);
  }
}

function copyEntry(e: Entry): Entry {
  return { index: e.index, term: e.term, type: e.type, rid: e.rid, data: new Uint8Array(e.data) };
}

/**
 * RaftStorage held in memory. Usable as soon as it is constructed; `close()` makes every call fail
 * until `open()` is called again, and the contents survive close/open (a "restart" in simulations).
 * Entries are copied in and out so callers cannot alter what is stored.
 *
 * firstIndex()/lastIndex() are 0 when the log is empty; appending to an empty log accepts any start
 * index (the log restarts after a snapshot), appending to a non-empty log must start at or before
 * lastIndex()+1.
 */
export class MemoryStorage implements RaftStorage {
  #entries: Entry[] = [];
  #hardState: HardState | null = null;
  #identity: Identity | null = null;
  #open = true;

  async open(): Promise<void> {
    this.#open = true;
  }

  async close(): Promise<void> {
    this.#open = false;
  }

  firstIndex(): number {
    return this.#entries[0]?.index ?? 0;
  }

  lastIndex(): number {
    return this.#entries.at(-1)?.index ?? 0;
  }

  async loadEntries(lo: number, hi: number): Promise<Entry[]> {
    this.#assertOpen();
    if (!checkLoadRange(lo, hi, this.firstIndex(), this.lastIndex())) return [];
    const first = this.firstIndex();
    return this.#entries.slice(lo - first, hi - first + 1).map(copyEntry);
  }

  async appendEntries(entries: Entry[]): Promise<void> {
    this.#assertOpen();
    this.#append(entries);
  }

  async compact(through: number): Promise<void> {
    this.#assertOpen();
    const first = this.firstIndex();
    if (first === 0 || through < first) return;
    this.#entries = this.#entries.slice(through - first + 1);
  }

  async save(hardState: HardState | null, entries: Entry[]): Promise<void> {
    this.#assertOpen();
    this.#append(entries);
    if (hardState) this.#hardState = { ...hardState };
  }

  async loadIdentity(): Promise<Identity | null> {
    this.#assertOpen();
    return this.#identity ? { ...this.#identity } : null;
  }

  async saveIdentity(identity: Identity): Promise<void> {
    this.#assertOpen();
    this.#identity = { clusterId: identity.clusterId, nodeId: identity.nodeId };
  }

  async loadHardState(): Promise<HardState | null> {
    this.#assertOpen();
    return this.#hardState ? { ...this.#hardState } : null;
  }

  async saveHardState(hs: HardState): Promise<void> {
    this.#assertOpen();
    this.#hardState = { ...hs };
  }

  #append(entries: Entry[]): void {
    const first = this.firstIndex();
    const last = this.lastIndex();
    checkAppend(entries, last);
    const start = entries[0]?.index;
    if (start === undefined) return;
    const kept = first === 0 || start <= first ? [] : this.#entries.slice(0, start - first);
    this.#entries = kept.concat(entries.map(copyEntry));
  }

  #assertOpen(): void {
    invariant(this.#open, 'MemoryStorage used while closed');
  }
}

function compareMeta(a: SnapshotMeta, b: SnapshotMeta): number {
  return a.index - b.index || a.term - b.term;
}

function copyMeta(m: SnapshotMeta): SnapshotMeta {
  return { index: m.index, term: m.term, membership: cloneMembership(m.membership) };
}

function copySnapshot(s: Snapshot): Snapshot {
  return { meta: copyMeta(s.meta), data: new Uint8Array(s.data) };
}

/**
 * SnapshotStore held in memory: keeps the newest `retain` snapshots (by index, then term); saving a
 * snapshot with the same index and term as a kept one replaces it.
 */
export class MemorySnapshotStore implements SnapshotStore {
  #retain: number;
  /** Oldest first. */
  #snapshots: Snapshot[] = [];

  constructor(retain = 2) {
    checkRetain(retain);
    this.#retain = retain;
  }

  async save(snapshot: Snapshot): Promise<void> {
    const kept = this.#snapshots.filter((s) => compareMeta(s.meta, snapshot.meta) !== 0);
    kept.push(copySnapshot(snapshot));
    kept.sort((a, b) => compareMeta(a.meta, b.meta));
    this.#snapshots = kept.slice(-this.#retain);
  }

  async latest(): Promise<Snapshot | null> {
    const s = this.#snapshots.at(-1);
    return s ? copySnapshot(s) : null;
  }

  async list(): Promise<SnapshotMeta[]> {
    return this.#snapshots.map((s) => copyMeta(s.meta)).reverse();
  }
}
