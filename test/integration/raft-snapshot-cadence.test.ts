// Snapshot cadence of the driver (issue #3): a snapshot waits for snapshotThreshold entries and for
// entries holding as many bytes as the last snapshot (snapshotLogRatio), so a growing state is
// encoded less and less often per entry; with the ratio at 0 the entry count alone decides.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { FileSnapshotStore } from '../../raft/file-snapshot-store.ts';
import { HttpTransport } from '../../raft/http-transport.ts';
import { LevelStorage } from '../../raft/level-storage.ts';
import { RaftNode } from '../../raft/node.ts';
import type { RaftNodeOptions } from '../../raft/node.ts';
import { KvMachine, encodeKvCommand } from '../support/kv-machine.ts';
import { freePort, waitFor } from '../support/ports.ts';

const KEY = 'integration-test-cluster-key-0123456789';
const THRESHOLD = 20;
const PUTS = 400;

interface Taken {
  index: number;
  bytes: number;
}

interface Run {
  snaps: Taken[];
  /** Data bytes of each proposed entry, by index. */
  entryBytes: Map<number, number>;
  digest: string;
}

async function open(dir: string, addr: string, extra: Partial<RaftNodeOptions>): Promise<{ node: RaftNode; sm: KvMachine }> {
  const sm = new KvMachine();
  const node = await RaftNode.open({
    id: 'n1',
    storage: new LevelStorage(join(dir, 'raft')),
    snapshots: new FileSnapshotStore(join(dir, 'snapshots')),
    stateMachine: sm,
    transport: (clusterId) => new HttpTransport({ id: 'n1', clusterId, listen: addr, clusterKey: KEY }),
    tickMs: 20,
    electionTicks: 10,
    snapshotThreshold: THRESHOLD,
    snapshotCheckMs: 3_600_000,
    ...extra,
  });
  return { node, sm };
}

/** One node, PUTS distinct keys of 100-byte values (the state grows with every entry). */
async function growingRun(t: { teardown(fn: () => unknown): void }, ratio: number | undefined, jitter = 0): Promise<Run> {
  const dir = await mkdtemp(join(tmpdir(), 'sider-snapcadence-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const addr = `127.0.0.1:${await freePort()}`;
  const { node, sm } = await open(dir, addr, { bootstrap: { addr }, snapshotJitter: jitter, ...(ratio === undefined ? {} : { snapshotLogRatio: ratio }) });
  t.teardown(() => node.close());
  const snaps: Taken[] = [];
  node.on((ev) => {
    if (ev.type === 'snapshot') snaps.push({ index: ev.meta.index, bytes: ev.bytes });
  });
  await waitFor('leader', () => node.status().role === 'leader');
  const entryBytes = new Map<number, number>();
  const value = 'x'.repeat(100);
  for (let i = 1; i <= PUTS; i++) {
    const data = encodeKvCommand({ client: 'cadence', seq: i, op: 'put', key: `key-${i}`, value });
    const r = await node.propose(data, `cadence:${i}`);
    entryBytes.set(r.index, data.length);
  }
  return { snaps, entryBytes, digest: sm.digest() };
}

t.test('a growing state is snapshotted once the entries since the last snapshot hold as many bytes as it', async (t) => {
  const run = await growingRun(t, undefined);
  t.ok(run.snaps.length >= 4, `snapshots kept being taken (${run.snaps.map((s) => s.index).join(', ')})`);
  for (let i = 1; i < run.snaps.length; i++) {
    const prev = run.snaps[i - 1]!;
    const cur = run.snaps[i]!;
    let bytes = 0;
    for (let x = prev.index + 1; x <= cur.index; x++) bytes += run.entryBytes.get(x) ?? 0;
    t.ok(cur.index - prev.index >= THRESHOLD, `snapshot at ${cur.index}: at least ${THRESHOLD} entries after the one at ${prev.index}`);
    t.ok(bytes >= prev.bytes, `snapshot at ${cur.index}: ${bytes} entry bytes since the last, which was ${prev.bytes} bytes`);
  }
  const gaps = run.snaps.slice(1).map((s, i) => s.index - run.snaps[i]!.index);
  t.ok(gaps.at(-1)! > 3 * THRESHOLD, `the gap grew with the state (gaps ${gaps.join(', ')})`);
});

t.test('with snapshotLogRatio 0 the entry count alone decides (snapshots every threshold entries)', async (t) => {
  const run = await growingRun(t, 0);
  const scaled = await growingRun(t, undefined);
  t.ok(run.snaps.length >= PUTS / THRESHOLD / 2, `${run.snaps.length} snapshots in ${PUTS} entries`);
  t.ok(run.snaps.length >= 2 * scaled.snaps.length, `more than twice as many as with the default ratio (${scaled.snaps.length})`);
  t.equal(run.digest, scaled.digest, 'same state either way');
});

t.test('after a restart the state is the snapshot plus the longer log behind it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sider-snapcadence-restart-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const addr = `127.0.0.1:${await freePort()}`;
  let { node, sm } = await open(dir, addr, { bootstrap: { addr } });
  let snaps = 0;
  node.on((ev) => {
    if (ev.type === 'snapshot') snaps++;
  });
  await waitFor('leader', () => node.status().role === 'leader');
  for (let i = 1; i <= 150; i++) {
    await node.propose(encodeKvCommand({ client: 'restart', seq: i, op: 'put', key: `key-${i}`, value: 'y'.repeat(100) }), `restart:${i}`);
  }
  await waitFor('a snapshot', () => snaps >= 2);
  const expected = sm.digest();
  await node.close();
  ({ node, sm } = await open(dir, addr, {}));
  t.teardown(() => node.close());
  await waitFor('leader again', () => node.status().role === 'leader');
  await node.readBarrier();
  t.equal(sm.digest(), expected, 'state after restart equals state before');
});

t.test('snapshotJitter stretches the thresholds of each snapshot by a factor in [1, 1 + jitter), so servers do not snapshot in step', async (t) => {
  const runs = [await growingRun(t, 0, 0.5), await growingRun(t, 0, 0.5)];
  const gaps = runs.flatMap((run) => run.snaps.slice(1).map((s, i) => s.index - run.snaps[i]!.index));
  t.ok(gaps.length >= 4, `${gaps.length} gaps`);
  // A snapshot is checked once per Ready, so it may come a batch of entries after the threshold.
  for (const g of gaps) t.ok(g >= THRESHOLD && g < 1.5 * THRESHOLD + 64, `gap ${g} within [${THRESHOLD}, 1.5 × ${THRESHOLD}) plus one batch`);
  t.ok(new Set(gaps).size > 1, `the gaps differ (${gaps.join(', ')})`);
  t.equal(runs[0]!.digest, runs[1]!.digest, 'same state');
});
