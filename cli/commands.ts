// The operator commands of `sider` (members, services, health, register, deregister, join,
// snapshot save|restore): clients of the HTTP API that print aligned tables, or the server's JSON
// with -json. `runCommand` returns the exit code: 0 done, 1 the request failed, 2 bad usage.

import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { parseFlags, unknownFlag } from '../src/flags.ts';
import { decodeArchive } from '../src/registry/snapshot-archive.ts';
import { CliError, DEFAULT_HTTP_ADDR, SiderClient } from './client.ts';
import { formatTable } from './table.ts';

export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
  env: NodeJS.ProcessEnv;
}

interface CommandSpec {
  usage: string;
  summary: string;
  strings?: string[];
  booleans?: string[];
  arrays?: string[];
  /** Positional arguments: exactly this many. */
  positionals: number;
  run: (ctx: RunContext) => Promise<void>;
}

interface RunContext {
  client: SiderClient;
  flags: Record<string, unknown>;
  args: string[];
  json: boolean;
  io: CliIo;
}

const COMMON_FLAGS = `common flags:
  -http-addr host:port   server to talk to (default ${DEFAULT_HTTP_ADDR}, env SIDER_HTTP_ADDR)
  -json                  print the server's JSON instead of a table
environment: SIDER_HTTP_TOKEN is sent as X-Consul-Token (servers do not check tokens yet: no ACLs);
SIDER_CLUSTER_KEY signs join and snapshot requests (without a key the server accepts them from
loopback only).`;

function str(flags: Record<string, unknown>, name: string): string | undefined {
  const v = flags[name];
  if (v === undefined) return undefined;
  if (Array.isArray(v)) throw new CliError(`-${name} given more than once`, 2);
  if (typeof v !== 'string' || v === '') throw new CliError(`-${name} needs a value`, 2);
  return v;
}

function nsQuery(flags: Record<string, unknown>, first: boolean): string {
  const ns = str(flags, 'ns');
  return ns ? `${first ? '?' : '&'}ns=${encodeURIComponent(ns)}` : '';
}

function printJson(io: CliIo, v: unknown): void {
  io.out(JSON.stringify(v, null, 2));
}

function asArray(v: unknown, what: string): Record<string, unknown>[] {
  if (!Array.isArray(v)) throw new CliError(`${what}: unexpected answer (not a list)`);
  return v.map((x) => (typeof x === 'object' && x !== null ? (x as Record<string, unknown>) : {}));
}

function obj(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function text(v: unknown): string {
  return v === undefined || v === null ? '' : String(v);
}

const HEALTH_ORDER = ['passing', 'warning', 'critical', 'maintenance'];

/** Worst wins (DESIGN §2); the maintenance check makes the instance `maintenance`. */
function aggregate(checks: Record<string, unknown>[]): string {
  let worst = 0;
  for (const c of checks) {
    const rank = text(c.CheckID).startsWith('_service_maintenance:') ? 3 : HEALTH_ORDER.indexOf(text(c.Status));
    if (rank > worst) worst = rank;
  }
  return HEALTH_ORDER[worst] ?? 'passing';
}

/** Writes the file whole or not at all (temp file, then rename). */
function writeFileAtomic(path: string, data: Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, data, { flag: 'wx' });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new CliError(`cannot write ${path}: ${(err as Error).message}`);
  }
}

const SNAPSHOT_TIMEOUT_MS = 300_000;

function clientEnv(env: NodeJS.ProcessEnv): { token?: string; clusterKey?: string } {
  return { ...(env.SIDER_HTTP_TOKEN ? { token: env.SIDER_HTTP_TOKEN } : {}), ...(env.SIDER_CLUSTER_KEY ? { clusterKey: env.SIDER_CLUSTER_KEY } : {}) };
}

/** The leader's HTTP address from /v1/agent/members ('' when none is known). */
async function leaderHttpAddr(client: SiderClient): Promise<string> {
  const members = asArray(await client.json('/v1/agent/members'), 'members');
  const leader = members.find((m) => obj(m.Tags).leader === 'true');
  return leader ? text(obj(leader.Tags).http) : '';
}

