// JSON with object keys sorted at every level: equal values give equal text whatever order their
// keys were set in (the registry's digest, the health scheduler's change detection).

/**
 * `JSON.stringify(v)` with every object's keys in sorted order. As JSON.stringify, an undefined
 * property is left out and an undefined value elsewhere (an array element, `v` itself) is `null`.
 */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const parts: string[] = [];
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k];
      if (x !== undefined) parts.push(`${JSON.stringify(k)}:${canonicalJson(x)}`);
    }
    return `{${parts.join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}
