// The chaos run's own checks fail when they should: a lost or phantom ledger registration, an index
// that goes backwards, and — with the history shape the workload records (register = put, deregister
// = put(''), a service read = one get per instance key) — a read that misses an acknowledged
// registration or sees a deregistered one is not linearizable.

import t from 'tap';
import { IndexWatch, ledgerProblems } from '../chaos/checks.ts';
import { checkLinearizable, kvModel } from '../support/linearizability.ts';
import type { KvOperation } from '../support/linearizability.ts';

t.test('ledger: lost and phantom registrations are reported, a complete one is not', async (t) => {
  const tried = new Set(['a', 'b', 'c', 'd']);
  const acked = new Set(['a', 'b', 'c']);
  t.same(ledgerProblems('s1', acked, tried, new Set(['a', 'b', 'c', 'd'])), [], 'an unacknowledged one may be there');
  t.same(ledgerProblems('s1', acked, tried, new Set(['a', 'b', 'c'])), []);
  t.match(ledgerProblems('s2', acked, tried, new Set(['a', 'c'])), [/s2 lost 1 acknowledged registrations: b/]);
  t.match(ledgerProblems('s3', acked, tried, new Set(['a', 'b', 'c', 'zz'])), [/s3 holds 1 registrations never sent: zz/]);
});

t.test('index watch: equal and larger indexes pass, smaller or missing ones are violations', async (t) => {
  const w = new IndexWatch('w1');
  t.equal(w.next('api'), 1, 'blocks on 1 before any answer, never 0');
  t.equal(w.observe('api', 's1', 5), null);
  t.equal(w.observe('api', 's2', 5), null);
  t.equal(w.next('api'), 5);
  t.equal(w.observe('api', 's3', 9), null);
  t.match(w.observe('api', 's1', 8), /went backwards for w1 on api: 9 then 8 from s1/);
  t.equal(w.next('api'), 9, 'a violation does not lower the mark');
  t.equal(w.observe('db', 's1', 2), null, 'per service');
  t.match(w.observe('db', 's1', 0), /X-Consul-Index 0/);
  t.match(w.observe('db', 's1', Number.NaN), /X-Consul-Index NaN/);
});

const put = (key: string, value: string, call: number, ret: number): KvOperation => ({ client: 0, input: { op: 'put', key, value }, call, ret, output: {} });
const get = (key: string, value: string, call: number, ret: number): KvOperation => ({ client: 0, input: { op: 'get', key, value: '' }, call, ret, output: { value } });

t.test('the registry history shape: lost and resurrected registrations are caught', async (t) => {
  const k = 'chaos-a/chaos-a-0';
  t.same(checkLinearizable(kvModel, [put(k, 'w1.1', 1, 2), get(k, 'w1.1', 3, 4), put(k, '', 5, 6), get(k, '', 7, 8)]), { ok: true });
  t.equal(checkLinearizable(kvModel, [put(k, 'w1.1', 1, 2), get(k, '', 3, 4)]).ok, false, 'an acknowledged registration missing from a later read');
  t.equal(checkLinearizable(kvModel, [put(k, 'w1.1', 1, 2), put(k, '', 3, 4), get(k, 'w1.1', 5, 6)]).ok, false, 'a deregistered instance served again');
  t.same(checkLinearizable(kvModel, [put(k, 'w1.1', 1, Infinity), get(k, 'w1.1', 3, 4), get(k, 'w1.1', 5, 6)]), { ok: true }, 'an unknown outcome that took effect');
  t.equal(checkLinearizable(kvModel, [put(k, 'w1.1', 1, Infinity), get(k, 'w1.1', 3, 4), get(k, '', 5, 6)]).ok, false, 'and then vanished');
});
