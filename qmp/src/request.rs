//! One QMP request object: its shape rules and the errors for breaking them.
//!
//! Owns the check a monitor applies to a parsed JSON value before it looks
//! up the command (`execute` present and a string, `arguments` an object,
//! `id` anything, nothing else). It does not look up commands, check
//! capabilities negotiation or check arguments against the schema.

use serde_json::{Map, Value};

use crate::error::QmpError;

/// A well-formed request.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub execute: String,
    /// Empty when the request had no `arguments` member.
    pub arguments: Map<String, Value>,
    /// The `id` member exactly as sent; `Some(Value::Null)` for `"id": null`,
    /// which QEMU echoes like any other id.
    pub id: Option<Value>,
}

/// A request that breaks the shape rules.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestError {
    pub error: QmpError,
    /// The id to echo in the error reply. QEMU reads the id only after the
    /// shape check succeeded, so for every error produced here it is `None`;
    /// the field is there so callers treat all request errors alike.
    pub id: Option<Value>,
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for RequestError {}

fn reject(error: QmpError) -> RequestError {
    RequestError { error, id: None }
}

/// Check a parsed request the way QEMU 2.8's monitor does and split it into
/// its parts.
///
/// A value that is not an object is reported as a JSON syntax error: the
/// monitor tests for that before its own object check ever runs. When
/// several members are wrong, the one reported is the first in the order
/// QEMU's dictionary iterates (see [`qdict_iteration_order`]).
pub fn parse_request(v: Value) -> Result<Request, RequestError> {
    let Value::Object(mut obj) = v else {
        return Err(reject(QmpError::json_parsing()));
    };
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    for i in qdict_iteration_order(&keys) {
        let key = keys[i];
        let value = obj.get(key);
        match key {
            "execute" => {
                if !value.is_some_and(Value::is_string) {
                    return Err(reject(QmpError::qmp_bad_input_object_member(
                        "execute", "string",
                    )));
                }
            }
            "arguments" => {
                if !value.is_some_and(Value::is_object) {
                    return Err(reject(QmpError::qmp_bad_input_object_member(
                        "arguments",
                        "object",
                    )));
                }
            }
            "id" => {}
            other => return Err(reject(QmpError::qmp_extra_member(other))),
        }
    }
    let execute = match obj.remove("execute") {
        Some(Value::String(s)) => s,
        _ => return Err(reject(QmpError::qmp_bad_input_object("execute"))),
    };
    let arguments = match obj.remove("arguments") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let id = obj.remove("id");
    Ok(Request {
        execute,
        arguments,
        id,
    })
}

/// Number of hash buckets in QEMU's QDict.
const QDICT_BUCKETS: u32 = 512;

/// QEMU's QDict key hash (the TDB hash).
fn qdict_hash(key: &str) -> u32 {
    let mut value = 0x238F_13AFu32.wrapping_mul(key.len() as u32);
    for (i, b) in key.bytes().enumerate() {
        value = value.wrapping_add(u32::from(b) << ((i * 5) % 24));
    }
    1_103_515_243u32.wrapping_mul(value).wrapping_add(12345)
}

/// The order in which QEMU walks a QDict built by inserting `keys` in the
/// given order (distinct keys, as a JSON object after duplicate removal):
/// bucket by bucket, and within a bucket the latest insertion first.
/// Returns indices into `keys`. QEMU prints dictionaries in this order too,
/// so a writer that wants QEMU's member order on the wire can use it.
pub fn qdict_iteration_order(keys: &[&str]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&i| (qdict_hash(keys[i]) % QDICT_BUCKETS, std::cmp::Reverse(i)));
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn desc(v: Value) -> String {
        match parse_request(v) {
            Ok(r) => panic!("accepted: {r:?}"),
            Err(e) => e.error.desc,
        }
    }

    #[test]
    fn plain_request_splits_into_parts() {
        let r = parse_request(
            json!({"execute": "eject", "arguments": {"device": "ide1-cd0"}, "id": 7}),
        )
        .unwrap();
        assert_eq!(r.execute, "eject");
        assert_eq!(r.arguments["device"], "ide1-cd0");
        assert_eq!(r.id, Some(json!(7)));
    }

    #[test]
    fn missing_arguments_gives_empty_map() {
        let r = parse_request(json!({"execute": "stop"})).unwrap();
        assert!(r.arguments.is_empty());
        assert_eq!(r.id, None);
    }

    #[test]
    fn null_id_is_kept_for_echo() {
        let r = parse_request(json!({"execute": "stop", "id": null})).unwrap();
        assert_eq!(r.id, Some(Value::Null));
    }

    #[test]
    fn non_object_is_a_json_syntax_error() {
        assert_eq!(desc(json!([1, 2])), "Invalid JSON syntax");
        assert_eq!(desc(json!("execute")), "Invalid JSON syntax");
    }

    #[test]
    fn missing_execute_is_reported() {
        assert_eq!(desc(json!({"id": 1})), "Expected 'execute' in QMP input");
        assert_eq!(desc(json!({})), "Expected 'execute' in QMP input");
    }

    #[test]
    fn execute_must_be_a_string() {
        assert_eq!(
            desc(json!({"execute": 1})),
            "QMP input object member 'execute' expects 'string'"
        );
    }

    #[test]
    fn arguments_must_be_an_object() {
        assert_eq!(
            desc(json!({"execute": "stop", "arguments": []})),
            "QMP input object member 'arguments' expects 'object'"
        );
    }

    #[test]
    fn unknown_member_is_unexpected() {
        assert_eq!(
            desc(json!({"execute": "stop", "x": 1})),
            "QMP input object member 'x' is unexpected"
        );
    }

    #[test]
    fn errors_never_echo_the_id() {
        let e = parse_request(json!({"execute": 1, "id": "a"})).unwrap_err();
        assert_eq!(e.id, None);
    }

    #[test]
    fn qdict_order_follows_qemu_buckets() {
        // QEMU prints its version as {"micro", "minor", "major"}: that is its
        // QDict's walk order for these keys whatever the insertion order.
        let keys = ["major", "minor", "micro"];
        let order: Vec<&str> = qdict_iteration_order(&keys)
            .into_iter()
            .map(|i| keys[i])
            .collect();
        assert_eq!(order, ["micro", "minor", "major"]);
    }
}
