// The end-of-run checks of a chaos run that are not the linearizability search, as pure functions
// so that their unit tests can show each one failing.

/** What one server holds of the ledger against what the clients sent and were told. */
export function ledgerProblems(server: string, acked: ReadonlySet<string>, tried: ReadonlySet<string>, held: ReadonlySet<string>): string[] {
  const out: string[] = [];
  const lost = [...acked].filter((id) => !held.has(id));
  const phantom = [...held].filter((id) => !tried.has(id));
  if (lost.length > 0) out.push(`${server} lost ${lost.length} acknowledged registrations: ${lost.slice(0, 10).join(', ')}`);
  if (phantom.length > 0) out.push(`${server} holds ${phantom.length} registrations never sent: ${phantom.slice(0, 10).join(', ')}`);
  return out;
}

/** One client's view of X-Consul-Index per service: it must never go backwards. */
export class IndexWatch {
  readonly #seen = new Map<string, number>();
  readonly client: string;

  constructor(client: string) {
    this.client = client;
  }

  /** The index to block on next for `service` (1 before any answer: never 0). */
  next(service: string): number {
    return this.#seen.get(service) ?? 1;
  }

  /** Records an answer; returns a description of the violation, or null. */
  observe(service: string, server: string, index: number): string | null {
    const before = this.#seen.get(service) ?? 0;
    if (!Number.isSafeInteger(index) || index < 1) return `${this.client} got X-Consul-Index ${index} for ${service} from ${server}`;
    if (index < before) return `X-Consul-Index went backwards for ${this.client} on ${service}: ${before} then ${index} from ${server}`;
    this.#seen.set(service, index);
    return null;
  }
}
