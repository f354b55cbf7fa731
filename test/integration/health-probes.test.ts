// The probe library against real targets on loopback: HTTP servers that flip between 200/429/500,
// hang or send a huge body; a TCP listener that opens and closes; a real gRPC health service; script
// checks with exit codes, a sleeping script killed at the timeout; and the scheduler running real
// probes, whose stop() leaves no sockets, processes or timers behind.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer } from 'node:net';
import type { Server as NetServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { capOutput, runProbe } from '../../src/health/probes.ts';
import { CheckScheduler } from '../../src/health/scheduler.ts';
import { MAX_CHECK_OUTPUT } from '../../src/health/types.ts';
import type { ProbeDefinition, ProbeResult } from '../../src/health/types.ts';
import { startHealthServer } from '../support/grpc-health.ts';
import { waitFor } from '../support/ports.ts';

const TRUNCATED = '\n... (output truncated)';
const NODE = process.execPath;

function resources(kind: string): number {
  return process.getActiveResourcesInfo().filter((r) => r === kind).length;
}

function listening(server: { address(): unknown }): number {
  const a = server.address();
  if (typeof a !== 'object' || a === null || !('port' in a)) throw new Error('server not listening');
  return (a as { port: number }).port;
}

/** Closes a server and destroys its open connections (a hanging request must not hold teardown). */
function tracked<S extends NetServer>(server: S): S & { closeAll: () => Promise<void> } {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.on('secureConnection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  return Object.assign(server, {
    closeAll: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  });
}

// ---------------------------------------------------------------------------------------------
// HTTP

type Mode = 'ok' | 'busy' | 'fail' | 'hang' | 'huge' | 'echo' | 'redirect';

interface HugeStats {
  written: number;
  closedEarly: boolean;
}

const HUGE_CHUNK = Buffer.from('€'.repeat(10_000)); // 30,000 bytes of 3-byte characters
const HUGE_CHUNKS = 2_000; // 60 MB offered, far more than a probe may read

function httpHandler(state: { mode: Mode; hangs: IncomingMessage[]; huge: HugeStats[] }) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    switch (state.mode) {
      case 'ok':
        res.end('fine');
        return;
      case 'busy':
        res.writeHead(429).end('slow down');
        return;
      case 'fail':
        res.writeHead(500).end('broken');
        return;
      case 'hang':
        state.hangs.push(req);
        return;
      case 'redirect':
        if (req.url === '/target') res.end('landed');
        else res.writeHead(302, { location: '/target' }).end();
        return;
      case 'echo': {
        const parts: Buffer[] = [];
        req.on('data', (c: Buffer) => parts.push(c));
        req.on('end', () => res.end(`${req.method} x-probe=${String(req.headers['x-probe'])} ua=${String(req.headers['user-agent'])} body=${Buffer.concat(parts).toString()}`));
        return;
      }
      case 'huge': {
        const stats: HugeStats = { written: 0, closedEarly: false };
        state.huge.push(stats);
        let i = 0;
        res.on('close', () => {
          if (!res.writableFinished) stats.closedEarly = true;
        });
        const pump = (): void => {
          while (i < HUGE_CHUNKS && !res.destroyed) {
            i++;
            stats.written += HUGE_CHUNK.length;
            if (i === HUGE_CHUNKS) res.end(HUGE_CHUNK);
            else if (!res.write(HUGE_CHUNK)) return void res.once('drain', pump);
          }
        };
        pump();
        return;
      }
    }
  };
}

