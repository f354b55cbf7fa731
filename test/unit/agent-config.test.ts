// `sider agent` config validation: the shipped example parses, any key case is accepted, every bad
// field is refused with the file and its exact path, TTLs of agent-run checks are derived, and the
// registration the agent would send passes the server's own validation.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parseCatalogRegisterBody } from '../../http/catalog-register.ts';
import { derivedTtlMs, loadAgentConfig, parseAgentConfig, parseAgentFlags } from '../../agent/config.ts';
import { compareWithServer, registrationBody } from '../../agent/registration.ts';
import { parseDurationMs } from '../../http/duration.ts';

const EXAMPLE = fileURLToPath(new URL('../../deploy/agent.example.json', import.meta.url));

/** A small valid config; tests change one field at a time. */
function base(): Record<string, unknown> {
  return {
    servers: ['127.0.0.1:8500'],
    node_name: 'host-1',
    services: [
      { name: 'api', id: 'api-1', port: 8080, checks: [{ id: 'api-ttl', ttl: '30s' }] },
      {
        name: 'web',
        id: 'web-1',
        address: '127.0.0.1',
        port: 80,
        checks: [
          { id: 'web-http', http: 'http://127.0.0.1:80/health', interval: '10s' },
          { id: 'web-tcp', tcp: '127.0.0.1:80', interval: '5s', timeout: '1s' },
        ],
      },
    ],
  };
}

/** Deep-sets `path` (dots and [n]) in a copy of base() to `value` (undefined deletes it). */
function withField(path: string, value: unknown): Record<string, unknown> {
  const cfg = base();
  const parts = path.replace(/\[(\d+)\]/g, '.$1').split('.');
  let obj = cfg as Record<string, unknown>;
  for (const p of parts.slice(0, -1)) obj = obj[p] as Record<string, unknown>;
  const last = parts[parts.length - 1]!;
  if (value === undefined) delete obj[last];
  else obj[last] = value;
  return cfg;
}

t.test('the shipped example parses, with derived TTLs and notes', async (t) => {
  const cfg = loadAgentConfig(parseAgentFlags(['-config-file', EXAMPLE]));
  t.equal(cfg.nodeName, 'web-host-1');
  t.same(cfg.servers, ['127.0.0.1:8500', '127.0.0.1:9510', '127.0.0.1:9520']);
  t.equal(cfg.syncIntervalMs, 30_000);
  t.equal(cfg.services.length, 2);
  const [web, worker] = cfg.services;
  t.equal(web!.id, 'web-1');
  t.same(web!.weights, { Passing: 10, Warning: 1 });
  const http = web!.checks[0]!;
  t.equal(http.kind, 'http');
  t.equal(http.intervalMs, 10_000);
  t.equal(http.timeoutMs, 2_000);
  t.equal(http.ttlMs, 30_000, 'max(3 × 10 s, 10 s + 2 s + 10 s)');
  t.equal(http.failuresBeforeCritical, 2);
  t.equal(http.deregisterCriticalServiceAfter, '10m0s');
  t.equal(http.notes, 'run by sider agent web-host-1: HTTP GET http://127.0.0.1:8080/health');
  t.same(http.probe, { type: 'http', http: 'http://127.0.0.1:8080/health', method: 'GET', header: { Accept: ['application/json'] } });
  t.equal(web!.checks[1]!.ttlMs, 16_000, 'max(3 × 5 s, 5 s + 1 s + 10 s)');
  const ttl = worker!.checks[0]!;
  t.equal(ttl.kind, 'ttl');
  t.equal(ttl.probe, undefined, 'the application renews ttl checks');
  t.equal(ttl.ttlMs, 30_000);
  t.equal(ttl.status, 'critical');
});

t.test('derived TTL is max(3 × interval, interval + timeout + 10 s), capped at a day', async (t) => {
  t.equal(derivedTtlMs(1_000, 1_000), 12_000);
  t.equal(derivedTtlMs(1_000, 10_000), 21_000);
  t.equal(derivedTtlMs(60_000, 5_000), 180_000);
  t.equal(derivedTtlMs(20 * 3_600_000, 10_000), 24 * 3_600_000);
});

