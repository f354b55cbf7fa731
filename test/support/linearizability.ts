// Porcupine-style linearizability checker for client histories recorded by the simulation and
// fault-injection tests: Wing & Gong's search with Lowe's memo, run per partition of the history.

/**
 * One client operation as observed from outside the system.
 *
 * `call` and `ret` are logical times on one clock shared by every client (ticks, or better a
 * counter bumped at every recorded event). `ret = Infinity` means the outcome is unknown (the
 * request timed out or the client crashed): the operation may have taken effect at any instant
 * after `call`, or never, and its `output` is ignored.
 */
export interface Operation<I, O> {
  client: number;
  input: I;
  call: number;
  ret: number;
  output: O;
}

/**
 * A sequential specification of the object under test.
 *
 * - `step` applies `input` to `state` and says whether `output` is what the sequential object
 *   would have answered. It must not mutate `state` (the search backtracks to old states).
 * - `stepUnknown` applies an operation whose outcome is unknown (`ret = Infinity`): its effect
 *   on the state, whatever it answered. If absent, the checker calls `step` with the recorded
 *   (meaningless) output and keeps the returned state, ignoring `ok`; a model that relies on this
 *   must therefore return the effect of `input` from `step` even when it returns `ok: false`.
 * - `partition` splits a history into independent sub-histories (P-compositionality: for objects
 *   such as a key-value map, the history is linearizable iff each key's sub-history is). It may
 *   also rewrite a sub-history into one with the same verdict that is cheaper to search, such as
 *   dropping unknown-outcome operations that nothing could have observed.
 * - `readOnly` says that an input never changes any state (a read). The search linearizes such
 *   an operation as soon as it fits, without trying alternatives, which is what keeps it from
 *   wandering down wrong orders that the next read would refute. Optional: without it every
 *   operation is treated as a possible write, which is always correct, only slower.
 * - `hash` must be equal exactly for states that behave the same: it keys the memo, and two
 *   different states with one hash would wrongly prune the search. Witnesses print it.
 * - `describe` formats one operation for a failure witness.
 */
export interface Model<S, I, O> {
  init(): S;
  step(state: S, input: I, output: O): { ok: boolean; state: S };
  stepUnknown?(state: S, input: I): S;
  readOnly?(input: I): boolean;
  partition?(history: Operation<I, O>[]): Operation<I, O>[][];
  hash(state: S): string;
  describe?(input: I, output: O): string;
}

export interface CheckOptions {
  /** Budget for the whole check; when it runs out the verdict is `{ ok: 'unknown' }`. */
  timeoutMs?: number;
}

/**
 * `partition` is the index, in the array `model.partition` returned (0 without one), of the first
 * sub-history found not to be linearizable; `witness` explains it for a person.
 */
export type CheckResult =
  | { ok: true }
  | { ok: false; partition: number; witness: string }
  | { ok: 'unknown' };

/**
 * Decides whether `history` is linearizable with respect to `model`.
 *
 * Tie rule: at equal times, calls are ordered before returns, so an operation that starts at the
 * very instant another one returns counts as concurrent with it. Equal logical times mean the
 * recorder could not tell the order, and treating such operations as overlapping only ever admits
 * more linearizations: every `ok: false` verdict is a real violation however the instant is
 * resolved. The price is that a violation hidden inside one instant is missed, so recorders that
 * want full precision should stamp events with a strictly increasing counter rather than ticks.
 *
 * Unknown outcomes (`ret = Infinity`) have a call event and no return event: at any point after
 * their call the search may apply them (via `stepUnknown`) or leave them out, and any left
 * unapplied when every completed operation is linearized are taken never to have happened. The
 * search tries completed operations before unknown ones, and never bothers with an unknown one
 * that would leave the state as it is.
 *
 * Cost: each partition is searched depth first over (linearized set, state) with a memo, so
 * histories whose concurrent operations the reads quickly put in order check in milliseconds
 * per thousand operations (with `readOnly`, and with `partition` settling what it can about
 * unknown outcomes, as `kvModel` does). The expensive case is many concurrent writes whose
 * order no read settles until much later, above all appends from many clients to one key:
 * `timeoutMs` bounds it, and spreading such a workload over keys or fewer clients keeps it
 * cheap.
 */
