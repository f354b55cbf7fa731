#!/usr/bin/env -S node --max-semi-space-size=32
// The `sider` command line: dispatches to sub-commands. `server` runs a registry server, `agent`
// keeps a host's services registered and checked; the operator commands (members, join, services,
// health, register, deregister, snapshot) are HTTP clients in cli/.

import { readFileSync } from 'node:fs';
import { isSiderError } from '../raft/errors.ts';
import { SERVER_USAGE, loadServerConfig } from '../src/config.ts';
import { startServer } from './server.ts';
import { COMMANDS, operatorHelp, runCommand } from '../cli/commands.ts';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

const usage = `usage: sider <command> [flags]

commands:
  server      run a registry server (sider server -help for its flags)
  agent       register this host's services and run their checks (sider agent -help)
${operatorHelp()}
  version     print the version
  help        print this text

Operator commands talk to -http-addr (default 127.0.0.1:8500, env SIDER_HTTP_ADDR) and take
-json; sider <command> -help shows a command's flags.`;

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
    srv.shutdown().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // PUT /v1/agent/leave: the server has left its cluster and closed.
  void srv.left.then(() => process.exit(0));
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
    if (Object.hasOwn(COMMANDS, cmd)) {
      process.exitCode = await runCommand(cmd, rest, { out: (l) => console.log(l), err: (l) => console.error(l), env: process.env });
      break;
    }
    console.error(`sider: ${JSON.stringify(cmd)} is not available in this build (see README "Status").\n${usage}`);
    process.exit(2);
}
