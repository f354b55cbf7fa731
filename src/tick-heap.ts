// A min-heap of integer bucket numbers ("ticks"), shared by the structures that keep deadlines in
// coarse buckets and visit the due ones in order: parked blocking queries (http/blocking.ts) and the
// leader's TTL deadline table (src/health/ttl.ts).

/** Min-heap of bucket ticks (lazy: a tick whose bucket emptied stays until popped). */
export class TickHeap {
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
