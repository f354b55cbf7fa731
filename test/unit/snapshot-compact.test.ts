// Snapshots in the compact form (version 2): what snapshot() writes, a third of the object form's
// bytes, read back to the same records; the object form (version 1, snapshots written before it)
// is still read; bad compact data is refused naming the field, and a refused restore changes nothing.

import t from 'tap';
import fc from 'fast-check';
import { decodeSnapshot, encodeCommand, encodeSnapshot } from '../../src/registry/command-codec.ts';
import type { ApplyResult, RegistryCommand } from '../../src/registry/model.ts';
import { checkSpec } from '../../src/registry/specs.ts';
import { RegistryStateMachine } from '../../src/registry/state-machine.ts';
import type { SnapshotMeta } from '../../raft/types.ts';
import { SiderError } from '../../raft/errors.ts';

const meta: SnapshotMeta = { index: 0, term: 1, membership: { voters: [], learners: [], addrs: {}, removed: [] } };

class Machine {
  readonly sm = new RegistryStateMachine();
  next = 1;
  apply(cmd: RegistryCommand): ApplyResult {
    return this.sm.apply({ index: this.next++, term: 1, type: 'normal', data: encodeCommand(cmd), rid: '' });
  }
}

/** The benchmark's registration (http-register.lua): a TTL check, two tags, one meta key. */
function benchReg(n: number): RegistryCommand {
  return {
    type: 'register',
    ns: 'default',
    node: 'n1',
    instance: {
      Service: `bench-reg-${n % 16}`,
      ID: `wrkm-1-${n}`,
      Address: `10.0.${n >> 8}.${n & 255}`,
      Port: 8080,
      Tags: ['v1', 'http'],
      Meta: { version: '1.2.3' },
      Weights: { Passing: 1, Warning: 1 },
      TaggedAddresses: {},
      EnableTagOverride: false,
    },
    checks: [checkSpec(`service:wrkm-1-${n}`, { Name: `Service 'bench-reg-${n % 16}' check`, TTL: '10m' })],
    replaceExistingChecks: false,
    now: 1_000 + n,
  };
}

/** Everything a record can hold: tagged addresses, weights, several checks, a check left on another node. */
function richMachine(): Machine {
  const m = new Machine();
  for (let n = 0; n < 20; n++) m.apply(benchReg(n));
  m.apply({
    type: 'register',
    ns: 'team-a',
    node: 'n2',
    nodeAddress: '10.9.9.9',
    instance: {
      Service: 'db',
      ID: 'db-1',
      Address: '10.1.1.1',
      Port: 5432,
      Tags: ['primary', 'ü'],
      Meta: { zone: 'a', 'ключ': 'значение' },
      Weights: { Passing: 3, Warning: 2 },
      TaggedAddresses: { lan: { Address: '10.1.1.1', Port: 5432 }, wan: { Address: '1.2.3.4', Port: 15432 } },
      EnableTagOverride: true,
    },
    checks: [
      checkSpec('db-ttl', { Name: 'ttl', TTL: '30s', Status: 'passing', Notes: 'n' }),
      checkSpec('db-http', { Name: 'http', Type: 'http', HTTP: 'http://127.0.0.1:1/h', Interval: '10s', Header: { 'X-A': ['1', '2'] }, Method: 'HEAD' }),
    ],
    replaceExistingChecks: false,
    now: 5_000,
  });
  // Registered again from another node without its TTL check: that check keeps the old node.
  m.apply({
    type: 'register',
    ns: 'team-a',
    node: 'n3',
    instance: { Service: 'db', ID: 'db-1', Address: '10.1.1.1', Port: 5432, Tags: [], Meta: {}, Weights: { Passing: 1, Warning: 1 }, TaggedAddresses: {}, EnableTagOverride: false },
    checks: [checkSpec('db-http', { Name: 'http', Type: 'http', HTTP: 'http://127.0.0.1:1/h', Interval: '10s' })],
    replaceExistingChecks: false,
    now: 6_000,
  });
  m.apply({ type: 'checkStatus', ns: 'default', checkId: 'service:wrkm-1-3', status: 'warning', output: 'slow', now: 7_000 });
  return m;
}

/** Every read the API makes of a namespace's services, as JSON (key order included). */
function reads(sm: RegistryStateMachine): string {
  const out: unknown[] = [];
  for (const ns of ['default', 'team-a']) for (const [svc] of sm.services(ns)) out.push(sm.serviceEntries(ns, svc));
  return JSON.stringify(out);
}

