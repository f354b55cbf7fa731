// Metrics, logs and readiness without sockets: label caps (against naive references), the lean
// histogram's exposition, registry gauges over a real state machine, OpenMetrics and Prometheus
// scrapes of one registry, the write and health observers, readiness, and pino redaction.

import t from 'tap';
import fc from 'fast-check';
import { CLIENT_LEFT, wantsOpenMetrics } from '../../http/metrics.ts';
import { REDACTED, createLogger, logsAt, redactFields, textLine } from '../../src/log.ts';
import { LeanHistogram, OTHER, ServerMetrics, capByCount, capInstanceSeries } from '../../src/metrics.ts';
import type { DnsCounters, RaftStatusView } from '../../src/metrics.ts';
import { observeHealthProposals, observeRaftEvents, observeWrites } from '../../src/observe.ts';
import { Readiness } from '../../src/readiness.ts';
import { TTL_EXPIRED_OUTPUT } from '../../src/health/leader.ts';
import type { CheckSpec, InstanceSpec, RegistryCommand } from '../../src/registry/model.ts';
import { LocalRegistry } from '../support/local-registry.ts';
import { find, parseExposition, sumOf, valueOf } from '../support/prom-text.ts';

function instance(service: string, id: string): InstanceSpec {
  return { Service: service, ID: id, Address: '10.0.0.1', Port: 80, Tags: [], Meta: {}, Weights: { Passing: 1, Warning: 1 }, TaggedAddresses: {}, EnableTagOverride: false };
}

function ttlCheck(id: string, status: CheckSpec['Status']): CheckSpec {
  return {
    CheckID: id, Name: id, Type: 'ttl', Status: status, Notes: '', Output: '', Interval: '', Timeout: '', TTL: '30s', DeregisterCriticalServiceAfter: '',
    SuccessBeforePassing: 0, FailuresBeforeCritical: 0, HTTP: '', Method: '', Header: {}, TCP: '', GRPC: '', GRPCUseTLS: false, TLSSkipVerify: false, Args: [],
  };
}

function register(ns: string, service: string, id: string, status: CheckSpec['Status'] = 'passing'): RegistryCommand {
  return { type: 'register', ns, node: 'n1', instance: instance(service, id), checks: [ttlCheck(`service:${id}`, status)], replaceExistingChecks: false, now: 1 };
}

