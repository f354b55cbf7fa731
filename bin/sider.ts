#!/usr/bin/env node
// The `sider` command line: dispatches to sub-commands. This build ships the Raft library; the
// registry server and the operator commands arrive with the registry (issue #3) and later issues.

import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

const usage = `usage: sider <command> [flags]

commands available in this build:
  version     print the version
  help        print this text

planned (see README "Status"): server, agent, members, join, leave, services, health,
register, deregister, snapshot save|restore`;

const [cmd = 'help'] = process.argv.slice(2);
switch (cmd.replace(/^-+/, '')) {
  case 'version':
    console.log(`sider ${pkg.version} (node ${process.versions.node})`);
    break;
  case 'help':
  case 'h':
    console.log(usage);
    break;
  default:
    console.error(`sider: ${JSON.stringify(cmd)} is not available in this build: Sider currently ships its Raft library (raft/);\nthe registry server (\`sider server\`, \`npm start\`) lands with issue #3. See README "Status".`);
    process.exit(2);
}
