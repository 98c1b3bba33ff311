//! The machine crate's error type: one enum whose variants carry their context.

use std::fmt;
use std::io;

/// Errors from building or running the machine.
#[derive(Debug)]
pub enum HwError {
    /// `/dev/kvm` could not be opened or a VM-wide KVM ioctl failed.
    Kvm { op: &'static str, errno: i32 },
    /// A vCPU ioctl failed.
    Vcpu {
        cpu: usize,
        op: &'static str,
        errno: i32,
    },
    /// Guest RAM could not be allocated or mapped.
    Memory { what: String, source: io::Error },
    /// A guest-physical access fell outside RAM/ROM.
    OutOfBounds { gpa: u64, len: u64 },
    /// Two devices or regions claimed overlapping addresses.
    Overlap { base: u64, len: u64 },
    /// A file given by the user could not be read.
    File { path: String, source: io::Error },
    /// A firmware or kernel image is malformed or unsupported.
    BadImage { what: String },
    /// A configuration value is invalid (size, address, cpu index...).
    Invalid { what: String },
    /// The vCPU control asked for a vCPU that does not exist or has exited.
    NoSuchCpu(usize),
}

impl fmt::Display for HwError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HwError::Kvm { op, errno } => {
                write!(f, "{op}: {}", io::Error::from_raw_os_error(*errno))
            }
            HwError::Vcpu { cpu, op, errno } => {
                write!(
                    f,
                    "vCPU {cpu}: {op}: {}",
                    io::Error::from_raw_os_error(*errno)
                )
            }
            HwError::Memory { what, source } => write!(f, "{what}: {source}"),
            HwError::OutOfBounds { gpa, len } => {
                write!(f, "guest address 0x{gpa:x} (+{len}) is not in memory")
            }
            HwError::Overlap { base, len } => {
                write!(f, "range 0x{base:x} (+0x{len:x}) overlaps an existing one")
            }
            HwError::File { path, source } => write!(f, "could not read '{path}': {source}"),
            HwError::BadImage { what } => write!(f, "{what}"),
            HwError::Invalid { what } => write!(f, "{what}"),
            HwError::NoSuchCpu(i) => write!(f, "CPU {i} does not exist"),
        }
    }
}

impl std::error::Error for HwError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HwError::Memory { source, .. } | HwError::File { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl HwError {
    pub(crate) fn kvm(op: &'static str, e: kvm_ioctls::Error) -> Self {
        HwError::Kvm {
            op,
            errno: e.errno(),
        }
    }
    pub(crate) fn vcpu(cpu: usize, op: &'static str, e: kvm_ioctls::Error) -> Self {
        HwError::Vcpu {
            cpu,
            op,
            errno: e.errno(),
        }
    }
}

pub type Result<T> = std::result::Result<T, HwError>;
