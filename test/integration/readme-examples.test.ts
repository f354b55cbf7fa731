// Every curl line of the README's "Try it" section, run against a real single-node server
// (the documented address rewritten to a free port): README examples must keep working.

import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { startServer } from '../../bin/server.ts';
import { loadServerConfig } from '../../src/config.ts';
import { freePort, waitFor } from '../support/ports.ts';

const run = promisify(execFile);

async function readmeCurlLines(): Promise<string[]> {
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('## Try it'));
  const block = /```sh\n([\s\S]*?)```/.exec(section);
  if (!block) throw new Error('README "Try it" has no sh block');
  return block[1]!.split('\n').filter((l) => l.startsWith('curl '));
}

t.test('the README curl examples work against a real server', async (t) => {
  const lines = await readmeCurlLines();
  t.ok(lines.length >= 4, `found ${lines.length} curl lines`);
  const dir = await mkdtemp(join(tmpdir(), 'sider-readme-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const http = `127.0.0.1:${await freePort()}`;
  const cfg = loadServerConfig(
    ['-bootstrap', '-raft-id', 'node1', '-raft-dir', dir, '-http', http, '-raft-bind', `127.0.0.1:${await freePort()}`, '-raft-tick-ms', '20', '-dns', '127.0.0.1:0'],
    {},
  );
  const srv = await startServer(cfg, { log: () => {} });
  t.teardown(() => srv.close());
  await waitFor('leader', () => srv.raft.status().role === 'leader');
  await waitFor('address published', () => srv.state.servers().length === 1);
  for (const line of lines) {
    const cmd = line.replaceAll('127.0.0.1:8500', http);
    const { stdout } = await run('sh', ['-c', cmd], { timeout: 15_000 });
    t.pass(`${line.slice(0, 90)}`);
    if (line.includes('/v1/health/service/api?passing')) t.match(JSON.parse(stdout), [{ Service: { ID: 'api-1', Port: 8080 } }]);
  }
  t.same(srv.state.instances('default'), [], 'the last example deregistered the instance');
});