t.test('HTTP probe: 2xx passing, 429 warning, 500 critical, as the target flips', async (t) => {
  const state = { mode: 'ok' as Mode, hangs: [] as IncomingMessage[], huge: [] as HugeStats[] };
  const server = tracked(createHttpServer(httpHandler(state)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.closeAll());
  const url = `http://127.0.0.1:${listening(server)}/health`;
  const def: ProbeDefinition = { type: 'http', http: url };

  const seen: ProbeResult[] = [];
  for (const mode of ['ok', 'busy', 'fail', 'ok'] as const) {
    state.mode = mode;
    seen.push(await runProbe(def, { timeoutMs: 5_000 }));
  }
  t.same(seen, [
    { status: 'passing', output: `HTTP GET ${url}: 200 OK Output: fine` },
    { status: 'warning', output: `HTTP GET ${url}: 429 Too Many Requests Output: slow down` },
    { status: 'critical', output: `HTTP GET ${url}: 500 Internal Server Error Output: broken` },
    { status: 'passing', output: `HTTP GET ${url}: 200 OK Output: fine` },
  ]);
});

t.test('HTTP probe sends method, headers and body; follows redirects unless disabled', async (t) => {
  const state = { mode: 'echo' as Mode, hangs: [] as IncomingMessage[], huge: [] as HugeStats[] };
  const server = tracked(createHttpServer(httpHandler(state)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.closeAll());
  const base = `http://127.0.0.1:${listening(server)}`;

  const echo = await runProbe(
    { type: 'http', http: `${base}/echo`, method: 'put', header: { 'X-Probe': ['yes'] }, body: 'ping' },
    { timeoutMs: 5_000 },
  );
  t.same(echo, { status: 'passing', output: `HTTP PUT ${base}/echo: 200 OK Output: PUT x-probe=yes ua=Sider Health Check body=ping` });

  state.mode = 'redirect';
  const followed = await runProbe({ type: 'http', http: `${base}/start` }, { timeoutMs: 5_000 });
  t.same(followed, { status: 'passing', output: `HTTP GET ${base}/start: 200 OK Output: landed` }, 'redirect followed (Consul default)');
  const notFollowed = await runProbe({ type: 'http', http: `${base}/start`, disableRedirects: true }, { timeoutMs: 5_000 });
  t.same(notFollowed, { status: 'critical', output: `HTTP GET ${base}/start: 302 Found Output: ` });
});

t.test('HTTP probe of a hanging target is critical at the timeout and drops the connection', async (t) => {
  const state = { mode: 'hang' as Mode, hangs: [] as IncomingMessage[], huge: [] as HugeStats[] };
  const server = tracked(createHttpServer(httpHandler(state)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.closeAll());
  const url = `http://127.0.0.1:${listening(server)}/`;

  // Long enough for the request to reach the server even if this process stalls for a while.
  const probe = runProbe({ type: 'http', http: url }, { timeoutMs: 1_500 });
  await waitFor('the server to see the probe request', () => state.hangs.length >= 1, 5_000);
  const r = await probe;
  t.same(r, { status: 'critical', output: `HTTP GET ${url}: timed out after 1500 ms` });
  t.equal(state.hangs.length, 1);
  await waitFor('the server to see the probe connection close', () => state.hangs[0]!.socket.destroyed, 5_000);

  // An abort from the caller (scheduler stop) ends the probe long before its own timeout.
  const ctl = new AbortController();
  const pending = runProbe({ type: 'http', http: url }, { timeoutMs: 60_000, signal: ctl.signal });
  await waitFor('the second request to arrive', () => state.hangs.length === 2, 5_000);
  ctl.abort();
  t.same(await pending, { status: 'critical', output: `HTTP GET ${url}: probe cancelled` });
});

t.test('HTTP probe reads at most 4 KB of a huge body, cuts UTF-8 safely and stops the download', async (t) => {
  const state = { mode: 'huge' as Mode, hangs: [] as IncomingMessage[], huge: [] as HugeStats[] };
  const server = tracked(createHttpServer(httpHandler(state)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.closeAll());
  // Path lengths that move the cut across all three byte positions of a '€'.
  for (const path of ['/a', '/ab', '/abc']) {
    const url = `http://127.0.0.1:${listening(server)}${path}`;
    const r = await runProbe({ type: 'http', http: url }, { timeoutMs: 10_000 });
    t.equal(r.status, 'passing', path);
    const bytes = Buffer.byteLength(r.output);
    t.ok(bytes <= MAX_CHECK_OUTPUT, `${path}: ${bytes} bytes ≤ ${MAX_CHECK_OUTPUT}`);
    t.ok(bytes > MAX_CHECK_OUTPUT - 30, `${path}: the cap is used, not wasted (${bytes})`);
    t.ok(r.output.startsWith(`HTTP GET ${url}: 200 OK Output: €€€`), path);
    t.ok(r.output.endsWith(TRUNCATED), `${path}: the cut is marked`);
    t.notOk(r.output.includes('\uFFFD'), `${path}: no broken character`);
    t.equal(Buffer.from(r.output, 'utf8').toString('utf8'), r.output, `${path}: valid UTF-8 round trip`);
  }
  await waitFor('the server to see every download cut short', () => state.huge.length === 3 && state.huge.every((h) => h.closedEarly), 10_000);
  for (const h of state.huge) t.ok(h.written < HUGE_CHUNK.length * HUGE_CHUNKS, `server wrote ${h.written} of ${HUGE_CHUNK.length * HUGE_CHUNKS} bytes`);
});

t.test('capOutput never splits a character and marks the cut', async (t) => {
  for (const filler of ['a', '€', '😀', 'é']) {
    for (let pad = 0; pad < 4; pad++) {
      const text = 'x'.repeat(pad) + filler.repeat(5_000);
      const out = capOutput(text);
      t.ok(Buffer.byteLength(out) <= MAX_CHECK_OUTPUT, `${filler}/${pad}`);
      t.ok(out.endsWith(TRUNCATED));
      t.notOk(out.includes('\uFFFD'));
      t.ok(text.startsWith(out.slice(0, -TRUNCATED.length)), 'a prefix of the input');
    }
  }
  t.equal(capOutput('short'), 'short', 'short text untouched');
  t.equal(capOutput('x'.repeat(MAX_CHECK_OUTPUT)), 'x'.repeat(MAX_CHECK_OUTPUT), 'exactly the cap is kept whole');
});

t.test('HTTP probe errors are critical results, never exceptions', async (t) => {
  const port = await new Promise<number>((resolve) => {
    const s = createNetServer().listen(0, '127.0.0.1', () => {
      const p = listening(s);
      s.close(() => resolve(p));
    });
  });
  const refused = await runProbe({ type: 'http', http: `http://127.0.0.1:${port}/` }, { timeoutMs: 5_000 });
  t.equal(refused.status, 'critical');
  t.match(refused.output, new RegExp(`^HTTP GET http://127\\.0\\.0\\.1:${port}/: .*ECONNREFUSED`));
  t.same(await runProbe({ type: 'http', http: 'not a url' }, { timeoutMs: 1_000 }), { status: 'critical', output: 'HTTP GET not a url: invalid URL' });
  t.same(await runProbe({ type: 'http', http: 'ftp://127.0.0.1/' }, { timeoutMs: 1_000 }), {
    status: 'critical',
    output: 'HTTP GET ftp://127.0.0.1/: unsupported scheme ftp:',
  });
  const badHeader = await runProbe({ type: 'http', http: `http://127.0.0.1:${port}/`, header: { 'bad header': ['x'] } }, { timeoutMs: 1_000 });
  t.equal(badHeader.status, 'critical', 'an invalid header name is a critical result');
  t.same(await runProbe({ type: 'bogus' } as unknown as ProbeDefinition, { timeoutMs: 1_000 }), { status: 'critical', output: 'unknown probe type: bogus' });
  t.same(await runProbe({ type: 'http', http: `http://127.0.0.1:${port}/` }, { timeoutMs: -1 }), { status: 'critical', output: 'invalid probe timeout: -1' });
});

// ---------------------------------------------------------------------------------------------
// TLS material for the https and gRPC-over-TLS targets (self-signed, made with openssl).

function selfSigned(t: { teardown: (fn: () => void) => void }): { key: Buffer; cert: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'sider-probe-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
  ], { stdio: 'ignore' });
  return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) };
}

