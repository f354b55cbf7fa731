// Real `sider server` processes: linearizable follower reads, kill -9 of the leader under a
// registration load, joins at once and refused joins, fresh directories, a single node restarted.

import t from 'tap';
import { SiderCluster, SiderHttp, SiderProcess, allocateSpec, tempRoot, waitReady } from '../support/server-process.ts';
import type { HttpReply } from '../support/server-process.ts';

const CLUSTER_KEY = 'integration-test-cluster-key-0123456789';

interface CatalogEntry {
  ServiceID: string;
  Node: string;
  CreateIndex: number;
  ModifyIndex: number;
}

/** A default-consistency (linearizable) catalog read of `service` on one server. */
async function catalog(http: SiderHttp, addr: string, service: string): Promise<{ reply: HttpReply; entries: CatalogEntry[] }> {
  const reply = await http.call(addr, 'GET', `/v1/catalog/service/${service}`, { timeoutMs: 10_000 });
  if (reply.status !== 200) throw new Error(`GET /v1/catalog/service/${service} on ${addr}: HTTP ${reply.status} ${reply.text.trim()}`);
  return { reply, entries: JSON.parse(reply.text) as CatalogEntry[] };
}

t.test('a three-server cluster', async (t) => {
  const cluster = (await SiderCluster.start({ clusterKey: CLUSTER_KEY })).teardownWith(t);
  const http = cluster.http;

  await t.test('a registration on one follower is read at once on the other follower without ?stale', async (t) => {
    const leader = await cluster.leader();
    const [f1, f2] = cluster.ids.filter((id) => id !== leader) as [string, string];
    for (let i = 0; i < 20; i++) {
      // Alternate the direction so both followers write and both read.
      const [writer, reader] = i % 2 === 0 ? [f1, f2] : [f2, f1];
      const id = `lin-${i}`;
      const w = await http.call(cluster.addr(writer), 'PUT', '/v1/agent/service/register', { body: { Name: 'lin', ID: id, Port: 1000 + i } });
      t.equal(w.status, 200, `register ${id} on ${writer}: ${w.text}`);
      const { reply, entries } = await catalog(http, cluster.addr(reader), 'lin');
      if (!entries.some((e) => e.ServiceID === id)) t.fail(`${id} written on ${writer} is missing from a default read on ${reader}`);
      t.equal(reply.headers['x-consul-effective-consistency'], 'leader', 'the read was not stale');
    }
    const { entries } = await catalog(http, cluster.addr(leader), 'lin');
    t.equal(entries.length, 20, 'all 20 registrations are there');
  });

  await t.test('a join with the wrong cluster key is refused and leaves the cluster unchanged', async (t) => {
    const before = (await http.raftServers(cluster.addr('s1'))).map((s) => `${s.ID}:${s.Voter}`).sort();
    t.same(before, ['s1:true', 's2:true', 's3:true']);
    const spec = await allocateSpec(cluster.root, 'intruder', { join: cluster.addr('s1'), clusterKey: 'not-the-cluster-key-at-all' });
    const p = cluster.spawnExtra(spec);
    const exit = await p.waitExit(30_000);
    t.not(exit.code, 0, 'the joiner exits non-zero');
    t.equal(exit.signal, null, 'it exits by itself');
    t.match(p.output, /cannot join the cluster through/, `the message names the join failure:\n${p.output.slice(-1500)}`);
    t.match(p.output, /401/, 'and the refusal');
    const after = (await http.raftServers(cluster.addr('s1'))).map((s) => `${s.ID}:${s.Voter}`).sort();
    t.same(after, before, 'the configuration is unchanged');
    const rejected = cluster.procs
      .get('s1')!
      .logLines()
      .some((l) => l.level === 'warn' && typeof l.msg === 'string' && l.msg.includes('internal API request rejected'));
    t.ok(rejected, 's1 logged the rejected join');
  });

  await t.test('every acknowledged registration survives kill -9 of the leader under load, applied once', async (t) => {
    const ids = cluster.ids;
    const WRITERS = 6;
    interface Sent {
      rid: string;
      acked: boolean;
      attempts: number;
      /** Servers tried so far. */
      via: string[];
      /**
       * For a simulated lost answer: the servers tried up to the 200 that was thrown away. The
       * registration was applied through one of them (an earlier attempt that failed for the
       * client may be the one applied), so its Node must be one of them.
       */
      droppedAfter?: string[];
    }
    const started = new Map<string, Sent>();
    const acks: { at: number; attemptStart: number }[] = [];
    const refusals: string[] = [];
    /** Why attempts failed (status or error), for the report. */
    const failures = new Map<string, number>();
    const failed = (why: string): void => void failures.set(why, (failures.get(why) ?? 0) + 1);
    let retries = 0;
    let next = 0;
    let stop = false;
    const deadlineAll = Date.now() + 60_000;

    /**
     * Registers until acknowledged, spreading attempts over every server (never the same one twice
     * in a row) with the same request ID on every attempt. With `loseFirstAnswer` the first 200 is
     * treated as lost on the way back, as a client would see a reset connection after the commit.
     */
    const register = async (id: string, port: number, loseFirstAnswer: boolean): Promise<void> => {
      const rec: Sent = { rid: `rid-${id}`, acked: false, attempts: 0, via: [] };
      started.set(id, rec);
      let prev = '';
      while (Date.now() < deadlineAll) {
        let server = ids[next++ % ids.length]!;
        if (server === prev) server = ids[next++ % ids.length]!;
        prev = server;
        rec.via.push(server);
        const attemptStart = performance.now();
        rec.attempts++;
        if (rec.attempts > 1) retries++;
        try {
          const r = await http.call(cluster.addr(server), 'PUT', '/v1/agent/service/register', {
            body: { Name: 'load', ID: id, Port: port, Tags: ['load'] },
            headers: { 'x-sider-request-id': rec.rid },
            timeoutMs: 5_000,
          });
          if (r.status === 200 && loseFirstAnswer && rec.droppedAfter === undefined) {
            rec.droppedAfter = [...rec.via];
            continue;
          }
          if (r.status === 200) {
            rec.acked = true;
            acks.push({ at: performance.now(), attemptStart });
            return;
          }
          if (r.status < 500 && r.status !== 429) {
            refusals.push(`${id} on ${server}: HTTP ${r.status} ${r.text.trim()}`);
            return;
          }
          failed(`HTTP ${r.status} ${r.text.trim().slice(0, 60)}`);
        } catch (err) {
          // connection refused or reset by the killed server, or our own timeout: retry elsewhere
          failed((err as Error & { code?: string }).code ?? (err as Error).name);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    };

    const writers = Array.from({ length: WRITERS }, async (_, w) => {
      for (let seq = 0; !stop && Date.now() < deadlineAll; seq++) await register(`load-${w}-${seq}`, 2000 + seq, seq % 8 === 3);
    });
    const ackCount = (): number => acks.length;
    const waitAcks = async (n: number, what: string): Promise<void> => {
      const deadline = Date.now() + 20_000;
      while (ackCount() < n) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (${ackCount()} of ${n} acknowledged)`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };

    try {
      await waitAcks(100, '100 acknowledged registrations before the kill');
      const victim = await cluster.leader();
      const killAt = performance.now();
      await cluster.kill9(victim);
      const acksAtKill = ackCount();

      // The gap: from the kill to the first acknowledgement of an attempt sent after it.
      const deadline = Date.now() + 20_000;
      let firstAfter: number | undefined;
      while (firstAfter === undefined) {
        if (Date.now() > deadline) throw new Error(`the survivors accepted no write within 20 s of killing ${victim}`);
        firstAfter = acks.find((a) => a.attemptStart >= killAt)?.at;
        if (firstAfter === undefined) await new Promise((r) => setTimeout(r, 10));
      }
      const gapMs = firstAfter - killAt;
      const newLeader = await cluster.leader();
      t.not(newLeader, victim, `a survivor leads (${newLeader})`);
      t.comment(`killed leader ${victim}; writes accepted again after ${gapMs.toFixed(0)} ms; new leader ${newLeader}`);
      await waitAcks(ackCount() + 50, '50 more acknowledged registrations after the failover');

      await cluster.startServer(victim, { voter: true });
      await waitAcks(ackCount() + 50, '50 acknowledged registrations with the killed server back');
      t.comment(`acknowledged: ${acksAtKill} before the kill, ${ackCount()} in all; ${retries} retried attempts`);
      t.comment(`failed attempts: ${JSON.stringify(Object.fromEntries(failures))}`);
    } finally {
      stop = true;
      await Promise.all(writers);
    }

    t.same(refusals, [], 'no registration was refused');
    const acked = [...started].filter(([, r]) => r.acked).map(([id]) => id);
    const unacked = [...started].filter(([, r]) => !r.acked).map(([id]) => id);
    const lost = [...started].filter(([, r]) => r.droppedAfter !== undefined);
    t.equal(unacked.length, 0, `every writer got its last registration through (${unacked.join(', ')})`);
    t.ok(lost.length >= 10, `${lost.length} registrations were retried after a thrown-away 200`);

    for (const id of ids) {
      const { reply, entries } = await catalog(http, cluster.addr(id), 'load');
      t.equal(reply.headers['x-consul-effective-consistency'], 'leader');
      const seen = new Map<string, number>();
      for (const e of entries) seen.set(e.ServiceID, (seen.get(e.ServiceID) ?? 0) + 1);
      const missing = acked.filter((a) => !seen.has(a));
      t.same(missing, [], `${id} has every one of the ${acked.length} acknowledged registrations`);
      const twice = [...seen].filter(([, n]) => n > 1).map(([s]) => s);
      t.same(twice, [], `${id} lists no registration twice`);
      const foreign = [...seen.keys()].filter((s) => !started.has(s));
      t.same(foreign, [], `${id} lists nothing that was never sent`);
      // A retry applied a second time through another server (another Node) would move the Node
      // and bump ModifyIndex; with the request ID the state machine skips it.
      const reapplied = entries.filter((e) => e.ModifyIndex !== e.CreateIndex).map((e) => `${e.ServiceID} (${e.CreateIndex}→${e.ModifyIndex})`);
      t.same(reapplied, [], `${id}: no retried registration was applied twice`);
      const moved = lost
        .map(([sid, r]) => ({ sid, before: r.droppedAfter ?? [], node: entries.find((e) => e.ServiceID === sid)?.Node ?? '' }))
        .filter((x) => !x.before.includes(x.node))
        .map((x) => `${x.sid}: applied before the lost answer via ${x.before.join('/')}, now Node ${x.node}`);
      t.same(moved, [], `${id}: a retry after a lost answer left the first application in place`);
    }
  });
});

// Regression: a joiner answered 409 (another membership change not yet committed) used to give up
// and exit, so servers started together could fail to form a cluster (about half of the runs).
t.test('four servers that join at the same moment all become voters', async (t) => {
  const cluster = await SiderCluster.start({ ids: ['m1', 'm2', 'm3', 'm4', 'm5'], clusterKey: CLUSTER_KEY });
  t.teardown(() => cluster.teardown());
  const servers = await cluster.http.raftServers(cluster.addr('m1'));
  t.same(servers.map((s) => `${s.ID}:${s.Voter}`).sort(), ['m1:true', 'm2:true', 'm3:true', 'm4:true', 'm5:true']);
  const retried = cluster
    .logs(1_000_000)
    .split('\n')
    .filter((l) => l.includes('join attempt failed'));
  t.comment(`join attempts retried: ${retried.length}`);
});

t.test('npm start’s single-node server keeps its registrations across a SIGTERM restart', async (t) => {
  const { root, remove } = await tempRoot('sider-single-');
  const http = new SiderHttp();
  // The flags of `npm start` (-bootstrap -raft-dir D -raft-id node1) with loopback ports; no key.
  const spec = await allocateSpec(root, 'node1', { bootstrap: true });
  const procs: SiderProcess[] = [];
  t.teardown(async () => {
    await Promise.all(procs.map((p) => p.kill9()));
    await http.close();
    await remove();
  });

  const first = new SiderProcess(spec);
  procs.push(first);
  await waitReady(first, http);
  const reg = await http.call(spec.http, 'PUT', '/v1/agent/service/register', {
    body: { Name: 'api', ID: 'api-1', Port: 9000, Tags: ['v3'], Check: { CheckID: 'api-ttl', Name: 'api ttl', TTL: '5m', Status: 'passing' } },
  });
  t.equal(reg.status, 200, `registered: ${reg.text}`);
  const exit = await first.stop();
  t.same(exit, { code: 0, signal: null }, `SIGTERM ends the server cleanly:\n${first.output.slice(-1500)}`);
  t.ok(
    first.logLines().some((l) => l.msg === 'sider server stopped'),
    'it logged its stop',
  );

  const second = new SiderProcess(spec);
  procs.push(second);
  await waitReady(second, http);
  const { entries } = await catalog(http, spec.http, 'api');
  t.same(
    entries.map((e) => e.ServiceID),
    ['api-1'],
    'the registration is there after the restart',
  );
  const health = JSON.parse((await http.call(spec.http, 'GET', '/v1/health/service/api?passing')).text) as { Checks: { CheckID: string; Status: string }[] }[];
  t.equal(health.length, 1, 'and still passing');
  t.ok(health[0]?.Checks.some((c) => c.CheckID === 'api-ttl' && c.Status === 'passing'), 'with its check');
});

t.test('a fresh data directory with neither -bootstrap nor -join is refused', async (t) => {
  const { root, remove } = await tempRoot('sider-fresh-');
  const spec = await allocateSpec(root, 'lonely');
  const p = new SiderProcess(spec);
  t.teardown(async () => {
    await p.kill9();
    await remove();
  });
  const exit = await p.waitExit(20_000);
  t.not(exit.code, 0, 'exits non-zero');
  t.equal(exit.signal, null);
  t.match(p.output, /-bootstrap/, `names -bootstrap:\n${p.output}`);
  t.match(p.output, /-join/, 'names -join');
});
