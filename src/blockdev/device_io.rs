//! Guest disk devices and the block layer: the IDE drives' block I/O runs
//! here, against the backends they are attached to, with the backends'
//! rerror/werror policies, io-status and BLOCK_IO_ERROR (QEMU's
//! blk_get_error_action / blk_error_action), and the drives' tray and lock
//! changes reach the monitor's view of the backend. Guest reads and writes
//! go through the backend's throttle group: one the group holds back stays
//! pending in its drive (busy, bus master active) until the group's timer
//! releases it; the vCPU never waits for it.
//!
//! Runs on the main loop or a vCPU thread with the big lock held; a stop
//! requested by an error policy happens from a bottom half, after the
//! BLOCK_IO_ERROR event, as QEMU's vmstop request does.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use block::{BlockError, BlockGraph};
use hw::devices::ide::{
    BlockIo, DriveEvent, DriveEventKind, DriveSlot, ErrorAction, IdeController,
};

use super::throttle::{self, Held};
use super::{BlockDevs, OnError};
use crate::emulator::Emulator;
use crate::runstate::RunState;
use block::throttle_group::Admission;

/// The callbacks a guest device takes from the monitor (QEMU's BlockDevOps
/// change_media_cb and eject_request_cb), for one IDE slot.
#[derive(Clone)]
pub struct DeviceOps {
    pub ctrl: Arc<Mutex<IdeController>>,
    pub slot: DriveSlot,
}

impl std::fmt::Debug for DeviceOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceOps(ide{}.{})", self.slot.bus, self.slot.unit)
    }
}

impl PartialEq for DeviceOps {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(&self.ctrl, &o.ctrl) && self.slot == o.slot
    }
}

impl Eq for DeviceOps {}

impl DeviceOps {
    fn ctrl(&self) -> std::sync::MutexGuard<'_, IdeController> {
        self.ctrl.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The medium was loaded or taken out; `sectors` is its new size.
    pub fn change_media(&self, load: bool, sectors: u64) {
        self.ctrl().change_media(self.slot, load, sectors);
    }

    pub fn eject_request(&self, force: bool) {
        self.ctrl().eject_request(self.slot, force);
    }
}

/// A backend's medium size in 512-byte sectors (0 without a medium).
pub fn medium_sectors(graph: &BlockGraph, backend: &str) -> u64 {
    graph
        .backend(backend)
        .and_then(|b| b.length().ok())
        .map_or(0, |l| l / 512)
}

/// Which backend sits behind each IDE slot (None: an empty anonymous CD).
#[derive(Clone, Debug, Default)]
pub struct SlotMap {
    pub slots: Vec<(DriveSlot, Option<String>)>,
}

impl SlotMap {
    pub fn backend(&self, slot: DriveSlot) -> Option<&str> {
        self.slots
            .iter()
            .find(|(s, _)| *s == slot)
            .and_then(|(_, b)| b.as_deref())
    }
}

fn errno_of(e: &BlockError) -> i32 {
    e.errno_value()
}

/// BlockIo over the graph's backends for one service pass.
struct GraphIo<'a> {
    graph: &'a BlockGraph,
    devs: &'a mut BlockDevs,
    events: Vec<Value>,
    stop: bool,
    /// The controller, for the tickets of requests a throttle group holds.
    ctrl: Arc<Mutex<IdeController>>,
    /// Throttle clock now.
    now: i64,
    /// A throttle group queued a request (its timer must be armed).
    queued: bool,
}

impl GraphIo<'_> {
    fn backend(&self, slot: DriveSlot) -> Option<&block::Backend> {
        let name = self.devs.slots.backend(slot)?;
        self.graph.backend(name)
    }
}

impl BlockIo for GraphIo<'_> {
    fn length(&mut self, slot: DriveSlot) -> u64 {
        self.backend(slot)
            .and_then(|b| b.length().ok())
            .unwrap_or(0)
    }

    fn read(&mut self, slot: DriveSlot, offset: u64, buf: &mut [u8]) -> Result<(), i32> {
        let b = self.backend(slot).ok_or(libc::ENOMEDIUM)?;
        b.read(offset, buf).map_err(|e| errno_of(&e))
    }

    fn write(&mut self, slot: DriveSlot, offset: u64, data: &[u8]) -> Result<(), i32> {
        let b = self.backend(slot).ok_or(libc::ENOMEDIUM)?;
        if b.root().is_some_and(|r| block::lock(&r).is_read_only()) {
            return Err(libc::EPERM);
        }
        b.write(offset, data, false).map_err(|e| errno_of(&e))
    }

    fn flush(&mut self, slot: DriveSlot) -> Result<(), i32> {
        match self.backend(slot) {
            Some(b) => b.flush().map_err(|e| errno_of(&e)),
            None => Ok(()),
        }
    }

    fn error_action(&mut self, slot: DriveSlot, is_read: bool, errno: i32) -> ErrorAction {
        let Some(name) = self.devs.slots.backend(slot).map(str::to_string) else {
            return ErrorAction::Report;
        };
        let Some(f) = self.devs.front_mut(&name) else {
            return ErrorAction::Report;
        };
        let policy = if is_read {
            f.on_read_error
        } else {
            f.on_write_error
        };
        let action = match policy {
            OnError::Enospc if errno == libc::ENOSPC => ErrorAction::Stop,
            OnError::Enospc | OnError::Report => ErrorAction::Report,
            OnError::Stop => ErrorAction::Stop,
            OnError::Ignore => ErrorAction::Ignore,
        };
        let enabled = f.iostatus.is_some();
        if action == ErrorAction::Stop {
            if f.iostatus == Some("ok") {
                f.iostatus = Some(if errno == libc::ENOSPC {
                    "nospace"
                } else {
                    "failed"
                });
            }
            self.stop = true;
        }
        let mut ev = json!({
            "device": name,
            "operation": if is_read { "read" } else { "write" },
            "action": match action {
                ErrorAction::Report => "report",
                ErrorAction::Ignore => "ignore",
                ErrorAction::Stop => "stop",
            },
        });
        // As QEMU: `nospace` is there when io-status is.
        if enabled {
            ev["nospace"] = json!(errno == libc::ENOSPC);
        }
        ev["reason"] = json!(std::io::Error::from_raw_os_error(errno)
            .to_string()
            .split(" (os error")
            .next()
            .unwrap_or("")
            .to_string());
        self.events.push(ev);
        action
    }

    fn admit(&mut self, slot: DriveSlot, is_write: bool, bytes: u64, ticket: u64) -> bool {
        let Some(name) = self.devs.slots.backend(slot).map(str::to_string) else {
            return true;
        };
        let held = Held::Device {
            ctrl: self.ctrl.clone(),
            slot,
            ticket,
        };
        match throttle::groups(&self.devs.throttle).submit(&name, is_write, bytes, held, self.now) {
            Admission::Go(_) => true,
            Admission::Queued => {
                self.queued = true;
                false
            }
        }
    }
}

