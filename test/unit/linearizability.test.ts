// Tests of the linearizability checker the simulation suites rely on: hand-written histories with
// known verdicts, properties over generated histories, and a moderately large simulated history.

import t from 'tap';
import fc from 'fast-check';
import { checkLinearizable, kvModel } from '../support/linearizability.ts';
import { mulberry32 } from '../support/random.ts';
import type { KvInput, KvOperation, KvOutput, Model } from '../support/linearizability.ts';

function get(client: number, key: string, value: string, call: number, ret: number): KvOperation {
  return { client, input: { op: 'get', key, value: '' }, call, ret, output: { value } };
}
function put(client: number, key: string, value: string, call: number, ret: number): KvOperation {
  return { client, input: { op: 'put', key, value }, call, ret, output: {} };
}
function append(
  client: number,
  key: string,
  value: string,
  call: number,
  ret: number,
): KvOperation {
  return { client, input: { op: 'append', key, value }, call, ret, output: {} };
}

t.test('a sequential history is linearizable', async (t) => {
  const history = [
    put(0, 'x', '1', 0, 1),
    get(1, 'x', '1', 2, 3),
    append(0, 'x', '2', 4, 5),
    get(1, 'x', '12', 6, 7),
    get(2, 'y', '', 8, 9),
  ];
  t.same(checkLinearizable(kvModel, history), { ok: true });
});

t.test('overlapping put and get are linearizable whichever value the get saw', async (t) => {
  for (const seen of ['', '1']) {
    const history = [put(0, 'x', '1', 0, 10), get(1, 'x', seen, 2, 5)];
    t.same(checkLinearizable(kvModel, history), { ok: true }, `get saw ${JSON.stringify(seen)}`);
  }
});

t.test('an unknown-outcome put that a later read observes is linearizable', async (t) => {
  const history = [put(0, 'x', '1', 0, 1), put(1, 'x', '2', 2, Infinity), get(2, 'x', '2', 10, 11)];
  t.same(checkLinearizable(kvModel, history), { ok: true });
});

t.test('an unknown-outcome put that nobody observes is linearizable', async (t) => {
  const history = [
    put(0, 'x', '1', 0, 1),
    put(1, 'x', '2', 2, Infinity),
    get(2, 'x', '1', 10, 11),
    get(2, 'x', '1', 12, 13),
  ];
  t.same(checkLinearizable(kvModel, history), { ok: true });
});

t.test('an unknown-outcome put cannot take effect before its call', async (t) => {
  const history = [get(0, 'x', '2', 0, 1), put(1, 'x', '2', 2, Infinity)];
  t.equal(checkLinearizable(kvModel, history).ok, false);
});

t.test('an unknown-outcome put observed and then lost is not linearizable', async (t) => {
  const history = [
    put(0, 'x', '1', 0, 1),
    put(1, 'x', '2', 2, Infinity),
    get(2, 'x', '2', 10, 11),
    get(2, 'x', '1', 12, 13),
  ];
  t.equal(checkLinearizable(kvModel, history).ok, false);
});

t.test('a stale read after a completed put is not linearizable', async (t) => {
  const history = [put(0, 'x', '1', 0, 1), put(0, 'x', '2', 2, 3), get(1, 'x', '1', 4, 5)];
  const result = checkLinearizable(kvModel, history);
  t.equal(result.ok, false);
  if (result.ok !== false) return;
  t.equal(result.partition, 0);
  t.match(result.witness, /get\("x"\) -> "1"/, 'witness names the offending read');
  t.match(result.witness, /state after the prefix \(its hash\): "2"/, 'witness shows the state');
});

t.test('a read of a value that was never written is not linearizable', async (t) => {
  const history = [put(0, 'x', '1', 0, 10), get(1, 'x', '5', 2, 3)];
  t.equal(checkLinearizable(kvModel, history).ok, false);
});

t.test('reads that see the new value and then the old one are not linearizable', async (t) => {
  const history = [
    put(0, 'x', '1', 0, 1),
    put(0, 'x', '2', 2, 20),
    get(1, 'x', '2', 3, 4),
    get(2, 'x', '1', 5, 6),
  ];
  t.equal(checkLinearizable(kvModel, history).ok, false);
});

t.test('a lost append is not linearizable', async (t) => {
  const history = [append(0, 'x', 'a', 0, 5), append(1, 'x', 'b', 0, 5), get(2, 'x', 'b', 6, 7)];
  t.equal(checkLinearizable(kvModel, history).ok, false);
  const kept = [append(0, 'x', 'a', 0, 5), append(1, 'x', 'b', 0, 5), get(2, 'x', 'ba', 6, 7)];
  t.same(checkLinearizable(kvModel, kept), { ok: true }, 'either order of concurrent appends');
});

