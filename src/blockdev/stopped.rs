//! Commands QEMU runs only after draining the devices they touch. With a
//! request stopped at a blkdebug breakpoint QEMU would wait there for ever;
//! we refuse such a command instead, until the request is resumed.

use serde_json::Value;

use qmp::error::QmpError;

use crate::emulator::Emulator;
use crate::qmp_cmds::Args;

/// Each draining command and the arguments that name what it drains.
const DRAINING: &[(&str, &[&str])] = &[
    ("x-blockdev-del", &["id", "node-name"]),
    ("eject", &["device"]),
    ("change", &["device"]),
    ("blockdev-change-medium", &["device"]),
    ("x-blockdev-remove-medium", &["device"]),
    ("block_resize", &["device", "node-name"]),
    ("blockdev-snapshot-sync", &["device", "node-name"]),
    ("blockdev-snapshot", &["node"]),
    ("blockdev-snapshot-internal-sync", &["device"]),
    ("blockdev-snapshot-delete-internal-sync", &["device"]),
    ("change-backing-file", &["device"]),
    ("block-commit", &["device"]),
    ("block-stream", &["device"]),
    ("drive-mirror", &["device"]),
    ("blockdev-mirror", &["device"]),
    ("drive-backup", &["device"]),
    ("blockdev-backup", &["device"]),
];

/// Err when `name` (a backend or node name) has requests in flight.
pub fn check_idle(emu: &Emulator, name: &str) -> Result<(), QmpError> {
    let Ok(node) = emu.block.lookup(name) else {
        return Ok(());
    };
    if emu.block.has_requests_in_flight(&node) {
        return Err(QmpError::generic(format!(
            "'{name}' has requests stopped at a blkdebug breakpoint; resume them first"
        )));
    }
    Ok(())
}

fn check_command(emu: &Emulator, command: &str, args: &Args) -> Result<(), QmpError> {
    let Some((_, keys)) = DRAINING.iter().find(|(c, _)| *c == command) else {
        return Ok(());
    };
    for k in keys.iter() {
        if let Some(name) = args.get(*k).and_then(Value::as_str) {
            check_idle(emu, name)?;
        }
    }
    Ok(())
}

/// Refuses a draining command (or transaction action) that would wait for
/// a stopped request.
pub fn refuse_if_draining(emu: &Emulator, command: &str, args: &Args) -> Result<(), QmpError> {
    if emu.block.inflight_is_idle() {
        return Ok(());
    }
    if command == "transaction" {
        let actions = args.get("actions").and_then(Value::as_array);
        for a in actions.into_iter().flatten() {
            let kind = a.get("type").and_then(Value::as_str).unwrap_or("");
            if let Some(data) = a.get("data").and_then(Value::as_object) {
                check_command(emu, kind, data)?;
            }
        }
        return Ok(());
    }
    check_command(emu, command, args)
}
