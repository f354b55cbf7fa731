// Registry commands as entry data: registrations take the compact form (a JSON array by position),
// which must decode to exactly the command the object form gives — the object form is what older
// logs hold and what every other command uses — and bad compact data is refused, naming the field.

import { isDeepStrictEqual } from 'node:util';
import t from 'tap';
import fc from 'fast-check';
import { registerCommand } from '../../http/register-fast.ts';
import { decodeCommand, encodeCommand, encodeCommandKnown } from '../../src/registry/command-codec.ts';
import type { CheckSpec, RegistryCommand } from '../../src/registry/model.ts';
import { RegistryStateMachine } from '../../src/registry/state-machine.ts';

const checkArb: fc.Arbitrary<CheckSpec> = fc.record({
  CheckID: fc.string({ minLength: 1 }),
  Name: fc.string(),
  Type: fc.constantFrom('ttl', 'http', 'tcp', 'grpc', 'cmd', 'maintenance'),
  Status: fc.constantFrom('', 'passing', 'warning', 'critical'),
  Notes: fc.string(),
  Output: fc.string(),
  Interval: fc.string(),
  Timeout: fc.string(),
  TTL: fc.string(),
  DeregisterCriticalServiceAfter: fc.string(),
  SuccessBeforePassing: fc.nat(),
  FailuresBeforeCritical: fc.nat(),
  HTTP: fc.string(),
  Method: fc.string(),
  Header: fc.dictionary(fc.string(), fc.array(fc.string(), { maxLength: 3 }), { maxKeys: 3 }),
  TCP: fc.string(),
  GRPC: fc.string(),
  GRPCUseTLS: fc.boolean(),
  TLSSkipVerify: fc.boolean(),
  Args: fc.array(fc.string(), { maxLength: 3 }),
});

const registerArb: fc.Arbitrary<RegistryCommand> = fc
  .record(
    {
      ns: fc.string({ minLength: 1 }),
      node: fc.string(),
      nodeAddress: fc.string(),
      instance: fc.record({
        Service: fc.string({ minLength: 1 }),
        ID: fc.string(),
        Address: fc.string(),
        Port: fc.nat(65535),
        Tags: fc.array(fc.string(), { maxLength: 4 }),
        Meta: fc.dictionary(fc.string(), fc.string(), { maxKeys: 4 }),
        Weights: fc.record({ Passing: fc.nat(), Warning: fc.nat() }),
        TaggedAddresses: fc.dictionary(fc.string(), fc.record({ Address: fc.string(), Port: fc.nat(65535) }), { maxKeys: 2 }),
        EnableTagOverride: fc.boolean(),
      }),
      checks: fc.array(checkArb, { maxLength: 3 }),
      replaceExistingChecks: fc.boolean(),
      now: fc.oneof(fc.nat(), fc.double({ noNaN: true, noDefaultInfinity: true })),
    },
    { requiredKeys: ['ns', 'node', 'instance', 'checks', 'replaceExistingChecks', 'now'] },
  )
  .map((r) => ({ type: 'register' as const, ...r }));

const objectForm = (cmd: RegistryCommand): Buffer => Buffer.from(JSON.stringify(cmd), 'utf8');
/** The command the HTTP API builds from a registration body. */
const fromBody = (body: unknown): RegistryCommand => registerCommand(body, {}, '', { enableScriptChecks: false, defaultNamespace: 'default', nodeName: 'n1' });

t.test('property: a registration decodes from its compact form to what its object form gives', async (t) => {
  await fc.assert(
    fc.property(registerArb, (cmd) => {
      const data = encodeCommand(cmd);
      if (data[0] !== 0x5b) return false; // '[': the compact form
      const compact = decodeCommand(data);
      const object = decodeCommand(objectForm(cmd));
      return compact.ok && object.ok && isDeepStrictEqual(compact.command, object.command) && JSON.stringify(compact.command) === JSON.stringify(object.command);
    }),
    { numRuns: 2_000 },
  );
  t.pass('2,000 random registrations');
});

