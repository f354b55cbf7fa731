// The public API's JSON body reader on a real socket: compressed bodies, a BOM, the size limit with
// and without Content-Length, strictness, prototype keys, and a client that leaves mid-body.

import { connect } from 'node:net';
import { Readable } from 'node:stream';
import { gzipSync, deflateSync, brotliCompressSync } from 'node:zlib';
import t from 'tap';
import { request } from 'undici';
import { createHttpApp } from '../../http/app.ts';
import { BlockingQueries } from '../../http/blocking.ts';
import { parseJsonBody } from '../../http/body.ts';
import { LocalRegistry, listenForTest } from '../support/local-registry.ts';

async function start(tt: { teardown: (fn: () => unknown) => void }, jsonLimit?: number) {
  const reg = new LocalRegistry();
  const app = createHttpApp(reg, { blocking: new BlockingQueries({ max: 100 }), ...(jsonLimit ? { jsonLimit } : {}) });
  const { port } = await listenForTest(tt, app);
  const put = async (body: string | Buffer | Readable, headers: Record<string, string> = {}) => {
    const res = await request(`http://127.0.0.1:${port}/v1/agent/service/register`, { method: 'PUT', headers, body, signal: AbortSignal.timeout(10_000) });
    return { status: res.statusCode, text: await res.body.text() };
  };
  return { reg, port, put };
}

const body = JSON.stringify({ Name: 'web', ID: 'w1', Port: 80 });

t.test('gzip, deflate and br bodies are decompressed; other encodings get 415', async (t) => {
  const h = await start(t);
  for (const [enc, bytes] of [
    ['gzip', gzipSync(body)],
    ['deflate', deflateSync(body)],
    ['br', brotliCompressSync(body)],
  ] as const) {
    const r = await h.put(bytes, { 'content-encoding': enc });
    t.equal(r.status, 200, `${enc}: ${r.text}`);
  }
  t.equal(h.reg.writes.length, 3);
  const r = await h.put(body, { 'content-encoding': 'compress' });
  t.equal(r.status, 415);
  t.match(r.text, /^unsupported request body encoding: Unsupported Content-Encoding: compress/);
  const broken = await h.put(Buffer.from('not gzip at all'), { 'content-encoding': 'gzip' });
  t.equal(broken.status, 400, 'a body that does not decompress is a 400');
  t.match(broken.text, /^malformed JSON body: cannot decompress/);
  t.equal(h.reg.writes.length, 3, 'nothing refused reached the registry');
});

t.test('the limit holds for declared, chunked and decompressed sizes', async (t) => {
  const h = await start(t, 1000);
  const big = JSON.stringify({ Name: 'web', Notes: 'x'.repeat(2000) });
  const declared = await h.put(big);
  t.equal(declared.status, 413);
  t.match(declared.text, /^request body larger than 1000 bytes/);
  async function* chunks(): AsyncIterable<Buffer> {
    for (let i = 0; i < 10; i++) yield Buffer.from(i === 0 ? '{"Name":"web","Notes":"' : 'y'.repeat(300));
  }
  const chunked = await h.put(Readable.from(chunks()));
  t.equal(chunked.status, 413, 'a chunked body without Content-Length is cut at the limit too');
  const bomb = await h.put(gzipSync(big), { 'content-encoding': 'gzip' });
  t.equal(bomb.status, 413, 'the limit applies after decompression');
  t.equal(h.reg.writes.length, 0);
  t.equal((await h.put(body)).status, 200, 'the server keeps serving');
});

t.test('a UTF-8 byte order mark is skipped; empty means {}; strictness and prototype keys', async (t) => {
  const h = await start(t);
  const bom = await h.put(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(body)]));
  t.equal(bom.status, 200, bom.text);
  const empty = await h.put('');
  t.equal(empty.status, 400);
  t.match(empty.text, /^Name: required/, 'an empty body is an empty object, refused for what it lacks');
  const scalar = await h.put('  42');
  t.equal(scalar.status, 400);
  t.match(scalar.text, /^malformed JSON body: invalid JSON, only supports object and array/);
  const proto = await h.put('{"Name":"web","Meta":{"__proto__":{"polluted":"yes"}}}');
  t.equal(proto.status, 400);
  t.match(proto.text, /^malformed JSON body: Object contains forbidden prototype property/);
  const escaped = await h.put('{"Name":"web","\\u005f_proto__":{}}');
  t.equal(escaped.status, 400, 'an escaped __proto__ key is found too');
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype was touched');
  t.same(parseJsonBody('{"a":{"__proto_":1}}'), { a: { __proto_: 1 } }, 'near misses are ordinary keys');
});

t.test('a client that leaves in the middle of its body neither hangs nor breaks the server', async (t) => {
  const h = await start(t);
  await new Promise<void>((resolve, reject) => {
    const s = connect(h.port, '127.0.0.1', () => {
      s.write('PUT /v1/agent/service/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"Name":"we');
      setImmediate(() => {
        s.destroy();
        resolve();
      });
    });
    s.on('error', reject);
  });
  // The server answers the next request normally, and the half body applied nothing.
  const r = await h.put(body);
  t.equal(r.status, 200);
  t.equal(h.reg.writes.length, 1);
});
