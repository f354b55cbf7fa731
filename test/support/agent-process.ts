// Real `sider agent` child processes for integration tests, and the small HTTP target their checks
// probe. Only PIDs started here are ever signalled.

import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { SiderChild } from './server-process.ts';
import type { ExitStatus } from './server-process.ts';

/** One `sider agent -config-file <file> [extra]` process; its output is kept for messages. */
export class AgentProcess extends SiderChild {
  constructor(configFile: string, extraArgs: string[] = []) {
    super(['agent', '-config-file', configFile, ...extraArgs], 'sider agent');
  }

  override waitExit(ms = 20_000): Promise<ExitStatus> {
    return super.waitExit(ms);
  }

  /** Sends `signal` and waits for the exit (SIGKILL after `ms`). */
  async signal(signal: NodeJS.Signals, ms = 20_000): Promise<ExitStatus> {
    if (this.running) this.child.kill(signal);
    return this.waitExit(ms);
  }
}

/** Writes `config` as JSON into `dir/name` and returns the path. */
export async function writeAgentConfig(dir: string, name: string, config: unknown): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, JSON.stringify(config, null, 2));
  return file;
}

/** An HTTP health endpoint on loopback whose answer the test flips: 200 when healthy, else 503. */
export class HealthTarget {
  healthy = true;
  /** Requests answered so far. */
  hits = 0;
  readonly #server: Server;
  port = 0;

  private constructor() {
    this.#server = createServer((req, res) => {
      this.hits++;
      res.statusCode = this.healthy ? 200 : 503;
      res.end(this.healthy ? 'ok' : 'failing on purpose');
    });
  }

  static async start(): Promise<HealthTarget> {
    const t = new HealthTarget();
    await new Promise<void>((resolve, reject) => {
      t.#server.once('error', reject);
      t.#server.listen(0, '127.0.0.1', () => resolve());
    });
    const addr = t.#server.address();
    t.port = typeof addr === 'object' && addr ? addr.port : 0;
    return t;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/health`;
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
