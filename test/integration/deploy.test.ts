// The deploy files: docker-compose.yml validated by Debian's docker-compose (`config`), the
// Dockerfile checked statically (no Docker engine runs here: the image is not built), and
// deploy/local-cluster.sh run for real (start → status with a leader → stop → no process left).

import t from 'tap';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT, SiderHttp, tempRoot } from '../support/server-process.ts';
import { waitFor } from '../support/ports.ts';

const run = promisify(execFile);
const COMPOSE = join(REPO_ROOT, 'deploy/docker-compose.yml');
const DOCKERFILE = join(REPO_ROOT, 'deploy/Dockerfile');
const SCRIPT = join(REPO_ROOT, 'deploy/local-cluster.sh');
const hasCompose = spawnSync('docker-compose', ['version'], { stdio: 'ignore' }).status === 0;

t.test('docker-compose.yml is valid and forms a 3-node cluster', { skip: hasCompose ? false : 'docker-compose is not installed (apt-get install docker-compose)' }, async (t) => {
  const env = { ...process.env, SIDER_CLUSTER_KEY: 'compose-test-key-0123456789' };
  await run('docker-compose', ['-f', COMPOSE, 'config', '-q'], { env });
  const { stdout } = await run('docker-compose', ['-f', COMPOSE, 'config'], { env });
  for (const n of ['sider1', 'sider2', 'sider3']) {
    t.match(stdout, new RegExp(`${n}-data:`), `${n} has a named volume`);
    t.match(stdout, new RegExp(`- -raft-advertise\\s+- ${n}:8501`), `${n} advertises its service name for Raft`);
    t.match(stdout, new RegExp(`- -http-advertise\\s+- ${n}:8500`), `${n} advertises its service name for HTTP`);
  }
  t.equal(stdout.match(/- -bootstrap-expect\s+- '3'/g)?.length, 3, 'each server has -bootstrap-expect 3');
  t.equal(stdout.match(/- -retry-join/g)?.length, 6, 'each server lists the two others');
  t.equal(stdout.match(/SIDER_CLUSTER_KEY: compose-test-key-0123456789/g)?.length, 3, 'the key comes from the environment');
  t.equal(stdout.match(/\/v1\/agent\/ready/g)?.length, 3, 'every service has a readiness health check');
  t.match(stdout, /127\.0\.0\.1:8600:8600\/udp/, 'DNS over UDP is published');
  t.match(stdout, /127\.0\.0\.1:8600:8600\/tcp/, 'and over TCP');
  t.notMatch(stdout, /-bootstrap\s*$/m, 'nobody is started with -bootstrap');
  const env2: NodeJS.ProcessEnv = { ...process.env };
  delete env2.SIDER_CLUSTER_KEY;
  const bad = spawnSync('docker-compose', ['-f', COMPOSE, 'config', '-q'], { env: env2, encoding: 'utf8' });
  t.not(bad.status, 0, 'without SIDER_CLUSTER_KEY the file is refused');
  t.match(bad.stderr, /SIDER_CLUSTER_KEY/, 'naming the variable');
});

/** Relative imports reachable from `entry` (static and dynamic), as repository-relative paths. */
function importClosure(entry: string): Set<string> {
  const seen = new Set<string>();
  const todo = [entry];
  while (todo.length > 0 && seen.size < 5000) {
    const f = todo.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    const src = readFileSync(f, 'utf8');
    for (const m of src.matchAll(/(?:from|import\()\s*'(\.{1,2}\/[^']+)'/g)) todo.push(resolve(dirname(f), m[1]!));
  }
  return new Set([...seen].map((f) => relative(REPO_ROOT, f)));
}

t.test('the Dockerfile: Node 24 slim stages, production deps, non-root, health check, ports, sources', async (t) => {
  const df = readFileSync(DOCKERFILE, 'utf8');
  const froms = [...df.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]);
  t.same(froms, ['node:24-slim', 'node:24-slim'], 'two stages, both node:24-slim');
  t.match(df, /npm ci --omit=dev/, 'production dependencies only');
  const user = /^USER\s+(\S+)/m.exec(df)?.[1];
  t.ok(user && user !== 'root' && user !== '0', `runs as a non-root user (${user})`);
  t.match(df, /^HEALTHCHECK[\s\S]*\/v1\/agent\/ready/m, 'HEALTHCHECK on the readiness endpoint');
  const expose = /^EXPOSE\s+(.+)$/m.exec(df)?.[1]?.split(/\s+/) ?? [];
  t.same(expose.sort(), ['8500', '8501', '8600/tcp', '8600/udp'], 'HTTP, Raft and DNS (UDP+TCP) exposed');
  const copied = [...df.matchAll(/^COPY\s+(\S+)\s+\.\/\S+$/gm)].map((m) => m[1]!);
  for (const c of copied) t.ok(existsSync(join(REPO_ROOT, c)), `COPY ${c} exists`);
  // Every module the server command loads is inside a copied folder (type stripping: no build step).
  const needed = importClosure(join(REPO_ROOT, 'bin/sider.ts'));
  const missing = [...needed].filter((f) => !copied.some((c) => f.startsWith(`${c}/`)));
  t.same(missing, [], 'no module the server loads is left out of the image');
  const ignore = readFileSync(join(REPO_ROOT, 'deploy/Dockerfile.dockerignore'), 'utf8');
  for (const c of copied) t.match(ignore, new RegExp(`^!${c.replace('.', '\\.')}$`, 'm'), `${c} is not excluded from the build context`);
});

