//! The qcow2 format driver: versions 2 and 3, every cluster size, backing files,
//! zero and compressed clusters, internal snapshots, lazy refcounts.
//!
//! Crash safety comes from write ordering, never from journaling:
//! refcount increments reach the disk before the L2 entries that use them, L2
//! tables before the L1 entries that point to them, and a reference is removed on
//! disk before its refcount is decremented. A crash therefore leaks clusters at
//! worst. Metadata found inconsistent is reported once as a corruption (the node
//! turns read-only) and never written through.

mod check;
mod cluster;
mod cluster_map;
mod compress;
pub mod header;
mod inflight;
mod l2cache;
mod payload;
mod refcount;
mod requests;
mod snapshot;

pub use header::Header;

use crate::driver::{
    write_by_polling, Children, CopyFrom, CopySource, CorruptionReport, Driver, Extent, FormatInfo,
    SnapshotInfo,
};
use crate::error::{BlockError, BlockResult};
use crate::node::{lock, NodeRef};
use crate::request::{DriverReq, Poll, ReqKind};
use cluster_map::ClusterMap;
use header::*;
use inflight::InFlight;
use l2cache::L2Cache;
use payload::Payload;
use refcount::Refcounts;
use snapshot::Snapshot;

pub const L1E_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
pub const L2E_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
pub const REFT_OFFSET_MASK: u64 = 0xffff_ffff_ffff_fe00;
pub const OFLAG_COPIED: u64 = 1 << 63;
pub const OFLAG_COMPRESSED: u64 = 1 << 62;
pub const OFLAG_ZERO: u64 = 1;

/// What a metadata cluster holds, named as QEMU's overlap checks name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Meta {
    Header,
    ActiveL1,
    RefTable,
    RefBlock,
    ActiveL2,
    SnapshotTable,
    InactiveL1,
}

impl Meta {
    fn name(self) -> &'static str {
        match self {
            Meta::Header => "qcow2_header",
            Meta::ActiveL1 => "active L1 table",
            Meta::RefTable => "refcount table",
            Meta::RefBlock => "refcount block",
            Meta::ActiveL2 => "active L2 table",
            Meta::SnapshotTable => "snapshot table",
            Meta::InactiveL1 => "inactive L1 table",
        }
    }
}

/// How one guest cluster is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cl {
    Unalloc,
    /// Reads as zero; `prealloc` is the host cluster kept for it (0 if none).
    Zero {
        prealloc: u64,
    },
    Normal {
        off: u64,
        copied: bool,
    },
    Compressed {
        entry: u64,
    },
}

/// Runtime options of a qcow2 node (QEMU's names in brackets).
#[derive(Debug, Clone, Copy, Default)]
pub struct Qcow2Options {
    /// Bytes of L2 tables to cache (`l2-cache-size`).
    pub l2_cache_size: Option<u64>,
    /// Bytes of refcount blocks to cache (`refcount-cache-size`).
    pub refcount_cache_size: Option<u64>,
}

/// An open qcow2 image.
pub struct Qcow2 {
    pub(crate) hdr: Header,
    pub(crate) cb: u32,
    pub(crate) cs: u64,
    pub(crate) l2_bits: u32,
    pub(crate) csize_shift: u32,
    pub(crate) csize_mask: u64,
    pub(crate) coff_mask: u64,
    pub(crate) l1: Vec<u64>,
    pub(crate) l2: L2Cache,
    pub(crate) rc: Refcounts,
    pub(crate) snapshots: Vec<Snapshot>,
    pub(crate) read_only: bool,
    pub(crate) file_len: u64,
    pub(crate) meta: ClusterMap<Meta>,
    pub(crate) corruption: Option<CorruptionReport>,
    pub(crate) corrupt: bool,
    pub(crate) dirty_on_disk: bool,
    pub(crate) free_cluster_index: u64,
    pub(crate) max_alloc_end: u64,
    pub(crate) free_byte_offset: u64,
    /// Scratch buffers reused across requests (no allocation per request).
    pub(crate) buf: Vec<u8>,
    pub(crate) iobuf: Vec<u8>,
    pub(crate) zeros: Vec<u8>,
    pub(crate) cbuf: Vec<u8>,
    pub(crate) dbuf: Vec<u8>,
    pub(crate) dcache: Option<u64>,
    pub(crate) frees: Vec<u64>,
    pub(crate) l1_dirty: bool,
    pub(crate) snap_table_bytes: u64,
    /// L1 indices whose new value is not on disk yet.
    pub(crate) l1_pending: Vec<u64>,
    /// Shared L2 tables replaced by copies, released once the L1 is on disk.
    pub(crate) l2_pending_free: Vec<u64>,
    /// Writes in flight: allocations not linked yet, stopped overwrites.
    pub(crate) inflight: InFlight,
    /// Closed while writes were in flight: those can never finish.
    pub(crate) closed: bool,
}

