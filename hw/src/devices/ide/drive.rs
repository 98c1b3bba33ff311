//! One IDE drive's guest-visible state: the task-file registers, the PIO
//! data buffer and where the current transfer stands, and for ATAPI the
//! sense data, tray and media events. Commands live in `ata` and `atapi`.

/// Status register bits.
pub const ERR_STAT: u8 = 0x01;
pub const DRQ_STAT: u8 = 0x08;
pub const SEEK_STAT: u8 = 0x10;
pub const READY_STAT: u8 = 0x40;
pub const BUSY_STAT: u8 = 0x80;

/// Error register bits.
pub const ABRT_ERR: u8 = 0x04;
pub const MC_ERR: u8 = 0x20;

/// Sectors READ/WRITE MULTIPLE move per DRQ block (QEMU's MAX_MULT_SECTORS).
pub const MAX_MULT_SECTORS: u32 = 16;

/// The data buffer: a multiple-sector block, or a raw CD sector with room
/// for its header.
pub const BUF_LEN: usize = MAX_MULT_SECTORS as usize * 512 + 4;

/// What kind of device sits in a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveKind {
    Hd,
    Cd,
}

/// What runs when the guest has moved the last byte of a PIO block
/// (QEMU's end_transfer_func).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndTransfer {
    /// Nothing more: drop DRQ.
    Stop,
    /// Data-less state after reset: reads return all ones.
    Idle,
    SectorRead,
    SectorWrite,
    /// The 12-byte ATAPI packet arrived.
    AtapiCmd,
    /// Continue an ATAPI data reply.
    AtapiReplyEnd,
}

impl EndTransfer {
    /// Whether data flows from the device to the guest.
    pub fn is_pio_out(self) -> bool {
        !matches!(self, EndTransfer::SectorWrite | EndTransfer::AtapiCmd)
    }
}

/// Block I/O a drive waits for; the owner runs it in `IdeController::run_io`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    SectorRead {
        sector: u64,
        count: u32,
    },
    SectorWrite {
        sector: u64,
        count: u32,
    },
    Flush,
    /// One 2048-byte CD sector into the buffer (at 16 for raw 2352 reads).
    CdRead,
    /// A bus-master DMA chunk: `count` sectors at `sector`, to or from the
    /// guest memory ranges in `sg`.
    Dma {
        dir: super::bmdma::DmaDir,
        sector: u64,
        count: u32,
        sg: Vec<(u64, u64)>,
    },
    /// `count` CD sectors from the drive's lba for an ATAPI DMA read.
    AtapiDma {
        count: u32,
    },
    /// IDENTIFY DEVICE, answered with the medium's current size.
    Identify,
}

impl Pending {
    /// Direction and size the backend's I/O limits count, for requests
    /// that move data (QEMU throttles reads and writes, not flushes).
    pub fn throttled_size(&self) -> Option<(bool, u64)> {
        match self {
            Pending::SectorRead { count, .. } => Some((false, *count as u64 * 512)),
            Pending::SectorWrite { count, .. } => Some((true, *count as u64 * 512)),
            Pending::CdRead => Some((false, 2048)),
            Pending::Dma { dir, count, .. } => {
                Some((*dir == super::bmdma::DmaDir::Write, *count as u64 * 512))
            }
            Pending::AtapiDma { count } => Some((false, *count as u64 * 2048)),
            Pending::Flush | Pending::Identify => None,
        }
    }
}

/// Where a pending request stands with the backend's I/O limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Not yet asked.
    Ask,
    /// Queued by the limits under this ticket; runs once released.
    Waiting(u64),
    /// Released (or limits lifted): runs without asking again.
    Go,
}

/// The identity strings IDENTIFY reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveIdentity {
    pub serial: String,
    pub model: String,
    pub version: String,
}

/// What the owner attaches to a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveConfig {
    pub kind: DriveKind,
    pub identity: DriveIdentity,
    /// Medium size in 512-byte sectors (0: empty).
    pub sectors: u64,
    /// Geometry; zero means "guess from the size" as QEMU does for blank disks.
    pub cylinders: u32,
    pub heads: u32,
    pub secs_per_track: u32,
    pub write_cache: bool,
    /// World Wide Name (0: none).
    pub wwn: u64,
    /// TRIM advertised (discard_granularity 512).
    pub discard: bool,
    /// log2(physical block / 512), IDENTIFY word 106.
    pub physical_block_exp: u8,
}