t.test('the two forms of the same registrations give the same state', async (t) => {
  const cmds = fc.sample(registerArb, { numRuns: 300, seed: 42 });
  // Few distinct names, so that registrations replace and extend one another.
  const narrowed = cmds.map((c, n) => (c.type === 'register' ? { ...c, ns: `ns${n % 2}`, instance: { ...c.instance, Service: `s${n % 3}`, ID: `i${n % 5}` }, checks: c.checks.map((k, j) => ({ ...k, CheckID: `c${(n + j) % 7}` })) } : c));
  const a = new RegistryStateMachine();
  const b = new RegistryStateMachine();
  for (const [n, cmd] of narrowed.entries()) {
    const ra = a.apply({ index: n + 1, term: 1, type: 'normal', rid: '', data: encodeCommand(cmd) });
    const rb = b.apply({ index: n + 1, term: 1, type: 'normal', rid: '', data: objectForm(cmd) });
    if (!isDeepStrictEqual(ra, rb)) t.fail(`entry ${n + 1}: ${JSON.stringify(ra)} != ${JSON.stringify(rb)}`);
  }
  t.equal(a.digest(), b.digest());
  t.ok(a.index() > 0, 'something was applied');
});

/** Strings with lone surrogates and any code point, integer-like and "__proto__" keys, -0: what JSON might not carry unchanged. */
const oddString = fc.oneof(
  fc.string(),
  fc.string({ unit: fc.oneof(fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)), fc.constantFrom('\u0000', '"', '\\', '\u2028', '😀', 'é')) }),
  fc.constantFrom('__proto__', '0', '12', '-1', '1e3', 'constructor'),
);
const oddNat = (max: number): fc.Arbitrary<number> => fc.oneof(fc.nat(max), fc.constant(-0));
const oddRegisterArb: fc.Arbitrary<RegistryCommand> = fc
  .record({
    ns: oddString.filter((v) => v !== ''),
    node: oddString,
    nodeAddress: fc.option(oddString, { nil: undefined }),
    instance: fc.record({
      Service: oddString.filter((v) => v !== ''),
      ID: oddString,
      Address: oddString,
      Port: oddNat(65535),
      Tags: fc.array(oddString, { maxLength: 4 }),
      Meta: fc.dictionary(oddString, oddString, { maxKeys: 4 }),
      Weights: fc.record({ Passing: oddNat(3), Warning: oddNat(3) }),
      TaggedAddresses: fc.dictionary(oddString, fc.record({ Address: oddString, Port: oddNat(65535) }), { maxKeys: 2 }),
      EnableTagOverride: fc.boolean(),
    }),
    checks: fc.array(
      checkArb.chain((c) =>
        fc.record({ Notes: oddString, Header: fc.dictionary(oddString, fc.array(oddString, { maxLength: 2 }), { maxKeys: 2 }), SuccessBeforePassing: oddNat(5) }).map((o) => ({ ...c, ...o })),
      ),
      { maxLength: 3 },
    ),
    replaceExistingChecks: fc.boolean(),
    now: fc.oneof(fc.nat(), fc.constant(-0), fc.double({ noNaN: true, noDefaultInfinity: true })),
  })
  .map(({ nodeAddress, ...r }) => ({ type: 'register' as const, ...r, ...(nodeAddress === undefined ? {} : { nodeAddress }) }));

t.test('property: the command encodeCommandKnown gives with the bytes is exactly what decoding the bytes reads', async (t) => {
  await fc.assert(
    fc.property(fc.oneof(registerArb, oddRegisterArb), (cmd) => {
      const { data, decoded } = encodeCommandKnown(cmd);
      const read = decodeCommand(data);
      // A lone surrogate is left to decoding (V8's JSON.parse may read it differently: next test).
      if (/\\ud[89a-f]/.test(Buffer.from(data).toString('utf8'))) return read.ok && decoded === undefined;
      if (!read.ok || decoded === undefined) return false;
      // Strict: Object.is on every value (so -0 and 0 differ), prototypes, own keys; and key order.
      return isDeepStrictEqual(decoded, read.command) && JSON.stringify(decoded) === JSON.stringify(read.command) && Buffer.compare(Buffer.from(data), Buffer.from(encodeCommand(cmd))) === 0;
    }),
    { numRuns: 3_000 },
  );
  t.pass('3,000 random registrations');
});

