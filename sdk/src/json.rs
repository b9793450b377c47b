//! JSON text helpers shared by the SDK and the host (the host depends on
//! the SDK, never the reverse).

use std::fmt::Write;

/// Appends `s` as a JSON string, escaping in place (no temporary string).
pub fn push_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_like_json() {
        for s in ["plain", "q\"b\\s", "ctl\u{1}\n\r\t", "é😀", ""] {
            let mut out = String::new();
            super::push_str(&mut out, s);
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s, "{out}");
        }
        let mut out = String::new();
        super::push_str(&mut out, "\u{1}é");
        assert_eq!(out, "\"\\u0001é\"");
    }
}
