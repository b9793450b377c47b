//! A single-pass scanner for the flat JSON objects events are. It finds the
//! structure and checks the grammar, but leaves work a plugin may never need
//! for later: strings without escapes stay raw bytes (UTF-8 is checked when
//! a field is read), numbers stay text (parsed when read). Escaped strings
//! are decoded by serde_json; nested arrays and objects are skipped without
//! recursion. String bodies are searched 8 bytes at a time. The plugin path
//! spends most of its time here (figures in docs/BENCHMARKS.md).

use std::borrow::Cow;

/// A scanned value, before conversion.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Raw<'a> {
    /// A string without escapes: its bytes, not yet checked as UTF-8.
    Text(&'a [u8]),
    /// A string with escapes, decoded.
    Decoded(Box<str>),
    /// A number's text, grammar checked.
    Number(&'a [u8]),
    Bool(bool),
    Null,
    Array,
    Object,
}

/// Calls `field` for each top-level `"key": value` of a JSON object.
pub(crate) fn object<'a>(
    input: &'a [u8],
    mut field: impl FnMut(Cow<'a, [u8]>, Raw<'a>),
) -> Result<(), String> {
    let mut s = Scanner { b: input, i: 0 };
    s.ws();
    if s.peek() != Some(b'{') {
        return Err(s.error("expected a JSON object"));
    }
    s.i += 1;
    s.ws();
    if s.peek() == Some(b'}') {
        s.i += 1;
    } else {
        loop {
            if s.peek() != Some(b'"') {
                return Err(s.error("expected a string key"));
            }
            let key = s.key()?;
            s.ws();
            if s.peek() != Some(b':') {
                return Err(s.error("expected ':'"));
            }
            s.i += 1;
            s.ws();
            let value = s.value()?;
            field(key, value);
            s.ws();
            match s.peek() {
                Some(b',') => {
                    s.i += 1;
                    s.ws();
                }
                Some(b'}') => {
                    s.i += 1;
                    break;
                }
                _ => return Err(s.error("expected ',' or '}'")),
            }
        }
    }
    s.ws();
    if s.i != s.b.len() {
        return Err(s.error("trailing characters"));
    }
    Ok(())
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

/// Index of the first `"`, `\\` or control character at or after `j`, or
/// the input's length. Eight bytes at a time (SWAR): a flagged lane is exact
/// for the lowest match, which is the one taken.
fn special(b: &[u8], mut j: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = b.get(j..j + 8) {
        let x = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let quote = x ^ (LO * u64::from(b'"'));
        let backslash = x ^ (LO * u64::from(b'\\'));
        let hits = (quote.wrapping_sub(LO) & !quote)
            | (backslash.wrapping_sub(LO) & !backslash)
            | (x.wrapping_sub(LO * 0x20) & !x);
        let hits = hits & HI;
        if hits != 0 {
            return j + (hits.trailing_zeros() / 8) as usize;
        }
        j += 8;
    }
    while j < b.len() && !matches!(b[j], b'"' | b'\\' | 0..=0x1f) {
        j += 1;
    }
    j
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn error(&self, what: &str) -> String {
        if self.i >= self.b.len() {
            format!("{what}, found the end of the input")
        } else {
            format!("{what} at byte {}", self.i)
        }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    /// A string starting at the opening quote.
    fn string(&mut self) -> Result<Raw<'a>, String> {
        let start = self.i;
        let j = special(self.b, start + 1);
        match self.b.get(j) {
            Some(b'"') => {
                self.i = j + 1;
                Ok(Raw::Text(&self.b[start + 1..j]))
            }
            Some(b'\\') => self.escaped_string(start),
            Some(_) => {
                self.i = j;
                Err(self.error("control character in a string"))
            }
            None => {
                self.i = j;
                Err(self.error("unterminated string"))
            }
        }
    }

    /// A key: borrowed bytes, or decoded when escaped.
    fn key(&mut self) -> Result<Cow<'a, [u8]>, String> {
        match self.string()? {
            Raw::Text(t) => Ok(Cow::Borrowed(t)),
            Raw::Decoded(s) => Ok(Cow::Owned(s.into_string().into_bytes())),
            _ => Err(self.error("expected a string key")),
        }
    }

    fn escaped_string(&mut self, start: usize) -> Result<Raw<'a>, String> {
        let mut j = start + 1;
        while let Some(&c) = self.b.get(j) {
            match c {
                b'\\' => j += 2,
                b'"' => {
                    self.i = j + 1;
                    return serde_json::from_slice::<String>(&self.b[start..=j])
                        .map(|s| Raw::Decoded(s.into_boxed_str()))
                        .map_err(|e| format!("invalid string at byte {start}: {e}"));
                }
                _ => j += 1,
            }
        }
        self.i = self.b.len();
        Err(self.error("unterminated string"))
    }

    fn value(&mut self) -> Result<Raw<'a>, String> {
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'{') => self.skip_nested().map(|()| Raw::Object),
            Some(b'[') => self.skip_nested().map(|()| Raw::Array),
            Some(b't') => self.literal("true", Raw::Bool(true)),
            Some(b'f') => self.literal("false", Raw::Bool(false)),
            Some(b'n') => self.literal("null", Raw::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.error("expected a value")),
        }
    }

    fn literal(&mut self, word: &str, value: Raw<'a>) -> Result<Raw<'a>, String> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(value)
        } else {
            Err(self.error("expected a value"))
        }
    }

    /// A JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
    fn number(&mut self) -> Result<Raw<'a>, String> {
        let start = self.i;
        let digits = |s: &mut Self| {
            let from = s.i;
            while let Some(b'0'..=b'9') = s.peek() {
                s.i += 1;
            }
            s.i - from
        };
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let int_start = self.i;
        let n = digits(self);
        if n == 0 || (n > 1 && self.b[int_start] == b'0') {
            return Err(self.error("invalid number"));
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return Err(self.error("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if digits(self) == 0 {
                return Err(self.error("invalid number"));
            }
        }
        Ok(Raw::Number(&self.b[start..self.i]))
    }

    /// Skips a nested array or object (balanced brackets, strings aware),
    /// without recursion.
    fn skip_nested(&mut self) -> Result<(), String> {
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        self.i += 1;
                        return Ok(());
                    }
                }
                _ => {}
            }
            self.i += 1;
        }
        Err(self.error("unterminated array or object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;

    fn scan(json: &str) -> Result<Vec<(String, String)>, String> {
        let event = crate::Event::parse(json.as_bytes()).map_err(|e| e.0)?;
        Ok(event
            .iter()
            .map(|(k, v)| (k.into_owned(), format!("{v:?}")))
            .collect())
    }

    /// Agrees with serde_json on what is a valid flat object and on its values.
    #[test]
    fn agrees_with_serde_json() {
        let cases = [
            r#"{}"#,
            r#" { "a" : 1 , "b":"x" } "#,
            r#"{"a":-0,"b":1.5,"c":-2e-3,"d":1E+2,"e":18446744073709551615,"f":-9223372036854775808}"#,
            r#"{"s":"caf\u00e9 \"q\" \\ \n","t":"plain é"}"#,
            r#"{"n":null,"t":true,"f":false,"arr":[1,[2,{"x":"]"}]],"o":{"k":[]}}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":+1}"#,
            r#"{"a":1e}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            r#"{"a":"x}"#,
            r#"{"a" 1}"#,
            r#"{"a":1,}"#,
            r#"{"a":1} x"#,
            r#"{a:1}"#,
            r#"[1]"#,
            r#""str""#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":"\x"}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":[1,2}"#,
            "",
            "   ",
        ];
        for case in cases {
            let ours = scan(case);
            let theirs = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(case);
            assert_eq!(
                ours.is_ok(),
                theirs.is_ok(),
                "{case}: ours {ours:?}, serde_json {theirs:?}"
            );
            if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
                assert_eq!(ours.len(), theirs.len(), "{case}");
                let event = crate::Event::parse(case.as_bytes()).unwrap();
                for (k, _) in &ours {
                    let tv = &theirs[k];
                    let v = event.get(k).unwrap();
                    let same = match (v, tv) {
                        (Value::Null, serde_json::Value::Null) => true,
                        (Value::Bool(a), serde_json::Value::Bool(b)) => a == *b,
                        (Value::Int(a), serde_json::Value::Number(b)) => {
                            Some(a) == b.as_i64() || Some(a as f64) == b.as_f64()
                        }
                        (Value::UInt(a), serde_json::Value::Number(b)) => Some(a) == b.as_u64(),
                        (Value::Float(a), serde_json::Value::Number(b)) => Some(a) == b.as_f64(),
                        (Value::Str(a), serde_json::Value::String(b)) => a == b,
                        (Value::Array, serde_json::Value::Array(_)) => true,
                        (Value::Object, serde_json::Value::Object(_)) => true,
                        _ => false,
                    };
                    assert!(same, "{case}: {k}: {v:?} vs {tv:?}");
                }
            }
        }
    }

    #[test]
    fn borrows_plain_strings() {
        let json = r#"{"color":"red","n":12}"#;
        let mut seen = Vec::new();
        object(json.as_bytes(), |k, v| seen.push((k, v))).unwrap();
        assert_eq!(
            seen,
            vec![
                (Cow::Borrowed(&b"color"[..]), Raw::Text(b"red")),
                (Cow::Borrowed(&b"n"[..]), Raw::Number(b"12")),
            ]
        );
    }

    #[test]
    fn finds_specials_in_every_lane() {
        for len in 0..40 {
            for at in 0..len {
                for special_byte in [b'"', b'\\', b'\n', 0x1f] {
                    let mut b = vec![b'a'; len];
                    b[at] = special_byte;
                    if at + 1 < len {
                        b[at + 1] = b'"'; // a later match must not win
                    }
                    assert_eq!(special(&b, 0), at, "len {len} at {at} byte {special_byte}");
                }
            }
            assert_eq!(
                special(&vec![0xe9u8; len], 0),
                len,
                "bytes >= 0x80 are plain"
            );
        }
    }

    #[test]
    fn errors_say_where() {
        assert_eq!(
            scan(r#"{"a":1 "b":2}"#).unwrap_err(),
            "malformed event: expected ',' or '}' at byte 7"
        );
        assert_eq!(
            scan(r#"{"a":"#).unwrap_err(),
            "malformed event: expected a value, found the end of the input"
        );
        assert_eq!(scan("{\"a\":\"\u{7f}é\"}").map(|_| ()), Ok(()));
        // Bytes that are not UTF-8 are found when the field is read.
        let event = crate::Event::parse(b"{\"a\":\"\xff\",\"b\":1}").unwrap();
        assert_eq!(event.get("a"), Some(Value::InvalidText));
        assert_eq!(event.get("b"), Some(Value::Int(1)));
    }
}