impl DriveConfig {
    /// A drive of `sectors` with QEMU's defaults for everything a `-device`
    /// property can change: geometry guessed from the size, write cache on,
    /// no WWN, TRIM advertised, 512-byte physical blocks.
    pub fn new(kind: DriveKind, identity: DriveIdentity, sectors: u64) -> DriveConfig {
        DriveConfig {
            kind,
            identity,
            sectors,
            cylinders: 0,
            heads: 0,
            secs_per_track: 0,
            write_cache: true,
            wwn: 0,
            discard: true,
            physical_block_exp: 0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Drive {
    pub kind: Option<DriveKind>,
    pub identity: DriveIdentity,
    pub feature: u8,
    pub hob_feature: u8,
    /// Sector count; holds 256 or 65536 after the "zero means max" rule.
    pub nsector: u32,
    pub hob_nsector: u8,
    pub sector: u8,
    pub hob_sector: u8,
    pub lcyl: u8,
    pub hob_lcyl: u8,
    pub hcyl: u8,
    pub hob_hcyl: u8,
    pub select: u8,
    pub status: u8,
    pub error: u8,
    pub lba48: bool,
    pub cylinders: u32,
    pub heads: u32,
    pub sectors: u32,
    pub nb_sectors: u64,
    pub mult_sectors: u32,
    pub req_nb_sectors: u32,
    pub write_cache: bool,
    pub wwn: u64,
    pub discard: bool,
    pub physical_block_exp: u8,
    /// IDENTIFY data once built (SET FEATURES edits it in place).
    pub identify: Option<[u8; 512]>,
    pub buf: Vec<u8>,
    pub data_pos: usize,
    pub data_end: usize,
    pub end: EndTransfer,
    pub pending: Option<Pending>,
    pub gate: Gate,
    /// Ticket of the next request queued by the I/O limits; a release for
    /// an older one (the request was dropped by a reset) is ignored.
    pub next_ticket: u64,
    // ATAPI
    pub sense_key: u8,
    pub asc: u8,
    /// 1: report "no medium" next, 2: then "medium may have changed".
    pub cdrom_changed: u8,
    pub packet_transfer_size: i64,
    pub elementary_transfer_size: i64,
    pub io_buffer_index: usize,
    pub lba: i64,
    pub cd_sector_size: usize,
    pub atapi_dma: bool,
    pub tray_open: bool,
    pub tray_locked: bool,
    pub new_media: bool,
    pub eject_request: bool,
}

impl Drive {
    pub fn absent() -> Drive {
        let mut d = Drive {
            kind: None,
            identity: DriveIdentity {
                serial: String::new(),
                model: String::new(),
                version: String::new(),
            },
            feature: 0,
            hob_feature: 0,
            nsector: 0,
            hob_nsector: 0,
            sector: 0,
            hob_sector: 0,
            lcyl: 0,
            hob_lcyl: 0,
            hcyl: 0,
            hob_hcyl: 0,
            select: 0xa0,
            status: 0,
            error: 0,
            lba48: false,
            cylinders: 0,
            heads: 0,
            sectors: 0,
            nb_sectors: 0,
            mult_sectors: MAX_MULT_SECTORS,
            req_nb_sectors: 0,
            write_cache: true,
            wwn: 0,
            discard: true,
            physical_block_exp: 0,
            identify: None,
            buf: vec![0; BUF_LEN],
            data_pos: 0,
            data_end: 0,
            end: EndTransfer::Idle,
            pending: None,
            gate: Gate::Ask,
            next_ticket: 0,
            sense_key: 0,
            asc: 0,
            cdrom_changed: 0,
            packet_transfer_size: 0,
            elementary_transfer_size: 0,
            io_buffer_index: 0,
            lba: 0,
            cd_sector_size: 0,
            atapi_dma: false,
            tray_open: false,
            tray_locked: false,
            new_media: false,
            eject_request: false,
        };
        d.reset();
        d
    }

    pub fn new(cfg: DriveConfig) -> Drive {
        let mut d = Drive::absent();
        d.kind = Some(cfg.kind);
        d.identity = cfg.identity;
        d.nb_sectors = cfg.sectors;
        d.write_cache = cfg.write_cache;
        d.wwn = cfg.wwn;
        d.discard = cfg.discard;
        d.physical_block_exp = cfg.physical_block_exp;
        if cfg.cylinders != 0 && cfg.heads != 0 && cfg.secs_per_track != 0 {
            (d.cylinders, d.heads, d.sectors) = (cfg.cylinders, cfg.heads, cfg.secs_per_track);
        } else if cfg.kind == DriveKind::Hd {
            (d.cylinders, d.heads, d.sectors) = guess_chs(cfg.sectors);
        }
        d.reset();
        d
    }

    pub fn is_present(&self) -> bool {
        self.kind.is_some()
    }

    pub fn is_cd(&self) -> bool {
        self.kind == Some(DriveKind::Cd)
    }

    /// Power-on / SRST state of the registers and transfer (ide_reset).
    pub fn reset(&mut self) {
        self.drop_pending();
        self.mult_sectors = MAX_MULT_SECTORS;
        self.feature = 0;
        self.error = 0;
        self.nsector = 0;
        self.sector = 0;
        self.lcyl = 0;
        self.hcyl = 0;
        self.hob_feature = 0;
        self.hob_sector = 0;
        self.hob_nsector = 0;
        self.hob_lcyl = 0;
        self.hob_hcyl = 0;
        self.select = 0xa0;
        self.status = READY_STAT | SEEK_STAT;
        self.lba48 = false;
        self.sense_key = 0;
        self.asc = 0;
        self.cdrom_changed = 0;
        self.packet_transfer_size = 0;
        self.elementary_transfer_size = 0;
        self.io_buffer_index = 0;
        self.cd_sector_size = 0;
        self.atapi_dma = false;
        self.tray_locked = false;
        self.tray_open = false;
        self.req_nb_sectors = 0;
        self.set_signature();
        self.idle_transfer_stop();
    }

    /// Forgets the request in flight; a ticket the limits still hold for
    /// it goes stale.
    pub fn drop_pending(&mut self) {
        self.pending = None;
        self.gate = Gate::Ask;
    }

    /// The device signature in the task file (ATA, ATAPI or nothing).
    pub fn set_signature(&mut self) {
        self.select &= 0xf0;
        self.nsector = 1;
        self.sector = 1;
        (self.lcyl, self.hcyl) = match self.kind {
            Some(DriveKind::Cd) => (0x14, 0xeb),
            Some(DriveKind::Hd) => (0, 0),
            None => (0xff, 0xff),
        };
    }

    pub fn idle_transfer_stop(&mut self) {
        self.end = EndTransfer::Idle;
        self.data_pos = 0;
        self.data_end = 0;
        self.buf[..4].fill(0xff);
    }

    /// Offers `buf[start..start+len]` to the guest, then `end` runs.
    pub fn transfer_start(&mut self, start: usize, len: usize, end: EndTransfer) {
        let start = start.min(self.buf.len());
        self.end = end;
        self.data_pos = start;
        self.data_end = (start + len).min(self.buf.len());
        if self.status & ERR_STAT == 0 {
            self.status |= DRQ_STAT;
        }
    }

    /// Ends the data phase (ide_transfer_stop).
    pub fn transfer_stop(&mut self) {
        self.end = EndTransfer::Stop;
        self.data_pos = 0;
        self.data_end = 0;
        self.status &= !DRQ_STAT;
    }

    pub fn abort_command(&mut self) {
        self.transfer_stop();
        self.status = READY_STAT | ERR_STAT;
        self.error = ABRT_ERR;
    }

    /// The addressed sector, in LBA28, LBA48 or CHS terms.
    pub fn get_sector(&self) -> u64 {
        if self.select & 0x40 != 0 {
            if !self.lba48 {
                ((self.select as u64 & 0x0f) << 24)
                    | (self.hcyl as u64) << 16
                    | (self.lcyl as u64) << 8
                    | self.sector as u64
            } else {
                (self.hob_hcyl as u64) << 40
                    | (self.hob_lcyl as u64) << 32
                    | (self.hob_sector as u64) << 24
                    | (self.hcyl as u64) << 16
                    | (self.lcyl as u64) << 8
                    | self.sector as u64
            }
        } else {
            // Sector register 0 is not a CHS sector: as QEMU's signed sum,
            // it lands one before the track (or on no sector at all, which
            // the range check refuses) instead of overflowing.
            let cyl = ((self.hcyl as u64) << 8) | self.lcyl as u64;
            ((cyl * self.heads as u64 + (self.select as u64 & 0x0f)) * self.sectors as u64)
                .wrapping_add((self.sector as u64).wrapping_sub(1))
        }
    }

    pub fn set_sector(&mut self, n: u64) {
        if self.select & 0x40 != 0 {
            if !self.lba48 {
                self.select = (self.select & 0xf0) | ((n >> 24) as u8 & 0x0f);
                self.hcyl = (n >> 16) as u8;
                self.lcyl = (n >> 8) as u8;
                self.sector = n as u8;
            } else {
                self.sector = n as u8;
                self.lcyl = (n >> 8) as u8;
                self.hcyl = (n >> 16) as u8;
                self.hob_sector = (n >> 24) as u8;
                self.hob_lcyl = (n >> 32) as u8;
                self.hob_hcyl = (n >> 40) as u8;
            }
        } else {
            let per_cyl = (self.heads as u64 * self.sectors as u64).max(1);
            let secs = (self.sectors as u64).max(1);
            let cyl = n / per_cyl;
            let r = n % per_cyl;
            self.hcyl = (cyl >> 8) as u8;
            self.lcyl = cyl as u8;
            self.select = (self.select & 0xf0) | ((r / secs) as u8 & 0x0f);
            self.sector = (r % secs) as u8 + 1;
        }
    }

    /// Applies the LBA48 register pairs and the "zero means maximum" count.
    pub fn lba48_transform(&mut self, lba48: bool) {
        self.lba48 = lba48;
        if !lba48 {
            if self.nsector == 0 {
                self.nsector = 256;
            }
        } else if self.nsector == 0 && self.hob_nsector == 0 {
            self.nsector = 65536;
        } else {
            self.nsector = ((self.hob_nsector as u32) << 8) | (self.nsector & 0xff);
        }
    }

    pub fn sect_range_ok(&self, sector: u64, count: u64) -> bool {
        sector <= self.nb_sectors && count <= self.nb_sectors - sector
    }
}

/// QEMU's geometry for a disk without a partition table to go by: 16 heads,
/// 63 sectors per track, cylinders from the size (2..=16383).
pub fn guess_chs(sectors: u64) -> (u32, u32, u32) {
    let cyls = (sectors / (16 * 63)).clamp(2, 16383) as u32;
    (cyls, 16, 63)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hd(sectors: u64) -> Drive {
        let identity = DriveIdentity {
            serial: "QM00001".into(),
            model: "QEMU HARDDISK".into(),
            version: "2.5+".into(),
        };
        Drive::new(DriveConfig::new(DriveKind::Hd, identity, sectors))
    }

    #[test]
    fn lba28_lba48_and_chs_addresses_round_trip() {
        let mut d = hd(1 << 20);
        d.select = 0xe0;
        d.set_sector(0x0abc_def1);
        assert_eq!(d.get_sector(), 0x0abc_def1);
        d.lba48 = true;
        d.set_sector(0x0012_3456_789a);
        assert_eq!(d.get_sector(), 0x0012_3456_789a);
        d.select = 0xa0;
        d.lba48 = false;
        d.set_sector(5000);
        assert_eq!(d.get_sector(), 5000);
    }

    #[test]
    fn chs_sector_zero_is_out_of_range_not_an_overflow() {
        let mut d = hd(100);
        d.select = 0xa0;
        (d.hcyl, d.lcyl, d.sector) = (0, 0, 0);
        assert_eq!(d.get_sector(), u64::MAX);
        assert!(!d.sect_range_ok(d.get_sector(), 1));
        d.select = 0xa1;
        assert_eq!(d.get_sector(), 62, "head 1, sector 0: end of head 0");
    }

    #[test]
    fn signatures_tell_disk_cd_and_nothing_apart() {
        let d = hd(100);
        assert_eq!((d.lcyl, d.hcyl), (0, 0));
        let a = Drive::absent();
        assert_eq!((a.lcyl, a.hcyl), (0xff, 0xff));
    }

    #[test]
    fn zero_count_means_256_or_65536() {
        let mut d = hd(100);
        d.nsector = 0;
        d.lba48_transform(false);
        assert_eq!(d.nsector, 256);
        d.nsector = 0;
        d.hob_nsector = 0;
        d.lba48_transform(true);
        assert_eq!(d.nsector, 65536);
        d.nsector = 2;
        d.hob_nsector = 1;
        d.lba48_transform(true);
        assert_eq!(d.nsector, 0x102);
    }

    #[test]
    fn geometry_guess_clamps_cylinders() {
        assert_eq!(guess_chs(100), (2, 16, 63));
        assert_eq!(guess_chs(64 << 11), (130, 16, 63));
        assert_eq!(guess_chs(u64::MAX), (16383, 16, 63));
    }
}