pub(crate) fn file_of(c: &Children) -> BlockResult<&NodeRef> {
    c.file
        .as_ref()
        .ok_or_else(|| BlockError::Generic("qcow2 node has no file child".into()))
}

pub(crate) fn be64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i * 8..i * 8 + 8]);
    u64::from_be_bytes(a)
}

impl Qcow2 {
    /// Opens the image in `c.file` with default options.
    pub fn open(c: &Children, read_only: bool) -> BlockResult<Qcow2> {
        Self::open_with(c, read_only, &Qcow2Options::default())
    }

    /// Opens the image in `c.file`.
    pub fn open_with(c: &Children, read_only: bool, opts: &Qcow2Options) -> BlockResult<Qcow2> {
        let file = file_of(c)?;
        let flen = lock(file).length()?;
        let mut first = vec![0u8; 104.min(flen as usize)];
        lock(file).read(0, &mut first)?;
        if first.len() < 24 || &first[0..4] != QCOW_MAGIC {
            return Err(BlockError::InvalidImage(
                "Image is not in qcow2 format".into(),
            ));
        }
        let cb = u32::from_be_bytes([first[20], first[21], first[22], first[23]]);
        if !(9..=21).contains(&cb) {
            return Err(BlockError::InvalidImage(format!(
                "Unsupported cluster size: 2^{}",
                cb
            )));
        }
        let cs = 1u64 << cb;
        let mut hbuf = vec![0u8; cs.min(flen) as usize];
        lock(file).read(0, &mut hbuf)?;
        let hdr = Header::parse(&hbuf)?;
        if hdr.incompatible & INCOMPAT_CORRUPT != 0 && !read_only {
            return Err(BlockError::errno(
                "qcow2: Image is corrupt; cannot be opened read/write",
                libc::EACCES,
            ));
        }
        let l2_bits = cb - 3;
        let csize_shift = 62 - (cb - 8);
        let mut q = Qcow2 {
            cb,
            cs,
            l2_bits,
            csize_shift,
            csize_mask: (1u64 << (cb - 8)) - 1,
            coff_mask: (1u64 << csize_shift) - 1,
            l1: Vec::new(),
            l2: L2Cache::new(cs),
            rc: Refcounts::new(cs, hdr.refcount_order),
            snapshots: Vec::new(),
            read_only,
            file_len: flen,
            meta: ClusterMap::default(),
            corruption: None,
            corrupt: false,
            dirty_on_disk: hdr.incompatible & INCOMPAT_DIRTY != 0,
            free_cluster_index: 0,
            max_alloc_end: 0,
            free_byte_offset: 0,
            buf: Vec::new(),
            iobuf: vec![0u8; cs as usize],
            zeros: vec![0u8; cs as usize],
            cbuf: Vec::new(),
            dbuf: vec![0u8; cs as usize],
            dcache: None,
            frees: Vec::new(),
            l1_dirty: false,
            snap_table_bytes: 0,
            l1_pending: Vec::new(),
            l2_pending_free: Vec::new(),
            inflight: InFlight::default(),
            closed: false,
            hdr,
        };
        if let Some(b) = opts.l2_cache_size {
            q.l2.set_size(b, cs);
        }
        if let Some(b) = opts.refcount_cache_size {
            q.rc.set_size(b, cs);
        }
        q.check_tables_inside_file()?;
        q.load_l1(c)?;
        q.load_reftable(c)?;
        q.load_snapshots(c)?;
        q.build_meta()?;
        if !read_only {
            q.open_rw(c)?;
        }
        Ok(q)
    }

