//! Run state commands: query-status, stop, cont, quit, system_reset,
//! system_powerdown, system_wakeup.

use serde_json::{json, Value};

use qmp::error::QmpError;

use super::{empty, Args, CmdCtx};
use crate::emulator::Emulator;
use crate::runstate::RunState;

pub fn query_status(emu: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    Ok(json!({
        "running": emu.is_running(),
        "singlestep": false,
        "status": emu.runstate.name(),
    }))
}

pub fn stop(emu: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    if emu.runstate == RunState::Inmigrate {
        emu.autostart = false;
    } else {
        emu.vm_stop(RunState::Paused);
    }
    Ok(empty())
}

pub fn cont(emu: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    if emu.runstate.needs_reset() {
        return Err(QmpError::generic(
            "Resetting the Virtual Machine is required",
        ));
    }
    if emu.runstate == RunState::Suspended {
        return Ok(empty());
    }
    if emu.runstate == RunState::Inmigrate {
        emu.autostart = true;
    } else {
        emu.vm_start();
    }
    Ok(empty())
}

pub fn quit(emu: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    emu.no_shutdown = false;
    emu.requests.shutdown = true;
    Ok(empty())
}

pub fn system_reset(emu: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    emu.request_reset();
    Ok(empty())
}

pub fn system_powerdown(emu: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    emu.requests.powerdown = true;
    Ok(empty())
}

/// Only a suspended guest wakes up; elsewhere QEMU silently does nothing.
pub fn system_wakeup(emu: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    if emu.runstate == RunState::Suspended {
        emu.set_runstate(RunState::Running);
        emu.requests.wakeup = true;
    }
    Ok(empty())
}