t.test('HTTPS probe: self-signed certificate refused unless tlsSkipVerify', async (t) => {
  const tls = selfSigned(t);
  const server = tracked(createHttpsServer(tls, (_req, res) => res.end('secure')));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.closeAll());
  const url = `https://127.0.0.1:${listening(server)}/`;
  const strict = await runProbe({ type: 'http', http: url }, { timeoutMs: 5_000 });
  t.equal(strict.status, 'critical');
  t.match(strict.output, /self-signed|SELF_SIGNED/i);
  t.same(await runProbe({ type: 'http', http: url, tlsSkipVerify: true }, { timeoutMs: 5_000 }), {
    status: 'passing',
    output: `HTTP GET ${url}: 200 OK Output: secure`,
  });
});

// ---------------------------------------------------------------------------------------------
// TCP

t.test('TCP probe follows a listener that opens, closes and reopens', async (t) => {
  let server = createNetServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = listening(server);
  const addr = `127.0.0.1:${port}`;
  t.same(await runProbe({ type: 'tcp', tcp: addr }, { timeoutMs: 5_000 }), { status: 'passing', output: `TCP connect ${addr}: Success` });
  await new Promise<void>((r) => server.close(() => r()));
  const down = await runProbe({ type: 'tcp', tcp: addr }, { timeoutMs: 5_000 });
  t.equal(down.status, 'critical');
  t.match(down.output, new RegExp(`^TCP connect ${addr}: .*ECONNREFUSED`));
  server = createNetServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  t.same(await runProbe({ type: 'tcp', tcp: addr }, { timeoutMs: 5_000 }), { status: 'passing', output: `TCP connect ${addr}: Success` });
  t.same(await runProbe({ type: 'tcp', tcp: `[::1]:${port}x` }, { timeoutMs: 1_000 }), {
    status: 'critical',
    output: `TCP connect [::1]:${port}x: invalid address, want host:port`,
  });
  t.same(await runProbe({ type: 'tcp', tcp: '127.0.0.1:70000' }, { timeoutMs: 1_000 }), {
    status: 'critical',
    output: 'TCP connect 127.0.0.1:70000: invalid address, want host:port',
  });
});

