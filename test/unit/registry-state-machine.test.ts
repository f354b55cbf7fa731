// The registry state machine: determinism over random command logs, snapshot/restore, the index
// rules of DESIGN §3, upsert and check semantics, dedup by request ID, and sorted reads.

import t from 'tap';
import fc from 'fast-check';
import { decodeCommand, decodeSnapshot, encodeCommand, encodeSnapshot } from '../../src/registry/command-codec.ts';
import type {
  ApplyResult,
  CheckSpec,
  CheckStatus,
  InstanceSpec,
  RegistryCommand,
  ServerInfo,
} from '../../src/registry/model.ts';
import { checkSpec as baseCheckSpec } from '../../src/registry/specs.ts';
import { MAX_CHECK_OUTPUT_BYTES, RegistryStateMachine } from '../../src/registry/state-machine.ts';
import type { RegistryStateMachineOptions } from '../../src/registry/state-machine.ts';
import type { SnapshotMeta } from '../../raft/types.ts';

const meta: SnapshotMeta = { index: 0, term: 1, membership: { voters: [], learners: [], addrs: {}, removed: [] } };

function instanceSpec(service: string, id: string, over: Partial<InstanceSpec> = {}): InstanceSpec {
  return {
    Service: service,
    ID: id,
    Address: '10.0.0.1',
    Port: 8080,
    Tags: [],
    Meta: {},
    Weights: { Passing: 1, Warning: 1 },
    TaggedAddresses: {},
    EnableTagOverride: false,
    ...over,
  };
}

function checkSpec(checkId: string, over: Partial<CheckSpec> = {}): CheckSpec {
  return baseCheckSpec(checkId, { TTL: '10s', ...over });
}

interface RegOpts {
  ns?: string;
  node?: string;
  /** Left out of the command when undefined (entries written before the field existed). */
  nodeAddress?: string;
  tags?: string[];
  checks?: CheckSpec[];
  replace?: boolean;
  over?: Partial<InstanceSpec>;
}

function reg(service: string, id: string, o: RegOpts = {}): RegistryCommand {
  return {
    type: 'register',
    ns: o.ns ?? 'default',
    node: o.node ?? 'node-1',
    ...(o.nodeAddress === undefined ? {} : { nodeAddress: o.nodeAddress }),
    instance: instanceSpec(service, id, { Tags: o.tags ?? [], ...o.over }),
    checks: o.checks ?? [],
    replaceExistingChecks: o.replace ?? false,
    now: 1_000,
  };
}

function dereg(service: string, id: string, ns = 'default'): RegistryCommand {
  return { type: 'deregister', ns, service, id, now: 1_000 };
}

function status(checkId: string, s: CheckStatus, output = '', ns = 'default'): RegistryCommand {
  return { type: 'checkStatus', ns, checkId, status: s, output, now: 1_000 };
}

/** A state machine fed with consecutive entry indexes, as the Raft driver would. */
class Harness {
  readonly sm: RegistryStateMachine;
  next = 1;
  constructor(opts: RegistryStateMachineOptions = {}) {
    this.sm = new RegistryStateMachine(opts);
  }
  apply(cmd: RegistryCommand, rid = ''): ApplyResult {
    return this.applyRaw(encodeCommand(cmd), rid);
  }
  applyRaw(data: Uint8Array, rid = ''): ApplyResult {
    return this.sm.apply({ index: this.next++, term: 1, type: 'normal', data, rid });
  }
}

/** Every read the front ends make, for the namespaces, services and IDs a test uses. */
function readAll(sm: RegistryStateMachine, nss: string[], services: string[], ids: string[]): unknown {
  return {
    index: sm.index(),
    namespaces: sm.namespaces(),
    servers: sm.servers(),
    per: nss.map((ns) => ({
      catalogIndex: sm.catalogIndex(ns),
      namespaceIndex: sm.namespaceIndex(ns),
      services: sm.services(ns),
      instances: sm.instances(ns),
      checks: sm.checksInState(ns, 'any'),
      critical: sm.checksInState(ns, 'critical'),
      byId: ids.map((id) => sm.instancesById(ns, id)),
      svc: services.map((s) => ({
        index: sm.serviceIndex(ns, s),
        entries: sm.serviceEntries(ns, s),
        checks: sm.checksOfService(ns, s),
        instances: ids.map((id) => sm.instance(ns, s, id) ?? null),
      })),
    })),
  };
}

// ---------------------------------------------------------------- random command logs

const NSS = ['default', 'team-a'];
const SERVICES = ['api', 'web', 'db'];
const IDS = ['1', '2', '3', ''];
const CHECK_IDS = ['c1', 'c2', 'c3', '_service_maintenance:1'];
const TAGS = ['v1', 'v2', 'canary'];

const statusArb = fc.constantFrom<CheckStatus>('passing', 'warning', 'critical');

const checkSpecArb = fc
  .record({
    id: fc.constantFrom(...CHECK_IDS),
    status: fc.constantFrom<CheckStatus | ''>('', '', 'passing', 'warning', 'critical'),
    output: fc.constantFrom('', 'ok', 'timeout'),
    ttl: fc.constantFrom('10s', '30s'),
  })
  .map((c) => checkSpec(c.id, { Status: c.status, Output: c.output, TTL: c.ttl }));

