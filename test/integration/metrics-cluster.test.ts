// Observability of a three-process cluster with a cluster key and debug logging: status endpoints
// and readiness on every node, Raft gauges that agree, a registration counted where it was
// received, a leader kill that shows in the survivors' leader and role gauges, a restarted node
// that is ready only once caught up, and a key that never reaches any log line.

import t from 'tap';
import { waitFor } from '../support/ports.ts';
import { parseExposition, sumOf, valueOf } from '../support/prom-text.ts';
import type { Exposition } from '../support/prom-text.ts';
import { SiderCluster, waitReady } from '../support/server-process.ts';

const KEY = 'metrics-test-cluster-key-5f3a9c1e7b';

t.test('three servers: status, readiness, Raft gauges, a leader change, and no key in the logs', async (t) => {
  // The default tick (100 ms, elections after 1 – 2 s): with 50 ms a stall of half a second on a
  // loaded CI machine could elect another leader between capturing the leader and checking it.
  const cluster = await SiderCluster.create({ clusterKey: KEY, extraArgs: ['-log-level', 'debug'] });
  t.teardown(() => cluster.teardown());
  // Everything every process prints, from its first byte (the processes keep only a tail).
  const printed = new Map<string, string>();
  const start = async (id: string, voter: boolean): Promise<void> => {
    const p = cluster.spawn(id);
    printed.set(id, printed.get(id) ?? '');
    for (const s of [p.child.stdout, p.child.stderr]) s.on('data', (d: string) => printed.set(id, printed.get(id)! + d));
    await waitReady(p, cluster.http, { voter, timeoutMs: 30_000 });
  };
  try {
    const [first, ...rest] = cluster.ids;
    await start(first!, false);
    await Promise.all(rest.map((id) => start(id, true)));
    await cluster.waitVoters(cluster.ids);
  } catch (err) {
    t.comment(cluster.logs());
    throw err;
  }
  const http = cluster.http;
  const scrape = async (id: string): Promise<Exposition> => {
    const r = await http.call(cluster.addr(id), 'GET', '/metrics');
    if (r.status !== 200) throw new Error(`${id} /metrics: ${r.status}`);
    return parseExposition(r.text);
  };
  const ready = async (id: string): Promise<number> => (await http.call(cluster.addr(id), 'GET', '/v1/agent/ready')).status;
  const raftAddrs = cluster.ids.map((id) => cluster.spec(id).raft).sort();

  const leader = await cluster.leader();
  const followers = cluster.ids.filter((id) => id !== leader);

  await t.test('status endpoints and readiness agree on every node', async (t) => {
    for (const id of cluster.ids) {
      t.equal(await http.leader(cluster.addr(id)), cluster.spec(leader).raft, `${id}: /v1/status/leader`);
      const peers = (await http.json(cluster.addr(id), '/v1/status/peers')) as string[];
      t.same([...peers].sort(), raftAddrs, `${id}: /v1/status/peers`);
      await waitFor(`${id} ready`, async () => (await ready(id)) === 200, 15_000, 50);
      t.pass(`${id} is ready`);
    }
  });

  await t.test('Raft gauges: one leader, every voter, followers matched on the leader', async (t) => {
    await waitFor('followers caught up on the leader', async () => {
      const e = await scrape(leader);
      const last = valueOf(e, 'sider_raft_last_log_index');
      return followers.every((f) => valueOf(e, 'sider_raft_peer_match_index', { peer: f }) === last);
    }, 10_000, 50);
    let leaders = 0;
    for (const id of cluster.ids) {
      const e = await scrape(id);
      leaders += valueOf(e, 'sider_raft_leader', { node: id });
      t.equal(valueOf(e, 'sider_raft_role', { role: id === leader ? 'leader' : 'follower' }), 1, `${id}'s role`);
      t.equal(valueOf(e, 'sider_raft_members', { kind: 'voter' }), 3);
      t.equal(valueOf(e, 'sider_raft_has_leader'), 1);
      for (const other of cluster.ids.filter((o) => o !== id && (id === leader || o === leader))) {
        t.ok(valueOf(e, 'sider_raft_peer_last_contact_seconds', { peer: other }) < 10, `${id} heard from ${other}`);
      }
    }
    t.equal(leaders, 1, 'exactly one node reports sider_raft_leader 1');
    const e = await scrape(leader);
    t.ok(valueOf(e, 'sider_raft_elections_won_total') + valueOf(e, 'sider_raft_leader_changes_total') >= 1);
  });

  await t.test('a write is counted and logged on the server that received it', async (t) => {
    const f = followers[0]!;
    const before = await Promise.all(cluster.ids.map(async (id) => valueOf(await scrape(id), 'sider_registry_registrations_total')));
    const r = await http.call(cluster.addr(f), 'PUT', '/v1/agent/service/register', { body: { Name: 'api', ID: 'api-1', Address: '10.0.0.9', Port: 80 } });
    t.equal(r.status, 200);
    const after = await Promise.all(cluster.ids.map(async (id) => valueOf(await scrape(id), 'sider_registry_registrations_total')));
    t.same(after.map((v, i) => v - before[i]!), cluster.ids.map((id) => (id === f ? 1 : 0)), 'counted once, on the follower');
    for (const id of cluster.ids) {
      await waitFor(`${id} to hold the instance`, async () => valueOf(await scrape(id), 'sider_registry_instances_total', { namespace: 'default', service: 'api' }) === 1, 10_000, 50);
    }
    t.ok(cluster.procs.get(f)!.logLines().some((l) => l.msg === 'registered service instance' && l.id === 'api-1' && typeof l.index === 'number'));
    t.notOk(cluster.procs.get(leader)!.logLines().some((l) => l.msg === 'registered service instance'), 'not logged again by the leader');
    const e = await scrape(leader);
    for (const other of followers) {
      t.ok(valueOf(e, 'sider_raft_peer_append_rtt_seconds_count', { peer: other }) >= 1, `the leader timed ${other}'s acknowledgements`);
    }
    t.equal(sumOf(await scrape(f), 'sider_raft_peer_append_rtt_seconds_count'), 0, 'a follower times none');
  });

  await t.test('killing the leader shows in the survivors’ gauges', async (t) => {
    const before = new Map<string, number>();
    for (const id of followers) before.set(id, valueOf(await scrape(id), 'sider_raft_leader_changes_total'));
    const oldCommit = valueOf(await scrape(leader), 'sider_raft_commit_index');
    await cluster.kill9(leader);
    const next = await waitFor(
      'a survivor to report itself leader',
      async () => {
        for (const id of followers) {
          const e = await scrape(id);
          if (valueOf(e, 'sider_raft_leader', { node: id }) === 1 && valueOf(e, 'sider_raft_role', { role: 'leader' }) === 1) return id;
        }
        return '';
      },
      20_000,
      100,
    );
    const other = followers.find((id) => id !== next)!;
    const en = await scrape(next);
    t.ok(valueOf(en, 'sider_raft_elections_won_total') >= 1, 'the new leader won an election');
    t.ok(valueOf(en, 'sider_raft_elections_started_total') >= 1, 'after starting one');
    t.ok(valueOf(en, 'sider_raft_term') >= 2);
    await waitFor(`${other} to follow ${next}`, async () => {
      const e = await scrape(other);
      return valueOf(e, 'sider_raft_role', { role: 'follower' }) === 1 && valueOf(e, 'sider_raft_has_leader') === 1 && valueOf(e, 'sider_raft_leader', { node: other }) === 0;
    }, 20_000, 100);
    for (const id of followers) {
      t.ok(valueOf(await scrape(id), 'sider_raft_leader_changes_total') > before.get(id)!, `${id} counted the leader change`);
      await waitFor(`${id} to name ${next}`, async () => (await http.leader(cluster.addr(id))) === cluster.spec(next).raft, 10_000, 50);
      await waitFor(`${id} ready`, async () => (await ready(id)) === 200, 10_000, 50);
    }
    t.equal(sumOf(await scrape(next), 'sider_raft_leader'), 1);

    // The old leader comes back: ready only once it has applied what was committed before.
    await start(leader, true);
    const p = cluster.procs.get(leader)!;
    await waitFor(`${leader} ready again`, async () => (await ready(leader)) === 200, 20_000, 50);
    const back = await scrape(leader);
    t.ok(valueOf(back, 'sider_raft_applied_index') >= oldCommit, `applied ${valueOf(back, 'sider_raft_applied_index')} ≥ ${oldCommit} committed before the kill`);
    t.equal(valueOf(back, 'sider_raft_role', { role: 'follower' }), 1);
    t.ok(p.logLines().some((l) => l.msg === 'caught up with the leader: ready'));
  });

  await t.test('the cluster key never reaches a log line, at debug level', async (t) => {
    let lines = 0;
    for (const id of cluster.ids) {
      const out = printed.get(id)!;
      t.notOk(out.includes(KEY), `${id}'s output holds no key`);
      t.notOk(/"x-sider-auth":"(?!\[redacted\])/.test(out), `${id}: no signature header value`);
      lines += out.split('\n').filter((l) => l.includes('"level":"debug"')).length;
    }
    t.ok(lines > 0, `debug lines were printed (${lines})`);
    t.ok(cluster.procs.get(leader)!.logLines().length > 0);
    t.ok(cluster.ids.every((id) => printed.get(id)!.includes('"msg":"raft: membership changed"')), 'membership changes are logged on every node');
    t.ok(printed.get(leader)!.includes('"msg":"sider server started"'), 'the capture starts at the first line');
  });
});
