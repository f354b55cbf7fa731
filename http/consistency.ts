// Read consistency of a request (`?stale`, `?consistent`, default) and the headers every read
// answers with (X-Consul-Index, X-Index, KnownLeader, LastContact, Effective-Consistency).

import type { Context } from 'koa';
import { SiderError } from '../raft/errors.ts';
import type { Consistency, RegistryService } from '../src/registry/service.ts';

/** What X-Consul-Effective-Consistency reports: Consul's names for default, consistent, stale. */
export type EffectiveConsistency = 'leader' | 'consistent' | 'stale';

export interface ReadMode {
  consistency: Consistency;
  effective: EffectiveConsistency;
}

type Query = Context['query'];

/** The single value of a query parameter; repeated → 400 (callers of repeatable ones read arrays). */
export function queryValue(query: Query, name: string): string | undefined {
  const v = query[name];
  if (Array.isArray(v)) {
    if (v.length > 1) throw new SiderError('SIDER_BAD_REQUEST', `query parameter ${name} given ${v.length} times`);
    return v[0];
  }
  return v;
}

/** Every value of a repeatable query parameter (`?tag=a&tag=b`). */
export function queryValues(query: Query, name: string): string[] {
  const v = query[name];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/**
 * A presence flag like Consul's `?stale`, `?passing`: present without a value (or 1/true) is true,
 * absent or 0/false is false, anything else 400.
 */
export function queryFlag(query: Query, name: string): boolean {
  const v = queryValue(query, name);
  if (v === undefined) return false;
  switch (v.toLowerCase()) {
    case '':
    case '1':
    case 't':
    case 'true':
      return true;
    case '0':
    case 'f':
    case 'false':
      return false;
    default:
      throw new SiderError('SIDER_BAD_REQUEST', `query parameter ${name}: expected no value, true or false, not ${JSON.stringify(v)}`);
  }
}

/** Query strings a fast path takes: no percent-encoding, '+', '#' or ';', so Koa's parser and a split agree. */
const PLAIN_QUERY = /^[A-Za-z0-9._~=&-]*$/;

/**
 * A fast path's query (the part after '?') as Koa's `ctx.query` would hold it, or null when it
 * must go to Koa: encoded characters, a parameter not in `allowed`, one given twice (unless it is
 * in `repeatable`: then its values are an array, as Koa gives them), a value with '=', or `?dc=`
 * naming another datacenter than `datacenter` (the router's 404).
 */
export function plainQuery(qs: string, allowed: ReadonlySet<string>, datacenter: string, repeatable: ReadonlySet<string> = NONE): Record<string, string | string[]> | null {
  const query: Record<string, string | string[]> = {};
  if (qs === '') return query;
  if (!PLAIN_QUERY.test(qs)) return null;
  for (const part of qs.split('&')) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1);
    if (!allowed.has(key) || value.includes('=')) return null;
    const prev = query[key];
    if (prev === undefined) query[key] = value;
    else if (!repeatable.has(key)) return null;
    else if (Array.isArray(prev)) prev.push(value);
    else query[key] = [prev, value];
  }
  const dc = query.dc;
  if (typeof dc === 'string' && dc !== '' && dc.toLowerCase() !== datacenter.toLowerCase()) return null;
  return query;
}

const NONE: ReadonlySet<string> = new Set();

export function parseReadMode(query: Query): ReadMode {
  const stale = queryFlag(query, 'stale');
  const consistent = queryFlag(query, 'consistent');
  if (stale && consistent) throw new SiderError('SIDER_BAD_REQUEST', 'give ?stale or ?consistent, not both');
  if (stale) return { consistency: 'stale', effective: 'stale' };
  if (consistent) return { consistency: 'consistent', effective: 'consistent' };
  return { consistency: 'default', effective: 'leader' };
}

/**
 * Waits until the local state may serve a read in this mode: `?stale` at once, default and
 * `?consistent` after a ReadIndex round (both linearizable, DESIGN §4).
 */
export async function readBarrier(service: RegistryService, mode: ReadMode): Promise<void> {
  await service.readBarrier(mode.consistency === 'stale' ? 'stale' : 'default');
}

/** The headers Consul's clients parse on every read, as a flat [name, value, …] list. `index` is clamped to ≥ 1. */
export function readHeaders(service: RegistryService, index: number, effective: EffectiveConsistency): string[] {
  const idx = String(Math.max(1, Math.floor(index)));
  const meta = service.readMeta();
  // Consul's Go client fails on anything but a non-negative integer here; "never" is a huge one.
  const last = Number.isFinite(meta.lastContactMs) ? Math.max(0, Math.round(meta.lastContactMs)) : Number.MAX_SAFE_INTEGER;
  return [
    'X-Consul-Index',
    idx,
    'X-Index',
    idx,
    'X-Consul-KnownLeader',
    meta.knownLeader ? 'true' : 'false',
    'X-Consul-LastContact',
    String(last),
    'X-Consul-Effective-Consistency',
    effective,
  ];
}

/** Sets the read headers (readHeaders) on a Koa response. */
export function setReadHeaders(ctx: Context, service: RegistryService, index: number, effective: EffectiveConsistency): void {
  const h = readHeaders(service, index, effective);
  for (let i = 0; i < h.length; i += 2) ctx.set(h[i]!, h[i + 1]!);
}
