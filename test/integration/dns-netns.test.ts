// An unmodified application resolving through the system resolver: inside a network namespace
// made for the test, a `sider server` process answers DNS on 127.0.0.1:53, the namespace's
// resolv.conf names it, and getent (glibc getaddrinfo) and curl reach a healthy instance by name;
// once that instance turns critical they reach the other one. Needs root (ip netns); skipped
// with the reason otherwise. Only PIDs started here are signalled.

import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, rmdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { REPO_ROOT, siderNodeArgv } from '../support/server-process.ts';
import { waitFor } from '../support/ports.ts';

const NS = `sider-dns-${randomBytes(4).toString('hex')}`;
const NETNS_ETC = '/etc/netns';

/** Runs a command inside the namespace; bounded by `ms`. */
function inNs(cmd: string[], ms = 10_000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('ip', ['netns', 'exec', NS, ...cmd], { encoding: 'utf8', timeout: ms });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

function whyNoNetns(): string | false {
  if (spawnSync('ip', ['-V'], { stdio: 'ignore' }).error) return 'ip (iproute2) is not installed';
  if (spawnSync('curl', ['--version'], { stdio: 'ignore' }).error) return 'curl is not installed';
  if (spawnSync('getent', ['--version'], { stdio: 'ignore' }).error) return 'getent is not installed';
  const add = spawnSync('ip', ['netns', 'add', NS], { encoding: 'utf8', timeout: 10_000 });
  if (add.status !== 0) return `ip netns add is not permitted here: ${(add.stderr || add.error?.message || '').trim()}`;
  return false;
}

const skip = whyNoNetns();

t.test('getent and curl inside a network namespace reach only healthy instances by name', { skip }, async (t) => {
  const children: ChildProcess[] = [];
  const madeEtcNetns = !existsSync(NETNS_ETC);
  const dataDir = await mkdtemp(join(tmpdir(), 'sider-netns-'));
  t.teardown(async () => {
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
        const exited = new Promise<void>((r) => c.once('exit', () => r()));
        process.kill(c.pid, 'SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (c.exitCode === null && c.signalCode === null) process.kill(c.pid, 'SIGKILL');
      }
    }
    spawnSync('ip', ['netns', 'del', NS], { timeout: 10_000 });
    await rm(join(NETNS_ETC, NS), { recursive: true, force: true });
    if (madeEtcNetns) await rmdir(NETNS_ETC).catch(() => {});
    await rm(dataDir, { recursive: true, force: true });
  });

  t.equal(inNs(['ip', 'link', 'set', 'lo', 'up']).status, 0, 'loopback up in the namespace');
  await mkdir(join(NETNS_ETC, NS), { recursive: true });
  // `ip netns exec` bind-mounts this file over /etc/resolv.conf for commands in the namespace.
  await writeFile(join(NETNS_ETC, NS, 'resolv.conf'), 'nameserver 127.0.0.1\noptions timeout:1 attempts:2\n');

  // `ip netns exec` execs the command, so each child's PID is the program's own.
  const run = (args: string[]): ChildProcess => {
    const c = spawn('ip', ['netns', 'exec', NS, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout?.setEncoding('utf8').on('data', (d: string) => (out = (out + d).slice(-20_000)));
    c.stderr?.setEncoding('utf8').on('data', (d: string) => (out = (out + d).slice(-20_000)));
    c.once('exit', (code, signal) => {
      if (code !== 0 && code !== null) t.comment(`${args.slice(0, 3).join(' ')} exited ${code}: ${out.slice(-2000)}`);
      void signal;
    });
    children.push(c);
    return c;
  };
  // Two instances' HTTP servers, on 127.0.0.1 and 127.0.0.2 (both on the namespace's lo).
  const httpServer = (host: string, text: string): string =>
    `require('node:http').createServer((q, s) => s.end(${JSON.stringify(text)})).listen(8080, ${JSON.stringify(host)})`;
  run([process.execPath, '-e', httpServer('127.0.0.1', 'instance one')]);
  run([process.execPath, '-e', httpServer('127.0.0.2', 'instance two')]);
  run([process.execPath, ...siderNodeArgv(['server', '-bootstrap', '-raft-id', 'n1', '-raft-dir', dataDir, '-http', '127.0.0.1:8500', '-raft-bind', '127.0.0.1:8501', '-dns', '127.0.0.1:53', '-raft-tick-ms', '20', '-log-level', 'warn'])]);

  const curl = (args: string[]): { status: number | null; stdout: string } => inNs(['curl', '-s', '--max-time', '5', ...args]);
  await waitFor('the server to elect itself', () => curl(['http://127.0.0.1:8500/v1/status/leader']).stdout.includes('127.0.0.1:8501'), 30_000, 200);
  await waitFor('both instance servers', () => curl(['http://127.0.0.1:8080/']).stdout === 'instance one' && curl(['http://127.0.0.2:8080/']).stdout === 'instance two', 15_000, 100);

  const registerInstance = (id: string, address: string, status: string): void => {
    const body = JSON.stringify({ Name: 'api', ID: id, Address: address, Port: 8080, Check: { CheckID: `${id}-ttl`, TTL: '600s', Status: status } });
    const r = curl(['-f', '-X', 'PUT', '--data', body, 'http://127.0.0.1:8500/v1/agent/service/register']);
    t.equal(r.status, 0, `register ${id} ${status}`);
  };
  registerInstance('api-1', '127.0.0.1', 'passing');
  registerInstance('api-2', '127.0.0.2', 'critical');

  const getent = (): { status: number | null; addrs: string[] } => {
    // ahosts (getaddrinfo, AF_UNSPEC): ahostsv4 adds AI_ADDRCONFIG, and a namespace with only lo
    // has no IPv4 address that counts, so glibc would not even ask.
    const r = inNs(['getent', 'ahosts', 'api.default.sider']);
    return { status: r.status, addrs: [...new Set(r.stdout.split('\n').map((l) => l.split(/\s+/)[0]!).filter(Boolean))].sort() };
  };
  const hosts = inNs(['getent', 'hosts', 'api.default.sider']);
  t.equal(hosts.status, 0, 'getent hosts resolves the name');
  t.match(hosts.stdout, /^127\.0\.0\.1\s+api\.default\.sider/);
  t.same(getent().addrs, ['127.0.0.1'], 'only the passing instance');
  t.equal(curl([`http://api.default.sider:8080/`]).stdout, 'instance one', 'curl reaches the healthy instance by name');

  // api-1 turns critical, api-2 passing: the name now leads only to api-2.
  registerInstance('api-1', '127.0.0.1', 'critical');
  registerInstance('api-2', '127.0.0.2', 'passing');
  t.same(getent().addrs, ['127.0.0.2'], 'the critical instance is no longer returned');
  t.equal(curl([`http://api.default.sider:8080/`]).stdout, 'instance two', 'curl follows');

  // Both critical: the name does not resolve (NXDOMAIN), and curl cannot resolve it (exit 6).
  registerInstance('api-2', '127.0.0.2', 'critical');
  t.equal(getent().status, 2, 'getent: not found');
  t.equal(curl([`http://api.default.sider:8080/`]).status, 6, "curl: couldn't resolve host");
});
