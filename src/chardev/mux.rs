//! `mux`: one base device shared by up to four frontends (typically a
//! serial port and a human monitor, `-nographic`'s `mon:stdio`). Output
//! of every frontend goes to the base; input goes to the frontend with
//! focus, the one attached last, and Ctrl-a escapes act on the mux:
//! `C-a c` moves focus to the next frontend, `C-a h` prints help,
//! `C-a x` exits, `C-a t` toggles timestamps on output lines, `C-a C-a`
//! sends a Ctrl-a.
//!
//! A human monitor shows its banner only once it has focus, prints a
//! newline when it loses focus and its prompt when it gets focus back,
//! as QEMU's monitor does on mux focus changes.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};

use super::{CharBackend, CharEvent, FdRegistry, Frontend};
use crate::emulator::{Emulator, ExitReason};
use crate::main_loop::{ClockType, Token};

/// QEMU's default escape character, Ctrl-a.
pub const DEFAULT_ESCAPE: u8 = 0x01;
pub const MAX_FRONTENDS: usize = 4;

/// The escape character (`-echr`), process-wide as in QEMU.
static ESCAPE_CHAR: AtomicU8 = AtomicU8::new(DEFAULT_ESCAPE);

/// Sets the escape character, for `-echr N` (the CLI does not take it
/// yet).
#[allow(dead_code)]
pub fn set_escape_char(c: u8) {
    ESCAPE_CHAR.store(c, Ordering::Relaxed);
}

fn escape_char() -> u8 {
    ESCAPE_CHAR.load(Ordering::Relaxed)
}

const HELP_LINES: [&str; 7] = [
    "% h    print this help\n\r",
    "% x    exit emulator\n\r",
    "% s    save disk data back to file (if -snapshot)\n\r",
    "% t    toggle console timestamps\n\r",
    "% b    send break (magic sysrq)\n\r",
    "% c    switch between console and monitor\n\r",
    "% %  sends %\n\r",
];

/// The `C-a h` text, naming the escape key as QEMU does.
pub fn help_text(esc: u8) -> String {
    let (head, key) = if esc > 0 && esc < 26 {
        (
            "\n\r".to_string(),
            format!("C-{}", (b'a' + esc - 1) as char),
        )
    } else {
        (
            format!("\n\rEscape-Char set to Ascii: 0x{esc:02x}\n\r\n\r"),
            "Escape-Char".to_string(),
        )
    };
    let mut out = head;
    for line in HELP_LINES {
        out.push_str(&line.replace('%', &key));
    }
    out
}

const TERMINATED: &str = "QEMU: Terminated\n\r";

/// What the escape handling asks the emulator to do, in input order.
#[derive(Debug, PartialEq, Eq)]
pub enum MuxAction {
    /// Bytes for the focused frontend.
    Input(Vec<u8>),
    Help,
    Exit,
    /// Flush disks of `-snapshot` drives (nothing to do here).
    Commit,
    /// A serial break; frontends have no break event here, so dropped.
    Break,
    SwitchFocus,
    ToggleTimestamps,
}

#[derive(Debug)]
pub struct MuxFrontend {
    pub fe: Frontend,
    /// The monitor printed its banner (QEMU's reset_seen).
    opened_seen: bool,
    /// The base opened while this human monitor had no focus: it hears
    /// `Opened` when it gets focus.
    pending_open: bool,
    /// Lost focus after showing its banner (its newline was printed).
    suspended: bool,
}

#[derive(Debug)]
pub struct MuxState {
    pub base: String,
    pub frontends: Vec<MuxFrontend>,
    pub focus: Option<usize>,
    got_escape: bool,
    timestamps: bool,
    timestamps_start_ms: Option<i64>,
    linestart: bool,
    /// Frontends attached from now on hear `Opened` at once.
    realized: bool,
}

impl MuxState {
    pub fn new(base: &str) -> Self {
        MuxState {
            base: base.to_string(),
            frontends: Vec::new(),
            focus: None,
            got_escape: false,
            timestamps: false,
            timestamps_start_ms: None,
            linestart: false,
            realized: false,
        }
    }

