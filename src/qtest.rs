//! The qtest accelerator's line protocol (`-qtest`): a test program reads
//! and writes guest memory and I/O ports, moves the virtual clock and
//! watches interrupt lines, with no guest code running.

use std::io::Write;

use crate::chardev::{CharEvent, Frontend};
use crate::emulator::Emulator;
use crate::main_loop::ClockType;

/// Longest command line accepted; longer input is discarded up to the
/// next newline so a runaway client cannot grow memory.
const MAX_LINE: usize = 64 << 20;

pub struct Qtest {
    pub chardev: String,
    line: Vec<u8>,
    overflow: bool,
    log: Option<Box<dyn Write + Send>>,
    /// QOM path whose interrupt lines are intercepted.
    pub irq_intercept: Option<String>,
}

impl Qtest {
    pub fn new(chardev: String, log: Option<Box<dyn Write + Send>>) -> Self {
        Qtest {
            chardev,
            line: Vec::new(),
            overflow: false,
            log,
            irq_intercept: None,
        }
    }
}

/// Sets up the qtest frontend on chardev `id`.
pub fn start(emu: &mut Emulator, id: &str, log_path: Option<&str>) -> Result<(), String> {
    let log: Option<Box<dyn Write + Send>> = match log_path {
        None => None,
        Some("/dev/null") => None,
        Some("stderr") | Some("/dev/stderr") => Some(Box::new(std::io::stderr())),
        Some(p) => Some(Box::new(
            std::fs::File::create(p).map_err(|e| format!("cannot open qtest log {p}: {e}"))?,
        )),
    };
    emu.qtest = Some(Qtest::new(id.to_string(), log));
    emu.attach_frontend(id, Frontend::Qtest)
}

pub fn handle_char_event(emu: &mut Emulator, ev: CharEvent) {
    let data = match ev {
        CharEvent::Data(d) => d,
        CharEvent::Opened | CharEvent::Closed => {
            if let Some(q) = emu.qtest.as_mut() {
                q.line.clear();
                q.irq_intercept = None;
            }
            return;
        }
    };
    let mut lines = Vec::new();
    if let Some(q) = emu.qtest.as_mut() {
        for b in data {
            if b == b'\n' {
                if !q.overflow {
                    lines.push(String::from_utf8_lossy(&q.line).into_owned());
                }
                q.line.clear();
                q.overflow = false;
            } else if q.line.len() < MAX_LINE {
                q.line.push(b);
            } else {
                q.overflow = true;
            }
        }
    }
    for l in lines {
        let reply = process_line(emu, &l);
        // Interrupt changes the command caused go out before its reply.
        emu.flush_machine_output();
        send(emu, &reply);
    }
}

fn send(emu: &mut Emulator, text: &str) {
    let Some(q) = emu.qtest.as_mut() else { return };
    if let Some(log) = q.log.as_mut() {
        let _ = write!(log, "[S] {text}");
    }
    let id = q.chardev.clone();
    emu.chardev_write(&id, text.as_bytes());
}

/// Reports an intercepted interrupt line change to the client.
pub fn irq_changed(emu: &mut Emulator, line: u32, level: bool) {
    if emu
        .qtest
        .as_ref()
        .is_some_and(|q| q.irq_intercept.is_some())
    {
        let msg = format!("IRQ {} {line}\n", if level { "raise" } else { "lower" });
        send(emu, &msg);
    }
}

/// strtoull-style: decimal, 0x hex, leading-0 octal; garbage reads as 0.
fn num(word: Option<&&str>) -> Option<u64> {
    let w = word?;
    let (neg, t) = match w.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, *w),
    };
    let v = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()?
    } else if t.len() > 1 && t.starts_with('0') {
        u64::from_str_radix(&t[1..], 8).ok()?
    } else {
        t.parse().ok()?
    };
    Some(if neg { v.wrapping_neg() } else { v })
}

fn hex_nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// Largest single read/write/memset the protocol accepts, so a client
/// cannot make us allocate without bound.
const MAX_TRANSFER: u64 = 256 << 20;

/// Moves the virtual clock to `target`, stopping at each timer deadline on
/// the way so timers fire in order, as QEMU's qtest_clock_warp.
fn clock_warp(emu: &mut Emulator, target: i64) {
    loop {
        let now = emu.clocks.virtual_ns();
        if now >= target {
            break;
        }
        let next = emu
            .timers
            .next_deadline(ClockType::Virtual)
            .filter(|d| *d > now && *d <= target)
            .unwrap_or(target);
        emu.clocks.qtest_set(next);
        block::stats::set_qtest_clock(emu.clocks.virtual_ns());
        emu.run_expired_timers();
    }
    emu.run_expired_timers();
}

