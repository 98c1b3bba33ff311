//! ATA commands (QEMU's ide_cmd_table): which drive kinds take each one,
//! and the PIO sector transfers, IDENTIFY, SET FEATURES and FLUSH CACHE.
//! READ/WRITE DMA start the bus master (`bmdma`); SMART and TRIM are not
//! emulated and are aborted.

use super::channel::IdeChannel;
use super::drive::{DriveKind, EndTransfer, Pending, BUSY_STAT, READY_STAT, SEEK_STAT};
use super::identify;
use super::io::DriveEventKind;

/// Who may run a command.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Allowed {
    All,
    Hd,
    Cd,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Nop,
    DeviceReset,
    ReadPio,
    ReadPioExt,
    WritePio,
    WritePioExt,
    ReadMultiple,
    ReadMultipleExt,
    WriteMultiple,
    WriteMultipleExt,
    Verify,
    VerifyExt,
    ReadNativeMax,
    ReadNativeMaxExt,
    CheckPowerMode,
    SetMultiple,
    Diagnose,
    Packet,
    IdentifyPacket,
    Flush,
    Identify,
    SetFeatures,
    ReadDma,
    ReadDmaExt,
    WriteDma,
    WriteDmaExt,
    /// SMART, TRIM: known to QEMU, not emulated here.
    Unsupported,
}

/// The command table: handler, who may run it, and whether a successful
/// completion sets DSC (QEMU's SET_DSC).
fn lookup(op: u8) -> Option<(Cmd, Allowed, bool)> {
    use Allowed::*;
    use Cmd::*;
    Some(match op {
        0x08 => (DeviceReset, Cd, false),
        0x10 => (Nop, Hd, true),
        0x20 => (ReadPio, All, false),
        0x21 => (ReadPio, Hd, false),
        0x24 => (ReadPioExt, Hd, false),
        0x27 => (ReadNativeMaxExt, Hd, true),
        0x29 => (ReadMultipleExt, Hd, false),
        0x30 | 0x31 | 0x3c => (WritePio, Hd, false),
        0x34 => (WritePioExt, Hd, false),
        0x39 => (WriteMultipleExt, Hd, false),
        0x40 | 0x41 => (Verify, Hd, true),
        0x42 => (VerifyExt, Hd, true),
        0x70 => (Nop, Hd, true),
        0x90 => (Diagnose, All, false),
        0x91 => (Nop, Hd, true),
        0x94..=0x97 | 0x99 | 0xe0..=0xe3 | 0xe6 => (Nop, Hd, false),
        0x98 | 0xe5 => (CheckPowerMode, Hd, true),
        0xa0 => (Packet, Cd, false),
        0xa1 => (IdentifyPacket, Cd, false),
        0xc4 => (ReadMultiple, Hd, false),
        0xc5 => (WriteMultiple, Hd, false),
        0xc6 => (SetMultiple, Hd, true),
        0xe7 => (Flush, All, false),
        0xea => (Flush, Hd, false),
        0xec => (Identify, All, false),
        0xef => (SetFeatures, All, true),
        0xf8 => (ReadNativeMax, Hd, true),
        0x25 => (ReadDmaExt, Hd, false),
        0x35 => (WriteDmaExt, Hd, false),
        0xc8 | 0xc9 => (ReadDma, Hd, false),
        0xca | 0xcb => (WriteDma, Hd, false),
        0x06 | 0xb0 | 0xf5 => (Unsupported, Hd, false),
        _ => return None,
    })
}

impl IdeChannel {
    /// A write to the command register (ide_exec_cmd).
    pub(super) fn exec_cmd(&mut self, val: u8) {
        let unit = self.unit & 1;
        if unit == 1 && !self.drives[1].is_present() {
            return;
        }
        let kind = self.drives[unit].kind;
        let s = self.s();
        if s.status & (BUSY_STAT | super::drive::DRQ_STAT) != 0
            && (val != 0x08 || kind != Some(DriveKind::Cd))
        {
            return;
        }
        let permitted = lookup(val).filter(|(_, who, _)| {
            matches!(
                (who, kind),
                (Allowed::All, Some(_))
                    | (Allowed::Hd, Some(DriveKind::Hd))
                    | (Allowed::Cd, Some(DriveKind::Cd))
            )
        });
        let Some((cmd, _, set_dsc)) = permitted else {
            self.s().abort_command();
            self.set_irq();
            return;
        };
        let s = self.s();
        s.status = READY_STAT | BUSY_STAT;
        s.error = 0;
        if self.run_cmd(cmd) {
            let s = self.s();
            s.status &= !BUSY_STAT;
            if set_dsc && s.error == 0 {
                s.status |= SEEK_STAT;
            }
            self.set_irq();
        }
    }

