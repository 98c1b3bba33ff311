//! The backend's I/O accounting: every read, write, write-zeroes and flush
//! through a backend is counted in its `BlockStats` (query-blockstats). Requests
//! refused before any I/O (outside the device, no medium) count as invalid,
//! requests that fail in the layers below as failed (the device view: a
//! virtio-blk request outside the disk is refused before submission).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use super::Backend;
use crate::error::{BlockError, BlockResult};
use crate::stats::{acct_now, AcctType, BlockStats};

impl Backend {
    /// The backend's accounting (query-blockstats; `-drive stats-*` options).
    pub fn stats(&self) -> MutexGuard<'_, BlockStats> {
        match self.stats.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// A shared handle on the accounting, for holders that outlive a borrow of
    /// the graph (a qemu-io session's `StatsAccounting`).
    pub fn stats_handle(&self) -> Arc<Mutex<BlockStats>> {
        self.stats.clone()
    }

    /// Runs `f` with this backend's automatic accounting off. QEMU 2.8 counts
    /// guest-device requests and qemu-io's aio_read/aio_write/aio_flush only;
    /// qemu-io's plain read/write/flush, `-z` writes, the NBD server and block
    /// jobs are not counted, so those callers wrap their I/O in this (qemu-io's
    /// aio commands then book `stats()` themselves: start/done/failed/invalid).
    pub fn io_unaccounted<R>(&self, f: impl FnOnce() -> R) -> R {
        self.unaccounted.fetch_add(1, Ordering::Relaxed);
        let r = f();
        self.unaccounted.fetch_sub(1, Ordering::Relaxed);
        r
    }

    pub(super) fn accounted<T>(
        &self,
        kind: AcctType,
        bytes: u64,
        op: impl FnOnce() -> BlockResult<T>,
    ) -> BlockResult<T> {
        if self.unaccounted.load(Ordering::Relaxed) > 0 {
            return op();
        }
        let cookie = self.stats().start(kind, bytes, acct_now());
        let r = op();
        let now = acct_now();
        match &r {
            Ok(_) => self.stats().done(cookie, now),
            Err(BlockError::OutOfBounds { .. } | BlockError::NoMedium(_)) => {
                self.stats().invalid(kind, now)
            }
            Err(_) => self.stats().failed(cookie, now),
        }
        r
    }
}
