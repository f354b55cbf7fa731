// A key-value server over the Raft library, run as a real child process by the integration tests
// and benchmarks: RaftNode on LevelDB, snapshot files and the HTTP transport, with a JSON HTTP API.
//
//   node test/support/kv-server.ts --id n1 --raft 127.0.0.1:P --http 127.0.0.1:Q --dir D
//        (--bootstrap | --cluster-id X) [--key K]        (or the key in env SIDER_CLUSTER_KEY)
//        [--tick-ms 100] [--snapshot-threshold N]
// Without a key, Raft traffic is plaintext and allowed on loopback only.
//
// API: POST /kv/put|append {client, seq, key, value} → {value, index, duplicate};
// GET /kv/get?key= (linearizable, ReadIndex) → {value, index}; GET /status; POST /join {id, addr}.
// Errors: {code, message, leader, leaderAddr} with the SiderError's status. Prints one JSON line
// {"ready":true,...} on stdout once listening; logs JSON lines on stderr; SIGTERM closes cleanly.

import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FileSnapshotStore } from '../../raft/file-snapshot-store.ts';
import { HttpTransport } from '../../raft/http-transport.ts';
import { LevelStorage } from '../../raft/level-storage.ts';
import { RaftNode } from '../../raft/node.ts';
import type { LogLevel } from '../../raft/node.ts';
import { SiderError } from '../../raft/errors.ts';
import { KvMachine, encodeKvCommand } from './kv-machine.ts';
import type { KvResult } from './kv-machine.ts';

/** Largest request body the API reads. */
const MAX_BODY_BYTES = 64 * 1024;
/** Longest key and value accepted (bytes, UTF-16 length is close enough for a test server). */
const MAX_KEY = 1024;
const MAX_VALUE = 32 * 1024;
const PROPOSE_TIMEOUT_MS = 5_000;
const READ_TIMEOUT_MS = 5_000;
const JOIN_TIMEOUT_MS = 10_000;

function fail(message: string, exitCode = 2): never {
  process.stderr.write(`kv-server: ${message}\n`);
  process.exit(exitCode);
}

function parseCli(): {
  id: string;
  raft: string;
  http: string;
  dir: string;
  bootstrap: boolean;
  clusterId: string | undefined;
  key: string | undefined;
  tickMs: number;
  snapshotThreshold: number | undefined;
} {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        id: { type: 'string' },
        raft: { type: 'string' },
        http: { type: 'string' },
        dir: { type: 'string' },
        bootstrap: { type: 'boolean', default: false },
        'cluster-id': { type: 'string' },
        key: { type: 'string' },
        'tick-ms': { type: 'string', default: '100' },
        'snapshot-threshold': { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    fail(`bad arguments: ${(err as Error).message}`);
  }
  const { id, raft, http, dir } = values;
  if (!id) fail('--id is required');
  if (!raft) fail('--raft host:port is required');
  if (!http) fail('--http host:port is required');
  if (!dir) fail('--dir is required');
  if (!values.bootstrap && !values['cluster-id']) fail('either --bootstrap or --cluster-id is required');
  const tickMs = Number(values['tick-ms']);
  if (!Number.isInteger(tickMs) || tickMs < 1 || tickMs > 10_000) fail(`--tick-ms must be an integer in [1, 10000], got ${values['tick-ms']}`);
  let snapshotThreshold: number | undefined;
  if (values['snapshot-threshold'] !== undefined) {
    snapshotThreshold = Number(values['snapshot-threshold']);
    if (!Number.isInteger(snapshotThreshold) || snapshotThreshold < 1) fail('--snapshot-threshold must be a positive integer');
  }
  const key = values.key ?? process.env.SIDER_CLUSTER_KEY ?? undefined;
  return {
    id,
    raft,
    http,
    dir,
    bootstrap: values.bootstrap === true,
    clusterId: values['cluster-id'],
    key: key === '' ? undefined : key,
    tickMs,
    snapshotThreshold,
  };
}

function splitHostPort(addr: string, flag: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(addr) ?? /^([^:[\]]+):(\d{1,5})$/.exec(addr);
  if (!m || Number(m[2]) > 65535) fail(`${flag} must be host:port, got ${JSON.stringify(addr)}`);
  return { host: m[1]!, port: Number(m[2]) };
}

function log(level: LogLevel | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void {
  if (level === 'debug') return;
  process.stderr.write(`${JSON.stringify({ t: new Date().toISOString(), level, msg, ...fields })}\n`);
}

const cli = parseCli();
const httpAddr = splitHostPort(cli.http, '--http');

const sm = new KvMachine();
let node: RaftNode;
try {
  node = await RaftNode.open({
    id: cli.id,
    storage: new LevelStorage(join(cli.dir, 'raft')),
    snapshots: new FileSnapshotStore(join(cli.dir, 'snapshots')),
    stateMachine: sm,
    transport: (clusterId) =>
      new HttpTransport({
        id: cli.id,
        clusterId,
        listen: cli.raft,
        clusterKey: cli.key,
        allowInsecureLoopback: cli.key === undefined,
        log,
      }),
    ...(cli.bootstrap ? { bootstrap: { addr: cli.raft } } : {}),
    ...(cli.clusterId ? { clusterId: cli.clusterId } : {}),
    tickMs: cli.tickMs,
    heartbeatTicks: 1,
    electionTicks: 10,
    ...(cli.snapshotThreshold ? { snapshotThreshold: cli.snapshotThreshold } : {}),
    log,
  });
} catch (err) {
  const code = err instanceof SiderError ? err.code : 'SIDER_INTERNAL';
  fail(`cannot start node ${cli.id}: ${code}: ${(err as Error).message}`, 1);
}

// ---- HTTP API ------------------------------------------------------------------------------------

class BodyTooLarge extends Error {}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY_BYTES) {
      reject(new BodyTooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        // Stop reading; the 413 goes out with `connection: close`, which drops the rest.
        req.removeAllListeners('data');
        req.pause();
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks, size)));
    req.on('error', reject);
  });
}

