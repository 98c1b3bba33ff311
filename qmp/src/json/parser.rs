//! Builds a `serde_json::Value` from one message's tokens.
//!
//! The parser is iterative (an explicit stack of open containers), so its stack
//! use does not depend on nesting depth. Error texts follow QEMU 2.8: each
//! enclosing container replaces the inner reason with its own ("expecting
//! value" for an array element, "key is not a string in object" for a key,
//! "Missing value in dict" for a member value), so the reported reason is the
//! outermost one.
//!
//! Value conversions, as QEMU does them:
//! - an integer token that does not fit in i64 becomes a float;
//! - `-0` is the integer 0;
//! - `\u0000` is dropped (QEMU's strings are NUL-terminated);
//! - raw bytes that are not valid UTF-8 become U+FFFD (QEMU keeps such bytes
//!   and prints them back as `\uFFFD`);
//! - deliberate difference: a `\uD8xx\uDCxx` surrogate pair combines into one
//!   character (QEMU 2.8 stores each half as an invalid 3-byte sequence and
//!   later prints `\uFFFD\uFFFD`; later QEMU versions combine too); a lone
//!   surrogate becomes U+FFFD;
//! - a float too large for f64 (QEMU would keep infinity, which JSON and
//!   `serde_json` cannot hold) is rejected as a parse error.

use super::lexer::TokKind;
use super::streamer::Token;
use super::{JsonError, INVALID_JSON_SYNTAX};
use serde_json::{Map, Number, Value};

/// QEMU formats its parser messages into a 1024-byte buffer.
const MAX_REASON_LEN: usize = 1023;

enum Frame {
    Array(Vec<Value>),
    /// An object; `key` is set while its member value is being read.
    Object {
        map: Map<String, Value>,
        key: Option<String>,
    },
}

impl Frame {
    /// The reason QEMU gives when a child of this container fails to parse.
    fn child_failure_reason(&self) -> &'static str {
        match self {
            Frame::Array(_) => "expecting value",
            Frame::Object { key: None, .. } => "key is not a string in object",
            Frame::Object { key: Some(_), .. } => "Missing value in dict",
        }
    }
}

/// How a parse failed: while reading a value (`Value`, reason optional as in
/// QEMU where `%d` fails silently), or in the syntax of the innermost open
/// container itself (`Container`; that container is no longer on the stack).
enum Failure {
    Value(Option<String>),
    Container(&'static str),
}

struct Parser<'a> {
    tokens: &'a [Token],
    arena: &'a [u8],
    pos: usize,
    frames: Vec<Frame>,
}

