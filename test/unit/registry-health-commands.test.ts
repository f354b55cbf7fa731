// The state machine's health-checking commands (issue #4): addCheck, removeCheck, ttlCheckpoint,
// and the replicated check times (last renewal, status since) they and the older commands keep.

import t from 'tap';
import { decodeSnapshot, encodeCommand, encodeSnapshot } from '../../src/registry/command-codec.ts';
import type { ApplyResult, CheckSpec, RegistryCommand } from '../../src/registry/model.ts';
import { checkSpec as baseCheckSpec } from '../../src/registry/specs.ts';
import { RegistryStateMachine } from '../../src/registry/state-machine.ts';
import type { SnapshotMeta } from '../../raft/types.ts';

const meta: SnapshotMeta = { index: 0, term: 1, membership: { voters: [], learners: [], addrs: {}, removed: [] } };

function checkSpec(checkId: string, over: Partial<CheckSpec> = {}): CheckSpec {
  return baseCheckSpec(checkId, { TTL: '10s', ...over });
}

function reg(id: string, checks: CheckSpec[], now = 1_000): RegistryCommand {
  return {
    type: 'register',
    ns: 'default',
    node: 'node-1',
    instance: {
      Service: 'api',
      ID: id,
      Address: '10.0.0.1',
      Port: 80,
      Tags: [],
      Meta: {},
      Weights: { Passing: 1, Warning: 1 },
      TaggedAddresses: {},
      EnableTagOverride: false,
    },
    checks,
    replaceExistingChecks: false,
    now,
  };
}

class Harness {
  readonly sm = new RegistryStateMachine();
  next = 1;
  apply(cmd: RegistryCommand): ApplyResult {
    return this.sm.apply({ index: this.next++, term: 1, type: 'normal', data: encodeCommand(cmd), rid: '' });
  }
  indexes(): number[] {
    return [this.sm.index(), this.sm.serviceIndex('default', 'api'), this.sm.namespaceIndex('default'), this.sm.catalogIndex('default')];
  }
}

t.test('addCheck adds a check to an existing instance, moves its service index and its health', async (t) => {
  const h = new Harness();
  h.apply(reg('a', [checkSpec('c1', { Status: 'passing' })]));
  const before = h.sm.serviceIndex('default', 'api');
  const r = h.apply({ type: 'addCheck', ns: 'default', service: 'api', id: 'a', check: checkSpec('c2', { Status: 'warning', Notes: 'n' }), now: 2_000 });
  t.same(r, { ok: true, changed: true });
  t.ok(h.sm.serviceIndex('default', 'api') > before, 'the service index moved');
  const e = h.sm.serviceEntries('default', 'api')[0]!;
  t.same(e.checks.map((c) => c.CheckID), ['c1', 'c2'], 'checks sorted by ID');
  t.equal(e.health, 'warning');
  t.equal(h.sm.check('default', 'c2')?.Notes, 'n');
  t.equal(h.sm.check('default', 'c2')?.Node, 'node-1', "the check's Node is its instance's");
  t.same(h.sm.checkTimes('default', 'c2'), { renewedAt: 2_000, statusSince: 2_000, renewIntervalMs: 0 });

  const idx = h.indexes();
  const again = h.apply({ type: 'addCheck', ns: 'default', service: 'api', id: 'a', check: checkSpec('c2', { Status: 'warning', Notes: 'n' }), now: 3_000 });
  t.same(again, { ok: true, changed: false }, 'the same check again changes nothing');
  t.same(h.indexes(), idx);
  t.same(h.sm.checkTimes('default', 'c2'), { renewedAt: 2_000, statusSince: 2_000, renewIntervalMs: 0 }, 'nor its times');

  h.apply({ type: 'addCheck', ns: 'default', service: 'api', id: 'a', check: checkSpec('c2', { Notes: 'other' }), now: 4_000 });
  t.equal(h.sm.check('default', 'c2')?.Status, 'warning', 'an update without Status keeps the status');
  t.same(h.sm.checkTimes('default', 'c2'), { renewedAt: 4_000, statusSince: 2_000, renewIntervalMs: 0 }, 'renewed, same status since');
});