t.test('a registration holding a lone surrogate is decoded, not taken as held: V8 may parse it back differently', async (t) => {
  // V8 13.6 (Node 24.21): after a JSON.parse has read the one-character key "\\", a one-character
  // key written as a lone-surrogate escape is read as "\\" too, unless that surrogate is already an
  // interned string (so it is made at run time here, never written as a literal). Found by the
  // property above in a CI run.
  const lone = String.fromCharCode(0xd90e);
  const backslash = String.fromCharCode(0x5c);
  JSON.parse(`{"${backslash}${backslash}":1}`);
  const parsedKey = Object.keys(JSON.parse(JSON.stringify({ [lone]: 1 })) as object)[0];
  t.comment(`this V8 reads the key back as U+${parsedKey?.charCodeAt(0).toString(16)}`);
  // The HTTP API refuses such a Meta key; a command can still hold one (the codec takes any string).
  const base = fromBody({ Name: 'api', ID: 'a1', Port: 80 });
  if (base.type !== 'register') throw new Error('not a registration');
  const cmd: RegistryCommand = { ...base, instance: { ...base.instance, Meta: { [lone]: 'v' } } };
  const known = encodeCommandKnown(cmd);
  t.equal(known.decoded, undefined, 'not remembered');
  const read = decodeCommand(known.data);
  t.ok(read.ok);
  // Whatever this process's JSON.parse reads is what every node applies (each decodes the bytes).
  if (read.ok && read.command.type === 'register') t.same(Object.keys(read.command.instance.Meta), [parsedKey]);
});

t.test('encodeCommandKnown knows nothing for a registration the reader refuses, or for another command', async (t) => {
  const cmd = fromBody({ Name: 'api', ID: 'a1', Port: 80, Check: { TTL: '10s' } });
  if (cmd.type !== 'register') throw new Error('not a registration');
  const refused = { ...cmd, instance: { ...cmd.instance, Port: 70_000 } };
  const known = encodeCommandKnown(refused);
  t.equal(known.decoded, undefined);
  t.same(decodeCommand(known.data), { ok: false, error: 'instance.Port: must be an integer in [0, 65535]' });
  // Values whose JSON differs from what they hold in memory: the reader refuses them in memory
  // too, so the bytes are decoded when applied (and refused there, or read as JSON gave them).
  const inMemory: [string, (c: Extract<RegistryCommand, { type: 'register' }>) => unknown][] = [
    ['a Date as Meta', (c) => ({ ...c, instance: { ...c.instance, Meta: new Date(0) } })],
    ['a Map as Meta', (c) => ({ ...c, instance: { ...c.instance, Meta: new Map([['k', 'v']]) } })],
    ['Tags with a toJSON', (c) => ({ ...c, instance: { ...c.instance, Tags: Object.assign(['a'], { toJSON: () => ['b'] }) } })],
    ['a class instance as a tagged address', (c) => ({ ...c, instance: { ...c.instance, TaggedAddresses: { lan: new (class { Address = 'x'; Port = 1; })() } } })],
  ];
  for (const [what, make] of inMemory) {
    const odd = make(cmd) as RegistryCommand;
    const k = encodeCommandKnown(odd);
    t.equal(k.decoded, undefined, what);
    const read = decodeCommand(k.data);
    if (read.ok) t.same(read.command, JSON.parse(JSON.stringify(read.command)), `${what}: decoded as JSON gave it`);
  }
  const dereg: RegistryCommand = { type: 'deregister', ns: 'default', service: 'api', id: 'a1', now: 1 };
  t.equal(encodeCommandKnown(dereg).decoded, undefined);
  t.same(Buffer.from(encodeCommandKnown(dereg).data), Buffer.from(encodeCommand(dereg)));
});

