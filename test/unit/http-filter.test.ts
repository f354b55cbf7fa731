// The ?filter= language on health entries: each operator, and/or/not with precedence and
// parentheses checked against a naive evaluator, and parse errors with their position.

import t from 'tap';
import fc from 'fast-check';
import { isSiderError } from '../../raft/errors.ts';
import { parseFilter } from '../../http/filter.ts';
import { CATALOG_SERVICE_SCHEMA, HEALTH_ENTRY_SCHEMA } from '../../http/render.ts';

function entry(o: { id: string; port: number; tags: string[]; meta: Record<string, string>; statuses: string[]; node?: string; address?: string }): unknown {
  return {
    Node: { ID: 'x', Node: o.node ?? 'node-1', Address: '10.0.0.1', Datacenter: 'dc1', TaggedAddresses: { lan: '10.0.0.1' }, Meta: {} },
    Service: {
      ID: o.id,
      Service: 'web',
      Tags: o.tags,
      Address: o.address ?? '10.0.0.1',
      TaggedAddresses: {},
      Meta: o.meta,
      Port: o.port,
      Weights: { Passing: 1, Warning: 1 },
      EnableTagOverride: false,
      Namespace: 'default',
      CreateIndex: 5,
      ModifyIndex: 7,
    },
    Checks: o.statuses.map((s, i) => ({ CheckID: `c${i}`, Status: s, ServiceTags: o.tags, Name: `check ${i}` })),
  };
}

const a = entry({ id: 'web-1', port: 80, tags: ['primary', 'v1'], meta: { version: '1.0', 'zone.name': 'eu' }, statuses: ['passing'] });
const b = entry({ id: 'web-2', port: 8080, tags: ['v2'], meta: { version: '2.0' }, statuses: ['passing', 'critical'], node: 'node-2', address: '' });

function matches(src: string, value: unknown): boolean {
  return parseFilter(src, HEALTH_ENTRY_SCHEMA).matches(value);
}

t.test('each operator', async (t) => {
  const cases: [string, boolean, boolean][] = [
    ['Service.Meta.version == "1.0"', true, false],
    ['Service.Meta.version != "1.0"', false, true],
    ['Service.Meta.missing == ""', false, false],
    ['Service.Meta.missing != "x"', true, true],
    ['Service.Meta["zone.name"] == `eu`', true, false],
    ['"primary" in Service.Tags', true, false],
    ['"primary" not in Service.Tags', false, true],
    ['primary in Service.Tags', true, false],
    ['Service.Tags contains "v2"', false, true],
    ['Service.Tags not contains "v2"', true, false],
    ['Service.Service == "web"', true, true],
    ['Service.Service == web', true, true],
    ['Service.ID == "web-2"', false, true],
    ['Service.Address == "10.0.0.1"', true, false],
    ['Service.Address is empty', false, true],
    ['Service.Address is not empty', true, false],
    ['Service.Port == 80', true, false],
    ['Service.Port == "8080"', false, true],
    ['Service.Port != 80', false, true],
    ['Service.EnableTagOverride == false', true, true],
    ['Service.Weights.Passing == 1', true, true],
    ['Node.Node == "node-2"', false, true],
    ['Node.Node == node-2', false, true],
    ['Node.Datacenter == dc1', true, true],
    ['"version" in Service.Meta', true, true],
    ['"zone.name" in Service.Meta', true, false],
    ['"prim" in Service.ID', false, false],
    ['"web" in Service.ID', true, true],
    ['Checks.Status == critical', false, true],
    ['Checks.Status != critical', true, false],
    ['Checks.Status == passing', true, true],
    ['"primary" in Checks.ServiceTags', true, false],
    ['Checks is empty', false, false],
    ['Service.Meta is empty', false, false],
  ];
  for (const [src, wantA, wantB] of cases) {
    t.equal(matches(src, a), wantA, `${src} on a`);
    t.equal(matches(src, b), wantB, `${src} on b`);
  }
});

t.test('and binds tighter than or; not and parentheses', async (t) => {
  t.equal(matches('Service.Port == 1 and Service.Port == 80 or Service.ID == "web-1"', a), true);
  t.equal(matches('Service.Port == 1 and (Service.Port == 80 or Service.ID == "web-1")', a), false);
  t.equal(matches('not Service.Port == 80', a), false);
  t.equal(matches('not (Service.Port == 80 and "v1" in Service.Tags)', a), false);
  t.equal(matches('not not Service.Port == 80', a), true);
  t.equal(matches('((Service.Port == 80))', a), true);
  t.equal(matches('Service.Port == 80 and not "v2" in Service.Tags', a), true);
});

