// One incoming event: its top-level JSON fields and typed getters whose
// errors name the field, the rule and the offending value. The port of the
// Rust SDK's `sdk/src/event.rs`: the same getters, the same messages.

import { Fields, Kind, ScanError, object } from './scan';
import { quote, rustDebug } from './format';
import { ALNUM } from './alnum';

/**
 * A top-level field value. Nested arrays and objects are not kept: plugins
 * map flat events, and a nested value only needs to be named in an error.
 * `int` fits in a signed 64-bit integer, `uint` in an unsigned one; any
 * other number is a `float` (out-of-range ones are infinite).
 */
export type Value =
  | { kind: 'null' }
  | { kind: 'bool'; value: boolean }
  | { kind: 'int'; value: bigint }
  | { kind: 'uint'; value: bigint }
  | { kind: 'float'; value: number }
  | { kind: 'str'; value: string }
  /** a string that is not UTF-8 */
  | { kind: 'invalid-text' }
  | { kind: 'array' }
  | { kind: 'object' };

const NULL: Value = { kind: 'null' };
const TRUE: Value = { kind: 'bool', value: true };
const FALSE: Value = { kind: 'bool', value: false };
const INVALID: Value = { kind: 'invalid-text' };
const ARRAY: Value = { kind: 'array' };
const OBJECT: Value = { kind: 'object' };

const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;
const U64_MAX = (1n << 64n) - 1n;

/** How a value is quoted in error messages: strings as JSON strings (cut at 64 characters), containers by kind. */
export function display(v: Value): string {
  switch (v.kind) {
    case 'null':
      return 'null';
    case 'bool':
      return String(v.value);
    case 'int':
    case 'uint':
      return v.value.toString();
    case 'float':
      return rustDebug(v.value);
    case 'str': {
      const s = v.value;
      if (s.length <= 64) return quote(s);
      const chars = Array.from(s);
      if (chars.length <= 64) return quote(s);
      const cut = quote(chars.slice(0, 64).join(''));
      return `${cut.slice(0, -1)}..."`;
    }
    case 'invalid-text':
      return 'text that is not UTF-8';
    case 'array':
      return 'an array';
    case 'object':
      return 'an object';
  }
}

/** Why an event was rejected: a human-readable reason naming the field. Throw it from `map`. */
export class Reject {
  constructor(readonly reason: string) {}
  toString(): string {
    return this.reason;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();
const names = new Map<string, Uint8Array>();

/** Is `name` ASCII (compared as a byte string)? */
const ASCII = /^[\x00-\x7f]*$/;

/** A field name's UTF-8 bytes (names are few: cached). */
function nameBytes(name: string): Uint8Array {
  let b = names.get(name);
  if (b === undefined) {
    b = encoder.encode(name);
    if (names.size < 1024) names.set(name, b);
  }
  return b;
}

const HIGH = /[\x80-\xff]/;

function text(bytes: Uint8Array, chars: string, start: number, end: number): Value {
  // ASCII needs no decoder (most event fields are ASCII).
  const s = chars.slice(start, end);
  if (!HIGH.test(s)) return { kind: 'str', value: s };
  try {
    return { kind: 'str', value: utf8.decode(bytes.subarray(start, end)) };
  } catch {
    return INVALID;
  }
}

function number(t: string): Value {
  if (!/[.eE]/.test(t)) {
    const i = BigInt(t);
    if (i >= I64_MIN && i <= I64_MAX) return { kind: 'int', value: i };
    if (i >= 0n && i <= U64_MAX) return { kind: 'uint', value: i };
  }
  return { kind: 'float', value: Number(t) };
}

/** Digits with an optional sign; no spaces, no exponent (Rust's `str::parse::<i64>`). */
function parseInteger(s: string): bigint | undefined {
  if (!/^[+-]?[0-9]+$/.test(s)) return undefined;
  const i = BigInt(s);
  return i >= I64_MIN && i <= I64_MAX ? i : undefined;
}

/** A plain decimal number (`1`, `-2.5`, `1e3`); rejects `inf`, `NaN` and blanks (Rust's `str::parse::<f64>` on those). */
function parseDecimal(s: string): number | undefined {
  return /^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$/.test(s) ? Number(s) : undefined;
}

function asciiLower(s: string): string {
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

/** Rust's `char::is_alphanumeric() || c == '-' || c == '_'`. */
function tokenChar(cp: number): boolean {
  if (cp < 0x80) {
    return (cp >= 0x30 && cp <= 0x39) || (cp >= 0x41 && cp <= 0x5a) || (cp >= 0x61 && cp <= 0x7a) || cp === 0x2d || cp === 0x5f;
  }
  let lo = 0;
  let hi = ALNUM.length / 2 - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (cp < ALNUM[2 * mid]) hi = mid - 1;
    else if (cp > ALNUM[2 * mid + 1]) lo = mid + 1;
    else return true;
  }
  return false;
}

/** Is `s` 1 to `max` characters, each a token character? */
function isToken(s: string, max: number): boolean {
  let chars = 0;
  for (let i = 0; i < s.length; i++) {
    let cp = s.charCodeAt(i);
    if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < s.length) {
      cp = s.codePointAt(i) as number;
      i++;
    }
    if (!tokenChar(cp)) return false;
    chars++;
  }
  return chars > 0 && chars <= max;
}

/** The top-level fields of one JSON object event. */
export class Event {
  private f = new Fields();

