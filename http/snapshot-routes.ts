// `GET /v1/snapshot` (a consistent, checksummed archive of the registry) and `PUT /v1/snapshot`
// (a cluster-wide restore through Raft). Both replace or expose everything, so both need the
// cluster signature, or loopback when no cluster key is configured (like /v1/raft/join).

import type { Middleware } from 'koa';
import { SiderError } from '../raft/errors.ts';
import { isLoopbackAddress, verifyRequest } from '../src/cluster-auth.ts';
import { decodeSnapshot } from '../src/registry/command-codec.ts';
import type { RegistryService } from '../src/registry/service.ts';
import { captureArchive, decodeArchive } from '../src/registry/snapshot-archive.ts';
import type { ArchiveSource } from '../src/registry/snapshot-archive.ts';
import { readRawBody } from './body.ts';
import { errorReply, sendText } from './errors.ts';
import type { HttpLogger } from './errors.ts';

export const SNAPSHOT_PATH = '/v1/snapshot';
/** Largest archive a restore accepts (413 beyond). Raft's own entry limits apply after this. */
export const MAX_ARCHIVE_BYTES = 256 * 1024 * 1024;
/** Largest document (its object form's JSON) a follower forwards to the leader (under the internal API's 1 MiB body limit). */
export const MAX_FORWARDED_DOCUMENT_BYTES = 960 * 1024;

export interface SnapshotRoutesOptions {
  service: RegistryService;
  /** The local registry: its global index and a synchronous point-in-time capture. */
  state: ArchiveSource;
  /** Whether this server is the leader now (a follower forwards the restore). */
  isLeader: () => boolean;
  clusterKey: string;
  log: HttpLogger;
  /** Test hook; default MAX_ARCHIVE_BYTES. */
  maxArchiveBytes?: number;
}

/** Mount ahead of the public routes (it answers /v1/snapshot itself and passes everything else on). */
export function snapshotRoutes(opts: SnapshotRoutesOptions): Middleware {
  const max = opts.maxArchiveBytes ?? MAX_ARCHIVE_BYTES;
  return async (ctx, next) => {
    if (ctx.path !== SNAPSHOT_PATH) return next();
    try {
      if (ctx.method !== 'GET' && ctx.method !== 'PUT') {
        ctx.set('Allow', 'GET, PUT');
        sendText(ctx, 405, `method ${ctx.method} not allowed on ${SNAPSHOT_PATH} (allowed: GET, PUT)`);
        return;
      }
      const body = ctx.method === 'PUT' ? await readRawBody(ctx.req, max, 'snapshot archive') : Buffer.alloc(0);
      const ok = opts.clusterKey
        ? verifyRequest(opts.clusterKey, ctx.method, ctx.url, body, ctx.req.headers)
        : isLoopbackAddress(ctx.req.socket.remoteAddress);
      if (!ok) {
        opts.log('warn', 'snapshot request refused: bad or missing cluster signature', { remote: ctx.req.socket.remoteAddress, method: ctx.method });
        sendText(ctx, 401, 'cluster signature required (sign with the cluster key)');
        return;
      }
      if (ctx.method === 'GET') {
        // Linearizable: the capture below includes every write acknowledged before the request.
        await opts.service.readBarrier('default');
        const { index, archive } = await captureArchive(opts.state);
        ctx.status = 200;
        ctx.set('X-Consul-Index', String(index));
        ctx.set('Content-Disposition', `attachment; filename="sider-${index}.snap"`);
        ctx.type = 'application/octet-stream';
        ctx.body = archive;
        return;
      }
      const archive = decodeArchive(body);
      const snapshot = decodeSnapshot(archive.document);
      // A follower forwards writes through the internal API, whose bodies are capped at 1 MiB, as
      // the JSON of the command: the document in the object form (about 3 times a compact one).
      // Refuse a larger restore here rather than send the leader a body it must cut off.
      if (!opts.isLeader()) {
        // Never smaller than the document as sent: a large archive is refused without encoding
        // (up to 256 MiB of it, which could exceed what one string may hold).
        const forwarded = archive.document.length > MAX_FORWARDED_DOCUMENT_BYTES ? archive.document.length : Buffer.byteLength(JSON.stringify(snapshot));
        if (forwarded > MAX_FORWARDED_DOCUMENT_BYTES) {
          throw new SiderError('SIDER_BAD_REQUEST', `snapshot too large to restore through a follower (at least ${forwarded} bytes to forward, at most ${MAX_FORWARDED_DOCUMENT_BYTES}): send it to the leader`, { status: 413 });
        }
      }
      const { result, index } = await opts.service.write({ type: 'restore', snapshot, now: Date.now() });
      if (!result.ok) {
        sendText(ctx, result.status, result.error);
        return;
      }
      opts.log('info', 'registry restored from a snapshot archive', { archiveIndex: archive.index, index, remote: ctx.req.socket.remoteAddress });
      ctx.set('X-Consul-Index', String(index));
      ctx.status = 200;
      ctx.body = '';
    } catch (err) {
      const { status, message } = errorReply(err, opts.log, ctx.method, ctx.path);
      sendText(ctx, status, message);
    }
  };
}
