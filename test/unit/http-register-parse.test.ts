// Register/deregister/join body validation: Consul's defaults and check-ID derivation, type
// inference, and a 400 naming the field for every kind of bad input.

import t from 'tap';
import { BlockList, isIP } from 'node:net';
import fc from 'fast-check';
import { isSiderError } from '../../raft/errors.ts';
import {
  parseAddress,
  parseDeregisterBody,
  parseNamespace,
  parseRaftJoinBody,
  parseRaftRemoveBody,
  parseRegisterBody,
  parseServiceName,
} from '../../http/register-parse.ts';

const opts = { enableScriptChecks: false };

interface Asserts {
  ok(v: unknown, msg: string): unknown;
  fail(msg: string): unknown;
  match(v: unknown, re: RegExp, msg: string): unknown;
}

/** Asserts a SIDER_BAD_REQUEST whose message matches. */
function refuses(t: Asserts, fn: () => unknown, re: RegExp, name?: string): void {
  try {
    fn();
    t.fail(`accepted: ${name ?? re.source}`);
  } catch (err) {
    t.ok(isSiderError(err, 'SIDER_BAD_REQUEST'), `SIDER_BAD_REQUEST: ${name ?? re.source}`);
    t.match((err as Error).message, re, name ?? re.source);
  }
}

t.test('a minimal body gets Consul defaults', async (t) => {
  const r = parseRegisterBody({ Name: 'web' }, opts);
  t.same(r, {
    namespace: undefined,
    instance: {
      Service: 'web',
      ID: 'web',
      Address: '',
      Port: 0,
      Tags: [],
      Meta: {},
      Weights: { Passing: 1, Warning: 1 },
      TaggedAddresses: {},
      EnableTagOverride: false,
    },
    checks: [],
  });
});

t.test('what Consul\'s Go client sends (nulls for Check and Checks, ScriptArgs) is accepted', async (t) => {
  const r = parseRegisterBody(
    {
      ID: 'web-1',
      Name: 'Web',
      Tags: ['v1', 'primary'],
      Port: 8080,
      Address: '10.0.0.5',
      TaggedAddresses: { lan: { Address: '10.0.0.5', Port: 8080 } },
      Meta: { version: '1.2' },
      Weights: { Passing: 10, Warning: 0 },
      Check: null,
      Checks: null,
      Namespace: 'prod',
    },
    opts,
  );
  t.equal(r.instance.Service, 'web', 'service names are folded to lower case');
  t.equal(r.instance.ID, 'web-1');
  t.equal(r.namespace, 'prod');
  t.same(r.instance.Weights, { Passing: 10, Warning: 0 });
  t.same(r.checks, []);
});

t.test('check IDs are derived as service:<id>, or service:<id>:<n> 1-based over Check then Checks', async (t) => {
  const one = parseRegisterBody({ Name: 'web', ID: 'w1', Check: { TTL: '10s' } }, opts);
  t.equal(one.checks[0]!.CheckID, 'service:w1');
  t.equal(one.checks[0]!.Name, "Service 'web' check");
  t.equal(one.checks[0]!.Status, '');

  const many = parseRegisterBody(
    { Name: 'web', Check: { TTL: '10s' }, Checks: [{ HTTP: 'http://127.0.0.1:80/health', Interval: '10s' }, { CheckID: 'mine', TCP: 'localhost:80', Interval: '5s' }] },
    opts,
  );
  t.same(
    many.checks.map((c) => [c.CheckID, c.Type]),
    [
      ['service:web:1', 'ttl'],
      ['service:web:2', 'http'],
      ['mine', 'tcp'],
    ],
  );
});

t.test('check type is inferred from the one probe field given', async (t) => {
  const r = parseRegisterBody(
    {
      Name: 'svc',
      Checks: [
        { TTL: '30s', Status: 'passing', Notes: 'n' },
        { HTTP: 'https://h:8443/ready', Method: 'head', Header: { 'X-A': ['1', '2'], 'X-B': 'single' }, Interval: '120000ms', Timeout: '2s', TLSSkipVerify: true },
        { TCP: '[::1]:5432', Interval: '1m30s' },
        { GRPC: '10.0.0.1:9090/health.v1', GRPCUseTLS: true, Interval: '10s' },
      ],
    },
    opts,
  );
  const [ttl, http, tcp, grpc] = r.checks;
  t.equal(ttl!.Type, 'ttl');
  t.equal(ttl!.TTL, '30s');
  t.equal(ttl!.Status, 'passing');
  t.equal(http!.Type, 'http');
  t.equal(http!.Method, 'HEAD');
  t.same(http!.Header, { 'X-A': ['1', '2'], 'X-B': ['single'] });
  t.equal(http!.Interval, '120000ms', 'durations are stored as given');
  t.equal(http!.TLSSkipVerify, true);
  t.equal(tcp!.Type, 'tcp');
  t.equal(tcp!.TCP, '[::1]:5432');
  t.equal(grpc!.Type, 'grpc');
  t.equal(grpc!.GRPCUseTLS, true);
});