  /** Parses one JSON object (text or UTF-8 bytes). Throws a Reject saying what is malformed. */
  static parse(json: string | Uint8Array): Event {
    const e = new Event();
    e.parseInto(typeof json === 'string' ? encoder.encode(json) : json);
    return e;
  }

  /** Parses into this event, reusing its storage (the batch path uses one Event for a whole batch). */
  parseInto(json: Uint8Array): void {
    try {
      object(json, this.f);
    } catch (e) {
      this.f.count = 0;
      if (e instanceof ScanError) throw new Reject(`malformed event: ${e.message}`);
      throw e;
    }
  }

  private index(name: string): number {
    const f = this.f;
    if (ASCII.test(name)) {
      // Native comparisons on the byte string (a plain key's bytes are its characters).
      for (let i = f.count - 1; i >= 0; i--) {
        const decoded = f.keyDecoded[i];
        if (decoded === undefined) {
          const start = f.keyStart[i];
          if (f.keyEnd[i] - start === name.length && f.text.startsWith(name, start)) return i;
        } else if (decoded.length === name.length) {
          let same = true;
          for (let k = 0; k < name.length; k++) if (decoded[k] !== name.charCodeAt(k)) same = false;
          if (same) return i;
        }
      }
      return -1;
    }
    const b = f.bytes;
    const want = nameBytes(name);
    next: for (let i = f.count - 1; i >= 0; i--) {
      const decoded = f.keyDecoded[i];
      if (decoded !== undefined) {
        if (decoded.length !== want.length) continue;
        for (let k = 0; k < want.length; k++) if (decoded[k] !== want[k]) continue next;
        return i;
      }
      const start = f.keyStart[i];
      if (f.keyEnd[i] - start !== want.length) continue;
      for (let k = 0; k < want.length; k++) if (b[start + k] !== want[k]) continue next;
      return i;
    }
    return -1;
  }

  private valueAt(i: number): Value {
    const f = this.f;
    switch (f.kind[i]) {
      case Kind.Text:
        return text(f.bytes, f.text, f.start[i], f.end[i]);
      case Kind.Decoded:
        return { kind: 'str', value: f.decoded[i] as string };
      case Kind.Number:
        return number(f.text.slice(f.start[i], f.end[i]));
      case Kind.True:
        return TRUE;
      case Kind.False:
        return FALSE;
      case Kind.Null:
        return NULL;
      case Kind.Array:
        return ARRAY;
      case Kind.Object:
        return OBJECT;
    }
  }

  /** The value of a field; the last one wins if a key repeats. */
  get(name: string): Value | undefined {
    const i = this.index(name);
    return i < 0 ? undefined : this.valueAt(i);
  }

  /** The fields in document order (keys that are not UTF-8 are decoded lossily). */
  fields(): [string, Value][] {
    const out: [string, Value][] = [];
    const f = this.f;
    const lossy = new TextDecoder();
    for (let i = 0; i < f.count; i++) {
      const key = f.keyDecoded[i] ?? f.bytes.subarray(f.keyStart[i], f.keyEnd[i]);
      out.push([lossy.decode(key), this.valueAt(i)]);
    }
    return out;
  }

