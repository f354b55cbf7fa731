// One `sider server` started in the test's own process with a cluster key (bootstrap, fast ticks,
// no DNS), led by itself, plus a one-connection undici pool to its HTTP address — as a forwarding
// follower's pool to a busy leader would reuse one connection. Torn down with the test.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { startServer } from '../../bin/server.ts';
import { loadServerConfig } from '../../src/config.ts';
import { freePort, waitFor } from './ports.ts';

export interface InProcessLeader {
  http: string;
  srv: Awaited<ReturnType<typeof startServer>>;
  pool: Pool;
}

export async function startKeyedLeader(t: { teardown(fn: () => unknown): void }, key: string, prefix: string): Promise<InProcessLeader> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const http = `127.0.0.1:${await freePort()}`;
  const raft = `127.0.0.1:${await freePort()}`;
  const cfg = loadServerConfig(['-bootstrap', '-raft-id', 's1', '-raft-dir', dir, '-http', http, '-raft-bind', raft, '-raft-tick-ms', '20', '-dns', 'off'], { SIDER_CLUSTER_KEY: key });
  const srv = await startServer(cfg, { log: () => {} });
  t.teardown(() => srv.close());
  await waitFor('leader', () => srv.raft.status().role === 'leader');
  const pool = new Pool(`http://${http}`, { connections: 1 });
  t.teardown(() => pool.close());
  return { http, srv, pool };
}
