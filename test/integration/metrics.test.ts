// Metrics, logs and readiness of a real `sider server` process: the named series exist and move
// (registrations, requests by route template, the renewal fast path, held blocking queries, DNS,
// TTL expiries), the exposition formats, the readiness endpoint, the event log lines, the text
// log format, the README's curl lines, and the Grafana dashboard's metric names.

import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import t from 'tap';
import { QTYPE } from '../../dns/wire.ts';
import { buildQuery, udpExchange } from '../support/dns-client.ts';
import { freePort, waitFor } from '../support/ports.ts';
import { find, parseExposition, seriesNames, sumOf, valueOf } from '../support/prom-text.ts';
import type { Exposition } from '../support/prom-text.ts';
import { SiderCluster } from '../support/server-process.ts';

const run = promisify(execFile);

/** The names issue #6 requires, which operators of the earlier design already chart. */
export const REQUIRED_SERIES = [
  'sider_registry_instances_total',
  'sider_registry_checks_total',
  'sider_registry_index',
  'sider_raft_leader',
  'sider_raft_commit_index',
  'sider_raft_last_log_index',
  'sider_http_requests_total',
  'sider_http_request_duration_seconds',
  'sider_watchers_active',
];

/** The other series the issue lists, by the names chosen here (README "Metrics and logs"). */
export const LISTED_SERIES = [
  'sider_registry_services',
  'sider_registry_registrations_total',
  'sider_registry_deregistrations_total',
  'sider_health_ttl_expiries_total',
  'sider_raft_role',
  'sider_raft_term',
  'sider_raft_applied_index',
  'sider_raft_peer_match_index',
  'sider_raft_peer_last_contact_seconds',
  'sider_raft_elections_started_total',
  'sider_raft_elections_won_total',
  'sider_raft_leader_changes_total',
  'sider_raft_commit_duration_seconds',
  'sider_raft_fsync_duration_seconds',
  'sider_raft_snapshots_total',
  'sider_raft_snapshot_duration_seconds',
  'sider_raft_snapshot_size_bytes',
  'sider_raft_uncommitted_bytes',
  'nodejs_eventloop_lag_seconds',
  'sider_http_blocking_queries_held',
  'sider_http_connections',
  'sider_dns_queries_total',
  'sider_dns_responses_total',
  'sider_dns_request_duration_seconds',
  'sider_dns_truncated_total',
  'sider_dns_stale_answers_total',
  'process_resident_memory_bytes',
  'process_cpu_seconds_total',
  'nodejs_gc_duration_seconds',
  'process_open_fds',
];

