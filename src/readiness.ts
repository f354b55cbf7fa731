// Readiness of a server (GET /v1/agent/ready): ready once one linearizable read barrier has
// succeeded since start — the leader confirmed its commit index and this node applied up to it, so
// its local state is at least as new as the cluster's was when it started or joined — and only
// while a leader is known.

import type { Logger } from '../raft/node.ts';

export interface ReadinessOptions {
  /** ReadIndex barrier: resolves once this node has applied the leader's commit index (RegistryService.readBarrier('default')). */
  barrier: () => Promise<void>;
  /** Whether a leader is known now. */
  knownLeader: () => boolean;
  /** This node's applied index (logged when it becomes ready). */
  applied?: () => number;
  /** Pause between failed barriers (default 200 ms). */
  retryMs?: number;
  log?: Logger;
}

export class Readiness {
  readonly #o: ReadinessOptions;
  #caughtUp = false;
  #closed = false;
  #lastError = '';
  #timer: NodeJS.Timeout | null = null;
  #running = false;

  constructor(opts: ReadinessOptions) {
    this.#o = opts;
  }

  /** Starts trying barriers until one succeeds (or close()). Idempotent. */
  start(): void {
    if (this.#running || this.#caughtUp || this.#closed) return;
    this.#running = true;
    void this.#attempt();
  }

  async #attempt(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#o.barrier();
      if (this.#closed) return;
      this.#caughtUp = true;
      this.#running = false;
      this.#o.log?.('info', 'caught up with the leader: ready', { applied: this.#o.applied?.() });
    } catch (err) {
      this.#lastError = (err as Error).message;
      if (this.#closed) return;
      this.#timer = setTimeout(() => void this.#attempt(), this.#o.retryMs ?? 200);
    }
  }

  get caughtUp(): boolean {
    return this.#caughtUp;
  }

  state(): { ready: boolean; reason: string } {
    if (!this.#caughtUp) {
      return { ready: false, reason: `not caught up with the leader yet${this.#lastError ? ` (last attempt: ${this.#lastError})` : ''}` };
    }
    if (!this.#o.knownLeader()) return { ready: false, reason: 'no leader known' };
    return { ready: true, reason: '' };
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
