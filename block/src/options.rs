//! Reading block options the way `-drive`, `-blockdev` and `blockdev-add` give them:
//! nested JSON objects or dotted keys (`file.filename`), booleans as JSON or as
//! "on"/"off" strings, sizes as numbers or strings with a k/M/G/T suffix.

use serde_json::{Map, Value};

use crate::error::{BlockError, BlockResult};

/// Option map of one node.
pub type Options = Map<String, Value>;

/// Turns dotted keys into nested objects (`cache.direct` -> `cache: {direct}`);
/// keys already nested are kept.
pub fn nest(opts: &Options) -> BlockResult<Options> {
    let mut out = Options::new();
    for (k, v) in opts {
        let v = match v {
            Value::Object(inner) => Value::Object(nest(inner)?),
            other => other.clone(),
        };
        insert_path(&mut out, k, v)?;
    }
    Ok(out)
}

fn insert_path(map: &mut Options, key: &str, v: Value) -> BlockResult<()> {
    match key.split_once('.') {
        None => {
            match (map.get_mut(key), v) {
                (Some(Value::Object(existing)), Value::Object(new)) => {
                    for (k2, v2) in new {
                        insert_path(existing, &k2, v2)?;
                    }
                }
                (_, v) => {
                    map.insert(key.to_string(), v);
                }
            }
            Ok(())
        }
        Some((head, rest)) => {
            let entry = map
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Options::new()));
            match entry {
                Value::Object(inner) => insert_path(inner, rest, v),
                _ => Err(BlockError::InvalidArgument(format!(
                    "Cannot use '{}' both as a value and as an object",
                    head
                ))),
            }
        }
    }
}

/// A boolean option: JSON bool or on/off/true/false/yes/no.
pub fn get_bool(opts: &Options, key: &str) -> BlockResult<Option<bool>> {
    match opts.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) => match s.as_str() {
            "on" | "true" | "yes" => Ok(Some(true)),
            "off" | "false" | "no" => Ok(Some(false)),
            _ => Err(BlockError::InvalidArgument(format!(
                "Parameter '{}' expects 'on' or 'off'",
                key
            ))),
        },
        Some(_) => Err(BlockError::InvalidArgument(format!(
            "Invalid parameter type for '{}', expected: boolean",
            key
        ))),
    }
}

/// A string option.
pub fn get_str<'a>(opts: &'a Options, key: &str) -> BlockResult<Option<&'a str>> {
    match opts.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(BlockError::InvalidArgument(format!(
            "Invalid parameter type for '{}', expected: string",
            key
        ))),
    }
}

/// A size option: a JSON number or a string like "64k", "1G".
pub fn get_size(opts: &Options, key: &str) -> BlockResult<Option<u64>> {
    match opts.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
            BlockError::InvalidArgument(format!(
                "Parameter '{}' expects a non-negative number below 2^64",
                key
            ))
        }),
        Some(Value::String(s)) => parse_size(s).map(Some).ok_or_else(|| {
            BlockError::InvalidArgument(format!(
                "Parameter '{}' expects a non-negative number below 2^64",
                key
            ))
        }),
        Some(_) => Err(BlockError::InvalidArgument(format!(
            "Invalid parameter type for '{}', expected: integer",
            key
        ))),
    }
}

/// Parses "512", "64k", "1M", "2G", "1T" (binary multiples, as QEMU).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_lowercase() {
                'b' => 1,
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                't' => 1 << 40,
                'p' => 1 << 50,
                'e' => 1 << 60,
                _ => return None,
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    if num.contains('.') {
        let f: f64 = num.parse().ok()?;
        if !(0.0..1.8e19).contains(&f) {
            return None;
        }
        let v = f * mult as f64;
        if v >= 1.8e19 {
            return None;
        }
        return Some(v as u64);
    }
    num.parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_keys_become_nested_objects() {
        let o = json!({"file.driver": "file", "file.filename": "/x", "cache": {"direct": true}, "cache.no-flush": "on"});
        let n = nest(o.as_object().unwrap()).unwrap();
        assert_eq!(
            Value::Object(n),
            json!({"file": {"driver": "file", "filename": "/x"}, "cache": {"direct": true, "no-flush": "on"}})
        );
    }

    #[test]
    fn sizes_accept_suffixes() {
        assert_eq!(parse_size("64k"), Some(65536));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("1.5M"), Some(3 << 19));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn bool_strings_parse() {
        let o = json!({"a": "on", "b": false, "c": "maybe"});
        let o = o.as_object().unwrap();
        assert_eq!(get_bool(o, "a").unwrap(), Some(true));
        assert_eq!(get_bool(o, "b").unwrap(), Some(false));
        assert!(get_bool(o, "c").is_err());
    }
}
