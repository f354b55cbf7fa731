// The check scheduler with a fake runProbe and real timers at small intervals: threshold rules,
// transitions reported only on change, the concurrency bound, fairness, first runs spread over the
// interval, sync add/update/remove semantics, bad input refused whole, and stop().

import t from 'tap';
import { isSiderError } from '../../raft/errors.ts';
import type { runProbe } from '../../src/health/probes.ts';
import { CheckScheduler } from '../../src/health/scheduler.ts';
import type { ProbeResult, ScheduledCheck } from '../../src/health/types.ts';
import type { CheckStatus } from '../../src/registry/model.ts';
import { waitFor } from '../support/ports.ts';

type Transition = { key: string; status: CheckStatus; output: string };

interface Call {
  key: string;
  signal: AbortSignal;
  resolve: (r: ProbeResult) => void;
}

/**
 * A runProbe double. Each check's key travels in `probe.http`. In `script` mode a call answers the
 * next scripted status at once (output `<key>#<n>`), and once the script is used up it waits until
 * aborted. In `gate` mode every call waits for the test to resolve it. It counts probes in flight,
 * overall and per key.
 */
class FakeProbes {
  readonly scripts = new Map<string, CheckStatus[]>();
  readonly pending: Call[] = [];
  readonly runs = new Map<string, number>();
  readonly firstRunOrder: string[] = [];
  gate = false;
  /** When set, a scripted answer comes after this many ms (a real timer), not at once. */
  delayMs = 0;
  /** Whether a call ends when its signal aborts (a well-behaved probe does). */
  honourAbort = true;
  inFlight = 0;
  maxInFlight = 0;
  readonly perKey = new Map<string, number>();
  maxPerKey = 0;
  aborted = 0;

  readonly run: typeof runProbe = (def, opts) => {
    const key = def.http ?? '?';
    const n = (this.runs.get(key) ?? 0) + 1;
    this.runs.set(key, n);
    if (n === 1) this.firstRunOrder.push(key);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    const k = (this.perKey.get(key) ?? 0) + 1;
    this.perKey.set(key, k);
    this.maxPerKey = Math.max(this.maxPerKey, k);
    return new Promise<ProbeResult>((resolve) => {
      let done = false;
      const finish = (r: ProbeResult): void => {
        if (done) return;
        done = true;
        this.inFlight--;
        this.perKey.set(key, (this.perKey.get(key) ?? 1) - 1);
        resolve(r);
      };
      opts.signal?.addEventListener('abort', () => {
        this.aborted++;
        if (this.honourAbort) finish({ status: 'critical', output: 'probe cancelled' });
      });
      if (this.gate) {
        this.pending.push({ key, signal: opts.signal!, resolve: finish });
        return;
      }
      const next = this.scripts.get(key)?.shift();
      if (next === undefined) return; // used up: wait for the abort
      const r = { status: next, output: `${key}#${n}` };
      if (this.delayMs > 0) setTimeout(() => finish(r), this.delayMs);
      else finish(r);
    });
  };

  /** The pending gated call of `key` (waits for it). */
  async next(key: string): Promise<Call> {
    return waitFor<Call | undefined>(`a probe of ${key}`, () => {
      const i = this.pending.findIndex((c) => c.key === key);
      return i < 0 ? undefined : this.pending.splice(i, 1)[0];
    }, 5_000, 2) as Promise<Call>;
  }
}

function check(key: string, over: Partial<ScheduledCheck> = {}): ScheduledCheck {
  return {
    key,
    probe: { type: 'http', http: key },
    intervalMs: 2,
    timeoutMs: 1_000,
    successBeforePassing: 1,
    failuresBeforeCritical: 1,
    status: 'critical',
    ...over,
  };
}

function setup(t: { teardown: (fn: () => void) => void }, opts: { concurrency?: number; random?: () => number } = {}) {
  const probes = new FakeProbes();
  const transitions: Transition[] = [];
  const sched = new CheckScheduler({
    onTransition: (key, status, output) => transitions.push({ key, status, output }),
    runProbe: probes.run,
    ...opts,
  });
  t.teardown(() => sched.stop());
  return { probes, transitions, sched };
}

