//! Requests as qemu-io's BlockBackend made them in the reference: lengths
//! counted in whole 512-byte sectors, every data request checked against
//! the device size first (EIO when outside), failures reduced to an errno.
//! Allocation queries look at the top layer only, sector by sector.

use crate::error::BlockError;
use crate::node::{lock, NodeRef};

pub const SECTOR: u64 = 512;
/// Largest request a BlockBackend accepts.
pub const INT_MAX: u64 = i32::MAX as u64;

/// A failed request: the errno the reference would have returned.
pub type Errno = i32;

/// The C library's text for an errno ("Input/output error").
pub fn strerror(errno: Errno) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn errno_of(e: &BlockError) -> Errno {
    e.errno_value()
}

/// The device qemu-io works on: a node, or an empty drive.
#[derive(Clone, Copy)]
pub struct Device<'a> {
    node: Option<&'a NodeRef>,
}

impl<'a> Device<'a> {
    pub fn new(node: Option<&'a NodeRef>) -> Device<'a> {
        Device { node }
    }

    pub fn node(&self) -> Result<&'a NodeRef, Errno> {
        self.node.ok_or(libc::ENOMEDIUM)
    }

    /// Size in bytes, rounded up to whole sectors as the reference kept it.
    pub fn length(&self) -> Result<u64, Errno> {
        let n = self.node()?;
        let len = lock(n).length().map_err(|e| errno_of(&e))?;
        Ok(len.div_ceil(SECTOR) * SECTOR)
    }

    /// The check every data request passes first; callers use it before
    /// allocating a buffer so a request bound to fail allocates nothing.
    pub fn precheck(&self, offset: u64, size: u64) -> Result<(), Errno> {
        self.check(offset, size).map(|_| ())
    }

    fn check(&self, offset: u64, size: u64) -> Result<&'a NodeRef, Errno> {
        if size > INT_MAX {
            return Err(libc::EIO);
        }
        let n = self.node()?;
        let len = self.length()?;
        if offset > len || len - offset < size {
            return Err(libc::EIO);
        }
        Ok(n)
    }

    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let n = self.check(offset, buf.len() as u64)?;
        lock(n).read(offset, buf).map_err(|e| errno_of(&e))
    }

    pub fn write(&self, offset: u64, buf: &[u8], fua: bool) -> Result<(), Errno> {
        let n = self.check(offset, buf.len() as u64)?;
        lock(n).write(offset, buf, fua).map_err(|e| errno_of(&e))
    }

    pub fn write_zeroes(&self, offset: u64, len: u64, unmap: bool, fua: bool) -> Result<(), Errno> {
        let n = self.check(offset, len)?;
        let mut g = lock(n);
        g.write_zeroes(offset, len, unmap)
            .map_err(|e| errno_of(&e))?;
        if fua {
            g.flush().map_err(|e| errno_of(&e))?;
        }
        Ok(())
    }

    pub fn write_compressed(&self, offset: u64, buf: &[u8]) -> Result<(), Errno> {
        let n = self.check(offset, buf.len() as u64)?;
        lock(n)
            .write_compressed(offset, buf)
            .map_err(|e| errno_of(&e))
    }

    pub fn discard(&self, offset: u64, len: u64) -> Result<(), Errno> {
        let n = self.check(offset, len)?;
        lock(n).discard(offset, len).map_err(|e| errno_of(&e))
    }

    pub fn flush(&self) -> Result<(), Errno> {
        let n = self.node()?;
        lock(n).flush().map_err(|e| errno_of(&e))
    }

    /// Resizes the device. On failure, besides the errno, the message the
    /// reference's qcow2 driver reported on its own line (shrinking, size
    /// not a multiple of 512, internal snapshots present).
    pub fn truncate(&self, size: u64) -> Result<(), (Errno, Option<String>)> {
        let n = self.node().map_err(|e| (e, None))?;
        let mut g = lock(n);
        // The reference refused resizing a read-only node with EACCES.
        if g.is_read_only() {
            return Err((libc::EACCES, None));
        }
        let qcow2 = g.driver_name() == "qcow2";
        g.truncate(size).map_err(|e| {
            let msg = match &e {
                BlockError::InvalidArgument(m) | BlockError::Unsupported(m) if qcow2 => {
                    Some(m.clone())
                }
                _ => None,
            };
            (errno_of(&e), msg)
        })
    }

    /// Whether `nb` sectors from `sector` are allocated in the top layer, and
    /// how many sectors share that answer (0 at or past the end).
    pub fn is_allocated(&self, sector: u64, nb: u64) -> Result<(bool, u64), Errno> {
        let n = self.node()?;
        let total = self.length()? / SECTOR;
        if sector >= total || nb == 0 {
            return Ok((false, 0));
        }
        let nb = nb.min(total - sector);
        let ext = lock(n)
            .block_status(sector * SECTOR, nb * SECTOR)
            .map_err(|e| errno_of(&e))?;
        let num = (ext.len / SECTOR).clamp(1, nb);
        Ok((ext.allocated, num))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strerror_matches_c_library_text() {
        assert_eq!(strerror(libc::EIO), "Input/output error");
        assert_eq!(strerror(libc::EPERM), "Operation not permitted");
        assert_eq!(strerror(libc::ENOTSUP), "Operation not supported");
    }
}
