// The sliced snapshot encoder: the same bytes as JSON.stringify for any document, the same bytes
// with a warm cache as with a cold one after changes, and the event loop runs while it encodes.

import t from 'tap';
import fc from 'fast-check';
import { decodeSnapshot, encodeCommand } from '../../src/registry/command-codec.ts';
import type { SnapshotData } from '../../src/registry/command-codec.ts';
import type { RegistryCommand } from '../../src/registry/model.ts';
import { RegistryStateMachine } from '../../src/registry/state-machine.ts';
import { LazyRows, SnapshotCache, encodeSnapshotSliced } from '../../src/registry/snapshot-encoder.ts';
import { checkSpec } from '../../src/registry/specs.ts';

function reg(service: string, id: string, n: number, status: '' | 'passing' = ''): RegistryCommand {
  return {
    type: 'register',
    ns: n % 3 === 0 ? 'other' : 'default',
    node: 'node-1',
    instance: {
      Service: service,
      ID: id,
      Address: `10.0.${(n >> 8) & 255}.${n & 255}`,
      Port: 8080,
      Tags: n % 2 ? ['v1'] : ['v2', 'ü-tag'],
      Meta: { version: `1.${n}`, 'ключ': 'значение' },
      Weights: { Passing: 1, Warning: 1 },
      TaggedAddresses: {},
      EnableTagOverride: false,
    },
    checks: [
      checkSpec(`service:${id}`, { Name: 'ttl', Status: status, TTL: '10s' }),
    ],
    replaceExistingChecks: false,
    now: 1_000 + n,
  };
}

function retagged(cmd: RegistryCommand, tags: string[]): RegistryCommand {
  if (cmd.type !== 'register') throw new Error('not a registration');
  return { ...cmd, instance: { ...cmd.instance, Tags: tags } };
}

function applyAll(sm: RegistryStateMachine, cmds: RegistryCommand[], from: number): void {
  for (const [i, cmd] of cmds.entries()) sm.apply({ index: from + i, term: 1, type: 'normal', rid: `rid-${from + i}`, data: encodeCommand(cmd) });
}

/** A registry of `count` instances spread over `services` services. */
function registry(count: number, services: number): RegistryStateMachine {
  const sm = new RegistryStateMachine();
  applyAll(sm, Array.from({ length: count }, (_, n) => reg(`svc-${n % services}`, `i-${n}`, n)), 1);
  return sm;
}

/** The snapshot document of registry(count, services). */
async function registryDocument(count: number, services: number): Promise<SnapshotData> {
  return JSON.parse(Buffer.from(await registry(count, services).snapshot()()).toString('utf8')) as SnapshotData;
}

t.test('any JSON document encodes to the bytes JSON.stringify gives', async (t) => {
  const doc = fc.record({
    format: fc.constant('sider-registry'),
    version: fc.constant(1),
    index: fc.nat(),
    namespaces: fc.array(
      fc.record({
        name: fc.string(),
        index: fc.nat(),
        services: fc.array(
          fc.record({
            name: fc.string({ unit: 'binary' }),
            instances: fc.array(fc.record({ instance: fc.jsonValue(), checks: fc.array(fc.jsonValue()) })),
            extra: fc.option(fc.jsonValue(), { nil: undefined }),
          }),
        ),
        tombstones: fc.array(fc.tuple(fc.string(), fc.nat()), { maxLength: 1200 }),
      }),
    ),
    servers: fc.array(fc.jsonValue()),
    dedup: fc.array(fc.tuple(fc.string(), fc.jsonValue()), { maxLength: 1100 }),
  });
  await fc.assert(
    fc.asyncProperty(doc, async (d) => {
      const expected = JSON.stringify(d);
      const cold = await encodeSnapshotSliced(d as unknown as SnapshotData, { sliceMs: 0 });
      const cache = new SnapshotCache();
      const warm1 = await encodeSnapshotSliced(d as unknown as SnapshotData, { cache });
      const warm2 = await encodeSnapshotSliced(d as unknown as SnapshotData, { cache });
      // The same elements elsewhere (reversed, one dropped) beside new ones: copied from their old places.
      const moved = {
        ...d,
        namespaces: d.namespaces.map((ns) => ({
          ...ns,
          services: ns.services.map((svc, i) => ({ ...svc, instances: [{ instance: i, checks: [] }, ...svc.instances.slice(1).reverse()] })),
        })),
      };
      const warm3 = await encodeSnapshotSliced(moved as unknown as SnapshotData, { cache, sizeHint: 1 });
      return (
        cold.toString('utf8') === expected &&
        warm1.toString('utf8') === expected &&
        warm2.toString('utf8') === expected &&
        warm3.toString('utf8') === JSON.stringify(moved)
      );
    }),
    { numRuns: 100 },
  );
  t.pass('every generated document matched');
});

