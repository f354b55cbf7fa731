// Deadlines kept in coarse buckets ("ticks") and visited in order, shared by the parked blocking
// queries (http/blocking.ts) and the leader's TTL deadline table (src/health/ttl.ts): a min-heap of
// tick numbers and the buckets over it.

/** Min-heap of bucket ticks (lazy: a tick whose bucket emptied stays until popped). */
class TickHeap {
  #a: number[] = [];

  peek(): number | undefined {
    return this.#a[0];
  }

  push(v: number): void {
    const a = this.#a;
    let i = a.length;
    a.push(v);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]! <= v) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = v;
  }

  pop(): number | undefined {
    const a = this.#a;
    const top = a[0];
    const last = a.pop();
    if (a.length === 0 || last === undefined) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= a.length) break;
      const r = l + 1;
      const c = r < a.length && a[r]! < a[l]! ? r : l;
      if (a[c]! >= last) break;
      a[i] = a[c]!;
      i = c;
    }
    a[i] = last;
    return top;
  }
}

/**
 * Items in buckets by integer tick, taken out in tick order: a Map of buckets over a TickHeap of
 * their ticks. A bucket emptied and deleted by its owner leaves its tick in the heap until popped.
 */
export class TickBuckets<T> {
  #buckets = new Map<number, T[]>();
  #ticks = new TickHeap();

  /** Buckets held. */
  get size(): number {
    return this.#buckets.size;
  }

  /** Appends `item` to the bucket of `tick` (made if missing); returns its position there (0: the bucket is new). */
  add(tick: number, item: T): number {
    const bucket = this.#buckets.get(tick);
    if (bucket) return bucket.push(item) - 1;
    this.#buckets.set(tick, [item]);
    this.#ticks.push(tick);
    return 0;
  }

  bucket(tick: number): T[] | undefined {
    return this.#buckets.get(tick);
  }

  delete(tick: number): void {
    this.#buckets.delete(tick);
  }

  /** Removes and returns the earliest bucket whose tick is ≤ `upTo`, or undefined when none is. */
  takeDue(upTo: number): [tick: number, items: T[]] | undefined {
    for (let tick = this.#ticks.peek(); tick !== undefined && tick <= upTo; tick = this.#ticks.peek()) {
      this.#ticks.pop();
      const bucket = this.#buckets.get(tick);
      if (!bucket) continue;
      this.#buckets.delete(tick);
      return [tick, bucket];
    }
    return undefined;
  }

  /** The earliest tick that has a bucket (undefined when none). */
  firstTick(): number | undefined {
    for (let tick = this.#ticks.peek(); tick !== undefined; tick = this.#ticks.peek()) {
      if (this.#buckets.has(tick)) return tick;
      this.#ticks.pop();
    }
    return undefined;
  }

  clear(): void {
    this.#buckets.clear();
    this.#ticks = new TickHeap();
  }
}
