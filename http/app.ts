// The public HTTP API (DESIGN §6): Consul-compatible routes on Koa and @koa/router over a
// RegistryService, and the listener whose timeouts let a 10-minute blocking query run to its end.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import Router from '@koa/router';
import Koa from 'koa';
import type { Context, Middleware } from 'koa';
import { SiderError } from '../raft/errors.ts';
import type { Check, Instance, RegistryCommand } from '../src/registry/model.ts';
import type { RegistryService } from '../src/registry/service.ts';
import type { CheckRenewer } from '../src/health/renewals.ts';
import { jsonBody } from './body.ts';
import { parseCatalogDeregisterBody, parseCatalogRegisterBody } from './catalog-register.ts';
import { addCheckRoutes, addFastPath, directRenewer, fastPathOf, registerRenewalFastPath } from './check-routes.ts';
import { BlockingQueries, parseBlockingParams } from './blocking.ts';
import type { ParkTarget, ParkedReply, WatchFn } from './blocking.ts';
import { parseReadMode, queryFlag, queryValue, queryValues, readBarrier, readHeaders, setReadHeaders } from './consistency.ts';
import type { EffectiveConsistency } from './consistency.ts';
import { errorMiddleware, errorTextReply } from './errors.ts';
import type { HttpLogger } from './errors.ts';
import { parseFilter } from './filter.ts';
import type { Filter, FilterType } from './filter.ts';
import { badRequest, parseDeregisterBody, parseId, parseRaftJoinBody, parseRaftRemoveBody, parseRequestId, parseServiceName, pickNamespace } from './register-parse.ts';
import { registerCommand, registerFastPath } from './register-fast.ts';
import { serviceReadFastPath } from './read-fast.ts';
import { fastPathHeld, fastPathTaken } from './metrics.ts';
import {
  AGENT_SERVICE_SCHEMA,
  CATALOG_SERVICE_SCHEMA,
  CHECK_SCHEMA,
  HEALTH_ENTRY_SCHEMA,
  nodeUuid,
  renderAgentService,
  renderAgentServices,
  renderCatalogService,
  renderCatalogServices,
  renderCheck,
  renderHealthEntry,
  renderMember,
  splitHostPort,
} from './render.ts';
import type { MemberInfo, RenderContext } from './render.ts';
import { shiftOldest } from '../src/collections.ts';

export const DEFAULT_JSON_LIMIT = 1024 * 1024;
export const DEFAULT_NAMESPACE = 'default';
const REQUEST_ID_HEADER = 'x-sider-request-id';
const NAMESPACE_HEADER = 'x-sider-namespace';

export interface HttpAppOptions {
  /** Reported in every Datacenter field; `?dc=` naming another is refused. Default 'dc1'. */
  datacenter?: string;
  /** This server's node name; defaults to service.nodeName. */
  nodeName?: string;
  /** This server's Raft ID (to find its own addresses among the servers). Defaults to the node name. */
  nodeId?: string;
  /** Allow `Args` (script) checks in registrations (DESIGN §5). Default false. */
  enableScriptChecks?: boolean;
  /** Largest accepted JSON body in bytes; larger is 413. Default 1 MiB. */
  jsonLimit?: number;
  /**
   * Whether a registration taken before Koa runs as the handling of its request (runAsRequest), so
   * that currentRequest() names its client while it is written. Default true; a server whose log
   * drops the write lines (the only reader) turns it off: it cost ≈ 1 µs per request.
   */
  trackWrites?: boolean;
  /** Blocking queries held at once on this server; more get 429. Default 60,000. Ignored with `blocking`. */
  maxBlockingQueries?: number;
  /** A shared holder of blocking queries (its `held` count is the metric); one is made otherwise. */
  blocking?: BlockingQueries;
  /** Node address used for instances without one when their server's address is not known. */
  address?: string;
  /** Reported by /v1/agent/self; defaults to package.json's version. */
  version?: string;
  revision?: string;
  log?: HttpLogger;
  /** Where TTL renewals go (the leader's deadline table); default: a direct write per status change. */
  renewer?: CheckRenewer;
}

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** Encoded read bodies kept (oldest evicted first). */
const BODY_CACHE_ENTRIES = 4096;
/** Query parameters that do not change a read's body. */
const NOT_IN_BODY_KEY = new Set(['index', 'wait', 'stale', 'consistent', 'pretty', 'dc', 'ns']);
/** A parked query's variant (BlockingQueries): its effective consistency's position here, bit 2 for ?pretty. */
const EFFECTIVE: readonly EffectiveConsistency[] = ['leader', 'consistent', 'stale'];
const PRETTY = 4;
/** No `tag` parameter: every instance. */
const ANY_TAGS = (): boolean => true;
/** Sets apart the parked-query kinds of apps sharing one BlockingQueries. */
let appSeq = 0;