  /** True when the field is present and not null. */
  has(name: string): boolean {
    const v = this.get(name);
    return v !== undefined && v.kind !== 'null';
  }

  private required(name: string): Value {
    const v = this.get(name);
    if (v === undefined || v.kind === 'null') throw new Reject(`missing field ${quote(name)}`);
    return v;
  }

  /** A reject naming the field, the rule and the value it got: `quantity must be a whole number >= 0, got "two"`. */
  invalid(name: string, rule: string): Reject {
    const v = this.get(name);
    if (v === undefined) return new Reject(`missing field ${quote(name)}`);
    return new Reject(`${name} must be ${rule}, got ${display(v)}`);
  }

  /** A string field. */
  str(name: string): string {
    const v = this.required(name);
    if (v.kind === 'str') return v.value;
    throw this.invalid(name, 'a string');
  }

  /** A non-empty string of at most `maxChars` letters, digits, `-` or `_`. */
  token(name: string, maxChars: number): string {
    const s = this.str(name);
    if (isToken(s, maxChars)) return s;
    throw this.invalid(name, `1 to ${maxChars} letters, digits, '-' or '_'`);
  }

  /** One of `choices`, compared without regard to ASCII case; returns the choice as written in `choices`. */
  choice<const C extends string>(name: string, choices: readonly C[]): C {
    const v = this.required(name);
    if (v.kind === 'str') {
      const lower = asciiLower(v.value);
      for (const c of choices) if (asciiLower(c) === lower) return c;
    }
    throw this.invalid(name, `one of ${choices.join(', ')}`);
  }

  /** A finite number: a JSON number or a string holding one. */
  number(name: string): number {
    return this.numberWhere(name, 'a finite number', () => true);
  }

  /** A finite number >= 0. */
  nonNegative(name: string): number {
    return this.numberWhere(name, 'a finite number >= 0', (x) => x >= 0);
  }

  private numberWhere(name: string, rule: string, ok: (x: number) => boolean): number {
    const v = this.required(name);
    let x: number | undefined;
    if (v.kind === 'int' || v.kind === 'uint') x = Number(v.value);
    else if (v.kind === 'float') x = v.value;
    else if (v.kind === 'str') x = parseDecimal(v.value);
    if (x !== undefined && Number.isFinite(x) && ok(x)) return x === 0 ? 0 : x;
    throw this.invalid(name, rule);
  }

  /** A whole number that fits in 64 bits: a JSON integer or a string of digits with an optional sign. */
  int(name: string): bigint {
    return this.intWhere(name, 'a whole number', () => true);
  }

  /** A whole number >= 0 (a count, a quantity). */
  count(name: string): bigint {
    return this.intWhere(name, 'a whole number >= 0', (i) => i >= 0n);
  }

  private intWhere(name: string, rule: string, ok: (i: bigint) => boolean): bigint {
    const v = this.required(name);
    let i: bigint | undefined;
    if (v.kind === 'int') i = v.value;
    else if (v.kind === 'uint') i = v.value <= I64_MAX ? v.value : undefined;
    else if (v.kind === 'float') i = Number.isInteger(v.value) && Math.abs(v.value) < 9.0e15 ? BigInt(v.value) : undefined;
    else if (v.kind === 'str') i = parseInteger(v.value);
    if (i !== undefined && ok(i)) return i;
    throw this.invalid(name, rule);
  }

  /** A boolean: JSON `true`/`false` or the strings "true"/"false" (any case). */
  bool(name: string): boolean {
    const v = this.required(name);
    if (v.kind === 'bool') return v.value;
    if (v.kind === 'str') {
      const lower = asciiLower(v.value);
      if (lower === 'true') return true;
      if (lower === 'false') return false;
    }
    throw this.invalid(name, 'true or false');
  }

  /** A timestamp in microseconds since the Unix epoch (UTC). */
  timestampMicros(name: string): bigint {
    return this.intWhere(name, 'a timestamp in microseconds since 1970-01-01 UTC', () => true);
  }
}
