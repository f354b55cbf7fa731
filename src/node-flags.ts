// The Node.js flags a Sider server runs with. They cannot be set from inside a running process
// (V8 sizes its heap at start), so every launcher passes them on node's command line: the
// `sider` shebang, `npm start`, the Docker image's ENTRYPOINT and deploy/local-cluster.sh; the
// test and benchmark harnesses take them from here. test/unit/node-flags.test.ts checks that
// all of them agree.

/**
 * `--max-semi-space-size=16` caps V8's young generation at 16 MiB per semi-space. Node 24 lets it
 * grow to 64 MiB per semi-space under a server's allocation rate, and a registry retains much of
 * what it allocates (instances, checks, log entries until the next snapshot), so each scavenge
 * copied tens of MiB: 15 ms at the median, 40 – 60 ms at the worst, on the 2-vCPU machine of
 * README "Performance", and every request in flight waited for it. At 16 MiB the pauses are a
 * third as long (median 4.5 ms) for the same total scavenging time (measured 2026-12-08 with
 * `--trace-gc`, README "Performance").
 */
export const SERVER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=16'];
