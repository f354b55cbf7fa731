// Every launcher of `sider` gives node the same flags (bin/node-flags.ts): they cannot be set from
// inside the process, so a launcher that forgets them runs the server differently from the one
// that was measured.

import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SIDER_NODE_FLAGS, missingNodeFlags } from '../../bin/node-flags.ts';
import { REPO_ROOT } from '../support/server-process.ts';

const read = (f: string): string => readFileSync(join(REPO_ROOT, f), 'utf8');

/** The words of a launcher's command line that come before the script, after node itself. */
function nodeFlagsBefore(words: string[], script: RegExp): string[] {
  const at = words.findIndex((w) => script.test(w));
  const node = words.findIndex((w) => /(^|\/|")node"?$|NODE"?$/.test(w));
  return at > node && node >= 0 ? words.slice(node + 1, at).map((w) => w.replace(/^"|"$/g, '')) : [];
}

t.test('the flags are a non-empty list of node options', async (t) => {
  t.ok(SIDER_NODE_FLAGS.length > 0);
  for (const f of SIDER_NODE_FLAGS) t.match(f, /^--[a-z][a-z0-9-]*$/, f);
});

t.test('every launcher gives node the flags before the script', async (t) => {
  const shebang = read('bin/sider.ts').split('\n')[0]!;
  t.match(shebang, /^#!\/usr\/bin\/env -S node( |$)/, 'the shebang splits its arguments (env -S)');
  t.same(shebang.split(/\s+/).slice(3), [...SIDER_NODE_FLAGS], 'the bin (shebang)');

  const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
  t.same(nodeFlagsBefore(pkg.scripts.start!.split(/\s+/), /bin\/sider\.ts$/), [...SIDER_NODE_FLAGS], 'npm start');

  const entry = /^ENTRYPOINT (.+)$/m.exec(read('deploy/Dockerfile'))?.[1];
  t.same(JSON.parse(entry ?? '[]'), ['node', ...SIDER_NODE_FLAGS, '/app/bin/sider.ts'], 'the Docker image');

  const launch = read('deploy/local-cluster.sh').split('\n').find((l) => /bin\/sider\.ts "\$\{args\[@\]\}"/.test(l)) ?? '';
  t.same(nodeFlagsBefore(launch.trim().split(/\s+/), /bin\/sider\.ts$/), [...SIDER_NODE_FLAGS], 'deploy/local-cluster.sh');
});

t.test('missingNodeFlags names the flags a command line lacks', async (t) => {
  t.same(missingNodeFlags([...SIDER_NODE_FLAGS]), []);
  t.same(missingNodeFlags(['--max-old-space-size=512', ...SIDER_NODE_FLAGS]), []);
  t.same(missingNodeFlags([]), [...SIDER_NODE_FLAGS]);
  t.same(missingNodeFlags(['--single-threaded-gc-no']), [...SIDER_NODE_FLAGS], 'whole words only');
});
