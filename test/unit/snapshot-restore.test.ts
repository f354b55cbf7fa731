// The snapshot archive of /v1/snapshot (round trip; every altered byte, a wrong magic, a truncated
// or extended file refused) and the replicated `restore` command (deterministic, indexes only move
// forward, every watcher wakes, a bad document changes nothing).

import t from 'tap';
import { decodeCommand, decodeSnapshot, encodeCommand } from '../../src/registry/command-codec.ts';
import type { SnapshotData } from '../../src/registry/command-codec.ts';
import type { ApplyResult, InstanceSpec, RegistryCommand } from '../../src/registry/model.ts';
import { checkSpec } from '../../src/registry/specs.ts';
import { ARCHIVE_HEADER_BYTES, decodeArchive, encodeArchive } from '../../src/registry/snapshot-archive.ts';
import { RegistryStateMachine } from '../../src/registry/state-machine.ts';

function spec(service: string, id: string, tags: string[] = []): InstanceSpec {
  return {
    Service: service,
    ID: id,
    Address: '10.0.0.1',
    Port: 8080,
    Tags: tags,
    Meta: {},
    Weights: { Passing: 1, Warning: 1 },
    TaggedAddresses: {},
    EnableTagOverride: false,
  };
}

function reg(service: string, id: string, ns = 'default', tags: string[] = []): RegistryCommand {
  const check = checkSpec(`service:${id}`, { Name: 'ttl', Status: 'passing', TTL: '30s' });
  return { type: 'register', ns, node: 'n1', instance: spec(service, id, tags), checks: [check], replaceExistingChecks: false, now: 1_000 };
}

class Machine {
  readonly sm = new RegistryStateMachine();
  next = 1;
  apply(cmd: RegistryCommand): ApplyResult {
    return this.sm.apply({ index: this.next++, term: 1, type: 'normal', data: encodeCommand(cmd), rid: '' });
  }
}

async function documentOf(sm: RegistryStateMachine): Promise<Uint8Array> {
  return sm.snapshot()();
}

/** A registry with two namespaces, a tombstone and checks: the content of the archive. */
async function sourceDocument(): Promise<{ bytes: Uint8Array; data: SnapshotData }> {
  const m = new Machine();
  m.apply(reg('api', 'api-1', 'default', ['v1']));
  m.apply(reg('api', 'api-2', 'default', ['v2']));
  m.apply(reg('web', 'web-1'));
  m.apply(reg('gone', 'gone-1'));
  m.apply({ type: 'deregister', ns: 'default', service: 'gone', id: 'gone-1', now: 2_000 });
  m.apply(reg('db', 'db-1', 'team-a'));
  const bytes = await documentOf(m.sm);
  return { bytes, data: decodeSnapshot(bytes) };
}

t.test('archive: round trip keeps the index and the document byte for byte', async (t) => {
  const { bytes } = await sourceDocument();
  const archive = encodeArchive(6, bytes);
  t.equal(archive.length, ARCHIVE_HEADER_BYTES + bytes.length);
  const back = decodeArchive(archive);
  t.equal(back.index, 6);
  t.ok(Buffer.from(bytes).equals(back.document));
  t.equal(decodeArchive(encodeArchive(0, new Uint8Array(0))).document.length, 0, 'an empty document is still an archive');
});

t.test('archive: every altered byte is refused', async (t) => {
  const { bytes } = await sourceDocument();
  const archive = encodeArchive(6, bytes);
  // Every header byte and a spread of document bytes (every 7th, plus the last).
  const positions = [...Array(ARCHIVE_HEADER_BYTES).keys()];
  for (let i = ARCHIVE_HEADER_BYTES; i < archive.length; i += 7) positions.push(i);
  positions.push(archive.length - 1);
  let refused = 0;
  for (const pos of positions) {
    const bad = Buffer.from(archive);
    bad[pos] = (bad[pos]! ^ 0x01) & 0xff;
    try {
      decodeArchive(bad);
    } catch (err) {
      if ((err as { code?: string }).code === 'SIDER_BAD_REQUEST') refused++;
    }
  }
  t.equal(refused, positions.length, `all ${positions.length} single-bit corruptions refused`);
  const flipped = Buffer.from(archive);
  flipped[archive.length - 1] = flipped[archive.length - 1]! ^ 0x20;
  t.throws(() => decodeArchive(flipped), /checksum mismatch/);
});

t.test('archive: wrong magic, version, truncation and trailing bytes name the problem', async (t) => {
  const { bytes } = await sourceDocument();
  const archive = encodeArchive(6, bytes);
  const magic = Buffer.from(archive);
  magic.write('NOTSIDER', 0, 'ascii');
  t.throws(() => decodeArchive(magic), /bad magic/);
  t.throws(() => decodeArchive(Buffer.from('{"format":"sider-registry"}')), /truncated: 27 bytes/);
  const version = Buffer.from(archive);
  version.writeUInt16BE(9, 8);
  t.throws(() => decodeArchive(version), /unsupported version 9/);
  t.throws(() => decodeArchive(archive.subarray(0, archive.length - 10)), /truncated: the header announces/);
  t.throws(() => decodeArchive(archive.subarray(0, 10)), /truncated/);
  t.throws(() => decodeArchive(Buffer.concat([archive, Buffer.from('x')])), /1 unexpected bytes after the document/);
  t.throws(() => encodeArchive(-1, bytes), /non-negative integer/);
});