t.test('PascalCase, camelCase and snake_case keys are the same config', async (t) => {
  const snake = parseAgentConfig(base(), 'x.json');
  const pascal = parseAgentConfig(
    {
      Servers: ['127.0.0.1:8500'],
      NodeName: 'host-1',
      Services: [
        { Name: 'api', ID: 'api-1', Port: 8080, Checks: [{ CheckID: 'api-ttl', TTL: '30s' }] },
        {
          Name: 'web',
          ID: 'web-1',
          Address: '127.0.0.1',
          Port: 80,
          Checks: [
            { ID: 'web-http', HTTP: 'http://127.0.0.1:80/health', Interval: '10s' },
            { CheckId: 'web-tcp', tcp: '127.0.0.1:80', interval: '5s', Timeout: '1s' },
          ],
        },
      ],
    },
    'x.json',
  );
  t.same(pascal, snake);
  const { node_name: _, ...rest } = base();
  const camel = parseAgentConfig({ ...rest, NODE_NAME: 'host-1', syncInterval: '1m' }, 'x.json');
  t.equal(camel.nodeName, 'host-1');
  t.equal(camel.syncIntervalMs, 60_000);
});

t.test('defaults: check IDs and names as the server derives them, timeouts, namespace', async (t) => {
  const cfg = parseAgentConfig(
    {
      servers: ['127.0.0.1:8500'],
      services: [
        { name: 'one', check: { tcp: '127.0.0.1:1', interval: '500ms' } },
        { name: 'two', checks: [{ ttl: '10s' }, { tcp: '127.0.0.1:2', interval: '2s' }] },
      ],
    },
    'x.json',
  );
  const [one, two] = cfg.services;
  t.equal(cfg.namespace, 'default');
  t.equal(one!.id, 'one');
  t.equal(one!.checks[0]!.id, 'service:one');
  t.equal(one!.checks[0]!.name, "Service 'one' check");
  t.equal(one!.checks[0]!.intervalMs, 1_000, 'intervals below 1 s are raised to 1 s, like Consul');
  t.equal(one!.checks[0]!.timeoutMs, 10_000);
  t.same(two!.checks.map((c) => c.id), ['service:two:1', 'service:two:2']);
  t.ok(cfg.nodeName.length > 0, 'node name defaults to the host name');
  t.equal(cfg.nodeAddress, '', 'no advertise_addr: no node address of its own');
  t.equal(parseAgentConfig({ ...base(), advertise_addr: '10.0.0.7' }, 'x.json').nodeAddress, '10.0.0.7');
});