const commandArb: fc.Arbitrary<RegistryCommand> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc
      .record({
        ns: fc.constantFrom(...NSS),
        service: fc.constantFrom(...SERVICES),
        id: fc.constantFrom(...IDS),
        node: fc.constantFrom('node-1', 'node-2'),
        nodeAddress: fc.constantFrom(undefined, '', '10.0.0.9'),
        tags: fc.subarray(TAGS),
        port: fc.constantFrom(80, 8080),
        meta: fc.constantFrom<Record<string, string>>({}, { v: '1' }, { a: 'x', b: 'y' }, { b: 'y', a: 'x' }),
        checks: fc.uniqueArray(checkSpecArb, { maxLength: 3, selector: (c) => c.CheckID }),
        replace: fc.boolean(),
      })
      .map((r) =>
        reg(r.service, r.id, { ns: r.ns, node: r.node, nodeAddress: r.nodeAddress, tags: r.tags, checks: r.checks, replace: r.replace, over: { Port: r.port, Meta: r.meta } }),
      ),
  },
  {
    weight: 2,
    arbitrary: fc
      .record({ ns: fc.constantFrom(...NSS), service: fc.constantFrom(...SERVICES), id: fc.constantFrom('1', '2', '3', 'api', 'web', 'db') })
      .map((r) => dereg(r.service, r.id, r.ns)),
  },
  {
    weight: 4,
    arbitrary: fc
      .record({ ns: fc.constantFrom(...NSS), id: fc.constantFrom(...CHECK_IDS, 'nope'), s: statusArb, out: fc.constantFrom('', 'ok', 'x'.repeat(5000)) })
      .map((r) => status(r.id, r.s, r.out, r.ns)),
  },
  {
    weight: 1,
    arbitrary: fc
      .record({ id: fc.constantFrom('s1', 's2'), addr: fc.constantFrom('10.0.0.1:8500', '10.0.0.2:8500') })
      .map((r): RegistryCommand => ({ type: 'server', server: { ID: r.id, HTTPAddr: r.addr, RaftAddr: r.addr }, now: 0 })),
  },
  // Health checking's commands (issue #4), with leader times that vary.
  {
    weight: 2,
    arbitrary: fc
      .record({ ns: fc.constantFrom(...NSS), service: fc.constantFrom(...SERVICES), id: fc.constantFrom('1', '2', 'api'), check: checkSpecArb, now: fc.nat(5_000) })
      .map((r): RegistryCommand => ({ type: 'addCheck', ns: r.ns, service: r.service, id: r.id, check: r.check, now: r.now })),
  },
  {
    weight: 1,
    arbitrary: fc
      .record({ ns: fc.constantFrom(...NSS), id: fc.constantFrom(...CHECK_IDS, 'nope'), now: fc.nat(5_000) })
      .map((r): RegistryCommand => ({ type: 'removeCheck', ns: r.ns, checkId: r.id, now: r.now })),
  },
  {
    weight: 2,
    arbitrary: fc
      .array(fc.tuple(fc.constantFrom(...NSS, 'never'), fc.constantFrom(...CHECK_IDS, 'nope'), fc.nat(5_000), fc.nat(3_000)), { maxLength: 4 })
      .map((entries): RegistryCommand => ({ type: 'ttlCheckpoint', entries, now: 5_000 })),
  },
  {
    weight: 2,
    arbitrary: fc
      .record({ ns: fc.constantFrom(...NSS), id: fc.constantFrom(...CHECK_IDS), s: statusArb, out: fc.constantFrom('', 'ok'), now: fc.nat(5_000) })
      .map((r): RegistryCommand => ({ type: 'checkStatus', ns: r.ns, checkId: r.id, status: r.s, output: r.out, now: r.now })),
  },
);

/**
 * A log step: a command, a malformed one, or garbage bytes, with a request ID from a small pool so
 * that retries occur. Kept as plain values so a failing counterexample reads well.
 */
type Step = { cmd: RegistryCommand | string | number[]; rid: string };
const stepArb: fc.Arbitrary<Step> = fc.record({
  cmd: fc.oneof(
    { weight: 12, arbitrary: commandArb },
    { weight: 1, arbitrary: fc.array(fc.nat(255), { maxLength: 16 }) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        '{"type":"register"}',
        '{"type":"checkStatus","ns":"default","checkId":"c1","status":"bad","output":"","now":0}',
      ),
    },
  ),
  rid: fc.oneof({ weight: 3, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom('r1', 'r2', 'r3', 'r4') }),
});

function stepData(s: Step): Uint8Array {
  if (typeof s.cmd === 'string') return Buffer.from(s.cmd);
  if (Array.isArray(s.cmd)) return Uint8Array.from(s.cmd);
  return encodeCommand(s.cmd);
}

function readsOf(sm: RegistryStateMachine): string {
  return JSON.stringify(readAll(sm, [...NSS, 'never'], [...SERVICES, 'never'], ['1', '2', '3', 'api', 'web', 'db']));
}

