// Failover benchmark (issue #7): a 3-node `sider server` cluster on loopback (fsync on, default Raft
// timeouts) under continuous registrations; kill -9 the leader, time until writes are acknowledged again.

import { performance } from 'node:perf_hooks';
import { Agent, request } from 'undici';
import { SiderCluster } from '../support/server-process.ts';
import { waitFor } from '../support/ports.ts';
import { registration } from './http-read.ts';
import { percentile } from './level-fsync.ts';

export interface FailoverTrial {
  trial: number;
  killed: string;
  newLeader: string;
  /** kill → a survivor's /v1/status/leader first names a server other than the killed one. */
  electedSeenMs: number;
  /** kill → first 200 of a write sent after the kill (to any node; only the new leader can have committed it). */
  firstAckMs: number;
  /** kill → first 200 of a write sent after the kill straight to the new leader (proposed there, not forwarded). */
  firstAckOnLeaderMs: number;
  /** Failed attempts between the kill and `firstAckMs`, by kind (HTTP status or error code). */
  errors: Record<string, number>;
  /** From the survivors' logs (wall clock, ms resolution): kill → the first one turns pre-candidate. */
  campaignMs: number;
  /** kill → the new leader logs that it leads. */
  leaderLoggedMs: number;
  /** Pre-vote rounds started by the survivors before a leader emerged (1 = no split or failed round). */
  campaigns: number;
  /** The survivors' role changes after the kill: `<ms after the kill> <node> <role> t<term>`. */
  roles: string[];
  /** kill → the killed server restarted from its data and the cluster back to 3 voters. */
  rejoinMs: number;
}

export interface FailoverSummary {
  trials: number;
  writers: number;
  backoffMs: number;
  p50: Record<'electedSeenMs' | 'firstAckMs' | 'firstAckOnLeaderMs', number>;
  p99: Record<'electedSeenMs' | 'firstAckMs' | 'firstAckOnLeaderMs', number>;
  max: Record<'electedSeenMs' | 'firstAckMs' | 'firstAckOnLeaderMs', number>;
  /** Acknowledged writes per second while the cluster was whole (context for the load). */
  steadyWritesPerSec: number;
}

export interface FailoverResult {
  summary: FailoverSummary;
  trials: FailoverTrial[];
}

export interface FailoverOptions {
  trials?: number;
  writers?: number;
  /** Pause of a writer after a failed attempt before it tries the next server. */
  backoffMs?: number;
  /** Extra `sider server` flags (e.g. `-raft-election-ticks 5`) to compare against the defaults. */
  serverArgs?: string[];
  log?: (line: string) => void;
}

interface Attempt {
  start: number;
  end: number;
  node: string;
  /** 'ok', an HTTP status, or an error code. */
  outcome: string;
}

/** Upper bounds on every wait, so that a broken cluster ends the run instead of hanging it. */
const TRIAL_DEADLINE_MS = 20_000;
const REJOIN_DEADLINE_MS = 60_000;
const WRITE_TIMEOUT_MS = 5_000;
/** Attempts recorded per trial at most (the list is cleared when a trial starts). */
const MAX_ATTEMPTS = 200_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** When the survivors campaigned and won, from their JSON log lines ('raft: role/leader changed', `role`, `time`). */
function electionTimeline(cluster: SiderCluster, survivors: string[], killWall: number): Pick<FailoverTrial, 'campaignMs' | 'leaderLoggedMs' | 'campaigns' | 'roles'> {
  let campaign = Number.POSITIVE_INFINITY;
  let leader = Number.POSITIVE_INFINITY;
  let campaigns = 0;
  const roles: { at: number; text: string }[] = [];
  for (const id of survivors) {
    for (const line of cluster.procs.get(id)?.logLines() ?? []) {
      if (line.msg !== 'raft: role changed' && line.msg !== 'raft: leader changed') continue;
      const at = Date.parse(String(line.time));
      if (!(at >= killWall)) continue;
      roles.push({ at, text: `${at - killWall} ${id} ${String(line.role)} t${String(line.term)}` });
      if (line.role === 'preCandidate') {
        campaigns++;
        campaign = Math.min(campaign, at);
      }
      if (line.role === 'leader') leader = Math.min(leader, at);
    }
  }
  roles.sort((a, b) => a.at - b.at);
  return { campaignMs: campaign - killWall, leaderLoggedMs: leader - killWall, campaigns, roles: roles.map((r) => r.text) };
}

