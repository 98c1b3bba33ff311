//! Chardev commands: chardev-add, chardev-remove, query-chardev,
//! query-chardev-backends, ringbuf-write, ringbuf-read.

use serde_json::{json, Value};

use qmp::error::QmpError;

use super::{arg_i64, arg_str, empty, Args, CmdCtx};
use crate::chardev::ringbuf_format::{decode_base64, to_utf8_text, utf8_input};
use crate::chardev::sockaddr::SockAddr;
use crate::chardev::spec::{self, Backend};
use crate::emulator::Emulator;

pub fn chardev_add(emu: &mut Emulator, ctx: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let id = arg_str(args, "id").unwrap_or("");
    let spec = spec::from_qmp(args.get("backend").unwrap_or(&Value::Null));
    if emu.chardev(id).is_some() {
        return Err(QmpError::generic(format!("Chardev '{id}' already exists")));
    }
    // A socket on a descriptor passed with getfd takes it now, as QEMU
    // resolves the name while creating the device.
    let passed = match &spec.backend {
        Backend::Socket(s) if spec::available(&spec.backend) => match &s.addr {
            SockAddr::Fd(name) => Some(super::fd::take_named_fd(emu, ctx, name)?),
            _ => None,
        },
        _ => None,
    };
    let pty = emu
        .chardev_add_spec(id, &spec, passed)
        .map_err(|e| QmpError::generic(e.to_string()))?;
    Ok(match pty {
        Some(p) => json!({"pty": p}),
        None => empty(),
    })
}

pub fn chardev_remove(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let id = arg_str(args, "id").unwrap_or("");
    emu.chardev_remove(id).map_err(QmpError::generic)?;
    Ok(empty())
}

pub fn query_chardev(emu: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    Ok(Value::Array(
        emu.query_chardevs()
            .into_iter()
            .map(|c| {
                json!({"label": c.label, "filename": c.filename, "frontend-open": c.frontend_open})
            })
            .collect(),
    ))
}

pub fn query_chardev_backends(
    _: &mut Emulator,
    _: &mut CmdCtx,
    _: &Args,
) -> Result<Value, QmpError> {
    Ok(Value::Array(
        spec::backends_for_query()
            .map(|n| json!({"name": n}))
            .collect(),
    ))
}

fn ring<'a>(
    emu: &'a mut Emulator,
    device: &str,
) -> Result<&'a mut crate::chardev::ringbuf::RingBuf, QmpError> {
    let Some(dev) = emu.chardev_mut(device) else {
        return Err(QmpError::generic(format!("Device '{device}' not found")));
    };
    dev.backend
        .as_ringbuf()
        .ok_or_else(|| QmpError::generic(format!("{device} is not a ringbuf device")))
}

fn is_base64(args: &Args) -> bool {
    arg_str(args, "format") == Some("base64")
}

pub fn ringbuf_write(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let device = arg_str(args, "device").unwrap_or("");
    let data = arg_str(args, "data").unwrap_or("");
    let r = ring(emu, device)?;
    if is_base64(args) {
        let bytes = decode_base64(data).map_err(QmpError::generic)?;
        r.write(&bytes);
    } else {
        r.write(utf8_input(data));
    }
    Ok(empty())
}

/// The bytes ringbuf-read takes (HMP prints them its own way).
pub fn ringbuf_read_bytes(
    emu: &mut Emulator,
    device: &str,
    size: i64,
) -> Result<Vec<u8>, QmpError> {
    let r = ring(emu, device)?;
    if size <= 0 {
        return Err(QmpError::generic("size must be greater than zero"));
    }
    Ok(r.read(size as u64))
}

pub fn ringbuf_read(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let device = arg_str(args, "device").unwrap_or("");
    let size = arg_i64(args, "size").unwrap_or(0);
    let bytes = ringbuf_read_bytes(emu, device, size)?;
    Ok(Value::String(if is_base64(args) {
        crate::base64::encode(&bytes)
    } else {
        to_utf8_text(&bytes)
    }))
}
