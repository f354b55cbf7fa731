// The internal API between servers: a follower forwards writes, joins and removals to the leader.
// Every request must carry a valid cluster-key signature (or, with no key configured, come from
// loopback); it is never reachable otherwise.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context, Middleware } from 'koa';
import { SiderError, isSiderError } from '../raft/errors.ts';
import { isLoopbackAddress, verifyRequest } from '../src/cluster-auth.ts';
import { INTERNAL_APPLY, INTERNAL_JOIN, INTERNAL_REMOVE } from '../src/raft-registry.ts';
import { INTERNAL_APPLY_BATCH, parseForwardedWrites } from '../src/forward-writes.ts';
import type { RaftRegistry } from '../src/raft-registry.ts';
import type { RegistryCommand } from '../src/registry/model.ts';
import { INTERNAL_RENEW, parseRenewItems } from '../src/health/renewals.ts';
import type { RenewItem, RenewResult } from '../src/health/renewals.ts';
import { readRawBody } from './body.ts';
import type { FastPath } from './check-routes.ts';

const MAX_BODY = 1 << 20;

/** A server's identity and cluster state, asked by servers forming a cluster (-bootstrap-expect). */
export const INTERNAL_STATUS = '/v1/internal/status';

export interface PeerStatus {
  id: string;
  raftAddr: string;
  /** '' while the server is still looking for its peers (no cluster yet). */
  clusterId: string;
  /** Raft ID of the leader it knows, '' when none. */
  leader: string;
}

/** Parses a peer's INTERNAL_STATUS answer; null when it is not one. */
export function parsePeerStatus(v: unknown): PeerStatus | null {
  const id = field(v, 'id');
  const raftAddr = field(v, 'raftAddr');
  const clusterId = field(v, 'clusterId');
  const leader = field(v, 'leader');
  if (typeof id !== 'string' || typeof raftAddr !== 'string' || typeof clusterId !== 'string' || typeof leader !== 'string') return null;
  return { id, raftAddr, clusterId, leader };
}

/** PUT /v1/agent/leave: this server leaves the cluster (leadership transfer, removal), then stops. */
export const AGENT_LEAVE = '/v1/agent/leave';

function field(obj: unknown, name: string): unknown {
  return typeof obj === 'object' && obj !== null ? (obj as Record<string, unknown>)[name] : undefined;
}

/**
 * Reads the body and checks the cluster signature (or loopback without a key). Returns the body, or
 * null after logging the refusal: the caller answers 401.
 */
async function authenticated(ctx: Context, opts: Pick<InternalApiOptions, 'clusterKey' | 'log'>, refusal: string): Promise<Buffer | null> {
  return authenticatedBody(ctx.req, ctx.method, ctx.url, ctx.path, opts, refusal);
}

/** The same for a request outside Koa (`url` is what was signed, `path` what is logged). */
async function authenticatedBody(req: IncomingMessage, method: string, url: string, path: string, opts: Pick<InternalApiOptions, 'clusterKey' | 'log'>, refusal: string): Promise<Buffer | null> {
  const body = await readRawBody(req, MAX_BODY, 'internal request body');
  const ok = opts.clusterKey ? verifyRequest(opts.clusterKey, method, url, body, req.headers) : isLoopbackAddress(req.socket.remoteAddress);
  if (ok) return body;
  opts.log('warn', refusal, { remote: req.socket.remoteAddress, path });
  return null;
}

const INTERNAL_REFUSAL = 'internal API request rejected: bad or missing cluster signature';

function parsePayload(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new SiderError('SIDER_BAD_REQUEST', 'internal request body is not JSON');
  }
}

/** INTERNAL_RENEW on the leader: a follower's batch of forwarded renewals, one result each. */
async function renewBatch(opts: Pick<InternalApiOptions, 'renewals'>, payload: unknown): Promise<{ results: RenewResult[] }> {
  if (!opts.renewals) throw new SiderError('SIDER_NOT_LEADER', 'this server does not take TTL renewals');
  return { results: await opts.renewals.renewBatch(parseRenewItems(field(payload, 'items'))) };
}