    /// Runs a handler; true when the command completed here.
    fn run_cmd(&mut self, cmd: Cmd) -> bool {
        let has_blk = self.s().is_present();
        match cmd {
            Cmd::Nop => true,
            Cmd::DeviceReset => {
                let s = self.s();
                s.transfer_stop();
                s.reset();
                s.status = 0;
                false
            }
            Cmd::Identify => {
                let s = self.s();
                if s.is_cd() {
                    s.set_signature();
                    s.abort_command();
                    return true;
                }
                // Built once the medium's current size is known (run_io).
                s.pending = Some(Pending::Identify);
                false
            }
            Cmd::IdentifyPacket => {
                let s = self.s();
                if s.identify.is_none() {
                    s.identify = Some(identify::atapi_identify(s));
                }
                let data = s.identify.unwrap_or([0; 512]);
                s.buf[..512].copy_from_slice(&data);
                s.status = READY_STAT | SEEK_STAT;
                s.transfer_start(0, 512, EndTransfer::Stop);
                self.set_irq();
                false
            }
            Cmd::Verify | Cmd::VerifyExt => {
                self.s().lba48_transform(cmd == Cmd::VerifyExt);
                true
            }
            Cmd::SetMultiple => {
                let s = self.s();
                let n = s.nsector & 0xff;
                if n != 0 && (n > super::drive::MAX_MULT_SECTORS || (n & (n - 1)) != 0) {
                    s.abort_command();
                } else {
                    s.mult_sectors = n;
                }
                true
            }
            Cmd::ReadMultiple | Cmd::ReadMultipleExt => {
                let s = self.s();
                if !has_blk || s.mult_sectors == 0 {
                    s.abort_command();
                    return true;
                }
                s.lba48_transform(cmd == Cmd::ReadMultipleExt);
                s.req_nb_sectors = s.mult_sectors;
                self.sector_read();
                false
            }
            Cmd::WriteMultiple | Cmd::WriteMultipleExt => {
                let s = self.s();
                if !has_blk || s.mult_sectors == 0 {
                    s.abort_command();
                    return true;
                }
                s.lba48_transform(cmd == Cmd::WriteMultipleExt);
                s.req_nb_sectors = s.mult_sectors;
                let n = s.nsector.min(s.req_nb_sectors) as usize;
                s.status = SEEK_STAT | READY_STAT;
                s.transfer_start(0, 512 * n, EndTransfer::SectorWrite);
                false
            }
            Cmd::ReadPio | Cmd::ReadPioExt => {
                let s = self.s();
                if s.is_cd() {
                    s.set_signature();
                    s.abort_command();
                    return true;
                }
                s.lba48_transform(cmd == Cmd::ReadPioExt);
                s.req_nb_sectors = 1;
                self.sector_read();
                false
            }
            Cmd::WritePio | Cmd::WritePioExt => {
                let s = self.s();
                s.lba48_transform(cmd == Cmd::WritePioExt);
                s.req_nb_sectors = 1;
                s.status = SEEK_STAT | READY_STAT;
                s.transfer_start(0, 512, EndTransfer::SectorWrite);
                false
            }
            Cmd::Flush => {
                self.flush_cache();
                false
            }
            Cmd::ReadNativeMax | Cmd::ReadNativeMaxExt => {
                let s = self.s();
                if s.nb_sectors == 0 {
                    s.abort_command();
                    return true;
                }
                s.lba48_transform(cmd == Cmd::ReadNativeMaxExt);
                let last = s.nb_sectors - 1;
                s.set_sector(last);
                true
            }
            Cmd::CheckPowerMode => {
                self.s().nsector = 0xff;
                true
            }
            Cmd::SetFeatures => self.set_features(),
            Cmd::Diagnose => {
                let cd = self.s().is_cd();
                let s = self.s();
                s.set_signature();
                s.error = 0x01;
                if cd {
                    s.status = 0;
                } else {
                    s.status = READY_STAT | SEEK_STAT;
                    self.set_irq();
                }
                false
            }
            Cmd::Packet => {
                let s = self.s();
                if s.feature & 0x02 != 0 {
                    s.abort_command();
                    return true;
                }
                s.status = READY_STAT | SEEK_STAT;
                s.atapi_dma = s.feature & 1 != 0;
                s.nsector = 1;
                s.transfer_start(0, 12, EndTransfer::AtapiCmd);
                false
            }
            Cmd::ReadDma | Cmd::ReadDmaExt => {
                self.s().lba48_transform(cmd == Cmd::ReadDmaExt);
                self.sector_start_dma(super::bmdma::DmaDir::Read);
                false
            }
            Cmd::WriteDma | Cmd::WriteDmaExt => {
                self.s().lba48_transform(cmd == Cmd::WriteDmaExt);
                self.sector_start_dma(super::bmdma::DmaDir::Write);
                false
            }
            Cmd::Unsupported => {
                self.s().abort_command();
                true
            }
        }
    }

