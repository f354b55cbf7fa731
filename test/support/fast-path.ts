// Fast paths (answers written before Koa) against the Koa routes they stand in for: raw requests
// and answers as bytes, and apps assembled as `sider server` assembles its own (request metrics,
// write logging) over an in-memory registry, counting what went through Koa.

import { connect } from 'node:net';
import type Koa from 'koa';
import { createHttpApp } from '../../http/app.ts';
import type { HttpAppOptions } from '../../http/app.ts';
import { currentRequest, instrumentHttpServer, observability } from '../../http/metrics.ts';
import { ServerMetrics } from '../../src/metrics.ts';
import { observeWrites } from '../../src/observe.ts';
import { responseFrame } from './http-frame.ts';
import { LocalRegistry, listenForTest } from './local-registry.ts';

export interface RawReply {
  /** Status line and every header but Date, in the order sent. */
  head: string[];
  body: string;
}

/**
 * One request on its own connection, as bytes, and the answer as bytes: status line and headers
 * in wire order (Date left out), and the Content-Length body.
 */
export function rawRequest(port: number, request: string, timeoutMs = 5_000): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let text = '';
    const timer = setTimeout(() => done(new Error(`no whole answer within ${timeoutMs} ms: ${JSON.stringify(text)}`)), timeoutMs);
    let settled = false;
    function done(err: Error | null, reply?: RawReply): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(reply!);
    }
    const parse = (): RawReply | null => {
      // An interim answer (100 Continue) before the real one: a head without a body.
      for (let end = text.indexOf('\r\n\r\n'); end >= 0 && /^HTTP\/1\.1 1\d\d /.test(text); end = text.indexOf('\r\n\r\n')) text = text.slice(end + 4);
      const f = responseFrame(text);
      if (!f) return null;
      const lines = f.head.split('\r\n');
      if (Number.isNaN(f.end)) throw new Error(`no Content-Length in ${JSON.stringify(lines)}`);
      return { head: lines.filter((l) => !/^date:/i.test(l)), body: Buffer.from(text.slice(f.bodyStart, f.end), 'latin1').toString('utf8') };
    };
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      try {
        const r = parse();
        if (r) done(null, r);
      } catch (err) {
        done(err as Error);
      }
    });
    socket.on('error', (err) => done(err));
    socket.on('close', () => done(new Error(`connection closed before a whole answer: ${JSON.stringify(text)}`)));
    socket.write(Buffer.from(request, 'latin1'));
  });
}

export interface Side {
  reg: LocalRegistry;
  metrics: ServerMetrics;
  port: number;
  logs: { level: string; msg: string; fields: Record<string, unknown> | undefined }[];
  /** Requests Koa's middleware saw. */
  koaSeen: number;
}

/** createHttpApp over an in-memory registry, with the request metrics and write logging of `sider server`. */
export async function side(tt: Parameters<typeof listenForTest>[0], app: Partial<HttpAppOptions> = {}, logRequests = false): Promise<Side> {
  const reg = new LocalRegistry();
  const metrics = new ServerMetrics({ nodeId: 'node-1', reader: reg.reader, defaultMetrics: false });
  const logs: Side['logs'] = [];
  const log = (level: string, msg: string, fields?: Record<string, unknown>): void => {
    logs.push({ level, msg, fields });
  };
  const observed = observeWrites(reg, { metrics, log, who: () => currentRequest()?.remote });
  const koa: Koa = createHttpApp(observed, { log, ...app });
  const s = { reg, metrics, logs, koaSeen: 0, port: 0 };
  const trackWrites = app.trackWrites ?? true;
  koa.middleware.unshift(observability({ metrics, readiness: { state: () => ({ ready: true, reason: '' }) }, log, logRequests, trackWrites }), async (_ctx, next) => {
    s.koaSeen++;
    await next();
  });
  const { server, port } = await listenForTest(tt, koa);
  instrumentHttpServer(server, metrics, logRequests ? { logRequests: log } : {});
  s.port = port;
  return s;
}

/** Request counts and latency observations per route and status, as the metrics hold them. */
export async function httpCounts(m: ServerMetrics): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of (await m.httpRequests.get()).values) out[`requests ${v.labels.path} ${v.labels.status}`] = v.value;
  for (const v of (await m.httpDuration.get()).values) {
    if (v.metricName === 'sider_http_request_duration_seconds_count') out[`observed ${v.labels.path}`] = v.value;
  }
  out.registrations = (await m.registrations.get()).values[0]?.value ?? 0;
  return out;
}


/** The `http request` lines a side logged (debug level), their time left out. */
export function requestLines(s: Side): unknown[] {
  return s.logs.filter((l) => l.msg === 'http request').map((l) => ({ ...l, fields: { ...l.fields, ms: typeof l.fields?.ms } }));
}

/** Log lines without their stack traces (which name the path each side took). */
export function withoutStacks(logs: Side['logs']): unknown[] {
  return logs.map((l) => ({ ...l, fields: { ...l.fields, stack: undefined } }));
}

/** The assertions the checks below make (tap's). */
interface Checks {
  equal(found: unknown, wanted: unknown, message: string): unknown;
  same(found: unknown, wanted: unknown, message: string): unknown;
}

/**
 * Each pair's first request to `fast`, its second (the same request made Koa's) to `koa`, both
 * logging requests: every one was the fast path's, and it logged one line per request, the lines
 * Koa logged (but the time).
 */
export async function checkRequestLines(t: Checks, fast: Side, koa: Side, pairs: readonly (readonly [string, string])[]): Promise<void> {
  for (const [viaFast, viaKoa] of pairs) {
    await rawRequest(fast.port, viaFast);
    await rawRequest(koa.port, viaKoa);
  }
  t.equal(fast.koaSeen, 0, 'all answered by the fast path');
  t.equal(requestLines(fast).length, pairs.length, 'one line per request');
  t.same(requestLines(fast), requestLines(koa), 'the same lines (but the time)');
}

/** A failure for the next registry call, and the status it must be answered with. */
export type Failure = [name: string, make: () => Error, status: number];

/**
 * Each failure made to happen once on both sides, the request sent to `fast` and its Koa twin to
 * `koa`: the status, the same bytes; then the same log lines (the unexpected error logged once)
 * and request counts.
 */
export async function checkFailures(t: Checks, fast: Side, koa: Side, failures: readonly Failure[], viaFast: string, viaKoa: string): Promise<void> {
  for (const [name, err, status] of failures) {
    fast.reg.failNext = err();
    koa.reg.failNext = err();
    const a = await rawRequest(fast.port, viaFast);
    const b = await rawRequest(koa.port, viaKoa);
    t.equal(a.head[0]?.split(' ')[1], String(status), name);
    t.same(a, b, `${name}: the same bytes`);
  }
  t.same(withoutStacks(fast.logs), withoutStacks(koa.logs), 'the same log lines');
  t.equal(fast.logs.filter((l) => l.msg === 'http handler error').length, 1, 'the unexpected error is logged');
  t.same(await httpCounts(fast.metrics), await httpCounts(koa.metrics), 'the same request counts');
}