export function checkLinearizable<S, I, O>(
  model: Model<S, I, O>,
  history: Operation<I, O>[],
  opts: CheckOptions = {},
): CheckResult {
  const { timeoutMs } = opts;
  if (timeoutMs !== undefined && !(timeoutMs >= 0)) {
    throw new RangeError(`timeoutMs must be a non-negative number, got ${timeoutMs}`);
  }
  history.forEach(validateOperation);
  const deadline = timeoutMs === undefined ? Infinity : performance.now() + timeoutMs;
  const partitions = model.partition ? model.partition(history) : [history];
  for (const [index, ops] of partitions.entries()) {
    const verdict = checkPartition(model, ops, deadline);
    if (verdict === 'unknown') return { ok: 'unknown' };
    if (verdict !== true) {
      return { ok: false, partition: index, witness: `partition ${index}: ${verdict}` };
    }
  }
  return { ok: true };
}

function validateOperation(op: Operation<unknown, unknown>, index: number): void {
  if (!Number.isFinite(op.call)) {
    throw new RangeError(`history[${index}].call must be a finite number, got ${op.call}`);
  }
  if (!(op.ret >= op.call)) {
    throw new RangeError(`history[${index}].ret (${op.ret}) must be >= call (${op.call})`);
  }
}

// Node 0 and node 1 are the sentinels of two circular doubly linked lists: the call and return
// events of completed operations, and the call events of unknown-outcome operations. Lifting an
// operation unlinks its events; backtracking relinks them in reverse order (dancing links).
const HEAD_KNOWN = 0;
const HEAD_UNKNOWN = 1;
// How many search steps run between two looks at the clock.
const CLOCK_EVERY = 1024;

interface Event {
  time: number;
  isCall: boolean;
  op: number;
}