pub(crate) fn parse(tokens: &[Token], arena: &[u8]) -> Result<Value, JsonError> {
    let mut p = Parser {
        tokens,
        arena,
        pos: 0,
        frames: Vec::new(),
    };
    match p.run() {
        Ok(v) => Ok(v),
        Err(failure) => Err(p.error(failure)),
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<TokKind> {
        self.tokens.get(self.pos).map(|t| t.kind)
    }

    fn run(&mut self) -> Result<Value, Failure> {
        loop {
            let mut value = match self.read_value()? {
                Some(v) => v,
                // A container was opened; read its first child.
                None => continue,
            };
            // Hand the finished value to the open containers, closing every
            // container that ends right after it. The receiving container is
            // taken off the stack and put back unless it is complete, so a
            // `Container` failure leaves the stack without the failing frame.
            loop {
                let Some(frame) = self.frames.pop() else {
                    return Ok(value);
                };
                let next = self.peek();
                match frame {
                    Frame::Array(mut items) => {
                        items.push(value);
                        match next {
                            Some(TokKind::Comma) => {
                                self.pos += 1;
                                self.frames.push(Frame::Array(items));
                                break;
                            }
                            Some(TokKind::RSquare) => {
                                self.pos += 1;
                                value = Value::Array(items);
                            }
                            _ => return Err(Failure::Container("expected separator in list")),
                        }
                    }
                    Frame::Object { map, key: None } => {
                        let Value::String(k) = value else {
                            return Err(Failure::Container("key is not a string in object"));
                        };
                        if next != Some(TokKind::Colon) {
                            return Err(Failure::Container("missing : in object pair"));
                        }
                        self.pos += 1;
                        self.frames.push(Frame::Object { map, key: Some(k) });
                        break;
                    }
                    Frame::Object {
                        mut map,
                        key: Some(k),
                    } => {
                        // A repeated key keeps its first position and takes the
                        // new value, as QDict does.
                        map.insert(k, value);
                        match next {
                            Some(TokKind::Comma) => {
                                self.pos += 1;
                                self.frames.push(Frame::Object { map, key: None });
                                break;
                            }
                            Some(TokKind::RCurly) => {
                                self.pos += 1;
                                value = Value::Object(map);
                            }
                            _ => return Err(Failure::Container("expected separator in dict")),
                        }
                    }
                }
            }
        }
    }

    /// Reads the value starting at the current token. Returns `None` after
    /// opening a non-empty container (its frame is pushed).
    fn read_value(&mut self) -> Result<Option<Value>, Failure> {
        let Some(tok) = self.tokens.get(self.pos).copied() else {
            return Err(Failure::Value(Some("premature EOI".to_string())));
        };
        self.pos += 1;
        let bytes = self
            .arena
            .get(tok.start as usize..tok.end as usize)
            .unwrap_or_default();
        let value = match tok.kind {
            TokKind::LCurly => {
                if self.peek() == Some(TokKind::RCurly) {
                    self.pos += 1;
                    Value::Object(Map::new())
                } else {
                    self.frames.push(Frame::Object {
                        map: Map::new(),
                        key: None,
                    });
                    return Ok(None);
                }
            }
            TokKind::LSquare => {
                if self.peek() == Some(TokKind::RSquare) {
                    self.pos += 1;
                    Value::Array(Vec::new())
                } else {
                    self.frames.push(Frame::Array(Vec::new()));
                    return Ok(None);
                }
            }
            TokKind::PlainString => Value::String(utf8_or_replace(bytes)),
            TokKind::EscapedString => Value::String(unescape(bytes)),
            TokKind::Integer => integer(bytes)?,
            TokKind::Float => float(bytes)?,
            TokKind::Keyword => match bytes {
                b"true" => Value::Bool(true),
                b"false" => Value::Bool(false),
                b"null" => Value::Null,
                _ => {
                    let reason = format!("invalid keyword '{}'", String::from_utf8_lossy(bytes));
                    return Err(Failure::Value(Some(reason)));
                }
            },
            TokKind::Interpolation => return Err(Failure::Value(None)),
            _ => return Err(Failure::Value(Some("expecting value".to_string()))),
        };
        Ok(Some(value))
    }

    fn error(&self, failure: Failure) -> JsonError {
        // Every container still open replaces the reason with its own, so
        // the outermost one decides.
        let reason = match (self.frames.first(), failure) {
            (Some(outer), _) => Some(outer.child_failure_reason().to_string()),
            (None, Failure::Value(reason)) => reason,
            (None, Failure::Container(reason)) => Some(reason.to_string()),
        };
        match reason {
            None => JsonError {
                message: INVALID_JSON_SYNTAX.to_string(),
            },
            Some(mut reason) => {
                if reason.len() > MAX_REASON_LEN {
                    let mut cut = MAX_REASON_LEN;
                    while !reason.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    reason.truncate(cut);
                }
                JsonError {
                    message: format!("JSON parse error, {reason}"),
                }
            }
        }
    }
}

fn integer(digits: &[u8]) -> Result<Value, Failure> {
    let text = std::str::from_utf8(digits).unwrap_or("");
    match text.parse::<i64>() {
        Ok(n) => Ok(Value::Number(n.into())),
        // The lexer only lets digits through, so the only failure is overflow.
        Err(_) => float(digits),
    }
}

fn float(text: &[u8]) -> Result<Value, Failure> {
    let text = std::str::from_utf8(text).unwrap_or("");
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| Failure::Value(Some("number out of range".to_string())))
}

