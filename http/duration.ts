// Go durations (time.ParseDuration / Duration.String), as Consul speaks them on the wire: `wait=10s`,
// `wait=120000ms` (what Consul's Go client sends), check `Interval: "1m30s"`, `TTL: "1.5h"`.

const NS_PER: Record<string, bigint> = {
  ns: 1n,
  us: 1_000n,
  'µs': 1_000n, // U+00B5 micro sign
  'μs': 1_000n, // U+03BC Greek small letter mu
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};

const MAX_NS = (1n << 63n) - 1n;

/** Thrown messages read `invalid duration "<input>"[: <why>]`; callers prefix the field name. */
function invalid(orig: string, why?: string): Error {
  return new Error(`invalid duration ${JSON.stringify(orig)}${why === undefined ? '' : `: ${why}`}`);
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '9';
}

/**
 * Parses a Go duration exactly as Go's time.ParseDuration does (same grammar, units, overflow
 * bounds and truncation of fractions), returning nanoseconds. Throws an Error whose message is
 * `invalid duration "<input>"`, followed by `: missing unit` or `: unknown unit "x"` when that is why.
 */
export function parseDurationNs(input: string): bigint {
  let s = input;
  let neg = false;
  if (s !== '' && (s[0] === '-' || s[0] === '+')) {
    neg = s[0] === '-';
    s = s.slice(1);
  }
  if (s === '0') return 0n;
  if (s === '') throw invalid(input);
  let total = 0n;
  let i = 0;
  while (i < s.length) {
    if (!(s[i] === '.' || isDigit(s[i]))) throw invalid(input);
    // Integer part (Go rejects a leading integer that overflows int64).
    const intStart = i;
    while (isDigit(s[i])) i++;
    const intDigits = s.slice(intStart, i);
    const significant = intDigits.replace(/^0+/, '');
    if (significant.length > 19) throw invalid(input);
    let v = significant === '' ? 0n : BigInt(significant);
    if (v > 1n << 63n) throw invalid(input);
    // Fraction: Go keeps digits while they fit, scaling by 10 each time, and ignores the rest.
    let f = 0n;
    let scale = 1;
    let post = false;
    if (s[i] === '.') {
      i++;
      const fracStart = i;
      let overflow = false;
      while (isDigit(s[i])) {
        if (!overflow) {
          const next = f * 10n + BigInt(s.charCodeAt(i) - 48);
          if (f > MAX_NS / 10n || next > 1n << 63n) overflow = true;
          else {
            f = next;
            scale *= 10;
          }
        }
        i++;
      }
      post = i > fracStart;
    }
    if (intDigits === '' && !post) throw invalid(input);
    const unitStart = i;
    while (i < s.length && s[i] !== '.' && !isDigit(s[i])) i++;
    if (i === unitStart) throw invalid(input, 'missing unit');
    const unitName = s.slice(unitStart, i);
    const unit = NS_PER[unitName];
    if (unit === undefined) throw invalid(input, `unknown unit ${JSON.stringify(unitName)}`);
    if (v > (1n << 63n) / unit) throw invalid(input);
    v *= unit;
    if (f > 0n) {
      // Go: v += uint64(float64(f) * (float64(unit) / scale)), truncated toward zero.
      v += BigInt(Math.trunc(Number(f) * (Number(unit) / scale)));
      if (v > 1n << 63n) throw invalid(input);
    }
    total += v;
    if (total > 1n << 63n) throw invalid(input);
  }
  if (neg) return -total;
  if (total > MAX_NS) throw invalid(input);
  return total;
}

/** Milliseconds (possibly fractional) of a Go duration; see parseDurationNs. */
export function parseDurationMs(input: string): number {
  return Number(parseDurationNs(input)) / 1e6;
}

function fmtFrac(v: bigint, prec: number): { frac: string; rest: bigint } {
  // Go's fmtFrac: the low `prec` digits, trailing zeros and a bare '.' dropped.
  let digits = '';
  let print = false;
  let rest = v;
  for (let k = 0; k < prec; k++) {
    const digit = rest % 10n;
    print ||= digit !== 0n;
    if (print) digits = `${digit}${digits}`;
    rest /= 10n;
  }
  return { frac: print ? `.${digits}` : '', rest };
}

/** Go's Duration.String(): "1h2m3.5s", "1.5ms", "0s". */
export function formatDurationNs(ns: bigint): string {
  const neg = ns < 0n;
  let u = neg ? -ns : ns;
  let out: string;
  if (u < 1_000_000_000n) {
    if (u === 0n) return '0s';
    let prec: number;
    let unit: string;
    if (u < 1_000n) {
      prec = 0;
      unit = 'ns';
    } else if (u < 1_000_000n) {
      prec = 3;
      unit = 'µs';
    } else {
      prec = 6;
      unit = 'ms';
    }
    const { frac, rest } = fmtFrac(u, prec);
    out = `${rest}${frac}${unit}`;
  } else {
    const { frac, rest } = fmtFrac(u, 9);
    u = rest;
    out = `${u % 60n}${frac}s`;
    u /= 60n;
    if (u > 0n) {
      out = `${u % 60n}m${out}`;
      u /= 60n;
      if (u > 0n) out = `${u}h${out}`;
    }
  }
  return neg ? `-${out}` : out;
}

/** Go's Duration.String() of a millisecond count (rounded to the nanosecond). */
export function formatDurationMs(ms: number): string {
  return formatDurationNs(BigInt(Math.round(ms * 1e6)));
}