    /// Tables past the end of the file cannot have been written by anyone;
    /// updating them would write far outside the image.
    fn check_tables_inside_file(&self) -> BlockResult<()> {
        let h = &self.hdr;
        let end = self.file_len;
        let inside =
            |off: u64, bytes: u64| bytes == 0 || off + bytes <= end.next_multiple_of(self.cs);
        if !inside(h.l1_table_offset, h.l1_size as u64 * 8) {
            return Err(BlockError::InvalidImage(
                "Active L1 table lies beyond the end of the image file".into(),
            ));
        }
        if !inside(
            h.refcount_table_offset,
            h.refcount_table_clusters as u64 * self.cs,
        ) {
            return Err(BlockError::InvalidImage(
                "Refcount table lies beyond the end of the image file".into(),
            ));
        }
        if h.nb_snapshots > 0 && !inside(h.snapshots_offset, 40) {
            return Err(BlockError::InvalidImage(
                "Snapshot table lies beyond the end of the image file".into(),
            ));
        }
        Ok(())
    }

    fn load_l1(&mut self, c: &Children) -> BlockResult<()> {
        let n = self.hdr.l1_size as usize;
        let mut b = vec![0u8; n * 8];
        lock(file_of(c)?).read(self.hdr.l1_table_offset, &mut b)?;
        self.l1 = (0..n).map(|i| be64_at(&b, i)).collect();
        Ok(())
    }

    fn load_reftable(&mut self, c: &Children) -> BlockResult<()> {
        let n = (self.hdr.refcount_table_clusters as u64 * self.cs / 8) as usize;
        let mut b = vec![0u8; n * 8];
        lock(file_of(c)?).read(self.hdr.refcount_table_offset, &mut b)?;
        self.rc.table = (0..n).map(|i| be64_at(&b, i) & REFT_OFFSET_MASK).collect();
        Ok(())
    }

    /// Records which clusters hold metadata, so data writes can never land there.
    fn build_meta(&mut self) -> BlockResult<()> {
        let cs = self.cs;
        // Whole tables must not overlap each other: updating one would
        // silently rewrite the other.
        let add = |meta: &mut ClusterMap<Meta>, off: u64, bytes: u64, kind: Meta| {
            let first = off / cs;
            let last = (off + bytes.max(1) - 1) / cs;
            for i in first..=last {
                if let Some(other) = meta.insert(i, kind) {
                    if other != kind || kind != Meta::InactiveL1 {
                        return Err(BlockError::InvalidImage(format!(
                            "qcow2: {} overlaps {}",
                            kind.name(),
                            other.name()
                        )));
                    }
                }
            }
            Ok(())
        };
        let mut meta = ClusterMap::default();
        meta.insert(0, Meta::Header);
        let overlaps_header = |off: u64| off < cs;
        if !self.l1.is_empty() {
            if overlaps_header(self.hdr.l1_table_offset) {
                return Err(BlockError::InvalidImage(
                    "Active L1 table overlaps the image header".into(),
                ));
            }
            add(
                &mut meta,
                self.hdr.l1_table_offset,
                self.l1.len() as u64 * 8,
                Meta::ActiveL1,
            )?;
        }
        if overlaps_header(self.hdr.refcount_table_offset) {
            return Err(BlockError::InvalidImage(
                "Refcount table overlaps the image header".into(),
            ));
        }
        add(
            &mut meta,
            self.hdr.refcount_table_offset,
            self.hdr.refcount_table_clusters as u64 * cs,
            Meta::RefTable,
        )?;
        for &e in &self.rc.table {
            if e != 0 && e % cs == 0 && e >= cs {
                meta.entry(e / cs).or_insert(Meta::RefBlock);
            }
        }
        for &e in &self.l1 {
            let o = e & L1E_OFFSET_MASK;
            if o != 0 && o.is_multiple_of(cs) && o >= cs {
                meta.entry(o / cs).or_insert(Meta::ActiveL2);
            }
        }
        if self.hdr.nb_snapshots > 0 {
            let size = snapshot::table_size(&self.snapshots);
            if overlaps_header(self.hdr.snapshots_offset) {
                return Err(BlockError::InvalidImage(
                    "Snapshot table overlaps the image header".into(),
                ));
            }
            add(
                &mut meta,
                self.hdr.snapshots_offset,
                size,
                Meta::SnapshotTable,
            )?;
        }
        for s in &self.snapshots {
            if s.l1_size > 0 {
                add(
                    &mut meta,
                    s.l1_offset,
                    s.l1_size as u64 * 8,
                    Meta::InactiveL1,
                )?;
            }
        }
        self.meta = meta;
        Ok(())
    }

