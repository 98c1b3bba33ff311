//! Descriptor passing: getfd, closefd, add-fd, remove-fd, query-fdsets.
//! Descriptors arrive with SCM_RIGHTS on the monitor's unix socket.

use std::os::fd::OwnedFd;

use serde_json::{json, Value};

use qmp::error::QmpError;

use super::{arg_i64, arg_str, empty, Args, CmdCtx};
use crate::emulator::Emulator;

const FD_NOT_SUPPLIED: &str = "No file descriptor supplied via SCM_RIGHTS";

/// The last descriptor passed on the command's monitor, as QEMU's
/// qemu_chr_fe_get_msgfd takes it; earlier ones are closed.
fn take_passed_fd(emu: &mut Emulator, ctx: &CmdCtx) -> Option<OwnedFd> {
    let idx = ctx.monitor?;
    let chardev = emu.monitors.get(idx)?.as_ref()?.chardev.clone();
    emu.take_received_fds(&chardev).pop()
}

pub fn getfd(emu: &mut Emulator, ctx: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let name = arg_str(args, "fdname").unwrap_or("");
    let Some(fd) = take_passed_fd(emu, ctx) else {
        return Err(QmpError::generic(FD_NOT_SUPPLIED));
    };
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(QmpError::generic(
            "Parameter 'fdname' expects a name not starting with a digit",
        ));
    }
    let Some(Some(mon)) = ctx.monitor.and_then(|i| emu.monitors.get_mut(i)) else {
        return Err(QmpError::generic(FD_NOT_SUPPLIED));
    };
    match mon.named_fds.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 = fd,
        None => mon.named_fds.insert(0, (name.to_string(), fd)),
    }
    Ok(empty())
}

pub fn closefd(emu: &mut Emulator, ctx: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let name = arg_str(args, "fdname").unwrap_or("");
    let not_found = || QmpError::generic(format!("File descriptor named '{name}' not found"));
    let Some(Some(mon)) = ctx.monitor.and_then(|i| emu.monitors.get_mut(i)) else {
        return Err(not_found());
    };
    let Some(pos) = mon.named_fds.iter().position(|(n, _)| n == name) else {
        return Err(not_found());
    };
    mon.named_fds.remove(pos);
    Ok(empty())
}

/// Takes a descriptor named with getfd on this monitor (dumps, migration
/// `fd:` protocols use it).
pub fn take_named_fd(emu: &mut Emulator, ctx: &CmdCtx, name: &str) -> Result<OwnedFd, QmpError> {
    let not_found =
        || QmpError::generic(format!("File descriptor named '{name}' has not been found"));
    let Some(Some(mon)) = ctx.monitor.and_then(|i| emu.monitors.get_mut(i)) else {
        return Err(not_found());
    };
    let pos = mon
        .named_fds
        .iter()
        .position(|(n, _)| n == name)
        .ok_or_else(not_found)?;
    Ok(mon.named_fds.remove(pos).1)
}

pub fn add_fd(emu: &mut Emulator, ctx: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let set_id = arg_i64(args, "fdset-id");
    if set_id.is_some_and(|i| i < 0) {
        return Err(QmpError::generic(
            "Parameter 'fdset-id' expects a non-negative value",
        ));
    }
    let Some(fd) = take_passed_fd(emu, ctx) else {
        return Err(QmpError::generic(FD_NOT_SUPPLIED));
    };
    let opaque = arg_str(args, "opaque").map(String::from);
    let (id, raw) = emu.fdsets.add(set_id, fd, opaque);
    Ok(json!({"fdset-id": id, "fd": raw}))
}

pub fn remove_fd(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let id = arg_i64(args, "fdset-id").unwrap_or(0);
    let fd = arg_i64(args, "fd").map(|f| f as i32);
    emu.fdsets.remove(id, fd).map_err(QmpError::generic)?;
    Ok(empty())
}

pub fn query_fdsets(emu: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    Ok(emu.fdsets.query())
}

/// `-add-fd fd=N,set=M[,opaque=S]`: puts an inherited descriptor into an fd
/// set, with QEMU's checks.
pub fn add_fd_from_cmdline(
    emu: &mut Emulator,
    opts: &crate::vl::opts::QemuOpts,
) -> Result<(), String> {
    let fd = opts.get_number("fd").ok().flatten();
    let set = opts.get_number("set").ok().flatten();
    let Some(fd) = fd.and_then(|f| i32::try_from(f).ok()) else {
        return Err("fd option is required and must be non-negative".into());
    };
    if fd <= libc::STDERR_FILENO {
        return Err("fd cannot be a standard I/O stream".into());
    }
    // SAFETY: F_GETFD only queries whether fd is open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 || flags & libc::FD_CLOEXEC != 0 {
        return Err("fd is not valid or already in use".into());
    }
    let Some(set) = set.and_then(|s| i64::try_from(s).ok()) else {
        return Err("set option is required and must be non-negative".into());
    };
    // SAFETY: the descriptor was inherited for us; from here it is owned
    // by the fd set alone.
    let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    crate::sys::fd::set_cloexec(fd);
    emu.fdsets
        .add(Some(set), owned, opts.get("opaque").map(String::from));
    Ok(())
}