/** Returns true, 'unknown' on timeout, or the witness text of a violation. */
function checkPartition<S, I, O>(
  model: Model<S, I, O>,
  ops: Operation<I, O>[],
  deadline: number,
): true | 'unknown' | string {
  const n = ops.length;
  const unknown = ops.map((op) => op.ret === Infinity);
  let remainingKnown = unknown.filter((u) => !u).length;
  if (remainingKnown === 0) return true;

  const events: Event[] = [];
  ops.forEach((op, i) => {
    events.push({ time: op.call, isCall: true, op: i });
    if (!unknown[i]) events.push({ time: op.ret, isCall: false, op: i });
  });
  events.sort(
    (a, b) => a.time - b.time || (a.isCall === b.isCall ? a.op - b.op : a.isCall ? -1 : 1),
  );

  // Per node (2 + index in `events`): links, operation, position in time order, and for the
  // call of a completed operation the node of its return.
  const size = events.length + 2;
  const next = new Int32Array(size);
  const prev = new Int32Array(size);
  const opOf = new Int32Array(size);
  const pos = new Int32Array(size);
  const isCall = new Uint8Array(size);
  const partner = new Int32Array(size);
  const callNode = new Int32Array(n);
  const tail = [HEAD_KNOWN, HEAD_UNKNOWN];
  events.forEach((e, index) => {
    const node = index + 2;
    const list = unknown[e.op] ? HEAD_UNKNOWN : HEAD_KNOWN;
    const last = tail[list]!;
    next[last] = node;
    prev[node] = last;
    tail[list] = node;
    opOf[node] = e.op;
    pos[node] = index;
    isCall[node] = e.isCall ? 1 : 0;
    if (e.isCall) callNode[e.op] = node;
    else partner[callNode[e.op]!] = node;
  });
  for (const head of [HEAD_KNOWN, HEAD_UNKNOWN]) {
    next[tail[head]!] = head;
    prev[head] = tail[head]!;
  }
  const unlink = (node: number): void => {
    next[prev[node]!] = next[node]!;
    prev[next[node]!] = prev[node]!;
  };
  const relink = (node: number): void => {
    next[prev[node]!] = node;
    prev[next[node]!] = node;
  };

  // The memo: nodes of the search already entered, as (linearized completed operations, state)
  // plus the sets of unknown-outcome operations applied on the way there. A node is pruned if
  // an entered node had the same completed set and state and applied a subset of its unknown
  // operations: those are optional, so every way forward from the pruned node is open to the
  // entered one too (this also holds when the entered node is still on the stack, by induction
  // on how many unknown operations precede the next completed one on a way forward). Comparing
  // subsets rather than equal sets is what keeps timed-out writes, which may be applied anywhere
  // or nowhere, from multiplying the search.
  // The completed set is fingerprinted by XOR-ing two fixed 32-bit values per member (Zobrist
  // hashing, so adding or removing one costs O(1)); entries keep the full bitset to rule out
  // fingerprint collisions, which would otherwise prune a branch that was never explored.
  const slot = new Int32Array(n);
  let knownSlots = 0;
  let unknownSlots = 0;
  for (let i = 0; i < n; i++) slot[i] = unknown[i] ? unknownSlots++ : knownSlots++;
  const knownBits = new Uint32Array(Math.ceil(knownSlots / 32));
  const unknownBits = new Uint32Array(Math.ceil(unknownSlots / 32));
  const zobristA = new Uint32Array(knownSlots);
  const zobristB = new Uint32Array(knownSlots);
  for (let k = 0; k < knownSlots; k++) {
    zobristA[k] = fmix32(2 * k + 1);
    zobristB[k] = fmix32((2 * k + 2) ^ 0x5bd1e995);
  }
  let fingerA = 0;
  let fingerB = 0;
  const toggle = (op: number): void => {
    const k = slot[op]!;
    if (unknown[op]) {
      unknownBits[k >>> 5]! ^= 1 << (k & 31);
    } else {
      knownBits[k >>> 5]! ^= 1 << (k & 31);
      fingerA ^= zobristA[k]!;
      fingerB ^= zobristB[k]!;
    }
  };
  const memo = new Map<string, MemoEntry[]>();
  // States are numbered so memo keys stay short even when a state's hash is long (a value
  // grown by thousands of appends).
  const stateIds = new Map<string, number>();
  const enter = (stateHash: string): boolean => {
    let id = stateIds.get(stateHash);
    if (id === undefined) {
      id = stateIds.size;
      stateIds.set(stateHash, id);
    }
    const key = `${fingerA}:${fingerB}:${id}`;
    let entries = memo.get(key);
    if (entries === undefined) {
      entries = [];
      memo.set(key, entries);
    }
    const entry = entries.find((e) => sameBits(e.known, knownBits));
    if (entry === undefined) {
      entries.push({ known: knownBits.slice(), unknownSets: [unknownBits.slice()] });
      return true;
    }
    if (entry.unknownSets.some((u) => isSubset(u, unknownBits))) return false;
    // Sets that include this one are now redundant: this one prunes everything they would.
    entry.unknownSets = entry.unknownSets.filter((u) => !isSubset(unknownBits, u));
    entry.unknownSets.push(unknownBits.slice());
    return true;
  };

  const applyUnknown = (state: S, op: Operation<I, O>): S =>
    model.stepUnknown
      ? model.stepUnknown(state, op.input)
      : model.step(state, op.input, op.output).state;

  // Search stack, one level per linearized operation: its call node, the state and state hash
  // before it, whether it was forced (see below), and where the scan of the parent's candidates
  // stood: the next call in the known list, or the parent's list of unknown-outcome children
  // and how many of them have been tried.
  const stackNode: number[] = [];
  const stackState: S[] = [];
  const stackHash: string[] = [];
  const stackForced: boolean[] = [];
  const stackCursor: number[] = [];
  const stackPending: (Child<S>[] | null)[] = [];
  const stackPendingIndex: number[] = [];
  const knownTotal = remainingKnown;
  let best: number[] = [];
  let bestKnown = -1;

  let state = model.init();
  let stateHash = model.hash(state);
  let cursor = HEAD_KNOWN;
  let pending: Child<S>[] | null = null;
  let pendingIndex = 0;
  let fresh = true;

  const descend = (candidate: number, after: S, afterHash: string, forced: boolean): void => {
    const i = opOf[candidate]!;
    stackNode.push(candidate);
    stackState.push(state);
    stackHash.push(stateHash);
    stackForced.push(forced);
    stackCursor.push(cursor);
    stackPending.push(pending);
    stackPendingIndex.push(pendingIndex);
    state = after;
    stateHash = afterHash;
    unlink(candidate);
    if (!unknown[i]) {
      unlink(partner[candidate]!);
      remainingKnown--;
      if (knownTotal - remainingKnown > bestKnown) {
        bestKnown = knownTotal - remainingKnown;
        best = stackNode.map((c) => opOf[c]!);
      }
    }
    fresh = true;
  };
  // The current node has failed: undo linearizations up to the closest level that still has
  // candidates to try. Returns false when there is none, i.e. the history is not linearizable.
  const backtrack = (): boolean => {
    for (;;) {
      const undone = stackNode.pop();
      if (undone === undefined) return false;
      const i = opOf[undone]!;
      state = stackState.pop()!;
      stateHash = stackHash.pop()!;
      cursor = stackCursor.pop()!;
      pending = stackPending.pop()!;
      pendingIndex = stackPendingIndex.pop()!;
      if (!unknown[i]) {
        relink(partner[undone]!);
        remainingKnown++;
      }
      relink(undone);
      toggle(i);
      if (!stackForced.pop()!) return true;
    }
  };
  // The children of the current node reached by applying an unknown-outcome operation whose
  // call precedes `limit`, entered in the memo all at once before any is explored. Entering
  // them up front is what lets dominance prune: a child that applies u and then v reaches the
  // node that applies v alone (when v overwrites u's effect), and that node must already be in
  // the memo for the longer path to be cut. Every node entered is explored before the search
  // can fail, so the memo's invariant is kept.
  const unknownChildren = (limit: number): Child<S>[] => {
    const children: Child<S>[] = [];
    for (let u = next[HEAD_UNKNOWN]!; u !== HEAD_UNKNOWN && pos[u]! < limit; u = next[u]!) {
      const i = opOf[u]!;
      const after = applyUnknown(state, ops[i]!);
      const afterHash = model.hash(after);
      // Applying an unknown-outcome operation that changes nothing here gains nothing: every
      // way forward from there is open without it.
      if (afterHash === stateHash) continue;
      toggle(i);
      if (enter(afterHash)) children.push({ node: u, state: after, hash: afterHash });
      toggle(i);
    }
    return children;
  };

  let steps = 0;
  while (remainingKnown > 0) {
    if (steps++ % CLOCK_EVERY === 0 && performance.now() >= deadline) return 'unknown';

    if (fresh) {
      fresh = false;
      cursor = next[HEAD_KNOWN]!;
      pending = null;
      pendingIndex = 0;
      // A completed read-only operation that fits here may be linearized now without trying
      // alternatives: any way forward that places it later still works with it moved here, as
      // it changes no state anywhere and linearizing it only removes a return. (That needs
      // read-only in every state: a write of the current value is not, as it may be needed
      // later to restore that value.) Committing keeps wrong branches from running on past the
      // reads that would refute them.
      let forced = -1;
      for (let c = cursor; c !== HEAD_KNOWN && isCall[c] === 1; c = next[c]!) {
        const op = ops[opOf[c]!]!;
        if (model.readOnly?.(op.input) !== true) continue;
        const r = model.step(state, op.input, op.output);
        if (r.ok && model.hash(r.state) === stateHash) {
          forced = c;
          break;
        }
      }
      if (forced !== -1) {
        const i = opOf[forced]!;
        toggle(i);
        if (enter(stateHash)) {
          descend(forced, state, stateHash, true);
          continue;
        }
        toggle(i);
        if (!backtrack()) return witness(model, ops, events, best);
        continue;
      }
    }

    // Candidates are the pending calls that precede the first pending return: first those of
    // completed operations, in call order, then those of unknown-outcome operations.
    if (pending === null) {
      if (cursor !== HEAD_KNOWN && isCall[cursor] === 1) {
        const candidate = cursor;
        cursor = next[candidate]!;
        const i = opOf[candidate]!;
        const op = ops[i]!;
        const r = model.step(state, op.input, op.output);
        if (!r.ok) continue;
        const afterHash = model.hash(r.state);
        toggle(i);
        if (enter(afterHash)) descend(candidate, r.state, afterHash, false);
        else toggle(i);
        continue;
      }
      pending = unknownChildren(cursor === HEAD_KNOWN ? Number.MAX_SAFE_INTEGER : pos[cursor]!);
    }
    const child = pending[pendingIndex++];
    if (child !== undefined) {
      toggle(opOf[child.node]!);
      descend(child.node, child.state, child.hash, false);
      continue;
    }
    if (!backtrack()) return witness(model, ops, events, best);
  }
  return true;
}

