//! One IDE channel (QEMU's IDEBus): two drive slots sharing the task-file
//! ports, the device control register and one interrupt line; the PIO data
//! port; and running the block I/O its drives wait for.

use std::sync::Arc;

use crate::events::{EventQueue, MachineEvent};
use crate::irq::Irq;
use crate::memory::GuestMemory;

use super::drive::{
    Drive, DriveConfig, DriveKind, EndTransfer, Gate, Pending, BUSY_STAT, DRQ_STAT, READY_STAT,
    SEEK_STAT,
};
use super::io::{BlockIo, DriveEvent, DriveEventKind, DriveSlot, ErrorAction};

/// Device control register bits.
const CMD_RESET: u8 = 0x04;
const CMD_DISABLE_IRQ: u8 = 0x02;

/// A guest request stopped by the error policy, run again on resume
/// (QEMU's bus error_status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    PioRead,
    PioWrite,
    Flush,
    DmaRead,
    DmaWrite,
}

pub struct IdeChannel {
    pub index: u8,
    pub drives: [Drive; 2],
    /// Selected unit.
    pub unit: usize,
    /// Device control register.
    pub cmd: u8,
    pub retry: Option<(usize, Retry)>,
    /// The channel's bus-master DMA registers.
    pub bm: super::bmdma::Bmdma,
    /// Guest memory the bus master reads PRDs and data from.
    pub mem: Option<Arc<GuestMemory>>,
    irq: Irq,
    events: EventQueue,
}

impl IdeChannel {
    pub fn new(index: u8, irq: Irq, events: EventQueue) -> IdeChannel {
        IdeChannel {
            index,
            drives: [Drive::absent(), Drive::absent()],
            unit: 0,
            cmd: 0,
            retry: None,
            bm: Default::default(),
            mem: None,
            irq,
            events,
        }
    }

    pub fn attach(&mut self, unit: usize, cfg: DriveConfig) {
        if let Some(d) = self.drives.get_mut(unit) {
            *d = Drive::new(cfg);
        }
    }

    pub(super) fn s(&mut self) -> &mut Drive {
        &mut self.drives[self.unit & 1]
    }

    fn any_present(&self) -> bool {
        self.drives.iter().any(Drive::is_present)
    }

    /// The selected drive answers (a missing slave reads as zeros).
    fn selected_answers(&self) -> bool {
        self.any_present() && (self.unit == 0 || self.drives[1].is_present())
    }

    pub(super) fn set_irq(&mut self) {
        if self.cmd & CMD_DISABLE_IRQ == 0 {
            // The bus master sees every interrupt the channel raises.
            self.bm.status |= super::bmdma::BM_STATUS_INT;
            self.irq.raise();
        }
    }

    pub(super) fn notify(&self, kind: DriveEventKind) {
        self.events.push(MachineEvent::Drive(DriveEvent {
            slot: DriveSlot {
                bus: self.index,
                unit: self.unit as u8,
            },
            kind,
        }));
    }

    /// Bus reset (system reset): both drives to their power-on state.
    pub fn reset(&mut self) {
        self.unit = 0;
        self.cmd = 0;
        self.retry = None;
        self.bm.reset();
        for (unit, d) in self.drives.iter_mut().enumerate() {
            if d.is_cd() && (d.tray_open || d.tray_locked) {
                self.events.push(MachineEvent::Drive(DriveEvent {
                    slot: DriveSlot {
                        bus: self.index,
                        unit: unit as u8,
                    },
                    kind: DriveEventKind::Reset,
                }));
            }
            d.reset();
            d.select &= !0x80;
        }
        self.irq.lower();
    }

    // ---- task-file ports (0x1f0..0x1f7) ------------------------------

    pub fn ioport_read(&mut self, addr: u64) -> u8 {
        let any = self.any_present();
        let answers = self.selected_answers();
        let s = &self.drives[self.unit & 1];
        match addr & 7 {
            0 => 0xff,
            1 if answers => s.error,
            2 if any => s.nsector as u8,
            3 if any => s.sector,
            4 if any => s.lcyl,
            5 if any => s.hcyl,
            6 if any => s.select,
            7 => {
                let v = if answers { s.status } else { 0 };
                self.irq.lower();
                v
            }
            _ => 0,
        }
    }