    fn open_rw(&mut self, c: &Children) -> BlockResult<()> {
        let mut rewrite = false;
        if self.hdr.autoclear != 0 {
            // Features we do not maintain (e.g. persistent bitmaps) become invalid
            // once we write; clearing their bits says so, as QEMU does.
            self.hdr.autoclear = 0;
            rewrite = true;
        }
        if self.hdr.incompatible & INCOMPAT_DIRTY != 0 {
            self.rebuild_refcounts(c)?;
            self.flush_metadata(c, true)?;
            self.hdr.incompatible &= !INCOMPAT_DIRTY;
            self.dirty_on_disk = false;
            rewrite = true;
        }
        if rewrite {
            self.write_header(c)?;
            self.sync(c)?;
        }
        Ok(())
    }

    /// Rewrites the whole header cluster from `self.hdr`.
    pub(crate) fn write_header(&mut self, c: &Children) -> BlockResult<()> {
        let b = self.hdr.serialize()?;
        if let Some(name) = &self.hdr.backing_file {
            self.hdr.backing_file_offset = (b.len() - name.len()) as u64;
            self.hdr.backing_file_size = name.len() as u32;
        } else {
            self.hdr.backing_file_offset = 0;
            self.hdr.backing_file_size = 0;
        }
        self.pwrite_meta(c, 0, &b)
    }

    pub(crate) fn lazy(&self) -> bool {
        self.hdr.compatible & COMPAT_LAZY_REFCOUNTS != 0 && self.dirty_on_disk
    }

    /// With lazy refcounts the dirty bit goes on disk before the first change.
    pub(crate) fn mark_dirty(&mut self, c: &Children) -> BlockResult<()> {
        if self.hdr.compatible & COMPAT_LAZY_REFCOUNTS == 0 || self.dirty_on_disk {
            return Ok(());
        }
        self.hdr.incompatible |= INCOMPAT_DIRTY;
        self.pwrite_meta(c, OFF_INCOMPAT, &self.hdr.incompatible.to_be_bytes())?;
        self.sync(c)?;
        self.dirty_on_disk = true;
        Ok(())
    }

    fn mark_clean(&mut self, c: &Children) -> BlockResult<()> {
        if !self.dirty_on_disk || self.read_only || self.corrupt {
            return Ok(());
        }
        self.flush_metadata(c, true)?;
        self.hdr.incompatible &= !INCOMPAT_DIRTY;
        self.pwrite_meta(c, OFF_INCOMPAT, &self.hdr.incompatible.to_be_bytes())?;
        self.sync(c)?;
        self.dirty_on_disk = false;
        Ok(())
    }

