// A subset of Consul's `?filter=` language (go-bexpr): ==, !=, in, not in, contains, not contains,
// is empty, is not empty, joined by and/or/not and parentheses, checked against a schema at parse time.

import { SiderError } from '../raft/errors.ts';

/** The type of a selectable field in the JSON being filtered. */
export type FilterType =
  | 'string'
  | 'number'
  | 'bool'
  | { list: FilterType }
  | { map: FilterType }
  | { struct: Record<string, FilterType> };

export const MAX_FILTER_LENGTH = 4096;
const MAX_DEPTH = 64;

type Op = 'eq' | 'ne' | 'in' | 'notIn' | 'empty' | 'notEmpty';

interface Literal {
  text: string;
  /** Number(text) when the selector is numeric, true/false when boolean. */
  value: string | number | boolean;
}

type Node =
  | { kind: 'and' | 'or'; left: Node; right: Node }
  | { kind: 'not'; expr: Node }
  | { kind: 'match'; op: Op; path: string[]; type: FilterType; literal: Literal | null };

type Token =
  | { t: 'word'; text: string; pos: number }
  | { t: 'string'; text: string; pos: number }
  | { t: 'number'; text: string; pos: number }
  | { t: 'punct'; text: '(' | ')' | '==' | '!=' | '.' | '[' | ']'; pos: number }
  | { t: 'end'; pos: number };

class FilterSyntaxError extends Error {
  readonly pos: number;
  constructor(pos: number, message: string) {
    super(message);
    this.pos = pos;
  }
}

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
      continue;
    }
    const pos = i;
    if (c === '(' || c === ')' || c === '.' || c === '[' || c === ']') {
      out.push({ t: 'punct', text: c, pos });
      i++;
    } else if (c === '=' || c === '!') {
      if (src[i + 1] !== '=') throw new FilterSyntaxError(pos, `unexpected ${JSON.stringify(c)} (did you mean "${c}="?)`);
      out.push({ t: 'punct', text: c === '=' ? '==' : '!=', pos });
      i += 2;
    } else if (c === '"') {
      // A double-quoted string with JSON escapes.
      let j = i + 1;
      while (j < src.length && src[j] !== '"') j += src[j] === '\\' ? 2 : 1;
      if (j >= src.length) throw new FilterSyntaxError(pos, 'unterminated string');
      let text: string;
      try {
        text = JSON.parse(src.slice(i, j + 1)) as string;
      } catch {
        throw new FilterSyntaxError(pos, 'invalid escape in string');
      }
      out.push({ t: 'string', text, pos });
      i = j + 1;
    } else if (c === '`') {
      // A raw string: no escapes.
      const j = src.indexOf('`', i + 1);
      if (j < 0) throw new FilterSyntaxError(pos, 'unterminated string');
      out.push({ t: 'string', text: src.slice(i + 1, j), pos });
      i = j + 1;
    } else if (/^-?[0-9]+(?:\.[0-9]+)?(?![A-Za-z0-9_-])/.test(src.slice(i, i + 64))) {
      const m = /^-?[0-9]+(?:\.[0-9]+)?/.exec(src.slice(i))!;
      out.push({ t: 'number', text: m[0], pos });
      i += m[0].length;
    } else if (/[A-Za-z0-9_]/.test(c)) {
      const m = /^[A-Za-z0-9_][A-Za-z0-9_-]*/.exec(src.slice(i))!;
      out.push({ t: 'word', text: m[0], pos });
      i += m[0].length;
    } else {
      throw new FilterSyntaxError(pos, `unexpected character ${JSON.stringify(c)}`);
    }
  }
  out.push({ t: 'end', pos: src.length });
  return out;
}

const KEYWORDS = new Set(['and', 'or', 'not', 'in', 'contains', 'is', 'empty', 'matches']);

function describeType(t: FilterType): string {
  if (typeof t === 'string') return t;
  if ('list' in t) return 'list';
  if ('map' in t) return 'map';
  return 'object';
}

class Parser {
  readonly #tokens: Token[];
  readonly #schema: FilterType;
  #i = 0;
  #depth = 0;

  constructor(tokens: Token[], schema: FilterType) {
    this.#tokens = tokens;
    this.#schema = schema;
  }

