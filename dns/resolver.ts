// The DNS names Sider answers (DESIGN §7), as pure logic over the RegistryReader: a lower-case
// name and a query type in, records, a response code and what the answer depends on out.

import { SiderError } from '../raft/errors.ts';
import { isUsable } from '../src/registry/health.ts';
import { isWildcard, parseHostPort } from '../src/config.ts';
import type { Instance, RegistryReader, ServiceEntry } from '../src/registry/model.ts';
import { QTYPE, RCODE, addressHex, hexAddress, ipv4Bytes, ipv6Bytes } from './wire.ts';
import type { DnsRecord } from './wire.ts';

export interface DnsResolverOptions {
  /** The zone, without the trailing dot (default 'sider'). */
  zone?: string;
  /** TTL of every record, in seconds (default 0); also the SOA minimum (negative-caching TTL). */
  ttl?: number;
  /** Serve passing instances only (default: passing and warning, as Consul does). */
  onlyPassing?: boolean;
  /** Also answer Consul's `<service>.service.<domain>` names for the default namespace ('' = off). */
  consulDomain?: string;
  /** SOA serial (default 1). Constant for a process so cached negative answers stay valid. */
  serial?: number;
  /** Addresses of `ns.<zone>`, the zone's name server (this server), if it has a concrete one. */
  nsAddresses?: string[];
  /** This server's node name and Raft ID: an instance with no address gets its node's published address. */
  nodeName?: string;
  nodeId?: string;
}

/** What a cached answer must be recomputed after. */
export type Dependency =
  | { kind: 'static' }
  | { kind: 'service'; ns: string; service: string; index: number }
  | { kind: 'namespace'; ns: string; index: number };

export interface Resolution {
  rcode: number;
  /** Authoritative (AA): set for every name inside a zone we serve. */
  authoritative: boolean;
  /** The zone the name belongs to ('' outside every zone). */
  zone: string;
  answers: DnsRecord[];
  /** 'all': every answer, in an order rotated per query; 'one': a single one of them per query. */
  answerMode: 'all' | 'one';
  authority: DnsRecord[];
  additional: DnsRecord[];
  dependency: Dependency;
  /** Addresses taken from node records (instances with no address): the answer is stale once one changes. */
  nodeAddresses: [node: string, address: string][];
}

export const DEFAULT_ZONE = 'sider';
export const DEFAULT_NAMESPACE = 'default';
/** SOA timers (seconds). Nothing transfers the zone, so only `minimum` (negative caching) matters. */
const SOA_REFRESH = 3600;
const SOA_RETRY = 600;
const SOA_EXPIRE = 86400;

const LABEL_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const HOST_LABEL_RE = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** Validates a zone or domain option: 1–8 lower-case DNS labels, no trailing dot. */
export function parseZone(value: string, field: string): string {
  const z = value.toLowerCase().replace(/\.$/, '');
  const labels = z.split('.');
  if (z.length === 0 || z.length > 200 || labels.length > 8 || !labels.every((l) => LABEL_RE.test(l))) {
    throw new SiderError('SIDER_CONFIG', `${field}: expected a domain of DNS labels such as "sider", got ${JSON.stringify(value)}`);
  }
  return z;
}

/** A hostname usable as a CNAME or SRV target (lower case, no trailing dot), or undefined. */
function hostTarget(address: string): string | undefined {
  const h = address.toLowerCase().replace(/\.$/, '');
  if (h.length === 0 || h.length > 253) return undefined;
  return h.split('.').every((l) => HOST_LABEL_RE.test(l)) ? h : undefined;
}

type Target =
  | { kind: 'ip'; family: 4 | 6; address: string; addrName: string }
  | { kind: 'host'; name: string };

interface Usable {
  instance: Instance;
  weight: number;
  target: Target;
}

interface Zone {
  origin: string;
  /** Consul's form: `<service>.service.<origin>`, default namespace only. */
  consul: boolean;
}

export class DnsResolver {
  readonly zone: string;
  readonly ttl: number;
  readonly onlyPassing: boolean;
  readonly consulDomain: string;
  readonly #reader: RegistryReader;
  readonly #zones: Zone[];
  readonly #serial: number;
  readonly #nsAddresses: string[];
  readonly #nodeName: string;
  readonly #nodeId: string;

