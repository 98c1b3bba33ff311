//! IDENTIFY DEVICE and IDENTIFY PACKET DEVICE data, word for word as QEMU
//! 2.8 fills them (strings byte-swapped within each word, space padded).

use super::drive::{Drive, MAX_MULT_SECTORS};

fn put(p: &mut [u8; 512], word: usize, v: u32) {
    p[word * 2..word * 2 + 2].copy_from_slice(&(v as u16).to_le_bytes());
}

/// ATA strings: pairs of characters swapped, padded with spaces.
fn put_str(p: &mut [u8; 512], word: usize, s: &str, len: usize) {
    let bytes = s.as_bytes();
    for i in 0..len {
        let c = bytes.get(i).copied().unwrap_or(b' ');
        p[word * 2 + (i ^ 1)] = c;
    }
}

/// Words 60-61 and 100-103: the addressable sectors.
pub fn put_size(p: &mut [u8; 512], sectors: u64) {
    put(p, 60, sectors as u32);
    put(p, 61, (sectors >> 16) as u32);
    put(p, 100, sectors as u32);
    put(p, 101, (sectors >> 16) as u32);
    put(p, 102, (sectors >> 32) as u32);
    put(p, 103, (sectors >> 48) as u32);
}

pub fn ata_identify(d: &Drive) -> [u8; 512] {
    let mut p = [0u8; 512];
    put(&mut p, 0, 0x0040);
    put(&mut p, 1, d.cylinders);
    put(&mut p, 3, d.heads);
    put(&mut p, 4, 512 * d.sectors);
    put(&mut p, 5, 512);
    put(&mut p, 6, d.sectors);
    put_str(&mut p, 10, &d.identity.serial, 20);
    put(&mut p, 20, 3);
    put(&mut p, 21, 512);
    put(&mut p, 22, 4);
    put_str(&mut p, 23, &d.identity.version, 8);
    put_str(&mut p, 27, &d.identity.model, 40);
    put(&mut p, 47, 0x8000 | MAX_MULT_SECTORS);
    put(&mut p, 48, 1);
    put(&mut p, 49, (1 << 11) | (1 << 9) | (1 << 8));
    put(&mut p, 51, 0x200);
    put(&mut p, 52, 0x200);
    put(&mut p, 53, 1 | (1 << 1) | (1 << 2));
    put(&mut p, 54, d.cylinders);
    put(&mut p, 55, d.heads);
    put(&mut p, 56, d.sectors);
    let old = d.cylinders.wrapping_mul(d.heads).wrapping_mul(d.sectors);
    put(&mut p, 57, old);
    put(&mut p, 58, old >> 16);
    if d.mult_sectors != 0 {
        put(&mut p, 59, 0x100 | d.mult_sectors);
    }
    put(&mut p, 62, 0x07);
    put(&mut p, 63, 0x07);
    put(&mut p, 64, 0x03);
    for w in 65..=68 {
        put(&mut p, w, 120);
    }
    put(&mut p, 80, 0xf0);
    put(&mut p, 81, 0x16);
    put(&mut p, 82, (1 << 14) | (1 << 5) | 1);
    put(&mut p, 83, (1 << 14) | (1 << 13) | (1 << 12) | (1 << 10));
    let wwn_bit = if d.wwn != 0 { 1 << 8 } else { 0 };
    put(&mut p, 84, (1 << 14) | wwn_bit);
    put(&mut p, 85, write_cache_word(d.write_cache));
    put(&mut p, 86, (1 << 13) | (1 << 12) | (1 << 10));
    put(&mut p, 87, (1 << 14) | wwn_bit);
    put(&mut p, 88, 0x3f | (1 << 13));
    put(&mut p, 93, 1 | (1 << 14) | 0x2000);
    if d.discard {
        put(&mut p, 69, 1 << 14);
        put(&mut p, 169, 1);
    }
    put(&mut p, 106, 0x6000 | d.physical_block_exp as u32);
    put_wwn(&mut p, d.wwn);
    put_size(&mut p, d.nb_sectors);
    p
}

/// Word 85: NOP, SMART, and the write cache when it is on.
pub fn write_cache_word(enabled: bool) -> u32 {
    if enabled {
        (1 << 14) | (1 << 5) | 1
    } else {
        (1 << 14) | 1
    }
}

/// Words 108-111: the World Wide Name, most significant word first.
fn put_wwn(p: &mut [u8; 512], wwn: u64) {
    if wwn != 0 {
        for (i, w) in (108..=111).enumerate() {
            put(p, w, (wwn >> (48 - 16 * i)) as u32);
        }
    }
}

pub fn set_word(p: &mut [u8; 512], word: usize, v: u32) {
    put(p, word, v);
}

pub fn atapi_identify(d: &Drive) -> [u8; 512] {
    let mut p = [0u8; 512];
    // Removable CD-ROM, 50us DRQ, 12-byte packets.
    put(&mut p, 0, (2 << 14) | (5 << 8) | (1 << 7) | (2 << 5));
    put_str(&mut p, 10, &d.identity.serial, 20);
    put(&mut p, 20, 3);
    put(&mut p, 21, 512);
    put(&mut p, 22, 4);
    put_str(&mut p, 23, &d.identity.version, 8);
    put_str(&mut p, 27, &d.identity.model, 40);
    put(&mut p, 48, 1);
    // QEMU builds with CD-ROM DMA: DMA and LBA, multiword and UDMA modes.
    put(&mut p, 49, (1 << 9) | (1 << 8));
    put(&mut p, 53, 7);
    put(&mut p, 62, 7);
    put(&mut p, 63, 7);
    put(&mut p, 64, 3);
    put(&mut p, 65, 0xb4);
    put(&mut p, 66, 0xb4);
    put(&mut p, 67, 0x12c);
    put(&mut p, 68, 0xb4);
    put(&mut p, 71, 30);
    put(&mut p, 72, 30);
    put(&mut p, 80, 0x1e);
    if d.wwn != 0 {
        put(&mut p, 84, 1 << 8);
        put(&mut p, 87, 1 << 8);
    }
    put(&mut p, 88, 0x3f | (1 << 13));
    put_wwn(&mut p, d.wwn);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::ide::drive::{DriveConfig, DriveIdentity, DriveKind};

    fn text(p: &[u8; 512], word: usize, len: usize) -> String {
        let mut s = Vec::new();
        for i in 0..len {
            s.push(p[word * 2 + (i ^ 1)]);
        }
        String::from_utf8_lossy(&s).trim_end().to_string()
    }

    #[test]
    fn disk_identify_has_qemu_strings_and_size() {
        let identity = DriveIdentity {
            serial: "QM00001".into(),
            model: "QEMU HARDDISK".into(),
            version: "2.5+".into(),
        };
        let d = Drive::new(DriveConfig::new(DriveKind::Hd, identity, 0x1_2345_6789));
        let p = ata_identify(&d);
        assert_eq!(text(&p, 10, 20), "QM00001");
        assert_eq!(text(&p, 23, 8), "2.5+");
        assert_eq!(text(&p, 27, 40), "QEMU HARDDISK");
        assert_eq!(u16::from_le_bytes([p[200], p[201]]), 0x6789);
        assert_eq!(u16::from_le_bytes([p[204], p[205]]), 0x0001);
        assert_eq!(u16::from_le_bytes([p[170], p[171]]), 0x4021);
    }
}
