//! `null-co` / `null-aio`: a device of a given size that stores nothing.

use crate::driver::{Children, Driver, Extent};
use crate::error::{BlockError, BlockResult};

/// Default size of a null device, as QEMU (1 GiB).
pub const NULL_DEFAULT_SIZE: u64 = 1 << 30;

/// A null device.
pub struct NullDriver {
    name: &'static str,
    size: u64,
    read_zeroes: bool,
}

impl NullDriver {
    /// `aio` selects the `null-aio` name; both behave the same here.
    pub fn new(aio: bool, size: u64, read_zeroes: bool) -> NullDriver {
        NullDriver {
            name: if aio { "null-aio" } else { "null-co" },
            size,
            read_zeroes,
        }
    }

    fn check(&self, offset: u64, len: u64) -> BlockResult<()> {
        if offset.checked_add(len).is_none_or(|e| e > self.size) {
            return Err(BlockError::OutOfBounds {
                offset,
                len,
                size: self.size,
            });
        }
        Ok(())
    }
}

impl Driver for NullDriver {
    fn format_name(&self) -> &'static str {
        self.name
    }

    fn is_format(&self) -> bool {
        false
    }

    fn length(&mut self, _c: &Children) -> BlockResult<u64> {
        Ok(self.size)
    }

    fn read(&mut self, _c: &Children, offset: u64, buf: &mut [u8]) -> BlockResult<()> {
        self.check(offset, buf.len() as u64)?;
        if self.read_zeroes {
            buf.fill(0);
        }
        Ok(())
    }

    fn write(&mut self, _c: &Children, offset: u64, buf: &[u8], _fua: bool) -> BlockResult<()> {
        self.check(offset, buf.len() as u64)
    }

    fn write_zeroes(&mut self, _c: &Children, offset: u64, len: u64, _u: bool) -> BlockResult<()> {
        self.check(offset, len)
    }

    fn discard(&mut self, _c: &Children, _offset: u64, _len: u64) -> BlockResult<()> {
        Ok(())
    }

    fn flush(&mut self, _c: &Children) -> BlockResult<()> {
        Ok(())
    }

    fn block_status(&mut self, _c: &Children, offset: u64, len: u64) -> BlockResult<Extent> {
        let n = len.min(self.size.saturating_sub(offset)).max(1);
        if self.read_zeroes {
            Ok(Extent::zero(n))
        } else {
            Ok(Extent::data(n, None))
        }
    }

    fn truncate(&mut self, _c: &Children, _size: u64) -> BlockResult<()> {
        Err(BlockError::Unsupported(
            "Image format driver does not support resize".into(),
        ))
    }
}
