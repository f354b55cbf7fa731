// Single-server membership changes: what validation refuses, what each change does, and
// invariants that hold over any sequence of changes applied from a log.

import t from 'tap';
import fc from 'fast-check';
import { applyConfChange, isMember, isVoter, validateConfChange } from '../../raft/membership.ts';
import { decodeConfChange, encodeConfChange } from '../../raft/codec.ts';
import { emptyMembership } from '../../raft/types.ts';
import type { ConfChange, Membership } from '../../raft/types.ts';

function build(...ccs: ConfChange[]): Membership {
  let m = emptyMembership();
  for (const cc of ccs) m = applyConfChange(m, cc);
  return m;
}

const three = (): Membership =>
  build(
    { op: 'bootstrap', id: 'a', addr: 'a:1' },
    { op: 'addLearner', id: 'b', addr: 'b:1' },
    { op: 'promote', id: 'b' },
    { op: 'addLearner', id: 'c', addr: 'c:1' },
  );

function code(fn: () => void): string {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code ?? 'not a SiderError';
  }
  return 'no error';
}

t.test('bootstrap makes the first voter of an empty configuration', async (t) => {
  const m = build({ op: 'bootstrap', id: 'a', addr: 'a:1' });
  t.same(m, { voters: ['a'], learners: [], addrs: { a: 'a:1' }, removed: [] });
  t.equal(code(() => validateConfChange(m, { op: 'bootstrap', id: 'b', addr: 'b:1' })), 'SIDER_CONF_CHANGE_INVALID', 'only once');
  t.equal(code(() => validateConfChange(emptyMembership(), { op: 'bootstrap', id: 'a' })), 'SIDER_CONF_CHANGE_INVALID', 'address required');
});

t.test('a node joins as a learner, then is promoted to voter', async (t) => {
  const m = three();
  t.same(m.voters, ['a', 'b']);
  t.same(m.learners, ['c']);
  t.same(m.addrs, { a: 'a:1', b: 'b:1', c: 'c:1' });
  t.ok(isVoter(m, 'b'));
  t.notOk(isVoter(m, 'c'));
  t.ok(isMember(m, 'c'));
  t.notOk(isMember(m, 'z'));
});

t.test('validation names what is wrong with a change', async (t) => {
  const m = three();
  const bad: [ConfChange, RegExp][] = [
    [{ op: 'addLearner', id: 'd' }, /address required/],
    [{ op: 'addLearner', id: 'b', addr: 'x:1' }, /already a member/],
    [{ op: 'addLearner', id: '', addr: 'x:1' }, /1-128 characters/],
    [{ op: 'addLearner', id: 'x'.repeat(129), addr: 'x:1' }, /1-128 characters/],
    [{ op: 'promote', id: 'b' }, /not a learner/],
    [{ op: 'promote', id: 'z' }, /not a learner/],
    [{ op: 'remove', id: 'z' }, /not a member/],
  ];
  for (const [cc, why] of bad) {
    t.throws(() => validateConfChange(m, cc), { code: 'SIDER_CONF_CHANGE_INVALID', message: why }, `${cc.op} ${cc.id}`);
  }
  t.doesNotThrow(() => validateConfChange(m, { op: 'remove', id: 'c' }), 'a learner may be removed');
  t.doesNotThrow(() => validateConfChange(m, { op: 'remove', id: 'a' }), 'a voter may be removed while others remain');
});

t.test('the last voter cannot be removed', async (t) => {
  const m = build({ op: 'bootstrap', id: 'a', addr: 'a:1' }, { op: 'addLearner', id: 'b', addr: 'b:1' });
  t.throws(() => validateConfChange(m, { op: 'remove', id: 'a' }), { code: 'SIDER_CONF_CHANGE_INVALID', message: /last voter/ });
  t.doesNotThrow(() => validateConfChange(m, { op: 'remove', id: 'b' }));
});

t.test('a removed ID is remembered and never reused', async (t) => {
  const m = applyConfChange(three(), { op: 'remove', id: 'b' });
  t.same(m.voters, ['a']);
  t.same(m.removed, ['b']);
  t.notOk('b' in m.addrs, 'its address is forgotten');
  t.throws(() => validateConfChange(m, { op: 'addLearner', id: 'b', addr: 'b:2' }), {
    code: 'SIDER_CONF_CHANGE_INVALID',
    message: /never reused/,
  });
});

t.test('bootstrap cannot bring back a removed ID', async (t) => {
  // Regression: a log of addLearner(e), remove(e), bootstrap(e) made the removed "e" a voter again.
  const m = build({ op: 'addLearner', id: 'e', addr: 'e:1' }, { op: 'remove', id: 'e' });
  t.throws(() => validateConfChange(m, { op: 'bootstrap', id: 'e', addr: 'e:1' }), {
    code: 'SIDER_CONF_CHANGE_INVALID',
    message: /never reused/,
  });
  t.same(applyConfChange(m, { op: 'bootstrap', id: 'e', addr: 'e:1' }).voters, []);
});

t.test('applyConfChange is total and never mutates its input', async (t) => {
  const m = three();
  const before = JSON.stringify(m);
  const same = applyConfChange(m, { op: 'promote', id: 'zz' });
  t.equal(same, m, 'an inapplicable change leaves the configuration as it was');
  const next = applyConfChange(m, { op: 'promote', id: 'c' });
  t.same(next.voters, ['a', 'b', 'c']);
  t.equal(JSON.stringify(m), before, 'input untouched');
});

t.test('a conf change survives the codec', async (t) => {
  const ccs: ConfChange[] = [
    { op: 'bootstrap', id: 'a', addr: 'a:1' },
    { op: 'addLearner', id: 'node-7', addr: '10.0.0.7:7001' },
    { op: 'promote', id: 'node-7' },
    { op: 'remove', id: 'é' },
  ];
  for (const cc of ccs) t.same(decodeConfChange(encodeConfChange(cc)), cc);
});

t.test('any sequence of logged changes keeps the configuration consistent (property)', async () => {
  const ids = ['a', 'b', 'c', 'd', 'e'];
  const cc = fc.record({
    op: fc.constantFrom<ConfChange['op']>('addLearner', 'promote', 'remove', 'bootstrap'),
    id: fc.constantFrom(...ids),
    addr: fc.constantFrom('h:1', ''),
  });
  fc.assert(
    fc.property(fc.array(cc, { maxLength: 30 }), (changes) => {
      let m = emptyMembership();
      let everRemoved = new Set<string>();
      let bootstrapped = false;
      for (const c of changes) {
        const change: ConfChange = c.addr ? c : { op: c.op, id: c.id };
        m = applyConfChange(m, change);
        bootstrapped ||= m.voters.length > 0;
        const members = [...m.voters, ...m.learners];
        if (new Set(members).size !== members.length) return false; // voters and learners disjoint, no dups
        if (Object.keys(m.addrs).sort().join() !== [...members].sort().join()) return false;
        if (m.removed.some((id) => members.includes(id))) return false; // removed IDs never come back
        if (bootstrapped && m.voters.length === 0) return false; // never loses its last voter
        for (const id of everRemoved) if (!m.removed.includes(id)) return false;
        everRemoved = new Set(m.removed);
      }
      return true;
    }),
    { numRuns: 2000 },
  );
});
