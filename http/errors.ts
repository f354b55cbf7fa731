// The one place HTTP errors are mapped (CONVENTIONS "Errors"): a SiderError becomes its status with
// its message as a plain-text body; anything else is logged and answered 500 "internal error".

import { STATUS_CODES } from 'node:http';
import type { ServerResponse } from 'node:http';
import type { Middleware } from 'koa';
import type { ParkedReply } from './blocking.ts';
import { isSiderError } from '../raft/errors.ts';
import { LogThrottle, leftOut } from '../src/log.ts';

export type HttpLogLevel = 'debug' | 'info' | 'warn' | 'error';
export type HttpLogger = (level: HttpLogLevel, msg: string, fields?: Record<string, unknown>) => void;

/** Errors raised by Koa and its libraries for a client's mistake (http-errors with expose). */
function clientError(err: unknown): { status: number; message: string } | undefined {
  if (err instanceof URIError) return { status: 400, message: 'malformed percent-encoding in the URL' };
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { status?: unknown; expose?: unknown; message?: unknown };
  if (e.expose === true && typeof e.status === 'number' && e.status >= 400 && e.status < 500 && typeof e.message === 'string') {
    return { status: e.status, message: e.message };
  }
  return undefined;
}

/** A plain-text answer, newline-terminated (how every error and short status message is sent). */
export function sendText(ctx: Parameters<Middleware>[0], status: number, message: string): void {
  ctx.status = status;
  ctx.type = 'text/plain; charset=utf-8';
  ctx.body = message.endsWith('\n') ? message : `${message}\n`;
}

function send(ctx: Parameters<Middleware>[0], status: number, message: string): void {
  // Headers a handler set before failing (X-Consul-Index, Content-Type) do not describe this body.
  for (const name of Object.keys(ctx.response.headers)) ctx.remove(name);
  sendText(ctx, status, message);
}

/**
 * Mount first. Unknown routes fall through to Koa's 404 and wrong methods get the router's 405;
 * both get a plain-text body here too. Stack traces never reach the client.
 */
export function errorMiddleware(log: HttpLogger): Middleware {
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.body === undefined && ctx.status === 404) send(ctx, 404, `no such endpoint: ${ctx.method} ${ctx.path}`);
      if (ctx.body === undefined && ctx.status === 405) {
        const allow = ctx.response.get('Allow');
        send(ctx, 405, `method ${ctx.method} not allowed on ${ctx.path} (allowed: ${allow})`);
        ctx.set('Allow', allow);
      }
    } catch (err) {
      const { status, message } = errorReply(err, log, ctx.method, ctx.path);
      send(ctx, status, message);
    }
  };
}

/** Failed requests (5xx) are logged once per 10 s per code, method and path, 64 lines per 10 s at most, per logger. */
const FAILURE_LOG_INTERVAL_MS = 10_000;
const failureLogs = new WeakMap<HttpLogger, LogThrottle>();

function failureLog(log: HttpLogger): LogThrottle {
  let th = failureLogs.get(log);
  if (!th) {
    th = new LogThrottle(FAILURE_LOG_INTERVAL_MS);
    failureLogs.set(log, th);
  }
  return th;
}

/**
 * The status and plain-text message (newline-terminated) an error is answered with, logged as the
 * middleware logs it. Also used for answers written outside Koa (parked blocking queries).
 */
export function errorReply(err: unknown, log: HttpLogger, method: string, path: string): { status: number; message: string } {
  const reply = (status: number, message: string): { status: number; message: string } => ({ status, message: message.endsWith('\n') ? message : `${message}\n` });
  if (isSiderError(err)) {
    if (err.status >= 500) {
      // Throttled: without a leader (an election, a lost quorum) or while stopping, every request
      // fails alike, thousands a second under load.
      // The path is cut in the key: 1,024 remembered keys must stay small whatever the URLs.
      const admitted = failureLog(log).admit(`${err.code}\n${method}\n${path.slice(0, 256)}`);
      if (admitted !== null) {
        log('warn', 'http request failed', {
          method,
          path,
          code: err.code,
          status: err.status,
          error: err.message,
          ...leftOut(admitted),
        });
      }
    }
    return reply(err.status, err.message);
  }
  const client = clientError(err);
  if (client) return reply(client.status, client.message);
  log('error', 'http handler error', {
    method,
    path,
    error: err instanceof Error ? err.message : String(err),
    stack: err instanceof Error ? err.stack : undefined,
  });
  return reply(500, 'internal error');
}

/** A plain-text answer written outside Koa, with the headers Koa gives a string body. */
export function textReply(status: number, message: string): ParkedReply {
  const body = Buffer.from(message);
  return { status, headers: ['Content-Type', 'text/plain; charset=utf-8', 'Content-Length', String(body.length)], body };
}

/** errorReply as a plain-text answer written outside Koa (the error middleware's reply, byte for byte). */
export function errorTextReply(err: unknown, log: HttpLogger, method: string, path: string): ParkedReply {
  const { status, message } = errorReply(err, log, method, path);
  return textReply(status, message);
}

/** Writes a whole answer outside Koa as Koa's respond() would: only an end once the client is gone. */
export function sendReply(res: ServerResponse, reply: ParkedReply): void {
  if (res.writableEnded || (res.socket !== null && !res.socket.writable)) {
    res.end();
    return;
  }
  res.writeHead(reply.status, STATUS_CODES[reply.status] ?? 'unknown', reply.headers as string[]);
  res.end(reply.body);
}
