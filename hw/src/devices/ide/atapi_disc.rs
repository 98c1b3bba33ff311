//! ATAPI commands that describe the disc: READ TOC/PMA/ATIP (one data
//! track), READ DISC INFORMATION and GET CONFIGURATION (CD-ROM or DVD-ROM
//! profile by size), as QEMU 2.8 answers them.

use super::atapi::{ASC_INV_FIELD_IN_CMD_PACKET, ILLEGAL_REQUEST};
use super::channel::IdeChannel;

/// 80 minutes of 2048-byte frames, in 512-byte sectors: bigger media are
/// DVDs.
const CD_MAX_SECTORS: u64 = 80 * 60 * 75 * 2048 / 512;
const MMC_PROFILE_CD_ROM: u16 = 0x0008;
const MMC_PROFILE_DVD_ROM: u16 = 0x0010;

fn lba_to_msf(out: &mut [u8], lba: u32) {
    let l = lba + 150;
    out[0] = ((l / 75) / 60) as u8;
    out[1] = ((l / 75) % 60) as u8;
    out[2] = (l % 75) as u8;
}

/// Appends an address as LBA or (reserved byte +) MSF.
fn put_addr(q: &mut Vec<u8>, msf: bool, lba: u32) {
    if msf {
        let mut m = [0u8; 3];
        lba_to_msf(&mut m, lba);
        q.push(0);
        q.extend_from_slice(&m);
    } else {
        q.extend_from_slice(&lba.to_be_bytes());
    }
}

/// Formatted TOC: track 1 at 0 and the lead-out at the disc's end.
fn read_toc(sectors: u32, msf: bool, start_track: u8) -> Option<Vec<u8>> {
    if start_track > 1 && start_track != 0xaa {
        return None;
    }
    let mut q = vec![0, 0, 1, 1];
    if start_track <= 1 {
        q.extend_from_slice(&[0, 0x14, 1, 0]);
        put_addr(&mut q, msf, 0);
    }
    q.extend_from_slice(&[0, 0x16, 0xaa, 0]);
    put_addr(&mut q, msf, sectors);
    let len = (q.len() - 2) as u16;
    q[..2].copy_from_slice(&len.to_be_bytes());
    Some(q)
}

/// Raw TOC: the A0/A1/A2 points and track 1.
fn read_toc_raw(sectors: u32, msf: bool) -> Vec<u8> {
    let mut q = vec![0, 0, 1, 1];
    q.extend_from_slice(&[1, 0x14, 0, 0xa0, 0, 0, 0, 0, 1, 0, 0]);
    q.extend_from_slice(&[1, 0x14, 0, 0xa1, 0, 0, 0, 0, 1, 0, 0]);
    q.extend_from_slice(&[1, 0x14, 0, 0xa2, 0, 0, 0]);
    put_addr(&mut q, msf, sectors);
    q.extend_from_slice(&[1, 0x14, 0, 1, 0, 0, 0]);
    if msf {
        q.push(0);
        let mut m = [0u8; 3];
        lba_to_msf(&mut m, 0);
        q.extend_from_slice(&m);
    } else {
        q.extend_from_slice(&[0, 0, 0, 0]);
    }
    let len = (q.len() - 2) as u16;
    q[..2].copy_from_slice(&len.to_be_bytes());
    q
}

impl IdeChannel {
    fn reply_bytes(&mut self, data: &[u8], max: usize) {
        let s = self.s();
        let n = data.len().min(s.buf.len());
        s.buf[..n].copy_from_slice(&data[..n]);
        self.atapi_reply(n, max);
    }

    pub(super) fn cmd_read_toc(&mut self, pkt: &[u8; 12]) {
        let max = u16::from_be_bytes([pkt[7], pkt[8]]) as usize;
        let format = pkt[9] >> 6;
        let msf = (pkt[1] >> 1) & 1 != 0;
        let start_track = pkt[6];
        let total = (self.s().nb_sectors >> 2) as u32;
        match format {
            0 => match read_toc(total, msf, start_track) {
                Some(t) => self.reply_bytes(&t, max),
                None => self.atapi_error(ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET),
            },
            1 => {
                let mut b = [0u8; 12];
                b[1] = 0x0a;
                b[2] = 1;
                b[3] = 1;
                self.reply_bytes(&b, max);
            }
            2 => {
                let t = read_toc_raw(total, msf);
                self.reply_bytes(&t, max);
            }
            _ => self.atapi_error(ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET),
        }
    }

    pub(super) fn cmd_read_disc_information(&mut self, pkt: &[u8; 12]) {
        let max = u16::from_be_bytes([pkt[7], pkt[8]]) as usize;
        if pkt[1] & 7 != 0 {
            self.atapi_error(ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET);
            return;
        }
        let mut b = [0u8; 34];
        b[1] = 32;
        b[2] = 0x0e;
        b[3] = 1;
        b[4] = 1;
        b[5] = 1;
        b[6] = 1;
        b[7] = 0x20;
        self.reply_bytes(&b, max);
    }

    pub(super) fn cmd_get_configuration(&mut self, pkt: &[u8; 12]) {
        if pkt[2] != 0 || pkt[3] != 0 {
            self.atapi_error(ILLEGAL_REQUEST, ASC_INV_FIELD_IN_CMD_PACKET);
            return;
        }
        let max = (u16::from_be_bytes([pkt[7], pkt[8]]) as usize).min(512);
        let s = self.s();
        let present = !s.tray_open && s.nb_sectors > 0;
        let current = match (present, s.nb_sectors > CD_MAX_SECTORS) {
            (true, true) => MMC_PROFILE_DVD_ROM,
            (true, false) => MMC_PROFILE_CD_ROM,
            _ => 0,
        };
        let mut b = vec![0u8; 20];
        b[6..8].copy_from_slice(&current.to_be_bytes());
        b[10] = 0x03;
        for (i, p) in [MMC_PROFILE_DVD_ROM, MMC_PROFILE_CD_ROM].iter().enumerate() {
            let o = 12 + i * 4;
            b[o..o + 2].copy_from_slice(&p.to_be_bytes());
            b[o + 2] = u8::from(*p == current);
            b[11] += 4;
        }
        let len = b.len() as u32;
        b[..4].copy_from_slice(&(len - 4).to_be_bytes());
        self.reply_bytes(&b, max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toc_has_track_one_and_the_lead_out() {
        let t = read_toc(1000, false, 0).expect("toc");
        assert_eq!(
            t,
            vec![0, 18, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0, 0, 0x16, 0xaa, 0, 0, 0, 0x03, 0xe8]
        );
        let m = read_toc(1000, true, 0xaa).expect("toc");
        assert_eq!(m, vec![0, 10, 1, 1, 0, 0x16, 0xaa, 0, 0, 0, 15, 25]);
        assert!(read_toc(1000, false, 2).is_none());
    }
}