export const COMMANDS: Record<string, CommandSpec> = {
  members: {
    usage: 'sider members [-json]',
    summary: 'list the cluster\'s servers (name, addresses, role)',
    positionals: 0,
    async run({ client, json, io }) {
      const members = asArray(await client.json('/v1/agent/members'), 'members');
      if (json) return printJson(io, members);
      const rows = members.map((m) => {
        const tags = obj(m.Tags);
        const role = tags.leader === 'true' ? 'leader' : tags.voter === 'true' ? 'voter' : 'learner';
        return [text(m.Name), `${text(m.Addr)}:${text(m.Port)}`, text(tags.http), m.Status === 1 ? 'alive' : text(m.Status), role];
      });
      io.out(formatTable(['Node', 'Raft address', 'HTTP address', 'Status', 'Role'], rows));
    },
  },
  services: {
    usage: 'sider services [-ns NAMESPACE] [-json]',
    summary: 'list the services of a namespace and their tags',
    strings: ['ns'],
    positionals: 0,
    async run({ client, flags, json, io }) {
      const services = obj(await client.json(`/v1/catalog/services${nsQuery(flags, true)}`));
      if (json) return printJson(io, services);
      const rows = Object.keys(services)
        .sort()
        .map((name) => [name, Array.isArray(services[name]) ? (services[name] as unknown[]).map(text).join(',') : '']);
      io.out(formatTable(['Service', 'Tags'], rows));
    },
  },
  health: {
    usage: 'sider health <service> [-passing] [-ns NAMESPACE] [-json]',
    summary: 'list a service\'s instances with their aggregated health and checks',
    strings: ['ns'],
    booleans: ['passing'],
    positionals: 1,
    async run({ client, flags, args, json, io }) {
      const name = args[0]!;
      const q = `${flags.passing === true ? '?passing' : ''}${nsQuery(flags, flags.passing !== true)}`;
      const entries = asArray(await client.json(`/v1/health/service/${encodeURIComponent(name)}${q}`), 'health');
      if (json) return printJson(io, entries);
      const rows = entries.map((e) => {
        const svc = obj(e.Service);
        const node = obj(e.Node);
        const checks = asArray(e.Checks ?? [], 'checks');
        return [
          text(svc.ID),
          text(svc.Address) || text(node.Address),
          text(svc.Port),
          text(node.Node),
          aggregate(checks),
          checks.map((c) => `${text(c.CheckID)}=${text(c.Status)}`).join(' '),
        ];
      });
      io.out(formatTable(['ID', 'Address', 'Port', 'Node', 'Health', 'Checks'], rows));
    },
  },
  register: {
    usage: 'sider register -name NAME [-id ID] [-address A] [-port P] [-tag T …] [-ttl 30s] [-ns NAMESPACE]\n       sider register -file registration.json   (a Consul registration body)',
    summary: 'register (or update) a service instance',
    strings: ['name', 'id', 'address', 'port', 'ttl', 'file', 'ns'],
    arrays: ['tag'],
    positionals: 0,
    async run({ client, flags, json, io }) {
      let body: Record<string, unknown>;
      const file = str(flags, 'file');
      if (file) {
        for (const f of ['name', 'id', 'address', 'port', 'ttl', 'tag']) {
          if (flags[f] !== undefined) throw new CliError(`-file and -${f} cannot be combined (put the field in the file)`, 2);
        }
        let raw: string;
        try {
          raw = readFileSync(file, 'utf8');
        } catch (err) {
          throw new CliError(`cannot read ${file}: ${(err as Error).message}`, 2);
        }
        try {
          body = obj(JSON.parse(raw));
        } catch (err) {
          throw new CliError(`${file}: not valid JSON (${(err as Error).message})`, 2);
        }
      } else {
        const name = str(flags, 'name');
        if (!name) throw new CliError('-name is required (or -file)', 2);
        body = { Name: name };
        const id = str(flags, 'id');
        if (id) body.ID = id;
        const address = str(flags, 'address');
        if (address) body.Address = address;
        const port = str(flags, 'port');
        if (port !== undefined) {
          if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) throw new CliError(`-port: expected 0–65535, got ${JSON.stringify(port)}`, 2);
          body.Port = Number(port);
        }
        const tags = (flags.tag as unknown[] | undefined) ?? [];
        if (tags.length) body.Tags = tags.map(text);
        const ttl = str(flags, 'ttl');
        if (ttl) body.Check = { TTL: ttl };
      }
      // The server validates everything (400 naming the field).
      await client.ok('PUT', `/v1/agent/service/register${nsQuery(flags, true)}`, Buffer.from(JSON.stringify(body)));
      const id = text(body.ID ?? body.id) || text(body.Name ?? body.name);
      if (json) return printJson(io, { registered: true, service: text(body.Name ?? body.name), id });
      io.out(`registered service ${text(body.Name ?? body.name)} (ID ${id})`);
    },
  },
  deregister: {
    usage: 'sider deregister <id> [-ns NAMESPACE]',
    summary: 'remove a service instance by its ID',
    strings: ['ns'],
    positionals: 1,
    async run({ client, flags, args, json, io }) {
      const id = args[0]!;
      await client.ok('PUT', `/v1/agent/service/deregister/${encodeURIComponent(id)}${nsQuery(flags, true)}`);
      if (json) return printJson(io, { deregistered: true, id });
      io.out(`deregistered ${id}`);
    },
  },
  join: {
    usage: 'sider join -id ID -raft-addr host:port',
    summary: 'add a server to the cluster (POST /v1/raft/join, signed with SIDER_CLUSTER_KEY)',
    strings: ['id', 'raft-addr'],
    positionals: 0,
    async run({ client, flags, json, io }) {
      const id = str(flags, 'id');
      const addr = str(flags, 'raft-addr');
      if (!id || !addr) throw new CliError('-id and -raft-addr are required', 2);
      await client.ok('POST', '/v1/raft/join', Buffer.from(JSON.stringify({ ID: id, Addr: addr })), { sign: true });
      if (json) return printJson(io, { joined: true, id, addr });
      io.out(`asked the cluster to add server ${id} at ${addr} (it joins as a learner and is promoted once caught up)`);
    },
  },
  leave: {
    usage: 'sider leave [-http-addr host:port] [-json]',
    summary: 'make the server at -http-addr leave its cluster for good and exit (PUT /v1/agent/leave, signed with SIDER_CLUSTER_KEY)',
    positionals: 0,
    async run({ client, json, io }) {
      // The server hands off leadership, has the leader remove it, answers, then exits (≤ 10 s).
      const r = await client.ok('PUT', '/v1/agent/leave', Buffer.alloc(0), { sign: true, timeoutMs: 20_000 });
      const reply = obj(JSON.parse(r.body.toString('utf8') || '{}'));
      if (json) return printJson(io, reply);
      const to = text(reply.transferredTo);
      io.out(`server ${text(reply.id)} left the cluster${to ? ` (leadership handed to ${to})` : ''} and is shutting down`);
    },
  },
  snapshot: {
    usage: 'sider snapshot save FILE\n       sider snapshot restore FILE',
    summary: 'save the whole registry to a checksummed file, or restore it cluster-wide',
    positionals: 2,
    async run({ client, args, json, io }) {
      const [action, file] = args as [string, string];
      if (action === 'save') {
        const r = await client.ok('GET', '/v1/snapshot', undefined, { sign: true, timeoutMs: SNAPSHOT_TIMEOUT_MS });
        let index: number;
        try {
          index = decodeArchive(r.body).index;
        } catch (err) {
          throw new CliError(`the server's archive does not verify: ${(err as Error).message}`);
        }
        writeFileAtomic(file, r.body);
        if (json) return printJson(io, { saved: file, index, bytes: r.body.length });
        io.out(`saved snapshot at index ${index} (${r.body.length} bytes) to ${file}`);
      } else if (action === 'restore') {
        let bytes: Buffer;
        try {
          bytes = readFileSync(file);
        } catch (err) {
          throw new CliError(`cannot read ${file}: ${(err as Error).message}`, 2);
        }
        let archiveIndex: number;
        try {
          archiveIndex = decodeArchive(bytes).index;
        } catch (err) {
          throw new CliError(`${file}: ${(err as Error).message}`, 2);
        }
        let r = await client.send('PUT', '/v1/snapshot', bytes, { sign: true, timeoutMs: SNAPSHOT_TIMEOUT_MS });
        if (r.status === 413 && /through a follower/.test(r.body.toString('utf8'))) {
          // Large restores cannot be forwarded: send them to the leader's HTTP address directly.
          const leader = await leaderHttpAddr(client);
          if (leader) {
            const direct = new SiderClient({ addr: leader, ...clientEnv(io.env) });
            try {
              r = await direct.ok('PUT', '/v1/snapshot', bytes, { sign: true, timeoutMs: SNAPSHOT_TIMEOUT_MS });
            } finally {
              await direct.close();
            }
          }
        }
        if (r.status < 200 || r.status > 299) {
          throw new CliError(`PUT /v1/snapshot: HTTP ${r.status}: ${r.body.toString('utf8').trim().split('\n')[0] ?? ''}`);
        }
        const index = Number(r.headers['x-consul-index'] ?? 0);
        if (json) return printJson(io, { restored: file, archiveIndex, index });
        io.out(`restored snapshot ${file} (taken at index ${archiveIndex}); the registry is now at index ${index}`);
      } else {
        throw new CliError(`expected "save" or "restore", got ${JSON.stringify(action)}`, 2);
      }
    },
  },
};

