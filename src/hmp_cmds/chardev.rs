//! HMP chardev commands (`chardev-add`, `chardev-remove`, `ringbuf_write`,
//! `ringbuf_read`) and `info chardev`, formatted as QEMU's hmp.c.

use serde_json::{json, Value};

use qmp::error::QmpError;

use super::HmpArgs;
use crate::chardev::ringbuf_format::to_hmp_text;
use crate::emulator::Emulator;
use crate::qmp_cmds::{self, CmdCtx};

fn arg<'a>(a: &'a HmpArgs, k: &str) -> &'a str {
    a.get(k).and_then(Value::as_str).unwrap_or("")
}

pub fn chardev_add(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    a: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    const PARSE_FAILED: &str = "Parsing chardev args failed";
    let opts = match crate::chardev::CHARDEV_OPTS.parse(arg(a, "args"), true) {
        Ok(o) => o,
        Err(e) => {
            out.push_str(&e.message);
            out.push('\n');
            if let Some(hint) = e.hint {
                out.push_str(hint);
                out.push('\n');
            }
            return Err(QmpError::generic(PARSE_FAILED));
        }
    };
    if let Some(id) = opts.id.as_deref().filter(|id| emu.chardev_from_opts(id)) {
        out.push_str(&format!("Duplicate ID '{id}' for chardev\n"));
        return Err(QmpError::generic(PARSE_FAILED));
    }
    emu.chardev_add_opts(&opts)
        .map_err(|e| QmpError::generic(e.to_string()))
}

pub fn chardev_remove(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let mut args = HmpArgs::new();
    args.insert("id".into(), json!(arg(a, "id")));
    qmp_cmds::dispatch(emu, ctx, "chardev-remove", &args).map(|_| ())
}

pub fn ringbuf_write(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let mut args = HmpArgs::new();
    args.insert("device".into(), json!(arg(a, "device")));
    args.insert("data".into(), json!(arg(a, "data")));
    qmp_cmds::dispatch(emu, ctx, "ringbuf-write", &args).map(|_| ())
}

pub fn ringbuf_read(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    a: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    // HMP keeps the size in a uint32_t: negative numbers wrap.
    let size = a.get("size").and_then(Value::as_i64).unwrap_or(0) as u32;
    let bytes = qmp_cmds::chardev::ringbuf_read_bytes(emu, arg(a, "device"), i64::from(size))?;
    out.push_str(&to_hmp_text(&bytes));
    out.push('\n');
    Ok(())
}

pub fn info_chardev(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    _: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let v = qmp_cmds::dispatch(emu, ctx, "query-chardev", &HmpArgs::new())?;
    for c in v.as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{}: filename={}\n",
            c["label"].as_str().unwrap_or(""),
            c["filename"].as_str().unwrap_or("")
        ));
    }
    Ok(())
}
