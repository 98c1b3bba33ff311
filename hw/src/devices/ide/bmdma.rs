//! PIIX bus-master DMA (BAR 4): per channel a command register (START,
//! direction), a status register (ACTIVE, ERROR, INTERRUPT, drive DMA
//! capable bits) and the PRD table address; and the ATA DMA commands that
//! move data between the drive and the guest memory the PRDs describe
//! (QEMU's bmdma_* and ide_dma_cb).

use crate::memory::GuestMemory;

use super::channel::{IdeChannel, Retry};
use super::drive::{Pending, BUSY_STAT, DRQ_STAT, READY_STAT, SEEK_STAT};

pub const BM_CMD_START: u8 = 0x01;
pub const BM_STATUS_DMAING: u8 = 0x01;
pub const BM_STATUS_INT: u8 = 0x04;

/// The PRD walk gives up after one page of descriptors without an end.
const PRD_TABLE_MAX: u32 = 4096;

#[derive(Debug, Clone, Default)]
pub struct Bmdma {
    pub cmd: u8,
    pub status: u8,
    pub addr: u32,
    cur_addr: u32,
    cur_prd_last: bool,
    cur_prd_addr: u32,
    cur_prd_len: u32,
    /// A DMA command waits for START (QEMU's dma_cb being set).
    pub armed: Option<DmaDir>,
    /// The armed command is an ATAPI transfer (packet reply or CD read).
    pub atapi: bool,
    /// The drive that armed the transfer: the bus master serves it even
    /// when the guest selects the other one meanwhile (QEMU's retry_unit).
    pub unit: usize,
    /// ATAPI DMA data not yet given to the guest.
    pub atapi_buf: Vec<u8>,
    /// Bytes the PRDs described for the transfer in flight.
    io_buffer_size: u64,
    /// Where a stopped transfer starts again.
    retry_sector: u64,
    retry_nsector: u32,
}

/// Data direction of an ATA DMA command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaDir {
    /// Disk to guest memory (READ DMA).
    Read,
    /// Guest memory to disk (WRITE DMA).
    Write,
}

impl Bmdma {
    pub fn reset(&mut self) {
        *self = Bmdma::default();
    }

    /// Builds the scatter list for up to `limit` bytes from the PRDs
    /// (bmdma_prepare_buf); returns it and the bytes the PRDs covered.
    fn prepare(&mut self, mem: &GuestMemory, limit: u64) -> (Vec<(u64, u64)>, u64) {
        let mut sg = Vec::new();
        let mut total = 0u64;
        let mut covered = 0u64;
        loop {
            if self.cur_prd_len == 0 {
                if self.cur_prd_last || self.cur_addr.wrapping_sub(self.addr) >= PRD_TABLE_MAX {
                    return (sg, covered);
                }
                let mut prd = [0u8; 8];
                if mem.read(self.cur_addr as u64, &mut prd).is_err() {
                    prd = [0; 8];
                }
                self.cur_addr = self.cur_addr.wrapping_add(8);
                let addr = u32::from_le_bytes([prd[0], prd[1], prd[2], prd[3]]);
                let size = u32::from_le_bytes([prd[4], prd[5], prd[6], prd[7]]);
                let len = size & 0xfffe;
                self.cur_prd_len = if len == 0 { 0x10000 } else { len };
                self.cur_prd_addr = addr;
                self.cur_prd_last = size & 0x8000_0000 != 0;
            }
            let l = self.cur_prd_len as u64;
            let take = l.min(limit - total);
            if take > 0 {
                sg.push((self.cur_prd_addr as u64, take));
                total += take;
            }
            self.cur_prd_addr = self.cur_prd_addr.wrapping_add(l as u32);
            self.cur_prd_len = 0;
            covered += l;
        }
    }
}

impl Bmdma {
    /// Copies `data` to guest memory through the PRDs (bmdma_rw_buf);
    /// false when the table ended first.
    fn write_to_guest(&mut self, mem: &GuestMemory, data: &[u8]) -> bool {
        let mut done = 0usize;
        while done < data.len() {
            if self.cur_prd_len == 0 {
                if self.cur_prd_last || self.cur_addr.wrapping_sub(self.addr) >= PRD_TABLE_MAX {
                    return false;
                }
                let mut prd = [0u8; 8];
                if mem.read(self.cur_addr as u64, &mut prd).is_err() {
                    prd = [0; 8];
                }
                self.cur_addr = self.cur_addr.wrapping_add(8);
                let size = u32::from_le_bytes([prd[4], prd[5], prd[6], prd[7]]);
                let len = size & 0xfffe;
                self.cur_prd_len = if len == 0 { 0x10000 } else { len };
                self.cur_prd_addr = u32::from_le_bytes([prd[0], prd[1], prd[2], prd[3]]);
                self.cur_prd_last = size & 0x8000_0000 != 0;
            }
            let l = (data.len() - done).min(self.cur_prd_len as usize);
            let _ = mem.write(self.cur_prd_addr as u64, &data[done..done + l]);
            self.cur_prd_addr = self.cur_prd_addr.wrapping_add(l as u32);
            self.cur_prd_len -= l as u32;
            done += l;
        }
        true
    }
}

