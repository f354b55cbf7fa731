// gRPC and script checks registered through the HTTP API of a real `sider server`, probed by its
// leader: a real grpc.health.v1 service flipped between SERVING and NOT_SERVING drives the check
// between passing and critical; script checks are refused (400, nothing changed, nothing run)
// without -enable-script-checks, and with it a script exiting 0/1/2 is passing/warning/critical with
// its output captured, capped at 4 KB, and without the server's SIDER_* environment.

import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { MAX_CHECK_OUTPUT } from '../../src/health/types.ts';
import { startHealthServer } from '../support/grpc-health.ts';
import { waitFor } from '../support/ports.ts';
import { SiderCluster } from '../support/server-process.ts';
import type { HttpReply } from '../support/server-process.ts';

interface HealthCheck {
  CheckID: string;
  Status: string;
  Output: string;
  Type: string;
  ServiceID: string;
  Definition: Record<string, unknown>;
}

const NODE = process.execPath;
const TRUNCATED = '\n... (output truncated)';
/** grpc.health.v1 ServingStatus. */
const SERVING = 1;
const NOT_SERVING = 2;

const dir = mkdtempSync(join(tmpdir(), 'sider-grpc-script-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** HTTP helpers bound to one server of `cluster`. */
function client(cluster: SiderCluster, id: string) {
  const addr = cluster.addr(id);
  const http = cluster.http;
  const put = (path: string, body: unknown): Promise<HttpReply> => http.call(addr, 'PUT', path, { body });
  const checks = async (service: string): Promise<HealthCheck[]> => (await http.json(addr, `/v1/health/checks/${service}`)) as HealthCheck[];
  /** Polls /v1/health/checks until `checkId` is `status` (and its output matches); fails with the server's log. */
  const waitCheck = async (service: string, checkId: string, status: string, output?: RegExp): Promise<HealthCheck> => {
    let last: HealthCheck | undefined;
    try {
      return (await waitFor(
        `${service} check ${checkId} to be ${status}${output ? ` with output ${output}` : ''}`,
        async () => {
          last = (await checks(service)).find((c) => c.CheckID === checkId);
          return last !== undefined && last.Status === status && (!output || output.test(last.Output)) ? last : undefined;
        },
        30_000,
        100,
      )) as HealthCheck;
    } catch (err) {
      throw new Error(`${(err as Error).message}; last seen ${JSON.stringify(last)}\n${cluster.logs(3000)}`, { cause: err });
    }
  };
  const index = async (path: string): Promise<string> => (await http.call(addr, 'GET', path)).headers['x-consul-index']!;
  return { addr, http, put, checks, waitCheck, index };
}

t.test('gRPC checks and refused script checks on a server without -enable-script-checks', async (t) => {
  const cluster = (await SiderCluster.start({ ids: ['g1'] })).teardownWith(t);
  const c = client(cluster, 'g1');

  const marker = join(dir, 'refused-ran');

  await t.test('script checks are refused with a 400 naming the field; nothing changes', async (t) => {
    const args = [NODE, '-e', `require("fs").writeFileSync(${JSON.stringify(marker)}, "ran")`];
    const base = await c.put('/v1/agent/service/register', { Name: 'job', ID: 'job-1', Check: { CheckID: 'job-1-ttl', TTL: '10m', Status: 'passing' } });
    t.equal(base.status, 200, base.text);
    const before = await c.index('/v1/health/checks/job');
    const catalogBefore = await c.index('/v1/catalog/services');

    const disabled = /script checks are disabled on this server \(they run only when it is started with -enable-script-checks\)/;
    const refusals: [string, string, unknown, RegExp][] = [
      ['agent register, Args', '/v1/agent/service/register', { Name: 'job', ID: 'job-1', Checks: [{ CheckID: 'job-1-script', Args: args, Interval: '1s' }] }, /^Checks\[0\]\.Args: /],
      ['agent register, ScriptArgs (Consul Go client)', '/v1/agent/service/register', { Name: 'job', ID: 'job-2', Check: { ScriptArgs: args, Interval: '1s' } }, /^Check\.Args: /],
      ['check register', '/v1/agent/check/register', { Name: 'job-1-script', ServiceID: 'job-1', Args: args, Interval: '1s' }, /^Args: /],
      [
        'catalog register',
        '/v1/catalog/register',
        { Node: 'host-9', Service: { Service: 'job', ID: 'job-1' }, Checks: [{ CheckID: 'job-1-script', ServiceID: 'job-1', Definition: { ScriptArgs: args, Interval: '1s' } }] },
        /^Checks\[0\]\.Definition\.Args: /,
      ],
    ];
    for (const [what, path, body, field] of refusals) {
      const r = await c.put(path, body);
      t.equal(r.status, 400, `${what}: 400`);
      t.match(r.text, field, `${what}: names the field`);
      t.match(r.text, disabled, `${what}: says why`);
    }
    t.same((await c.checks('job')).map((x) => x.CheckID), ['job-1-ttl'], 'the instance keeps only its TTL check');
    t.same(((await c.http.json(c.addr, '/v1/catalog/service/job')) as { ServiceID: string; Node: string }[]).map((x) => [x.ServiceID, x.Node]), [['job-1', 'g1']], 'no job-2, node unchanged');
    t.equal(await c.index('/v1/health/checks/job'), before, 'the service index did not move');
    t.equal(await c.index('/v1/catalog/services'), catalogBefore, 'the catalog index did not move');
  });
  await t.test('a gRPC check follows the service: SERVING passing, NOT_SERVING critical, and back', async (t) => {
    const statuses = new Map<string, number>([['', SERVING], ['api.v1.Api', SERVING]]);
    const grpc = await startHealthServer(t, statuses);
    const target = `127.0.0.1:${grpc.port}/api.v1.Api`;
    const r = await c.put('/v1/agent/service/register', {
      Name: 'rpc',
      ID: 'rpc-1',
      Address: '127.0.0.1',
      Port: grpc.port,
      Checks: [
        { CheckID: 'rpc-1-api', GRPC: target, Interval: '1s', Timeout: '2s' },
        { CheckID: 'rpc-1-server', GRPC: `127.0.0.1:${grpc.port}`, Interval: '1s', Timeout: '2s' },
      ],
    });
    t.equal(r.status, 200, r.text);

    const up = await c.waitCheck('rpc', 'rpc-1-api', 'passing');
    t.equal(up.Output, `gRPC check ${target}: success`);
    t.equal(up.Type, 'grpc');
    t.equal(up.Definition.GRPC, target);
    await c.waitCheck('rpc', 'rpc-1-server', 'passing', /^gRPC check 127\.0\.0\.1:\d+: success$/);
    t.ok(grpc.calls.includes('api.v1.Api') && grpc.calls.includes(''), 'the leader called Health/Check for the service and for the server');
    t.equal(((await c.http.json(c.addr, '/v1/health/service/rpc?passing')) as unknown[]).length, 1, 'served as passing');

    statuses.set('api.v1.Api', NOT_SERVING);
    const down = await c.waitCheck('rpc', 'rpc-1-api', 'critical');
    t.equal(down.Output, `gRPC check ${target}: serving status: NOT_SERVING`);
    t.same(await c.http.json(c.addr, '/v1/health/service/rpc?passing'), [], 'a critical instance is not served as passing');
    t.equal((await c.checks('rpc')).find((x) => x.CheckID === 'rpc-1-server')?.Status, 'passing', 'the other check is unaffected');
    const critical = (await c.http.json(c.addr, '/v1/health/state/critical')) as HealthCheck[];
    t.same(critical.map((x) => x.CheckID), ['rpc-1-api']);

    statuses.set('api.v1.Api', SERVING);
    await c.waitCheck('rpc', 'rpc-1-api', 'passing', /: success$/);
    t.equal(((await c.http.json(c.addr, '/v1/health/service/rpc?passing')) as unknown[]).length, 1, 'served again');

    statuses.delete('api.v1.Api');
    await c.waitCheck('rpc', 'rpc-1-api', 'critical', /NOT_FOUND: unknown service/);

    t.equal((await c.put('/v1/agent/service/deregister/rpc-1', undefined)).status, 200);
  });

  // Had a refused script been registered (1 s interval), it would have run during the gRPC test.
  t.notOk(existsSync(marker), 'no refused script ever ran');
  t.equal((await c.put('/v1/agent/service/deregister/job-1', undefined)).status, 200);
});

t.test('script checks on a server started with -enable-script-checks', async (t) => {
  const cluster = (await SiderCluster.start({ ids: ['x1'], extraArgs: ['-enable-script-checks'], clusterKey: 'key-that-scripts-must-not-see-0123456789' })).teardownWith(t);
  const c = client(cluster, 'x1');
  const control = join(dir, 'exit-code');
  writeFileSync(control, '0');
  // Prints its state and exits with the code the test wrote into the control file.
  const script = [
    NODE,
    '-e',
    `const c = require("fs").readFileSync(${JSON.stringify(control)}, "utf8").trim(); process.stdout.write("state " + c); process.exit(Number(c))`,
  ];

  await t.test('exit 0/1/2 is passing/warning/critical with the output captured', async (t) => {
    const r = await c.put('/v1/agent/service/register', {
      Name: 'job',
      ID: 'job-1',
      Checks: [{ CheckID: 'job-1-script', Args: script, Interval: '1s', Timeout: '10s' }],
    });
    t.equal(r.status, 200, r.text);
    const first = await c.waitCheck('job', 'job-1-script', 'passing', /^state 0$/);
    t.equal(first.Type, 'script', "Consul's name for command checks");
    for (const [code, status] of [
      ['1', 'warning'],
      ['2', 'critical'],
      ['0', 'passing'],
    ] as const) {
      writeFileSync(control, code);
      const seen = await c.waitCheck('job', 'job-1-script', status, new RegExp(`^state ${code}$`));
      t.equal(seen.Status, status, `exit ${code} → ${status}`);
    }
    t.equal((await c.put('/v1/agent/service/deregister/job-1', undefined)).status, 200);
  });

  await t.test('a huge output is capped at 4 KB of whole characters, and SIDER_* variables are not passed', async (t) => {
    const r = await c.put('/v1/agent/service/register', {
      Name: 'loud',
      ID: 'loud-1',
      Checks: [
        { CheckID: 'loud-1-big', ScriptArgs: [NODE, '-e', 'process.stdout.write("é".repeat(100000)); process.exit(1)'], Interval: '1s' },
        { CheckID: 'loud-1-env', Args: [NODE, '-e', 'process.stderr.write("key=" + (process.env.SIDER_CLUSTER_KEY ?? "absent"))'], Interval: '1s' },
      ],
    });
    t.equal(r.status, 200, r.text);
    const big = await c.waitCheck('loud', 'loud-1-big', 'warning');
    const bytes = Buffer.byteLength(big.Output);
    t.ok(bytes <= MAX_CHECK_OUTPUT, `${bytes} bytes ≤ ${MAX_CHECK_OUTPUT}`);
    t.ok(bytes > MAX_CHECK_OUTPUT - 30, `the cap is used (${bytes} bytes)`);
    t.ok(big.Output.startsWith('éé'), 'the start of the output is kept');
    t.ok(big.Output.endsWith(TRUNCATED), 'the cut is marked');
    t.notOk(big.Output.includes('\uFFFD'), 'no character is split');
    const env = await c.waitCheck('loud', 'loud-1-env', 'passing');
    t.equal(env.Output, 'key=absent', "stderr is captured, and the server's cluster key is not in the script's environment");
    t.equal((await c.put('/v1/agent/service/deregister/loud-1', undefined)).status, 200);
  });
});