    pub fn ioport_write(&mut self, addr: u64, val: u8) {
        let addr = addr & 7;
        let busy = self.drives[self.unit & 1].status & (BUSY_STAT | DRQ_STAT) != 0;
        if addr != 7 && busy {
            return;
        }
        let hob = |d: &mut Drive| d.select &= !0x80;
        match addr {
            1 => self.drives.iter_mut().for_each(|d| {
                hob(d);
                d.hob_feature = d.feature;
                d.feature = val;
            }),
            2 => self.drives.iter_mut().for_each(|d| {
                hob(d);
                d.hob_nsector = d.nsector as u8;
                d.nsector = val as u32;
            }),
            3 => self.drives.iter_mut().for_each(|d| {
                hob(d);
                d.hob_sector = d.sector;
                d.sector = val;
            }),
            4 => self.drives.iter_mut().for_each(|d| {
                hob(d);
                d.hob_lcyl = d.lcyl;
                d.lcyl = val;
            }),
            5 => self.drives.iter_mut().for_each(|d| {
                hob(d);
                d.hob_hcyl = d.hcyl;
                d.hcyl = val;
            }),
            6 => {
                self.drives[0].select = (val & !0x10) | 0xa0;
                self.drives[1].select = val | 0x10 | 0xa0;
                self.unit = ((val >> 4) & 1) as usize;
            }
            7 => self.exec_cmd(val),
            _ => {}
        }
    }

    // ---- control block (0x3f6) ----------------------------------------

    pub fn status_read(&self) -> u8 {
        if self.selected_answers() {
            self.drives[self.unit & 1].status
        } else {
            0
        }
    }

    /// Device control: SRST going high puts both drives in reset, going
    /// low finishes it with their signatures.
    pub fn cmd_write(&mut self, val: u8) {
        if self.cmd & CMD_RESET == 0 && val & CMD_RESET != 0 {
            for d in &mut self.drives {
                d.drop_pending();
                d.status = BUSY_STAT | SEEK_STAT;
                d.error = 0x01;
            }
        } else if self.cmd & CMD_RESET != 0 && val & CMD_RESET == 0 {
            for d in &mut self.drives {
                d.status = if d.is_cd() { 0 } else { READY_STAT | SEEK_STAT };
                d.set_signature();
            }
        }
        self.cmd = val;
    }

    // ---- data port ------------------------------------------------------

    pub fn data_read(&mut self, out: &mut [u8]) {
        out.fill(0);
        let s = self.s();
        if s.status & DRQ_STAT == 0 || !s.end.is_pio_out() {
            return;
        }
        let n = out.len();
        if s.data_pos + n > s.data_end {
            return;
        }
        out.copy_from_slice(&s.buf[s.data_pos..s.data_pos + n]);
        s.data_pos += n;
        if s.data_pos >= s.data_end {
            s.status &= !DRQ_STAT;
            self.end_transfer();
        }
    }

    pub fn data_write(&mut self, data: &[u8]) {
        let s = self.s();
        if s.status & DRQ_STAT == 0 || s.end.is_pio_out() {
            return;
        }
        let n = data.len();
        if s.data_pos + n > s.data_end {
            return;
        }
        let p = s.data_pos;
        s.buf[p..p + n].copy_from_slice(data);
        s.data_pos += n;
        if s.data_pos >= s.data_end {
            s.status &= !DRQ_STAT;
            self.end_transfer();
        }
    }

    fn end_transfer(&mut self) {
        match self.s().end {
            EndTransfer::Stop => self.s().transfer_stop(),
            EndTransfer::Idle => self.s().idle_transfer_stop(),
            EndTransfer::SectorRead => self.sector_read(),
            EndTransfer::SectorWrite => self.sector_write(),
            EndTransfer::AtapiCmd => self.atapi_cmd(),
            EndTransfer::AtapiReplyEnd => self.atapi_reply_end(),
        }
    }

    // ---- block I/O --------------------------------------------------------

    pub fn has_pending_io(&self) -> bool {
        self.drives.iter().any(|d| d.pending.is_some())
    }

    /// Whether a drive has a request that can run now (not held back by
    /// the I/O limits).
    pub fn has_runnable_io(&self) -> bool {
        self.drives
            .iter()
            .any(|d| d.pending.is_some() && !matches!(d.gate, Gate::Waiting(_)))
    }

    /// The I/O limits let `unit`'s request queued under `ticket` go; it
    /// runs on the next `run_io`.
    pub fn release(&mut self, unit: usize, ticket: u64) {
        if let Some(d) = self.drives.get_mut(unit) {
            if d.pending.is_some() && d.gate == Gate::Waiting(ticket) {
                d.gate = Gate::Go;
            }
        }
    }

    /// Lets a request held by the I/O limits run without waiting for its
    /// turn (QEMU drains, which lifts the limits, when the bus master is
    /// stopped). Its ticket goes stale.
    pub(super) fn unthrottle(&mut self) {
        let d = &mut self.drives[self.bm.unit & 1];
        if matches!(d.gate, Gate::Waiting(_)) {
            d.gate = Gate::Go;
        }
    }