t.test('applying the same log on two machines gives the same state; a restored snapshot matches too', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.array(stepArb, { maxLength: 60 }), fc.nat(), async (steps, cut) => {
      const opts = { tombstoneLimit: 2, dedupLimit: 3 };
      const a = new Harness(opts);
      const b = new Harness(opts);
      const k = steps.length === 0 ? 0 : cut % (steps.length + 1);
      for (const s of steps.slice(0, k)) {
        if (JSON.stringify(a.applyRaw(stepData(s), s.rid)) !== JSON.stringify(b.applyRaw(stepData(s), s.rid))) return false;
      }
      const c = new Harness(opts);
      const bytes = await a.sm.snapshot()();
      c.sm.restore(bytes, meta);
      c.next = a.next;
      if (c.sm.digest() !== a.sm.digest() || readsOf(c.sm) !== readsOf(a.sm)) return false;
      // The same state written in the object form (snapshots before the compact one) reads the same.
      const old = new Harness(opts);
      old.sm.restore(encodeSnapshot(decodeSnapshot(bytes)), meta);
      if (old.sm.digest() !== a.sm.digest() || readsOf(old.sm) !== readsOf(a.sm)) return false;
      for (const s of steps.slice(k)) {
        const ra = a.applyRaw(stepData(s), s.rid);
        if (JSON.stringify(ra) !== JSON.stringify(b.applyRaw(stepData(s), s.rid))) return false;
        if (JSON.stringify(ra) !== JSON.stringify(c.applyRaw(stepData(s), s.rid))) return false;
      }
      const d = a.sm.digest();
      return d === b.sm.digest() && d === c.sm.digest() && readsOf(a.sm) === readsOf(b.sm) && readsOf(a.sm) === readsOf(c.sm);
    }),
    { numRuns: 300 },
  );
  t.pass('property held');
});

t.test('indexes are never 0, never go backwards, and nest: service and catalog ≤ namespace ≤ global', async (t) => {
  fc.assert(
    fc.property(fc.array(commandArb, { maxLength: 60 }), (cmds) => {
      // Tombstones are not evicted at this scale, so every service index is monotonic.
      const h = new Harness();
      const names = [...SERVICES, 'never'];
      let last = new Map<string, number>();
      for (const cmd of cmds) {
        h.apply(cmd);
        const now = new Map<string, number>();
        for (const ns of [...NSS, 'never']) {
          const nsIndex = h.sm.namespaceIndex(ns);
          const cat = h.sm.catalogIndex(ns);
          if (nsIndex < 1 || cat < 1 || nsIndex > h.sm.index() || cat > nsIndex) return false;
          now.set(`${ns}/#catalog`, cat);
          now.set(`${ns}/#ns`, nsIndex);
          for (const s of names) {
            const si = h.sm.serviceIndex(ns, s);
            if (si < 1 || si > Math.max(nsIndex, 1)) return false;
            now.set(`${ns}/${s}`, si);
          }
        }
        for (const [k, v] of now) if ((last.get(k) ?? 0) > v) return false;
        last = now;
      }
      return h.sm.index() >= 1;
    }),
    { numRuns: 300 },
  );
  t.pass('property held');
});

t.test('registering the same command twice changes nothing the second time', async (t) => {
  fc.assert(
    fc.property(fc.array(commandArb, { maxLength: 30 }), commandArb, (prefix, cmd) => {
      if (cmd.type !== 'register') return true;
      const h = new Harness();
      for (const c of prefix) h.apply(c);
      const first = h.apply(cmd);
      if (!first.ok) return true;
      const before = h.sm.digest();
      const second = h.apply(cmd);
      return second.ok && !second.changed && h.sm.digest() === before;
    }),
    { numRuns: 300 },
  );
  t.pass('property held');
});

// ---------------------------------------------------------------- registration and indexes

t.test('a fresh registry answers index 1 everywhere and empty lists', async (t) => {
  const sm = new RegistryStateMachine();
  t.equal(sm.index(), 1);
  t.equal(sm.serviceIndex('default', 'api'), 1);
  t.equal(sm.catalogIndex('default'), 1);
  t.equal(sm.namespaceIndex('default'), 1);
  t.same(sm.serviceEntries('default', 'api'), []);
  t.same(sm.services('default'), []);
  t.same(sm.namespaces(), []);
  t.same(sm.servers(), []);
});

t.test('register creates the instance with CreateIndex = ModifyIndex = the entry index', async (t) => {
  const h = new Harness();
  h.next = 7;
  t.same(h.apply(reg('api', 'a', { tags: ['v1'] })), { ok: true, changed: true });
  const inst = h.sm.instance('default', 'api', 'a')!;
  t.equal(inst.CreateIndex, 7);
  t.equal(inst.ModifyIndex, 7);
  t.equal(inst.Node, 'node-1');
  t.equal(inst.Namespace, 'default');
  t.equal(h.sm.index(), 7);
  t.equal(h.sm.serviceIndex('default', 'api'), 7);
  t.equal(h.sm.catalogIndex('default'), 7);
  t.equal(h.sm.namespaceIndex('default'), 7);
  t.same(h.sm.namespaces(), ['default']);
  t.same(h.sm.services('default'), [['api', ['v1']]]);
});

t.test('an ID left empty defaults to the service name', async (t) => {
  const h = new Harness();
  h.apply(reg('api', ''));
  t.ok(h.sm.instance('default', 'api', 'api'));
});

