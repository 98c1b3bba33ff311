//! Guest-to-host mapping through L1/L2 tables and what changes it: writable
//! L2 tables, zero clusters, discard, compressed writes, growing the L1
//! table, preallocation. Reads and data writes are in `requests.rs`.

use super::compress::{compress_cluster, decompress_cluster};
use super::header::{OFF_L1_SIZE, OFF_SIZE};
use super::{
    file_of, Cl, Meta, Qcow2, L1E_OFFSET_MASK, L2E_OFFSET_MASK, OFLAG_COMPRESSED, OFLAG_COPIED,
    OFLAG_ZERO,
};
use crate::driver::Children;
use crate::drivers::blkdebug::{self, BlkdebugEvent};
use crate::error::{BlockError, BlockResult};
use crate::node::lock;

/// What discard or write-zeroes does to whole clusters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ClearMode {
    Zero,
    Discard,
}

impl Qcow2 {
    fn l2_entries(&self) -> u64 {
        1u64 << self.l2_bits
    }

    /// Interprets an L2 entry, reporting impossible ones as corruption.
    pub(crate) fn classify(
        &mut self,
        c: &Children,
        entry: u64,
        l2_off: u64,
        idx: u64,
    ) -> BlockResult<Cl> {
        if entry & OFLAG_COMPRESSED != 0 {
            return Ok(Cl::Compressed { entry });
        }
        let off = entry & L2E_OFFSET_MASK;
        if entry & OFLAG_ZERO != 0 {
            if self.hdr.version < 3 {
                return Err(self.signal_corruption(
                    c,
                    true,
                    None,
                    None,
                    format!(
                        "Zero cluster entry found in pre-v3 image (L2 offset: {:#x}, L2 index: {:#x})",
                        l2_off, idx
                    ),
                ));
            }
            return Ok(Cl::Zero { prealloc: off });
        }
        if off == 0 {
            return Ok(Cl::Unalloc);
        }
        if !off.is_multiple_of(self.cs) {
            return Err(self.signal_corruption(
                c,
                true,
                Some(off),
                None,
                format!(
                    "Cluster allocation offset {:#x} unaligned (L2 offset: {:#x}, L2 index: {:#x})",
                    off, l2_off, idx
                ),
            ));
        }
        Ok(Cl::Normal {
            off,
            copied: entry & OFLAG_COPIED != 0,
        })
    }

    /// Validated host offset of the L2 table for L1 index `l1i` (0 = none).
    fn l2_offset(&mut self, c: &Children, l1i: u64) -> BlockResult<u64> {
        let e = match self.l1.get(l1i as usize) {
            Some(&e) => e,
            None => return Ok(0),
        };
        let off = e & L1E_OFFSET_MASK;
        if off == 0 {
            return Ok(0);
        }
        if !off.is_multiple_of(self.cs) {
            return Err(self.signal_corruption(
                c,
                true,
                None,
                None,
                format!(
                    "L2 table offset {:#x} unaligned (L1 index: {:#x})",
                    off, l1i
                ),
            ));
        }
        if off < self.cs || (!self.l2.contains(off) && self.past_eof(c, off)) {
            return Err(self.signal_corruption(
                c,
                true,
                Some(off),
                Some(self.cs),
                format!(
                    "L2 table offset {:#x} is outside the image file (L1 index: {:#x})",
                    off, l1i
                ),
            ));
        }
        if let Some(kind) = self.meta.get(&(off >> self.cb)).copied() {
            if kind != Meta::ActiveL2 {
                return Err(self.signal_corruption(
                    c,
                    true,
                    Some(off),
                    Some(self.cs),
                    format!("L2 table at {:#x} overlaps {}", off, kind.name()),
                ));
            }
        }
        Ok(off)
    }

