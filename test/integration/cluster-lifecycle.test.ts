// Cluster lifecycle with real `sider server` processes: three servers started together with
// -bootstrap-expect 3 -retry-join form one cluster with exactly one bootstrap; a restart with data
// rejoins without forming again; PUT /v1/agent/leave removes the leader; a rolling restart (SIGTERM,
// restart, each in turn) under a writing client loses no write.

import t from 'tap';
import { SiderChild, SiderCluster } from '../support/server-process.ts';
import type { SiderProcess } from '../support/server-process.ts';
import { waitFor } from '../support/ports.ts';
import { signRequest } from '../../src/cluster-auth.ts';

const CLUSTER_KEY = 'lifecycle-test-cluster-key-0123456789';

/** `sider server started` log lines of a process. */
function startedLines(p: SiderProcess): Record<string, unknown>[] {
  return p.logLines().filter((l) => l.msg === 'sider server started');
}

/** A cluster whose servers find each other with -bootstrap-expect 3 -retry-join (no -bootstrap, no -join). */
async function expectCluster(): Promise<SiderCluster> {
  const c = await SiderCluster.create({ clusterKey: CLUSTER_KEY });
  for (const id of c.ids) {
    const spec = c.spec(id);
    delete spec.bootstrap;
    delete spec.join;
    const peers = c.ids.filter((o) => o !== id).flatMap((o) => ['-retry-join', c.addr(o)]);
    spec.extraArgs = ['-bootstrap-expect', '3', ...peers];
  }
  return c;
}

async function signedLeave(c: SiderCluster, id: string, key = CLUSTER_KEY): Promise<{ status: number; text: string }> {
  return c.http.call(c.addr(id), 'PUT', '/v1/agent/leave', { headers: signRequest(key, 'PUT', '/v1/agent/leave', Buffer.alloc(0)), timeoutMs: 15_000 });
}

t.test('three servers started together with -bootstrap-expect 3 form one cluster', async (t) => {
  const c = (await expectCluster()).teardownWith(t);
  const procs = c.ids.map((id) => c.spawn(id));
  await c.waitVoters(['s1', 's2', 's3'], 60_000);
  // A server may be a voter a moment before it logs its start.
  await waitFor('every server to log its start', () => procs.every((p) => startedLines(p).length > 0), 30_000, 50);

  const started = procs.map((p) => startedLines(p)[0]);
  t.ok(started.every((l) => l !== undefined), 'every server logged its start');
  const clusterIds = new Set(started.map((l) => l?.clusterId));
  t.equal(clusterIds.size, 1, `one cluster ID across the three servers: ${[...clusterIds].join(', ')}`);
  const bootstrapped = procs.filter((p) => startedLines(p)[0]?.bootstrapped === true).map((p) => p.spec.id);
  t.same(bootstrapped, ['s1'], 'exactly one server bootstrapped, the smallest Raft ID');

  await t.test('a server restarted with its data rejoins without forming again', async (t) => {
    const st = await c.stop('s3');
    t.equal(st?.code, 0, 's3 stopped cleanly on SIGTERM');
    const again = c.spawn('s3');
    await c.waitVoters(['s1', 's2', 's3'], 60_000);
    await waitFor('s3 to start', () => startedLines(again).length > 0, 30_000, 50);
    const line = startedLines(again)[0]!;
    t.equal(line.bootstrapped, false, 'no bootstrap on restart');
    t.equal(line.clusterId, [...clusterIds][0], 'same cluster');
    t.notOk(again.logLines().some((l) => typeof l.msg === 'string' && l.msg.startsWith('formation:')), 'no formation step on restart');
  });

  await t.test('an unsigned leave is refused and changes nothing', async (t) => {
    const r = await c.http.call(c.addr('s2'), 'PUT', '/v1/agent/leave', { timeoutMs: 5_000 });
    t.equal(r.status, 401, r.text);
    const wrong = await signedLeave(c, 's2', 'a-different-cluster-key-0123456789');
    t.equal(wrong.status, 401, wrong.text);
    t.ok(c.running('s2'), 's2 still runs');
    await c.waitVoters(['s1', 's2', 's3'], 10_000);
  });

  await t.test('`sider leave` on the leader: it hands off, is removed, exits 0; the others serve', async (t) => {
    const leader = await c.leader();
    // The CLI signs PUT /v1/agent/leave with SIDER_CLUSTER_KEY.
    const cli = new SiderChild(['leave', '-http-addr', c.addr(leader), '-json'], 'sider leave', { SIDER_CLUSTER_KEY: CLUSTER_KEY });
    const exit = await cli.waitExit(30_000);
    t.equal(exit.code, 0, cli.output);
    const body = JSON.parse(cli.output) as { left: boolean; transferredTo: string };
    t.equal(body.left, true);
    t.not(body.transferredTo, '', 'leadership was handed to another voter');
    const st = await c.procs.get(leader)!.waitExit(20_000);
    t.equal(st.code, 0, 'the leaving server exits 0');
    const rest = c.ids.filter((id) => id !== leader);
    await c.waitVoters(rest, 20_000);
    const servers = await c.http.raftServers(c.addr(rest[0]!));
    t.same(servers.map((s) => s.ID).sort(), rest, 'the configuration has the two other servers only');
    const w = await c.http.call(c.addr(rest[1]!), 'PUT', '/v1/agent/service/register', { body: { Name: 'after-leave', ID: 'after-leave-1', Port: 1 }, timeoutMs: 10_000 });
    t.equal(w.status, 200, `a write after the leave succeeds: ${w.text}`);
  });
});

