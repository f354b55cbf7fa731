// A tiny synchronous in-process network for RaftCore instances (unit and scenario tests; the seeded
// whole-cluster simulator lives in test/sim/): in-memory persistence of each Ready, drop/hold rules, a readable trace.

import { RaftCore } from '../../raft/core.ts';
import type { CoreConfig, CoreInit } from '../../raft/core.ts';
import { encodeConfChange } from '../../raft/codec.ts';
import type {
  ConfChange,
  Entry,
  EntryType,
  HardState,
  Message,
  MessageType,
  NodeId,
  ReadState,
  Ready,
  Snapshot,
} from '../../raft/types.ts';

import { mulberry32 } from './random.ts';

export { mulberry32 };

/** The `code` of what `fn` throws, 'no error' when it does not throw. */
export function errorCode(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
  return 'no error';
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function addrOf(id: NodeId): string {
  return `${id}.test:7001`;
}

export function confEntry(index: number, term: number, cc: ConfChange): Entry {
  return { index, term, type: 'conf', data: encodeConfChange(cc), rid: '' };
}

export function dataEntry(index: number, term: number, s: string): Entry {
  return { index, term, type: 'normal', data: enc.encode(s), rid: '' };
}

/** bootstrap(voters[0]), then addLearner+promote for every other voter, then addLearner for learners; all term 1. */
export function initialLog(voters: NodeId[], learners: NodeId[] = []): Entry[] {
  const out: Entry[] = [];
  const push = (cc: ConfChange): void => {
    out.push(confEntry(out.length + 1, 1, cc));
  };
  push({ op: 'bootstrap', id: voters[0]!, addr: addrOf(voters[0]!) });
  for (const id of voters.slice(1)) {
    push({ op: 'addLearner', id, addr: addrOf(id) });
    push({ op: 'promote', id });
  }
  for (const id of learners) push({ op: 'addLearner', id, addr: addrOf(id) });
  return out;
}

/** One applied entry as the in-memory state machine records it. */
export interface Applied {
  index: number;
  term: number;
  type: EntryType;
  data: string;
}

/** What one node has "on disk" and what its state machine and client side have seen. */
export interface NodeStore {
  hardState: HardState | null;
  snapshot: Snapshot | null;
  /** Stored log entries (may include trailing entries at or below the snapshot's index). */
  entries: Entry[];
  /** The state machine: every applied entry, in order (restored from snapshots). */
  applied: Applied[];
  appliedIndex: number;
  readStates: ReadState[];
  droppedReads: number[];
}

export type Verdict = 'deliver' | 'drop' | 'hold';
/** Returns a verdict for messages it cares about, undefined otherwise; the first verdict wins. */
export type Rule = (m: Message) => Verdict | undefined;

export interface HarnessOptions {
  seed?: number;
  cfg?: Partial<Omit<CoreConfig, 'id' | 'random'>>;
  /**
   * Like the real driver, which receives messages while a Ready is being persisted: a message for
   * a node that has a Ready pending is stepped between that `ready()` and its `advance()`.
   */
  interleave?: boolean;
  /**
   * With `interleave`, like the driver that applies what a message commits, and takes the reads
   * it confirms, during the write (`takeCommitted()` and `takeReadStates()` between `ready()` and
   * `advance()`): the taken entries are applied after the Ready's own committed ones, the taken
   * reads recorded after its own. `takenBetween` and `readsBetween` count them.
   */
  applyBetween?: boolean;
}

function encodeState(applied: Applied[]): Uint8Array {
  return enc.encode(JSON.stringify(applied));
}

function decodeState(data: Uint8Array): Applied[] {
  return JSON.parse(dec.decode(data)) as Applied[];
}

export function formatMessage(m: Message): string {
  const head = `${m.from} -> ${m.to} ${m.type} term=${m.term}`;
  switch (m.type) {
    case 'app':
      return `${head} prev=${m.index}/${m.logTerm} ents=${m.entries.length} commit=${m.commit}`;
    case 'appResp':
      return m.reject
        ? `${head} reject index=${m.index} hint=${m.hint}/${m.hintTerm}`
        : `${head} index=${m.index}`;
    case 'heartbeat':
      return `${head} commit=${m.commit} ctx=${m.ctx}`;
    case 'heartbeatResp':
      return `${head} ctx=${m.ctx}`;
    case 'preVote':
    case 'vote':
      return `${head} last=${m.index}/${m.logTerm}${m.ctx === 1 ? ' transfer' : ''}`;
    case 'preVoteResp':
    case 'voteResp':
      return `${head} ${m.reject ? 'rejected' : 'granted'}`;
    case 'snap':
      return `${head} snap=${m.snapshot?.meta.index ?? 0}/${m.snapshot?.meta.term ?? 0}`;
    case 'timeoutNow':
      return head;
    case 'readIndex':
      return `${head} ctx=${m.ctx}`;
    case 'readIndexResp':
      return `${head} ctx=${m.ctx} index=${m.index}${m.reject ? ' rejected' : ''}`;
  }
}

export class CoreHarness {
  readonly nodes = new Map<NodeId, RaftCore>();
  readonly stores = new Map<NodeId, NodeStore>();
  readonly trace: string[] = [];
  /** Every message taken from a Ready, in order, whether delivered, dropped or held. */
  readonly sent: Message[] = [];
  /** Messages a `hold` rule kept back; `release()` delivers them later. */
  held: Message[] = [];
  #queue: Message[] = [];
  #rules: Rule[] = [];
  #cfg: Partial<Omit<CoreConfig, 'id' | 'random'>>;
  #seed: number;
  #interleave: boolean;
  #applyBetween: boolean;
  /** Entries applied through `takeCommitted()` during a write (`applyBetween`). */
  takenBetween = 0;
  /** Read states taken through `takeReadStates()` during a write (`applyBetween`). */
  readsBetween = 0;
  #nodeSeq = 0;
  #leaderOfTerm = new Map<number, NodeId>();
  /** Index → "term/type/data" of every entry any node applied: state machine safety. */
  #appliedAt = new Map<number, string>();

  constructor(opts: HarnessOptions = {}) {
    this.#seed = opts.seed ?? 1;
    this.#interleave = opts.interleave ?? false;
    this.#applyBetween = opts.applyBetween ?? false;
    this.#cfg = { electionTicks: 10, heartbeatTicks: 1, ...opts.cfg };
  }

  /** Every voter starts from the shared initial log (bootstrap + addLearner/promote), committed at term 1. */
  static cluster(voters: NodeId[], opts: HarnessOptions & { learners?: NodeId[] } = {}): CoreHarness {
    const h = new CoreHarness(opts);
    const log = initialLog(voters, opts.learners ?? []);
    const hs: HardState = { term: 1, vote: '', commit: log.length };
    for (const id of [...voters, ...(opts.learners ?? [])]) {
      h.addNode(id, { hardState: { ...hs }, snapshot: null, entries: log.map((e) => ({ ...e })) });
    }
    return h;
  }

  /** `id` alone, with the bootstrap entry at index 1 term 1 committed; grow it with `join`. */
  static single(id: NodeId, opts: HarnessOptions = {}): CoreHarness {
    const h = new CoreHarness(opts);
    h.addNode(id, {
      hardState: { term: 1, vote: '', commit: 1 },
      snapshot: null,
      entries: [confEntry(1, 1, { op: 'bootstrap', id, addr: addrOf(id) })],
    });
    return h;
  }

  config(id: NodeId): CoreConfig {
    return { ...this.#cfg, id, random: mulberry32(this.#seed * 7919 + ++this.#nodeSeq) };
  }

  /** Adds a node from a given disk state (empty when omitted: a brand-new node waiting to be added). */
  addNode(id: NodeId, init: CoreInit = { hardState: null, snapshot: null, entries: [] }, cfg: Partial<CoreConfig> = {}): RaftCore {
    const core = new RaftCore({ ...this.config(id), ...cfg }, init);
    this.nodes.set(id, core);
    const snap = init.snapshot ? { meta: init.snapshot, data: encodeState([]) } : null;
    this.stores.set(id, {
      hardState: init.hardState,
      snapshot: snap,
      entries: [...init.entries],
      applied: [],
      appliedIndex: init.snapshot?.index ?? 0,
      readStates: [],
      droppedReads: [],
    });
    return core;
  }

  core(id: NodeId): RaftCore {
    const c = this.nodes.get(id);
    if (!c) throw new Error(`no live node ${id}`);
    return c;
  }

  store(id: NodeId): NodeStore {
    return this.stores.get(id)!;
  }

  // ---- network rules ----------------------------------------------------------------------------

  /** Adds a rule; returns a function that removes it. */
  rule(r: Rule): () => void {
    this.#rules.push(r);
    return () => {
      this.#rules = this.#rules.filter((x) => x !== r);
    };
  }

  /** Drops every message to or from `id`. */
  isolate(id: NodeId): () => void {
    return this.rule((m) => (m.from === id || m.to === id ? 'drop' : undefined));
  }

  /** Drops messages between the two groups (both directions). */
  partition(a: NodeId[], b: NodeId[]): () => void {
    return this.rule((m) =>
      (a.includes(m.from) && b.includes(m.to)) || (b.includes(m.from) && a.includes(m.to)) ? 'drop' : undefined,
    );
  }

  /** Drops messages of `types` from `from` to `to` ('*' for any node). */
  drop(types: MessageType[], from: NodeId | '*' = '*', to: NodeId | '*' = '*'): () => void {
    return this.rule((m) => (matches(m, types, from, to) ? 'drop' : undefined));
  }

  /** Holds messages of `types` from `from` to `to` until `release()`. */
  hold(types: MessageType[], from: NodeId | '*' = '*', to: NodeId | '*' = '*'): () => void {
    return this.rule((m) => (matches(m, types, from, to) ? 'hold' : undefined));
  }

  heal(): void {
    this.#rules = [];
  }

  /** Queues held messages (those matching `pred`, all by default) for delivery, optionally reversed. */
  release(pred: (m: Message) => boolean = () => true, opts: { reverse?: boolean } = {}): Message[] {
    const out: Message[] = [];
    const keep: Message[] = [];
    for (const m of this.held) (pred(m) ? out : keep).push(m);
    this.held = keep;
    if (opts.reverse) out.reverse();
    for (const m of out) {
      this.trace.push(`${formatMessage(m)} (late)`);
      this.#queue.push(m);
    }
    return out;
  }

  /** Queues a hand-made message (e.g. a replayed stale one) for the next delivery round. */
  inject(m: Message): void {
    this.trace.push(`${formatMessage(m)} (injected)`);
    this.#queue.push(m);
  }

  #route(msg: Message): void {
    let m = msg;
    if (m.type === 'snap' && m.snapshot) {
      // The sender's driver fills the data from its snapshot store when it sends.
      const src = this.store(m.from).snapshot;
      if (!src || src.meta.index !== m.snapshot.meta.index) throw new Error(`${m.from} has no snapshot ${m.snapshot.meta.index}`);
      m = { ...m, snapshot: { meta: m.snapshot.meta, data: src.data } };
    }
    this.sent.push(m);
    let verdict: Verdict = 'deliver';
    for (const r of this.#rules) {
      const v = r(m);
      if (v) {
        verdict = v;
        break;
      }
    }
    if (verdict === 'deliver') {
      this.trace.push(formatMessage(m));
      this.#queue.push(m);
    } else if (verdict === 'drop') {
      this.trace.push(`${formatMessage(m)} (dropped)`);
    } else {
      this.trace.push(`${formatMessage(m)} (held)`);
      this.held.push(m);
    }
  }

  // ---- driving ----------------------------------------------------------------------------------

  /** Runs Ready/advance on every node and delivers messages until nothing moves. */
  deliverAll(maxRounds = 10_000): void {
    for (let round = 0; ; round++) {
      if (round > maxRounds) throw new Error(`cluster not quiescent after ${maxRounds} rounds`);
      let busy = false;
      for (const id of this.nodes.keys()) while (this.#process(id)) busy = true;
      if (this.#queue.length === 0) {
        if (!busy) return;
        continue;
      }
      const batch = this.#queue;
      this.#queue = [];
      for (const m of batch) this.#deliver(m);
    }
  }

  /** Ticks `id` n times, delivering after each tick. */
  tick(id: NodeId, n = 1): void {
    for (let i = 0; i < n; i++) {
      this.core(id).tick();
      this.deliverAll();
    }
  }

  /** Ticks every live node n times, delivering after each round of ticks. */
  tickAll(n = 1): void {
    for (let i = 0; i < n; i++) {
      for (const c of this.nodes.values()) c.tick();
      this.deliverAll();
    }
  }

  /** Ticks only `id` until it leads (other nodes keep quiet, so they grant its pre-vote and vote). */
  elect(id: NodeId, maxTicks = 100): void {
    this.deliverAll();
    for (let i = 0; i < maxTicks; i++) {
      if (this.core(id).status().role === 'leader') {
        this.deliverAll();
        return;
      }
      this.tick(id);
    }
    if (this.core(id).status().role !== 'leader') throw new Error(`${id} did not become leader in ${maxTicks} ticks`);
  }

  /** The live leader with the highest term, or ''. */
  leader(): NodeId {
    let best: NodeId = '';
    let term = -1;
    for (const [id, c] of this.nodes) {
      const s = c.status();
      if (s.role === 'leader' && s.term > term) {
        best = id;
        term = s.term;
      }
    }
    return best;
  }

  propose(id: NodeId, s: string, rid = ''): { index: number; term: number } {
    return this.core(id).propose(enc.encode(s), rid);
  }

  /** Normal entries' data applied by `id`, in order. */
  appliedData(id: NodeId): string[] {
    return this.store(id)
      .applied.filter((a) => a.type === 'normal')
      .map((a) => a.data);
  }

  /** Stops `id`: its queued and future messages are lost; its store survives. */
  crash(id: NodeId): void {
    this.nodes.delete(id);
    this.trace.push(`${id} crashes`);
  }

  /** Starts `id` again from what its store holds (hard state, snapshot, entries). */
  restart(id: NodeId): RaftCore {
    const st = this.store(id);
    const init: CoreInit = {
      hardState: st.hardState ? { ...st.hardState } : null,
      snapshot: st.snapshot?.meta ?? null,
      entries: [...st.entries],
    };
    const core = new RaftCore(this.config(id), init);
    this.nodes.set(id, core);
    st.applied = st.snapshot ? decodeState(st.snapshot.data) : [];
    st.appliedIndex = st.snapshot?.meta.index ?? 0;
    this.trace.push(`${id} restarts term=${init.hardState?.term ?? 0} vote=${init.hardState?.vote ?? ''}`);
    return core;
  }

  /** Takes a snapshot at `id`'s applied index and compacts its log, keeping `keepTrailing` entries. */
  compact(id: NodeId, keepTrailing = 0): number {
    const core = this.core(id);
    const st = this.store(id);
    const index = st.appliedIndex;
    const term =
      st.entries.find((e) => e.index === index)?.term ?? (st.snapshot?.meta.index === index ? st.snapshot.meta.term : 0);
    const meta = { index, term, membership: core.membershipAt(index) };
    st.snapshot = { meta, data: encodeState(st.applied) };
    const through = core.compact(meta, keepTrailing);
    st.entries = st.entries.filter((e) => e.index > through);
    return through;
  }

  // ---- one node's Ready ------------------------------------------------------------------------

  #process(id: NodeId): boolean {
    const core = this.nodes.get(id);
    if (!core || !core.hasReady()) return false;
    this.#persist(id, core, core.ready());
    return true;
  }

  /** Steps 1–5 of the driver contract for one Ready. */
  #persist(id: NodeId, core: RaftCore, rd: Ready, taken: Entry[] = [], takenReads: ReadState[] = []): void {
    const st = this.store(id);
    if (rd.snapshot) {
      const meta = rd.snapshot.meta;
      st.snapshot = rd.snapshot;
      st.entries = [];
      st.applied = decodeState(rd.snapshot.data);
      st.appliedIndex = meta.index;
      for (const a of st.applied) this.#checkApplied(id, a);
      this.trace.push(`${id} installs snapshot ${meta.index}/${meta.term}`);
    }
    if (rd.entries.length) {
      const first = rd.entries[0]!.index;
      st.entries = st.entries.filter((e) => e.index < first);
      st.entries.push(...rd.entries);
    }
    if (rd.hardState) st.hardState = { ...rd.hardState };
    if (rd.softState) {
      const term = st.hardState?.term ?? 0;
      this.trace.push(`${id} is ${rd.softState.role} term=${term}${rd.softState.leader ? ` leader=${rd.softState.leader}` : ''}`);
      if (rd.softState.role === 'leader') {
        const other = this.#leaderOfTerm.get(term);
        if (other !== undefined && other !== id) throw new Error(`two leaders in term ${term}: ${other} and ${id}`);
        this.#leaderOfTerm.set(term, id);
      }
    }
    const snaps: Message[] = [];
    for (const m of rd.messages) {
      this.#route(m);
      if (m.type === 'snap') snaps.push(this.sent.at(-1)!);
    }
    for (const e of [...rd.committed, ...taken]) {
      if (e.index !== st.appliedIndex + 1) throw new Error(`${id} applies ${e.index} after ${st.appliedIndex}`);
      const a: Applied = { index: e.index, term: e.term, type: e.type, data: e.type === 'normal' ? dec.decode(e.data) : '' };
      this.#checkApplied(id, a);
      st.applied.push(a);
      st.appliedIndex = e.index;
    }
    st.readStates.push(...rd.readStates, ...takenReads);
    st.droppedReads.push(...rd.droppedReads);
    core.advance(rd);
    // A snapshot that never left (dropped, or the receiver is down) is reported failed, as a transport would.
    for (const m of snaps) {
      if (!this.#queue.includes(m) && !this.held.includes(m)) core.reportSnapshot(m.to, false);
    }
  }

  #checkApplied(id: NodeId, a: Applied): void {
    const key = `${a.term}/${a.type}/${a.data}`;
    const prev = this.#appliedAt.get(a.index);
    if (prev !== undefined && prev !== key) throw new Error(`${id} applied ${key} at ${a.index}, another node ${prev}`);
    this.#appliedAt.set(a.index, key);
  }

  #deliver(m: Message): void {
    const core = this.nodes.get(m.to);
    if (!core) {
      if (m.type === 'snap') this.nodes.get(m.from)?.reportSnapshot(m.to, false);
      return;
    }
    if (this.#interleave && core.hasReady()) {
      // The message arrives while the node's previous Ready is being written.
      const rd = core.ready();
      core.step(m);
      const taken = this.#applyBetween && !rd.snapshot ? core.takeCommitted() : [];
      const reads = this.#applyBetween && !rd.snapshot ? core.takeReadStates() : [];
      this.takenBetween += taken.length;
      this.readsBetween += reads.length;
      this.#persist(m.to, core, rd, taken, reads);
    } else {
      core.step(m);
    }
    if (m.type === 'snap') this.nodes.get(m.from)?.reportSnapshot(m.to, true);
  }
}

function matches(m: Message, types: MessageType[], from: NodeId | '*', to: NodeId | '*'): boolean {
  return (types.length === 0 || types.includes(m.type)) && (from === '*' || m.from === from) && (to === '*' || m.to === to);
}
