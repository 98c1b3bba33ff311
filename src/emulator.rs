//! The emulator: all process state in one struct, owned by the main loop
//! thread (and, once vCPUs exist, guarded by the big lock). Subsystems are
//! fields; the main loop routes ready fds, bottom halves and timers to them.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::chardev::{CharEvent, Chardev, ChardevError, FdRegistry, Frontend};
use crate::fdsets::FdSets;
use crate::machine::Machine;
use crate::main_loop::{ClockType, Clocks, FdWatch, Readiness, TimerId, TimerList, Token};
use crate::monitor::Monitor;
use crate::qom::Qom;
use crate::qtest::Qtest;
use crate::runstate::RunState;
use crate::vl::Config;

/// Who owns a registered fd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FdOwner {
    Chardev(String),
    Signals,
    NbdListener,
    NbdClient(block::nbd::ClientId),
}

/// Work scheduled to run on the main loop after the current dispatch.
pub type BottomHalf = Box<dyn FnOnce(&mut Emulator) + Send>;

/// What a timer does when it fires.
pub type TimerAction = Box<dyn FnOnce(&mut Emulator) + Send>;

/// Why the process is leaving the main loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    Shutdown,
    Signal(i32),
}

/// Requests raised anywhere (QMP, devices, signals) and handled once per
/// loop iteration, as QEMU's main_loop_should_exit does.
#[derive(Default)]
pub struct Requests {
    pub shutdown: bool,
    pub reset: bool,
    pub powerdown: bool,
    pub wakeup: bool,
    /// A vCPU hit an error KVM cannot handle: stop in `internal-error`.
    pub internal_error: bool,
    pub signal: Option<(i32, i32)>,
}

pub struct Emulator {
    pub name: Option<String>,
    pub uuid: [u8; 16],
    pub no_shutdown: bool,
    pub no_reboot: bool,
    pub fdwatch: FdWatch,
    pub clocks: Clocks,
    pub timers: TimerList<TimerAction>,
    bottom_halves: Vec<BottomHalf>,
    pub owners: HashMap<Token, FdOwner>,
    /// In creation order, as query-chardev lists them.
    pub chardevs: Vec<Chardev>,
    pub monitors: Vec<Option<Monitor>>,
    pub runstate: RunState,
    pub requests: Requests,
    pub exit: Option<ExitReason>,
    pub qom: Qom,
    pub fdsets: FdSets,
    pub qtest: Option<Qtest>,
    pub machine: Machine,
    /// `-incoming` given: `cont` only sets autostart until migration ends.
    pub autostart: bool,
    pub pidfile: Option<String>,
    /// Chardev ids of the serial ports, COM1 first.
    pub serial_chardevs: Vec<Option<String>>,
    pub dump: crate::qmp_cmds::dump::DumpState,
    /// The host-clock timer serving the RTC's periodic/alarm/update
    /// interrupts, with the deadline it was armed for.
    rtc_timer: Option<(TimerId, i64)>,
    /// The NBD server, while one runs.
    pub nbd: Option<crate::nbd::NbdState>,
    /// The block graph: every node and backend.
    pub block: block::BlockGraph,
    /// What the monitor keeps about backends (legacy drives, trays).
    pub blockdevs: crate::blockdev::BlockDevs,
    /// Block jobs; `qmp_cmds::jobs::drive` schedules their steps.
    pub jobs: block::jobs::JobList,
    /// Input routing (send-key queue, HMP mouse buttons).
    pub input: crate::qmp_cmds::input::InputState,
    signal_pipe: Option<RawFd>,
    exit_reason_signal: Option<i32>,
}

impl Emulator {
    pub fn new(cfg: &Config, machine: Machine) -> std::io::Result<Self> {
        let qtest_clock = machine.accel == crate::vl::config::Accel::Qtest;
        Ok(Emulator {
            name: cfg.name.clone(),
            uuid: cfg.uuid.unwrap_or([0; 16]),
            no_shutdown: cfg.no_shutdown,
            no_reboot: cfg.no_reboot,
            fdwatch: FdWatch::new()?,
            clocks: Clocks::new(qtest_clock),
            timers: TimerList::default(),
            bottom_halves: Vec::new(),
            owners: HashMap::new(),
            chardevs: Vec::new(),
            monitors: Vec::new(),
            runstate: RunState::Prelaunch,
            requests: Requests::default(),
            exit: None,
            qom: Qom::new(),
            fdsets: FdSets::default(),
            qtest: None,
            machine,
            autostart: true,
            pidfile: cfg.pidfile.clone(),
            serial_chardevs: Vec::new(),
            dump: Default::default(),
            rtc_timer: None,
            nbd: None,
            block: block::BlockGraph::new(),
            blockdevs: Default::default(),
            jobs: Default::default(),
            input: Default::default(),
            signal_pipe: None,
            exit_reason_signal: None,
        })
    }

