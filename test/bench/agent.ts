// `sider agent` at its service limit: one single-node server process, one agent process with 256
// services × 2 local checks (HTTP and TCP, 1 s interval, so a registered TTL of 12 s renewed every
// ~8 s) against a target in this process. Measures how long until every check is passing on the
// server, the agent's and the server's CPU and the agent's RSS in steady state, how long until
// every check is critical once the target fails, and how long a SIGTERM takes to deregister all.

import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentProcess, writeAgentConfig } from '../support/agent-process.ts';
import { waitFor } from '../support/ports.ts';
import { SiderCluster } from '../support/server-process.ts';
import { cpuSeconds, monoMs, statusKiB } from './http-read.ts';

export interface AgentBenchResult {
  services: number;
  checks: number;
  /** Agent start → every check passing on the server. */
  convergeMs: number;
  steadySeconds: number;
  agentCpuPct: number;
  serverCpuPct: number;
  agentRssMiB: number;
  /** Renewals the server receives per second in steady state (checks / (2/3 × TTL)), computed. */
  renewalsPerSec: number;
  /** Target starts failing → every check critical on the server. */
  failToCriticalMs: number;
  /** SIGTERM → exit, and every instance gone. */
  stopMs: number;
  exitCode: number | null;
}

export interface AgentBenchOptions {
  services?: number;
  steadyMs?: number;
  log?: (line: string) => void;
}

async function checkStates(http: SiderCluster['http'], addr: string): Promise<Map<string, string>> {
  const checks = (await http.json(addr, '/v1/health/state/any?stale', 10_000)) as { CheckID: string; Status: string }[];
  return new Map(checks.map((c) => [c.CheckID, c.Status]));
}

export async function runAgentBench(opts: AgentBenchOptions = {}): Promise<AgentBenchResult> {
  const services = opts.services ?? 256;
  const steadyMs = opts.steadyMs ?? 15_000;
  const log = opts.log ?? ((line: string) => console.log(line));
  let healthy = true;
  const target: Server = createServer((_req, res) => {
    res.statusCode = healthy ? 200 : 503;
    res.end(healthy ? 'ok' : 'failing');
  });
  target.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', () => resolve()));
  const a = target.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  const root = await mkdtemp(join(tmpdir(), 'sider-bench-agent-'));
  const cluster = await SiderCluster.start({ ids: ['s1'] });
  let agent: AgentProcess | undefined;
  try {
    const server = cluster.addr('s1');
    const config = {
      node_name: 'bench-agent',
      servers: [server],
      services: Array.from({ length: services }, (_, i) => ({
        name: `svc-${i % 16}`,
        id: `inst-${i}`,
        address: '127.0.0.1',
        port,
        checks: [
          { id: `inst-${i}-http`, http: `http://127.0.0.1:${port}/health/${i}`, interval: '1s', timeout: '1s' },
          { id: `inst-${i}-tcp`, tcp: `127.0.0.1:${port}`, interval: '1s', timeout: '1s' },
        ],
      })),
    };
    const ids = config.services.flatMap((s) => s.checks.map((c) => c.id));
    const file = await writeAgentConfig(root, 'agent.json', config);
    const all = async (status: string): Promise<boolean> => {
      const states = await checkStates(cluster.http, server);
      return ids.every((id) => states.get(id) === status);
    };

    const t0 = monoMs();
    agent = new AgentProcess(file);
    await waitFor(`all ${ids.length} checks passing`, () => all('passing'), 120_000, 100);
    const convergeMs = monoMs() - t0;
    log(`converged: ${ids.length} checks passing after ${Math.round(convergeMs)} ms`);

    const serverPid = cluster.procs.get('s1')!.pid;
    const a0 = cpuSeconds(agent.pid);
    const s0 = cpuSeconds(serverPid);
    const w0 = monoMs();
    await new Promise((r) => setTimeout(r, steadyMs));
    const seconds = (monoMs() - w0) / 1000;
    const agentCpuPct = ((cpuSeconds(agent.pid) - a0) / seconds) * 100;
    const serverCpuPct = ((cpuSeconds(serverPid) - s0) / seconds) * 100;
    const agentRssMiB = statusKiB(agent.pid, 'VmRSS') / 1024;

    // Only the HTTP checks fail (the TCP port stays open); the instance aggregate goes critical.
    healthy = false;
    const f0 = monoMs();
    await waitFor('every HTTP check critical', async () => {
      const states = await checkStates(cluster.http, server);
      return ids.filter((id) => id.endsWith('-http')).every((id) => states.get(id) === 'critical');
    }, 120_000, 100);
    const failToCriticalMs = monoMs() - f0;

    const st0 = monoMs();
    const exit = await agent.signal('SIGTERM', 30_000);
    await waitFor('every instance deregistered', async () => (await checkStates(cluster.http, server)).size === 0, 30_000, 50);
    const stopMs = monoMs() - st0;
    if (exit.code !== 0) log(`agent output:\n${agent.output.slice(-3000)}`);
    return {
      services,
      checks: ids.length,
      convergeMs,
      steadySeconds: seconds,
      agentCpuPct,
      serverCpuPct,
      agentRssMiB,
      renewalsPerSec: ids.length / ((12 * 2) / 3),
      failToCriticalMs,
      stopMs,
      exitCode: exit.code,
    };
  } finally {
    await agent?.kill9();
    await cluster.teardown();
    target.closeAllConnections();
    await new Promise((r) => target.close(r));
    await rm(root, { recursive: true, force: true });
  }
}