// Each bad field → the file, its exact path and the reason. [what, mutated config, path, reason pattern]
const BAD: [string, Record<string, unknown>, string, RegExp][] = [
  ['no servers', withField('servers', undefined), 'servers', /required/],
  ['empty servers', withField('servers', []), 'servers', /at least one/],
  ['bad server address', withField('servers', ['127.0.0.1:8500', 'nope']), 'servers[1]', /host:port/],
  ['server not a string', withField('servers', [8500]), 'servers[0]', /string/],
  ['bad namespace', withField('namespace', 'Not_OK'), 'namespace', /invalid namespace/],
  ['bad node name', withField('node_name', 'a b'), 'node_name', /letters/],
  ['node name too long', withField('node_name', 'n'.repeat(129)), 'node_name', /longer than 128/],
  ['bad advertise_addr', withField('advertise_addr', '0.0.0.0'), 'advertise_addr', /unspecified/],
  ['advertise_addr not a string', withField('advertise_addr', 10), 'advertise_addr', /string/],
  ['bad sync interval', withField('sync_interval', 'soon'), 'sync_interval', /invalid duration/],
  ['sync interval too short', withField('sync_interval', '10ms'), 'sync_interval', /at least 1s/],
  ['script flag not boolean', withField('enable_script_checks', 'yes'), 'enable_script_checks', /true or false/],
  ['unknown top-level key', withField('sevrers', ['x']), 'sevrers', /unknown/],
  ['no services', withField('services', []), 'services', /at least one/],
  ['services not an array', withField('services', {}), 'services', /array/],
  ['service not an object', withField('services[1]', 'web'), 'services[1]', /object/],
  ['missing name', withField('services[1].name', undefined), 'services[1].name', /required/],
  ['bad name', withField('services[1].name', 'web_1'), 'services[1].name', /invalid service name/],
  ['bad id', withField('services[1].id', 'a/b'), 'services[1].id', /invalid ID/],
  ['bad address', withField('services[1].address', '0.0.0.0'), 'services[1].address', /unspecified/],
  ['port out of range', withField('services[1].port', 70000), 'services[1].port', /between 0 and 65535/],
  ['tag not a string', withField('services[1].tags', ['a', 'b', 3]), 'services[1].tags[2]', /string/],
  ['meta value not a string', withField('services[1].meta', { v: 1 }), 'services[1].meta.v', /string/],
  ['weights out of range', withField('services[1].weights', { passing: 0 }), 'services[1].weights.passing', /between 1/],
  ['unknown service key', withField('services[1].kind', 'connect-proxy'), 'services[1].kind', /unknown/],
  ['duplicate service ID', withField('services[1].id', 'api-1'), 'services[1].id', /service ID "api-1" is already used by services\[0\]/],
  ['checks not an array', withField('services[1].checks', {}), 'services[1].checks', /array/],
  ['check without a kind', withField('services[1].checks[0].http', undefined), 'services[1].checks[0]', /give one of/],
  ['check with two kinds', withField('services[1].checks[0].ttl', '10s'), 'services[1].checks[0]', /only one of/],
  ['missing interval', withField('services[1].checks[0].interval', undefined), 'services[1].checks[0].interval', /required for http/],
  ['bad interval', withField('services[1].checks[0].interval', '10 s'), 'services[1].checks[0].interval', /invalid duration/],
  ['interval not a string', withField('services[1].checks[0].interval', true), 'services[1].checks[0].interval', /duration/],
  ['bad timeout', withField('services[1].checks[1].timeout', '-1s'), 'services[1].checks[1].timeout', /positive/],
  ['bad URL', withField('services[1].checks[0].http', 'ftp://x/'), 'services[1].checks[0].http', /http:\/\//],
  ['bad method', withField('services[1].checks[0].method', 'G ET'), 'services[1].checks[0].method', /method/],
  ['bad header', withField('services[1].checks[0].header', { A: [1] }), 'services[1].checks[0].header.A[0]', /string/],
  ['bad tcp target', withField('services[1].checks[1].tcp', 'localhost'), 'services[1].checks[1].tcp', /host:port/],
  ['bad status', withField('services[1].checks[1].status', 'ok'), 'services[1].checks[1].status', /passing/],
  ['bad threshold', withField('services[1].checks[1].failures_before_critical', -1), 'services[1].checks[1].failures_before_critical', /between 0/],
  ['bad deregister', withField('services[1].checks[1].deregister_critical_service_after', 'x'), 'services[1].checks[1].deregister_critical_service_after', /invalid duration/],
  ['method on a tcp check', withField('services[1].checks[1].method', 'GET'), 'services[1].checks[1].method', /only http/],
  ['interval on a ttl check', withField('services[0].checks[0].interval', '10s'), 'services[0].checks[0].interval', /ttl check/],
  ['bad ttl', withField('services[0].checks[0].ttl', '0s'), 'services[0].checks[0].ttl', /positive/],
  ['unknown check key', withField('services[1].checks[0].docker_container_id', 'abc'), 'services[1].checks[0].docker_container_id', /unsupported/],
  ['reserved check ID', withField('services[1].checks[0].id', '_service_maintenance:web-1'), 'services[1].checks[0].id', /reserved/],
  ['duplicate check ID', withField('services[1].checks[1].id', 'api-ttl'), 'services[1].checks[1].id', /already used by services\[0\]\.checks\[0\]/],
  ['key given twice', withField('services[1].checks[0].Interval', '5s'), 'services[1].checks[0].Interval', /more than once/],
  [
    'script check while disabled',
    withField('services[1].checks[1]', { id: 'web-script', args: ['/bin/true'], interval: '10s' }),
    'services[1].checks[1].args',
    /"web-script" is a script check, and script checks are disabled: set "enable_script_checks": true/,
  ],
];

t.test('every bad field is refused with the file, its path and the reason', async (t) => {
  for (const [what, cfg, path, reason] of BAD) {
    let message = '';
    try {
      parseAgentConfig(cfg, '/etc/sider/agent.json');
    } catch (err) {
      message = (err as Error).message;
      t.equal((err as { code?: string }).code, 'SIDER_CONFIG', `${what}: code`);
    }
    const prefix = `config file /etc/sider/agent.json: ${path}: `;
    t.ok(message.startsWith(prefix), `${what}: ${JSON.stringify(message)} starts with ${JSON.stringify(prefix)}`);
    t.match(message, reason, `${what}: reason`);
  }
});

t.test('script checks run when the file or the flag enables them', async (t) => {
  const script = withField('services[1].checks[1]', { id: 'web-script', args: ['/bin/true', '-x'], interval: '10s' });
  const byFile = parseAgentConfig({ ...script, enable_script_checks: true }, 'x.json');
  const check = byFile.services[1]!.checks[1]!;
  t.equal(check.kind, 'cmd');
  t.same(check.probe, { type: 'cmd', args: ['/bin/true', '-x'] });
  t.equal(check.timeoutMs, 30_000, 'scripts default to 30 s like Consul');
  const byFlag = parseAgentConfig(script, 'x.json', { enableScriptChecks: true });
  t.same(byFlag.services, byFile.services);
});

t.test('the file must exist and be JSON; messages name it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sider-agent-cfg-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const missing = join(dir, 'missing.json');
  t.throws(() => loadAgentConfig(parseAgentFlags(['-config-file', missing])), { code: 'SIDER_CONFIG', message: new RegExp(`^config file ${missing}: .*ENOENT`) });
  const broken = join(dir, 'broken.json');
  await writeFile(broken, '{"servers": [');
  t.throws(() => loadAgentConfig(parseAgentFlags(['-config-file', broken])), { message: new RegExp(`^config file ${broken}: not valid JSON`) });
  const array = join(dir, 'array.json');
  await writeFile(array, '[]');
  t.throws(() => loadAgentConfig(parseAgentFlags(['-config-file', array])), { message: /must be a JSON object, not an array/ });
});