    /// The longest run from `off` (at most `max` bytes) stored the same way:
    /// for data, contiguous on the host (the returned offset is `off`'s host offset).
    pub(crate) fn run(&mut self, c: &Children, off: u64, max: u64) -> BlockResult<(Cl, u64)> {
        let cs = self.cs;
        let cl = off >> self.cb;
        let in_off = off & (cs - 1);
        let l1i = cl >> self.l2_bits;
        let l2i = cl & (self.l2_entries() - 1);
        let to_table_end = (self.l2_entries() - l2i) * cs - in_off;
        let l2_off = self.l2_offset(c, l1i)?;
        if l2_off == 0 {
            return Ok((Cl::Unalloc, max.min(to_table_end)));
        }
        let slot = self.get_l2(c, l2_off)?;
        let e0 = self.l2.slots[slot].table[l2i as usize];
        let k0 = self.classify(c, e0, l2_off, l2i)?;
        let mut n = (cs - in_off).min(max);
        if let Cl::Compressed { .. } = k0 {
            return Ok((k0, n));
        }
        let mut i = 1u64;
        while n < max && l2i + i < self.l2_entries() {
            let e = self.l2.slots[slot].table[(l2i + i) as usize];
            let same = match (k0, e) {
                (_, e) if e & OFLAG_COMPRESSED != 0 => false,
                (Cl::Unalloc, e) => e & (L2E_OFFSET_MASK | OFLAG_ZERO) == 0,
                (Cl::Zero { .. }, e) => e & OFLAG_ZERO != 0 && self.hdr.version >= 3,
                (Cl::Normal { off: h, copied }, e) => {
                    e & OFLAG_ZERO == 0
                        && e & L2E_OFFSET_MASK == h + i * cs
                        && (e & OFLAG_COPIED != 0) == copied
                }
                _ => false,
            };
            if !same {
                break;
            }
            n = (n + cs).min(max);
            i += 1;
        }
        let k = match k0 {
            Cl::Normal { off: h, copied } => Cl::Normal {
                off: h + in_off,
                copied,
            },
            k => k,
        };
        Ok((k, n))
    }

    /// Reads guest data from the backing file (zeroes past its end or without
    /// one, and past this image's own end without asking the backing).
    pub(super) fn read_backing(
        &mut self,
        c: &Children,
        off: u64,
        buf: &mut [u8],
    ) -> BlockResult<()> {
        let Some(b) = &c.backing else {
            buf.fill(0);
            return Ok(());
        };
        if off >= self.hdr.size {
            buf.fill(0);
            return Ok(());
        }
        let mut g = lock(b);
        let blen = g.length()?;
        if off >= blen {
            buf.fill(0);
            return Ok(());
        }
        let n = ((blen - off) as usize).min(buf.len());
        g.read(off, &mut buf[..n])?;
        buf[n..].fill(0);
        Ok(())
    }

    pub(super) fn read_compressed(
        &mut self,
        c: &Children,
        entry: u64,
        in_off: usize,
        buf: &mut [u8],
    ) -> BlockResult<()> {
        let coff = entry & self.coff_mask;
        if self.dcache != Some(coff) {
            let nsect = ((entry >> self.csize_shift) & self.csize_mask) + 1;
            let csize = (nsect * 512 - (coff & 511)) as usize;
            let mut cb = std::mem::take(&mut self.cbuf);
            cb.resize(csize, 0);
            let r = self.pread(c, coff, &mut cb);
            let r = r.and_then(|_| decompress_cluster(&cb, &mut self.dbuf));
            self.cbuf = cb;
            if let Err(e) = r {
                self.dcache = None;
                return Err(e);
            }
            self.dcache = Some(coff);
        }
        buf.copy_from_slice(&self.dbuf[in_off..in_off + buf.len()]);
        Ok(())
    }

