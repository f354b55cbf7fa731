// Go duration parsing and formatting: Go's own test vectors, and properties against a naive
// reference (sum of whole components) and a format→parse round trip.

import t from 'tap';
import fc from 'fast-check';
import { formatDurationMs, formatDurationNs, parseDurationMs, parseDurationNs } from '../../http/duration.ts';

const S = 1_000_000_000n;
const MIN = 60n * S;
const H = 60n * MIN;
const MS = 1_000_000n;
const US = 1_000n;

t.test('parses what Go parses, to the same nanosecond', async (t) => {
  const cases: [string, bigint][] = [
    ['0', 0n],
    ['5s', 5n * S],
    ['30s', 30n * S],
    ['1478s', 1478n * S],
    ['-5s', -5n * S],
    ['+5s', 5n * S],
    ['-0', 0n],
    ['+0', 0n],
    ['5.0s', 5n * S],
    ['5.6s', 5n * S + 600n * MS],
    ['5.s', 5n * S],
    ['.5s', 500n * MS],
    ['1.004s', S + 4n * MS],
    ['100.00100s', 100n * S + MS],
    ['10ns', 10n],
    ['11us', 11n * US],
    ['12µs', 12n * US],
    ['12μs', 12n * US],
    ['13ms', 13n * MS],
    ['15m', 15n * MIN],
    ['16h', 16n * H],
    ['3h30m', 3n * H + 30n * MIN],
    ['1m30s', 90n * S],
    ['10.5s4m', 4n * MIN + 10n * S + 500n * MS],
    ['-2m3.4s', -(2n * MIN + 3n * S + 400n * MS)],
    ['1h2m3s4ms5us6ns', H + 2n * MIN + 3n * S + 4n * MS + 5n * US + 6n],
    ['39h9m14.425s', 39n * H + 9n * MIN + 14n * S + 425n * MS],
    ['120000ms', 2n * MIN],
    ['1.5h', 90n * MIN],
    ['52763797000ns', 52763797000n],
    ['0.3333333333333333333h', 20n * MIN],
    ['9007199254740993ns', 9007199254740993n],
    ['9223372036854775807ns', 9223372036854775807n],
    ['9223372036854775.807us', 9223372036854775807n],
    ['9223372036s854ms775us807ns', 9223372036854775807n],
    ['-9223372036854775808ns', -9223372036854775808n],
    ['-9223372036854775.808us', -9223372036854775808n],
    ['0.100000000000000000000h', 6n * MIN],
    ['0.830103483285477580700h', 49n * MIN + 48n * S + 372539827n],
    ['0000000000000000000000001s', S],
  ];
  for (const [input, want] of cases) t.equal(parseDurationNs(input), want, input);
});

t.test('refuses what Go refuses, naming the input', async (t) => {
  const cases: [string, RegExp][] = [
    ['', /^invalid duration ""$/],
    ['3', /missing unit/],
    ['-', /^invalid duration "-"$/],
    ['s', /^invalid duration "s"$/],
    ['.', /^invalid duration "\."$/],
    ['-.', /invalid duration/],
    ['.s', /invalid duration/],
    ['+.s', /invalid duration/],
    ['1d', /unknown unit "d"/],
    ['5x', /^invalid duration "5x": unknown unit "x"$/],
    ['10S', /unknown unit "S"/],
    ['10 s', /unknown unit " s"/],
    [' 10s', /invalid duration/],
    ['1e3s', /unknown unit "e"/],
    ['9223372036854775808ns', /invalid duration/],
    ['9223372036854775.808us', /invalid duration/],
    ['9223372036s854ms775us808ns', /invalid duration/],
    ['-9223372036854775809ns', /invalid duration/],
    ['99999999999999999999999h', /invalid duration/],
  ];
  for (const [input, re] of cases) t.throws(() => parseDurationNs(input), re, JSON.stringify(input));
});

t.test('formats as Go does', async (t) => {
  const cases: [bigint, string][] = [
    [0n, '0s'],
    [1n, '1ns'],
    [1100n, '1.1µs'],
    [2200n * US, '2.2ms'],
    [3300n * MS, '3.3s'],
    [4n * MIN + 5n * S, '4m5s'],
    [4n * MIN + 5001n * MS, '4m5.001s'],
    [5n * H + 6n * MIN + 7001n * MS, '5h6m7.001s'],
    [8n * MIN + 1n, '8m0.000000001s'],
    [2n * MIN, '2m0s'],
    [9223372036854775807n, '2562047h47m16.854775807s'],
    [-9223372036854775807n, '-2562047h47m16.854775807s'],
    [-1500n * MS, '-1.5s'],
  ];
  for (const [ns, want] of cases) t.equal(formatDurationNs(ns), want, want);
  t.equal(formatDurationMs(90_000), '1m30s');
  t.equal(parseDurationMs('1.5us'), 0.0015);
});

const UNITS: [string, bigint][] = [
  ['ns', 1n],
  ['us', US],
  ['µs', US],
  ['ms', MS],
  ['s', S],
  ['m', MIN],
  ['h', H],
];

/** Naive reference: a duration written as whole (or exactly-scaled fractional) components. */
const component = fc
  .tuple(fc.integer({ min: 0, max: 100_000 }), fc.integer({ min: 0, max: UNITS.length - 1 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 999 }))
  .map(([whole, u, fracDigits, fracRaw]) => {
    const [name, unit] = UNITS[u]!;
    // Only fractions whose scaled value is a whole number of nanoseconds, so the float step in
    // Go's algorithm is exact and the reference can use integer arithmetic.
    const scale = 10n ** BigInt(fracDigits);
    const usable = unit % scale === 0n ? fracDigits : 0;
    const frac = usable === 0 ? 0 : fracRaw % 10 ** usable;
    const text = usable === 0 ? `${whole}${name}` : `${whole}.${String(frac).padStart(usable, '0')}${name}`;
    const ns = BigInt(whole) * unit + (usable === 0 ? 0n : (BigInt(frac) * unit) / 10n ** BigInt(usable));
    return { text, ns };
  });

t.test('a sequence of components parses to the sum of its parts (naive reference)', async () => {
  fc.assert(
    fc.property(fc.array(component, { minLength: 1, maxLength: 6 }), fc.constantFrom('', '+', '-'), (parts, sign) => {
      const text = sign + parts.map((p) => p.text).join('');
      const sum = parts.reduce((a, p) => a + p.ns, 0n);
      return parseDurationNs(text) === (sign === '-' ? -sum : sum);
    }),
  );
});

t.test('formatting then parsing gives back the same duration', async () => {
  fc.assert(
    fc.property(fc.bigInt({ min: -(2n ** 63n) + 1n, max: 2n ** 63n - 1n }), (ns) => parseDurationNs(formatDurationNs(ns)) === ns),
  );
});

t.test('any string either parses or throws an "invalid duration" error, never anything else', async () => {
  fc.assert(
    fc.property(fc.string({ unit: fc.constantFrom(...'0123456789.+-nsuµmh d'.split('')), maxLength: 24 }), (s) => {
      try {
        parseDurationNs(s);
        return true;
      } catch (err) {
        return err instanceof Error && err.message.startsWith(`invalid duration ${JSON.stringify(s)}`);
      }
    }),
  );
});
