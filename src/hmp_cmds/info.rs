//! `info` subcommands, formatted as QEMU's hmp.c formats them.

use serde_json::Value;

use qmp::error::QmpError;

use super::{hmp, HmpArgs, HmpCommand};
use crate::emulator::Emulator;
use crate::qmp_cmds::{self, CmdCtx};

pub static COMMANDS: &[HmpCommand] = &[
    hmp("version", "", "", "show the version of QEMU", version),
    hmp(
        "status",
        "",
        "",
        "show the current VM status (running|paused)",
        status,
    ),
    hmp("name", "", "", "show the current VM name", name),
    hmp("uuid", "", "", "show the current VM UUID", uuid),
    hmp("kvm", "", "", "show KVM information", kvm),
    hmp(
        "dump",
        "",
        "",
        "Display the latest dump status",
        super::dump::info_dump,
    ),
    // chardev info (chardev.rs)
    // QOM info (qom.rs)
    hmp(
        "qom-tree",
        "path:s?",
        "[path]",
        "show QOM composition tree",
        super::qom::info_qom_tree,
    ),
    hmp(
        "iothreads",
        "",
        "",
        "show iothreads",
        super::qom::info_iothreads,
    ),
    // block info (block.rs)
    hmp(
        "block",
        "nodes:-n,verbose:-v,device:B?",
        "[-n] [-v] [device]",
        "show info of one block device or all block devices (-n: show named nodes; -v: show details)",
        super::block::info_block,
    ),
];

fn query(emu: &mut Emulator, ctx: &mut CmdCtx, cmd: &str) -> Result<Value, QmpError> {
    qmp_cmds::dispatch(emu, ctx, cmd, &HmpArgs::new())
}

fn version(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    _: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let v = query(emu, ctx, "query-version")?;
    let q = &v["qemu"];
    out.push_str(&format!(
        "{}.{}.{}{}\n",
        q["major"],
        q["minor"],
        q["micro"],
        v["package"].as_str().unwrap_or("")
    ));
    Ok(())
}

fn status(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    _: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let v = query(emu, ctx, "query-status")?;
    let running = v["running"].as_bool().unwrap_or(false);
    let st = v["status"].as_str().unwrap_or("");
    out.push_str(&format!(
        "VM status: {}",
        if running { "running" } else { "paused" }
    ));
    if !running && st != "paused" {
        out.push_str(&format!(" ({st})"));
    }
    out.push('\n');
    Ok(())
}

fn name(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    _: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let v = query(emu, ctx, "query-name")?;
    if let Some(n) = v["name"].as_str() {
        out.push_str(n);
        out.push('\n');
    }
    Ok(())
}

fn uuid(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    _: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let v = query(emu, ctx, "query-uuid")?;
    out.push_str(v["UUID"].as_str().unwrap_or(""));
    out.push('\n');
    Ok(())
}

fn kvm(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    _: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let v = query(emu, ctx, "query-kvm")?;
    out.push_str("kvm support: ");
    if v["present"].as_bool().unwrap_or(false) {
        out.push_str(if v["enabled"].as_bool().unwrap_or(false) {
            "enabled\n"
        } else {
            "disabled\n"
        });
    } else {
        out.push_str("not compiled\n");
    }
    Ok(())
}