const P: CheckStatus = 'passing';
const W: CheckStatus = 'warning';
const C: CheckStatus = 'critical';

t.test('thresholds: SuccessBeforePassing and FailuresBeforeCritical streaks, warnings as Consul counts them', async (t) => {
  const { probes, transitions, sched } = setup(t);
  //            1  2  3  4  5  6  7  8  9  10 11 12 13 14 15 16 17 18 19
  const script = [P, P, C, P, P, P, C, P, C, C, W, W, W, P, W, W, C, C, P];
  probes.scripts.set('a', [...script]);
  sched.sync([check('a', { successBeforePassing: 3, failuresBeforeCritical: 2 })]);
  await waitFor('the script to be used up', () => probes.runs.get('a') === script.length + 1, 10_000, 2);
  t.same(transitions, [
    { key: 'a', status: 'passing', output: 'a#6' }, // 3 ok in a row (4, 5, 6); 1-2 were reset by 3
    { key: 'a', status: 'critical', output: 'a#10' }, // 2 critical in a row (9, 10); 7 was reset by 8
    { key: 'a', status: 'warning', output: 'a#13' }, // leaving critical needs 3 ok in a row, warnings too
    { key: 'a', status: 'passing', output: 'a#14' }, // warnings count toward the passing streak
    { key: 'a', status: 'warning', output: 'a#15' }, // passing → warning at once
    { key: 'a', status: 'critical', output: 'a#18' },
  ]);
});

t.test('threshold 0 means 1; the first result of a new check obeys the thresholds', async (t) => {
  const { probes, transitions, sched } = setup(t);
  probes.scripts.set('z', [C, P, C]);
  probes.scripts.set('n', [P, P, P]);
  sched.sync([
    check('z', { successBeforePassing: 0, failuresBeforeCritical: 0, status: 'passing' }),
    check('n', { successBeforePassing: 3 }),
  ]);
  await waitFor('both scripts used up', () => probes.runs.get('z') === 4 && probes.runs.get('n') === 4, 10_000, 2);
  t.same(transitions.filter((x) => x.key === 'z').map((x) => x.status), ['critical', 'passing', 'critical']);
  t.same(transitions.filter((x) => x.key === 'n'), [{ key: 'n', status: 'passing', output: 'n#3' }], 'a new check passes only after the full streak');
});

t.test('onTransition is not called for results that keep the status', async (t) => {
  const { probes, transitions, sched } = setup(t);
  probes.scripts.set('p', Array(20).fill(P));
  probes.scripts.set('c', Array(20).fill(C));
  probes.scripts.set('w', [W, ...Array(19).fill(W)]);
  sched.sync([check('p', { status: 'passing' }), check('c', { status: 'critical' }), check('w', { status: 'passing' })]);
  await waitFor('20 runs each', () => ['p', 'c', 'w'].every((k) => probes.runs.get(k) === 21), 10_000, 2);
  t.same(transitions, [{ key: 'w', status: 'warning', output: 'w#1' }]);
});

t.test('concurrency bound: never more probes in flight than allowed, never two of one check', async (t) => {
  const { probes, sched } = setup(t, { concurrency: 8 });
  probes.delayMs = 3;
  const keys = Array.from({ length: 200 }, (_, i) => `k${i}`);
  for (const k of keys) probes.scripts.set(k, Array(4).fill(P));
  sched.sync(keys.map((k) => check(k, { intervalMs: 5 })));
  await waitFor('every check to run 3 times', () => keys.every((k) => (probes.runs.get(k) ?? 0) >= 3), 20_000, 5);
  t.ok(probes.maxInFlight <= 8, `max in flight ${probes.maxInFlight} ≤ 8`);
  t.equal(probes.maxInFlight, 8, 'the bound is used when more checks are due than slots');
  t.equal(probes.maxPerKey, 1, 'never two probes of one check at once');
  t.ok(sched.inFlight <= 8);
});

