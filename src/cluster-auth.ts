// Signing of server-to-server and operator HTTP requests with the cluster key (HMAC-SHA256 over
// method, path, timestamp and body), so joins and forwarded writes need the key without ever
// sending it.

import { createHmac, timingSafeEqual } from 'node:crypto';

export const MAX_SKEW_MS = 60_000;

function mac(key: string, method: string, path: string, timestamp: string, body: Uint8Array): Buffer {
  return createHmac('sha256', key).update(`${method.toUpperCase()}\n${path}\n${timestamp}\n`).update(body).digest();
}

/** Headers to add to a request to `path` (path and query string, as sent). */
export function signRequest(key: string, method: string, path: string, body: Uint8Array, now = Date.now()): Record<string, string> {
  const timestamp = String(now);
  return { 'x-sider-timestamp': timestamp, 'x-sider-auth': mac(key, method, path, timestamp, body).toString('hex') };
}

/** Whether the request carries a valid signature made with `key` within the allowed clock skew. */
export function verifyRequest(
  key: string,
  method: string,
  path: string,
  body: Uint8Array,
  headers: Record<string, string | string[] | undefined>,
  now = Date.now(),
): boolean {
  const timestamp = headers['x-sider-timestamp'];
  const auth = headers['x-sider-auth'];
  if (typeof timestamp !== 'string' || typeof auth !== 'string') return false;
  if (!/^\d{1,16}$/.test(timestamp) || !/^[0-9a-f]{64}$/.test(auth)) return false;
  if (Math.abs(now - Number(timestamp)) > MAX_SKEW_MS) return false;
  return timingSafeEqual(mac(key, method, path, timestamp, body), Buffer.from(auth, 'hex'));
}

/** Whether a socket's remote address is loopback (127.0.0.0/8, ::1, IPv4-mapped 127.x). */
export function isLoopbackAddress(addr: string | undefined): boolean {
  return !!addr && (addr.startsWith('127.') || addr === '::1' || addr.startsWith('::ffff:127.'));
}