t.test('restore command: survives the codec, and is refused when the document is malformed', async (t) => {
  const { data } = await sourceDocument();
  const cmd: RegistryCommand = { type: 'restore', snapshot: data, now: 5_000 };
  const decoded = decodeCommand(encodeCommand(cmd));
  t.ok(decoded.ok);
  t.same(decoded.ok && decoded.command, cmd);
  const broken = JSON.parse(JSON.stringify(cmd)) as { snapshot: { namespaces: { index: unknown }[] } };
  broken.snapshot.namespaces[0]!.index = 'x';
  const bad = decodeCommand(Buffer.from(JSON.stringify(broken)));
  t.notOk(bad.ok);
  t.match(!bad.ok && bad.error, /snapshot\.namespaces\[0\]\.index/);
});

/** A target with its own, different history (a higher index than the archive's). */
function target(): Machine {
  const m = new Machine();
  for (let i = 0; i < 20; i++) m.apply(reg('old', `old-${i}`, 'legacy'));
  m.apply(reg('api', 'api-9', 'default', ['v9']));
  m.apply(reg('cache', 'cache-1'));
  return m;
}

t.test('restore command: same result on every machine, indexes move forward, watchers fire', async (t) => {
  const { data } = await sourceDocument();
  const a = target();
  const b = target();
  const before = a.sm.index();
  t.ok(before > data.index, 'the target is ahead of the archive');
  let fired = 0;
  a.sm.watchService('default', 'api', a.sm.serviceIndex('default', 'api'), () => fired++);
  a.sm.watchService('legacy', 'old', a.sm.serviceIndex('legacy', 'old'), () => fired++);
  a.sm.watchCatalog('default', a.sm.catalogIndex('default'), () => fired++);
  a.sm.watchNamespace('team-a', a.sm.namespaceIndex('team-a'), () => fired++);
  const cmd: RegistryCommand = { type: 'restore', snapshot: data, now: 5_000 };
  const restoredAt = a.next;
  t.same(a.apply(cmd), { ok: true, changed: true });
  t.same(b.apply(cmd), { ok: true, changed: true });
  t.equal(a.sm.digest(), b.sm.digest(), 'two machines, same log, same state');
  t.equal(fired, 4, 'every held watcher woke');
  t.equal(a.sm.watcherCount, 0);

  t.same(a.sm.services('default').map(([n]) => n), ['api', 'web']);
  t.same(a.sm.serviceEntries('default', 'api').map((e) => e.instance.ID), ['api-1', 'api-2']);
  t.same(a.sm.services('team-a').map(([n]) => n), ['db']);
  t.same(a.sm.services('legacy'), [], 'a namespace missing from the archive is emptied');
  t.equal(a.sm.serviceEntries('default', 'cache').length, 0);
  t.equal(a.sm.check('default', 'service:api-1')?.Status, 'passing', 'checks come back with their status');
  t.same(a.sm.checkTimes('default', 'service:api-1'), { renewedAt: 5_000, statusSince: 5_000, renewIntervalMs: 0 }, 'TTL clocks restart at the restore');

  // Every index a client can read is the restore's entry index: never below what it saw before.
  t.equal(a.sm.index(), restoredAt);
  for (const [ns, svc] of [['default', 'api'], ['default', 'cache'], ['default', 'gone'], ['legacy', 'old'], ['team-a', 'db']] as const) {
    t.equal(a.sm.serviceIndex(ns, svc), restoredAt, `serviceIndex ${ns}/${svc} moved forward`);
  }
  for (const ns of ['default', 'legacy', 'team-a']) {
    t.equal(a.sm.catalogIndex(ns), restoredAt);
    t.equal(a.sm.namespaceIndex(ns), restoredAt);
  }
  // Writes after the restore continue from there.
  a.apply(reg('api', 'api-3'));
  t.ok(a.sm.serviceIndex('default', 'api') > restoredAt);
});

t.test('restore command: a document that fails the consistency checks changes nothing', async (t) => {
  const { data } = await sourceDocument();
  const m = target();
  const digest = m.sm.digest();
  const index = m.sm.index();
  const dup: SnapshotData = { ...data, namespaces: [data.namespaces[0]!, data.namespaces[0]!] };
  const r = m.apply({ type: 'restore', snapshot: dup, now: 5_000 });
  t.same(r, { ok: false, error: 'snapshot.namespaces[1]: duplicate namespace "default"', status: 400 });
  const misfiled = JSON.parse(JSON.stringify(data)) as SnapshotData;
  misfiled.namespaces[0]!.services[0]!.instances[0]!.instance.Namespace = 'elsewhere';
  const r2 = m.apply({ type: 'restore', snapshot: misfiled, now: 5_000 });
  t.notOk(r2.ok);
  t.match(!r2.ok && r2.error, /wrong namespace or service/);
  t.equal(m.sm.digest(), digest);
  t.equal(m.sm.index(), index);
});

t.test('restore command: servers of this cluster are kept', async (t) => {
  const { data } = await sourceDocument();
  const m = target();
  m.apply({ type: 'server', server: { ID: 's1', HTTPAddr: '127.0.0.1:1', RaftAddr: '127.0.0.1:2' }, now: 1 });
  m.apply({ type: 'restore', snapshot: { ...data, servers: [{ ID: 'foreign', HTTPAddr: 'x:1', RaftAddr: 'x:2' }] }, now: 5_000 });
  t.same(m.sm.servers().map((s) => s.ID), ['s1']);
});