t.test('short intervals and deregister delays are raised to Consul\'s minimums; numbers are nanoseconds', async (t) => {
  const r = parseRegisterBody(
    { Name: 's', Checks: [{ HTTP: 'http://x/', Interval: '100ms', DeregisterCriticalServiceAfter: '10s' }, { TTL: 15_000_000_000 }] },
    opts,
  );
  t.equal(r.checks[0]!.Interval, '1s');
  t.equal(r.checks[0]!.DeregisterCriticalServiceAfter, '1m0s');
  t.equal(r.checks[1]!.TTL, '15s');
});

t.test('script checks are refused unless enabled', async (t) => {
  refuses(t, () => parseRegisterBody({ Name: 's', Check: { Args: ['/bin/true'], Interval: '10s' } }, opts), /^Check\.Args: script checks are disabled/);
  refuses(t, () => parseRegisterBody({ Name: 's', Check: { ScriptArgs: ['/bin/true'], Interval: '10s' } }, opts), /^Check\.Args: script checks are disabled/);
  const ok = parseRegisterBody({ Name: 's', Check: { ScriptArgs: ['/bin/true', '-x'], Interval: '10s' } }, { enableScriptChecks: true });
  t.equal(ok.checks[0]!.Type, 'cmd');
  t.same(ok.checks[0]!.Args, ['/bin/true', '-x']);
});