t.test('the failing partition is reported by its index', async (t) => {
  const history = [put(0, 'a', '1', 0, 1), put(0, 'b', '1', 2, 3), get(1, 'b', '9', 4, 5)];
  const result = checkLinearizable(kvModel, history);
  t.equal(result.ok, false);
  if (result.ok === false) t.equal(result.partition, 1);
});

t.test('operations that touch at the same instant count as concurrent', async (t) => {
  // The get is called at the instant the put returns: the recorder could not tell the order.
  const touching = [put(0, 'x', '1', 0, 5), get(1, 'x', '', 5, 6)];
  t.same(checkLinearizable(kvModel, touching), { ok: true });
  const apart = [put(0, 'x', '1', 0, 5), get(1, 'x', '', 6, 7)];
  t.equal(checkLinearizable(kvModel, apart).ok, false);
});

t.test('an unknown-outcome append that a later read observes is linearizable', async (t) => {
  const history = [
    append(0, 'x', 'a', 0, 1),
    append(1, 'x', 'b', 2, Infinity),
    get(2, 'x', 'ab', 5, 6),
  ];
  t.same(checkLinearizable(kvModel, history), { ok: true });
});

t.test('an unknown-outcome append applied twice is not linearizable', async (t) => {
  const history = [
    append(0, 'x', 'a', 0, 1),
    append(1, 'x', 'b', 2, Infinity),
    get(2, 'x', 'abb', 5, 6),
  ];
  t.equal(checkLinearizable(kvModel, history).ok, false);
});

// The whole map as one state, with neither partition nor stepUnknown: the checker's generic
// path, against which kvModel's partitioning and settling of unknown outcomes is compared.
type MapState = Readonly<Record<string, string>>;
const mapModel: Model<MapState, KvInput, KvOutput> = {
  init: () => ({}),
  step(state, input, output) {
    const current = state[input.key] ?? '';
    if (input.op === 'get') return { ok: output.value === current, state };
    const value = input.op === 'put' ? input.value : current + input.value;
    return { ok: true, state: { ...state, [input.key]: value } };
  },
  hash: (state) => JSON.stringify(Object.entries(state).sort(([a], [b]) => (a < b ? -1 : 1))),
};

const mapModelWithReads: Model<MapState, KvInput, KvOutput> = {
  ...mapModel,
  readOnly: (input) => input.op === 'get',
};
const checkers: [string, (history: KvOperation[]) => boolean | 'unknown'][] = [
  ['kvModel', (history) => checkLinearizable(kvModel, history).ok],
  ['mapModel', (history) => checkLinearizable(mapModel, history).ok],
  ['mapModel with readOnly', (history) => checkLinearizable(mapModelWithReads, history).ok],
];

t.test('a model without stepUnknown applies unknown outcomes through step', async (t) => {
  const observed = [put(1, 'x', '2', 0, Infinity), get(2, 'x', '2', 10, 11)];
  t.same(checkLinearizable(mapModel, observed), { ok: true });
  const unobserved = [put(1, 'x', '2', 0, Infinity), get(2, 'x', '', 10, 11)];
  t.same(checkLinearizable(mapModel, unobserved), { ok: true });
  const tooEarly = [get(2, 'x', '2', 0, 1), put(1, 'x', '2', 2, Infinity)];
  t.equal(checkLinearizable(mapModel, tooEarly).ok, false);
});

t.test('a write of the current value is not linearized early as if it were a read', async (t) => {
  // put(2) fits without changing the state right after append(2), but the only linearization
  // needs it after append(1), to bring the value back to "2" for the read.
  const history = [
    append(0, 'b', '2', 0, 0),
    get(0, 'b', '2', 2, 2),
    append(0, 'b', '1', 1, 1),
    put(0, 'b', '2', 0, 1),
  ];
  for (const [name, check] of checkers) t.equal(check(history), true, name);
});

t.test('a malformed history is rejected', async (t) => {
  t.throws(() => checkLinearizable(kvModel, [put(0, 'x', '1', 5, 4)]), RangeError);
  t.throws(() => checkLinearizable(kvModel, [put(0, 'x', '1', NaN, 4)]), RangeError);
  t.throws(() => checkLinearizable(kvModel, [], { timeoutMs: -1 }), RangeError);
});

t.test('the verdict is unknown when the time budget runs out', async (t) => {
  // Twelve concurrent appends and a read nobody could have produced: the search has to try
  // every order of the appends before giving up, far more than the budget allows.
  const history = Array.from({ length: 12 }, (_, i) => append(i, 'x', `a${i}`, 0, 100));
  history.push(get(99, 'x', 'impossible', 0, 100));
  t.same(checkLinearizable(kvModel, history, { timeoutMs: 20 }), { ok: 'unknown' });
  t.same(checkLinearizable(kvModel, history, { timeoutMs: 0 }), { ok: 'unknown' });
});

