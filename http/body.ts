// The public API's request-body reader: every body is JSON whatever its content type (Consul's
// clients and `curl --data` do not always say so), bounded in size, and parsed strictly.

import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { createBrotliDecompress, createUnzip } from 'node:zlib';
import type { Middleware } from 'koa';
import { SiderError } from '../raft/errors.ts';

declare module 'koa' {
  interface Request {
    /** The parsed JSON body, set by `jsonBody` (or by a middleware that verified it first). */
    body?: unknown;
  }
}

export interface JsonBodyOptions {
  /** Largest accepted body in bytes, after decompression; larger is 413. */
  limit: number;
}

/** Methods whose body is read; others pass through with no body. */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);
/** A strict body is an object or an array (RFC 7159 whitespace may precede it). */
const STRICT_START = /^[ \t\n\r]*[[{]/;
/** `"__proto__":` in any spelling JSON allows; only then is the parsed value scanned. */
const PROTO_KEY = /"(?:_|\\u005[Ff])(?:_|\\u005[Ff])(?:p|\\u0070)(?:r|\\u0072)(?:o|\\u006[Ff])(?:t|\\u0074)(?:o|\\u006[Ff])(?:_|\\u005[Ff])(?:_|\\u005[Ff])"\s*:/;
/** Bound on the objects visited when scanning for a `__proto__` key (the body limit bounds it anyway). */
const MAX_SCAN_NODES = 1_000_000;

const decoder = new TextDecoder('utf-8'); // not fatal: bad sequences become U+FFFD; a BOM is dropped

function badBody(message: string, status = 400): SiderError {
  return new SiderError('SIDER_BAD_REQUEST', message, { status });
}

function tooLarge(limit: number): SiderError {
  return badBody(`request body larger than ${limit} bytes`, 413);
}

/** The body stream with its Content-Encoding undone (what the size limit applies to). */
function decoded(req: IncomingMessage): Readable {
  const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
  switch (encoding) {
    case 'identity':
      return req;
    case 'gzip':
    case 'deflate':
      return req.pipe(createUnzip());
    case 'br':
      return req.pipe(createBrotliDecompress());
    default:
      throw badBody(`unsupported request body encoding: Unsupported Content-Encoding: ${encoding}`, 415);
  }
}

/**
 * Reads the whole body, at most `limit` bytes. Rejects with 413 as soon as the declared or received
 * length exceeds it (the rest is not read), 400 when the client goes away mid-body or a compressed
 * body does not decompress.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  // Already read, or the client already left: no 'end' would ever come.
  if (req.readableEnded || req.destroyed) return Promise.reject(badBody('request body aborted by the client'));
  const encoding = req.headers['content-encoding'];
  const declared = req.headers['content-length'];
  if (encoding === undefined && declared !== undefined && Number(declared) > limit) return Promise.reject(tooLarge(limit));
  let stream: Readable;
  try {
    stream = decoded(req);
  } catch (err) {
    return Promise.reject(err);
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    const finish = (err: SiderError | null): void => {
      if (settled) return;
      settled = true;
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      req.off('close', onClose);
      if (err) {
        if (stream !== req) {
          req.unpipe();
          stream.destroy();
        }
        req.pause();
        reject(err);
      } else {
        resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received));
      }
    };
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      if (received > limit) return finish(tooLarge(limit));
      chunks.push(chunk);
    };
    const onEnd = (): void => finish(null);
    const onError = (err: Error): void => {
      finish(stream === req ? badBody('request body aborted by the client') : badBody(`malformed JSON body: cannot decompress: ${err.message}`));
    };
    // The request closing before it was read to its end means the body never arrived whole (a
    // decompressed body may still be flushing after the request ended).
    const onClose = (): void => {
      if (!req.readableEnded) finish(badBody('request body aborted by the client'));
    };
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    req.on('close', onClose);
  });
}

/**
 * The body exactly as sent (no Content-Encoding undone: it is signed or checksummed as sent), at most
 * `limit` bytes; 413 "`what` exceeds `limit` bytes" as soon as the declared or received length is larger.
 */
export async function readRawBody(req: IncomingMessage, limit: number, what: string): Promise<Buffer> {
  const tooLong = (): SiderError => new SiderError('SIDER_BAD_REQUEST', `${what} exceeds ${limit} bytes`, { status: 413 });
  if (Number(req.headers['content-length'] ?? '0') > limit) throw tooLong();
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > limit) throw tooLong();
    chunks.push(c);
  }
  return Buffer.concat(chunks, n);
}

/** Throws if an object anywhere in `value` has an own `__proto__` key (a prototype-pollution vector). */
function refuseProtoKeys(value: unknown): void {
  let level: unknown[] = [value];
  let visited = 0;
  while (level.length > 0) {
    const next: unknown[] = [];
    for (const node of level) {
      if (typeof node !== 'object' || node === null) continue;
      if (++visited > MAX_SCAN_NODES) return;
      if (Object.hasOwn(node, '__proto__')) throw badBody('malformed JSON body: Object contains forbidden prototype property');
      for (const v of Object.values(node)) if (typeof v === 'object' && v !== null) next.push(v);
    }
    level = next;
  }
}

/**
 * Parses body text strictly: empty is `{}`, otherwise it must be a JSON object or array. Throws
 * SIDER_BAD_REQUEST "malformed JSON body: …" naming the problem.
 */
export function parseJsonBody(text: string): unknown {
  if (text === '') return {};
  if (!STRICT_START.test(text)) throw badBody('malformed JSON body: invalid JSON, only supports object and array');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw badBody(`malformed JSON body: ${(err as Error).message}`);
  }
  if (PROTO_KEY.test(text)) refuseProtoKeys(value);
  return value;
}

/** The whole body read (readBody) and parsed (parseJsonBody): what jsonBody gives a route. */
export async function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const raw = await readBody(req, limit);
  return parseJsonBody(raw.length === 0 ? '' : decoder.decode(raw));
}

/**
 * Koa middleware: sets `ctx.request.body` to the parsed JSON body of POST, PUT and PATCH requests,
 * unless something earlier already set it (the signed membership endpoints parse their own).
 */
export function jsonBody(opts: JsonBodyOptions): Middleware {
  const { limit } = opts;
  return async (ctx, next) => {
    if (!BODY_METHODS.has(ctx.method) || ctx.request.body !== undefined) return next();
    ctx.request.body = await readJsonBody(ctx.req, limit);
    return next();
  };
}