t.test('addCheck on an unknown instance is a 404 and a check ID of another instance a 400; nothing applied', async (t) => {
  const h = new Harness();
  h.apply(reg('a', [checkSpec('c1')]));
  h.apply(reg('b', []));
  const digest = h.sm.digest();
  const unknown = h.apply({ type: 'addCheck', ns: 'default', service: 'api', id: 'zz', check: checkSpec('c9'), now: 1 });
  t.equal(unknown.ok, false);
  if (!unknown.ok) {
    t.equal(unknown.status, 404);
    t.match(unknown.error, /ServiceID: unknown service instance "zz"/);
  }
  const otherNs = h.apply({ type: 'addCheck', ns: 'team-a', service: 'api', id: 'a', check: checkSpec('c9'), now: 1 });
  t.equal(otherNs.ok ? 0 : otherNs.status, 404, 'namespaces are separate');
  const stolen = h.apply({ type: 'addCheck', ns: 'default', service: 'api', id: 'b', check: checkSpec('c1'), now: 1 });
  t.equal(stolen.ok ? 0 : stolen.status, 400);
  if (!stolen.ok) t.match(stolen.error, /CheckID "c1" already belongs to instance "a"/);
  t.equal(h.sm.digest(), digest, 'nothing changed');
});

t.test('removeCheck removes one check and restores the health; an unknown check is a 404', async (t) => {
  const h = new Harness();
  h.apply(reg('a', [checkSpec('c1', { Status: 'passing' }), checkSpec('c2')]));
  t.equal(h.sm.serviceEntries('default', 'api')[0]!.health, 'critical');
  const before = h.sm.serviceIndex('default', 'api');
  t.same(h.apply({ type: 'removeCheck', ns: 'default', checkId: 'c2', now: 5 }), { ok: true, changed: true });
  t.ok(h.sm.serviceIndex('default', 'api') > before);
  t.equal(h.sm.serviceEntries('default', 'api')[0]!.health, 'passing');
  t.equal(h.sm.check('default', 'c2'), undefined);
  t.equal(h.sm.checkTimes('default', 'c2'), undefined, 'its times go with it');
  t.same(h.sm.checksInState('default', 'any').map((c) => c.CheckID), ['c1']);
  const digest = h.sm.digest();
  t.same(h.apply({ type: 'removeCheck', ns: 'default', checkId: 'c2', now: 6 }), { ok: false, error: 'Unknown check ID "c2"', status: 404 });
  t.equal(h.sm.digest(), digest);
});

t.test('a maintenance check added and removed puts the instance in and out of maintenance', async (t) => {
  const h = new Harness();
  h.apply(reg('a', [checkSpec('c1', { Status: 'passing' })]));
  const maint = checkSpec('_service_maintenance:a', { Type: 'maintenance', TTL: '', Status: 'critical', Name: 'Service Maintenance Mode', Notes: 'why' });
  h.apply({ type: 'addCheck', ns: 'default', service: 'api', id: 'a', check: maint, now: 1 });
  t.equal(h.sm.serviceEntries('default', 'api')[0]!.health, 'maintenance');
  h.apply({ type: 'removeCheck', ns: 'default', checkId: '_service_maintenance:a', now: 2 });
  t.equal(h.sm.serviceEntries('default', 'api')[0]!.health, 'passing');
});

