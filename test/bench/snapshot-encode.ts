// What encoding a registry snapshot costs the event loop (issue #3): a RegistryStateMachine fed the
// register benchmark's registrations (http-read.ts registration(), the bodies http-register.lua
// builds too, through the HTTP layer's parser), then snapshot() as a server takes it — after
// growing from --from to --to instances (the new ones encoded, the others copied from the last
// snapshot) and with nothing changed since the last one. Reports main-thread time (eventLoopUtilization: the writer runs in slices with pauses)
// and the bytes per instance. Bounded: --machines (≤ 10) fresh machines, 3 unchanged snapshots each.
//
//   node test/bench/snapshot-encode.ts [--from 10000] [--to 50000] [--machines 3]

import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { registerCommand } from '../../http/register-fast.ts';
import { RegistryStateMachine } from '../../src/registry/state-machine.ts';
import { registration } from './http-read.ts';

const SERVICES = 256;

/** Registrations n … n + count − 1 of the register benchmark, applied to `sm` from Raft index `n`. */
function register(sm: RegistryStateMachine, n: number, count: number): void {
  for (let k = n; k < n + count; k++) {
    const body = registration(`bench-reg-${k % SERVICES}`, `wrkm-1-${k}`, k);
    const cmd = registerCommand(body, {}, '', { nodeName: 'n1', defaultNamespace: 'default', enableScriptChecks: false });
    sm.apply({ index: k, term: 1, type: 'normal', data: sm.encodeProposal(cmd), rid: '' });
  }
}

/** One snapshot as a server takes it: main-thread ms and bytes. */
async function snapshot(sm: RegistryStateMachine): Promise<{ ms: number; bytes: number }> {
  const writer = sm.snapshot();
  const before = performance.eventLoopUtilization();
  const bytes = await writer();
  return { ms: performance.eventLoopUtilization(before).active, bytes: bytes.length };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

export interface SnapshotEncodeResult {
  from: number;
  to: number;
  /** Main-thread ms of the snapshot taken after growing from `from` to `to`, one per machine. */
  grownMs: number[];
  /** Main-thread ms of snapshots with nothing changed since the last one, 3 per machine. */
  unchangedMs: number[];
  bytesPerInstance: number;
}

export async function runSnapshotEncode(opts: { from: number; to: number; machines: number }): Promise<SnapshotEncodeResult> {
  const grownMs: number[] = [];
  const unchangedMs: number[] = [];
  let bytes = 0;
  for (let m = 0; m < opts.machines; m++) {
    const sm = new RegistryStateMachine();
    register(sm, 1, opts.from);
    await snapshot(sm);
    register(sm, opts.from + 1, opts.to - opts.from);
    const g = await snapshot(sm);
    grownMs.push(g.ms);
    bytes = g.bytes;
    for (let k = 0; k < 3; k++) unchangedMs.push((await snapshot(sm)).ms);
  }
  return { from: opts.from, to: opts.to, grownMs, unchangedMs, bytesPerInstance: bytes / opts.to };
}

/** The result as the lines the script and `npm run bench` print. */
export function snapshotEncodeLines(r: SnapshotEncodeResult): string[] {
  const fmt = (xs: number[]): string => `${median(xs).toFixed(0)} ms (${xs.map((x) => x.toFixed(0)).join(', ')})`;
  return [
    `snapshot after growing ${r.from} → ${r.to} instances: ${fmt(r.grownMs)} of main-thread time`,
    `snapshot of ${r.to} unchanged instances: ${fmt(r.unchangedMs)}`,
    `${r.bytesPerInstance.toFixed(0)} bytes per instance`,
  ];
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { from: { type: 'string', default: '10000' }, to: { type: 'string', default: '50000' }, machines: { type: 'string', default: '3' } } });
  const from = Number(values.from);
  const to = Number(values.to);
  const machines = Number(values.machines);
  if (!Number.isInteger(from) || from < 1 || !Number.isInteger(to) || to <= from || to > 500_000) throw new Error('--from and --to: integers, 1 ≤ from < to ≤ 500000');
  if (!Number.isInteger(machines) || machines < 1 || machines > 10) throw new Error('--machines: an integer in [1, 10]');
  for (const line of snapshotEncodeLines(await runSnapshotEncode({ from, to, machines }))) console.log(line);
}
