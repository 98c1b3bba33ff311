//! Monitors: QMP (JSON) and HMP (human, readline) sessions on chardevs.
//! Both dispatch into the same command handlers (`crate::qmp_cmds`).

pub mod hmp;
pub mod qmp;
pub mod readline;

use std::os::fd::OwnedFd;

use serde_json::Value;

use crate::chardev::CharEvent;
use crate::emulator::Emulator;

pub enum MonitorKind {
    Qmp(qmp::QmpSession),
    Hmp(hmp::HmpSession),
}

pub struct Monitor {
    pub chardev: String,
    pub kind: MonitorKind,
    /// Descriptors named with `getfd`.
    pub named_fds: Vec<(String, OwnedFd)>,
    /// The CPU `info registers` and friends look at (HMP `cpu N`).
    pub cpu: usize,
}

impl Monitor {
    pub fn is_qmp(&self) -> bool {
        matches!(self.kind, MonitorKind::Qmp(_))
    }
}

/// Creates a monitor on chardev `id` and attaches it as the frontend.
pub fn add_monitor(
    emu: &mut Emulator,
    chardev: &str,
    mode: crate::vl::config::MonitorMode,
    pretty: bool,
) -> Result<(), String> {
    let idx = emu.monitors.len();
    let kind = match mode {
        crate::vl::config::MonitorMode::Control => MonitorKind::Qmp(qmp::QmpSession::new(pretty)),
        crate::vl::config::MonitorMode::Readline => MonitorKind::Hmp(hmp::HmpSession::new()),
    };
    emu.monitors.push(Some(Monitor {
        chardev: chardev.to_string(),
        kind,
        named_fds: Vec::new(),
        cpu: 0,
    }));
    if let Err(e) = emu.attach_frontend(chardev, crate::chardev::Frontend::Monitor(idx)) {
        emu.monitors.pop();
        return Err(e);
    }
    Ok(())
}

pub fn handle_char_event(emu: &mut Emulator, idx: usize, ev: CharEvent) {
    let is_qmp = match emu.monitors.get(idx) {
        Some(Some(m)) => m.is_qmp(),
        _ => return,
    };
    if is_qmp {
        qmp::handle_char_event(emu, idx, ev);
    } else {
        hmp::handle_char_event(emu, idx, ev);
    }
}

pub fn send_event(emu: &mut Emulator, idx: usize, ev: &Value) {
    qmp::send_event(emu, idx, ev);
}

/// QEMU's monitor_puts: every `\n` goes out as `\r\n`.
pub fn to_wire(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 8);
    for b in text.bytes() {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Writes monitor text to the monitor's chardev.
pub fn write_text(emu: &mut Emulator, idx: usize, text: &str) {
    let Some(Some(m)) = emu.monitors.get(idx) else {
        return;
    };
    let id = m.chardev.clone();
    emu.chardev_write(&id, &to_wire(text));
}