    /// Runs every request the drives wait for, and the ones their
    /// completions start, until none is left that may run now.
    pub fn run_io(&mut self, io: &mut dyn BlockIo) {
        // Each completion moves a transfer forward; a bound keeps a
        // misbehaving backend from spinning here forever.
        for _ in 0..4096 {
            let Some(unit) = self
                .drives
                .iter()
                .position(|d| d.pending.is_some() && !matches!(d.gate, Gate::Waiting(_)))
            else {
                return;
            };
            let slot = DriveSlot {
                bus: self.index,
                unit: unit as u8,
            };
            if !self.admitted(io, slot, unit) {
                continue;
            }
            let Some(p) = self.drives[unit].pending.take() else {
                return;
            };
            self.drives[unit].gate = Gate::Ask;
            let saved_unit = self.unit;
            self.unit = unit;
            self.complete(io, slot, p);
            if self.drives[saved_unit].pending.is_none() {
                self.unit = saved_unit;
            }
        }
    }

    /// Asks the I/O limits about `unit`'s request unless it was released
    /// already; false leaves it queued under a fresh ticket.
    fn admitted(&mut self, io: &mut dyn BlockIo, slot: DriveSlot, unit: usize) -> bool {
        let d = &mut self.drives[unit];
        if d.gate == Gate::Go {
            return true;
        }
        let Some((is_write, bytes)) = d.pending.as_ref().and_then(Pending::throttled_size) else {
            return true;
        };
        let ticket = d.next_ticket;
        d.next_ticket = d.next_ticket.wrapping_add(1);
        if io.admit(slot, is_write, bytes, ticket) {
            return true;
        }
        d.gate = Gate::Waiting(ticket);
        false
    }

    /// A disk follows its medium's size (QEMU's resize_cb): IDENTIFY and
    /// range checks see a block_resize at once.
    fn refresh_size(&mut self, io: &mut dyn BlockIo, slot: DriveSlot) {
        if self.s().kind != Some(DriveKind::Hd) {
            return;
        }
        let sectors = io.length(slot) / 512;
        if self.s().nb_sectors != sectors {
            self.resize(self.unit, sectors);
        }
    }

    /// ide_sect_range_ok, with the abort the guest sees when it fails.
    fn range_ok(&mut self, sector: u64, count: u32, dma: bool) -> bool {
        if self.s().sect_range_ok(sector, count as u64) {
            return true;
        }
        if dma {
            self.dma_error();
        } else {
            self.s().abort_command();
            self.set_irq();
        }
        false
    }

    fn complete(&mut self, io: &mut dyn BlockIo, slot: DriveSlot, p: Pending) {
        self.refresh_size(io, slot);
        match p {
            Pending::Identify => self.identify_done(),
            Pending::SectorRead { sector, count } => {
                if !self.range_ok(sector, count, false) {
                    return;
                }
                let len = count as usize * 512;
                let s = self.s();
                let r = io.read(slot, sector * 512, &mut s.buf[..len]);
                self.s().status &= !BUSY_STAT;
                if let Err(e) = r {
                    if self.handle_rw_error(io, slot, e, Retry::PioRead) {
                        return;
                    }
                }
                self.sector_read_done(count);
            }
            Pending::SectorWrite { sector, count } => {
                if !self.range_ok(sector, count, false) {
                    return;
                }
                let len = count as usize * 512;
                let s = self.s();
                let r = io.write(slot, sector * 512, &s.buf[..len]);
                self.s().status &= !BUSY_STAT;
                if let Err(e) = r {
                    if self.handle_rw_error(io, slot, e, Retry::PioWrite) {
                        return;
                    }
                }
                self.sector_write_done(count);
            }
            Pending::Flush => {
                if let Err(e) = io.flush(slot) {
                    if self.handle_rw_error(io, slot, e, Retry::Flush) {
                        return;
                    }
                }
                self.s().status = READY_STAT | SEEK_STAT;
                self.set_irq();
            }
            Pending::Dma {
                dir,
                sector,
                count,
                sg,
            } => {
                if !self.range_ok(sector, count, true) {
                    return;
                }
                let r = self.dma_io(io, slot, dir, sector, count, &sg);
                if let Err(e) = r {
                    let is_read = dir == super::bmdma::DmaDir::Read;
                    let action = io.error_action(slot, is_read, e);
                    self.dma_failed(action, dir);
                    return;
                }
                self.dma_done();
            }
            Pending::AtapiDma { count } => {
                let lba = self.s().lba;
                let mut buf = vec![0u8; count as usize * 2048];
                let r = if lba < 0 {
                    Err(libc::EINVAL)
                } else {
                    io.read(slot, (lba as u64).wrapping_mul(2048), &mut buf)
                };
                self.atapi_dma_done(r.map(|()| buf));
            }
            Pending::CdRead => {
                let s = self.s();
                let start = if s.cd_sector_size == 2352 { 16 } else { 0 };
                let off = (s.lba as u64).wrapping_mul(2048);
                let r = if s.lba < 0 {
                    Err(libc::EINVAL)
                } else {
                    io.read(slot, off, &mut s.buf[start..start + 2048])
                };
                match r {
                    Ok(()) => self.cd_read_done(),
                    Err(e) => self.atapi_io_error(e),
                }
            }
        }
    }

