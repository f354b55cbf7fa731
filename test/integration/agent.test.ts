// `sider agent` end to end: a real server process, the agent as a child process, an HTTP target the
// test flips. The service appears and turns passing, turns critical when its target fails, comes
// back after the server loses its state, fails over past a dead server, and is deregistered on
// SIGTERM (exit 0). Its instances carry its node_name (and advertise_addr) as their Consul Node. A
// bad config exits 2 naming the file, field and reason.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { AgentProcess, HealthTarget, writeAgentConfig } from '../support/agent-process.ts';
import { freePort, waitFor } from '../support/ports.ts';
import { SiderCluster } from '../support/server-process.ts';

interface HealthEntry {
  Node: { ID: string; Node: string; Address: string };
  Service: { ID: string; Service: string; Port: number; Tags: string[] };
  Checks: { CheckID: string; Status: string; Type: string; Notes: string; Output: string }[];
}

const root = await mkdtemp(join(tmpdir(), 'sider-agent-'));
t.teardown(() => rm(root, { recursive: true, force: true }));
const cluster = await SiderCluster.start({ ids: ['s1'] });
t.teardown(() => cluster.teardown());
const server = cluster.addr('s1');

/** Every agent started here, killed (-9) at the end if still running. */
const agents: AgentProcess[] = [];
t.teardown(async () => {
  await Promise.all(agents.map((a) => a.kill9()));
});

function startAgent(file: string, extra: string[] = []): AgentProcess {
  const a = new AgentProcess(file, extra);
  agents.push(a);
  return a;
}

async function health(service: string, addr = server): Promise<HealthEntry[]> {
  return (await cluster.http.json(addr, `/v1/health/service/${service}`)) as HealthEntry[];
}

