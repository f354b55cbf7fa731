// The real `consul` npm client (v2) against one real `sider server` process: registration with
// tags, meta and TTL checks, catalog and health reads, deregistration, and the blocking-query watch.

import t from 'tap';
import Consul from 'consul';
import { SiderHttp, SiderProcess, allocateSpec, tempRoot, waitReady } from '../support/server-process.ts';
import { waitFor } from '../support/ports.ts';

interface HealthEntry {
  Node: { Node: string; Address: string };
  Service: { ID: string; Service: string; Tags: string[]; Meta: Record<string, string>; Port: number; Address: string };
  Checks: { CheckID: string; Status: string; ServiceID: string }[];
}

/** The failure as the consul client reports it: papi puts the status and Sider's body on the error. */
function describe(err: unknown): string {
  const e = err as Error & { statusCode?: number; response?: { statusCode?: number; body?: unknown } };
  const status = e.statusCode ?? e.response?.statusCode;
  return `${e.message}${status ? ` (HTTP ${status})` : ''}${e.response?.body !== undefined ? `: ${JSON.stringify(e.response.body)}` : ''}`;
}

t.test('the consul npm client registers, reads, watches and deregisters against sider server', async (t) => {
  const { root, remove } = await tempRoot('sider-consul-');
  const http = new SiderHttp();
  const spec = await allocateSpec(root, 'node1', { bootstrap: true });
  const proc = new SiderProcess(spec);
  t.teardown(async () => {
    await proc.kill9();
    await http.close();
    await remove();
  });
  await waitReady(proc, http);
  const [host, port] = spec.http.split(':') as [string, string];
  const consul = new Consul({ host, port: Number(port) });
  t.teardown(() => consul.destroy());

  // Any refusal fails the test with the request and Sider's answer (papi's error carries both).
  const call = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      throw new Error(`consul client ${what} failed: ${describe(err)}\n--- sider output\n${proc.output.slice(-3000)}`, { cause: err });
    }
  };

  await t.test('registers an instance with tags, meta and a passing TTL check, and one left critical', async (t) => {
    await call('agent.service.register web-1', () =>
      consul.agent.service.register({
        name: 'web',
        id: 'web-1',
        tags: ['primary', 'v1'],
        meta: { version: '1.4.2', zone: 'a' },
        address: '10.0.0.1',
        port: 8080,
        // `timeout` is required by the package's typings although a TTL check ignores it.
        check: { name: 'web-1 ttl', checkid: 'web-1-ttl', ttl: '60s', status: 'passing', timeout: '1s' },
      }),
    );
    await call('agent.service.register web-2', () =>
      consul.agent.service.register({
        name: 'web',
        id: 'web-2',
        tags: ['v1'],
        address: '10.0.0.2',
        port: 8080,
        // No status: Consul starts a TTL check critical.
        check: { name: 'web-2 ttl', checkid: 'web-2-ttl', ttl: '60s', timeout: '1s' },
      }),
    );
    const agentServices = await call('agent.service.list', () => consul.agent.service.list());
    t.same(Object.keys(agentServices).sort(), ['web-1', 'web-2'], 'the agent lists both instances');
  });

  await t.test('catalog.service.list names the service with the union of its tags', async (t) => {
    const list = await call('catalog.service.list', () => consul.catalog.service.list());
    t.ok(list.web, 'web is listed');
    t.same([...(list.web ?? [])].sort(), ['primary', 'v1']);
  });

  await t.test('catalog.service.nodes returns both instances with their fields', async (t) => {
    const nodes = (await call('catalog.service.nodes', () => consul.catalog.service.nodes('web'))) as Record<string, unknown>[];
    t.equal(nodes.length, 2);
    const web1 = nodes.find((n) => n.ServiceID === 'web-1');
    t.ok(web1, 'web-1 is there');
    t.match(web1, { ServiceName: 'web', ServiceAddress: '10.0.0.1', ServicePort: 8080, ServiceMeta: { version: '1.4.2', zone: 'a' }, Node: 'node1' });
    t.same([...((web1?.ServiceTags as string[] | undefined) ?? [])].sort(), ['primary', 'v1']);
  });

  await t.test('health.service filters out the critical instance only with passing', async (t) => {
    const all = (await call('health.service web', () => consul.health.service('web'))) as HealthEntry[];
    t.same(all.map((e) => e.Service.ID).sort(), ['web-1', 'web-2']);
    const statusOf = (id: string): string | undefined => all.find((e) => e.Service.ID === id)?.Checks.find((c) => c.ServiceID === id)?.Status;
    t.equal(statusOf('web-1'), 'passing');
    t.equal(statusOf('web-2'), 'critical');
    const web1 = all.find((e) => e.Service.ID === 'web-1');
    t.match(web1?.Service, { Service: 'web', Port: 8080, Address: '10.0.0.1', Meta: { version: '1.4.2' } });
    t.equal(web1?.Node.Node, 'node1');

    const passing = (await call('health.service web passing', () => consul.health.service({ service: 'web', passing: true }))) as HealthEntry[];
    t.same(
      passing.map((e) => e.Service.ID),
      ['web-1'],
      'only the passing instance',
    );
  });

  await t.test('a watch on health.service sees a new registration within a second', async (t) => {
    const watch = consul.watch({ method: consul.health.service, options: { service: 'web', passing: 'true' } });
    t.teardown(() => watch.end());
    const changes: { at: number; ids: string[] }[] = [];
    const errors: string[] = [];
    watch.on('change', (data: unknown) => {
      const ids = Array.isArray(data) ? (data as HealthEntry[]).map((e) => e.Service.ID).sort() : [];
      changes.push({ at: performance.now(), ids });
    });
    watch.on('error', (err: unknown) => errors.push(describe(err)));

    await waitFor('the watch to deliver its first answer', () => changes.length > 0 || errors.length > 0, 10_000);
    t.same(errors, [], 'the watch got no error');
    t.same(changes[0]?.ids, ['web-1'], 'the first answer is the current passing set');

    const start = performance.now();
    await call('agent.service.register web-3', () =>
      consul.agent.service.register({
        name: 'web',
        id: 'web-3',
        tags: ['v2'],
        port: 8081,
        check: { name: 'web-3 ttl', checkid: 'web-3-ttl', ttl: '60s', status: 'passing', timeout: '1s' },
      }),
    );
    const seen = (await waitFor('the watch to see web-3', () => changes.find((c) => c.ids.includes('web-3')), 10_000, 5))!;
    const latencyMs = seen.at - start;
    t.comment(`watch latency (register call → change event): ${latencyMs.toFixed(1)} ms`);
    t.ok(latencyMs < 1000, `the change arrived ${latencyMs.toFixed(1)} ms after the register call (acceptance: < 1000 ms)`);
    t.same(seen.ids, ['web-1', 'web-3']);
    t.same(errors, [], 'the watch got no error');
  });

  await t.test('deregister through the client removes the instance and its check', async (t) => {
    await call('agent.service.deregister web-2', () => consul.agent.service.deregister('web-2'));
    const nodes = (await call('catalog.service.nodes', () => consul.catalog.service.nodes('web'))) as Record<string, unknown>[];
    t.same(nodes.map((n) => n.ServiceID).sort(), ['web-1', 'web-3']);
    const all = (await call('health.service web', () => consul.health.service('web'))) as HealthEntry[];
    t.notOk(
      all.some((e) => e.Checks.some((c) => c.CheckID === 'web-2-ttl')),
      'the deregistered instance’s check is gone',
    );
    await call('agent.service.deregister web-1', () => consul.agent.service.deregister({ id: 'web-1' }));
    await call('agent.service.deregister web-3', () => consul.agent.service.deregister('web-3'));
    const list = await call('catalog.service.list', () => consul.catalog.service.list());
    t.notOk('web' in list, 'a service with no instances left is no longer listed');
  });
});
