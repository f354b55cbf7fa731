// Parked blocking queries woken together on keep-alive connections (http/blocking.ts): the answers
// written from a batch's shared buffer are byte for byte what Node and Koa write for the same read,
// and each connection goes on serving keep-alive and pipelined requests afterwards.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import t from 'tap';
import { createHttpApp } from '../../http/app.ts';
import { BlockingQueries } from '../../http/blocking.ts';
import { LocalRegistry, listenForTest } from '../support/local-registry.ts';

interface Answer {
  /** Status line, e.g. "HTTP/1.1 200 OK". */
  status: string;
  /** Header lines as sent, in order, without Date. */
  headers: string[];
  date: string | undefined;
  body: string;
}

const DEADLINE_MS = 10_000;

/** One raw keep-alive connection that reads answers one at a time (Content-Length bodies). */
class Conn {
  readonly sock: Socket;
  #buf = '';
  #ended = false;
  #wake: (() => void) | null = null;

  private constructor(sock: Socket) {
    this.sock = sock;
    sock.on('data', (d: Buffer) => {
      this.#buf += d.toString('latin1');
      this.#wake?.();
    });
    sock.on('end', () => {
      this.#ended = true;
      this.#wake?.();
    });
    sock.on('error', () => {});
  }

  static async open(port: number, tt: { teardown: (fn: () => unknown) => void }): Promise<Conn> {
    const sock = connect({ host: '127.0.0.1', port });
    tt.teardown(() => sock.destroy());
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', () => resolve());
      sock.once('error', reject);
    });
    return new Conn(sock);
  }

  send(path: string, extra = '', version = '1.1'): void {
    this.sock.write(`GET ${path} HTTP/${version}\r\nHost: 127.0.0.1\r\n${extra}\r\n`);
  }

  /** Whether the server has closed its side (after everything it sent was read). */
  get ended(): boolean {
    return this.#ended && this.#buf === '';
  }

  /** Resolves once the server has closed its side, or rejects after the deadline. */
  async closed(): Promise<void> {
    const deadline = Date.now() + DEADLINE_MS;
    while (!this.#ended) {
      if (Date.now() > deadline) throw new Error('the server did not close the connection');
      await this.#more(deadline);
    }
  }

  /** The next complete answer on this connection. */
  async next(): Promise<Answer> {
    const deadline = Date.now() + DEADLINE_MS;
    for (;;) {
      const end = this.#buf.indexOf('\r\n\r\n');
      if (end >= 0) {
        const lines = this.#buf.slice(0, end).split('\r\n');
        const len = lines.find((l) => /^content-length:/i.test(l));
        if (!len) throw new Error(`no Content-Length in ${JSON.stringify(lines)}`);
        const total = end + 4 + Number(len.slice(len.indexOf(':') + 1).trim());
        if (Buffer.byteLength(this.#buf, 'latin1') >= total) {
          const body = Buffer.from(this.#buf.slice(end + 4, total), 'latin1').toString('utf8');
          this.#buf = this.#buf.slice(total);
          const date = lines.find((l) => /^date:/i.test(l));
          return { status: lines[0]!, headers: lines.slice(1).filter((l) => !/^date:/i.test(l)), date, body };
        }
      }
      if (this.#ended) throw new Error(`connection closed with ${JSON.stringify(this.#buf.slice(0, 200))} unread`);
      if (Date.now() > deadline) throw new Error(`no complete answer within ${DEADLINE_MS} ms: ${JSON.stringify(this.#buf.slice(0, 200))}`);
      await this.#more(deadline);
    }
  }

  #more(deadline: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = null;
        resolve();
      }, Math.max(1, deadline - Date.now()));
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = null;
        resolve();
      };
    });
  }
}

async function start(tt: { teardown: (fn: () => unknown) => void }) {
  const reg = new LocalRegistry();
  const blocking = new BlockingQueries({ max: 1000 });
  const app = createHttpApp(reg, { blocking });
  const { server, port } = await listenForTest(tt, app);
  const responses: ServerResponse[] = [];
  server.prependListener('request', (_req: IncomingMessage, res: ServerResponse) => responses.push(res));
  const put = async (path: string, body: unknown): Promise<void> => {
    const r = await fetch(`http://127.0.0.1:${port}${path}`, { method: 'PUT', body: body === undefined ? undefined : JSON.stringify(body) });
    await r.arrayBuffer();
    if (r.status !== 200) throw new Error(`PUT ${path}: HTTP ${r.status}`);
  };
  return {
    reg,
    blocking,
    port,
    responses,
    register: (body: unknown) => put('/v1/agent/service/register', body),
    deregister: (id: string) => put(`/v1/agent/service/deregister/${encodeURIComponent(id)}`, undefined),
  };
}