    fn set_features(&mut self) -> bool {
        let s = self.s();
        match s.feature {
            0x02 | 0x82 => {
                let on = s.feature == 0x02;
                s.write_cache = on;
                if let Some(p) = s.identify.as_mut() {
                    identify::set_word(p, 85, identify::write_cache_word(on));
                }
                self.notify(DriveEventKind::WriteCache { enabled: on });
                if on {
                    return true;
                }
                self.flush_cache();
                false
            }
            0xcc | 0x66 | 0xaa | 0x55 | 0x05 | 0x85 | 0x69 | 0x67 | 0x96 | 0x9a | 0x42 | 0xc2 => {
                true
            }
            0x03 => {
                let val = s.nsector & 0x07;
                let words = match s.nsector >> 3 {
                    0x00 | 0x01 => Some((0x07, 0x07, 0x3f)),
                    0x02 => Some((0x07 | (1 << (val + 8)), 0x07, 0x3f)),
                    0x04 => Some((0x07, 0x07 | (1 << (val + 8)), 0x3f)),
                    0x08 => Some((0x07, 0x07, 0x3f | (1 << (val + 8)))),
                    _ => None,
                };
                match (words, s.identify.as_mut()) {
                    (Some((w62, w63, w88)), Some(p)) => {
                        identify::set_word(p, 62, w62);
                        identify::set_word(p, 63, w63);
                        identify::set_word(p, 88, w88);
                        true
                    }
                    (Some(_), None) => true,
                    (None, _) => {
                        s.abort_command();
                        true
                    }
                }
            }
            _ => {
                s.abort_command();
                true
            }
        }
    }

    /// IDENTIFY DEVICE data to the guest (cmd_identify's transfer).
    pub(super) fn identify_done(&mut self) {
        let s = self.s();
        if s.identify.is_none() {
            s.identify = Some(identify::ata_identify(s));
        }
        let data = s.identify.unwrap_or([0; 512]);
        s.buf[..512].copy_from_slice(&data);
        s.status = READY_STAT | SEEK_STAT;
        s.transfer_start(0, 512, EndTransfer::Stop);
        self.set_irq();
    }

    pub(super) fn flush_cache(&mut self) {
        let s = self.s();
        s.status |= BUSY_STAT;
        s.pending = Some(Pending::Flush);
    }

    /// Starts reading the next block of a PIO read (ide_sector_read).
    pub(super) fn sector_read(&mut self) {
        let s = self.s();
        s.status = READY_STAT | SEEK_STAT;
        s.error = 0;
        let sector = s.get_sector();
        let n = s.nsector;
        if n == 0 {
            s.transfer_stop();
            return;
        }
        s.status |= BUSY_STAT;
        let n = n.min(s.req_nb_sectors.max(1));
        // The range is checked against the medium's size when the request
        // runs (run_io), so a resized medium counts at once.
        s.pending = Some(Pending::SectorRead { sector, count: n });
    }

    pub(super) fn sector_read_done(&mut self, count: u32) {
        let s = self.s();
        let n = s.nsector.min(count);
        let next = s.get_sector() + n as u64;
        s.set_sector(next);
        s.nsector -= n;
        s.transfer_start(0, n as usize * 512, EndTransfer::SectorRead);
        self.set_irq();
    }

    /// A block of write data arrived (ide_sector_write).
    pub(super) fn sector_write(&mut self) {
        let s = self.s();
        s.status = READY_STAT | SEEK_STAT | BUSY_STAT;
        let sector = s.get_sector();
        let n = s.nsector.min(s.req_nb_sectors.max(1));
        s.pending = Some(Pending::SectorWrite { sector, count: n });
    }

    pub(super) fn sector_write_done(&mut self, count: u32) {
        let s = self.s();
        let n = s.nsector.min(count);
        s.nsector -= n;
        let next = s.get_sector() + n as u64;
        s.set_sector(next);
        if s.nsector == 0 {
            s.transfer_stop();
        } else {
            let n1 = s.nsector.min(s.req_nb_sectors.max(1)) as usize;
            s.transfer_start(0, n1 * 512, EndTransfer::SectorWrite);
        }
        self.set_irq();
    }

    /// Errors and the aborted-command status agree (QEMU asserts this).
    #[cfg(test)]
    pub(super) fn error_consistent(&self) -> bool {
        let d = &self.drives[self.unit & 1];
        (d.error != 0) == (d.status & super::drive::ERR_STAT != 0)
    }
}
