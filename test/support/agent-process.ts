// Real `sider agent` child processes for integration tests, and the small HTTP target their checks
// probe. Only PIDs started here are ever signalled.

import { spawn } from 'node:child_process';
import type { ChildProcessByStdio } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { REPO_ROOT, SIDER_BIN } from './server-process.ts';
import type { ExitStatus } from './server-process.ts';

const OUTPUT_KEEP = 64 * 1024;

/** One `sider agent -config-file <file> [extra]` process; its output is kept for messages. */
export class AgentProcess {
  readonly child: ChildProcessByStdio<null, Readable, Readable>;
  readonly pid: number;
  readonly exited: Promise<ExitStatus>;
  #output = '';
  #exit: ExitStatus | null = null;

  constructor(configFile: string, extraArgs: string[] = []) {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SIDER_')) env[k] = v;
    this.child = spawn(process.execPath, [SIDER_BIN, 'agent', '-config-file', configFile, ...extraArgs], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env });
    if (this.child.pid === undefined) throw new Error('could not spawn sider agent');
    this.pid = this.child.pid;
    const keep = (s: string): void => {
      this.#output += s;
      if (this.#output.length > OUTPUT_KEEP * 2) this.#output = this.#output.slice(-OUTPUT_KEEP);
    };
    this.child.stdout.setEncoding('utf8');
    this.child.stderr.setEncoding('utf8');
    this.child.stdout.on('data', keep);
    this.child.stderr.on('data', keep);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.#exit = { code, signal };
        resolve(this.#exit);
      });
    });
  }

  get output(): string {
    return this.#output;
  }

  get running(): boolean {
    return this.#exit === null;
  }

  /** Parsed JSON log lines (other lines skipped). */
  logLines(): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const line of this.#output.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // cut by the tail window
      }
    }
    return out;
  }

  /** Waits for the process to exit by itself; kills it (-9) and rejects after `ms`. */
  async waitExit(ms = 20_000): Promise<ExitStatus> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`sider agent (pid ${this.pid}) did not exit within ${ms} ms:\n${this.#output.slice(-4000)}`));
      }, ms);
    });
    try {
      return await Promise.race([this.exited, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends `signal` and waits for the exit (SIGKILL after `ms`). */
  async signal(signal: NodeJS.Signals, ms = 20_000): Promise<ExitStatus> {
    if (this.running) this.child.kill(signal);
    return this.waitExit(ms);
  }

  async kill9(): Promise<ExitStatus> {
    if (this.running) this.child.kill('SIGKILL');
    return this.exited;
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
