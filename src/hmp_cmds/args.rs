//! Parsing an HMP command line against QEMU's `args_type` mini-language:
//! `name:T` items where T is `s` (word or quoted string), `F` (file name),
//! `B` (block device), `S` (rest of line), `i`/`l` (integers), `M` (MiB),
//! `o` (size with suffix), `b` (on/off), `-x` (flag), a trailing `?` for
//! optional items.

use serde_json::{Map, Value};

/// Reads a word or a quoted string with QEMU's escapes.
pub fn get_str(p: &mut &str) -> Result<String, String> {
    let s = p.trim_start();
    if s.is_empty() {
        *p = s;
        return Err(String::new());
    }
    let mut out = String::new();
    if let Some(rest) = s.strip_prefix('"') {
        let mut chars = rest.char_indices();
        loop {
            match chars.next() {
                None => return Err("unterminated string".into()),
                Some((i, '"')) => {
                    *p = &rest[i + 1..];
                    return Ok(out);
                }
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 'r')) => out.push('\r'),
                    Some((_, c @ ('\\' | '\'' | '"'))) => out.push(c),
                    Some((_, c)) => return Err(format!("unsupported escape code: '\\{c}'")),
                    None => return Err("unterminated string".into()),
                },
                Some((_, c)) => out.push(c),
            }
        }
    }
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    out.push_str(&s[..end]);
    *p = &s[end..];
    Ok(out)
}

/// HMP integer syntax: decimal, 0x hex, or octal with a leading 0, with a
/// leading `-` allowed.
/// Numbers are 64-bit unsigned as in QEMU's expression parser (strtoull),
/// so addresses above 2^63 (kernel virtual addresses) are accepted and
/// wrap to negative i64.
fn parse_int(tok: &str) -> Option<i64> {
    let (neg, t) = match tok.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, tok),
    };
    let v = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()?
    } else if t.len() > 1 && t.starts_with('0') {
        u64::from_str_radix(&t[1..], 8).ok()?
    } else {
        t.parse().ok()?
    } as i64;
    Some(if neg { v.wrapping_neg() } else { v })
}

struct Item<'a> {
    key: &'a str,
    ty: &'a str,
    optional: bool,
}

fn items(args_type: &str) -> Vec<Item<'_>> {
    args_type
        .split(',')
        .filter(|s| !s.is_empty())
        .filter_map(|it| {
            let (key, ty) = it.split_once(':')?;
            let optional = ty.ends_with('?');
            let ty = ty.trim_end_matches('?');
            Some(Item { key, ty, optional })
        })
        .collect()
}

/// Parses `line` (the text after the command name). Errors are the text
/// QEMU prints.
pub fn parse(cmd: &str, args_type: &str, line: &str) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    let mut p = line;
    for it in items(args_type) {
        let rest = p.trim_start();
        match it.ty {
            "s" | "F" | "B" => {
                if it.optional && rest.is_empty() {
                    continue;
                }
                match get_str(&mut p) {
                    Ok(s) => {
                        out.insert(it.key.into(), Value::String(s));
                    }
                    Err(e) if !e.is_empty() => return Err(e),
                    Err(_) => {
                        return Err(match it.ty {
                            "F" => format!("{cmd}: filename expected"),
                            "B" => format!("{cmd}: block device name expected"),
                            _ => format!("{cmd}: string expected"),
                        })
                    }
                }
            }
            "S" => {
                if rest.is_empty() {
                    if it.optional {
                        continue;
                    }
                    return Err(format!("{cmd}: string expected"));
                }
                out.insert(it.key.into(), Value::String(rest.to_string()));
                p = "";
            }
            "i" | "l" | "M" => {
                if it.optional && rest.is_empty() {
                    continue;
                }
                let mut q = p;
                let tok = get_str(&mut q).unwrap_or_default();
                let Some(mut v) = parse_int(&tok) else {
                    return Err(if tok.is_empty() {
                        "unexpected end of expression".to_string()
                    } else {
                        format!(
                            "invalid char '{}' in expression",
                            tok.chars().next().unwrap_or('?')
                        )
                    });
                };
                if it.ty == "i" && (v >> 32) != 0 && (v >> 32) != -1 {
                    return Err(format!("'{cmd}' has failed: integer is for 32-bit values"));
                }
                if it.ty == "M" {
                    if v < 0 {
                        return Err("enter a positive value".into());
                    }
                    v <<= 20;
                }
                out.insert(it.key.into(), Value::from(v));
                p = q;
            }
            "o" => {
                if it.optional && rest.is_empty() {
                    continue;
                }
                let mut q = p;
                let mut tok = get_str(&mut q).unwrap_or_default();
                // qemu_strtosz: a number without a suffix is in MiB here.
                if tok.ends_with(|c: char| c.is_ascii_digit()) {
                    tok.push('M');
                }
                match crate::vl::opts::parse_size(it.key, &tok) {
                    Ok(v) if !tok.is_empty() => {
                        out.insert(it.key.into(), Value::from(v));
                        p = q;
                    }
                    _ => return Err("invalid size".into()),
                }
            }
            "b" => {
                if it.optional && rest.is_empty() {
                    continue;
                }
                let mut q = p;
                let tok = get_str(&mut q).unwrap_or_default();
                let v = match tok.as_str() {
                    "on" => true,
                    "off" => false,
                    _ => return Err("Expected 'on' or 'off'".into()),
                };
                out.insert(it.key.into(), Value::Bool(v));
                p = q;
            }
            t if t.starts_with('-') => {
                let flag = &t[1..];
                let mut q = p.trim_start();
                let mut set = false;
                while let Some(after) = q.strip_prefix('-') {
                    let opt: String = after.chars().take_while(|c| !c.is_whitespace()).collect();
                    if opt == flag {
                        set = true;
                        q = after[opt.len()..].trim_start();
                        p = q;
                    } else {
                        break;
                    }
                }
                out.insert(it.key.into(), Value::Bool(set));
            }
            other => return Err(format!("{cmd}: unknown type '{other}'")),
        }
    }
    if !p.trim().is_empty() {
        let rest = p.trim_start();
        if let Some(opt) = rest.strip_prefix('-') {
            let c = opt.chars().next().unwrap_or(' ');
            return Err(format!("{cmd}: unsupported option -{c}"));
        }
        return Err(format!("{cmd}: extraneous characters at the end of line"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_strings_and_escapes() {
        let mut p = r#" "a b\"c" rest"#;
        assert_eq!(get_str(&mut p).unwrap(), "a b\"c");
        assert_eq!(get_str(&mut p).unwrap(), "rest");
        let mut p = "\"open";
        assert!(get_str(&mut p).is_err());
    }

    #[test]
    fn args_types() {
        let m = parse("x", "device:B,size:o", "drive0 1G").unwrap();
        assert_eq!(m["device"], "drive0");
        assert_eq!(m["size"], 1u64 << 30);
        // qemu_strtosz's default suffix here is MiB.
        let m = parse("x", "device:B,size:o", "drive0 2").unwrap();
        assert_eq!(m["size"], 2u64 << 20);
        let m = parse("x", "force:-f,device:B", "-f cd0").unwrap();
        assert_eq!(m["force"], true);
        assert_eq!(
            parse("x", "device:B", "").unwrap_err(),
            "x: block device name expected"
        );
        assert_eq!(
            parse("x", "", "junk").unwrap_err(),
            "x: extraneous characters at the end of line"
        );
        let m = parse("x", "n:i?", "").unwrap();
        assert!(m.get("n").is_none());
        assert!(parse("x", "n:i", "0x10").unwrap()["n"] == 16);
    }
}