t.test('due checks are served fairly (FIFO) when the probe slots are the bottleneck', async (t) => {
  const { probes, sched } = setup(t, { concurrency: 1 });
  probes.delayMs = 1;
  const keys = Array.from({ length: 20 }, (_, i) => `f${i}`);
  for (const k of keys) probes.scripts.set(k, Array(1_000).fill(P));
  sched.sync(keys.map((k) => check(k, { intervalMs: 1 })));
  const total = (): number => keys.reduce((s, k) => s + (probes.runs.get(k) ?? 0), 0);
  await waitFor('200 runs', () => total() >= 200, 20_000, 5);
  sched.stop();
  const counts = keys.map((k) => probes.runs.get(k) ?? 0);
  t.ok(Math.max(...counts) - Math.min(...counts) <= 2, `runs per check within 2 of each other: ${counts.join(',')}`);
  t.equal(probes.maxInFlight, 1);
});

t.test('first runs are spread over the interval by the random offset', async (t) => {
  const offsets = new Map([['late', 0.999], ['b', 0.0], ['c', 0.002], ['a', 0.004]]);
  const order = ['late', 'a', 'b', 'c'];
  let i = 0;
  const { probes, sched } = setup(t, { random: () => offsets.get(order[i++]!)! });
  for (const k of order) probes.scripts.set(k, Array(3).fill(P));
  // interval 5 s: offsets 0, 10 ms, 20 ms and 4.995 s.
  sched.sync(order.map((k) => check(k, { intervalMs: 5_000 })));
  await waitFor('a, b and c to run', () => ['a', 'b', 'c'].every((k) => probes.runs.has(k)), 10_000, 2);
  t.same(probes.firstRunOrder.slice(0, 3), ['b', 'c', 'a'], 'first runs in offset order');
  t.notOk(probes.runs.has('late'), 'a check whose offset is near the end of its interval has not run yet');
  t.equal(sched.size, 4);
});

t.test('sync: an unchanged check keeps its counters; the caller’s status is adopted', async (t) => {
  const { probes, transitions, sched } = setup(t);
  probes.gate = true;
  const def = check('u', { successBeforePassing: 3 });
  sched.sync([def]);
  (await probes.next('u')).resolve({ status: P, output: 'u1' });
  (await probes.next('u')).resolve({ status: P, output: 'u2' });
  const third = await probes.next('u');
  sched.sync([{ ...def, probe: { http: 'u', type: 'http' } }]); // same content, other object and key order
  third.resolve({ status: P, output: 'u3' });
  await waitFor('the transition', () => transitions.length === 1, 5_000, 2);
  t.same(transitions, [{ key: 'u', status: 'passing', output: 'u3' }], 'the streak survived the sync');
  t.notOk(third.signal.aborted, 'the probe in flight of an unchanged check is not aborted');

  // The caller says the check is still critical (its write failed): the next passing result reports again.
  sched.sync([{ ...def, status: 'critical' }]);
  (await probes.next('u')).resolve({ status: P, output: 'u4' });
  await waitFor('the repeated transition', () => transitions.length === 2, 5_000, 2);
  t.same(transitions[1], { key: 'u', status: 'passing', output: 'u4' });
  // The caller records passing: more passing results report nothing.
  sched.sync([{ ...def, status: 'passing' }]);
  (await probes.next('u')).resolve({ status: P, output: 'u5' });
  (await probes.next('u')).resolve({ status: P, output: 'u6' });
  await probes.next('u'); // the result of u6 was applied before this call started
  t.equal(transitions.length, 2);
});

t.test('sync: a changed check restarts (counters reset, old result dropped, no overlap)', async (t) => {
  const { probes, transitions, sched } = setup(t);
  probes.gate = true;
  probes.honourAbort = false; // the old probe keeps running after its abort: the new one must wait
  const def = check('x', { successBeforePassing: 2 });
  sched.sync([def]);
  (await probes.next('x')).resolve({ status: P, output: 'x1' });
  const old = await probes.next('x');
  sched.sync([{ ...def, timeoutMs: 2_000 }]);
  t.ok(old.signal.aborted, 'the old probe is aborted');
  await new Promise((r) => setTimeout(r, 50));
  t.equal(probes.pending.length, 0, 'the new check does not start while the old probe is in flight');
  old.resolve({ status: P, output: 'x-old' });
  const first = await probes.next('x');
  t.equal(transitions.length, 0, 'the old result was dropped (it would have completed the streak)');
  first.resolve({ status: P, output: 'x2' });
  t.equal(probes.maxPerKey, 1);
  (await probes.next('x')).resolve({ status: P, output: 'x3' });
  await waitFor('the transition', () => transitions.length === 1, 5_000, 2);
  t.same(transitions, [{ key: 'x', status: 'passing', output: 'x3' }], 'the streak restarted from 0 after the change');
});