t.test('flags: -server replaces the file list, single and double dash, bad flags refused', async (t) => {
  const f = parseAgentFlags(['-config-file', 'a.json', '-server', '127.0.0.1:1', '--server=127.0.0.1:2', '-enable-script-checks', '-log-format', 'text']);
  t.same(f.servers, ['127.0.0.1:1', '127.0.0.1:2']);
  t.equal(f.enableScriptChecks, true);
  t.equal(f.logFormat, 'text');
  t.same(parseAgentConfig(base(), 'x.json', f).servers, ['127.0.0.1:1', '127.0.0.1:2']);
  t.throws(() => parseAgentFlags([]), { message: /-config-file is required/ });
  t.throws(() => parseAgentFlags(['-config-file', 'a', '-bogus']), { message: /unknown flag -bogus/ });
  t.throws(() => parseAgentFlags(['-config-file', 'a', '-log-level', 'loud']), { message: /-log-level/ });
  t.throws(() => parseAgentConfig(base(), 'x.json', { servers: ['nope'] }), { message: /-server/ });
  t.equal(parseAgentFlags(['-help']).help, true);
});

t.test('what the agent registers passes the server validation and registers only TTL checks', async (t) => {
  const cfg = loadAgentConfig(parseAgentFlags(['-config-file', EXAMPLE]));
  const node = { name: cfg.nodeName, address: cfg.nodeAddress };
  for (const svc of cfg.services) {
    const body = registrationBody(node, svc, (c) => (c.probe ? { Status: 'passing', Output: 'ok' } : {}));
    const parsed = parseCatalogRegisterBody(body, { enableScriptChecks: false });
    t.same(parsed.checks.map((c) => c.Type), svc.checks.map(() => 'ttl'));
    t.same(parsed.checks.map((c) => c.CheckID), svc.checks.map((c) => c.id));
    t.equal(parsed.node, cfg.nodeName, 'the instance carries the agent node name');
  }
  const web = cfg.services[0]!;
  const parsed = parseCatalogRegisterBody(registrationBody(node, web, () => ({})), { enableScriptChecks: false });
  t.equal(parsed.checks[0]!.TTL, '30s');
  t.equal(parsed.checks[0]!.Status, '', 'no status given: the server keeps the one it has');
  t.equal(parsed.checks[0]!.Notes, 'run by sider agent web-host-1: HTTP GET http://127.0.0.1:8080/health');
});

