// Deterministic simulation of whole Raft clusters in one process: simulated network (drop,
// duplicate, delay/reorder, partitions incl. one-way and bridges), simulated disk (a crash loses
// unsynced writes and may leave a torn suffix), crash-restart, pauses, membership changes and
// leadership transfers, clients with timeouts and retries, Raft invariants checked after every step.

import { createHash } from 'node:crypto';
import { RaftCore } from '../../raft/core.ts';
import { encodeConfChange } from '../../raft/codec.ts';
import { SiderError } from '../../raft/errors.ts';
import { afterWrite, mustSync, sendableDuringWrite, splitMessages } from '../../raft/persist-rules.ts';
import type { DurableVote } from '../../raft/persist-rules.ts';
import type { Entry, HardState, Message, NodeId, ReadState, Ready, Snapshot } from '../../raft/types.ts';
import { KvMachine, encodeKvCommand } from '../support/kv-machine.ts';
import type { KvResult } from '../support/kv-machine.ts';
import { checkLinearizable, kvModel } from '../support/linearizability.ts';
import type { Operation } from '../support/linearizability.ts';
import { mulberry32 } from '../support/random.ts';

export type PlantedBug = 'skipFsync';

export interface SimOptions {
  seed: number;
  nodes: number;
  /** Simulated milliseconds during which clients issue operations and faults happen. */
  activeMs?: number;
  /** Simulated milliseconds of calm at the end (faults healed) before the final checks. */
  settleMs?: number;
  clients?: number;
  keys?: number;
  faults?: boolean;
  membershipChanges?: boolean;
  snapshotEvery?: number;
  bug?: PlantedBug;
  /** `crashes`: every fault is a crash (of the leader half of the time) — for the planted-bug check. */
  faultMix?: 'all' | 'crashes';
  /** Keep readable trace lines (memory heavy: for replaying one seed). */
  keepTrace?: boolean;
}

export interface SimResult {
  seed: number;
  ok: boolean;
  failure: string;
  traceHash: string;
  schedule: string[];
  stats: {
    ops: number;
    acked: number;
    unknown: number;
    leaders: number;
    snapshotsInstalled: number;
    /** Entries applied during their node's own write (takeCommitted), not after it. */
    appliedDuringWrite: number;
    /** Reads confirmed during their node's own write (takeReadStates). */
    readsDuringWrite: number;
    /** Heartbeats, their answers and read indexes sent during their node's own write. */
    sentDuringWrite: number;
    /** Read rounds a leader started during its own write (startReadRound). */
    roundsDuringWrite: number;
    crashes: number;
    membershipChanges: number;
    finalCommit: number;
  };
  trace: string[];
}

type KvInput = { op: 'get' | 'put' | 'append'; key: string; value: string };
type KvOutput = { value: string };

const TICK_MS = 10;
const ELECTION_TICKS = 10;

interface Disk {
  hardState: HardState | null;
  entries: Entry[];
  snapshot: Snapshot | null;
}

function cloneDisk(d: Disk): Disk {
  return { hardState: d.hardState ? { ...d.hardState } : null, entries: [...d.entries], snapshot: d.snapshot };
}

function diskWrite(d: Disk, hs: HardState | null, entries: Entry[]): void {
  if (entries.length) {
    const first = entries[0]!.index;
    const base = d.entries.length ? d.entries[0]!.index : first;
    if (d.entries.length && first > base + d.entries.length) throw new Error(`disk gap: append ${first} after ${base + d.entries.length - 1}`);
    if (!d.entries.length || first < base) d.entries = [];
    else d.entries.length = first - base;
    for (const e of entries) d.entries.push(e);
  }
  if (hs) d.hardState = { ...hs };
}

interface ClientReq {
  id: number;
  client: number;
  seq: number;
  input: KvInput;
}

type ClientReply = { req: number; ok: true; value: string } | { req: number; ok: false; leader: NodeId };

interface SimNode {
  id: NodeId;
  core: RaftCore | null;
  durable: Disk;
  cache: Disk;
  sm: KvMachine;
  persisting: { rd: Ready; doneAt: number; late: Message[]; sync: boolean } | null;
  /** What the driver believes is durable (the real driver's #durable). */
  durableVote: DurableVote;
  pausedUntil: number;
  downUntil: number;
  nextTickAt: number;
  inbox: (Message | ClientReq)[];
  proposals: Map<number, { term: number; req: ClientReq }>;
  reads: Map<number, ClientReq>;
  waitingReads: { index: number; req: ClientReq }[];
  readCtx: number;
  lastSnapIndex: number;
  removed: boolean;
}

interface ClientState {
  id: number;
  seq: number;
  op: Operation<KvInput, KvOutput> | null;
  deadline: number;
  attemptDeadline: number;
  nextAttemptAt: number;
  reqId: number;
  target: NodeId;
  counter: number;
}

