// Request IDs through RaftRegistry.write: the client's travels as given; without one, a write
// proposed on the leader carries none (it could never come again), while a forwarded write is
// given one, since the forwarder may send it twice.

import t from 'tap';
import type { RaftNode } from '../../raft/node.ts';
import { INTERNAL_APPLY_BATCH } from '../../src/forward-writes.ts';
import type { ForwardedWrite } from '../../src/forward-writes.ts';
import { RaftRegistry } from '../../src/raft-registry.ts';
import type { RegistryCommand, RegistryReader } from '../../src/registry/model.ts';

const cmd = { type: 'deregister', ns: 'default', service: 'web', id: 'w1', now: 0 } as unknown as RegistryCommand;

/** A RaftNode with only what write() touches: `leader` is the leader it reports. */
function fakeRaft(leader: string, proposed: string[]): RaftNode {
  return {
    id: 'me',
    leader: () => leader,
    on: () => () => {},
    propose: (_data: Uint8Array, rid = '') => {
      proposed.push(rid);
      return Promise.resolve({ index: 7, result: { ok: true, changed: true } });
    },
    waitApplied: () => Promise.resolve(),
  } as unknown as RaftNode;
}

class Recording extends RaftRegistry {
  readonly sent: ForwardedWrite[] = [];
  override forwardToLeader<T>(path: string, payload: unknown): Promise<T> {
    if (path !== INTERNAL_APPLY_BATCH) throw new Error(`unexpected path ${path}`);
    const writes = (payload as { writes: ForwardedWrite[] }).writes;
    this.sent.push(...writes);
    return Promise.resolve({ results: writes.map(() => ({ ok: true, result: { ok: true, changed: true }, index: 7 })) } as T);
  }
}

/** A registry on a node that sees `leader` as leader, after three writes: no ID, '' and the client's. */
async function afterWrites(leader: string): Promise<{ reg: Recording; proposed: string[] }> {
  const proposed: string[] = [];
  const reg = new Recording({ raft: fakeRaft(leader, proposed), reader: {} as RegistryReader, nodeName: 'me', clusterKey: '', encode: () => new Uint8Array(1) });
  await reg.write(cmd);
  await reg.write(cmd, '');
  await reg.write(cmd, 'client-7');
  return { reg, proposed };
}

t.test('on the leader', async (t) => {
  const { reg, proposed } = await afterWrites('me');
  t.same(proposed, ['', '', 'client-7'], "no ID is made up; the client's is kept");
  t.same(reg.sent, [], 'nothing forwarded');
});

t.test('on a follower', async (t) => {
  const { reg, proposed } = await afterWrites('other');
  const rids = reg.sent.map((w) => w.rid);
  t.equal(rids.length, 3);
  t.match(rids[0], /^[0-9a-f-]{36}$/, 'a forwarded write without an ID is given one');
  t.match(rids[1], /^[0-9a-f-]{36}$/);
  t.not(rids[0], rids[1], 'each its own');
  t.equal(rids[2], 'client-7', "the client's ID is forwarded as given");
  t.same(proposed, [], 'nothing proposed here');
});
