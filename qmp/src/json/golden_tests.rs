//! The writer against real QEMU 2.8 output: replies and events copied from
//! qemu-iotests golden files at the reference commit (timestamps and sizes,
//! which the tests filter, filled in with numbers). Each is rebuilt with every
//! object's members in a scrambled order and must print back identically.

use super::{to_json_string, JsonStreamer};
use serde_json::{Map, Value};

fn parse(text: &str) -> Value {
    let mut s = JsonStreamer::new();
    let mut out = Vec::new();
    s.feed(text.as_bytes(), &mut out);
    assert_eq!(out.len(), 1, "{text}");
    match out.remove(0) {
        Ok(v) => v,
        Err(e) => panic!("{text}: {e}"),
    }
}

/// The same value with every object's members in reverse alphabetical order.
fn scrambled(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_unstable_by(|a, b| b.cmp(a));
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), scrambled(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(scrambled).collect()),
        other => other.clone(),
    }
}

fn assert_round_trip(golden: &str, pretty: bool) {
    let v = scrambled(&parse(golden));
    assert_eq!(to_json_string(&v, pretty), golden);
}

#[test]
fn block_job_completed_with_error_from_iotest_109() {
    assert_round_trip(
        r#"{"timestamp": {"seconds": 1480000000, "microseconds": 123456}, "event": "BLOCK_JOB_COMPLETED", "data": {"device": "src", "len": 65536, "offset": 0, "speed": 0, "type": "mirror", "error": "Operation not permitted"}}"#,
        false,
    );
}

#[test]
fn query_block_jobs_reply_from_iotest_109() {
    assert_round_trip(
        r#"{"return": [{"io-status": "ok", "device": "src", "busy": false, "len": 512, "offset": 512, "paused": false, "speed": 0, "ready": true, "type": "mirror"}]}"#,
        false,
    );
}

#[test]
fn block_job_error_event_from_iotest_109() {
    assert_round_trip(
        r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "BLOCK_JOB_ERROR", "data": {"device": "src", "operation": "write", "action": "report"}}"#,
        false,
    );
}

#[test]
fn block_job_cancelled_event_from_iotest_141() {
    assert_round_trip(
        r#"{"timestamp": {"seconds": 1480000000, "microseconds": 999999}, "event": "BLOCK_JOB_CANCELLED", "data": {"device": "drv0", "len": 1048576, "offset": 524288, "speed": 1, "type": "stream"}}"#,
        false,
    );
}

#[test]
fn quorum_report_bad_event_from_iotest_081() {
    assert_round_trip(
        r#"{"timestamp": {"seconds": 5, "microseconds": 6}, "event": "QUORUM_REPORT_BAD", "data": {"node-name": "drive2", "sectors-count": 20480, "sector-num": 0, "type": "read"}}"#,
        false,
    );
}

#[test]
fn generic_error_reply() {
    assert_round_trip(
        r#"{"error": {"class": "GenericError", "desc": "Node 'drv0' is busy: block device is in use by block job: commit"}}"#,
        false,
    );
}

#[test]
fn shutdown_event_and_greeting() {
    assert_round_trip(
        r#"{"timestamp": {"seconds": 1480000000, "microseconds": 1}, "event": "SHUTDOWN"}"#,
        false,
    );
    assert_round_trip(
        r#"{"QMP": {"version": {"qemu": {"micro": 50, "minor": 7, "major": 2}, "package": ""}, "capabilities": []}}"#,
        false,
    );
}

#[test]
fn query_status_keeps_qemu_order_for_keys_in_one_bucket() {
    // docs/qmp-intro.txt shows this order; the schema declares running,
    // singlestep, status, and the last two share a QDict bucket.
    let v = serde_json::json!({"return": {"running": false, "singlestep": false, "status": "prelaunch"}});
    assert_eq!(
        to_json_string(&v, false),
        r#"{"return": {"status": "prelaunch", "singlestep": false, "running": false}}"#
    );
}

