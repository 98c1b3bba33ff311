//! Errors of the NBD server: `NbdError` for the server as a whole (listening,
//! the export table), `NbdIoError` for one backend operation, which travels to
//! the client as an NBD error value.

use std::fmt;

use super::proto;

/// Failure of a server-level operation; the message follows QEMU's wording
/// where QEMU has one, so a QMP handler can pass it on unchanged.
#[derive(Debug)]
pub enum NbdError {
    /// The socket address given is unusable (bad port, unresolvable host...).
    InvalidAddress(String),
    /// Creating, binding or listening on the socket failed.
    Listen {
        what: String,
        source: std::io::Error,
    },
    /// accept() failed with something other than "try again".
    Accept(std::io::Error),
    /// An export with this name already exists.
    ExportExists(String),
    /// No export with this name.
    NoSuchExport(String),
    /// The export name or description is longer than the protocol allows.
    NameTooLong(String),
}

impl fmt::Display for NbdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NbdError::InvalidAddress(msg) => write!(f, "{msg}"),
            NbdError::Listen { what, source } => write!(f, "{what}: {}", errno_text(source)),
            NbdError::Accept(e) => write!(f, "Failed to accept NBD client: {}", errno_text(e)),
            NbdError::ExportExists(name) => {
                write!(f, "NBD server already exporting device '{name}'")
            }
            NbdError::NoSuchExport(name) => write!(f, "Export '{name}' is not found"),
            NbdError::NameTooLong(name) => write!(
                f,
                "NBD export name or description longer than {} bytes: '{name}'",
                proto::MAX_STRING
            ),
        }
    }
}

impl std::error::Error for NbdError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NbdError::Listen { source, .. } | NbdError::Accept(source) => Some(source),
            _ => None,
        }
    }
}

/// strerror()-style text without Rust's " (os error N)" suffix, as QEMU prints it.
fn errno_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(pos) => text[..pos].to_string(),
        None => text,
    }
}

/// A failed backend operation, carried as a host errno value (`libc::EIO`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NbdIoError {
    pub errno: i32,
}

impl NbdIoError {
    pub fn new(errno: i32) -> Self {
        NbdIoError { errno }
    }

    /// The errno of an I/O error, EIO when it carries none.
    pub fn from_io(e: &std::io::Error) -> Self {
        NbdIoError {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        }
    }

    /// The value the spec allows on the wire for this errno. The spec lists a
    /// handful of values; anything else becomes EIO because every remaining
    /// backend failure is, for the client, a failed I/O.
    pub fn wire_value(self) -> u32 {
        match self.errno {
            libc::EPERM | libc::EROFS | libc::EACCES => proto::EPERM,
            libc::ENOMEM => proto::ENOMEM,
            libc::EINVAL => proto::EINVAL,
            libc::ENOSPC | libc::EDQUOT | libc::EFBIG => proto::ENOSPC,
            libc::EOVERFLOW => proto::EOVERFLOW,
            libc::ENOTSUP => proto::ENOTSUP,
            libc::ESHUTDOWN => proto::ESHUTDOWN,
            _ => proto::EIO,
        }
    }
}

impl fmt::Display for NbdIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            errno_text(&std::io::Error::from_raw_os_error(self.errno))
        )
    }
}

impl std::error::Error for NbdIoError {}

impl From<std::io::Error> for NbdIoError {
    fn from(e: std::io::Error) -> Self {
        NbdIoError::from_io(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_the_values_the_spec_allows() {
        assert_eq!(NbdIoError::new(libc::EROFS).wire_value(), proto::EPERM);
        assert_eq!(NbdIoError::new(libc::EDQUOT).wire_value(), proto::ENOSPC);
        assert_eq!(NbdIoError::new(libc::ENOTSUP).wire_value(), proto::ENOTSUP);
        assert_eq!(NbdIoError::new(libc::EBADF).wire_value(), proto::EIO);
    }

    #[test]
    fn listen_error_text_has_no_rust_suffix() {
        let e = NbdError::Listen {
            what: "Failed to bind socket".into(),
            source: std::io::Error::from_raw_os_error(libc::EADDRINUSE),
        };
        assert_eq!(
            e.to_string(),
            "Failed to bind socket: Address already in use"
        );
    }
}
