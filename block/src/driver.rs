//! The driver trait: synchronous, offset-based calls every node's driver implements.
//!
//! A driver never owns its children; the node passes them in on every call
//! (`Children`), so the graph can swap a backing file without the driver noticing.
//! Drivers never queue requests: each call does its I/O before returning.

use std::os::fd::{BorrowedFd, OwnedFd};

use crate::error::{BlockError, BlockResult};
use crate::node::{lock, NodeRef};
use crate::request::{breakpoint, ready_or_busy, DriverReq, Poll, ReqKind};

/// The children a node's driver may use.
#[derive(Default, Clone)]
pub struct Children {
    /// The protocol or lower layer the format reads its bytes from (set it
    /// with `set_file`, which keeps `file_observes_events` right).
    pub file: Option<NodeRef>,
    /// The backing image (copy-on-write base).
    pub backing: Option<NodeRef>,
    /// The file child's driver acts on blkdebug events: learnt once when the
    /// child is attached (a node never changes its driver).
    file_observes_events: bool,
}

impl Children {
    /// Children with this file child and no backing.
    pub fn with_file(file: NodeRef) -> Children {
        let mut c = Children::default();
        c.set_file(Some(file));
        c
    }

    /// Attaches (or detaches) the file child.
    pub fn set_file(&mut self, file: Option<NodeRef>) {
        self.file_observes_events = file.as_ref().is_some_and(|f| lock(f).observes_events());
        self.file = file;
    }

    /// True when an event signalled on the file child can have an effect
    /// (it is a blkdebug node); false lets signalling skip the child's lock.
    #[inline]
    pub fn file_observes_events(&self) -> bool {
        self.file_observes_events
    }
}

/// Allocation state of a range, as one layer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Bytes from the queried offset that share this state (> 0).
    pub len: u64,
    /// This layer decides the content (false: look at the backing file).
    pub allocated: bool,
    /// The range reads as zeroes.
    pub zero: bool,
    /// The range holds data in the file child.
    pub data: bool,
    /// Where the data lives in the file child, when it is stored plainly there.
    pub offset: Option<u64>,
}

impl Extent {
    /// A range this layer stores as data at `offset` of its file child.
    pub fn data(len: u64, offset: Option<u64>) -> Extent {
        Extent {
            len,
            allocated: true,
            zero: false,
            data: true,
            offset,
        }
    }

    /// A range this layer knows to read as zeroes.
    pub fn zero(len: u64) -> Extent {
        Extent {
            len,
            allocated: true,
            zero: true,
            data: false,
            offset: None,
        }
    }

    /// A range this layer leaves to its backing file.
    pub fn unallocated(len: u64) -> Extent {
        Extent {
            len,
            allocated: false,
            zero: false,
            data: false,
            offset: None,
        }
    }
}

/// Where a range of a node's content can be copied from without reading it
/// into memory (copy offload, see `Node::copy_source`).
#[derive(Debug)]
pub enum CopySource {
    /// The bytes are stored plainly at `offset` of this host file (a
    /// duplicate of the file's descriptor, so it outlives any lock).
    Host { fd: OwnedFd, offset: u64 },
    /// The range reads as zeroes.
    Zero,
    /// Some layer cannot tell (compressed data, a filter driver...): read it.
    Unsupported,
}

/// The data of a copy-offload write: `len` bytes at `offset` of a host file.
#[derive(Debug, Clone, Copy)]
pub struct CopyFrom<'a> {
    pub fd: BorrowedFd<'a>,
    pub offset: u64,
}

/// One internal snapshot, as `qemu-img snapshot -l` and query-block list it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotInfo {
    pub id: String,
    pub name: String,
    pub vm_state_size: u64,
    pub date_sec: u32,
    pub date_nsec: u32,
    pub vm_clock_nsec: u64,
}

/// Format-level facts for query-block's `image` member.
#[derive(Debug, Clone, Default)]
pub struct FormatInfo {
    pub cluster_size: Option<u64>,
    pub dirty_flag: Option<bool>,
    pub encrypted: bool,
    /// Backing file name exactly as stored in the image.
    pub backing_filename: Option<String>,
    pub backing_format: Option<String>,
    /// QEMU's ImageInfoSpecific union as JSON (`{"type": "qcow2", "data": {...}}`).
    pub format_specific: Option<serde_json::Value>,
}

/// A corruption found in an image's metadata; the node turns read-only when `fatal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptionReport {
    pub msg: String,
    pub offset: Option<u64>,
    pub size: Option<u64>,
    pub fatal: bool,
}