    /// Host offset of a writable L2 table for L1 index `l1i`, allocating a new
    /// table or copying a shared one. Ordering: refcounts, table, then L1 entry.
    pub(crate) fn writable_l2(&mut self, c: &Children, l1i: u64) -> BlockResult<u64> {
        if l1i as usize >= self.l1.len() {
            return Err(BlockError::OutOfBounds {
                offset: l1i << (self.cb + self.l2_bits),
                len: 0,
                size: self.hdr.size,
            });
        }
        let old = self.l2_offset(c, l1i)?;
        let e = self.l1[l1i as usize];
        if old != 0 && e & OFLAG_COPIED != 0 {
            return Ok(old);
        }
        self.mark_dirty(c)?;
        let from = if old != 0 {
            Some(self.get_l2(c, old)?)
        } else {
            None
        };
        let new = self.alloc_clusters(c, 1)?;
        let from = match from {
            Some(_) => Some(self.get_l2(c, old)?),
            None => None,
        };
        self.meta.insert(new >> self.cb, Meta::ActiveL2);
        self.new_l2(c, new, from)?;
        // The L1 entry reaches the disk in flush_metadata, after the table it
        // points to; the shared table it replaces is released after that.
        self.l1[l1i as usize] = new | OFLAG_COPIED;
        self.l1_pending.push(l1i);
        if old != 0 {
            self.l2_pending_free.push(old);
        }
        Ok(new)
    }

    /// Writes L1 entries changed since the last flush (their tables are on
    /// disk already), then drops the shared tables they replaced.
    pub(crate) fn write_pending_l1(&mut self, c: &Children) -> BlockResult<()> {
        let mut pending = std::mem::take(&mut self.l1_pending);
        pending.sort_unstable();
        pending.dedup();
        for &i in &pending {
            let v = self.l1[i as usize];
            let off = self.hdr.l1_table_offset + i * 8;
            blkdebug::signal(c, BlkdebugEvent::L1Update);
            if let Err(e) = self.pwrite_meta(c, off, &v.to_be_bytes()) {
                self.l1_pending = pending;
                return Err(e);
            }
        }
        if self.l2_pending_free.is_empty() {
            return Ok(());
        }
        self.sync(c)?;
        let frees = std::mem::take(&mut self.l2_pending_free);
        for old in frees {
            self.meta.remove(&(old >> self.cb));
            let left = self.update_refcount(c, old >> self.cb, -1)?;
            if left == 0 {
                self.l2.forget(old);
            } else {
                // Still used by a snapshot: keep it protected from data writes.
                self.meta.insert(old >> self.cb, Meta::ActiveL2);
            }
        }
        Ok(())
    }

    /// True when the guest range of a cluster stored as `entry` reads as zero
    /// without looking (so COW of it onto fresh clusters can be skipped).
    pub(super) fn reads_zero(&self, c: &Children, entry: u64) -> bool {
        if entry & OFLAG_COMPRESSED != 0 {
            return false;
        }
        if entry & OFLAG_ZERO != 0 && self.hdr.version >= 3 {
            return true;
        }
        entry & L2E_OFFSET_MASK == 0 && c.backing.is_none()
    }

    /// Drops the references collected in `self.frees` once the entries that
    /// replaced them are on disk.
    pub(super) fn release_frees(&mut self, c: &Children) -> BlockResult<()> {
        if self.frees.is_empty() {
            return Ok(());
        }
        self.flush_metadata(c, true)?;
        let frees = std::mem::take(&mut self.frees);
        let mut r = Ok(());
        for &e in &frees {
            if let Err(err) = self.free_entry(c, e) {
                r = Err(err);
                break;
            }
        }
        self.frees = frees;
        self.frees.clear();
        r
    }

