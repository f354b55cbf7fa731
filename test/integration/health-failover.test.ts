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
  // Before the registration request: the leader's renewal time for it is no earlier.
  const registeredAt = Date.now();
  for (const id of ['alive-1', 'dead-1']) {
    const r = await http.call(cluster.addr(oldLeader), 'PUT', '/v1/agent/service/register', {
      body: { Name: 'hb', ID: id, Port: 80, Check: { CheckID: id, TTL: `${TTL}ms`, Status: 'passing' } },
    });
    t.equal(r.status, 200, r.text);
  }

  let stop = false;
  t.teardown(() => {
    stop = true; // the loops below end even when the test throws
  });
  let killedAt = 0;
  let leaderSeen = 0;
  /**
   * The earliest time a check renewed by a request sent at `sent` may lapse: TTL later (the leader
   * takes its renewal time no earlier than the request was sent), and, when the old leader was
   * killed after that renewal, never before the new leader's grace (failoverDeadline ≥ L + grace;
   * leaderSeen, a little after L, stands for it and is unknown until seen).
   */
  const lapsesAt = (sent: number): number => {
    const failover = killedAt === 0 || sent >= killedAt ? 0 : leaderSeen === 0 ? Infinity : leaderSeen + GRACE;
    return Math.max(sent + TTL, failover);
  };
  /**
   * Renews through the servers in turn; on an error, the next server 100 ms later, as a client does
   * until shortly (200 ms) before its check would lapse (`lapse()`). Returns when the acknowledged
   * request was sent; undefined when no server acknowledged one before the lapse (or the test stopped).
   */
  const renew = async (checkId: string, start: number, lapse: () => number): Promise<number | undefined> => {
    for (let attempt = 0; !stop && Date.now() < lapse() - 200; attempt++) {
      const ids = running();
      const id = ids[(start + attempt) % ids.length]!;
      const sent = Date.now();
      try {
        // An acknowledgement after the lapse would be too late: give up waiting for it then.
        const timeoutMs = Math.max(1, Math.min(2_000, lapse() - sent));
        const r = await http.call(cluster.addr(id), 'PUT', `/v1/agent/check/pass/${checkId}`, { timeoutMs });
        if (r.status === 200 && Date.now() < lapse()) return sent;
      } catch {
        // a killed server, or no leader yet: try the next one
      }
      await sleep(100);
    }
    return undefined;
  };
  const failures: string[] = [];
  /** Send times of alive-1's acknowledged renewals (registration first). */
  const renewedAt: number[] = [registeredAt];
  const heartbeat = (async () => {
    let last = registeredAt;
    for (let n = 0; !stop; n++) {
      const prev = last;
      const sent = await renew('alive-1', n, () => lapsesAt(prev));
      if (sent !== undefined) {
        renewedAt.push(sent);
        last = sent;
      } else if (!stop) {
        failures.push(`renewal ${n} found no server before its check could lapse (last renewal sent at ${prev}, killed at ${killedAt}, leader seen at ${leaderSeen})`);
        last = Date.now(); // the test fails; go on renewing from now
      }
      await sleep(Math.max(0, last + RENEW_EVERY - Date.now()));
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
  let lastDeadSent = 0; // its last renewal's request was sent (the leader's renewal time is no earlier)
  let lastDead = 0; // and acknowledged (no later)
  for (let i = 0; i < 4; i++) {
    const sent = Date.now();
    const r = await http.call(cluster.addr(followers[i % 2]!), 'PUT', '/v1/agent/check/pass/dead-1');
    t.equal(r.status, 200, `forwarded renewal: ${r.text}`);
    lastDeadSent = sent;
    lastDead = Date.now();
    await sleep(RENEW_EVERY);
  }
  // The old leader dies shortly after dead-1's last renewal (it had no time to checkpoint it).
  await sleep(300);
  const deadPassingAtKill = deadCriticalAt === 0;
  killedAt = Date.now();
  await cluster.kill9(oldLeader);
  const newLeader = await cluster.leader(20_000);
  leaderSeen = Date.now();
  t.not(newLeader, oldLeader);

  await waitFor('dead-1 to be critical on a survivor', () => deadCriticalAt > 0, 20_000, 50);
  // Never before its TTL since its last renewal, whether the old leader expired it or the new one.
  t.ok(
    deadCriticalAt >= lastDeadSent + TTL,
    `dead-1 critical ${deadCriticalAt - lastDeadSent} ms after its last renewal was sent, not before the TTL (${TTL} ms)`,
  );
  if (!deadPassingAtKill) t.comment('dead-1 was critical before the leader was killed (a slow machine): the failover did not decide its expiry');
  // The failover rule with the largest interval (TTL); leaderSeen is after the real election time.
  const bound = Math.max(Math.min(lastDead + TTL + P + SLACK + TTL, leaderSeen + TTL + SLACK), leaderSeen + GRACE) + SCAN + 1_000;
  t.ok(deadCriticalAt <= bound, `dead-1 critical ${deadCriticalAt - lastDead} ms after its last renewal; bound ${bound - lastDead} ms`);

  // Keep heartbeating well past the new leader's grace and a few TTLs.
  await sleep(Math.max(0, leaderSeen + GRACE + 3 * TTL - Date.now()));
  stop = true;
  await Promise.all([heartbeat, poll]);
  t.same(seenCritical, [], 'alive-1 never showed critical on any survivor');
  const gaps = renewedAt.slice(1).map((at, i) => at - renewedAt[i]!);
  t.same(failures, [], `every renewal found a server before alive-1's check could lapse (longest gap between renewals ${Math.max(...gaps)} ms)`);

  const final = JSON.parse((await http.call(cluster.addr(newLeader), 'GET', '/v1/health/service/hb')).text) as HealthEntry[];
  const dead = final.find((e) => e.Service.ID === 'dead-1');
  t.equal(dead?.Checks[0]?.Output, 'TTL expired');
  t.equal(final.find((e) => e.Service.ID === 'alive-1')?.Checks[0]?.Status, 'passing');
});