t.test('an identical re-registration moves no index and reports changed:false', async (t) => {
  const h = new Harness();
  h.apply(reg('api', 'a', { tags: ['v1'], checks: [checkSpec('c1', { Status: 'passing' })], over: { Meta: { a: '1', b: '2' } } }));
  const before = h.sm.digest();
  const r = h.apply(reg('api', 'a', { tags: ['v1'], checks: [checkSpec('c1', { Status: 'passing' })], over: { Meta: { b: '2', a: '1' } } }));
  t.same(r, { ok: true, changed: false });
  t.equal(h.sm.index(), 1);
  t.equal(h.sm.serviceIndex('default', 'api'), 1);
  t.equal(h.sm.digest(), before);
});

t.test('changing an instance moves ModifyIndex and keeps CreateIndex', async (t) => {
  const h = new Harness();
  h.apply(reg('api', 'a'));
  h.apply(reg('api', 'a', { over: { Port: 9090 } }));
  const inst = h.sm.instance('default', 'api', 'a')!;
  t.equal(inst.CreateIndex, 1);
  t.equal(inst.ModifyIndex, 2);
  t.equal(inst.Port, 9090);
  t.equal(h.sm.serviceIndex('default', 'api'), 2);
  t.equal(h.sm.catalogIndex('default'), 1, 'same names and tags: catalog unchanged');
});

t.test('a check status change moves the service and namespace indexes, not the catalog index', async (t) => {
  const h = new Harness();
  h.apply(reg('api', 'a', { checks: [checkSpec('c1')] }));
  h.apply(reg('web', 'w'));
  t.same(h.apply(status('c1', 'passing', 'ok')), { ok: true, changed: true });
  t.equal(h.sm.serviceIndex('default', 'api'), 3);
  t.equal(h.sm.namespaceIndex('default'), 3);
  t.equal(h.sm.index(), 3);
  t.equal(h.sm.catalogIndex('default'), 2);
  t.equal(h.sm.serviceIndex('default', 'web'), 2, 'other services keep their index');
  const c = h.sm.checksOfService('default', 'api')[0]!;
  t.equal(c.Status, 'passing');
  t.equal(c.Output, 'ok');
  t.equal(c.ModifyIndex, 3);
  t.equal(c.CreateIndex, 1);
  t.equal(h.sm.instance('default', 'api', 'a')!.ModifyIndex, 1, 'the instance itself did not change');
  t.equal(h.sm.serviceEntries('default', 'api')[0]!.health, 'passing');
});

t.test('a TTL renewal with the same status and output changes nothing', async (t) => {
  const h = new Harness();
  h.apply(reg('api', 'a', { checks: [checkSpec('c1', { Status: 'passing', Output: 'ok' })] }));
  t.same(h.apply(status('c1', 'passing', 'ok')), { ok: true, changed: false });
  t.equal(h.sm.index(), 1);
});

t.test('a new tag moves the catalog index; a tag another instance still carries does not', async (t) => {
  const h = new Harness();
  h.apply(reg('api', 'a', { tags: ['v1'] }));
  h.apply(reg('api', 'b', { tags: ['v1'] }));
  t.equal(h.sm.catalogIndex('default'), 1, 'second instance with a known tag');
  h.apply(reg('api', 'b', { tags: ['v1', 'canary'] }));
  t.equal(h.sm.catalogIndex('default'), 3, 'new tag');
  t.same(h.sm.services('default'), [['api', ['canary', 'v1']]]);
  h.apply(reg('api', 'b', { tags: ['canary'] }));
  t.equal(h.sm.catalogIndex('default'), 3, 'v1 still carried by a');
  h.apply(dereg('api', 'a'));
  t.equal(h.sm.catalogIndex('default'), 5, 'v1 gone with a');
  t.same(h.sm.services('default'), [['api', ['canary']]]);
});

t.test('property: the tags a service lists are the union of its instances\' tags, and the catalog index moves exactly when that union does', async () => {
  // Tag lists with repeats, short and long (both ways retag counts), over a small alphabet so that
  // instances share tags.
  const tags = fc.array(fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r', 's', 't'), { maxLength: 24 });
  const step = fc.oneof(
    fc.record({ op: fc.constant('reg' as const), id: fc.constantFrom('i1', 'i2', 'i3'), tags }),
    fc.record({ op: fc.constant('dereg' as const), id: fc.constantFrom('i1', 'i2', 'i3') }),
  );
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 30 }), (steps) => {
      const h = new Harness();
      const model = new Map<string, string[]>();
      const union = (): string[] => [...new Set([...model.values()].flat())].sort();
      for (const st of steps) {
        const before = { exists: model.size > 0, union: union(), catalog: h.sm.catalogIndex('default') };
        const index = h.next;
        if (st.op === 'reg') {
          h.apply(reg('api', st.id, { tags: st.tags }));
          model.set(st.id, st.tags);
        } else {
          h.apply(dereg('api', st.id));
          model.delete(st.id);
        }
        const now = union();
        const listed = h.sm.services('default');
        if (model.size === 0 ? listed.length !== 0 : JSON.stringify(listed) !== JSON.stringify([['api', now]])) return false;
        const moved = before.exists !== model.size > 0 || JSON.stringify(before.union) !== JSON.stringify(now);
        if (h.sm.catalogIndex('default') !== (moved ? index : before.catalog)) return false;
      }
      return true;
    }),
  );
});

