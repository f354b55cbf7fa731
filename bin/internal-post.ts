// One JSON POST to another server's internal API during start-up (join, formation status),
// signed with the cluster key when there is one.

import { request } from 'undici';
import { signRequest } from '../src/cluster-auth.ts';

/** Sends `payload` to `http://addr/path`; the status and body text (network errors throw). */
export async function postInternal(
  clusterKey: string,
  addr: string,
  path: string,
  payload: unknown,
  timeoutMs: number,
): Promise<{ statusCode: number; text: string }> {
  const body = Buffer.from(JSON.stringify(payload));
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (clusterKey) Object.assign(headers, signRequest(clusterKey, 'POST', path, body));
  const res = await request(`http://${addr}${path}`, { method: 'POST', headers, body, signal: AbortSignal.timeout(timeoutMs) });
  return { statusCode: res.statusCode, text: await res.body.text() };
}