    /// Records a corruption: reported once, image flagged corrupt, no more writes.
    pub(crate) fn signal_corruption(
        &mut self,
        c: &Children,
        fatal: bool,
        offset: Option<u64>,
        size: Option<u64>,
        msg: String,
    ) -> BlockError {
        if fatal && !self.corrupt {
            self.corrupt = true;
            if !self.read_only {
                self.hdr.incompatible |= INCOMPAT_CORRUPT;
                let v = self.hdr.incompatible.to_be_bytes();
                if let Ok(f) = file_of(c) {
                    let _ = lock(f).write(OFF_INCOMPAT, &v, true);
                }
            }
            self.read_only = true;
            self.corruption = Some(CorruptionReport {
                msg: msg.clone(),
                offset,
                size,
                fatal,
            });
        } else if !fatal && self.corruption.is_none() {
            self.corruption = Some(CorruptionReport {
                msg: msg.clone(),
                offset,
                size,
                fatal,
            });
        }
        BlockError::Corrupt(format!("qcow2: Image is corrupt: {}", msg))
    }

    /// True when `off` lies past the end of the image file, after re-reading the
    /// file size (another process may have appended to it since we looked).
    pub(crate) fn past_eof(&mut self, c: &Children, off: u64) -> bool {
        if off < self.file_len.next_multiple_of(self.cs) {
            return false;
        }
        if let Ok(f) = file_of(c) {
            if let Ok(len) = lock(f).refresh_length() {
                self.file_len = self.file_len.max(len);
            }
        }
        off >= self.file_len.next_multiple_of(self.cs)
    }

    pub(crate) fn pread(&mut self, c: &Children, off: u64, buf: &mut [u8]) -> BlockResult<()> {
        lock(file_of(c)?).read(off, buf)
    }

    /// Writes metadata (caller guarantees the target is metadata of the right kind).
    pub(crate) fn pwrite_meta(&mut self, c: &Children, off: u64, buf: &[u8]) -> BlockResult<()> {
        if self.corrupt {
            return Err(BlockError::errno("qcow2 image is corrupt", libc::EIO));
        }
        lock(file_of(c)?).write(off, buf, false)?;
        self.file_len = self.file_len.max(off + buf.len() as u64);
        Ok(())
    }

    /// Writes guest data at a host offset after checking it overlaps no metadata.
    pub(crate) fn pwrite_data(&mut self, c: &Children, off: u64, buf: &[u8]) -> BlockResult<()> {
        self.pwrite_payload(c, off, Payload::Mem(buf))
    }

    /// Writes guest data (in memory or moved file-to-file) at a host offset
    /// after checking it overlaps no metadata.
    pub(crate) fn pwrite_payload(
        &mut self,
        c: &Children,
        off: u64,
        data: Payload<'_>,
    ) -> BlockResult<()> {
        self.check_data_target(c, off, data.len())?;
        self.pwrite_checked(c, off, data)
    }

    /// Writes guest data to host clusters `check_data_target` accepted, with
    /// no metadata allocated since.
    pub(crate) fn pwrite_checked(
        &mut self,
        c: &Children,
        off: u64,
        data: Payload<'_>,
    ) -> BlockResult<()> {
        match data {
            Payload::Mem(buf) => lock(file_of(c)?).write(off, buf, false)?,
            Payload::File { src, len } => lock(file_of(c)?).copy_in(off, len, src)?,
        }
        self.file_len = self.file_len.max(off + data.len());
        Ok(())
    }