async function scrape(m: ServerMetrics, openMetrics = false): Promise<ReturnType<typeof parseExposition> & { body: string; contentType: string }> {
  const { body, contentType } = await m.scrape(openMetrics);
  return { ...parseExposition(body.replace(/^# EOF\n?$/m, '')), body, contentType };
}

const raftStatus = (over: Partial<RaftStatusView> = {}): RaftStatusView => ({
  id: 'n1',
  role: 'follower',
  leader: 'n2',
  term: 3,
  commit: 10,
  lastIndex: 12,
  firstIndex: 1,
  applied: 9,
  uncommittedBytes: 0,
  lastContactMs: 250,
  membership: { voters: ['n1', 'n2', 'n3'], learners: [], addrs: { n1: 'a:1', n2: 'a:2', n3: 'a:3' }, removed: [] },
  peers: {},
  ...over,
});

// ---------------------------------------------------------------------------------- caps

t.test('capByCount keeps the largest and sums the rest under _other (naive reference)', async (t) => {
  fc.assert(
    fc.property(fc.dictionary(fc.string({ minLength: 1, maxLength: 4 }).filter((k) => k !== OTHER), fc.nat(1000)), fc.integer({ min: 1, max: 8 }), (dict, keep) => {
      const input = new Map(Object.entries(dict));
      const out = capByCount(input, keep);
      const total = [...input.values()].reduce((a, b) => a + b, 0);
      if ([...out.values()].reduce((a, b) => a + b, 0) !== total) return false;
      if (input.size <= keep) return out === input;
      if (out.size !== keep + 1 || !out.has(OTHER)) return false;
      // Every kept key counts at least as much as every dropped one.
      const kept = [...out.keys()].filter((k) => k !== OTHER);
      const dropped = [...input.keys()].filter((k) => !out.has(k));
      const minKept = Math.min(...kept.map((k) => input.get(k)!));
      return dropped.every((k) => input.get(k)! <= minKept) && kept.every((k) => out.get(k) === input.get(k));
    }),
    { numRuns: 500 },
  );
  t.pass('holds over 500 random cases');
});

t.test('capInstanceSeries bounds the series and keeps totals and per-namespace sums', async (t) => {
  const pair = fc.tuple(fc.constantFrom('a', 'b', 'c', 'd'), fc.string({ minLength: 1, maxLength: 3 }).filter((s) => s !== OTHER), fc.nat(50));
  fc.assert(
    fc.property(fc.uniqueArray(pair, { selector: (p) => `${p[0]}/${p[1]}`, maxLength: 40 }), fc.integer({ min: 1, max: 10 }), fc.integer({ min: 1, max: 5 }), (pairs, maxS, maxN) => {
      const out = capInstanceSeries(pairs, maxS, maxN);
      const sum = (xs: readonly (readonly [string, string, number])[], ns?: string): number => xs.filter((p) => ns === undefined || p[0] === ns).reduce((a, p) => a + p[2], 0);
      if (sum(out) !== sum(pairs)) return false;
      if (out.length > maxS + maxN + 1) return false;
      if (new Set(out.map((p) => `${p[0]}/${p[1]}`)).size !== out.length) return false;
      if (pairs.length <= maxS) return out.length === pairs.length;
      // With no more namespaces than the namespace cap, every namespace keeps its exact sum.
      if (new Set(pairs.map((p) => p[0])).size <= maxN) return ['a', 'b', 'c', 'd'].every((ns) => sum(out, ns) === sum(pairs, ns));
      return true;
    }),
    { numRuns: 500 },
  );
  t.pass('holds over 500 random cases');
});

// ---------------------------------------------------------------------------------- exposition

t.test('the lean histogram is exposed as a cumulative Prometheus histogram', async (t) => {
  const h = new LeanHistogram('x_seconds', 'help', [0.001, 0.01, 0.1]);
  for (const v of [0.0005, 0.001, 0.005, 0.05, 0.5, 2]) h.observe(v);
  const m = new ServerMetrics({ nodeId: 'n1', reader: new LocalRegistry().reader, defaultMetrics: false });
  m.registry.registerMetric(h as never);
  const e = await scrape(m);
  t.equal(e.types.get('x_seconds'), 'histogram');
  t.same(find(e, 'x_seconds_bucket').map((s) => [s.labels.le, s.value]), [['0.001', 2], ['0.01', 3], ['0.1', 4], ['+Inf', 6]], 'le is inclusive, buckets cumulative');
  t.equal(valueOf(e, 'x_seconds_count'), 6);
  t.ok(Math.abs(valueOf(e, 'x_seconds_sum') - 2.5565) < 1e-9);
});

t.test('registry gauges follow the state, with the service cap', async (t) => {
  const reg = new LocalRegistry();
  const m = new ServerMetrics({ nodeId: 'n1', reader: reg.reader, defaultMetrics: false, maxServiceSeries: 2, maxNamespaceSeries: 1 });
  await reg.write(register('default', 'api', 'api-1'));
  await reg.write(register('default', 'api', 'api-2', 'critical'));
  await reg.write(register('default', 'api', 'api-3', 'warning'));
  await reg.write(register('default', 'web', 'web-1'));
  await reg.write(register('default', 'db', 'db-1'));
  await reg.write(register('team-b', 'api', 'api-1'));
  let e = await scrape(m);
  t.equal(valueOf(e, 'sider_registry_instances_total', { namespace: 'default', service: 'api' }), 3);
  t.equal(find(e, 'sider_registry_instances_total').length, 4, '2 services with their own series, then _other per namespace');
  t.equal(valueOf(e, 'sider_registry_instances_total', { namespace: 'default', service: 'db' }), 1, 'ties go by name');
  t.equal(valueOf(e, 'sider_registry_instances_total', { namespace: 'default', service: OTHER }), 1, 'web, summed in its namespace');
  t.equal(valueOf(e, 'sider_registry_instances_total', { namespace: OTHER, service: OTHER }), 1, 'team-b/api, past the namespace cap');
  t.equal(sumOf(e, 'sider_registry_instances_total'), 6);
  t.equal(valueOf(e, 'sider_registry_checks_total', { status: 'passing' }), 4);
  t.equal(valueOf(e, 'sider_registry_checks_total', { status: 'warning' }), 1);
  t.equal(valueOf(e, 'sider_registry_checks_total', { status: 'critical' }), 1);
  t.equal(valueOf(e, 'sider_registry_instances_by_health', { health: 'critical' }), 1);
  t.equal(valueOf(e, 'sider_registry_services', { namespace: 'default' }), 3);
  t.equal(valueOf(e, 'sider_registry_index'), reg.state.index());

  await reg.write({ type: 'deregister', ns: 'default', service: 'api', id: 'api-1', now: 2 });
  e = await scrape(m);
  t.equal(valueOf(e, 'sider_registry_instances_total', { namespace: 'default', service: 'api' }), 2, 'recomputed once the index moved');
  t.equal(valueOf(e, 'sider_registry_checks_total', { status: 'passing' }), 3);
});

t.test('Raft, DNS and HTTP gauges are read at scrape time', async (t) => {
  const m = new ServerMetrics({ nodeId: 'n1', reader: new LocalRegistry().reader, defaultMetrics: false, now: () => 10_000 });
  let st = raftStatus();
  m.setRaft(() => st);
  const dns: DnsCounters = { byType: { A: 3, SRV: 1 }, byRcode: { NOERROR: 3, NXDOMAIN: 1 }, udp: 4, tcp: 0, truncated: 1, dropped: 2, internalErrors: 0, staleNoLeader: 5, cacheHits: 2, cacheMisses: 2 };
  m.setDns(() => dns);
  m.setBlockingHeld(() => 7);
  m.peerContact('n2');
  let e = await scrape(m);
  t.equal(valueOf(e, 'sider_raft_leader', { node: 'n1' }), 0);
  t.equal(valueOf(e, 'sider_raft_role', { role: 'follower' }), 1);
  t.equal(valueOf(e, 'sider_raft_role', { role: 'leader' }), 0);
  t.equal(valueOf(e, 'sider_raft_commit_index'), 10);
  t.equal(valueOf(e, 'sider_raft_applied_index'), 9);
  t.equal(valueOf(e, 'sider_raft_last_log_index'), 12);
  t.equal(valueOf(e, 'sider_raft_last_contact_seconds'), 0.25);
  t.equal(valueOf(e, 'sider_raft_peer_last_contact_seconds', { peer: 'n2' }), 0, 'heard from n2 just now');
  t.equal(find(e, 'sider_raft_peer_last_contact_seconds', { peer: 'n3' }).length, 0, 'never heard from n3');
  t.equal(valueOf(e, 'sider_dns_queries_total', { qtype: 'SRV' }), 1);
  t.equal(valueOf(e, 'sider_dns_responses_total', { rcode: 'NXDOMAIN' }), 1);
  t.equal(valueOf(e, 'sider_dns_stale_answers_total'), 5);
  t.equal(valueOf(e, 'sider_dns_truncated_total'), 1);
  t.equal(valueOf(e, 'sider_http_blocking_queries_held'), 7);

  st = raftStatus({ role: 'leader', leader: 'n1', peers: { n2: { match: 12, next: 13, state: 'replicate', recentActive: true, learner: false }, n3: { match: 4, next: 5, state: 'probe', recentActive: false, learner: false } } });
  dns.byType.A = 10;
  e = await scrape(m);
  t.equal(valueOf(e, 'sider_raft_leader', { node: 'n1' }), 1);
  t.equal(valueOf(e, 'sider_raft_role', { role: 'leader' }), 1);
  t.equal(valueOf(e, 'sider_raft_peer_match_index', { peer: 'n3' }), 4);
  t.equal(valueOf(e, 'sider_raft_peer_lag_entries', { peer: 'n3' }), 8);
  t.equal(valueOf(e, 'sider_dns_queries_total', { qtype: 'A' }), 10, 'DNS counters follow the server’s');
});

t.test('watchers and connections are counted per label and capped', async (t) => {
  const m = new ServerMetrics({ nodeId: 'n1', reader: new LocalRegistry().reader, defaultMetrics: false, maxServiceSeries: 2, maxClientSeries: 1 });
  for (const s of ['a', 'a', 'a', 'b', 'b', 'c']) m.watcherParked(s);
  m.connectionOpened('10.0.0.1');
  m.connectionOpened('10.0.0.1');
  m.connectionOpened('10.0.0.2');
  let e = await scrape(m);
  t.equal(valueOf(e, 'sider_watchers_active', { service: 'a' }), 3);
  t.equal(valueOf(e, 'sider_watchers_active', { service: OTHER }), 1);
  t.equal(valueOf(e, 'sider_http_connections', { client: '10.0.0.1' }), 2);
  t.equal(valueOf(e, 'sider_http_connections', { client: OTHER }), 1);
  t.equal(valueOf(e, 'sider_http_connections_opened_total'), 3);
  for (const s of ['a', 'a', 'a', 'b']) m.watcherReleased(s);
  m.connectionClosed('10.0.0.1');
  m.connectionClosed('10.0.0.2');
  e = await scrape(m);
  t.same(find(e, 'sider_watchers_active').map((s) => [s.labels.service, s.value]).sort(), [['b', 1], ['c', 1]], 'released series disappear');
  t.same(find(e, 'sider_http_connections').map((s) => [s.labels.client, s.value]), [['10.0.0.1', 1]]);
});

t.test('an OpenMetrics scrape does not rename the counters of later Prometheus scrapes', async (t) => {
  // prom-client drops `_total` from counter names in place while writing OpenMetrics.
  const m = new ServerMetrics({ nodeId: 'n1', reader: new LocalRegistry().reader });
  m.registrations.inc();
  const [om, prom1] = await Promise.all([scrape(m, true), scrape(m, false)]);
  const prom2 = await scrape(m, false);
  t.match(om.contentType, /^application\/openmetrics-text; version=1\.0\.0/);
  t.ok(om.body.endsWith('# EOF\n'), 'OpenMetrics ends with # EOF');
  t.equal(om.types.get('sider_registry_registrations'), 'counter', 'OpenMetrics family name without _total');
  t.equal(valueOf(om, 'sider_registry_registrations_total'), 1);
  for (const p of [prom1, prom2]) {
    t.match(p.contentType, /^text\/plain; version=0\.0\.4/);
    t.equal(p.types.get('sider_registry_registrations_total'), 'counter');
    t.equal(valueOf(p, 'sider_registry_registrations_total'), 1);
    t.notOk(p.body.includes('# EOF'));
    t.ok(p.types.has('process_cpu_seconds_total'), 'process defaults keep their names too');
  }
});

t.test('OpenMetrics is chosen from the Accept header', async (t) => {
  const prometheus = 'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';
  t.equal(wantsOpenMetrics(prometheus), true);
  t.equal(wantsOpenMetrics('application/openmetrics-text'), true);
  t.equal(wantsOpenMetrics('text/plain;version=0.0.4'), false);
  t.equal(wantsOpenMetrics('text/plain,application/openmetrics-text;q=0.5'), false);
  t.equal(wantsOpenMetrics('application/openmetrics-text;q=0'), false);
  t.equal(wantsOpenMetrics('*/*'), false);
  t.equal(wantsOpenMetrics(undefined), false);
  t.equal(CLIENT_LEFT, '499');
});

// ---------------------------------------------------------------------------------- observers

function capture(): { lines: Record<string, unknown>[]; log: (level: string, msg: string, fields?: Record<string, unknown>) => void } {
  const lines: Record<string, unknown>[] = [];
  return { lines, log: (level, msg, fields) => lines.push({ level, msg, ...fields }) };
}

t.test('writes received here are counted and logged with who, what and index', async (t) => {
  const reg = new LocalRegistry();
  const m = new ServerMetrics({ nodeId: 'n1', reader: reg.reader, defaultMetrics: false });
  const c = capture();
  const svc = observeWrites(reg, { metrics: m, log: c.log, who: () => '192.0.2.7' });
  t.equal(svc.reader, reg.reader);
  t.equal(svc.nodeName, reg.nodeName);
  const r = await svc.write(register('default', 'api', 'api-1'));
  await svc.write(register('default', 'api', 'api-1'));
  await svc.write({ type: 'deregister', ns: 'default', service: 'api', id: 'api-1', now: 0 });
  await svc.write({ type: 'deregister', ns: 'default', service: 'api', id: 'nope', now: 0 });
  const e = await scrape(m);
  t.equal(valueOf(e, 'sider_registry_registrations_total'), 2, 'an identical re-registration is still a registration');
  t.equal(valueOf(e, 'sider_registry_deregistrations_total', { source: 'api' }), 1, 'a deregistration that removed nothing is not counted');
  t.same(c.lines[0], { level: 'info', msg: 'registered service instance', ns: 'default', service: 'api', id: 'api-1', node: 'n1', address: '10.0.0.1', port: 80, checks: 1, index: r.index, changed: true, remote: '192.0.2.7' });
  t.match(c.lines[1], { msg: 'registered service instance', changed: false });
  t.match(c.lines[2], { msg: 'deregistered service instance', id: 'api-1', changed: true });
  t.match(c.lines[3], { msg: 'deregistered service instance', id: 'nope', changed: false });
  t.equal(c.lines.length, 4);
});

t.test('a logger that drops info lines is not handed the fields of a write', async (t) => {
  t.equal(logsAt(createLogger({ level: 'warn', format: 'json', node: 's1', write: () => {} }), 'info'), false);
  t.equal(logsAt(createLogger({ level: 'warn', format: 'json', node: 's1', write: () => {} }), 'warn'), true);
  t.equal(logsAt(createLogger({ level: 'info', format: 'text', node: 's1', write: () => {} }), 'info'), true);
  t.equal(logsAt(() => {}, 'debug'), true, 'a logger not made by createLogger is given every line');
  const reg = new LocalRegistry();
  const m = new ServerMetrics({ nodeId: 'n1', reader: reg.reader, defaultMetrics: false });
  const out: string[] = [];
  const log = createLogger({ level: 'warn', format: 'json', node: 's1', write: (l) => out.push(l) });
  let asked = 0;
  const svc = observeWrites(reg, { metrics: m, log, who: () => (asked++, '192.0.2.7') });
  await svc.write(register('default', 'api', 'api-1'));
  t.same(out, [], 'no line');
  t.equal(asked, 0, 'nor its fields built');
  t.equal(valueOf(await scrape(m), 'sider_registry_registrations_total'), 1, 'still counted');
});

t.test('leader health proposals: transitions, TTL expiries and reaped instances', async (t) => {
  const reg = new LocalRegistry();
  await reg.write(register('default', 'api', 'api-1'));
  const m = new ServerMetrics({ nodeId: 'n1', reader: reg.reader, defaultMetrics: false });
  const c = capture();
  const propose = observeHealthProposals((cmd) => reg.write(cmd), { metrics: m, log: c.log, state: reg.state });
  await propose({ type: 'checkStatus', ns: 'default', checkId: 'service:api-1', status: 'warning', output: 'slow', now: 0 });
  await propose({ type: 'checkStatus', ns: 'default', checkId: 'service:api-1', status: 'warning', output: 'slow', now: 0 });
  await propose({ type: 'checkStatus', ns: 'default', checkId: 'service:api-1', status: 'critical', output: TTL_EXPIRED_OUTPUT, now: 0 }, 'ttl-expired');
  await propose({ type: 'ttlCheckpoint', entries: [], now: 0 }, 'checkpoint');
  await propose({ type: 'deregister', ns: 'default', service: 'api', id: 'api-1', now: 0 }, 'critical-timeout');
  const e = await scrape(m);
  t.equal(valueOf(e, 'sider_health_check_transitions_total', { status: 'warning' }), 1, 'an unchanged proposal is no transition');
  t.equal(valueOf(e, 'sider_health_check_transitions_total', { status: 'critical' }), 1);
  t.equal(valueOf(e, 'sider_health_ttl_expiries_total'), 1);
  t.equal(valueOf(e, 'sider_registry_deregistrations_total', { source: 'critical_timeout' }), 1);
  t.same(
    c.lines.map((l) => [l.msg, l.from, l.to]),
    [
      ['health: check status changed', 'passing', 'warning'],
      ['health: TTL expired', 'warning', 'critical'],
      ['deregistered service instance', undefined, undefined],
    ],
  );
  t.match(c.lines[1], { service: 'api', id: 'api-1', checkId: 'service:api-1', reason: 'ttl-expired', index: Number });
});

t.test('Raft events: elections, leader changes, snapshots, membership lines', async (t) => {
  const m = new ServerMetrics({ nodeId: 'n1', reader: new LocalRegistry().reader, defaultMetrics: false });
  const c = capture();
  const on = observeRaftEvents(m, c.log);
  const obs = m.raftObserver();
  for (const r of ['preCandidate', 'candidate', 'leader', 'follower', 'preCandidate', 'candidate']) obs.roleChanged(r);
  for (const l of ['n1', 'n1', '', 'n2']) on({ type: 'leader', leader: l, role: 'follower' });
  on({ type: 'snapshot', meta: { index: 10, term: 1, membership: { voters: [], learners: [], addrs: {}, removed: [] } }, bytes: 4096, ms: 120 });
  on({ type: 'membership', index: 5, membership: { voters: ['n1', 'n2'], learners: ['n3'], addrs: {}, removed: [] } });
  obs.fsync(0.4);
  obs.committed(3);
  obs.appendAcked('n2', 2);
  obs.appendAcked('n2', 30);
  obs.appendAcked('n3', 0.2);
  const e = await scrape(m);
  t.equal(valueOf(e, 'sider_raft_elections_started_total'), 2);
  t.equal(valueOf(e, 'sider_raft_elections_won_total'), 1);
  t.equal(valueOf(e, 'sider_raft_leader_changes_total'), 2, 'n1 then n2; losing the leader is not a change');
  t.equal(valueOf(e, 'sider_raft_snapshots_total', { kind: 'taken' }), 1);
  t.equal(valueOf(e, 'sider_raft_snapshot_size_bytes'), 4096);
  t.equal(valueOf(e, 'sider_raft_snapshot_duration_seconds_count'), 1);
  t.equal(valueOf(e, 'sider_raft_fsync_duration_seconds_bucket', { le: '0.0005' }), 1);
  t.equal(valueOf(e, 'sider_raft_commit_duration_seconds_bucket', { le: '0.005' }), 1);
  t.equal(valueOf(e, 'sider_raft_peer_append_rtt_seconds_bucket', { peer: 'n2', le: '0.0025' }), 1, 'per follower');
  t.equal(valueOf(e, 'sider_raft_peer_append_rtt_seconds_count', { peer: 'n2' }), 2);
  t.equal(valueOf(e, 'sider_raft_peer_append_rtt_seconds_bucket', { peer: 'n3', le: '0.00025' }), 1);
  t.same(c.lines, [{ level: 'info', msg: 'raft: membership changed', index: 5, voters: ['n1', 'n2'], learners: ['n3'], removed: [] }]);
});

// ---------------------------------------------------------------------------------- readiness

t.test('readiness: not before a barrier succeeded, and only while a leader is known', async (t) => {
  let failures = 2;
  let leader = true;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const ready = new Readiness({
    barrier: async () => {
      if (failures-- > 0) throw new Error('no leader');
      resolveDone();
    },
    knownLeader: () => leader,
    retryMs: 1,
  });
  t.teardown(() => ready.close());
  t.same(ready.state().ready, false);
  ready.start();
  await done;
  await new Promise((r) => setImmediate(r));
  t.same(ready.state(), { ready: true, reason: '' });
  leader = false;
  t.same(ready.state(), { ready: false, reason: 'no leader known' });

  const never = new Readiness({ barrier: () => Promise.reject(new Error('read index not confirmed')), knownLeader: () => true, retryMs: 1 });
  never.start();
  await new Promise((r) => setTimeout(r, 20));
  t.match(never.state(), { ready: false, reason: /not caught up with the leader yet \(last attempt: read index not confirmed\)/ });
  never.close();
});

// ---------------------------------------------------------------------------------- logs

t.test('logs: JSON lines with level names, the node, and secrets redacted', async (t) => {
  const out: string[] = [];
  const log = createLogger({ level: 'info', format: 'json', node: 's1', write: (l) => out.push(l) });
  const secret = 'cluster-key-0123456789abcdef';
  log('debug', 'not printed at info');
  log('info', 'hello', { clusterKey: secret, token: secret, nested: { authorization: `Bearer ${secret}`, 'x-sider-auth': secret, clusterKey: secret }, n: 1 });
  log('warn', 'careful');
  t.equal(out.length, 2);
  t.notOk(out.join('\n').includes(secret), 'the secret never reaches a line');
  const first = JSON.parse(out[0]!) as Record<string, unknown>;
  t.match(first, { level: 'info', node: 's1', msg: 'hello', clusterKey: REDACTED, token: REDACTED, nested: { authorization: REDACTED, 'x-sider-auth': REDACTED }, n: 1 });
  t.match(first.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  t.match(JSON.parse(out[1]!), { level: 'warn', msg: 'careful' });
});

t.test('logs: redaction replaces secret-named fields at the top level and one level down, and copies only then', async (t) => {
  const plain = { ns: 'default', id: 'api-1', index: 3, nested: { a: 1 } };
  t.equal(redactFields(plain), plain, 'nothing to redact: the same object');
  const input = {
    password: 'p',
    cluster_key: 'k',
    'x-consul-token': 't',
    headers: { authorization: 'Bearer x', 'x-sider-auth': 'sig', host: 'h' },
    deep: { inner: { token: 'two levels down' } },
    list: [{ token: 'in an array' }],
    buf: Buffer.from('secret'),
    keep: 'k',
  };
  const out = redactFields(input);
  t.not(out, input, 'copied');
  t.same(out, {
    password: REDACTED,
    cluster_key: REDACTED,
    'x-consul-token': REDACTED,
    headers: { authorization: REDACTED, 'x-sider-auth': REDACTED, host: 'h' },
    deep: { inner: { token: 'two levels down' } },
    list: [{ token: 'in an array' }],
    buf: Buffer.from('secret'),
    keep: 'k',
  }, 'as pino redacted the same names (top level and *.name)');
  t.equal(input.password, 'p', 'the caller\'s object is not changed');
  t.equal(input.headers.authorization, 'Bearer x');
});

t.test('logs: readable text with -log-format text', async (t) => {
  const out: string[] = [];
  const log = createLogger({ level: 'debug', format: 'text', node: 's1', write: (l) => out.push(l) });
  log('debug', 'request done', { path: '/v1/x', status: 200, note: 'two words', token: 'T0K3N' });
  t.equal(out.length, 1);
  t.match(out[0], /^\d{4}-\d\d-\d\dT\S+Z DEBUG request done node=s1 path=\/v1\/x status=200 note="two words" token=\[redacted\]$/);
  t.equal(textLine('not json'), 'not json');
});