pub fn process_line(emu: &mut Emulator, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    if let Some(q) = emu.qtest.as_mut() {
        if let Some(log) = q.log.as_mut() {
            let _ = writeln!(log, "[R] {line}");
        }
    }
    let Some(cmd) = words.first().copied() else {
        return "FAIL Unknown command ''\n".to_string();
    };
    let missing = || "FAIL missing argument\n".to_string();
    match cmd {
        "outb" | "outw" | "outl" => {
            let (Some(addr), Some(val)) = (num(words.get(1)), num(words.get(2))) else {
                return missing();
            };
            let bytes = (val as u32).to_le_bytes();
            let n = match cmd {
                "outb" => 1,
                "outw" => 2,
                _ => 4,
            };
            emu.machine.pio_write(addr as u16, &bytes[..n]);
            "OK\n".into()
        }
        "inb" | "inw" | "inl" => {
            let Some(addr) = num(words.get(1)) else {
                return missing();
            };
            let n = match cmd {
                "inb" => 1,
                "inw" => 2,
                _ => 4,
            };
            let mut buf = [0u8; 4];
            emu.machine.pio_read(addr as u16, &mut buf[..n]);
            format!("OK 0x{:04x}\n", u32::from_le_bytes(buf))
        }
        "writeb" | "writew" | "writel" | "writeq" => {
            let (Some(addr), Some(val)) = (num(words.get(1)), num(words.get(2))) else {
                return missing();
            };
            let n = match cmd {
                "writeb" => 1,
                "writew" => 2,
                "writel" => 4,
                _ => 8,
            };
            emu.machine.write_phys(addr, &val.to_le_bytes()[..n]);
            "OK\n".into()
        }
        "readb" | "readw" | "readl" | "readq" => {
            let Some(addr) = num(words.get(1)) else {
                return missing();
            };
            let n = match cmd {
                "readb" => 1,
                "readw" => 2,
                "readl" => 4,
                _ => 8,
            };
            let mut buf = [0u8; 8];
            emu.machine.read_phys(addr, &mut buf[..n]);
            format!("OK 0x{:016x}\n", u64::from_le_bytes(buf))
        }
        "read" | "b64read" => {
            let (Some(addr), Some(len)) = (num(words.get(1)), num(words.get(2))) else {
                return missing();
            };
            if len > MAX_TRANSFER {
                return "ERR invalid argument size\n".into();
            }
            let mut data = vec![0u8; len as usize];
            emu.machine.read_phys(addr, &mut data);
            if cmd == "read" {
                let mut s = String::with_capacity(len as usize * 2 + 8);
                s.push_str("OK 0x");
                for b in &data {
                    s.push_str(&format!("{b:02x}"));
                }
                s.push('\n');
                s
            } else {
                format!("OK {}\n", crate::base64::encode(&data))
            }
        }
        "write" => {
            let (Some(addr), Some(len), Some(hex)) =
                (num(words.get(1)), num(words.get(2)), words.get(3))
            else {
                return missing();
            };
            if hex.len() < 3 {
                return "ERR invalid argument size\n".into();
            }
            if len > MAX_TRANSFER {
                return "ERR invalid argument size\n".into();
            }
            let h = hex.as_bytes();
            let data: Vec<u8> = (0..len as usize)
                .map(|i| {
                    if i * 2 + 4 <= h.len() {
                        (hex_nibble(h[i * 2 + 2]) << 4) | hex_nibble(h[i * 2 + 3])
                    } else {
                        0
                    }
                })
                .collect();
            emu.machine.write_phys(addr, &data);
            "OK\n".into()
        }
        "b64write" => {
            let (Some(addr), Some(len), Some(b64)) =
                (num(words.get(1)), num(words.get(2)), words.get(3))
            else {
                return missing();
            };
            if b64.len() < 3 {
                return "ERR invalid argument size\n".into();
            }
            let mut data = crate::base64::decode(b64);
            data.truncate(len.min(MAX_TRANSFER) as usize);
            emu.machine.write_phys(addr, &data);
            "OK\n".into()
        }
        "memset" => {
            let (Some(addr), Some(len), Some(pat)) =
                (num(words.get(1)), num(words.get(2)), num(words.get(3)))
            else {
                return missing();
            };
            if len > MAX_TRANSFER {
                return "ERR invalid argument size\n".into();
            }
            if len > 0 {
                let data = vec![pat as u8; len as usize];
                emu.machine.write_phys(addr, &data);
            }
            "OK\n".into()
        }
        "clock_step" if emu.clocks.is_qtest() => {
            let now = emu.clocks.virtual_ns();
            let step = match words.get(1) {
                Some(_) => num(words.get(1)).unwrap_or(0) as i64,
                None => emu
                    .timers
                    .next_deadline(ClockType::Virtual)
                    .map_or(0, |d| (d - now).max(0)),
            };
            clock_warp(emu, now.saturating_add(step));
            format!("OK {}\n", emu.clocks.virtual_ns())
        }
        "clock_set" if emu.clocks.is_qtest() => {
            let Some(ns) = num(words.get(1)) else {
                return missing();
            };
            clock_warp(emu, ns as i64);
            format!("OK {}\n", emu.clocks.virtual_ns())
        }
        "irq_intercept_in" | "irq_intercept_out" => {
            let Some(path) = words.get(1) else {
                return missing();
            };
            if !emu.qom.path_exists(path) {
                return "FAIL Unknown device\n".into();
            }
            let q = emu.qtest.as_mut();
            match q {
                Some(q) => match &q.irq_intercept {
                    Some(p) if p != path => "FAIL IRQ intercept already enabled\n".into(),
                    _ => {
                        q.irq_intercept = Some(path.to_string());
                        "OK\n".into()
                    }
                },
                None => "FAIL Unknown device\n".into(),
            }
        }
        other => format!("FAIL Unknown command '{other}'\n"),
    }
}
