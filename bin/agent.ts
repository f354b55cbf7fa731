// `sider agent`: reads the agent config, runs the Agent until SIGTERM/SIGINT, then deregisters its
// services and exits 0. A bad config or bad flags exit 2 with the file, field and reason.

import { isSiderError } from '../raft/errors.ts';
import { Agent } from '../agent/agent.ts';
import { AGENT_USAGE, loadAgentConfig, parseAgentFlags } from '../agent/config.ts';
import type { AgentConfig } from '../agent/config.ts';
import { createLogger } from '../src/log.ts';

/** Exit code for a configuration the agent refuses to start with. */
export const EXIT_CONFIG = 2;
/** The deregistrations are bounded at 5 s; this bounds everything else on the way out. */
const FORCE_EXIT_MS = 10_000;

export async function agentCommand(argv: string[]): Promise<void> {
  let cfg: AgentConfig;
  try {
    const flags = parseAgentFlags(argv);
    if (flags.help) {
      console.log(AGENT_USAGE);
      return;
    }
    cfg = loadAgentConfig(flags);
  } catch (err) {
    console.error(`sider agent: ${isSiderError(err) ? err.message : (err as Error).stack}`);
    process.exit(EXIT_CONFIG);
  }
  const log = createLogger({ level: cfg.logLevel, format: cfg.logFormat, node: cfg.nodeName });
  const agent = new Agent({ config: cfg, log });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log('info', 'shutting down', { signal });
    const force = setTimeout(() => process.exit(1), FORCE_EXIT_MS);
    force.unref();
    agent.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log('error', 'shutdown failed', { error: (err as Error).message });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  agent.start();
}