/// Everything a block driver does. Offsets and lengths are in bytes.
pub trait Driver: Send {
    /// The driver name as QMP shows it (`qcow2`, `raw`, `file`, ...).
    fn format_name(&self) -> &'static str;

    /// True for drivers that interpret an image format on top of a `file` child.
    fn is_format(&self) -> bool {
        true
    }

    /// Size of the device in bytes.
    fn length(&mut self, c: &Children) -> BlockResult<u64>;

    /// Size re-read from the underlying storage (another process may have
    /// grown the file); drivers without such storage return `length`.
    fn refresh_length(&mut self, c: &Children) -> BlockResult<u64> {
        self.length(c)
    }

    /// The alignment (a power of two) requests must have at this node; the
    /// generic layer pads unaligned ones (read-modify-write for writes).
    /// Asked once, when the node is made.
    fn request_alignment(&self) -> u64 {
        1
    }

    /// Fills `buf` from `offset`.
    fn read(&mut self, c: &Children, offset: u64, buf: &mut [u8]) -> BlockResult<()>;

    /// Writes `buf` at `offset`; `fua` asks for it to be stable before returning.
    fn write(&mut self, c: &Children, offset: u64, buf: &[u8], fua: bool) -> BlockResult<()>;

    /// Makes the range read as zeroes; `may_unmap` allows deallocating it.
    fn write_zeroes(
        &mut self,
        c: &Children,
        offset: u64,
        len: u64,
        may_unmap: bool,
    ) -> BlockResult<()>;

    /// Polls a read that may stop (see `crate::request`); a driver whose
    /// reads can stop keeps its progress in `req.state`. The default reads
    /// at once.
    fn poll_read(
        &mut self,
        c: &Children,
        req: &mut DriverReq,
        buf: &mut [u8],
    ) -> Poll<BlockResult<()>> {
        Poll::Ready(self.read(c, req.offset, buf))
    }

    /// Polls a write or write-zeroes that may stop; the default does it at once.
    fn poll_write(
        &mut self,
        c: &Children,
        req: &mut DriverReq,
        data: &[u8],
    ) -> Poll<BlockResult<()>> {
        Poll::Ready(match req.kind {
            ReqKind::Write { fua } => self.write(c, req.offset, data, fua),
            ReqKind::WriteZeroes { len, may_unmap } => {
                self.write_zeroes(c, req.offset, len, may_unmap)
            }
            ReqKind::Read => Err(BlockError::InvalidArgument(
                "a read polled as a write".into(),
            )),
        })
    }

    /// Hints that the range is no longer needed.
    fn discard(&mut self, c: &Children, offset: u64, len: u64) -> BlockResult<()>;

    /// Makes every completed write stable.
    fn flush(&mut self, c: &Children) -> BlockResult<()>;

    /// Allocation state of the range starting at `offset` (at most `len` bytes).
    fn block_status(&mut self, c: &Children, offset: u64, len: u64) -> BlockResult<Extent>;

    /// Changes the device size.
    fn truncate(&mut self, c: &Children, size: u64) -> BlockResult<()>;

    /// Writes a whole cluster compressed (qemu-io `write -c`, `qemu-img convert -c`).
    fn write_compressed(&mut self, _c: &Children, _offset: u64, _buf: &[u8]) -> BlockResult<()> {
        Err(BlockError::Unsupported(format!(
            "Block format '{}' does not support compressed writes",
            self.format_name()
        )))
    }

    /// Where `offset..` (at most `len` bytes) of this node's content lives, and
    /// for how many bytes the answer holds (> 0). The default: read it.
    fn copy_source(
        &mut self,
        _c: &Children,
        _offset: u64,
        len: u64,
    ) -> BlockResult<(CopySource, u64)> {
        Ok((CopySource::Unsupported, len.max(1)))
    }

    /// True when `copy_in` can take this range (decided before anything changes,
    /// so a caller that hears false falls back to an ordinary write).
    fn can_copy_in(&mut self, _c: &Children, _offset: u64, _len: u64) -> bool {
        false
    }

    /// Writes `len` bytes taken from `src` at `offset`, as `write` would
    /// write them (allocation, metadata), moving the data file-to-file.
    fn copy_in(
        &mut self,
        _c: &Children,
        _offset: u64,
        _len: u64,
        _src: CopyFrom<'_>,
    ) -> BlockResult<()> {
        Err(BlockError::Unsupported(format!(
            "Block format '{}' does not support copy offload",
            self.format_name()
        )))
    }

