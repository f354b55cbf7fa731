// `sider server` configuration: flags (single- or double-dash), SIDER_* environment variables and a
// JSON config file, merged in that order of precedence, validated with bounds and field names.

import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { DEFAULT_IDLE_GC_INTERVAL_MS, MIN_IDLE_GC_INTERVAL_MS } from './idle-gc.ts';
import { SiderError } from '../raft/errors.ts';
import { parseFlags, unknownFlag } from './flags.ts';

export interface ServerConfig {
  /** HTTP API listen address host:port. */
  http: string;
  /** HTTP address other servers use to reach this one (for write forwarding). */
  httpAdvertise: string;
  /** DNS listen address host:port (UDP and TCP); '' when disabled (`-dns off`). */
  dns: string;
  /** DNS zone, lower case, no trailing dot. */
  dnsZone: string;
  /** TTL of DNS records and of negative answers (SOA minimum), seconds. */
  dnsTtl: number;
  /** DNS serves passing instances only (default: passing and warning, as Consul). */
  dnsOnlyPassing: boolean;
  /** Also answer Consul's `<service>.service.<domain>` names for the default namespace; '' = off. */
  dnsConsulDomain: string;
  raftId: string;
  /** Raft listen address host:port. */
  raftBind: string;
  /** Raft address peers use; defaults to raftBind (must then not be a wildcard). */
  raftAdvertise: string;
  raftDir: string;
  bootstrap: boolean;
  /** HTTP address (host:port) of a member of the cluster to join, when the data directory is fresh. */
  join: string;
  /** Cluster formation: wait until this many servers (itself included) are known, then one bootstraps; 0 = off. */
  bootstrapExpect: number;
  /** HTTP addresses (host:port) of the other servers to find for -bootstrap-expect, or to join through. */
  retryJoin: string[];
  /**
   * Disaster recovery: at this start, rewrite the data directory so this server is the only voter of
   * a new cluster (raft/recover.ts). Unsafe; has no effect on a later start without it.
   */
  forceNewCluster: boolean;
  /** Shared secret for Raft traffic, joins and forwarded writes (≥ 16 bytes). '' = none (loopback only). */
  clusterKey: string;
  datacenter: string;
  nodeName: string;
  enableScriptChecks: boolean;
  /** After a leader change, TTL checks are not expired for this long (clients find the new leader). */
  ttlFailoverGraceMs: number;
  /** How often an idle server looks whether to collect V8's young generation (src/idle-gc.ts); 0 = never. */
  idleGcMs: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  logFormat: 'json' | 'text';
  /** Raft timing (DESIGN §8 defaults). */
  tickMs: number;
  electionTicks: number;
}

interface FieldSpec {
  key: keyof ServerConfig;
  flag: string;
  kind: 'string' | 'boolean' | 'int' | 'list';
  min?: number;
  max?: number;
}

const FIELDS: FieldSpec[] = [
  { key: 'http', flag: 'http', kind: 'string' },
  { key: 'httpAdvertise', flag: 'http-advertise', kind: 'string' },
  { key: 'dns', flag: 'dns', kind: 'string' },
  { key: 'dnsZone', flag: 'dns-zone', kind: 'string' },
  { key: 'dnsTtl', flag: 'dns-ttl', kind: 'int', min: 0, max: 86_400 },
  { key: 'dnsOnlyPassing', flag: 'dns-only-passing', kind: 'boolean' },
  { key: 'dnsConsulDomain', flag: 'dns-consul-domain', kind: 'string' },
  { key: 'raftId', flag: 'raft-id', kind: 'string' },
  { key: 'raftBind', flag: 'raft-bind', kind: 'string' },
  { key: 'raftAdvertise', flag: 'raft-advertise', kind: 'string' },
  { key: 'raftDir', flag: 'raft-dir', kind: 'string' },
  { key: 'bootstrap', flag: 'bootstrap', kind: 'boolean' },
  { key: 'join', flag: 'join', kind: 'string' },
  { key: 'bootstrapExpect', flag: 'bootstrap-expect', kind: 'int', min: 0, max: 9 },
  { key: 'retryJoin', flag: 'retry-join', kind: 'list' },
  { key: 'forceNewCluster', flag: 'force-new-cluster', kind: 'boolean' },
  { key: 'clusterKey', flag: 'cluster-key', kind: 'string' },
  { key: 'datacenter', flag: 'datacenter', kind: 'string' },
  { key: 'nodeName', flag: 'node-name', kind: 'string' },
  { key: 'enableScriptChecks', flag: 'enable-script-checks', kind: 'boolean' },
  { key: 'ttlFailoverGraceMs', flag: 'ttl-failover-grace-ms', kind: 'int', min: 0, max: 600_000 },
  { key: 'idleGcMs', flag: 'idle-gc-ms', kind: 'int', min: 0, max: 60_000 },
  { key: 'logLevel', flag: 'log-level', kind: 'string' },
  { key: 'logFormat', flag: 'log-format', kind: 'string' },
  { key: 'tickMs', flag: 'raft-tick-ms', kind: 'int', min: 10, max: 10_000 },
  { key: 'electionTicks', flag: 'raft-election-ticks', kind: 'int', min: 3, max: 1000 },
];

