// The check endpoints of the agent API (DESIGN §6, issue #4), in Consul's shapes: TTL renewals
// (pass/warn/fail/update), check register/deregister, and service maintenance mode.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type Router from '@koa/router';
import type Koa from 'koa';
import type { Context, Middleware } from 'koa';
import { SiderError, isSiderError } from '../raft/errors.ts';
import { notTtlError } from '../src/health/renewals.ts';
import type { CheckRenewer } from '../src/health/renewals.ts';
import { MAINTENANCE_CHECK_PREFIX } from '../src/registry/health.ts';
import { checkSpec } from '../src/registry/specs.ts';
import type { CheckStatus, Instance, RegistryCommand } from '../src/registry/model.ts';
import type { RegistryService } from '../src/registry/service.ts';
import { queryValue } from './consistency.ts';
import { normalizeKeys } from './normalize.ts';
import type { ObjectShape } from './normalize.ts';
import { errorReply } from './errors.ts';
import type { HttpLogger } from './errors.ts';
import { LIMITS, badRequest, parseCheckRegistration, parseId, pickNamespace } from './register-parse.ts';

/** Consul's text when maintenance is enabled without a reason. */
export const DEFAULT_MAINTENANCE_REASON = 'Maintenance mode is enabled for this service, but no reason was provided. This is a default message.';
export const MAINTENANCE_CHECK_NAME = 'Service Maintenance Mode';

export interface CheckRoutesOptions {
  service: RegistryService;
  /** Where TTL renewals go (the leader's deadline table, forwarded from a follower). Default: directRenewer(service). */
  renewer?: CheckRenewer;
  /** The app's JSON body middleware. */
  json: Middleware;
  /** The app's namespace resolution (`?ns=`, header, body; they must agree). */
  namespaceOf: (ctx: Context, fromBody?: string) => string;
  /** The app's write: proposes through Raft and turns a refused apply into its HTTP error. */
  write: (ctx: Context, cmd: RegistryCommand) => Promise<void>;
  enableScriptChecks: boolean;
}

const STATUS_BY_VERB: Record<string, CheckStatus> = { pass: 'passing', warn: 'warning', fail: 'critical' };
const updateShape: ObjectShape = { kind: 'object', fields: { Status: 'value', Output: 'value' } };

function sendEmpty(ctx: Context): void {
  ctx.status = 200;
  ctx.body = '';
}

/** A check's Output as given by `?note=` or an update body: a string of at most 4 KiB (cut, as Consul does). */
function outputOf(v: unknown, field: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw badRequest(`${field}: must be a string`);
  return v;
}

/** Go's strconv.ParseBool, which Consul uses for `enable`. */
function parseBool(v: string | undefined, field: string): boolean {
  if (v === undefined || v === '') throw badRequest(`${field}: required (true or false)`);
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  throw badRequest(`${field}: must be true or false, not ${JSON.stringify(v)}`);
}

/**
 * A renewer for a server without a leader-side deadline table (tests of the HTTP layer on an
 * in-memory registry): refuses unknown and non-TTL checks like the real one and writes a status
 * change only when the status or output differs. It moves no deadline: nothing expires.
 */
export function directRenewer(service: RegistryService): CheckRenewer {
  return {
    async renew(ns, checkId, status, output) {
      await service.readBarrier('default');
      const check = service.reader.checksInState(ns, 'any').find((c) => c.CheckID === checkId);
      if (!check || check.Type !== 'ttl') throw notTtlError(checkId);
      if (check.Status === status && check.Output === output) return;
      const { result } = await service.write({ type: 'checkStatus', ns, checkId, status, output, now: Date.now() });
      if (!result.ok) throw result.status === 404 ? notTtlError(checkId) : new SiderError('SIDER_BAD_REQUEST', result.error, { status: result.status });
    },
  };
}

