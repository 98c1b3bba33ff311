//! The qcow2 header and its extensions, parsed into a plain struct and written back.
//!
//! Parsing validates every field QEMU validates; unknown header extensions are
//! kept byte for byte so rewriting the header never loses them.

use crate::error::{BlockError, BlockResult};

pub const QCOW_MAGIC: &[u8; 4] = b"QFI\xfb";
pub const EXT_END: u32 = 0;
pub const EXT_BACKING_FORMAT: u32 = 0xE279_2ACA;
pub const EXT_FEATURE_TABLE: u32 = 0x6803_f857;

pub const INCOMPAT_DIRTY: u64 = 1 << 0;
pub const INCOMPAT_CORRUPT: u64 = 1 << 1;
pub const INCOMPAT_DATA_FILE: u64 = 1 << 2;
pub const INCOMPAT_COMPRESSION: u64 = 1 << 3;
pub const INCOMPAT_EXTL2: u64 = 1 << 4;
pub const COMPAT_LAZY_REFCOUNTS: u64 = 1 << 0;

/// Byte offsets of the fields we update in place.
pub const OFF_SIZE: u64 = 24;
pub const OFF_L1_SIZE: u64 = 36;
pub const OFF_REFTABLE: u64 = 48;
pub const OFF_NB_SNAPSHOTS: u64 = 60;
pub const OFF_INCOMPAT: u64 = 72;

pub const V2_HEADER_LEN: u32 = 72;
pub const V3_HEADER_LEN: u32 = 104;

/// Largest L1 table QEMU accepts (32 MiB of entries).
pub const MAX_L1_BYTES: u64 = 32 << 20;
/// Largest refcount table QEMU accepts (8 MiB).
pub const MAX_REFTABLE_BYTES: u64 = 8 << 20;
pub const MAX_SNAPSHOTS: u32 = 65536;
pub const MAX_BACKING_NAME: u32 = 1023;
/// No table or guest size may reach past this (host offsets use 56 bits).
pub const MAX_TABLE_END: u64 = 1 << 56;

/// A parsed qcow2 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub backing_file_offset: u64,
    pub backing_file_size: u32,
    pub cluster_bits: u32,
    pub size: u64,
    pub crypt_method: u32,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub nb_snapshots: u32,
    pub snapshots_offset: u64,
    pub incompatible: u64,
    pub compatible: u64,
    pub autoclear: u64,
    pub refcount_order: u32,
    pub header_length: u32,
    /// Bytes of the header past the 104 we know (compression type and padding).
    pub tail: Vec<u8>,
    pub backing_file: Option<String>,
    pub backing_format: Option<String>,
    /// Extensions we do not interpret, kept in order.
    pub other_exts: Vec<(u32, Vec<u8>)>,
}

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn be64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_be_bytes(a)
}

fn invalid(m: impl Into<String>) -> BlockError {
    BlockError::InvalidImage(m.into())
}

impl Header {
    pub fn cluster_size(&self) -> u64 {
        1u64 << self.cluster_bits
    }

