// Disaster recovery with real `sider server` processes: a three-server cluster loses two servers
// (kill -9), the survivor is restarted with -force-new-cluster on its data directory, leads alone
// with every acknowledged registration, grows again with two fresh servers, and an old member
// restarted on its old data is refused by the new cluster's transport. Also: the flag on a fresh
// data directory exits 1.

import t from 'tap';
import { SiderCluster, SiderProcess, allocateSpec } from '../support/server-process.ts';
import { waitFor } from '../support/ports.ts';

const CLUSTER_KEY = 'disaster-recovery-test-key-0123456789';
const SERVICES = 24;

function logsWith(p: SiderProcess | undefined, msg: string | RegExp): Record<string, unknown>[] {
  return (p?.logLines() ?? []).filter((l) => typeof l.msg === 'string' && (typeof msg === 'string' ? l.msg === msg : msg.test(l.msg)));
}

async function register(c: SiderCluster, via: string, name: string): Promise<{ status: number; text: string }> {
  return c.http.call(c.addr(via), 'PUT', '/v1/agent/service/register', {
    body: { Name: name, ID: `${name}-1`, Address: '127.0.0.1', Port: 9000 },
    timeoutMs: 20_000,
  });
}

/** Service names in the default namespace as `id` serves them (`?stale`: its own state; otherwise linearizable). */
async function serviceNames(c: SiderCluster, id: string, stale: boolean): Promise<string[]> {
  const v = (await c.http.json(c.addr(id), `/v1/catalog/services${stale ? '?stale' : ''}`, 10_000)) as Record<string, unknown>;
  return Object.keys(v).filter((n) => n.startsWith('svc-')).sort();
}

