//! A human monitor session: banner, prompt, readline, and commands from the
//! HMP table (`crate::hmp_cmds`).

use super::readline::{Edit, Readline};
use super::MonitorKind;
use crate::chardev::CharEvent;
use crate::emulator::Emulator;
use crate::qmp_cmds::CmdCtx;

pub const PROMPT: &str = "(qemu) ";

pub struct HmpSession {
    rl: Readline,
}

impl HmpSession {
    pub fn new() -> Self {
        HmpSession {
            rl: Readline::default(),
        }
    }
}

impl Default for HmpSession {
    fn default() -> Self {
        Self::new()
    }
}

fn session(emu: &mut Emulator, idx: usize) -> Option<&mut HmpSession> {
    match emu.monitors.get_mut(idx) {
        Some(Some(m)) => match &mut m.kind {
            MonitorKind::Hmp(s) => Some(s),
            MonitorKind::Qmp(_) => None,
        },
        _ => None,
    }
}

pub fn banner() -> String {
    let v = crate::version::QEMU_VERSION;
    format!("QEMU {v} monitor - type 'help' for more information\n")
}

pub fn handle_char_event(emu: &mut Emulator, idx: usize, ev: CharEvent) {
    match ev {
        CharEvent::Opened => {
            let text = format!("{}{PROMPT}", banner());
            super::write_text(emu, idx, &text);
        }
        CharEvent::Closed => {}
        CharEvent::Data(bytes) => {
            for b in bytes {
                let Some(s) = session(emu, idx) else { return };
                match s.rl.feed(b, PROMPT) {
                    Edit::None => {}
                    Edit::Echo(e) => {
                        let id = match emu.monitors.get(idx) {
                            Some(Some(m)) => m.chardev.clone(),
                            _ => return,
                        };
                        emu.chardev_write(&id, &e);
                    }
                    Edit::Line(line) => {
                        super::write_text(emu, idx, "\n");
                        let mut ctx = CmdCtx { monitor: Some(idx) };
                        let out = crate::hmp_cmds::run_line(emu, &mut ctx, &line);
                        let mut text = out;
                        // `quit` leaves no prompt behind, as QEMU.
                        if emu.exit.is_none() && !emu.requests.shutdown {
                            text.push_str(PROMPT);
                        }
                        super::write_text(emu, idx, &text);
                    }
                }
            }
        }
    }
}