/**
 * Koa watches every response through on-finished, which keeps the request's context (ctx,
 * request, response, router state) alive until the response finishes, only to hand a socket error
 * to ctx.onerror. A parked query is answered outside Koa and watched for disconnects by
 * BlockingQueries, so when it parks that watch is ended: Koa's queued listener is dropped (about
 * 1.4 KiB of heap per held query), then ee-first's listener for the response's 'end' (an event a
 * ServerResponse never emits) is called, which removes all four of on-finished's listeners
 * (response 'end'/'finish', socket 'error'/'close') and calls nothing back. They would otherwise be
 * removed while writing the answer, when one change may be answering 10,000 queries (~10 % of a
 * woken answer's main-thread time). Leaves anything but that known shape alone.
 */
function releaseKoaContext(res: ServerResponse): void {
  const attached = (res as ServerResponse & { __onFinished?: { queue?: unknown } }).__onFinished;
  if (!attached || !Array.isArray(attached.queue) || attached.queue.length !== 1) return;
  attached.queue.length = 0;
  const ends = res.listeners('end');
  if (ends.length === 1 && ends[0]!.name === 'onevent') ends[0]!.call(res);
}

/** The rendered results `?filter=` selects (all of them without one). */
function matching<T>(out: T[], filter: Filter | undefined): T[] {
  return filter ? out.filter((o) => filter.matches(o)) : out;
}

/** JSON body; Consul's `?pretty` indents it. */
function sendJson(ctx: Context, value: unknown, pretty: boolean): void {
  ctx.type = 'application/json';
  ctx.body = pretty ? `${JSON.stringify(value, null, 4)}\n` : JSON.stringify(value);
}

/** An empty 200, Consul's answer to a successful agent write. */
function sendEmpty(ctx: Context): void {
  ctx.status = 200;
  ctx.body = '';
}

interface ReadSpec<T> {
  /** The index of the result (never 0 by the reader's contract; clamped anyway). */
  index: () => number;
  /** Present on blocking endpoints. */
  watch?: WatchFn;
  /** Computed right after the index, in the same tick, so both describe one state. */
  body: () => T;
  /** Answer with the local view, without a ReadIndex round (cluster status endpoints). */
  local?: boolean;
  /** The body depends on more than the registry's state (e.g. Raft status): never reuse it. */
  uncached?: boolean;
}

