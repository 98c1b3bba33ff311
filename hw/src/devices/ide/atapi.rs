//! ATAPI packet commands of the CD-ROM (QEMU's atapi.c subset): TEST UNIT
//! READY, REQUEST SENSE, INQUIRY, READ CAPACITY, READ(10/12), MODE SENSE(10),
//! START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL, GET EVENT STATUS
//! NOTIFICATION, SEEK, SET SPEED, MECHANISM STATUS (disc descriptions are in
//! `atapi_disc`), by PIO or DMA.

use super::channel::IdeChannel;
use super::drive::{
    Drive, EndTransfer, Pending, BUSY_STAT, ERR_STAT, MC_ERR, READY_STAT, SEEK_STAT,
};
use super::io::DriveEventKind;

pub const NO_SENSE: u8 = 0;
pub const NOT_READY: u8 = 2;
pub const ILLEGAL_REQUEST: u8 = 5;
pub const UNIT_ATTENTION: u8 = 6;

pub const ASC_ILLEGAL_OPCODE: u8 = 0x20;
pub const ASC_LOGICAL_BLOCK_OOR: u8 = 0x21;
pub const ASC_INV_FIELD_IN_CMD_PACKET: u8 = 0x24;
pub const ASC_MEDIUM_MAY_HAVE_CHANGED: u8 = 0x28;
pub const ASC_SAVING_PARAMETERS_NOT_SUPPORTED: u8 = 0x39;
pub const ASC_MEDIUM_NOT_PRESENT: u8 = 0x3a;
pub const ASC_DATA_PHASE_ERROR: u8 = 0x4b;
pub const ASC_MEDIA_REMOVAL_PREVENTED: u8 = 0x53;

const INT_REASON_CD: u32 = 0x01;
const INT_REASON_IO: u32 = 0x02;

/// Command flags (MMC's unit-attention and not-ready rules).
const ALLOW_UA: u8 = 1;
const CHECK_READY: u8 = 2;
const NONDATA: u8 = 4;

fn flags(op: u8) -> Option<u8> {
    Some(match op {
        0x00 => CHECK_READY | NONDATA,
        0x03 | 0x12 | 0x4a => ALLOW_UA,
        0x1b | 0x1e | 0xbb => NONDATA,
        0x25 | 0x28 | 0xa8 | 0x43 | 0x51 => CHECK_READY,
        0x46 => ALLOW_UA,
        0x2b => CHECK_READY | NONDATA,
        0x5a | 0xbd => 0,
        _ => return None,
    })
}

