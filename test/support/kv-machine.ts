// A key-value state machine over the Raft library, for the simulator and the integration test
// server: get/put/append with per-client sessions so a retried command is applied once.

import { createHash } from 'node:crypto';
import type { SnapshotWriter, StateMachine } from '../../raft/ports.ts';
import type { Entry } from '../../raft/types.ts';

export interface KvCommand {
  /** Client id and its sequence number: a retry repeats both and is applied at most once. */
  client: string;
  seq: number;
  op: 'put' | 'append';
  key: string;
  value: string;
}

export interface KvResult {
  /** The value after the command (for append/put) as the state machine saw it. */
  value: string;
  /** True when this (client, seq) had already been applied and the cached result was returned. */
  duplicate: boolean;
}

interface Session {
  seq: number;
  value: string;
}

export function encodeKvCommand(c: KvCommand): Uint8Array {
  return Buffer.from(JSON.stringify(c));
}

export function decodeKvCommand(data: Uint8Array): KvCommand | null {
  try {
    const v = JSON.parse(Buffer.from(data).toString('utf8')) as unknown;
    if (typeof v !== 'object' || v === null) return null;
    const c = v as Record<string, unknown>;
    if (typeof c.client !== 'string' || typeof c.seq !== 'number' || typeof c.key !== 'string') return null;
    if (c.op !== 'put' && c.op !== 'append') return null;
    if (typeof c.value !== 'string') return null;
    return { client: c.client, seq: c.seq, op: c.op, key: c.key, value: c.value };
  } catch {
    return null;
  }
}

export class KvMachine implements StateMachine {
  #data = new Map<string, string>();
  #sessions = new Map<string, Session>();
  appliedIndex = 0;

  get(key: string): string {
    return this.#data.get(key) ?? '';
  }

  apply(entry: Entry): KvResult | null {
    this.appliedIndex = entry.index;
    const cmd = decodeKvCommand(entry.data);
    if (!cmd) return null;
    const s = this.#sessions.get(cmd.client);
    if (s && cmd.seq <= s.seq) {
      // A retry (or a straggler older than the client's newest command): never applied twice.
      return { value: cmd.seq === s.seq ? s.value : this.get(cmd.key), duplicate: true };
    }
    const value = cmd.op === 'put' ? cmd.value : this.get(cmd.key) + cmd.value;
    this.#data.set(cmd.key, value);
    this.#sessions.set(cmd.client, { seq: cmd.seq, value });
    return { value, duplicate: false };
  }

  snapshot(): SnapshotWriter {
    // Point-in-time copy taken synchronously; encoding happens later.
    const data = [...this.#data];
    const sessions = [...this.#sessions];
    const index = this.appliedIndex;
    return async () => Buffer.from(JSON.stringify({ index, data, sessions }));
  }

  /** Synchronous form of snapshot() for the simulator. */
  snapshotSync(): Uint8Array {
    return Buffer.from(JSON.stringify({ index: this.appliedIndex, data: [...this.#data], sessions: [...this.#sessions] }));
  }

  restore(bytes: Uint8Array): void {
    const v = JSON.parse(Buffer.from(bytes).toString('utf8')) as {
      index: number;
      data: [string, string][];
      sessions: [string, Session][];
    };
    this.#data = new Map(v.data);
    this.#sessions = new Map(v.sessions);
    this.appliedIndex = v.index;
  }

  digest(): string {
    const h = createHash('sha256');
    for (const [k, v] of [...this.#data].sort(([a], [b]) => (a < b ? -1 : 1))) h.update(`${k}=${v}\n`);
    return h.digest('hex').slice(0, 16);
  }
}
