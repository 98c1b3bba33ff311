//! The `raw` format driver: the file child's bytes as they are, optionally a
//! window of them (`offset`, `size`).

use crate::driver::{
    read_by_polling, write_by_polling, Children, CopyFrom, CopySource, Driver, Extent, FormatInfo,
};
use crate::drivers::blkdebug::{self, BlkdebugEvent};
use crate::error::{BlockError, BlockResult};
use crate::node::{lock, pass_read, pass_write, NodeRef};
use crate::request::{DriverReq, Poll, ReqKind};

/// Raw format over a file child.
pub struct RawDriver {
    offset: u64,
    size: Option<u64>,
}

fn file_of(c: &Children) -> BlockResult<&NodeRef> {
    c.file
        .as_ref()
        .ok_or_else(|| BlockError::Generic("raw node has no file child".into()))
}

impl RawDriver {
    /// Checks the window against the file's size, with QEMU 2.9's messages
    /// (2.8 had no window; 2.9 added it).
    pub fn open(c: &Children, offset: u64, size: Option<u64>) -> BlockResult<RawDriver> {
        let flen = lock(file_of(c)?).length()?;
        if offset > flen {
            return Err(BlockError::InvalidArgument(format!(
                "Offset ({offset}) cannot be greater than size of the containing file ({flen})"
            )));
        }
        if let Some(sz) = size {
            if flen - offset < sz {
                return Err(BlockError::InvalidArgument(format!(
                    "The sum of offset ({offset}) and size ({sz}) has to be smaller or equal \
                     to the  actual size of the containing file ({flen})"
                )));
            }
            // A size that is not whole sectors would let sector-rounded
            // requests leak past the window.
            if sz % 512 != 0 {
                return Err(BlockError::InvalidArgument(
                    "Specified size is not multiple of 512".into(),
                ));
            }
        }
        Ok(RawDriver { offset, size })
    }

    fn check(&self, c: &Children, offset: u64, len: u64) -> BlockResult<()> {
        if let Some(sz) = self.size {
            if offset.checked_add(len).is_none_or(|e| e > sz) {
                return Err(BlockError::OutOfBounds {
                    offset,
                    len,
                    size: sz,
                });
            }
        }
        let _ = c;
        Ok(())
    }
}

impl Driver for RawDriver {
    // raw passes bdrv_get_info through to its file: a dirty flag when the
    // file answers it (file, host_device), none over host_cdrom.
    fn format_info(&mut self, c: &Children) -> FormatInfo {
        let dirty_flag = file_of(c)
            .ok()
            .and_then(|f| lock(f).format_info().dirty_flag);
        FormatInfo {
            dirty_flag,
            ..FormatInfo::default()
        }
    }

    fn format_name(&self) -> &'static str {
        "raw"
    }

    fn length(&mut self, c: &Children) -> BlockResult<u64> {
        match self.size {
            Some(s) => Ok(s),
            None => Ok(lock(file_of(c)?).length()?.saturating_sub(self.offset)),
        }
    }

    fn read(&mut self, c: &Children, offset: u64, buf: &mut [u8]) -> BlockResult<()> {
        read_by_polling(self, c, offset, buf)
    }

    fn write(&mut self, c: &Children, offset: u64, buf: &[u8], fua: bool) -> BlockResult<()> {
        write_by_polling(self, c, offset, ReqKind::Write { fua }, buf)
    }

    fn write_zeroes(
        &mut self,
        c: &Children,
        offset: u64,
        len: u64,
        may_unmap: bool,
    ) -> BlockResult<()> {
        write_by_polling(
            self,
            c,
            offset,
            ReqKind::WriteZeroes { len, may_unmap },
            &[],
        )
    }

    // read_aio and write_aio are signalled on the file child before the
    // request goes down: a breakpoint there holds it before any I/O.
    fn poll_read(
        &mut self,
        c: &Children,
        req: &mut DriverReq,
        buf: &mut [u8],
    ) -> Poll<BlockResult<()>> {
        if req.state.is_none() {
            if let Err(e) = self.check(c, req.offset, buf.len() as u64) {
                return Poll::Ready(Err(e));
            }
        }
        let file = match file_of(c) {
            Ok(f) => f,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let (ev, at) = (Some(BlkdebugEvent::ReadAio), req.offset + self.offset);
        pass_read(req, c, ev, file, at, buf)
    }

    fn poll_write(
        &mut self,
        c: &Children,
        req: &mut DriverReq,
        data: &[u8],
    ) -> Poll<BlockResult<()>> {
        let (len, ev) = match req.kind {
            ReqKind::WriteZeroes { len, .. } => (len, None),
            _ => (data.len() as u64, Some(BlkdebugEvent::WriteAio)),
        };
        if req.state.is_none() {
            if let Err(e) = self.check(c, req.offset, len) {
                return Poll::Ready(Err(e));
            }
        }
        let file = match file_of(c) {
            Ok(f) => f,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let at = req.offset + self.offset;
        pass_write(req, c, ev, file, at, data)
    }

    fn discard(&mut self, c: &Children, offset: u64, len: u64) -> BlockResult<()> {
        self.check(c, offset, len)?;
        lock(file_of(c)?).discard(offset + self.offset, len)
    }

    fn flush(&mut self, c: &Children) -> BlockResult<()> {
        lock(file_of(c)?).flush()
    }

    fn block_status(&mut self, c: &Children, offset: u64, len: u64) -> BlockResult<Extent> {
        let mut e = lock(file_of(c)?).block_status(offset + self.offset, len)?;
        e.allocated = true;
        Ok(e)
    }

    fn copy_source(
        &mut self,
        c: &Children,
        offset: u64,
        len: u64,
    ) -> BlockResult<(CopySource, u64)> {
        self.check(c, offset, len)?;
        lock(file_of(c)?).copy_source(offset + self.offset, len)
    }

    fn can_copy_in(&mut self, c: &Children, offset: u64, len: u64) -> bool {
        self.check(c, offset, len).is_ok()
            && file_of(c).is_ok_and(|f| lock(f).can_copy_in(offset + self.offset, len))
    }

    fn copy_in(
        &mut self,
        c: &Children,
        offset: u64,
        len: u64,
        src: CopyFrom<'_>,
    ) -> BlockResult<()> {
        self.check(c, offset, len)?;
        blkdebug::signal(c, BlkdebugEvent::WriteAio);
        lock(file_of(c)?).copy_in(offset + self.offset, len, src)
    }

    fn truncate(&mut self, c: &Children, size: u64) -> BlockResult<()> {
        // A fixed window cannot grow; without `size` the window follows the
        // file, which grows by the offset too.
        if self.size.is_some() {
            return Err(BlockError::Unsupported(
                "Cannot resize a raw node with a size option".into(),
            ));
        }
        let end = size
            .checked_add(self.offset)
            .ok_or_else(|| BlockError::InvalidArgument("Invalid argument".into()))?;
        lock(file_of(c)?).truncate(end)
    }

    fn has_zero_init(&self) -> bool {
        true
    }
}
