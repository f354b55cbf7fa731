#!/usr/bin/env node
// The `sider` command line: dispatches to sub-commands. `server` runs a registry server, `agent`
// keeps a host's services registered and checked; the operator commands (members, join, leave,
// services, health, snapshot …) arrive with issue #7.

import { readFileSync } from 'node:fs';
import { isSiderError } from '../raft/errors.ts';
import { SERVER_USAGE, loadServerConfig } from '../src/config.ts';
import { startServer } from './server.ts';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

const usage = `usage: sider <command> [flags]

commands:
  server      run a registry server (sider server -help for its flags)
  agent       register this host's services and run their checks (sider agent -help)
  version     print the version
  help        print this text

planned (see README "Status"): members, join, leave, services, health, register,
deregister, snapshot save|restore`;

async function server(argv: string[]): Promise<void> {
  if (argv.some((a) => /^--?(help|h)$/.test(a))) {
    console.log(SERVER_USAGE);
    return;
  }
  let srv: Awaited<ReturnType<typeof startServer>>;
  try {
    srv = await startServer(loadServerConfig(argv));
  } catch (err) {
    console.error(`sider server: ${isSiderError(err) ? err.message : (err as Error).stack}`);
    process.exit(1);
  }
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    srv.log('info', 'shutting down', { signal });
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    srv.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

const [cmd = 'help', ...rest] = process.argv.slice(2);
switch (cmd.replace(/^-+/, '')) {
  case 'server':
    await server(rest);
    break;
  case 'agent':
    // Loaded only here: a server never needs the agent's code.
    await (await import('./agent.ts')).agentCommand(rest);
    break;
  case 'version':
    console.log(`sider ${pkg.version} (node ${process.versions.node})`);
    break;
  case 'help':
  case 'h':
    console.log(usage);
    break;
  default:
    console.error(`sider: ${JSON.stringify(cmd)} is not available in this build (see README "Status").\n${usage}`);
    process.exit(2);
}
