// DNS clients for tests: raw UDP and TCP exchanges with a deadline, query building with dns2, and
// dig (Debian bind9-dnsutils) when it is installed.

import { spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { Packet } from 'dns2';

export const HAS_DIG = spawnSync('dig', ['-v'], { stdio: 'ignore' }).error === undefined;
export const NO_DIG = HAS_DIG ? false : 'dig is not installed (apt-get install -y bind9-dnsutils)';

export interface QueryOpts {
  id?: number;
  rd?: boolean;
  qclass?: number;
  /** Adds an OPT record with this UDP size. */
  edns?: number;
  ednsVersion?: number;
  opcode?: number;
}

/** A query in wire form, built by dns2 (the server's own encoder is not used to test it). */
export function buildQuery(name: string, qtype: number, o: QueryOpts = {}): Buffer {
  const p = new Packet({ id: o.id ?? 0x4242, rd: o.rd === false ? 0 : 1, opcode: o.opcode ?? 0 } as never);
  p.questions.push({ name, type: qtype, class: o.qclass ?? 1 } as never);
  if (o.edns !== undefined) p.additionals.push(Packet.Resource.EDNS([], { udpPayloadSize: o.edns, version: o.ednsVersion ?? 0 } as never) as never);
  return p.toBuffer();
}

/** Sends one datagram and waits for one reply; null when none comes within `ms`. */
export async function udpExchange(port: number, msg: Buffer, ms = 2000): Promise<Buffer | null> {
  const sock = createSocket('udp4');
  try {
    return await new Promise<Buffer | null>((resolve, reject) => {
      const timer = setTimeout(() => resolve(null), ms);
      sock.once('message', (data) => {
        clearTimeout(timer);
        resolve(data);
      });
      sock.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      sock.send(msg, port, '127.0.0.1');
    });
  } finally {
    sock.close();
  }
}

/** Sends length-prefixed messages on one TCP connection; resolves with the replies received within `ms`. */
export async function tcpExchange(port: number, msgs: Buffer[], want: number, ms = 3000): Promise<Buffer[]> {
  return new Promise<Buffer[]>((resolve, reject) => {
    const replies: Buffer[] = [];
    let buf = Buffer.alloc(0);
    const sock = connect(port, '127.0.0.1');
    const done = (): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(replies);
    };
    const timer = setTimeout(done, ms);
    sock.on('connect', () => {
      for (const m of msgs) {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(m.length);
        sock.write(Buffer.concat([len, m]));
      }
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const n = buf.readUInt16BE(0);
        replies.push(buf.subarray(2, 2 + n));
        buf = buf.subarray(2 + n);
      }
      if (replies.length >= want) done();
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      if (replies.length > 0) resolve(replies);
      else reject(err);
    });
    sock.on('close', () => done());
  });
}

export function parseReply(buf: Buffer): Packet {
  return Packet.parse(buf);
}

export interface DigResult {
  status: string;
  flags: string[];
  counts: { query: number; answer: number; authority: number; additional: number };
  answers: string[];
  text: string;
}

/** Runs dig against 127.0.0.1:port and parses its header, flags and answer lines. */
export async function dig(port: number, args: string[], ms = 10_000): Promise<DigResult> {
  const argv = ['@127.0.0.1', '-p', String(port), '+norec', '+time=2', '+tries=1', ...args];
  const text = await new Promise<string>((resolve, reject) => {
    const child = spawn('dig', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
  const status = /status: (\w+)/.exec(text)?.[1] ?? '';
  const flags = (/;; flags: ([a-z ]*);/.exec(text)?.[1] ?? '').trim().split(/\s+/).filter(Boolean);
  const c = /QUERY: (\d+), ANSWER: (\d+), AUTHORITY: (\d+), ADDITIONAL: (\d+)/.exec(text);
  const counts = { query: Number(c?.[1] ?? -1), answer: Number(c?.[2] ?? -1), authority: Number(c?.[3] ?? -1), additional: Number(c?.[4] ?? -1) };
  const section = /;; ANSWER SECTION:\n([\s\S]*?)\n\n/.exec(text)?.[1] ?? '';
  const answers = section.split('\n').filter((l) => l.trim() !== '' && !l.startsWith(';')).map((l) => l.split(/\s+/).join(' '));
  return { status, flags, counts, answers, text };
}