    /// Moves one DMA chunk between the backend and guest memory.
    fn dma_io(
        &mut self,
        io: &mut dyn BlockIo,
        slot: DriveSlot,
        dir: super::bmdma::DmaDir,
        sector: u64,
        count: u32,
        sg: &[(u64, u64)],
    ) -> Result<(), i32> {
        let mem = self.mem.clone().ok_or(libc::EIO)?;
        let mut buf = vec![0u8; count as usize * 512];
        if dir == super::bmdma::DmaDir::Read {
            io.read(slot, sector * 512, &mut buf)?;
            let mut off = 0usize;
            for (addr, len) in sg {
                let end = (off + *len as usize).min(buf.len());
                // Unbacked guest addresses take nothing, as on real buses.
                let _ = mem.write(*addr, &buf[off..end]);
                off = end;
            }
        } else {
            let mut off = 0usize;
            for (addr, len) in sg {
                let end = (off + *len as usize).min(buf.len());
                if mem.read(*addr, &mut buf[off..end]).is_err() {
                    buf[off..end].fill(0);
                }
                off = end;
            }
            io.write(slot, sector * 512, &buf)?;
        }
        Ok(())
    }

    /// QEMU's ide_handle_rw_error: true when the request must not go on.
    fn handle_rw_error(
        &mut self,
        io: &mut dyn BlockIo,
        slot: DriveSlot,
        errno: i32,
        op: Retry,
    ) -> bool {
        let is_read = matches!(op, Retry::PioRead | Retry::DmaRead);
        let action = io.error_action(slot, is_read, errno);
        match action {
            ErrorAction::Stop => self.retry = Some((self.unit, op)),
            ErrorAction::Report => {
                self.s().abort_command();
                self.set_irq();
            }
            ErrorAction::Ignore => {}
        }
        action != ErrorAction::Ignore
    }

    /// The VM runs again: the stopped request is issued anew.
    pub fn restart(&mut self) {
        let Some((unit, op)) = self.retry.take() else {
            return;
        };
        self.unit = unit;
        match op {
            Retry::PioRead => self.sector_read(),
            Retry::PioWrite => self.sector_write(),
            Retry::Flush => self.flush_cache(),
            Retry::DmaRead => self.restart_dma(super::bmdma::DmaDir::Read),
            Retry::DmaWrite => self.restart_dma(super::bmdma::DmaDir::Write),
        }
    }

    // ---- monitor callbacks (QEMU's BlockDevOps for ide-cd) -------------

    /// The medium was loaded (tray closed with it) or taken away (tray
    /// opened): a CD reports "no medium" then "medium changed" to the guest.
    pub fn change_media(&mut self, unit: usize, load: bool, sectors: u64) {
        let Some(d) = self.drives.get_mut(unit) else {
            return;
        };
        if d.kind == Some(DriveKind::Cd) {
            d.tray_open = !load;
            d.nb_sectors = sectors;
            d.cdrom_changed = 1;
            d.new_media = true;
            d.eject_request = false;
            self.set_irq();
        } else {
            d.nb_sectors = sectors;
        }
    }

    /// The monitor asked for the tray (eject of a locked drive); `force`
    /// also drops the guest's lock.
    pub fn eject_request(&mut self, unit: usize, force: bool) {
        let Some(d) = self.drives.get_mut(unit) else {
            return;
        };
        d.eject_request = true;
        if force {
            d.tray_locked = false;
        }
        self.set_irq();
    }

    /// The medium's size changed (block_resize).
    pub fn resize(&mut self, unit: usize, sectors: u64) {
        let Some(d) = self.drives.get_mut(unit) else {
            return;
        };
        d.nb_sectors = sectors;
        if let Some(p) = d.identify.as_mut() {
            super::identify::put_size(p, sectors);
        }
    }

    pub fn is_tray_open(&self, unit: usize) -> bool {
        self.drives.get(unit).is_some_and(|d| d.tray_open)
    }

    pub fn is_medium_locked(&self, unit: usize) -> bool {
        self.drives.get(unit).is_some_and(|d| d.tray_locked)
    }
}
