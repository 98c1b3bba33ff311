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