export const SERVER_USAGE = `usage: sider server [flags]

  -http host:port            HTTP API address (default 127.0.0.1:8500)
  -http-advertise host:port  HTTP address other servers reach this one at (default: -http)
  -dns host:port             DNS address, UDP and TCP (default 127.0.0.1:8600; off or '' disables DNS)
  -dns-zone ZONE             DNS zone (default sider)
  -dns-ttl SECONDS           TTL of DNS answers, and of negative answers (default 0)
  -dns-only-passing          DNS serves passing instances only (default: passing and warning)
  -dns-consul-domain DOMAIN  also answer <service>.service.DOMAIN for the default namespace (e.g. consul)
  -raft-id ID                this server's Raft ID, unique forever (default: host name)
  -raft-bind host:port       Raft address (default 127.0.0.1:8501)
  -raft-advertise host:port  Raft address peers use (default: -raft-bind)
  -raft-dir DIR              data directory (default ./data)
  -bootstrap                 start a new single-server cluster if the data directory is fresh
  -join host:port            join the cluster of the server with this HTTP address (fresh data directory)
  -bootstrap-expect N        fresh data directory: find the -retry-join servers until N are known
                             (itself included), then the one with the smallest -raft-id bootstraps
                             and the others join it; a peer already in a cluster is joined instead
  -retry-join host:port      HTTP address of another server (repeatable; env: comma-separated list)
  -force-new-cluster         UNSAFE disaster recovery after quorum is lost: make this server, on its
                             existing data, the only voter of a new cluster (new cluster ID); use
                             once, then start without it (README "Disaster recovery")
  -cluster-key KEY           shared secret (prefer SIDER_CLUSTER_KEY); required off loopback
  -datacenter NAME           reported in Consul's Datacenter fields (default dc1)
  -node-name NAME            Node of instances registered here (default: -raft-id)
  -enable-script-checks      allow script checks in HTTP registrations
  -ttl-failover-grace-ms N   a new leader expires no TTL check for N ms (default 2000)
  -idle-gc-ms N              every N ms, collect V8's young generation if the server was idle
                             (default 250; 0 = never; README "Idle-time collection")
  -log-level debug|info|warn|error, -log-format json|text
  -config-file FILE          JSON file with any of the above (keys as flag names)

Every flag can also be set as SIDER_<FLAG> (e.g. SIDER_RAFT_ID, SIDER_CLUSTER_KEY).
Precedence: flags, then environment, then config file.`;

function configError(message: string): SiderError {
  return new SiderError('SIDER_CONFIG', message);
}