/** The lines `sider help` prints for the operator commands. */
export function operatorHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return Object.entries(COMMANDS)
    .map(([name, c]) => `  ${name.padEnd(width + 2)}${c.summary}`)
    .join('\n');
}

function commandUsage(name: string): string {
  return `usage: ${COMMANDS[name]!.usage}\n\n${COMMON_FLAGS}`;
}

/** Runs one operator command; never throws. */
export async function runCommand(name: string, argv: string[], io: CliIo): Promise<number> {
  const spec = COMMANDS[name];
  if (!spec) {
    io.err(`sider: unknown command ${JSON.stringify(name)} (sider help lists them)`);
    return 2;
  }
  if (argv.some((a) => /^--?(help|h)$/.test(a))) {
    io.out(commandUsage(name));
    return 0;
  }
  const strings = [...(spec.strings ?? []), 'http-addr'];
  const booleans = [...(spec.booleans ?? []), 'json'];
  const arrays = spec.arrays ?? [];
  const flags = parseFlags(argv, { string: [...strings, ...arrays], boolean: booleans, array: arrays }) as Record<string, unknown> & { _: unknown[] };
  let client: SiderClient | undefined;
  try {
    const unknown = unknownFlag(flags, [...strings, ...booleans, ...arrays]);
    if (unknown !== undefined) throw new CliError(`unknown flag -${unknown}\n${commandUsage(name)}`, 2);
    const args = flags._.map(String);
    if (args.length !== spec.positionals) {
      throw new CliError(`expected ${spec.positionals} argument${spec.positionals === 1 ? '' : 's'}, got ${args.length}\n${commandUsage(name)}`, 2);
    }
    client = new SiderClient({ addr: str(flags, 'http-addr') ?? (io.env.SIDER_HTTP_ADDR || DEFAULT_HTTP_ADDR), ...clientEnv(io.env) });
    await spec.run({ client, flags, args, json: flags.json === true, io });
    return 0;
  } catch (err) {
    if (err instanceof CliError) {
      io.err(`sider ${name}: ${err.message}`);
      return err.exitCode;
    }
    io.err(`sider ${name}: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  } finally {
    await client?.close();
  }
}