t.test('every bad field is a 400 naming it', async (t) => {
  const cases: [unknown, RegExp][] = [
    ['text', /^request body must be a JSON object, not a string$/],
    [[], /^request body must be a JSON object, not an array$/],
    [null, /^request body must be a JSON object, not null$/],
    [{}, /^Name: required$/],
    [{ Name: '' }, /^Name: required$/],
    [{ Name: 5 }, /^Name: must be a string, not a number$/],
    [{ Name: 'has space' }, /^Name: invalid service name "has space"/],
    [{ Name: 'under_score' }, /^Name: invalid service name/],
    [{ Name: '-lead' }, /^Name: invalid service name/],
    [{ Name: 'a'.repeat(64) }, /^Name: invalid service name/],
    [{ Name: 'web', ID: 'a/b' }, /^ID: invalid ID "a\/b"/],
    [{ Name: 'web', ID: 'x'.repeat(129) }, /^ID: longer than 128/],
    [{ Name: 'web', ID: 7 }, /^ID: must be a string/],
    [{ Name: 'web', Port: '80' }, /^Port: must be an integer, not a string$/],
    [{ Name: 'web', Port: 80.5 }, /^Port: must be an integer, not 80.5$/],
    [{ Name: 'web', Port: 65536 }, /^Port: must be between 0 and 65535, not 65536$/],
    [{ Name: 'web', Port: -1 }, /^Port: must be between 0 and 65535/],
    [{ Name: 'web', Address: '0.0.0.0' }, /^Address: "0.0.0.0" is the unspecified address/],
    [{ Name: 'web', Address: '::' }, /^Address: "::" is the unspecified address/],
    [{ Name: 'web', Address: '0:0:0:0:0:0:0:0' }, /^Address: .* unspecified/],
    [{ Name: 'web', Address: 'not a host!' }, /^Address: invalid address/],
    [{ Name: 'web', Address: 12 }, /^Address: must be a string/],
    [{ Name: 'web', Tags: 'a' }, /^Tags: must be an array of strings, not a string$/],
    [{ Name: 'web', Tags: ['a', 3] }, /^Tags\[1\]: must be a string, not a number$/],
    [{ Name: 'web', Tags: Array.from({ length: 65 }, (_, i) => `t${i}`) }, /^Tags: more than 64 tags$/],
    [{ Name: 'web', Meta: ['x'] }, /^Meta: must be an object of strings, not an array$/],
    [{ Name: 'web', Meta: { a: 1 } }, /^Meta\.a: must be a string, not a number$/],
    [{ Name: 'web', Meta: { 'a b': 'x' } }, /^Meta\["a b"\]: keys may contain only/],
    [{ Name: 'web', Meta: { k: 'v'.repeat(513) } }, /^Meta\.k: longer than 512/],
    [{ Name: 'web', Meta: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) }, /^Meta: more than 64 pairs$/],
    [{ Name: 'web', Weights: { Passing: 0 } }, /^Weights\.Passing: must be between 1 and 65535, not 0$/],
    [{ Name: 'web', Weights: { Warning: -1 } }, /^Weights\.Warning: must be between 0/],
    [{ Name: 'web', Weights: 3 }, /^Weights: must be an object/],
    [{ Name: 'web', TaggedAddresses: { lan: '10.0.0.1' } }, /^TaggedAddresses\.lan: must be an object \{Address, Port\}/],
    [{ Name: 'web', TaggedAddresses: { lan: { Address: '0.0.0.0', Port: 1 } } }, /^TaggedAddresses\.lan\.Address: .*unspecified/],
    [{ Name: 'web', TaggedAddresses: { lan: { Address: '10.0.0.1', Port: 70000 } } }, /^TaggedAddresses\.lan\.Port: must be between/],
    [{ Name: 'web', EnableTagOverride: 'yes' }, /^EnableTagOverride: must be true or false/],
    [{ Name: 'web', Kind: 'connect-proxy' }, /^Kind: service kind "connect-proxy" is not supported$/],
    [{ Name: 'web', Namespace: 'Prod' }, /^Namespace: invalid namespace "Prod"/],
    [{ Name: 'web', Checks: {} }, /^Checks: must be an array, not an object$/],
    [{ Name: 'web', Checks: [5] }, /^Checks\[0\]: must be an object, not a number$/],
    [{ Name: 'web', Check: {} }, /^Check: give one of TTL, HTTP, TCP, GRPC or Args$/],
    [{ Name: 'web', Checks: [{ TTL: '1s' }, { TTL: '1s', HTTP: 'http://x/' }] }, /^Checks\[1\]: give only one of TTL, HTTP, TCP, GRPC or Args, not TTL and HTTP$/],
    [{ Name: 'web', Checks: [{ TTL: '1s' }, { HTTP: 'http://x/', Interval: '5x' }] }, /^Checks\[1\]\.Interval: invalid duration "5x": unknown unit "x"$/],
    [{ Name: 'web', Check: { HTTP: 'http://x/' } }, /^Check\.Interval: required for HTTP checks$/],
    [{ Name: 'web', Check: { TCP: 'x:1', Interval: '-5s' } }, /^Check\.Interval: must not be negative/],
    [{ Name: 'web', Check: { TCP: 'x:1', Interval: '25h' } }, /^Check\.Interval: must be at most 24h0m0s/],
    [{ Name: 'web', Check: { TCP: 'x:1', Interval: true } }, /^Check\.Interval: must be a duration string like "10s", not a boolean$/],
    [{ Name: 'web', Check: { TTL: '0s' } }, /^Check\.TTL: must be a positive duration$/],
    [{ Name: 'web', Check: { TTL: '0' } }, /^Check\.TTL: must be a positive duration$/],
    [{ Name: 'web', Check: { TTL: '10' } }, /^Check\.TTL: invalid duration "10": missing unit$/],
    [{ Name: 'web', Check: { HTTP: 'ftp://x/', Interval: '1s' } }, /^Check\.HTTP: invalid URL "ftp:\/\/x\/"/],
    [{ Name: 'web', Check: { HTTP: 'not a url', Interval: '1s' } }, /^Check\.HTTP: invalid URL/],
    [{ Name: 'web', Check: { HTTP: 'http://x/', Method: 'GE T', Interval: '1s' } }, /^Check\.Method: invalid HTTP method/],
    [{ Name: 'web', Check: { HTTP: 'http://x/', Header: { 'X-A': ['a\r\nInjected: 1'] }, Interval: '1s' } }, /^Check\.Header\.X-A\[0\]: must not contain CR, LF or NUL$/],
    [{ Name: 'web', Check: { HTTP: 'http://x/', Header: { 'bad name': ['1'] }, Interval: '1s' } }, /^Check\.Header\["bad name"\]: invalid header name$/],
    [{ Name: 'web', Check: { HTTP: 'http://x/', Header: { A: 5 }, Interval: '1s' } }, /^Check\.Header\.A: must be an array of strings/],
    [{ Name: 'web', Check: { TCP: 'nohost', Interval: '1s' } }, /^Check\.TCP: invalid address "nohost": expected host:port$/],
    [{ Name: 'web', Check: { TCP: 'h:0', Interval: '1s' } }, /^Check\.TCP: invalid address/],
    [{ Name: 'web', Check: { GRPC: 'h', Interval: '1s' } }, /^Check\.GRPC: invalid address/],
    [{ Name: 'web', Check: { TTL: '1s', Status: 'ok' } }, /^Check\.Status: must be "passing", "warning" or "critical", not "ok"$/],
    [{ Name: 'web', Check: { TTL: '1s', CheckID: '_service_maintenance:web' } }, /^Check\.CheckID: the prefix "_service_maintenance:" is reserved/],
    [{ Name: 'web', Check: { TTL: '1s', SuccessBeforePassing: -1 } }, /^Check\.SuccessBeforePassing: must be between 0 and 1000/],
    [{ Name: 'web', Check: { TTL: '1s', H2PING: 'x:1' } }, /^Check\.H2PING: H2PING checks are not supported$/],
    [{ Name: 'web', Check: { TTL: '1s', DockerContainerID: 'abc' } }, /^Check\.DockerContainerID: DockerContainerID checks are not supported$/],
    [{ Name: 'web', Check: { OSService: 'x', TTL: '1s', UDP: 'y' } }, /^Check\.UDP: UDP checks are not supported$/],
    [{ Name: 'web', Checks: [{ TTL: '1s' }, { TTL: '1s', AliasNode: 'n' }] }, /^Checks\[1\]\.AliasNode: AliasNode checks are not supported$/],
    [{ Name: 'web', Checks: [{ TTL: '1s', CheckID: 'a' }, { TTL: '1s', CheckID: 'a' }] }, /^Checks\[1\]\.CheckID: "a" appears more than once$/],
    [{ Name: 'web', Checks: Array.from({ length: 33 }, () => ({ TTL: '1s' })) }, /^Checks: more than 32 checks$/],
    [{ Name: 'web', name: 'web2' }, /^Name: given more than once/],
  ];
  for (const [body, re] of cases) refuses(t, () => parseRegisterBody(body, opts), re, `${JSON.stringify(body).slice(0, 80)}`);
});