t.test('a warm cache gives the same snapshot as a cold one after registrations, changes and removals', async (t) => {
  const warm = new RegistryStateMachine();
  const log: RegistryCommand[] = [];
  for (let n = 0; n < 300; n++) log.push(reg(`svc-${n % 7}`, `i-${n}`, n));
  applyAll(warm, log, 1);
  const first = Buffer.from(await warm.snapshot()());

  // Changes to cached records: a check status, an instance's tags, a deregistration, new instances.
  const more: RegistryCommand[] = [
    { type: 'checkStatus', ns: 'default', checkId: 'service:i-1', status: 'passing', output: 'ok', now: 5_000 },
    retagged(reg('svc-2', 'i-2', 2), ['changed']),
    { type: 'deregister', ns: 'default', service: 'svc-4', id: 'i-4', now: 5_001 },
    reg('svc-new', 'i-new', 1000, 'passing'),
  ];
  applyAll(warm, more, 301);
  const second = Buffer.from(await warm.snapshot()());

  const cold = new RegistryStateMachine();
  applyAll(cold, [...log, ...more], 1);
  const coldBytes = Buffer.from(await cold.snapshot()());
  t.ok(second.equals(coldBytes), 'warm-cache snapshot equals the snapshot of a machine that never encoded before');
  t.notOk(second.equals(first), 'the changes are in the second snapshot');

  const doc = decodeSnapshot(second);
  const checks = doc.namespaces.flatMap((ns) => ns.services.flatMap((s) => s.instances.flatMap((i) => i.checks)));
  t.equal(checks.find((c) => c.CheckID === 'service:i-1')?.Status, 'passing', 'the changed check status is encoded');
  const restored = new RegistryStateMachine();
  restored.restore(second, { index: 304, term: 1, membership: { voters: [], learners: [], addrs: {}, removed: [] } });
  t.equal(restored.digest(), warm.digest(), 'the snapshot restores to the same state');
});

t.test('a warm snapshot copies unchanged instances from the last one, across output chunks', async (t) => {
  const doc = await registryDocument(2_000, 13);
  const cache = new SnapshotCache();
  // No size hint: the output grows chunk by chunk, so elements land in several chunks.
  const first = await encodeSnapshotSliced(doc, { cache, sliceMs: 1 });
  t.ok(first.toString('utf8') === JSON.stringify(doc), 'cold: the bytes JSON.stringify gives');
  const element = doc.namespaces[0]!.services[0]!.instances[0]!;
  const packed = cache.at.get(element);
  t.type(packed, 'number', 'each element is located in the output');
  const start = Math.floor(packed! / 2 ** 21);
  t.equal(cache.bytes, first, 'the cache points into this snapshot');
  t.equal(first.subarray(start, start + (packed! % 2 ** 21)).toString('utf8'), JSON.stringify(element), 'at its place');
  // The registry changed a little: one service's instances, in a new order, one replaced.
  const svc = doc.namespaces[0]!.services[1]!;
  svc.instances = [...svc.instances].reverse();
  svc.instances[0] = { ...svc.instances[0]!, checks: [] };
  const second = await encodeSnapshotSliced(doc, { cache, sliceMs: 1, sizeHint: 1 });
  t.ok(second.toString('utf8') === JSON.stringify(doc), 'warm: the same bytes');
  t.equal(cache.bytes, second, 'the cache moves to the newest snapshot');
  t.not(first.toString('utf8'), second.toString('utf8'));
});

