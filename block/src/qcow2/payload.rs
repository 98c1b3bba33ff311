//! The data of a guest write as the allocating write path sees it: bytes in
//! memory, or a range of another host file that copy offload moves
//! file-to-file without it passing through memory.

use std::os::fd::AsRawFd;

use crate::driver::CopyFrom;
use crate::drivers::file::FileDriver;
use crate::error::BlockResult;

#[derive(Clone, Copy)]
pub(crate) enum Payload<'a> {
    Mem(&'a [u8]),
    File { src: CopyFrom<'a>, len: u64 },
}

impl<'a> Payload<'a> {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Payload::Mem(b) => b.len() as u64,
            Payload::File { len, .. } => *len,
        }
    }

    /// `n` bytes from `start` (both within the payload).
    pub(crate) fn slice(&self, start: u64, n: u64) -> Payload<'a> {
        match *self {
            Payload::Mem(b) => Payload::Mem(&b[start as usize..(start + n) as usize]),
            Payload::File { src, .. } => Payload::File {
                src: CopyFrom {
                    fd: src.fd,
                    offset: src.offset + start,
                },
                len: n,
            },
        }
    }

    /// Everything after the first `n` bytes.
    pub(crate) fn skip(&self, n: u64) -> Payload<'a> {
        self.slice(n, self.len() - n)
    }

    /// Copies the payload into `buf` (of the payload's length), for writes
    /// that merge it with a cluster's old content.
    pub(crate) fn fill(&self, buf: &mut [u8]) -> BlockResult<()> {
        match self {
            Payload::Mem(b) => {
                buf.copy_from_slice(b);
                Ok(())
            }
            Payload::File { src, .. } => {
                FileDriver::pread_full(src.fd.as_raw_fd(), src.offset, buf)
            }
        }
    }
}
