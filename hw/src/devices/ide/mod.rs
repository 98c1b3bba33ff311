//! The PIIX3 IDE function's two legacy channels (QEMU's `piix3-ide` at
//! 00:01.1): task-file ports 0x1f0-0x1f7 / 0x3f6 on IRQ 14 and 0x170-0x177 /
//! 0x376 on IRQ 15, each with a master and a slave slot for an ATA disk
//! (`ide-hd`) or an ATAPI CD-ROM (`ide-cd`). ATA commands move data by PIO or by
//! bus-master DMA through the function's BAR 4 (see `bmdma`).
//!
//! Block I/O never happens inside a port access: a command that needs data
//! leaves a request on its drive and the owner calls [`IdeController::run_io`]
//! with its [`io::BlockIo`] right after the access, so the guest sees the
//! result on its next status read. Guest-made tray and lock changes are queued
//! as `MachineEvent::Drive`; monitor-made ones come in through
//! `change_media` / `eject_request`.

mod ata;
mod atapi;
mod atapi_disc;
pub mod bmdma;
pub mod channel;
pub mod drive;
pub mod identify;
pub mod io;

use std::sync::{Arc, Mutex};

use crate::bus::BusDevice;
use crate::events::EventQueue;
use crate::irq::Irq;

pub use channel::IdeChannel;
pub use drive::{DriveConfig, DriveIdentity, DriveKind, Gate};
pub use io::{BlockIo, DriveEvent, DriveEventKind, DriveSlot, ErrorAction};

/// Legacy ports and IRQ of each channel: command block, control register.
pub const CHANNELS: [(u16, u16, u32); 2] = [(0x1f0, 0x3f6, 14), (0x170, 0x376, 15)];

/// Both channels of the controller.
pub struct IdeController {
    pub channels: [IdeChannel; 2],
}

impl IdeController {
    pub fn new(irq0: Irq, irq1: Irq, events: EventQueue) -> IdeController {
        IdeController {
            channels: [
                IdeChannel::new(0, irq0, events.clone()),
                IdeChannel::new(1, irq1, events),
            ],
        }
    }

    fn channel(&mut self, slot: DriveSlot) -> Option<&mut IdeChannel> {
        self.channels.get_mut(slot.bus as usize)
    }

    /// Whether a device already sits in `slot`.
    pub fn is_used(&self, slot: DriveSlot) -> bool {
        self.channels
            .get(slot.bus as usize)
            .and_then(|c| c.drives.get(slot.unit as usize))
            .is_some_and(|d| d.is_present())
    }

    pub fn attach(&mut self, slot: DriveSlot, cfg: DriveConfig) {
        if let Some(c) = self.channel(slot) {
            c.attach(slot.unit as usize, cfg);
        }
    }

    pub fn has_pending_io(&self) -> bool {
        self.channels.iter().any(IdeChannel::has_pending_io)
    }

    /// Guest memory for bus-master DMA.
    pub fn set_memory(&mut self, mem: Arc<crate::memory::GuestMemory>) {
        for c in &mut self.channels {
            c.mem = Some(mem.clone());
        }
    }

    /// A BAR 4 access: channel 0 at 0..8, channel 1 at 8..16.
    pub fn bmdma_read(&self, offset: u64, data: &mut [u8]) {
        match self.channels.get((offset / 8) as usize) {
            Some(c) => c.bmdma_read(offset % 8, data),
            None => data.fill(0xff),
        }
    }

    pub fn bmdma_write(&mut self, offset: u64, data: &[u8]) {
        if let Some(c) = self.channels.get_mut((offset / 8) as usize) {
            c.bmdma_write(offset % 8, data);
        }
    }

    /// Whether a request is pending that may run now (not held back by the
    /// backend's I/O limits).
    pub fn has_runnable_io(&self) -> bool {
        self.channels.iter().any(IdeChannel::has_runnable_io)
    }

    /// The I/O limits released the request `slot` queued under `ticket`
    /// (see `BlockIo::admit`); it runs on the next `run_io`.
    pub fn release(&mut self, slot: DriveSlot, ticket: u64) {
        if let Some(c) = self.channel(slot) {
            c.release(slot.unit as usize, ticket);
        }
    }

