// The core's in-memory view of the log: entries after `offset` (everything older is covered by a
// snapshot), the commit and applied points, and which suffix is not yet persisted.

import { invariant } from './errors.ts';
import { entrySize } from './codec.ts';
import type { Entry } from './types.ts';

export class RaftLog {
  /** Index just before the first in-memory entry; its term is `offsetTerm`. */
  offset: number;
  offsetTerm: number;
  entries: Entry[];
  committed: number;
  /** Highest index handed to the driver for applying (it applies before the next `ready()`). */
  applied: number;
  /** Every entry ≤ stable is durable on this node. */
  stable: number;
  /** First index not yet handed to the driver for persisting. */
  unstableFrom: number;

  constructor(offset: number, offsetTerm: number, entries: Entry[], committed: number) {
    this.offset = offset;
    this.offsetTerm = offsetTerm;
    this.entries = entries;
    for (let i = 0; i < entries.length; i++) {
      invariant(entries[i]!.index === offset + 1 + i, `log entries not contiguous at ${offset + 1 + i}`);
    }
    this.committed = Math.max(committed, offset);
    invariant(this.committed <= this.lastIndex(), `commit ${committed} beyond last index ${this.lastIndex()}`);
    this.applied = offset;
    this.stable = this.lastIndex();
    this.unstableFrom = this.lastIndex() + 1;
  }

  firstIndex(): number {
    return this.offset + 1;
  }

  lastIndex(): number {
    return this.offset + this.entries.length;
  }

  lastTerm(): number {
    return this.term(this.lastIndex())!;
  }

  /** Term of entry `i`, or undefined when it is compacted away or beyond the end. */
  term(i: number): number | undefined {
    if (i === this.offset) return this.offsetTerm;
    if (i < this.offset || i > this.lastIndex()) return undefined;
    return this.entries[i - this.offset - 1]!.term;
  }

  entry(i: number): Entry | undefined {
    if (i <= this.offset || i > this.lastIndex()) return undefined;
    return this.entries[i - this.offset - 1];
  }

  matchTerm(i: number, t: number): boolean {
    return this.term(i) === t;
  }

  /** §5.4.1: a candidate's log is at least as up to date as ours. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm();
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex());
  }

  /** Leader append. */
  append(es: Entry[]): void {
    if (es.length === 0) return;
    invariant(es[0]!.index === this.lastIndex() + 1, 'leader append must extend the log');
    for (const e of es) this.entries.push(e);
  }

  /**
   * Follower append (§5.3): returns the last index known to match the leader, or null when the
   * log does not contain prevIndex/prevTerm. Conflicting suffixes are truncated (never below commit).
   * `onTruncate` is told the first removed index.
   */
  maybeAppend(prevIndex: number, prevTerm: number, es: Entry[], onTruncate: (from: number) => void): number | null {
    if (!this.matchTerm(prevIndex, prevTerm)) return null;
    let i = 0;
    for (; i < es.length; i++) {
      const e = es[i]!;
      if (e.index <= this.offset) continue; // covered by our snapshot: committed, hence matching
      const t = this.term(e.index);
      if (t === undefined) break; // beyond our end
      if (t !== e.term) {
        invariant(e.index > this.committed, `conflict at ${e.index} at or below commit ${this.committed}`);
        this.truncateFrom(e.index);
        onTruncate(e.index);
        break;
      }
    }
    for (; i < es.length; i++) {
      const e = es[i]!;
      if (e.index <= this.lastIndex()) continue;
      invariant(e.index === this.lastIndex() + 1, 'append entries not contiguous');
      this.entries.push(e);
    }
    return prevIndex + es.length;
  }

  truncateFrom(index: number): void {
    invariant(index > this.committed, `truncate from ${index} at or below commit ${this.committed}`);
    invariant(index > this.offset, 'truncate below offset');
    this.entries.length = index - this.offset - 1;
    this.stable = Math.min(this.stable, index - 1);
    this.unstableFrom = Math.min(this.unstableFrom, index);
  }

  /** Entries [lo, hi] bounded by count and bytes (always at least one if any). */
  slice(lo: number, hi: number, maxCount = Infinity, maxBytes = Infinity): Entry[] {
    invariant(lo > this.offset, `slice ${lo} below offset ${this.offset}`);
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i <= Math.min(hi, this.lastIndex()) && out.length < maxCount; i++) {
      const e = this.entries[i - this.offset - 1]!;
      bytes += entrySize(e);
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  commitTo(i: number): boolean {
    if (i <= this.committed) return false;
    invariant(i <= this.lastIndex(), `commit ${i} beyond last index ${this.lastIndex()}`);
    this.committed = i;
    return true;
  }

  /** Largest index ≤ i whose term ≤ t (for fast conflict back-off). */
  findConflictByTerm(i: number, t: number): number {
    for (let j = Math.min(i, this.lastIndex()); j > this.offset; j--) {
      if (this.term(j)! <= t) return j;
    }
    return this.offset;
  }

  /** Replaces everything with a snapshot's position. */
  restore(index: number, term: number): void {
    this.offset = index;
    this.offsetTerm = term;
    this.entries = [];
    this.committed = index;
    this.applied = index;
    this.stable = index;
    this.unstableFrom = index + 1;
  }

  /** Drops entries ≤ through (they are covered by a snapshot). */
  compact(through: number): void {
    if (through <= this.offset) return;
    invariant(through <= this.applied, `compact ${through} beyond applied ${this.applied}`);
    const t = this.term(through)!;
    this.entries = this.entries.slice(through - this.offset);
    this.offset = through;
    this.offsetTerm = t;
  }
}