// ---------------------------------------------------------------------------------------------
// gRPC: a real grpc.health.v1 server (test/support/grpc-health.ts).

t.test('gRPC probe: SERVING passing, NOT_SERVING critical, switched at runtime; unknown service critical', async (t) => {
  const statuses = new Map<string, number>([['', 1], ['api.v1.Api', 1]]);
  const { port, calls } = await startHealthServer(t, statuses);
  const target = `127.0.0.1:${port}/api.v1.Api`;
  t.same(await runProbe({ type: 'grpc', grpc: target }, { timeoutMs: 5_000 }), { status: 'passing', output: `gRPC check ${target}: success` });
  statuses.set('api.v1.Api', 2);
  t.same(await runProbe({ type: 'grpc', grpc: target }, { timeoutMs: 5_000 }), {
    status: 'critical',
    output: `gRPC check ${target}: serving status: NOT_SERVING`,
  });
  statuses.set('api.v1.Api', 0);
  t.same(await runProbe({ type: 'grpc', grpc: target }, { timeoutMs: 5_000 }), {
    status: 'critical',
    output: `gRPC check ${target}: serving status: UNKNOWN`,
  });
  statuses.set('api.v1.Api', 1);
  t.equal((await runProbe({ type: 'grpc', grpc: target }, { timeoutMs: 5_000 })).status, 'passing', 'back to SERVING');
  // Without a service: the server's overall health (empty request message).
  t.same(await runProbe({ type: 'grpc', grpc: `127.0.0.1:${port}` }, { timeoutMs: 5_000 }), {
    status: 'passing',
    output: `gRPC check 127.0.0.1:${port}: success`,
  });
  const unknown = await runProbe({ type: 'grpc', grpc: `127.0.0.1:${port}/nope.Svc` }, { timeoutMs: 5_000 });
  t.equal(unknown.status, 'critical');
  t.match(unknown.output, `gRPC check 127.0.0.1:${port}/nope.Svc: failed: 5 NOT_FOUND: unknown service`);
  t.same(calls, ['api.v1.Api', 'api.v1.Api', 'api.v1.Api', 'api.v1.Api', '', 'nope.Svc'], 'service names reached the server intact');
  t.same(await runProbe({ type: 'grpc', grpc: 'no-port/svc' }, { timeoutMs: 1_000 }), {
    status: 'critical',
    output: 'gRPC check no-port/svc: invalid address, want host:port[/service]',
  });
});

