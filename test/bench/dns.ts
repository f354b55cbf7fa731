// DNS benchmark (issue #5): dnsperf (Debian) against one `sider server` process holding 1,000
// services × 10 instances, with a mix of A and SRV queries plus 5 % unknown names. The server is
// pinned to CPU 0 and dnsperf to CPU 1 when taskset exists ("server on one core"). For context the
// same load runs against a bare node:dgram server that answers with a canned reply: the ceiling
// of Node's UDP path on this machine; and, when installed (Debian knot, bind9), Knot DNS and BIND
// serving the same records from a zone file, each with one worker thread on the same CPU.
// Only PIDs started here are signalled.

import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { freePort, waitFor } from '../support/ports.ts';
import { REPO_ROOT, siderNodeArgv } from '../support/server-process.ts';

export interface DnsBenchResult {
  target: string;
  run: number;
  queriesPerSec: number;
  completed: number;
  lost: number;
  /** dnsperf's average and max latency, ms. */
  avgLatencyMs: number;
  maxLatencyMs: number;
  /** Response codes as dnsperf reports them (share of completed). */
  rcodes: string;
  /** Server CPU over the run, % of one core (user + system). */
  serverCpuPct: number;
  /** Server CPU per answered query, µs: steadier than queries/s when other work shares the machine. */
  cpuUsPerQuery: number;
}

export interface DnsBenchOptions {
  services?: number;
  instances?: number;
  durationMs?: number;
  runs?: number;
  /** dnsperf clients (sockets) and outstanding queries. */
  clients?: number;
  outstanding?: number;
}

const HAS_TASKSET = spawnSync('taskset', ['-V'], { stdio: 'ignore' }).error === undefined;

function pinned(cpu: number, cmd: string, args: string[]): [string, string[]] {
  return HAS_TASKSET ? ['taskset', ['-c', String(cpu), cmd, ...args]] : [cmd, args];
}

/** user+system CPU seconds of a process, from /proc. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

function parseDnsperf(out: string): Omit<DnsBenchResult, 'target' | 'run' | 'serverCpuPct' | 'cpuUsPerQuery'> {
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? NaN);
  return {
    queriesPerSec: num(/Queries per second:\s+([\d.]+)/),
    completed: num(/Queries completed:\s+(\d+)/),
    lost: num(/Queries lost:\s+(\d+)/),
    avgLatencyMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
    maxLatencyMs: num(/Average Latency \(s\):.*max ([\d.]+)/) * 1000,
    rcodes: (/Response codes:\s+(.*)/.exec(out)?.[1] ?? '').trim(),
  };
}

async function dnsperf(port: number, file: string, seconds: number, clients: number, outstanding: number): Promise<string> {
  const [cmd, args] = pinned(1, 'dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', file, '-l', String(seconds), '-c', String(clients), '-q', String(outstanding), '-e', '-t', '2']);
  return new Promise<string>((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    c.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    const timer = setTimeout(() => c.kill('SIGKILL'), (seconds + 30) * 1000);
    c.once('error', reject);
    c.once('exit', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

/** A canned-answer UDP server: Node's UDP receive/send path and nothing else. */
const BARE_SERVER = `
const dgram = require('node:dgram');
const s = dgram.createSocket('udp4');
s.on('message', (m, r) => {
  if (m.length < 12) return;
  const out = Buffer.from(m);
  out[2] |= 0x84;
  s.send(out, r.port, r.address);
});
s.bind(Number(process.argv[1]), '127.0.0.1', () => console.log('ready'));
`;