export async function runFailover(opts: FailoverOptions = {}): Promise<FailoverResult> {
  const trials = opts.trials ?? 20;
  const writers = opts.writers ?? 16;
  const backoffMs = opts.backoffMs ?? 10;
  const log = opts.log ?? ((line: string) => console.log(line));
  const cluster = await SiderCluster.start(opts.serverArgs ? { extraArgs: opts.serverArgs } : {});
  const agent = new Agent({ connections: writers, keepAliveTimeout: 5_000, connect: { timeout: 1_000 } });
  const attempts: Attempt[] = [];
  let stopping = false;
  let steadyAcks = 0;
  let steadyMs = 0;
  let measuringSteady = false;

  const writer = async (w: number): Promise<void> => {
    const ids = cluster.ids;
    const body = JSON.stringify(registration('failover', `fo-${w}`, w + 1));
    // Bounded by the run's end and by count (well above what 20 trials can issue).
    for (let seq = 0; !stopping && seq < 10_000_000; seq++) {
      const node = ids[(w + seq) % ids.length]!;
      const start = performance.now();
      let outcome: string;
      try {
        const res = await request(`http://${cluster.addr(node)}/v1/agent/service/register`, {
          method: 'PUT',
          dispatcher: agent,
          headers: { 'content-type': 'application/json' },
          body,
          signal: AbortSignal.timeout(WRITE_TIMEOUT_MS),
        });
        await res.body.dump();
        outcome = res.statusCode === 200 ? 'ok' : `HTTP_${res.statusCode}`;
      } catch (err) {
        outcome = (err as { code?: string }).code ?? (err as Error).name;
      }
      const end = performance.now();
      if (attempts.length < MAX_ATTEMPTS) attempts.push({ start, end, node, outcome });
      if (outcome === 'ok') {
        if (measuringSteady) steadyAcks++;
      } else {
        await sleep(backoffMs);
      }
    }
  };

  const results: FailoverTrial[] = [];
  const loops = Array.from({ length: writers }, (_, w) => writer(w));
  try {
    for (let trial = 1; trial <= trials; trial++) {
      attempts.length = 0;
      const old = await cluster.leader();
      const oldRaft = cluster.spec(old).raft;
      // Writes must be flowing before the kill; the pause also spreads the kill over the heartbeat phase.
      const flowingSince = performance.now();
      await waitFor('acknowledged writes', () => attempts.some((a) => a.outcome === 'ok' && a.start > flowingSince), 10_000, 20);
      measuringSteady = true;
      const steadyFrom = performance.now();
      await sleep(700 + Math.floor(Math.random() * 300));
      measuringSteady = false;
      steadyMs += performance.now() - steadyFrom;

      const survivors = cluster.ids.filter((id) => id !== old);
      const killIdx = attempts.length;
      const killAt = performance.now();
      const killWall = Date.now();
      await cluster.kill9(old);

      // A survivor naming a new leader over HTTP (polled every 10 ms, bounded).
      let electedSeen = Number.NaN;
      let newLeaderRaft = '';
      for (let i = 0; performance.now() - killAt < TRIAL_DEADLINE_MS && i < 100_000; i++) {
        const seen = await Promise.all(survivors.map((id) => cluster.http.leader(cluster.addr(id)).catch(() => '')));
        const fresh = seen.find((s) => s !== '' && s !== oldRaft);
        if (fresh) {
          electedSeen = performance.now() - killAt;
          newLeaderRaft = fresh;
          break;
        }
        await sleep(10);
      }
      const newLeader = cluster.ids.find((id) => cluster.spec(id).raft === newLeaderRaft) ?? '';
      if (!newLeader) throw new Error(`trial ${trial}: no new leader within ${TRIAL_DEADLINE_MS} ms\n${cluster.logs()}`);

      const firstAck = (onLeader: boolean): number => {
        let best = Number.POSITIVE_INFINITY;
        for (let i = killIdx; i < attempts.length; i++) {
          const a = attempts[i]!;
          if (a.outcome === 'ok' && a.start > killAt && (!onLeader || a.node === newLeader) && a.end < best) best = a.end;
        }
        return best;
      };
      await waitFor(`trial ${trial}: a write acknowledged by the new leader ${newLeader}`, () => Number.isFinite(firstAck(true)), TRIAL_DEADLINE_MS, 10);
      // Read now: the new leader's warnings about its dead peer soon push these lines out of the kept tail.
      const timeline = electionTimeline(cluster, survivors, killWall);
      const ackAny = firstAck(false);
      const ackLeader = firstAck(true);
      const errors: Record<string, number> = {};
      for (const a of attempts.slice(killIdx)) if (a.outcome !== 'ok' && a.end > killAt && a.end <= ackAny) errors[a.outcome] = (errors[a.outcome] ?? 0) + 1;

      // The killed server comes back from its data directory; wait for three voters and a write through it.
      await cluster.startServer(old, { voter: true, timeoutMs: REJOIN_DEADLINE_MS });
      await cluster.waitVoters(cluster.ids, REJOIN_DEADLINE_MS);
      const backAt = performance.now();
      await waitFor(`trial ${trial}: a write through the restarted ${old}`, () => attempts.some((a) => a.outcome === 'ok' && a.node === old && a.start > backAt), REJOIN_DEADLINE_MS, 20);
      const t: FailoverTrial = {
        trial,
        killed: old,
        newLeader,
        electedSeenMs: electedSeen,
        firstAckMs: ackAny - killAt,
        firstAckOnLeaderMs: ackLeader - killAt,
        errors,
        ...timeline,
        rejoinMs: performance.now() - killAt,
      };
      results.push(t);
      log(
        `trial ${trial}: killed ${old}, new leader ${newLeader}: seen ${t.electedSeenMs.toFixed(0)} ms, first ack ${t.firstAckMs.toFixed(0)} ms, ` +
          `first ack on the leader ${t.firstAckOnLeaderMs.toFixed(0)} ms; logs: campaign ${t.campaignMs} ms, leader ${t.leaderLoggedMs} ms, ${t.campaigns} pre-vote round(s) [${t.roles.join(', ')}]; errors ${JSON.stringify(errors)}, rejoined ${t.rejoinMs.toFixed(0)} ms`,
      );
    }
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${cluster.logs()}`, { cause: err });
  } finally {
    stopping = true;
    await Promise.all(loops);
    await agent.close();
    await cluster.teardown();
  }

  const stat = (p: number | 'max'): FailoverSummary['p50'] => {
    const pick = (k: 'electedSeenMs' | 'firstAckMs' | 'firstAckOnLeaderMs'): number => {
      const sorted = results.map((r) => r[k]).sort((a, b) => a - b);
      return p === 'max' ? (sorted.at(-1) ?? 0) : percentile(sorted, p);
    };
    return { electedSeenMs: pick('electedSeenMs'), firstAckMs: pick('firstAckMs'), firstAckOnLeaderMs: pick('firstAckOnLeaderMs') };
  };
  return {
    summary: {
      trials: results.length,
      writers,
      backoffMs,
      p50: stat(50),
      p99: stat(99),
      max: stat('max'),
      steadyWritesPerSec: steadyMs > 0 ? (steadyAcks / steadyMs) * 1000 : 0,
    },
    trials: results,
  };
}
