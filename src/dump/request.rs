//! What `dump-guest-memory` asks for, checked the way QEMU checks it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;

use super::error::DumpError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpFormat {
    Elf,
    KdumpZlib,
    KdumpLzo,
    KdumpSnappy,
}

impl DumpFormat {
    /// The QAPI enum name (`DumpGuestMemoryFormat`).
    pub fn name(self) -> &'static str {
        match self {
            DumpFormat::Elf => "elf",
            DumpFormat::KdumpZlib => "kdump-zlib",
            DumpFormat::KdumpLzo => "kdump-lzo",
            DumpFormat::KdumpSnappy => "kdump-snappy",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        FORMATS_BUILT_IN.iter().copied().find(|f| f.name() == name)
    }

    pub fn is_kdump(self) -> bool {
        self != DumpFormat::Elf
    }
}

/// Every format this build writes, in QAPI order: the answer of
/// `query-dump-guest-memory-capability`.
pub const FORMATS_BUILT_IN: [DumpFormat; 4] = [
    DumpFormat::Elf,
    DumpFormat::KdumpZlib,
    DumpFormat::KdumpLzo,
    DumpFormat::KdumpSnappy,
];

/// The arguments of `dump-guest-memory` that shape the file (`protocol` and
/// `detach` are the caller's business).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpRequest {
    pub paging: bool,
    /// None when the client gave no `format` (ELF).
    pub format: Option<DumpFormat>,
    pub begin: Option<i64>,
    pub length: Option<i64>,
}

impl DumpRequest {
    pub fn format(&self) -> DumpFormat {
        self.format.unwrap_or(DumpFormat::Elf)
    }

    /// The request of HMP `dump-guest-memory [-p] [-z|-l|-s] FILE [begin
    /// length]` (which always names a format, ELF by default).
    pub fn from_hmp(
        paging: bool,
        zlib: bool,
        lzo: bool,
        snappy: bool,
        begin: Option<i64>,
        length: Option<i64>,
    ) -> Result<Self, DumpError> {
        let format = match (zlib, lzo, snappy) {
            (false, false, false) => DumpFormat::Elf,
            (true, false, false) => DumpFormat::KdumpZlib,
            (false, true, false) => DumpFormat::KdumpLzo,
            (false, false, true) => DumpFormat::KdumpSnappy,
            _ => return Err(DumpError::HmpFormatConflict),
        };
        Ok(DumpRequest {
            paging,
            format: Some(format),
            begin,
            length,
        })
    }

    /// QEMU's argument checks, in QEMU's order.
    pub fn validate(&self) -> Result<(), DumpError> {
        let filter = self.begin.is_some() || self.length.is_some();
        if self.format().is_kdump() && (self.paging || filter) {
            return Err(DumpError::KdumpFilter);
        }
        match (self.begin, self.length) {
            (Some(_), None) => Err(DumpError::MissingParameter("length")),
            (None, Some(_)) => Err(DumpError::MissingParameter("begin")),
            _ => Ok(()),
        }
    }

    /// The `[begin, begin + length)` filter in guest-physical addresses.
    /// A negative or overflowing range can select no RAM, which QEMU
    /// reports against `begin`.
    pub(crate) fn filter(&self) -> Result<Option<(u64, u64)>, DumpError> {
        match (self.begin, self.length) {
            (Some(b), Some(l)) => {
                let begin = u64::try_from(b).map_err(|_| DumpError::InvalidParameter("begin"))?;
                let length = u64::try_from(l).map_err(|_| DumpError::InvalidParameter("begin"))?;
                let end = begin
                    .checked_add(length)
                    .ok_or(DumpError::InvalidParameter("begin"))?;
                Ok(Some((begin, end)))
            }
            _ => Ok(None),
        }
    }
}

/// Where `protocol` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DumpTarget {
    /// `file:PATH`
    File(String),
    /// `fd:NAME`, a descriptor passed earlier with `getfd`.
    Fd(String),
}

