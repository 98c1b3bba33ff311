//! HMP nbd_server_start [-a] [-w] host:port, nbd_server_add [-w] device,
//! nbd_server_stop.

use serde_json::Value;

use block::nbd::NbdAddr;
use qmp::error::QmpError;

use super::HmpArgs;
use crate::emulator::Emulator;
use crate::qmp_cmds::CmdCtx;

fn flag(a: &HmpArgs, k: &str) -> bool {
    a.get(k).and_then(Value::as_bool).unwrap_or(false)
}

pub fn nbd_server_start(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let (all, writable) = (flag(a, "all"), flag(a, "writable"));
    if writable && !all {
        return Err(QmpError::generic("-w only valid together with -a"));
    }
    let uri = a.get("uri").and_then(Value::as_str).unwrap_or("");
    let addr = NbdAddr::parse(uri).map_err(|e| QmpError::generic(e.to_string()))?;
    crate::nbd::server_start(emu, ctx, &addr, None)?;
    if all {
        // Every backend with a medium; on any failure the server stops.
        let devices: Vec<String> = emu
            .block
            .backends()
            .iter()
            .filter(|b| b.has_medium())
            .map(|b| b.name().to_string())
            .collect();
        for d in devices {
            if let Err(e) = crate::nbd::server_add(emu, &d, writable) {
                crate::nbd::server_stop(emu);
                return Err(e);
            }
        }
    }
    Ok(())
}

pub fn nbd_server_add(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let device = a.get("device").and_then(Value::as_str).unwrap_or("");
    crate::nbd::server_add(emu, device, flag(a, "writable"))
}

pub fn nbd_server_stop(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    _: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    crate::nbd::server_stop(emu);
    Ok(())
}
