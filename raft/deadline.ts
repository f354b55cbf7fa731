// A per-request deadline signal whose timer goes away with the request.

/**
 * An AbortSignal that aborts after `ms` with the same TimeoutError as AbortSignal.timeout, and
 * `done()` to call when the work finished first. AbortSignal.timeout's own timer cannot be
 * cleared: it always runs out and then builds a DOMException for a signal nobody listens to any
 * more, which at hundreds of requests a second (Raft appends, forwarded writes) is measurable work
 * for nothing. The timer is unref'd, as AbortSignal.timeout's is.
 */
export function deadline(ms: number): { signal: AbortSignal; done: () => void } {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')), ms);
  timer.unref();
  return { signal: ac.signal, done: () => clearTimeout(timer) };
}
