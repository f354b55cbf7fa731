// The HTTP side of observability (issue #6): GET /metrics and /v1/agent/metrics (Prometheus text or
// OpenMetrics), GET /v1/agent/ready, the middleware that counts and times every request by route
// template, and counting of what never reaches Koa (the renewal and registration fast paths) and
// of connections.

import { AsyncLocalStorage } from 'node:async_hooks';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Context, Middleware } from 'koa';
import type { ServerMetrics } from '../src/metrics.ts';
import { INTERNAL_APPLY, INTERNAL_JOIN, INTERNAL_REMOVE } from '../src/raft-registry.ts';
import { INTERNAL_APPLY_BATCH } from '../src/forward-writes.ts';
import { INTERNAL_RENEW } from '../src/health/renewals.ts';
import { sendText } from './errors.ts';
import type { HttpLogger } from './errors.ts';

export const METRICS_PATH = '/metrics';
export const AGENT_METRICS_PATH = '/v1/agent/metrics';
export const READY_PATH = '/v1/agent/ready';
/** Route label of requests no route matched. */
export const UNMATCHED = 'unmatched';
/** Status label of a request whose client left before it was answered (nginx's convention). */
export const CLIENT_LEFT = '499';

/** Paths answered before the router (internal API, signed membership changes): their own labels. */
const FIXED_PATHS = new Set([INTERNAL_APPLY, INTERNAL_APPLY_BATCH, INTERNAL_JOIN, INTERNAL_REMOVE, INTERNAL_RENEW, '/v1/raft/join', '/v1/raft/remove']);
/** Routes whose blocking queries watch one service (the `:name` parameter). */
const SERVICE_ROUTES = new Set(['/v1/catalog/service/:name', '/v1/health/service/:name', '/v1/health/checks/:name']);

export interface ReadinessView {
  state(): { ready: boolean; reason: string };
}

/** Who sent the write being handled (for the registration log line), when inside a request. */
export interface RequestInfo {
  remote: string;
}

const requestInfo = new AsyncLocalStorage<RequestInfo>();

/** The request being handled, for writes (PUT/POST/DELETE); undefined elsewhere. */
export function currentRequest(): RequestInfo | undefined {
  return requestInfo.getStore();
}

/** Runs `fn` (a write handled outside Koa) as the handling of `req`, as the middleware runs Koa's writes. */
export function runAsRequest<T>(req: IncomingMessage, fn: () => T): T {
  return requestInfo.run({ remote: clientAddress(req.socket.remoteAddress) }, fn);
}

export interface ObservabilityOptions {
  metrics: ServerMetrics;
  readiness: ReadinessView;
  log?: HttpLogger;
  /** Log every request at debug level (only when the logger's level is debug: it costs a line each). */
  logRequests?: boolean;
  /** Run each write as its request (runAsRequest) so currentRequest() names the client. Default true. */
  trackWrites?: boolean;
}

const kHeld = Symbol('sider.metrics.held');
const kStart = Symbol('sider.metrics.start');
interface Held {
  metrics: ServerMetrics;
  route: string;
  service: string;
}
const kMetrics = Symbol('sider.metrics.registry');
const kRoute = Symbol('sider.metrics.route');
const kLog = Symbol('sider.metrics.requestLog');
type Marked = ServerResponse & { [kHeld]?: Held | undefined; [kStart]?: number; [kMetrics]?: ServerMetrics; [kRoute]?: string; [kLog]?: HttpLogger };

function clientAddress(raw: string | undefined): string {
  if (!raw) return 'unknown';
  return raw.startsWith('::ffff:') ? raw.slice(7) : raw;
}

/** The route template of a request Koa handled: @koa/router's matched layer, or one of the fixed paths. */
export function routeOf(ctx: Context): string {
  const matched = (ctx as Context & { _matchedRoute?: unknown })._matchedRoute;
  if (typeof matched === 'string' && matched.startsWith('/')) return matched;
  if (FIXED_PATHS.has(ctx.path)) return ctx.path;
  return UNMATCHED;
}