  constructor(reader: RegistryReader, opts: DnsResolverOptions = {}) {
    this.#reader = reader;
    this.zone = parseZone(opts.zone ?? DEFAULT_ZONE, 'zone');
    this.consulDomain = opts.consulDomain ? parseZone(opts.consulDomain, 'consulDomain') : '';
    const ttl = opts.ttl ?? 0;
    if (!Number.isInteger(ttl) || ttl < 0 || ttl > 86400) throw new SiderError('SIDER_CONFIG', `ttl: expected an integer in [0, 86400], got ${ttl}`);
    this.ttl = ttl;
    this.onlyPassing = opts.onlyPassing ?? false;
    const serial = opts.serial ?? 1;
    if (!Number.isInteger(serial) || serial < 0 || serial > 0xffffffff) throw new SiderError('SIDER_CONFIG', `serial: expected a 32-bit unsigned integer, got ${serial}`);
    this.#serial = serial;
    this.#nsAddresses = (opts.nsAddresses ?? []).filter((a) => ipv4Bytes(a) || ipv6Bytes(a));
    this.#nodeName = opts.nodeName ?? '';
    this.#nodeId = opts.nodeId ?? this.#nodeName;
    this.#zones = [{ origin: this.zone, consul: false }];
    if (this.consulDomain) {
      const a = this.zone;
      const b = this.consulDomain;
      if (a === b || a.endsWith(`.${b}`) || b.endsWith(`.${a}`)) {
        throw new SiderError('SIDER_CONFIG', `consulDomain: ${JSON.stringify(b)} must not equal or contain the zone ${JSON.stringify(a)} (or be inside it)`);
      }
      this.#zones.push({ origin: b, consul: true });
    }
  }