t.test('names: namespaces must be lower-case DNS labels, service names are folded', async (t) => {
  t.equal(parseNamespace('prod-eu1'), 'prod-eu1');
  refuses(t, () => parseNamespace('Prod'), /^namespace: invalid namespace "Prod"/);
  refuses(t, () => parseNamespace(''), /invalid namespace ""/);
  refuses(t, () => parseNamespace('a.b'), /invalid namespace/);
  t.equal(parseServiceName('API-Gateway'), 'api-gateway');
  t.equal(parseServiceName('9lives'), '9lives');
  const label = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
  fc.assert(
    fc.property(fc.string({ maxLength: 70 }), (s) => {
      let ok: boolean;
      try {
        parseServiceName(s);
        ok = true;
      } catch {
        ok = false;
      }
      return ok === label.test(s.toLowerCase());
    }),
  );
});

t.test('addresses: IPs (not unspecified) and host names', async (t) => {
  for (const a of ['10.0.0.1', '::1', 'fe80::1', 'db.internal', 'db.internal.', 'my_host', 'a-b.c']) t.equal(parseAddress(a, 'Address', false), a, a);
  t.equal(parseAddress('', 'Address', true), '');
  refuses(t, () => parseAddress('', 'TaggedAddresses.lan.Address', false), /^TaggedAddresses\.lan\.Address: must not be empty$/);
  for (const a of ['0.0.0.0', '::', '::0', '::ffff:0.0.0.0']) refuses(t, () => parseAddress(a, 'Address', false), /unspecified/, a);
  for (const a of ['[::1]', 'http://x', 'a..b', '-a.b', 'x'.repeat(254)]) refuses(t, () => parseAddress(a, 'Address', false), /^Address: /, a);
});

t.test('an IPv4 address is refused as unspecified exactly when BlockList says so', async () => {
  const ref = new BlockList();
  ref.addAddress('0.0.0.0', 'ipv4');
  const octet = fc.oneof(fc.constantFrom('0', '00', '000', '255', '256', '01'), fc.nat(300).map(String));
  fc.assert(
    fc.property(fc.array(octet, { minLength: 3, maxLength: 5 }), (parts) => {
      const a = parts.join('.');
      let refused = false;
      try {
        parseAddress(a, 'Address', false);
      } catch (err) {
        refused = /unspecified/.test((err as Error).message);
      }
      return refused === (isIP(a) === 4 && ref.check(a, 'ipv4'));
    }),
    { numRuns: 2000 },
  );
});

