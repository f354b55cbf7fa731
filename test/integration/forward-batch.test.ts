// Writes forwarded by a follower travel to the leader in batches (/v1/internal/apply-batch): each
// write keeps its own result, its own request-ID dedup and its own refusal, on real server processes.

import t from 'tap';
import { signRequest } from '../../src/cluster-auth.ts';
import { INTERNAL_APPLY_BATCH } from '../../src/forward-writes.ts';
import type { ForwardedResult } from '../../src/forward-writes.ts';
import { SiderCluster } from '../support/server-process.ts';

const CLUSTER_KEY = 'forward-batch-test-cluster-key-0123456789';

t.test('forwarded writes in batches', async (t) => {
  const cluster = (await SiderCluster.start({ clusterKey: CLUSTER_KEY })).teardownWith(t);
  const http = cluster.http;
  const leader = await cluster.leader();
  const follower = cluster.ids.find((id) => id !== leader)!;
  const via = cluster.addr(follower);

  const owner = await http.call(cluster.addr(leader), 'PUT', '/v1/agent/service/register', {
    body: { Name: 'owner', ID: 'o1', Check: { CheckID: 'taken', TTL: '30s' } },
  });
  t.equal(owner.status, 200, owner.text);

  await t.test('concurrent registrations on a follower each get their own answer', async (t) => {
    const n = 80;
    const calls = Array.from({ length: n }, (_, i) =>
      http.call(via, 'PUT', '/v1/agent/service/register', { body: { Name: 'fb', ID: `fb-${i}`, Port: 2000 + i }, timeoutMs: 15_000 }),
    );
    // One of them, in the middle of the burst, is refused when applied.
    calls.splice(40, 0, http.call(via, 'PUT', '/v1/agent/service/register', { body: { Name: 'thief', ID: 't1', Check: { CheckID: 'taken', TTL: '30s' } }, timeoutMs: 15_000 }));
    const replies = await Promise.all(calls);
    const refused = replies.splice(40, 1)[0]!;
    t.equal(refused.status, 400, 'the conflicting registration is refused');
    t.match(refused.text, /CheckID "taken" already belongs to instance "o1" of service "owner"/);
    t.same(
      replies.map((r) => r.status),
      Array.from({ length: n }, () => 200),
      'every other registration succeeded',
    );
    const entries = JSON.parse((await http.call(via, 'GET', '/v1/catalog/service/fb', { timeoutMs: 10_000 })).text) as { ServiceID: string; ServicePort: number }[];
    t.equal(entries.length, n, 'all are visible on the follower right after their answers');
    t.same(
      entries.map((e) => e.ServicePort).sort((a, b) => a - b),
      Array.from({ length: n }, (_, i) => 2000 + i),
    );
    const thief = JSON.parse((await http.call(via, 'GET', '/v1/catalog/service/thief', { timeoutMs: 10_000 })).text) as unknown[];
    t.same(thief, [], 'nothing of the refused registration was applied');
  });

  await t.test('a retried write with the same request ID is applied once', async (t) => {
    const headers = { 'x-sider-request-id': 'batch-dup-1' };
    const first = await http.call(via, 'PUT', '/v1/agent/service/register', { body: { Name: 'dup', ID: 'd1', Port: 1 }, headers });
    const retry = await http.call(via, 'PUT', '/v1/agent/service/register', { body: { Name: 'dup', ID: 'd1', Port: 2 }, headers });
    t.equal(first.status, 200);
    t.equal(retry.status, 200, 'the retry is answered like the original');
    const entries = JSON.parse((await http.call(via, 'GET', '/v1/catalog/service/dup')).text) as { ServicePort: number }[];
    t.same(
      entries.map((e) => e.ServicePort),
      [1],
      'the retry did not apply again',
    );
  });

  await t.test('the leader answers a signed batch with one result per write, in order', async (t) => {
    const reg = (id: string, checkId: string): unknown => ({
      type: 'register',
      ns: 'default',
      node: 'hand',
      instance: { Service: 'hand', ID: id, Address: '', Port: 1, Tags: [], Meta: {}, Weights: { Passing: 1, Warning: 1 }, TaggedAddresses: {}, EnableTagOverride: false },
      checks: [
        {
          CheckID: checkId, Name: '', Type: 'ttl', Status: '', Notes: '', Output: '', Interval: '', Timeout: '', TTL: '30s',
          DeregisterCriticalServiceAfter: '', SuccessBeforePassing: 0, FailuresBeforeCritical: 0, HTTP: '', Method: '', Header: {},
          TCP: '', GRPC: '', GRPCUseTLS: false, TLSSkipVerify: false, Args: [],
        },
      ],
      replaceExistingChecks: false,
      now: 0,
    });
    const body = Buffer.from(
      JSON.stringify({
        writes: [
          { cmd: reg('h1', 'h1-check'), rid: 'hand-1' },
          { cmd: reg('h2', 'taken'), rid: 'hand-2' },
          { cmd: { type: 'nonsense' }, rid: 'hand-3' },
          { cmd: reg('h4', 'h4-check'), rid: 'hand-4' },
        ],
      }),
    );
    const sign = (b: Buffer): Record<string, string> => signRequest(CLUSTER_KEY, 'POST', INTERNAL_APPLY_BATCH, b);
    const res = await http.call(cluster.addr(leader), 'POST', INTERNAL_APPLY_BATCH, {
      headers: { 'content-type': 'application/json', ...sign(body) },
      body: JSON.parse(body.toString()) as unknown,
    });
    t.equal(res.status, 200, res.text);
    const { results } = JSON.parse(res.text) as { results: ForwardedResult[] };
    t.equal(results.length, 4);
    const [r1, r2, r3, r4] = results as [ForwardedResult, ForwardedResult, ForwardedResult, ForwardedResult];
    t.ok(r1.ok && r1.result.ok && r1.index > 0, 'the first write applied');
    t.ok(r2.ok && !r2.result.ok && /already belongs/.test(r2.result.error), 'the second is refused by the state machine, alone');
    t.ok(r3.ok && !r3.result.ok && /type/.test(r3.result.error), 'the malformed command is refused, alone');
    t.ok(r4.ok && r4.result.ok && r1.ok && r4.index > r1.index, 'the fourth applied after the first');

    const unsigned = await http.call(cluster.addr(leader), 'POST', INTERNAL_APPLY_BATCH, { body: { writes: [] } });
    t.equal(unsigned.status, 401, 'an unsigned batch is refused');
    const badShape = Buffer.from(JSON.stringify({ writes: [{ cmd: 'x', rid: 'r' }] }));
    const bad = await http.call(cluster.addr(leader), 'POST', INTERNAL_APPLY_BATCH, {
      headers: { 'content-type': 'application/json', ...sign(badShape) },
      body: JSON.parse(badShape.toString()) as unknown,
    });
    t.equal(bad.status, 400, 'a malformed batch is refused');
    t.match(bad.text, /writes\[0\]/);
  });
});
