//! One incoming event: its top-level JSON fields and typed getters whose
//! errors name the field, the rule and the offending value.

use std::borrow::Cow;
use std::fmt;

use smallvec::SmallVec;

use crate::scan::Raw;

/// A top-level field value. Nested arrays and objects are not kept: plugins
/// map flat events, and a nested value only needs to be named in an error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    /// Any other number; out-of-range ones are infinite.
    Float(f64),
    Str(&'a str),
    /// A string that is not UTF-8.
    InvalidText,
    Array,
    Object,
}

impl fmt::Display for Value<'_> {
    /// How a value is quoted in error messages: strings as JSON strings
    /// (cut at 64 characters), containers by kind.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::UInt(u) => write!(f, "{u}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Str(s) => {
                let cut: String = s.chars().take(64).collect();
                let quoted = serde_json::to_string(&cut).unwrap_or_default();
                if cut.len() < s.len() {
                    write!(f, "{}...\"", &quoted[..quoted.len() - 1])
                } else {
                    f.write_str(&quoted)
                }
            }
            Value::InvalidText => f.write_str("text that is not UTF-8"),
            Value::Array => f.write_str("an array"),
            Value::Object => f.write_str("an object"),
        }
    }
}

/// Why an event was rejected: a human-readable reason naming the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject(pub String);

impl Reject {
    pub fn new(reason: impl Into<String>) -> Self {
        Reject(reason.into())
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Reject {}

type Fields<'a> = SmallVec<[(Cow<'a, [u8]>, Raw<'a>); 16]>;

/// The top-level fields of one JSON object event.
#[derive(Debug, Default)]
pub struct Event<'a> {
    fields: Fields<'a>,
}

impl<'a> Event<'a> {
    /// Parses one JSON object. Errors say what is malformed.
    pub fn parse(json: &'a [u8]) -> Result<Self, Reject> {
        let mut event = Event::default();
        event.parse_into(json)?;
        Ok(event)
    }

    /// Parses one JSON object into this event, reusing its storage (the
    /// batch path parses every event of a batch into one `Event`).
    pub fn parse_into(&mut self, json: &'a [u8]) -> Result<(), Reject> {
        self.fields.clear();
        let fields = &mut self.fields;
        crate::scan::object(json, |k, v| fields.push((k, v)))
            .map_err(|e| Reject(format!("malformed event: {e}")))
    }

    /// The value of a field; the last one wins if a key repeats. Text is
    /// checked and numbers parsed here, when a field is read.
    pub fn get(&self, name: &str) -> Option<Value<'_>> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k.as_ref() == name.as_bytes())
            .map(|(_, v)| value(v))
    }

    /// Iterates over the fields in document order.
    pub fn iter(&self) -> impl Iterator<Item = (Cow<'_, str>, Value<'_>)> {
        self.fields
            .iter()
            .map(|(k, v)| (String::from_utf8_lossy(k), value(v)))
    }

    /// True when the field is present and not null.
    pub fn has(&self, name: &str) -> bool {
        !matches!(self.get(name), None | Some(Value::Null))
    }

