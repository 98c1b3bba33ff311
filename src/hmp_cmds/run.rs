//! HMP run-state and fd commands, calling the QMP handlers.

use qmp::error::QmpError;

use super::HmpArgs;
use crate::emulator::Emulator;
use crate::qmp_cmds::CmdCtx;

qmp_passthrough! {
    quit => "quit",
    stop => "stop",
    cont => "cont",
    system_reset => "system_reset",
    system_powerdown => "system_powerdown",
    system_wakeup => "system_wakeup",
    getfd => "getfd",
    closefd => "closefd",
}

/// `cpu N`: the CPU later commands of this monitor look at.
pub fn cpu(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let idx = a
        .get("index")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(-1);
    let count = if emu.machine.pc().is_some() {
        i64::from(emu.machine.smp.cpus)
    } else {
        0
    };
    if idx < 0 || idx >= count {
        return Err(QmpError::generic("invalid CPU index"));
    }
    if let Some(Some(m)) = ctx.monitor.and_then(|i| emu.monitors.get_mut(i)) {
        m.cpu = idx as usize;
    }
    Ok(())
}
