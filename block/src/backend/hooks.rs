//! The backend's I/O accounting: every read, write, write-zeroes and flush
//! through a backend is counted in its `BlockStats` (query-blockstats). Requests
//! refused before any I/O (outside the device, no medium) count as invalid,
//! requests that fail in the layers below as failed.

use std::sync::MutexGuard;

use super::Backend;
use crate::error::{BlockError, BlockResult};
use crate::stats::{realtime_ns, AcctType, BlockStats};

impl Backend {
    /// The backend's accounting (query-blockstats; `-drive stats-*` options).
    pub fn stats(&self) -> MutexGuard<'_, BlockStats> {
        match self.stats.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub(super) fn accounted<T>(
        &self,
        kind: AcctType,
        bytes: u64,
        op: impl FnOnce() -> BlockResult<T>,
    ) -> BlockResult<T> {
        let cookie = self.stats().start(kind, bytes, realtime_ns());
        let r = op();
        let now = realtime_ns();
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