// Generated histories: commands run one after another against a plain Map, each at its own
// instant (2i + 1); each interval is then widened around that instant, which introduces overlaps
// while keeping the true execution a valid linearization.
interface Command {
  op: 'get' | 'put' | 'append';
  key: string;
  client: number;
  before: number;
  after: number;
  fate: 'ok' | 'timeout-applied' | 'timeout-lost';
}

const commandArb: fc.Arbitrary<Command> = fc.record({
  op: fc.constantFrom('get', 'put', 'append'),
  key: fc.constantFrom('a', 'b', 'c'),
  client: fc.integer({ min: 0, max: 4 }),
  before: fc.integer({ min: 0, max: 12 }),
  after: fc.integer({ min: 0, max: 12 }),
  fate: fc.constantFrom('ok', 'ok', 'ok', 'ok', 'timeout-applied', 'timeout-lost'),
});

function execute(commands: Command[]): KvOperation[] {
  const store = new Map<string, string>();
  return commands.map((c, i) => {
    const instant = 2 * i + 1;
    const value = `v${i}`;
    const input: KvInput = { op: c.op, key: c.key, value: c.op === 'get' ? '' : value };
    const applied = c.fate !== 'timeout-lost';
    const current = store.get(c.key) ?? '';
    let output: KvOutput = {};
    if (c.op === 'get') output = { value: applied ? current : 'garbage' };
    else if (applied) store.set(c.key, c.op === 'put' ? value : current + value);
    const call = Math.max(0, instant - c.before);
    const ret = c.fate === 'ok' ? instant + c.after : Infinity;
    return { client: c.client, input, call, ret, output };
  });
}

t.test('widened sequential executions of a map are always linearizable', async (t) => {
  fc.assert(
    fc.property(fc.array(commandArb, { minLength: 1, maxLength: 40 }), (commands) => {
      const result = checkLinearizable(kvModel, execute(commands));
      if (result.ok !== true) {
        throw new Error(`expected linearizable, got ${JSON.stringify(result)}`);
      }
    }),
    { numRuns: 300 },
  );
  t.pass('property held');
});

t.test('a read changed to a value never written makes a history fail', async (t) => {
  fc.assert(
    fc.property(
      fc.array(commandArb, { minLength: 1, maxLength: 40 }),
      fc.nat(),
      (generated, pick) => {
        const index = pick % generated.length;
        const commands = generated.map(
          (c, i): Command => (i === index ? { ...c, op: 'get', fate: 'ok' } : c),
        );
        const history = execute(commands);
        // Written values look like v<digits>, so no concatenation of them spells NEVER.
        history[index]!.output = { value: 'NEVER' };
        const result = checkLinearizable(kvModel, history);
        if (result.ok !== false) {
          throw new Error(`expected a violation, got ${JSON.stringify(result)}`);
        }
      },
    ),
    { numRuns: 300 },
  );
  t.pass('property held');
});

t.test('partitioning by key and settling unknown outcomes never change the verdict', async (t) => {
  const verdicts = new Set<boolean | 'unknown'>();
  fc.assert(
    fc.property(
      fc.array(commandArb, { minLength: 1, maxLength: 20 }),
      fc.nat(),
      fc.nat(),
      (commands, pick, source) => {
        const history = execute(commands);
        // Make one completed read answer some other write's value (or ''): the history may or
        // may not stay linearizable, and all checkers must agree on which.
        const reads = history.filter((op) => op.input.op === 'get' && op.ret !== Infinity);
        const writes = history.filter((op) => op.input.op !== 'get').map((op) => op.input.value);
        const read = reads[pick % Math.max(reads.length, 1)];
        const value = ['', ...writes][source % (writes.length + 1)];
        if (read !== undefined) read.output = { value };
        const got = checkers.map(([name, check]) => ({ name, verdict: check(history) }));
        if (got.some(({ verdict }) => verdict !== got[0]!.verdict)) {
          throw new Error(`checkers disagree: ${JSON.stringify(got)}`);
        }
        verdicts.add(got[0]!.verdict);
      },
    ),
    { numRuns: 500 },
  );
  t.same([...verdicts].sort(), [false, true], 'both verdicts occurred');
});

/**
 * The definition, searched naively: some order of the completed operations and of any subset
 * of the unknown-outcome ones runs correctly on a plain map, with an operation placed only
 * after every completed operation that returned before its call.
 */
