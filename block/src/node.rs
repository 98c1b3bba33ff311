//! One node of the block graph (QEMU's BlockDriverState): a driver, its children,
//! and the per-node flags every request passes through (read-only, discard,
//! detect-zeroes, the probed-raw guard on sector 0).
//!
//! Requests here are not bounds-checked against the device size: a format driver
//! grows its file child by writing past the end. Backends check bounds.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::driver::{
    Children, CopyFrom, CopySource, CorruptionReport, Driver, Extent, FormatInfo, SnapshotInfo,
};
use crate::drivers::blkdebug::BlkdebugEvent;
use crate::error::{BlockError, BlockResult};
use crate::events::{BlockEvent, EventSink, ImageCorrupted};
use crate::probe;
use crate::request::{breakpoint, ready_or_busy, ReqKind};
use crate::tracking::WriteTracking;

/// Hooks for stats, dirty bitmaps, write threshold and blkdebug events.
mod hooks;
pub use hooks::find_driver_below;
/// Reads handed out as host file ranges (NBD's sendfile path).
mod mapped_read;
use mapped_read::mappings_may_change;
pub use mapped_read::{mapping_generation, MappedRead};
/// Reads and writes as requests that can stop and go on later.
mod requests;
pub use requests::{pass_read, pass_write, signal_stop, ReadOp, WriteOp};
/// Requests in flight through nodes that want aligned requests.
mod tracked;
use tracked::Tracked;

/// Shared handle to a node; parents, backends and the graph all hold one.
pub type NodeRef = Arc<Mutex<Node>>;

/// Runs before a write-type request changes `offset..offset+len` of a node
/// (backup's copy-before-write); an error fails the request.
pub trait BeforeWrite: Send + Sync {
    fn before_write(&self, node: &mut Node, offset: u64, len: u64) -> BlockResult<()>;
}

/// Locks a node, carrying on if an earlier holder panicked (the node's own state
/// is still consistent at request boundaries).
pub fn lock(node: &NodeRef) -> MutexGuard<'_, Node> {
    match node.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// What `detect-zeroes` does with an all-zero write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DetectZeroes {
    #[default]
    Off,
    On,
    Unmap,
}

impl DetectZeroes {
    pub fn as_str(self) -> &'static str {
        match self {
            DetectZeroes::Off => "off",
            DetectZeroes::On => "on",
            DetectZeroes::Unmap => "unmap",
        }
    }
}

/// Flags a node was opened with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeOptions {
    pub read_only: bool,
    /// `cache.direct`: O_DIRECT on the file.
    pub cache_direct: bool,
    /// `cache.no-flush`: flush requests succeed without doing anything.
    pub no_flush: bool,
    /// `discard=unmap`: pass discard requests down (else they are ignored).
    pub discard_unmap: bool,
    pub detect_zeroes: DetectZeroes,
}

/// A node of the graph.
pub struct Node {
    name: String,
    driver: Box<dyn Driver>,
    children: Children,
    opts: NodeOptions,
    probed: bool,
    filename: String,
    /// Created as the nested child of another node's options (QEMU deletes
    /// those together with their parent).
    implicit: bool,
    events: EventSink,
    corrupt: bool,
    /// Highest offset, dirty bitmaps, write threshold (see `node/hooks.rs`).
    pub(crate) tracking: WriteTracking,
    before_write: Option<Arc<dyn BeforeWrite>>,
    /// Who QEMU's blocker on our backing node names ("node is used as
    /// backing hd of 'X'"): fixed when a backing child is first attached.
    backing_blocker: Option<String>,
    /// The backing file name and format QEMU keeps for the node
    /// (bs->backing_file): the attached backing node's when one is
    /// attached, then whatever change-backing-file wrote.
    backing_record: Option<(String, String)>,
    /// Requests in flight, when the driver wants aligned requests.
    tracked: Tracked,
    // What the driver says of itself, asked once (a node never changes its
    // driver), not on every request:
    /// `driver.observes_events()`: events signalled on a node whose driver
    /// ignores them are skipped.
    observes_events: bool,
    /// `driver.request_alignment()`.
    align: u64,
    /// A write may move data the driver stored before (see
    /// `note_remapping_write`).
    remaps_on_write: bool,
    /// `driver.reports_corruption()`.
    reports_corruption: bool,
}

