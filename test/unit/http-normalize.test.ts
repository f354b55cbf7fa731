// Key normalization of register bodies: any spelling of a known field becomes Consul's PascalCase,
// recursively, while user-data maps (Meta, Header, TaggedAddresses' names) keep their keys.

import t from 'tap';
import fc from 'fast-check';
import { isSiderError } from '../../raft/errors.ts';
import { foldKey, normalizeKeys, registerShape } from '../../http/normalize.ts';

t.test('snake_case, camelCase and shouting all become PascalCase', async (t) => {
  const out = normalizeKeys(
    {
      name: 'web',
      id: 'web-1',
      ADDRESS: '10.0.0.1',
      port: 80,
      enable_tag_override: true,
      tagged_addresses: { lan: { address: '10.0.0.1', port: 80 } },
      weights: { passing: 3, WARNING: 1 },
      check: { ttl: '10s', check_id: 'c1', deregister_critical_service_after: '5m', tls_skip_verify: true, grpc_use_tls: false },
      checks: [{ http: 'http://x/', Interval: '10s', script_args: ['a'] }, { tcp: 'x:1', interval: '5s', successBeforePassing: 2 }],
    },
    registerShape,
  );
  t.same(out, {
    Name: 'web',
    ID: 'web-1',
    Address: '10.0.0.1',
    Port: 80,
    EnableTagOverride: true,
    TaggedAddresses: { lan: { Address: '10.0.0.1', Port: 80 } },
    Weights: { Passing: 3, Warning: 1 },
    Check: { TTL: '10s', CheckID: 'c1', DeregisterCriticalServiceAfter: '5m', TLSSkipVerify: true, GRPCUseTLS: false },
    Checks: [
      { HTTP: 'http://x/', Interval: '10s', Args: ['a'] },
      { TCP: 'x:1', Interval: '5s', SuccessBeforePassing: 2 },
    ],
  });
});

t.test('Meta and Header keys are user data and are kept exactly', async (t) => {
  const out = normalizeKeys(
    {
      meta: { some_key: 'a', SomeKey: 'b', name: 'c', ID: 'd' },
      check: { http: 'http://x/', header: { 'x-trace_id': ['1'], Accept: ['json'] } },
      TaggedAddresses: { lan_ipv4: { ADDRESS: '10.0.0.1', Port: 1 }, Wan: { address: '1.2.3.4', port: 2 } },
    },
    registerShape,
  ) as Record<string, unknown>;
  t.same(out.Meta, { some_key: 'a', SomeKey: 'b', name: 'c', ID: 'd' });
  t.same((out.Check as Record<string, unknown>).Header, { 'x-trace_id': ['1'], Accept: ['json'] });
  t.same(out.TaggedAddresses, { lan_ipv4: { Address: '10.0.0.1', Port: 1 }, Wan: { Address: '1.2.3.4', Port: 2 } });
});

t.test('two spellings of one field are refused with both named', async (t) => {
  const cases: [unknown, RegExp][] = [
    [{ Name: 'a', name: 'b' }, /^Name: given more than once \(as "Name" and "name"\)$/],
    [{ Check: { TTL: '1s', ttl: '2s' } }, /^Check\.TTL: given more than once/],
    [{ Checks: [{}, { Args: ['a'], ScriptArgs: ['b'] }] }, /^Checks\[1\]\.Args: given more than once \(as "Args" and "ScriptArgs"\)$/],
    [{ Check: { CheckID: 'a', id: 'b' } }, /^Check\.CheckID: given more than once/],
  ];
  for (const [body, re] of cases) {
    t.throws(() => normalizeKeys(body, registerShape), re);
    try {
      normalizeKeys(body, registerShape);
    } catch (err) {
      t.ok(isSiderError(err, 'SIDER_BAD_REQUEST'));
    }
  }
});

t.test('unknown keys are kept as given and non-objects pass through for the parser to refuse', async (t) => {
  t.same(normalizeKeys({ Kind: '', Proxy: { x_y: 1 }, Whatever: 1 }, registerShape), { Kind: '', Proxy: { x_y: 1 }, Whatever: 1 });
  t.equal(normalizeKeys('text', registerShape), 'text');
  t.equal(normalizeKeys(null, registerShape), null);
  t.same(normalizeKeys([1, 2], registerShape), [1, 2]);
  t.same(normalizeKeys({ Checks: 'nope', Check: 5 }, registerShape), { Checks: 'nope', Check: 5 });
});