#[test]
fn pretty_query_block_reply_from_iotest_067() {
    assert_round_trip(QUERY_BLOCK_PRETTY, true);
}

const QUERY_BLOCK_PRETTY: &str = r#"{
    "return": [
        {
            "io-status": "ok",
            "device": "disk",
            "locked": false,
            "removable": false,
            "inserted": {
                "iops_rd": 0,
                "detect_zeroes": "off",
                "image": {
                    "virtual-size": 134217728,
                    "filename": "TEST_DIR/t.qcow2",
                    "cluster-size": 65536,
                    "format": "qcow2",
                    "actual-size": 200704,
                    "format-specific": {
                        "type": "qcow2",
                        "data": {
                            "compat": "1.1",
                            "lazy-refcounts": false,
                            "refcount-bits": 16,
                            "corrupt": false
                        }
                    },
                    "dirty-flag": false
                },
                "iops_wr": 0,
                "ro": false,
                "node-name": "NODE_NAME",
                "backing_file_depth": 0,
                "drv": "qcow2",
                "iops": 0,
                "bps_wr": 0,
                "write_threshold": 0,
                "encrypted": false,
                "bps": 0,
                "bps_rd": 0,
                "cache": {
                    "no-flush": false,
                    "direct": false,
                    "writeback": true
                },
                "file": "TEST_DIR/t.qcow2",
                "encryption_key_missing": false
            },
            "type": "unknown"
        }
    ]
}"#;

/// The same value with every object's members in reverse of their current
/// order. Fed QEMU's printed order, this is an insertion order from which QEMU
/// prints exactly that order again (same buckets, ties newest first).
fn reversed_members(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, val) in m.iter().rev() {
                out.insert(k.clone(), reversed_members(val));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(reversed_members).collect()),
        other => other.clone(),
    }
}

/// Oracle check against the installed QEMU (7.2 on these machines, whose QDict
/// and compact printer are unchanged since 2.8): every reply line must parse,
/// and print back byte for byte. Skipped when QEMU is not installed.
#[test]
fn installed_qemu_replies_reprint_identically() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let qemu = "/usr/bin/qemu-system-x86_64";
    if !std::path::Path::new(qemu).exists() {
        eprintln!("skipped: {qemu} not installed");
        return;
    }
    let spawned = Command::new(qemu)
        .args([
            "-machine",
            "none",
            "-display",
            "none",
            "-nodefaults",
            "-qmp",
            "stdio",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = spawned else {
        eprintln!("skipped: cannot start {qemu}");
        return;
    };
    let commands = concat!(
        r#"{"execute": "qmp_capabilities"}"#,
        r#"{"execute": "query-status"}"#,
        r#"{"execute": "query-version"}"#,
        r#"{"execute": "query-commands"}"#,
        r#"{"execute": "query-qmp-schema"}"#,
        r#"{"execute": "qom-list-types"}"#,
        r#"{"execute": "device-list-properties", "arguments": {"typename": "virtio-blk-pci"}}"#,
        r#"{"execute": "no-such-command", "id": {"b": [1, "x"], "a": "\u00e9"}}"#,
        r#"{"execute": "quit"}"#,
    );
    if let Some(mut stdin) = child.stdin.take() {
        assert!(stdin.write_all(commands.as_bytes()).is_ok());
    }
    let output = child
        .wait_with_output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&output);
    let mut checked = 0;
    for line in text.lines().filter(|l| l.starts_with('{')) {
        let printed = to_json_string(&reversed_members(&parse(line)), false);
        assert_eq!(printed, line);
        checked += 1;
    }
    eprintln!("checked {checked} lines, {} bytes", text.len());
    // Greeting, eight replies and the SHUTDOWN event (quit's reply may race it).
    assert!(checked >= 9, "only {checked} lines from QEMU:\n{text}");
}
