//! query-cpus: the vCPUs of the machine, their host threads and PCs;
//! inject-nmi.

use serde_json::{json, Value};

use qmp::error::QmpError;

use super::{Args, CmdCtx};
use crate::emulator::Emulator;

/// The x86 reset vector (CS base 0xffff0000 + IP 0xfff0), where a vCPU
/// that never ran stands.
const RESET_PC: u64 = 0xffff_fff0;

/// QOM path of vCPU `i`, as QEMU's pc puts its CPUs.
pub fn cpu_qom_path(i: usize) -> String {
    format!("/machine/unattached/device[{i}]")
}

pub fn query_cpus(emu: &mut Emulator, ctx: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    let current = ctx.monitor.map_or(0, |m| emu.monitor_cpu(m));
    let cpus: Vec<Value> = if emu.machine.has_vcpus() {
        let infos = emu.machine.vcpu_infos();
        let states = emu.machine.cpu_states();
        infos
            .iter()
            .map(|info| {
                let st = states.iter().find(|s| s.index == info.index);
                json!({
                    "CPU": info.index,
                    "current": info.index == current,
                    "halted": st.is_some_and(|s| s.halted()),
                    "qom_path": cpu_qom_path(info.index),
                    "thread_id": info.thread_id,
                    "arch": "x86",
                    "pc": st.map_or(RESET_PC, |s| s.pc()) as i64,
                })
            })
            .collect()
    } else if emu.machine.pc().is_some() {
        // qtest: the CPUs exist but never run; they stay at reset.
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        (0..emu.machine.smp.cpus as usize)
            .map(|i| {
                json!({
                    "CPU": i,
                    "current": i == current,
                    "halted": false,
                    "qom_path": cpu_qom_path(i),
                    "thread_id": tid,
                    "arch": "x86",
                    "pc": RESET_PC,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(Value::Array(cpus))
}

/// inject-nmi: an NMI on every vCPU.
pub fn inject_nmi(emu: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    emu.machine
        .inject_nmi()
        .map_err(|e| QmpError::generic(e.0))?;
    Ok(json!({}))
}