    /// Writes back everything and marks the image clean; the node is going away.
    fn close(&mut self, c: &Children) -> BlockResult<()> {
        self.flush(c)
    }

    /// Called when the node switches between read-only and read-write.
    fn set_read_only(&mut self, _c: &Children, _read_only: bool) -> BlockResult<()> {
        Ok(())
    }

    /// True when a freshly created image of this driver reads as zeroes.
    fn has_zero_init(&self) -> bool {
        false
    }

    /// Backing file name and format stored in the image, if any.
    fn backing_file(&self) -> Option<(String, Option<String>)> {
        None
    }

    /// Rewrites the backing file name and format stored in the image.
    fn change_backing_file(
        &mut self,
        _c: &Children,
        _name: Option<&str>,
        _fmt: Option<&str>,
    ) -> BlockResult<()> {
        Err(BlockError::Unsupported(
            "Operation not supported by this image format".into(),
        ))
    }

    /// Format facts for query-block.
    fn format_info(&mut self, _c: &Children) -> FormatInfo {
        FormatInfo::default()
    }

    /// Cluster size or preferred granularity, if the format has one.
    fn cluster_size(&self) -> Option<u64> {
        None
    }

    fn snapshot_list(&mut self, _c: &Children) -> BlockResult<Vec<SnapshotInfo>> {
        Ok(Vec::new())
    }

    /// Creates an internal snapshot; `info.id` empty means "pick the next id".
    fn snapshot_create(
        &mut self,
        _c: &Children,
        _info: &SnapshotInfo,
    ) -> BlockResult<SnapshotInfo> {
        Err(self.no_snapshots())
    }

    /// Deletes the snapshot matching `id` and/or `name`; returns what was deleted.
    fn snapshot_delete(
        &mut self,
        _c: &Children,
        _id: Option<&str>,
        _name: Option<&str>,
    ) -> BlockResult<SnapshotInfo> {
        Err(self.no_snapshots())
    }

    /// Reverts the active image to the snapshot whose id or name is `id_or_name`.
    fn snapshot_goto(&mut self, _c: &Children, _id_or_name: &str) -> BlockResult<()> {
        Err(self.no_snapshots())
    }

    /// A corruption found since the last call, for BLOCK_IMAGE_CORRUPTED.
    fn take_corruption(&mut self) -> Option<CorruptionReport> {
        None
    }

    /// True when `take_corruption` can report anything; asked once, when
    /// the node is made, so other nodes' requests do not ask for nothing.
    fn reports_corruption(&self) -> bool {
        false
    }

    /// A blkdebug event signalled on this node (only blkdebug acts on it).
    fn debug_event(&mut self, _c: &Children, _ev: crate::drivers::blkdebug::BlkdebugEvent) {}

    /// True when `debug_event` can have an effect (blkdebug): events
    /// signalled on a node whose driver says false are skipped.
    fn observes_events(&self) -> bool {
        false
    }

    /// The concrete driver, for driver-specific commands (blkdebug
    /// breakpoints, quorum x-blockdev-change).
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }

    /// Children the driver holds itself, beyond `file` and `backing` (quorum).
    fn other_children(&self) -> Vec<NodeRef> {
        Vec::new()
    }

    fn no_snapshots(&self) -> BlockError {
        BlockError::Unsupported(format!(
            "Block format '{}' does not support internal snapshots",
            self.format_name()
        ))
    }
}

/// A synchronous read of a driver whose reads are state machines: its
/// `poll_read` polled once as a request that cannot stop (EBUSY when it
/// would have to wait behind a stopped one).
pub(crate) fn read_by_polling<D: Driver + ?Sized>(
    d: &mut D,
    c: &Children,
    offset: u64,
    buf: &mut [u8],
) -> BlockResult<()> {
    let mut req = DriverReq::new(offset, ReqKind::Read);
    ready_or_busy(breakpoint::synchronous(|| d.poll_read(c, &mut req, buf)))
}

/// `read_by_polling` for writes and write-zeroes (`data` empty).
pub(crate) fn write_by_polling<D: Driver + ?Sized>(
    d: &mut D,
    c: &Children,
    offset: u64,
    kind: ReqKind,
    data: &[u8],
) -> BlockResult<()> {
    let mut req = DriverReq::new(offset, kind);
    ready_or_busy(breakpoint::synchronous(|| d.poll_write(c, &mut req, data)))
}