/// The VM stopped: as QEMU's vm_stop drains every backend, the guest
/// requests throttle groups hold run now.
fn drain_held(emu: &mut Emulator, held: &[DriveSlot]) {
    let mut names: Vec<String> = held
        .iter()
        .filter_map(|s| emu.blockdevs.slots.backend(*s).map(str::to_string))
        .collect();
    names.dedup();
    for name in names {
        throttle::drain(emu, &name);
    }
}

/// Runs the drives' pending block I/O; after a resume, resets io-status
/// and retries requests an error policy stopped. Called after every guest
/// port access and main-loop turn.
pub fn service(emu: &mut Emulator) {
    let Some(ctrl) = emu.machine.pc().map(|pc| pc.ide.clone()) else {
        return;
    };
    let running = emu.is_running();
    let resumed = running && !emu.blockdevs.was_running;
    let stopped = !running && emu.blockdevs.was_running;
    emu.blockdevs.was_running = running;
    if stopped {
        let held = ctrl.lock().unwrap_or_else(|e| e.into_inner()).held_slots();
        drain_held(emu, &held);
    }
    let mut c = ctrl.lock().unwrap_or_else(|e| e.into_inner());
    if resumed {
        // QEMU's cont resets every backend's io-status.
        for f in &mut emu.blockdevs.fronts {
            if f.iostatus.is_some() {
                f.iostatus = Some("ok");
            }
        }
    }
    let restart = resumed && c.has_stopped_requests();
    if !restart && !c.has_runnable_io() {
        return;
    }
    let now = throttle::now(emu);
    let mut io = GraphIo {
        graph: &emu.block,
        devs: &mut emu.blockdevs,
        events: Vec::new(),
        stop: false,
        ctrl: ctrl.clone(),
        now,
        queued: false,
    };
    if restart {
        c.restart(&mut io);
    } else {
        c.run_io(&mut io);
    }
    drop(c);
    let (events, stop, queued) = (std::mem::take(&mut io.events), io.stop, io.queued);
    if queued {
        throttle::rearm(emu);
        // From a vCPU thread: the main loop may sleep past the new deadline.
        emu.wake_main_loop();
    }
    for ev in events {
        emu.emit_event("BLOCK_IO_ERROR", Some(ev));
    }
    if stop {
        emu.schedule_bh(Box::new(|emu: &mut Emulator| {
            emu.vm_stop(RunState::IoError);
            emu.blockdevs.was_running = false;
        }));
        emu.wake_main_loop();
    }
}

/// Quit: as QEMU's bdrv_close_all drains every backend, the guest requests
/// throttle groups hold (and the ones they lead to) run before the images
/// close.
pub fn drain_all(emu: &mut Emulator) {
    let Some(ctrl) = emu.machine.pc().map(|pc| pc.ide.clone()) else {
        return;
    };
    // A multi-chunk DMA request queues again after each chunk; bounded so
    // a group that keeps a ticket it never releases cannot hold up quit.
    for _ in 0..1024 {
        let held = ctrl.lock().unwrap_or_else(|e| e.into_inner()).held_slots();
        if held.is_empty() {
            return;
        }
        drain_held(emu, &held);
    }
}

/// A drive's guest changed something the monitor shows.
pub fn drive_event(emu: &mut Emulator, ev: DriveEvent) {
    let Some(name) = emu.blockdevs.slots.backend(ev.slot).map(str::to_string) else {
        return;
    };
    match ev.kind {
        DriveEventKind::TrayMoved { open } => {
            // bdrv_eject announces the move only while a medium is in.
            let announce = emu.block.backend(&name).is_some_and(|b| b.has_medium());
            emu.blockdevs.device_tray_moved(&name, open, announce);
        }
        DriveEventKind::MediumLocked { locked } => {
            emu.blockdevs.set_medium_locked(&name, locked);
        }
        DriveEventKind::Reset => {
            emu.blockdevs.device_tray_moved(&name, false, false);
            emu.blockdevs.set_medium_locked(&name, false);
        }
        DriveEventKind::WriteCache { enabled } => {
            if let Some(f) = emu.blockdevs.front_mut(&name) {
                f.writeback = enabled;
            }
        }
    }
}
