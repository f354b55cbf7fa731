// Pieces for driver tests on the in-memory storage and network (test/integration/raft-*.test.ts).

import type { MemoryNetwork } from '../../raft/memory-transport.ts';
import type { StateMachine, Transport } from '../../raft/ports.ts';
import type { Entry, SnapshotMeta } from '../../raft/types.ts';

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
