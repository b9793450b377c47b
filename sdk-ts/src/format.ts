// Text forms the Rust SDK prints, reproduced exactly: floats as Rust's `{:?}`
// (in messages) and as serde_json writes them (in `validate`'s JSON: zmij,
// fixed for exponents -5 to 15, else `1.5e+20` / `1e-7`), strings as
// serde_json quotes them (messages) and as the SDK's `json::push_str` does.

/** Shortest round-trip digits and the scientific exponent of a finite, nonzero |x|. */
function shortest(x: number): { digits: string; exp: number } {
  const [mantissa, e] = Math.abs(x).toExponential().split('e');
  return { digits: mantissa.replace('.', ''), exp: Number(e) };
}

function fixed(digits: string, exp: number): string {
  if (exp >= 0) {
    const int = digits.length > exp + 1 ? digits.slice(0, exp + 1) : digits.padEnd(exp + 1, '0');
    const frac = digits.slice(exp + 1);
    return `${int}.${frac || '0'}`;
  }
  return `0.${'0'.repeat(-exp - 1)}${digits}`;
}

function scientific(digits: string, exp: number, plus = ''): string {
  const sign = exp < 0 ? '-' : plus;
  return `${digits[0]}${digits.length > 1 ? `.${digits.slice(1)}` : ''}e${sign}${Math.abs(exp)}`;
}

/** Rust's `format!("{:?}", x)` for an f64. */
export function rustDebug(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  const sign = x < 0 || Object.is(x, -0) ? '-' : '';
  if (x === 0) return `${sign}0.0`;
  const { digits, exp } = shortest(x);
  const a = Math.abs(x);
  return sign + (a < 1e-4 || a >= 1e16 ? scientific(digits, exp) : fixed(digits, exp));
}

/** serde_json's (zmij's) text for a finite f64. */
export function jsonFloat(x: number): string {
  if (!Number.isFinite(x)) return 'null';
  const sign = x < 0 || Object.is(x, -0) ? '-' : '';
  if (x === 0) return `${sign}0.0`;
  const { digits, exp } = shortest(x);
  return sign + (exp >= -5 && exp <= 15 ? fixed(digits, exp) : scientific(digits, exp, '+'));
}

/** serde_json's `to_string` of a string (messages quote values this way). */
export function quote(s: string): string {
  return JSON.stringify(s);
}

/** The Rust SDK's `json::push_str`: only `"`, `\`, \n, \r, \t are short escapes. */
export function jsonString(s: string): string {
  let out = '"';
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let escape: string;
    if (c === 0x22) escape = '\\"';
    else if (c === 0x5c) escape = '\\\\';
    else if (c === 0x0a) escape = '\\n';
    else if (c === 0x0d) escape = '\\r';
    else if (c === 0x09) escape = '\\t';
    else if (c < 0x20) escape = `\\u${c.toString(16).padStart(4, '0')}`;
    else continue;
    out += s.slice(start, i) + escape;
    start = i + 1;
  }
  return `${out + s.slice(start)}"`;
}
