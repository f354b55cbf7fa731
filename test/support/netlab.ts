// Test hosts in network namespaces made by the test itself: one namespace per server, each with its
// own address on a private /24, all plugged into a bridge that lives in a "switch" namespace of its
// own, plus one veth from the test's namespace into that bridge so the test's clients reach every
// host. Nothing in the test's namespace changes but that one interface and its address.
//
// Faults are iptables rules inside a host's namespace that drop (not reject: the peer sees silence,
// as with a dead link) TCP packets it sends to another host's HTTP or Raft port. Blocking A→B this
// way stops every request A opens to B, while B's own connections to A still work (A's answers
// travel from its own port, which the rule does not match): a one-way partition at the message
// level. Blocking both directions is a symmetric partition. The test's client address is never
// blocked. Needs root and iproute2 + iptables; `whyNoNetlab()` says what is missing.

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Ports every host's server listens on (each host has its own address, so they can be the same). */
export const HOST_HTTP_PORT = 8500;
export const HOST_RAFT_PORT = 8501;
/** Per-namespace files that `ip netns exec` binds over /etc. */
const NETNS_ETC = '/etc/netns';

function run(cmd: string, args: string[], ms = 10_000): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: ms });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}`.trim() };
}

function must(cmd: string, args: string[]): string {
  const r = run(cmd, args);
  if (!r.ok) throw new Error(`${cmd} ${args.join(' ')}: ${r.out}`);
  return r.out;
}

/** Why namespaces cannot be used here, or false when they can. */
export function whyNoNetlab(): string | false {
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  if (!run('ip', ['-V']).ok) return 'ip (iproute2) is not installed';
  if (!run('iptables', ['--version']).ok) return 'iptables is not installed';
  return false;
}

/** A live lab is removed when the test process exits, even on a crash between create and destroy. */
const live = new Set<NetLab>();
process.once('exit', () => {
  for (const lab of live) lab.destroySync();
});

export class NetLab {
  /** Namespace names of the hosts, in order (host i has address `addr(i)`). */
  readonly hosts: string[];
  readonly subnet: string;
  readonly #tag: string;
  readonly #switch: string;
  readonly #uplink: string;
  /** Current blocked directed pairs "from>to" (host indexes). */
  readonly #blocked = new Set<string>();
  #destroyed = false;

  private constructor(tag: string, subnet: string, n: number) {
    this.#tag = tag;
    this.subnet = subnet;
    this.#switch = `${tag}-sw`;
    this.#uplink = tag;
    this.hosts = Array.from({ length: n }, (_, i) => `${tag}-h${i + 1}`);
  }

  /** Creates `n` hosts (n ≤ 200) on a free 10.213.x.0/24. */
  static create(n: number): NetLab {
    const why = whyNoNetlab();
    if (why) throw new Error(why);
    if (!(n >= 1 && n <= 200)) throw new RangeError(`hosts: 1..200, got ${n}`);
    const routes = must('ip', ['-4', 'route', 'show', 'table', 'all']);
    const addrs = must('ip', ['-4', '-o', 'addr', 'show']);
    let third = -1;
    const start = randomBytes(1)[0]!;
    for (let k = 0; k < 256; k++) {
      const c = (start + k) % 256;
      const net = `10.213.${c}.`;
      if (!routes.includes(net) && !addrs.includes(net)) {
        third = c;
        break;
      }
    }
    if (third < 0) throw new Error('no free 10.213.x.0/24 subnet for the test hosts');
    const lab = new NetLab(`sdc${randomBytes(2).toString('hex')}`, `10.213.${third}`, n);
    live.add(lab);
    try {
      lab.#build();
    } catch (err) {
      lab.destroySync();
      throw err;
    }
    return lab;
  }

  #build(): void {
    const sw = this.#switch;
    must('ip', ['netns', 'add', sw]);
    must('ip', ['-n', sw, 'link', 'add', 'br0', 'type', 'bridge']);
    must('ip', ['-n', sw, 'link', 'set', 'br0', 'up']);
    must('ip', ['-n', sw, 'link', 'set', 'lo', 'up']);
    // The test's own door into the bridge.
    must('ip', ['link', 'add', this.#uplink, 'type', 'veth', 'peer', 'name', 'up0', 'netns', sw]);
    must('ip', ['-n', sw, 'link', 'set', 'up0', 'master', 'br0', 'up']);
    must('ip', ['addr', 'add', `${this.clientAddr}/24`, 'dev', this.#uplink]);
    must('ip', ['link', 'set', this.#uplink, 'up']);
    this.hosts.forEach((ns, i) => {
      must('ip', ['netns', 'add', ns]);
      must('ip', ['-n', sw, 'link', 'add', `p${i + 1}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      must('ip', ['-n', sw, 'link', 'set', `p${i + 1}`, 'master', 'br0', 'up']);
      must('ip', ['-n', ns, 'addr', 'add', `${this.addr(i)}/24`, 'dev', 'eth0']);
      must('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
      must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    });
  }

  /** Host i's address (0-based). */
  addr(i: number): string {
    return `${this.subnet}.${i + 1}`;
  }

  /** The test's own address on the lab network (never blocked). */
  get clientAddr(): string {
    return `${this.subnet}.254`;
  }

  /**
   * Gives every host an /etc/hosts naming all of them (`names[i]` → host i's address), as a
   * container network's DNS would: `ip netns exec` binds /etc/netns/<ns>/hosts over /etc/hosts.
   */
  setHostNames(names: string[]): void {
    if (names.length !== this.hosts.length) throw new RangeError(`${this.hosts.length} names needed, got ${names.length}`);
    const lines = ['127.0.0.1 localhost', ...names.map((n, i) => `${this.addr(i)} ${n}`)].join('\n');
    for (const ns of this.hosts) {
      mkdirSync(join(NETNS_ETC, ns), { recursive: true });
      writeFileSync(join(NETNS_ETC, ns, 'hosts'), `${lines}\n`);
    }
  }

  /** Drops what host `from` sends to host `to`'s HTTP and Raft ports (idempotent). */
  block(from: number, to: number): void {
    if (from === to) return;
    const key = `${from}>${to}`;
    if (this.#blocked.has(key)) return;
    must('ip', ['netns', 'exec', this.hosts[from]!, 'iptables', '-A', 'OUTPUT', ...this.#rule(to)]);
    this.#blocked.add(key);
  }

  /** Lets host `from` reach host `to` again (idempotent). */
  unblock(from: number, to: number): void {
    const key = `${from}>${to}`;
    if (!this.#blocked.has(key)) return;
    must('ip', ['netns', 'exec', this.hosts[from]!, 'iptables', '-D', 'OUTPUT', ...this.#rule(to)]);
    this.#blocked.delete(key);
  }

  /** Cuts every link between group `a` and group `b`, both ways. */
  split(a: number[], b: number[]): void {
    for (const x of a) {
      for (const y of b) {
        this.block(x, y);
        this.block(y, x);
      }
    }
  }

  /** Removes every block. */
  heal(): void {
    // Deleting the current element while iterating a Set is safe.
    for (const key of this.#blocked) {
      const [from, to] = key.split('>').map(Number) as [number, number];
      this.unblock(from, to);
    }
  }

  /** The blocked directed pairs, as "h1>h2" strings (1-based, as in logs). */
  blocked(): string[] {
    return [...this.#blocked].map((k) => k.split('>').map((x) => `h${Number(x) + 1}`).join('>')).sort();
  }

  #rule(to: number): string[] {
    return ['-d', this.addr(to), '-p', 'tcp', '-m', 'multiport', '--dports', `${HOST_HTTP_PORT},${HOST_RAFT_PORT}`, '-j', 'DROP'];
  }

  /** Deletes the namespaces (their interfaces go with them). Processes inside must be gone first. */
  destroySync(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    live.delete(this);
    for (const ns of [...this.hosts, this.#switch]) {
      run('ip', ['netns', 'del', ns]);
      rmSync(join(NETNS_ETC, ns), { recursive: true, force: true });
    }
    // Normally gone with its peer; make sure.
    run('ip', ['link', 'del', this.#uplink]);
  }

  get tag(): string {
    return this.#tag;
  }
}