function badRequest(message: string): SiderError {
  return new SiderError('SIDER_BAD_REQUEST', message);
}

async function jsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  let raw: Buffer;
  try {
    raw = await readBody(req);
  } catch (err) {
    if (err instanceof BodyTooLarge) throw new SiderError('SIDER_BAD_REQUEST', `body exceeds ${MAX_BODY_BYTES} bytes`, { status: 413 });
    throw err;
  }
  let v: unknown;
  try {
    v = JSON.parse(raw.toString('utf8'));
  } catch {
    throw badRequest('body is not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw badRequest('body must be a JSON object');
  return v as Record<string, unknown>;
}

function str(body: Record<string, unknown>, field: string, max: number, allowEmpty = false): string {
  const v = body[field];
  if (typeof v !== 'string') throw badRequest(`${field} must be a string`);
  if (!allowEmpty && v.length === 0) throw badRequest(`${field} must not be empty`);
  if (v.length > max) throw badRequest(`${field} is longer than ${max}`);
  return v;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) };
  if (status === 413) headers.connection = 'close';
  res.writeHead(status, headers);
  res.end(text);
}

function sendError(res: ServerResponse, err: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (err instanceof SiderError) {
    const leader = typeof err.detail.leader === 'string' ? err.detail.leader : node.status().leader;
    send(res, err.status, { code: err.code, message: err.message, leader, leaderAddr: node.leaderAddr() });
    return;
  }
  log('error', 'kv-server: request failed', { error: (err as Error).message });
  send(res, 500, { code: 'SIDER_INTERNAL', message: 'internal error', leader: '', leaderAddr: '' });
}

async function write(req: IncomingMessage, res: ServerResponse, op: 'put' | 'append'): Promise<void> {
  const body = await jsonBody(req);
  const client = str(body, 'client', 128);
  const seq = body.seq;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) throw badRequest('seq must be a positive integer');
  const key = str(body, 'key', MAX_KEY);
  const value = str(body, 'value', MAX_VALUE, true);
  const r = await node.propose(encodeKvCommand({ client, seq, op, key, value }), `${client}:${seq}`, PROPOSE_TIMEOUT_MS);
  const result = r.result as KvResult | null;
  if (!result) throw new SiderError('SIDER_INTERNAL', 'state machine did not decode the command');
  send(res, 200, { value: result.value, index: r.index, duplicate: result.duplicate });
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://x');
  const route = `${req.method ?? ''} ${url.pathname}`;
  switch (route) {
    case 'POST /kv/put':
      return write(req, res, 'put');
    case 'POST /kv/append':
      return write(req, res, 'append');
    case 'GET /kv/get': {
      const key = url.searchParams.get('key');
      if (!key) throw badRequest('key query parameter is required');
      if (key.length > MAX_KEY) throw badRequest(`key is longer than ${MAX_KEY}`);
      const index = await node.readBarrier(READ_TIMEOUT_MS);
      send(res, 200, { value: sm.get(key), index });
      return;
    }
    case 'GET /status':
      send(res, 200, { ...node.status(), clusterId: node.clusterId, http: cli.http, raft: cli.raft });
      return;
    case 'POST /join': {
      const body = await jsonBody(req);
      const id = str(body, 'id', 128);
      const addr = str(body, 'addr', 300);
      await node.addServer(id, addr, JOIN_TIMEOUT_MS);
      send(res, 200, { clusterId: node.clusterId });
      return;
    }
    default:
      send(res, 404, { code: 'SIDER_BAD_REQUEST', message: `no route ${route}`, leader: '', leaderAddr: '' });
  }
}

const server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000, keepAliveTimeout: 30_000 }, (req, res) => {
  req.on('error', () => {});
  res.on('error', () => {});
  handle(req, res).catch((err: unknown) => sendError(res, err));
});

try {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(httpAddr.port, httpAddr.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
} catch (err) {
  await node.close();
  fail(`cannot listen on ${cli.http}: ${(err as Error).message}`, 1);
}

let closing = false;
async function shutdown(signal: string): Promise<void> {
  if (closing) return;
  closing = true;
  const started = Date.now();
  log('info', 'kv-server: shutting down', { signal });
  server.close();
  server.closeAllConnections();
  await node.close();
  log('info', 'kv-server: closed', { ms: Date.now() - started });
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
node.on((ev) => {
  if (ev.type === 'fatal') {
    // The node has stopped serving (storage failed or an invariant broke): so does the process.
    log('error', 'kv-server: raft node failed, exiting', { error: ev.error.message });
    process.exit(1);
  }
});

process.stdout.write(
  `${JSON.stringify({ ready: true, id: cli.id, http: cli.http, raft: cli.raft, clusterId: node.clusterId, pid: process.pid })}\n`,
);