function linearizableByBruteForce(history: KvOperation[]): boolean {
  const placed = new Set<KvOperation>();
  const mustWait = (op: KvOperation): boolean =>
    history.some((other) => other !== op && !placed.has(other) && other.ret < op.call);
  const search = (store: ReadonlyMap<string, string>): boolean => {
    if (history.every((op) => op.ret === Infinity || placed.has(op))) return true;
    for (const op of history) {
      if (placed.has(op) || mustWait(op)) continue;
      const current = store.get(op.input.key) ?? '';
      if (op.input.op === 'get' && op.ret !== Infinity && op.output.value !== current) continue;
      const next = new Map(store);
      if (op.input.op === 'put') next.set(op.input.key, op.input.value);
      if (op.input.op === 'append') next.set(op.input.key, current + op.input.value);
      placed.add(op);
      const found = search(next);
      placed.delete(op);
      if (found) return true;
    }
    return false;
  };
  return search(new Map());
}

const tinyOperationArb: fc.Arbitrary<KvOperation> = fc
  .record({
    client: fc.nat(3),
    op: fc.constantFrom('get', 'put', 'append'),
    key: fc.constantFrom('a', 'b'),
    value: fc.constantFrom('1', '2'),
    read: fc.constantFrom('', '1', '2', '12', '21'),
    call: fc.nat(10),
    length: fc.option(fc.nat(6), { freq: 4 }),
  })
  .map((r) => ({
    client: r.client,
    input: { op: r.op, key: r.key, value: r.op === 'get' ? '' : r.value },
    call: r.call,
    ret: r.length === null ? Infinity : r.call + r.length,
    output: r.op === 'get' ? { value: r.read } : {},
  }));

t.test('the verdict on tiny histories matches a brute-force search', async (t) => {
  const verdicts = new Set<boolean>();
  fc.assert(
    fc.property(fc.array(tinyOperationArb, { minLength: 1, maxLength: 7 }), (history) => {
      const expected = linearizableByBruteForce(history);
      verdicts.add(expected);
      for (const [name, check] of checkers) {
        const got = check(history);
        if (got !== expected) throw new Error(`${name} says ${got}, brute force ${expected}`);
      }
    }),
    { numRuns: 1000 },
  );
  t.same([...verdicts].sort(), [false, true], 'both verdicts occurred');
});

/**
 * Clients of an atomic store, interleaved at random: each operation is called, later applied
 * atomically, later answered. A few requests are lost before being applied and a few replies
 * lost after; both are recorded with an unknown outcome. `ticksPerEvent` > 1 puts several events
 * in one instant, as a tick-stamped recorder would.
 */
function simulateStore(
  seed: number,
  total: number,
  clients: number,
  keys: number,
  ticksPerEvent = 1,
): KvOperation[] {
  const random = mulberry32(seed);
  const store = new Map<string, string>();
  interface InFlight {
    op: KvOperation;
    applied: boolean;
  }
  const inFlight: (InFlight | undefined)[] = Array.from({ length: clients }, () => undefined);
  const history: KvOperation[] = [];
  let issued = 0;
  for (let event = 0; history.length < total; event++) {
    const now = Math.floor(event / ticksPerEvent);
    const client = Math.floor(random() * clients);
    const current = inFlight[client];
    if (current === undefined) {
      if (issued >= total) continue;
      const kinds = ['get', 'get', 'put', 'append'] as const;
      const op = kinds[Math.floor(random() * kinds.length)]!;
      const key = `k${Math.floor(random() * keys)}`;
      const value = op === 'get' ? '' : `${client}.${issued}.`;
      inFlight[client] = {
        op: { client, input: { op, key, value }, call: now, ret: Infinity, output: {} },
        applied: false,
      };
      issued++;
    } else if (!current.applied) {
      if (random() < 0.01) {
        history.push(current.op);
        inFlight[client] = undefined;
        continue;
      }
      const { input } = current.op;
      const before = store.get(input.key) ?? '';
      if (input.op === 'get') current.op.output = { value: before };
      else store.set(input.key, input.op === 'put' ? input.value : before + input.value);
      current.applied = true;
    } else {
      if (random() >= 0.01) current.op.ret = now;
      history.push(current.op);
      inFlight[client] = undefined;
    }
  }
  return history;
}

t.test('a 2,000-operation history from 8 clients over 5 keys is checked', async (t) => {
  const history = simulateStore(7, 2000, 8, 5);
  t.equal(history.length, 2000);
  t.same(checkLinearizable(kvModel, history), { ok: true });
});

t.test('a 2,000-operation history recorded at tick granularity is checked', async (t) => {
  const history = simulateStore(11, 2000, 8, 5, 4);
  t.same(checkLinearizable(kvModel, history), { ok: true });
});

t.test('a stale read in a 2,000-operation history is found', async (t) => {
  const history = simulateStore(13, 2000, 8, 5);
  // Late in the history, make a completed read answer what its key held at the start.
  const index = history.findLastIndex(
    (op) => op.input.op === 'get' && op.ret !== Infinity && op.output.value !== '',
  );
  t.ok(index > 1000, 'found a read late in the history');
  history[index]!.output = { value: '' };
  const result = checkLinearizable(kvModel, history, { timeoutMs: 60_000 });
  t.equal(result.ok, false);
});