fn utf8_or_replace(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn hex4(bytes: &[u8]) -> Option<u32> {
    let digits = bytes.get(..4)?;
    let mut v = 0;
    for &d in digits {
        v = v << 4 | char::from(d).to_digit(16)?;
    }
    Some(v)
}

/// Decodes a string body the lexer has already checked (every backslash starts
/// a valid escape).
fn unescape(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'\\' {
            let run = bytes[i..].iter().take_while(|&&c| c != b'\\').count();
            out.extend_from_slice(&bytes[i..i + run]);
            i += run;
            continue;
        }
        let Some(&e) = bytes.get(i + 1) else {
            break;
        };
        i += 2;
        let simple = match e {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let Some(unit) = hex4(&bytes[i..]) else {
                    break;
                };
                i += 4;
                let c = if (0xD800..0xDC00).contains(&unit) {
                    let low = match bytes.get(i..i + 2) {
                        Some(b"\\u") => {
                            hex4(&bytes[i + 2..]).filter(|l| (0xDC00..0xE000).contains(l))
                        }
                        _ => None,
                    };
                    match low {
                        Some(low) => {
                            i += 6;
                            char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                        }
                        None => None,
                    }
                } else {
                    char::from_u32(unit)
                };
                match c {
                    // QEMU's strings end at NUL, so it silently loses \u0000.
                    Some('\0') => {}
                    Some(c) => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    None => out.extend_from_slice(
                        char::REPLACEMENT_CHARACTER
                            .encode_utf8(&mut [0; 4])
                            .as_bytes(),
                    ),
                }
                continue;
            }
            other => other,
        };
        out.push(simple);
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::JsonStreamer;
    use serde_json::{json, Value};

    fn parse1(input: &str) -> Result<Value, String> {
        let mut s = JsonStreamer::new();
        let mut out = Vec::new();
        s.feed(input.as_bytes(), &mut out);
        s.feed(b" ", &mut out);
        assert_eq!(out.len(), 1, "input {input:?} gave {out:?}");
        out.remove(0).map_err(|e| e.message)
    }

    fn err(reason: &str) -> Result<Value, String> {
        Err(format!("JSON parse error, {reason}"))
    }

    #[test]
    fn nested_values() {
        assert_eq!(
            parse1(r#"{"a": [1, {"b": [[], {}]}, -2], "c": {"d": null}}"#),
            Ok(json!({"a": [1, {"b": [[], {}]}, -2], "c": {"d": null}}))
        );
    }

    #[test]
    fn single_quoted_strings_and_escapes() {
        assert_eq!(parse1(r"'it\'s'"), Ok(json!("it's")));
        assert_eq!(parse1(r#"'say "hi"'"#), Ok(json!("say \"hi\"")));
        assert_eq!(
            parse1(r#""\"\\\/\b\f\n\r\t\'""#),
            Ok(json!("\"\\/\u{8}\u{c}\n\r\t'"))
        );
    }

    #[test]
    fn unicode_escapes_and_raw_utf8() {
        assert_eq!(parse1(r#""\u00e9\u20AC""#), Ok(json!("é€")));
        assert_eq!(parse1("\"é€😀\""), Ok(json!("é€😀")));
        assert_eq!(parse1(r#""\ud83d\ude00""#), Ok(json!("😀")));
        assert_eq!(parse1(r#""a\ud83db""#), Ok(json!("a\u{fffd}b")));
        assert_eq!(parse1(r#""\ude00""#), Ok(json!("\u{fffd}")));
        assert_eq!(parse1(r#""a\u0000b""#), Ok(json!("ab")));
    }

    #[test]
    fn invalid_utf8_bytes_become_replacement_characters() {
        let mut s = JsonStreamer::new();
        let mut out = Vec::new();
        s.feed(b"\"a\x80b\xe9\"", &mut out);
        assert_eq!(
            out[0].clone().map_err(|e| e.message),
            Ok(json!("a\u{fffd}b\u{fffd}"))
        );
    }

    #[test]
    fn raw_control_characters_are_accepted_in_strings() {
        assert_eq!(parse1("\"a\tb\u{1}\""), Ok(json!("a\tb\u{1}")));
    }

    #[test]
    fn integers_and_floats() {
        assert_eq!(parse1("9223372036854775807"), Ok(json!(i64::MAX)));
        assert_eq!(parse1("-9223372036854775808"), Ok(json!(i64::MIN)));
        assert_eq!(parse1("-0"), Ok(json!(0)));
        assert_eq!(parse1("1e3"), Ok(json!(1000.0)));
        assert_eq!(parse1("-1.5E-2"), Ok(json!(-0.015)));
    }

    #[test]
    fn integers_overflowing_i64_become_floats() {
        let v = parse1("9223372036854775808").unwrap_or_default();
        assert!(v.is_f64());
        assert_eq!(v.as_f64(), Some(9223372036854775808.0));
        let v = parse1("18446744073709551616").unwrap_or_default();
        assert_eq!(v.as_f64(), Some(18446744073709551616.0));
        assert!(parse1("-99999999999999999999").unwrap_or_default().is_f64());
    }

    #[test]
    fn infinite_floats_are_rejected() {
        assert_eq!(parse1("1e999"), err("number out of range"));
        assert_eq!(parse1(r#"{"a": 1e999}"#), err("Missing value in dict"));
    }

    #[test]
    fn duplicate_keys_keep_first_position_and_last_value() {
        let v = parse1(r#"{"a": 1, "b": 2, "a": 3}"#).unwrap_or_default();
        let keys: Vec<&String> = v
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(v["a"], json!(3));
    }

    #[test]
    fn error_reasons_at_top_level_container() {
        assert_eq!(parse1(r#"{"a"}"#), err("missing : in object pair"));
        assert_eq!(parse1(r#"{"a": }"#), err("Missing value in dict"));
        assert_eq!(parse1(r#"{1: 2}"#), err("key is not a string in object"));
        assert_eq!(
            parse1(r#"{"a": 1 "b": 2}"#),
            err("expected separator in dict")
        );
        assert_eq!(parse1(r#"{"a": 1,}"#), err("key is not a string in object"));
        assert_eq!(parse1("[1 2]"), err("expected separator in list"));
        assert_eq!(parse1("[1,]"), err("expecting value"));
        assert_eq!(parse1("[,]"), err("expecting value"));
        assert_eq!(parse1("{,}"), err("key is not a string in object"));
    }

    #[test]
    fn error_reasons_take_the_outermost_container() {
        assert_eq!(parse1(r#"{"a": [1 2]}"#), err("Missing value in dict"));
        assert_eq!(parse1(r#"[{"a" 1}]"#), err("expecting value"));
        assert_eq!(parse1(r#"{"a": {"b": nul}}"#), err("Missing value in dict"));
    }

    #[test]
    fn keywords() {
        assert_eq!(parse1("nul"), err("invalid keyword 'nul'"));
        assert_eq!(parse1("[nul]"), err("expecting value"));
        assert_eq!(
            parse1("[true, false, null]"),
            Ok(json!([true, false, null]))
        );
    }

    #[test]
    fn long_invalid_keyword_reason_is_truncated_like_qemu() {
        let kw = "x".repeat(5000);
        let message = parse1(&kw).err().unwrap_or_default();
        assert_eq!(message.len(), "JSON parse error, ".len() + 1023);
    }

    #[test]
    fn deepest_allowed_nesting_parses_without_recursion() {
        let depth = 1024;
        let input = "[".repeat(depth) + &"]".repeat(depth);
        let mut v = parse1(&input).unwrap_or_default();
        let mut seen = 0;
        while let Value::Array(mut a) = v {
            seen += 1;
            v = a.pop().unwrap_or(Value::Null);
        }
        assert_eq!(seen, depth);
    }
}
