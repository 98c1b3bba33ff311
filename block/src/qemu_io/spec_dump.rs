//! Prints format-specific image information (QEMU's ImageInfoSpecific
//! `data`) as the reference's dump did: one "key: value" line per member,
//! dashes in keys shown as spaces, nested objects and lists indented by four
//! spaces a level, list items as "[i]:".
//!
//! Member order is not the JSON order: the reference walked its hash table,
//! bucket by bucket (512 buckets), newest entry first within a bucket. That
//! order is reproduced here from the same hash so the lines come out in the
//! same order for every key set, not just the known qcow2 one.

use serde_json::{Map, Value};

const BUCKETS: u32 = 512;

/// The reference dictionary's string hash.
fn key_hash(name: &str) -> u32 {
    let b = name.as_bytes();
    let mut value = 0x238F_13AFu32.wrapping_mul(b.len() as u32);
    for (i, &c) in b.iter().enumerate() {
        value = value.wrapping_add(u32::from(c) << ((i * 5) % 24));
    }
    1_103_515_243u32.wrapping_mul(value).wrapping_add(12345)
}

/// The members of `m` in the order the reference iterated them.
fn dict_order(m: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut v: Vec<(usize, &String, &Value)> = m
        .iter()
        .enumerate()
        .map(|(i, (k, val))| (i, k, val))
        .collect();
    v.sort_by_key(|&(i, k, _)| (key_hash(k) % BUCKETS, std::cmp::Reverse(i)));
    v.into_iter().map(|(_, k, val)| (k, val)).collect()
}

fn is_composite(v: &Value) -> bool {
    matches!(v, Value::Object(_) | Value::Array(_))
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                // Stored as a signed 64-bit integer by the reference.
                (u as i64).to_string()
            } else {
                n.as_f64().map(|f| f.to_string()).unwrap_or_default()
            }
        }
        Value::Null => String::new(),
        Value::Object(_) | Value::Array(_) => String::new(),
    }
}

fn dump_value(out: &mut String, indent: usize, v: &Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in dict_order(m) {
                let key = k.replace('-', " ");
                let sep = if is_composite(val) { '\n' } else { ' ' };
                out.push_str(&format!("{:w$}{}:{}", "", key, sep, w = indent * 4));
                dump_value(out, indent + 1, val);
                if !is_composite(val) {
                    out.push('\n');
                }
            }
        }
        Value::Array(items) => {
            for (i, val) in items.iter().enumerate() {
                let sep = if is_composite(val) { '\n' } else { ' ' };
                out.push_str(&format!("{:w$}[{}]:{}", "", i, sep, w = indent * 4));
                dump_value(out, indent + 1, val);
                if !is_composite(val) {
                    out.push('\n');
                }
            }
        }
        other => out.push_str(&scalar(other)),
    }
}

/// Dumps an ImageInfoSpecific union (`{"type": ..., "data": {...}}`) the way
/// qemu-io's `info` printed it under "Format specific information:".
pub fn dump_specific(out: &mut String, spec: &Value) {
    if let Some(data) = spec.get("data") {
        dump_value(out, 1, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn qcow2_v3_members_come_out_in_reference_order() {
        let spec = json!({"type": "qcow2", "data": {
            "compat": "1.1", "lazy-refcounts": false, "corrupt": false, "refcount-bits": 16}});
        let mut s = String::new();
        dump_specific(&mut s, &spec);
        assert_eq!(
            s,
            "    compat: 1.1\n    lazy refcounts: false\n    refcount bits: 16\n    corrupt: false\n"
        );
    }

    #[test]
    fn nested_lists_are_indented_with_indices() {
        let spec = json!({"type": "x", "data": {"extents": [{"compat": "1.1"}, 7]}});
        let mut s = String::new();
        dump_specific(&mut s, &spec);
        assert_eq!(
            s,
            "    extents:\n        [0]:\n            compat: 1.1\n        [1]: 7\n"
        );
    }
}
