//! One incoming event: its top-level JSON fields and typed getters whose
//! errors name the field, the rule and the offending value.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use smallvec::SmallVec;

/// A top-level field value. Nested arrays and objects are not kept: plugins
/// map flat events, and a nested value only needs to be named in an error.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
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

type Fields<'a> = SmallVec<[(Cow<'a, str>, Value<'a>); 16]>;

/// The top-level fields of one JSON object event.
#[derive(Debug, Default)]
pub struct Event<'a> {
    fields: Fields<'a>,
}

impl<'a> Event<'a> {
    /// Parses one JSON object. Errors say what is malformed.
    pub fn parse(json: &'a [u8]) -> Result<Self, Reject> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let mut fields = Fields::new();
        FieldsSeed(&mut fields)
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .map_err(|e| Reject(format!("malformed event: {e}")))?;
        Ok(Event { fields })
    }

    /// The value of a field; the last one wins if a key repeats.
    pub fn get(&self, name: &str) -> Option<&Value<'a>> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Iterates over the fields in document order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value<'a>)> {
        self.fields.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// True when the field is present and not null.
    pub fn has(&self, name: &str) -> bool {
        !matches!(self.get(name), None | Some(Value::Null))
    }

    fn required(&self, name: &str) -> Result<&Value<'a>, Reject> {
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
            Value::Int(i) => Some(*i as f64),
            Value::UInt(u) => Some(*u as f64),
            Value::Float(x) => Some(*x),
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
            Value::Int(i) => Some(*i),
            Value::UInt(u) => i64::try_from(*u).ok(),
            Value::Float(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Some(*x as i64),
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
            Value::Bool(b) => Ok(*b),
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

// ---- serde plumbing: one pass over the object, borrowing strings where possible.

struct FieldsSeed<'f, 'a>(&'f mut Fields<'a>);

impl<'de> DeserializeSeed<'de> for FieldsSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldsSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Text<'de>>()? {
            let value = map.next_value::<Value<'de>>()?;
            self.0.push((key.0, value));
        }
        Ok(())
    }
}

struct Text<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> de::Deserialize<'de> for Value<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Value<'de>, E> {
                Ok(Value::Null)
            }
            fn visit_none<E>(self) -> Result<Value<'de>, E> {
                Ok(Value::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Value<'de>, E> {
                Ok(Value::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Value<'de>, E> {
                Ok(Value::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Value<'de>, E> {
                Ok(match i64::try_from(v) {
                    Ok(i) => Value::Int(i),
                    Err(_) => Value::UInt(v),
                })
            }
            fn visit_f64<E>(self, v: f64) -> Result<Value<'de>, E> {
                Ok(Value::Float(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Value<'de>, E> {
                Ok(Value::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Value<'de>, E> {
                Ok(Value::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Value<'de>, E> {
                Ok(Value::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Value::Array)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Value::Object)
            }
        }
        d.deserialize_any(V)
    }
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
            "err malformed event: invalid type: sequence, expected a JSON object at line 1 column 0",
        );
        check(
            "{",
            any,
            "err malformed event: EOF while parsing an object at line 1 column 1",
        );
        check(
            r#"{"a":1} x"#,
            any,
            "err malformed event: trailing characters at line 1 column 9",
        );
        // Deeply nested values are skipped without recursion: no stack overflow.
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        check(
            &deep,
            |e| Ok(e.get("a").unwrap().to_string()),
            "ok an array",
        );
        assert!(Event::parse(b"{\"a\":\"\xff\"}").is_err());
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
