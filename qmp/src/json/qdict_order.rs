//! The order in which QEMU 2.8 prints the members of a JSON object.
//!
//! QEMU keeps objects in a QDict: a hash table of 512 buckets, each bucket a
//! linked list to whose head new keys are added. Printing walks the buckets
//! from 0 to 511 and each list from head to tail. So the rule is:
//!
//! 1. members are sorted by bucket number, `tdb_hash(key) % 512`, ascending;
//! 2. members in the same bucket come newest first, i.e. in reverse insertion
//!    order (replacing the value of an existing key keeps its place).
//!
//! `tdb_hash` (from gdbm via tdb) works on the key's bytes up to the first NUL,
//! in wrapping 32-bit arithmetic: start with `0x238F13AF * len`, add each byte
//! `b[i]` shifted left by `(i * 5) % 24`, then return
//! `1103515243 * value + 12345`.
//!
//! Our objects are `serde_json::Map`s in insertion order, so callers must insert
//! members in the order QEMU's code adds them (for QAPI replies, the order of the
//! fields in the schema) for ties within a bucket to come out right. Ties are
//! rare: most objects have no two keys in one bucket.

use serde_json::{Map, Value};

const QDICT_BUCKETS: u32 = 512;

fn tdb_hash(key: &[u8]) -> u32 {
    let key = match key.iter().position(|&b| b == 0) {
        Some(nul) => &key[..nul],
        None => key,
    };
    let mut value = 0x238F_13AFu32.wrapping_mul(key.len() as u32);
    for (i, &b) in key.iter().enumerate() {
        value = value.wrapping_add(u32::from(b) << ((i * 5) % 24));
    }
    1_103_515_243u32.wrapping_mul(value).wrapping_add(12345)
}

/// The QDict bucket QEMU files `key` under.
pub fn qdict_bucket(key: &str) -> u32 {
    tdb_hash(key.as_bytes()) % QDICT_BUCKETS
}

/// The keys of `m` in the order QEMU would print them, taking the map's own
/// order as insertion order.
pub fn qdict_order_keys(m: &Map<String, Value>) -> Vec<&String> {
    let mut keyed: Vec<(u32, usize, &String)> = m
        .keys()
        .enumerate()
        .map(|(i, k)| (qdict_bucket(k), i, k))
        .collect();
    keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    keyed.into_iter().map(|(_, _, k)| k).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order(v: &Value) -> Vec<&str> {
        v.as_object()
            .map(|m| {
                qdict_order_keys(m)
                    .into_iter()
                    .map(|s| s.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn greeting_members_come_out_in_qemu_order() {
        assert_eq!(
            order(&json!({"major": 0, "minor": 0, "micro": 0})),
            ["micro", "minor", "major"]
        );
        assert_eq!(
            order(&json!({"capabilities": 0, "version": 0})),
            ["version", "capabilities"]
        );
        assert_eq!(
            order(&json!({"package": 0, "qemu": 0})),
            ["qemu", "package"]
        );
    }

    #[test]
    fn event_members_come_out_in_qemu_order() {
        assert_eq!(
            order(&json!({"data": 0, "event": 0, "timestamp": 0})),
            ["timestamp", "event", "data"]
        );
        assert_eq!(
            order(&json!({"microseconds": 0, "seconds": 0})),
            ["seconds", "microseconds"]
        );
    }

    #[test]
    fn keys_sharing_a_bucket_come_newest_first() {
        // StatusInfo's "singlestep" and "status" share a bucket; QEMU adds
        // running, singlestep, status (schema order) and prints status first.
        assert_eq!(qdict_bucket("singlestep"), qdict_bucket("status"));
        let v = json!({"running": true, "singlestep": false, "status": "running"});
        assert_eq!(order(&v), ["status", "singlestep", "running"]);
        let v = json!({"running": true, "status": "running", "singlestep": false});
        assert_eq!(order(&v), ["singlestep", "status", "running"]);
    }

    #[test]
    fn hash_stops_at_nul_like_a_c_string() {
        assert_eq!(tdb_hash(b"abc\0def"), tdb_hash(b"abc"));
    }
}