export function createHttpApp(service: RegistryService, opts: HttpAppOptions = {}): Koa {
  const reader = service.reader;
  const datacenter = opts.datacenter ?? 'dc1';
  const nodeName = opts.nodeName ?? service.nodeName;
  const nodeId = opts.nodeId ?? nodeName;
  const version = opts.version ?? packageVersion();
  const revision = opts.revision ?? '';
  const jsonLimit = opts.jsonLimit ?? DEFAULT_JSON_LIMIT;
  const log: HttpLogger = opts.log ?? (() => {});
  const enableScriptChecks = opts.enableScriptChecks ?? false;
  const blocking = opts.blocking ?? new BlockingQueries({ max: opts.maxBlockingQueries });

  const hostOf = (hostPort: string): string => (hostPort === '' ? '' : splitHostPort(hostPort).host);
  const rc: RenderContext = {
    datacenter,
    nodeAddress(node) {
      const servers = reader.servers();
      const info = servers.find((s) => s.ID === node) ?? (node === nodeName ? servers.find((s) => s.ID === nodeId) : undefined);
      if (info) return hostOf(info.HTTPAddr);
      // An agent's node without an address of its own is not this server.
      return node === nodeName ? (opts.address ?? '') : '';
    },
  };

  // Consul's clients and `curl --data` do not always say application/json: every body is JSON.
  const json = jsonBody({ limit: jsonLimit });

  /** `?ns=`, the X-Sider-Namespace header and a body's Namespace; given twice they must agree. */
  function namespaceOf(ctx: Context, fromBody?: string): string {
    return pickNamespace(queryValue(ctx.query, 'ns'), ctx.get(NAMESPACE_HEADER), fromBody, DEFAULT_NAMESPACE);
  }

  function filterOf(ctx: Context, schema: FilterType): Filter | undefined {
    const src = queryValue(ctx.query, 'filter');
    return src === undefined || src.trim() === '' ? undefined : parseFilter(src, schema);
  }

  /** Checks as api.HealthCheck, each with its service's tags. */
  function renderChecks(ns: string, checks: readonly Check[]): Record<string, unknown>[] {
    return checks.map((c) => renderCheck(c, reader.instance(ns, c.ServiceName, c.ServiceID)?.Tags ?? []));
  }

  /** Consul's `tag` parameters: every one must be on the instance (case-insensitive). */
  function tagsOf(query: Context['query']): (tags: readonly string[]) => boolean {
    const wanted = queryValues(query, 'tag').map((t) => t.toLowerCase());
    if (wanted.length === 0) return ANY_TAGS;
    return (tags) => {
      const have = new Set(tags.map((t) => t.toLowerCase()));
      return wanted.every((t) => have.has(t));
    };
  }

  const bodyCache = new Map<string, { global: number; body: Buffer }>();
  const parkPrefix = `${++appSeq}\u0000`;

  /** Namespace, path and the query parameters that shape the result (not index/wait/consistency). */
  function bodyCacheKey(ns: string, path: string, querystring: string): string {
    const q = new URLSearchParams(querystring);
    const kept: string[] = [];
    // Re-encoded: `?tag=a%26tag%3Db` (one tag) must not share a key with `?tag=a&tag=b` (two).
    for (const [k, v] of q) if (!NOT_IN_BODY_KEY.has(k)) kept.push(`${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
    kept.sort();
    return `${ns}\u0000${path}\u0000${kept.join('&')}`;
  }

  function bodyCacheKeyOf(ctx: Context): string {
    return bodyCacheKey(namespaceOf(ctx), ctx.path, ctx.querystring);
  }

  /**
   * Reads of the registry depend only on its state: the encoded body is reused until the global
   * index moves (a change anywhere), so a hot service is serialized once per change.
   */
  function cachedBody(key: string, render: () => unknown): Buffer {
    const global = reader.index();
    const hit = bodyCache.get(key);
    if (hit && hit.global === global) return hit.body;
    const body = Buffer.from(JSON.stringify(render()));
    bodyCache.delete(key);
    if (bodyCache.size >= BODY_CACHE_ENTRIES) shiftOldest(bodyCache);
    bodyCache.set(key, { global, body });
    return body;
  }

  /**
   * A read's whole answer from the state at the moment of the call, with the headers and body the
   * Koa path would send, or the error reply the error middleware would send. Never throws.
   */
  function renderRead<T>(key: string, path: string, spec: ReadSpec<T>, variant: number): ParkedReply {
    try {
      const index = spec.index();
      const headers = readHeaders(service, index, EFFECTIVE[variant & 3]!);
      const body = variant & PRETTY ? Buffer.from(`${JSON.stringify(spec.body(), null, 4)}\n`) : cachedBody(key, spec.body);
      headers.push('Content-Type', 'application/json; charset=utf-8', 'Content-Length', String(body.length));
      return { status: 200, headers, body };
    } catch (err) {
      return errorTextReply(err, log, 'GET', path);
    }
  }

  /** What parked queries of one kind share (made by the first of them): their answer, renderRead. */
  function parkTarget<T>(key: string, path: string, spec: ReadSpec<T>): ParkTarget {
    return { watch: spec.watch!, render: (variant) => renderRead(key, path, spec, variant) };
  }

  /**
   * The common shape of every read: consistency barrier, then headers and body from one
   * synchronous look at the state. Parameters are all parsed before anything waits. A blocking
   * read that must wait is parked (BlockingQueries): Koa lets go of it and it is answered later
   * outside Koa, with the same headers and body (parkTarget).
   */
  async function serveRead<T>(ctx: Context, spec: ReadSpec<T>): Promise<void> {
    const mode = parseReadMode(ctx.query);
    const params = spec.watch ? parseBlockingParams(ctx.query) : null;
    const pretty = queryFlag(ctx.query, 'pretty');
    let effective: EffectiveConsistency = mode.effective;
    if (spec.local) effective = 'stale';
    else await readBarrier(service, mode);
    if (params && spec.watch && !spec.local && !spec.uncached && spec.index() <= params.index) {
      const key = bodyCacheKeyOf(ctx);
      const path = ctx.path;
      const variant = EFFECTIVE.indexOf(effective) | (pretty ? PRETTY : 0);
      // Throws 429 at the cap; false when the client already left (nobody to answer).
      blocking.park(ctx.req, ctx.res, parkPrefix + key, () => parkTarget(key, path, spec), params.index, params.waitMs, variant);
      // Not a 404 for the error middleware; and Koa must not answer it.
      ctx.status = 200;
      ctx.respond = false;
      releaseKoaContext(ctx.res);
      return;
    }
    const index = spec.index();
    setReadHeaders(ctx, service, index, effective);
    if (spec.local || spec.uncached || pretty) {
      sendJson(ctx, spec.body(), pretty);
      return;
    }
    ctx.type = 'application/json';
    ctx.body = cachedBody(bodyCacheKeyOf(ctx), spec.body);
  }

  /** The client's X-Sider-Request-Id (a retried write is applied once), or a fresh one. */
  function requestId(ctx: Context): string {
    return parseRequestId(ctx.get(REQUEST_ID_HEADER));
  }

  async function writeWithId(cmd: RegistryCommand, rid: string): Promise<void> {
    const { result } = await service.write(cmd, rid);
    if (!result.ok) throw new SiderError('SIDER_BAD_REQUEST', result.error, { status: result.status });
  }

  async function write(ctx: Context, cmd: RegistryCommand): Promise<void> {
    await writeWithId(cmd, requestId(ctx));
  }

  function agentInstances(ns: string): Instance[] {
    return reader.instances(ns).filter((i) => i.Node === nodeName);
  }

  function members(): MemberInfo[] {
    const conf = service.raftConfiguration();
    const servers = reader.servers();
    return conf.servers.map((s) => ({
      name: s.ID === nodeId ? nodeName : s.ID,
      raftAddr: s.Address,
      httpAddr: servers.find((i) => i.ID === s.ID)?.HTTPAddr ?? '',
      voter: s.Voter,
      leader: s.Leader,
    }));
  }

  const router = new Router();

  // `?dc=` naming another datacenter cannot be served here (Consul would forward it).
  router.use(async (ctx, next) => {
    const dc = queryValue(ctx.query, 'dc');
    if (dc !== undefined && dc !== '' && dc.toLowerCase() !== datacenter.toLowerCase()) {
      throw new SiderError('SIDER_BAD_REQUEST', `unknown datacenter ${JSON.stringify(dc)}: this cluster is ${JSON.stringify(datacenter)}`, { status: 404 });
    }
    await next();
  });

  // ------------------------------------------------------------------------------- catalog

  router.get('/v1/catalog/services', async (ctx) => {
    const ns = namespaceOf(ctx);
    await serveRead(ctx, {
      index: () => reader.catalogIndex(ns),
      watch: (after, fire) => reader.watchCatalog(ns, after, fire),
      body: () => renderCatalogServices(reader.services(ns)),
    });
  });

  /** `/v1/catalog/service/:name`: the service's instances with the tags asked for, through the filter. */
  function catalogServiceSpec(ns: string, name: string, hasTags: (tags: readonly string[]) => boolean, filter: Filter | undefined): ReadSpec<unknown[]> {
    return {
      index: () => reader.serviceIndex(ns, name),
      watch: (after, fire) => reader.watchService(ns, name, after, fire),
      body: () => {
        const out = reader
          .serviceEntries(ns, name)
          .filter((e) => hasTags(e.instance.Tags))
          .map((e) => renderCatalogService(e.instance, rc));
        return matching(out, filter);
      },
    };
  }

  router.get('/v1/catalog/service/:name', async (ctx) => {
    const ns = namespaceOf(ctx);
    const name = parseServiceName(ctx.params.name, 'service name');
    const hasTags = tagsOf(ctx.query);
    const filter = filterOf(ctx, CATALOG_SERVICE_SCHEMA);
    await serveRead(ctx, catalogServiceSpec(ns, name, hasTags, filter));
  });

  // ------------------------------------------------------------------------------- health

  /** `/v1/health/service/:name`: the service's entries (passing ones only with `passing`) with the tags asked for, through the filter. */
  function healthServiceSpec(ns: string, name: string, passingOnly: boolean, hasTags: (tags: readonly string[]) => boolean, filter: Filter | undefined): ReadSpec<unknown[]> {
    return {
      index: () => reader.serviceIndex(ns, name),
      watch: (after, fire) => reader.watchService(ns, name, after, fire),
      body: () => {
        const out = reader
          .serviceEntries(ns, name)
          .filter((e) => (!passingOnly || e.health === 'passing') && hasTags(e.instance.Tags))
          .map((e) => renderHealthEntry(e, rc));
        return matching(out, filter);
      },
    };
  }

  router.get('/v1/health/service/:name', async (ctx) => {
    const ns = namespaceOf(ctx);
    const name = parseServiceName(ctx.params.name, 'service name');
    const passingOnly = queryFlag(ctx.query, 'passing');
    const hasTags = tagsOf(ctx.query);
    const filter = filterOf(ctx, HEALTH_ENTRY_SCHEMA);
    await serveRead(ctx, healthServiceSpec(ns, name, passingOnly, hasTags, filter));
  });

  router.get('/v1/health/checks/:name', async (ctx) => {
    const ns = namespaceOf(ctx);
    const name = parseServiceName(ctx.params.name, 'service name');
    const filter = filterOf(ctx, CHECK_SCHEMA);
    await serveRead(ctx, {
      index: () => reader.serviceIndex(ns, name),
      watch: (after, fire) => reader.watchService(ns, name, after, fire),
      body: () => {
        return matching(renderChecks(ns, reader.checksOfService(ns, name)), filter);
      },
    });
  });

  router.get('/v1/health/state/:state', async (ctx) => {
    const ns = namespaceOf(ctx);
    const state = ctx.params.state;
    if (state !== 'any' && state !== 'passing' && state !== 'warning' && state !== 'critical') {
      throw badRequest(`state: must be any, passing, warning or critical, not ${JSON.stringify(state)}`);
    }
    const filter = filterOf(ctx, CHECK_SCHEMA);
    await serveRead(ctx, {
      index: () => reader.namespaceIndex(ns),
      watch: (after, fire) => reader.watchNamespace(ns, after, fire),
      body: () => {
        return matching(renderChecks(ns, reader.checksInState(ns, state)), filter);
      },
    });
  });

  // ------------------------------------------------------------------------------- agent

  router.get('/v1/agent/services', async (ctx) => {
    const ns = namespaceOf(ctx);
    const filter = filterOf(ctx, AGENT_SERVICE_SCHEMA);
    await serveRead(ctx, {
      index: () => reader.namespaceIndex(ns),
      watch: (after, fire) => reader.watchNamespace(ns, after, fire),
      body: () => {
        const all = renderAgentServices(agentInstances(ns), rc);
        return filter ? Object.fromEntries(Object.entries(all).filter(([, v]) => filter.matches(v))) : all;
      },
    });
  });

  router.get('/v1/agent/service/:id', async (ctx) => {
    const ns = namespaceOf(ctx);
    const id = parseId(ctx.params.id, 'service ID');
    await serveRead(ctx, {
      index: () => reader.namespaceIndex(ns),
      watch: (after, fire) => reader.watchNamespace(ns, after, fire),
      body: () => {
        const found = reader.instancesById(ns, id).filter((i) => i.Node === nodeName);
        if (found.length === 0) throw new SiderError('SIDER_BAD_REQUEST', `unknown service ID ${JSON.stringify(id)} in namespace ${JSON.stringify(ns)}`, { status: 404 });
        if (found.length > 1) throw badRequest(`several services have ID ${JSON.stringify(id)} (${found.map((i) => i.Service).join(', ')}): use /v1/catalog/service/:name`);
        return renderAgentService(found[0]!, rc);
      },
    });
  });

  router.get('/v1/agent/self', async (ctx) => {
    await serveRead(ctx, {
      local: true,
      index: () => reader.index(),
      body: () => {
        const own = reader.servers().find((s) => s.ID === nodeId);
        const me = members().find((m) => m.name === nodeName) ?? {
          name: nodeName,
          raftAddr: own?.RaftAddr ?? '',
          httpAddr: own?.HTTPAddr ?? '',
          voter: false,
          leader: false,
        };
        return {
          Config: {
            Datacenter: datacenter,
            PrimaryDatacenter: datacenter,
            NodeName: nodeName,
            NodeID: nodeUuid(nodeName),
            Server: true,
            Revision: revision,
            Version: version,
            BuildDate: '',
          },
          Member: renderMember(me, datacenter, version),
          Meta: {},
        };
      },
    });
  });

  router.get('/v1/agent/members', async (ctx) => {
    await serveRead(ctx, { local: true, index: () => reader.index(), body: () => members().map((m) => renderMember(m, datacenter, version)) });
  });

  // Also answered before Koa in its common form (registerFastPath below): the same command and write.
  const registerOpts = { nodeName, defaultNamespace: DEFAULT_NAMESPACE, enableScriptChecks };
  router.put('/v1/agent/service/register', json, async (ctx) => {
    await write(ctx, registerCommand(ctx.request.body, ctx.query, ctx.get(NAMESPACE_HEADER), registerOpts));
    sendEmpty(ctx);
  });

  // Consul's catalog register: the registration names its node (`sider agent` sends its node_name).
  // Like Consul without ACLs, any client may name any node; the name grants nothing here.
  router.put('/v1/catalog/register', json, async (ctx) => {
    const parsed = parseCatalogRegisterBody(ctx.request.body, { enableScriptChecks });
    if (parsed.datacenter !== '' && parsed.datacenter.toLowerCase() !== datacenter.toLowerCase()) {
      throw badRequest(`Datacenter: ${JSON.stringify(parsed.datacenter)} is not this cluster's (${JSON.stringify(datacenter)})`);
    }
    const ns = namespaceOf(ctx, parsed.namespace);
    await write(ctx, {
      type: 'register',
      ns,
      node: parsed.node,
      nodeAddress: parsed.nodeAddress,
      instance: parsed.instance,
      checks: parsed.checks,
      replaceExistingChecks: false,
      now: Date.now(),
    });
    // Consul answers `true`.
    ctx.type = 'application/json';
    ctx.body = 'true';
  });

  // Consul's catalog deregister: ServiceID (that instance of the node), CheckID (that check of the
  // node) or neither (every instance of the node). Nothing matching is not an error (Consul: true).
  router.put('/v1/catalog/deregister', json, async (ctx) => {
    const p = parseCatalogDeregisterBody(ctx.request.body);
    if (p.datacenter !== '' && p.datacenter.toLowerCase() !== datacenter.toLowerCase()) {
      throw badRequest(`Datacenter: ${JSON.stringify(p.datacenter)} is not this cluster's (${JSON.stringify(datacenter)})`);
    }
    const ns = namespaceOf(ctx, p.namespace);
    await service.readBarrier('default');
    const cmds: RegistryCommand[] = [];
    if (p.checkId !== '') {
      const c = reader.checksInState(ns, 'any').find((x) => x.CheckID === p.checkId && x.Node === p.node);
      if (c) cmds.push({ type: 'removeCheck', ns, checkId: c.CheckID, now: Date.now() });
    } else {
      const found = p.serviceId !== '' ? reader.instancesById(ns, p.serviceId) : reader.instances(ns);
      for (const i of found) if (i.Node === p.node) cmds.push({ type: 'deregister', ns, service: i.Service, id: i.ID, now: Date.now() });
    }
    // Each write its own request ID (derived from the client's, so a retried request is applied once).
    const rid = requestId(ctx);
    for (const [k, cmd] of cmds.entries()) {
      const { result } = await service.write(cmd, cmds.length === 1 ? rid : `${rid}/${k}`);
      if (!result.ok && result.status !== 404) throw new SiderError('SIDER_BAD_REQUEST', result.error, { status: result.status });
    }
    ctx.type = 'application/json';
    ctx.body = 'true';
  });

  /** The one instance with this ID in the namespace, seen after a ReadIndex round. */
  async function instanceById(ns: string, id: string): Promise<Instance> {
    await service.readBarrier('default');
    const found = reader.instancesById(ns, id);
    if (found.length === 0) throw new SiderError('SIDER_BAD_REQUEST', `unknown service ID ${JSON.stringify(id)} in namespace ${JSON.stringify(ns)}`, { status: 404 });
    if (found.length > 1) {
      throw badRequest(
        `several services have ID ${JSON.stringify(id)} (${found.map((i) => i.Service).join(', ')}): ` +
          'deregister with PUT /v1/agent/service/deregister and a JSON body {"Service": "<name>", "ID": "<id>"}',
      );
    }
    return found[0]!;
  }

  router.put('/v1/agent/service/deregister/:id', async (ctx) => {
    const ns = namespaceOf(ctx);
    const inst = await instanceById(ns, parseId(ctx.params.id, 'service ID'));
    await write(ctx, { type: 'deregister', ns, service: inst.Service, id: inst.ID, now: Date.now() });
    sendEmpty(ctx);
  });

  router.put('/v1/agent/service/deregister', json, async (ctx) => {
    const parsed = parseDeregisterBody(ctx.request.body);
    const ns = namespaceOf(ctx, parsed.namespace);
    const target = parsed.service === '' ? await instanceById(ns, parsed.id) : { Service: parsed.service, ID: parsed.id };
    await write(ctx, { type: 'deregister', ns, service: target.Service, id: target.ID, now: Date.now() });
    sendEmpty(ctx);
  });

  const renewer = opts.renewer ?? directRenewer(service);
  addCheckRoutes(router, { service, json, namespaceOf, write, enableScriptChecks, renewer });

  // ------------------------------------------------------------------------------- cluster

  router.get('/v1/status/leader', async (ctx) => {
    await serveRead(ctx, { local: true, index: () => reader.index(), body: () => service.leaderAddr() });
  });

  router.get('/v1/status/peers', async (ctx) => {
    await serveRead(ctx, { local: true, index: () => reader.index(), body: () => [...service.peers()] });
  });

  router.get('/v1/operator/raft/configuration', async (ctx) => {
    await serveRead(ctx, {
      uncached: true,
      index: () => service.raftConfiguration().index,
      body: () => {
        const conf = service.raftConfiguration();
        return {
          Servers: conf.servers.map((s) => ({
            ID: s.ID,
            Node: s.ID === nodeId ? nodeName : s.ID,
            Address: s.Address,
            Leader: s.Leader,
            Voter: s.Voter,
            ProtocolVersion: '3',
          })),
          Index: conf.index,
        };
      },
    });
  });

  const raftJoin: Middleware = async (ctx) => {
    const { id, addr } = parseRaftJoinBody(ctx.request.body);
    await service.joinServer(id, addr);
    sendEmpty(ctx);
  };
  const raftRemove: Middleware = async (ctx) => {
    const { id } = parseRaftRemoveBody(ctx.request.body);
    await service.removeServer(id);
    sendEmpty(ctx);
  };
  router.post('/v1/raft/join', json, raftJoin);
  router.put('/v1/raft/join', json, raftJoin);
  router.post('/v1/raft/remove', json, raftRemove);
  router.put('/v1/raft/remove', json, raftRemove);

  const app = new Koa();
  // TTL renewals skip Koa when they are in their plain form (same answers; see check-routes.ts).
  registerRenewalFastPath(app, { renewer, defaultNamespace: DEFAULT_NAMESPACE, log });
  // So do registrations (same answers, metrics and write logging; see register-fast.ts).
  addFastPath(app, registerFastPath({ ...registerOpts, datacenter, jsonLimit, write: writeWithId, log, trackWrites: opts.trackWrites ?? true }));
  // And the two service reads, blocking ones too (same barrier, answers and parking; see read-fast.ts).
  addFastPath(
    app,
    serviceReadFastPath({
      datacenter,
      log,
      prepare: (read, nsHeader) => {
        // In the order the routes parse (serveRead's consistency after the route's own parameters).
        const ns = pickNamespace(queryValue(read.query, 'ns'), nsHeader, undefined, DEFAULT_NAMESPACE);
        const name = parseServiceName(read.name, 'service name');
        const spec =
          read.kind === 'health'
            ? healthServiceSpec(ns, name, queryFlag(read.query, 'passing'), tagsOf(read.query), undefined)
            : catalogServiceSpec(ns, name, tagsOf(read.query), undefined);
        const mode = parseReadMode(read.query);
        const params = parseBlockingParams(read.query);
        const key = bodyCacheKey(ns, read.path, read.querystring);
        const variant = EFFECTIVE.indexOf(mode.effective);
        return {
          barrier: () => readBarrier(service, mode),
          park: (req, res) => {
            if (!params || spec.index() > params.index) return false;
            // As serveRead parks (false: the client already left, nobody to answer).
            if (blocking.park(req, res, parkPrefix + key, () => parkTarget(key, read.path, spec), params.index, params.waitMs, variant)) fastPathHeld(res, name);
            return true;
          },
          reply: () => renderRead(key, read.path, spec, variant),
        };
      },
    }),
  );
  // Errors after the response started (a socket reset mid-body) never reach the middleware.
  app.on('error', (err: unknown) => log('warn', 'http connection error', { error: err instanceof Error ? err.message : String(err) }));
  app.use(errorMiddleware(log));
  // The router treats an undecodable path as no match (404); it is the client's mistake.
  app.use(async (ctx, next) => {
    try {
      decodeURIComponent(ctx.path);
    } catch {
      throw badRequest('malformed percent-encoding in the URL path');
    }
    await next();
  });
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}