export interface InternalApiOptions {
  registry: RaftRegistry;
  clusterKey: string;
  clusterId: string;
  log: (level: 'warn', msg: string, fields: Record<string, unknown>) => void;
  /** The leader's TTL table: answers a follower's batch of forwarded renewals, one result each. */
  renewals?: { renewBatch(items: RenewItem[]): Promise<RenewResult[]> };
  /** Answers INTERNAL_STATUS. */
  status?: () => PeerStatus;
}

/** Handles /v1/internal/*; passes everything else on. Mount before the public API's routes. */
export function internalApi(opts: InternalApiOptions): Middleware {
  return async (ctx, next) => {
    if (!ctx.path.startsWith('/v1/internal/')) return next();
    try {
      if (ctx.method !== 'POST') throw new SiderError('SIDER_BAD_REQUEST', 'method not allowed', { status: 405 });
      const body = await authenticated(ctx, opts, INTERNAL_REFUSAL);
      if (!body) throw new SiderError('SIDER_UNAUTHENTICATED', 'cluster signature required');
      const payload = parsePayload(body);
      const r = opts.registry;
      if (ctx.path === INTERNAL_APPLY_BATCH) {
        ctx.body = { results: await r.applyBatchOnLeader(parseForwardedWrites(field(payload, 'writes'))) };
      } else if (ctx.path === INTERNAL_APPLY) {
        const cmd = field(payload, 'cmd');
        const rid = field(payload, 'rid');
        if (typeof cmd !== 'object' || cmd === null || typeof rid !== 'string') throw new SiderError('SIDER_BAD_REQUEST', 'cmd and rid required');
        ctx.body = await r.applyOnLeader(cmd as RegistryCommand, rid);
      } else if (ctx.path === INTERNAL_JOIN) {
        const id = field(payload, 'id');
        const addr = field(payload, 'addr');
        if (typeof id !== 'string' || typeof addr !== 'string') throw new SiderError('SIDER_BAD_REQUEST', 'id and addr required');
        await r.joinServer(id, addr);
        ctx.body = { clusterId: opts.clusterId };
      } else if (ctx.path === INTERNAL_RENEW) {
        ctx.body = await renewBatch(opts, payload);
      } else if (ctx.path === INTERNAL_STATUS && opts.status) {
        ctx.body = opts.status();
      } else if (ctx.path === INTERNAL_REMOVE) {
        const id = field(payload, 'id');
        if (typeof id !== 'string') throw new SiderError('SIDER_BAD_REQUEST', 'id required');
        await r.removeServer(id);
        ctx.body = { ok: true };
      } else {
        throw new SiderError('SIDER_BAD_REQUEST', 'unknown internal path', { status: 404 });
      }
      ctx.status = 200;
    } catch (err) {
      const e = isSiderError(err) ? err : new SiderError('SIDER_INTERNAL', 'internal error');
      ctx.status = e.status;
      ctx.body = { code: e.code, message: e.message };
      // The body was refused unread: close the connection rather than leave its rest in the stream.
      if (e.status === 413) ctx.set('Connection', 'close');
    }
  };
}

/**
 * `POST /v1/internal/renew` without Koa, for the leader: followers forward every TTL renewal their
 * clients send in batches here, so this is the leader's hottest internal request. Same checks as
 * the Koa route (bounded body, cluster signature or loopback, item parser) and the same answers
 * (status, JSON body, `Connection: close` after a 413). Anything else (another method, a query
 * string) returns false and goes to Koa. Register with addFastPath before listening.
 */
