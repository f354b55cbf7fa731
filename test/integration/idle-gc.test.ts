// Idle-time young-generation collection in a real server process (src/idle-gc.ts, -idle-gc-ms): after
// a burst of reads, a server left idle collects and says so at debug level; one started with
// -idle-gc-ms 0 beside it, given the same burst, does not.

import t from 'tap';
import { waitFor } from '../support/ports.ts';
import { SiderCluster } from '../support/server-process.ts';

const LINE = 'idle-time young-generation collection';

async function start(id: string, idleGcMs: number): Promise<SiderCluster> {
  const cluster = await SiderCluster.create({ ids: [id] });
  cluster.spec(id).extraArgs = ['-idle-gc-ms', String(idleGcMs), '-log-level', 'debug'];
  try {
    await cluster.form();
  } catch (err) {
    const logs = cluster.logs();
    await cluster.teardown();
    throw new Error(`${(err as Error).message}\n${logs}`);
  }
  return cluster;
}

/** Registers a service and reads it `n` times: garbage and survivors in the young generation. */
async function burst(cluster: SiderCluster, id: string, n: number): Promise<void> {
  const addr = cluster.addr(id);
  const reg = await cluster.http.call(addr, 'PUT', '/v1/agent/service/register', { body: { Name: 'idle-gc', ID: 'idle-gc-1', Address: '127.0.0.1', Port: 8080 } });
  if (reg.status !== 200) throw new Error(`register: ${reg.status} ${reg.text}`);
  for (let i = 0; i < n; i++) {
    const r = await cluster.http.call(addr, 'GET', '/v1/health/service/idle-gc?stale');
    if (r.status !== 200) throw new Error(`read: ${r.status} ${r.text}`);
  }
}

t.test('an idle server collects its young generation; -idle-gc-ms 0 turns that off', async (t) => {
  const on = await start('gc1', 50);
  t.teardown(() => on.teardown());
  const off = await start('gc2', 0);
  t.teardown(() => off.teardown());
  const lines = (c: SiderCluster, id: string): Record<string, unknown>[] => c.procs.get(id)!.logLines().filter((l) => l.msg === LINE);

  await Promise.all([burst(on, 'gc1', 300), burst(off, 'gc2', 300)]);
  const before = lines(on, 'gc1').length;
  // The server left alone collects once an interval of 50 ms passes idle.
  await waitFor('an idle-time collection after the burst', () => lines(on, 'gc1').length > before, 20_000, 50);
  const line = lines(on, 'gc1').at(-1)!;
  t.equal(typeof line.ms, 'number', 'the line says how long it took');
  t.ok((line.young as number) >= 0.1, `the young generation was ${String(line.young)} full (at least 0.1)`);
  t.equal(line.level, 'debug');
  // The same burst on the server with it off, over at least as long: no such line.
  t.equal(lines(off, 'gc2').length, 0, 'no idle-time collection with -idle-gc-ms 0');
  t.ok(off.procs.get('gc2')!.running, 'the other server is still up');
});