/** A child of a search node, already entered in the memo and waiting to be explored. */
interface Child<S> {
  node: number;
  state: S;
  hash: string;
}

interface MemoEntry {
  known: Uint32Array;
  unknownSets: Uint32Array[];
}

function sameBits(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function isSubset(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if ((a[i]! & ~b[i]!) !== 0) return false;
  return true;
}

// MurmurHash3's finalizer: spreads consecutive integers into unrelated 32-bit values, so the
// fingerprints are deterministic without a random generator.
function fmix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Explains a failed partition: the longest prefix of completed operations the search managed to
 * linearize, the state it leads to, and why none of the operations that could come next fits.
 */
function witness<S, I, O>(
  model: Model<S, I, O>,
  ops: Operation<I, O>[],
  events: Event[],
  prefix: number[],
): string {
  const show = (i: number): string => {
    const op = ops[i]!;
    const what = model.describe
      ? model.describe(op.input, op.output)
      : `${JSON.stringify(op.input)} -> ${JSON.stringify(op.output)}`;
    const ret = op.ret === Infinity ? 'unknown outcome' : `ret ${op.ret}`;
    return `client ${op.client}: ${what} [call ${op.call}, ${ret}]`;
  };
  let state = model.init();
  for (const i of prefix) {
    const op = ops[i]!;
    state =
      op.ret === Infinity
        ? model.stepUnknown
          ? model.stepUnknown(state, op.input)
          : model.step(state, op.input, op.output).state
        : model.step(state, op.input, op.output).state;
  }
  const done = new Set(prefix);
  const candidates: number[] = [];
  let deadlineOp = -1;
  for (const e of events) {
    if (done.has(e.op)) continue;
    if (!e.isCall) {
      deadlineOp = e.op;
      break;
    }
    candidates.push(e.op);
  }
  const lines = [`not linearizable (${ops.length} operations)`];
  lines.push(`longest linearizable prefix (${prefix.length} operations):`);
  for (const i of prefix) lines.push(`  ${show(i)}`);
  lines.push(`state after the prefix (its hash): ${JSON.stringify(model.hash(state))}`);
  if (deadlineOp !== -1) {
    lines.push(`${show(deadlineOp)} must take effect before it returns, yet no next step fits:`);
  }
  for (const i of candidates) {
    const op = ops[i]!;
    const fits = op.ret === Infinity || model.step(state, op.input, op.output).ok;
    const why = fits ? 'fits here, but every continuation fails' : 'rejected by the model here';
    lines.push(`  ${show(i)}: ${why}`);
  }
  return lines.join('\n');
}

/** Input of the key-value model; `value` is ignored by `get`. */
export interface KvInput {
  op: 'get' | 'put' | 'append';
  key: string;
  value: string;
}

/** `{ value }` for `get` (empty string for a missing key), `{}` for `put` and `append`. */
export interface KvOutput {
  value?: string;
}

export type KvOperation = Operation<KvInput, KvOutput>;

/**
 * A map of string keys to string values, partitioned by key (partitions come in the order of
 * each key's first operation in the history), so the state is one key's value ('' when
 * missing). `partition` also settles what it can about unknown-outcome operations before the
 * search (see `settleUnknown`), because each one left open multiplies the search. Put distinct
 * values (client and sequence number) so that reads say which write they saw.
 */
export const kvModel: Model<string, KvInput, KvOutput> = {
  init: () => '',
  step(state, input, output) {
    switch (input.op) {
      case 'get':
        return { ok: output.value === state, state };
      case 'put':
        return { ok: true, state: input.value };
      case 'append':
        return { ok: true, state: state + input.value };
    }
  },
  stepUnknown(state, input) {
    switch (input.op) {
      case 'get':
        return state;
      case 'put':
        return input.value;
      case 'append':
        return state + input.value;
    }
  },
  partition(history) {
    const byKey = new Map<string, KvOperation[]>();
    for (const op of history) {
      const ops = byKey.get(op.input.key);
      if (ops === undefined) byKey.set(op.input.key, [op]);
      else ops.push(op);
    }
    return [...byKey.values()].map(settleUnknown);
  },
  readOnly: (input) => input.op === 'get',
  hash: (state) => state,
  describe(input, output) {
    const key = JSON.stringify(input.key);
    if (input.op === 'get') return `get(${key}) -> ${JSON.stringify(output.value)}`;
    return `${input.op}(${key}, ${JSON.stringify(input.value)})`;
  },
};

/**
 * Rewrites one key's history into an equivalent one (linearizable exactly when the original
 * is) with fewer unknown outcomes, as etcd's robustness tests do before running Porcupine:
 *
 * - A `get` with unknown outcome is dropped: it changed nothing and observed nothing.
 * - A `put(v)` or `append(v)` with unknown outcome that no read could have observed is dropped.
 *   Once applied, the value starts with v (put) or contains v (append) until the next put, so
 *   if no completed read returning at or after its call saw such a value, no read ran in that
 *   stretch and leaving the write out changes no read.
 * - A `put(v)` with unknown outcome that a read observed is given that read's return as its
 *   own, when nothing else could have produced v: it is the only write of v, v is not '' (the
 *   initial value) and the key has no appends. It must then have taken effect by then (a
 *   witness shows that return).
 */
function settleUnknown(ops: KvOperation[]): KvOperation[] {
  const reads = ops.filter((op) => op.input.op === 'get' && op.ret !== Infinity);
  const hasAppends = ops.some((op) => op.input.op === 'append');
  const writers = new Map<string, number>();
  for (const { input } of ops) {
    if (input.op === 'put') writers.set(input.value, (writers.get(input.value) ?? 0) + 1);
  }
  const settled: KvOperation[] = [];
  for (const op of ops) {
    if (op.ret !== Infinity) {
      settled.push(op);
      continue;
    }
    const { op: kind, value } = op.input;
    if (kind === 'get') continue;
    const after = reads.filter((r) => r.ret >= op.call);
    const mayHaveSeen = (r: KvOperation): boolean => {
      const read = r.output.value ?? '';
      return kind === 'put' ? read.startsWith(value) : read.includes(value);
    };
    if (!after.some(mayHaveSeen)) continue;
    let ret = Infinity;
    if (kind === 'put' && !hasAppends && value !== '' && writers.get(value) === 1) {
      for (const r of after) if (r.output.value === value && r.ret < ret) ret = r.ret;
    }
    settled.push(ret === Infinity ? op : { ...op, ret });
  }
  return settled;
}
