// Bounded logging of repeated events: a peer that keeps sending what this node refuses (another
// cluster, another version, a wrong key) must not write a warning per request, ten a second; nor
// may anyone write a line per request by varying what the key is made of.

import { shiftOldest } from './shift-oldest.ts';

/** What admit() says about an occurrence that is to be logged. */
export interface Admitted {
  /** Occurrences of this key left out since its last logged one. */
  suppressed: number;
  /** Occurrences of other keys left out because too many keys were logged in one interval. */
  suppressedOther: number;
}

/** The counts of `a` to add to the logged line's fields: only those that are not zero. */
export function leftOut(a: Admitted): { suppressed?: number; suppressedOther?: number } {
  return {
    ...(a.suppressed > 0 ? { suppressed: a.suppressed } : {}),
    ...(a.suppressedOther > 0 ? { suppressedOther: a.suppressedOther } : {}),
  };
}

/**
 * Admits at most one occurrence per key per interval and counts the others, so that the next
 * admitted one can say how many were left out; and at most `maxPerInterval` occurrences in all
 * per interval, whatever their keys. Remembers at most `maxKeys` keys (the least recently admitted
 * one goes first), so that varying keys cannot grow it.
 */
export class LogThrottle {
  readonly #intervalMs: number;
  readonly #maxKeys: number;
  readonly #maxPerInterval: number;
  readonly #now: () => number;
  #keys = new Map<string, { at: number; suppressed: number }>();
  #windowStart = -Infinity;
  #windowCount = 0;
  #suppressedOther = 0;

  constructor(intervalMs: number, opts: { maxKeys?: number; maxPerInterval?: number; now?: () => number } = {}) {
    this.#intervalMs = intervalMs;
    this.#maxKeys = opts.maxKeys ?? 1024;
    this.#maxPerInterval = opts.maxPerInterval ?? 64;
    this.#now = opts.now ?? Date.now;
  }

  /** null: leave this occurrence out. Otherwise log it, with the counts of occurrences left out. */
  admit(key: string): Admitted | null {
    const now = this.#now();
    const seen = this.#keys.get(key);
    if (seen && now - seen.at < this.#intervalMs) {
      seen.suppressed++;
      return null;
    }
    if (now - this.#windowStart >= this.#intervalMs) {
      this.#windowStart = now;
      this.#windowCount = 0;
    }
    if (this.#windowCount >= this.#maxPerInterval) {
      this.#suppressedOther++;
      return null;
    }
    this.#windowCount++;
    const admitted = { suppressed: seen?.suppressed ?? 0, suppressedOther: this.#suppressedOther };
    this.#suppressedOther = 0;
    // Re-inserted: the map's order is the order of last admission.
    this.#keys.delete(key);
    this.#keys.set(key, { at: now, suppressed: 0 });
    if (this.#keys.size > this.#maxKeys) shiftOldest(this.#keys);
    return admitted;
  }

  get size(): number {
    return this.#keys.size;
  }
}
