// PUT /v1/catalog/register bodies (Consul's CatalogRegistration): the node name and address are
// validated like `sider agent`'s node_name, every bad field is a 400 naming it, and the node travels
// through Raft entries and snapshots deterministically (also from data written before the field).

import t from 'tap';
import { parseCatalogRegisterBody } from '../../http/catalog-register.ts';
import { decodeCommand, decodeSnapshot, encodeCommand, encodeSnapshot } from '../../src/registry/command-codec.ts';
import type { RegistryCommand } from '../../src/registry/model.ts';
import { RegistryStateMachine } from '../../src/registry/state-machine.ts';

const opts = { enableScriptChecks: false };

function body(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    Node: 'host-1',
    Address: '10.0.0.7',
    Service: { Service: 'web', ID: 'web-1', Address: '127.0.0.1', Port: 80, Tags: ['v1'] },
    Checks: [{ Node: 'host-1', CheckID: 'web-1-ttl', Name: 'web alive', ServiceID: 'web-1', Status: 'passing', Definition: { TTL: '30s' } }],
    ...over,
  };
}

function withCheck(over: Record<string, unknown>): Record<string, unknown> {
  const b = body();
  return { ...b, Checks: [{ ...(b.Checks as Record<string, unknown>[])[0], ...over }] };
}

t.test('a Consul CatalogRegistration parses: node, its address, the service and its checks', async (t) => {
  const p = parseCatalogRegisterBody(body(), opts);
  t.equal(p.node, 'host-1');
  t.equal(p.nodeAddress, '10.0.0.7');
  t.match(p.instance, { Service: 'web', ID: 'web-1', Address: '127.0.0.1', Port: 80, Tags: ['v1'] });
  t.equal(p.checks.length, 1);
  t.match(p.checks[0], { CheckID: 'web-1-ttl', Name: 'web alive', Type: 'ttl', TTL: '30s', Status: 'passing' });
  t.equal(p.namespace, undefined);

  const noAddress = parseCatalogRegisterBody(body({ Address: undefined }), opts);
  t.equal(noAddress.nodeAddress, '', 'the node address is optional');

  const snake = parseCatalogRegisterBody(
    { node: 'host-1', address: 'host-1.example', service: { service: 'web', id: 'web-1' }, check: { service_id: 'web-1', ttl: '10s' }, namespace: 'team-a' },
    opts,
  );
  t.equal(snake.nodeAddress, 'host-1.example');
  t.equal(snake.checks[0]!.CheckID, 'service:web-1', 'unnamed checks get DESIGN §2 IDs');
  t.equal(snake.checks[0]!.TTL, '10s', 'probe fields beside Definition are taken too');
  t.equal(snake.namespace, 'team-a');

  const ignored = parseCatalogRegisterBody(body({ ID: 'x', NodeMeta: { rack: 'r1' }, TaggedAddresses: { lan: '10.0.0.7' }, SkipNodeUpdate: true, Datacenter: 'dc1' }), opts);
  t.equal(ignored.datacenter, 'dc1');
  t.equal(ignored.node, 'host-1');
});

