//! The emulator's side of chardevs: creating them (from `-chardev`-style
//! options or QMP specs, `mux=on` included), removing them, attaching
//! frontends, routing output, readiness, timers and events, and listing
//! them as query-chardev does.

use std::os::fd::OwnedFd;

use super::fd::FdChardev;
use super::mux::{self, MuxChardev};
use super::null::NullChardev;
use super::pty::PtyChardev;
use super::ringbuf::RingbufChardev;
use super::socket::SocketChardev;
use super::spec::{self, Backend, ChardevSpec};
use super::stdio::StdioChardev;
use super::testdev::TestdevChardev;
use super::udp::UdpChardev;
use super::{CharBackend, CharEvent, Chardev, ChardevError, FdRegistry, Frontend};
use crate::emulator::Emulator;
use crate::main_loop::{ClockType, Readiness};
use crate::vl::opts::QemuOpts;

/// One query-chardev entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChardevInfo {
    pub label: String,
    pub filename: String,
    pub frontend_open: bool,
}

fn open_logfile(path: &str, append: bool) -> Result<std::fs::File, ChardevError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .append(append)
        .truncate(!append)
        .mode(0o666)
        .open(path)
        .map_err(|e| {
            ChardevError::Msg(crate::sys::oserror::with_errno(
                &format!("Unable to open logfile {path}"),
                &e,
            ))
        })
}

/// Builds the backend a spec describes.
fn create_backend(
    id: &str,
    spec: &ChardevSpec,
    passed_fd: Option<OwnedFd>,
) -> Result<Box<dyn CharBackend>, ChardevError> {
    Ok(match &spec.backend {
        Backend::File { input, out, append } => {
            Box::new(FdChardev::open_file(input.as_deref(), out, *append)?)
        }
        Backend::Serial { device } => Box::new(FdChardev::open_serial(device)?),
        Backend::Parallel { device } => Box::new(FdChardev::open_parallel(device)?),
        Backend::Pipe { device } => Box::new(FdChardev::open_pipe(device)?),
        Backend::Socket(s) => Box::new(SocketChardev::new(id, s, passed_fd)?),
        Backend::Udp { remote, local } => Box::new(UdpChardev::new(remote, local.as_ref())?),
        Backend::Pty => {
            let p = PtyChardev::new().map_err(|e| {
                ChardevError::Msg(crate::sys::oserror::with_errno("Failed to create PTY", &e))
            })?;
            if let Some(path) = p.pty_path() {
                eprintln!("char device redirected to {path} (label {id})");
            }
            Box::new(p)
        }
        Backend::Null => Box::new(NullChardev::new("null")),
        Backend::Vc => Box::new(NullChardev::new("vc")),
        Backend::Msmouse => Box::new(NullChardev::new("msmouse")),
        Backend::Testdev => Box::new(TestdevChardev::default()),
        Backend::Stdio { signal } => Box::new(StdioChardev::new(signal.unwrap_or(false))?),
        Backend::Ringbuf { size } => Box::new(RingbufChardev::new("ringbuf", *size)?),
        Backend::Memory { size } => Box::new(RingbufChardev::new("memory", *size)?),
        Backend::Mux { chardev } => Box::new(MuxChardev::new(chardev)),
        Backend::Braille | Backend::Console | Backend::Spicevmc | Backend::Spiceport => {
            return Err(ChardevError::msg("chardev backend not available"))
        }
    })
}

impl Emulator {
    /// `-chardev`, the legacy syntax and HMP `chardev-add`, as QEMU's
    /// qemu_chr_new_from_opts: with `mux=on` the device is created as
    /// `<id>-base` and a mux named `<id>` is put over it.
    pub fn chardev_add_opts(&mut self, opts: &QemuOpts) -> Result<(), ChardevError> {
        spec::validate_opts(opts)?;
        let Some(driver) = opts.get("backend") else {
            return Err(ChardevError::Msg(format!(
                "chardev: \"{}\" missing backend",
                opts.id.as_deref().unwrap_or("(null)")
            )));
        };
        let Some(id) = opts.id.clone() else {
            return Err(ChardevError::msg("chardev: no id specified"));
        };
        let spec = spec::from_opts(driver, opts)?;
        let muxed = opts.get_bool("mux", false).unwrap_or(false);
        if !muxed {
            self.chardev_add_spec(&id, &spec, None)?;
            self.mark_from_opts(&id);
            return Ok(());
        }
        let bid = format!("{id}-base");
        self.chardev_add_spec(&bid, &spec, None)?;
        let mux = ChardevSpec {
            backend: Backend::Mux {
                chardev: bid.clone(),
            },
            common: spec::Common::default(),
        };
        if let Err(e) = self.chardev_add_spec(&id, &mux, None) {
            let _ = self.chardev_remove(&bid);
            return Err(e);
        }
        self.mark_from_opts(&id);
        Ok(())
    }