t.test('a machine applying what it proposed (encodeProposal) reaches the state of one that decodes every entry', async (t) => {
  const cmds = fc.sample(fc.oneof(registerArb, oddRegisterArb), { numRuns: 300, seed: 7 });
  const narrowed = cmds.map((c, n) => (c.type === 'register' ? { ...c, ns: `ns${n % 2}`, instance: { ...c.instance, Service: `s${n % 3}`, ID: `i${n % 5}` }, checks: c.checks.map((k, j) => ({ ...k, CheckID: `c${(n + j) % 7}` })) } : c));
  const leader = new RegistryStateMachine();
  const follower = new RegistryStateMachine();
  for (const [n, cmd] of narrowed.entries()) {
    const data = leader.encodeProposal(cmd);
    const ra = leader.apply({ index: n + 1, term: 1, type: 'normal', rid: '', data });
    // The follower's copy of the bytes, as the transport delivers it.
    const rb = follower.apply({ index: n + 1, term: 1, type: 'normal', rid: '', data: Buffer.from(data) });
    if (!isDeepStrictEqual(ra, rb)) t.fail(`entry ${n + 1}: ${JSON.stringify(ra)} != ${JSON.stringify(rb)}`);
  }
  t.equal(leader.digest(), follower.digest());
  t.equal(JSON.stringify(leader.instances('ns0')), JSON.stringify(follower.instances('ns0')));
  t.ok(leader.index() > 0, 'something was applied');
});

t.test('the benchmark registration is under 40 % of its object form', async (t) => {
  const body = { Name: 'bench-reg-7', ID: 'wrk-1-123', Address: '10.0.0.7', Port: 8080, Tags: ['v1', 'http'], Meta: { version: '1.2.3' }, Check: { TTL: '10m' } };
  const cmd = fromBody(body);
  const compact = encodeCommand(cmd).length;
  const object = objectForm(cmd).length;
  t.ok(compact < object * 0.4, `${compact} bytes against ${object}`);
});

t.test('bad compact data is refused, naming the field, and never throws', async (t) => {
  const cmd = fromBody({ Name: 'api', ID: 'a1', Port: 80, Check: { TTL: '10s' } });
  const good = JSON.parse(Buffer.from(encodeCommand(cmd)).toString('utf8')) as unknown[];
  const refuse = (mutate: (a: any) => void): string => {
    const a = structuredClone(good) as any;
    mutate(a);
    const r = decodeCommand(Buffer.from(JSON.stringify(a)));
    return r.ok ? 'accepted' : r.error;
  };
  t.equal(refuse((a) => (a[0] = 'r2')), 'command: an array command must start with "r1"');
  t.equal(refuse((a) => a.push(1)), 'command: must be an array of 8 elements');
  t.equal(refuse((a) => a[4].pop()), 'instance: must be an array of 10 elements');
  t.equal(refuse((a) => (a[5] = {})), 'checks: must be an array');
  t.equal(refuse((a) => a[5][0].pop()), 'checks[0]: must be an array of 20 elements');
  t.equal(refuse((a) => (a[1] = '')), 'ns: must not be empty');
  t.equal(refuse((a) => (a[3] = 5)), 'nodeAddress: must be a string');
  t.equal(refuse((a) => (a[4][3] = 70_000)), 'instance.Port: must be an integer in [0, 65535]', 'the object form’s message');
  t.equal(refuse((a) => (a[4][6] = -1)), 'instance.Weights.Passing: must be an integer in [0, 9007199254740991]');
  t.equal(refuse((a) => (a[5][0][2] = 'exec')), 'checks[0].Type: must be one of ttl, http, tcp, grpc, cmd, maintenance');
  t.equal(refuse((a) => (a[5][0][14] = [])), 'checks[0].Header: must be an object');
  t.equal(refuse((a) => (a[7] = '1')), 'now: must be a finite number');
  t.equal(refuse((a) => (a[4][4] = ['v1', 2])), 'instance.Tags[1]: must be a string');
  t.equal(refuse((a) => (a[4][4] = 'v1')), 'instance.Tags: must be an array');
  t.equal(refuse((a) => (a[4][5] = { k: 1 })), 'instance.Meta.k: must be a string');
  t.equal(refuse((a) => (a[4][8] = { lan: { Address: 'x', Port: -1 } })), 'instance.TaggedAddresses.lan.Port: must be an integer in [0, 65535]');
  t.equal(refuse((a) => (a[4][9] = 1)), 'instance.EnableTagOverride: must be a boolean');
  t.equal(refuse((a) => (a[4][0] = '')), 'instance.Service: must not be empty');
  t.equal(refuse((a) => (a[5][0][0] = 7)), 'checks[0].CheckID: must be a string');
  t.equal(refuse((a) => (a[5][0][3] = 'ok')), 'checks[0].Status: must be passing, warning or critical');
  t.equal(refuse((a) => (a[5][0][11] = 1.5)), 'checks[0].FailuresBeforeCritical: must be an integer in [0, 9007199254740991]');
  t.equal(refuse((a) => (a[5][0][14] = { 'X-A': ['1', 2] })), 'checks[0].Header.X-A[1]: must be a string');
  t.equal(refuse((a) => (a[5][0][19] = [3])), 'checks[0].Args[0]: must be a string');
  t.equal(decodeCommand(Buffer.from('[]')).ok, false);
  t.equal(decodeCommand(Buffer.from('[null]')).ok, false);

  // Any value anywhere in the compact form: refused or accepted, never a throw.
  await fc.assert(
    fc.property(fc.nat(7), fc.nat(20), fc.jsonValue(), (i, j, v) => {
      const a = structuredClone(good) as any;
      if (Array.isArray(a[i]) && a[i].length > 0) a[i][j % a[i].length] = v;
      else a[i] = v;
      const r = decodeCommand(Buffer.from(JSON.stringify(a)));
      return r.ok || r.error.length > 0;
    }),
    { numRuns: 2_000 },
  );
});