t.test('parse errors are 400s quoting the filter and the 1-based position', async (t) => {
  const cases: [string, RegExp][] = [
    ['Service.Port = 80', /^filter "Service.Port = 80": position 14: unexpected "="/],
    ['Service.Meta.x ==', /position 18: expected a value, found end of filter$/],
    ['Service.Nope == 1', /position 1: selector "Service.Nope" is not valid$/],
    ['Service.Port == "abc"', /position 17: "abc" is not a number \(Service.Port is numeric\)$/],
    ['Service.EnableTagOverride == yes', /is not true or false/],
    ['(Service.Port == 80', /position 20: expected "\)", found end of filter$/],
    ['Service.Port == 80)', /position 19: unexpected "\)"$/],
    ['Service.Port == 80 and', /position 23: expected a selector, found end of filter$/],
    ['"x" in', /position 7: expected a selector/],
    ['"x" Service.Tags', /expected "in" or "not in" after a value/],
    ['Service.Tags == "a"', /== needs a string, number or boolean selector; Service.Tags is a list/],
    ['Service.Port is empty', /"is empty" needs a string, list or map/],
    ['"a" in Service.Port', /"in" and "contains" need a string, list or map/],
    ['Service.ID matches "a.*"', /"matches" is not supported/],
    ['Service.ID ~ "a"', /position 12: unexpected character "~"/],
    ['Service.ID == "unterminated', /position 15: unterminated string/],
    ['Service.ID', /expected an operator/],
    ['', /position 1: expected a selector, found end of filter/],
    ['not '.repeat(100) + 'Service.Port == 80', /nested more than 64 deep/],
    ['a'.repeat(5000), /longer than 4096 characters/],
  ];
  for (const [src, re] of cases) {
    try {
      parseFilter(src, HEALTH_ENTRY_SCHEMA);
      t.fail(`accepted ${src}`);
    } catch (err) {
      t.ok(isSiderError(err, 'SIDER_BAD_REQUEST'), src.slice(0, 40));
      t.match((err as Error).message, re, src.slice(0, 40));
    }
  }
});

t.test('catalog schema selectors', async (t) => {
  const row = { ServiceName: 'web', ServicePort: 80, ServiceTags: ['a'], ServiceMeta: { v: '1' } };
  t.equal(parseFilter('ServiceMeta.v == "1" and ServicePort == 80 and a in ServiceTags', CATALOG_SERVICE_SCHEMA).matches(row), true);
  t.throws(() => parseFilter('Service.Port == 80', CATALOG_SERVICE_SCHEMA), /selector "Service.Port" is not valid/);
});

// Property: a random and/or/not tree over atoms evaluates like the same tree evaluated directly.

type Tree = { atom: number } | { not: Tree } | { and: [Tree, Tree] } | { or: [Tree, Tree] };

const ATOMS: [string, (e: typeof a) => boolean][] = [
  ['Service.Port == 80', (e) => (e as { Service: { Port: number } }).Service.Port === 80],
  ['"v1" in Service.Tags', (e) => (e as { Service: { Tags: string[] } }).Service.Tags.includes('v1')],
  ['Service.Meta.version == "2.0"', (e) => (e as { Service: { Meta: Record<string, string> } }).Service.Meta.version === '2.0'],
  ['Node.Node != "node-1"', (e) => (e as { Node: { Node: string } }).Node.Node !== 'node-1'],
  ['Checks.Status == critical', (e) => (e as { Checks: { Status: string }[] }).Checks.some((c) => c.Status === 'critical')],
];

const tree: fc.Arbitrary<Tree> = fc.letrec<{ tree: Tree }>((tie) => ({
  tree: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.integer({ min: 0, max: ATOMS.length - 1 }).map((atom) => ({ atom })),
    tie('tree').map((x) => ({ not: x })),
    fc.tuple(tie('tree'), tie('tree')).map((p) => ({ and: p })),
    fc.tuple(tie('tree'), tie('tree')).map((p) => ({ or: p })),
  ),
})).tree;

function render(x: Tree): string {
  if ('atom' in x) return ATOMS[x.atom]![0];
  if ('not' in x) return `not (${render(x.not)})`;
  if ('and' in x) return `(${render(x.and[0])}) and (${render(x.and[1])})`;
  return `(${render(x.or[0])}) or (${render(x.or[1])})`;
}

function naive(x: Tree, e: typeof a): boolean {
  if ('atom' in x) return ATOMS[x.atom]![1](e);
  if ('not' in x) return !naive(x.not, e);
  if ('and' in x) return naive(x.and[0], e) && naive(x.and[1], e);
  return naive(x.or[0], e) || naive(x.or[1], e);
}

t.test('random boolean trees agree with a naive evaluator', async () => {
  fc.assert(
    fc.property(tree, (x) => {
      const f = parseFilter(render(x), HEALTH_ENTRY_SCHEMA);
      return f.matches(a) === naive(x, a) && f.matches(b) === naive(x, b);
    }),
  );
});

t.test('arbitrary input either parses or fails with a 400, never another error', async () => {
  fc.assert(
    fc.property(fc.string({ unit: fc.constantFrom(...'Service.Port==80 and or not "v1" in ( ) Tags !'.split('')), maxLength: 60 }), (s) => {
      try {
        parseFilter(s, HEALTH_ENTRY_SCHEMA).matches(a);
        return true;
      } catch (err) {
        return isSiderError(err, 'SIDER_BAD_REQUEST');
      }
    }),
  );
});