t.test('an element too long to locate (2 MiB) is encoded afresh each time, the others still copied', async (t) => {
  const doc = await registryDocument(20, 2);
  const big = { instance: { ID: 'big', Meta: { blob: 'x'.repeat(2 ** 21) } }, checks: [] };
  (doc.namespaces[0]!.services[0]!.instances as unknown[]).push(big);
  const cache = new SnapshotCache();
  for (const round of ['cold', 'warm']) {
    const bytes = await encodeSnapshotSliced(doc, { cache });
    t.ok(bytes.toString('utf8') === JSON.stringify(doc), `${round}: the bytes JSON.stringify gives`);
  }
  t.equal(cache.at.get(big), undefined, 'the long element is not located');
  t.type(cache.at.get(doc.namespaces[0]!.services[0]!.instances[0]!), 'number', 'a short one is');
});

t.test('a restore drops the snapshot cache', async (t) => {
  const sm = registry(50, 3);
  const bytes = Buffer.from(await sm.snapshot()());
  sm.restore(bytes, { index: 50, term: 1, membership: { voters: [], learners: [], addrs: {}, removed: [] } });
  const again = Buffer.from(await sm.snapshot()());
  t.ok(again.equals(bytes), 'the snapshot after a restore is the restored one, encoded afresh');
});

t.test('the event loop runs while a large snapshot is encoded', async (t) => {
  const sm = new RegistryStateMachine();
  const log: RegistryCommand[] = [];
  for (let n = 0; n < 5_000; n++) log.push(reg(`svc-${n % 50}`, `i-${n}`, n));
  applyAll(sm, log, 1);
  let turns = 0;
  let ticking = true;
  const tick = (): void => {
    turns++;
    if (ticking && turns < 100_000) setImmediate(tick);
  };
  setImmediate(tick);
  const bytes = await encodeSnapshotSliced(JSON.parse(Buffer.from(await sm.snapshot()()).toString('utf8')) as SnapshotData, { sliceMs: 0 });
  ticking = false;
  t.ok(turns > 10, `other callbacks ran during encoding (${turns} turns)`);
  t.ok(bytes.length > 1_000_000, 'the document is large');
});

t.test('the output is the same whether it fits the size hint, outgrows it in chunks, or is far smaller', async (t) => {
  const doc = await registryDocument(3_000, 40);
  // One text longer than any chunk so far: a chunk is made to fit it.
  (doc.servers as unknown[]).push({ ID: 'x'.repeat(300_000) });
  const expected = JSON.stringify(doc);
  const size = Buffer.byteLength(expected);
  t.ok(size > 1_000_000, 'a document many times the first chunk');
  for (const sizeHint of [0, 70_000, size - 1, size, size + 10, size * 3]) {
    const bytes = await encodeSnapshotSliced(doc, { sliceMs: 1, sizeHint });
    t.equal(bytes.length, size, `size hint ${sizeHint}: exact length`);
    t.ok(bytes.toString('utf8') === expected, `size hint ${sizeHint}: the bytes JSON.stringify gives`);
    if (sizeHint === size * 3) t.ok(bytes.buffer.byteLength < size * 2, 'far too much room is not kept with the result');
  }
});

