//! Prints values exactly as QEMU 2.8's `qobject_to_json` (compact) and
//! `qobject_to_json_pretty` do.
//!
//! - Compact: members and elements separated by `", "`, keys by `": "`, empty
//!   containers `{}` / `[]`.
//! - Pretty: every member or element on its own line, indented four spaces per
//!   level, separated by `","` at line end; the closing bracket on its own line
//!   at the container's indentation, even for an empty container (`{\n}`).
//! - Object members in QDict order (see `qdict_order`).
//! - Strings: `\" \\ \b \f \n \r \t` escaped by name; every other character
//!   below U+0020 or from U+007F up as `\uXXXX` with upper-case hex, beyond the
//!   BMP as a surrogate pair; Unicode noncharacters (U+FDD0..U+FDEF and
//!   U+xxFFFE/U+xxFFFF) as `\uFFFD`, since QEMU's UTF-8 decoder rejects them.
//!   `/` is not escaped.
//! - Integers in decimal; a u64 above i64::MAX prints as its two's-complement
//!   i64, because QEMU stores every integer in an int64.
//! - Floats as C's `%f` (six decimals, exactly rounded) with trailing zeros and
//!   then a trailing `.` removed: 1.5 -> `1.5`, 2.0 -> `2`, 1e-7 -> `0`.
//!
//! The writer uses an explicit stack, not recursion.

use super::qdict_order::qdict_order_keys;
use serde_json::{Map, Number, Value};
use std::fmt::Write;

/// The text QEMU would print for `v`.
pub fn to_json_string(v: &Value, pretty: bool) -> String {
    let mut out = String::new();
    write_json(&mut out, v, pretty);
    out
}

/// Appends the text QEMU would print for `v` to `out`.
pub fn write_json(out: &mut String, v: &Value, pretty: bool) {
    let mut stack: Vec<Open<'_>> = Vec::new();
    let mut next = Some(v);
    loop {
        if let Some(v) = next.take() {
            match v {
                Value::Array(items) => {
                    out.push('[');
                    stack.push(Open::Array(items.iter(), true));
                }
                Value::Object(map) => {
                    out.push('{');
                    stack.push(Open::Object(map, qdict_order_keys(map).into_iter(), true));
                }
                scalar => write_scalar(out, scalar),
            }
        }
        let depth = stack.len();
        let Some(top) = stack.last_mut() else {
            return;
        };
        let (member, first) = match top {
            Open::Array(items, first) => (items.next().map(|v| (None, v)), first),
            Open::Object(map, keys, first) => (
                keys.next().and_then(|k| map.get(k).map(|v| (Some(k), v))),
                first,
            ),
        };
        match member {
            Some((key, value)) => {
                if !*first {
                    out.push_str(if pretty { "," } else { ", " });
                }
                *first = false;
                if pretty {
                    newline(out, depth);
                }
                if let Some(key) = key {
                    write_string(out, key);
                    out.push_str(": ");
                }
                next = Some(value);
            }
            None => {
                let close = match top {
                    Open::Array(..) => ']',
                    Open::Object(..) => '}',
                };
                stack.pop();
                if pretty {
                    newline(out, depth - 1);
                }
                out.push(close);
            }
        }
    }
}

/// A container being printed: what is left of it, and whether nothing of it
/// has been printed yet.
enum Open<'a> {
    Array(std::slice::Iter<'a, Value>, bool),
    Object(&'a Map<String, Value>, std::vec::IntoIter<&'a String>, bool),
}

fn newline(out: &mut String, level: usize) {
    out.push('\n');
    for _ in 0..level {
        out.push_str("    ");
    }
}

fn write_scalar(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        // Containers never reach here; print nothing rather than panic.
        Value::Array(_) | Value::Object(_) => {}
    }
}

fn write_number(out: &mut String, n: &Number) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{}", u as i64);
    } else if let Some(f) = n.as_f64() {
        write_float(out, f);
    }
}

fn write_float(out: &mut String, f: f64) {
    let start = out.len();
    let _ = write!(out, "{f:.6}");
    let kept = out[start..].trim_end_matches('0').len();
    out.truncate(start + kept);
    if out.ends_with('.') {
        out.pop();
    }
}

fn is_noncharacter(cp: u32) -> bool {
    (0xFDD0..=0xFDEF).contains(&cp) || cp & 0xFFFE == 0xFFFE
}

