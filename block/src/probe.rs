//! Format probing from an image's first sector, for opens that name no format.
//!
//! Only qcow2 is opened as a format; the other formats QEMU 2.8 can probe are
//! recognised with the same tests its drivers make (magic plus version where
//! they check one), so that a probed raw image refuses exactly the guest
//! writes to its first sector that 2.8 refuses.

/// Bytes of the image probing looks at.
pub const PROBE_LEN: usize = 512;

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// A NUL-terminated string field of a fixed-size header equals `want`.
fn c_str_is(field: Option<&[u8]>, want: &[u8]) -> bool {
    field.is_some_and(|f| f.starts_with(want) && f.get(want.len()) == Some(&0))
}

/// qcow and qcow2 share the magic; the version tells them apart (both need
/// the 104-byte qcow2 header or 48-byte qcow header in the buffer).
fn probe_qcow(buf: &[u8]) -> Option<&'static str> {
    if be32(buf, 0)? != 0x5146_49fb {
        return None;
    }
    let version = be32(buf, 4)?;
    if buf.len() >= 104 && version >= 2 {
        Some("qcow2")
    } else if buf.len() >= 48 && version == 1 {
        Some("qcow")
    } else {
        None
    }
}

fn probe_bochs(buf: &[u8]) -> bool {
    buf.len() >= 512
        && c_str_is(buf.get(0..32), b"Bochs Virtual HD Image")
        && c_str_is(buf.get(32..48), b"Redolog")
        && c_str_is(buf.get(48..64), b"Growing")
        && matches!(le32(buf, 64), Some(0x0002_0000) | Some(0x0001_0000))
}

fn probe_parallels(buf: &[u8]) -> bool {
    buf.len() >= 64
        && (buf.starts_with(b"WithoutFreeSpace") || buf.starts_with(b"WithouFreSpacExt"))
        && le32(buf, 16) == Some(2)
}

fn probe_cloop(buf: &[u8]) -> bool {
    const MAGIC: &[u8] =
        b"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n";
    let n = MAGIC.len().min(buf.len());
    buf[..n] == MAGIC[..n]
}

fn probe_luks(buf: &[u8]) -> bool {
    // The header up to the cipher name: magic (6), version (2).
    buf.len() >= 8 && buf.starts_with(b"LUKS\xba\xbe") && buf[6..8] == [0, 1]
}

/// vmdk: a binary magic, or a text descriptor whose first line that is
/// neither a comment nor blank reads `version=1` or `version=2`.
fn probe_vmdk(buf: &[u8]) -> bool {
    if buf.len() < 4 {
        return false;
    }
    if buf.starts_with(b"COWD") || buf.starts_with(b"KDMV") {
        return true;
    }
    let mut p = 0;
    while p < buf.len() {
        match buf[p] {
            b'#' => {
                while p < buf.len() && buf[p] != b'\n' {
                    p += 1;
                }
                p += 1;
            }
            b' ' => {
                while p < buf.len() && buf[p] == b' ' {
                    p += 1;
                }
                if p < buf.len() && buf[p] == b'\r' {
                    p += 1;
                }
                if p == buf.len() || buf[p] != b'\n' {
                    return false;
                }
                p += 1;
            }
            _ => {
                let rest = &buf[p..];
                return [
                    &b"version=1\n"[..],
                    b"version=2\n",
                    b"version=1\r\n",
                    b"version=2\r\n",
                ]
                .iter()
                .any(|v| rest.starts_with(v));
            }
        }
    }
    false
}

/// One format's test of the first sector.
type Probe = fn(&[u8]) -> bool;

/// Name of the format the first bytes of an image look like; "raw" when none.
pub fn probe_format(buf: &[u8]) -> &'static str {
    if let Some(q) = probe_qcow(buf) {
        return q;
    }
    let tests: [(Probe, &'static str); 9] = [
        (
            |b| b.len() >= 512 && le32(b, 0x40) == Some(0xbeda_107f),
            "vdi",
        ),
        (|b| b.starts_with(b"conectix"), "vpc"),
        (|b| b.starts_with(b"vhdxfile"), "vhdx"),
        (|b| b.len() >= 68 && b.starts_with(b"QED\0"), "qed"),
        (probe_luks, "luks"),
        (probe_parallels, "parallels"),
        (probe_bochs, "bochs"),
        (probe_vmdk, "vmdk"),
        (probe_cloop, "cloop"),
    ];
    for (test, name) in tests {
        if test(buf) {
            return name;
        }
    }
    "raw"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sector(start: &[u8]) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[..start.len()].copy_from_slice(start);
        b
    }

    #[test]
    fn qcow2_magic_with_version_3_probes_as_qcow2() {
        assert_eq!(probe_format(&sector(b"QFI\xfb\0\0\0\x03")), "qcow2");
    }

    #[test]
    fn qcow_magic_needs_version_1_exactly() {
        assert_eq!(probe_format(&sector(b"QFI\xfb\0\0\0\x01")), "qcow");
        assert_eq!(probe_format(&sector(b"QFI\xfb\0\0\0\0")), "raw");
    }

    #[test]
    fn zeroes_and_short_buffers_probe_as_raw() {
        assert_eq!(probe_format(&[0u8; 512]), "raw");
        assert_eq!(probe_format(b"QF"), "raw");
    }

    #[test]
    fn vmdk_magic_and_text_descriptor_are_recognised() {
        assert_eq!(probe_format(&sector(b"KDMV\x01\0\0\0")), "vmdk");
        assert_eq!(probe_format(&sector(b"# x\n  \nversion=1\n")), "vmdk");
        assert_eq!(probe_format(&sector(b"# Disk DescriptorFile\n")), "raw");
        assert_eq!(probe_format(&sector(b"version=3\n")), "raw");
    }

    #[test]
    fn magics_without_the_version_qemu_checks_stay_raw() {
        assert_eq!(probe_format(&sector(b"WithoutFreeSpace\x02")), "parallels");
        assert_eq!(probe_format(&sector(b"WithoutFreeSpace\x03")), "raw");
        assert_eq!(probe_format(&sector(b"LUKS\xba\xbe\0\x01")), "luks");
        assert_eq!(probe_format(&sector(b"LUKS\xba\xbe\0\x02")), "raw");
        assert_eq!(probe_format(&sector(b"Bochs Virtual HD Image")), "raw");
    }

    #[test]
    fn a_sector_of_one_byte_repeated_is_raw() {
        for v in [b'#', b' ', b'Q', 0xff] {
            assert_eq!(probe_format(&[v; 512]), "raw", "byte {v:#x}");
        }
    }
}
