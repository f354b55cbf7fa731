// `GET /v1/health/service/:name` and `GET /v1/catalog/service/:name` before Koa (issue #3): the
// reads every client polls, answered with the route's own barrier, headers and body.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ParkedReply } from './blocking.ts';
import { requestHeader } from './check-routes.ts';
import type { FastPath } from './check-routes.ts';
import { plainQuery } from './consistency.ts';
import { errorTextReply, sendReply } from './errors.ts';
import type { HttpLogger } from './errors.ts';

export type ServiceReadKind = 'health' | 'catalog';

/** The router's template of each route: the label its requests are counted under. */
export const SERVICE_READ_ROUTES: Readonly<Record<ServiceReadKind, string>> = {
  health: '/v1/health/service/:name',
  catalog: '/v1/catalog/service/:name',
};

const PREFIXES: readonly [string, ServiceReadKind][] = [
  ['/v1/health/service/', 'health'],
  ['/v1/catalog/service/', 'catalog'],
];
/** A name without percent-encoding or a trailing slash (parseServiceName still decides whether it is valid). */
const PLAIN_NAME = /^[A-Za-z0-9-]{1,63}$/;
/**
 * The parameters taken here. Anything else — `filter`, `pretty`, parameters the route ignores —
 * goes to Koa, as does any parameter but `tag` given twice.
 */
const PARAMS: Readonly<Record<ServiceReadKind, ReadonlySet<string>>> = {
  health: new Set(['ns', 'dc', 'stale', 'consistent', 'index', 'wait', 'tag', 'passing']),
  catalog: new Set(['ns', 'dc', 'stale', 'consistent', 'index', 'wait', 'tag']),
};
/** Consul's `tag` may be given several times (every one must be on the instance). */
const REPEATABLE: ReadonlySet<string> = new Set(['tag']);

/** A read in the form taken before Koa. */
export interface PlainServiceRead {
  kind: ServiceReadKind;
  /** The service name as sent. */
  name: string;
  /** The URL's path (Koa's `ctx.path`). */
  path: string;
  /** The URL's query without '?' (Koa's `ctx.querystring`). */
  querystring: string;
  /** The query as Koa's `ctx.query` would hold it (`tag` an array when repeated). */
  query: Record<string, string | string[]>;
}

/** The read `url` asks for when it is in the plain form; null otherwise (Koa's to answer). */
export function plainServiceRead(url: string, datacenter: string): PlainServiceRead | null {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const querystring = q < 0 ? '' : url.slice(q + 1);
  let kind: ServiceReadKind | undefined;
  let name = '';
  for (const [prefix, k] of PREFIXES) {
    if (path.startsWith(prefix)) {
      kind = k;
      name = path.slice(prefix.length);
      break;
    }
  }
  if (kind === undefined || !PLAIN_NAME.test(name)) return null;
  const query = plainQuery(querystring, PARAMS[kind], datacenter, REPEATABLE);
  if (!query) return null;
  return { kind, name, path, querystring, query };
}

/** A read whose parameters all parsed: what is left is the wait for consistency and the answer. */
export interface PreparedRead {
  /** The route's consistency barrier (ReadIndex for default and ?consistent; nothing for ?stale). */
  barrier(): Promise<void>;
  /**
   * After the barrier, a blocking query whose index has not moved past the client's is parked as
   * the route parks it (true; answered later by BlockingQueries). False: answer now. Throws the
   * route's error (429 at the cap of held queries).
   */
  park(req: IncomingMessage, res: ServerResponse): boolean;
  /** The route's answer from the state at the moment of the call; never throws (errors are their reply). */
  reply(): ParkedReply;
}

export interface ServiceReadFastPathOptions {
  datacenter: string;
  /**
   * What the route does before it waits, synchronously: namespace, name and consistency parsed as
   * the route parses them. Throws for anything the route would refuse, and the request then goes to
   * Koa, which answers it with the route's own error.
   */
  prepare: (read: PlainServiceRead, nsHeader: string) => PreparedRead;
  log: HttpLogger;
}

/**
 * The plain form of the two service reads without Koa: the same barrier, headers (X-Consul-Index
 * and the rest, Content-Type, Content-Length, in the same order), body (the app's body cache),
 * blocking (the app's BlockingQueries) and error replies as the Koa routes, counted under the
 * route's template (instrumentHttpServer; a parked query as the middleware counts one, see
 * fastPathHeld). Koa's context, middleware chain and router cost more than the read itself, and
 * every watcher asks again after each change.
 */
export function serviceReadFastPath(opts: ServiceReadFastPathOptions): FastPath {
  const { datacenter, prepare, log } = opts;
  return (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'GET') return false;
    const read = plainServiceRead(req.url ?? '', datacenter);
    if (!read) return false;
    let prepared: PreparedRead;
    try {
      prepared = prepare(read, requestHeader(req, 'x-sider-namespace'));
    } catch {
      return false;
    }
    prepared
      .barrier()
      .then(() => prepared.park(req, res))
      .then(
        (parked) => {
          if (!parked) sendReply(res, prepared.reply());
        },
        (err: unknown) => sendReply(res, errorTextReply(err, log, 'GET', read.path)),
      );
    return SERVICE_READ_ROUTES[read.kind];
  };
}