t.test('snapshots are written in the compact form: a third of the object form, the same records when read', async (t) => {
  const m = richMachine();
  const bytes = Buffer.from(await m.sm.snapshot()());
  t.equal((JSON.parse(bytes.toString('utf8')) as { version: number }).version, 2, 'version 2');
  const data = decodeSnapshot(bytes);
  t.equal(data.version, 1, 'read into the object form');
  const objectForm = encodeSnapshot(data);
  t.ok(bytes.length < objectForm.length * 0.45, `${bytes.length} bytes against ${objectForm.length} in the object form`);

  const restored = new RegistryStateMachine();
  restored.restore(bytes, meta);
  t.equal(restored.digest(), m.sm.digest(), 'the same state');
  t.equal(reads(restored), reads(m.sm), 'the same answers, keys in the same order');
  const db = restored.serviceEntries('team-a', 'db')[0]!;
  t.same(db.checks.map((c) => [c.CheckID, c.Node, c.Namespace, c.ServiceName, c.ServiceID]), [
    ['db-http', 'n3', 'team-a', 'db', 'db-1'],
    ['db-ttl', 'n2', 'team-a', 'db', 'db-1'],
  ], 'a check keeps its own node; the rest comes from where it is filed');
});

t.test('a snapshot in the object form (written before the compact one) restores to the same state', async (t) => {
  const m = richMachine();
  const old = encodeSnapshot(decodeSnapshot(await m.sm.snapshot()()));
  t.equal((JSON.parse(Buffer.from(old).toString('utf8')) as { version: number }).version, 1);
  const restored = new RegistryStateMachine();
  restored.restore(old, meta);
  t.equal(restored.digest(), m.sm.digest());
  t.equal(reads(restored), reads(m.sm));
  // Its next snapshot is compact, and the same state again.
  const again = new RegistryStateMachine();
  again.restore(await restored.snapshot()(), meta);
  t.equal(again.digest(), m.sm.digest());
});

t.test('bad compact data is refused naming the field, and a refused restore changes nothing', async (t) => {
  const source = richMachine();
  const good = JSON.parse(Buffer.from(await source.sm.snapshot()()).toString('utf8'));
  const target = new Machine();
  target.apply(benchReg(999));
  const digest = target.sm.digest();
  const refuse = (mutate: (doc: any) => void): string => {
    const doc = structuredClone(good);
    mutate(doc);
    try {
      target.sm.restore(Buffer.from(JSON.stringify(doc)), meta);
      return 'accepted';
    } catch (err) {
      if (!(err instanceof SiderError) || err.code !== 'SIDER_BAD_REQUEST') throw err;
      return err.message;
    }
  };
  const el = 'snapshot.namespaces[0].services[0].instances[0]';
  const first = (doc: any): any[] => doc.namespaces[0].services[0].instances[0];
  t.equal(refuse((d) => (d.version = 3)), 'snapshot.version: must be 1 or 2');
  t.equal(refuse((d) => first(d).push(0)), `${el}: must be an array of 2 elements`);
  t.equal(refuse((d) => (d.namespaces[0].services[0].instances[0] = { instance: {}, checks: [] })), `${el}: must be an array of 2 elements`, 'an object where version 2 has an array');
  t.equal(refuse((d) => first(d)[0].pop()), `${el}[0]: must be an array of 13 elements`);
  t.equal(refuse((d) => (first(d)[0][0] = '')), `${el}[0].ID: must not be empty`);
  t.equal(refuse((d) => (first(d)[0][2] = 70_000)), `${el}[0].Port: must be an integer in [0, 65535]`);
  t.equal(refuse((d) => (first(d)[0][9] = 1)), `${el}[0].Node: must be a string`);
  t.equal(refuse((d) => (first(d)[0][12] = -1)), `${el}[0].ModifyIndex: must be an integer in [0, 9007199254740991]`);
  t.equal(refuse((d) => (first(d)[1] = {})), `${el}[1]: must be an array`);
  t.equal(refuse((d) => first(d)[1][0].pop()), `${el}[1][0]: must be an array of 23 elements`);
  t.equal(refuse((d) => (first(d)[1][0][3] = '')), `${el}[1][0].Status: must be passing, warning or critical`, 'a stored check has a status');
  t.equal(refuse((d) => (first(d)[1][0][20] = null)), `${el}[1][0].Node: must be a string`);
  t.equal(
    refuse((d) => first(d)[1].push(structuredClone(d.namespaces[0].services[0].instances[1][1][0]))),
    `snapshot.namespaces[0].services[0].instances[1]: duplicate CheckID "${good.namespaces[0].services[0].instances[1][1][0][0]}"`,
    'a check ID filed under two instances',
  );
  t.equal(target.sm.digest(), digest, 'nothing changed');

  // Any value anywhere in an element: refused or accepted, never another error.
  await fc.assert(
    fc.property(fc.nat(1), fc.nat(30), fc.jsonValue(), (i, j, v) => {
      const r = refuse((d) => {
        const part = first(d)[i];
        if (i === 1) part[0][j % part[0].length] = v;
        else part[j % part.length] = v;
      });
      return r.length > 0;
    }),
    { numRuns: 1_000 },
  );
});