  parse(): Node {
    const node = this.#or();
    const t = this.#peek();
    if (t.t !== 'end') throw new FilterSyntaxError(t.pos, `unexpected ${this.#show(t)}`);
    return node;
  }

  #peek(k = 0): Token {
    return this.#tokens[Math.min(this.#i + k, this.#tokens.length - 1)]!;
  }

  #next(): Token {
    const t = this.#peek();
    if (t.t !== 'end') this.#i++;
    return t;
  }

  #isWord(t: Token, w: string): boolean {
    return t.t === 'word' && t.text === w;
  }

  #show(t: Token): string {
    return t.t === 'end' ? 'end of filter' : JSON.stringify(t.text);
  }

  #or(): Node {
    let left = this.#and();
    while (this.#isWord(this.#peek(), 'or')) {
      this.#next();
      left = { kind: 'or', left, right: this.#and() };
    }
    return left;
  }

  #and(): Node {
    let left = this.#unary();
    while (this.#isWord(this.#peek(), 'and')) {
      this.#next();
      left = { kind: 'and', left, right: this.#unary() };
    }
    return left;
  }

  #unary(): Node {
    const t = this.#peek();
    if (++this.#depth > MAX_DEPTH) throw new FilterSyntaxError(t.pos, `nested more than ${MAX_DEPTH} deep`);
    try {
      if (this.#isWord(t, 'not')) {
        this.#next();
        return { kind: 'not', expr: this.#unary() };
      }
      if (this.#isPunct(t, '(')) {
        this.#next();
        const inner = this.#or();
        const close = this.#next();
        if (!this.#isPunct(close, ')')) throw new FilterSyntaxError(close.pos, `expected ")", found ${this.#show(close)}`);
        return inner;
      }
      return this.#match();
    } finally {
      this.#depth--;
    }
  }

  /** A selector path: Word ('.' Word | '[' String ']')*. Returns segments and start position. */
  #path(): { segments: string[]; pos: number; text: string } {
    const first = this.#next();
    if (first.t !== 'word' || KEYWORDS.has(first.text)) throw new FilterSyntaxError(first.pos, `expected a selector, found ${this.#show(first)}`);
    const segments = [first.text];
    for (;;) {
      const t = this.#peek();
      if (this.#isPunct(t, '.')) {
        this.#next();
        const seg = this.#next();
        if (seg.t !== 'word' && seg.t !== 'number') throw new FilterSyntaxError(seg.pos, `expected a field name after ".", found ${this.#show(seg)}`);
        segments.push(seg.text);
      } else if (this.#isPunct(t, '[')) {
        this.#next();
        const key = this.#next();
        if (key.t !== 'string') throw new FilterSyntaxError(key.pos, `expected a quoted key after "[", found ${this.#show(key)}`);
        const close = this.#next();
        if (!this.#isPunct(close, ']')) throw new FilterSyntaxError(close.pos, `expected "]", found ${this.#show(close)}`);
        segments.push(key.text);
      } else {
        break;
      }
    }
    return { segments, pos: first.pos, text: segments.join('.') };
  }

  /** Resolves a selector against the schema; unknown fields are errors, as in Consul. */
  #resolve(segments: string[], pos: number): FilterType {
    let type = this.#schema;
    for (const seg of segments) {
      let cur = type;
      // Selecting a field of a list of objects selects it in every element (matched as "any").
      if (typeof cur !== 'string' && 'list' in cur && typeof cur.list !== 'string' && 'struct' in cur.list) cur = cur.list;
      if (typeof cur !== 'string' && 'struct' in cur && Object.hasOwn(cur.struct, seg)) type = cur.struct[seg]!;
      else if (typeof cur !== 'string' && 'map' in cur) type = cur.map;
      else throw new FilterSyntaxError(pos, `selector ${JSON.stringify(segments.join('.'))} is not valid`);
    }
    return type;
  }

  /** A value: a quoted string, a number, or a bare word (dotted words like web.internal kept whole). */
  #value(): { text: string; pos: number } {
    const t = this.#next();
    if (t.t !== 'string' && t.t !== 'number' && !(t.t === 'word' && !KEYWORDS.has(t.text))) {
      throw new FilterSyntaxError(t.pos, `expected a value, found ${this.#show(t)}`);
    }
    let text = t.text;
    while (t.t === 'word' && this.#isPunct(this.#peek(), '.')) {
      this.#next();
      const seg = this.#next();
      if (seg.t !== 'word' && seg.t !== 'number') throw new FilterSyntaxError(seg.pos, `expected a value after ".", found ${this.#show(seg)}`);
      text += `.${seg.text}`;
    }
    return { text, pos: t.pos };
  }

  #isPunct(t: Token, p: string): boolean {
    return t.t === 'punct' && t.text === p;
  }

  #coerce(text: string, type: FilterType, selector: string, pos: number): string | number | boolean {
    if (type === 'number') {
      const n = Number(text);
      if (text.trim() === '' || !Number.isFinite(n)) throw new FilterSyntaxError(pos, `${JSON.stringify(text)} is not a number (${selector} is numeric)`);
      return n;
    }
    if (type === 'bool') {
      if (text !== 'true' && text !== 'false') throw new FilterSyntaxError(pos, `${JSON.stringify(text)} is not true or false (${selector} is boolean)`);
      return text === 'true';
    }
    return text;
  }

  #match(): Node {
    const start = this.#peek();
    // Value-first form: <value> [not] in <selector>.
    if (start.t === 'string' || start.t === 'number' || (start.t === 'word' && !KEYWORDS.has(start.text) && this.#valueThenIn())) {
      const value = this.#value();
      const negate = this.#isWord(this.#peek(), 'not');
      if (negate) this.#next();
      const inTok = this.#next();
      if (!this.#isWord(inTok, 'in')) throw new FilterSyntaxError(inTok.pos, `expected "in" or "not in" after a value, found ${this.#show(inTok)}`);
      const path = this.#path();
      return this.#containment(negate ? 'notIn' : 'in', path, this.#resolve(path.segments, path.pos), value);
    }
    const path = this.#path();
    const type = this.#resolve(path.segments, path.pos);
    const opTok = this.#next();
    if (opTok.t === 'punct' && (opTok.text === '==' || opTok.text === '!=')) {
      if (typeof type !== 'string') throw new FilterSyntaxError(opTok.pos, `${opTok.text} needs a string, number or boolean selector; ${path.text} is a ${describeType(type)}`);
      const value = this.#value();
      const literal = { text: value.text, value: this.#coerce(value.text, type, path.text, value.pos) };
      return { kind: 'match', op: opTok.text === '==' ? 'eq' : 'ne', path: path.segments, type, literal };
    }
    if (this.#isWord(opTok, 'is')) {
      const negate = this.#isWord(this.#peek(), 'not');
      if (negate) this.#next();
      const empty = this.#next();
      if (!this.#isWord(empty, 'empty')) throw new FilterSyntaxError(empty.pos, `expected "empty", found ${this.#show(empty)}`);
      if (type === 'number' || type === 'bool') throw new FilterSyntaxError(opTok.pos, `"is empty" needs a string, list or map; ${path.text} is a ${describeType(type)}`);
      return { kind: 'match', op: negate ? 'notEmpty' : 'empty', path: path.segments, type, literal: null };
    }
    const negate = this.#isWord(opTok, 'not');
    const op = negate ? this.#next() : opTok;
    if (this.#isWord(op, 'contains')) return this.#containment(negate ? 'notIn' : 'in', path, type, this.#value());
    if (this.#isWord(op, 'matches')) throw new FilterSyntaxError(op.pos, '"matches" is not supported by Sider (use ==, in or contains)');
    throw new FilterSyntaxError(op.pos, `expected an operator (==, !=, in, not in, contains, not contains, is empty, is not empty), found ${this.#show(op)}`);
  }

  /** Lookahead: whether the bare word at the cursor (possibly dotted) is followed by `in` or `not in`. */
  #valueThenIn(): boolean {
    let k = 1;
    while (this.#isPunct(this.#peek(k), '.')) k += 2;
    const after = this.#peek(k);
    return this.#isWord(after, 'in') || (this.#isWord(after, 'not') && this.#isWord(this.#peek(k + 1), 'in'));
  }

  #containment(op: 'in' | 'notIn', path: { segments: string[]; text: string }, type: FilterType, value: { text: string; pos: number }): Node {
    if (type === 'number' || type === 'bool') throw new FilterSyntaxError(value.pos, `"in" and "contains" need a string, list or map; ${path.text} is a ${describeType(type)}`);
    const elem = elementType(type);
    return { kind: 'match', op, path: path.segments, type, literal: { text: value.text, value: this.#coerce(value.text, elem, path.text, value.pos) } };
  }
}

/** What `in` compares against: list elements, map keys (strings), or substrings. */
function elementType(type: FilterType): FilterType {
  if (typeof type !== 'string' && 'list' in type) return type.list;
  return 'string';
}

// ---------------------------------------------------------------------------------------------
// Evaluation over plain JSON values (the rendered Consul shapes).

function select(root: unknown, path: string[]): unknown[] {
  let values: unknown[] = [root];
  for (const seg of path) {
    const next: unknown[] = [];
    for (const v of values) {
      if (Array.isArray(v)) {
        for (const e of v) next.push(typeof e === 'object' && e !== null && Object.hasOwn(e, seg) ? (e as Record<string, unknown>)[seg] : undefined);
      } else {
        next.push(typeof v === 'object' && v !== null && Object.hasOwn(v, seg) ? (v as Record<string, unknown>)[seg] : undefined);
      }
    }
    values = next;
  }
  return values;
}

function equals(v: unknown, lit: Literal): boolean {
  if (typeof lit.value === 'number') return typeof v === 'number' && v === lit.value;
  if (typeof lit.value === 'boolean') return v === lit.value;
  return typeof v === 'string' && v === lit.value;
}

function contains(v: unknown, lit: Literal): boolean {
  if (typeof v === 'string') return v.includes(lit.text);
  if (Array.isArray(v)) return v.some((e) => equals(e, lit));
  if (typeof v === 'object' && v !== null) return Object.hasOwn(v, lit.text);
  return false;
}

function isEmpty(v: unknown): boolean {
  if (v === undefined || v === null || v === '') return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === 'object') return Object.keys(v).length === 0;
  return false;
}

function evaluate(node: Node, value: unknown): boolean {
  switch (node.kind) {
    case 'and':
      return evaluate(node.left, value) && evaluate(node.right, value);
    case 'or':
      return evaluate(node.left, value) || evaluate(node.right, value);
    case 'not':
      return !evaluate(node.expr, value);
    case 'match': {
      // Through a list of objects a selector yields one value per element: true when any matches.
      // The negated forms are the negation of the positive one (so "!=" means "none equals").
      const vs = select(value, node.path);
      const lit = node.literal;
      switch (node.op) {
        case 'eq':
          return vs.some((v) => equals(v, lit!));
        case 'ne':
          return !vs.some((v) => equals(v, lit!));
        case 'in':
          return vs.some((v) => contains(v, lit!));
        case 'notIn':
          return !vs.some((v) => contains(v, lit!));
        case 'empty':
          return vs.length === 0 || vs.some(isEmpty);
        case 'notEmpty':
          return !(vs.length === 0 || vs.some(isEmpty));
      }
    }
  }
}

export interface Filter {
  /** The expression as given. */
  readonly source: string;
  matches(value: unknown): boolean;
}

/**
 * Parses `source` against `schema` (the shape of the values it will filter). A syntax error, an
 * unknown selector or a value of the wrong type is a SIDER_BAD_REQUEST quoting the filter and the
 * 1-based position.
 */
export function parseFilter(source: string, schema: FilterType): Filter {
  const fail = (pos: number, msg: string): never => {
    throw new SiderError('SIDER_BAD_REQUEST', `filter ${JSON.stringify(source)}: position ${pos + 1}: ${msg}`);
  };
  if (source.length > MAX_FILTER_LENGTH) fail(MAX_FILTER_LENGTH, `longer than ${MAX_FILTER_LENGTH} characters`);
  let root: Node | undefined;
  try {
    root = new Parser(tokenize(source), schema).parse();
  } catch (err) {
    if (err instanceof FilterSyntaxError) fail(err.pos, err.message);
    throw err;
  }
  const tree = root!;
  return { source, matches: (value) => evaluate(tree, value) };
}
