// TTL checks across a leader failure (issue #4), three real `sider server` processes: the leader is
// killed (-9) while one instance heartbeats through every server and another has just stopped. The
// heartbeating one never shows critical on any survivor; the dead one goes critical within the
// documented bound (src/health/ttl.ts failoverDeadline):
//
//   max(min(R + TTL + P + slack + min(I, TTL), L + TTL + slack), L + grace) + scan
//
// with R its last renewal, L the election, P = 1 s, slack = 0.5 s, I its renewal interval,
// grace = 2 s, scan = 0.2 s.

import t from 'tap';
import { waitFor } from '../support/ports.ts';
import { SiderCluster } from '../support/server-process.ts';

const CLUSTER_KEY = 'health-failover-cluster-key-0123456789';
const TTL = 2_000;
const RENEW_EVERY = Math.round((TTL * 2) / 3);
const P = 1_000;
const SLACK = 500;
const GRACE = 2_000;
const SCAN = 200;

interface HealthEntry {
  Service: { ID: string };
  Checks: { CheckID: string; Status: string; Output: string }[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

t.test('a leader killed mid-way: heartbeating instances stay passing, a dead one goes critical in bound', async (t) => {
  const cluster = (await SiderCluster.start({ clusterKey: CLUSTER_KEY })).teardownWith(t);
  const http = cluster.http;
  const running = (): string[] => cluster.ids.filter((id) => cluster.running(id));

  const oldLeader = await cluster.leader();
  // The forwarded-renewal path needs the cluster signature like the rest of the internal API.
  const unsigned = await http.call(cluster.addr(oldLeader), 'POST', '/v1/internal/renew', { body: { items: [['default', 'alive-1', 'critical', 'forged']] } });
  t.equal(unsigned.status, 401, `an unsigned /v1/internal/renew is refused: ${unsigned.text}`);
  for (const id of ['alive-1', 'dead-1']) {
    const r = await http.call(cluster.addr(oldLeader), 'PUT', '/v1/agent/service/register', {
      body: { Name: 'hb', ID: id, Port: 80, Check: { CheckID: id, TTL: `${TTL}ms`, Status: 'passing' } },
    });
    t.equal(r.status, 200, r.text);
  }

  let stop = false;
  /** Renews through the servers in turn; on an error, the next server 100 ms later (bounded by `until`). */
  const renew = async (checkId: string, start: number, until: number): Promise<number | undefined> => {
    for (let attempt = 0; Date.now() < until; attempt++) {
      const ids = running();
      const id = ids[(start + attempt) % ids.length]!;
      try {
        const r = await http.call(cluster.addr(id), 'PUT', `/v1/agent/check/pass/${checkId}`, { timeoutMs: 2_000 });
        if (r.status === 200) return Date.now();
      } catch {
        // a killed server: try the next one
      }
      await sleep(100);
    }
    return undefined;
  };
  const failures: string[] = [];
  const heartbeat = (async () => {
    for (let n = 0; !stop; n++) {
      const began = Date.now();
      const ok = await renew('alive-1', n, began + RENEW_EVERY);
      if (ok === undefined) failures.push(`renewal ${n} found no server within ${RENEW_EVERY} ms`);
      await sleep(Math.max(0, began + RENEW_EVERY - Date.now()));
    }
  })();

  // Every 100 ms, a ?stale read on every survivor: alive-1 must never be critical.
  const seenCritical: string[] = [];
  let deadCriticalAt = 0;
  const poll = (async () => {
    while (!stop) {
      for (const id of running()) {
        try {
          const r = await http.call(cluster.addr(id), 'GET', '/v1/health/service/hb?stale', { timeoutMs: 2_000 });
          if (r.status !== 200) continue;
          for (const e of JSON.parse(r.text) as HealthEntry[]) {
            const critical = e.Checks.some((c) => c.Status === 'critical');
            if (critical && e.Service.ID === 'alive-1') seenCritical.push(`${id} at ${Date.now()}: ${JSON.stringify(e.Checks)}`);
            if (critical && e.Service.ID === 'dead-1' && deadCriticalAt === 0) deadCriticalAt = Date.now();
          }
        } catch {
          // the killed server
        }
      }
      await sleep(100);
    }
  })();

  // dead-1 heartbeats through the followers (forwarded) for a while, then stops.
  const followers = cluster.ids.filter((id) => id !== oldLeader);
  let lastDead = 0;
  for (let i = 0; i < 4; i++) {
    const r = await http.call(cluster.addr(followers[i % 2]!), 'PUT', '/v1/agent/check/pass/dead-1');
    t.equal(r.status, 200, `forwarded renewal: ${r.text}`);
    lastDead = Date.now();
    await sleep(RENEW_EVERY);
  }
  // The old leader dies shortly after dead-1's last renewal (it had no time to checkpoint it).
  await sleep(300);
  t.equal(deadCriticalAt, 0, 'dead-1 was alive until now');
  await cluster.kill9(oldLeader);
  const newLeader = await cluster.leader(20_000);
  const leaderSeen = Date.now();
  t.not(newLeader, oldLeader);

  await waitFor('dead-1 to be critical on a survivor', () => deadCriticalAt > 0, 20_000, 50);
  // The failover rule with the largest interval (TTL); leaderSeen is after the real election time.
  const bound = Math.max(Math.min(lastDead + TTL + P + SLACK + TTL, leaderSeen + TTL + SLACK), leaderSeen + GRACE) + SCAN + 1_000;
  t.ok(deadCriticalAt <= bound, `dead-1 critical ${deadCriticalAt - lastDead} ms after its last renewal; bound ${bound - lastDead} ms`);

  // Keep heartbeating well past the new leader's grace and a few TTLs.
  await sleep(Math.max(0, leaderSeen + GRACE + 3 * TTL - Date.now()));
  stop = true;
  await Promise.all([heartbeat, poll]);
  t.same(seenCritical, [], 'alive-1 never showed critical on any survivor');
  t.same(failures, [], 'every heartbeat found a server');

  const final = JSON.parse((await http.call(cluster.addr(newLeader), 'GET', '/v1/health/service/hb')).text) as HealthEntry[];
  const dead = final.find((e) => e.Service.ID === 'dead-1');
  t.equal(dead?.Checks[0]?.Output, 'TTL expired');
  t.equal(final.find((e) => e.Service.ID === 'alive-1')?.Checks[0]?.Status, 'passing');
});
