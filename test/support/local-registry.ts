// An in-memory RegistryService for front-end tests: commands are applied straight to a
// RegistryStateMachine with an incrementing index, reads need no barrier, membership is a list.

import type { Server } from 'node:http';
import type Koa from 'koa';
import { SiderError } from '../../raft/errors.ts';
import { listenHttp } from '../../http/app.ts';
import type { ListenOptions } from '../../http/app.ts';
import { encodeCommand } from '../../src/registry/command-codec.ts';
import type { ApplyResult, RegistryCommand, RegistryReader } from '../../src/registry/model.ts';
import type { Consistency, RaftServerView, RegistryService } from '../../src/registry/service.ts';
import { RegistryStateMachine } from '../../src/registry/state-machine.ts';

export interface LocalRegistryOptions {
  nodeName?: string;
  /** This server's published addresses (a `server` command is applied at construction). */
  httpAddr?: string;
  raftAddr?: string;
}

/** Wraps a reader so that every watch is counted until it fires or is cancelled. */
function countingReader(inner: RegistryReader, counter: { active: number }): RegistryReader {
  const counted = (watch: (fire: () => void) => () => void, fire: () => void): (() => void) => {
    counter.active++;
    let live = true;
    const done = (): void => {
      if (live) {
        live = false;
        counter.active--;
      }
    };
    const cancel = watch(() => {
      done();
      fire();
    });
    return () => {
      done();
      cancel();
    };
  };
  return {
    index: () => inner.index(),
    serviceIndex: (ns, s) => inner.serviceIndex(ns, s),
    catalogIndex: (ns) => inner.catalogIndex(ns),
    namespaceIndex: (ns) => inner.namespaceIndex(ns),
    namespaces: () => inner.namespaces(),
    services: (ns) => inner.services(ns),
    serviceEntries: (ns, s) => inner.serviceEntries(ns, s),
    instances: (ns) => inner.instances(ns),
    instance: (ns, s, id) => inner.instance(ns, s, id),
    instancesById: (ns, id) => inner.instancesById(ns, id),
    checksOfService: (ns, s) => inner.checksOfService(ns, s),
    checksInState: (ns, st) => inner.checksInState(ns, st),
    servers: () => inner.servers(),
    watchService: (ns, s, after, fire) => counted((f) => inner.watchService(ns, s, after, f), fire),
    watchCatalog: (ns, after, fire) => counted((f) => inner.watchCatalog(ns, after, f), fire),
    watchNamespace: (ns, after, fire) => counted((f) => inner.watchNamespace(ns, after, f), fire),
  };
}

export class LocalRegistry implements RegistryService {
  readonly state = new RegistryStateMachine();
  readonly reader: RegistryReader;
  readonly nodeName: string;
  /** Every write as the front end sent it. */
  readonly writes: { cmd: RegistryCommand; rid: string | undefined }[] = [];
  /** Every readBarrier call's consistency. */
  readonly barriers: Consistency[] = [];
  /** Set to make the next barrier or write fail with it (then cleared). */
  failNext: Error | undefined;
  knownLeader = true;
  lastContactMs = 0;
  #watches = { active: 0 };
  #index = 0;
  #servers: RaftServerView[];
  #confIndex = 1;

  constructor(opts: LocalRegistryOptions = {}) {
    this.nodeName = opts.nodeName ?? 'node-1';
    this.reader = countingReader(this.state, this.#watches);
    const raftAddr = opts.raftAddr ?? '127.0.0.1:8301';
    this.#servers = [{ ID: this.nodeName, Address: raftAddr, Leader: true, Voter: true }];
    this.#apply({ type: 'server', server: { ID: this.nodeName, HTTPAddr: opts.httpAddr ?? '10.0.0.1:8500', RaftAddr: raftAddr }, now: 0 }, '');
  }

  /** Watchers registered through the reader that have neither fired nor been cancelled. */
  get activeWatches(): number {
    return this.#watches.active;
  }

  /** The index of the last applied entry. */
  get lastIndex(): number {
    return this.#index;
  }

  #takeFailure(): void {
    const err = this.failNext;
    if (err) {
      this.failNext = undefined;
      throw err;
    }
  }

  #apply(cmd: RegistryCommand, rid: string): { result: ApplyResult; index: number } {
    const index = ++this.#index;
    const result = this.state.apply({ index, term: 1, type: 'normal', data: encodeCommand(cmd), rid }) as ApplyResult;
    return { result, index };
  }

  async write(cmd: RegistryCommand, rid?: string): Promise<{ result: ApplyResult; index: number }> {
    this.writes.push({ cmd, rid });
    this.#takeFailure();
    // The leader restamps `now`, as RaftRegistry does.
    return this.#apply({ ...cmd, now: Date.now() } as RegistryCommand, rid ?? '');
  }

  async readBarrier(consistency: Consistency): Promise<void> {
    this.barriers.push(consistency);
    this.#takeFailure();
  }

  readMeta(): { knownLeader: boolean; lastContactMs: number } {
    return { knownLeader: this.knownLeader, lastContactMs: this.lastContactMs };
  }

  leaderAddr(): string {
    return this.#servers.find((s) => s.Leader)?.Address ?? '';
  }

  peers(): string[] {
    return this.#servers.filter((s) => s.Voter).map((s) => s.Address);
  }

  raftConfiguration(): { servers: RaftServerView[]; index: number } {
    return { servers: this.#servers.map((s) => ({ ...s })), index: this.#confIndex };
  }

  async joinServer(id: string, raftAddr: string): Promise<void> {
    this.#takeFailure();
    const existing = this.#servers.find((s) => s.ID === id);
    // Like RaftRegistry: joining again at the same address is a no-op (a retried join).
    if (existing?.Address === raftAddr) return;
    if (existing) throw new SiderError('SIDER_CONF_CHANGE_INVALID', `server ${id} is already a member`);
    this.#servers.push({ ID: id, Address: raftAddr, Leader: false, Voter: false });
    this.#confIndex = ++this.#index;
  }

  async removeServer(id: string): Promise<void> {
    this.#takeFailure();
    if (!this.#servers.some((s) => s.ID === id)) throw new SiderError('SIDER_CONF_CHANGE_INVALID', `server ${id} is not a member`);
    this.#servers = this.#servers.filter((s) => s.ID !== id);
    this.#confIndex = ++this.#index;
  }
}

/**
 * Serves `app` on 127.0.0.1 at a free port until the test ends (open connections are cut at
 * teardown, so held queries do not keep it waiting).
 */
export async function listenForTest(tt: { teardown: (fn: () => unknown) => void }, app: Koa, opts?: ListenOptions): Promise<{ server: Server; port: number }> {
  const server = await listenHttp(app, '127.0.0.1', 0, opts);
  tt.teardown(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const addr = server.address();
  return { server, port: typeof addr === 'object' && addr ? addr.port : 0 };
}
