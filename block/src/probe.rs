//! Format probing from an image's first sector, for opens that name no format.
//!
//! Only qcow2 is opened as a format; the other magics are recognised so that a
//! probed raw image can refuse a guest write that would make it look like one.

/// Bytes of the image probing looks at.
pub const PROBE_LEN: usize = 512;

const MAGICS: &[(&[u8], &str)] = &[
    (b"KDMV", "vmdk"),
    (b"# Disk DescriptorFile", "vmdk"),
    (b"conectix", "vpc"),
    (b"vhdxfile", "vhdx"),
    (b"QED\0", "qed"),
    (b"LUKS\xba\xbe", "luks"),
    (b"WithoutFreeSpace", "parallels"),
    (b"WithouFreSpacExt", "parallels"),
    (b"Bochs Virtual HD Image", "bochs"),
    (b"#!/bin/sh\n#V2.0 Format\n", "cloop"),
];

/// Name of the format the first bytes of an image look like; "raw" when none.
pub fn probe_format(buf: &[u8]) -> &'static str {
    if buf.len() >= 8 && &buf[0..4] == b"QFI\xfb" {
        let version = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        return if version >= 2 { "qcow2" } else { "qcow" };
    }
    if buf.len() >= 0x44 && &buf[0x40..0x44] == b"\x7f\x10\xda\xbe" {
        return "vdi";
    }
    for (magic, name) in MAGICS {
        if buf.starts_with(magic) {
            return name;
        }
    }
    "raw"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qcow2_magic_with_version_3_probes_as_qcow2() {
        let mut b = [0u8; 512];
        b[..8].copy_from_slice(b"QFI\xfb\0\0\0\x03");
        assert_eq!(probe_format(&b), "qcow2");
    }

    #[test]
    fn zeroes_and_short_buffers_probe_as_raw() {
        assert_eq!(probe_format(&[0u8; 512]), "raw");
        assert_eq!(probe_format(b"QF"), "raw");
    }

    #[test]
    fn vmdk_magic_is_recognised() {
        assert_eq!(probe_format(b"KDMV\x01\0\0\0"), "vmdk");
    }
}