    fn mark_from_opts(&mut self, id: &str) {
        if let Some(d) = self.chardev_mut(id) {
            d.from_opts = true;
        }
    }

    /// QMP `chardev-add` (and the common path of the others). Returns the
    /// pty path for a pty.
    pub fn chardev_add_spec(
        &mut self,
        id: &str,
        spec: &ChardevSpec,
        passed_fd: Option<OwnedFd>,
    ) -> Result<Option<String>, ChardevError> {
        if self.chardev(id).is_some() {
            return Err(ChardevError::Msg(format!("Chardev '{id}' already exists")));
        }
        if let Backend::Mux { chardev } = &spec.backend {
            match self.chardev(chardev) {
                None => {
                    return Err(ChardevError::Msg(format!(
                        "mux: base chardev {chardev} not found"
                    )))
                }
                Some(b) if b.frontend.is_some() => {
                    return Err(ChardevError::Msg(format!("Chardev '{chardev}' is busy")))
                }
                Some(_) => {}
            }
        }
        let log = match &spec.common.logfile {
            Some(p) => Some(open_logfile(p, spec.common.logappend)?),
            None => None,
        };
        let backend = create_backend(id, spec, passed_fd)?;
        let pty = backend.pty_path();
        let mut dev = Chardev::new(id.to_string(), backend);
        dev.log = log;
        let serial = dev.serial;
        self.chardevs.push(dev);
        let attached = self.with_backend(id, serial, |b, reg| b.attach(reg));
        if let Some(Err(e)) = attached {
            let _ = self.close_chardev(id);
            return Err(e.into());
        }
        crate::qom::chardev_added(self, id, spec.backend.kind());
        if let Backend::Mux { chardev } = &spec.backend {
            if let Some(b) = self.chardev_mut(chardev) {
                b.frontend = Some(Frontend::Mux);
            }
            let mid = id.to_string();
            self.schedule_bh(Box::new(move |emu| mux::realize(emu, &mid)));
        }
        Ok(pty)
    }

    /// Runs `f` on a backend with a registry, then applies what it
    /// registered and the timer it asked for.
    fn with_backend<R>(
        &mut self,
        id: &str,
        serial: u64,
        f: impl FnOnce(&mut dyn CharBackend, &mut FdRegistry) -> R,
    ) -> Option<R> {
        let idx = self
            .chardevs
            .iter()
            .position(|c| c.id == id && c.serial == serial)?;
        let dev = &mut self.chardevs[idx];
        let mut reg = FdRegistry::new(&mut self.fdwatch);
        let r = f(dev.backend.as_mut(), &mut reg);
        let (added, removed, timer) = (reg.added.clone(), reg.removed.clone(), reg.timer);
        dev.note_tokens(&reg);
        self.set_owners(id, &added, &removed);
        if let Some(ns) = timer {
            let id = id.to_string();
            self.add_timer(
                ClockType::Realtime,
                ns,
                Box::new(move |emu| emu.chardev_timer(&id, serial)),
            );
        }
        Some(r)
    }

    fn chardev_timer(&mut self, id: &str, serial: u64) {
        let events = self.with_backend(id, serial, |b, reg| b.timer(reg));
        for ev in events.unwrap_or_default() {
            self.deliver(id, ev);
        }
    }

    fn close_chardev(&mut self, id: &str) -> Option<Chardev> {
        let idx = self.chardev_index(id)?;
        let mut dev = self.chardevs.remove(idx);
        crate::qom::chardev_removed(self, id);
        let mut reg = FdRegistry::new(&mut self.fdwatch);
        dev.backend.close(&mut reg);
        let removed = reg.removed.clone();
        for t in removed.iter().chain(dev.tokens.iter()) {
            self.owners.remove(t);
        }
        for t in dev.tokens.clone() {
            self.fdwatch.remove(t);
        }
        Some(dev)
    }