    pub(crate) fn do_write_zeroes(
        &mut self,
        c: &Children,
        off: u64,
        len: u64,
        // QEMU 2.8's qcow2 takes no MAY_UNMAP: zeroed clusters keep their
        // allocation either way.
        _unmap: bool,
    ) -> BlockResult<()> {
        let cs = self.cs;
        let end = off + len;
        let a_start = off.next_multiple_of(cs);
        let a_end = if end == self.hdr.size {
            end.next_multiple_of(cs)
        } else {
            end / cs * cs
        };
        if a_start >= a_end {
            return self.zero_partial(c, off, len);
        }
        if off < a_start {
            self.zero_partial(c, off, a_start - off)?;
        }
        if self.hdr.version >= 3 {
            self.clear_clusters(c, a_start, a_end, ClearMode::Zero)?;
        } else {
            let mut o = a_start;
            while o < a_end.min(self.hdr.size) {
                let n = (a_end.min(self.hdr.size) - o).min(cs);
                self.zero_partial(c, o, n)?;
                o += n;
            }
        }
        if a_end < end {
            self.zero_partial(c, a_end, end - a_end)?;
        }
        Ok(())
    }

    /// Zeroes part of clusters by writing zeroes, unless it already reads as zero.
    fn zero_partial(&mut self, c: &Children, mut off: u64, len: u64) -> BlockResult<()> {
        let end = off + len;
        while off < end {
            let (kind, n) = self.run(c, off, end - off)?;
            let zero = match kind {
                Cl::Zero { .. } => true,
                Cl::Unalloc => c.backing.is_none(),
                _ => false,
            };
            // A part of an unallocated cluster (no backing file, so all of
            // it reads as zero): QEMU 2.8 makes the whole cluster a zero
            // cluster rather than leaving it alone.
            if matches!(kind, Cl::Unalloc) && zero && self.hdr.version >= 3 {
                let cs = self.cs;
                let first = off / cs * cs;
                let last = (off + n).next_multiple_of(cs);
                self.clear_clusters(c, first, last, ClearMode::Zero)?;
                off += n;
                continue;
            }
            if !zero {
                let mut left = n;
                let mut o = off;
                while left > 0 {
                    let k = left.min(self.cs);
                    let zeros = std::mem::take(&mut self.zeros);
                    let r = self.do_write(c, o, &zeros[..k as usize]);
                    self.zeros = zeros;
                    r?;
                    o += k;
                    left -= k;
                }
            }
            off += n;
        }
        Ok(())
    }

    pub(crate) fn do_discard(&mut self, c: &Children, off: u64, len: u64) -> BlockResult<()> {
        let cs = self.cs;
        let end = off + len;
        let a_start = off.next_multiple_of(cs);
        let a_end = if end == self.hdr.size {
            end.next_multiple_of(cs)
        } else {
            end / cs * cs
        };
        if a_start >= a_end {
            return Ok(());
        }
        self.clear_clusters(c, a_start, a_end, ClearMode::Discard)
    }

    /// Turns whole clusters into zero clusters or unallocated ones.
    fn clear_clusters(
        &mut self,
        c: &Children,
        start: u64,
        end: u64,
        mode: ClearMode,
    ) -> BlockResult<()> {
        let cs = self.cs;
        let v3 = self.hdr.version >= 3;
        let has_backing = c.backing.is_some();
        self.frees.clear();
        let mut cl = start / cs;
        let end_cl = end / cs;
        while cl < end_cl {
            let l1i = cl >> self.l2_bits;
            let l2i = cl & (self.l2_entries() - 1);
            let n = (self.l2_entries() - l2i).min(end_cl - cl);
            let cur = self.l2_offset(c, l1i)?;
            // Zeroing gets an L2 table even where nothing was allocated:
            // QEMU 2.8 marks those clusters as zero clusters too.
            if cur == 0 && !has_backing && mode == ClearMode::Discard {
                cl += n;
                continue;
            }
            if cur == 0 && mode == ClearMode::Discard && !v3 {
                cl += n;
                continue;
            }
            self.mark_dirty(c)?;
            let l2_off = self.writable_l2(c, l1i)?;
            let slot = self.get_l2(c, l2_off)?;
            for i in 0..n {
                let idx = (l2i + i) as usize;
                let old = self.l2.slots[slot].table[idx];
                let kind = self.classify(c, old, l2_off, l2i + i)?;
                let slot = self.get_l2(c, l2_off)?;
                let new = match (mode, kind) {
                    (ClearMode::Discard, Cl::Unalloc) if !has_backing => continue,
                    (ClearMode::Zero, Cl::Unalloc) => OFLAG_ZERO,
                    (ClearMode::Discard, Cl::Unalloc) => {
                        if v3 {
                            OFLAG_ZERO
                        } else {
                            continue;
                        }
                    }
                    (ClearMode::Zero, Cl::Zero { .. }) => continue,
                    (_, Cl::Zero { prealloc: 0 }) => continue,
                    (ClearMode::Zero, Cl::Normal { .. }) => old | OFLAG_ZERO,
                    _ => {
                        self.frees.push(old);
                        if v3 || matches!(mode, ClearMode::Zero) {
                            OFLAG_ZERO
                        } else {
                            0
                        }
                    }
                };
                self.l2.slots[slot].table[idx] = new;
                self.l2.mark_dirty(slot);
            }
            cl += n;
        }
        self.dcache = None;
        self.release_frees(c)
    }

