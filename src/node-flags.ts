// The Node.js flags a Sider server runs with. They cannot be set from inside a running process
// (V8 sizes its heap at start), so every launcher passes them on node's command line: the `sider`
// shebang, `npm start`, `npm run sider`, the Docker image's ENTRYPOINT and
// deploy/local-cluster.sh; the test and benchmark harnesses take them from here.
// test/unit/node-flags.test.ts checks that all of them agree.

/**
 * `--max-semi-space-size=32` caps V8's young generation at 32 MiB per semi-space. Node 24 lets it
 * grow to 64 MiB per semi-space under a server's allocation rate, and a registry keeps much of what
 * it allocates (instances, checks, log entries until the next snapshot), so each scavenge copied
 * tens of MiB: on the 2-vCPU machine of README "Performance", a leader's scavenges took 15 ms at
 * the median and a follower's 19 ms, up to 40 – 60 ms, and every registration in flight waited for
 * them. At 32 MiB they take about half as long (7 – 8 ms on the leader, 12 – 14 ms on a follower)
 * for no more scavenging in all. 16 MiB halved them again, but then a scavenge fell inside every
 * wake of 10,000 blocking queries (whose answers outlive it) and pushed that wake past its 200 ms
 * target (README "Performance", 2026-12-08).
 */
export const SERVER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=32'];