/** The zone Knot and BIND serve: the same names, records and glue Sider answers with. */
function zoneFile(services: number, instances: number): string {
  const lines = ['$ORIGIN sider.', '$TTL 0', '@ IN SOA ns.sider. hostmaster.sider. 1 3600 600 86400 0', '@ IN NS ns.sider.', 'ns IN A 127.0.0.1'];
  for (let s = 0; s < services; s++) {
    for (let k = 0; k < instances; k++) {
      const addr = instanceAddress(s, k);
      const hex = addr.split('.').map((x) => Number(x).toString(16).padStart(2, '0')).join('');
      lines.push(`svc-${s}.default IN A ${addr}`, `_svc-${s}._tcp.default IN SRV 1 1 ${8000 + k} ${hex}.addr.sider.`, `${hex}.addr IN A ${addr}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

function instanceAddress(s: number, k: number): string {
  return `10.${(s >> 8) & 255}.${s & 255}.${k + 1}`;
}

interface Reference {
  target: string;
  bin: string;
  config: (dir: string, port: number) => { file: string; text: string };
  args: (configFile: string) => string[];
}

const REFERENCES: Reference[] = [
  {
    target: 'knot (1 UDP worker)',
    bin: 'knotd',
    config: (dir, port) => ({
      file: join(dir, 'knot.conf'),
      text: [
        'server:',
        `    listen: 127.0.0.1@${port}`,
        `    rundir: ${dir}`,
        '    udp-workers: 1',
        '    tcp-workers: 1',
        '    background-workers: 1',
        'database:',
        `    storage: ${join(dir, 'knot-db')}`,
        'zone:',
        '  - domain: sider',
        `    file: ${join(dir, 'sider.zone')}`,
        'log:',
        '  - target: stderr',
        '    any: warning',
        '',
      ].join('\n'),
    }),
    args: (f) => ['-c', f],
  },
  {
    target: 'bind (named -n 1)',
    bin: 'named',
    config: (dir, port) => ({
      file: join(dir, 'named.conf'),
      text:
        `options { directory "${dir}"; listen-on port ${port} { 127.0.0.1; }; listen-on-v6 { none; }; recursion no; ` +
        `pid-file "${join(dir, 'named.pid')}"; dnssec-validation no; };\ncontrols { };\nzone "sider" { type primary; file "${join(dir, 'sider.zone')}"; };\n`,
    }),
    args: (f) => ['-g', '-c', f, '-n', '1'],
  },
];

async function measure(target: string, pid: number, port: number, file: string, o: Required<DnsBenchOptions>): Promise<DnsBenchResult[]> {
  // Warm-up: fills the answer cache and lets the JIT settle.
  await dnsperf(port, file, 2, o.clients, o.outstanding);
  const results: DnsBenchResult[] = [];
  const seconds = Math.max(1, Math.round(o.durationMs / 1000));
  for (let run = 1; run <= o.runs; run++) {
    const cpu0 = await cpuSeconds(pid);
    const t0 = performance.now();
    const out = await dnsperf(port, file, seconds, o.clients, o.outstanding);
    const wall = (performance.now() - t0) / 1000;
    const cpu = (await cpuSeconds(pid)) - cpu0;
    const r = parseDnsperf(out);
    if (!Number.isFinite(r.queriesPerSec)) throw new Error(`dnsperf output not understood:\n${out}`);
    results.push({ target, run, ...r, serverCpuPct: (100 * cpu) / wall, cpuUsPerQuery: (cpu * 1e6) / Math.max(1, r.completed) });
  }
  return results;
}

export async function runDnsBench(opts: DnsBenchOptions = {}): Promise<DnsBenchResult[]> {
  const o: Required<DnsBenchOptions> = { services: 1000, instances: 10, durationMs: 10_000, runs: 3, clients: 16, outstanding: 200, ...opts };
  if (spawnSync('dnsperf', ['-h'], { stdio: 'ignore' }).error) throw new Error('dnsperf is not installed (apt-get install -y dnsperf)');
  const dir = await mkdtemp(join(tmpdir(), 'sider-dns-bench-'));
  const children: ChildProcess[] = [];
  try {
    // Queries: for each service an A query for its name and an SRV query for its RFC 2782 name,
    // shuffled, plus 5 % names of services that do not exist.
    const lines: string[] = [];
    for (let i = 0; i < o.services; i++) lines.push(`svc-${i}.default.sider A`, `_svc-${i}._tcp.default.sider SRV`);
    const unknown = Math.round((lines.length * 5) / 95);
    for (let i = 0; i < unknown; i++) lines.push(`nosuch-${i}.default.sider ${i % 2 === 0 ? 'A' : 'SRV'}`);
    let seed = 42;
    for (let i = lines.length - 1; i > 0; i--) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      const j = seed % (i + 1);
      [lines[i], lines[j]] = [lines[j]!, lines[i]!];
    }
    const file = join(dir, 'queries.txt');
    await writeFile(file, `${lines.join('\n')}\n`);

    const [httpPort, raftPort, dnsPort] = [await freePort(), await freePort(), await freePort()];
    const [cmd, args] = pinned(0, process.execPath, siderNodeArgv([
      'server', '-bootstrap', '-raft-id', 'dnsbench', '-raft-dir', join(dir, 'data'), '-http', `127.0.0.1:${httpPort}`,
      '-raft-bind', `127.0.0.1:${raftPort}`, '-dns', `127.0.0.1:${dnsPort}`, '-log-level', 'warn',
    ]));
    const server = spawn(cmd, args, { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(server);
    const pool = new Pool(`http://127.0.0.1:${httpPort}`, { connections: 32 });
    try {
      await waitFor('the server to elect itself', async () => {
        const r = await pool.request({ path: '/v1/status/leader', method: 'GET' });
        return (await r.body.text()).length > 2;
      }, 30_000, 100);
      const t0 = performance.now();
      const work: { s: number; k: number }[] = [];
      for (let s = 0; s < o.services; s++) for (let k = 0; k < o.instances; k++) work.push({ s, k });
      let next = 0;
      await Promise.all(
        Array.from({ length: 32 }, async () => {
          while (next < work.length) {
            const { s, k } = work[next++]!;
            const body = JSON.stringify({
              Name: `svc-${s}`,
              ID: `svc-${s}-${k}`,
              Address: instanceAddress(s, k),
              Port: 8000 + k,
              Check: { CheckID: `svc-${s}-${k}-ttl`, TTL: '3600s', Status: 'passing' },
            });
            const r = await pool.request({ path: '/v1/agent/service/register', method: 'PUT', body, headers: { 'content-type': 'application/json' } });
            const text = await r.body.text();
            if (r.statusCode !== 200) throw new Error(`register: HTTP ${r.statusCode} ${text}`);
          }
        }),
      );
      console.log(`registered ${work.length} instances in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    } finally {
      await pool.close();
    }
    const results = await measure('sider', server.pid!, dnsPort, file, o);
    await stop(server);

    // Knot and BIND on the same records, when installed.
    await writeFile(join(dir, 'sider.zone'), zoneFile(o.services, o.instances));
    for (const ref of REFERENCES) {
      if (spawnSync(ref.bin, ['-V'], { stdio: 'ignore' }).error) {
        console.log(`${ref.bin} is not installed: no ${ref.target} comparison (apt-get install -y knot bind9)`);
        continue;
      }
      const port = await freePort();
      const conf = ref.config(dir, port);
      await writeFile(conf.file, conf.text);
      const [rcmd, rargs] = pinned(0, ref.bin, ref.args(conf.file));
      const child = spawn(rcmd, rargs, { stdio: ['ignore', 'ignore', 'pipe'] });
      children.push(child);
      let log = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => (log = (log + d).slice(-4000)));
      const probe = join(dir, 'probe.txt');
      await writeFile(probe, 'svc-0.default.sider A\n');
      await waitFor(`${ref.target} to answer`, async () => {
        if (child.exitCode !== null) throw new Error(`${ref.bin} exited ${child.exitCode}: ${log}`);
        return /Queries completed:\s+[1-9]/.test(await dnsperf(port, probe, 1, 1, 1));
      }, 30_000, 200);
      results.push(...(await measure(ref.target, child.pid!, port, file, o)));
      await stop(child);
    }

    const barePort = await freePort();
    const [bcmd, bargs] = pinned(0, process.execPath, ['-e', BARE_SERVER, String(barePort)]);
    const bare = spawn(bcmd, bargs, { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(bare);
    await new Promise<void>((resolve, reject) => {
      bare.stdout.setEncoding('utf8').once('data', () => resolve());
      bare.once('exit', (code) => reject(new Error(`bare server exited ${code}`)));
    });
    results.push(...(await measure('node:dgram canned reply (ceiling)', bare.pid!, barePort, file, { ...o, runs: 1 })));
    return results;
  } finally {
    for (const c of children) await stop(c);
    await rm(dir, { recursive: true, force: true });
  }
}