fn be16(b: &[u8]) -> usize {
    u16::from_be_bytes([b[0], b[1]]) as usize
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn pad(dst: &mut [u8], s: &str) {
    for (i, d) in dst.iter_mut().enumerate() {
        *d = s.as_bytes().get(i).copied().unwrap_or(b' ');
    }
}

fn media_present(d: &Drive) -> bool {
    !d.tray_open && d.nb_sectors > 0
}

impl IdeChannel {
    fn atapi_ok(&mut self) {
        let s = self.s();
        s.error = 0;
        s.status = READY_STAT | SEEK_STAT;
        s.nsector = (s.nsector & !7) | INT_REASON_IO | INT_REASON_CD;
        s.transfer_stop();
        self.set_irq();
    }

    pub(super) fn atapi_error(&mut self, key: u8, asc: u8) {
        let s = self.s();
        s.error = key << 4;
        s.status = READY_STAT | ERR_STAT;
        s.nsector = (s.nsector & !7) | INT_REASON_IO | INT_REASON_CD;
        s.sense_key = key;
        s.asc = asc;
        s.transfer_stop();
        self.set_irq();
    }

    pub(super) fn atapi_io_error(&mut self, errno: i32) {
        if errno == libc::ENOMEDIUM {
            self.atapi_error(NOT_READY, ASC_MEDIUM_NOT_PRESENT);
        } else {
            self.atapi_error(ILLEGAL_REQUEST, ASC_LOGICAL_BLOCK_OOR);
        }
    }

    fn byte_count_limit(&mut self) -> usize {
        let s = self.s();
        let bcl = s.lcyl as usize | (s.hcyl as usize) << 8;
        if bcl == 0xffff {
            0xfffe
        } else {
            bcl
        }
    }

    /// Moves an ATAPI reply forward: the next chunk, the next CD sector,
    /// or the end of the command (ide_atapi_cmd_reply_end).
    pub(super) fn atapi_reply_end(&mut self) {
        if self.s().packet_transfer_size <= 0 {
            self.atapi_ok();
            return;
        }
        let s = self.s();
        if s.lba != -1 && s.io_buffer_index >= s.cd_sector_size {
            s.status |= BUSY_STAT;
            s.pending = Some(Pending::CdRead);
            return;
        }
        if s.elementary_transfer_size > 0 {
            let mut size = (s.cd_sector_size as i64 - s.io_buffer_index as i64)
                .min(s.elementary_transfer_size);
            if s.lba == -1 {
                size = s.elementary_transfer_size;
            }
            let size = size.max(0);
            s.packet_transfer_size -= size;
            s.elementary_transfer_size -= size;
            s.io_buffer_index += size as usize;
            let start = s.io_buffer_index - size as usize;
            s.transfer_start(start, size as usize, EndTransfer::AtapiReplyEnd);
        } else {
            let bcl = self.byte_count_limit();
            let s = self.s();
            s.nsector = (s.nsector & !7) | INT_REASON_IO;
            let mut size = s.packet_transfer_size;
            if size > bcl as i64 {
                size = (bcl & !1) as i64;
            }
            s.lcyl = size as u8;
            s.hcyl = (size >> 8) as u8;
            s.elementary_transfer_size = size;
            if s.lba != -1 {
                size = size.min(s.cd_sector_size as i64 - s.io_buffer_index as i64);
            }
            s.packet_transfer_size -= size;
            s.elementary_transfer_size -= size;
            s.io_buffer_index += size as usize;
            let start = s.io_buffer_index - size as usize;
            s.transfer_start(start, size as usize, EndTransfer::AtapiReplyEnd);
            self.set_irq();
        }
    }

    pub(super) fn cd_read_done(&mut self) {
        let s = self.s();
        if s.cd_sector_size == 2352 {
            cd_data_to_raw(&mut s.buf, s.lba);
        }
        s.lba += 1;
        s.io_buffer_index = 0;
        s.status &= !BUSY_STAT;
        self.atapi_reply_end();
    }

    /// Sends `size` bytes of the buffer (at most `max`) as the reply.
    pub(super) fn atapi_reply(&mut self, size: usize, max: usize) {
        let s = self.s();
        let size = size.min(max);
        s.lba = -1;
        s.packet_transfer_size = size as i64;
        s.elementary_transfer_size = 0;
        if s.atapi_dma {
            let reply = s.buf[..size].to_vec();
            self.atapi_start_dma(reply);
            return;
        }
        let s = self.s();
        s.status = READY_STAT | SEEK_STAT;
        s.io_buffer_index = 0;
        self.atapi_reply_end();
    }

    fn atapi_read(&mut self, lba: u32, count: u32, sector_size: usize) {
        let s = self.s();
        s.lba = lba as i64;
        s.packet_transfer_size = count as i64 * sector_size as i64;
        s.elementary_transfer_size = 0;
        s.io_buffer_index = sector_size;
        s.cd_sector_size = sector_size;
        if s.atapi_dma {
            self.atapi_start_dma(Vec::new());
            return;
        }
        self.atapi_reply_end();
    }

    /// The 12-byte packet arrived (ide_atapi_cmd).
    pub(super) fn atapi_cmd(&mut self) {
        let s = self.s();
        let mut pkt = [0u8; 12];
        pkt.copy_from_slice(&s.buf[..12]);
        let fl = flags(pkt[0]);
        let f = fl.unwrap_or(0);
        if s.sense_key == UNIT_ATTENTION && f & ALLOW_UA == 0 {
            s.error = MC_ERR | (UNIT_ATTENTION << 4);
            s.status = ERR_STAT;
            s.nsector = 0;
            self.set_irq();
            return;
        }
        if f & ALLOW_UA == 0 && !s.tray_open && s.nb_sectors > 0 && s.cdrom_changed != 0 {
            if s.cdrom_changed == 1 {
                s.cdrom_changed = 2;
                self.atapi_error(NOT_READY, ASC_MEDIUM_NOT_PRESENT);
            } else {
                s.cdrom_changed = 0;
                self.atapi_error(UNIT_ATTENTION, ASC_MEDIUM_MAY_HAVE_CHANGED);
            }
            return;
        }
        if f & CHECK_READY != 0 && !media_present(s) {
            self.atapi_error(NOT_READY, ASC_MEDIUM_NOT_PRESENT);
            return;
        }
        if fl.is_some() && f & NONDATA == 0 && self.byte_count_limit() == 0 && !self.s().atapi_dma {
            self.s().abort_command();
            return;
        }
        match pkt[0] {
            0x00 => self.atapi_ok(),
            0x03 => self.cmd_request_sense(&pkt),
            0x12 => self.cmd_inquiry(&pkt),
            0x1b => self.cmd_start_stop_unit(&pkt),
            0x1e => {
                let locked = pkt[4] & 1 != 0;
                self.s().tray_locked = locked;
                self.notify(DriveEventKind::MediumLocked { locked });
                self.atapi_ok();
            }
            0x25 => {
                let s = self.s();
                let total = s.nb_sectors >> 2;
                s.buf[..4].copy_from_slice(&(total.wrapping_sub(1) as u32).to_be_bytes());
                s.buf[4..8].copy_from_slice(&2048u32.to_be_bytes());
                self.atapi_reply(8, 8);
            }
            0x28 | 0xa8 => {
                let count = if pkt[0] == 0x28 {
                    be16(&pkt[7..]) as u32
                } else {
                    be32(&pkt[6..])
                };
                let lba = be32(&pkt[2..]);
                if count == 0 {
                    self.atapi_ok();
                } else {
                    self.atapi_read(lba, count, 2048);
                }
            }
            0x2b => {
                let total = self.s().nb_sectors >> 2;
                if be32(&pkt[2..]) as u64 >= total {
                    self.atapi_error(ILLEGAL_REQUEST, ASC_LOGICAL_BLOCK_OOR);
                } else {
                    self.atapi_ok();
                }
            }
            0x4a => self.cmd_get_event_status(&pkt),
            0x43 => self.cmd_read_toc(&pkt),
            0x46 => self.cmd_get_configuration(&pkt),
            0x51 => self.cmd_read_disc_information(&pkt),
            0x5a => self.cmd_mode_sense(&pkt),
            0xbb => self.atapi_ok(),
            0xbd => {
                let max = be16(&pkt[8..]);
                let s = self.s();
                s.buf[..8].copy_from_slice(&[0, 0, 0, 0, 0, 1, 0, 0]);
                self.atapi_reply(8, max);
            }
            _ => self.atapi_error(ILLEGAL_REQUEST, ASC_ILLEGAL_OPCODE),
        }
    }

    fn cmd_request_sense(&mut self, pkt: &[u8; 12]) {
        let max = pkt[4] as usize;
        let s = self.s();
        s.buf[..18].fill(0);
        s.buf[0] = 0x70 | 0x80;
        s.buf[2] = s.sense_key;
        s.buf[7] = 10;
        s.buf[12] = s.asc;
        if s.sense_key == UNIT_ATTENTION {
            s.sense_key = NO_SENSE;
        }
        self.atapi_reply(18, max);
    }

    fn cmd_inquiry(&mut self, pkt: &[u8; 12]) {
        let page = pkt[2];
        let max = pkt[4] as usize;
        let s = self.s();
        let serial = s.identity.serial.clone();
        let model = s.identity.model.clone();
        let version = s.identity.version.clone();
        let wwn = s.wwn;
        let b = &mut s.buf;
        let (idx, size_idx, preamble) = if pkt[1] & 1 != 0 {
            b[0] = 0x05;
            b[1] = page;
            b[2] = 0;
            let mut idx = 4;
            match page {
                0x00 => {
                    b[4] = 0x00;
                    b[5] = 0x83;
                    idx = 6;
                }
                0x83 => {
                    if idx + 24 > max {
                        self.atapi_error(ILLEGAL_REQUEST, ASC_DATA_PHASE_ERROR);
                        return;
                    }
                    b[idx..idx + 4].copy_from_slice(&[0x02, 0x00, 0x00, 20]);
                    idx += 4;
                    pad(&mut b[idx..idx + 20], &serial);
                    idx += 20;
                    if idx + 72 <= max {
                        b[idx..idx + 4].copy_from_slice(&[0x02, 0x01, 0x00, 68]);
                        idx += 4;
                        pad(&mut b[idx..idx + 8], "ATA");
                        idx += 8;
                        pad(&mut b[idx..idx + 40], &model);
                        idx += 40;
                        pad(&mut b[idx..idx + 20], &serial);
                        idx += 20;
                        if wwn != 0 && idx + 12 <= max {
                            b[idx..idx + 4].copy_from_slice(&[0x01, 0x03, 0x00, 0x08]);
                            b[idx + 4..idx + 12].copy_from_slice(&wwn.to_be_bytes());
                            idx += 12;
                        }
                    }
                }
                _ => {
                    self.atapi_error(ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET);
                    return;
                }
            }
            (idx, 3, 4)
        } else {
            b[..8].copy_from_slice(&[0x05, 0x80, 0x00, 0x21, 0, 0, 0, 0]);
            pad(&mut b[8..16], "QEMU");
            pad(&mut b[16..32], "QEMU DVD-ROM");
            pad(&mut b[32..36], &version);
            (36, 4, 5)
        };
        b[size_idx] = (idx - preamble) as u8;
        self.atapi_reply(idx, max);
    }

    fn cmd_start_stop_unit(&mut self, pkt: &[u8; 12]) {
        let start = pkt[4] & 1 != 0;
        let loej = pkt[4] & 2 != 0;
        if pkt[4] & 0xf0 != 0 {
            self.atapi_ok();
            return;
        }
        if loej {
            let s = self.s();
            if !start && !s.tray_open && s.tray_locked {
                let key = if s.nb_sectors > 0 {
                    NOT_READY
                } else {
                    ILLEGAL_REQUEST
                };
                self.atapi_error(key, ASC_MEDIA_REMOVAL_PREVENTED);
                return;
            }
            if s.tray_open == start {
                s.tray_open = !start;
                self.notify(DriveEventKind::TrayMoved { open: !start });
            }
        }
        self.atapi_ok();
    }

    fn cmd_get_event_status(&mut self, pkt: &[u8; 12]) {
        let max = be16(&pkt[7..]);
        if pkt[1] & 1 == 0 {
            self.atapi_error(ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET);
            return;
        }
        let class = pkt[4];
        let s = self.s();
        // Only the media class (4) is supported.
        s.buf[3] = 1 << 4;
        let used = if class & (1 << 4) != 0 {
            s.buf[2] = 4;
            let status = if s.tray_open {
                1
            } else if s.nb_sectors > 0 {
                2
            } else {
                0
            };
            let mut code = 0;
            if status != 1 {
                if s.new_media {
                    code = 2;
                    s.new_media = false;
                } else if s.eject_request {
                    code = 1;
                    s.eject_request = false;
                }
            }
            s.buf[4..8].copy_from_slice(&[code, status, 0, 0]);
            8
        } else {
            s.buf[2] = 0x80;
            4
        };
        s.buf[..2].copy_from_slice(&((used - 4) as u16).to_be_bytes());
        self.atapi_reply(used, max);
    }

    fn cmd_mode_sense(&mut self, pkt: &[u8; 12]) {
        let max = be16(&pkt[7..]);
        let action = pkt[2] >> 6;
        let code = pkt[2] & 0x3f;
        if action == 3 {
            self.atapi_error(ILLEGAL_REQUEST, ASC_SAVING_PARAMETERS_NOT_SUPPORTED);
            return;
        }
        let s = self.s();
        let locked = s.tray_locked;
        let b = &mut s.buf;
        let len = match (action, code) {
            (0, 0x01) => {
                b[..16].fill(0);
                b[..2].copy_from_slice(&14u16.to_be_bytes());
                b[2] = 0x70;
                b[8] = 0x01;
                b[9] = 6;
                b[11] = 0x05;
                16
            }
            (0, 0x0e) => {
                b[..24].fill(0);
                b[..2].copy_from_slice(&22u16.to_be_bytes());
                b[2] = 0x70;
                b[8] = 0x0e;
                b[9] = 14;
                24
            }
            (0, 0x2a) => {
                b[..30].fill(0);
                b[..2].copy_from_slice(&28u16.to_be_bytes());
                b[2] = 0x70;
                b[8] = 0x2a;
                b[9] = 20;
                b[10] = 0x3b;
                b[12] = 0x71;
                b[13] = 3 << 5;
                b[14] = 1 | (1 << 3) | (1 << 5) | if locked { 2 } else { 0 };
                b[16..18].copy_from_slice(&704u16.to_be_bytes());
                b[19] = 2;
                b[20..22].copy_from_slice(&512u16.to_be_bytes());
                b[22..24].copy_from_slice(&704u16.to_be_bytes());
                30
            }
            _ => {
                self.atapi_error(ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET);
                return;
            }
        };
        self.atapi_reply(len, max);
    }
}

/// A raw 2352-byte sector around the 2048 data bytes at offset 16: sync
/// pattern, MSF header and mode 1.
fn cd_data_to_raw(buf: &mut [u8], lba: i64) {
    buf[0] = 0;
    buf[1..11].fill(0xff);
    buf[11] = 0;
    let l = lba + 150;
    buf[12] = (l / 75 / 60) as u8;
    buf[13] = ((l / 75) % 60) as u8;
    buf[14] = (l % 75) as u8;
    buf[15] = 0x01;
    buf[2064..2352].fill(0);
}
