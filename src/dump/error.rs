//! Errors of `dump-guest-memory`, worded as QEMU words them where QEMU has
//! a message. The QMP layer reports every one as a GenericError.

use std::fmt;
use std::io;

#[derive(Debug)]
pub enum DumpError {
    /// Another dump is still active.
    InProgress,
    /// The VM waits for an incoming migration.
    IncomingMigration,
    /// A kdump format with `paging`, `begin` or `length`.
    KdumpFilter,
    /// HMP `dump-guest-memory` with more than one of -z, -l, -s.
    HmpFormatConflict,
    /// One of `begin`/`length` given without the other.
    MissingParameter(&'static str),
    /// `protocol` is neither `file:` nor `fd:`, or `begin` lies outside RAM.
    InvalidParameter(&'static str),
    /// The `file:` target could not be created.
    Open { path: String, source: io::Error },
    /// A write to the dump failed, or guest RAM could not be read; `what`
    /// is QEMU's message for the step that failed.
    Write {
        what: &'static str,
        source: Option<io::Error>,
    },
    /// RAM ranges overlap, are out of order or not page-aligned.
    BadRamLayout,
    /// The guest's page tables are larger than any real guest builds.
    PageTablesTooLarge,
    /// `step` was called after the dump finished or failed.
    Finished,
}

impl DumpError {
    pub(crate) fn write(what: &'static str, source: io::Error) -> Self {
        DumpError::Write {
            what,
            source: Some(source),
        }
    }

    pub(crate) fn ram(what: &'static str) -> Self {
        DumpError::Write { what, source: None }
    }
}

/// strerror() text of an I/O error, as QEMU appends it to messages.
fn os_text(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DumpError::InProgress => write!(f, "There is a dump in process, please wait."),
            DumpError::IncomingMigration => {
                write!(f, "Dump not allowed during incoming migration.")
            }
            DumpError::KdumpFilter => write!(
                f,
                "kdump-compressed format doesn't support paging or filter"
            ),
            DumpError::HmpFormatConflict => write!(f, "only one of '-z|-l|-s' can be set"),
            DumpError::MissingParameter(p) => write!(f, "Parameter '{p}' is missing"),
            DumpError::InvalidParameter(p) => write!(f, "Invalid parameter '{p}'"),
            DumpError::Open { path, source } => {
                write!(f, "Could not open '{path}': {}", os_text(source))
            }
            DumpError::Write { what, .. } => write!(f, "{what}"),
            DumpError::BadRamLayout => write!(
                f,
                "dump: guest RAM ranges are not ordered, disjoint and page-aligned"
            ),
            DumpError::PageTablesTooLarge => {
                write!(f, "dump: guest page tables are too large to walk")
            }
            DumpError::Finished => write!(f, "dump: the dump has already ended"),
        }
    }
}

impl std::error::Error for DumpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DumpError::Open { source, .. } => Some(source),
            DumpError::Write {
                source: Some(s), ..
            } => Some(s),
            _ => None,
        }
    }
}
