// A real grpc.health.v1 Health service built with @grpc/grpc-js for probe tests; its messages are
// coded here independently of the prober's coder, so a coding bug on one side cannot hide itself.

import * as grpc from '@grpc/grpc-js';

/** The `service` field of a HealthCheckRequest (field 1, a short string). */
function decodeRequestHere(buf: Buffer): string {
  if (buf.length === 0) return '';
  if (buf[0] !== 0x0a || (buf[1] ?? 0) >= 0x80) throw new Error('unexpected request encoding in test server');
  return buf.subarray(2, 2 + buf[1]!).toString('utf8');
}

/**
 * A grpc.health.v1 Health/Check server on 127.0.0.1 (port chosen by the OS). `statuses` maps a
 * service name ('' = the server as a whole) to its ServingStatus number (1 SERVING, 2 NOT_SERVING);
 * the test flips it at runtime; an absent name answers NOT_FOUND, one in `hang` never answers.
 * Every request's service name is appended to `calls`. Shut down (forced) at `t`'s teardown.
 */
export async function startHealthServer(
  t: { teardown: (fn: () => unknown) => void },
  statuses: Map<string, number>,
  opts: { tls?: { key: Buffer; cert: Buffer }; hang?: Set<string> } = {},
): Promise<{ port: number; calls: string[] }> {
  const calls: string[] = [];
  const server = new grpc.Server();
  server.addService(
    {
      Check: {
        path: '/grpc.health.v1.Health/Check',
        requestStream: false,
        responseStream: false,
        requestSerialize: (v: Buffer) => v,
        requestDeserialize: (b: Buffer) => b,
        responseSerialize: (v: Buffer) => v,
        responseDeserialize: (b: Buffer) => b,
      },
    },
    {
      Check: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        const service = decodeRequestHere(call.request);
        calls.push(service);
        if (opts.hang?.has(service)) return;
        const st = statuses.get(service);
        if (st === undefined) cb({ code: grpc.status.NOT_FOUND, details: 'unknown service' });
        else cb(null, st === 0 ? Buffer.alloc(0) : Buffer.from([0x08, st]));
      },
    },
  );
  const creds = opts.tls
    ? grpc.ServerCredentials.createSsl(null, [{ private_key: opts.tls.key, cert_chain: opts.tls.cert }], false)
    : grpc.ServerCredentials.createInsecure();
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', creds, (err, p) => (err ? reject(err) : resolve(p))),
  );
  t.teardown(() => server.forceShutdown());
  return { port, calls };
}