/// CD sectors one ATAPI DMA chunk reads at most (QEMU's buffer / 4).
const ATAPI_DMA_SECTORS: i64 = 64;

impl IdeChannel {
    // ---- ATAPI DMA ------------------------------------------------------

    /// Arms an ATAPI DMA transfer: `reply` holds a packet reply, or is
    /// empty for a CD read set up in the drive's lba/transfer size.
    pub(super) fn atapi_start_dma(&mut self, reply: Vec<u8>) {
        let s = self.s();
        s.status = READY_STAT | SEEK_STAT | DRQ_STAT;
        self.bm.atapi_buf = reply;
        self.bm.unit = self.unit & 1;
        self.bm.atapi = true;
        self.bm.armed = Some(DmaDir::Read);
        self.bm.cur_prd_last = false;
        self.bm.cur_prd_addr = 0;
        self.bm.cur_prd_len = 0;
        if self.bm.status & BM_STATUS_DMAING != 0 {
            self.atapi_dma_step();
        }
    }

    /// ide_atapi_cmd_read_dma_cb: hand over what is buffered, then finish
    /// or read the next chunk.
    pub(super) fn atapi_dma_step(&mut self) {
        let buf = std::mem::take(&mut self.bm.atapi_buf);
        if !buf.is_empty() {
            let s = self.s();
            if s.lba != -1 {
                s.lba += (buf.len() / 2048) as i64;
            }
            s.packet_transfer_size -= buf.len() as i64;
            let ok = match self.mem.clone() {
                Some(mem) => self.bm.write_to_guest(&mem, &buf),
                None => false,
            };
            if !ok {
                self.dma_inactive(false);
                return;
            }
        }
        let s = self.s();
        if s.packet_transfer_size <= 0 {
            s.status = READY_STAT | SEEK_STAT;
            s.nsector = (s.nsector & !7) | 0x03;
            self.set_irq();
            self.dma_inactive(false);
            return;
        }
        let n = (s.packet_transfer_size >> 11).clamp(1, ATAPI_DMA_SECTORS) as u32;
        s.pending = Some(Pending::AtapiDma { count: n });
    }

    /// The CD read of an ATAPI DMA chunk finished.
    pub(super) fn atapi_dma_done(&mut self, r: Result<Vec<u8>, i32>) {
        match r {
            Ok(data) => {
                self.bm.atapi_buf = data;
                self.atapi_dma_step();
            }
            Err(e) => {
                self.atapi_io_error(e);
                self.dma_inactive(false);
            }
        }
    }

    // ---- registers ------------------------------------------------------

    pub fn bmdma_read(&self, offset: u64, data: &mut [u8]) {
        let bm = &self.bm;
        match (offset, data.len()) {
            (0, 1) => data[0] = bm.cmd,
            (2, 1) => data[0] = bm.status,
            (4..=7, n) => {
                let shift = (offset - 4) * 8;
                let v = (bm.addr as u64) >> shift;
                for (i, b) in data.iter_mut().enumerate().take(n) {
                    *b = (v >> (i * 8)) as u8;
                }
            }
            _ => data.fill(0xff),
        }
    }

    pub fn bmdma_write(&mut self, offset: u64, data: &[u8]) {
        match (offset, data.len()) {
            (0, 1) => self.bmdma_cmd_write(data[0]),
            (2, 1) => {
                let v = data[0];
                let s = self.bm.status;
                self.bm.status = (v & 0x60) | (s & 1) | (s & !v & 0x06);
            }
            (4..=7, n) => {
                let shift = (offset - 4) * 8;
                let mut v = 0u64;
                for (i, b) in data.iter().enumerate() {
                    v |= (*b as u64) << (i * 8);
                }
                let mask = if n >= 8 {
                    u64::MAX
                } else {
                    (1u64 << (n * 8)) - 1
                };
                let mut a = self.bm.addr as u64;
                a &= !(mask << shift);
                a |= ((v & mask) << shift) & !3;
                self.bm.addr = a as u32;
            }
            _ => {}
        }
    }

    fn bmdma_cmd_write(&mut self, val: u8) {
        if (val & BM_CMD_START) != (self.bm.cmd & BM_CMD_START) {
            if val & BM_CMD_START == 0 {
                // QEMU drains the request in flight, lifting the I/O
                // limits: one held back by them runs on the next run_io.
                self.unthrottle();
                self.bm.status &= !BM_STATUS_DMAING;
            } else {
                self.bm.cur_addr = self.bm.addr;
                if self.bm.status & BM_STATUS_DMAING == 0 {
                    self.bm.status |= BM_STATUS_DMAING;
                    self.on_dma_unit(|c| {
                        if c.bm.atapi {
                            c.atapi_dma_step();
                        } else if c.bm.armed.is_some() {
                            c.dma_next(0);
                        }
                    });
                }
            }
        }
        self.bm.cmd = val & 0x09;
    }