t.test('deregistering the last instance leaves a tombstone index and an empty result', async (t) => {
  const h = new Harness();
  h.apply(reg('api', 'a'));
  h.apply(reg('web', 'w'));
  t.same(h.apply(dereg('api', 'a')), { ok: true, changed: true });
  t.equal(h.sm.serviceIndex('default', 'api'), 3);
  t.equal(h.sm.catalogIndex('default'), 3);
  t.same(h.sm.serviceEntries('default', 'api'), []);
  t.same(h.sm.services('default'), [['web', []]]);
  h.apply(reg('web', 'w2'));
  t.equal(h.sm.serviceIndex('default', 'api'), 3, 'the tombstone keeps its index');
  h.apply(reg('api', 'a'));
  t.equal(h.sm.serviceIndex('default', 'api'), 5, 'recreated');
});

t.test('tombstones are bounded: the oldest falls back to the catalog index and its watchers wake', async (t) => {
  const h = new Harness({ tombstoneLimit: 2 });
  for (const s of ['a', 'b', 'c']) h.apply(reg(s, '1'));
  h.apply(dereg('a', '1')); // 4
  h.apply(dereg('b', '1')); // 5
  let woke = 0;
  h.sm.watchService('default', 'a', 4, () => woke++);
  h.apply(dereg('c', '1')); // 6: evicts a
  t.equal(woke, 1);
  t.equal(h.sm.serviceIndex('default', 'a'), 6, 'the catalog index');
  t.equal(h.sm.serviceIndex('default', 'b'), 5);
  t.equal(h.sm.serviceIndex('default', 'c'), 6);
});

t.test('a never-seen service reports the catalog index', async (t) => {
  const h = new Harness();
  h.apply(reg('api', 'a'));
  h.apply(status('nope', 'passing'));
  h.apply(reg('web', 'w'));
  t.equal(h.sm.serviceIndex('default', 'ghost'), 3);
  t.equal(h.sm.serviceIndex('other', 'ghost'), 1);
});

t.test('deregistering an unknown instance is ok and changes nothing', async (t) => {
  const h = new Harness();
  t.same(h.apply(dereg('api', 'a')), { ok: true, changed: false });
  h.apply(reg('api', 'a'));
  t.same(h.apply(dereg('api', 'b')), { ok: true, changed: false });
  t.same(h.apply(dereg('api', 'a', 'other')), { ok: true, changed: false });
  t.equal(h.sm.index(), 2);
});

t.test('deregister removes the instance and its checks', async (t) => {
  const h = new Harness();
  h.apply(reg('api', 'a', { checks: [checkSpec('c1'), checkSpec('c2')] }));
  h.apply(reg('api', 'b', { checks: [checkSpec('c3')] }));
  h.apply(dereg('api', 'a'));
  t.same(h.sm.checksInState('default', 'any').map((c) => c.CheckID), ['c3']);
  t.same(h.apply(status('c1', 'passing')), { ok: false, error: 'CheckID "c1" does not have associated TTL', status: 404 });
  // The freed check ID may now be used by another instance.
  t.same(h.apply(reg('api', 'b', { checks: [checkSpec('c1')] })), { ok: true, changed: true });
});

t.test('namespaces are isolated and implicit', async (t) => {
  const h = new Harness();
  h.apply(reg('api', 'a', { ns: 'team-b', checks: [checkSpec('c1')] }));
  h.apply(reg('api', 'a', { ns: 'team-a', checks: [checkSpec('c1')] }));
  t.same(h.sm.namespaces(), ['team-a', 'team-b']);
  t.equal(h.sm.namespaceIndex('team-b'), 1);
  t.equal(h.sm.namespaceIndex('team-a'), 2);
  h.apply(status('c1', 'passing', '', 'team-a'));
  t.equal(h.sm.checksOfService('team-b', 'api')[0]!.Status, 'critical');
  t.equal(h.sm.checksOfService('team-a', 'api')[0]!.Status, 'passing');
  h.apply(dereg('api', 'a', 'team-b'));
  t.same(h.sm.namespaces(), ['team-a'], 'an emptied namespace is not listed');
  t.equal(h.sm.namespaceIndex('team-b'), 4, 'but keeps its indexes');
});

// ---------------------------------------------------------------- checks

t.test('a new check without a status starts critical; a given status is used', async (t) => {
  const h = new Harness();
  h.apply(reg('api', 'a', { checks: [checkSpec('c1'), checkSpec('c2', { Status: 'passing', Output: 'fine' })] }));
  const [c1, c2] = h.sm.checksOfService('default', 'api');
  t.equal(c1!.Status, 'critical');
  t.equal(c2!.Status, 'passing');
  t.equal(c2!.Output, 'fine');
  t.equal(c1!.ServiceID, 'a');
  t.equal(c1!.ServiceName, 'api');
  t.equal(c1!.Node, 'node-1');
  t.equal(h.sm.serviceEntries('default', 'api')[0]!.health, 'critical');
});