    /// QEMU's mux_proc_byte over a buffer.
    pub fn process_input(&mut self, data: &[u8]) -> Vec<MuxAction> {
        let mut out = Vec::new();
        let mut pending = Vec::new();
        let flush = |pending: &mut Vec<u8>, out: &mut Vec<MuxAction>| {
            if !pending.is_empty() {
                out.push(MuxAction::Input(std::mem::take(pending)));
            }
        };
        let esc = escape_char();
        for &ch in data {
            if self.got_escape {
                self.got_escape = false;
                if ch == esc {
                    pending.push(ch);
                    continue;
                }
                let action = match ch {
                    b'?' | b'h' => MuxAction::Help,
                    b'x' => MuxAction::Exit,
                    b's' => MuxAction::Commit,
                    b'b' => MuxAction::Break,
                    b'c' => MuxAction::SwitchFocus,
                    b't' => MuxAction::ToggleTimestamps,
                    _ => continue,
                };
                flush(&mut pending, &mut out);
                out.push(action);
            } else if ch == esc {
                self.got_escape = true;
            } else {
                pending.push(ch);
            }
        }
        flush(&mut pending, &mut out);
        out
    }

    /// Output with `[hh:mm:ss.mmm] ` before each line while timestamps
    /// are on; `now_ms` is the realtime clock.
    pub fn stamp_output(&mut self, data: &[u8], now_ms: i64) -> Vec<u8> {
        if !self.timestamps {
            return data.to_vec();
        }
        let mut out = Vec::with_capacity(data.len() + 16);
        for &b in data {
            if self.linestart {
                let start = *self.timestamps_start_ms.get_or_insert(now_ms);
                let ti = now_ms - start;
                let secs = ti / 1000;
                out.extend_from_slice(
                    format!(
                        "[{:02}:{:02}:{:02}.{:03}] ",
                        secs / 3600,
                        (secs / 60) % 60,
                        secs % 60,
                        ti % 1000
                    )
                    .as_bytes(),
                );
                self.linestart = false;
            }
            out.push(b);
            if b == b'\n' {
                self.linestart = true;
            }
        }
        out
    }

    fn toggle_timestamps(&mut self) {
        self.timestamps = !self.timestamps;
        self.timestamps_start_ms = None;
        self.linestart = false;
    }
}

/// The mux device itself; the emulator routes its traffic (`route_*`).
pub struct MuxChardev {
    state: MuxState,
}

impl MuxChardev {
    pub fn new(base: &str) -> Self {
        MuxChardev {
            state: MuxState::new(base),
        }
    }
}

impl CharBackend for MuxChardev {
    fn attach(&mut self, _fds: &mut FdRegistry) -> io::Result<()> {
        Ok(())
    }
    fn ready(&mut self, _: &mut FdRegistry, _: Token, _: bool, _: bool) -> Vec<CharEvent> {
        Vec::new()
    }
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        Ok(data.len())
    }
    fn is_open(&self) -> bool {
        true
    }
    fn be_open(&self) -> bool {
        self.state.realized
    }
    fn close(&mut self, _fds: &mut FdRegistry) {}
    fn filename(&self) -> String {
        "mux".to_string()
    }
    fn as_mux(&mut self) -> Option<&mut MuxState> {
        Some(&mut self.state)
    }
    fn is_mux(&self) -> bool {
        true
    }
}

// ---- routing ------------------------------------------------------------

fn state<'a>(emu: &'a mut Emulator, mux_id: &str) -> Option<&'a mut MuxState> {
    emu.chardev_mut(mux_id)?.backend.as_mux()
}

fn is_human_monitor(emu: &Emulator, fe: Frontend) -> bool {
    match fe {
        Frontend::Monitor(i) => matches!(emu.monitors.get(i), Some(Some(m)) if !m.is_qmp()),
        _ => false,
    }
}

/// Writes a frontend's output (or the mux's own text) to the base.
pub fn route_output(emu: &mut Emulator, mux_id: &str, data: &[u8]) {
    let now_ms = emu.clocks.now(ClockType::Realtime) / 1_000_000;
    let Some(dev) = emu.chardev_mut(mux_id) else {
        return;
    };
    if let Some(log) = dev.log.as_mut() {
        use std::io::Write;
        let _ = log.write_all(data);
    }
    let Some(st) = dev.backend.as_mux() else {
        return;
    };
    let out = st.stamp_output(data, now_ms);
    let base = st.base.clone();
    emu.chardev_output(&base, &out);
}

