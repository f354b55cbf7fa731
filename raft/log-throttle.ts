// Bounded logging of repeated events: a peer that keeps sending what this node refuses (another
// cluster, another version, a wrong key) must not write a warning per request, ten a second.

/**
 * Admits at most one occurrence per key per interval and counts the others, so that the next
 * admitted one can say how many were left out. Remembers at most `maxKeys` keys (the least recently
 * admitted one goes first), so that varying keys cannot grow it.
 */
export class LogThrottle {
  readonly #intervalMs: number;
  readonly #maxKeys: number;
  readonly #now: () => number;
  #keys = new Map<string, { at: number; suppressed: number }>();

  constructor(intervalMs: number, maxKeys = 1024, now: () => number = Date.now) {
    this.#intervalMs = intervalMs;
    this.#maxKeys = maxKeys;
    this.#now = now;
  }

  /** null: leave this occurrence out. Otherwise log it, with the returned count of occurrences left out since the last one logged. */
  admit(key: string): number | null {
    const now = this.#now();
    const seen = this.#keys.get(key);
    if (seen && now - seen.at < this.#intervalMs) {
      seen.suppressed++;
      return null;
    }
    const suppressed = seen?.suppressed ?? 0;
    // Re-inserted: the map's order is the order of last admission.
    this.#keys.delete(key);
    this.#keys.set(key, { at: now, suppressed: 0 });
    if (this.#keys.size > this.#maxKeys) this.#keys.delete(this.#keys.keys().next().value!);
    return suppressed;
  }

  get size(): number {
    return this.#keys.size;
  }
}