t.test('sync: added checks start, removed checks stop and their results are dropped', async (t) => {
  const { probes, transitions, sched } = setup(t);
  probes.gate = true;
  sched.sync([check('r'), check('s')]);
  const r = await probes.next('r');
  const s = await probes.next('s');
  sched.sync([check('s'), check('t')]);
  t.equal(sched.size, 2);
  t.ok(r.signal.aborted, 'the removed check’s probe is aborted');
  t.notOk(s.signal.aborted, 'the kept check’s probe is not');
  r.resolve({ status: P, output: 'r' });
  s.resolve({ status: P, output: 's' });
  (await probes.next('t')).resolve({ status: P, output: 't' });
  await waitFor('two transitions', () => transitions.length === 2, 5_000, 2);
  t.same(transitions.map((x) => x.key).sort(), ['s', 't'], 'nothing reported for the removed check');
  const runsOfR = probes.runs.get('r');
  await probes.next('s');
  await probes.next('t');
  t.equal(probes.runs.get('r'), runsOfR, 'the removed check never runs again');
  sched.sync([]);
  t.equal(sched.size, 0);
});

t.test('update: only the given keys start, restart, take a status or stop; the others keep running', async (t) => {
  const { probes, transitions, sched } = setup(t);
  probes.gate = true;
  const keep = check('keep', { successBeforePassing: 2 });
  sched.sync([keep, check('gone'), check('moved')]);
  (await probes.next('keep')).resolve({ status: P, output: 'k1' });
  const keepInFlight = await probes.next('keep');
  const gone = await probes.next('gone');
  const moved = await probes.next('moved');
  sched.update([
    { key: 'gone', check: undefined },
    { key: 'moved', check: check('moved', { timeoutMs: 2_000 }) },
    { key: 'new', check: check('new') },
    { key: 'never-there', check: undefined },
  ]);
  t.equal(sched.size, 3, 'keep, moved (restarted) and new');
  t.ok(gone.signal.aborted, 'a stopped check’s probe is aborted');
  t.ok(moved.signal.aborted, 'a changed check restarts');
  t.notOk(keepInFlight.signal.aborted, 'a key not given is untouched');
  keepInFlight.resolve({ status: P, output: 'k2' });
  gone.resolve({ status: P, output: 'gone' });
  await waitFor('the kept check’s streak to complete', () => transitions.length === 1, 5_000, 2);
  t.same(transitions, [{ key: 'keep', status: 'passing', output: 'k2' }], 'its counters survived the update; the stopped check reports nothing');
  (await probes.next('new')).resolve({ status: P, output: 'n' });
  await waitFor('the new check’s transition', () => transitions.length === 2, 5_000, 2);
  // A status given for a running, unchanged check is adopted, as by sync.
  sched.update([{ key: 'new', check: check('new', { status: 'passing' }) }]);
  (await probes.next('new')).resolve({ status: P, output: 'n2' });
  await probes.next('new');
  t.equal(transitions.length, 2, 'passing again after the caller recorded passing: nothing reported');
  t.throws(() => sched.update([{ key: 'x', check: check('x') }, { key: 'bad', check: check('bad', { intervalMs: 0 }) }]), /check "bad": intervalMs/);
  t.throws(() => sched.update([{ key: 'y', check: check('z') }]), /given under key "y"/);
  t.equal(sched.size, 3, 'a refused update changes nothing');
});