t.test('ttlCheckpoint records later renewal times only, moves no index and wakes no watcher', async (t) => {
  const h = new Harness();
  h.apply(reg('a', [checkSpec('c1', { Status: 'passing' })], 1_000));
  const idx = h.indexes();
  let fired = 0;
  const cancels = [
    h.sm.watchService('default', 'api', h.sm.serviceIndex('default', 'api'), () => fired++),
    h.sm.watchNamespace('default', h.sm.namespaceIndex('default'), () => fired++),
    h.sm.watchCatalog('default', h.sm.catalogIndex('default'), () => fired++),
  ];
  const digest = h.sm.digest();
  const r = h.apply({
    type: 'ttlCheckpoint',
    entries: [
      ['default', 'c1', 5_000, 700],
      ['default', 'nope', 6_000, 700],
      ['team-a', 'c1', 7_000, 700],
    ],
    now: 9_000,
  });
  t.same(r, { ok: true, changed: false });
  t.same(h.indexes(), idx, 'no index moved');
  t.equal(fired, 0, 'no watcher woke');
  t.same(h.sm.checkTimes('default', 'c1'), { renewedAt: 5_000, statusSince: 1_000, renewIntervalMs: 700 });
  t.not(h.sm.digest(), digest, 'the replicated state did change');
  h.apply({ type: 'ttlCheckpoint', entries: [['default', 'c1', 4_000, 1]], now: 9_500 });
  t.same(h.sm.checkTimes('default', 'c1'), { renewedAt: 5_000, statusSince: 1_000, renewIntervalMs: 700 }, 'an older time is ignored');
  h.apply({ type: 'checkStatus', ns: 'default', checkId: 'c1', status: 'warning', output: '', now: 10_000 });
  t.same(h.sm.checkTimes('default', 'c1'), { renewedAt: 10_000, statusSince: 10_000, renewIntervalMs: 700 }, 'a status change keeps the interval');
  for (const c of cancels) c();
});

t.test('checkStatus renews; status since moves only when the status changes', async (t) => {
  const h = new Harness();
  h.apply(reg('a', [checkSpec('c1', { Status: 'passing' })], 1_000));
  h.apply({ type: 'checkStatus', ns: 'default', checkId: 'c1', status: 'passing', output: 'new output', now: 2_000 });
  t.same(h.sm.checkTimes('default', 'c1'), { renewedAt: 2_000, statusSince: 1_000, renewIntervalMs: 0 });
  h.apply({ type: 'checkStatus', ns: 'default', checkId: 'c1', status: 'critical', output: 'TTL expired', now: 3_000 });
  t.same(h.sm.checkTimes('default', 'c1'), { renewedAt: 3_000, statusSince: 3_000, renewIntervalMs: 0 });
  const r = h.apply({ type: 'checkStatus', ns: 'default', checkId: 'c1', status: 'critical', output: 'TTL expired', now: 4_000 });
  t.same(r, { ok: true, changed: false });
  t.same(h.sm.checkTimes('default', 'c1'), { renewedAt: 3_000, statusSince: 3_000, renewIntervalMs: 0 }, 'an unchanged status writes nothing');
});

t.test('re-registration: an unchanged check keeps its times, a changed one is renewed, status since kept', async (t) => {
  const h = new Harness();
  h.apply(reg('a', [checkSpec('c1', { Status: 'passing' }), checkSpec('c2', { Status: 'passing' })], 1_000));
  h.apply(reg('a', [checkSpec('c1', { Status: 'passing' }), checkSpec('c2', { Status: 'passing', Notes: 'changed' })], 2_000));
  t.same(h.sm.checkTimes('default', 'c1'), { renewedAt: 1_000, statusSince: 1_000, renewIntervalMs: 0 });
  t.same(h.sm.checkTimes('default', 'c2'), { renewedAt: 2_000, statusSince: 1_000, renewIntervalMs: 0 });
  h.apply({ type: 'deregister', ns: 'default', service: 'api', id: 'a', now: 3_000 });
  t.equal(h.sm.checkTimes('default', 'c1'), undefined, 'deregistering drops the times');
});

t.test('check times survive snapshot and restore; an older snapshot without them restores as 0', async (t) => {
  const h = new Harness();
  h.apply(reg('a', [checkSpec('c1', { Status: 'passing' })], 1_000));
  h.apply({ type: 'ttlCheckpoint', entries: [['default', 'c1', 5_000, 0]], now: 5_000 });
  const bytes = await h.sm.snapshot()();
  const copy = new RegistryStateMachine();
  copy.restore(bytes, meta);
  t.same(copy.checkTimes('default', 'c1'), { renewedAt: 5_000, statusSince: 1_000, renewIntervalMs: 0 });
  t.equal(copy.digest(), h.sm.digest());

  const old = decodeSnapshot(bytes);
  for (const ns of old.namespaces) delete ns.checkTimes;
  const legacy = new RegistryStateMachine();
  legacy.restore(encodeSnapshot(old), meta);
  t.same(legacy.checkTimes('default', 'c1'), { renewedAt: 0, statusSince: 0, renewIntervalMs: 0 });

  const bad = decodeSnapshot(bytes);
  bad.namespaces[0]!.checkTimes = [['ghost', 1, 1, 0]];
  t.throws(() => new RegistryStateMachine().restore(encodeSnapshot(bad), meta), /checkTimes: times of unknown check "ghost"/);
});