    fn check_data_target(&mut self, c: &Children, off: u64, len: u64) -> BlockResult<()> {
        if self.corrupt || self.read_only {
            return Err(BlockError::errno("qcow2 image is read-only", libc::EPERM));
        }
        let first = off >> self.cb;
        let last = (off + len.max(1) - 1) >> self.cb;
        for i in first..=last {
            if let Some(kind) = self.meta.get(&i).copied() {
                return Err(self.signal_corruption(
                    c,
                    true,
                    Some(off),
                    Some(len),
                    format!(
                        "Preventing invalid write on metadata (overlaps with {})",
                        kind.name()
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn sync(&mut self, c: &Children) -> BlockResult<()> {
        lock(file_of(c)?).flush()
    }

    fn check_range(&self, off: u64, len: u64) -> BlockResult<()> {
        if off.checked_add(len).is_none_or(|e| e > self.hdr.size) {
            return Err(BlockError::OutOfBounds {
                offset: off,
                len,
                size: self.hdr.size,
            });
        }
        Ok(())
    }

    fn check_writable(&self) -> BlockResult<()> {
        if self.read_only || self.corrupt {
            return Err(BlockError::errno("qcow2 image is read-only", libc::EPERM));
        }
        Ok(())
    }

    /// Writes every dirty cached table: refcount blocks first, then (after a
    /// barrier unless refcounts are lazy) L2 tables; `sync` adds a final barrier.
    pub(crate) fn flush_metadata(&mut self, c: &Children, sync: bool) -> BlockResult<()> {
        let rc_dirty = self.rc.any_dirty();
        let l2_dirty = self.l2.any_dirty();
        let l1_dirty = !self.l1_pending.is_empty();
        if rc_dirty {
            self.write_dirty_refblocks(c)?;
            if l2_dirty && !self.lazy() {
                self.sync(c)?;
            }
        }
        if l2_dirty {
            self.write_dirty_l2(c)?;
        }
        if l1_dirty {
            // An L1 entry must never point at a table that is not on disk.
            if rc_dirty || l2_dirty {
                self.sync(c)?;
            }
            self.write_pending_l1(c)?;
            // Releasing replaced tables dirtied refcounts again; their
            // references are gone from the disk, so they can follow directly.
            if self.rc.any_dirty() {
                self.write_dirty_refblocks(c)?;
            }
        }
        if sync && (rc_dirty || l2_dirty || l1_dirty) {
            self.sync(c)?;
        }
        Ok(())
    }

    fn snapshot_info(s: &Snapshot) -> SnapshotInfo {
        SnapshotInfo {
            id: s.id.clone(),
            name: s.name.clone(),
            vm_state_size: s.vm_state_size,
            date_sec: s.date_sec,
            date_nsec: s.date_nsec,
            vm_clock_nsec: s.vm_clock_nsec,
        }
    }
}

impl Driver for Qcow2 {
    fn format_name(&self) -> &'static str {
        "qcow2"
    }

    fn length(&mut self, _c: &Children) -> BlockResult<u64> {
        Ok(self.hdr.size)
    }

    // The synchronous calls are the requests polled once (requests.rs).
    fn read(&mut self, c: &Children, offset: u64, buf: &mut [u8]) -> BlockResult<()> {
        self.read_now(c, offset, buf)
    }

    fn write(&mut self, c: &Children, offset: u64, buf: &[u8], fua: bool) -> BlockResult<()> {
        self.write_now(c, offset, Payload::Mem(buf), fua)
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

    fn poll_read(
        &mut self,
        c: &Children,
        req: &mut DriverReq,
        buf: &mut [u8],
    ) -> Poll<BlockResult<()>> {
        self.poll_read_req(c, req, buf)
    }

    fn poll_write(
        &mut self,
        c: &Children,
        req: &mut DriverReq,
        data: &[u8],
    ) -> Poll<BlockResult<()>> {
        self.poll_write_req(c, req, data)
    }

    fn discard(&mut self, c: &Children, offset: u64, len: u64) -> BlockResult<()> {
        self.check_writable()?;
        self.check_range(offset, len)?;
        self.check_no_write_in_flight(offset, len)?;
        self.do_discard(c, offset, len)
    }

    fn flush(&mut self, c: &Children) -> BlockResult<()> {
        if self.read_only || self.corrupt {
            return Ok(());
        }
        self.flush_metadata(c, false)?;
        self.sync(c)
    }

    fn block_status(&mut self, c: &Children, offset: u64, len: u64) -> BlockResult<Extent> {
        if offset >= self.hdr.size {
            return Ok(Extent::unallocated(len.max(1)));
        }
        let len = len.min(self.hdr.size - offset).max(1);
        let (kind, n) = self.run(c, offset, len)?;
        Ok(match kind {
            Cl::Unalloc => Extent::unallocated(n),
            Cl::Zero { .. } => Extent::zero(n),
            Cl::Normal { off, .. } => Extent::data(n, Some(off)),
            Cl::Compressed { .. } => Extent::data(n, None),
        })
    }

    fn truncate(&mut self, c: &Children, size: u64) -> BlockResult<()> {
        self.check_writable()?;
        self.check_idle()?;
        self.resize(c, size)
    }

    fn copy_source(
        &mut self,
        c: &Children,
        offset: u64,
        len: u64,
    ) -> BlockResult<(CopySource, u64)> {
        if offset >= self.hdr.size {
            return Ok((CopySource::Zero, len));
        }
        let len = len.min(self.hdr.size - offset);
        let (kind, n) = self.run(c, offset, len)?;
        match kind {
            Cl::Normal { off, .. } => lock(file_of(c)?).copy_source(off, n),
            Cl::Zero { .. } => Ok((CopySource::Zero, n)),
            Cl::Unalloc => {
                let Some(b) = &c.backing else {
                    return Ok((CopySource::Zero, n));
                };
                let mut g = lock(b);
                let blen = g.length()?;
                if offset >= blen {
                    return Ok((CopySource::Zero, n));
                }
                g.copy_source(offset, n.min(blen - offset))
            }
            Cl::Compressed { .. } => Ok((CopySource::Unsupported, n)),
        }
    }

    fn can_copy_in(&mut self, c: &Children, offset: u64, len: u64) -> bool {
        self.check_writable().is_ok()
            && self.check_range(offset, len).is_ok()
            && file_of(c).is_ok_and(|f| lock(f).can_copy_in(0, len))
    }

    fn copy_in(
        &mut self,
        c: &Children,
        offset: u64,
        len: u64,
        src: CopyFrom<'_>,
    ) -> BlockResult<()> {
        self.write_now(c, offset, Payload::File { src, len }, false)
    }

    fn write_compressed(&mut self, c: &Children, offset: u64, buf: &[u8]) -> BlockResult<()> {
        self.check_writable()?;
        self.check_range(offset, buf.len() as u64)?;
        self.check_no_write_in_flight(offset, buf.len() as u64)?;
        self.do_write_compressed(c, offset, buf)
    }

    fn close(&mut self, c: &Children) -> BlockResult<()> {
        if self.read_only || self.corrupt {
            return Ok(());
        }
        if let Err(e) = self.check_idle() {
            // What finished reaches the disk; the stopped writes fail when
            // resumed, their clusters leaked and never linked.
            self.closed = true;
            self.flush_metadata(c, true)?;
            return Err(e);
        }
        self.flush_metadata(c, true)?;
        self.mark_clean(c)
    }

    fn set_read_only(&mut self, c: &Children, read_only: bool) -> BlockResult<()> {
        if read_only {
            if !self.read_only {
                self.check_idle()?;
                self.close(c)?;
            }
            self.read_only = true;
            return Ok(());
        }
        if self.corrupt {
            return Err(BlockError::errno(
                "qcow2: Image is corrupt; cannot be opened read/write",
                libc::EACCES,
            ));
        }
        self.read_only = false;
        self.open_rw(c)
    }

    fn has_zero_init(&self) -> bool {
        true
    }

    fn backing_file(&self) -> Option<(String, Option<String>)> {
        self.hdr
            .backing_file
            .clone()
            .map(|f| (f, self.hdr.backing_format.clone()))
    }

    fn change_backing_file(
        &mut self,
        c: &Children,
        name: Option<&str>,
        fmt: Option<&str>,
    ) -> BlockResult<()> {
        self.check_writable()?;
        self.check_idle()?;
        let old = (
            self.hdr.backing_file.clone(),
            self.hdr.backing_format.clone(),
        );
        self.hdr.backing_file = name.filter(|n| !n.is_empty()).map(str::to_string);
        self.hdr.backing_format = if self.hdr.backing_file.is_some() {
            fmt.map(str::to_string)
        } else {
            None
        };
        if let Err(e) = self.hdr.serialize() {
            self.hdr.backing_file = old.0;
            self.hdr.backing_format = old.1;
            return Err(e);
        }
        self.write_header(c)?;
        self.sync(c)
    }

    fn format_info(&mut self, _c: &Children) -> FormatInfo {
        let mut data = serde_json::Map::new();
        if self.hdr.version == 2 {
            data.insert("compat".into(), "0.10".into());
            data.insert(
                "refcount-bits".into(),
                (1u64 << self.hdr.refcount_order).into(),
            );
        } else {
            data.insert("compat".into(), "1.1".into());
            data.insert(
                "lazy-refcounts".into(),
                (self.hdr.compatible & COMPAT_LAZY_REFCOUNTS != 0).into(),
            );
            data.insert(
                "refcount-bits".into(),
                (1u64 << self.hdr.refcount_order).into(),
            );
            data.insert(
                "corrupt".into(),
                (self.corrupt || self.hdr.incompatible & INCOMPAT_CORRUPT != 0).into(),
            );
        }
        FormatInfo {
            cluster_size: Some(self.cs),
            dirty_flag: Some(self.hdr.incompatible & INCOMPAT_DIRTY != 0),
            encrypted: false,
            backing_filename: self.hdr.backing_file.clone(),
            backing_format: self.hdr.backing_format.clone(),
            format_specific: Some(serde_json::json!({"type": "qcow2", "data": data})),
        }
    }

    fn cluster_size(&self) -> Option<u64> {
        Some(self.cs)
    }

    fn snapshot_list(&mut self, _c: &Children) -> BlockResult<Vec<SnapshotInfo>> {
        Ok(self.snapshots.iter().map(Self::snapshot_info).collect())
    }

    fn snapshot_create(&mut self, c: &Children, info: &SnapshotInfo) -> BlockResult<SnapshotInfo> {
        self.check_writable()?;
        self.check_idle()?;
        self.do_snapshot_create(c, info)
    }

    fn snapshot_delete(
        &mut self,
        c: &Children,
        id: Option<&str>,
        name: Option<&str>,
    ) -> BlockResult<SnapshotInfo> {
        self.check_writable()?;
        self.check_idle()?;
        self.do_snapshot_delete(c, id, name)
    }

    fn snapshot_goto(&mut self, c: &Children, id_or_name: &str) -> BlockResult<()> {
        self.check_writable()?;
        self.check_idle()?;
        self.do_snapshot_goto(c, id_or_name)
    }

    fn reports_corruption(&self) -> bool {
        true
    }

    fn take_corruption(&mut self) -> Option<CorruptionReport> {
        self.corruption.take()
    }
}

/// Sets entry `i` of a refcount block with the given refcount order.
pub fn set_refcount_entry(block: &mut [u8], order: u32, i: usize, v: u64) {
    refcount::Refcounts::set(block, order, i, v);
}

impl Qcow2 {
    /// Turns on the lazy_refcounts compatible feature (creation only).
    pub(crate) fn set_lazy_refcounts(&mut self, c: &Children) -> BlockResult<()> {
        self.hdr.compatible |= COMPAT_LAZY_REFCOUNTS;
        self.write_header(c)?;
        self.sync(c)
    }

    /// Allocates every cluster of the image (preallocation); returns the file end.
    pub(crate) fn preallocate_all(&mut self, c: &Children, size: u64) -> BlockResult<u64> {
        let end = self.preallocate(c, 0, size)?;
        Ok(end.max(self.file_len))
    }

    /// Host (offset, length) of every data run, for full preallocation.
    pub(crate) fn data_runs(&mut self, c: &Children, size: u64) -> BlockResult<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        let mut off = 0;
        while off < size {
            let (kind, n) = self.run(c, off, size - off)?;
            if let Cl::Normal { off: host, .. } = kind {
                out.push((host, n));
            }
            off += n;
        }
        Ok(out)
    }
}
