// Cluster formation for a fresh data directory with -bootstrap-expect N / -retry-join: ask the listed
// servers who they are until N are known, then exactly one (the smallest Raft ID) bootstraps and the
// others join it; a peer that already belongs to a cluster with a leader is joined instead.

import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Logger } from '../raft/node.ts';
import { SiderError } from '../raft/errors.ts';
import { INTERNAL_STATUS, parsePeerStatus } from '../http/internal.ts';
import type { PeerStatus } from '../http/internal.ts';
import { isLoopbackAddress, verifyRequest } from '../src/cluster-auth.ts';
import type { ServerConfig } from '../src/config.ts';
import { parseHostPort } from '../src/config.ts';
import { postInternal } from './internal-post.ts';

/** How long a server looks for its peers before giving up (a supervisor restarts it). */
export const FORMATION_TIMEOUT_MS = 10 * 60_000;
const ROUND_MS = 1000;
const MAX_BODY = 64 * 1024;

export type FormationDecision = { bootstrap: true } | { bootstrap: false; clusterId: string; via: string };

/**
 * What this server should do, given the answers of its peers (`self` is this server, not among
 * `peers`). Pure: the same answers give every server the same choice of bootstrapper.
 */
export function decide(
  selfId: string,
  expect: number,
  peers: { addr: string; status: PeerStatus }[],
): { action: 'join'; addr: string } | { action: 'bootstrap' } | { action: 'wait'; why: string } {
  const led = peers.find((p) => p.status.clusterId !== '' && p.status.leader !== '');
  if (led) return { action: 'join', addr: led.addr };
  if (peers.some((p) => p.status.clusterId !== '')) return { action: 'wait', why: 'a peer belongs to a cluster that has no leader yet' };
  const ids = new Map<string, string>([[selfId, '']]);
  for (const p of peers) ids.set(p.status.id, p.addr);
  if (ids.size < expect) return { action: 'wait', why: `${ids.size} of ${expect} servers known` };
  const first = [...ids.keys()].sort()[0]!;
  return first === selfId ? { action: 'bootstrap' } : { action: 'join', addr: ids.get(first)! };
}

async function askStatus(cfg: ServerConfig, addr: string): Promise<PeerStatus | null> {
  try {
    const { statusCode, text } = await postInternal(cfg.clusterKey, addr, INTERNAL_STATUS, {}, 3000);
    if (statusCode !== 200) return null;
    return parsePeerStatus(JSON.parse(text) as unknown);
  } catch {
    return null;
  }
}

/**
 * Until the decision is carried out, the HTTP address answers INTERNAL_STATUS (signed) with "no
 * cluster yet", so that peers can count this server; every other request gets 503.
 */
async function listenForPeers(cfg: ServerConfig, raftAddr: string, log: Logger): Promise<Server> {
  const { host, port } = parseHostPort(cfg.http, '-http');
  const handle = (req: IncomingMessage, res: ServerResponse, body: Buffer): void => {
    const ok = cfg.clusterKey ? verifyRequest(cfg.clusterKey, req.method ?? '', req.url ?? '', body, req.headers) : isLoopbackAddress(req.socket.remoteAddress);
    res.setHeader('content-type', 'application/json');
    if (req.url === INTERNAL_STATUS && req.method === 'POST') {
      if (!ok) {
        log('warn', 'formation status request rejected: bad or missing cluster signature', { remote: req.socket.remoteAddress });
        res.statusCode = 401;
        res.end(JSON.stringify({ code: 'SIDER_UNAUTHENTICATED', message: 'cluster signature required' }));
        return;
      }
      const status: PeerStatus = { id: cfg.raftId, raftAddr, clusterId: '', leader: '' };
      res.end(JSON.stringify(status));
      return;
    }
    res.statusCode = 503;
    res.end(JSON.stringify({ code: 'SIDER_NO_LEADER', message: 'this server is still forming its cluster (-bootstrap-expect)' }));
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > MAX_BODY) {
        res.statusCode = 413;
        res.end();
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!res.writableEnded) handle(req, res, Buffer.concat(chunks));
    });
    req.on('error', () => res.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new SiderError('SIDER_CONFIG', `-http ${cfg.http}: cannot listen: ${err.message}`, { cause: err })));
    server.listen(port, host, () => resolve());
  });
  return server;
}

/**
 * Finds the peers and carries out the decision: resolves `{bootstrap: true}` for the one server that
 * must bootstrap, or the cluster ID obtained by joining (through `join`, which retries until the
 * cluster has a leader). Throws after FORMATION_TIMEOUT_MS.
 */
export async function formCluster(
  cfg: ServerConfig,
  raftAddr: string,
  log: Logger,
  join: (addr: string) => Promise<string>,
  timeoutMs = FORMATION_TIMEOUT_MS,
): Promise<FormationDecision> {
  // Without -bootstrap-expect, -retry-join only joins an existing cluster.
  const expect = cfg.bootstrapExpect > 0 ? cfg.bootstrapExpect : Number.POSITIVE_INFINITY;
  const server = await listenForPeers(cfg, raftAddr, log);
  try {
    const deadline = Date.now() + timeoutMs;
    let lastWhy = '';
    for (let round = 0; Date.now() < deadline; round++) {
      const answers = await Promise.all(cfg.retryJoin.map(async (addr) => ({ addr, status: await askStatus(cfg, addr) })));
      const peers = answers.filter((a): a is { addr: string; status: PeerStatus } => a.status !== null && a.status.id !== cfg.raftId);
      const d = decide(cfg.raftId, expect, peers);
      if (d.action === 'bootstrap') {
        log('info', 'formation: bootstrapping the cluster (smallest raft id among the expected servers)', { expect, peers: peers.map((p) => p.status.id) });
        return { bootstrap: true };
      }
      if (d.action === 'join') {
        log('info', 'formation: joining', { via: d.addr, peers: peers.map((p) => p.status.id) });
        try {
          return { bootstrap: false, clusterId: await join(d.addr), via: d.addr };
        } catch (err) {
          // The chosen server may still be waiting for its peers: look again (until the deadline).
          lastWhy = `join through ${d.addr} failed: ${(err as Error).message}`;
          log('warn', 'formation: join failed; looking again', { via: d.addr, error: (err as Error).message });
          continue;
        }
      }
      if (d.why !== lastWhy || round % 30 === 0) log('info', 'formation: waiting for peers', { why: d.why, retryJoin: cfg.retryJoin });
      lastWhy = d.why;
      await new Promise((r) => setTimeout(r, ROUND_MS));
    }
    throw new SiderError('SIDER_CONFIG', `-bootstrap-expect ${cfg.bootstrapExpect}: no cluster formed within ${timeoutMs} ms (${lastWhy}); check -retry-join and the cluster key`);
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
}