    pub(crate) fn do_write_compressed(
        &mut self,
        c: &Children,
        off: u64,
        data: &[u8],
    ) -> BlockResult<()> {
        let cs = self.cs;
        let full = data.len() as u64 == cs;
        let tail = off + data.len() as u64 == self.hdr.size && (data.len() as u64) < cs;
        if !off.is_multiple_of(cs) || !(full || tail) {
            return Err(BlockError::errno(
                "Compressed writes must cover whole clusters",
                libc::EINVAL,
            ));
        }
        let mut input = std::mem::take(&mut self.buf);
        input.clear();
        input.extend_from_slice(data);
        input.resize(cs as usize, 0);
        let mut out = std::mem::take(&mut self.cbuf);
        let compressed = compress_cluster(&input, &mut out);
        self.buf = input;
        let Some(clen) = compressed else {
            self.cbuf = out;
            return self.do_write(c, off, data);
        };
        let r = self.store_compressed(c, off, &out[..clen]);
        self.cbuf = out;
        r
    }

    fn store_compressed(&mut self, c: &Children, off: u64, comp: &[u8]) -> BlockResult<()> {
        self.mark_dirty(c)?;
        let cl = off >> self.cb;
        let l1i = cl >> self.l2_bits;
        let l2i = (cl & (self.l2_entries() - 1)) as usize;
        let l2_off = self.writable_l2(c, l1i)?;
        let slot = self.get_l2(c, l2_off)?;
        let old = self.l2.slots[slot].table[l2i];
        if old & OFLAG_COMPRESSED != 0 || old & L2E_OFFSET_MASK != 0 {
            return Err(BlockError::errno(
                "Compressed writes can only go to unallocated clusters",
                libc::EIO,
            ));
        }
        let len = comp.len() as u64;
        let coff = self.alloc_bytes(c, len)?;
        self.pwrite_data(c, coff, comp)?;
        let nsect = ((coff + len - 1) >> 9) - (coff >> 9);
        let entry = coff | OFLAG_COMPRESSED | (nsect << self.csize_shift);
        let slot = self.get_l2(c, l2_off)?;
        self.l2.slots[slot].table[l2i] = entry;
        self.l2.mark_dirty(slot);
        Ok(())
    }

