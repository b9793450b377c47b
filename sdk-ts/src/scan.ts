// A single-pass scanner for the flat JSON objects events are: the port of
// the Rust SDK's `sdk/src/scan.rs`, with the same grammar, the same byte
// offsets and the same messages (escaped strings are decoded the way the
// Rust SDK's serde_json decodes them, messages included). It works on the
// UTF-8 bytes, not on a JS string, so "at byte N" means what it means in
// Rust. Plain strings stay byte ranges until a field is read.
//
// Speed: inside a component this runs in an interpreter, where a loop over
// bytes costs ~1 µs a byte; so the scanner works on a byte string of the
// input (one character per byte, made natively) and jumps with native
// string and regular-expression searches, looping only over structure.

/** How a scanned value is kept until it is read. */
export const enum Kind {
  /** A string without escapes: bytes [start, end), UTF-8 not yet checked. */
  Text,
  /** A string with escapes, decoded (in `Fields.decoded`). */
  Decoded,
  /** A number's text, grammar checked: bytes [start, end). */
  Number,
  True,
  False,
  Null,
  Array,
  Object,
}

/** The top-level fields of one object, in document order (parallel arrays, reused). */
export class Fields {
  bytes: Uint8Array = new Uint8Array(0);
  /** `bytes` as a string of one character per byte (0-255). */
  text = '';
  count = 0;
  keyStart: number[] = [];
  keyEnd: number[] = [];
  /** A key with escapes, decoded to UTF-8 bytes; undefined for plain keys. */
  keyDecoded: (Uint8Array | undefined)[] = [];
  kind: Kind[] = [];
  start: number[] = [];
  end: number[] = [];
  decoded: (string | undefined)[] = [];

  push(keyStart: number, keyEnd: number, key: Uint8Array | undefined, kind: Kind, start: number, end: number, decoded: string | undefined): void {
    const i = this.count++;
    this.keyStart[i] = keyStart;
    this.keyEnd[i] = keyEnd;
    this.keyDecoded[i] = key;
    this.kind[i] = kind;
    this.start[i] = start;
    this.end[i] = end;
    this.decoded[i] = decoded;
  }
}

/** A malformed event; `message` reads like the Rust SDK's. */
export class ScanError {
  constructor(readonly message: string) {}
}

const Q = 0x22; // "
const BS = 0x5c; // \

/** `b` as a string of one character per byte, made natively. */
export function byteString(b: Uint8Array, start = 0, end = b.length): string {
  let s = '';
  for (let i = start; i < end; i += 8192) {
    s += String.fromCharCode.apply(null, b.subarray(i, Math.min(end, i + 8192)) as unknown as number[]);
  }
  return s;
}