    fn required(&self, name: &str) -> Result<Value<'_>, Reject> {
        match self.get(name) {
            None | Some(Value::Null) => Err(Reject(format!("missing field {name:?}"))),
            Some(v) => Ok(v),
        }
    }

    /// A reject naming the field, the rule and the value it got:
    /// `quantity must be a whole number >= 0, got "two"`.
    pub fn invalid(&self, name: &str, rule: &str) -> Reject {
        match self.get(name) {
            Some(v) => Reject(format!("{name} must be {rule}, got {v}")),
            None => Reject(format!("missing field {name:?}")),
        }
    }

    /// A string field.
    pub fn str(&self, name: &str) -> Result<&str, Reject> {
        match self.required(name)? {
            Value::Str(s) => Ok(s),
            _ => Err(self.invalid(name, "a string")),
        }
    }

    /// A non-empty string of at most `max_chars` letters, digits, `-` or `_`.
    pub fn token(&self, name: &str, max_chars: usize) -> Result<&str, Reject> {
        let s = self.str(name)?;
        let ok = !s.is_empty()
            && s.chars().count() <= max_chars
            && s.chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(s)
        } else {
            Err(self.invalid(
                name,
                &format!("1 to {max_chars} letters, digits, '-' or '_'"),
            ))
        }
    }

    /// One of `choices`, compared without regard to ASCII case; returns the
    /// choice as written in `choices` (so `"Large"` gives `"large"`).
    pub fn choice(&self, name: &str, choices: &[&'static str]) -> Result<&'static str, Reject> {
        if let Value::Str(s) = self.required(name)? {
            if let Some(c) = choices.iter().find(|c| c.eq_ignore_ascii_case(s)) {
                return Ok(c);
            }
        }
        Err(self.invalid(name, &format!("one of {}", choices.join(", "))))
    }

    /// A finite number: a JSON number or a string holding one.
    pub fn number(&self, name: &str) -> Result<f64, Reject> {
        self.number_where(name, "a finite number", |_| true)
    }

    /// A finite number >= 0.
    pub fn non_negative(&self, name: &str) -> Result<f64, Reject> {
        self.number_where(name, "a finite number >= 0", |x| x >= 0.0)
    }

    fn number_where(
        &self,
        name: &str,
        rule: &str,
        ok: impl Fn(f64) -> bool,
    ) -> Result<f64, Reject> {
        let x = match self.required(name)? {
            Value::Int(i) => Some(i as f64),
            Value::UInt(u) => Some(u as f64),
            Value::Float(x) => Some(x),
            Value::Str(s) => parse_decimal(s),
            _ => None,
        };
        match x {
            Some(x) if x.is_finite() && ok(x) => Ok(if x == 0.0 { 0.0 } else { x }),
            _ => Err(self.invalid(name, rule)),
        }
    }

    /// A whole number that fits in 64 bits: a JSON integer or a string of
    /// digits with an optional sign.
    pub fn int(&self, name: &str) -> Result<i64, Reject> {
        self.int_where(name, "a whole number", |_| true)
    }

    /// A whole number >= 0 (a count, a quantity).
    pub fn count(&self, name: &str) -> Result<i64, Reject> {
        self.int_where(name, "a whole number >= 0", |i| i >= 0)
    }

    fn int_where(&self, name: &str, rule: &str, ok: impl Fn(i64) -> bool) -> Result<i64, Reject> {
        let i = match self.required(name)? {
            Value::Int(i) => Some(i),
            Value::UInt(u) => i64::try_from(u).ok(),
            Value::Float(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Some(x as i64),
            Value::Str(s) => parse_integer(s),
            _ => None,
        };
        match i {
            Some(i) if ok(i) => Ok(i),
            _ => Err(self.invalid(name, rule)),
        }
    }

    /// A boolean: JSON `true`/`false` or the strings "true"/"false" (any case).
    pub fn bool(&self, name: &str) -> Result<bool, Reject> {
        match self.required(name)? {
            Value::Bool(b) => Ok(b),
            Value::Str(s) if s.eq_ignore_ascii_case("true") => Ok(true),
            Value::Str(s) if s.eq_ignore_ascii_case("false") => Ok(false),
            _ => Err(self.invalid(name, "true or false")),
        }
    }

    /// A timestamp in microseconds since the Unix epoch (UTC).
    pub fn timestamp_micros(&self, name: &str) -> Result<i64, Reject> {
        self.int_where(
            name,
            "a timestamp in microseconds since 1970-01-01 UTC",
            |_| true,
        )
    }
}

/// Converts a scanned value: checks text, parses numbers.
fn value<'s>(raw: &'s Raw<'_>) -> Value<'s> {
    match raw {
        Raw::Text(bytes) => match std::str::from_utf8(bytes) {
            Ok(s) => Value::Str(s),
            Err(_) => Value::InvalidText,
        },
        Raw::Decoded(s) => Value::Str(s),
        Raw::Number(bytes) => {
            // The scanner checked the grammar: the text is ASCII.
            let text = std::str::from_utf8(bytes).unwrap_or("NaN");
            let integral = !bytes.iter().any(|b| matches!(b, b'.' | b'e' | b'E'));
            if integral {
                if let Ok(i) = text.parse::<i64>() {
                    return Value::Int(i);
                }
                if let Ok(u) = text.parse::<u64>() {
                    return Value::UInt(u);
                }
            }
            Value::Float(text.parse().unwrap_or(f64::NAN))
        }
        Raw::Bool(b) => Value::Bool(*b),
        Raw::Null => Value::Null,
        Raw::Array => Value::Array,
        Raw::Object => Value::Object,
    }
}

/// Digits with an optional sign; no spaces, no exponent.
fn parse_integer(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A plain decimal number (`1`, `-2.5`, `1e3`); rejects `inf`, `NaN` and blanks.
fn parse_decimal(s: &str) -> Option<f64> {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
        && s.bytes().any(|b| b.is_ascii_digit());
    if plain { s.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str, get: impl Fn(&Event) -> Result<String, Reject>, expect: &str) {
        let got = match Event::parse(json.as_bytes()) {
            Ok(ev) => match get(&ev) {
                Ok(v) => format!("ok {v}"),
                Err(e) => format!("err {e}"),
            },
            Err(e) => format!("err {e}"),
        };
        assert_eq!(got, expect, "input: {json}");
    }

    #[test]
    fn getters() {
        let count = |e: &Event| e.count("quantity").map(|i| i.to_string());
        check(r#"{"quantity":"2"}"#, count, "ok 2");
        check(r#"{"quantity":2}"#, count, "ok 2");
        check(r#"{"quantity":2.0}"#, count, "ok 2");
        check(
            r#"{"quantity":"two"}"#,
            count,
            r#"err quantity must be a whole number >= 0, got "two""#,
        );
        check(
            r#"{"quantity":-1}"#,
            count,
            "err quantity must be a whole number >= 0, got -1",
        );
        check(
            r#"{"quantity":"1.5"}"#,
            count,
            r#"err quantity must be a whole number >= 0, got "1.5""#,
        );
        check(
            r#"{"quantity":1e300}"#,
            count,
            "err quantity must be a whole number >= 0, got 1e300",
        );
        check(
            r#"{"quantity":18446744073709551615}"#,
            count,
            "err quantity must be a whole number >= 0, got 18446744073709551615",
        );
        check(
            r#"{"quantity":[1]}"#,
            count,
            "err quantity must be a whole number >= 0, got an array",
        );
        check(r#"{}"#, count, r#"err missing field "quantity""#);
        check(
            r#"{"quantity":null}"#,
            count,
            r#"err missing field "quantity""#,
        );
        let speed = |e: &Event| e.non_negative("speed").map(|x| x.to_string());
        check(r#"{"speed":"1.5"}"#, speed, "ok 1.5");
        check(
            r#"{"speed":"NaN"}"#,
            speed,
            r#"err speed must be a finite number >= 0, got "NaN""#,
        );
        check(
            r#"{"speed":"inf"}"#,
            speed,
            r#"err speed must be a finite number >= 0, got "inf""#,
        );
        check(r#"{"speed":"-0"}"#, speed, "ok 0");
        check(
            r#"{"speed":"1e999"}"#,
            speed,
            r#"err speed must be a finite number >= 0, got "1e999""#,
        );
        let size = |e: &Event| e.choice("size", &["small", "large"]).map(str::to_owned);
        check(r#"{"size":"LaRge"}"#, size, "ok large");
        check(
            r#"{"size":"huge"}"#,
            size,
            r#"err size must be one of small, large, got "huge""#,
        );
        let color = |e: &Event| e.token("color", 4).map(str::to_owned);
        check(r#"{"color":"re-d"}"#, color, "ok re-d");
        check(
            r#"{"color":"red!"}"#,
            color,
            r#"err color must be 1 to 4 letters, digits, '-' or '_', got "red!""#,
        );
        check(
            r#"{"color":""}"#,
            color,
            r#"err color must be 1 to 4 letters, digits, '-' or '_', got """#,
        );
        check(
            r#"{"color":"a\"b"}"#,
            color,
            r#"err color must be 1 to 4 letters, digits, '-' or '_', got "a\"b""#,
        );
    }

    #[test]
    fn malformed() {
        let any = |_: &Event| Ok(String::new());
        check(
            "[1]",
            any,
            "err malformed event: expected a JSON object at byte 0",
        );
        check(
            "{",
            any,
            "err malformed event: expected a string key, found the end of the input",
        );
        check(
            r#"{"a":1} x"#,
            any,
            "err malformed event: trailing characters at byte 8",
        );
        // Deeply nested values are skipped without recursion: no stack overflow.
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        check(
            &deep,
            |e| Ok(e.get("a").unwrap().to_string()),
            "ok an array",
        );
        let bad = Event::parse(b"{\"a\":\"\xff\"}").unwrap();
        assert_eq!(
            bad.str("a").unwrap_err().0,
            "a must be a string, got text that is not UTF-8"
        );
    }

    /// The TypeScript SDK's `token` reads a table of Rust's alphanumeric
    /// code points (StarlingMonkey has no Unicode property data); it must
    /// be this Rust's. `EVENTSIFT_BLESS=1` rewrites it.
    #[test]
    fn typescript_alphanumeric_table_matches_rust() {
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for c in (0x80u32..=0x10FFFF).filter_map(char::from_u32) {
            if c.is_alphanumeric() {
                let u = c as u32;
                match ranges.last_mut() {
                    Some(r) if r.1 + 1 == u => r.1 = u,
                    _ => ranges.push((u, u)),
                }
            }
        }
        let flat: Vec<String> = ranges
            .iter()
            .flat_map(|(a, b)| [a.to_string(), b.to_string()])
            .collect();
        let want = format!(
            "// Generated from Rust's `char::is_alphanumeric` (the Rust SDK's `token` rule) for\n\
             // code points >= 0x80, as inclusive [first, last] pairs: StarlingMonkey has no\n\
             // Unicode property data for \\p{{...}} regexes. `sdk/src/event.rs`'s test\n\
             // `typescript_alphanumeric_table_matches_rust` checks it (EVENTSIFT_BLESS=1 rewrites it).\n\
             // prettier-ignore\n\
             export const ALNUM: readonly number[] = [{}];\n",
            flat.join(",")
        );
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk-ts/src/alnum.ts");
        if std::env::var_os("EVENTSIFT_BLESS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap();
        assert!(
            have == want,
            "{path} is stale: run EVENTSIFT_BLESS=1 cargo test -p eventsift-sdk"
        );
    }

    #[test]
    fn long_strings_are_cut_in_messages() {
        let json = format!(r#"{{"color":"{}"}}"#, "x".repeat(100));
        let ev = Event::parse(json.as_bytes()).unwrap();
        let msg = ev.token("color", 64).unwrap_err().0;
        assert!(
            msg.ends_with(&format!("got \"{}...\"", "x".repeat(64))),
            "{msg}"
        );
    }
}
