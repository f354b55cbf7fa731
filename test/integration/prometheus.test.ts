// Real Prometheus (Debian's /usr/bin/prometheus, started here on loopback with a generated config
// and a temp TSDB) against a three-server cluster: it scrapes every node (`up == 1`, in whichever
// exposition format it negotiates); its consul_sd_configs job pointed at a Sider follower discovers
// the registered services with Consul's meta labels, and follows a turn to critical and a
// deregistration within its refresh; its dns_sd_configs job does the same through Sider's DNS
// (SRV); every expression of the Grafana dashboard parses and runs.
//
// Debian builds Prometheus without Consul SD ("Disable Consul SD until its Debian package is back
// in shape", changelog of 2.33.5+ds1-4): that part runs only with a binary that has it, and is
// skipped with that reason otherwise. The DNS SD part needs root (Sider on port 53 and a private
// mount namespace whose /etc/resolv.conf names it); it is skipped with the reason otherwise.

import { randomInt } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { freePort, waitFor } from '../support/ports.ts';
import { SiderCluster, tempRoot } from '../support/server-process.ts';

const PROMETHEUS = '/usr/bin/prometheus';
const SKIP = existsSync(PROMETHEUS) ? false : `${PROMETHEUS} is not installed (apt-get install -y prometheus)`;

/** Whether this Prometheus build has consul_sd_configs (promtool refuses the field otherwise). */
function whyNoConsulSd(): string | false {
  if (SKIP) return SKIP;
  const dir = mkdtempSync(join(tmpdir(), 'sider-promtool-'));
  try {
    const file = join(dir, 'consul.yml');
    writeFileSync(file, 'scrape_configs:\n  - job_name: c\n    consul_sd_configs:\n      - server: 127.0.0.1:1\n');
    const r = spawnSync('promtool', ['check', 'config', file], { encoding: 'utf8', timeout: 10_000 });
    if (r.error) return `promtool is not installed: ${r.error.message}`;
    if (r.status === 0) return false;
    return `this Prometheus build has no consul_sd_configs (Debian disables Consul SD): ${(r.stdout + r.stderr).trim().split('\n').pop()}`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Whether Prometheus can be run with its own /etc/resolv.conf and Sider can take port 53. */
function whyNoDnsSd(): string | false {
  if (SKIP) return SKIP;
  if (process.getuid?.() !== 0) return 'needs root (Sider on port 53, a mount namespace for resolv.conf)';
  const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'true'], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) return `unshare -m is not permitted here: ${(r.stderr || r.error?.message || '').trim()}`;
  return false;
}

const NO_CONSUL_SD = whyNoConsulSd();
const NO_DNS_SD = whyNoDnsSd();

interface Target {
  discoveredLabels: Record<string, string>;
  labels: Record<string, string>;
  scrapePool: string;
  health: string;
  lastError: string;
}

async function promGet(base: string, path: string): Promise<unknown> {
  const res = await request(`${base}${path}`, { signal: AbortSignal.timeout(5_000) });
  const text = await res.body.text();
  const v = JSON.parse(text) as { status?: string; data?: unknown; error?: string };
  if (v.status !== 'success') throw new Error(`${path}: ${res.statusCode} ${text.slice(0, 500)}`);
  return v.data;
}

async function targets(base: string): Promise<Target[]> {
  const data = (await promGet(base, '/api/v1/targets?state=active')) as { activeTargets: Target[] };
  return data.activeTargets;
}

async function query(base: string, q: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const data = (await promGet(base, `/api/v1/query?query=${encodeURIComponent(q)}`)) as { result: { metric: Record<string, string>; value: [number, string] }[] };
  return data.result;
}