t.test('re-registration keeps the status and output of checks given without a status', async (t) => {
  const h = new Harness();
  h.apply(reg('api', 'a', { checks: [checkSpec('c1'), checkSpec('c2')] }));
  h.apply(status('c1', 'passing', 'alive'));
  h.apply(status('c2', 'warning', 'slow'));
  t.same(h.apply(reg('api', 'a', { checks: [checkSpec('c1'), checkSpec('c2', { Status: 'critical', Output: 'down' })] })), {
    ok: true,
    changed: true,
  });
  const [c1, c2] = h.sm.checksOfService('default', 'api');
  t.equal(c1!.Status, 'passing');
  t.equal(c1!.Output, 'alive');
  t.equal(c1!.ModifyIndex, 2, 'untouched check keeps its ModifyIndex');
  t.equal(c2!.Status, 'critical');
  t.equal(c2!.Output, 'down');
  t.equal(c2!.ModifyIndex, 4);
});

t.test('without replaceExistingChecks, checks left out survive; with it, they are removed', async (t) => {
  const h = new Harness();
  h.apply(reg('api', 'a', { checks: [checkSpec('c1'), checkSpec('c2')] }));
  h.apply(status('c2', 'passing'));
  t.same(h.apply(reg('api', 'a', { checks: [checkSpec('c1')] })), { ok: true, changed: false }, 'c2 survives, nothing changed');
  t.same(h.sm.checksOfService('default', 'api').map((c) => c.CheckID), ['c1', 'c2']);
  t.same(h.apply(reg('api', 'a', { checks: [checkSpec('c1')], replace: true })), { ok: true, changed: true });
  t.same(h.sm.checksOfService('default', 'api').map((c) => c.CheckID), ['c1']);
  t.same(h.sm.checksInState('default', 'any').map((c) => c.CheckID), ['c1']);
  t.equal(h.sm.serviceEntries('default', 'api')[0]!.health, 'critical');
  t.equal(h.apply(status('c2', 'passing')).ok, false, 'the removed check is gone');
});

t.test('a check ID owned by another instance is refused with 400 naming it, and nothing is applied', async (t) => {
  const h = new Harness();
  h.apply(reg('api', 'a', { checks: [checkSpec('shared')] }));
  const before = h.sm.digest();
  const r = h.apply(reg('api', 'b', { checks: [checkSpec('mine'), checkSpec('shared')] }));
  t.equal(r.ok, false);
  if (!r.ok) {
    t.equal(r.status, 400);
    t.match(r.error, /CheckID "shared"/);
  }
  t.equal(h.sm.digest(), before, 'not half-applied');
  t.equal(h.sm.instance('default', 'api', 'b'), undefined);
  const r2 = h.apply(reg('web', 'a', { checks: [checkSpec('shared')] }));
  t.equal(r2.ok, false, 'same instance ID under another service is another instance');
  const r3 = h.apply(reg('api', 'a', { checks: [checkSpec('shared')], ns: 'other' }));
  t.same(r3, { ok: true, changed: true }, 'check IDs are unique per namespace only');
});

t.test('a check ID given twice in one registration is refused', async (t) => {
  const h = new Harness();
  const r = h.apply(reg('api', 'a', { checks: [checkSpec('c1'), checkSpec('c1')] }));
  t.equal(r.ok, false);
  if (!r.ok) t.match(r.error, /CheckID "c1"/);
  t.same(h.sm.instances('default'), []);
});

t.test('checkStatus on an unknown check answers 404 with Consul’s message', async (t) => {
  const h = new Harness();
  t.same(h.apply(status('ghost', 'passing')), { ok: false, error: 'CheckID "ghost" does not have associated TTL', status: 404 });
});

t.test('check output is capped at 4096 bytes without splitting a character', async (t) => {
  const h = new Harness();
  const long = 'é'.repeat(3000); // 6000 bytes
  h.apply(reg('api', 'a', { checks: [checkSpec('c1', { Status: 'passing', Output: long })] }));
  const out = h.sm.checksOfService('default', 'api')[0]!.Output;
  t.equal(Buffer.byteLength(out), MAX_CHECK_OUTPUT_BYTES);
  t.equal(out, 'é'.repeat(2048));
  h.apply(status('c1', 'warning', `x${'€'.repeat(2000)}`));
  const out2 = h.sm.checksOfService('default', 'api')[0]!.Output;
  t.ok(Buffer.byteLength(out2) <= MAX_CHECK_OUTPUT_BYTES);
  t.equal(out2, `x${'€'.repeat(1365)}`);
  t.same(h.apply(status('c1', 'warning', `x${'€'.repeat(3000)}`)), { ok: true, changed: false }, 'same capped output');
});

t.test('a maintenance check puts the instance in maintenance', async (t) => {
  const h = new Harness();
  h.apply(reg('api', 'a', { checks: [checkSpec('c1', { Status: 'passing' })] }));
  t.equal(h.sm.serviceEntries('default', 'api')[0]!.health, 'passing');
  h.apply(reg('api', 'a', { checks: [checkSpec('_service_maintenance:a', { Status: 'critical', Notes: 'upgrade' })] }));
  t.equal(h.sm.serviceEntries('default', 'api')[0]!.health, 'maintenance');
  h.apply(reg('api', 'a', { checks: [checkSpec('c1')], replace: true }));
  t.equal(h.sm.serviceEntries('default', 'api')[0]!.health, 'passing');
});

// ---------------------------------------------------------------- commands, dedup, servers

