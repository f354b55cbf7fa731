// RegistryService on a RaftNode: writes proposed on the leader or forwarded to it (signed with the
// cluster key), linearizable reads through ReadIndex, and the cluster's status and membership.

import { randomUUID } from 'node:crypto';
import { Pool } from 'undici';
import { deadline } from '../raft/deadline.ts';
import { SiderError, isSiderError } from '../raft/errors.ts';
import type { RaftNode } from '../raft/node.ts';
import { signRequest } from './cluster-auth.ts';
import { itemFailure } from './batch-forwarder.ts';
import { INTERNAL_APPLY_BATCH, WriteForwarder } from './forward-writes.ts';
import type { ForwardedResult, ForwardedWrite } from './forward-writes.ts';
import type { ApplyResult, RegistryCommand, RegistryReader } from './registry/model.ts';
import type { Consistency, RaftServerView, RegistryService } from './registry/service.ts';

/** Paths of the internal API a follower uses to reach the leader. */
export const INTERNAL_APPLY = '/v1/internal/apply';
export const INTERNAL_JOIN = '/v1/internal/join';
export const INTERNAL_REMOVE = '/v1/internal/remove';

export interface RaftRegistryOptions {
  raft: RaftNode;
  reader: RegistryReader;
  nodeName: string;
  /** Signs forwarded requests; '' when running without a key (loopback only). */
  clusterKey: string;
  encode: (cmd: RegistryCommand) => Uint8Array;
  /** Bound on one write, forwarded or not. */
  writeTimeoutMs?: number;
  /** How long a write waits for a leader to be elected before failing. */
  leaderWaitMs?: number;
}

interface WriteReply {
  result: ApplyResult;
  index: number;
}

export class RaftRegistry implements RegistryService {
  readonly reader: RegistryReader;
  readonly nodeName: string;
  #raft: RaftNode;
  #key: string;
  #encode: (cmd: RegistryCommand) => Uint8Array;
  #writeTimeoutMs: number;
  #leaderWaitMs: number;
  #pools = new Map<string, Pool>();
  #confIndex = 1;
  #off: () => void;
  /** Concurrent writes received here leave for the leader in batches. */
  #writes = new WriteForwarder({ send: (writes) => this.#sendWrites(writes) });

