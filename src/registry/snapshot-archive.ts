// The archive `GET /v1/snapshot` returns and `PUT /v1/snapshot` accepts: the registry document
// (snapshot JSON) behind a fixed header with a magic, a version, the index it was taken at and a
// SHA-256 checksum, so a truncated or altered file is refused before anything is restored.

import { createHash, timingSafeEqual } from 'node:crypto';
import { SiderError } from '../../raft/errors.ts';
import type { SnapshotWriter } from '../../raft/ports.ts';

/** "SIDERSNP": identifies the file. */
export const ARCHIVE_MAGIC = Buffer.from('SIDERSNP', 'ascii');
export const ARCHIVE_VERSION = 1;
/**
 * Header: magic (8) · version u16 BE · reserved u16 (0) · reserved u32 (0) · index u64 BE ·
 * document length u64 BE · SHA-256 (32) over the header's first 32 bytes and the document.
 */
export const ARCHIVE_HEADER_BYTES = 64;
const CHECKSUM_OFFSET = 32;

export interface Archive {
  /** The registry's global index when the archive was taken. */
  index: number;
  /** The registry document (snapshot JSON, UTF-8). */
  document: Buffer;
}

function checksum(head: Uint8Array, document: Uint8Array): Buffer {
  return createHash('sha256').update(head).update(document).digest();
}

export function encodeArchive(index: number, document: Uint8Array): Buffer {
  if (!Number.isSafeInteger(index) || index < 0) throw new SiderError('SIDER_BAD_REQUEST', `archive index must be a non-negative integer, got ${index}`);
  const out = Buffer.alloc(ARCHIVE_HEADER_BYTES + document.length);
  ARCHIVE_MAGIC.copy(out, 0);
  out.writeUInt16BE(ARCHIVE_VERSION, 8);
  out.writeBigUInt64BE(BigInt(index), 16);
  out.writeBigUInt64BE(BigInt(document.length), 24);
  checksum(out.subarray(0, CHECKSUM_OFFSET), document).copy(out, CHECKSUM_OFFSET);
  out.set(document, ARCHIVE_HEADER_BYTES);
  return out;
}

/** What an archive is taken from: the registry's global index and a synchronous point-in-time capture. */
export interface ArchiveSource {
  index(): number;
  snapshot(): SnapshotWriter;
}

/**
 * Archives the registry as it is now: the index and the capture are taken together before anything
 * awaits, so the archive holds exactly the writes up to `index` (at least 1, like X-Consul-Index).
 */
export async function captureArchive(source: ArchiveSource): Promise<{ index: number; archive: Buffer }> {
  const index = Math.max(1, source.index());
  const writer = source.snapshot();
  return { index, archive: encodeArchive(index, await writer()) };
}

function refuse(what: string): never {
  throw new SiderError('SIDER_BAD_REQUEST', `snapshot archive: ${what}`);
}

/** Checks the header and the checksum; throws SIDER_BAD_REQUEST saying what is wrong. */
export function decodeArchive(bytes: Uint8Array): Archive {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < ARCHIVE_HEADER_BYTES) refuse(`truncated: ${buf.length} bytes, the header alone is ${ARCHIVE_HEADER_BYTES}`);
  if (!buf.subarray(0, 8).equals(ARCHIVE_MAGIC)) refuse('bad magic (not a Sider snapshot archive)');
  const version = buf.readUInt16BE(8);
  if (version !== ARCHIVE_VERSION) refuse(`unsupported version ${version} (this server reads ${ARCHIVE_VERSION})`);
  if (buf.readUInt16BE(10) !== 0 || buf.readUInt32BE(12) !== 0) refuse('reserved header bytes are not zero');
  const index = buf.readBigUInt64BE(16);
  if (index > BigInt(Number.MAX_SAFE_INTEGER)) refuse('index out of range');
  const length = buf.readBigUInt64BE(24);
  const actual = BigInt(buf.length - ARCHIVE_HEADER_BYTES);
  if (length > actual) refuse(`truncated: the header announces ${length} document bytes, ${actual} present`);
  if (length < actual) refuse(`${actual - length} unexpected bytes after the document`);
  const document = buf.subarray(ARCHIVE_HEADER_BYTES);
  const want = checksum(buf.subarray(0, CHECKSUM_OFFSET), document);
  if (!timingSafeEqual(want, buf.subarray(CHECKSUM_OFFSET, ARCHIVE_HEADER_BYTES))) refuse('checksum mismatch (the file is corrupted)');
  return { index: Number(index), document };
}
