// Three kv-server processes on loopback (real LevelDB, HTTP transport with a cluster key): acknowledged
// writes survive kill -9 of the leader and then of every node, follower reads are linearizable, and
// a data directory of another cluster is refused.

import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KvCluster, KvProcess, startKv } from '../support/kv-cluster.ts';
import { freePort, waitFor } from '../support/ports.ts';

const KEY = 'kv-cluster-test-key-0123456789abcdef';
const WRITERS = 8;
const KEYS = ['a', 'b', 'c'];

interface Load {
  acked: Set<string>;
  /** Acknowledged as already applied: a retry whose earlier attempt had committed. */
  duplicates: number;
  attempted: Set<string>;
  failures: string[];
  stop: () => Promise<void>;
}

/** Writers that append unique tokens `w<i>.<seq>;`, retrying each (client, seq) until acknowledged. */
function startLoad(cluster: KvCluster): Load {
  const acked = new Set<string>();
  const attempted = new Set<string>();
  const failures: string[] = [];
  let stopping = false;
  const load = { acked, attempted, failures, duplicates: 0 };
  const writers = Array.from({ length: WRITERS }, async (_, w) => {
    // Bounded: a writer never issues more than this many commands.
    for (let seq = 1; seq <= 5_000 && !stopping; seq++) {
      const token = `w${w}.${seq};`;
      attempted.add(token);
      try {
        const r = await cluster.client.write('append', `w${w}`, seq, KEYS[seq % KEYS.length]!, token, { deadlineMs: 20_000, requestTimeoutMs: 6_000 });
        if (r.duplicate) load.duplicates++;
        acked.add(token);
      } catch (err) {
        // Outcome unknown: the token may or may not be present; the next seq supersedes it.
        failures.push(`${token} ${(err as Error).message}`);
      }
    }
  });
  return Object.assign(load, {
    stop: async (): Promise<void> => {
      stopping = true;
      await Promise.all(writers);
    },
  });
}

t.test('acknowledged appends survive kill -9 of the leader and then of every node, exactly once', async (t) => {
  const cluster = await KvCluster.start({ key: KEY });
  t.teardown(() => cluster.teardown());
  const load = startLoad(cluster);
  t.teardown(() => load.stop());
  const ackedAtLeast = (n: number, what: string): Promise<boolean> =>
    waitFor(`${n} acknowledged appends (${what}); have ${load.acked.size}`, () => load.acked.size >= n, 20_000);

  try {
    await ackedAtLeast(60, 'before any crash');
    const oldLeader = await cluster.waitLeader();
    await cluster.kill9(oldLeader);
    const atKill = load.acked.size;
    const newLeader = await cluster.waitLeader(20_000, [oldLeader]);
    t.not(newLeader, oldLeader, `a new leader (${newLeader}) replaced the killed ${oldLeader}`);
    await ackedAtLeast(atKill + 60, 'after the leader was killed');

    await cluster.startNode(oldLeader);
    await ackedAtLeast(load.acked.size + 40, 'after the old leader restarted');

    // Every node at once, with writes in flight: only fsynced state survives.
    await Promise.all(cluster.ids.map((id) => cluster.kill9(id)));
    const atTotalCrash = load.acked.size;
    await Promise.all(cluster.ids.map((id) => cluster.startNode(id)));
    await ackedAtLeast(atTotalCrash + 40, 'after every node restarted');
  } catch (err) {
    t.comment(cluster.logs());
    throw err;
  }
  await load.stop();
  t.same(load.failures, [], 'every write was eventually acknowledged');
  t.comment(`acknowledged ${load.acked.size}, client retries ${cluster.client.retries}, deduplicated retries ${load.duplicates}`);

  const finals = new Map<string, string>();
  for (const key of KEYS) {
    const values = await Promise.all(cluster.ids.map(async (id) => [id, (await cluster.client.readOn(id, key)).value] as const));
    const [, first] = values[0]!;
    for (const [id, v] of values) t.equal(v, first, `${id} agrees on ${key}`);
    finals.set(key, first);
  }

  const seen = new Map<string, number>();
  const lastSeq = new Map<string, number>();
  let outOfOrder = 0;
  for (const [key, value] of finals) {
    for (const tok of value.split(';').filter(Boolean)) {
      const token = `${tok};`;
      seen.set(token, (seen.get(token) ?? 0) + 1);
      const [w, seq] = tok.split('.');
      const k = `${key}/${w}`;
      if (Number(seq) <= (lastSeq.get(k) ?? 0)) outOfOrder++;
      lastSeq.set(k, Number(seq));
    }
  }
  const missing = [...load.acked].filter((tok) => seen.get(tok) !== 1);
  const duplicated = [...seen].filter(([, n]) => n > 1).map(([tok]) => tok);
  const phantom = [...seen.keys()].filter((tok) => !load.attempted.has(tok));
  t.ok(load.acked.size >= 200, `load ran (${load.acked.size} acknowledged appends)`);
  t.same(missing, [], 'every acknowledged token is present exactly once');
  t.same(duplicated, [], 'no token is present twice (retries were deduplicated)');
  t.same(phantom, [], 'no token that was never written');
  t.equal(outOfOrder, 0, "each writer's tokens appear in the order it wrote them");
  t.notOk(cluster.logs(1_000_000).includes(KEY), 'the cluster key never appears in a log');
});

t.test('a follower answers a linearizable read right after a write on the leader', async (t) => {
  const cluster = await KvCluster.start({ key: KEY });
  t.teardown(() => cluster.teardown());
  const leader = await cluster.waitLeader();
  const followers = cluster.ids.filter((id) => id !== leader);
  for (let i = 1; i <= 20; i++) {
    const w = await cluster.client.call(leader, 'POST', '/kv/put', { client: 'b', seq: i, key: 'k', value: `v${i}` });
    t.equal(w.status, 200, `write ${i} accepted by the leader`);
    const follower = followers[i % followers.length]!;
    const r = await cluster.client.readOn(follower, 'k');
    if (r.value !== `v${i}` || r.index < Number(w.body.index)) {
      t.fail(`read ${i} on ${follower} saw ${JSON.stringify(r)} after a write at ${String(w.body.index)}`);
      return;
    }
  }
  t.pass('every follower read saw the preceding write');
  const st = await cluster.client.status(followers[0]!);
  t.equal(st.role, 'follower');
});

t.test('a data directory of another cluster is refused with a clear message', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sider-kv-foreign-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const spec = {
    id: 'n1',
    raft: `127.0.0.1:${await freePort()}`,
    http: `127.0.0.1:${await freePort()}`,
    dir: join(dir, 'n1'),
    bootstrap: true,
    key: KEY,
  };
  const first = await startKv(spec);
  t.teardown(() => first.kill9());
  t.same(await first.stop(), { code: 0, signal: null }, 'SIGTERM closes cleanly with exit code 0');

  const foreign = new KvProcess({ ...spec, bootstrap: false, clusterId: 'another-cluster' });
  t.teardown(() => foreign.kill9());
  await t.rejects(foreign.ready(), /exited/, 'it never becomes ready');
  const exit = await foreign.exited;
  t.not(exit.code, 0, `non-zero exit (${exit.code})`);
  t.match(foreign.stderr, /SIDER_FOREIGN_CLUSTER/, 'names the error code');
  t.match(foreign.stderr, /belongs to cluster [0-9a-f-]+, not another-cluster/, 'says which cluster the directory belongs to');
  t.notOk(foreign.stderr.includes(KEY) || first.stderr.includes(KEY), 'the cluster key is not logged');
});
