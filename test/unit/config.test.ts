// `sider server` configuration: flags (single and double dash), SIDER_* environment, config file,
// precedence, defaults and every validation error naming its field.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadServerConfig, parseHostPort } from '../../src/config.ts';

t.test('defaults are a loopback single server with data in ./data', async (t) => {
  const c = loadServerConfig(['-raft-id', 'n1'], {});
  t.equal(c.http, '127.0.0.1:8500');
  t.equal(c.raftBind, '127.0.0.1:8501');
  t.equal(c.raftDir, './data');
  t.equal(c.nodeName, 'n1');
  t.equal(c.bootstrap, false);
  t.equal(c.tickMs, 100);
  t.equal(c.electionTicks, 10);
});

t.test('single-dash and double-dash flags are the same', async (t) => {
  const a = loadServerConfig(['-http', '127.0.0.1:9500', '-raft-id', 'n2', '-bootstrap'], {});
  const b = loadServerConfig(['--http', '127.0.0.1:9500', '--raft-id=n2', '--bootstrap'], {});
  t.same(a, b);
  t.equal(a.bootstrap, true);
});

t.test('flags beat the environment, which beats the config file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sider-cfg-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'sider.json');
  await writeFile(file, JSON.stringify({ 'raft-id': 'fromfile', http: '127.0.0.1:1111', datacenter: 'filedc' }));
  const env = { SIDER_HTTP: '127.0.0.1:2222', SIDER_RAFT_ID: 'fromenv' };
  const c = loadServerConfig(['-config-file', file, '-raft-id', 'fromflag'], env);
  t.equal(c.raftId, 'fromflag');
  t.equal(c.http, '127.0.0.1:2222');
  t.equal(c.datacenter, 'filedc');
  t.equal(loadServerConfig([], { SIDER_CONFIG_FILE: file }).raftId, 'fromfile');
});

t.test('the cluster key comes from SIDER_CLUSTER_KEY and must be long enough', async (t) => {
  t.equal(loadServerConfig(['-raft-id', 'a'], { SIDER_CLUSTER_KEY: 'k'.repeat(16) }).clusterKey, 'k'.repeat(16));
  t.throws(() => loadServerConfig(['-raft-id', 'a'], { SIDER_CLUSTER_KEY: 'short' }), { code: 'SIDER_CONFIG', message: /-cluster-key/ });
});

t.test('bad values are refused with the field named', async (t) => {
  const bad: [string[], RegExp][] = [
    [['-raft-id', 'Bad_ID'], /-raft-id/],
    [['-http', 'nope'], /-http: expected host:port/],
    [['-raft-bind', '0.0.0.0:8501'], /-raft-advertise/],
    [['-raft-id', 'a', '-bootstrap', '-join', '127.0.0.1:1'], /mutually exclusive/],
    [['-raft-id', 'a', '-log-level', 'loud'], /-log-level/],
    [['-raft-id', 'a', '-log-format', 'xml'], /-log-format/],
    [['-raft-id', 'a', '-raft-tick-ms', '5'], /-raft-tick-ms/],
    [['-raft-id', 'a', '-no-such-flag', 'x'], /unknown flag -no-such-flag/],
    [['-raft-id', 'a', 'extra'], /unexpected argument/],
    [['-raft-id', 'a', '-config-file', '/nonexistent/sider.json'], /config file/],
  ];
  for (const [argv, re] of bad) t.throws(() => loadServerConfig(argv, {}), { code: 'SIDER_CONFIG', message: re }, argv.join(' '));
});

t.test('a config file with an unknown key or not an object is refused', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sider-cfg-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const f1 = join(dir, 'a.json');
  await writeFile(f1, JSON.stringify({ 'raft-idd': 'x' }));
  t.throws(() => loadServerConfig(['-config-file', f1], {}), { message: /unknown key "raft-idd"/ });
  const f2 = join(dir, 'b.json');
  await writeFile(f2, '[1,2]');
  t.throws(() => loadServerConfig(['-config-file', f2], {}), { message: /not a JSON object/ });
});

t.test('host:port parsing', async (t) => {
  t.same(parseHostPort('127.0.0.1:80', 'x'), { host: '127.0.0.1', port: 80 });
  t.same(parseHostPort('[::1]:8500', 'x'), { host: '::1', port: 8500 });
  t.same(parseHostPort(':8500', 'x'), { host: '0.0.0.0', port: 8500 });
  t.throws(() => parseHostPort('host:99999', 'x'));
  t.throws(() => parseHostPort('host', 'x'));
});