t.test('Prometheus scrapes every node and discovers services through consul_sd_configs', { skip: SKIP }, async (t) => {
  const cluster = await SiderCluster.create({ extraArgs: ['-raft-tick-ms', '50'] });
  t.teardown(() => cluster.teardown());
  // A loopback address of its own, so that port 53 is free whatever else runs on this machine.
  const dnsHost = `127.53.${randomInt(1, 255)}.${randomInt(1, 255)}`;
  if (!NO_DNS_SD) cluster.spec('s3').extraArgs = ['-raft-tick-ms', '50', '-dns', `${dnsHost}:53`];
  try {
    await cluster.form();
  } catch (err) {
    t.comment(cluster.logs());
    throw err;
  }
  const http = cluster.http;
  const leader = await cluster.leader();
  const follower = cluster.ids.find((id) => id !== leader)!;
  // Each node registers itself as a scrape target: the consul_sd job then scrapes Sider too.
  for (const id of cluster.ids) {
    const port = Number(cluster.addr(id).split(':')[1]);
    const body = { Name: 'sider-http', ID: `sider-${id}`, Address: '127.0.0.1', Port: port, Tags: ['metrics', id], Check: { CheckID: `sider-${id}-ttl`, TTL: '10m', Status: 'passing' } };
    const r = await http.call(cluster.addr(id), 'PUT', '/v1/agent/service/register', { body });
    t.equal(r.status, 200, `register sider-${id}: ${r.text}`);
  }

  const tmp = await tempRoot('sider-prom-');
  t.teardown(() => tmp.remove());
  const promAddr = `127.0.0.1:${await freePort()}`;
  const base = `http://${promAddr}`;
  const lines = [
    'global:',
    '  scrape_interval: 1s',
    '  scrape_timeout: 1s',
    '  evaluation_interval: 1s',
    'scrape_configs:',
    '  - job_name: sider',
    '    static_configs:',
    `      - targets: [${cluster.ids.map((id) => `'${cluster.addr(id)}'`).join(', ')}]`,
  ];
  if (!NO_CONSUL_SD) {
    lines.push(
      '  - job_name: consul',
      '    consul_sd_configs:',
      `      - server: '${cluster.addr(follower)}'`,
      '        services: [sider-http]',
      // Between two watches of a service Prometheus waits this long (any positive duration; default 30s).
      '        refresh_interval: 1s',
    );
  }
  if (!NO_DNS_SD) {
    lines.push(
      '  - job_name: dns',
      '    dns_sd_configs:',
      '      - names: [_sider-http._tcp.default.sider]',
      '        type: SRV',
      '        refresh_interval: 1s',
    );
  }
  const configFile = join(tmp.root, 'prometheus.yml');
  await writeFile(configFile, `${lines.join('\n')}\n`);
  const resolvConf = join(tmp.root, 'resolv.conf');
  await writeFile(resolvConf, `nameserver ${dnsHost}\noptions timeout:1 attempts:2\n`);
  let prom: ChildProcess | undefined;
  let promOut = '';
  const stopProm = async (): Promise<void> => {
    const p = prom;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGTERM');
    const timer = setTimeout(() => p.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };
  t.teardown(stopProm);
  const promArgs = [`--config.file=${configFile}`, `--storage.tsdb.path=${join(tmp.root, 'tsdb')}`, `--web.listen-address=${promAddr}`, '--log.level=warn', '--storage.tsdb.retention.time=1h'];
  // With DNS SD: in a private mount namespace whose /etc/resolv.conf names Sider (exec keeps the PID).
  prom = NO_DNS_SD
    ? spawn(PROMETHEUS, promArgs, { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0" /etc/resolv.conf && exec "$@"', resolvConf, PROMETHEUS, ...promArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
  for (const s of [prom.stdout!, prom.stderr!]) s.setEncoding('utf8').on('data', (d: string) => (promOut = (promOut + d).slice(-8000)));
  const explain = (): string => `--- prometheus\n${promOut}\n${cluster.logs(1500)}`;

  try {
    await waitFor('prometheus to be ready', async () => (await request(`${base}/-/ready`, { signal: AbortSignal.timeout(2_000) }).then(async (r) => (await r.body.text(), r.statusCode))) === 200, 30_000, 200);

    await t.test('every node is scraped: up == 1', async (t) => {
      await waitFor(
        'the three sider targets up',
        async () => {
          const up = (await targets(base)).filter((x) => x.scrapePool === 'sider');
          return up.length === 3 && up.every((x) => x.health === 'up');
        },
        30_000,
        250,
      );
      const up = await waitFor('up{job="sider"} == 1 for three', async () => {
        const r = await query(base, 'up{job="sider"} == 1');
        return r.length === 3 ? r : null;
      }, 30_000, 250);
      t.same(up!.map((r) => r.metric.instance).sort(), cluster.ids.map((id) => cluster.addr(id)).sort());
      const leaders = await waitFor('sider_raft_leader stored', async () => {
        const r = await query(base, 'sum(sider_raft_leader{job="sider"})');
        return r.length === 1 ? r : null;
      }, 30_000, 250);
      t.equal(leaders![0]!.value[1], '1', 'Prometheus sees exactly one leader');
    });

    await t.test('consul_sd discovers the registered instances with Consul’s labels', { skip: NO_CONSUL_SD }, async (t) => {
      const found = await waitFor(
        'three consul targets',
        async () => {
          const xs = (await targets(base)).filter((x) => x.scrapePool === 'consul');
          return xs.length === 3 ? xs : null;
        },
        30_000,
        250,
      );
      for (const id of cluster.ids) {
        const tg = found!.find((x) => x.discoveredLabels.__meta_consul_service_id === `sider-${id}`);
        t.ok(tg, `sider-${id} discovered`);
        t.match(tg?.discoveredLabels, {
          __address__: cluster.addr(id),
          __meta_consul_service: 'sider-http',
          __meta_consul_tags: `,metrics,${id},`,
          __meta_consul_health: 'passing',
          __meta_consul_service_address: '127.0.0.1',
          __meta_consul_service_port: cluster.addr(id).split(':')[1],
          __meta_consul_dc: 'dc1',
        });
      }
      await waitFor('the consul targets scraped', async () => (await query(base, 'up{job="consul"} == 1')).length === 3, 30_000, 250);
      t.pass('Prometheus scraped Sider through the targets Sider itself reported');
    });

    await t.test('dns_sd discovers the healthy instances through Sider’s DNS (SRV)', { skip: NO_DNS_SD }, async (t) => {
      const found = await waitFor(
        'three dns targets up',
        async () => {
          const xs = (await targets(base)).filter((x) => x.scrapePool === 'dns');
          return xs.length === 3 && xs.every((x) => x.health === 'up') ? xs : null;
        },
        30_000,
        250,
      );
      t.same(found!.map((x) => x.discoveredLabels.__address__).sort(), cluster.ids.map((id) => `7f000001.addr.sider:${cluster.addr(id).split(':')[1]}`).sort(), 'SRV targets (<hex-ip>.addr.sider) and ports');
      t.ok(found!.every((x) => x.discoveredLabels.__meta_dns_name === '_sider-http._tcp.default.sider'), '__meta_dns_name');
      t.pass('Prometheus resolved the SRV targets through Sider and scraped them');
    });

    await t.test('a turn to critical and a deregistration reach Prometheus within its refresh', { skip: NO_CONSUL_SD && NO_DNS_SD ? 'neither consul_sd nor dns_sd can run here' : false }, async (t) => {
      const [a, b] = cluster.ids;
      const dnsPorts = async (): Promise<string[]> =>
        (await targets(base)).filter((x) => x.scrapePool === 'dns').map((x) => x.discoveredLabels.__address__!.split(':').pop()!).sort();
      const portOf = (id: string): string => cluster.addr(id).split(':')[1]!;
      let r = await http.call(cluster.addr(leader), 'PUT', `/v1/agent/check/fail/sider-${a}-ttl?note=down`);
      t.equal(r.status, 200, r.text);
      if (!NO_DNS_SD) {
        await waitFor(`sider-${a} out of the DNS targets`, async () => !(await dnsPorts()).includes(portOf(a!)), 20_000, 250);
        t.pass('dns_sd: the critical instance is no longer a target (DNS serves usable instances only)');
      }
      if (!NO_CONSUL_SD) await waitFor(
        `sider-${a} critical in Prometheus`,
        async () => (await targets(base)).some((x) => x.discoveredLabels.__meta_consul_service_id === `sider-${a}` && x.discoveredLabels.__meta_consul_health === 'critical'),
        20_000,
        250,
      );
      if (!NO_CONSUL_SD) t.pass(`sider-${a} shows __meta_consul_health="critical"`);
      r = await http.call(cluster.addr(b!), 'PUT', `/v1/agent/service/deregister/sider-${b}`);
      t.equal(r.status, 200, r.text);
      if (!NO_DNS_SD) {
        await waitFor(`sider-${b} out of the DNS targets`, async () => JSON.stringify(await dnsPorts()) === JSON.stringify([portOf(cluster.ids[2]!)]), 20_000, 250);
        t.pass('dns_sd: the deregistered instance is gone too');
      }
      if (!NO_CONSUL_SD) await waitFor(
        `sider-${b} gone from Prometheus`,
        async () => {
          const xs = (await targets(base)).filter((x) => x.scrapePool === 'consul');
          return xs.length === 2 && !xs.some((x) => x.discoveredLabels.__meta_consul_service_id === `sider-${b}`);
        },
        20_000,
        250,
      );
      if (!NO_CONSUL_SD) t.pass(`sider-${b} is no longer a consul_sd target`);
      // And the registry gauge Prometheus scrapes follows too.
      await waitFor('sider_registry_instances_total == 2 in Prometheus', async () => {
        const q = await query(base, 'max(sider_registry_instances_total{job="sider",service="sider-http"})');
        return q[0]?.value[1] === '2';
      }, 20_000, 250);
      t.pass('sider_registry_instances_total follows');
    });

    await t.test('every dashboard expression parses and runs in Prometheus', async (t) => {
      const dash = JSON.parse(await readFile(new URL('../../deploy/grafana/sider-dashboard.json', import.meta.url), 'utf8')) as { panels: { targets?: { expr: string }[] }[] };
      for (const expr of dash.panels.flatMap((p) => p.targets ?? []).map((x) => x.expr)) {
        const q = expr.replaceAll('$job', '.+');
        await query(base, q).then(
          () => t.pass(expr),
          (err: unknown) => t.fail(`${expr}: ${(err as Error).message}`),
        );
      }
    });
  } catch (err) {
    t.comment(explain());
    throw err;
  } finally {
    await stopProm();
  }
});