t.test('the comparison with the server finds what differs and ignores maintenance checks', async (t) => {
  const cfg = parseAgentConfig(base(), 'x.json');
  const web = cfg.services[1]!;
  const node = { name: 'host-1', address: '' };
  const server = (over: Record<string, unknown> = {}, checks?: Record<string, unknown>[], nodeOver: Record<string, unknown> = {}) => ({
    Node: { Node: 'host-1', Address: '127.0.0.1', ...nodeOver },
    Service: { ID: 'web-1', Service: 'web', Address: '127.0.0.1', Port: 80, Tags: [], Meta: {}, Weights: { Passing: 1, Warning: 1 }, EnableTagOverride: false, ...over },
    Checks: checks ?? web.checks.map((c) => ({ CheckID: c.id, Name: c.name, Notes: c.notes, Type: 'ttl', Status: 'passing', Definition: {} })),
  });
  const want = () => 'passing' as const;
  t.equal(compareWithServer(node, web, undefined, want, parseDurationMs).difference, 'not registered');
  t.equal(compareWithServer(node, web, server(), want, parseDurationMs).difference, '');
  t.equal(compareWithServer(node, web, server({ Port: 81 }), want, parseDurationMs).difference, 'port');
  t.match(compareWithServer(node, web, server(), () => 'critical' as const, parseDurationMs).difference, /web-http is passing on the server, critical here/);
  const oneMissing = server({}, [{ CheckID: 'web-http', Name: web.checks[0]!.name, Notes: web.checks[0]!.notes, Type: 'ttl', Status: 'passing' }]);
  t.equal(compareWithServer(node, web, oneMissing, want, parseDurationMs).difference, 'check web-tcp missing');
  const extra = server();
  (extra.Checks as Record<string, unknown>[]).push({ CheckID: 'other', Type: 'ttl' }, { CheckID: '_service_maintenance:web-1', Type: 'maintenance' });
  const view = compareWithServer(node, web, extra, want, parseDurationMs);
  t.equal(view.difference, '');
  t.same(view.extraChecks, ['other']);
  const http = server({}, web.checks.map((c) => ({ CheckID: c.id, Name: c.name, Notes: c.notes, Type: 'http', Status: 'passing' })));
  t.match(compareWithServer(node, web, http, want, parseDurationMs).difference, /type or TTL/);
  t.equal(compareWithServer(node, web, server({}, undefined, { Node: 's1' }), want, parseDurationMs).difference, 'node', 'registered under a server node: re-register');
  const placed = { name: 'host-1', address: '10.1.2.3' };
  t.equal(compareWithServer(placed, web, server(), want, parseDurationMs).difference, 'node address');
  t.equal(compareWithServer(placed, web, server({}, undefined, { Address: '10.1.2.3' }), want, parseDurationMs).difference, '');
});
