// Edge-triggered waiters for blocking queries: one record per held request in a Set per key
// (service, catalog or namespace), fired once when that key's index moves past the waiter's.

/** One held request. Reachable only from its key's Set (and its cancel function) while waiting. */
interface Waiter {
  readonly key: string;
  readonly after: number;
  /** Cleared when fired or cancelled, so each waiter fires at most once. */
  fire: (() => void) | null;
  /** The Set it sits in; null once fired, cancelled, or when it was due at registration. */
  set: Set<Waiter> | null;
}

// Keys carry the namespace length so that no (ns, service) pair can spell another's key.
export function serviceKey(ns: string, service: string): string {
  return `s${ns.length}:${ns}/${service}`;
}

export function catalogKey(ns: string): string {
  return `c${ns.length}:${ns}`;
}

export function namespaceKey(ns: string): string {
  return `n${ns.length}:${ns}`;
}

export interface WatchersOptions {
  /**
   * Receives what a fire callback threw. Callbacks run inside apply(), which must go on, so a throw
   * is caught; by default it is rethrown from a microtask so that the bug is loud.
   */
  onError?: (err: unknown) => void;
}

export class Watchers {
  #byKey = new Map<string, Set<Waiter>>();
  #count = 0;
  #onError: (err: unknown) => void;

  constructor(opts: WatchersOptions = {}) {
    this.#onError =
      opts.onError ??
      ((err) =>
        queueMicrotask(() => {
          throw err;
        }));
  }

  /** Waiters currently held (for the "blocking queries held" metric). */
  get size(): number {
    return this.#count;
  }

  /** Waiters held on one key. */
  count(key: string): number {
    return this.#byKey.get(key)?.size ?? 0;
  }

  /**
   * Calls `fire` once when `key`'s index exceeds `after`. When `current` (the key's index now)
   * already does, `fire` runs from a microtask, never synchronously, so callers may finish setting
   * up first. Returns an O(1) cancel; cancelling after the fire is a no-op.
   */
  watch(key: string, current: number, after: number, fire: () => void): () => void {
    if (current > after) {
      const w: Waiter = { key, after, fire, set: null };
      queueMicrotask(() => this.#fire(w));
      return () => {
        w.fire = null;
      };
    }
    let set = this.#byKey.get(key);
    if (!set) {
      set = new Set();
      this.#byKey.set(key, set);
    }
    const w: Waiter = { key, after, fire, set };
    set.add(w);
    this.#count++;
    return () => this.#cancel(w);
  }

  /**
   * `key`'s index is now `index`: fires, in registration order, every waiter on it with
   * after < index, and keeps the others. Returns how many fired.
   */
  notify(key: string, index: number): number {
    const set = this.#byKey.get(key);
    if (!set) return 0;
    // Detach first: callbacks may re-watch the same key (they land in a fresh Set) or cancel
    // waiters not yet visited (Set iteration skips entries deleted during it).
    this.#byKey.delete(key);
    let fired = 0;
    let keep: Waiter[] | null = null;
    for (const w of set) {
      if (w.after < index) {
        w.set = null;
        this.#count--;
        fired++;
        this.#fire(w);
      } else {
        (keep ??= []).push(w);
      }
    }
    if (keep) {
      let fresh = this.#byKey.get(key);
      if (!fresh) {
        fresh = new Set();
        this.#byKey.set(key, fresh);
      }
      for (const w of keep) {
        if (w.set !== set) continue; // cancelled by a callback meanwhile
        w.set = fresh;
        fresh.add(w);
      }
    }
    return fired;
  }

  /** Fires every waiter on every key (after a restore, when any index may have moved either way). */
  fireAll(): number {
    const all = this.#byKey;
    this.#byKey = new Map();
    let fired = 0;
    for (const set of all.values()) {
      for (const w of set) {
        w.set = null;
        this.#count--;
        fired++;
        this.#fire(w);
      }
    }
    return fired;
  }

  #fire(w: Waiter): void {
    const fire = w.fire;
    if (!fire) return;
    w.fire = null;
    try {
      fire();
    } catch (err) {
      this.#onError(err);
    }
  }

  #cancel(w: Waiter): void {
    w.fire = null;
    const set = w.set;
    if (!set) return;
    w.set = null;
    set.delete(w);
    this.#count--;
    if (set.size === 0 && this.#byKey.get(w.key) === set) this.#byKey.delete(w.key);
  }
}