t.test('a __proto__ key in the compact form stays an ordinary own property', async (t) => {
  const cmd = fromBody({ Name: 'api', ID: 'a1', Port: 80 });
  const text = Buffer.from(encodeCommand(cmd)).toString('utf8').replace('{}', '{"__proto__":"x"}');
  const d = decodeCommand(Buffer.from(text));
  t.ok(d.ok);
  if (d.ok && d.command.type === 'register') {
    t.equal(Object.getPrototypeOf(d.command.instance.Meta), Object.prototype, 'no prototype pollution');
    t.equal(Object.getOwnPropertyDescriptor(d.command.instance.Meta, '__proto__')?.value, 'x');
  }
});

t.test('empty tags, meta, addresses, headers and args and default weights decode to shared frozen values', async (t) => {
  const decode = (body: unknown): Extract<RegistryCommand, { type: 'register' }> => {
    const r = decodeCommand(encodeCommand(fromBody(body)));
    if (!r.ok || r.command.type !== 'register') throw new Error('not a registration');
    return r.command;
  };
  const plain = { Name: 'api', Check: { TTL: '10s' } };
  const [a, b] = [decode({ ...plain, ID: 'a' }), decode({ ...plain, ID: 'b' })];
  for (const name of ['Tags', 'Meta', 'Weights', 'TaggedAddresses'] as const) {
    t.equal(a.instance[name], b.instance[name], `instance ${name} shared`);
    t.ok(Object.isFrozen(a.instance[name]), `instance ${name} frozen`);
  }
  t.same(a.instance.Weights, { Passing: 1, Warning: 1 });
  for (const name of ['Header', 'Args'] as const) {
    t.equal(a.checks[0]![name], b.checks[0]![name], `check ${name} shared`);
    t.ok(Object.isFrozen(a.checks[0]![name]), `check ${name} frozen`);
  }
  t.throws(() => (a.instance.Tags as string[]).push('x'), TypeError, 'a shared value cannot be changed');
  t.same(b.instance.Tags, []);

  const own = decode({ Name: 'api', ID: 'c', Tags: ['v1'], Meta: { k: 'v' }, Weights: { Passing: 3, Warning: 1 } });
  t.not(own.instance.Tags, a.instance.Tags, 'given values are the record\'s own');
  t.not(own.instance.Weights, a.instance.Weights);
  t.same(own.instance.Weights, { Passing: 3, Warning: 1 });
  t.notOk(Object.isFrozen(own.instance.Meta));
});

t.test('other commands keep the object form', async (t) => {
  const cmd: RegistryCommand = { type: 'deregister', ns: 'default', service: 'api', id: 'a1', now: 5 };
  t.equal(Buffer.from(encodeCommand(cmd)).toString('utf8'), JSON.stringify(cmd));
});
