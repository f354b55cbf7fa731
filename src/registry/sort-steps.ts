// A sort that can be sliced: for snapshot data with one element per check of a namespace (tens of
// thousands), which one Array.prototype.sort call would hold the event loop for tens of ms.

/** Elements sorted by one Array.prototype.sort call, between yields. */
export const SORT_RUN = 1024;
/** Elements moved by the merge between yields. */
export const MERGE_STEP = 4096;

/**
 * Sorts `items` by `key` in code-unit order (as `<` compares strings), stably, without modifying
 * `items`: a generator that yields after each run of SORT_RUN elements is sorted and after every
 * MERGE_STEP elements merged, and returns the sorted array. Run it through to the end in one go, or
 * resume it across turns of the event loop.
 */
export function* sortSteps<T>(items: readonly T[], key: (item: T) => string): Generator<void, T[], void> {
  const n = items.length;
  const byKey = (a: T, b: T): number => {
    const ka = key(a);
    const kb = key(b);
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  };
  let src = items.slice();
  if (n <= SORT_RUN) return src.sort(byKey);
  for (let lo = 0; lo < n; lo += SORT_RUN) {
    const run = src.slice(lo, lo + SORT_RUN).sort(byKey);
    for (let i = 0; i < run.length; i++) src[lo + i] = run[i]!;
    yield;
  }
  let dst: T[] = src.slice();
  let moved = 0;
  for (let width = SORT_RUN; width < n; width *= 2) {
    for (let lo = 0; lo < n; lo += 2 * width) {
      const mid = Math.min(lo + width, n);
      const hi = Math.min(lo + 2 * width, n);
      let i = lo;
      let j = mid;
      // On equal keys the left (earlier) element goes first: stable.
      for (let k = lo; k < hi; k++) {
        dst[k] = j >= hi || (i < mid && key(src[i]!) <= key(src[j]!)) ? src[i++]! : src[j++]!;
        if (++moved === MERGE_STEP) {
          moved = 0;
          yield;
        }
      }
    }
    [src, dst] = [dst, src];
  }
  return src;
}