t.test('-force-new-cluster: a survivor of a lost quorum becomes a one-server cluster that keeps every acknowledged write and grows again', async (t) => {
  const c = (await SiderCluster.start({ ids: ['n1', 'n2', 'n3'], clusterKey: CLUSTER_KEY })).teardownWith(t);
  const oldClusterId = logsWith(c.procs.get('n1'), 'sider server started')[0]?.clusterId;
  t.type(oldClusterId, 'string');

  const leader = await c.leader();
  const survivor = c.ids.find((id) => id !== leader)!;
  const lost = c.ids.filter((id) => id !== survivor);
  t.comment(`leader ${leader}, survivor ${survivor}, lost ${lost.join(' ')}`);

  // Registrations through every server, each acknowledged (200).
  const acked: string[] = [];
  for (let i = 0; i < SERVICES; i++) {
    const name = `svc-${String(i).padStart(2, '0')}`;
    const r = await register(c, c.ids[i % 3]!, name);
    t.equal(r.status, 200, `${name}: ${r.text}`);
    if (r.status === 200) acked.push(name);
  }
  // A write is lost only if the survivor never received it: the test loses the two others once the
  // survivor holds every acknowledged write (README "Disaster recovery" says what else can be lost).
  await waitFor(`${survivor} to hold every registration`, async () => (await serviceNames(c, survivor, true)).length === acked.length, 20_000, 50);

  for (const id of lost) await c.kill9(id);
  const refused = await register(c, survivor, 'svc-during-outage').catch((err: unknown) => ({ status: 0, text: (err as Error).message }));
  t.not(refused.status, 200, `no quorum: the write fails (${refused.status} ${refused.text.trim()})`);

  const stopped = await c.stop(survivor);
  t.equal(stopped?.code, 0, 'the survivor stops cleanly');

  const spec = c.spec(survivor);
  const plainArgs = spec.extraArgs;
  spec.extraArgs = [...(plainArgs ?? []), '-force-new-cluster'];
  const recovered = await c.startServer(survivor, { voter: true, timeoutMs: 30_000 });

  await t.test('it leads alone, under a new cluster ID, and says loudly what it did', async (t) => {
    t.equal(await c.leader(), survivor);
    const servers = await c.http.raftServers(c.addr(survivor));
    t.same(servers.map((s) => [s.ID, s.Voter, s.Leader]), [[survivor, true, true]]);
    const warn = logsWith(recovered, /^FORCE-NEW-CLUSTER \(UNSAFE\)/);
    t.equal(warn.length, 1, 'one WARN line');
    const w = warn[0] ?? {};
    t.equal(w.level, 'warn');
    t.equal(w.previousClusterId, oldClusterId);
    t.not(w.clusterId, oldClusterId, 'a new cluster ID');
    t.same(w.removed, [...lost].sort());
    t.same(w.voters, [survivor]);
    t.equal(w.entriesDiscarded, 0);
    t.ok(typeof w.commitIndex === 'number' && typeof w.storedCommitIndex === 'number' && w.commitIndex > w.storedCommitIndex, 'the commit index moved past the stored one');
    t.equal(logsWith(recovered, 'sider server started')[0]?.clusterId, w.clusterId);
  });

  await t.test('every acknowledged registration is there, and writes work', async (t) => {
    t.same(await serviceNames(c, survivor, false), acked);
    const r = await register(c, survivor, 'svc-after-recovery');
    t.equal(r.status, 200, r.text);
  });

  const newClusterId = logsWith(recovered, 'sider server started')[0]?.clusterId;

  await t.test('a later start without the flag is a normal restart', async (t) => {
    t.equal((await c.stop(survivor))?.code, 0);
    spec.extraArgs = plainArgs;
    const again = await c.startServer(survivor, { voter: true, timeoutMs: 30_000 });
    t.equal(logsWith(again, /force-new-cluster/i).length, 0, 'no recovery on this start');
    t.equal(logsWith(again, 'sider server started')[0]?.clusterId, newClusterId, 'same (new) cluster ID');
    t.same((await c.http.raftServers(c.addr(survivor))).map((s) => s.ID), [survivor]);
    t.same(await serviceNames(c, survivor, false), [...acked, 'svc-after-recovery'].sort());
  });

  await t.test('two fresh servers join it and see the data', async (t) => {
    for (const id of ['n4', 'n5']) c.specs.set(id, await allocateSpec(c.root, id, { join: c.addr(survivor), clusterKey: CLUSTER_KEY }));
    await Promise.all(['n4', 'n5'].map((id) => c.startServer(id, { voter: true, timeoutMs: 30_000 })));
    await c.waitVoters([survivor, 'n4', 'n5'], 30_000);
    const all = [...acked, 'svc-after-recovery'].sort();
    for (const id of ['n4', 'n5']) {
      await waitFor(`${id} to hold the registry`, async () => (await serviceNames(c, id, true)).length === all.length, 20_000, 50);
      t.same(await serviceNames(c, id, false), all, `${id} serves every registration`);
    }
    const r = await register(c, 'n5', 'svc-three-again');
    t.equal(r.status, 200, r.text);
  });

  await t.test('an old member restarted on its old data is refused and does not disrupt the new cluster', async (t) => {
    const before = await c.http.leader(c.addr('n4'));
    t.equal(before, spec.raft, 'the survivor leads');
    const old = lost[0]!;
    const oldProc = c.spawn(old); // its old directory: -join is ignored, it restarts as a member of the old cluster
    await waitFor(`${old} to start`, () => logsWith(oldProc, 'sider server started').length > 0 || !oldProc.running, 30_000, 50);
    t.equal(logsWith(oldProc, 'sider server started')[0]?.clusterId, oldClusterId, 'it still believes in the old cluster');
    // It campaigns towards the survivor's Raft address; the new cluster's transport refuses it.
    await waitFor(
      `${survivor} to refuse ${old}'s old cluster ID`,
      () => logsWith(c.procs.get(survivor), 'raft transport rejected request').some((l) => l.status === 403 && l.cluster === oldClusterId),
      30_000,
      50,
    );
    for (const id of [survivor, 'n4', 'n5']) t.equal(await c.http.leader(c.addr(id)), before, `${id}: the leader is unchanged`);
    await c.waitVoters([survivor, 'n4', 'n5'], 10_000);
    t.equal(await c.http.leader(c.addr(old)), '', `${old} finds no leader`);
    const r = await register(c, survivor, 'svc-after-old-member');
    t.equal(r.status, 200, r.text);
    t.notOk((await serviceNames(c, old, true)).includes('svc-after-old-member'), `${old} never receives the new cluster's writes`);
  });
});

t.test('-force-new-cluster on a fresh data directory exits 1 and says why', async (t) => {
  const c = (await SiderCluster.create({ ids: ['x1'] })).teardownWith(t);
  const spec = c.spec('x1');
  delete spec.bootstrap;
  spec.extraArgs = ['-force-new-cluster'];
  const p = c.spawn('x1');
  const st = await p.waitExit(30_000);
  t.equal(st.code, 1);
  t.match(p.output, /-force-new-cluster: data directory .* is fresh, there is no Raft state to recover/);
});