async function until(what: string, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function indexOf(a: Answer): number {
  const h = a.headers.find((l) => /^x-consul-index:/i.test(l));
  return Number(h?.slice(h.indexOf(':') + 1).trim());
}

const withQuery = (path: string, q: string): string => `${path}${path.includes('?') ? '&' : '?'}${q}`;
const CONNS = 4;

t.test('answers woken together on keep-alive connections are byte for byte a non-blocking read of the same state', async (t) => {
  const h = await start(t);
  await h.register({ Name: 'web', ID: 'w1', Tags: ['a'], Check: { TTL: '10s' } });
  const cases: { path: string; change: (i: number) => Promise<void> }[] = [
    ...['/v1/health/service/web', '/v1/health/service/web?pretty', '/v1/health/service/web?stale', '/v1/catalog/services', '/v1/agent/services'].map((path) => ({
      path,
      change: (i: number) => h.register({ Name: 'web', ID: 'w1', Tags: ['a', `t${i}`], Check: { TTL: '10s' } }),
    })),
    // An error reply (the render fails once w1 is gone): the error middleware's status line and text.
    { path: '/v1/agent/service/w1', change: () => h.deregister('w1') },
  ];
  for (const [i, { path, change }] of cases.entries()) {
    const probe = await Conn.open(h.port, t);
    probe.send(path);
    const before = await probe.next();
    const conns = await Promise.all(Array.from({ length: CONNS }, () => Conn.open(h.port, t)));
    for (const c of conns) c.send(withQuery(path, `index=${indexOf(before)}&wait=30s`));
    await until(`${path} parked ${CONNS} times`, () => h.blocking.held === CONNS);
    const shared = h.blocking.sharedAnswers;
    const firstResponse = h.responses.length - CONNS;
    await change(i);
    const woken = await Promise.all(conns.map((c) => c.next()));
    probe.send(path);
    const now = await probe.next();
    t.ok(h.blocking.sharedAnswers - shared >= CONNS - 1, `${path}: all but the first answer written from the shared buffer`);
    for (const [k, a] of woken.entries()) {
      t.equal(a.status, now.status, `${path} #${k}: the same status line`);
      t.same(a.headers, now.headers, `${path} #${k}: the same header lines, in the same order`);
      t.equal(a.body, now.body, `${path} #${k}: the same body`);
      t.match(a.date, /^Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$/, `${path} #${k}: a Date`);
    }
    t.ok(
      now.headers.includes('Connection: keep-alive') && now.headers.some((l) => l.startsWith('Keep-Alive: timeout=')),
      `${path}: keep-alive headers (${now.headers.join(' | ')})`,
    );
    // What Node's server and the metrics middleware see: each response finished and closed.
    const parked = h.responses.slice(firstResponse, firstResponse + CONNS);
    await until(`${path}: the parked responses closed`, () => parked.every((r) => r.closed));
    t.ok(
      parked.every((r) => r.writableFinished),
      `${path}: every parked response finished`,
    );
    probe.sock.destroy();
    for (const c of conns) c.sock.destroy();
  }
  t.equal(h.blocking.held, 0);
  t.equal(h.reg.activeWatches, 0);
});

t.test('the connection of a woken answer serves the next request, and parks and wakes again', async (t) => {
  const h = await start(t);
  await h.register({ Name: 'web', ID: 'w1' });
  const path = '/v1/health/service/web';
  const conns = await Promise.all(Array.from({ length: CONNS }, () => Conn.open(h.port, t)));
  conns[0]!.send(path);
  let index = indexOf(await conns[0]!.next());
  for (let round = 0; round < 3; round++) {
    for (const c of conns) c.send(`${path}?index=${index}&wait=30s`);
    await until(`round ${round}: parked`, () => h.blocking.held === CONNS);
    const shared = h.blocking.sharedAnswers;
    await h.register({ Name: 'web', ID: `w${round + 2}` });
    const woken = await Promise.all(conns.map((c) => c.next()));
    t.ok(h.blocking.sharedAnswers - shared >= CONNS - 1, `round ${round}: shared answers`);
    for (const a of woken) t.ok(indexOf(a) > index, `round ${round}: a higher index`);
    t.equal(JSON.parse(woken[0]!.body).length, round + 2, `round ${round}: the new instance is in the answer`);
    // A plain read on the same connection right after the woken answer.
    for (const c of conns) c.send('/v1/catalog/services');
    for (const c of conns) {
      const a = await c.next();
      t.equal(a.status, 'HTTP/1.1 200 OK');
      t.same(JSON.parse(a.body), { web: [] });
    }
    index = indexOf(woken[0]!);
  }
  t.notOk(
    conns.some((c) => c.ended),
    'every connection is still open',
  );
});

t.test('a request pipelined behind a parked one is answered right after the woken answer', async (t) => {
  const h = await start(t);
  await h.register({ Name: 'web', ID: 'w1' });
  const conns = await Promise.all(Array.from({ length: CONNS }, () => Conn.open(h.port, t)));
  conns[0]!.send('/v1/health/service/web');
  const index = indexOf(await conns[0]!.next());
  for (const c of conns) c.sock.write(`GET /v1/health/service/web?index=${index}&wait=30s HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/agent/services HTTP/1.1\r\nHost: x\r\n\r\n`);
  await until('parked', () => h.blocking.held === CONNS);
  const shared = h.blocking.sharedAnswers;
  await h.register({ Name: 'web', ID: 'w2' });
  for (const c of conns) {
    const woken = await c.next();
    const behind = await c.next();
    t.ok(indexOf(woken) > index, 'first the woken answer');
    // Koa answered it on arrival, before the change; Node held that answer until the parked one's.
    t.same(Object.keys(JSON.parse(behind.body)), ['w1'], 'then the pipelined read, as of its arrival');
  }
  t.ok(h.blocking.sharedAnswers - shared >= CONNS - 1, 'the woken answers came from the shared buffer');
  // And the connections go on.
  for (const c of conns) c.send('/v1/catalog/services');
  for (const c of conns) t.equal((await c.next()).status, 'HTTP/1.1 200 OK');
});

t.test('Connection: close and HTTP/1.0 waiters are answered by Node and closed; keep-alive ones beside them stay open', async (t) => {
  const h = await start(t);
  await h.register({ Name: 'web', ID: 'w1' });
  const path = '/v1/health/service/web';
  const probe = await Conn.open(h.port, t);
  probe.send(path);
  const index = indexOf(await probe.next());
  const kinds: { extra: string; version: string; closes: boolean }[] = [
    { extra: 'Connection: close\r\n', version: '1.1', closes: true },
    { extra: '', version: '1.1', closes: false },
    { extra: '', version: '1.0', closes: true },
    { extra: '', version: '1.1', closes: false },
    { extra: 'Connection: keep-alive\r\n', version: '1.0', closes: false },
    { extra: '', version: '1.1', closes: false },
  ];
  const conns = await Promise.all(kinds.map(() => Conn.open(h.port, t)));
  for (const [i, k] of kinds.entries()) conns[i]!.send(`${path}?index=${index}&wait=30s`, k.extra, k.version);
  await until('parked', () => h.blocking.held === kinds.length);
  await h.register({ Name: 'web', ID: 'w2' });
  const answers = await Promise.all(conns.map((c) => c.next()));
  probe.send(path);
  const now = await probe.next();
  for (const [i, k] of kinds.entries()) {
    const a = answers[i]!;
    t.equal(a.body, now.body, `#${i}: the current body`);
    if (k.closes) {
      t.ok(a.headers.includes('Connection: close'), `#${i} (HTTP/${k.version} ${k.extra.trim()}): Connection: close`);
      await conns[i]!.closed();
    } else {
      t.same(a.headers, now.headers, `#${i}: the keep-alive headers`);
      conns[i]!.send('/v1/catalog/services');
      t.equal((await conns[i]!.next()).status, 'HTTP/1.1 200 OK', `#${i}: still serving`);
    }
  }
});

t.test("a parked query leaves none of Koa's listeners on its response or socket, however often a connection parks", async (t) => {
  const h = await start(t);
  await h.register({ Name: 'web', ID: 'w1' });
  const path = '/v1/health/service/web';
  const conn = await Conn.open(h.port, t);
  conn.send(path);
  let index = indexOf(await conn.next());
  const socket = h.responses.at(-1)!.req.socket;
  const counts = (): number[] => ['error', 'close', 'end', 'timeout'].map((e) => socket.listenerCount(e));
  // What the connection carries between requests, after a plain read that Koa answered.
  const idle = counts();
  for (let round = 0; round < 5; round++) {
    conn.send(`${path}?index=${index}&wait=30s`);
    await until(`round ${round}: parked`, () => h.blocking.held === 1);
    const res = h.responses.at(-1)!;
    t.equal(res.req.socket, socket, `round ${round}: the same connection`);
    // on-finished watches through ee-first, whose listeners are all named onevent.
    const koa = ['end', 'finish', 'error', 'close'].flatMap((e) => [...res.listeners(e), ...socket.listeners(e)]).filter((f) => f.name === 'onevent');
    t.same(koa, [], `round ${round}: no on-finished (ee-first) listener on the held response or its socket`);
    await h.register({ Name: 'web', ID: `w${round + 2}` });
    const woken = await conn.next();
    t.ok(indexOf(woken) > index, `round ${round}: woken with a higher index`);
    index = indexOf(woken);
    await until(`round ${round}: the response closed`, () => res.closed);
  }
  t.same(counts(), idle, 'after 5 parked queries the connection has what it had');
  // A held query whose client goes away is still released (BlockingQueries watches the response).
  conn.send(`${path}?index=${index}&wait=30s`);
  await until('parked once more', () => h.blocking.held === 1);
  conn.sock.destroy();
  await until('released when the client left', () => h.blocking.held === 0);
  t.equal(h.reg.activeWatches, 0, 'and its registry watcher with it');
});