t.test('gRPC probe: deadline, server down, TLS with skip-verify', async (t) => {
  const tls = selfSigned(t);
  const statuses = new Map<string, number>([['ok', 1]]);
  const plain = await startHealthServer(t, statuses, { hang: new Set(['slow']) });
  const slow = await runProbe({ type: 'grpc', grpc: `127.0.0.1:${plain.port}/slow` }, { timeoutMs: 300 });
  t.same(slow, { status: 'critical', output: `gRPC check 127.0.0.1:${plain.port}/slow: failed: timed out after 300 ms` });

  const secure = await startHealthServer(t, statuses, { tls });
  const target = `127.0.0.1:${secure.port}/ok`;
  t.same(await runProbe({ type: 'grpc', grpc: target, grpcUseTls: true, tlsSkipVerify: true }, { timeoutMs: 5_000 }), {
    status: 'passing',
    output: `gRPC check ${target}: success`,
  });
  const strict = await runProbe({ type: 'grpc', grpc: target, grpcUseTls: true }, { timeoutMs: 5_000 });
  t.equal(strict.status, 'critical', 'an unverifiable certificate is critical without skip-verify');
  const plainToTls = await runProbe({ type: 'grpc', grpc: target }, { timeoutMs: 2_000 });
  t.equal(plainToTls.status, 'critical', 'plaintext to a TLS server is critical');

  const port = await new Promise<number>((resolve) => {
    const s = createNetServer().listen(0, '127.0.0.1', () => {
      const p = listening(s);
      s.close(() => resolve(p));
    });
  });
  const down = await runProbe({ type: 'grpc', grpc: `127.0.0.1:${port}/ok` }, { timeoutMs: 5_000 });
  t.equal(down.status, 'critical');
  t.match(down.output, /UNAVAILABLE/);
});

t.test('gRPC probes leak no sockets or timers: handle counts return to the baseline', async (t) => {
  const statuses = new Map<string, number>([['svc', 1]]);
  const { port } = await startHealthServer(t, statuses);
  // Warm up once (module-level state of grpc-js), then take the baseline.
  await runProbe({ type: 'grpc', grpc: `127.0.0.1:${port}/svc` }, { timeoutMs: 5_000 });
  await waitFor('warm-up sockets to close', () => resources('TCPSocketWrap') === 0, 10_000);
  const baseTimers = resources('Timeout');
  const N = 40;
  for (let i = 0; i < N; i++) {
    const r = await runProbe({ type: 'grpc', grpc: `127.0.0.1:${port}/svc` }, { timeoutMs: 5_000 });
    t.equal(r.status, 'passing', `probe ${i}`);
  }
  // The server side of each connection closes when the probe's channel closes.
  await waitFor('every probe socket (both ends) to close', () => resources('TCPSocketWrap') === 0, 10_000);
  await waitFor(`timers back to the baseline ${baseTimers}`, () => resources('Timeout') <= baseTimers, 10_000);
  t.pass(`after ${N} probes: 0 sockets open, ${resources('Timeout')} timers (baseline ${baseTimers})`);
});

// ---------------------------------------------------------------------------------------------
// Script checks

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

