// Pieces for driver tests on the in-memory storage and network (test/integration/raft-*.test.ts).

import type { MemoryNetwork } from '../../raft/memory-transport.ts';
import { MemorySnapshotStore } from '../../raft/memory-storage.ts';
import type { MemoryStorage } from '../../raft/memory-storage.ts';
import { RaftNode } from '../../raft/node.ts';
import type { RaftNodeOptions } from '../../raft/node.ts';
import type { StateMachine, Transport } from '../../raft/ports.ts';
import type { Entry, SnapshotMeta } from '../../raft/types.ts';
import { waitFor } from './ports.ts';

/** A state machine that lists the data of the entries it applied; `apply` answers "applied <data>". */
export class ListMachine implements StateMachine {
  applied: string[] = [];
  apply(e: Entry): unknown {
    const s = Buffer.from(e.data).toString();
    this.applied.push(s);
    return `applied ${s}`;
  }
  snapshot(): () => Promise<Uint8Array> {
    const data = Buffer.from(JSON.stringify(this.applied));
    return async () => data;
  }
  restore(data: Uint8Array, _meta: SnapshotMeta): void {
    this.applied = JSON.parse(Buffer.from(data).toString()) as string[];
  }
}

/** A joiner's transport: like HTTP replies to a request, it can answer n1 before it knows the membership. */
export function joinerTransport(net: MemoryNetwork, id: string): Transport {
  const tr = net.transport(id);
  const setPeers = tr.setPeers.bind(tr);
  tr.setPeers = (addrs) => setPeers({ n1: 'n1', ...addrs });
  return tr;
}

export interface MemoryMember<S extends MemoryStorage = MemoryStorage> {
  node: RaftNode;
  sm: ListMachine;
  storage: S;
}

/**
 * n1 bootstrapped (its no-op and one entry, 'first', committed), then n2 and n3 added and
 * promoted: three voters on `net`, closed at the test's teardown. `storage` makes each node's
 * log store (a test's gated one, say).
 */
export async function openThreeVoters<S extends MemoryStorage>(
  t: { teardown(fn: () => unknown): void },
  net: MemoryNetwork,
  storage: (id: string) => S,
  opts: Partial<RaftNodeOptions> = {},
): Promise<{ leader: MemoryMember<S>; followers: MemoryMember<S>[] }> {
  const open = async (id: string, more: Partial<RaftNodeOptions>): Promise<MemoryMember<S>> => {
    const sm = new ListMachine();
    const s = storage(id);
    const node = await RaftNode.open({ id, storage: s, snapshots: new MemorySnapshotStore(), stateMachine: sm, transport: () => (id === 'n1' ? net.transport(id) : joinerTransport(net, id)), ...opts, ...more });
    t.teardown(() => node.close());
    return { node, sm, storage: s };
  };
  const leader = await open('n1', { bootstrap: { addr: 'n1' } });
  const n1 = leader.node;
  await waitFor('n1 to lead', () => n1.status().leader === 'n1', 10_000);
  await n1.propose(Buffer.from('first'));
  const followers: MemoryMember<S>[] = [];
  for (const id of ['n2', 'n3']) {
    followers.push(await open(id, { clusterId: n1.clusterId }));
    await n1.addServer(id, id);
  }
  await waitFor('three voters', () => n1.status().membership.voters.length === 3, 10_000);
  return { leader, followers };
}
