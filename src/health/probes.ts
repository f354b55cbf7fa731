// One probe of one check (DESIGN §5): HTTP, TCP, gRPC health and script checks, each turned into a
// ProbeResult with Consul's status rules and output shapes. runProbe never throws.

import { spawn } from 'node:child_process';
import { STATUS_CODES } from 'node:http';
import { connect as netConnect } from 'node:net';
import { Client as GrpcClient, credentials as grpcCredentials, Metadata, status as grpcStatus } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import { Agent, interceptors, request } from 'undici';
import type { Dispatcher } from 'undici';
import type { CheckStatus } from '../registry/model.ts';
import { MAX_CHECK_OUTPUT } from './types.ts';
import type { ProbeDefinition, ProbeResult } from './types.ts';

export interface ProbeOptions {
  /** Whole-probe deadline: connect, request, body and (cmd) the process's life. */
  timeoutMs: number;
  /** cmd probes run only when true (DESIGN §5: a registration API is not a remote-command API). */
  allowScripts?: boolean;
  /** Aborting ends the probe at once (critical, "probe cancelled"). */
  signal?: AbortSignal;
}

/** Redirects followed by an HTTP probe, as Go's default client (and so Consul) does. */
export const MAX_PROBE_REDIRECTS = 10;

const TRUNCATED_MARK = '\n... (output truncated)';
const USER_AGENT = 'Sider Health Check';
/** How long a killed script may take to be reaped before its probe answers anyway. */
const KILL_GRACE_MS = 2000;

export async function runProbe(def: ProbeDefinition, opts: ProbeOptions): Promise<ProbeResult> {
  const timeoutMs = opts.timeoutMs;
  if (!(typeof timeoutMs === 'number' && Number.isFinite(timeoutMs) && timeoutMs > 0)) {
    return critical(`invalid probe timeout: ${String(timeoutMs)}`);
  }
  if (opts.signal?.aborted) return critical('probe cancelled');
  try {
    switch (def.type) {
      case 'http':
        return await probeHttp(def, timeoutMs, opts.signal);
      case 'tcp':
        return await probeTcp(def, timeoutMs, opts.signal);
      case 'grpc':
        return await probeGrpc(def, timeoutMs, opts.signal);
      case 'cmd':
        if (opts.allowScripts !== true) return critical('script checks are disabled');
        return await probeCmd(def, timeoutMs, opts.signal);
      default:
        return critical(`unknown probe type: ${String((def as { type: unknown }).type)}`);
    }
  } catch (err) {
    return critical(`probe failed: ${errorText(err)}`);
  }
}

/**
 * Cuts `text` to at most MAX_CHECK_OUTPUT bytes of UTF-8 without splitting a character, marking the
 * cut. `forceMark` marks it even when it fits (the source was already cut, e.g. a body read in part).
 */
export function capOutput(text: string, forceMark = false): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= MAX_CHECK_OUTPUT && !forceMark) return text;
  const room = MAX_CHECK_OUTPUT - Buffer.byteLength(TRUNCATED_MARK);
  if (bytes.length <= room) return text + TRUNCATED_MARK;
  let cut = room;
  // Back off over UTF-8 continuation bytes (10xxxxxx) to the start of the cut character.
  while (cut > 0 && ((bytes[cut] ?? 0) & 0xc0) === 0x80) cut--;
  return bytes.subarray(0, cut).toString('utf8') + TRUNCATED_MARK;
}

function critical(output: string): ProbeResult {
  return { status: 'critical', output: capOutput(output) };
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const msg = err.message || err.name;
    return typeof code === 'string' && !msg.includes(code) ? `${code}: ${msg}` : msg;
  }
  return String(err);
}

/** A deadline merged with the caller's signal; `dispose` must be called to free the timer. */
interface Deadline {
  signal: AbortSignal;
  timedOut: () => boolean;
  dispose: () => void;
}