  constructor(opts: RaftRegistryOptions) {
    this.#raft = opts.raft;
    this.reader = opts.reader;
    this.nodeName = opts.nodeName;
    this.#key = opts.clusterKey;
    this.#encode = opts.encode;
    this.#writeTimeoutMs = opts.writeTimeoutMs ?? 10_000;
    this.#leaderWaitMs = opts.leaderWaitMs ?? 3_000;
    this.#off = opts.raft.on((ev) => {
      if (ev.type === 'membership') this.#confIndex = ev.index;
    });
  }

  /**
   * `rid` is the client's request ID ('' for none): a write carrying one is applied once however
   * often it is retried. A write forwarded without one is given one, as the forwarder may retry it.
   */
  async write(cmd: RegistryCommand, rid = ''): Promise<WriteReply> {
    // A known leader (the common case) is taken without another turn through #awaitLeader.
    const leader = this.#raft.leader() || (await this.#awaitLeader());
    if (leader === this.#raft.id) {
      try {
        return await this.applyOnLeader(cmd, rid);
      } catch (err) {
        // Leadership moved between the check and the proposal: forward instead.
        if (!isSiderError(err, 'SIDER_NOT_LEADER') && !isSiderError(err, 'SIDER_NO_LEADER')) throw err;
      }
    }
    const reply = await this.#writes.forward(cmd, rid || randomUUID());
    // Read-your-writes on this node: answer once the entry is applied here too.
    await this.#withTimeout(this.#raft.waitApplied(reply.index), `applying index ${reply.index} locally`);
    return reply;
  }

  /** Leader side of a forwarded batch: each write is its own proposal; one result each, in order. */
  applyBatchOnLeader(writes: ForwardedWrite[]): Promise<ForwardedResult[]> {
    return Promise.all(
      writes.map((w) =>
        this.applyOnLeader(w.cmd, w.rid).then(
          (r): ForwardedResult => ({ ok: true, result: r.result, index: r.index }),
          itemFailure,
        ),
      ),
    );
  }

  /** Leader side of a write (also what the internal apply endpoint calls). The leader's clock stamps `now`. */
  async applyOnLeader(cmd: RegistryCommand, rid: string): Promise<WriteReply> {
    const stamped = { ...cmd, now: Date.now() } as RegistryCommand;
    const r = await this.#raft.propose(this.#encode(stamped), rid, this.#writeTimeoutMs);
    return { result: r.result as ApplyResult, index: r.index };
  }

  async readBarrier(consistency: Consistency): Promise<void> {
    if (consistency === 'stale') return;
    await this.#raft.readBarrier(this.#writeTimeoutMs);
  }

  readMeta(): { knownLeader: boolean; lastContactMs: number } {
    return { knownLeader: this.#raft.leader() !== '', lastContactMs: this.#raft.lastContactMs() };
  }

  leaderAddr(): string {
    return this.#raft.leaderAddr();
  }

  peers(): string[] {
    const m = this.#raft.status().membership;
    return m.voters.map((id) => m.addrs[id] ?? '').filter((a) => a !== '');
  }

  raftConfiguration(): { servers: RaftServerView[]; index: number } {
    const st = this.#raft.status();
    const m = st.membership;
    const servers = [...m.voters, ...m.learners].map((id) => ({
      ID: id,
      Address: m.addrs[id] ?? '',
      Leader: id === st.leader,
      Voter: m.voters.includes(id),
    }));
    return { servers, index: this.#confIndex };
  }

  async joinServer(id: string, raftAddr: string): Promise<void> {
    const leader = await this.#awaitLeader();
    // Idempotent: a joiner whose first answer was lost retries and must not be refused.
    const m = this.#raft.status().membership;
    if ((m.voters.includes(id) || m.learners.includes(id)) && m.addrs[id] === raftAddr) return;
    if (leader === this.#raft.id) {
      await this.#raft.addServer(id, raftAddr, this.#writeTimeoutMs);
      return;
    }
    await this.forwardToLeader(INTERNAL_JOIN, { id, addr: raftAddr });
  }

  async removeServer(id: string): Promise<void> {
    const leader = await this.#awaitLeader();
    if (leader === this.#raft.id) {
      await this.#raft.removeServer(id, this.#writeTimeoutMs);
      return;
    }
    await this.forwardToLeader(INTERNAL_REMOVE, { id });
  }

  async close(): Promise<void> {
    this.#off();
    await Promise.all([...this.#pools.values()].map((p) => p.close()));
    this.#pools.clear();
  }

  async #sendWrites(writes: ForwardedWrite[]): Promise<ForwardedResult[]> {
    try {
      return (await this.forwardToLeader<{ results: ForwardedResult[] }>(INTERNAL_APPLY_BATCH, { writes })).results;
    } catch (err) {
      // A leader that predates batches (during a rolling upgrade) takes them one by one.
      if (!isSiderError(err, 'SIDER_BAD_REQUEST') || err.status !== 404) throw err;
      return Promise.all(
        writes.map((w) =>
          this.forwardToLeader<WriteReply>(INTERNAL_APPLY, w).then(
            (r): ForwardedResult => ({ ok: true, result: r.result, index: r.index }),
            itemFailure,
          ),
        ),
      );
    }
  }

  async #awaitLeader(): Promise<string> {
    const deadline = Date.now() + this.#leaderWaitMs;
    for (;;) {
      const leader = this.#raft.leader();
      if (leader) return leader;
      if (Date.now() >= deadline) throw new SiderError('SIDER_NO_LEADER', 'no cluster leader is known; retry later');
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /**
   * Sends a signed internal request to the leader's HTTP API and returns its JSON answer (other
   * modules, e.g. TTL renewals, forward through this). Throws SIDER_NO_LEADER when unreachable.
   */
  async forwardToLeader<T>(path: string, payload: unknown): Promise<T> {
    const leader = this.#raft.leader();
    const info = this.reader.servers().find((s) => s.ID === leader);
    if (!info) {
      throw new SiderError('SIDER_NO_LEADER', `the leader (${leader || 'none'}) has not published its HTTP address yet; retry`, {
        detail: { leader },
      });
    }
    let pool = this.#pools.get(info.HTTPAddr);
    if (!pool) {
      // A forwarded write holds its connection until the entry commits: size the pool for many
      // concurrent writers rather than for throughput per connection.
      pool = new Pool(`http://${info.HTTPAddr}`, { connections: 128, headersTimeout: this.#writeTimeoutMs + 5000, bodyTimeout: this.#writeTimeoutMs + 5000 });
      this.#pools.set(info.HTTPAddr, pool);
    }
    const body = Buffer.from(JSON.stringify(payload));
    const headers: Record<string, string> = { 'content-type': 'application/json', 'x-sider-from': this.#raft.id };
    if (this.#key) Object.assign(headers, signRequest(this.#key, 'POST', path, body));
    let res;
    let text: string;
    const { signal, done } = deadline(this.#writeTimeoutMs);
    try {
      try {
        res = await pool.request({ method: 'POST', path, headers, body, signal });
      } catch (err) {
        throw new SiderError('SIDER_NO_LEADER', `cannot reach the leader ${leader} at ${info.HTTPAddr}: ${(err as Error).message}`, {
          cause: err,
          detail: { leader },
        });
      }
      text = await res.body.text();
    } finally {
      done();
    }
    if (res.statusCode === 200) return JSON.parse(text) as T;
    let code: SiderError['code'] = 'SIDER_INTERNAL';
    let message = text.slice(0, 500);
    try {
      const e = JSON.parse(text) as { code?: string; message?: string };
      if (typeof e.code === 'string' && e.code.startsWith('SIDER_')) code = e.code as SiderError['code'];
      if (typeof e.message === 'string') message = e.message;
    } catch {
      // plain-text error
    }
    throw new SiderError(code, message, { status: res.statusCode });
  }

  async #withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new SiderError('SIDER_TIMEOUT', `timed out ${what}`)), this.#writeTimeoutMs);
    });
    try {
      return await Promise.race([p, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
