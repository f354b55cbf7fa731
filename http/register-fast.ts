// `PUT /v1/agent/service/register` before Koa (issue #3): the registration command both the route
// and the fast path build, and the fast path that answers the common form without Koa.

import type { IncomingMessage } from 'node:http';
import type { Context } from 'koa';
import type { RegistryCommand } from '../src/registry/model.ts';
import { readJsonBody } from './body.ts';
import { requestHeader } from './check-routes.ts';
import type { FastPath } from './check-routes.ts';
import { plainQuery, queryFlag, queryValue } from './consistency.ts';
import { errorTextReply, sendReply, textReply } from './errors.ts';
import type { HttpLogger } from './errors.ts';
import { runAsRequest } from './metrics.ts';
import { parseRegisterBody, parseRequestId, pickNamespace } from './register-parse.ts';

export const REGISTER_PATH = '/v1/agent/service/register';
const REGISTER_QUERY = `${REGISTER_PATH}?`;
/** Every query parameter the route reads; any other one (ignored by the route) goes to Koa. */
const ROUTE_PARAMS = new Set(['ns', 'dc', 'replace-existing-checks']);

export interface RegisterCommandOptions {
  /** The node the instance is registered on (this server's name). */
  nodeName: string;
  defaultNamespace: string;
  enableScriptChecks: boolean;
}

/**
 * The register command of a request: its parsed JSON body, query (`?ns`, `?replace-existing-checks`)
 * and X-Sider-Namespace header. Throws the 400 that names the field. Shared by the Koa route and
 * the fast path, so both validate in the same order and write the same command.
 */
export function registerCommand(body: unknown, query: Context['query'], nsHeader: string, opts: RegisterCommandOptions): RegistryCommand {
  const parsed = parseRegisterBody(body, { enableScriptChecks: opts.enableScriptChecks });
  const ns = pickNamespace(queryValue(query, 'ns'), nsHeader, parsed.namespace, opts.defaultNamespace);
  return {
    type: 'register',
    ns,
    node: opts.nodeName,
    instance: parsed.instance,
    checks: parsed.checks,
    replaceExistingChecks: queryFlag(query, 'replace-existing-checks'),
    now: Date.now(),
  };
}

export interface RegisterFastPathOptions extends RegisterCommandOptions {
  /** `?dc=` naming another datacenter is the router's 404: left to Koa. */
  datacenter: string;
  /** Largest accepted JSON body (the app's jsonLimit). */
  jsonLimit: number;
  /** The app's write: proposes (or forwards) and turns a refused apply into its HTTP error. */
  write: (cmd: RegistryCommand, rid: string) => Promise<void>;
  log: HttpLogger;
  /** Run each write as its request (runAsRequest) so currentRequest() names the client (the app's trackWrites). */
  trackWrites: boolean;
}

/**
 * `PUT /v1/agent/service/register` without Koa: the same body reader and limit, the same command
 * (registerCommand), request ID, write and error mapping as the route, answered with the same
 * status, headers and plain-text body, and run as a request (currentRequest) so the write is
 * logged with its client. Taken only in the plain form — the exact path, no Content-Encoding or
 * Expect header, no query parameter but one each of `ns`, `dc` (this datacenter) and
 * `replace-existing-checks` without percent-encoding — so that everything else, decided before
 * the body is read, goes to the Koa route. Counted in the request metrics by instrumentHttpServer.
 */
export function registerFastPath(opts: RegisterFastPathOptions): FastPath {
  const { write, log, trackWrites } = opts;
  const handle = async (req: IncomingMessage, query: Context['query']): Promise<void> => {
    const body = await readJsonBody(req, opts.jsonLimit);
    const cmd = registerCommand(body, query, requestHeader(req, 'x-sider-namespace'), opts);
    await write(cmd, parseRequestId(requestHeader(req, 'x-sider-request-id')));
  };
  return (req, res) => {
    if (req.method !== 'PUT') return false;
    const url = req.url ?? '';
    let qs: string;
    if (url === REGISTER_PATH) qs = '';
    else if (url.startsWith(REGISTER_QUERY)) qs = url.slice(REGISTER_QUERY.length);
    else return false;
    if (req.headers['content-encoding'] !== undefined || req.headers.expect !== undefined) return false;
    const query = plainQuery(qs, ROUTE_PARAMS, opts.datacenter);
    if (!query) return false;
    // Koa's reply: text/plain (its type for a string body), Content-Length, nothing else.
    (trackWrites ? runAsRequest(req, () => handle(req, query)) : handle(req, query)).then(
      () => sendReply(res, textReply(200, '')),
      (err: unknown) => sendReply(res, errorTextReply(err, log, 'PUT', REGISTER_PATH)),
    );
    return REGISTER_PATH;
  };
}