function deadline(timeoutMs: number, outer: AbortSignal | undefined): Deadline {
  const ctl = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ctl.abort(new Error(`timed out after ${timeoutMs} ms`));
  }, timeoutMs);
  const onOuter = (): void => ctl.abort(new Error('probe cancelled'));
  outer?.addEventListener('abort', onOuter, { once: true });
  return {
    signal: ctl.signal,
    timedOut: () => timedOut,
    dispose: () => {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onOuter);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// HTTP

// Keep-alive off (pipelining 0), as Consul's checks do: a probe every interval does not hold an idle
// socket per target, and never races a server closing an idle connection (a false critical).
const dispatchers = new Map<string, Dispatcher>();

function httpDispatcher(skipVerify: boolean, followRedirects: boolean): Dispatcher {
  const key = `${skipVerify}/${followRedirects}`;
  let d = dispatchers.get(key);
  if (!d) {
    const agent = new Agent(skipVerify ? { pipelining: 0, connect: { rejectUnauthorized: false } } : { pipelining: 0 });
    d = followRedirects ? agent.compose(interceptors.redirect({ maxRedirections: MAX_PROBE_REDIRECTS })) : agent;
    dispatchers.set(key, d);
  }
  return d;
}

async function probeHttp(def: ProbeDefinition, timeoutMs: number, outer: AbortSignal | undefined): Promise<ProbeResult> {
  const method = (def.method ?? 'GET').toUpperCase() || 'GET';
  const target = def.http ?? '';
  const prefix = `HTTP ${method} ${target}`;
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    return critical(`${prefix}: invalid URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return critical(`${prefix}: unsupported scheme ${url.protocol}`);

  const headers: Record<string, string | string[]> = { 'user-agent': USER_AGENT, accept: 'text/plain, text/*, */*' };
  for (const [name, values] of Object.entries(def.header ?? {})) {
    const key = name.toLowerCase();
    if (key === 'content-length' || key === 'transfer-encoding' || key === 'connection') continue;
    headers[key] = values;
  }
  const dl = deadline(timeoutMs, outer);
  try {
    const res = await request(url, {
      method: method as Dispatcher.HttpMethod,
      headers,
      body: def.body === undefined || def.body === '' ? null : def.body,
      signal: dl.signal,
      dispatcher: httpDispatcher(def.tlsSkipVerify === true, def.disableRedirects !== true),
    });
    // Read at most MAX_CHECK_OUTPUT bytes of the body, then drop the rest of it (and the socket).
    const chunks: Buffer[] = [];
    let size = 0;
    let cut = false;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      const room = MAX_CHECK_OUTPUT - size;
      if (chunk.length > room) {
        chunks.push(chunk.subarray(0, room));
        size += room;
        cut = true;
        break;
      }
      chunks.push(chunk);
      size += chunk.length;
    }
    if (cut) res.body.destroy();
    // `stream: true` holds back a character split by the cut instead of inventing U+FFFD for it.
    const bodyText = new TextDecoder('utf-8').decode(Buffer.concat(chunks, size), { stream: true });
    const code = res.statusCode;
    const reason = STATUS_CODES[code];
    const output = capOutput(`${prefix}: ${code}${reason ? ` ${reason}` : ''} Output: ${bodyText}`, cut);
    const status: CheckStatus = code >= 200 && code <= 299 ? 'passing' : code === 429 ? 'warning' : 'critical';
    return { status, output };
  } catch (err) {
    if (dl.timedOut()) return critical(`${prefix}: timed out after ${timeoutMs} ms`);
    if (outer?.aborted) return critical(`${prefix}: probe cancelled`);
    return critical(`${prefix}: ${errorText(err)}`);
  } finally {
    dl.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// TCP

/** Splits `host:port` or `[v6]:port`; undefined when malformed. */
export function parseHostPort(addr: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(addr);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  return { host: (m[1] ?? m[2])!, port };
}

function probeTcp(def: ProbeDefinition, timeoutMs: number, outer: AbortSignal | undefined): Promise<ProbeResult> {
  const addr = def.tcp ?? '';
  const prefix = `TCP connect ${addr}`;
  const hp = parseHostPort(addr);
  if (!hp) return Promise.resolve(critical(`${prefix}: invalid address, want host:port`));
  return new Promise((resolve) => {
    const dl = deadline(timeoutMs, outer);
    const sock = netConnect({ host: hp.host, port: hp.port });
    const done = (r: ProbeResult): void => {
      dl.dispose();
      dl.signal.removeEventListener('abort', onAbort);
      sock.destroy();
      resolve(r);
    };
    const onAbort = (): void =>
      done(critical(dl.timedOut() ? `${prefix}: timed out after ${timeoutMs} ms` : `${prefix}: probe cancelled`));
    dl.signal.addEventListener('abort', onAbort, { once: true });
    sock.once('connect', () => done({ status: 'passing', output: `${prefix}: Success` }));
    sock.once('error', (err) => done(critical(`${prefix}: ${errorText(err)}`)));
  });
}

// ---------------------------------------------------------------------------------------------
// gRPC (grpc.health.v1.Health/Check, messages encoded by hand)

const HEALTH_CHECK_PATH = '/grpc.health.v1.Health/Check';
const SERVING_STATUS = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'] as const;

/** HealthCheckRequest { string service = 1; } */
export function encodeHealthCheckRequest(service: string): Buffer {
  if (service === '') return Buffer.alloc(0);
  const body = Buffer.from(service, 'utf8');
  return Buffer.concat([Buffer.from([0x0a]), encodeVarint(body.length), body]);
}

/** HealthCheckResponse { ServingStatus status = 1; }; unknown fields skipped; throws on malformed bytes. */
export function decodeHealthCheckResponse(buf: Buffer): { status: number } {
  let pos = 0;
  let status = 0;
  const varint = (): number => {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= buf.length) throw new Error('truncated varint');
      const b = buf[pos++]!;
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return result;
      mul *= 128;
    }
    throw new Error('varint too long');
  };
  while (pos < buf.length) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (field === 0) throw new Error('field number 0');
    if (wire === 0) {
      const v = varint();
      if (field === 1) status = v;
    } else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) pos += varint();
    else throw new Error(`unsupported wire type ${wire}`);
    if (pos > buf.length) throw new Error('truncated field');
  }
  return { status };
}

function encodeVarint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}

function probeGrpc(def: ProbeDefinition, timeoutMs: number, outer: AbortSignal | undefined): Promise<ProbeResult> {
  const target = def.grpc ?? '';
  const prefix = `gRPC check ${target}`;
  const slash = target.indexOf('/');
  const address = slash < 0 ? target : target.slice(0, slash);
  const service = slash < 0 ? '' : target.slice(slash + 1);
  if (!parseHostPort(address)) return Promise.resolve(critical(`${prefix}: invalid address, want host:port[/service]`));

  const creds = def.grpcUseTls
    ? grpcCredentials.createSsl(null, null, null, def.tlsSkipVerify ? { rejectUnauthorized: false, checkServerIdentity: () => undefined } : {})
    : grpcCredentials.createInsecure();
  // A channel per probe, closed when the probe ends; a local subchannel pool so closing the channel
  // closes its connection (the global pool would keep it for a later channel).
  const client = new GrpcClient(address, creds, {
    'grpc.use_local_subchannel_pool': 1,
    'grpc.enable_channelz': 0,
    'grpc.enable_retries': 0,
    'grpc.max_receive_message_length': 64 * 1024,
  });
  return new Promise((resolve) => {
    let settled = false;
    const finish = (r: ProbeResult): void => {
      if (settled) return;
      settled = true;
      outer?.removeEventListener('abort', onAbort);
      client.close();
      resolve(r);
    };
    const call = client.makeUnaryRequest<Buffer, { status: number }>(
      HEALTH_CHECK_PATH,
      (arg) => arg,
      decodeHealthCheckResponse,
      encodeHealthCheckRequest(service),
      new Metadata(),
      { deadline: Date.now() + timeoutMs },
      (err: ServiceError | null, res?: { status: number }) => {
        if (err) {
          if (err.code === grpcStatus.DEADLINE_EXCEEDED) finish(critical(`${prefix}: failed: timed out after ${timeoutMs} ms`));
          else if (err.code === grpcStatus.CANCELLED && outer?.aborted) finish(critical(`${prefix}: probe cancelled`));
          else finish(critical(`${prefix}: failed: ${err.message}`));
          return;
        }
        const code = res?.status ?? 0;
        if (code === 1) finish({ status: 'passing', output: capOutput(`${prefix}: success`) });
        else finish(critical(`${prefix}: serving status: ${SERVING_STATUS[code] ?? `status ${code}`}`));
      },
    );
    const onAbort = (): void => {
      call.cancel();
      finish(critical(`${prefix}: probe cancelled`));
    };
    outer?.addEventListener('abort', onAbort, { once: true });
  });
}

// ---------------------------------------------------------------------------------------------
// cmd (script) checks: argv without a shell, in their own process group, killed at the deadline.

/**
 * The server's environment without Sider's own variables: SIDER_CLUSTER_KEY is the cluster's secret,
 * and a script registered over the API must not be able to read it.
 */
function scriptEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.toUpperCase().startsWith('SIDER_')) env[k] = v;
  return env;
}

function probeCmd(def: ProbeDefinition, timeoutMs: number, outer: AbortSignal | undefined): Promise<ProbeResult> {
  const args = def.args ?? [];
  const file = args[0];
  if (file === undefined || file === '') return Promise.resolve(critical('script check has no command (args is empty)'));
  return new Promise((resolve) => {
    const dl = deadline(timeoutMs, outer);
    // One buffer for stdout and stderr in arrival order; past the cap the bytes are read and dropped
    // so the child never blocks on a full pipe.
    const chunks: Buffer[] = [];
    let size = 0;
    let cut = false;
    const collect = (chunk: Buffer): void => {
      const room = MAX_CHECK_OUTPUT - size;
      if (room <= 0) {
        cut = true;
        return;
      }
      if (chunk.length > room) cut = true;
      const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
      chunks.push(part);
      size += part.length;
    };
    const captured = (): string => new TextDecoder('utf-8').decode(Buffer.concat(chunks, size), { stream: true });

    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(file, args.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true, windowsHide: true, env: scriptEnv() });
    } catch (err) {
      dl.dispose();
      resolve(critical(`script check ${file}: ${errorText(err)}`));
      return;
    }
    const killGroup = (): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // The group is already gone.
      }
    };
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let settled = false;
    const finish = (r: ProbeResult): void => {
      if (settled) return;
      settled = true;
      dl.dispose();
      dl.signal.removeEventListener('abort', onAbort);
      child.stdout?.destroy();
      child.stderr?.destroy();
      resolve(r);
    };
    const fromExit = (): ProbeResult => {
      const out = captured();
      const e = exit!;
      if (e.code === 0) return { status: 'passing', output: capOutput(out, cut) };
      if (e.code === 1) return { status: 'warning', output: capOutput(out, cut) };
      const why = e.code === null ? `killed by signal ${e.signal ?? 'unknown'}` : `exit status ${e.code}`;
      return { status: 'critical', output: capOutput(out === '' ? why : out, cut) };
    };
    let killed: ProbeResult | undefined;
    const onAbort = (): void => {
      killGroup();
      // The exit status, if the process had already exited, stands; only its output is cut short.
      if (exit) return finish(fromExit());
      killed = dl.timedOut()
        ? critical(`Timed out (${timeoutMs} ms) running check${size > 0 ? `\n${captured()}` : ''}`)
        : critical('script check cancelled');
      // Answer once the killed process is reaped, so a probe never outlives its slot; a process that
      // cannot be reaped (uninterruptible sleep) does not hold the probe beyond a short grace.
      setTimeout(() => finish(killed!), KILL_GRACE_MS).unref();
    };
    dl.signal.addEventListener('abort', onAbort, { once: true });
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    child.once('error', (err) => {
      killGroup();
      finish(critical(`script check ${file}: ${errorText(err)}`));
    });
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      if (killed) finish(killed);
    });
    // 'close' comes once the process exited and its pipes closed; a grandchild that keeps the pipes
    // open is cut off (and its group killed) at the deadline.
    child.once('close', () => {
      if (exit) finish(fromExit());
    });
  });
}