    /// QMP/HMP `chardev-remove`: refused while a frontend uses it.
    pub fn chardev_remove(&mut self, id: &str) -> Result<(), String> {
        let Some(dev) = self.chardev_mut(id) else {
            return Err(format!("Chardev '{id}' not found"));
        };
        if dev.frontend_open() {
            return Err(format!("Chardev '{id}' is busy"));
        }
        let base = dev.backend.as_mux().map(|m| m.base.clone());
        self.close_chardev(id);
        if let Some(b) = base.and_then(|b| self.chardev_mut(&b)) {
            b.frontend = None;
        }
        Ok(())
    }

    /// Connects a frontend; it hears `Opened` (from a bottom half) when
    /// the device already counts as open.
    pub fn chardev_attach(&mut self, id: &str, fe: Frontend) -> Result<(), String> {
        let Some(dev) = self.chardev_mut(id) else {
            return Err(format!("chardev \"{id}\" not found"));
        };
        if dev.backend.is_mux() {
            return mux::route_attach(self, id, fe);
        }
        if dev.frontend.is_some() {
            return Err(format!("Chardev '{id}' is busy"));
        }
        dev.frontend = Some(fe);
        if dev.backend.be_open() {
            let id = id.to_string();
            self.schedule_bh(Box::new(move |emu| emu.deliver(&id, CharEvent::Opened)));
        }
        Ok(())
    }

    /// Frontend output to a chardev (through its mux if it is one).
    pub fn chardev_output(&mut self, id: &str, data: &[u8]) {
        let Some(idx) = self.chardev_index(id) else {
            return;
        };
        if self.chardevs[idx].backend.is_mux() {
            mux::route_output(self, id, data);
            return;
        }
        self.chardevs[idx].write(&mut self.fdwatch, data);
        self.check_exit_request(idx);
    }

    /// `testdev` asked to exit: leave now with its status, as QEMU.
    fn check_exit_request(&mut self, idx: usize) {
        if let Some(code) = self.chardevs[idx].backend.exit_request() {
            self.shutdown_cleanup();
            std::process::exit(code);
        }
    }

    /// A chardev's fd is ready.
    pub fn chardev_event_ready(&mut self, id: &str, r: Readiness) {
        let Some(idx) = self.chardev_index(id) else {
            return;
        };
        let dev = &mut self.chardevs[idx];
        if r.writable && dev.has_pending_output() {
            dev.flush(&mut self.fdwatch);
        }
        let serial = dev.serial;
        let events = self.with_backend(id, serial, |b, reg| {
            b.ready(reg, r.token, r.readable, r.writable)
        });
        for ev in events.unwrap_or_default() {
            self.deliver(id, ev);
        }
    }

    /// Events of a device that is a mux's base.
    pub fn chardev_mux_base_event(&mut self, id: &str, ev: CharEvent) {
        mux::route_base_event(self, id, ev);
    }

    /// Descriptors passed over a chardev (over a mux: over its base).
    pub fn chardev_received_fds(&mut self, id: &str) -> Vec<OwnedFd> {
        let Some(dev) = self.chardev_mut(id) else {
            return Vec::new();
        };
        match dev.backend.as_mux().map(|m| m.base.clone()) {
            Some(base) => self.chardev_received_fds(&base),
            None => dev.backend.take_received_fds(),
        }
    }

    /// query-chardev: newest first, as QEMU lists them. A mux's base
    /// counts as open for a frontend once the mux has one (QEMU hooks the
    /// base when the first frontend attaches).
    pub fn query_chardevs(&mut self) -> Vec<ChardevInfo> {
        let mut muxes: Vec<(String, bool)> = Vec::new();
        for c in self.chardevs.iter_mut() {
            if let Some(m) = c.backend.as_mux() {
                muxes.push((m.base.clone(), !m.frontends.is_empty()));
            }
        }
        self.chardevs
            .iter_mut()
            .rev()
            .map(|c| {
                let frontend_open = match c.frontend {
                    Some(Frontend::Mux) => muxes.iter().any(|(b, used)| *b == c.id && *used),
                    _ => c.frontend_open(),
                };
                ChardevInfo {
                    label: c.id.clone(),
                    filename: c.backend.filename(),
                    frontend_open,
                }
            })
            .collect()
    }

    /// Whether a chardev with this id was made from options (CLI, HMP),
    /// which HMP's chardev-add reports as a duplicate option id.
    pub fn chardev_from_opts(&self, id: &str) -> bool {
        self.chardev(id).is_some_and(|c| c.from_opts)
    }
}