    /// Runs `f` with the drive that armed the transfer selected, then
    /// gives the guest its selection back.
    fn on_dma_unit(&mut self, f: impl FnOnce(&mut IdeChannel)) {
        let saved = self.unit;
        self.unit = self.bm.unit & 1;
        f(self);
        self.unit = saved;
    }

    // ---- ATA DMA commands -------------------------------------------------

    /// READ DMA / WRITE DMA (ide_sector_start_dma + ide_start_dma).
    pub(super) fn sector_start_dma(&mut self, dir: DmaDir) {
        let s = self.s();
        s.status = READY_STAT | SEEK_STAT | DRQ_STAT | BUSY_STAT;
        let sector = s.get_sector();
        let nsector = s.nsector;
        self.bm.retry_sector = sector;
        self.bm.retry_nsector = nsector;
        self.bm.io_buffer_size = 0;
        self.bm.armed = Some(dir);
        self.bm.unit = self.unit & 1;
        self.bm.cur_prd_last = false;
        self.bm.cur_prd_addr = 0;
        self.bm.cur_prd_len = 0;
        if self.bm.status & BM_STATUS_DMAING != 0 {
            self.dma_next(0);
        }
    }

    /// One step of ide_dma_cb after `done` bytes moved: account them, then
    /// finish or queue the next chunk.
    fn dma_next(&mut self, done_sectors: u32) {
        let Some(dir) = self.bm.armed else {
            return;
        };
        let mut stay_active = false;
        let mut n = done_sectors;
        {
            let s = self.s();
            if n > s.nsector {
                n = s.nsector;
                stay_active = true;
            }
            if n > 0 {
                let next = s.get_sector() + n as u64;
                s.set_sector(next);
                s.nsector -= n;
            }
        }
        if self.s().nsector == 0 {
            self.s().status = READY_STAT | SEEK_STAT;
            self.set_irq();
            self.dma_inactive(stay_active);
            return;
        }
        let Some(mem) = self.mem.clone() else {
            self.dma_error();
            return;
        };
        let want = self.s().nsector as u64 * 512;
        let (sg, covered) = self.bm.prepare(&mem, want);
        self.bm.io_buffer_size = covered;
        let bytes: u64 = sg.iter().map(|(_, l)| l).sum();
        if bytes < 512 {
            // PRDs too short: drop ACTIVE without an interrupt.
            self.s().status = READY_STAT | SEEK_STAT;
            self.dma_inactive(false);
            return;
        }
        let s = self.s();
        let sector = s.get_sector();
        let count = (bytes / 512) as u32;
        s.pending = Some(Pending::Dma {
            dir,
            sector,
            count,
            sg,
        });
    }

    /// The block I/O of a DMA chunk finished: as QEMU, the sectors the PRDs
    /// covered count as moved (capped at the request, keeping ACTIVE then).
    pub(super) fn dma_done(&mut self) {
        let n = (self.bm.io_buffer_size / 512).min(u32::MAX as u64) as u32;
        self.dma_next(n);
    }

    /// A DMA chunk failed: QEMU's ide_handle_rw_error for DMA.
    pub(super) fn dma_failed(&mut self, action: super::io::ErrorAction, dir: DmaDir) {
        match action {
            super::io::ErrorAction::Stop => {
                self.retry = Some((
                    self.unit,
                    if dir == DmaDir::Read {
                        Retry::DmaRead
                    } else {
                        Retry::DmaWrite
                    },
                ));
            }
            super::io::ErrorAction::Report => self.dma_error(),
            super::io::ErrorAction::Ignore => self.dma_done(),
        }
    }

    pub(super) fn dma_error(&mut self) {
        self.s().abort_command();
        self.dma_inactive(false);
        self.set_irq();
    }

    fn dma_inactive(&mut self, more: bool) {
        self.bm.armed = None;
        self.bm.atapi = false;
        if more {
            self.bm.status |= BM_STATUS_DMAING;
        } else {
            self.bm.status &= !BM_STATUS_DMAING;
        }
    }

    /// ide_restart_dma: the stopped transfer starts over from where the
    /// command began.
    pub(super) fn restart_dma(&mut self, dir: DmaDir) {
        let (sector, nsector) = (self.bm.retry_sector, self.bm.retry_nsector);
        let s = self.s();
        s.set_sector(sector);
        s.nsector = nsector;
        self.bm.cur_addr = self.bm.addr;
        self.bm.io_buffer_size = 0;
        self.bm.armed = Some(dir);
        self.bm.cur_prd_last = false;
        self.bm.cur_prd_len = 0;
        if self.bm.status & BM_STATUS_DMAING != 0 {
            self.dma_next(0);
        }
    }
}
