// DeregisterCriticalServiceAfter on a real `sider server` (issue #4): an instance whose check stays
// critical for longer than that (Consul's minimum, 1 minute) is removed by the leader; an instance
// without the setting, critical just as long, stays.

import t from 'tap';
import { waitFor } from '../support/ports.ts';
import { SiderCluster } from '../support/server-process.ts';

interface CatalogEntry {
  ServiceID: string;
}

t.test('an instance critical for longer than DeregisterCriticalServiceAfter is deregistered', async (t) => {
  const cluster = (await SiderCluster.start({ ids: ['d1'] })).teardownWith(t);
  const http = cluster.http;
  const addr = cluster.addr('d1');
  const ids = async (): Promise<string[]> =>
    (JSON.parse((await http.call(addr, 'GET', '/v1/catalog/service/reaped')).text) as CatalogEntry[]).map((e) => e.ServiceID).sort();

  // Before the request: the leader counts the minute from when it proposed the registration, no earlier.
  const registered = Date.now();
  let r = await http.call(addr, 'PUT', '/v1/agent/service/register', {
    body: { Name: 'reaped', ID: 'gone-1', Port: 80, Check: { CheckID: 'gone-1', TTL: '30s', DeregisterCriticalServiceAfter: '1s' } },
  });
  t.equal(r.status, 200, r.text);
  r = await http.call(addr, 'PUT', '/v1/agent/service/register', {
    body: { Name: 'reaped', ID: 'kept-1', Port: 81, Check: { CheckID: 'kept-1', TTL: '30s' } },
  });
  t.equal(r.status, 200, r.text);
  const shown = JSON.parse((await http.call(addr, 'GET', '/v1/health/checks/reaped')).text) as { CheckID: string; Status: string; Definition: Record<string, unknown> }[];
  const gone = shown.find((c) => c.CheckID === 'gone-1');
  t.equal(gone?.Status, 'critical', 'a new check without Status starts critical');
  t.equal(gone?.Definition.DeregisterCriticalServiceAfter, '1m0s', 'raised to Consul’s minimum of one minute');
  t.same(await ids(), ['gone-1', 'kept-1']);

  await waitFor('gone-1 to be deregistered', async () => (await ids()).length === 1, 90_000, 250);
  const after = Date.now() - registered;
  t.same(await ids(), ['kept-1'], 'only the instance with the setting is removed');
  t.ok(after >= 60_000, `removed after ${after} ms, not before the minute`);
  const log = cluster.procs.get('d1')!.logLines();
  t.ok(
    log.some((l) => typeof l.msg === 'string' && l.msg.includes('DeregisterCriticalServiceAfter') && l.id === 'gone-1'),
    'the leader logged why',
  );
});