t.test('Meta is read into a fresh object with the keys in order, "__proto__" an own key', async () => {
  const key = fc.oneof(fc.stringMatching(/^[A-Za-z0-9_-]{1,8}$/), fc.constantFrom('__proto__', '0', '7', '10', 'constructor', 'toString'));
  fc.assert(
    fc.property(fc.uniqueArray(fc.tuple(key, fc.string({ maxLength: 6 })), { selector: ([k]) => k, maxLength: 8 }), (pairs) => {
      // As JSON.parse makes it: "__proto__" an own property.
      const meta = JSON.parse(JSON.stringify(Object.fromEntries(pairs))) as Record<string, unknown>;
      const got = parseRegisterBody({ Name: 's', Meta: meta }, opts).instance.Meta;
      const want = Object.fromEntries(Object.entries(meta));
      return (
        got !== meta &&
        Object.getPrototypeOf(got) === Object.prototype &&
        JSON.stringify(Object.keys(got)) === JSON.stringify(Object.keys(want)) &&
        Object.keys(want).every((k) => Object.getOwnPropertyDescriptor(got, k)?.value === want[k] && Object.getOwnPropertyDescriptor(got, k)?.enumerable === true)
      );
    }),
    { numRuns: 1000 },
  );
});

t.test('durations: a text parsed before gives the same value; a bad one is refused every time', async (t) => {
  for (let i = 0; i < 2; i++) {
    const body = parseRegisterBody({ Name: 's', Checks: [{ TTL: '90s' }, { TTL: '1m30s' }, { HTTP: 'http://x/', Interval: '1h0m0.5s' }] }, opts);
    t.same(body.checks.map((c) => c.TTL || c.Interval), ['90s', '1m30s', '1h0m0.5s'], `pass ${i}`);
    const long = `1s${'0h'.repeat(40)}`; // valid, and too long to be remembered
    t.equal(parseRegisterBody({ Name: 's', Check: { TTL: long } }, opts).checks[0]!.TTL, long, `pass ${i}: a long one`);
    refuses(t, () => parseRegisterBody({ Name: 's', Check: { TTL: '10 s' } }, opts), /^Check\.TTL: invalid duration "10 s"/, `pass ${i}`);
    refuses(t, () => parseRegisterBody({ Name: 's', Check: { TTL: '-1s' } }, opts), /^Check\.TTL: must not be negative/, `pass ${i}`);
  }
});

t.test('deregister, join and remove bodies', async (t) => {
  t.same(parseDeregisterBody({ namespace: 'prod', service: 'Web', id: 'w1' }), { namespace: 'prod', service: 'web', id: 'w1' });
  t.same(parseDeregisterBody({ ID: 'w1' }), { namespace: undefined, service: '', id: 'w1' });
  t.same(parseDeregisterBody({ Service: 'web' }), { namespace: undefined, service: 'web', id: 'web' });
  refuses(t, () => parseDeregisterBody({}), /^ID: give ID, Service, or both$/);
  refuses(t, () => parseDeregisterBody('x'), /^request body must be a JSON object/);
  refuses(t, () => parseDeregisterBody({ ID: 'a/b' }), /^ID: invalid ID/);

  t.same(parseRaftJoinBody({ id: 'n2', addr: '10.0.0.2:8501' }), { id: 'n2', addr: '10.0.0.2:8501' });
  t.same(parseRaftJoinBody({ ID: 'n3', Address: '[::1]:8501' }), { id: 'n3', addr: '[::1]:8501' });
  refuses(t, () => parseRaftJoinBody({ Addr: 'h:1' }), /^ID: required$/);
  refuses(t, () => parseRaftJoinBody({ ID: 'n 2', Addr: 'h:1' }), /^ID: invalid server ID/);
  refuses(t, () => parseRaftJoinBody({ ID: 'n2' }), /^Addr: required$/);
  refuses(t, () => parseRaftJoinBody({ ID: 'n2', Addr: 'h' }), /^Addr: invalid address "h": expected host:port$/);
  t.same(parseRaftRemoveBody({ id: 'n2' }), { id: 'n2' });
  refuses(t, () => parseRaftRemoveBody({}), /^ID: required$/);
});
