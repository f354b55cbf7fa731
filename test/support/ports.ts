// Free loopback ports for tests, for servers (often child processes) that bind them a moment later.
//
// A port the kernel picks for bind(0) comes from the ephemeral range, the same range every outgoing
// connection takes its local port from: between the check and the server's own bind, a client
// connection anywhere on the machine could take it (EADDRINUSE, seen in CI). So the ports come from
// below that range, where only listeners live. Each test process walks its own slice of it (chosen
// by PID, starting at a random offset) so that concurrently running test files rarely try the same
// port, and a port of the slice is handed out at most once per process. Every candidate is checked by binding it.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

const LOW = 10_000;
const SLICES = 64;

function ephemeralLow(): number {
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(first) && first > 0 ? first : 32_768;
  } catch {
    return 32_768; // Linux's default
  }
}

const HIGH = Math.min(ephemeralLow(), 65_536) - 1;
const SLICE_SIZE = Math.floor((HIGH - LOW + 1) / SLICES);
const SLICE_START = LOW + (process.pid % SLICES) * SLICE_SIZE;
let cursor = Math.floor(Math.random() * Math.max(SLICE_SIZE, 1));
const handedOut = new Set<number>();

function bindAndRelease(port: number, host: string): Promise<number | null> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(null));
    s.listen(port, host, () => {
      const addr = s.address();
      const bound = typeof addr === 'object' && addr ? addr.port : null;
      s.close(() => resolve(bound));
    });
  });
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  // Below the ephemeral range when there is room for it, else (an unusual port range) bind(0).
  if (SLICE_SIZE >= 64) {
    for (let tries = 0; tries < SLICE_SIZE; tries++) {
      const port = SLICE_START + (cursor++ % SLICE_SIZE);
      if (handedOut.has(port)) continue;
      if ((await bindAndRelease(port, host)) === port) {
        handedOut.add(port);
        return port;
      }
    }
  }
  const port = await bindAndRelease(0, host);
  if (port === null) throw new Error(`no free port on ${host}`);
  return port;
}

/** Polls `cond` until it returns a truthy value or `ms` runs out. */
export async function waitFor<T>(what: string, cond: () => T | Promise<T>, ms = 10_000, every = 20): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await cond();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, every));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}