/** Polls until the service's instance `id` has check `checkId` in `status`; fails with the agent's log. */
async function waitCheck(agent: AgentProcess, service: string, id: string, checkId: string, status: string, ms = 30_000): Promise<HealthEntry> {
  try {
    return (await waitFor(
      `${service}/${id} check ${checkId} to be ${status}`,
      async (): Promise<HealthEntry | false> => {
        const e = (await health(service)).find((x) => x.Service.ID === id);
        return e !== undefined && e.Checks.find((c) => c.CheckID === checkId)?.Status === status ? e : false;
      },
      ms,
      100,
    )) as HealthEntry;
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- agent (pid ${agent.pid}) output:\n${agent.output.slice(-4000)}\n--- servers:\n${cluster.logs(2000)}`, { cause: err });
  }
}

function webService(target: HealthTarget): Record<string, unknown> {
  return {
    name: 'web',
    id: 'web-1',
    address: '127.0.0.1',
    port: target.port,
    tags: ['v1'],
    // TTL registered with the server: max(3 × 1 s, 1 s + 1 s + 10 s) = 12 s, renewed every ~8 s.
    checks: [{ id: 'web-1-http', name: 'web health', http: target.url, interval: '1s', timeout: '1s' }],
  };
}

const workerService = { name: 'worker', id: 'worker-1', port: 9000, checks: [{ id: 'worker-1-ttl', ttl: '5m', status: 'passing' }] };

/**
 * A config whose periodic sync is an hour away by default: status changes must then travel as
 * check updates, and lost registrations come back through the "does not have associated TTL"
 * answer to a renewal, not through the sync.
 */
function agentConfig(servers: string[], services: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { node_name: 'agent-host-1', servers, sync_interval: '1h', services, ...extra };
}

function reRegistrations(agent: AgentProcess): Record<string, unknown>[] {
  return agent.logLines().filter((l) => l.msg === 're-registered service');
}

t.test('the service appears, turns passing, critical when its target fails, and leaves on SIGTERM', async (t) => {
  const target = await HealthTarget.start();
  t.teardown(() => target.close());
  const agent = startAgent(await writeAgentConfig(root, 'basic.json', agentConfig([server], [webService(target), workerService])));

  const entry = await waitCheck(agent, 'web', 'web-1', 'web-1-http', 'passing');
  t.equal(entry.Service.Port, target.port);
  t.same(entry.Service.Tags, ['v1']);
  const check = entry.Checks.find((c) => c.CheckID === 'web-1-http')!;
  t.equal(check.Type, 'ttl', 'the server holds a TTL check: it never probes the agent-local target');
  t.equal(check.Notes, `run by sider agent agent-host-1: HTTP GET ${target.url}`);
  t.match(check.Output, /200/, 'the probe output is reported');
  t.ok(target.hits > 0, 'the agent probed the target');
  await waitCheck(agent, 'worker', 'worker-1', 'worker-1-ttl', 'passing');

  // The instances carry the agent's node (DESIGN §2), over both Consul read paths.
  t.equal(entry.Node.Node, 'agent-host-1', 'health: Node.Node is the agent node_name');
  t.equal(entry.Node.Address, '127.0.0.1', 'no advertise_addr: Node.Address is the service address');
  t.ok(entry.Checks.every((c) => (c as { Node?: string }).Node === 'agent-host-1'), 'its checks name the agent node');
  const catalog = (await cluster.http.json(server, '/v1/catalog/service/worker')) as { Node: string; Address: string; ServiceID: string }[];
  t.same(catalog.map((c) => [c.Node, c.ServiceID]), [['agent-host-1', 'worker-1']], 'catalog: Node is the agent node_name');
  t.equal(catalog[0]!.Address, '', 'no service or node address: no server address is made up');
  const own = (await cluster.http.json(server, '/v1/agent/services')) as Record<string, unknown>;
  t.notOk('web-1' in own || 'worker-1' in own, "the server's own agent view does not list another node's services");

  target.healthy = false;
  const failed = await waitCheck(agent, 'web', 'web-1', 'web-1-http', 'critical');
  t.match(failed.Checks[0]!.Output, /503/);
  t.same(
    (await cluster.http.json(server, '/v1/health/service/web?passing')) as unknown[],
    [],
    'a critical instance is not served as passing',
  );
  target.healthy = true;
  await waitCheck(agent, 'web', 'web-1', 'web-1-http', 'passing');
  t.same(reRegistrations(agent), [], 'the changes travelled as check updates, not re-registrations');

  const exit = await agent.signal('SIGTERM');
  t.same(exit, { code: 0, signal: null }, 'exits 0 after SIGTERM');
  t.same(await health('web'), [], 'web-1 deregistered');
  t.same(await health('worker'), [], 'worker-1 deregistered');
  t.ok(
    agent.logLines().some((l) => l.msg === 'deregistered service' && l.id === 'web-1'),
    'the agent logged the deregistration',
  );
});

t.test('an agent killed with -9 leaves its checks to expire to critical on the server', async (t) => {
  const target = await HealthTarget.start();
  t.teardown(() => target.close());
  const agent = startAgent(await writeAgentConfig(root, 'kill.json', agentConfig([server], [webService(target)])));
  // Nobody is left to deregister it.
  t.teardown(async () => {
    await cluster.http.call(server, 'PUT', '/v1/agent/service/deregister/web-1');
  });
  await waitCheck(agent, 'web', 'web-1', 'web-1-http', 'passing');
  await agent.kill9();
  // The registered TTL is 12 s; allow the server's expiry scan on top of it.
  const expired = await waitCheck(agent, 'web', 'web-1', 'web-1-http', 'critical', 30_000);
  t.match(expired.Checks[0]!.Output, /TTL/i, 'expired by the server, not reported by the agent');
  t.equal(target.healthy, true, 'the target itself never failed');
});

t.test('the agent restores its registrations after the server loses its state', async (t) => {
  const target = await HealthTarget.start();
  t.teardown(() => target.close());
  // Two agents: one restores through the renewal's "does not have associated TTL" answer (its sync
  // is an hour away), the other, whose only check the application renews, through its 2 s sync.
  const web = startAgent(await writeAgentConfig(root, 'wipe-web.json', agentConfig([server], [webService(target)])));
  const worker = startAgent(await writeAgentConfig(root, 'wipe-worker.json', agentConfig([server], [workerService], { node_name: 'agent-host-2', sync_interval: '2s' })));
  await waitCheck(web, 'web', 'web-1', 'web-1-http', 'passing');
  await waitCheck(worker, 'worker', 'worker-1', 'worker-1-ttl', 'passing');

  // The same server, same port, a fresh data directory: an empty registry.
  await cluster.kill9('s1');
  cluster.spec('s1').dir = join(cluster.root, 's1-wiped');
  await cluster.startServer('s1');

  const back = await waitCheck(web, 'web', 'web-1', 'web-1-http', 'passing');
  t.equal(back.Service.Port, target.port);
  t.ok(
    web.logLines().some((l) => l.msg === 'the server does not know the check; re-registering its service'),
    `the web agent learned of the loss from a renewal\n${web.output.slice(-3000)}`,
  );
  await waitCheck(worker, 'worker', 'worker-1', 'worker-1-ttl', 'passing');
  t.ok(web.running && worker.running, 'both agents kept running through the outage');

  t.same(await web.signal('SIGINT'), { code: 0, signal: null }, 'exits 0 after SIGINT');
  t.same(await worker.signal('SIGTERM'), { code: 0, signal: null });
  t.same(await health('web'), []);
  t.same(await health('worker'), []);
});

t.test('advertise_addr becomes Node.Address; a registration under another node is taken back', async (t) => {
  const config = agentConfig([server], [workerService], { node_name: 'agent-host-3', advertise_addr: '127.0.0.9', sync_interval: '1s' });
  const agent = startAgent(await writeAgentConfig(root, 'advertise.json', config));
  const entry = await waitCheck(agent, 'worker', 'worker-1', 'worker-1-ttl', 'passing');
  t.same([entry.Node.Node, entry.Node.Address], ['agent-host-3', '127.0.0.9'], 'health: Node.Node and Node.Address');
  const catalog = (await cluster.http.json(server, '/v1/catalog/service/worker')) as { ID: string; Node: string; Address: string; TaggedAddresses: Record<string, string> }[];
  t.same([catalog[0]!.Node, catalog[0]!.Address, catalog[0]!.TaggedAddresses.lan], ['agent-host-3', '127.0.0.9', '127.0.0.9']);
  t.equal(catalog[0]!.ID, entry.Node.ID, 'one node ID on both paths');

  // Someone re-registers the instance through the server's agent endpoint (the server's node):
  // the agent's sync finds the node differs and registers it back as its own.
  const over = await cluster.http.call(server, 'PUT', '/v1/agent/service/register', {
    body: { Name: 'worker', ID: 'worker-1', Port: 9000, Checks: [{ CheckID: 'worker-1-ttl', TTL: '5m' }] },
  });
  t.equal(over.status, 200, over.text);
  await waitFor(
    'worker-1 back under agent-host-3',
    async () => (await health('worker')).some((e) => e.Node.Node === 'agent-host-3' && e.Node.Address === '127.0.0.9'),
    20_000,
    100,
  );
  // The agent logs the re-registration after its reply, which may come after the health read above.
  const retaken = await waitFor('the re-registration log line', async () => reRegistrations(agent).some((l) => l.reason === 'node'), 5_000, 50).catch(() => false);
  t.ok(retaken, 'the agent re-registered because the node differed');
  if (!retaken) t.comment(agent.output.slice(-3000));
  t.same(await agent.signal('SIGTERM'), { code: 0, signal: null });
  t.same(await health('worker'), []);
});

t.test('with the first server down, the agent registers through the second', async (t) => {
  const target = await HealthTarget.start();
  t.teardown(() => target.close());
  const dead = `127.0.0.1:${await freePort()}`;
  const agent = startAgent(await writeAgentConfig(root, 'failover.json', agentConfig([dead, server], [webService(target)])));
  await waitCheck(agent, 'web', 'web-1', 'web-1-http', 'passing');
  const switched = agent.logLines().find((l) => l.msg === 'using another server');
  t.ok(switched, 'logged the failover');
  t.equal(switched?.server, server);
  t.equal(switched?.previous, dead);
  t.same(await agent.signal('SIGTERM'), { code: 0, signal: null });
  t.same(await health('web'), []);
});

t.test('on SIGTERM with its server frozen, the agent gives up deregistering in bounded time and exits 0', async (t) => {
  const target = await HealthTarget.start();
  t.teardown(() => target.close());
  const agent = startAgent(await writeAgentConfig(root, 'frozen.json', agentConfig([server], [webService(target)])));
  await waitCheck(agent, 'web', 'web-1', 'web-1-http', 'passing');
  const proc = cluster.procs.get('s1')!;
  proc.child.kill('SIGSTOP');
  t.teardown(async () => {
    proc.child.kill('SIGCONT');
    await cluster.http.call(server, 'PUT', '/v1/agent/service/deregister/web-1');
  });
  // Well under the agent's 10 s force-exit: the deregistration deadline is 5 s.
  t.same(await agent.signal('SIGTERM', 15_000), { code: 0, signal: null });
  t.ok(
    agent.logLines().some((l) => l.msg === 'cannot deregister service' && l.id === 'web-1'),
    'it said it could not deregister',
  );
});

t.test('a bad config exits 2 naming the file, the field and the reason, and registers nothing', async (t) => {
  const badInterval = agentConfig([server], [
    { name: 'web', id: 'web-1', checks: [{ id: 'web-1-http', http: 'http://127.0.0.1:1/health', interval: 'often' }] },
  ]);
  const file = await writeAgentConfig(root, 'bad.json', badInterval);
  const agent = startAgent(file);
  t.same(await agent.waitExit(), { code: 2, signal: null });
  t.match(agent.output, `sider agent: config file ${file}: services[0].checks[0].interval: invalid duration "often"`);

  const script = {
    servers: [server],
    services: [{ name: 'job', checks: [{ id: 'job-script', args: ['/bin/true'], interval: '10s' }] }],
  };
  const scriptFile = await writeAgentConfig(root, 'script.json', script);
  const refused = startAgent(scriptFile);
  t.same(await refused.waitExit(), { code: 2, signal: null });
  t.match(refused.output, `services[0].checks[0].args: check "job-script" is a script check, and script checks are disabled`);

  const noFile = startAgent(join(root, 'absent.json'));
  t.same(await noFile.waitExit(), { code: 2, signal: null });
  t.match(noFile.output, /absent\.json: .*ENOENT/);
  t.same(await health('job'), [], 'nothing was registered');
});
