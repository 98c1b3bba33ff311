//! HMP block job commands (block_stream, block_job_*, drive_mirror,
//! drive_backup, commit) and `info block-jobs`, formatted as QEMU's hmp.c.

use serde_json::{json, Value};

use qmp::error::QmpError;

use super::HmpArgs;
use crate::emulator::Emulator;
use crate::qmp_cmds::{self, CmdCtx};

fn s<'a>(a: &'a HmpArgs, k: &str) -> Option<&'a str> {
    a.get(k).and_then(Value::as_str)
}

fn flag(a: &HmpArgs, k: &str) -> bool {
    a.get(k).and_then(Value::as_bool).unwrap_or(false)
}

fn qmp(emu: &mut Emulator, ctx: &mut CmdCtx, cmd: &str, args: Value) -> Result<(), QmpError> {
    let m = match args {
        Value::Object(m) => m,
        _ => Default::default(),
    };
    qmp_cmds::dispatch(emu, ctx, cmd, &m).map(|_| ())
}

pub fn block_stream(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let mut args = json!({"device": s(a, "device"), "on-error": "report"});
    if let Some(sp) = a.get("speed") {
        args["speed"] = sp.clone();
    }
    if let Some(b) = s(a, "base") {
        args["base"] = json!(b);
    }
    qmp(emu, ctx, "block-stream", args)
}

pub fn block_job_set_speed(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let args = json!({"device": s(a, "device"), "speed": a.get("speed")});
    qmp(emu, ctx, "block-job-set-speed", args)
}

pub fn block_job_cancel(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let args = json!({"device": s(a, "device"), "force": flag(a, "force")});
    qmp(emu, ctx, "block-job-cancel", args)
}

qmp_passthrough! {
    block_job_complete => "block-job-complete",
    block_job_pause => "block-job-pause",
    block_job_resume => "block-job-resume",
}

/// drive_mirror and drive_backup share their flags: -n reuses the target,
/// -f copies the whole chain instead of the top layer.
fn copy_args(a: &HmpArgs) -> Value {
    let mut args = json!({
        "device": s(a, "device"),
        "target": s(a, "target"),
        "sync": if flag(a, "full") { "full" } else { "top" },
        "mode": if flag(a, "reuse") { "existing" } else { "absolute-paths" },
    });
    if let Some(f) = s(a, "format") {
        args["format"] = json!(f);
    }
    args
}

pub fn drive_mirror(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let mut args = copy_args(a);
    args["unmap"] = json!(true);
    qmp(emu, ctx, "drive-mirror", args)
}

pub fn drive_backup(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let mut args = copy_args(a);
    if flag(a, "compress") {
        args["compress"] = json!(true);
    }
    qmp(emu, ctx, "drive-backup", args)
}

/// `commit device|all`: a synchronous commit of the top layer into its
/// backing file. Errors are printed, not returned, as hmp_commit does.
pub fn commit(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    a: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let device = s(a, "device").unwrap_or("");
    let targets: Vec<(String, Option<block::NodeRef>)> = if device == "all" {
        emu.block
            .backends()
            .iter()
            .filter_map(|b| b.root().map(|r| (b.name().to_string(), Some(r))))
            .filter(|(_, r)| {
                r.as_ref()
                    .is_some_and(|n| block::lock(n).backing().is_some())
            })
            .collect()
    } else {
        let Some(b) = emu.block.backend(device) else {
            out.push_str(&format!("Device '{device}' not found\n"));
            return Ok(());
        };
        vec![(device.to_string(), b.root())]
    };
    for (name, root) in targets {
        let Some(root) = root else {
            out.push_str(&format!("Device '{name}' has no medium\n"));
            return Ok(());
        };
        let busy = emu.jobs.job_of_node(&root).is_some()
            || block::lock(&root)
                .backing()
                .is_some_and(|b| emu.jobs.job_of_node(&b).is_some());
        let r = if busy {
            Err(block::BlockError::errno("commit", libc::EBUSY))
        } else {
            block::jobs::commit::commit_sync(&root)
        };
        if let Err(e) = r {
            out.push_str(&format!(
                "'commit' error for '{device}': {}\n",
                e.strerror()
            ));
            return Ok(());
        }
    }
    Ok(())
}

pub fn info_block_jobs(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    _: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let list = emu.jobs.query();
    let jobs = list.as_array().cloned().unwrap_or_default();
    if jobs.is_empty() {
        out.push_str("No active jobs\n");
        return Ok(());
    }
    for j in jobs {
        let ty = j["type"].as_str().unwrap_or("");
        let dev = j["device"].as_str().unwrap_or("");
        let (off, len, speed) = (&j["offset"], &j["len"], &j["speed"]);
        if ty == "stream" {
            out.push_str(&format!(
                "Streaming device {dev}: Completed {off} of {len} bytes, speed limit {speed} bytes/s\n"
            ));
        } else {
            out.push_str(&format!(
                "Type {ty}, device {dev}: Completed {off} of {len} bytes, speed limit {speed} bytes/s\n"
            ));
        }
    }
    Ok(())
}