function envName(flag: string): string {
  return `SIDER_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/** Parses `host:port` ('[::1]:8500', ':8500' = all interfaces). */
export function parseHostPort(value: string, field: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw configError(`${field}: expected host:port, got ${JSON.stringify(value)}`);
  const host = m[1] ?? (m[2] || '0.0.0.0');
  return { host, port };
}

/** Whether `host` (as parseHostPort returns it) means every interface. */
export function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

function idleGcMs(v: number | undefined): number {
  if (v === undefined) return DEFAULT_IDLE_GC_INTERVAL_MS;
  if (v !== 0 && v < MIN_IDLE_GC_INTERVAL_MS) throw configError(`-idle-gc-ms: must be 0 (never) or at least ${MIN_IDLE_GC_INTERVAL_MS}, got ${v}`);
  return v;
}

/** Builds the configuration from argv (after the `server` word), the environment and an optional file. */
export function loadServerConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const args = parseFlags(argv, {
    boolean: FIELDS.filter((f) => f.kind === 'boolean').map((f) => f.flag),
    string: [...FIELDS.filter((f) => f.kind !== 'boolean').map((f) => f.flag), 'config-file'],
  });
  const unknown = unknownFlag(args, [...FIELDS.map((f) => f.flag), 'config-file', 'help', 'h']);
  if (unknown !== undefined) throw configError(`unknown flag -${unknown} (see sider server -help)`);
  if (args._.length > 0) throw configError(`unexpected argument ${JSON.stringify(String(args._[0]))}`);

  let file: Record<string, unknown> = {};
  const filePath = (args['config-file'] as string | undefined) ?? env.SIDER_CONFIG_FILE;
  if (filePath) {
    let raw: string;
    try {
      raw = readFileSync(filePath, 'utf8');
    } catch (err) {
      throw configError(`config file ${filePath}: ${(err as Error).message}`);
    }
    try {
      const v = JSON.parse(raw) as unknown;
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
      file = v as Record<string, unknown>;
    } catch (err) {
      throw configError(`config file ${filePath}: ${(err as Error).message}`);
    }
    for (const k of Object.keys(file)) {
      if (!FIELDS.some((f) => f.flag === k)) throw configError(`config file ${filePath}: unknown key ${JSON.stringify(k)}`);
    }
  }

  const raw: Partial<Record<keyof ServerConfig, unknown>> = {};
  for (const f of FIELDS) {
    const fromFlag = args[f.flag] as unknown;
    const fromEnv = env[envName(f.flag)];
    const fromFile = file[f.flag];
    let v: unknown;
    let where: string;
    if (fromFlag !== undefined && given(argv, f.flag)) {
      v = fromFlag;
      where = `-${f.flag}`;
    } else if (fromEnv !== undefined) {
      v = fromEnv;
      where = envName(f.flag);
    } else if (fromFile !== undefined) {
      v = fromFile;
      where = `config file key ${f.flag}`;
    } else {
      continue;
    }
    raw[f.key] = coerce(f, v, where);
  }

  const raftId = (raw.raftId as string | undefined) ?? hostname().toLowerCase().replace(/[^a-z0-9-]/g, '-').slice(0, 63);
  const cfg: ServerConfig = {
    http: (raw.http as string | undefined) ?? '127.0.0.1:8500',
    httpAdvertise: (raw.httpAdvertise as string | undefined) ?? '',
    dns: (raw.dns as string | undefined) ?? '127.0.0.1:8600',
    dnsZone: (raw.dnsZone as string | undefined) ?? 'sider',
    dnsTtl: (raw.dnsTtl as number | undefined) ?? 0,
    dnsOnlyPassing: (raw.dnsOnlyPassing as boolean | undefined) ?? false,
    dnsConsulDomain: (raw.dnsConsulDomain as string | undefined) ?? '',
    raftId,
    raftBind: (raw.raftBind as string | undefined) ?? '127.0.0.1:8501',
    raftAdvertise: (raw.raftAdvertise as string | undefined) ?? '',
    raftDir: (raw.raftDir as string | undefined) ?? './data',
    bootstrap: (raw.bootstrap as boolean | undefined) ?? false,
    join: (raw.join as string | undefined) ?? '',
    bootstrapExpect: (raw.bootstrapExpect as number | undefined) ?? 0,
    retryJoin: (raw.retryJoin as string[] | undefined) ?? [],
    forceNewCluster: (raw.forceNewCluster as boolean | undefined) ?? false,
    clusterKey: (raw.clusterKey as string | undefined) ?? '',
    datacenter: (raw.datacenter as string | undefined) ?? 'dc1',
    nodeName: (raw.nodeName as string | undefined) ?? raftId,
    enableScriptChecks: (raw.enableScriptChecks as boolean | undefined) ?? false,
    ttlFailoverGraceMs: (raw.ttlFailoverGraceMs as number | undefined) ?? 2000,
    idleGcMs: idleGcMs(raw.idleGcMs as number | undefined),
    logLevel: ((raw.logLevel as string | undefined) ?? 'info') as ServerConfig['logLevel'],
    logFormat: ((raw.logFormat as string | undefined) ?? 'json') as ServerConfig['logFormat'],
    tickMs: (raw.tickMs as number | undefined) ?? 100,
    electionTicks: (raw.electionTicks as number | undefined) ?? 10,
  };
  validate(cfg);
  return cfg;
}

/** Whether the flag appears on the command line (yargs-parser defaults unset booleans to false). */
function given(argv: string[], flag: string): boolean {
  return argv.some((a) => {
    const name = a.startsWith('-') ? a.replace(/^-+/, '').split('=')[0] : '';
    return name === flag || name === `no-${flag}`;
  });
}

function coerce(f: FieldSpec, v: unknown, where: string): unknown {
  if (f.kind === 'boolean') {
    if (typeof v === 'boolean') return v;
    if (v === 'true' || v === '1' || v === '') return true;
    if (v === 'false' || v === '0') return false;
    throw configError(`${where}: expected true or false, got ${JSON.stringify(v)}`);
  }
  if (f.kind === 'list') {
    // A comma-separated string (environment), a repeated flag (array) or a JSON array (config file).
    const items = typeof v === 'string' ? v.split(',') : Array.isArray(v) && v.length <= 64 ? v : null;
    if (!items || !items.every((x) => typeof x === 'string' && x.length <= 4096)) throw configError(`${where}: expected host:port values`);
    return (items as string[]).map((x) => x.trim()).filter((x) => x !== '');
  }
  if (f.kind === 'int') {
    const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : NaN;
    if (!Number.isInteger(n) || n < (f.min ?? 0) || n > (f.max ?? Number.MAX_SAFE_INTEGER)) {
      throw configError(`${where}: expected an integer in [${f.min}, ${f.max}], got ${JSON.stringify(v)}`);
    }
    return n;
  }
  if (typeof v !== 'string' || v.length > 4096) throw configError(`${where}: expected a string`);
  return v;
}

const ID_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function validate(cfg: ServerConfig): void {
  if (!ID_RE.test(cfg.raftId)) {
    throw configError(`-raft-id: ${JSON.stringify(cfg.raftId)} must be 1-63 lower-case letters, digits or '-'`);
  }
  const http = parseHostPort(cfg.http, '-http');
  const raft = parseHostPort(cfg.raftBind, '-raft-bind');
  if (cfg.raftAdvertise) {
    const a = parseHostPort(cfg.raftAdvertise, '-raft-advertise');
    if (isWildcard(a.host) || a.port === 0) throw configError('-raft-advertise: must name a reachable host and port');
  } else if (isWildcard(raft.host) || raft.port === 0) {
    throw configError('-raft-bind: a wildcard or port 0 needs -raft-advertise with the address peers should use');
  }
  if (cfg.httpAdvertise) {
    const a = parseHostPort(cfg.httpAdvertise, '-http-advertise');
    if (isWildcard(a.host) || a.port === 0) throw configError('-http-advertise: must name a reachable host and port');
  } else if (isWildcard(http.host) && http.port !== 0) {
    // Forwarded writes need a reachable address; a wildcard bind is reachable on loopback only.
    cfg.httpAdvertise = `127.0.0.1:${http.port}`;
  }
  if (cfg.join) parseHostPort(cfg.join, '-join');
  validateDns(cfg);
  if (cfg.bootstrap && cfg.join) throw configError('-bootstrap and -join are mutually exclusive');
  for (const a of cfg.retryJoin) parseHostPort(a, '-retry-join');
  if (cfg.bootstrapExpect > 0) {
    if (cfg.bootstrap || cfg.join) throw configError('-bootstrap-expect excludes -bootstrap and -join');
    if (cfg.bootstrapExpect > 1 && cfg.retryJoin.length === 0) throw configError('-bootstrap-expect: needs -retry-join with the other servers\' HTTP addresses');
    if (cfg.bootstrapExpect > 1 && http.port === 0) throw configError('-bootstrap-expect: -http needs a fixed port the other servers can reach');
  } else if (cfg.retryJoin.length > 0 && (cfg.bootstrap || cfg.join)) {
    throw configError('-retry-join excludes -bootstrap and -join');
  }
  if (cfg.clusterKey && Buffer.byteLength(cfg.clusterKey) < 16) throw configError('-cluster-key: must be at least 16 bytes');
  if (!['debug', 'info', 'warn', 'error'].includes(cfg.logLevel)) throw configError(`-log-level: expected debug, info, warn or error, got ${JSON.stringify(cfg.logLevel)}`);
  if (!['json', 'text'].includes(cfg.logFormat)) throw configError(`-log-format: expected json or text, got ${JSON.stringify(cfg.logFormat)}`);
  if (!/^[a-zA-Z0-9_.-]{1,64}$/.test(cfg.datacenter)) throw configError('-datacenter: 1-64 letters, digits, "_", "." or "-"');
  if (!/^[a-zA-Z0-9_.-]{1,128}$/.test(cfg.nodeName)) throw configError('-node-name: 1-128 letters, digits, "_", "." or "-"');
}

/** A DNS domain given as a flag: 1–8 DNS labels, any case, optional trailing dot → lower case, no dot. */
function parseDomain(value: string, field: string): string {
  const d = value.toLowerCase().replace(/\.$/, '');
  const labels = d.split('.');
  if (d.length === 0 || d.length > 200 || labels.length > 8 || !labels.every((l) => ID_RE.test(l))) {
    throw configError(`${field}: expected a domain of DNS labels such as "sider", got ${JSON.stringify(value)}`);
  }
  return d;
}

function validateDns(cfg: ServerConfig): void {
  if (cfg.dns === 'off') cfg.dns = '';
  if (cfg.dns !== '') parseHostPort(cfg.dns, '-dns');
  cfg.dnsZone = parseDomain(cfg.dnsZone, '-dns-zone');
  if (cfg.dnsConsulDomain !== '') {
    const c = parseDomain(cfg.dnsConsulDomain, '-dns-consul-domain');
    const z = cfg.dnsZone;
    if (c === z || c.endsWith(`.${z}`) || z.endsWith(`.${c}`)) {
      throw configError(`-dns-consul-domain: ${JSON.stringify(c)} must not equal, contain or lie inside -dns-zone ${JSON.stringify(z)}`);
    }
    cfg.dnsConsulDomain = c;
  }
}