export class SimCluster {
  readonly opts: Required<Omit<SimOptions, 'bug'>> & { bug: PlantedBug | undefined };
  #rand: () => number;
  #now = 0;
  #nodes = new Map<NodeId, SimNode>();
  #nextNodeNum = 1;
  #network = new Map<number, (Message | ClientReq | (ClientReply & { to: number }))[]>();
  #blocked = new Set<string>();
  #clients: ClientState[] = [];
  #history: Operation<KvInput, KvOutput>[] = [];
  #ackedAppends: { key: string; value: string }[] = [];
  #reqCounter = 0;
  #hash = createHash('sha256');
  #trace: string[] = [];
  #schedule: string[] = [];
  #failure = '';
  // Invariant state.
  #leaderOfTerm = new Map<number, NodeId>();
  #entryAt = new Map<string, { data: string; prevTerm: number }>();
  #committed = new Map<number, number>(); // index -> term
  #maxCommitted = 0;
  #appliedAt = new Map<number, string>(); // index -> digest of entry
  #stats = { leaders: 0, snapshotsInstalled: 0, crashes: 0, membershipChanges: 0, appliedDuringWrite: 0, readsDuringWrite: 0, sentDuringWrite: 0, roundsDuringWrite: 0 };

  constructor(opts: SimOptions) {
    this.opts = {
      seed: opts.seed,
      nodes: opts.nodes,
      activeMs: opts.activeMs ?? 6000,
      settleMs: opts.settleMs ?? 4000,
      clients: opts.clients ?? 5,
      keys: opts.keys ?? 3,
      faults: opts.faults ?? true,
      membershipChanges: opts.membershipChanges ?? true,
      snapshotEvery: opts.snapshotEvery ?? 64,
      bug: opts.bug,
      faultMix: opts.faultMix ?? 'all',
      keepTrace: opts.keepTrace ?? false,
    };
    this.#rand = mulberry32(opts.seed);
    this.#bootstrap();
    for (let c = 0; c < this.opts.clients; c++) {
      this.#clients.push({
        id: c,
        seq: 0,
        op: null,
        deadline: 0,
        attemptDeadline: 0,
        nextAttemptAt: 1 + c,
        reqId: 0,
        target: 'n1',
        counter: 0,
      });
    }
  }

  // ---- set-up ---------------------------------------------------------------------------------

  #int(n: number): number {
    return Math.floor(this.#rand() * n);
  }

  #pick<T>(xs: readonly T[]): T {
    return xs[this.#int(xs.length)]!;
  }

  #event(line: string): void {
    this.#hash.update(line);
    this.#hash.update('\n');
    if (this.opts.keepTrace) this.#trace.push(`${this.#now} ${line}`);
  }

  /** Every node starts from the same log: bootstrap n1, then add and promote the others. */
  #bootstrap(): void {
    const ids: NodeId[] = [];
    for (let i = 0; i < this.opts.nodes; i++) ids.push(`n${this.#nextNodeNum++}`);
    const entries: Entry[] = [];
    const conf = (op: 'bootstrap' | 'addLearner' | 'promote', id: NodeId): void => {
      entries.push({
        index: entries.length + 1,
        term: 1,
        type: 'conf',
        rid: '',
        data: encodeConfChange(op === 'promote' ? { op, id } : { op, id, addr: `${id}:1` }),
      });
    };
    conf('bootstrap', ids[0]!);
    for (const id of ids.slice(1)) {
      conf('addLearner', id);
      conf('promote', id);
    }
    for (const id of ids) {
      const disk: Disk = { hardState: { term: 1, vote: '', commit: entries.length }, entries: [...entries], snapshot: null };
      this.#addNode(id, disk);
    }
  }

  #addNode(id: NodeId, disk: Disk): SimNode {
    const n: SimNode = {
      id,
      core: null,
      durable: disk,
      cache: cloneDisk(disk),
      sm: new KvMachine(),
      persisting: null,
      durableVote: { term: 0, vote: '' },
      pausedUntil: 0,
      downUntil: 0,
      nextTickAt: this.#now + 1 + this.#int(TICK_MS),
      inbox: [],
      proposals: new Map(),
      reads: new Map(),
      waitingReads: [],
      readCtx: 0,
      lastSnapIndex: 0,
      removed: false,
    };
    this.#nodes.set(id, n);
    this.#start(n);
    return n;
  }

  /** (Re)starts a node from its durable disk, as the real driver does from LevelDB and snapshot files. */
  #start(n: SimNode): void {
    const d = n.durable;
    n.cache = cloneDisk(d);
    n.sm = new KvMachine();
    if (d.snapshot) n.sm.restore(d.snapshot.data);
    n.lastSnapIndex = d.snapshot?.meta.index ?? 0;
    n.durableVote = { term: d.hardState?.term ?? 0, vote: d.hardState?.vote ?? '' };
    n.core = new RaftCore(
      {
        id: n.id,
        random: mulberry32(this.#int(2 ** 31)),
        electionTicks: ELECTION_TICKS,
        heartbeatTicks: 1,
        maxEntriesPerMsg: 16,
        maxBytesPerMsg: 4096,
        maxUncommittedBytes: 1 << 20,
      },
      { hardState: d.hardState, snapshot: d.snapshot?.meta ?? null, entries: d.entries },
    );
    n.persisting = null;
    n.inbox = [];
    n.proposals.clear();
    n.reads.clear();
    n.waitingReads = [];
  }

  // ---- network --------------------------------------------------------------------------------

  #deliverAt(t: number, item: Message | ClientReq | (ClientReply & { to: number })): void {
    let b = this.#network.get(t);
    if (!b) this.#network.set(t, (b = []));
    b.push(item);
  }

  #sendRaft(m: Message): void {
    const faults = this.opts.faults && this.#now < this.opts.activeMs;
    if (this.#blocked.has(`${m.from}>${m.to}`)) return;
    if (faults && this.#rand() < 0.02) return; // drop
    let latency = 1 + this.#int(4);
    if (faults && this.#rand() < 0.05) latency += this.#int(40); // delay and reorder
    this.#deliverAt(this.#now + latency, m);
    if (faults && this.#rand() < 0.01) this.#deliverAt(this.#now + latency + this.#int(20), m); // duplicate
  }

  #reply(to: number, r: ClientReply): void {
    this.#deliverAt(this.#now + 1 + this.#int(3), { ...r, to });
  }

  // ---- the simulation loop -----------------------------------------------------------------------

  run(): SimResult {
    const faultTimes = this.#makeSchedule();
    const end = this.opts.activeMs + this.opts.settleMs;
    try {
      for (this.#now = 1; this.#now <= end && !this.#failure; this.#now++) {
        if (this.#now === this.opts.activeMs) this.#healAll();
        this.#runDueHeals();
        const f = faultTimes.get(this.#now);
        if (f) for (const fn of f) fn();
        this.#flushNetwork();
        if (this.opts.bug === 'skipFsync') this.#writeback();
        for (const n of this.#nodes.values()) this.#stepNode(n);
        for (const c of this.#clients) this.#stepClient(c);
      }
      if (!this.#failure) this.#finalChecks();
    } catch (err) {
      this.#fail(`exception at t=${this.#now}: ${(err as Error).stack ?? String(err)}`);
    }
    const acked = this.#history.filter((o) => o.ret !== Infinity).length;
    const leader = this.#currentLeader();
    return {
      seed: this.opts.seed,
      ok: !this.#failure,
      failure: this.#failure,
      traceHash: this.#hash.digest('hex'),
      schedule: this.#schedule,
      stats: {
        ops: this.#history.length,
        acked,
        unknown: this.#history.length - acked,
        leaders: this.#stats.leaders,
        snapshotsInstalled: this.#stats.snapshotsInstalled,
        appliedDuringWrite: this.#stats.appliedDuringWrite,
        readsDuringWrite: this.#stats.readsDuringWrite,
        sentDuringWrite: this.#stats.sentDuringWrite,
        roundsDuringWrite: this.#stats.roundsDuringWrite,
        crashes: this.#stats.crashes,
        membershipChanges: this.#stats.membershipChanges,
        finalCommit: leader?.core?.status().commit ?? 0,
      },
      trace: this.#trace,
    };
  }

  #fail(why: string): void {
    if (!this.#failure) this.#failure = why;
  }

  #flushNetwork(): void {
    const due = this.#network.get(this.#now);
    if (!due) return;
    this.#network.delete(this.#now);
    for (const item of due) {
      if ('type' in item) {
        const n = this.#nodes.get(item.to);
        if (!n || this.#blocked.has(`${item.from}>${item.to}`)) continue;
        if (n.downUntil > this.#now) continue;
        n.inbox.push(item);
      } else if ('input' in item) {
        const n = this.#nodes.get(this.#clients[item.client]!.target);
        if (!n || n.downUntil > this.#now) continue;
        n.inbox.push(item);
      } else {
        this.#clientReply(item);
      }
    }
  }

  #stepNode(n: SimNode): void {
    if (n.downUntil > this.#now || n.pausedUntil > this.#now) return;
    if (n.downUntil === this.#now && n.core === null) {
      this.#start(n);
      this.#event(`${n.id} restart`);
    }
    const core = n.core!;
    for (const item of n.inbox) {
      if ('type' in item) {
        this.#event(`${item.from}>${item.to} ${item.type} t${item.term} i${item.index} c${item.commit} e${item.entries.length}${item.reject ? ' R' : ''}`);
        core.step(item);
      } else {
        this.#handleClientReq(n, item);
      }
    }
    n.inbox = [];
    while (n.nextTickAt <= this.#now) {
      core.tick();
      n.nextTickAt += TICK_MS;
    }
    // As the driver: during a synced write, what the messages just stepped commit is applied, the
    // reads they confirm are served, and heartbeats, their answers and read indexes sent, at once
    // (takeCommitted, takeReadStates, takeMessages), not after it.
    if (n.persisting && n.persisting.sync && !n.persisting.rd.snapshot) {
      // A leader starts the round of the reads asked meanwhile (RaftNode does it once per turn).
      if (core.startReadRound()) this.#stats.roundsDuringWrite++;
      for (const e of core.takeCommitted()) {
        this.#applyEntry(n, e);
        this.#stats.appliedDuringWrite++;
      }
      for (const rs of core.takeReadStates()) {
        this.#readConfirmed(n, rs);
        this.#stats.readsDuringWrite++;
      }
      this.#serveReads(n);
      const term = n.durableVote.term;
      for (const m of core.takeMessages((x) => sendableDuringWrite(x, term))) {
        this.#sendRaft(m);
        this.#stats.sentDuringWrite++;
      }
    }
    if (n.persisting && n.persisting.doneAt <= this.#now) this.#finishPersist(n);
    if (!n.persisting && core.hasReady()) {
      const rd = core.ready();
      this.#checkReady(n, rd);
      // The driver's rules: a leader's appends may leave now; the rest after the write.
      const { early, late } = splitMessages(rd, n.durableVote);
      for (const m of early) this.#sendRaft(m);
      // As the driver: a received snapshot is installed and what is committed applied before the
      // write of this Ready's entries (committed entries are final; a crash loses nothing).
      if (rd.snapshot) {
        n.sm.restore(rd.snapshot.data);
        n.lastSnapIndex = rd.snapshot.meta.index;
        this.#stats.snapshotsInstalled++;
        this.#event(`${n.id} installed snapshot ${rd.snapshot.meta.index}`);
      }
      for (const e of rd.committed) this.#applyEntry(n, e);
      // Reads whose index a quorum confirmed need nothing from the write either.
      for (const rs of rd.readStates) this.#readConfirmed(n, rs);
      this.#serveReads(n);
      const sync = mustSync(rd, n.durableVote);
      n.persisting = { rd, late, sync, doneAt: this.#now + (this.opts.bug === 'skipFsync' ? 0 : 1 + this.#int(3)) };
      if (n.persisting.doneAt <= this.#now) this.#finishPersist(n);
    }
  }

  /** Without fsync, the OS writes the page cache back when it likes: now and then, per node. */
  #writeback(): void {
    for (const n of this.#nodes.values()) {
      if (n.core && this.#rand() < 0.004) n.durable = cloneDisk(n.cache);
    }
  }

  #handleClientReq(n: SimNode, req: ClientReq): void {
    const core = n.core!;
    try {
      if (req.input.op === 'get') {
        const ctx = ++n.readCtx;
        n.reads.set(ctx, req);
        core.readIndex(ctx);
      } else {
        const data = encodeKvCommand({
          client: `c${req.client}`,
          seq: req.seq,
          op: req.input.op,
          key: req.input.key,
          value: req.input.value,
        });
        const { index, term } = core.propose(data, `c${req.client}:${req.seq}`);
        n.proposals.set(index, { term, req });
      }
    } catch (err) {
      if (!(err instanceof SiderError)) throw err;
      const leader = typeof err.detail.leader === 'string' ? err.detail.leader : '';
      this.#reply(req.client, { req: req.id, ok: false, leader });
    }
  }

  #finishPersist(n: SimNode): void {
    const { rd, late, sync } = n.persisting!;
    n.persisting = null;
    const core = n.core!;
    // 1. snapshot, 2. entries + hard state (synced unless the planted bug skips the fsync).
    if (rd.snapshot) {
      n.cache.snapshot = rd.snapshot;
      n.cache.entries = [];
    }
    if (rd.entries.length) {
      // No truncation below commit: a node never replaces an entry it has (durably) committed.
      const first = rd.entries[0]!.index;
      const last = n.cache.entries.length ? n.cache.entries[n.cache.entries.length - 1]!.index : 0;
      const commit = n.cache.hardState?.commit ?? 0;
      if (first <= last && first <= commit) this.#fail(`${n.id} truncates its log at ${first}, at or below its commit ${commit}`);
    }
    diskWrite(n.cache, rd.hardState, rd.entries);
    this.#checkLogMatching(n, rd.entries);
    // A synced write makes everything before it durable too (like LevelDB's log); an unsynced one
    // (commit index only) stays in the page cache and is lost by a crash.
    if (this.opts.bug !== 'skipFsync' && sync) n.durable = cloneDisk(n.cache);
    else if (rd.snapshot) n.durable.snapshot = rd.snapshot; // snapshot files are still fsynced
    n.durableVote = afterWrite(rd, n.durableVote, sync);
    // 3. send.
    for (const m of late) {
      if (m.type === 'snap' && m.snapshot) {
        const snap = n.durable.snapshot ?? n.cache.snapshot;
        if (!snap) continue;
        this.#sendRaft({ ...m, snapshot: snap });
        // The simulated transport reports the outcome when it would have finished sending.
        core.reportSnapshot(m.to, !this.#blocked.has(`${m.from}>${m.to}`));
        continue;
      }
      this.#sendRaft(m);
    }
    // 4. reads given up on (the snapshot, the committed entries and the confirmed reads were
    //    taken when the write started).
    for (const ctx of rd.droppedReads) {
      const req = n.reads.get(ctx);
      n.reads.delete(ctx);
      if (req) this.#reply(req.client, { req: req.id, ok: false, leader: '' });
    }
    this.#serveReads(n);
    core.advance(rd);
    this.#maybeSnapshot(n);
  }

  #applyEntry(n: SimNode, e: Entry): void {
    const sig = `${e.term}:${e.type}:${Buffer.from(e.data).toString('base64')}`;
    const prev = this.#appliedAt.get(e.index);
    if (prev === undefined) this.#appliedAt.set(e.index, sig);
    else if (prev !== sig) this.#fail(`state machine safety: ${n.id} applied a different entry at ${e.index}`);
    const p = n.proposals.get(e.index);
    n.proposals.delete(e.index);
    let result: KvResult | null = null;
    if (e.type === 'normal') result = n.sm.apply(e);
    else n.sm.appliedIndex = e.index;
    if (p) {
      if (p.term === e.term && result) this.#reply(p.req.client, { req: p.req.id, ok: true, value: result.value });
      else this.#reply(p.req.client, { req: p.req.id, ok: false, leader: '' });
    }
  }

  /** A read's index is confirmed: it is served once the node has applied that index. */
  #readConfirmed(n: SimNode, rs: ReadState): void {
    const req = n.reads.get(rs.ctx);
    n.reads.delete(rs.ctx);
    if (req) n.waitingReads.push({ index: rs.index, req });
  }

  #serveReads(n: SimNode): void {
    if (!n.waitingReads.length) return;
    const keep: typeof n.waitingReads = [];
    for (const w of n.waitingReads) {
      if (w.index <= n.sm.appliedIndex) this.#reply(w.req.client, { req: w.req.id, ok: true, value: n.sm.get(w.req.input.key) });
      else keep.push(w);
    }
    n.waitingReads = keep;
  }

  #maybeSnapshot(n: SimNode): void {
    const core = n.core!;
    const applied = n.sm.appliedIndex;
    if (applied - n.lastSnapIndex < this.opts.snapshotEvery) return;
    const view = core.logView();
    const e = view.entries[applied - view.offset - 1];
    const term = applied === view.offset ? view.offsetTerm : e?.term;
    if (term === undefined) return;
    const meta = { index: applied, term, membership: core.membershipAt(applied) };
    const snap: Snapshot = { meta, data: n.sm.snapshotSync() };
    // Snapshot files are written temp + fsync + rename: durable once saved.
    n.cache.snapshot = snap;
    n.durable.snapshot = snap;
    n.lastSnapIndex = applied;
    const through = core.compact(meta, 8);
    if (through > 0) {
      for (const d of [n.cache, n.durable]) d.entries = d.entries.filter((x) => x.index > through);
    }
  }

  // ---- invariants -------------------------------------------------------------------------------

  #checkReady(n: SimNode, rd: Ready): void {
    const st = n.core!.status();
    if (rd.softState?.role === 'leader') {
      this.#stats.leaders++;
      this.#event(`${n.id} leader t${st.term}`);
      const other = this.#leaderOfTerm.get(st.term);
      if (other && other !== n.id) this.#fail(`election safety: ${other} and ${n.id} both leaders of term ${st.term}`);
      this.#leaderOfTerm.set(st.term, n.id);
      // Leader completeness: every committed entry is in the new leader's log.
      const view = n.core!.logView();
      for (const [i, t] of this.#committed) {
        if (i <= view.offset) continue;
        const e = view.entries[i - view.offset - 1];
        if (!e || e.term !== t) {
          this.#fail(`leader completeness: ${n.id} leader of term ${st.term} lacks committed entry ${i} (term ${t})`);
          break;
        }
      }
    }
    if (rd.hardState) {
      const view = n.core!.logView();
      for (let i = this.#maxCommitted + 1; i <= rd.hardState.commit; i++) {
        const e = view.entries[i - view.offset - 1];
        const t = i === view.offset ? view.offsetTerm : e?.term;
        if (t === undefined) continue;
        this.#committed.set(i, t);
      }
      if (rd.hardState.commit > this.#maxCommitted) this.#maxCommitted = rd.hardState.commit;
      for (let i = Math.max(view.offset + 1, rd.hardState.commit - 64); i <= rd.hardState.commit; i++) {
        const t = this.#committed.get(i);
        const e = view.entries[i - view.offset - 1];
        if (t !== undefined && e && e.term !== t) this.#fail(`${n.id} commits entry ${i} term ${e.term}, but term ${t} was committed there`);
      }
    }
  }

  /** Log matching: an entry (index, term) has the same data and the same predecessor term everywhere. */
  #checkLogMatching(n: SimNode, entries: Entry[]): void {
    if (!entries.length) return;
    const d = n.cache;
    const base = d.entries.length ? d.entries[0]!.index : 0;
    for (const e of entries) {
      const prev = e.index - 1;
      let prevTerm = -1;
      if (prev >= base && base > 0) prevTerm = d.entries[prev - base]!.term;
      else if (d.snapshot && d.snapshot.meta.index === prev) prevTerm = d.snapshot.meta.term;
      else if (prev === 0) prevTerm = 0;
      const key = `${e.index}:${e.term}`;
      const data = `${e.type}:${e.rid}:${Buffer.from(e.data).toString('base64')}`;
      const seen = this.#entryAt.get(key);
      if (!seen) this.#entryAt.set(key, { data, prevTerm });
      else if (seen.data !== data) this.#fail(`log matching: entry ${key} differs on ${n.id}`);
      else if (prevTerm >= 0 && seen.prevTerm >= 0 && seen.prevTerm !== prevTerm) {
        this.#fail(`log matching: entry ${key} on ${n.id} follows term ${prevTerm}, elsewhere term ${seen.prevTerm}`);
      }
    }
  }

  // ---- clients ------------------------------------------------------------------------------------

  #stepClient(c: ClientState): void {
    if (c.op) {
      if (this.#now >= c.deadline) {
        // Unknown outcome: it may or may not have taken effect.
        c.op.ret = Infinity;
        this.#event(`client ${c.id} op timeout`);
        c.op = null;
        c.nextAttemptAt = this.#now + 1;
        return;
      }
      if (this.#now >= c.attemptDeadline && this.#now >= c.nextAttemptAt) this.#attempt(c, this.#pickTarget());
      else if (c.nextAttemptAt === this.#now) this.#attempt(c, c.target);
      return;
    }
    if (this.#now >= this.opts.activeMs - 1500 || this.#now < c.nextAttemptAt) return;
    const r = this.#rand();
    const key = `k${this.#int(this.opts.keys)}`;
    const value = `${c.id}.${c.counter++};`;
    // Puts go to k0 only, so every acknowledged append to another key must survive to the end.
    const input: KvInput =
      r < 0.4 ? { op: 'append', key, value } : r < 0.55 ? { op: 'put', key: 'k0', value } : { op: 'get', key, value: '' };
    if (input.op !== 'get') c.seq++;
    c.op = { client: c.id, input, call: this.#now, ret: Infinity, output: { value: '' } };
    this.#history.push(c.op);
    c.deadline = this.#now + 1200;
    this.#attempt(c, c.target);
  }

  #pickTarget(): NodeId {
    const ids = [...this.#nodes.keys()].filter((id) => !this.#nodes.get(id)!.removed);
    return this.#pick(ids);
  }

  #attempt(c: ClientState, target: NodeId): void {
    c.target = target;
    c.reqId = ++this.#reqCounter;
    c.attemptDeadline = this.#now + 150;
    c.nextAttemptAt = c.attemptDeadline;
    const req: ClientReq = { id: c.reqId, client: c.id, seq: c.seq, input: c.op!.input };
    this.#deliverAt(this.#now + 1 + this.#int(3), req);
  }

  #clientReply(r: ClientReply & { to: number }): void {
    const c = this.#clients[r.to]!;
    if (!c.op || r.req !== c.reqId) return; // a late answer to an earlier attempt
    if (r.ok) {
      c.op.ret = this.#now;
      c.op.output = { value: r.value };
      this.#event(`client ${c.id} ${c.op.input.op} ${c.op.input.key} ok ${r.value.length}`);
      if (c.op.input.op === 'append') this.#ackedAppends.push({ key: c.op.input.key, value: c.op.input.value });
      c.op = null;
      c.nextAttemptAt = this.#now + 1 + this.#int(5);
      return;
    }
    // Retry: at the hinted leader soon, else somewhere random.
    c.nextAttemptAt = this.#now + 5 + this.#int(10);
    c.attemptDeadline = c.nextAttemptAt;
    c.target = r.leader && this.#nodes.has(r.leader) ? r.leader : this.#pickTarget();
  }

  // ---- faults -------------------------------------------------------------------------------------

  #makeSchedule(): Map<number, (() => void)[]> {
    const at = new Map<number, (() => void)[]>();
    const add = (t: number, desc: string, fn: () => void): void => {
      let l = at.get(t);
      if (!l) at.set(t, (l = []));
      l.push(() => {
        this.#event(`fault ${desc}`);
        fn();
      });
      this.#schedule.push(`t=${t} ${desc}`);
    };
    if (!this.opts.faults) return at;
    let t = 300 + this.#int(300);
    const initial = [...this.#nodes.keys()];
    while (t < this.opts.activeMs - 500) {
      const kind = this.opts.faultMix === 'crashes' ? -1 : this.#int(this.opts.membershipChanges ? 8 : 6);
      const victim = this.#pick(initial);
      switch (kind) {
        case -1: {
          const down = 20 + this.#int(300);
          const leader = this.#rand() < 0.5;
          add(t, `crash ${leader ? 'the leader' : victim} for ${down}ms`, () => {
            const l = this.#currentLeader();
            this.#crash(leader && l ? l.id : victim, down);
          });
          break;
        }
        case 0: {
          const down = 50 + this.#int(800);
          add(t, `crash ${victim} for ${down}ms`, () => this.#crash(victim, down));
          break;
        }
        case 1: {
          const len = 200 + this.#int(1500);
          add(t, `pause ${victim} for ${len}ms`, () => this.#pause(victim, len));
          break;
        }
        case 2: {
          const len = 200 + this.#int(1200);
          add(t, `isolate leader for ${len}ms`, () => {
            const l = this.#currentLeader();
            if (l) this.#partitionFor([[l.id], this.#others([l.id])], len);
          });
          break;
        }
        case 3: {
          const len = 200 + this.#int(1200);
          const ids = this.#shuffle(initial);
          const cut = 1 + this.#int(ids.length - 1);
          const a = ids.slice(0, cut);
          add(t, `partition [${a}] | rest for ${len}ms`, () => this.#partitionFor([a, this.#others(a)], len));
          break;
        }
        case 4: {
          const len = 200 + this.#int(1200);
          const other = this.#pick(initial.filter((x) => x !== victim));
          add(t, `one-way ${victim} -/-> ${other} for ${len}ms`, () => {
            this.#blocked.add(`${victim}>${other}`);
            this.#later(len, () => this.#blocked.delete(`${victim}>${other}`));
          });
          break;
        }
        case 5: {
          const len = 300 + this.#int(1200);
          add(t, `bridge via ${victim} for ${len}ms`, () => {
            const rest = this.#shuffle(this.#others([victim]));
            const half = Math.ceil(rest.length / 2);
            const a = rest.slice(0, half);
            const b = rest.slice(half);
            const pairs: string[] = [];
            for (const x of a) for (const y of b) pairs.push(`${x}>${y}`, `${y}>${x}`);
            for (const p of pairs) this.#blocked.add(p);
            this.#later(len, () => {
              for (const p of pairs) this.#blocked.delete(p);
            });
          });
          break;
        }
        case 6:
          add(t, 'transfer leadership', () => {
            const l = this.#currentLeader();
            if (!l) return;
            const voters = l.core!.membership().voters.filter((x) => x !== l.id);
            if (!voters.length) return;
            const to = this.#pick(voters);
            try {
              l.core!.transferLeadership(to);
              this.#event(`transfer ${l.id} -> ${to}`);
            } catch {
              // not possible right now
            }
          });
          break;
        case 7:
          add(t, 'membership change', () => this.#membershipChange());
          break;
      }
      t += this.opts.faultMix === 'crashes' ? 100 + this.#int(200) : 150 + this.#int(500);
    }
    return at;
  }

  /** Runs `fn` (a heal) after `ms`, at the latest when the active phase ends; see #runDueHeals. */
  #later(ms: number, fn: () => void): void {
    const when = Math.min(this.#now + ms, this.opts.activeMs);
    this.#pendingHeals.push({ at: when, fn });
  }

  #pendingHeals: { at: number; fn: () => void }[] = [];

  #shuffle<T>(xs: T[]): T[] {
    const a = [...xs];
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.#int(i + 1);
      [a[i], a[j]] = [a[j]!, a[i]!];
    }
    return a;
  }

  #others(ids: NodeId[]): NodeId[] {
    return [...this.#nodes.keys()].filter((x) => !ids.includes(x));
  }

  #partitionFor(groups: NodeId[][], len: number): void {
    const pairs: string[] = [];
    for (let i = 0; i < groups.length; i++) {
      for (let j = 0; j < groups.length; j++) {
        if (i === j) continue;
        for (const x of groups[i]!) for (const y of groups[j]!) pairs.push(`${x}>${y}`);
      }
    }
    for (const p of pairs) this.#blocked.add(p);
    this.#later(len, () => {
      for (const p of pairs) this.#blocked.delete(p);
    });
  }

  #crash(id: NodeId, downMs: number): void {
    const n = this.#nodes.get(id);
    if (!n || n.downUntil > this.#now || !n.core) return;
    this.#stats.crashes++;
    // A write in progress may have reached the disk partially (a torn suffix: some entries, no hard state).
    if (n.persisting && this.opts.bug !== 'skipFsync' && n.persisting.rd.entries.length && this.#rand() < 0.5) {
      const k = this.#int(n.persisting.rd.entries.length + 1);
      if (!n.persisting.rd.snapshot) diskWrite(n.durable, null, n.persisting.rd.entries.slice(0, k));
    }
    n.core = null;
    n.persisting = null;
    n.downUntil = Math.min(this.#now + downMs, this.opts.activeMs);
    n.pausedUntil = 0;
    n.inbox = [];
  }

  #pause(id: NodeId, ms: number): void {
    const n = this.#nodes.get(id);
    if (!n || !n.core) return;
    n.pausedUntil = Math.min(this.#now + ms, this.opts.activeMs);
    n.nextTickAt = Math.max(n.nextTickAt, n.pausedUntil);
  }

  #membershipChange(): void {
    const l = this.#currentLeader();
    if (!l) return;
    const m = l.core!.membership();
    const members = [...m.voters, ...m.learners];
    const total = this.#nodes.size;
    try {
      if (m.voters.length > 3 && (this.#rand() < 0.5 || total >= this.opts.nodes + 2)) {
        const victim = this.#pick(m.voters);
        l.core!.proposeConfChange({ op: 'remove', id: victim });
        this.#event(`propose remove ${victim}`);
        this.#stats.membershipChanges++;
      } else if (total < this.opts.nodes + 2 && members.length < 7) {
        const id = `n${this.#nextNodeNum}`;
        l.core!.proposeConfChange({ op: 'addLearner', id, addr: `${id}:1` });
        this.#nextNodeNum++;
        this.#addNode(id, { hardState: null, entries: [], snapshot: null });
        this.#event(`propose add ${id}`);
        this.#stats.membershipChanges++;
      }
    } catch (err) {
      if (!(err instanceof SiderError)) throw err;
    }
  }

  #healAll(): void {
    this.#blocked.clear();
    for (const h of this.#pendingHeals) h.fn();
    this.#pendingHeals = [];
    for (const n of this.#nodes.values()) {
      if (n.pausedUntil > this.#now) n.pausedUntil = this.#now;
    }
    this.#event('heal all');
  }

  #currentLeader(): SimNode | undefined {
    let best: SimNode | undefined;
    let bestTerm = -1;
    for (const n of this.#nodes.values()) {
      if (!n.core || n.downUntil > this.#now) continue;
      const st = n.core.status();
      if (st.role === 'leader' && st.term > bestTerm) {
        best = n;
        bestTerm = st.term;
      }
    }
    return best;
  }

  // ---- final checks -------------------------------------------------------------------------------

  #finalChecks(): void {
    const leader = this.#currentLeader();
    if (!leader) {
      this.#fail('no leader after the faults healed and the cluster settled');
      return;
    }
    const members = leader.core!.membership();
    const commit = leader.core!.status().commit;
    const digest = leader.sm.digest();
    for (const id of [...members.voters, ...members.learners]) {
      const n = this.#nodes.get(id);
      if (!n?.core) {
        this.#fail(`member ${id} not running at the end`);
        return;
      }
      if (n.sm.appliedIndex < commit) {
        this.#fail(`member ${id} applied ${n.sm.appliedIndex} < leader commit ${commit} after settling`);
        return;
      }
      if (n.sm.digest() !== digest) {
        this.#fail(`member ${id} state differs from the leader's at the same index`);
        return;
      }
    }
    for (const a of this.#ackedAppends) {
      if (a.key === 'k0') continue;
      if (!leader.sm.get(a.key).includes(a.value)) {
        this.#fail(`acknowledged append ${a.value} to ${a.key} is missing`);
        return;
      }
    }
    const res = checkLinearizable(kvModel, this.#history, { timeoutMs: 20_000 });
    if (res.ok === false) this.#fail(`history not linearizable (key partition ${res.partition}): ${res.witness}`);
    else if (res.ok === 'unknown') this.#fail('linearizability check ran out of time');
  }

  /** Called once per simulated millisecond before faults: runs scheduled heals that are due. */
  #runDueHeals(): void {
    const due = this.#pendingHeals.filter((h) => h.at <= this.#now);
    if (!due.length) return;
    this.#pendingHeals = this.#pendingHeals.filter((h) => h.at > this.#now);
    for (const h of due) h.fn();
  }
}

export function runSim(opts: SimOptions): SimResult {
  const sim = new SimCluster(opts);
  return sim.run();
}
