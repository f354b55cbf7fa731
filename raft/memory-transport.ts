// The in-memory twin of the Raft transport, for unit tests of the driver: a hub that delivers
// deep-copied messages asynchronously and can block links between nodes.

import type { Transport, TransportReport } from './ports.ts';
import type { Entry, Message, NodeId } from './types.ts';
import { cloneMembership } from './types.ts';

function copyEntry(e: Entry): Entry {
  return { ...e, data: new Uint8Array(e.data) };
}

/** A copy sharing no arrays or bytes with `m`. */
export function cloneMessage(m: Message): Message {
  return {
    ...m,
    entries: m.entries.map(copyEntry),
    snapshot: m.snapshot
      ? {
          meta: { ...m.snapshot.meta, membership: cloneMembership(m.snapshot.meta.membership) },
          data: new Uint8Array(m.snapshot.data),
        }
      : null,
  };
}

/** The hub every `MemoryTransport` of one simulated cluster is attached to. */
export class MemoryNetwork {
  #nodes = new Map<NodeId, MemoryTransport>();
  /** Blocked links as `${from}\n${to}`. */
  #blocked = new Set<string>();

  /** A new transport for `id`, replacing (as after a restart) any earlier one with that id. */
  transport(id: NodeId): MemoryTransport {
    const t = new MemoryTransport(this, id);
    this.#nodes.set(id, t);
    return t;
  }

  /** Blocks delivery from `a` to `b`, and from `b` to `a` unless `oneWay`. */
  partition(a: NodeId, b: NodeId, opts: { oneWay?: boolean } = {}): void {
    this.#blocked.add(`${a}\n${b}`);
    if (opts.oneWay !== true) this.#blocked.add(`${b}\n${a}`);
  }

  /** Unblocks `a`↔`b` (both directions), or every link when called without arguments. */
  heal(a?: NodeId, b?: NodeId): void {
    if (a === undefined || b === undefined) {
      this.#blocked.clear();
      return;
    }
    this.#blocked.delete(`${a}\n${b}`);
    this.#blocked.delete(`${b}\n${a}`);
  }

  /** The live transport `to` as seen from `from`, or null when blocked, unknown, stopped or replaced. */
  route(from: NodeId, to: NodeId): MemoryTransport | null {
    if (this.#blocked.has(`${from}\n${to}`)) return null;
    const t = this.#nodes.get(to);
    return t?.running ? t : null;
  }
}

/**
 * A `Transport` attached to a `MemoryNetwork`. Messages are delivered in a later macrotask
 * (`setImmediate`, FIFO per sender). One goes through only if, at delivery, its destination was
 * given to `setPeers`, has started, is not closed and the link is not partitioned; otherwise the
 * sender gets an `unreachable` report. `snap` messages report their outcome, like over HTTP.
 */
export class MemoryTransport implements Transport {
  readonly id: NodeId;
  readonly #network: MemoryNetwork;
  #deliver: ((m: Message) => void) | null = null;
  #report: ((r: TransportReport) => void) | null = null;
  #peers = new Set<NodeId>();
  #closed = false;

  constructor(network: MemoryNetwork, id: NodeId) {
    this.#network = network;
    this.id = id;
  }

  get running(): boolean {
    return this.#deliver !== null && !this.#closed;
  }

  async start(deliver: (m: Message) => void, report: (r: TransportReport) => void): Promise<void> {
    this.#deliver = deliver;
    this.#report = report;
  }

  setPeers(addrs: Record<NodeId, string>): void {
    this.#peers = new Set(Object.keys(addrs));
  }

  send(m: Message): void {
    if (!this.running) return;
    const copy = cloneMessage(m);
    setImmediate(() => {
      if (!this.running) return;
      const dest = this.#peers.has(copy.to) ? this.#network.route(this.id, copy.to) : null;
      if (dest) dest.#receive(copy);
      else this.#report!({ kind: 'unreachable', to: copy.to });
      if (copy.type === 'snap') this.#report!({ kind: 'snapshot', to: copy.to, ok: dest !== null });
    });
  }

  #receive(m: Message): void {
    this.#deliver!(m);
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}