t.test('a single server: series, exposition, readiness and log lines', async (t) => {
  const cluster = await SiderCluster.create({ ids: ['m1'] });
  t.teardown(() => cluster.teardown());
  const dnsPort = await freePort();
  cluster.spec('m1').extraArgs = ['-dns', `127.0.0.1:${dnsPort}`, '-raft-tick-ms', '20', '-log-level', 'debug'];
  try {
    await cluster.form();
  } catch (err) {
    t.comment(cluster.logs());
    throw err;
  }
  const addr = cluster.addr('m1');
  const http = cluster.http;
  const proc = cluster.procs.get('m1')!;
  const scrape = async (path = '/metrics', headers: Record<string, string> = {}): Promise<Exposition & { contentType: string; body: string }> => {
    const r = await http.call(addr, 'GET', path, { headers });
    if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.text}`);
    return { ...parseExposition(r.text.replace(/^# EOF\n?$/m, '')), contentType: r.headers['content-type'] ?? '', body: r.text };
  };
  const register = async (body: unknown): Promise<void> => {
    const r = await http.call(addr, 'PUT', '/v1/agent/service/register', { body });
    if (r.status !== 200) throw new Error(`register: ${r.status} ${r.text}`);
  };

  await t.test('ready', async (t) => {
    await waitFor('readiness', async () => (await http.call(addr, 'GET', '/v1/agent/ready')).status === 200, 10_000, 50);
    const r = await http.call(addr, 'GET', '/v1/agent/ready');
    t.equal(r.text, 'ready\n');
    t.equal((await http.call(addr, 'PUT', '/v1/agent/ready')).status, 405);
    t.equal(valueOf(await scrape(), 'sider_ready'), 1);
  });

  await t.test('every named series exists', async (t) => {
    const e = await scrape();
    t.match(e.contentType, /^text\/plain; version=0\.0\.4/);
    const names = seriesNames(e);
    for (const n of [...REQUIRED_SERIES, ...LISTED_SERIES]) t.ok(names.has(n), n);
    t.equal(valueOf(e, 'sider_raft_leader', { node: 'm1' }), 1, 'the sole voter leads');
    t.equal(valueOf(e, 'sider_raft_role', { role: 'leader' }), 1);
    t.ok(valueOf(e, 'sider_raft_commit_index') >= 1);
    t.ok(valueOf(e, 'sider_raft_fsync_duration_seconds_count') >= 1, 'the fsync histogram has seen writes');
    // No two samples with the same name and labels (a broken exposition Prometheus would refuse).
    const keys = e.samples.map((s) => `${s.name}${JSON.stringify(Object.entries(s.labels).sort())}`);
    t.equal(new Set(keys).size, keys.length, 'no duplicate samples');
  });

  await t.test('a registration moves the counters and gauges, and is logged with who, what and index', async (t) => {
    const before = await scrape();
    await register({ Name: 'web', ID: 'web-1', Address: '10.1.0.1', Port: 80, Tags: ['a'], Check: { TTL: '600s', Status: 'passing' } });
    await register({ Name: 'web', ID: 'web-2', Address: '10.1.0.2', Port: 80, Check: { TTL: '600s', Status: 'warning' } });
    const after = await scrape();
    t.equal(valueOf(after, 'sider_registry_registrations_total') - valueOf(before, 'sider_registry_registrations_total'), 2);
    t.equal(valueOf(after, 'sider_registry_instances_total', { namespace: 'default', service: 'web' }), 2);
    t.equal(valueOf(after, 'sider_registry_checks_total', { status: 'warning' }), 1);
    t.ok(valueOf(after, 'sider_registry_index') > valueOf(before, 'sider_registry_index'), 'the index moved');
    t.ok(valueOf(after, 'sider_raft_commit_duration_seconds_count') > valueOf(before, 'sider_raft_commit_duration_seconds_count'), 'commit latency observed');
    const line = proc.logLines().find((l) => l.msg === 'registered service instance' && l.id === 'web-2');
    t.match(line, { level: 'info', node: 'm1', ns: 'default', service: 'web', id: 'web-2', remote: '127.0.0.1', changed: true, index: Number });

    const r = await http.call(addr, 'PUT', '/v1/agent/service/deregister/web-2');
    t.equal(r.status, 200);
    const gone = await scrape();
    t.equal(valueOf(gone, 'sider_registry_deregistrations_total', { source: 'api' }), 1);
    t.equal(valueOf(gone, 'sider_registry_instances_total', { namespace: 'default', service: 'web' }), 1);
    t.ok(proc.logLines().some((l) => l.msg === 'deregistered service instance' && l.id === 'web-2' && typeof l.index === 'number'));
  });

  await t.test('HTTP requests are labelled by route template, never the raw path', async (t) => {
    const before = await scrape();
    const tpl = { path: '/v1/health/service/:name', status: '200' };
    for (const name of ['web', 'svc-a', 'svc-b']) t.equal((await http.call(addr, 'GET', `/v1/health/service/${name}?stale`)).status, 200);
    t.equal((await http.call(addr, 'GET', '/no/such/route/x1')).status, 404);
    t.equal((await http.call(addr, 'GET', '/v1/health/state/bogus')).status, 400);
    // The renewal fast path answers before Koa; it is counted too.
    t.equal((await http.call(addr, 'PUT', '/v1/agent/check/pass/service:web-1')).status, 200);
    t.equal((await http.call(addr, 'PUT', '/v1/agent/check/pass/unknown-check')).status, 404);
    const after = await scrape();
    const delta = (labels: Record<string, string>): number => sumOf(after, 'sider_http_requests_total', labels) - sumOf(before, 'sider_http_requests_total', labels);
    t.equal(delta(tpl), 3, 'three services, one template');
    t.equal(delta({ path: 'unmatched', status: '404' }), 1);
    t.equal(delta({ path: '/v1/health/state/:state', status: '400' }), 1);
    t.equal(delta({ path: '/v1/agent/check/pass/:id', status: '200' }), 1, 'fast-path renewal');
    t.equal(delta({ path: '/v1/agent/check/pass/:id', status: '404' }), 1);
    const paths = new Set(find(after, 'sider_http_requests_total').map((s) => s.labels.path));
    t.notOk([...paths].some((p) => p?.includes('svc-a') || p?.includes('x1')), `no raw path among ${[...paths].join(' ')}`);
    t.ok(valueOf(after, 'sider_http_request_duration_seconds_count', { path: '/v1/health/service/:name' }) >= 3);
    t.ok(find(after, 'sider_http_connections', { client: '127.0.0.1' })[0]!.value >= 1, 'connections per client');
    t.ok(proc.logLines().some((l) => l.level === 'debug' && l.msg === 'http request' && l.route === '/v1/health/service/:name'), 'requests logged at debug');
  });

  await t.test('held blocking queries show per service until answered', async (t) => {
    const idx = (await http.call(addr, 'GET', '/v1/health/service/web')).headers['x-consul-index'];
    const held = [1, 2, 3].map(() => http.call(addr, 'GET', `/v1/health/service/web?index=${idx}&wait=30s`, { timeoutMs: 40_000 }));
    await waitFor('three held queries', async () => valueOf(await scrape(), 'sider_http_blocking_queries_held') === 3, 10_000, 50);
    const e = await scrape();
    t.equal(valueOf(e, 'sider_watchers_active', { service: 'web' }), 3);
    await register({ Name: 'web', ID: 'web-3', Address: '10.1.0.3', Port: 80 });
    const answers = await Promise.all(held);
    t.same(answers.map((a) => a.status), [200, 200, 200]);
    const after = await scrape();
    t.equal(valueOf(after, 'sider_http_blocking_queries_held'), 0);
    t.equal(find(after, 'sider_watchers_active', { service: 'web' }).length, 0);
  });

  await t.test('exposition formats and the agent endpoint', async (t) => {
    const om = await scrape('/metrics', { accept: 'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5' });
    t.match(om.contentType, /^application\/openmetrics-text; version=1\.0\.0/);
    t.ok(om.body.endsWith('# EOF\n'));
    t.equal(om.types.get('sider_http_requests'), 'counter', 'OpenMetrics counter family');
    const prom = await scrape('/v1/agent/metrics?format=prometheus');
    t.equal(prom.types.get('sider_http_requests_total'), 'counter', 'the text format after an OpenMetrics scrape keeps _total');
    for (const q of ['', '?format=json']) {
      const r = await http.call(addr, 'GET', `/v1/agent/metrics${q}`);
      t.equal(r.status, 400, `/v1/agent/metrics${q}`);
      t.match(r.text, /^format: only format=prometheus/);
    }
  });

  await t.test('DNS queries are counted with their latency', async (t) => {
    const before = await scrape();
    const reply = await udpExchange(dnsPort, buildQuery('web.default.sider', QTYPE.A));
    t.ok(reply, 'answered');
    await udpExchange(dnsPort, buildQuery('nope.default.sider', QTYPE.SRV));
    const after = await scrape();
    t.equal(sumOf(after, 'sider_dns_queries_total', { qtype: 'A' }) - sumOf(before, 'sider_dns_queries_total', { qtype: 'A' }), 1);
    t.equal(sumOf(after, 'sider_dns_responses_total', { rcode: 'NXDOMAIN' }) - sumOf(before, 'sider_dns_responses_total', { rcode: 'NXDOMAIN' }), 1);
    t.equal(valueOf(after, 'sider_dns_request_duration_seconds_count') - valueOf(before, 'sider_dns_request_duration_seconds_count'), 2);
  });

  await t.test('a TTL expiry is counted and logged, as is the transition back', async (t) => {
    await register({ Name: 'job', ID: 'job-1', Address: '10.2.0.1', Port: 1, Check: { CheckID: 'job-ttl', TTL: '1s', Status: 'passing' } });
    await waitFor('the TTL to expire', async () => valueOf(await scrape(), 'sider_health_ttl_expiries_total') >= 1, 15_000, 100);
    const expired = proc.logLines().find((l) => l.msg === 'health: TTL expired' && l.checkId === 'job-ttl');
    t.match(expired, { from: 'passing', to: 'critical', service: 'job', id: 'job-1', index: Number, reason: 'ttl-expired' });
    t.equal((await http.call(addr, 'PUT', '/v1/agent/check/pass/job-ttl')).status, 200);
    const back = proc.logLines().find((l) => l.msg === 'health: check status changed' && l.checkId === 'job-ttl');
    t.match(back, { from: 'critical', to: 'passing', reason: 'renewal' });
    t.ok(valueOf(await scrape(), 'sider_health_check_transitions_total', { status: 'passing' }) >= 1);
  });

  await t.test('the README "Metrics and logs" curl lines work', async (t) => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('## Metrics and logs'));
    const block = /```sh\n([\s\S]*?)```/.exec(section);
    t.ok(block, 'the section has an sh block');
    const lines = block![1]!.split('\n').filter((l) => l.startsWith('curl '));
    t.ok(lines.length >= 3, `${lines.length} curl lines`);
    for (const line of lines) {
      const { stdout } = await run('sh', ['-c', line.replaceAll('127.0.0.1:8500', addr)], { timeout: 15_000 });
      t.ok(stdout.length > 0, line);
    }
  });

  await t.test('every metric of the Grafana dashboard exists on a live server', async (t) => {
    const dash = JSON.parse(await readFile(new URL('../../deploy/grafana/sider-dashboard.json', import.meta.url), 'utf8')) as { panels: { targets?: { expr: string }[] }[] };
    const exprs = dash.panels.flatMap((p) => p.targets ?? []).map((x) => x.expr);
    t.ok(exprs.length >= 25, `${exprs.length} expressions`);
    const live = seriesNames(await scrape());
    const used = new Set<string>();
    for (const e of exprs) {
      const names = e.match(/\b(?:sider|process|nodejs)_[a-z0-9_]+\b/g) ?? [];
      t.ok(names.length > 0, `an expression names a metric: ${e}`);
      for (const n of names) used.add(n);
    }
    for (const n of used) t.ok(live.has(n), `${n} is exposed`);
    for (const n of REQUIRED_SERIES) t.ok([...used].some((u) => u === n || u.startsWith(`${n}_`)), `the dashboard charts ${n}`);
  });
});

t.test('-log-format text prints readable lines', async (t) => {
  const cluster = await SiderCluster.create({ ids: ['x1'] });
  t.teardown(() => cluster.teardown());
  cluster.spec('x1').extraArgs = ['-raft-tick-ms', '20', '-log-format', 'text'];
  await cluster.form();
  const out = cluster.procs.get('x1')!.output;
  t.match(out, /^\d{4}-\d\d-\d\dT[\d:.]+Z INFO  sider server started node=x1 http=127\.0\.0\.1:\d+ /m);
  t.notOk(out.split('\n').some((l) => l.startsWith('{')), 'no JSON lines');
});