    /// Slots whose request the I/O limits hold back.
    pub fn held_slots(&self) -> Vec<DriveSlot> {
        let mut v = Vec::new();
        for (bus, c) in self.channels.iter().enumerate() {
            for (unit, d) in c.drives.iter().enumerate() {
                if d.pending.is_some() && matches!(d.gate, Gate::Waiting(_)) {
                    v.push(DriveSlot {
                        bus: bus as u8,
                        unit: unit as u8,
                    });
                }
            }
        }
        v
    }

    pub fn run_io(&mut self, io: &mut dyn BlockIo) {
        for c in &mut self.channels {
            c.run_io(io);
        }
    }

    /// Requests stopped by the error policy go again (the VM resumed).
    pub fn restart(&mut self, io: &mut dyn BlockIo) {
        for c in &mut self.channels {
            c.restart();
            c.run_io(io);
        }
    }

    pub fn has_stopped_requests(&self) -> bool {
        self.channels.iter().any(|c| c.retry.is_some())
    }

    pub fn change_media(&mut self, slot: DriveSlot, load: bool, sectors: u64) {
        if let Some(c) = self.channel(slot) {
            c.change_media(slot.unit as usize, load, sectors);
        }
    }

    pub fn eject_request(&mut self, slot: DriveSlot, force: bool) {
        if let Some(c) = self.channel(slot) {
            c.eject_request(slot.unit as usize, force);
        }
    }

    pub fn resize(&mut self, slot: DriveSlot, sectors: u64) {
        if let Some(c) = self.channel(slot) {
            c.resize(slot.unit as usize, sectors);
        }
    }

    pub fn is_tray_open(&self, slot: DriveSlot) -> bool {
        self.channels
            .get(slot.bus as usize)
            .is_some_and(|c| c.is_tray_open(slot.unit as usize))
    }

    pub fn is_medium_locked(&self, slot: DriveSlot) -> bool {
        self.channels
            .get(slot.bus as usize)
            .is_some_and(|c| c.is_medium_locked(slot.unit as usize))
    }

    pub fn reset(&mut self) {
        for c in &mut self.channels {
            c.reset();
        }
    }
}

/// Which block of one channel's ports a range maps.
#[derive(Clone, Copy)]
enum PortBlock {
    Command,
    Control,
}

/// One channel's command or control ports on the I/O bus.
pub struct IdePorts {
    ctrl: Arc<Mutex<IdeController>>,
    channel: usize,
    block: PortBlock,
}

impl IdePorts {
    /// The four port ranges (base, length, device, name) to map.
    pub fn ranges(ctrl: &Arc<Mutex<IdeController>>) -> Vec<(u16, u16, IdePorts)> {
        let mut v = Vec::new();
        for (i, (cmd, ctl, _)) in CHANNELS.iter().enumerate() {
            for (base, len, block) in [(*cmd, 8, PortBlock::Command), (*ctl, 1, PortBlock::Control)]
            {
                v.push((
                    base,
                    len,
                    IdePorts {
                        ctrl: ctrl.clone(),
                        channel: i,
                        block,
                    },
                ));
            }
        }
        v
    }

    fn with<T>(&self, f: impl FnOnce(&mut IdeChannel) -> T) -> T {
        let mut g = self.ctrl.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g.channels[self.channel & 1])
    }
}

impl BusDevice for IdePorts {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let block = self.block;
        self.with(|c| match (block, offset, data.len()) {
            (PortBlock::Command, 0, 2 | 4) => c.data_read(data),
            (PortBlock::Command, _, 1) => data[0] = c.ioport_read(offset),
            (PortBlock::Control, 0, 1) => data[0] = c.status_read(),
            _ => data.fill(0xff),
        })
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let block = self.block;
        self.with(|c| match (block, offset, data.len()) {
            (PortBlock::Command, 0, 2 | 4) => c.data_write(data),
            (PortBlock::Command, _, 1) => c.ioport_write(offset, data[0]),
            (PortBlock::Control, 0, 1) => c.cmd_write(data[0]),
            _ => {}
        })
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz_tests;