    /// Parses the header from the image's first bytes (at least the first cluster,
    /// or the whole file if shorter).
    pub fn parse(buf: &[u8]) -> BlockResult<Header> {
        if buf.len() < V2_HEADER_LEN as usize || &buf[0..4] != QCOW_MAGIC {
            return Err(invalid("Image is not in qcow2 format"));
        }
        let version = be32(buf, 4);
        if !(2..=3).contains(&version) {
            return Err(BlockError::Unsupported(format!(
                "Unsupported qcow2 version {}",
                version
            )));
        }
        let cluster_bits = be32(buf, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(invalid(format!(
                "Unsupported cluster size: 2^{}",
                cluster_bits
            )));
        }
        let cs = 1u64 << cluster_bits;
        let mut h = Header {
            version,
            backing_file_offset: be64(buf, 8),
            backing_file_size: be32(buf, 16),
            cluster_bits,
            size: be64(buf, 24),
            crypt_method: be32(buf, 32),
            l1_size: be32(buf, 36),
            l1_table_offset: be64(buf, 40),
            refcount_table_offset: be64(buf, 48),
            refcount_table_clusters: be32(buf, 56),
            nb_snapshots: be32(buf, 60),
            snapshots_offset: be64(buf, 64),
            incompatible: 0,
            compatible: 0,
            autoclear: 0,
            refcount_order: 4,
            header_length: V2_HEADER_LEN,
            tail: Vec::new(),
            backing_file: None,
            backing_format: None,
            other_exts: Vec::new(),
        };
        if version == 3 {
            if buf.len() < V3_HEADER_LEN as usize {
                return Err(invalid("qcow2 header too short"));
            }
            h.incompatible = be64(buf, 72);
            h.compatible = be64(buf, 80);
            h.autoclear = be64(buf, 88);
            h.refcount_order = be32(buf, 96);
            h.header_length = be32(buf, 100);
            if h.header_length < V3_HEADER_LEN {
                return Err(invalid("qcow2 header too short"));
            }
            if h.header_length as u64 > cs || h.header_length as usize > buf.len() {
                return Err(invalid("qcow2 header exceeds cluster size"));
            }
            h.tail = buf[V3_HEADER_LEN as usize..h.header_length as usize].to_vec();
        }
        if h.refcount_order > 6 {
            return Err(invalid(
                "Reference count entry width too large; may not exceed 64 bits",
            ));
        }
        let known = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_COMPRESSION;
        if h.incompatible & !known != 0 {
            return Err(BlockError::Unsupported(format!(
                "Unsupported qcow2 feature(s): {:#x}",
                h.incompatible & !known
            )));
        }
        if h.incompatible & INCOMPAT_COMPRESSION != 0 && h.tail.first().copied().unwrap_or(0) != 0 {
            return Err(BlockError::Unsupported(
                "Unsupported qcow2 feature(s): compression type".into(),
            ));
        }
        if h.crypt_method != 0 {
            return Err(BlockError::Unsupported(
                "Encrypted qcow2 images are not supported".into(),
            ));
        }
        let aligned = |o: u64| o & (cs - 1) == 0;
        if !aligned(h.l1_table_offset) {
            return Err(invalid("Invalid L1 table offset"));
        }
        if !aligned(h.refcount_table_offset) || h.refcount_table_offset == 0 {
            return Err(invalid("Invalid reference count table offset"));
        }
        if h.refcount_table_clusters as u64 * cs > MAX_REFTABLE_BYTES {
            return Err(invalid("Reference count table too large"));
        }
        if h.nb_snapshots > MAX_SNAPSHOTS {
            return Err(invalid("Too many snapshots"));
        }
        if h.nb_snapshots > 0 && (!aligned(h.snapshots_offset) || h.snapshots_offset == 0) {
            return Err(invalid("Invalid snapshot table offset"));
        }
        if h.l1_size as u64 * 8 > MAX_L1_BYTES {
            return Err(invalid("Active L1 table too large"));
        }
        let l2_entries = cs / 8;
        let needed = h.size.div_ceil(cs).div_ceil(l2_entries);
        if needed > h.l1_size as u64 {
            return Err(invalid("L1 table is too small"));
        }
        if h.l1_size > 0 && h.l1_table_offset == 0 {
            return Err(invalid("Invalid L1 table offset"));
        }
        // Tables must lie where offsets stay far from overflow.
        let fits =
            |off: u64, bytes: u64| off.checked_add(bytes).is_some_and(|e| e <= MAX_TABLE_END);
        if !fits(h.l1_table_offset, h.l1_size as u64 * 8) {
            return Err(invalid("Invalid L1 table offset"));
        }
        if !fits(
            h.refcount_table_offset,
            h.refcount_table_clusters as u64 * cs,
        ) {
            return Err(invalid("Invalid reference count table offset"));
        }
        if !fits(h.snapshots_offset, 0) {
            return Err(invalid("Invalid snapshot table offset"));
        }
        if h.size > MAX_TABLE_END {
            return Err(invalid("Image is too big"));
        }
        let ext_start = h.header_length as usize;
        let ext_end = if h.backing_file_offset != 0 {
            (h.backing_file_offset.min(cs) as usize).min(buf.len())
        } else {
            (cs as usize).min(buf.len())
        };
        h.parse_extensions(buf, ext_start, ext_end)?;
        if h.backing_file_offset != 0 {
            if h.backing_file_size > MAX_BACKING_NAME
                || h.backing_file_offset
                    .saturating_add(h.backing_file_size as u64)
                    > cs
            {
                return Err(invalid("Backing file name too long"));
            }
            let s = h.backing_file_offset as usize;
            let e = s + h.backing_file_size as usize;
            if e > buf.len() {
                return Err(invalid("Backing file name too long"));
            }
            h.backing_file = Some(String::from_utf8_lossy(&buf[s..e]).into_owned());
        }
        Ok(h)
    }

    fn parse_extensions(&mut self, buf: &[u8], mut pos: usize, end: usize) -> BlockResult<()> {
        while pos + 8 <= end {
            let ty = be32(buf, pos);
            let len = be32(buf, pos + 4) as usize;
            pos += 8;
            if ty == EXT_END {
                return Ok(());
            }
            if len > end - pos {
                return Err(invalid("ext_length too large"));
            }
            let data = buf[pos..pos + len].to_vec();
            match ty {
                EXT_BACKING_FORMAT => {
                    self.backing_format = Some(String::from_utf8_lossy(&data).into_owned());
                }
                _ => self.other_exts.push((ty, data)),
            }
            pos += len.next_multiple_of(8);
        }
        Ok(())
    }