export interface ListenOptions {
  /** Bound on receiving one whole request (headers and body), not on answering it. Default 60 s. */
  requestTimeoutMs?: number;
  /** Bound on receiving the headers. Default 20 s. */
  headersTimeoutMs?: number;
  /** Idle keep-alive connections are closed after this. Default 65 s (above common LB idle timeouts). */
  keepAliveTimeoutMs?: number;
  /** How often Node checks the two bounds above. Default 5 s. */
  checkIntervalMs?: number;
}

/** Koa's handler, behind the fast path createHttpApp registered for the app (if any). */
function withFastPath(app: Koa): (req: IncomingMessage, res: ServerResponse) => void {
  const handler = app.callback();
  const fast = fastPathOf(app);
  if (!fast) return handler;
  return (req, res) => {
    const route = fast(req, res);
    if (route === false) void handler(req, res);
    else fastPathTaken(res, route);
  };
}

/**
 * Listens with timeouts that bound slow clients but never a held blocking query: no socket
 * inactivity timeout (`timeout = 0`), and `requestTimeout` covers only receiving the request.
 */
export function listenHttp(app: Koa, host: string, port: number, opts: ListenOptions = {}): Promise<Server> {
  const server = createServer(
    {
      requestTimeout: opts.requestTimeoutMs ?? 60_000,
      headersTimeout: opts.headersTimeoutMs ?? 20_000,
      keepAliveTimeout: opts.keepAliveTimeoutMs ?? 65_000,
      connectionsCheckingInterval: opts.checkIntervalMs ?? 5_000,
    },
    withFastPath(app),
  );
  server.timeout = 0;
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve(server);
    });
  });
}