t.test('a body already spelled canonically is returned as is; any other is copied, the input untouched', async (t) => {
  const canonical = {
    Name: 'web',
    Meta: { lower_case: 'kept' },
    TaggedAddresses: { lan: { Address: '10.0.0.1', Port: 80 } },
    Checks: [{ CheckID: 'c', TTL: '10s', Header: { 'x-any': ['1'] } }],
    Unknown: { any_thing: 1 },
  };
  t.equal(normalizeKeys(canonical, registerShape), canonical, 'user-data and unknown keys do not count');
  for (const [where, body] of [
    ['top level', { ...canonical, port: 80 }],
    ['an array element', { ...canonical, Checks: [canonical.Checks[0], { check_id: 'd' }] }],
    ['a map value', { ...canonical, TaggedAddresses: { wan: { address: '10.0.0.2' } } }],
  ] as const) {
    const before = JSON.stringify(body);
    const out = normalizeKeys(body, registerShape);
    t.not(out, body, `${where}: copied`);
    t.equal(JSON.stringify(body), before, `${where}: input unchanged`);
    t.notMatch(JSON.stringify(out), /"port"|"check_id"|"address"/, `${where}: normalized`);
  }
});

t.test('a "__proto__" key stays an own data property', async (t) => {
  const body = JSON.parse('{"Name":"web","__proto__":{"polluted":true},"Meta":{"__proto__":"x"}}') as unknown;
  const out = normalizeKeys(body, registerShape) as Record<string, unknown>;
  t.equal(Object.getPrototypeOf(out), Object.prototype);
  t.equal((out as { polluted?: unknown }).polluted, undefined);
  t.ok(Object.hasOwn(out, '__proto__'));
  t.ok(Object.hasOwn(out.Meta as object, '__proto__'));
  t.equal(({} as { polluted?: unknown }).polluted, undefined);
});

// Property: any re-spelling of a canonical body's known keys normalizes back to the canonical body
// (the naive reference is the canonical body itself).

const respell = (name: string): fc.Arbitrary<string> =>
  fc.constantFrom(
    name,
    name.toLowerCase(),
    name.toUpperCase(),
    // snake_case from PascalCase boundaries (GRPCUseTLS → grpc_use_tls).
    name
      .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
      .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
      .toLowerCase(),
    name[0]!.toLowerCase() + name.slice(1),
  );

function respellObject(obj: Record<string, unknown>, userMaps: Set<string>): fc.Arbitrary<Record<string, unknown>> {
  const entries = Object.entries(obj).map(([k, v]) => {
    const value: fc.Arbitrary<unknown> = userMaps.has(k)
      ? fc.constant(v)
      : Array.isArray(v)
        ? fc.tuple(...v.map((e) => (typeof e === 'object' && e !== null ? respellObject(e as Record<string, unknown>, userMaps) : fc.constant(e))))
        : typeof v === 'object' && v !== null
          ? respellObject(v as Record<string, unknown>, userMaps)
          : fc.constant(v);
    return fc.tuple(respell(k), value);
  });
  return fc.tuple(...entries).map((pairs) => Object.fromEntries(pairs));
}

t.test('any re-spelling of the known keys normalizes back to the canonical body', async () => {
  const canonical = {
    Name: 'web',
    ID: 'web-1',
    Tags: ['a'],
    Address: '10.0.0.1',
    Port: 80,
    Meta: { Mixed_Case: 'v', lower: 'w' },
    Weights: { Passing: 2, Warning: 1 },
    EnableTagOverride: false,
    Checks: [
      { CheckID: 'c', TTL: '10s', DeregisterCriticalServiceAfter: '1m', Status: 'passing' },
      { HTTP: 'http://x/', Interval: '5s', Header: { 'X-A': ['1'] }, TLSSkipVerify: true, SuccessBeforePassing: 1, FailuresBeforeCritical: 2 },
      { GRPC: 'x:1', GRPCUseTLS: true, Interval: '5s' },
    ],
  };
  fc.assert(
    fc.property(respellObject(canonical, new Set(['Meta', 'Header'])), (body) => {
      const out = normalizeKeys(body, registerShape);
      return JSON.stringify(out) === JSON.stringify(canonical);
    }),
  );
});

t.test('foldKey ignores case, "_" and "-"', async (t) => {
  t.equal(foldKey('Enable_Tag-Override'), 'enabletagoverride');
  fc.assert(fc.property(fc.string({ unit: 'grapheme-ascii' }), (s) => foldKey(s) === foldKey(s.toUpperCase().replace(/_/g, '-'))));
});