impl DumpTarget {
    pub fn parse(protocol: &str) -> Result<Self, DumpError> {
        if let Some(name) = protocol.strip_prefix("fd:") {
            Ok(DumpTarget::Fd(name.to_string()))
        } else if let Some(path) = protocol.strip_prefix("file:") {
            Ok(DumpTarget::File(path.to_string()))
        } else {
            Err(DumpError::InvalidParameter("protocol"))
        }
    }
}

/// Creates the `file:` target as QEMU does: truncated, write-only, mode
/// 0400 for a new file.
pub fn open_dump_file(path: &str) -> Result<File, DumpError> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o400)
        .open(path)
        .map_err(|source| DumpError::Open {
            path: path.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(
        paging: bool,
        format: Option<DumpFormat>,
        b: Option<i64>,
        l: Option<i64>,
    ) -> DumpRequest {
        DumpRequest {
            paging,
            format,
            begin: b,
            length: l,
        }
    }

    #[test]
    fn kdump_with_paging_or_filter_is_refused_with_qemu_wording() {
        let paging = req(true, Some(DumpFormat::KdumpZlib), None, None);
        let filter = req(false, Some(DumpFormat::KdumpSnappy), Some(0), Some(4096));
        let msg = "kdump-compressed format doesn't support paging or filter";
        assert_eq!(paging.validate().unwrap_err().to_string(), msg);
        assert_eq!(filter.validate().unwrap_err().to_string(), msg);
    }

    #[test]
    fn begin_and_length_must_come_together() {
        let only_begin = req(false, None, Some(0), None);
        let only_length = req(false, None, None, Some(1));
        assert_eq!(
            only_begin.validate().unwrap_err().to_string(),
            "Parameter 'length' is missing"
        );
        assert_eq!(
            only_length.validate().unwrap_err().to_string(),
            "Parameter 'begin' is missing"
        );
    }

    #[test]
    fn elf_accepts_paging_with_filter() {
        let r = req(true, Some(DumpFormat::Elf), Some(4096), Some(8192));
        assert!(r.validate().is_ok());
        assert_eq!(r.filter().unwrap(), Some((4096, 12288)));
    }

    #[test]
    fn negative_filter_is_an_invalid_begin() {
        let r = req(false, None, Some(-4096), Some(8192));
        assert_eq!(
            r.filter().unwrap_err().to_string(),
            "Invalid parameter 'begin'"
        );
    }

    #[test]
    fn protocol_parses_file_and_fd_and_refuses_others() {
        assert_eq!(
            DumpTarget::parse("file:/tmp/x").unwrap(),
            DumpTarget::File("/tmp/x".into())
        );
        assert_eq!(
            DumpTarget::parse("fd:dumpfd").unwrap(),
            DumpTarget::Fd("dumpfd".into())
        );
        assert_eq!(
            DumpTarget::parse("/tmp/x").unwrap_err().to_string(),
            "Invalid parameter 'protocol'"
        );
    }

    #[test]
    fn open_failure_names_the_path_and_the_os_reason() {
        let e = open_dump_file("/nonexistent-dir/core").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Could not open '/nonexistent-dir/core': No such file or directory"
        );
    }

    #[test]
    fn hmp_refuses_two_compression_flags() {
        let e = DumpRequest::from_hmp(false, true, false, true, None, None).unwrap_err();
        assert_eq!(e.to_string(), "only one of '-z|-l|-s' can be set");
        let r = DumpRequest::from_hmp(false, false, true, false, None, None).unwrap();
        assert_eq!(r.format, Some(DumpFormat::KdumpLzo));
    }

    #[test]
    fn capability_lists_all_four_formats_in_qapi_order() {
        let names: Vec<_> = FORMATS_BUILT_IN.iter().map(|f| f.name()).collect();
        assert_eq!(names, ["elf", "kdump-zlib", "kdump-lzo", "kdump-snappy"]);
    }
}
