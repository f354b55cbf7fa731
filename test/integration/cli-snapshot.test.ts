// `sider` operator commands run as child processes against real `sider server` processes (tables,
// -json, exit codes and messages), and /v1/snapshot: save, deregister, restore brings the services
// back with a higher X-Consul-Index and wakes held queries; corrupted or unsigned archives are
// refused with nothing changed; on three servers a restore sent to a follower shows everywhere.

import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { signRequest } from '../../src/cluster-auth.ts';
import { decodeArchive } from '../../src/registry/snapshot-archive.ts';
import { freePort, waitFor } from '../support/ports.ts';
import { REPO_ROOT, SIDER_BIN, SiderCluster } from '../support/server-process.ts';

const KEY = 'cli-snapshot-test-cluster-key-0123456789';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `sider <args>` with only the given SIDER_* variables. */
function sider(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SIDER_')) clean[k] = v;
  return new Promise((resolve) => {
    execFile(process.execPath, [SIDER_BIN, ...args], { cwd: REPO_ROOT, env: { ...clean, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function rawPut(addr: string, body: Uint8Array, key: string): Promise<{ status: number; text: string }> {
  const headers = key ? signRequest(key, 'PUT', '/v1/snapshot', body) : {};
  const res = await request(`http://${addr}/v1/snapshot`, { method: 'PUT', headers, body: Buffer.from(body), signal: AbortSignal.timeout(10_000) });
  return { status: res.statusCode, text: await res.body.text() };
}

t.test('one server with a cluster key', async (t) => {
  const cluster = (await SiderCluster.start({ ids: ['n1'], clusterKey: KEY })).teardownWith(t);
  const addr = cluster.addr('n1');
  const env = { SIDER_HTTP_ADDR: addr, SIDER_CLUSTER_KEY: KEY };
  const http = cluster.http;

  await t.test('register with flags and from a Consul registration file', async (t) => {
    const r = await sider(['register', '-name', 'api', '-id', 'api-1', '-address', '10.0.0.5', '-port', '8080', '-tag', 'v1', '-tag', 'blue', '-ttl', '30s'], env);
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout.trim(), 'registered service api (ID api-1)');
    const file = join(cluster.root, 'web.json');
    await writeFile(file, JSON.stringify({ Name: 'web', ID: 'web-1', Address: '10.0.0.6', Port: 80, Check: { TTL: '30s', Status: 'passing' } }));
    const f = await sider(['register', '-file', file, '-http-addr', addr]);
    t.equal(f.code, 0, f.stderr);
    const bad = await sider(['register', '-name', 'not a name'], env);
    t.equal(bad.code, 1);
    t.match(bad.stderr, /^sider register: PUT \/v1\/agent\/service\/register: HTTP 400: Name/);
    t.equal(bad.stderr.trim().split('\n').length, 1, 'one line');
    const usage = await sider(['register', '-port', '80'], env);
    t.equal(usage.code, 2);
    t.match(usage.stderr, /-name is required/);
  });

  await t.test('services, health and members as tables and as JSON', async (t) => {
    const table = await sider(['services'], env);
    t.equal(table.code, 0, table.stderr);
    t.same(table.stdout.trimEnd().split('\n'), ['Service  Tags', 'api      blue,v1', 'web']);
    const json = await sider(['services', '-json'], env);
    t.same(JSON.parse(json.stdout), { api: ['blue', 'v1'], web: [] });
    const other = await sider(['services', '-ns', 'other', '-json'], env);
    t.same(JSON.parse(other.stdout), {});

    const health = await sider(['health', 'api'], env);
    t.equal(health.code, 0, health.stderr);
    const lines = health.stdout.trimEnd().split('\n');
    t.match(lines[0], /^ID\s+Address\s+Port\s+Node\s+Health\s+Checks$/);
    t.match(lines[1], /^api-1\s+10\.0\.0\.5\s+8080\s+n1\s+critical\s+service:api-1=critical$/);
    const passing = await sider(['health', 'api', '-passing', '-json'], env);
    t.same(JSON.parse(passing.stdout), [], 'a new TTL check is critical: not passing');
    const web = await sider(['health', 'web', '-passing', '-json'], env);
    t.same((JSON.parse(web.stdout) as { Service: { ID: string } }[]).map((e) => e.Service.ID), ['web-1']);

    const members = await sider(['members'], env);
    t.equal(members.code, 0, members.stderr);
    const ml = members.stdout.trimEnd().split('\n');
    t.match(ml[0], /^Node\s+Raft address\s+HTTP address\s+Status\s+Role$/);
    t.match(ml[1], new RegExp(`^n1\\s+${cluster.spec('n1').raft.replace(/\./g, '\\.')}\\s+\\S+\\s+alive\\s+leader$`));
    const mj = JSON.parse((await sider(['members', '-json'], env)).stdout) as { Name: string }[];
    t.same(mj.map((m) => m.Name), ['n1']);
  });

  await t.test('snapshot save, deregister, restore: services back, indexes forward, held query woken', async (t) => {
    const file = join(cluster.root, 'backup.snap');
    const unsigned = await sider(['snapshot', 'save', file, '-http-addr', addr]);
    t.equal(unsigned.code, 1, 'without the cluster key the server refuses');
    t.match(unsigned.stderr, /HTTP 401: cluster signature required/);

    const save = await sider(['snapshot', 'save', file], env);
    t.equal(save.code, 0, save.stderr);
    t.match(save.stdout, /^saved snapshot at index \d+ \(\d+ bytes\) to /);
    const archive = decodeArchive(await readFile(file));
    t.ok(archive.index > 0);

    const dereg = await sider(['deregister', 'api-1'], env);
    t.equal(dereg.code, 0, dereg.stderr);
    t.equal(dereg.stdout.trim(), 'deregistered api-1');
    t.same(JSON.parse((await sider(['services', '-json'], env)).stdout), { web: [] });
    const after = await http.call(addr, 'GET', '/v1/health/service/api');
    t.equal(after.text, '[]');
    const seen = Number(after.headers['x-consul-index']);
    t.ok(seen > archive.index, 'the registry has moved past the archive');

    // A blocking query held on the catalog must wake when the restore lands.
    const catalogIndex = Number((await http.call(addr, 'GET', '/v1/catalog/services')).headers['x-consul-index']);
    const held = http.call(addr, 'GET', `/v1/catalog/services?index=${catalogIndex}&wait=60s`, { timeoutMs: 30_000 });

    const restore = await sider(['snapshot', 'restore', file, '-json'], env);
    t.equal(restore.code, 0, restore.stderr);
    const out = JSON.parse(restore.stdout) as { archiveIndex: number; index: number };
    t.equal(out.archiveIndex, archive.index);
    t.ok(out.index > seen, `the restore's index ${out.index} is above ${seen}`);

    const woke = await held;
    t.equal(woke.status, 200);
    t.ok(Number(woke.headers['x-consul-index']) > catalogIndex, 'the held query answered with a higher index');
    t.same(JSON.parse(woke.text), { api: ['blue', 'v1'], web: [] });

    const back = await http.call(addr, 'GET', '/v1/health/service/api');
    t.same((JSON.parse(back.text) as { Service: { ID: string; Port: number } }[]).map((e) => [e.Service.ID, e.Service.Port]), [['api-1', 8080]]);
    t.ok(Number(back.headers['x-consul-index']) > seen, 'X-Consul-Index is greater than any seen before the restore');
  });

  await t.test('a corrupted, truncated or unsigned archive is refused and changes nothing', async (t) => {
    const file = join(cluster.root, 'backup.snap');
    const good = await readFile(file);
    const before = await http.call(addr, 'GET', '/v1/catalog/services');
    const corrupt = Buffer.from(good);
    corrupt[corrupt.length - 3] = corrupt[corrupt.length - 3]! ^ 0x04;
    const cf = join(cluster.root, 'corrupt.snap');
    await writeFile(cf, corrupt);
    const local = await sider(['snapshot', 'restore', cf], env);
    t.equal(local.code, 2, 'the CLI checks the file before sending it');
    t.match(local.stderr, /checksum mismatch/);

    const r1 = await rawPut(addr, corrupt, KEY);
    t.equal(r1.status, 400);
    t.match(r1.text, /checksum mismatch/);
    const r2 = await rawPut(addr, good.subarray(0, good.length - 100), KEY);
    t.equal(r2.status, 400);
    t.match(r2.text, /truncated/);
    const r3 = await rawPut(addr, Buffer.from('{"not":"an archive at all, but long enough for a header........."}'), KEY);
    t.equal(r3.status, 400);
    t.match(r3.text, /bad magic/);
    const r4 = await rawPut(addr, good, '');
    t.equal(r4.status, 401, 'unsigned');
    const r5 = await rawPut(addr, good, 'a-different-cluster-key-0123456789');
    t.equal(r5.status, 401, 'signed with another key');
    const post = await http.call(addr, 'POST', '/v1/snapshot');
    t.equal(post.status, 405);
    t.equal(post.headers.allow, 'GET, PUT');
    const now = await http.call(addr, 'GET', '/v1/catalog/services');
    t.equal(now.text, before.text);
    t.equal(now.headers['x-consul-index'], before.headers['x-consul-index'], 'no index moved');
  });

  await t.test('join is signed, and refused without the key', async (t) => {
    const r = await sider(['join', '-id', 'ghost', '-raft-addr', '127.0.0.1:1', '-http-addr', addr]);
    t.equal(r.code, 1);
    t.match(r.stderr, /^sider join: POST \/v1\/raft\/join: HTTP 401/);
    const usage = await sider(['join', '-id', 'ghost'], env);
    t.equal(usage.code, 2);
  });
});

t.test('commands against a server that is not there exit 1 with one line', async (t) => {
  const port = await freePort();
  for (const args of [['members'], ['services', '-json'], ['health', 'api'], ['deregister', 'x'], ['snapshot', 'save', '/tmp/never-written.snap']]) {
    const r = await sider([...args, '-http-addr', `127.0.0.1:${port}`]);
    t.equal(r.code, 1, args.join(' '));
    t.equal(r.stderr.trim(), `sider ${args[0]}: cannot reach sider at 127.0.0.1:${port}: connection refused`);
    t.equal(r.stdout, '');
  }
  const help = await sider(['help']);
  for (const c of ['members', 'services', 'health', 'register', 'deregister', 'join', 'snapshot']) t.match(help.stdout, new RegExp(`\\n  ${c}\\s`), `help lists ${c}`);
  const unknownFlag = await sider(['members', '-nope']);
  t.equal(unknownFlag.code, 2);
  t.match(unknownFlag.stderr, /unknown flag -nope/);
});

t.test('three servers: a restore sent to a follower shows on every server', async (t) => {
  const cluster = (await SiderCluster.start({ clusterKey: KEY })).teardownWith(t);
  const http = cluster.http;
  const leader = await cluster.leader();
  const followers = cluster.ids.filter((id) => id !== leader);
  for (let i = 0; i < 5; i++) {
    const r = await http.call(cluster.addr(leader), 'PUT', '/v1/agent/service/register', { body: { Name: 'kept', ID: `kept-${i}`, Port: 9000 + i } });
    t.equal(r.status, 200, r.text);
  }
  const file = join(cluster.root, 'cluster.snap');
  // Saved through a follower: its read barrier makes the archive include every acknowledged write.
  const save = await sider(['snapshot', 'save', file, '-http-addr', cluster.addr(followers[0]!)], { SIDER_CLUSTER_KEY: KEY });
  t.equal(save.code, 0, save.stderr);
  for (let i = 0; i < 5; i++) await http.call(cluster.addr(leader), 'PUT', `/v1/agent/service/deregister/kept-${i}`);
  await http.call(cluster.addr(leader), 'PUT', '/v1/agent/service/register', { body: { Name: 'later', ID: 'later-1', Port: 1 } });
  const seen = Math.max(...(await Promise.all(cluster.ids.map(async (id) => Number((await http.call(cluster.addr(id), 'GET', '/v1/catalog/services')).headers['x-consul-index'])))));

  // Sent to the other follower, which forwards the restore command to the leader.
  const restore = await sider(['snapshot', 'restore', file, '-http-addr', cluster.addr(followers[1]!)], { SIDER_CLUSTER_KEY: KEY });
  t.equal(restore.code, 0, restore.stderr);
  for (const id of cluster.ids) {
    const stale = await waitFor(
      `the restore applied on ${id}`,
      async () => {
        const r = await http.call(cluster.addr(id), 'GET', '/v1/catalog/services?stale');
        return JSON.parse(r.text).kept ? r : null;
      },
      20_000,
      50,
    );
    if (!stale) throw new Error('unreachable: waitFor returns a truthy value');
    t.same(JSON.parse(stale.text), { kept: [] }, `${id} holds the archive's services only`);
    t.ok(Number(stale.headers['x-consul-index']) > seen, `${id}'s index moved past ${seen}`);
    const ids = JSON.parse((await http.call(cluster.addr(id), 'GET', '/v1/catalog/service/kept')).text) as { ServiceID: string }[];
    t.same(ids.map((e) => e.ServiceID).sort(), ['kept-0', 'kept-1', 'kept-2', 'kept-3', 'kept-4']);
  }
});

t.test('three servers: an archive too large to forward is refused by a follower, and the CLI sends it to the leader', async (t) => {
  const cluster = (await SiderCluster.start({ clusterKey: KEY })).teardownWith(t);
  const http = cluster.http;
  const leader = await cluster.leader();
  const follower = cluster.ids.find((id) => id !== leader)!;
  const meta: Record<string, string> = {};
  for (let i = 0; i < 60; i++) meta[`k${i}`] = 'v'.repeat(100);
  // 250 instances × ~6 KB of Meta: a document of about 1.6 MB, above the internal API's 1 MiB.
  for (let b = 0; b < 250; b += 25) {
    const replies = await Promise.all(
      Array.from({ length: 25 }, (_, j) =>
        http.call(cluster.addr(leader), 'PUT', '/v1/agent/service/register', { body: { Name: `big${(b + j) % 10}`, ID: `big-${b + j}`, Port: 1, Meta: meta }, timeoutMs: 30_000 }),
      ),
    );
    for (const r of replies) if (r.status !== 200) t.fail(`register: HTTP ${r.status} ${r.text}`);
  }
  const file = join(cluster.root, 'big.snap');
  const env = { SIDER_CLUSTER_KEY: KEY };
  t.equal((await sider(['snapshot', 'save', file, '-http-addr', cluster.addr(follower)], env)).code, 0);
  const bytes = await readFile(file);
  t.ok(bytes.length > 1024 * 1024, `archive of ${bytes.length} bytes`);
  for (let i = 0; i < 250; i += 2) await http.call(cluster.addr(leader), 'PUT', `/v1/agent/service/deregister/big-${i}`);
  const before = await http.call(cluster.addr(follower), 'GET', '/v1/catalog/service/big0');

  const direct = await rawPut(cluster.addr(follower), bytes, KEY);
  t.equal(direct.status, 413);
  t.match(direct.text, /too large to restore through a follower .* send it to the leader/);
  const unchanged = await http.call(cluster.addr(follower), 'GET', '/v1/catalog/service/big0');
  t.equal(unchanged.headers['x-consul-index'], before.headers['x-consul-index'], 'nothing changed');

  const viaCli = await sider(['snapshot', 'restore', file, '-http-addr', cluster.addr(follower)], env);
  t.equal(viaCli.code, 0, viaCli.stderr);
  const after = JSON.parse((await http.call(cluster.addr(follower), 'GET', '/v1/catalog/service/big0')).text) as unknown[];
  t.equal(after.length, 25, 'every instance of big0 is back');
});