/** Adds the check endpoints to the API's router. */
export function addCheckRoutes(router: Router, opts: CheckRoutesOptions): void {
  const { service, json, namespaceOf, write } = opts;
  const renewer = opts.renewer ?? directRenewer(service);

  /** The one instance with this ID in the namespace, seen after a ReadIndex round. */
  async function instanceById(ns: string, id: string, field: string): Promise<Instance> {
    await service.readBarrier('default');
    const found = service.reader.instancesById(ns, id);
    if (found.length === 0) throw new SiderError('SIDER_BAD_REQUEST', `${field}: unknown service ID ${JSON.stringify(id)} in namespace ${JSON.stringify(ns)}`, { status: 404 });
    if (found.length > 1) {
      throw badRequest(`${field}: several services have ID ${JSON.stringify(id)} (${found.map((i) => i.Service).join(', ')}); give each instance a unique ID`);
    }
    return found[0]!;
  }

  for (const [verb, status] of Object.entries(STATUS_BY_VERB)) {
    router.put(`/v1/agent/check/${verb}/:id`, async (ctx) => {
      const ns = namespaceOf(ctx);
      const id = parseId(ctx.params.id, 'check ID');
      const output = outputOf(queryValue(ctx.query, 'note'), 'note');
      if (output.length > LIMITS.outputLength * 4) throw badRequest(`note: longer than ${LIMITS.outputLength * 4} characters`);
      await renewer.renew(ns, id, status, output);
      sendEmpty(ctx);
    });
  }

  router.put('/v1/agent/check/update/:id', json, async (ctx) => {
    const ns = namespaceOf(ctx);
    const id = parseId(ctx.params.id, 'check ID');
    const body = normalizeKeys(ctx.request.body, updateShape);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('request body must be a JSON object {"Status": ..., "Output": ...}');
    const b = body as Record<string, unknown>;
    const status = b.Status;
    if (status !== 'passing' && status !== 'warning' && status !== 'critical') {
      throw badRequest(`Status: must be "passing", "warning" or "critical", not ${status === undefined ? 'missing' : JSON.stringify(status)}`);
    }
    const output = outputOf(b.Output, 'Output');
    if (output.length > LIMITS.outputLength * 4) throw badRequest(`Output: longer than ${LIMITS.outputLength * 4} characters`);
    await renewer.renew(ns, id, status, output);
    sendEmpty(ctx);
  });

  router.put('/v1/agent/check/register', json, async (ctx) => {
    const parsed = parseCheckRegistration(ctx.request.body, { enableScriptChecks: opts.enableScriptChecks });
    const ns = namespaceOf(ctx, parsed.namespace);
    const inst = await instanceById(ns, parsed.serviceId, 'ServiceID');
    await write(ctx, { type: 'addCheck', ns, service: inst.Service, id: inst.ID, check: parsed.check, now: Date.now() });
    sendEmpty(ctx);
  });

  router.put('/v1/agent/check/deregister/:id', async (ctx) => {
    const ns = namespaceOf(ctx);
    const id = parseId(ctx.params.id, 'check ID');
    await write(ctx, { type: 'removeCheck', ns, checkId: id, now: Date.now() });
    sendEmpty(ctx);
  });

  router.put('/v1/agent/service/maintenance/:id', async (ctx) => {
    const ns = namespaceOf(ctx);
    const id = parseId(ctx.params.id, 'service ID');
    const enable = parseBool(queryValue(ctx.query, 'enable'), 'enable');
    const reason = outputOf(queryValue(ctx.query, 'reason'), 'reason');
    if (reason.length > LIMITS.notesLength) throw badRequest(`reason: longer than ${LIMITS.notesLength} characters`);
    const inst = await instanceById(ns, id, 'service ID');
    const checkId = `${MAINTENANCE_CHECK_PREFIX}${inst.ID}`;
    if (enable) {
      const check = checkSpec(checkId, { Name: MAINTENANCE_CHECK_NAME, Type: 'maintenance', Status: 'critical', Notes: reason === '' ? DEFAULT_MAINTENANCE_REASON : reason });
      await write(ctx, { type: 'addCheck', ns, service: inst.Service, id: inst.ID, check, now: Date.now() });
    } else {
      try {
        await write(ctx, { type: 'removeCheck', ns, checkId, now: Date.now() });
      } catch (err) {
        // Disabling when not enabled is fine (as in Consul).
        if (!isSiderError(err) || err.status !== 404) throw err;
      }
    }
    sendEmpty(ctx);
  });
}