    /// Changes the virtual size; growing only, and not with snapshots (QEMU 2.8 rules).
    pub(crate) fn resize(&mut self, c: &Children, size: u64) -> BlockResult<()> {
        if !size.is_multiple_of(512) {
            return Err(BlockError::InvalidArgument(
                "The new size must be a multiple of 512".into(),
            ));
        }
        if !self.snapshots.is_empty() {
            return Err(BlockError::Unsupported(
                "Can't resize an image which has snapshots".into(),
            ));
        }
        if size < self.hdr.size {
            return Err(BlockError::Unsupported(
                "qcow2 doesn't support shrinking images yet".into(),
            ));
        }
        let per_l1 = self.cs << self.l2_bits;
        let need = size.div_ceil(per_l1);
        if need > self.l1.len() as u64 {
            self.grow_l1(c, need)?;
        }
        self.pwrite_meta(c, OFF_SIZE, &size.to_be_bytes())?;
        self.sync(c)?;
        self.hdr.size = size;
        Ok(())
    }

    /// Moves the active L1 table to a new place with room for `need` entries.
    pub(crate) fn grow_l1(&mut self, c: &Children, need: u64) -> BlockResult<()> {
        if need * 8 > super::header::MAX_L1_BYTES {
            return Err(BlockError::errno("Active L1 table too large", libc::EFBIG));
        }
        let cs = self.cs;
        // Grow by half again, as QEMU does, so repeated small resizes stay cheap.
        let mut new_len = need.max(self.l1.len() as u64 * 3 / 2);
        new_len = new_len.min(super::header::MAX_L1_BYTES / 8);
        let clusters = (new_len * 8).div_ceil(cs);
        self.flush_metadata(c, true)?;
        let new_off = self.alloc_clusters(c, clusters)?;
        let mut raw = vec![0u8; (clusters * cs) as usize];
        for (i, e) in self.l1.iter().enumerate() {
            raw[i * 8..i * 8 + 8].copy_from_slice(&e.to_be_bytes());
        }
        self.flush_metadata(c, false)?;
        self.pwrite_meta(c, new_off, &raw)?;
        self.sync(c)?;
        let mut hb = Vec::with_capacity(12);
        hb.extend_from_slice(&(new_len as u32).to_be_bytes());
        hb.extend_from_slice(&new_off.to_be_bytes());
        self.pwrite_meta(c, OFF_L1_SIZE, &hb)?;
        self.sync(c)?;
        let old_off = self.hdr.l1_table_offset;
        let old_clusters = (self.l1.len() as u64 * 8).div_ceil(cs);
        self.hdr.l1_table_offset = new_off;
        self.hdr.l1_size = new_len as u32;
        self.l1.resize(new_len as usize, 0);
        for k in 0..clusters {
            self.meta.insert((new_off >> self.cb) + k, Meta::ActiveL1);
        }
        if old_off != 0 {
            for k in 0..old_clusters {
                let cl = (old_off >> self.cb) + k;
                self.meta.remove(&cl);
                self.update_refcount(c, cl, -1)?;
            }
        }
        let _ = file_of(c)?;
        Ok(())
    }

    /// Gives every cluster in `[start, end)` a host cluster without writing data
    /// (preallocation=metadata); returns the end of the last allocated cluster.
    pub(crate) fn preallocate(&mut self, c: &Children, start: u64, end: u64) -> BlockResult<u64> {
        let cs = self.cs;
        let mut cl = start / cs;
        let end_cl = end.div_ceil(cs);
        let mut host_end = 0;
        while cl < end_cl {
            let l1i = cl >> self.l2_bits;
            let l2i = cl & (self.l2_entries() - 1);
            let n = (self.l2_entries() - l2i).min(end_cl - cl);
            let l2_off = self.writable_l2(c, l1i)?;
            let host = self.alloc_clusters(c, n)?;
            let slot = self.get_l2(c, l2_off)?;
            for i in 0..n {
                let idx = (l2i + i) as usize;
                if self.l2.slots[slot].table[idx] == 0 {
                    self.l2.slots[slot].table[idx] = (host + i * cs) | OFLAG_COPIED;
                }
            }
            self.l2.mark_dirty(slot);
            host_end = host_end.max(host + n * cs);
            cl += n;
        }
        self.flush_metadata(c, true)?;
        Ok(host_end)
    }
}