impl Node {
    pub(crate) fn new(
        name: String,
        driver: Box<dyn Driver>,
        children: Children,
        opts: NodeOptions,
        filename: String,
        events: EventSink,
    ) -> Node {
        Node {
            name,
            children,
            opts,
            probed: false,
            filename,
            implicit: false,
            events,
            corrupt: false,
            tracking: WriteTracking::default(),
            before_write: None,
            backing_blocker: None,
            backing_record: None,
            tracked: Tracked::default(),
            observes_events: driver.observes_events(),
            align: driver.request_alignment(),
            remaps_on_write: driver.is_format() && driver.format_name() != "raw",
            reports_corruption: driver.reports_corruption(),
            driver,
        }
    }

    /// The recorded backing file name and format (see field).
    pub fn backing_record(&self) -> Option<&(String, String)> {
        self.backing_record.as_ref()
    }

    pub fn set_backing_record(&mut self, rec: Option<(String, String)>) {
        self.backing_record = rec;
    }

    /// The name QEMU's backing blocker recorded for this node (see field).
    pub fn backing_blocker(&self) -> Option<&str> {
        self.backing_blocker.as_deref()
    }

    pub fn set_backing_blocker(&mut self, label: Option<String>) {
        self.backing_blocker = label;
    }

    pub(crate) fn set_probed(&mut self, probed: bool) {
        self.probed = probed;
    }

    pub(crate) fn set_implicit(&mut self, implicit: bool) {
        self.implicit = implicit;
    }

    pub fn implicit(&self) -> bool {
        self.implicit
    }

