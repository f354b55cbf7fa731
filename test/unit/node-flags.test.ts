// Every launcher of a server passes the same Node flags (src/node-flags.ts), and V8 honours them.

import t from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SERVER_NODE_FLAGS } from '../../src/node-flags.ts';
import { REPO_ROOT } from '../support/server-process.ts';

const read = (path: string): string => readFileSync(join(REPO_ROOT, path), 'utf8');

t.test('every launcher passes the flags', async (t) => {
  t.ok(SERVER_NODE_FLAGS.length > 0);
  const shebang = read('bin/sider.ts').split('\n')[0]!;
  t.equal(shebang, `#!/usr/bin/env -S node ${SERVER_NODE_FLAGS.join(' ')}`, 'the sider shebang');

  const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
  t.ok(pkg.scripts['start']?.startsWith(`node ${SERVER_NODE_FLAGS.join(' ')} bin/sider.ts server `), 'npm start');
  t.equal(pkg.scripts['sider'], `node ${SERVER_NODE_FLAGS.join(' ')} bin/sider.ts`, 'npm run sider');

  const entry = /^ENTRYPOINT (.+)$/m.exec(read('deploy/Dockerfile'))?.[1];
  t.same(JSON.parse(entry ?? '[]'), ['node', ...SERVER_NODE_FLAGS, '/app/bin/sider.ts'], 'the image ENTRYPOINT');

  const local = read('deploy/local-cluster.sh');
  t.ok(local.includes(`nohup "$NODE" ${SERVER_NODE_FLAGS.join(' ')} bin/sider.ts `), 'deploy/local-cluster.sh');
});

t.test("the shebang's flags take effect", async (t) => {
  // A copy made executable (the repository's file need not be: npm links it with its own mode).
  const dir = mkdtempSync(join(tmpdir(), 'sider-flags-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const probe = join(dir, 'probe.ts');
  const shebang = read('bin/sider.ts').split('\n')[0]!;
  // The same first line over a script that reports the young generation's limit after filling it.
  const body = [
    shebang,
    "import v8 from 'node:v8';",
    'const keep: object[] = [];',
    "for (let i = 0; i < 2e6; i++) { const o = { i, s: 'x' + i }; if (i % 4 === 0) keep.push(o); }",
    "const ns = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');",
    'console.log(JSON.stringify({ execArgv: process.execArgv, newSpace: ns?.space_size ?? -1, kept: keep.length }));',
    '',
  ].join('\n');
  writeFileSync(probe, body);
  chmodSync(probe, 0o755);
  // PATH first names this Node 24 (the shebang runs `node` from PATH).
  const env = { ...process.env, PATH: `${join(process.execPath, '..')}:${process.env['PATH'] ?? ''}` };
  const r = spawnSync(probe, [], { env, encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { execArgv: string[]; newSpace: number; kept: number };
  t.same(out.execArgv, [...SERVER_NODE_FLAGS]);
  const semi = Number(SERVER_NODE_FLAGS.map((f) => /^--max-semi-space-size=(\d+)$/.exec(f)?.[1]).find(Boolean));
  t.ok(semi > 0, 'the flags cap the semi-space');
  // Two semi-spaces at most; without the flag Node 24 grows this one to 128 MiB.
  t.ok(out.newSpace > 0 && out.newSpace <= 2 * semi * 2 ** 20, `new space ${out.newSpace} bytes ≤ 2 × ${semi} MiB`);
});