/// Hands `Opened` to a frontend, or keeps it for a human monitor that
/// has no focus.
fn open_frontend(emu: &mut Emulator, mux_id: &str, idx: usize) {
    let Some(st) = state(emu, mux_id) else { return };
    let focused = st.focus == Some(idx);
    let Some(fe) = st.frontends.get(idx).map(|f| f.fe) else {
        return;
    };
    if is_human_monitor(emu, fe) && !focused {
        if let Some(f) = state(emu, mux_id).and_then(|s| s.frontends.get_mut(idx)) {
            f.pending_open = true;
        }
        return;
    }
    if let Some(f) = state(emu, mux_id).and_then(|s| s.frontends.get_mut(idx)) {
        f.opened_seen = true;
        f.pending_open = false;
        f.suspended = false;
    }
    emu.dispatch_frontend(mux_id, fe, CharEvent::Opened);
}

fn focus_out(emu: &mut Emulator, mux_id: &str, idx: usize) {
    let Some(f) = state(emu, mux_id).and_then(|s| s.frontends.get_mut(idx)) else {
        return;
    };
    let fe = f.fe;
    let print_newline = f.opened_seen && !f.suspended;
    f.suspended = true;
    if print_newline && is_human_monitor(emu, fe) {
        route_output(emu, mux_id, b"\r\n");
    }
}

fn focus_in(emu: &mut Emulator, mux_id: &str, idx: usize) {
    let Some(f) = state(emu, mux_id).and_then(|s| s.frontends.get_mut(idx)) else {
        return;
    };
    let fe = f.fe;
    let (pending, seen) = (f.pending_open, f.opened_seen);
    f.suspended = false;
    if !is_human_monitor(emu, fe) {
        return;
    }
    if pending {
        open_frontend(emu, mux_id, idx);
    } else if seen {
        route_output(emu, mux_id, crate::monitor::hmp::PROMPT.as_bytes());
    }
}

/// Attaches a frontend; it takes focus, as in QEMU.
pub fn route_attach(emu: &mut Emulator, mux_id: &str, fe: Frontend) -> Result<(), String> {
    let Some(st) = state(emu, mux_id) else {
        return Err(format!("chardev \"{mux_id}\" not found"));
    };
    if st.frontends.len() >= MAX_FRONTENDS {
        return Err("Cannot add I/O handlers, MUX array is full".into());
    }
    st.frontends.push(MuxFrontend {
        fe,
        opened_seen: false,
        pending_open: false,
        suspended: false,
    });
    let idx = st.frontends.len() - 1;
    let old = st.focus.replace(idx);
    let realized = st.realized;
    if let Some(o) = old {
        focus_out(emu, mux_id, o);
    }
    focus_in(emu, mux_id, idx);
    if realized {
        let id = mux_id.to_string();
        emu.schedule_bh(Box::new(move |emu| open_frontend(emu, &id, idx)));
    }
    Ok(())
}

/// After start-up (QEMU's muxes_realize_done): every frontend attached so
/// far hears `Opened`, later ones at attach.
pub fn realize(emu: &mut Emulator, mux_id: &str) {
    let Some(st) = state(emu, mux_id) else { return };
    if st.realized {
        return;
    }
    st.realized = true;
    let n = st.frontends.len();
    for i in 0..n {
        open_frontend(emu, mux_id, i);
    }
}

/// An event of a mux's base device.
pub fn route_base_event(emu: &mut Emulator, base: &str, ev: CharEvent) {
    let mux_id = find_mux(emu, base);
    let Some(mux_id) = mux_id else { return };
    match ev {
        CharEvent::Data(bytes) => {
            let actions = match state(emu, &mux_id) {
                Some(st) => st.process_input(&bytes),
                None => return,
            };
            for a in actions {
                run_action(emu, &mux_id, a);
                if emu.exit.is_some() {
                    return;
                }
            }
        }
        CharEvent::Opened => {
            // Before start-up ends (a `server,wait` client), `realize`
            // opens every frontend once.
            let n = match state(emu, &mux_id) {
                Some(s) if s.realized => s.frontends.len(),
                _ => 0,
            };
            for i in 0..n {
                open_frontend(emu, &mux_id, i);
            }
        }
        CharEvent::Closed => {
            let fes: Vec<Frontend> = state(emu, &mux_id)
                .map(|s| s.frontends.iter().map(|f| f.fe).collect())
                .unwrap_or_default();
            for fe in fes {
                emu.dispatch_frontend(&mux_id, fe, CharEvent::Closed);
            }
        }
    }
}

