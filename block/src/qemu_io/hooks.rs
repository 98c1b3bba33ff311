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
    /// Another handle on the same statistics, for a request that completes
    /// after the command that issued it.
    fn share(&self) -> Box<dyn Accounting>;
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

/// A cache mode as `-c` names it (none/off, directsync, writeback, unsafe,
/// writethrough).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheMode {
    /// cache.direct: bypass the host page cache.
    pub direct: bool,
    /// cache.no-flush: ignore flush requests.
    pub no_flush: bool,
    /// The backend's write cache (off: every write is followed by a flush).
    pub writeback: bool,
}

impl CacheMode {
    /// Parses a `-c` cache mode name.
    pub fn parse(name: &str) -> Option<CacheMode> {
        let (direct, no_flush, writeback) = match name {
            "off" | "none" => (true, false, true),
            "directsync" => (true, false, false),
            "writeback" => (false, false, true),
            "unsafe" => (false, true, true),
            "writethrough" => (false, false, false),
            _ => return None,
        };
        Some(CacheMode {
            direct,
            no_flush,
            writeback,
        })
    }
}

/// What `reopen` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReopenRequest {
    /// The node's read-only state after the reopen (`-r`, or unchanged).
    pub read_only: bool,
    /// A new cache mode (`-c`).
    pub cache: Option<CacheMode>,
    /// Driver options (`-o key=value,...`), in the order given.
    pub options: Vec<(String, String)>,
}

/// Reopens a node with changed options (the graph owns how). An error is
/// the message the monitor shows.
pub trait ReopenOps: Send {
    fn reopen(&mut self, node: &NodeRef, req: &ReopenRequest) -> Result<(), String>;
}
