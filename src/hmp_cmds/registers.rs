//! HMP `info registers`: the monitor's current vCPU in QEMU's x86 layout.

use qmp::error::QmpError;

use super::HmpArgs;
use crate::emulator::Emulator;
use crate::qmp_cmds::CmdCtx;

pub fn info_registers(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    _: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let cpu = ctx.monitor.map_or(0, |m| emu.monitor_cpu(m));
    match emu.machine.cpu_state(cpu) {
        Some(st) => out.push_str(&st.info_registers()),
        None => out.push_str("No CPU available\n"),
    }
    Ok(())
}
