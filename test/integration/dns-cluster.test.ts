// DNS on a three-server cluster of real `sider server` processes: every server answers from its
// own replicated state (followers included), follows health changes written on any server, and
// keeps answering from local state once it has lost its leader (stale mode).

import { Resolver } from 'node:dns/promises';
import t from 'tap';
import { freePort, waitFor } from '../support/ports.ts';
import { SiderCluster } from '../support/server-process.ts';

async function a(resolver: Resolver, name: string): Promise<string[] | string> {
  try {
    return (await resolver.resolve4(name)).sort();
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? 'error';
  }
}

t.test('every server answers DNS from its own state, and a server cut off from its leader still answers', async (t) => {
  const cluster = await SiderCluster.create();
  t.teardown(() => cluster.teardown());
  const resolvers = new Map<string, Resolver>();
  for (const id of cluster.ids) {
    const port = await freePort();
    cluster.spec(id).extraArgs = ['-dns', `127.0.0.1:${port}`, '-raft-tick-ms', '20'];
    const r = new Resolver({ timeout: 1000, tries: 1 });
    r.setServers([`127.0.0.1:${port}`]);
    resolvers.set(id, r);
  }
  try {
    await cluster.form();
  } catch (err) {
    t.comment(cluster.logs());
    throw err;
  }
  const leader = await cluster.leader();
  const follower = cluster.ids.find((id) => id !== leader)!;
  const register = async (status: string): Promise<void> => {
    const body = { Name: 'api', ID: 'api-1', Address: '10.0.0.5', Port: 8080, Check: { CheckID: 'api-1-ttl', TTL: '600s', Status: status } };
    // Written on a follower: forwarded to the leader.
    const r = await cluster.http.call(cluster.addr(follower), 'PUT', '/v1/agent/service/register', { body });
    t.equal(r.status, 200, `register ${status}: ${r.text}`);
  };
  const everyServer = async (what: string, want: string[] | string): Promise<void> => {
    for (const id of cluster.ids) {
      await waitFor(`${id} to answer ${what}`, async () => JSON.stringify(await a(resolvers.get(id)!, 'api.default.sider')) === JSON.stringify(want), 10_000, 50);
      t.pass(`${id} answers ${JSON.stringify(want)}`);
    }
  };

  await register('passing');
  await everyServer('the passing instance', ['10.0.0.5']);
  await register('critical');
  await everyServer('NXDOMAIN for the critical instance', 'ENOTFOUND');
  await register('passing');
  await everyServer('the instance again', ['10.0.0.5']);

  // Kill the other two: the survivor has no quorum, hence no leader, and answers from its state.
  const survivor = follower;
  for (const id of cluster.ids) if (id !== survivor) await cluster.kill9(id);
  await waitFor(`${survivor} to lose its leader`, async () => (await cluster.http.leader(cluster.addr(survivor))) === '', 20_000, 100);
  t.same(await a(resolvers.get(survivor)!, 'api.default.sider'), ['10.0.0.5'], 'answered from local state without a leader');
  t.same(await a(resolvers.get(survivor)!, 'nope.default.sider'), 'ENOTFOUND');

  // A write there cannot reach a leader: 503, and the server logs the failed request (it did not
  // before bin/server.ts handed the HTTP app its logger).
  const w = await cluster.http.call(cluster.addr(survivor), 'PUT', '/v1/agent/service/register', { body: { Name: 'late', Port: 1 } });
  t.equal(w.status, 503, `a write without a leader: ${w.text}`);
  const proc = cluster.procs.get(survivor)!;
  await waitFor('the failed request in the log', async () => /http request failed/.test(proc.output), 5_000, 50);
  t.match(proc.output, /http request failed.*SIDER_NO_LEADER|SIDER_NO_LEADER.*http request failed/, 'logged with its code');
});
