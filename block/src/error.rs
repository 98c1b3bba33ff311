//! The block layer's error type: a small kind plus the message QEMU would print.
//!
//! Every failure in this crate is a `BlockError`. The QMP error class of a failure is
//! decided here and nowhere else (`qmp_class`), and `errno` gives the POSIX error a
//! request failed with, which `qemu-io` style output prints ("Input/output error").

use std::fmt;
use std::io;

/// Why a block-layer operation failed.
#[derive(Debug)]
pub enum BlockError {
    /// A system call failed; `context` says what was being done.
    Io { context: String, errno: i32 },
    /// A node or backend name that does not exist.
    NotFound(String),
    /// Bad argument or option from the caller.
    InvalidArgument(String),
    /// The image's format is not valid (bad magic, impossible header values).
    InvalidImage(String),
    /// The image uses a feature we do not implement.
    Unsupported(String),
    /// Metadata inside the image is inconsistent; the node has been marked corrupt.
    Corrupt(String),
    /// A request outside the device.
    OutOfBounds { offset: u64, len: u64, size: u64 },
    /// A write to a read-only node.
    ReadOnly(String),
    /// The operation is not allowed right now (e.g. write to sector 0 of a probed raw image).
    NotPermitted(String),
    /// A node or backend that is still used by something else.
    InUse(String),
    /// A backend without a medium.
    NoMedium(String),
    /// Any other failure with QEMU's message.
    Generic(String),
}

/// Result type of the block layer.
pub type BlockResult<T> = Result<T, BlockError>;

impl BlockError {
    /// Wraps an `io::Error` with a description of the operation that failed.
    pub fn io(context: impl Into<String>, err: &io::Error) -> BlockError {
        BlockError::Io {
            context: context.into(),
            errno: err.raw_os_error().unwrap_or(libc::EIO),
        }
    }

    /// An error from a raw errno value.
    pub fn errno(context: impl Into<String>, errno: i32) -> BlockError {
        BlockError::Io {
            context: context.into(),
            errno,
        }
    }

    /// The QMP error class this error is reported with.
    pub fn qmp_class(&self) -> &'static str {
        match self {
            BlockError::NotFound(_) => "DeviceNotFound",
            _ => "GenericError",
        }
    }

    /// The POSIX errno equivalent, as QEMU's block layer would have returned it.
    pub fn errno_value(&self) -> i32 {
        match self {
            BlockError::Io { errno, .. } => *errno,
            BlockError::NotFound(_) => libc::ENOENT,
            BlockError::InvalidArgument(_) => libc::EINVAL,
            BlockError::InvalidImage(_) => libc::EINVAL,
            BlockError::Unsupported(_) => libc::ENOTSUP,
            BlockError::Corrupt(_) => libc::EIO,
            BlockError::OutOfBounds { .. } => libc::EIO,
            BlockError::ReadOnly(_) => libc::EPERM,
            BlockError::NotPermitted(_) => libc::EPERM,
            BlockError::InUse(_) => libc::EBUSY,
            BlockError::NoMedium(_) => libc::ENOMEDIUM,
            BlockError::Generic(_) => libc::EIO,
        }
    }

    /// The C library's text for `errno_value()` ("Input/output error", ...).
    pub fn strerror(&self) -> String {
        io::Error::from_raw_os_error(self.errno_value())
            .to_string()
            .split(" (os error")
            .next()
            .unwrap_or("")
            .to_string()
    }
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockError::Io { context, .. } => write!(f, "{}: {}", context, self.strerror()),
            BlockError::NotFound(m)
            | BlockError::InvalidArgument(m)
            | BlockError::InvalidImage(m)
            | BlockError::Unsupported(m)
            | BlockError::Corrupt(m)
            | BlockError::ReadOnly(m)
            | BlockError::NotPermitted(m)
            | BlockError::InUse(m)
            | BlockError::NoMedium(m)
            | BlockError::Generic(m) => f.write_str(m),
            BlockError::OutOfBounds { offset, len, size } => write!(
                f,
                "request at offset {} length {} is outside the device of {} bytes",
                offset, len, size
            ),
        }
    }
}

impl std::error::Error for BlockError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_maps_to_device_not_found_class() {
        assert_eq!(
            BlockError::NotFound("x".into()).qmp_class(),
            "DeviceNotFound"
        );
        assert_eq!(BlockError::Generic("x".into()).qmp_class(), "GenericError");
    }

    #[test]
    fn strerror_has_no_os_error_suffix() {
        let e = BlockError::errno("read", libc::EIO);
        assert_eq!(e.strerror(), "Input/output error");
        assert_eq!(e.to_string(), "read: Input/output error");
    }
}