t.test('script probe: exit 0 passing, 1 warning, other critical; stdout and stderr captured', async (t) => {
  const run = (code: string): Promise<ProbeResult> => runProbe({ type: 'cmd', args: [NODE, '-e', code] }, { timeoutMs: 10_000, allowScripts: true });
  t.same(await run('process.stdout.write("all good")'), { status: 'passing', output: 'all good' });
  t.same(await run('process.stdout.write("meh"); process.exit(1)'), { status: 'warning', output: 'meh' });
  t.same(await run('process.stderr.write("bad"); process.exit(2)'), { status: 'critical', output: 'bad' });
  t.same(await run('process.exit(3)'), { status: 'critical', output: 'exit status 3' });
  t.same(await run('process.kill(process.pid, "SIGTERM")'), { status: 'critical', output: 'killed by signal SIGTERM' });
  const both = await run('process.stdout.write("out;"); setTimeout(() => process.stderr.write("err"), 50)');
  t.same(both, { status: 'passing', output: 'out;err' });
  const huge = await run('process.stdout.write("é".repeat(100000)); process.exit(1)');
  t.equal(huge.status, 'warning');
  t.ok(Buffer.byteLength(huge.output) <= MAX_CHECK_OUTPUT);
  t.ok(huge.output.endsWith(TRUNCATED));
  t.notOk(huge.output.includes('\uFFFD'));
});

t.test('script probe runs argv without a shell', async (t) => {
  const r = await runProbe({ type: 'cmd', args: [NODE, '-e', 'process.stdout.write(process.argv.slice(1).join("|"))', '$HOME; echo x', '`id`'] }, {
    timeoutMs: 10_000,
    allowScripts: true,
  });
  t.same(r, { status: 'passing', output: '$HOME; echo x|`id`' });
  const missing = await runProbe({ type: 'cmd', args: ['/nonexistent/sider-check'] }, { timeoutMs: 5_000, allowScripts: true });
  t.equal(missing.status, 'critical');
  t.match(missing.output, /ENOENT/);
  t.same(await runProbe({ type: 'cmd', args: [] }, { timeoutMs: 5_000, allowScripts: true }), {
    status: 'critical',
    output: 'script check has no command (args is empty)',
  });
});

t.test('script probe does not pass Sider’s own environment (the cluster key) to the script', async (t) => {
  const saved = process.env.SIDER_CLUSTER_KEY;
  process.env.SIDER_CLUSTER_KEY = 'a-secret-that-scripts-must-not-see';
  process.env.PROBE_TEST_VISIBLE = 'visible';
  t.teardown(() => {
    if (saved === undefined) delete process.env.SIDER_CLUSTER_KEY;
    else process.env.SIDER_CLUSTER_KEY = saved;
    delete process.env.PROBE_TEST_VISIBLE;
  });
  const r = await runProbe(
    { type: 'cmd', args: [NODE, '-e', 'process.stdout.write(`${process.env.SIDER_CLUSTER_KEY}|${process.env.PROBE_TEST_VISIBLE}`)'] },
    { timeoutMs: 10_000, allowScripts: true },
  );
  t.same(r, { status: 'passing', output: 'undefined|visible' });
});

t.test('script probe is refused when script checks are disabled, and nothing runs', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sider-probe-cmd-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const marker = join(dir, 'ran');
  const def: ProbeDefinition = { type: 'cmd', args: [NODE, '-e', `require("fs").writeFileSync(${JSON.stringify(marker)}, "x")`] };
  t.same(await runProbe(def, { timeoutMs: 5_000 }), { status: 'critical', output: 'script checks are disabled' });
  t.same(await runProbe(def, { timeoutMs: 5_000, allowScripts: false }), { status: 'critical', output: 'script checks are disabled' });
  t.notOk(existsSync(marker), 'the command did not run');
  t.equal((await runProbe(def, { timeoutMs: 10_000, allowScripts: true })).status, 'passing');
  t.ok(existsSync(marker), 'the same command runs when allowed (the refusal was not an accident)');
});