fn push_u_escape(out: &mut String, unit: u32) {
    let _ = write!(out, "\\u{unit:04X}");
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let run = bytes[i..]
            .iter()
            .take_while(|&&b| (0x20..0x7F).contains(&b) && b != b'"' && b != b'\\')
            .count();
        if run > 0 {
            out.push_str(&s[i..i + run]);
            i += run;
            continue;
        }
        let Some(c) = s[i..].chars().next() else {
            break;
        };
        i += c.len_utf8();
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            _ => {
                let cp = u32::from(c);
                if is_noncharacter(cp) {
                    push_u_escape(out, 0xFFFD);
                } else if cp > 0xFFFF {
                    push_u_escape(out, 0xD800 + ((cp - 0x10000) >> 10));
                    push_u_escape(out, 0xDC00 + ((cp - 0x10000) & 0x3FF));
                } else {
                    push_u_escape(out, cp);
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn greeting_matches_qemu() {
        let v = json!({"QMP": {"capabilities": [], "version": {"package": "", "qemu": {"major": 2, "minor": 7, "micro": 50}}}});
        assert_eq!(
            to_json_string(&v, false),
            r#"{"QMP": {"version": {"qemu": {"micro": 50, "minor": 7, "major": 2}, "package": ""}, "capabilities": []}}"#
        );
    }

    #[test]
    fn event_matches_qemu() {
        let v = json!({"event": "STOP", "timestamp": {"microseconds": 2, "seconds": 1}});
        assert_eq!(
            to_json_string(&v, false),
            r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}"#
        );
    }

    #[test]
    fn empty_return_compact_and_pretty() {
        let v = json!({"return": {}});
        assert_eq!(to_json_string(&v, false), r#"{"return": {}}"#);
        assert_eq!(to_json_string(&v, true), "{\n    \"return\": {\n    }\n}");
        assert_eq!(to_json_string(&json!([]), true), "[\n]");
    }

    #[test]
    fn pretty_list_layout() {
        let v = json!({"return": [1, {"a": "b"}]});
        assert_eq!(
            to_json_string(&v, true),
            "{\n    \"return\": [\n        1,\n        {\n            \"a\": \"b\"\n        }\n    ]\n}"
        );
    }

    #[test]
    fn string_escapes_like_qemu() {
        let v = json!("q\"b\\s/\u{8}\u{c}\n\r\t\u{1}\u{7f}é€😀\u{fdd0}\u{ffff}\u{1fffe}\0x");
        assert_eq!(
            to_json_string(&v, false),
            r#""q\"b\\s/\b\f\n\r\t\u0001\u007F\u00E9\u20AC\uD83D\uDE00\uFFFD\uFFFD\uFFFD\u0000x""#
        );
    }

    #[test]
    fn keys_are_escaped_too() {
        assert_eq!(to_json_string(&json!({"é": 1}), false), r#"{"\u00E9": 1}"#);
    }

    #[test]
    fn floats_print_as_percent_f_trimmed() {
        let cases = [
            (1.5, "1.5"),
            (2.0, "2"),
            (0.0, "0"),
            (-0.0, "-0"),
            (1e-7, "0"),
            (-1e-7, "-0"),
            (0.0078125, "0.007812"),
            (123456.789, "123456.789"),
            (1e20, "100000000000000000000"),
            (0.1, "0.1"),
            (1.0000005, "1.000001"),
        ];
        for (f, text) in cases {
            assert_eq!(to_json_string(&json!(f), false), text, "{f}");
        }
    }

    #[test]
    fn integers_print_as_int64() {
        assert_eq!(
            to_json_string(&json!(i64::MIN), false),
            "-9223372036854775808"
        );
        assert_eq!(to_json_string(&json!(u64::MAX), false), "-1");
        assert_eq!(
            to_json_string(&json!(1u64 << 63), false),
            "-9223372036854775808"
        );
    }

    #[test]
    fn scalars() {
        assert_eq!(to_json_string(&json!(null), false), "null");
        assert_eq!(
            to_json_string(&json!([true, false]), false),
            "[true, false]"
        );
        assert_eq!(to_json_string(&json!("x"), true), "\"x\"");
    }

    #[test]
    fn deep_value_prints_without_recursion() {
        let mut v = json!(1);
        for _ in 0..100_000 {
            v = Value::Array(vec![v]);
        }
        let s = to_json_string(&v, false);
        assert_eq!(s.len(), 200_001);
        // Take it apart iteratively; dropping it whole would recurse.
        while let Value::Array(mut a) = v {
            v = a.pop().unwrap_or(Value::Null);
        }
    }
}
