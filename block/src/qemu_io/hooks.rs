//! What qemu-io reaches outside the node: the backend's I/O accounting
//! (the aio commands feed query-blockstats) and blkdebug's breakpoints. The
//! caller plugs these in; without them qemu-io behaves as on a device
//! without accounting and without blkdebug.

use crate::node::NodeRef;

/// The kind of request an accounting record is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcctKind {
    Read,
    Write,
    Flush,
}

/// How an accounted request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcctResult {
    Done,
    Failed,
    /// Refused before it was issued (`-i`, or bad lengths).
    Invalid,
}

/// One accounting record (block_acct_done / _failed / _invalid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcctEvent {
    pub kind: AcctKind,
    pub bytes: u64,
    pub latency_ns: u64,
    pub result: AcctResult,
}

/// Receives accounting records from aio_read, aio_write and aio_flush.
pub trait Accounting: Send {
    fn account(&mut self, ev: AcctEvent);
}

/// blkdebug's breakpoint operations on the blkdebug layer under `node`.
/// Each returns an errno on failure (ENOTSUP when there is no blkdebug layer).
pub trait DebugOps: Send {
    fn breakpoint(&mut self, node: &NodeRef, event: &str, tag: &str) -> Result<(), i32>;
    fn remove_breakpoint(&mut self, node: &NodeRef, tag: &str) -> Result<(), i32>;
    fn resume(&mut self, node: &NodeRef, tag: &str) -> Result<(), i32>;
    /// Returns once a request is suspended at `tag`.
    fn wait_break(&mut self, node: &NodeRef, tag: &str);
}