/// The mux whose base is `base`.
fn find_mux(emu: &mut Emulator, base: &str) -> Option<String> {
    let ids: Vec<String> = emu
        .chardevs
        .iter()
        .filter(|c| c.backend.is_mux())
        .map(|c| c.id.clone())
        .collect();
    ids.into_iter()
        .find(|id| state(emu, id).is_some_and(|s| s.base == base))
}

fn run_action(emu: &mut Emulator, mux_id: &str, a: MuxAction) {
    match a {
        MuxAction::Input(bytes) => {
            let fe = state(emu, mux_id)
                .and_then(|s| s.focus.and_then(|f| s.frontends.get(f)).map(|f| f.fe));
            if let Some(fe) = fe {
                emu.dispatch_frontend(mux_id, fe, CharEvent::Data(bytes));
            }
        }
        MuxAction::Help => route_output(emu, mux_id, help_text(escape_char()).as_bytes()),
        MuxAction::Exit => {
            route_output(emu, mux_id, TERMINATED.as_bytes());
            emu.exit = Some(ExitReason::Shutdown);
        }
        MuxAction::Commit | MuxAction::Break => {}
        MuxAction::SwitchFocus => {
            let Some(st) = state(emu, mux_id) else { return };
            let n = st.frontends.len();
            let Some(old) = st.focus.filter(|_| n > 0) else {
                return;
            };
            let new = (old + 1) % n;
            st.focus = Some(new);
            focus_out(emu, mux_id, old);
            focus_in(emu, mux_id, new);
        }
        MuxAction::ToggleTimestamps => {
            if let Some(st) = state(emu, mux_id) {
                st.toggle_timestamps();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_bytes_pass_through() {
        let mut m = MuxState::new("b");
        assert_eq!(
            m.process_input(b"abc"),
            vec![MuxAction::Input(b"abc".to_vec())]
        );
    }

    #[test]
    fn escapes_split_input_and_act() {
        let mut m = MuxState::new("b");
        assert_eq!(
            m.process_input(b"ab\x01cde\x01h\x01\x01z\x01q"),
            vec![
                MuxAction::Input(b"ab".to_vec()),
                MuxAction::SwitchFocus,
                MuxAction::Input(b"de".to_vec()),
                MuxAction::Help,
                MuxAction::Input(b"\x01z".to_vec()),
            ]
        );
    }

    #[test]
    fn escape_split_across_reads() {
        let mut m = MuxState::new("b");
        assert_eq!(
            m.process_input(b"a\x01"),
            vec![MuxAction::Input(b"a".to_vec())]
        );
        assert_eq!(m.process_input(b"x"), vec![MuxAction::Exit]);
    }

    #[test]
    fn other_escapes() {
        let mut m = MuxState::new("b");
        assert_eq!(
            m.process_input(b"\x01?\x01s\x01b\x01t"),
            vec![
                MuxAction::Help,
                MuxAction::Commit,
                MuxAction::Break,
                MuxAction::ToggleTimestamps
            ]
        );
    }

    #[test]
    fn help_text_names_the_escape_key() {
        let h = help_text(DEFAULT_ESCAPE);
        assert!(h.starts_with("\n\rC-a h    print this help\n\r"));
        assert!(h.ends_with("C-a C-a  sends C-a\n\r"));
        let h = help_text(0x1d + 3);
        assert!(h.starts_with("\n\rEscape-Char set to Ascii: 0x20\n\r\n\rEscape-Char h    print"));
    }

    #[test]
    fn timestamps_prefix_each_line_after_the_first_newline() {
        let mut m = MuxState::new("b");
        m.toggle_timestamps();
        assert_eq!(m.stamp_output(b"ab\n", 5000), b"ab\n");
        assert_eq!(
            m.stamp_output(b"cd\nef", 5000),
            b"[00:00:00.000] cd\n[00:00:00.000] ef"
        );
        assert_eq!(
            m.stamp_output(b"\ng", 3_723_004 + 5000),
            b"\n[01:02:03.004] g"
        );
        m.toggle_timestamps();
        assert_eq!(m.stamp_output(b"x\ny", 0), b"x\ny");
    }
}