t.test('a malformed command applies nothing and answers 400', async (t) => {
  const h = new Harness();
  h.apply(reg('api', 'a'));
  const before = h.sm.digest();
  for (const bad of ['not json', '{}', '{"type":"nope"}', '{"type":"deregister","ns":"default","service":"api","now":0}', '\xff\xfe']) {
    const r = h.applyRaw(Buffer.from(bad, 'latin1'));
    t.equal(r.ok, false, bad);
    if (!r.ok) t.equal(r.status, 400);
  }
  const bad = { ...reg('api', 'a'), instance: { ...instanceSpec('api', 'a'), Port: 70_000 } };
  const r = h.applyRaw(Buffer.from(JSON.stringify(bad)));
  t.same(r, { ok: false, error: 'instance.Port: must be an integer in [0, 65535]', status: 400 });
  t.equal(h.sm.digest(), before);
  t.equal(h.sm.index(), 1);
});

t.test('decoding keeps only known fields', async (t) => {
  const cmd = { ...reg('api', 'a'), extra: 1, instance: { ...instanceSpec('api', 'a'), Junk: true } };
  const d = decodeCommand(Buffer.from(JSON.stringify(cmd)));
  t.ok(d.ok);
  if (d.ok) {
    t.notOk('extra' in d.command);
    t.same(d.command, reg('api', 'a'));
  }
  const proto = decodeCommand(Buffer.from(JSON.stringify(reg('api', 'a')).replace('"Meta":{}', '"Meta":{"__proto__":"x"}')));
  t.ok(proto.ok);
  if (proto.ok && proto.command.type === 'register') {
    t.equal(Object.getPrototypeOf(proto.command.instance.Meta), Object.prototype, 'no prototype pollution');
    t.equal(Object.getOwnPropertyDescriptor(proto.command.instance.Meta, '__proto__')?.value, 'x');
  }
});

t.test('a retried request ID returns the stored result without applying again', async (t) => {
  const h = new Harness();
  t.same(h.apply(reg('api', 'a'), 'rid-1'), { ok: true, changed: true });
  h.apply(dereg('api', 'a'));
  t.same(h.apply(reg('api', 'a'), 'rid-1'), { ok: true, changed: true }, 'the stored result');
  t.equal(h.sm.instance('default', 'api', 'a'), undefined, 'not applied again');
  t.same(h.apply(status('ghost', 'passing'), 'rid-2'), { ok: false, error: 'CheckID "ghost" does not have associated TTL', status: 404 });
  t.same(h.apply(reg('api', 'b'), 'rid-2'), { ok: false, error: 'CheckID "ghost" does not have associated TTL', status: 404 });
  t.equal(h.sm.instance('default', 'api', 'b'), undefined);
  t.same(h.apply(reg('api', 'a'), ''), { ok: true, changed: true }, 'an empty rid is never deduplicated');
});

t.test('the dedup table forgets the oldest request IDs beyond its bound', async (t) => {
  const h = new Harness({ dedupLimit: 2 });
  h.apply(reg('api', 'a'), 'r1');
  h.apply(reg('api', 'b'), 'r2');
  h.apply(reg('api', 'c'), 'r3');
  h.apply(dereg('api', 'a'));
  h.apply(dereg('api', 'c'));
  t.same(h.apply(reg('api', 'c'), 'r3'), { ok: true, changed: true });
  t.equal(h.sm.instance('default', 'api', 'c'), undefined, 'r3 remembered');
  t.same(h.apply(reg('api', 'a'), 'r1'), { ok: true, changed: true });
  t.ok(h.sm.instance('default', 'api', 'a'), 'r1 forgotten, so applied');
});

t.test('server records are upserted by ID', async (t) => {
  const h = new Harness();
  const s = (id: string, addr: string): RegistryCommand => ({ type: 'server', server: { ID: id, HTTPAddr: addr, RaftAddr: addr }, now: 0 });
  t.same(h.apply(s('s2', 'b:1')), { ok: true, changed: true });
  t.same(h.apply(s('s1', 'a:1')), { ok: true, changed: true });
  t.same(h.apply(s('s1', 'a:1')), { ok: true, changed: false });
  t.equal(h.sm.index(), 2);
  h.apply(s('s1', 'a:2'));
  t.same(
    h.sm.servers().map((x: ServerInfo) => [x.ID, x.HTTPAddr]),
    [
      ['s1', 'a:2'],
      ['s2', 'b:1'],
    ],
  );
  t.equal(h.sm.index(), 4);
  t.equal(h.sm.namespaceIndex('default'), 1, 'no namespace moved');
});

// ---------------------------------------------------------------- reads

t.test('reads are sorted: services by name, entries by node then ID, instances by service then ID', async (t) => {
  const h = new Harness();
  h.apply(reg('web', 'w2', { node: 'node-a' }));
  h.apply(reg('api', 'z', { node: 'node-a', checks: [checkSpec('cz')] }));
  h.apply(reg('api', 'b', { node: 'node-b', checks: [checkSpec('cb2'), checkSpec('cb1')] }));
  h.apply(reg('api', 'a', { node: 'node-b', checks: [checkSpec('ca')] }));
  h.apply(reg('web', 'w1', { node: 'node-b' }));
  t.same(h.sm.services('default').map(([n]) => n), ['api', 'web']);
  t.same(h.sm.serviceEntries('default', 'api').map((e) => e.instance.ID), ['z', 'a', 'b']);
  t.same(h.sm.instances('default').map((i) => `${i.Service}/${i.ID}`), ['api/a', 'api/b', 'api/z', 'web/w1', 'web/w2']);
  t.same(h.sm.checksOfService('default', 'api').map((c) => c.CheckID), ['cz', 'ca', 'cb1', 'cb2']);
  t.same(h.sm.checksInState('default', 'critical').map((c) => c.CheckID), ['ca', 'cb1', 'cb2', 'cz']);
  t.same(h.sm.checksInState('default', 'passing'), []);
  h.apply(reg('web', 'z'));
  t.same(h.sm.instancesById('default', 'z').map((i) => i.Service), ['api', 'web']);
  // A Node change reorders.
  h.apply(reg('api', 'b', { node: 'node-0', checks: [checkSpec('cb2'), checkSpec('cb1')] }));
  t.same(h.sm.serviceEntries('default', 'api').map((e) => e.instance.ID), ['b', 'z', 'a']);
});

