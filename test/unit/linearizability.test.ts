// Tests of the linearizability checker the simulation suites rely on: hand-written histories with
// known verdicts, properties over generated histories, and a moderately large simulated history.

import t from 'tap';
import fc from 'fast-check';
import { checkLinearizable, kvModel } from '../support/linearizability.ts';
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
  t.match(result.witness, /state after the prefix: "2"/, 'witness shows the state it expected');
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

t.test('a model without stepUnknown applies unknown outcomes through step', async (t) => {
  const { stepUnknown: _ignored, ...withoutStepUnknown } = kvModel;
  const model: Model<string, KvInput, KvOutput> = withoutStepUnknown;
  const observed = [put(1, 'x', '2', 0, Infinity), get(2, 'x', '2', 10, 11)];
  t.same(checkLinearizable(model, observed), { ok: true });
  const unobserved = [put(1, 'x', '2', 0, Infinity), get(2, 'x', '', 10, 11)];
  t.same(checkLinearizable(model, unobserved), { ok: true });
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
      (commands, pick) => {
        const index = pick % commands.length;
        commands[index] = { ...commands[index]!, op: 'get', fate: 'ok' };
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

// A deterministic generator so the large history below is the same on every run.
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

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