    /// The header cluster content: fields, extensions, backing file name.
    pub fn serialize(&self) -> BlockResult<Vec<u8>> {
        let mut b = Vec::with_capacity(512);
        b.extend_from_slice(QCOW_MAGIC);
        b.extend_from_slice(&self.version.to_be_bytes());
        b.extend_from_slice(&[0u8; 12]); // backing offset/size, filled in below
        b.extend_from_slice(&self.cluster_bits.to_be_bytes());
        b.extend_from_slice(&self.size.to_be_bytes());
        b.extend_from_slice(&self.crypt_method.to_be_bytes());
        b.extend_from_slice(&self.l1_size.to_be_bytes());
        b.extend_from_slice(&self.l1_table_offset.to_be_bytes());
        b.extend_from_slice(&self.refcount_table_offset.to_be_bytes());
        b.extend_from_slice(&self.refcount_table_clusters.to_be_bytes());
        b.extend_from_slice(&self.nb_snapshots.to_be_bytes());
        b.extend_from_slice(&self.snapshots_offset.to_be_bytes());
        if self.version >= 3 {
            b.extend_from_slice(&self.incompatible.to_be_bytes());
            b.extend_from_slice(&self.compatible.to_be_bytes());
            b.extend_from_slice(&self.autoclear.to_be_bytes());
            b.extend_from_slice(&self.refcount_order.to_be_bytes());
            b.extend_from_slice(&self.header_length.to_be_bytes());
            b.extend_from_slice(&self.tail);
        }
        let put_ext = |b: &mut Vec<u8>, ty: u32, data: &[u8]| {
            b.extend_from_slice(&ty.to_be_bytes());
            b.extend_from_slice(&(data.len() as u32).to_be_bytes());
            b.extend_from_slice(data);
            b.resize(b.len().next_multiple_of(8), 0);
        };
        if let Some(f) = &self.backing_format {
            put_ext(&mut b, EXT_BACKING_FORMAT, f.as_bytes());
        }
        for (ty, data) in &self.other_exts {
            put_ext(&mut b, *ty, data);
        }
        b.extend_from_slice(&[0u8; 8]); // end of extensions
        if let Some(name) = &self.backing_file {
            if name.len() > MAX_BACKING_NAME as usize {
                return Err(BlockError::InvalidArgument(
                    "Backing file name too long".into(),
                ));
            }
            let off = b.len() as u64;
            b[8..16].copy_from_slice(&off.to_be_bytes());
            b[16..20].copy_from_slice(&(name.len() as u32).to_be_bytes());
            b.extend_from_slice(name.as_bytes());
        }
        if b.len() as u64 > self.cluster_size() {
            return Err(BlockError::InvalidArgument(
                "Header extensions and backing file name do not fit in the first cluster".into(),
            ));
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            version: 3,
            backing_file_offset: 0,
            backing_file_size: 0,
            cluster_bits: 16,
            size: 1 << 30,
            crypt_method: 0,
            l1_size: 2,
            l1_table_offset: 0x30000,
            refcount_table_offset: 0x10000,
            refcount_table_clusters: 1,
            nb_snapshots: 0,
            snapshots_offset: 0,
            incompatible: 0,
            compatible: COMPAT_LAZY_REFCOUNTS,
            autoclear: 0,
            refcount_order: 4,
            header_length: 104,
            tail: Vec::new(),
            backing_file: Some("base.img".into()),
            backing_format: Some("raw".into()),
            other_exts: vec![(0x1234, vec![1, 2, 3])],
        }
    }

    #[test]
    fn serialize_then_parse_round_trips() {
        let h = sample();
        let mut b = h.serialize().unwrap();
        b.resize(65536, 0);
        let mut p = Header::parse(&b).unwrap();
        p.backing_file_offset = 0;
        p.backing_file_size = 0;
        assert_eq!(p, h);
    }

    #[test]
    fn bad_magic_is_not_qcow2() {
        assert!(matches!(
            Header::parse(&[0u8; 512]),
            Err(BlockError::InvalidImage(_))
        ));
    }

    #[test]
    fn huge_cluster_bits_are_rejected() {
        let mut b = sample().serialize().unwrap();
        b.resize(65536, 0);
        b[20..24].copy_from_slice(&30u32.to_be_bytes());
        assert!(Header::parse(&b).is_err());
    }

    #[test]
    fn unknown_incompatible_feature_is_unsupported() {
        let mut b = sample().serialize().unwrap();
        b.resize(65536, 0);
        b[72..80].copy_from_slice(&(1u64 << 40).to_be_bytes());
        assert!(matches!(Header::parse(&b), Err(BlockError::Unsupported(_))));
    }
}