/** What a parked blocking query on `route` waits on, as the sider_watchers_active label. */
function watchedService(route: string, ctx: Context): string {
  if (SERVICE_ROUTES.has(route)) {
    const name = (ctx as Context & { params?: Record<string, string> }).params?.name;
    return typeof name === 'string' && name !== '' ? name.toLowerCase() : UNMATCHED;
  }
  return route === '/v1/catalog/services' ? '_catalog' : '_namespace';
}

/** A parked query on `route` watching `service`: a held watcher until its response closes (onHeldClose counts it then). */
function holdWatcher(res: Marked, metrics: ServerMetrics, route: string, service: string): void {
  res[kHeld] = { metrics, route, service };
  metrics.watcherParked(service);
  res.on('close', onHeldClose);
}

// Shared listeners (no closure per request); `this` is the response.
function onHeldClose(this: Marked): void {
  const h = this[kHeld];
  if (!h) return;
  this[kHeld] = undefined;
  h.metrics.watcherReleased(h.service);
  h.metrics.httpRequests.inc({ path: h.route, status: this.writableFinished ? String(this.statusCode) : CLIENT_LEFT });
}

function onFastPathClose(this: Marked): void {
  const metrics = this[kMetrics];
  const route = this[kRoute];
  if (!metrics || route === undefined) return;
  const status = this.writableFinished ? String(this.statusCode) : CLIENT_LEFT;
  const seconds = (performance.now() - (this[kStart] ?? 0)) / 1000;
  metrics.httpRequests.inc({ path: route, status });
  if (this.writableFinished) metrics.httpDuration.observe({ path: route }, seconds);
  // The line the Koa middleware writes for the requests it handles (debug level only).
  this[kLog]?.('debug', 'http request', {
    method: this.req.method,
    path: (this.req.url ?? '').split('?', 1)[0],
    route,
    status: Number(status),
    ms: Math.round(seconds * 10_000) / 10,
    remote: clientAddress(this.req.socket.remoteAddress),
  });
}

/** Prometheus asks with `Accept: application/openmetrics-text;version=1.0.0,…;q=…`. */
export function wantsOpenMetrics(accept: string | undefined): boolean {
  if (!accept) return false;
  let om = -1;
  let text = -1;
  for (const part of accept.split(',')) {
    const [type = '', ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    let q = 1;
    for (const p of params) if (p.startsWith('q=')) q = Number(p.slice(2)) || 0;
    if (type === 'application/openmetrics-text') om = Math.max(om, q);
    else if (type === 'text/plain') text = Math.max(text, q);
  }
  return om > 0 && om >= text;
}

/** GET /metrics, /v1/agent/metrics?format=prometheus and /v1/agent/ready; false for any other path. */
async function serveOwn(ctx: Context, opts: ObservabilityOptions): Promise<string | false> {
  const path = ctx.path;
  if (path !== METRICS_PATH && path !== AGENT_METRICS_PATH && path !== READY_PATH) return false;
  if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
    ctx.set('Allow', 'GET, HEAD');
    sendText(ctx, 405, `method ${ctx.method} not allowed on ${path} (allowed: GET, HEAD)`);
    return path;
  }
  if (path === READY_PATH) {
    const { ready, reason } = opts.readiness.state();
    sendText(ctx, ready ? 200 : 503, ready ? 'ready' : `not ready: ${reason}`);
    return path;
  }
  if (path === AGENT_METRICS_PATH) {
    const format = ctx.query.format;
    if (format !== 'prometheus') {
      const got = format === undefined ? 'no format' : `format ${JSON.stringify(format)}`;
      sendText(ctx, 400, `format: only format=prometheus is served (Consul's JSON metrics are not); got ${got}`);
      return path;
    }
  }
  const { contentType, body } = await opts.metrics.scrape(wantsOpenMetrics(ctx.get('Accept')));
  ctx.status = 200;
  ctx.set('Content-Type', contentType);
  ctx.body = body;
  return path;
}

