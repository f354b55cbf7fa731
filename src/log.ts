// Structured logging: one line per event, JSON by default or readable text, with a level filter.
// Secrets are never passed to it (callers log names and addresses, not keys or tokens).

import type { Logger, LogLevel } from '../raft/node.ts';

const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export function createLogger(opts: {
  level: LogLevel;
  format: 'json' | 'text';
  node: string;
  write?: (line: string) => void;
}): Logger {
  const min = order[opts.level];
  const write = opts.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  return (level, msg, fields) => {
    if (order[level] < min) return;
    const time = new Date().toISOString();
    if (opts.format === 'json') {
      write(JSON.stringify({ time, level, node: opts.node, msg, ...fields }));
    } else {
      const kv = fields ? Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`) : [];
      write([time, level.toUpperCase().padEnd(5), msg, ...kv].join(' '));
    }
  };
}
