// Wire and disk encodings round-trip, and the bounds that protect decoding from forged counts do
// not refuse the smallest legal values.

import t from 'tap';
import { Reader, Writer, decodeMessages, decodeStoredEntry, encodeMessages, encodeStoredEntry } from '../../raft/codec.ts';
import { emptyMessage } from '../../raft/types.ts';

t.test('a message whose last entry is an empty no-op decodes (regression: the entry-count bound assumed 29 bytes per entry)', async (t) => {
  const m = emptyMessage('app', 'n2', 'n3', 3);
  m.index = 7;
  m.logTerm = 2;
  m.entries = [{ index: 8, term: 3, type: 'noop', data: new Uint8Array(0), rid: '' }];
  const [back] = decodeMessages(encodeMessages([m]));
  t.same(back?.entries, m.entries);
});

t.test('many empty entries in one message decode', async (t) => {
  const m = emptyMessage('app', 'a', 'b', 1);
  m.entries = Array.from({ length: 100 }, (_, i) => ({ index: i + 1, term: 1, type: 'noop' as const, data: new Uint8Array(0), rid: '' }));
  t.equal(decodeMessages(encodeMessages([m]))[0]?.entries.length, 100);
});

t.test('a forged entry count larger than the input is still refused', async (t) => {
  const m = emptyMessage('app', 'a', 'b', 1);
  const buf = Buffer.from(encodeMessages([m]));
  // The entries count sits just before the final snapshot flag byte.
  buf.writeUInt32BE(1_000_000, buf.length - 5);
  t.throws(() => decodeMessages(buf), { code: 'SIDER_BAD_REQUEST' });
});

t.test('a message of another version is refused, naming it (servers of different versions do not talk)', async (t) => {
  const buf = Buffer.from(encodeMessages([emptyMessage('app', 'a', 'b', 1)]));
  // The version byte follows the message count.
  t.equal(buf[4], 2, 'this version writes 2 (compact registry entries)');
  buf[4] = 1;
  t.throws(() => decodeMessages(buf), { code: 'SIDER_BAD_REQUEST', message: /unsupported message version 1/ });
});

t.test("a message of another entry data version is refused, naming both (an application's older servers are not sent entries they cannot read)", async (t) => {
  const buf = encodeMessages([emptyMessage('app', 'a', 'b', 1)], 1);
  t.equal(decodeMessages(buf, 1).length, 1, 'the same data version reads it');
  t.throws(() => decodeMessages(buf), { code: 'SIDER_BAD_REQUEST', message: /entry data version 1, this server's is 0/ });
  t.throws(() => decodeMessages(encodeMessages([emptyMessage('app', 'a', 'b', 1)]), 1), { message: /entry data version 0, this server's is 1/ });
});

t.test('64-bit numbers round-trip at the 32-bit and 53-bit edges; larger, negative or fractional ones are refused', async (t) => {
  const values = [0, 1, 0xffff_ffff, 0x1_0000_0000, 0x1_0000_0001, 1_764_000_000_000, Number.MAX_SAFE_INTEGER];
  const w = new Writer(8);
  for (const v of values) w.num(v);
  const buf = w.finish();
  t.equal(buf.length, 8 * values.length);
  for (const [i, v] of values.entries()) t.equal(buf.readBigUInt64BE(8 * i), BigInt(v), `big-endian ${v}`);
  const r = new Reader(buf);
  t.same(values.map((v) => r.num(String(v))), values);
  for (const bad of [-1, 1.5, Number.MAX_SAFE_INTEGER + 1, NaN]) t.throws(() => new Writer().num(bad), RangeError, String(bad));
  const big = Buffer.alloc(8);
  big.writeBigUInt64BE(BigInt(Number.MAX_SAFE_INTEGER) + 1n);
  t.throws(() => new Reader(big).num('index'), /index out of range/);
  big.writeBigUInt64BE(2n ** 64n - 1n);
  t.throws(() => new Reader(big).num('index'), /index out of range/);
});

t.test('strings are UTF-8 with their byte length; stored entries keep rid and data through growth and their CRC', async (t) => {
  const w = new Writer(4);
  w.str('').str('ascii').str('é → 😀');
  const r = new Reader(w.finish());
  t.same([r.str('a'), r.str('b'), r.str('c')], ['', 'ascii', 'é → 😀']);
  r.end('strings');
  const e = { index: 2 ** 40 + 7, term: 3, type: 'normal' as const, rid: 'ré-😀'.repeat(40), data: Buffer.alloc(5000, 7) };
  const stored = encodeStoredEntry(e);
  t.same(decodeStoredEntry(stored, e.index), e);
  stored[10]! ^= 1;
  t.throws(() => decodeStoredEntry(stored, e.index), /checksum mismatch/);
});