  /** Address of a node (the host of the HTTP address its server published), '' if unknown. */
  nodeAddress(node: string): string {
    const servers = this.#reader.servers();
    const info = servers.find((s) => s.ID === node) ?? (node !== '' && node === this.#nodeName ? servers.find((s) => s.ID === this.#nodeId) : undefined);
    if (!info || info.HTTPAddr === '') return '';
    try {
      const { host } = parseHostPort(info.HTTPAddr, 'HTTPAddr');
      return isWildcard(host) ? '' : host;
    } catch {
      return '';
    }
  }

  /** Whether an answer computed earlier is still what `resolve` would return now. */
  isCurrent(res: Pick<Resolution, 'dependency' | 'nodeAddresses'>): boolean {
    const d = res.dependency;
    if (d.kind === 'service' && this.#reader.serviceIndex(d.ns, d.service) !== d.index) return false;
    if (d.kind === 'namespace' && this.#reader.catalogIndex(d.ns) !== d.index) return false;
    for (const [node, address] of res.nodeAddresses) if (this.nodeAddress(node) !== address) return false;
    return true;
  }

  /** Answers `name` (any case, no trailing dot) for `qtype`. Never throws for any input name. */
  resolve(name: string, qtype: number): Resolution {
    const lname = name.toLowerCase();
    const zone = this.#zones.find((z) => lname === z.origin || lname.endsWith(`.${z.origin}`));
    if (!zone) return this.#outside();
    if (qtype === QTYPE.AXFR || qtype === QTYPE.IXFR || qtype === QTYPE.MAILA || qtype === QTYPE.MAILB) {
      return { ...this.#empty(zone, RCODE.NOTIMP, { kind: 'static' }), authority: [] };
    }
    if (lname === zone.origin) return this.#apex(zone, qtype);
    const rel = lname.slice(0, lname.length - zone.origin.length - 1).split('.');
    const last = rel[rel.length - 1]!;
    if (rel.length === 1) {
      if (last === 'ns') return this.#nsHost(zone, lname, qtype);
      if (last === 'addr') return this.#empty(zone, RCODE.NOERROR, { kind: 'static' });
    }
    if (last === 'addr') return rel.length === 2 ? this.#addr(zone, lname, rel[0]!, qtype) : this.#nxdomain(zone, { kind: 'static' });
    let ns: string;
    let rest: string[];
    if (zone.consul) {
      if (last !== 'service') return this.#nxdomain(zone, { kind: 'static' });
      ns = DEFAULT_NAMESPACE;
      rest = rel.slice(0, -1);
    } else {
      ns = last;
      rest = rel.slice(0, -1);
      if (!LABEL_RE.test(ns)) return this.#nxdomain(zone, { kind: 'static' });
    }
    // `<ns>` and `_x.<ns>` are empty non-terminals while the namespace has services: NODATA, so
    // resolvers that treat NXDOMAIN as "nothing below" (RFC 8020) keep asking for the names below.
    if (rest.length === 0 || (rest.length === 1 && rest[0]!.startsWith('_'))) {
      const dep: Dependency = { kind: 'namespace', ns, index: this.#reader.catalogIndex(ns) };
      return this.#reader.services(ns).length > 0 ? this.#empty(zone, RCODE.NOERROR, dep) : this.#nxdomain(zone, dep);
    }
    if (rest.length === 1) return this.#service(zone, lname, qtype, ns, rest[0]!, undefined, false);
    if (rest.length === 2) {
      const [a, b] = rest as [string, string];
      if (a.startsWith('_') && b.startsWith('_')) {
        // RFC 2782 `_<service>._tcp`; any other protocol label is read as a tag, as Consul does.
        const tag = b === '_tcp' ? undefined : b.slice(1);
        return this.#service(zone, lname, qtype, ns, a.slice(1), tag, true);
      }
      if (!a.startsWith('_') && !b.startsWith('_')) return this.#service(zone, lname, qtype, ns, b, a, false);
    }
    return this.#nxdomain(zone, { kind: 'static' });
  }

  #soa(zone: Zone): DnsRecord {
    return {
      name: zone.origin,
      ttl: this.ttl,
      type: 'SOA',
      mname: `ns.${zone.origin}`,
      rname: `hostmaster.${zone.origin}`,
      serial: this.#serial,
      refresh: SOA_REFRESH,
      retry: SOA_RETRY,
      expire: SOA_EXPIRE,
      minimum: this.ttl,
    };
  }

  #outside(): Resolution {
    return {
      rcode: RCODE.REFUSED,
      authoritative: false,
      zone: '',
      answers: [],
      answerMode: 'all',
      authority: [],
      additional: [],
      dependency: { kind: 'static' },
      nodeAddresses: [],
    };
  }

  /** NOERROR/NODATA (or another rcode) with the SOA in authority. */
  #empty(zone: Zone, rcode: number, dependency: Dependency): Resolution {
    return {
      rcode,
      authoritative: true,
      zone: zone.origin,
      answers: [],
      answerMode: 'all',
      authority: [this.#soa(zone)],
      additional: [],
      dependency,
      nodeAddresses: [],
    };
  }

  #nxdomain(zone: Zone, dependency: Dependency): Resolution {
    return this.#empty(zone, RCODE.NXDOMAIN, dependency);
  }

  #answer(zone: Zone, answers: DnsRecord[], additional: DnsRecord[] = []): Resolution {
    if (answers.length === 0) return this.#empty(zone, RCODE.NOERROR, { kind: 'static' });
    return { ...this.#empty(zone, RCODE.NOERROR, { kind: 'static' }), answers, authority: [], additional };
  }

  #glue(name: string, qtype: number): DnsRecord[] {
    const out: DnsRecord[] = [];
    for (const a of this.#nsAddresses) {
      if (ipv4Bytes(a) && (qtype === QTYPE.A || qtype === QTYPE.ANY || qtype === QTYPE.NS)) out.push({ name, ttl: this.ttl, type: 'A', address: a });
      if (ipv6Bytes(a) && (qtype === QTYPE.AAAA || qtype === QTYPE.ANY || qtype === QTYPE.NS)) out.push({ name, ttl: this.ttl, type: 'AAAA', address: a });
    }
    return out;
  }

  #apex(zone: Zone, qtype: number): Resolution {
    const ns: DnsRecord = { name: zone.origin, ttl: this.ttl, type: 'NS', host: `ns.${zone.origin}` };
    if (qtype === QTYPE.SOA) return this.#answer(zone, [this.#soa(zone)]);
    if (qtype === QTYPE.NS) return this.#answer(zone, [ns], this.#glue(`ns.${zone.origin}`, QTYPE.NS));
    if (qtype === QTYPE.ANY) return this.#answer(zone, [this.#soa(zone), ns]);
    return this.#empty(zone, RCODE.NOERROR, { kind: 'static' });
  }

