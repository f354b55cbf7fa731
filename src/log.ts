// Structured logging on pino: one line per event, JSON by default or readable text, a level
// filter, and a redaction list so that keys, signatures and tokens never reach a log line even when
// a caller passes them by mistake.

import { pino } from 'pino';
import type { DestinationStream } from 'pino';
import type { Logger, LogLevel } from '../raft/node.ts';

/** The project's log function (defined by the Raft library, the lowest layer), for the layers above. */
export type { Logger, LogLevel };
/** Bounded logging of repeated events (also the Raft library's, for its refused requests), for the layers above. */
export { LogThrottle, leftOut } from '../raft/log-throttle.ts';

/**
 * Field names whose values are replaced by `[redacted]` before either format, at the top level and
 * one level down (e.g. a request's `headers.authorization`). Done here rather than with pino's
 * `redact` paths: its wildcard paths (`*.token`) cost ~10 µs per line, which at the default level
 * was a fifth of a registration's CPU on the leader (one `registered service instance` line each).
 */
export const REDACTED_KEYS: ReadonlySet<string> = new Set([
  'clusterKey',
  'cluster_key',
  'token',
  'password',
  'secret',
  'signature',
  'authorization',
  'x-sider-auth',
  'x-consul-token',
]);

export const REDACTED = '[redacted]';

/**
 * An object literal (or null-prototype object): descended into. Stricter than the parsers'
 * isPlainObject (register-parse.ts): Buffers, Errors and class instances are not walked key by key.
 */
function isObjectLiteral(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * `fields` with the values of REDACTED_KEYS replaced, at the top level and one level down. Returns
 * `fields` itself when nothing needs replacing (no copy in the common case).
 */
export function redactFields(fields: Record<string, unknown>, depth = 0): Record<string, unknown> {
  let out = fields;
  for (const k of Object.keys(fields)) {
    const v = fields[k];
    const nv = REDACTED_KEYS.has(k) ? REDACTED : depth === 0 && isObjectLiteral(v) ? redactFields(v, 1) : v;
    if (nv !== v) {
      if (out === fields) out = { ...fields };
      out[k] = nv;
    }
  }
  return out;
}

export interface LoggerOptions {
  level: LogLevel;
  format: 'json' | 'text';
  /** This process's node name or ID, on every line. */
  node: string;
  /** Where finished lines go (without the newline); default: stderr, synchronously. */
  write?: (line: string) => void;
}

/** `2026-11-22T10:00:00.000Z INFO  msg node=s1 key=value …` from one of pino's JSON lines. */
export function textLine(json: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.trimEnd();
  }
  const { time, level, msg, ...rest } = rec;
  const kv = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? (/[\s"=]/.test(v) || v === '' ? JSON.stringify(v) : v) : JSON.stringify(v)}`);
  return [String(time), String(level).toUpperCase().padEnd(5), String(msg), ...kv].join(' ');
}

/**
 * The project's `Logger` function on a pino logger. Lines carry `level` (a name), `time` (ISO
 * 8601), `node`, `msg` and the call's fields.
 */
export function createLogger(opts: LoggerOptions): Logger {
  const write = opts.write;
  let dest: DestinationStream;
  if (opts.format === 'text') {
    const out = write ?? ((line: string) => process.stderr.write(`${line}\n`));
    dest = { write: (s: string) => out(textLine(s)) };
  } else if (write) {
    dest = { write: (s: string) => write(s.endsWith('\n') ? s.slice(0, -1) : s) };
  } else {
    // Synchronous, like process.stderr on a pipe: a line is out before the process exits, and
    // before the answer to the request that logged it (tests and operators rely on that order).
    dest = pino.destination({ fd: 2, sync: true });
  }
  const logger = pino(
    {
      level: opts.level,
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    dest,
  );
  const node = opts.node;
  const log: Logger = (level, msg, fields) => {
    if (!logger.isLevelEnabled(level)) return;
    logger[level](fields ? { node, ...redactFields(fields) } : { node }, msg);
  };
  levelFilters.set(log, (level) => logger.isLevelEnabled(level));
  return log;
}

/** The level filter of each logger createLogger made. */
const levelFilters = new WeakMap<Logger, (level: LogLevel) => boolean>();

/**
 * Whether `log` writes lines of `level`, for a caller whose fields cost something to build (one
 * per registration). True for a logger createLogger did not make: it may keep every line.
 */
export function logsAt(log: Logger, level: LogLevel): boolean {
  return levelFilters.get(log)?.(level) ?? true;
}