// [what, body, message pattern]: the message starts with the field's path.
const BAD: [string, unknown, RegExp][] = [
  ['not an object', [], /^request body must be a JSON object/],
  ['no Node', body({ Node: undefined }), /^Node: required/],
  ['empty Node', body({ Node: '' }), /^Node: required/],
  ['Node with a space', body({ Node: 'a b' }), /^Node: invalid node name "a b": 1-128 letters/],
  ['Node too long', body({ Node: 'n'.repeat(129) }), /^Node: invalid node name/],
  ['Node not a string', body({ Node: 7 }), /^Node: invalid node name 7/],
  ['Node with a slash', body({ Node: 'a/b' }), /^Node: invalid node name/],
  ['unspecified Address', body({ Address: '0.0.0.0' }), /^Address: .*unspecified/],
  ['Address not a string', body({ Address: 10 }), /^Address: must be a string/],
  ['no Service', body({ Service: undefined }), /^Service: required/],
  ['Service not an object', body({ Service: 'web' }), /^Service: must be an object/],
  ['no service name', body({ Service: { ID: 'web-1' } }), /^Service\.Service: required/],
  ['bad service name', body({ Service: { Service: 'web_1' } }), /^Service\.Service: invalid service name/],
  ['bad service port', body({ Service: { Service: 'web', ID: 'web-1', Port: 70000 } }), /^Service\.Port: must be between 0 and 65535/],
  ['checks inside the Service', body({ Service: { Service: 'web', ID: 'web-1', Checks: [] , Check: { TTL: '1s' } } }), /^Service\.Check: give the checks beside the Service/],
  ['node-level check', withCheck({ ServiceID: undefined }), /^Checks\[0\]\.ServiceID: required: Sider has no node-level checks/],
  ['check of another service', withCheck({ ServiceID: 'db-1' }), /^Checks\[0\]\.ServiceID: must be the registered Service's ID "web-1"/],
  ['check of another node', withCheck({ Node: 'host-2' }), /^Checks\[0\]\.Node: must be the registration's Node "host-1"/],
  ['bad TTL in Definition', withCheck({ Definition: { TTL: 'soon' } }), /^Checks\[0\]\.Definition\.TTL: /],
  ['TTL given twice', withCheck({ TTL: '10s', Definition: { TTL: '20s' } }), /^Checks\[0\]\.Definition\.TTL: also given as Checks\[0\]\.TTL/],
  ['Definition not an object', withCheck({ Definition: 'ttl' }), /^Checks\[0\]\.Definition: must be an object/],
  ['script check without the flag', withCheck({ Definition: { Args: ['/bin/true'], Interval: '10s' } }), /^Checks\[0\]\.Definition\.Args: script checks are disabled/],
  ['bad status', withCheck({ Status: 'ok' }), /^Checks\[0\]\.Status: must be "passing"/],
  ['duplicate check IDs', body({ Checks: [{ CheckID: 'a', ServiceID: 'web-1', TTL: '1s' }, { CheckID: 'a', ServiceID: 'web-1', TTL: '1s' }] }), /^Checks\[1\]\.CheckID: "a" appears more than once/],
  ['namespaces disagree', body({ Namespace: 'a', Service: { Service: 'web', Namespace: 'b' } }), /^Namespace: "a" but Service\.Namespace is "b"/],
  ['bad namespace', body({ Namespace: 'A' }), /^Namespace: invalid namespace/],
];

t.test('every bad field is a 400 naming it', async (t) => {
  for (const [what, b, pattern] of BAD) {
    t.throws(() => parseCatalogRegisterBody(b, opts), { code: 'SIDER_BAD_REQUEST', status: 400, message: pattern }, what);
  }
  const scripted = parseCatalogRegisterBody(withCheck({ Definition: { Args: ['/bin/true'], Interval: '10s' } }), { enableScriptChecks: true });
  t.same(scripted.checks[0]!.Args, ['/bin/true'], 'script checks pass with the server flag');
});

function registerCmd(node: string, nodeAddress: string | undefined): RegistryCommand {
  const b = body({ Node: node, Address: nodeAddress });
  b.Checks = (b.Checks as Record<string, unknown>[]).map((c) => ({ ...c, Node: node }));
  const p = parseCatalogRegisterBody(b, opts);
  return {
    type: 'register',
    ns: 'default',
    node: p.node,
    ...(nodeAddress === undefined ? {} : { nodeAddress: p.nodeAddress }),
    instance: p.instance,
    checks: p.checks,
    replaceExistingChecks: false,
    now: 1_000,
  };
}

class Harness {
  readonly sm = new RegistryStateMachine();
  next = 1;
  apply(cmd: RegistryCommand | Uint8Array) {
    const data = cmd instanceof Uint8Array ? cmd : encodeCommand(cmd);
    return this.sm.apply({ index: this.next++, term: 1, type: 'normal', data, rid: '' });
  }
}

t.test('the node and its address are replicated state: upserts, indexes and snapshots', async (t) => {
  const h = new Harness();
  t.same(h.apply(registerCmd('host-1', '10.0.0.7')), { ok: true, changed: true });
  t.match(h.sm.instance('default', 'web', 'web-1'), { Node: 'host-1', NodeAddress: '10.0.0.7', ModifyIndex: 1 });
  t.match(h.sm.checksOfService('default', 'web')[0], { Node: 'host-1' }, 'its checks carry the node too');
  t.same(h.apply(registerCmd('host-1', '10.0.0.7')), { ok: true, changed: false }, 'the same registration changes nothing');
  t.equal(h.sm.serviceIndex('default', 'web'), 1);
  t.same(h.apply(registerCmd('host-1', '10.0.0.8')), { ok: true, changed: true }, 'a new node address is a change');
  t.match(h.sm.instance('default', 'web', 'web-1'), { NodeAddress: '10.0.0.8', ModifyIndex: 3, CreateIndex: 1 });
  t.equal(h.sm.serviceIndex('default', 'web'), 3);
  t.same(h.apply(registerCmd('host-2', undefined)), { ok: true, changed: true }, 'another node takes the instance over');
  t.match(h.sm.instance('default', 'web', 'web-1'), { Node: 'host-2', NodeAddress: '' });
  h.apply(registerCmd('host-1', '10.0.0.7'));

  const snap = await h.sm.snapshot()();
  const restored = new RegistryStateMachine();
  restored.restore(snap);
  t.equal(restored.digest(), h.sm.digest(), 'a restored snapshot has the same state');
  t.match(restored.instance('default', 'web', 'web-1'), { Node: 'host-1', NodeAddress: '10.0.0.7' });

  // A snapshot written before instances had NodeAddress (so in the object form, version 1).
  const doc = JSON.parse(Buffer.from(encodeSnapshot(decodeSnapshot(snap))).toString('utf8')) as Record<string, unknown>;
  let removed = 0;
  const strip = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(strip);
    else if (typeof v === 'object' && v !== null) {
      const o = v as Record<string, unknown>;
      if ('NodeAddress' in o && 'Node' in o && 'Port' in o) {
        delete o.NodeAddress;
        removed++;
      }
      Object.values(o).forEach(strip);
    }
  };
  strip(doc);
  t.equal(removed, 1, 'the snapshot held the field once');
  const old = new RegistryStateMachine();
  old.restore(Buffer.from(JSON.stringify(doc)));
  t.match(old.instance('default', 'web', 'web-1'), { Node: 'host-1', NodeAddress: '' }, 'an old snapshot restores with no node address');
});

t.test('an entry written before registrations named the node address decodes and applies the same everywhere', async (t) => {
  const cmd = registerCmd('host-1', undefined);
  const decoded = decodeCommand(encodeCommand(cmd));
  t.ok(decoded.ok);
  t.notOk(decoded.ok && 'nodeAddress' in decoded.command, 'no field appears that the entry did not hold');
  const withAddress = decodeCommand(encodeCommand(registerCmd('host-1', '10.0.0.7')));
  t.match(withAddress, { ok: true, command: { nodeAddress: '10.0.0.7' } });
  const bad = decodeCommand(Buffer.from(JSON.stringify({ ...cmd, nodeAddress: 7 })));
  t.same(bad, { ok: false, error: 'nodeAddress: must be a string' }, 'refused identically on every node');
  const a = new Harness();
  const b = new Harness();
  a.apply(cmd);
  b.apply(encodeCommand(cmd));
  t.equal(a.sm.digest(), b.sm.digest());
  t.equal(a.sm.instance('default', 'web', 'web-1')!.NodeAddress, '');
});
