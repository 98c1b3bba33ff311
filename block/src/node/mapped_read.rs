//! Reads handed out as a map rather than copied: the ranges a node stores
//! plainly in a host file go to the caller as that file and offset (so a
//! server can sendfile(2) them), ranges known to read as zeroes as a length,
//! and only the rest is read into the caller's memory.
//!
//! A caller that reads the host file later (after other requests ran) must
//! check `mapping_generation` first: a format may free a cluster (discard,
//! zeroing, truncation, snapshot deletion) and reuse it for other data.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Node;
use crate::driver::CopySource;
use crate::error::BlockResult;

/// Bumped by every request that may free storage of any node; see
/// `mapping_generation`.
static MAPPING_GENERATION: AtomicU64 = AtomicU64::new(0);

/// A counter that changes whenever some node may have freed storage, after
/// which a host file range handed out by `read_mapped` may hold other data.
/// Mappings taken under one value stay valid while it is unchanged.
pub fn mapping_generation() -> u64 {
    MAPPING_GENERATION.load(Ordering::Acquire)
}

/// Called before a request that may free storage (and so invalidate maps).
pub(super) fn mappings_may_change() {
    MAPPING_GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// Where the pieces of a mapped read go, in order.
pub trait MappedRead {
    /// The next `len` bytes are stored plainly at `offset` of the host file
    /// `fd` (a duplicate descriptor, the caller's to keep).
    fn host(&mut self, fd: OwnedFd, offset: u64, len: u64);
    /// The next `len` bytes read as zeroes.
    fn zeroes(&mut self, len: u64);
    /// Room for the next `len` bytes, which the node fills before the next
    /// call (on failure the read returns an error and the room is garbage).
    fn buffer(&mut self, len: u64) -> &mut [u8];
}

impl Node {
    /// Reads `len` bytes at `offset` as a map (see the module comment): file
    /// ranges and zeroes where every layer can tell (`copy_source`), data
    /// read into `to.buffer` elsewhere (compressed clusters, O_DIRECT files,
    /// filter drivers). Neighbouring pieces that must be read are read with
    /// one request.
    pub fn read_mapped(
        &mut self,
        offset: u64,
        len: u64,
        to: &mut dyn MappedRead,
    ) -> BlockResult<()> {
        self.check_usable()?;
        let end = offset.saturating_add(len);
        let mut pos = offset;
        let mut slow: Option<u64> = None;
        while pos < end {
            let (src, n) = self.copy_source(pos, end - pos)?;
            let n = n.min(end - pos);
            match src {
                CopySource::Unsupported => {
                    slow.get_or_insert(pos);
                }
                src => {
                    if let Some(s) = slow.take() {
                        self.read(s, to.buffer(pos - s))?;
                    }
                    match src {
                        CopySource::Host { fd, offset: at } => to.host(fd, at, n),
                        _ => to.zeroes(n),
                    }
                }
            }
            pos += n;
        }
        if let Some(s) = slow {
            self.read(s, to.buffer(end - s))?;
        }
        Ok(())
    }
}