t.test('bad checks are refused whole with the field named, and nothing changes', async (t) => {
  const { probes, sched } = setup(t);
  probes.scripts.set('ok', Array(1_000).fill(P));
  sched.sync([check('ok')]);
  const cases: [Partial<ScheduledCheck>, string][] = [
    [{ intervalMs: 0 }, 'intervalMs'],
    [{ intervalMs: Number.NaN }, 'intervalMs'],
    [{ timeoutMs: -5 }, 'timeoutMs'],
    [{ timeoutMs: Infinity }, 'timeoutMs'],
    [{ successBeforePassing: -1 }, 'successBeforePassing'],
    [{ failuresBeforeCritical: Number.NaN }, 'failuresBeforeCritical'],
    [{ status: 'maintenance' as CheckStatus }, 'status'],
    [{ probe: { type: 'ttl' as 'http' } }, 'probe.type'],
  ];
  for (const [over, field] of cases) {
    let caught: unknown;
    try {
      sched.sync([check('new'), check('bad', over)]);
    } catch (err) {
      caught = err;
    }
    t.ok(isSiderError(caught, 'SIDER_BAD_REQUEST'), `${field}: SIDER_BAD_REQUEST`);
    t.match((caught as Error | undefined)?.message, new RegExp(`^check "bad": ${field.replace('.', '\\.')} `), `${field}: named in the message`);
  }
  t.throws(() => sched.sync([check('d'), check('d')]), /key appears twice/);
  t.equal(sched.size, 1, 'the earlier set stands');
  const before = probes.runs.get('ok') ?? 0;
  await waitFor('the kept check to keep running', () => (probes.runs.get('ok') ?? 0) > before + 3, 5_000, 2);
  t.notOk(probes.runs.has('new'), 'the valid check of a refused set never started');
  t.throws(() => new CheckScheduler({ onTransition: () => {}, concurrency: 0 }), /concurrency/);
});

t.test('a throwing runProbe or onTransition does not break the scheduler', async (t) => {
  const logged: string[] = [];
  let calls = 0;
  const sched = new CheckScheduler({
    onTransition: (key, status, output) => {
      calls++;
      if (calls === 1) throw new Error(`boom on ${key} ${status} ${output}`);
    },
    runProbe: (def) => {
      if (def.http === 'sync-throw') throw new Error('sync throw');
      return Promise.reject(new Error('async reject'));
    },
    log: (level, msg, fields) => logged.push(`${level} ${msg} ${String(fields?.err)}`),
  });
  t.teardown(() => sched.stop());
  sched.sync([check('sync-throw', { status: 'passing' }), check('reject', { status: 'passing' })]);
  await waitFor('both checks to report critical', () => calls === 2, 5_000, 2);
  t.equal(logged.length, 1);
  t.match(logged[0], /^error health check transition handler failed Error: boom on/);
  t.match(logged[0], /probe failed: (sync throw|async reject)/, 'a thrown probe is a critical result with its message');
});

t.test('stop() aborts probes in flight, reports nothing more, leaves no timers; sync works again', async (t) => {
  const baseTimers = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const { probes, transitions, sched } = setup(t);
  probes.gate = true;
  const keys = Array.from({ length: 50 }, (_, i) => `s${i}`);
  sched.sync(keys.map((k) => check(k, { intervalMs: 20 })));
  await waitFor('all 50 in flight', () => probes.pending.length === 50, 5_000, 2);
  const calls = probes.pending.splice(0);
  sched.stop();
  t.equal(sched.size, 0);
  t.ok(calls.every((c) => c.signal.aborted), 'every probe in flight was aborted');
  await waitFor('in-flight count back to 0', () => sched.inFlight === 0, 5_000, 2);
  for (const c of calls) c.resolve({ status: P, output: 'late' });
  await waitFor(`timers back to the baseline ${baseTimers}`, () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length <= baseTimers, 5_000, 2);
  const runs = [...probes.runs.values()].reduce((a, b) => a + b, 0);
  await new Promise((r) => setTimeout(r, 60));
  t.equal([...probes.runs.values()].reduce((a, b) => a + b, 0), runs, 'no probe started after stop()');
  t.equal(transitions.length, 0, 'no result reported after stop()');

  sched.sync([check('again')]);
  (await probes.next('again')).resolve({ status: P, output: 'again' });
  await waitFor('the transition after restart', () => transitions.length === 1, 5_000, 2);
  t.same(transitions, [{ key: 'again', status: 'passing', output: 'again' }]);
});
