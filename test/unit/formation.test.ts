// Cluster formation: the pure decision of -bootstrap-expect (who bootstraps, when to join, when to
// wait) and the -bootstrap-expect / -retry-join configuration (flags, environment, file, refusals).

import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decide } from '../../bin/formation.ts';
import { loadServerConfig } from '../../src/config.ts';

const forming = (id: string, addr: string) => ({ addr, status: { id, raftAddr: `${id}:8501`, clusterId: '', leader: '' } });

t.test('the smallest raft id among the expected servers bootstraps, the others join it', async (t) => {
  const peersOf = (self: string) => ['a', 'b', 'c'].filter((x) => x !== self).map((x) => forming(x, `${x}:8500`));
  t.same(decide('a', 3, peersOf('a')), { action: 'bootstrap' });
  t.same(decide('b', 3, peersOf('b')), { action: 'join', addr: 'a:8500' });
  t.same(decide('c', 3, peersOf('c')), { action: 'join', addr: 'a:8500' });
});

t.test('fewer servers known than expected: wait', async (t) => {
  t.match(decide('a', 3, [forming('b', 'b:8500')]), { action: 'wait', why: '2 of 3 servers known' });
  t.match(decide('a', Number.POSITIVE_INFINITY, [forming('b', 'b:8500'), forming('c', 'c:8500')]), { action: 'wait' }, '-retry-join alone never bootstraps');
  t.same(decide('a', 1, []), { action: 'bootstrap' }, '-bootstrap-expect 1 bootstraps alone');
});

t.test('a peer in a cluster with a leader is joined instead of bootstrapping', async (t) => {
  const led = { addr: 'z:8500', status: { id: 'z', raftAddr: 'z:8501', clusterId: 'cid', leader: 'z' } };
  t.same(decide('a', 3, [forming('b', 'b:8500'), led]), { action: 'join', addr: 'z:8500' });
  const leaderless = { addr: 'z:8500', status: { ...led.status, leader: '' } };
  t.match(decide('a', 2, [forming('b', 'b:8500'), leaderless]), { action: 'wait' }, 'a cluster without a leader yet: wait, do not bootstrap another');
});

t.test('-retry-join from repeated flags, a comma list in the environment, or a JSON array in the file', async (t) => {
  const base = ['-raft-id', 'n1', '-http', '127.0.0.1:8500'];
  t.same(loadServerConfig([...base, '-bootstrap-expect', '3', '-retry-join', 'h2:8500', '-retry-join', 'h3:8500'], {}).retryJoin, ['h2:8500', 'h3:8500']);
  const env = { SIDER_BOOTSTRAP_EXPECT: '3', SIDER_RETRY_JOIN: 'h2:8500, h3:8500' };
  const cfg = loadServerConfig(base, env);
  t.equal(cfg.bootstrapExpect, 3);
  t.same(cfg.retryJoin, ['h2:8500', 'h3:8500']);
  const dir = mkdtempSync(join(tmpdir(), 'sider-formation-'));
  const file = join(dir, 'c.json');
  writeFileSync(file, JSON.stringify({ 'bootstrap-expect': 3, 'retry-join': ['h2:8500', 'h3:8500'] }));
  t.same(loadServerConfig([...base, '-config-file', file], {}).retryJoin, ['h2:8500', 'h3:8500']);
  t.same(loadServerConfig(base, {}).retryJoin, [], 'none by default');
});

t.test('bad formation settings are refused naming the flag', async (t) => {
  const base = ['-raft-id', 'n1', '-http', '127.0.0.1:8500'];
  t.throws(() => loadServerConfig([...base, '-bootstrap-expect', '3'], {}), /-bootstrap-expect: needs -retry-join/);
  t.throws(() => loadServerConfig([...base, '-bootstrap-expect', '3', '-bootstrap', '-retry-join', 'h:1'], {}), /-bootstrap-expect excludes/);
  t.throws(() => loadServerConfig([...base, '-bootstrap-expect', '10', '-retry-join', 'h:1'], {}), /-bootstrap-expect: expected an integer/);
  t.throws(() => loadServerConfig([...base, '-bootstrap-expect', '3', '-retry-join', 'nope'], {}), /-retry-join: expected host:port/);
  t.throws(() => loadServerConfig(['-raft-id', 'n1', '-http', '127.0.0.1:0', '-bootstrap-expect', '2', '-retry-join', 'h:1'], {}), /-http needs a fixed port/);
  t.throws(() => loadServerConfig([...base, '-join', 'h:1', '-retry-join', 'h:2'], {}), /-retry-join excludes/);
});
