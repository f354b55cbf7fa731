// A follower writing a snapshot of its own while a newer one from the leader is installed: when its
// own (older) one finishes, it must not become the node's latest snapshot — that is the one it would
// send to followers if it led, and it would then ship state older than the log it has compacted.
// The driver with in-memory storage and network (real timers, hence this folder); the follower's
// snapshot store holds its own snapshot's write until the leader's has been installed.

import t from 'tap';
import { MemoryNetwork } from '../../raft/memory-transport.ts';
import { MemorySnapshotStore, MemoryStorage } from '../../raft/memory-storage.ts';
import { RaftNode } from '../../raft/node.ts';
import type { RaftEvent } from '../../raft/node.ts';
import type { SnapshotStore } from '../../raft/ports.ts';
import type { Snapshot } from '../../raft/types.ts';
import { ListMachine, joinerTransport } from '../support/memory-cluster.ts';
import { waitFor } from '../support/ports.ts';

/** A snapshot store whose next save, once armed, waits until released. */
class GatedStore implements SnapshotStore {
  readonly inner = new MemorySnapshotStore();
  #armed = false;
  held: Snapshot | null = null;
  #release: (() => void) | null = null;
  arm(): void {
    this.#armed = true;
  }
  release(): void {
    this.#release?.();
  }
  /** Set once the held save has completed. */
  heldSaved = false;
  async save(snapshot: Snapshot): Promise<void> {
    if (this.#armed) {
      this.#armed = false;
      this.held = snapshot;
      await new Promise<void>((r) => (this.#release = r));
      await this.inner.save(snapshot);
      this.heldSaved = true;
      return;
    }
    await this.inner.save(snapshot);
  }
  latest(): Promise<Snapshot | null> {
    return this.inner.latest();
  }
  list(): ReturnType<SnapshotStore['list']> {
    return this.inner.list();
  }
}

t.test("a follower's own snapshot that finishes after an installed newer one does not replace it", async (t) => {
  const net = new MemoryNetwork();
  const common = { tickMs: 10, snapshotThreshold: 20, snapshotLogRatio: 0, trailingEntries: 2, snapshotCheckMs: 3_600_000 };
  const n1 = await RaftNode.open({
    id: 'n1',
    storage: new MemoryStorage(),
    snapshots: new MemorySnapshotStore(),
    stateMachine: new ListMachine(),
    transport: () => net.transport('n1'),
    bootstrap: { addr: 'n1' },
    ...common,
  });
  t.teardown(() => n1.close());
  await waitFor('n1 to lead', () => n1.status().leader === 'n1', 10_000);
  // A leader takes membership changes only once an entry of its term is committed (its no-op comes
  // first: this one resolves after it).
  await n1.propose(Buffer.from('first'));
  const store = new GatedStore();
  const m2 = new ListMachine();
  const n2 = await RaftNode.open({ id: 'n2', storage: new MemoryStorage(), snapshots: store, stateMachine: m2, transport: () => joinerTransport(net, 'n2'), clusterId: n1.clusterId, ...common });
  t.teardown(() => n2.close());
  const events: RaftEvent[] = [];
  n2.on((ev) => events.push(ev));
  // Three voters: n1 and n3 commit while n2 is cut off.
  const n3 = await RaftNode.open({ id: 'n3', storage: new MemoryStorage(), snapshots: new MemorySnapshotStore(), stateMachine: new ListMachine(), transport: () => joinerTransport(net, 'n3'), clusterId: n1.clusterId, ...common });
  t.teardown(() => n3.close());
  await n1.addServer('n2', 'n2');
  await n1.addServer('n3', 'n3');
  await waitFor('three voters', () => n1.status().membership.voters.length === 3, 10_000);
  let seq = 0;
  const write = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) await n1.propose(Buffer.from(`e${++seq}`));
  };
  await write(5);
  await waitFor('n2 to catch up', () => n2.status().applied >= n1.status().applied, 10_000).catch((err) => {
    throw new Error(`${(err as Error).message}: n1 ${JSON.stringify(n1.status())} n2 ${JSON.stringify(n2.status())}`);
  });

  // n2's next snapshot of its own is held in its store's save.
  store.arm();
  await write(30);
  await waitFor("n2's own snapshot to start writing", () => store.held !== null, 10_000);
  const own = store.held!.meta.index;

  // Cut off, n2 falls behind n1's compacted log: healed, it gets n1's snapshot.
  net.partition('n1', 'n2');
  await write(60);
  await waitFor('n1 to compact past n2', () => n1.status().firstIndex > own + 5, 10_000);
  net.heal();
  t.equal(n1.status().leader, 'n1', 'n1 still leads');
  await waitFor('n2 to install the leader snapshot', () => events.some((e) => e.type === 'snapshot-installed'), 10_000);
  const installed = events.find((e) => e.type === 'snapshot-installed')!;
  const installedIndex = installed.type === 'snapshot-installed' ? installed.meta.index : 0;
  t.ok(installedIndex > own, `installed the leader's snapshot at ${installedIndex}, newer than its own at ${own}`);

  // Now its own, older snapshot finishes.
  store.release();
  await waitFor('the held write to finish', () => store.heldSaved, 10_000);
  await new Promise((r) => setTimeout(r, 100));
  const after = events.slice(events.indexOf(installed) + 1).filter((e) => e.type === 'snapshot');
  t.same(
    after.map((e) => (e.type === 'snapshot' ? e.meta.index : 0)).filter((i) => i <= installedIndex),
    [],
    'no snapshot older than the installed one was taken as the latest',
  );
  t.equal((await store.latest())?.meta.index, Math.max(...(await store.list()).map((m) => m.index)), 'the store keeps the newest');
  await write(3);
  await waitFor('n2 to keep up', () => n2.status().applied >= n1.status().applied, 10_000);
  t.same(m2.applied.slice(-3), [`e${seq - 2}`, `e${seq - 1}`, `e${seq}`], 'n2 applies what follows');
});
