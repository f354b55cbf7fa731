// The CLI's HTTP client: one server address (-http-addr / SIDER_HTTP_ADDR), the token from
// SIDER_HTTP_TOKEN as X-Consul-Token, requests signed with SIDER_CLUSTER_KEY when one is set, and
// every failure turned into one readable line (CliError).

import { Agent, request } from 'undici';
import { signRequest } from '../src/cluster-auth.ts';

export const DEFAULT_HTTP_ADDR = '127.0.0.1:8500';

/** A failure to report in one line; `exitCode` 1 = the request failed, 2 = bad usage. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

export interface ClientOptions {
  /** host:port (an http:// prefix is accepted). */
  addr: string;
  token?: string;
  clusterKey?: string;
  timeoutMs?: number;
}

export interface Reply {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

const NETWORK_CODES: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ENOTFOUND: 'host not found',
  EHOSTUNREACH: 'host unreachable',
  ETIMEDOUT: 'timed out',
  UND_ERR_CONNECT_TIMEOUT: 'connect timed out',
  UND_ERR_SOCKET: 'connection closed by the server',
};

function networkReason(err: unknown): string {
  let e: unknown = err;
  for (let depth = 0; e && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && NETWORK_CODES[code]) return NETWORK_CODES[code];
    if ((e as { name?: unknown }).name === 'TimeoutError') return 'timed out';
    e = (e as { cause?: unknown }).cause ?? (Array.isArray((e as { errors?: unknown }).errors) ? (e as { errors: unknown[] }).errors[0] : undefined);
  }
  return err instanceof Error ? err.message : String(err);
}

export class SiderClient {
  readonly addr: string;
  readonly #token: string;
  readonly #key: string;
  readonly #timeoutMs: number;
  readonly #agent = new Agent({ connections: 4, keepAliveTimeout: 1_000, headersTimeout: 0, bodyTimeout: 0 });

  constructor(opts: ClientOptions) {
    this.addr = opts.addr.replace(/^https?:\/\//, '').replace(/\/+$/, '');
    if (!/^[^\s/]+:\d{1,5}$/.test(this.addr)) throw new CliError(`-http-addr: expected host:port, got ${JSON.stringify(opts.addr)}`, 2);
    this.#token = opts.token ?? '';
    this.#key = opts.clusterKey ?? '';
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
  }

  /** Sends the request; network failures become a CliError, HTTP statuses are returned. */
  async send(method: 'GET' | 'PUT' | 'POST', path: string, body?: Uint8Array, opts: { sign?: boolean; timeoutMs?: number } = {}): Promise<Reply> {
    const payload = body ?? new Uint8Array(0);
    const headers: Record<string, string> = {};
    if (this.#token) headers['x-consul-token'] = this.#token;
    if (opts.sign && this.#key) Object.assign(headers, signRequest(this.#key, method, path, payload));
    if (body) headers['content-type'] = path === '/v1/snapshot' ? 'application/octet-stream' : 'application/json';
    try {
      const res = await request(`http://${this.addr}${path}`, {
        method,
        headers,
        body: body ? Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength) : null,
        dispatcher: this.#agent,
        signal: AbortSignal.timeout(opts.timeoutMs ?? this.#timeoutMs),
      });
      const buf = Buffer.from(await res.body.arrayBuffer());
      const flat: Record<string, string> = {};
      for (const [k, v] of Object.entries(res.headers)) flat[k] = Array.isArray(v) ? v.join(', ') : String(v);
      return { status: res.statusCode, headers: flat, body: buf };
    } catch (err) {
      throw new CliError(`cannot reach sider at ${this.addr}: ${networkReason(err)}`);
    }
  }

  /** Like send, but a non-2xx answer is a CliError carrying the server's message. */
  async ok(method: 'GET' | 'PUT' | 'POST', path: string, body?: Uint8Array, opts: { sign?: boolean; timeoutMs?: number } = {}): Promise<Reply> {
    const r = await this.send(method, path, body, opts);
    if (r.status < 200 || r.status > 299) {
      const text = r.body.toString('utf8').trim().split('\n')[0] ?? '';
      throw new CliError(`${method} ${path.split('?')[0]}: HTTP ${r.status}${text ? `: ${text.slice(0, 300)}` : ''}`);
    }
    return r;
  }

  async json(path: string): Promise<unknown> {
    const r = await this.ok('GET', path);
    try {
      return JSON.parse(r.body.toString('utf8')) as unknown;
    } catch {
      throw new CliError(`GET ${path.split('?')[0]}: the server's answer is not JSON`);
    }
  }

  close(): Promise<void> {
    return this.#agent.close();
  }
}
