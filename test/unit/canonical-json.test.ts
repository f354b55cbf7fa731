// canonicalJson: the registry's digest and the health scheduler's change detection rely on equal
// values giving equal text, whatever order their keys were set in.

import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import t from 'tap';
import { canonicalJson } from '../../src/registry/canonical-json.ts';

t.test('keys are sorted at every level; arrays keep their order', async (t) => {
  t.equal(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: 'x' } }), '{"a":{"c":"x","d":[3,{"y":2,"z":1}]},"b":1}');
  t.equal(canonicalJson({ a: 1, b: 2 }), canonicalJson({ b: 2, a: 1 }));
  t.not(canonicalJson([1, 2]), canonicalJson([2, 1]));
});

t.test('undefined as JSON.stringify treats it: a property left out, elsewhere null', async (t) => {
  t.equal(canonicalJson({ a: undefined, b: 1 }), '{"b":1}');
  t.equal(canonicalJson({ a: undefined, b: 1 }), canonicalJson({ b: 1 }));
  t.equal(canonicalJson([undefined, 1]), '[null,1]');
  t.equal(canonicalJson(undefined), 'null');
});

t.test('it holds the same value as JSON.stringify, and key order never matters', async () => {
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      const text = canonicalJson(v);
      const reversed = JSON.parse(JSON.stringify(v), (_k, x: unknown) =>
        x !== null && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).reverse()) : x,
      ) as unknown;
      return isDeepStrictEqual(JSON.parse(text), JSON.parse(JSON.stringify(v))) && canonicalJson(reversed) === text;
    }),
  );
});