  #nsHost(zone: Zone, name: string, qtype: number): Resolution {
    return this.#answer(zone, this.#glue(name, qtype));
  }

  #addr(zone: Zone, name: string, label: string, qtype: number): Resolution {
    const a = hexAddress(label);
    if (!a) return this.#nxdomain(zone, { kind: 'static' });
    const wanted = a.family === 4 ? QTYPE.A : QTYPE.AAAA;
    if (qtype !== wanted && qtype !== QTYPE.ANY) return this.#empty(zone, RCODE.NOERROR, { kind: 'static' });
    return this.#answer(zone, [{ name, ttl: this.ttl, type: a.family === 4 ? 'A' : 'AAAA', address: a.address }]);
  }

  #target(inst: Instance, zone: Zone, nodeAddresses: [string, string][]): Target | undefined {
    // Then the address its registration gave its node (catalog register, `sider agent`), which
    // is instance state: a change moves the service index.
    let address = inst.Address || inst.NodeAddress;
    if (address === '') {
      address = this.nodeAddress(inst.Node);
      nodeAddresses.push([inst.Node, address]);
      if (address === '') return undefined;
    }
    const h = addressHex(address);
    if (h !== undefined) {
      const family = ipv4Bytes(address) ? 4 : 6;
      return { kind: 'ip', family, address, addrName: `${h}.addr.${zone.origin}` };
    }
    const host = hostTarget(address);
    return host === undefined ? undefined : { kind: 'host', name: host };
  }

  #service(zone: Zone, name: string, qtype: number, ns: string, service: string, tag: string | undefined, srvOnly: boolean): Resolution {
    const dependency: Dependency = { kind: 'service', ns, service, index: this.#reader.serviceIndex(ns, service) };
    const nodeAddresses: [string, string][] = [];
    const usable: Usable[] = [];
    const entries: ServiceEntry[] = LABEL_RE.test(service) ? this.#reader.serviceEntries(ns, service) : [];
    for (const e of entries) {
      if (!isUsable(e.health, !this.onlyPassing)) continue;
      if (tag !== undefined && !e.instance.Tags.some((t) => t.toLowerCase() === tag)) continue;
      const target = this.#target(e.instance, zone, nodeAddresses);
      if (!target) continue;
      const w = e.health === 'passing' ? e.instance.Weights.Passing : e.instance.Weights.Warning;
      usable.push({ instance: e.instance, weight: Math.min(Math.max(0, Math.floor(w)), 0xffff), target });
    }
    const res = (answers: DnsRecord[], answerMode: 'all' | 'one' = 'all', additional: DnsRecord[] = []): Resolution => {
      const r = answers.length === 0 ? this.#empty(zone, RCODE.NOERROR, dependency) : { ...this.#empty(zone, RCODE.NOERROR, dependency), answers, answerMode, authority: [], additional };
      return { ...r, nodeAddresses };
    };
    if (usable.length === 0) return { ...this.#nxdomain(zone, dependency), nodeAddresses };

    if (qtype === QTYPE.SRV || (srvOnly && qtype === QTYPE.ANY)) {
      const answers: DnsRecord[] = [];
      const additional: DnsRecord[] = [];
      const seen = new Set<string>();
      const glued = new Set<string>();
      for (const u of usable) {
        const target = u.target.kind === 'ip' ? u.target.addrName : u.target.name;
        const key = `${u.weight} ${u.instance.Port} ${target}`;
        if (seen.has(key)) continue;
        seen.add(key);
        answers.push({ name, ttl: this.ttl, type: 'SRV', priority: 1, weight: u.weight, port: u.instance.Port, target });
        if (u.target.kind === 'ip' && !glued.has(target)) {
          glued.add(target);
          additional.push({ name: target, ttl: this.ttl, type: u.target.family === 4 ? 'A' : 'AAAA', address: u.target.address });
        }
      }
      return res(answers, 'all', additional);
    }
    if (srvOnly) return res([]);

    const addresses = (family: 4 | 6): DnsRecord[] => {
      const out: DnsRecord[] = [];
      const seen = new Set<string>();
      for (const u of usable) {
        if (u.target.kind !== 'ip' || u.target.family !== family || seen.has(u.target.address)) continue;
        seen.add(u.target.address);
        out.push({ name, ttl: this.ttl, type: family === 4 ? 'A' : 'AAAA', address: u.target.address });
      }
      return out;
    };
    // A name with a CNAME has no other data (RFC 1034 §3.6.2): instances known by hostname are
    // answered only when none of the asked family is known by address, with one CNAME per reply.
    const cnames = (): DnsRecord[] => {
      const out: DnsRecord[] = [];
      const seen = new Set<string>();
      for (const u of usable) {
        if (u.target.kind !== 'host' || seen.has(u.target.name)) continue;
        seen.add(u.target.name);
        out.push({ name, ttl: this.ttl, type: 'CNAME', target: u.target.name });
      }
      return out;
    };
    if (qtype === QTYPE.A || qtype === QTYPE.AAAA) {
      const a = addresses(qtype === QTYPE.A ? 4 : 6);
      return a.length > 0 ? res(a) : res(cnames(), 'one');
    }
    if (qtype === QTYPE.CNAME) {
      const hasIp = usable.some((u) => u.target.kind === 'ip');
      return res(hasIp ? [] : cnames(), 'one');
    }
    if (qtype === QTYPE.ANY) {
      const a = [...addresses(4), ...addresses(6)];
      return a.length > 0 ? res(a) : res(cnames(), 'one');
    }
    return res([]);
  }
}
