//! HMP `dump-guest-memory [-p] [-z|-l|-s] FILE [begin length]` and
//! `info dump`.

use serde_json::Value;

use qmp::error::QmpError;

use super::HmpArgs;
use crate::dump::{info_dump_text, DumpRequest};
use crate::emulator::Emulator;
use crate::qmp_cmds::{dump::start_dump, CmdCtx};

fn flag(a: &HmpArgs, k: &str) -> bool {
    a.get(k).and_then(Value::as_bool).unwrap_or(false)
}

pub fn dump_guest_memory(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let req = DumpRequest::from_hmp(
        flag(a, "paging"),
        flag(a, "zlib"),
        flag(a, "lzo"),
        flag(a, "snappy"),
        a.get("begin").and_then(Value::as_i64),
        a.get("length").and_then(Value::as_i64),
    )
    .map_err(|e| QmpError::generic(e.to_string()))?;
    let file = a.get("filename").and_then(Value::as_str).unwrap_or("");
    start_dump(emu, ctx, &req, &format!("file:{file}"), false)
}

pub fn info_dump(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    _: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    out.push_str(&info_dump_text(
        emu.dump.status,
        emu.dump.completed,
        emu.dump.total,
    ));
    Ok(())
}