/**
 * Mount first (outermost): counts and times every request Koa handles under its route template,
 * answers the metrics and readiness endpoints, and follows parked blocking queries until they
 * are answered or their client leaves (counted then; their held time is not a latency).
 */
export function observability(opts: ObservabilityOptions): Middleware {
  const { metrics } = opts;
  const log = opts.logRequests ? opts.log : undefined;
  return async (ctx, next) => {
    const res = ctx.res as Marked;
    const start = performance.now();
    let route: string | false = false;
    let status = 500;
    try {
      route = await serveOwn(ctx, opts);
      if (route === false) {
        if (ctx.method === 'GET' || ctx.method === 'HEAD') await next();
        else if (opts.trackWrites === false) await next();
        else await runAsRequest(ctx.req, next);
        route = routeOf(ctx);
      }
      status = ctx.status;
    } catch (err) {
      route = route || routeOf(ctx);
      const s = (err as { status?: unknown }).status;
      status = typeof s === 'number' && s >= 400 && s < 600 ? s : 500;
      throw err;
    } finally {
      const path = route || UNMATCHED;
      if (ctx.respond === false && status < 400) {
        // A parked blocking query: counted when answered or abandoned (onHeldClose).
        if (res.destroyed || ctx.req.socket.destroyed) {
          metrics.httpRequests.inc({ path, status: CLIENT_LEFT });
        } else {
          holdWatcher(res, metrics, path, watchedService(path, ctx));
        }
      } else {
        const seconds = (performance.now() - start) / 1000;
        metrics.httpRequests.inc({ path, status: String(status) });
        metrics.httpDuration.observe({ path }, seconds);
        log?.('debug', 'http request', {
          method: ctx.method,
          path: ctx.path,
          route: path,
          status,
          ms: Math.round(seconds * 10_000) / 10,
          remote: clientAddress(ctx.req.socket.remoteAddress),
        });
      }
    }
  };
}

/**
 * A fast path (listenHttp) answers this request as `route`: counted and timed under that label
 * when the response closes, if the server is instrumented (instrumentHttpServer).
 */
export function fastPathTaken(res: ServerResponse, route: string): void {
  const m = res as Marked;
  if (!m[kMetrics]) return;
  m[kRoute] = route;
  // 'close' is emitted once: a plain listener, without the wrapper once() would build per request.
  res.on('close', onFastPathClose);
}

/**
 * A request a fast path took (fastPathTaken) was parked as a blocking query on `service`: from
 * now on it is followed as the middleware follows the queries Koa parks — a held watcher until
 * answered or abandoned, counted then, its held time not a latency (onHeldClose).
 */
export function fastPathHeld(res: ServerResponse, service: string): void {
  const m = res as Marked;
  const metrics = m[kMetrics];
  const route = m[kRoute];
  if (!metrics || route === undefined) return;
  res.off('close', onFastPathClose);
  holdWatcher(m, metrics, route, service);
}

/**
 * Counts what the Koa middleware cannot see: requests the fast paths (TTL renewals, registrations)
 * answer before Koa (listenHttp), and open connections per client address. Call once, right after listening.
 */
export function instrumentHttpServer(server: Server, metrics: ServerMetrics, opts: { logRequests?: HttpLogger } = {}): void {
  const log = opts.logRequests;
  // Before the app's own listener, so the start time is taken first; counted (and with
  // `logRequests`, logged at debug like observability() does) only if a fast path takes the request.
  server.prependListener('request', (_req: IncomingMessage, res: ServerResponse) => {
    const m = res as Marked;
    m[kStart] = performance.now();
    m[kMetrics] = metrics;
    if (log) m[kLog] = log;
  });
  server.on('connection', (socket) => {
    const client = clientAddress(socket.remoteAddress);
    metrics.connectionOpened(client);
    socket.once('close', () => metrics.connectionClosed(client));
  });
}