async function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

/** A base port whose nine derived ports (HTTP, Raft, DNS of three nodes) are free. */
async function freeBase(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const base = 20_000 + Math.floor(Math.random() * 400) * 100;
    const ports = [0, 1, 10, 11, 20, 21, 100, 110, 120].map((d) => base + d);
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return base;
  }
  throw new Error('no free port range');
}

/** Whether `pid` is a live process (an exited one not yet reaped by init counts as gone). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

t.test('local-cluster.sh start, status, stop', async (t) => {
  const { root, remove } = await tempRoot('sider-local-cluster-');
  const base = await freeBase();
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SIDER_')) env[k] = v;
  Object.assign(env, { LOCAL_CLUSTER_DIR: root, LOCAL_CLUSTER_PORT_BASE: String(base) });
  const pids = (): number[] =>
    ['sider1', 'sider2', 'sider3'].flatMap((n) => (existsSync(join(root, `${n}.pid`)) ? [Number(readFileSync(join(root, `${n}.pid`), 'utf8'))] : []));
  const started: number[] = [];
  const http = new SiderHttp();
  t.teardown(async () => {
    // Only the PIDs this test's script run started.
    for (const pid of started) if (alive(pid)) process.kill(pid, 'SIGKILL');
    await http.close();
    await remove();
  });
  const sh = (cmd: string) => run('bash', [SCRIPT, cmd], { env, timeout: 120_000 }).then(
    (r) => ({ code: 0, out: r.stdout + r.stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` }),
  );

  const up = await sh('start');
  started.push(...pids());
  t.equal(up.code, 0, `start succeeds:\n${up.out}`);
  t.equal(started.length, 3, 'three PID files');
  const st = await sh('status');
  t.equal(st.code, 0, `status exits 0 with 3 running:\n${st.out}`);
  t.match(st.out, /running: 3 of 3; leader: sider[123]/, 'status names the leader');
  const leaders = new Set<string>();
  for (const i of [0, 10, 20]) leaders.add(await http.leader(`127.0.0.1:${base + i}`));
  t.equal(leaders.size, 1, `all three agree on one leader: ${[...leaders].join(', ')}`);
  t.not([...leaders][0], '', 'and there is one');
  const servers = await http.raftServers(`127.0.0.1:${base}`);
  t.equal(servers.length, 3, 'three servers in the Raft configuration');
  const keyFile = join(root, 'cluster-key');
  t.equal(statSync(keyFile).mode & 0o777, 0o600, 'the generated cluster key is private (0600)');
  t.ok(readFileSync(keyFile, 'utf8').length >= 32, 'and long');

  const again = await sh('start');
  t.match(again.out, /already running/, 'a second start starts nothing');

  const down = await sh('stop');
  t.equal(down.code, 0, `stop succeeds:\n${down.out}`);
  // The script has waited for each server to exit; init may take a moment to reap it.
  await waitFor('the servers to be gone', () => started.filter(alive).length === 0, 10_000, 50).catch(() => {});
  t.same(started.filter(alive), [], 'no process left');
  t.same(pids(), [], 'PID files removed');
  const after = await sh('status');
  t.not(after.code, 0, 'status exits non-zero when stopped');
  t.match(after.out, /running: 0 of 3/);
  t.ok(readFileSync(join(root, 'sider1.log'), 'utf8').includes('sider server started'), 'logs are kept');
});
