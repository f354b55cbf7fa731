// The flags every launcher of `sider` gives node: the bin's shebang, `npm start`, the Docker image's
// ENTRYPOINT, deploy/local-cluster.sh and the test and benchmark harnesses (a unit test checks that
// they all do). They cannot be set from inside the process: V8 reads them when the heap is set up.
//
// --single-threaded-gc: V8 collects on the main thread only, with no parallel or concurrent helper
// threads. A server is a small-heap process that must answer within milliseconds; on the 2-core
// machines Sider targets (and with three servers on one machine) the helper threads compete with
// the servers' own event loops, and a parallel pause waits for a helper that is not scheduled. The
// README's "Runtime flags" has the measurements, and how to run without it.

export const SIDER_NODE_FLAGS: readonly string[] = ['--single-threaded-gc'];

/** The flags of SIDER_NODE_FLAGS this process was started without (node's own execArgv). */
export function missingNodeFlags(execArgv: readonly string[] = process.execArgv): string[] {
  return SIDER_NODE_FLAGS.filter((f) => !execArgv.includes(f));
}