t.test('a service’s entries are cached until that service changes', async (t) => {
  const h = new Harness();
  h.apply(reg('api', 'a', { checks: [checkSpec('c1')] }));
  h.apply(reg('web', 'w'));
  const first = h.sm.serviceEntries('default', 'api');
  t.equal(h.sm.serviceEntries('default', 'api'), first, 'same array');
  h.apply(reg('web', 'w2'));
  t.equal(h.sm.serviceEntries('default', 'api'), first, 'another service changing does not invalidate');
  h.apply(reg('api', 'a', { checks: [checkSpec('c1')] }));
  t.equal(h.sm.serviceEntries('default', 'api'), first, 'an unchanged re-registration does not invalidate');
  h.apply(status('c1', 'passing'));
  const second = h.sm.serviceEntries('default', 'api');
  t.not(second, first);
  t.equal(second[0]!.health, 'passing');
  t.equal(first[0]!.health, 'critical', 'earlier readers keep their consistent view');
  t.equal(second[0]!.instance, first[0]!.instance, 'the unchanged instance record is shared');
});

// ---------------------------------------------------------------- snapshots

t.test('snapshot captures a point in time: later applies do not leak into it', async (t) => {
  const h = new Harness();
  h.apply(reg('api', 'a', { checks: [checkSpec('c1')] }), 'r1');
  const writer = h.sm.snapshot();
  const digestAtCapture = h.sm.digest();
  h.apply(status('c1', 'passing'));
  h.apply(reg('api', 'b'));
  const restored = new RegistryStateMachine();
  restored.restore(await writer(), meta);
  t.equal(restored.digest(), digestAtCapture);
  t.equal(restored.checksOfService('default', 'api')[0]!.Status, 'critical');
  t.same(restored.apply({ index: 9, term: 1, type: 'normal', data: encodeCommand(dereg('api', 'a')), rid: 'r1' }), {
    ok: true,
    changed: true,
  });
  t.ok(restored.instance('default', 'api', 'a'), 'the dedup table travelled with the snapshot');
});

t.test('restore replaces everything, including tombstones and servers', async (t) => {
  const a = new Harness();
  a.apply(reg('api', 'a'));
  a.apply(dereg('api', 'a'));
  a.apply({ type: 'server', server: { ID: 's1', HTTPAddr: 'x:1', RaftAddr: 'x:2' }, now: 0 });
  const b = new Harness();
  b.apply(reg('db', 'd', { ns: 'zzz', checks: [checkSpec('c1')] }));
  b.sm.restore(await a.sm.snapshot()(), meta);
  t.equal(b.sm.digest(), a.sm.digest());
  t.same(b.sm.namespaces(), []);
  t.same(b.sm.services('zzz'), []);
  t.equal(b.sm.serviceIndex('default', 'api'), 2);
  t.same(b.sm.servers(), [{ ID: 's1', HTTPAddr: 'x:1', RaftAddr: 'x:2' }]);
  t.equal(b.sm.index(), 3);
});

t.test('a malformed snapshot is refused and the state is left as it was', async (t) => {
  const h = new Harness();
  h.apply(reg('api', 'a', { checks: [checkSpec('c1')] }));
  const before = h.sm.digest();
  const bytes = await h.sm.snapshot()();
  const good = JSON.parse(Buffer.from(bytes).toString()) as Record<string, unknown>;
  const cases: unknown[] = [
    'nope',
    { ...good, format: 'other' },
    { ...good, version: 3 },
    { ...good, index: -1 },
    { ...good, namespaces: [{ name: 'default', index: 1, catalogIndex: 1, services: [{ name: 'api', index: 1, instances: [] }], tombstones: [] }] },
  ];
  for (const c of cases) {
    t.throws(() => h.sm.restore(Buffer.from(typeof c === 'string' ? c : JSON.stringify(c)), meta), { code: 'SIDER_BAD_REQUEST' });
  }
  // A check filed under the wrong instance (the object form names it; the compact one leaves it out).
  const wrong = JSON.parse(Buffer.from(encodeSnapshot(decodeSnapshot(bytes))).toString()) as { namespaces: { services: { instances: { checks: { ServiceID: string }[] }[] }[] }[] };
  wrong.namespaces[0]!.services[0]!.instances[0]!.checks[0]!.ServiceID = 'other';
  t.throws(() => h.sm.restore(Buffer.from(JSON.stringify(wrong)), meta), { code: 'SIDER_BAD_REQUEST' });
  t.equal(h.sm.digest(), before);
});
