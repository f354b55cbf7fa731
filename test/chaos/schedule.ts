// The fault schedule of a chaos run: a pure function of (seed, nodes, duration), so a failing run is
// rerun exactly with `npm run chaos -- --seed S --nodes N --duration D` (or `--schedule FILE` with the
// JSON the run printed). Servers are named by index (0-based here, `s1..sN` in print); "leader" is a
// role resolved when the step starts, and the run prints whom it hit.

import { mulberry32 } from '../support/random.ts';

export const FAULT_KINDS = ['kill', 'pause', 'partition', 'one-way', 'isolate-leader', 'bridge', 'restart-all', 'replace'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** A server index, or the leader at the moment the step starts. */
export type Target = number | 'leader';

export type FaultStep =
  /** kill -9, restarted with its data after `holdMs`. */
  | { kind: 'kill'; atMs: number; holdMs: number; node: Target }
  /** SIGSTOP, SIGCONT after `holdMs` (longer than the 2 s maximum election timeout). */
  | { kind: 'pause'; atMs: number; holdMs: number; node: Target }
  /** Every link between the two sides cut both ways. */
  | { kind: 'partition'; atMs: number; holdMs: number; side: number[]; rest: number[] }
  /** `from` cannot open connections to any of `to`; they can still reach it. */
  | { kind: 'one-way'; atMs: number; holdMs: number; from: Target; to: number[] | 'others' }
  /** The leader cut from everyone, both ways. */
  | { kind: 'isolate-leader'; atMs: number; holdMs: number }
  /** `left` and `right` cannot reach each other; `bridge` reaches both. */
  | { kind: 'bridge'; atMs: number; holdMs: number; left: number[]; bridge: number; right: number[] }
  /** kill -9 of every server, all restarted after `holdMs`. */
  | { kind: 'restart-all'; atMs: number; holdMs: number }
  /**
   * A membership change under load: the server is removed from the configuration (/v1/raft/remove
   * on the leader), killed and its data wiped; after `holdMs` a fresh server with a new Raft ID
   * takes its place (same host) and joins by itself (-bootstrap-expect/-retry-join find the cluster).
   */
  | { kind: 'replace'; atMs: number; holdMs: number; node: Target };

export interface Schedule {
  seed: number;
  nodes: number;
  durationMs: number;
  steps: FaultStep[];
}

export interface ScheduleOptions {
  seed: number;
  nodes: number;
  /**
   * Faults start after a quiet second and end by this time (ms from the start of the load), except
   * that one fault of each allowed kind always comes first, and the duration grows to hold them.
   */
  durationMs: number;
  /** Restrict to these kinds (default: all). */
  kinds?: readonly FaultKind[];
}

/** Relative weights: the single-node faults are the most common in production, so the most common here. */
const WEIGHT: Record<FaultKind, number> = {
  kill: 3,
  pause: 2,
  partition: 2,
  'one-way': 2,
  'isolate-leader': 2,
  bridge: 1,
  'restart-all': 1,
  replace: 1,
};

export function makeSchedule(opts: ScheduleOptions): Schedule {
  const { seed, nodes, durationMs } = opts;
  if (!Number.isInteger(nodes) || nodes < 3) throw new RangeError(`nodes: at least 3, got ${nodes}`);
  if (!(durationMs >= 5_000)) throw new RangeError(`duration: at least 5 s, got ${durationMs} ms`);
  const kinds = opts.kinds ?? FAULT_KINDS;
  for (const k of kinds) if (!FAULT_KINDS.includes(k)) throw new RangeError(`unknown fault kind ${JSON.stringify(k)}`);
  if (kinds.length === 0) throw new RangeError('no fault kinds');
  const rnd = mulberry32(seed);
  const between = (lo: number, hi: number): number => Math.round(lo + rnd() * (hi - lo));
  const pickInt = (n: number): number => Math.floor(rnd() * n);
  const shuffled = (): number[] => {
    const a = Array.from({ length: nodes }, (_, i) => i);
    for (let i = a.length - 1; i > 0; i--) {
      const j = pickInt(i + 1);
      [a[i], a[j]] = [a[j]!, a[i]!];
    }
    return a;
  };
  const target = (): Target => (rnd() < 0.5 ? 'leader' : pickInt(nodes));
  const total = kinds.reduce((s, k) => s + WEIGHT[k], 0);
  const pickKind = (): FaultKind => {
    let x = rnd() * total;
    for (const k of kinds) {
      x -= WEIGHT[k];
      if (x < 0) return k;
    }
    return kinds[kinds.length - 1]!;
  };

  // Every allowed kind once first (in a seeded order), so even a short run covers them all; then
  // weighted picks until the duration is used up.
  const first = [...kinds];
  for (let i = first.length - 1; i > 0; i--) {
    const j = pickInt(i + 1);
    [first[i], first[j]] = [first[j]!, first[i]!];
  }
  const steps: FaultStep[] = [];
  let at = 1_000;
  for (;;) {
    const covering = first.length > 0;
    const kind = first.shift() ?? pickKind();
    // Long enough to outlast an election timeout (1–2 s) and let the rest elect and serve.
    const holdMs = kind === 'restart-all' ? between(500, 2_000) : between(2_500, 6_000);
    // The covering steps run even past the duration (which then grows to hold them).
    if (!covering && at + holdMs > durationMs) break;
    switch (kind) {
      case 'kill':
      case 'pause':
      case 'replace':
        steps.push({ kind, atMs: at, holdMs, node: target() });
        break;
      case 'partition': {
        const order = shuffled();
        const minority = 1 + pickInt(Math.floor((nodes - 1) / 2));
        steps.push({ kind, atMs: at, holdMs, side: order.slice(0, minority).sort(), rest: order.slice(minority).sort() });
        break;
      }
      case 'one-way': {
        const from = target();
        let to: number[] | 'others' = 'others';
        if (typeof from === 'number' && rnd() < 0.5) {
          const others = shuffled().filter((i) => i !== from);
          to = others.slice(0, 1 + pickInt(others.length)).sort();
        }
        steps.push({ kind, atMs: at, holdMs, from, to });
        break;
      }
      case 'isolate-leader':
      case 'restart-all':
        steps.push({ kind, atMs: at, holdMs });
        break;
      case 'bridge': {
        const order = shuffled();
        const bridge = order[0]!;
        const others = order.slice(1);
        const cut = 1 + pickInt(others.length - 1);
        steps.push({ kind, atMs: at, holdMs, left: others.slice(0, cut).sort(), bridge, right: others.slice(cut).sort() });
        break;
      }
    }
    // A quiet stretch after every fault: the cluster must recover and serve between faults too.
    at += holdMs + between(1_500, 4_000);
  }
  return { seed, nodes, durationMs: Math.max(durationMs, at), steps };
}

const name = (i: number): string => `s${i + 1}`;
const names = (a: number[]): string => a.map(name).join(',');
const who = (t: Target): string => (t === 'leader' ? 'the leader' : name(t));

/** One line per step, for logs. */
export function describeStep(s: FaultStep): string {
  const when = `t=${(s.atMs / 1000).toFixed(1)}s for ${(s.holdMs / 1000).toFixed(1)}s`;
  switch (s.kind) {
    case 'kill':
      return `${when}: kill -9 ${who(s.node)}, then restart it`;
    case 'pause':
      return `${when}: SIGSTOP ${who(s.node)}, then SIGCONT`;
    case 'partition':
      return `${when}: partition {${names(s.side)}} | {${names(s.rest)}}`;
    case 'one-way':
      return `${when}: ${who(s.from)} cannot reach ${s.to === 'others' ? 'any other server' : `{${names(s.to)}}`} (one-way)`;
    case 'isolate-leader':
      return `${when}: isolate the leader`;
    case 'bridge':
      return `${when}: bridge: {${names(s.left)}} and {${names(s.right)}} cut apart, ${name(s.bridge)} reaches both`;
    case 'restart-all':
      return `${when}: kill -9 every server, then restart all`;
    case 'replace':
      return `${when}: remove ${who(s.node)} from the cluster, wipe it, then a fresh server takes its place`;
  }
}

/** Reads a schedule printed by a run (its JSON), checking its shape against `nodes`. */
export function parseSchedule(text: string): Schedule {
  const v = JSON.parse(text) as Schedule;
  if (typeof v !== 'object' || v === null || !Array.isArray(v.steps)) throw new Error('schedule: expected {seed, nodes, durationMs, steps: [...]}');
  if (!Number.isInteger(v.nodes) || v.nodes < 3) throw new Error('schedule.nodes: an integer ≥ 3');
  if (!(v.durationMs > 0)) throw new Error('schedule.durationMs: a positive number');
  const okNode = (x: unknown): boolean => Number.isInteger(x) && (x as number) >= 0 && (x as number) < v.nodes;
  const okTarget = (x: unknown): boolean => x === 'leader' || okNode(x);
  v.steps.forEach((s, i) => {
    const where = `schedule.steps[${i}]`;
    if (!FAULT_KINDS.includes(s.kind)) throw new Error(`${where}.kind: one of ${FAULT_KINDS.join(', ')}`);
    if (!(s.atMs >= 0) || !(s.holdMs > 0)) throw new Error(`${where}: atMs ≥ 0 and holdMs > 0`);
    const bad =
      ((s.kind === 'kill' || s.kind === 'pause' || s.kind === 'replace') && !okTarget(s.node)) ||
      (s.kind === 'partition' && !(s.side.every(okNode) && s.rest.every(okNode))) ||
      (s.kind === 'one-way' && !(okTarget(s.from) && (s.to === 'others' || s.to.every(okNode)))) ||
      (s.kind === 'bridge' && !(s.left.every(okNode) && s.right.every(okNode) && okNode(s.bridge)));
    if (bad) throw new Error(`${where}: a server index out of range 0..${v.nodes - 1}`);
  });
  return v;
}