    /// The node-name (`#blockNNN` when generated).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The driver name (`qcow2`, `raw`, `file`, ...).
    pub fn driver_name(&self) -> &'static str {
        self.driver.format_name()
    }

    /// The file name QEMU shows for this node (the file child's for formats).
    pub fn filename(&self) -> &str {
        &self.filename
    }

    pub fn options(&self) -> NodeOptions {
        self.opts
    }

    pub fn is_read_only(&self) -> bool {
        self.opts.read_only
    }

    /// True when the format was guessed as raw because none was given.
    pub fn probed(&self) -> bool {
        self.probed
    }

    /// True after a fatal corruption was found in this node's metadata; the
    /// node is unusable then (see check_usable).
    pub fn is_corrupt(&self) -> bool {
        self.corrupt
    }

    pub fn children(&self) -> &Children {
        &self.children
    }

    pub fn file(&self) -> Option<NodeRef> {
        self.children.file.clone()
    }

    pub fn backing(&self) -> Option<NodeRef> {
        self.children.backing.clone()
    }

    pub(crate) fn set_backing_child(&mut self, backing: Option<NodeRef>) {
        self.children.backing = backing;
    }

    pub(crate) fn set_file_child(&mut self, file: Option<NodeRef>) {
        self.children.set_file(file);
    }

    pub fn set_detect_zeroes(&mut self, dz: DetectZeroes) {
        self.opts.detect_zeroes = dz;
    }

    /// Switches between read-only and read-write (the driver may refuse).
    pub fn set_read_only(&mut self, read_only: bool) -> BlockResult<()> {
        if !read_only && self.corrupt {
            return Err(BlockError::NotPermitted(
                "Node is marked corrupt and cannot be opened read-write".into(),
            ));
        }
        if read_only == self.opts.read_only {
            return Ok(());
        }
        if !read_only {
            if let Some(f) = &self.children.file {
                lock(f).set_read_only(false)?;
            }
        }
        self.driver.set_read_only(&self.children, read_only)?;
        self.opts.read_only = read_only;
        Ok(())
    }

    #[inline]
    fn note_corruption(&mut self) {
        if !self.reports_corruption {
            return;
        }
        if let Some(rep) = self.driver.take_corruption() {
            self.report_corruption(rep);
        }
    }

    fn report_corruption(&mut self, rep: CorruptionReport) {
        // QEMU's qcow2 driver says so on stderr before the event.
        if rep.fatal {
            eprintln!(
                "qcow2: Marking image as corrupt: {}; further corruption events will be suppressed",
                rep.msg
            );
        } else {
            eprintln!(
                "qcow2: Image is corrupt: {}; further non-fatal corruption events will be suppressed",
                rep.msg
            );
        }
        if rep.fatal {
            self.corrupt = true;
            self.opts.read_only = true;
        }
        self.events.push(BlockEvent::ImageCorrupted(ImageCorrupted {
            node_name: self.name.clone(),
            msg: rep.msg,
            offset: rep.offset,
            size: rep.size,
            fatal: rep.fatal,
        }));
    }

    /// QEMU 2.8 drops a node's driver after a fatal corruption: from then
    /// on it is "not inserted" and its I/O fails with ENOMEDIUM.
    fn check_usable(&self) -> BlockResult<()> {
        if self.corrupt {
            return Err(BlockError::NoMedium("No medium found".into()));
        }
        Ok(())
    }

    fn check_writable(&self) -> BlockResult<()> {
        if self.opts.read_only {
            return Err(BlockError::ReadOnly("Operation not permitted".into()));
        }
        Ok(())
    }

    /// Installs or removes the copy-before-write hook.
    pub fn set_before_write(&mut self, hook: Option<Arc<dyn BeforeWrite>>) {
        self.before_write = hook;
    }

    fn run_before_write(&mut self, offset: u64, len: u64) -> BlockResult<()> {
        let Some(h) = self.before_write.clone() else {
            return Ok(());
        };
        // Its reads must not wait for the write that runs it (QEMU's
        // backup reads with BDRV_REQ_NO_SERIALISING).
        requests::unserialised(|| h.before_write(self, offset, len))
    }

    pub fn length(&mut self) -> BlockResult<u64> {
        self.driver.length(&self.children)
    }

    /// Re-reads the size from storage (for files another process may grow).
    pub fn refresh_length(&mut self) -> BlockResult<u64> {
        self.driver.refresh_length(&self.children)
    }

    /// Synchronous, like `write` and `write_zeroes`: polled once as a
    /// request that cannot stop (nothing could resume it); one that would
    /// wait behind a stopped request fails with EBUSY.
    pub fn read(&mut self, offset: u64, buf: &mut [u8]) -> BlockResult<()> {
        let op = &mut ReadOp::new(offset);
        ready_or_busy(breakpoint::synchronous(|| self.poll_read(op, buf)))
    }

    pub fn write(&mut self, offset: u64, buf: &[u8], fua: bool) -> BlockResult<()> {
        let mut op = WriteOp::new(offset, ReqKind::Write { fua });
        ready_or_busy(breakpoint::synchronous(|| self.poll_write(&mut op, buf)))
    }

    /// A probed raw image must not be turned into something that probes as
    /// another format, or the next open would interpret guest data as metadata.
    fn check_probed_first_sector(&mut self, offset: u64, buf: &[u8]) -> BlockResult<()> {
        let mut sector = [0u8; 512];
        let start = offset as usize;
        let end = (start + buf.len()).min(512);
        if start > 0 || end < 512 {
            self.driver.read(&self.children, 0, &mut sector)?;
        }
        sector[start..end].copy_from_slice(&buf[..end - start]);
        if probe::probe_format(&sector) != "raw" {
            return Err(BlockError::NotPermitted("Operation not permitted".into()));
        }
        Ok(())
    }

    pub fn write_zeroes(&mut self, offset: u64, len: u64, may_unmap: bool) -> BlockResult<()> {
        let mut op = WriteOp::new(offset, ReqKind::WriteZeroes { len, may_unmap });
        ready_or_busy(breakpoint::synchronous(|| self.poll_write(&mut op, &[])))
    }

    /// Where `offset..` (at most `len` bytes) of this node's content can be
    /// copied from file-to-file, and for how many bytes (> 0) that holds.
    pub fn copy_source(&mut self, offset: u64, len: u64) -> BlockResult<(CopySource, u64)> {
        let r = self.driver.copy_source(&self.children, offset, len.max(1));
        self.note_corruption();
        let (src, n) = r?;
        Ok((src, n.clamp(1, len.max(1))))
    }

    /// True when `copy_in` can take the range: every layer down to the host
    /// file can, and no per-node flag needs to look at the data (a probed raw
    /// image's first sector, detect-zeroes).
    pub fn can_copy_in(&mut self, offset: u64, len: u64) -> bool {
        if self.opts.read_only || len == 0 {
            return false;
        }
        if (self.probed && offset < 512) || self.opts.detect_zeroes != DetectZeroes::Off {
            return false;
        }
        self.driver.can_copy_in(&self.children, offset, len)
    }

    /// Writes `len` bytes taken from the host file `src` at `offset`, with the
    /// same bookkeeping as `write` (copy-before-write hook, write threshold,
    /// dirty bitmaps, highest offset). Callers check `can_copy_in` first.
    pub fn copy_in(&mut self, offset: u64, len: u64, src: CopyFrom<'_>) -> BlockResult<()> {
        self.check_writable()?;
        if len == 0 {
            return Ok(());
        }
        self.run_before_write(offset, len)?;
        self.note_remapping_write();
        self.write_begin(offset, len, BlkdebugEvent::Pwritev);
        let r = self.driver.copy_in(&self.children, offset, len, src);
        self.write_end(offset, len, false);
        self.note_corruption();
        r
    }

    /// A format other than raw may move data on a write (a qcow2 cluster
    /// that is not marked as solely owned is copied and the old one freed),
    /// so host ranges handed out by `read_mapped` may go stale.
    fn note_remapping_write(&self) {
        if self.remaps_on_write {
            mappings_may_change();
        }
    }

    /// Writes one whole cluster compressed.
    pub fn write_compressed(&mut self, offset: u64, buf: &[u8]) -> BlockResult<()> {
        self.check_usable()?;
        self.check_writable()?;
        self.run_before_write(offset, buf.len() as u64)?;
        mappings_may_change();
        self.write_begin(offset, buf.len() as u64, BlkdebugEvent::Pwritev);
        let r = self.driver.write_compressed(&self.children, offset, buf);
        self.write_end(offset, buf.len() as u64, false);
        self.note_corruption();
        r
    }

    /// Discards the range when the node was opened with `discard=unmap`.
    pub fn discard(&mut self, offset: u64, len: u64) -> BlockResult<()> {
        self.check_usable()?;
        self.check_writable()?;
        if !self.opts.discard_unmap || len == 0 {
            return Ok(());
        }
        self.run_before_write(offset, len)?;
        mappings_may_change();
        let r = self.driver.discard(&self.children, offset, len);
        self.write_end(offset, len, true);
        self.note_corruption();
        r
    }

    pub fn flush(&mut self) -> BlockResult<()> {
        if self.opts.no_flush {
            return Ok(());
        }
        self.flush_begin();
        let r = self.driver.flush(&self.children);
        self.note_corruption();
        r
    }

    /// Allocation state of this layer only.
    pub fn block_status(&mut self, offset: u64, len: u64) -> BlockResult<Extent> {
        self.check_usable()?;
        let r = self.driver.block_status(&self.children, offset, len);
        self.note_corruption();
        r
    }

    /// Allocation state through the backing chain: the extent and the depth
    /// (0 = this node) of the layer that decides it. Unallocated everywhere reads
    /// as zero at the depth of the last layer.
    pub fn block_status_chain(&mut self, offset: u64, len: u64) -> BlockResult<(Extent, u32)> {
        let ext = self.block_status(offset, len)?;
        if ext.allocated {
            return Ok((ext, 0));
        }
        let backing = match &self.children.backing {
            Some(b) => b.clone(),
            None => {
                let mut e = ext;
                e.zero = true;
                return Ok((e, 0));
            }
        };
        let mut b = lock(&backing);
        let blen = b.length()?;
        if offset >= blen {
            let mut e = ext;
            e.zero = true;
            return Ok((e, 1));
        }
        let (mut e, depth) = b.block_status_chain(offset, ext.len.min(blen - offset))?;
        e.len = e.len.min(ext.len);
        Ok((e, depth + 1))
    }

    /// True when `offset..offset+len` is allocated in this node or any backing
    /// node down to (not including) `base`; returns the length that shares the answer.
    pub fn is_allocated_above(
        &mut self,
        base: Option<&NodeRef>,
        offset: u64,
        len: u64,
    ) -> BlockResult<(bool, u64)> {
        let ext = self.block_status(offset, len)?;
        if ext.allocated {
            return Ok((true, ext.len));
        }
        let backing = match &self.children.backing {
            Some(b) => b.clone(),
            None => return Ok((false, ext.len)),
        };
        if let Some(base) = base {
            if Arc::ptr_eq(base, &backing) {
                return Ok((false, ext.len));
            }
        }
        let mut b = lock(&backing);
        let blen = b.length()?;
        if offset >= blen {
            return Ok((false, ext.len));
        }
        let (alloc, n) = b.is_allocated_above(base, offset, ext.len.min(blen - offset))?;
        Ok((alloc, n.min(ext.len)))
    }

    pub fn truncate(&mut self, size: u64) -> BlockResult<()> {
        self.check_usable()?;
        self.check_writable()?;
        mappings_may_change();
        let r = self.driver.truncate(&self.children, size);
        if r.is_ok() {
            self.tracking.bitmaps.resize(size);
        }
        self.note_corruption();
        r
    }

    /// Flushes and marks the image clean; called when the node leaves the graph.
    pub fn close(&mut self) -> BlockResult<()> {
        if self.opts.read_only {
            return Ok(());
        }
        self.driver.close(&self.children)
    }

    pub fn has_zero_init(&self) -> bool {
        self.driver.has_zero_init()
    }

    pub fn cluster_size(&self) -> Option<u64> {
        self.driver.cluster_size()
    }

    /// Backing file name and format recorded in the image.
    pub fn backing_file(&self) -> Option<(String, Option<String>)> {
        self.driver.backing_file()
    }

    /// Rewrites the backing file name/format recorded in the image (the graph's
    /// backing child is not changed).
    pub fn change_backing_file(
        &mut self,
        name: Option<&str>,
        fmt: Option<&str>,
    ) -> BlockResult<()> {
        self.check_writable()?;
        let r = self.driver.change_backing_file(&self.children, name, fmt);
        self.note_corruption();
        r
    }

    pub fn format_info(&mut self) -> FormatInfo {
        self.driver.format_info(&self.children)
    }

    /// Bytes the file child occupies on the host (query-block's actual-size).
    pub fn allocated_file_size(&mut self) -> Option<u64> {
        if let Some(sz) = self.driver_allocated_size() {
            return Some(sz);
        }
        let f = self.children.file.clone()?;
        let mut g = lock(&f);
        g.allocated_file_size()
    }

    fn driver_allocated_size(&self) -> Option<u64> {
        if self.driver.format_name() != "file" {
            return None;
        }
        let meta = std::fs::metadata(&self.filename).ok()?;
        use std::os::unix::fs::MetadataExt;
        Some(meta.blocks() * 512)
    }

    pub fn snapshot_list(&mut self) -> BlockResult<Vec<SnapshotInfo>> {
        self.driver.snapshot_list(&self.children)
    }

    pub fn snapshot_create(&mut self, info: &SnapshotInfo) -> BlockResult<SnapshotInfo> {
        self.check_writable()?;
        let r = self.driver.snapshot_create(&self.children, info);
        self.note_corruption();
        r
    }

    pub fn snapshot_delete(
        &mut self,
        id: Option<&str>,
        name: Option<&str>,
    ) -> BlockResult<SnapshotInfo> {
        self.check_writable()?;
        mappings_may_change();
        let r = self.driver.snapshot_delete(&self.children, id, name);
        self.note_corruption();
        r
    }

    pub fn snapshot_goto(&mut self, id_or_name: &str) -> BlockResult<()> {
        self.check_writable()?;
        mappings_may_change();
        let r = self.driver.snapshot_goto(&self.children, id_or_name);
        self.note_corruption();
        r
    }
}

/// True when every byte is zero (used by detect-zeroes and COW shortcuts).
pub fn is_zero(buf: &[u8]) -> bool {
    let (head, mid, tail) = {
        // SAFETY: u64 has no invalid bit patterns; align_to only reinterprets the
        // aligned middle of the byte slice.
        unsafe { buf.align_to::<u64>() }
    };
    head.iter().all(|&b| b == 0) && mid.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}