t.test('a sleeping script and its children are killed at the timeout', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sider-probe-sleep-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const pidFile = join(dir, 'pids');
  // The script starts a grandchild (same process group), records both PIDs, prints, then sleeps.
  const code = `
    const { spawn } = require('node:child_process');
    const g = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    require('node:fs').writeFileSync(${JSON.stringify(pidFile)}, process.pid + ' ' + g.pid);
    process.stdout.write('started');
    setTimeout(() => {}, 60000);`;
  // The timeout covers Node's start-up, the grandchild's spawn and the PID file on a loaded machine.
  const probe = runProbe({ type: 'cmd', args: [NODE, '-e', code] }, { timeoutMs: 5_000, allowScripts: true });
  const pids = await waitFor(
    'the script to record both PIDs',
    () => {
      const text = readFileSync(pidFile, 'utf8');
      const got = text.split(' ').map(Number);
      if (got.length !== 2 || !got.every((p) => Number.isInteger(p) && p > 0)) throw new Error(`the PID file holds ${JSON.stringify(text)}`);
      return got;
    },
    30_000,
  );
  const r = await probe;
  t.same(r, { status: 'critical', output: 'Timed out (5000 ms) running check\nstarted' });
  t.equal(pids.length, 2);
  await waitFor('the script and its child to be gone', () => pids.every((p) => !alive(p)), 10_000);
  t.pass('both processes are dead');
});

// ---------------------------------------------------------------------------------------------
// The scheduler with real probes

t.test('scheduler: real HTTP checks flip status; stop() aborts probes in flight and leaves no handles', async (t) => {
  const state = { mode: 'ok' as Mode, hangs: [] as IncomingMessage[], huge: [] as HugeStats[] };
  const server = tracked(createHttpServer(httpHandler(state)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.closeAll());
  const url = `http://127.0.0.1:${listening(server)}/`;
  const baseTimers = resources('Timeout');
  // stdio of the test process itself may be pipes: compare with the counts before the test.
  const base = Object.fromEntries(['TCPSocketWrap', 'ProcessWrap', 'PipeWrap'].map((k) => [k, resources(k)]));

  const transitions: string[] = [];
  const sched = new CheckScheduler({ onTransition: (key, status) => transitions.push(`${key}:${status}`), allowScripts: true });
  const check = (key: string, probe: ProbeDefinition) => ({
    key,
    probe,
    intervalMs: 50,
    timeoutMs: 60_000,
    successBeforePassing: 1,
    failuresBeforeCritical: 2,
    status: 'critical' as const,
  });
  const checks = Array.from({ length: 10 }, (_, i) => check(`http-${i}`, { type: 'http', http: `${url}${i}` }));
  sched.sync(checks);
  await waitFor('all checks to pass', () => checks.every((c) => transitions.includes(`${c.key}:passing`)), 10_000);
  state.mode = 'fail';
  await waitFor('all checks to go critical', () => checks.every((c) => transitions.includes(`${c.key}:critical`)), 10_000);

  // Now every target hangs, and a script sleeps: probes stay in flight until stop().
  state.mode = 'hang';
  sched.sync([...checks.map((c) => ({ ...c, status: 'critical' as const })), check('sleeper', { type: 'cmd', args: [NODE, '-e', 'setTimeout(() => {}, 60000)'] })]);
  await waitFor('probes in flight against the hanging target', () => state.hangs.length >= 10 && sched.inFlight >= 11, 10_000);
  sched.stop();
  t.equal(sched.size, 0);
  await waitFor('in-flight probes to end', () => sched.inFlight === 0, 10_000);
  await waitFor(
    `no sockets, processes or pipes left beyond ${JSON.stringify(base)}`,
    () => Object.entries(base).every(([k, n]) => resources(k) <= n),
    10_000,
  );
  await waitFor(`timers back to the baseline ${baseTimers}`, () => resources('Timeout') <= baseTimers, 10_000);
  const after = transitions.length;
  await new Promise((r) => setTimeout(r, 200));
  t.equal(transitions.length, after, 'nothing reported after stop()');
});