// ---------------------------------------------------------------------------------------------
// The renewal fast path

/**
 * A handler that answers a request before Koa and returns the route template it answered as (the
 * request metrics' label), or returns false to leave the request to Koa.
 */
export type FastPath = (req: IncomingMessage, res: ServerResponse) => string | false;

/** A request header as Koa's `ctx.get` reads it ('' when absent): what a fast path reads in its stead. */
export function requestHeader(req: IncomingMessage, name: string): string {
  const v = req.headers[name];
  return typeof v === 'string' ? v : '';
}

const fastPaths = new WeakMap<Koa, FastPath>();

/** The fast paths registered for `app`, tried in order (listenHttp puts them in front of Koa). */
export function fastPathOf(app: Koa): FastPath | undefined {
  return fastPaths.get(app);
}

/** Adds a fast path for `app`, tried after those registered before it. Call before listenHttp. */
export function addFastPath(app: Koa, fast: FastPath): void {
  const prev = fastPaths.get(app);
  fastPaths.set(app, prev ? (req, res) => prev(req, res) || fast(req, res) : fast);
}

const RENEW_PATH = /^\/v1\/agent\/check\/(pass|warn|fail)\/([^/?#]+)(?:\?(.*))?$/;

/**
 * `PUT /v1/agent/check/pass|warn|fail/:id` without Koa: TTL renewals are the hottest write (every
 * instance, every few seconds), and Koa's context and router cost more than the renewal itself.
 * Only the plain form is taken here — no body, no query parameter other than one `note` and one
 * `ns`, an ID and namespace that parse — so that answers and errors are byte for byte Koa's
 * (same status, plain-text message, headers); anything else falls through to the Koa route.
 */
export function registerRenewalFastPath(app: Koa, opts: { renewer: CheckRenewer; defaultNamespace: string; log: HttpLogger }): void {
  const fast: FastPath = (req, res) => {
    if (req.method !== 'PUT') return false;
    const m = RENEW_PATH.exec(req.url ?? '');
    if (!m) return false;
    const te = req.headers['transfer-encoding'];
    const cl = req.headers['content-length'];
    if (te !== undefined || (cl !== undefined && cl !== '0')) return false;
    let id: string;
    let ns: string;
    let note = '';
    try {
      id = parseId(decodeURIComponent(m[2]!), 'check ID');
      let nsQuery: string | undefined;
      let noteSeen = false;
      if (m[3] !== undefined && m[3] !== '') {
        for (const [k, v] of new URLSearchParams(m[3])) {
          if (k === 'note' && !noteSeen) {
            noteSeen = true;
            note = v;
          } else if (k === 'ns' && nsQuery === undefined) {
            nsQuery = v;
          } else {
            return false;
          }
        }
      }
      const header = req.headers['x-sider-namespace'];
      if (Array.isArray(header)) return false;
      ns = pickNamespace(nsQuery, header ?? '', undefined, opts.defaultNamespace);
    } catch {
      // Koa answers the same request with the error (a bad name, or ?ns and the header disagreeing),
      // from the same parsers.
      return false;
    }
    if (note.length > LIMITS.outputLength * 4) return false;
    const status = STATUS_BY_VERB[m[1]!]!;
    const send = (code: number, message: string): void => {
      const body = message === '' ? '' : message.endsWith('\n') ? message : `${message}\n`;
      res.writeHead(code, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    };
    opts.renewer.renew(ns, id, status, note).then(
      () => send(200, ''),
      (err: unknown) => {
        const { status: code, message } = errorReply(err, opts.log, 'PUT', m[0].split('?')[0]!);
        send(code, message);
      },
    );
    return `/v1/agent/check/${m[1]!}/:id`;
  };
  addFastPath(app, fast);
}