t.test('check times of a namespace larger than one sort run come out sorted, each with its own times', async (t) => {
  const sm = new RegistryStateMachine();
  // Scrambled insertion order, about three sort runs per namespace.
  const count = 5_000;
  applyAll(sm, Array.from({ length: count }, (_, n) => reg(`svc-${n % 40}`, `i-${(n * 7919) % 10_007}`, n)), 1);
  const doc = JSON.parse(Buffer.from(await sm.snapshot()()).toString('utf8')) as SnapshotData;
  let seen = 0;
  for (const ns of doc.namespaces) {
    const times = ns.checkTimes ?? [];
    const ids = times.map(([id]) => id);
    t.ok(ids.every((id, i) => i === 0 || ids[i - 1]! < id), `${ns.name}: ${ids.length} check IDs in ascending order`);
    const wrong = times.filter(([id, renewedAt, statusSince, interval]) => {
      const times = sm.checkTimes(ns.name, id);
      return !times || times.renewedAt !== renewedAt || times.statusSince !== statusSince || times.renewIntervalMs !== interval;
    });
    t.same(wrong, [], `${ns.name}: every check's own times`);
    seen += ids.length;
  }
  t.equal(seen, count, 'one entry per check');
});

t.test('a long list encoded in chunks (the dedup table) looks at the clock after every chunk', async (t) => {
  const rows = 64 * 512;
  const doc = {
    format: 'sider-registry',
    version: 1,
    index: 1,
    namespaces: [],
    servers: [],
    dedup: Array.from({ length: rows }, (_, i) => [`rid-${i}`, { ok: true, changed: true }]),
  } as unknown as SnapshotData;
  let turns = 0;
  let ticking = true;
  const tick = (): void => {
    turns++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  const bytes = await encodeSnapshotSliced(doc, { sliceMs: 0 });
  ticking = false;
  t.equal(bytes.toString('utf8'), JSON.stringify(doc), 'the bytes JSON.stringify gives');
  // One chunk is 512 rows: with sliceMs 0 every chunk ends its slice (not every 32nd).
  t.ok(turns >= rows / 512 / 2, `other callbacks ran ${turns} times for ${rows / 512} chunks`);
});

t.test('lazy rows encode to the bytes of the built list, made a chunk at a time and never all at once', async (t) => {
  for (const length of [0, 1, 511, 512, 513, 2_000]) {
    const asked: number[] = [];
    const rows = new LazyRows(length, (from, to) => {
      asked.push(to - from);
      return Array.from({ length: to - from }, (_, i): [string, number] => [`id-${from + i}`, from + i]);
    });
    const doc = { format: 'sider-registry', version: 1, index: 7, namespaces: [{ name: 'default', checkTimes: rows }], servers: [], dedup: rows };
    const bytes = await encodeSnapshotSliced(doc as never, { sliceMs: 0 });
    const built = Array.from({ length }, (_, i) => [`id-${i}`, i]);
    const expected = JSON.stringify({ ...doc, namespaces: [{ name: 'default', checkTimes: built }], dedup: built });
    t.equal(bytes.toString('utf8'), expected, `${length} rows: the bytes of the built list`);
    t.ok(asked.every((n) => n <= 512), `${length} rows: made at most 512 at a time (${asked.join(',')})`);
    t.equal(JSON.stringify(doc), expected, 'JSON.stringify writes them whole (toJSON)');
  }
});

t.test("the registry's snapshot writer makes the dedup table and check times lazily, 512 rows at most at a time", async (t) => {
  const sm = registry(1_500, 10);
  const sizes: number[] = [];
  const rows = LazyRows.prototype.rows;
  LazyRows.prototype.rows = function (this: LazyRows<unknown>, from: number, to: number) {
    const out = rows.call(this, from, to);
    sizes.push(out.length);
    return out;
  };
  t.teardown(() => {
    LazyRows.prototype.rows = rows;
  });
  const doc = JSON.parse(Buffer.from(await sm.snapshot()()).toString('utf8')) as SnapshotData;
  t.equal(doc.dedup.length, 1_500);
  // 1,500 dedup rows and 1,500 check times over two namespaces, in chunks.
  t.ok(sizes.length >= 6, `made in ${sizes.length} chunks`);
  t.ok(sizes.every((n) => n <= 512), `at most 512 rows each (${sizes.join(',')})`);
  t.equal(sizes.reduce((a, b) => a + b, 0), 3_000, 'every row made once');
});