    // ---- bottom halves and timers -------------------------------------

    pub fn schedule_bh(&mut self, bh: BottomHalf) {
        self.bottom_halves.push(bh);
    }

    pub fn add_timer(&mut self, clock: ClockType, delay_ns: i64, action: TimerAction) -> TimerId {
        let deadline = self.clocks.now(clock).saturating_add(delay_ns);
        self.timers.add(clock, deadline, action)
    }

    /// Runs timers whose deadline passed (also after qtest moves the
    /// virtual clock).
    pub fn run_expired_timers(&mut self) {
        for (_, action) in self.timers.take_expired(&self.clocks) {
            action(self);
        }
    }

    fn run_bottom_halves(&mut self) {
        // A bottom half scheduled by another runs on the next iteration.
        let pending = std::mem::take(&mut self.bottom_halves);
        for bh in pending {
            bh(self);
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.bottom_halves.is_empty()
            || self.has_pending_requests()
            || self.fdwatch.has_always_ready()
        {
            return Some(Duration::ZERO);
        }
        self.timers
            .next_timeout_ns(&self.clocks)
            .map(|ns| Duration::from_nanos(ns.max(0) as u64))
    }

    // ---- chardevs ------------------------------------------------------

    pub fn chardev_index(&self, id: &str) -> Option<usize> {
        self.chardevs.iter().position(|c| c.id == id)
    }

    pub fn chardev(&self, id: &str) -> Option<&Chardev> {
        self.chardevs.iter().find(|c| c.id == id)
    }

    pub fn chardev_mut(&mut self, id: &str) -> Option<&mut Chardev> {
        self.chardevs.iter_mut().find(|c| c.id == id)
    }

    /// Creates and registers a chardev from `-chardev`-style options.
    pub fn add_chardev(&mut self, opts: &crate::vl::opts::QemuOpts) -> Result<(), ChardevError> {
        self.chardev_add_opts(opts)
    }

    pub fn set_owners(&mut self, id: &str, added: &[Token], removed: &[Token]) {
        for t in removed {
            self.owners.remove(t);
        }
        for t in added {
            self.owners.insert(*t, FdOwner::Chardev(id.to_string()));
        }
    }

    /// Connects a frontend; it hears `Opened` at once when the device is
    /// already usable.
    pub fn attach_frontend(&mut self, id: &str, fe: Frontend) -> Result<(), String> {
        self.chardev_attach(id, fe)
    }

    /// Writes frontend output to a chardev.
    pub fn chardev_write(&mut self, id: &str, data: &[u8]) {
        self.chardev_output(id, data);
    }

    fn chardev_ready(&mut self, id: &str, r: Readiness) {
        self.chardev_event_ready(id, r);
    }

    /// Hands a chardev event to its frontend.
    pub fn deliver(&mut self, id: &str, ev: CharEvent) {
        let Some(dev) = self.chardev_mut(id) else {
            return;
        };
        if ev == CharEvent::Closed {
            dev.discard_output();
        }
        if let Some(fe) = dev.frontend {
            self.dispatch_frontend(id, fe, ev);
        }
    }

    /// Calls one frontend's handler (`id` names the chardev it reads).
    pub fn dispatch_frontend(&mut self, id: &str, fe: Frontend, ev: CharEvent) {
        match fe {
            Frontend::Monitor(i) => crate::monitor::handle_char_event(self, i, ev),
            Frontend::Qtest => crate::qtest::handle_char_event(self, ev),
            Frontend::Serial(i) => self.machine.serial_input(i, ev),
            Frontend::Mux => self.chardev_mux_base_event(id, ev),
        }
    }

    /// Descriptors a unix-socket peer passed, for getfd/add-fd.
    pub fn take_received_fds(&mut self, id: &str) -> Vec<std::os::fd::OwnedFd> {
        self.chardev_received_fds(id)
    }

    /// The monitor's current CPU (HMP `cpu N`), 0 by default.
    pub fn monitor_cpu(&self, mon: usize) -> usize {
        match self.monitors.get(mon) {
            Some(Some(m)) => m.cpu,
            _ => 0,
        }
    }

    // ---- events ---------------------------------------------------------

    /// Sends an event to every QMP monitor past capabilities negotiation.
    pub fn emit_event(&mut self, name: &str, data: Option<Value>) {
        let host_us = Clocks::host_ns() / 1000;
        let mut ev = Map::new();
        ev.insert("event".into(), json!(name));
        if let Some(d) = data {
            ev.insert("data".into(), d);
        }
        ev.insert(
            "timestamp".into(),
            json!({"seconds": host_us / 1_000_000, "microseconds": host_us % 1_000_000}),
        );
        let ev = Value::Object(ev);
        for i in 0..self.monitors.len() {
            crate::monitor::send_event(self, i, &ev);
        }
    }

    // ---- run state ---------------------------------------------------

    pub fn set_runstate(&mut self, to: RunState) {
        if self.runstate != to && !self.runstate.can_become(to) {
            eprintln!(
                "qemu-system-x86_64: invalid runstate transition: '{}' -> '{}'",
                self.runstate.name(),
                to.name()
            );
            // QEMU aborts here; a bug in a transition must not take the
            // guest down, so the state is left as it was.
            return;
        }
        self.runstate = to;
    }

    pub fn is_running(&self) -> bool {
        self.runstate == RunState::Running
    }

    /// vm_stop(): pauses vCPUs and virtual time, emits STOP when the VM
    /// was running.
    pub fn vm_stop(&mut self, state: RunState) {
        if self.is_running() {
            self.machine.pause();
            self.clocks.pause_virtual();
            self.set_runstate(state);
            self.emit_event("STOP", None);
        }
    }

    /// vm_start(): resumes vCPUs and emits RESUME.
    pub fn vm_start(&mut self) {
        if !self.is_running() {
            self.clocks.resume_virtual();
            self.set_runstate(RunState::Running);
            self.machine.resume();
            self.emit_event("RESUME", None);
        }
    }

    pub fn request_reset(&mut self) {
        if self.no_reboot {
            self.requests.shutdown = true;
        } else {
            self.requests.reset = true;
        }
    }

    fn has_pending_requests(&self) -> bool {
        let r = &self.requests;
        r.shutdown || r.reset || r.powerdown || r.wakeup || r.internal_error || r.signal.is_some()
    }

    /// QEMU's main_loop_should_exit: acts on requests in QEMU's order.
    fn handle_requests(&mut self) {
        if let Some((sig, pid)) = self.requests.signal.take() {
            // qtest drivers kill us on purpose; QEMU keeps quiet then.
            if self.qtest.is_none() {
                if pid == 0 {
                    eprintln!("qemu-system-x86_64: terminating on signal {sig}");
                } else {
                    eprintln!("qemu-system-x86_64: terminating on signal {sig} from pid {pid}");
                }
            }
            self.no_shutdown = false;
            self.requests.shutdown = true;
            self.exit_reason_signal = Some(sig);
        }
        if std::mem::take(&mut self.requests.internal_error) {
            self.vm_stop(RunState::InternalError);
        }
        if std::mem::take(&mut self.requests.shutdown) {
            self.emit_event("SHUTDOWN", None);
            if self.no_shutdown {
                self.vm_stop(RunState::Shutdown);
            } else {
                self.exit = Some(match self.exit_reason_signal {
                    Some(s) => ExitReason::Signal(s),
                    None => ExitReason::Shutdown,
                });
                return;
            }
        }
        if std::mem::take(&mut self.requests.reset) {
            self.machine.reset();
            self.emit_event("RESET", None);
            if self.runstate != RunState::Running && self.runstate != RunState::Inmigrate {
                self.set_runstate(RunState::Prelaunch);
            }
        }
        if std::mem::take(&mut self.requests.wakeup) {
            self.machine.wakeup();
            self.emit_event("WAKEUP", None);
        }
        if std::mem::take(&mut self.requests.powerdown) {
            self.emit_event("POWERDOWN", None);
            self.machine.powerdown();
        }
        self.flush_machine_output();
        for ev in self.machine.take_events() {
            self.handle_machine_event(ev);
        }
    }

    fn handle_machine_event(&mut self, ev: crate::machine::MachineEvent) {
        use crate::machine::MachineEvent;
        match ev {
            MachineEvent::Reset => self.request_reset(),
            MachineEvent::Shutdown => self.requests.shutdown = true,
            MachineEvent::Suspend => {
                if self.runstate == RunState::Running {
                    self.machine.pause();
                    self.set_runstate(RunState::Suspended);
                    self.emit_event("SUSPEND", None);
                }
            }
            MachineEvent::Exit(code) => {
                // isa-debug-exit ends the process at once, as in QEMU.
                self.flush_machine_output();
                self.shutdown_cleanup();
                std::process::exit(code);
            }
            MachineEvent::RtcChange(offset) => {
                self.emit_event("RTC_CHANGE", Some(json!({"offset": offset})));
            }
            MachineEvent::Drive(ev) => crate::blockdev::device_io::drive_event(self, ev),
        }
    }

    /// Sends device output to its chardevs and qtest's IRQ lines.
    pub fn flush_machine_output(&mut self) {
        crate::blockdev::device_io::service(self);
        for (port, out) in self.machine.take_serial_output() {
            if let Some(Some(id)) = self.serial_chardevs.get(port).cloned() {
                self.chardev_write(&id, &out);
            }
        }
        for (line, level) in self.machine.take_irq_changes() {
            crate::qtest::irq_changed(self, line, level);
        }
        self.arm_rtc_timer();
    }

    /// Keeps one host-clock timer at the RTC's next deadline.
    fn arm_rtc_timer(&mut self) {
        let next = self.machine.pc().and_then(|pc| {
            pc.rtc
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .next_deadline()
        });
        if self.rtc_timer.map(|(_, d)| d) == next {
            return;
        }
        if let Some((id, _)) = self.rtc_timer.take() {
            self.timers.cancel(id);
        }
        if let Some(deadline) = next {
            let id = self.timers.add(
                ClockType::Host,
                deadline,
                Box::new(|emu: &mut Emulator| {
                    emu.rtc_timer = None;
                    if let Some(pc) = emu.machine.pc() {
                        pc.rtc
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .run_timers(hw::devices::rtc::rtc_clock_ns());
                    }
                    emu.flush_machine_output();
                }),
            );
            self.rtc_timer = Some((id, deadline));
        }
    }

    /// Wakes the main loop from another thread (vCPU exits, workers).
    pub fn wake_main_loop(&self) {
        let _ = self.fdwatch.notifier().notify();
    }

    // ---- the loop ------------------------------------------------------

    pub fn watch_signals(&mut self, fd: RawFd) -> std::io::Result<()> {
        let t = self.fdwatch.add(fd, true, false)?;
        self.owners.insert(t, FdOwner::Signals);
        self.signal_pipe = Some(fd);
        Ok(())
    }

    fn drain_signal_pipe(&mut self) {
        if let Some(fd) = self.signal_pipe {
            let mut buf = [0u8; 64];
            while let crate::sys::fd::ReadOutcome::Data(_) =
                crate::sys::fd::read_nonblocking(fd, &mut buf)
            {}
        }
        if let Some(sig) = crate::sys::signals::take_pending() {
            self.requests.signal = Some(sig);
        }
    }

    /// Dispatches one poll's results, then bottom halves, timers and
    /// requests, in QEMU's order.
    pub fn dispatch(&mut self, ready: &[Readiness]) {
        let extra: Vec<Readiness> = self.fdwatch.always_ready().collect();
        for r in ready.iter().chain(extra.iter()) {
            match self.owners.get(&r.token).cloned() {
                Some(FdOwner::Chardev(id)) => self.chardev_ready(&id, *r),
                Some(FdOwner::Signals) => self.drain_signal_pipe(),
                Some(FdOwner::NbdListener) => self.nbd_accept(),
                Some(FdOwner::NbdClient(id)) => self.nbd_client_ready(id),
                None => {}
            }
        }
        self.run_bottom_halves();
        self.run_expired_timers();
        crate::blockdev::flush_events(self);
        self.handle_requests();
    }

    /// What the loop needs to block outside the big lock.
    pub fn poll_plan(&self) -> (std::sync::Arc<polling::Poller>, Option<Duration>) {
        (self.fdwatch.notifier(), self.poll_timeout())
    }

    /// Flushes monitor output and tears chardevs down (sockets unlinked,
    /// ptys closed) before exit.
    pub fn shutdown_cleanup(&mut self) {
        for i in 0..self.chardevs.len() {
            let dev = &mut self.chardevs[i];
            if dev.has_pending_output() {
                dev.flush(&mut self.fdwatch);
            }
        }
        let ids: Vec<String> = self.chardevs.iter().map(|c| c.id.clone()).collect();
        for id in ids {
            if let Some(idx) = self.chardev_index(&id) {
                let mut dev = self.chardevs.remove(idx);
                let mut reg = FdRegistry::new(&mut self.fdwatch);
                dev.backend.close(&mut reg);
            }
        }
        crate::blockdev::device_io::drain_all(self);
        self.machine.shutdown();
        self.jobs.cancel_all(&mut self.block);
        self.blockdevs.cleanup(&mut self.block);
        if let Some(p) = self.pidfile.take() {
            let _ = std::fs::remove_file(p);
        }
        crate::chardev::stdio::restore_terminal();
    }
}