t.test('a rolling restart under a writing client loses no write', async (t) => {
  const c = (await SiderCluster.start({ clusterKey: CLUSTER_KEY })).teardownWith(t);
  let stop = false;
  let acked = 0;
  let longestGapMs = 0;
  let lastOk = Date.now();
  const failures: string[] = [];
  // One write at a time, each retried on the next running server until it succeeds (at most 30 s).
  const writer = (async () => {
    for (let i = 0; !stop && i < 100_000; i++) {
      const id = `roll-${i}`;
      const until = Date.now() + 30_000;
      let done = false;
      for (let attempt = 0; !done && Date.now() < until; attempt++) {
        const ids = c.ids.filter((s) => c.running(s));
        const target = ids[(i + attempt) % Math.max(1, ids.length)];
        if (target) {
          try {
            const r = await c.http.call(c.addr(target), 'PUT', '/v1/agent/service/register', { body: { Name: 'roll', ID: id, Port: 1 }, timeoutMs: 3_000 });
            done = r.status === 200;
          } catch {
            // refused while the target restarts
          }
        }
        if (!done) await new Promise((r) => setTimeout(r, 20));
      }
      if (!done) {
        failures.push(id);
        break;
      }
      acked++;
      const now = Date.now();
      longestGapMs = Math.max(longestGapMs, now - lastOk);
      lastOk = now;
    }
  })();
  for (const id of c.ids) {
    const st = await c.stop(id);
    t.equal(st?.code, 0, `${id} exits 0 on SIGTERM`);
    await c.startServer(id, { voter: true, timeoutMs: 60_000 });
  }
  await c.waitVoters(c.ids, 30_000);
  const before = acked;
  await waitFor('a few more writes after the restarts', () => acked >= before + 5 || failures.length > 0, 30_000, 20);
  stop = true;
  await writer;
  t.same(failures, [], 'every write eventually succeeded');
  t.ok(acked > 0, `${acked} writes acknowledged`);
  const roll = JSON.parse((await c.http.call(c.addr('s1'), 'GET', '/v1/catalog/service/roll', { timeoutMs: 10_000 })).text) as unknown[];
  t.equal(roll.length, acked, 'every acknowledged write is in the catalog');
  t.comment(`rolling restart: ${acked} writes, longest gap between acknowledged writes ${longestGapMs} ms (election timeout 1000-2000 ms)`);
});