/** The next `"`, `\` or control character. */
const SPECIAL = /["\\\x00-\x1f]/g;
/** The next `"` or `\`. */
const QUOTE_OR_ESCAPE = /["\\]/g;
/** The next string or bracket (inside a nested value). */
const NESTED = /["{}[\]]/g;
/** Digits from here. */
const DIGITS = /[0-9]*/y;

/** Scans one JSON object into `out`; throws ScanError. */
export function object(b: Uint8Array, out: Fields): void {
  out.bytes = b;
  out.count = 0;
  out.text = byteString(b);
  const s = new Scanner(b, out.text);
  s.ws();
  if (s.peek() !== 0x7b) throw s.error('expected a JSON object');
  s.i++;
  s.ws();
  if (s.peek() === 0x7d) {
    s.i++;
  } else {
    for (;;) {
      if (s.peek() !== Q) throw s.error('expected a string key');
      s.string();
      if (s.kind !== Kind.Text && s.kind !== Kind.Decoded) throw s.error('expected a string key');
      const keyStart = s.start;
      const keyEnd = s.end;
      const key = s.kind === Kind.Decoded ? new TextEncoder().encode(s.decoded) : undefined;
      s.ws();
      if (s.peek() !== 0x3a) throw s.error("expected ':'");
      s.i++;
      s.ws();
      s.value();
      out.push(keyStart, keyEnd, key, s.kind, s.start, s.end, s.decoded);
      s.ws();
      const c = s.peek();
      if (c === 0x2c) {
        s.i++;
        s.ws();
      } else if (c === 0x7d) {
        s.i++;
        break;
      } else {
        throw s.error("expected ',' or '}'");
      }
    }
  }
  s.ws();
  if (s.i !== b.length) throw s.error('trailing characters');
}

class Scanner {
  i = 0;
  // The last value scanned.
  kind: Kind = Kind.Null;
  start = 0;
  end = 0;
  decoded: string | undefined = undefined;

  constructor(
    readonly b: Uint8Array,
    readonly t: string,
  ) {}

  peek(): number {
    return this.i < this.b.length ? this.b[this.i] : -1;
  }

  error(what: string): ScanError {
    if (this.i >= this.b.length) return new ScanError(`${what}, found the end of the input`);
    return new ScanError(`${what} at byte ${this.i}`);
  }

  ws(): void {
    const b = this.b;
    let i = this.i;
    while (i < b.length) {
      const c = b[i];
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      i++;
    }
    this.i = i;
  }

  private set(kind: Kind, start: number, end: number): void {
    this.kind = kind;
    this.start = start;
    this.end = end;
    this.decoded = undefined;
  }

  /** A string starting at the opening quote. */
  string(): void {
    const b = this.b;
    const start = this.i;
    SPECIAL.lastIndex = start + 1;
    const m = SPECIAL.exec(this.t);
    const j = m === null ? b.length : m.index;
    if (j >= b.length) {
      this.i = j;
      throw this.error('unterminated string');
    }
    const c = b[j];
    if (c === Q) {
      this.i = j + 1;
      this.set(Kind.Text, start + 1, j);
    } else if (c === BS) {
      this.escapedString(start);
    } else {
      this.i = j;
      throw this.error('control character in a string');
    }
  }

  private escapedString(start: number): void {
    const b = this.b;
    let j = start + 1;
    while (j < b.length) {
      QUOTE_OR_ESCAPE.lastIndex = j;
      const m = QUOTE_OR_ESCAPE.exec(this.t);
      if (m === null) break;
      j = m.index;
      const c = b[j];
      if (c === BS) {
        j += 2;
      } else {
        this.i = j + 1;
        const text = decodeString(b.subarray(start, j + 1));
        if (typeof text !== 'string') {
          throw new ScanError(`invalid string at byte ${start}: ${text.message}`);
        }
        this.kind = Kind.Decoded;
        this.start = start;
        this.end = j + 1;
        this.decoded = text;
        return;
      }
    }
    this.i = b.length;
    throw this.error('unterminated string');
  }

  value(): void {
    const c = this.peek();
    if (c === Q) this.string();
    else if (c === 0x7b) this.skipNested(Kind.Object);
    else if (c === 0x5b) this.skipNested(Kind.Array);
    else if (c === 0x74) this.literal('true', Kind.True);
    else if (c === 0x66) this.literal('false', Kind.False);
    else if (c === 0x6e) this.literal('null', Kind.Null);
    else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) this.number();
    else throw this.error('expected a value');
  }

  private literal(word: string, kind: Kind): void {
    if (!this.t.startsWith(word, this.i)) throw this.error('expected a value');
    const start = this.i;
    this.i += word.length;
    this.set(kind, start, this.i);
  }

  private digits(): number {
    const from = this.i;
    DIGITS.lastIndex = from;
    DIGITS.exec(this.t);
    this.i = DIGITS.lastIndex;
    return this.i - from;
  }

  /** A JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
  private number(): void {
    const b = this.b;
    const start = this.i;
    if (this.peek() === 0x2d) this.i++;
    const intStart = this.i;
    const n = this.digits();
    if (n === 0 || (n > 1 && b[intStart] === 0x30)) throw this.error('invalid number');
    if (this.peek() === 0x2e) {
      this.i++;
      if (this.digits() === 0) throw this.error('invalid number');
    }
    const e = this.peek();
    if (e === 0x65 || e === 0x45) {
      this.i++;
      const sign = this.peek();
      if (sign === 0x2b || sign === 0x2d) this.i++;
      if (this.digits() === 0) throw this.error('invalid number');
    }
    this.set(Kind.Number, start, this.i);
  }

  /** Skips a nested array or object (balanced brackets, strings aware), without recursion. */
  private skipNested(kind: Kind): void {
    const b = this.b;
    const start = this.i;
    let depth = 0;
    while (this.i < b.length) {
      NESTED.lastIndex = this.i;
      const m = NESTED.exec(this.t);
      if (m === null) {
        this.i = b.length;
        break;
      }
      this.i = m.index;
      const c = b[this.i];
      if (c === Q) {
        this.string();
        continue;
      }
      if (c === 0x7b || c === 0x5b) {
        depth++;
      } else if (c === 0x7d || c === 0x5d) {
        depth--;
        if (depth === 0) {
          this.i++;
          this.set(kind, start, this.i);
          return;
        }
      }
      this.i++;
    }
    throw this.error('unterminated array or object');
  }
}

// ---------------------------------------------------------------------------
// Escaped strings, decoded as serde_json's `from_slice::<String>` decodes them
// (the Rust SDK hands them to serde_json), with its messages and positions.

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** serde_json's position of byte index `i` of `s`. */
function position(s: Uint8Array, i: number): { line: number; column: number } {
  let line = 1;
  let startOfLine = 0;
  for (let k = 0; k < i; k++) {
    if (s[k] === 0x0a) {
      line++;
      startOfLine = k + 1;
    }
  }
  return { line, column: i - startOfLine };
}

function at(s: Uint8Array, i: number): string {
  const p = position(s, i);
  return `at line ${p.line} column ${p.column}`;
}

function pushCodePoint(out: number[], n: number): void {
  if (n < 0x80) {
    out.push(n);
  } else if (n < 0x800) {
    out.push(0xc0 | (n >> 6), 0x80 | (n & 0x3f));
  } else if (n < 0x10000) {
    out.push(0xe0 | (n >> 12), 0x80 | ((n >> 6) & 0x3f), 0x80 | (n & 0x3f));
  } else {
    out.push(0xf0 | (n >> 18), 0x80 | ((n >> 12) & 0x3f), 0x80 | ((n >> 6) & 0x3f), 0x80 | (n & 0x3f));
  }
}

/** Length of the longest valid UTF-8 prefix (Rust's `Utf8Error::valid_up_to`). */
export function validUpTo(b: ArrayLike<number>): number {
  let i = 0;
  const n = b.length;
  while (i < n) {
    const c = b[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c === 0xe0) { need = 2; lo = 0xa0; }
    else if (c >= 0xe1 && c <= 0xec) need = 2;
    else if (c === 0xed) { need = 2; hi = 0x9f; }
    else if (c >= 0xee && c <= 0xef) need = 2;
    else if (c === 0xf0) { need = 3; lo = 0x90; }
    else if (c >= 0xf1 && c <= 0xf3) need = 3;
    else if (c === 0xf4) { need = 3; hi = 0x8f; }
    else return i;
    for (let k = 1; k <= need; k++) {
      const d = i + k < n ? b[i + k] : -1;
      const min = k === 1 ? lo : 0x80;
      const max = k === 1 ? hi : 0xbf;
      if (d < min || d > max) return i;
    }
    i += need + 1;
  }
  return n;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes `"..."` (quotes included); returns the text or the error. */
function decodeString(s: Uint8Array): string | ScanError {
  const out: number[] = [];
  let i = 1; // past the opening quote
  const fail = (what: string, index: number) => new ScanError(`${what} ${at(s, index)}`);
  for (;;) {
    if (i >= s.length) return fail('EOF while parsing a string', i);
    const c = s[i];
    if (c === Q) {
      i++;
      const bytes = Uint8Array.from(out);
      try {
        return utf8.decode(bytes);
      } catch {
        // serde_json points back from the closing quote (approximately).
        const p = position(s, i);
        const column = Math.max(0, p.column - (bytes.length - validUpTo(bytes)));
        return new ScanError(`invalid unicode code point at line ${p.line} column ${column}`);
      }
    }
    if (c < 0x20) return fail('control character (\\u0000-\\u001F) found while parsing a string', i + 1);
    if (c !== BS) {
      out.push(c);
      i++;
      continue;
    }
    i++; // the backslash
    if (i >= s.length) return fail('EOF while parsing a string', i);
    const e = s[i++];
    switch (e) {
      case Q: out.push(Q); break;
      case BS: out.push(BS); break;
      case 0x2f: out.push(0x2f); break;
      case 0x62: out.push(0x08); break;
      case 0x66: out.push(0x0c); break;
      case 0x6e: out.push(0x0a); break;
      case 0x72: out.push(0x0d); break;
      case 0x74: out.push(0x09); break;
      case 0x75: {
        const hex = (): number | ScanError => {
          if (i + 4 > s.length) return fail('EOF while parsing a string', s.length);
          const v = (hexValue(s[i]) << 12) | (hexValue(s[i + 1]) << 8) | (hexValue(s[i + 2]) << 4) | hexValue(s[i + 3]);
          const ok = hexValue(s[i]) >= 0 && hexValue(s[i + 1]) >= 0 && hexValue(s[i + 2]) >= 0 && hexValue(s[i + 3]) >= 0;
          i += 4;
          return ok ? v : fail('invalid escape', i);
        };
        const n = hex();
        if (typeof n !== 'number') return n;
        if (n >= 0xdc00 && n <= 0xdfff) return fail('lone leading surrogate in hex escape', i);
        if (n < 0xd800 || n > 0xdbff) {
          pushCodePoint(out, n);
          break;
        }
        if (i >= s.length) return fail('EOF while parsing a string', i);
        if (s[i] !== BS) return fail('unexpected end of hex escape', i + 1);
        i++;
        if (i >= s.length) return fail('EOF while parsing a string', i);
        if (s[i] !== 0x75) return fail('unexpected end of hex escape', i + 1);
        i++;
        const n2 = hex();
        if (typeof n2 !== 'number') return n2;
        if (n2 < 0xdc00 || n2 > 0xdfff) return fail('lone leading surrogate in hex escape', i);
        pushCodePoint(out, (((n - 0xd800) << 10) | (n2 - 0xdc00)) + 0x10000);
        break;
      }
      default:
        return fail('invalid escape', i);
    }
  }
}