export function internalRenewFastPath(opts: Pick<InternalApiOptions, 'clusterKey' | 'log' | 'renewals'>): FastPath {
  const answer = (res: ServerResponse, status: number, body: unknown): void => {
    const text = JSON.stringify(body);
    const headers: Record<string, string | number> = { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) };
    // The body was refused unread: close the connection rather than leave its rest in the stream.
    if (status === 413) headers.Connection = 'close';
    res.writeHead(status, headers);
    res.end(text);
  };
  const handle = async (req: IncomingMessage): Promise<{ results: RenewResult[] }> => {
    const body = await authenticatedBody(req, 'POST', INTERNAL_RENEW, INTERNAL_RENEW, opts, INTERNAL_REFUSAL);
    if (!body) throw new SiderError('SIDER_UNAUTHENTICATED', 'cluster signature required');
    return renewBatch(opts, parsePayload(body));
  };
  return (req, res) => {
    if (req.method !== 'POST' || req.url !== INTERNAL_RENEW) return false;
    handle(req).then(
      (body) => answer(res, 200, body),
      (err: unknown) => {
        const e = isSiderError(err) ? err : new SiderError('SIDER_INTERNAL', 'internal error');
        answer(res, e.status, { code: e.code, message: e.message });
      },
    );
    return INTERNAL_RENEW;
  };
}

const OPERATOR_PATHS = new Set(['/v1/raft/join', '/v1/raft/remove']);

/**
 * Membership changes through the public API (`/v1/raft/join`, `/v1/raft/remove`) need the same
 * cluster signature as the internal API (or loopback without a key): an open join would let any
 * HTTP client add voters and take quorum away. The verified body is handed on already parsed.
 */
export function operatorAuth(opts: Pick<InternalApiOptions, 'clusterKey' | 'log'>): Middleware {
  return async (ctx, next) => {
    if (!OPERATOR_PATHS.has(ctx.path) || (ctx.method !== 'POST' && ctx.method !== 'PUT')) return next();
    let body: Buffer | null;
    try {
      body = await authenticated(ctx, opts, 'membership change refused: bad or missing cluster signature');
    } catch (err) {
      const e = err as SiderError;
      ctx.status = e.status;
      ctx.body = `${e.message}\n`;
      if (e.status === 413) ctx.set('Connection', 'close');
      return;
    }
    if (!body) {
      ctx.status = 401;
      ctx.body = 'cluster signature required (sign with the cluster key)\n';
      return;
    }
    let parsed: unknown;
    try {
      parsed = body.length ? JSON.parse(body.toString('utf8')) : {};
    } catch {
      ctx.status = 400;
      ctx.body = 'request body is not valid JSON\n';
      return;
    }
    (ctx.request as unknown as { body: unknown }).body = parsed;
    return next();
  };
}

export interface AgentLeaveOptions extends Pick<InternalApiOptions, 'clusterKey' | 'log'> {
  /** Transfers leadership if needed and removes this server; rejects (server keeps running) when it cannot. */
  leave(): Promise<Record<string, unknown>>;
  /** Called once the successful answer has been sent: stop the server. */
  afterLeave(): void;
}

/**
 * PUT /v1/agent/leave, signed with the cluster key like /v1/raft/join (or loopback without a key):
 * the server leaves the cluster for good, answers, and stops. SIGTERM, by contrast, keeps membership.
 */
export function agentLeave(opts: AgentLeaveOptions): Middleware {
  let busy = false;
  return async (ctx, next) => {
    if (ctx.path !== AGENT_LEAVE) return next();
    try {
      if (ctx.method !== 'PUT' && ctx.method !== 'POST') throw new SiderError('SIDER_BAD_REQUEST', 'method not allowed: use PUT', { status: 405 });
      const body = await authenticated(ctx, opts, 'leave refused: bad or missing cluster signature');
      if (!body) throw new SiderError('SIDER_UNAUTHENTICATED', 'cluster signature required (sign with the cluster key)');
      if (busy) throw new SiderError('SIDER_CONF_CHANGE_PENDING', 'a leave is already in progress', { status: 409 });
      busy = true;
      try {
        ctx.body = { left: true, ...(await opts.leave()) };
      } catch (err) {
        busy = false;
        throw err;
      }
      ctx.status = 200;
      ctx.res.once('close', () => opts.afterLeave());
    } catch (err) {
      const e = isSiderError(err) ? err : new SiderError('SIDER_INTERNAL', 'internal error');
      ctx.status = e.status;
      ctx.body = { code: e.code, message: e.message };
    }
  };
}
