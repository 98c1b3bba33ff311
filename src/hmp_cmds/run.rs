//! HMP run-state and fd commands, calling the QMP handlers.

use serde_json::json;

use qmp::error::QmpError;

use super::HmpArgs;
use crate::emulator::Emulator;
use crate::qmp_cmds::{self, CmdCtx};

fn call(emu: &mut Emulator, ctx: &mut CmdCtx, name: &str, args: &HmpArgs) -> Result<(), QmpError> {
    qmp_cmds::dispatch(emu, ctx, name, args).map(|_| ())
}

pub fn quit(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    _: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    call(emu, ctx, "quit", &HmpArgs::new())
}

pub fn stop(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    _: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    call(emu, ctx, "stop", &HmpArgs::new())
}

pub fn cont(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    _: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    call(emu, ctx, "cont", &HmpArgs::new())
}

pub fn system_reset(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    _: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    call(emu, ctx, "system_reset", &HmpArgs::new())
}

pub fn system_powerdown(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    _: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    call(emu, ctx, "system_powerdown", &HmpArgs::new())
}

pub fn system_wakeup(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    _: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    call(emu, ctx, "system_wakeup", &HmpArgs::new())
}

pub fn getfd(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let mut args = HmpArgs::new();
    args.insert("fdname".into(), json!(a.get("fdname")));
    call(emu, ctx, "getfd", &args)
}

pub fn closefd(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let mut args = HmpArgs::new();
    args.insert("fdname".into(), json!(a.get("fdname")));
    call(emu, ctx, "closefd", &args)
}

/// `cpu N`: the CPU later commands of this monitor look at.
pub fn cpu(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let idx = a
        .get("index")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(-1);
    let count = if emu.machine.pc().is_some() {
        i64::from(emu.machine.smp.cpus)
    } else {
        0
    };
    if idx < 0 || idx >= count {
        return Err(QmpError::generic("invalid CPU index"));
    }
    if let Some(Some(m)) = ctx.monitor.and_then(|i| emu.monitors.get_mut(i)) {
        m.cpu = idx as usize;
    }
    Ok(())
}
