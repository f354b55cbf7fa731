// Health checking on a real `sider server` (issue #4): the check endpoints and their bad input,
// TTL renewals that write nothing when nothing changes, TTL expiry, maintenance mode, and HTTP and
// TCP probes against real local targets that flip between healthy and failing.

import { createServer as createHttpServer } from 'node:http';
import type { Server as HttpServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import type { Server as TcpServer, Socket } from 'node:net';
import t from 'tap';
import { freePort, waitFor } from '../support/ports.ts';
import { SiderCluster } from '../support/server-process.ts';
import type { HttpReply } from '../support/server-process.ts';

interface HealthCheck {
  CheckID: string;
  Name: string;
  Status: string;
  Output: string;
  Notes: string;
  Type: string;
  ServiceID: string;
}

interface HealthEntry {
  Service: { ID: string };
  Checks: HealthCheck[];
}

/** Scan period of the leader's TTL table (src/health/leader.ts default). */
const SCAN_MS = 200;

t.test('health checking on one server', async (t) => {
  const cluster = (await SiderCluster.start({ ids: ['h1'] })).teardownWith(t);
  const http = cluster.http;
  const addr = cluster.addr('h1');
  const put = (path: string, body?: unknown): Promise<HttpReply> => http.call(addr, 'PUT', path, body === undefined ? {} : { body });
  const checks = async (service: string, ns = 'default'): Promise<{ index: string; list: HealthCheck[] }> => {
    const r = await http.call(addr, 'GET', `/v1/health/checks/${service}?ns=${ns}`);
    if (r.status !== 200) throw new Error(`health/checks ${service}: ${r.status} ${r.text}`);
    return { index: r.headers['x-consul-index']!, list: JSON.parse(r.text) as HealthCheck[] };
  };
  const check = async (service: string, id: string, ns = 'default'): Promise<HealthCheck | undefined> =>
    (await checks(service, ns)).list.find((c) => c.CheckID === id);
  const register = async (body: unknown, query = ''): Promise<void> => {
    const r = await put(`/v1/agent/service/register${query}`, body);
    if (r.status !== 200) throw new Error(`register: ${r.status} ${r.text}`);
  };

  await register({ Name: 'api', ID: 'api-1', Port: 80, Check: { CheckID: 'api-1-ttl', TTL: '30s', Status: 'passing' } });

  await t.test('pass, warn and fail set the status and ?note= the output', async (t) => {
    for (const [verb, status] of [
      ['warn', 'warning'],
      ['fail', 'critical'],
      ['pass', 'passing'],
    ] as const) {
      const r = await put(`/v1/agent/check/${verb}/api-1-ttl?note=${encodeURIComponent(`via ${verb}`)}`);
      t.equal(r.status, 200, `${verb}: ${r.text}`);
      const c = await check('api', 'api-1-ttl');
      t.equal(c?.Status, status);
      t.equal(c?.Output, `via ${verb}`);
    }
    await put('/v1/agent/check/pass/api-1-ttl');
    t.equal((await check('api', 'api-1-ttl'))?.Output, '', 'no note, empty output (as Consul)');
  });

  await t.test('a renewal that keeps status and output moves no X-Consul-Index', async (t) => {
    await put('/v1/agent/check/pass/api-1-ttl?note=steady');
    const before = await checks('api');
    const global = (await http.call(addr, 'GET', '/v1/catalog/services')).headers['x-consul-index'];
    for (let i = 0; i < 20; i++) {
      const r = await put('/v1/agent/check/pass/api-1-ttl?note=steady');
      t.equal(r.status, 200);
    }
    const after = await checks('api');
    t.equal(after.index, before.index, 'the service index did not move');
    t.equal((await http.call(addr, 'GET', '/v1/catalog/services')).headers['x-consul-index'], global, 'nor the catalog index');
    // A blocking query on the service is not woken by renewals.
    const held = http.call(addr, 'GET', `/v1/health/service/api?index=${before.index}&wait=1s`, { timeoutMs: 10_000 });
    for (let i = 0; i < 5; i++) await put('/v1/agent/check/pass/api-1-ttl?note=steady');
    const woke = await held;
    t.equal(woke.headers['x-consul-index'], before.index, 'a held query times out with the same index');
    const changed = await put('/v1/agent/check/pass/api-1-ttl?note=new');
    t.equal(changed.status, 200);
    t.ok(Number((await checks('api')).index) > Number(before.index), 'a new output moves it');
  });

  await t.test('the renewal fast path answers exactly as the Koa route does', async (t) => {
    // A query parameter the fast path does not take (`x`, ignored by the route) sends the same
    // request through Koa; both answers must be identical.
    const pairs: [string, string][] = [
      ['/v1/agent/check/pass/api-1-ttl?note=same', '/v1/agent/check/pass/api-1-ttl?note=same&x=1'],
      ['/v1/agent/check/warn/nope', '/v1/agent/check/warn/nope?x=1'],
      ['/v1/agent/check/fail/api-1-ttl?ns=team-b', '/v1/agent/check/fail/api-1-ttl?ns=team-b&x=1'],
      ['/v1/agent/check/pass/a%20b', '/v1/agent/check/pass/a%20b?x=1'],
      ['/v1/agent/check/pass/api-1-ttl?ns=BAD', '/v1/agent/check/pass/api-1-ttl?ns=BAD&x=1'],
      ['/v1/agent/check/pass/api-1-ttl?note=a&note=b', '/v1/agent/check/pass/api-1-ttl?note=a&note=b&x=1'],
    ];
    for (const [fast, koa] of pairs) {
      const a = await put(fast);
      const b = await put(koa);
      t.same([a.status, a.headers['content-type'], a.headers['content-length'], a.text], [b.status, b.headers['content-type'], b.headers['content-length'], b.text], fast);
    }
    const viaHeader = await http.call(addr, 'PUT', '/v1/agent/check/pass/api-1-ttl', { headers: { 'x-sider-namespace': 'team-b' } });
    t.equal(viaHeader.status, 404, 'X-Sider-Namespace is honoured');
    const clash = await http.call(addr, 'PUT', '/v1/agent/check/pass/api-1-ttl?ns=team-b', { headers: { 'x-sider-namespace': 'team-c' } });
    t.equal(clash.status, 400, 'two namespaces that disagree');
    t.match(clash.text, /namespace given as "team-b" by \?ns but "team-c" by X-Sider-Namespace/);
    await put('/v1/agent/check/pass/api-1-ttl');
  });

  await t.test('update takes {Status, Output} in any key case and refuses a bad Status', async (t) => {
    let r = await put('/v1/agent/check/update/api-1-ttl', { status: 'warning', output: 'disk 91%' });
    t.equal(r.status, 200, r.text);
    t.match(await check('api', 'api-1-ttl'), { Status: 'warning', Output: 'disk 91%' });
    r = await put('/v1/agent/check/update/api-1-ttl', { Status: 'passing', Output: 'ok' });
    t.equal(r.status, 200);
    const index = (await checks('api')).index;
    for (const [body, pattern] of [
      [{ Status: 'fine' }, /^Status: must be "passing", "warning" or "critical", not "fine"/],
      [{ Output: 'x' }, /^Status: must be .* not missing/],
      [{ Status: 'passing', Output: 5 }, /^Output: must be a string/],
      [[1, 2], /request body must be a JSON object/],
    ] as const) {
      r = await put('/v1/agent/check/update/api-1-ttl', body);
      t.equal(r.status, 400, JSON.stringify(body));
      t.match(r.text, pattern);
    }
    r = await http.call(addr, 'PUT', '/v1/agent/check/update/api-1-ttl', { headers: { 'content-type': 'application/json' } });
    t.equal(r.status, 400, 'no body');
    t.equal((await checks('api')).index, index, 'nothing changed');
    t.match(await check('api', 'api-1-ttl'), { Status: 'passing', Output: 'ok' });
  });

  await t.test('an unknown or non-TTL check answers 404 with the text Consul clients match on', async (t) => {
    let r = await put('/v1/agent/check/pass/nope');
    t.equal(r.status, 404);
    t.equal(r.text.trim(), 'CheckID "nope" does not have associated TTL');
    r = await put('/v1/agent/check/update/nope', { Status: 'passing' });
    t.equal(r.status, 404);
    t.equal(r.text.trim(), 'CheckID "nope" does not have associated TTL');
    r = await put('/v1/agent/check/register', { Name: 'web', ID: 'api-1-http', ServiceID: 'api-1', HTTP: 'http://127.0.0.1:9/', Interval: '30s' });
    t.equal(r.status, 200, r.text);
    for (const verb of ['pass', 'warn', 'fail']) {
      r = await put(`/v1/agent/check/${verb}/api-1-http`);
      t.equal(r.status, 404);
      t.equal(r.text.trim(), 'CheckID "api-1-http" does not have associated TTL', `${verb} on an HTTP check`);
    }
    r = await put('/v1/agent/check/pass/api-1-ttl?ns=team-a');
    t.equal(r.status, 404, 'the check lives in another namespace');
    r = await put('/v1/agent/check/pass/bad%20id');
    t.equal(r.status, 400, 'an invalid ID');
    t.match(r.text, /^check ID: invalid ID/);
    r = await put('/v1/agent/check/deregister/api-1-http');
    t.equal(r.status, 200);
  });

  await t.test('check register adds a check to an instance; bad registrations change nothing', async (t) => {
    let r = await put('/v1/agent/check/register', { name: 'extra ttl', id: 'api-1-extra', service_id: 'api-1', ttl: '30s', notes: 'n' });
    t.equal(r.status, 200, r.text);
    t.match(await check('api', 'api-1-extra'), { Name: 'extra ttl', Status: 'critical', Notes: 'n', Type: 'ttl', ServiceID: 'api-1' }, 'starts critical');
    r = await put('/v1/agent/check/pass/api-1-extra');
    t.equal(r.status, 200, 'and is renewable');
    r = await put('/v1/agent/check/register', { Name: 'byname', ServiceID: 'api-1', TTL: '30s', Status: 'passing' });
    t.equal(r.status, 200, r.text);
    t.match(await check('api', 'byname'), { Status: 'passing' }, 'the ID defaults to the Name, Status is used');

    const index = (await checks('api')).index;
    for (const [body, status, pattern] of [
      [{ Name: 'x', TTL: '10s' }, 400, /^ServiceID: required: Sider has no node-level checks/],
      [{ ServiceID: 'api-1', TTL: '10s' }, 400, /^Name: required/],
      [{ Name: 'x', ServiceID: 'nope', TTL: '10s' }, 404, /^ServiceID: unknown service ID "nope"/],
      [{ Name: 'x', ServiceID: 'api-1', Args: ['/bin/true'], Interval: '10s' }, 400, /^Args: script checks are disabled on this server/],
      [{ Name: 'x', ServiceID: 'api-1', TTL: '10s', HTTP: 'http://127.0.0.1:9/' }, 400, /^check: give only one of TTL, HTTP/],
      [{ Name: 'x', ServiceID: 'api-1' }, 400, /^check: give one of TTL, HTTP, TCP, GRPC or Args/],
      [{ Name: 'x', ServiceID: 'api-1', HTTP: 'http://127.0.0.1:9/' }, 400, /^Interval: required for HTTP checks/],
      [{ Name: 'x', ServiceID: 'api-1', TCP: 'nohost', Interval: '10s' }, 400, /^TCP: invalid address/],
      [{ Name: 'x', ServiceID: 'api-1', TTL: '10x' }, 400, /^TTL: /],
      [{ Name: 'x', ServiceID: 'api-1', TTL: '10s', Status: 'meh' }, 400, /^Status: must be/],
      [{ Name: 'has space', ServiceID: 'api-1', TTL: '10s' }, 400, /^Name \(the check ID when ID is not given\): invalid ID/],
      [{ Name: 'x', ID: '_service_maintenance:api-1', ServiceID: 'api-1', TTL: '10s' }, 400, /^CheckID: the prefix "_service_maintenance:" is reserved/],
      [{ Name: 'x', ID: 'api-1-ttl', ServiceID: 'api-1', Namespace: 'Bad', TTL: '10s' }, 400, /^Namespace: invalid namespace/],
      [[1, 2], 400, /^request body must be a JSON object, not an array/],
    ] as const) {
      r = await put('/v1/agent/check/register', body);
      t.equal(r.status, status, `${JSON.stringify(body)}: ${r.text}`);
      t.match(r.text, pattern);
    }
    await register({ Name: 'web', ID: 'web-1', Port: 81, Check: { CheckID: 'web-1-ttl', TTL: '30s' } });
    const webIndex = (await checks('web')).index;
    r = await put('/v1/agent/check/register', { Name: 'steal', ID: 'web-1-ttl', ServiceID: 'api-1', TTL: '10s' });
    t.equal(r.status, 400, 'a check ID of another instance');
    t.match(r.text, /CheckID "web-1-ttl" already belongs to instance "web-1"/);
    t.equal((await checks('api')).index, index, 'nothing changed');
    t.equal((await checks('web')).index, webIndex);
  });

  await t.test('check deregister removes one check; an unknown one is a 404', async (t) => {
    let r = await put('/v1/agent/check/deregister/api-1-extra');
    t.equal(r.status, 200, r.text);
    t.equal(await check('api', 'api-1-extra'), undefined);
    r = await put('/v1/agent/check/deregister/api-1-extra');
    t.equal(r.status, 404);
    t.equal(r.text.trim(), 'Unknown check ID "api-1-extra"');
    await put('/v1/agent/check/deregister/byname');
  });

  await t.test('maintenance mode: served as not usable until disabled', async (t) => {
    await put('/v1/agent/check/pass/api-1-ttl');
    const passing = async (): Promise<string[]> =>
      (JSON.parse((await http.call(addr, 'GET', '/v1/health/service/api?passing')).text) as HealthEntry[]).map((e) => e.Service.ID);
    t.same(await passing(), ['api-1']);
    let r = await put('/v1/agent/service/maintenance/api-1?enable=true');
    t.equal(r.status, 200, r.text);
    t.same(await passing(), [], 'not usable');
    t.match(await check('api', '_service_maintenance:api-1'), {
      Name: 'Service Maintenance Mode',
      Status: 'critical',
      Notes: 'Maintenance mode is enabled for this service, but no reason was provided. This is a default message.',
    });
    r = await put('/v1/agent/service/maintenance/api-1?enable=true&reason=upgrading');
    t.equal(r.status, 200, 'enabling twice is fine');
    t.equal((await check('api', '_service_maintenance:api-1'))?.Notes, 'upgrading');
    r = await put('/v1/agent/check/pass/_service_maintenance:api-1');
    t.equal(r.status, 404, 'the maintenance check is not a TTL check');
    r = await put('/v1/agent/service/maintenance/api-1?enable=false');
    t.equal(r.status, 200);
    t.same(await passing(), ['api-1'], 'usable again');
    r = await put('/v1/agent/service/maintenance/api-1?enable=false');
    t.equal(r.status, 200, 'disabling when not enabled is fine');
    const index = (await checks('api')).index;
    for (const [query, status, pattern] of [
      ['', 400, /^enable: required \(true or false\)/],
      ['?enable=maybe', 400, /^enable: must be true or false, not "maybe"/],
      ['?enable=true&enable=false', 400, /given 2 times/],
    ] as const) {
      r = await put(`/v1/agent/service/maintenance/api-1${query}`);
      t.equal(r.status, status, query);
      t.match(r.text, pattern);
    }
    r = await put('/v1/agent/service/maintenance/nope?enable=true');
    t.equal(r.status, 404);
    t.match(r.text, /unknown service ID "nope"/);
    t.equal((await checks('api')).index, index, 'nothing changed');
  });

  await t.test('?ns= selects the namespace of renewals, registrations and maintenance', async (t) => {
    await register({ Name: 'api', ID: 'api-1', Port: 80, Check: { CheckID: 'api-1-ttl', TTL: '30s' } }, '?ns=team-a');
    let r = await put('/v1/agent/check/pass/api-1-ttl?ns=team-a&note=a');
    t.equal(r.status, 200);
    t.match(await check('api', 'api-1-ttl', 'team-a'), { Status: 'passing', Output: 'a' });
    t.not((await check('api', 'api-1-ttl'))?.Output, 'a', 'the default namespace is untouched');
    r = await put('/v1/agent/service/maintenance/api-1?ns=team-a&enable=true');
    t.equal(r.status, 200);
    t.ok(await check('api', '_service_maintenance:api-1', 'team-a'));
    t.equal(await check('api', '_service_maintenance:api-1'), undefined);
    r = await put('/v1/agent/check/register?ns=team-a', { Name: 'x', ServiceID: 'api-1', TTL: '10s', Namespace: 'other' });
    t.equal(r.status, 400, 'two namespaces that disagree');
  });

  await t.test('a TTL instance whose heartbeats stop goes critical within TTL + 1 s', async (t) => {
    const TTL = 2_000;
    await register({ Name: 'ttl', ID: 'ttl-1', Port: 80, Check: { CheckID: 'ttl-1', TTL: '2s', Status: 'passing' } });
    let last = 0;
    for (let i = 0; i < 3; i++) {
      const r = await put('/v1/agent/check/pass/ttl-1?note=alive');
      t.equal(r.status, 200);
      last = Date.now();
      await new Promise((res) => setTimeout(res, 600));
      t.equal((await check('ttl', 'ttl-1'))?.Status, 'passing', 'alive while renewed');
    }
    const c = await waitFor(
      'the check to go critical',
      async (): Promise<HealthCheck | undefined> => {
        const c = await check('ttl', 'ttl-1');
        return c?.Status === 'critical' ? c : undefined;
      },
      10_000,
      25,
    );
    const elapsed = Date.now() - last;
    t.equal(c?.Output, 'TTL expired');
    // Functional bound of the issue: TTL + 1 s, plus one scan period and the polling step.
    t.ok(elapsed <= TTL + 1_000 + SCAN_MS + 100, `critical ${elapsed} ms after the last renewal (TTL ${TTL} ms)`);
    const r = await put('/v1/agent/check/pass/ttl-1');
    t.equal(r.status, 200);
    t.equal((await check('ttl', 'ttl-1'))?.Status, 'passing', 'a renewal brings it back');
  });

  await t.test('an HTTP check follows a target flipping between 200, 429 and 500, with thresholds', async (t) => {
    let code = 200;
    /** Status codes answered, in order. */
    const answered: number[] = [];
    const target: HttpServer = createHttpServer((_req, res) => {
      answered.push(code);
      res.writeHead(code, { 'content-type': 'text/plain' });
      res.end(`answer ${code}`);
    });
    await new Promise<void>((r) => target.listen(0, '127.0.0.1', () => r()));
    t.teardown(() => {
      target.closeAllConnections();
      target.close();
    });
    const port = (target.address() as { port: number }).port;
    await register({
      Name: 'web',
      ID: 'web-2',
      Port: port,
      Check: { CheckID: 'web-2-http', HTTP: `http://127.0.0.1:${port}/health`, Interval: '1s', Timeout: '1s', FailuresBeforeCritical: 2, SuccessBeforePassing: 2 },
    });
    const statusIs = (want: string, ms = 15_000): Promise<HealthCheck | undefined> =>
      waitFor(`web-2-http to be ${want}`, async () => {
        const c = await check('web', 'web-2-http');
        return c?.Status === want ? c : undefined;
      }, ms, 50);
    const passing = await statusIs('passing');
    t.match(passing?.Output, /200/, `output names the answer: ${passing?.Output}`);
    t.ok(answered.filter((c) => c === 200).length >= 2, 'SuccessBeforePassing 2: passing after two 200s');

    code = 429;
    const warning = await statusIs('warning');
    t.match(warning?.Output, /429/);

    code = 500;
    const failuresSeen = answered.length;
    // FailuresBeforeCritical 2: after the first 500 the check is not critical yet.
    await waitFor('a first 500', () => answered.slice(failuresSeen).includes(500), 10_000, 10);
    const afterOne = await check('web', 'web-2-http');
    if (answered.slice(failuresSeen).filter((c) => c === 500).length === 1) t.not(afterOne?.Status, 'critical', 'one failure is not enough');
    await statusIs('critical');
    t.ok(answered.slice(failuresSeen).filter((c) => c === 500).length >= 2, 'critical after two failures');

    code = 200;
    const okSeen = answered.length;
    await waitFor('a first 200', () => answered.slice(okSeen).includes(200), 10_000, 10);
    const afterOk = await check('web', 'web-2-http');
    if (answered.slice(okSeen).filter((c) => c === 200).length === 1) t.equal(afterOk?.Status, 'critical', 'one success is not enough');
    await statusIs('passing');
    t.ok(answered.slice(okSeen).filter((c) => c === 200).length >= 2, 'passing after two successes');
  });

  await t.test('a TCP check follows a listener opened and closed', async (t) => {
    const port = await freePort();
    const sockets = new Set<Socket>();
    const open = async (): Promise<TcpServer> => {
      const s = createTcpServer((sock) => {
        sockets.add(sock);
        sock.on('close', () => sockets.delete(sock));
        sock.end();
      });
      await new Promise<void>((r) => s.listen(port, '127.0.0.1', () => r()));
      return s;
    };
    const close = async (s: TcpServer): Promise<void> => {
      for (const sock of sockets) sock.destroy();
      await new Promise<void>((r) => s.close(() => r()));
    };
    let server: TcpServer | undefined = await open();
    t.teardown(async () => {
      if (server) await close(server);
    });
    await register({ Name: 'db', ID: 'db-1', Port: port, Check: { CheckID: 'db-1-tcp', TCP: `127.0.0.1:${port}`, Interval: '1s', Timeout: '1s' } });
    const statusIs = (want: string): Promise<HealthCheck | undefined> =>
      waitFor(`db-1-tcp to be ${want}`, async () => {
        const c = await check('db', 'db-1-tcp');
        return c?.Status === want ? c : undefined;
      }, 15_000, 50);
    await statusIs('passing');
    await close(server);
    server = undefined;
    const down = await statusIs('critical');
    t.ok((down?.Output.length ?? 0) > 0, `output says why: ${down?.Output}`);
    server = await open();
    await statusIs('passing');
    t.pass('passing → critical → passing');
  });
});
