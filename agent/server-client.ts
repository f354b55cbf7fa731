// The agent's HTTP client for Sider servers: a list of servers, sticky to the last one that answered,
// failing over to the next on a connection error, a timeout, a 5xx or a 429.

import { Agent as UndiciAgent, request } from 'undici';
import { SiderError } from '../raft/errors.ts';
import type { Logger } from '../src/log.ts';

export interface ServerReply {
  status: number;
  text: string;
  /** The server (host:port) that answered. */
  server: string;
}

export interface ServerRequest {
  /** JSON-encoded when given. */
  body?: unknown;
  /** X-Sider-Request-Id: the same on every attempt, so a write retried elsewhere applies once. */
  requestId?: string;
  /** Ends every attempt (e.g. the agent stopping, or a shutdown deadline). */
  signal?: AbortSignal;
}

export interface ServerClientOptions {
  servers: string[];
  /** Sent as X-Consul-Token when not ''. */
  token?: string;
  log: Logger;
  /** Bound on one attempt against one server. Default 10 s (a write waits for a Raft commit). */
  attemptTimeoutMs?: number;
}

/** Answers that mean "this server cannot serve now": try another. */
function retryable(status: number): boolean {
  return status >= 500 || status === 429;
}

export class ServerClient {
  readonly #servers: string[];
  readonly #token: string;
  readonly #log: Logger;
  readonly #attemptTimeoutMs: number;
  readonly #dispatcher: UndiciAgent;
  #current = 0;

  constructor(opts: ServerClientOptions) {
    if (opts.servers.length === 0) throw new SiderError('SIDER_CONFIG', 'no servers to talk to');
    this.#servers = [...opts.servers];
    this.#token = opts.token ?? '';
    this.#log = opts.log;
    this.#attemptTimeoutMs = opts.attemptTimeoutMs ?? 10_000;
    // Few connections per server: the agent sends a handful of requests at a time.
    this.#dispatcher = new UndiciAgent({ connections: 4, keepAliveTimeout: 10_000, connect: { timeout: 3_000 } });
  }

  /** The server the next request goes to first. */
  get current(): string {
    return this.#servers[this.#current]!;
  }

  /**
   * Sends the request to the current server, then to each other server in list order while the
   * answer is retryable. Returns the first answer that is not (any 2xx, 3xx or 4xx). Throws a
   * SIDER_NO_LEADER error naming every server's failure when none could serve, or the abort
   * reason when `signal` ends first.
   */
  async request(method: 'GET' | 'PUT', path: string, opts: ServerRequest = {}): Promise<ServerReply> {
    const headers: Record<string, string> = {};
    let body: string | undefined;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] = 'application/json';
    }
    if (opts.requestId !== undefined) headers['x-sider-request-id'] = opts.requestId;
    if (this.#token !== '') headers['x-consul-token'] = this.#token;
    const failures: string[] = [];
    const start = this.#current;
    for (let k = 0; k < this.#servers.length; k++) {
      opts.signal?.throwIfAborted();
      const i = (start + k) % this.#servers.length;
      const server = this.#servers[i]!;
      const timeout = AbortSignal.timeout(this.#attemptTimeoutMs);
      const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
      let why: string;
      try {
        const res = await request(`http://${server}${path}`, { method, headers, body, signal, dispatcher: this.#dispatcher });
        const text = await res.body.text();
        if (!retryable(res.statusCode)) {
          this.#use(i, failures);
          return { status: res.statusCode, text, server };
        }
        why = `HTTP ${res.statusCode} ${text.trim().slice(0, 200)}`;
      } catch (err) {
        opts.signal?.throwIfAborted();
        why = (err as Error).message || (err as Error).name;
      }
      failures.push(`${server}: ${why}`);
      this.#log('debug', 'server could not serve the request', { server, method, path, error: why });
    }
    throw new SiderError('SIDER_NO_LEADER', `no server could serve ${method} ${path}: ${failures.join('; ')}`);
  }

  #use(i: number, failures: string[]): void {
    if (i === this.#current) return;
    const from = this.#servers[this.#current];
    this.#current = i;
    this.#log('info', 'using another server', { server: this.#servers[i], previous: from, failures });
  }

  close(): Promise<void> {
    return this.#dispatcher.close();
  }
}