t.test('the new commands are validated like the others', async (t) => {
  const h = new Harness();
  const bad = (json: string): ApplyResult => h.sm.apply({ index: h.next++, term: 1, type: 'normal', data: Buffer.from(json), rid: '' });
  t.match(bad('{"type":"ttlCheckpoint","entries":[["default","c1",5]],"now":0}'), { ok: false, status: 400, error: /entries\[0\]/ });
  t.match(bad('{"type":"addCheck","ns":"default","service":"api","id":"a","now":0}'), { ok: false, status: 400, error: /check/ });
  t.match(bad('{"type":"removeCheck","ns":"default","checkId":"","now":0}'), { ok: false, status: 400, error: /checkId/ });
});

t.test('takeCheckChanges lists the checks each command added, changed or removed, and nothing else', async (t) => {
  const h = new Harness();
  const key = (id: string): string => `default\u0000${id}`;
  t.same(h.sm.takeCheckChanges(), { all: true, keys: [] }, 'the first take: every check');
  t.same(h.sm.takeCheckChanges(), { all: false, keys: [] }, 'nothing since');
  h.apply(reg('a', [checkSpec('c1'), checkSpec('c2')]));
  h.apply(reg('b', []));
  t.same(h.sm.takeCheckChanges().keys.sort(), [key('c1'), key('c2')], 'register: its checks; a check-less instance: none');
  h.apply(reg('a', [checkSpec('c1'), checkSpec('c2')]));
  t.same(h.sm.takeCheckChanges().keys, [], 'an unchanged re-registration changes no check');
  const replacing = reg('a', [checkSpec('c3')]);
  if (replacing.type === 'register') replacing.replaceExistingChecks = true;
  h.apply(replacing);
  t.same(h.sm.takeCheckChanges().keys.sort(), [key('c1'), key('c2'), key('c3')], 'replaced checks: the old ones and the new one');
  h.apply({ type: 'checkStatus', ns: 'default', checkId: 'c3', status: 'critical', output: 'x', now: 2_000 });
  h.apply({ type: 'addCheck', ns: 'default', service: 'api', id: 'b', check: checkSpec('c4'), now: 2_000 });
  t.same(h.sm.takeCheckChanges().keys.sort(), [key('c3'), key('c4')], 'checkStatus and addCheck');
  h.apply({ type: 'ttlCheckpoint', entries: [['default', 'c4', 5_000, 1_000]], now: 5_000 });
  t.same(h.sm.takeCheckChanges().keys, [], 'a renewal checkpoint is not a change');
  h.apply({ type: 'removeCheck', ns: 'default', checkId: 'c4', now: 6_000 });
  h.apply({ type: 'deregister', ns: 'default', service: 'api', id: 'a', now: 6_000 });
  t.same(h.sm.takeCheckChanges().keys.sort(), [key('c3'), key('c4')], 'removeCheck and deregister');
  h.apply({ type: 'removeCheck', ns: 'default', checkId: 'nope', now: 6_000 });
  t.same(h.sm.takeCheckChanges().keys, [], 'a refused command changes nothing');

  const copy = new RegistryStateMachine();
  copy.takeCheckChanges();
  copy.restore(await h.sm.snapshot()(), meta);
  t.same(copy.takeCheckChanges(), { all: true, keys: [] }, 'a restored state: every check');

  const many = new Harness();
  many.sm.takeCheckChanges();
  for (let i = 0; i < 1_100; i++) many.apply(reg(`i${i}`, Array.from({ length: 60 }, (_, j) => checkSpec(`c${i}-${j}`))));
  t.same(many.sm.takeCheckChanges(), { all: true, keys: [] }, 'more changes than the list holds: every check');
});
