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
    hmp("cpus", "", "", "show infos for each CPU", cpus),
    hmp("pci", "", "", "show PCI info", pci),
    hmp(
        "mice",
        "",
        "",
        "show which guest mouse is receiving events",
        super::input::info_mice,
    ),
    hmp(
        "mtree",
        "",
        "",
        "show memory tree",
        super::memory::info_mtree,
    ),
    hmp(
        "registers",
        "",
        "",
        "show the cpu registers",
        super::registers::info_registers,
    ),
    // chardev info (chardev.rs)
    hmp(
        "chardev",
        "",
        "",
        "show the character devices",
        super::chardev::info_chardev,
    ),
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
    // job info (jobs.rs)
    hmp(
        "block-jobs",
        "",
        "",
        "show progress of ongoing block device operations",
        super::jobs::info_block_jobs,
    ),
    // block info (block.rs)
    hmp(
        "block",
        "nodes:-n,verbose:-v,device:B?",
        "[-n] [-v] [device]",
        "show info of one block device or all block devices (-n: show named nodes; -v: show details)",
        super::block::info_block,
    ),
    hmp(
        "blockstats",
        "",
        "",
        "show block device statistics",
        super::block::info_blockstats,
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

fn cpus(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    _: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let v = query(emu, ctx, "query-cpus")?;
    for c in v.as_array().into_iter().flatten() {
        let active = if c["current"].as_bool().unwrap_or(false) {
            '*'
        } else {
            ' '
        };
        out.push_str(&format!("{active} CPU #{}:", c["CPU"]));
        out.push_str(&format!(" pc=0x{:016x}", c["pc"].as_i64().unwrap_or(0)));
        if c["halted"].as_bool().unwrap_or(false) {
            out.push_str(" (halted)");
        }
        out.push_str(&format!(" thread_id={}\n", c["thread_id"]));
    }
    Ok(())
}

fn pci(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    _: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let v = query(emu, ctx, "query-pci")?;
    for bus in v.as_array().into_iter().flatten() {
        for d in bus["devices"].as_array().into_iter().flatten() {
            let n = |k: &str| d[k].as_i64().unwrap_or(0);
            out.push_str(&format!(
                "  Bus {:2}, device {:3}, function {}:\n",
                n("bus"),
                n("slot"),
                n("function")
            ));
            out.push_str("    ");
            match d["class_info"]["desc"].as_str() {
                Some(desc) => out.push_str(desc),
                None => out.push_str(&format!(
                    "Class {:04}",
                    d["class_info"]["class"].as_i64().unwrap_or(0)
                )),
            }
            out.push_str(&format!(
                ": PCI device {:04x}:{:04x}\n",
                d["id"]["vendor"].as_i64().unwrap_or(0),
                d["id"]["device"].as_i64().unwrap_or(0)
            ));
            if let Some(irq) = d["irq"].as_i64() {
                out.push_str(&format!("      IRQ {irq}.\n"));
            }
            for r in d["regions"].as_array().into_iter().flatten() {
                let addr = r["address"].as_i64().unwrap_or(0) as u64;
                let size = r["size"].as_i64().unwrap_or(0) as u64;
                let last = addr.wrapping_add(size).wrapping_sub(1);
                out.push_str(&format!("      BAR{}: ", r["bar"].as_i64().unwrap_or(0)));
                if r["type"] == "io" {
                    out.push_str(&format!("I/O at 0x{addr:04x} [0x{last:04x}].\n"));
                } else {
                    let bits = if r["mem_type_64"].as_bool().unwrap_or(false) {
                        64
                    } else {
                        32
                    };
                    let pf = if r["prefetch"].as_bool().unwrap_or(false) {
                        " prefetchable"
                    } else {
                        ""
                    };
                    out.push_str(&format!(
                        "{bits} bit{pf} memory at 0x{addr:08x} [0x{last:08x}].\n"
                    ));
                }
            }
            out.push_str(&format!(
                "      id \"{}\"\n",
                d["qdev_id"].as_str().unwrap_or("")
            ));
        }
    }
    Ok(())
}
