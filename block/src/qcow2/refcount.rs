//! Refcounts: the refcount table, a cache of refcount blocks, cluster allocation,
//! and growing the table when the image outgrows it.
//!
//! A new refcount block for block index `b` is placed at the first cluster it
//! describes (`b << rb_bits`), which is free by definition when the block does
//! not exist yet, and counts itself.

use super::cluster_map::ClusterMap;

use super::header::{MAX_REFTABLE_BYTES, OFF_REFTABLE};
use super::{Meta, Qcow2};
use crate::driver::Children;
use crate::drivers::blkdebug::{self, BlkdebugEvent};
use crate::error::{BlockError, BlockResult};

pub(crate) struct RcBlock {
    pub data: Vec<u8>,
    pub dirty: bool,
    used: u64,
}

pub(crate) struct Refcounts {
    /// Host offsets of refcount blocks (0 = none).
    pub table: Vec<u64>,
    pub blocks: ClusterMap<RcBlock>,
    pub order: u32,
    /// log2 of entries per block.
    pub rb_bits: u32,
    cap: usize,
    tick: u64,
}

/// Highest cluster index we ever allocate (offsets must fit in 56 bits).
const MAX_HOST_OFFSET: u64 = 1 << 56;

impl Refcounts {
    pub fn new(cs: u64, order: u32) -> Refcounts {
        let cb = cs.trailing_zeros();
        Refcounts {
            table: Vec::new(),
            blocks: ClusterMap::default(),
            order,
            rb_bits: cb + 3 - order,
            cap: ((4u64 << 20) / cs).clamp(4, 256) as usize,
            tick: 0,
        }
    }

    pub fn any_dirty(&self) -> bool {
        self.blocks.values().any(|b| b.dirty)
    }

    /// Sets the capacity from a byte size (the `refcount-cache-size` option).
    pub fn set_size(&mut self, bytes: u64, cs: u64) {
        self.cap = (bytes / cs).clamp(4, 65536) as usize;
    }

    pub fn max_value(&self) -> u64 {
        if self.order == 6 {
            u64::MAX
        } else {
            (1u64 << (1u32 << self.order)) - 1
        }
    }

    pub fn get(data: &[u8], order: u32, i: usize) -> u64 {
        match order {
            0..=2 => {
                let bits = 1usize << order;
                let per = 8 / bits;
                let byte = data[i / per];
                ((byte >> ((i % per) * bits)) as u64) & ((1u64 << bits) - 1)
            }
            _ => {
                let w = 1usize << (order - 3);
                let mut v = 0u64;
                for &b in &data[i * w..i * w + w] {
                    v = (v << 8) | b as u64;
                }
                v
            }
        }
    }

    pub fn set(data: &mut [u8], order: u32, i: usize, v: u64) {
        match order {
            0..=2 => {
                let bits = 1usize << order;
                let per = 8 / bits;
                let shift = (i % per) * bits;
                let mask = (((1u16 << bits) - 1) as u8) << shift;
                let byte = &mut data[i / per];
                *byte = (*byte & !mask) | (((v as u8) << shift) & mask);
            }
            _ => {
                let w = 1usize << (order - 3);
                let bytes = v.to_be_bytes();
                data[i * w..i * w + w].copy_from_slice(&bytes[8 - w..]);
            }
        }
    }
}

impl Qcow2 {
    fn rb_index(&self, cluster: u64) -> (u64, usize) {
        let rb = self.rc.rb_bits;
        (cluster >> rb, (cluster & ((1u64 << rb) - 1)) as usize)
    }

    /// Loads refcount block `bi` into the cache; false if it does not exist.
    fn load_refblock(&mut self, c: &Children, bi: u64) -> BlockResult<bool> {
        if let Some(b) = self.rc.blocks.get_mut(&bi) {
            self.rc.tick += 1;
            b.used = self.rc.tick;
            return Ok(true);
        }
        let off = match self.rc.table.get(bi as usize) {
            Some(&o) if o != 0 => o,
            _ => return Ok(false),
        };
        let kind = self.meta.get(&(off >> self.cb)).copied();
        if !off.is_multiple_of(self.cs) {
            return Err(self.signal_corruption(
                c,
                true,
                None,
                None,
                format!(
                    "Refblock offset {:#x} unaligned (reftable index: {:#x})",
                    off, bi
                ),
            ));
        }
        if off < self.cs || self.past_eof(c, off) || kind.is_some_and(|k| k != Meta::RefBlock) {
            return Err(self.signal_corruption(
                c,
                true,
                Some(off),
                Some(self.cs),
                format!(
                    "Refblock offset {:#x} invalid (reftable index: {:#x})",
                    off, bi
                ),
            ));
        }
        self.evict_refblocks(c)?;
        let mut data = vec![0u8; self.cs as usize];
        blkdebug::signal(c, BlkdebugEvent::RefblockLoad);
        self.pread(c, off, &mut data)?;
        self.rc.tick += 1;
        self.rc.blocks.insert(
            bi,
            RcBlock {
                data,
                dirty: false,
                used: self.rc.tick,
            },
        );
        Ok(true)
    }

    fn evict_refblocks(&mut self, c: &Children) -> BlockResult<()> {
        while self.rc.blocks.len() >= self.rc.cap {
            let victim = match self.rc.blocks.iter().min_by_key(|(_, b)| b.used) {
                Some((&k, _)) => k,
                None => return Ok(()),
            };
            if self.rc.blocks.get(&victim).is_some_and(|b| b.dirty) {
                self.write_refblock(c, victim)?;
            }
            self.rc.blocks.remove(&victim);
        }
        Ok(())
    }

    fn write_refblock(&mut self, c: &Children, bi: u64) -> BlockResult<()> {
        let off = self.rc.table.get(bi as usize).copied().unwrap_or(0);
        let data = match self.rc.blocks.get_mut(&bi) {
            Some(b) => std::mem::take(&mut b.data),
            None => return Ok(()),
        };
        let r = if off != 0 {
            blkdebug::signal(c, BlkdebugEvent::RefblockUpdate);
            self.pwrite_meta(c, off, &data)
        } else {
            Ok(())
        };
        if let Some(b) = self.rc.blocks.get_mut(&bi) {
            b.data = data;
            if r.is_ok() {
                b.dirty = false;
            }
        }
        r
    }

    pub(crate) fn write_dirty_refblocks(&mut self, c: &Children) -> BlockResult<()> {
        let mut dirty: Vec<u64> = self
            .rc
            .blocks
            .iter()
            .filter(|(_, b)| b.dirty)
            .map(|(&k, _)| k)
            .collect();
        dirty.sort_unstable();
        for bi in dirty {
            self.write_refblock(c, bi)?;
        }
        Ok(())
    }

    /// Refcount of a host cluster (0 when no block covers it).
    pub(crate) fn get_refcount(&mut self, c: &Children, cluster: u64) -> BlockResult<u64> {
        let (bi, i) = self.rb_index(cluster);
        if !self.load_refblock(c, bi)? {
            return Ok(0);
        }
        let order = self.rc.order;
        Ok(self
            .rc
            .blocks
            .get(&bi)
            .map(|b| Refcounts::get(&b.data, order, i))
            .unwrap_or(0))
    }

    /// Sets a cluster's refcount, creating its refcount block if needed.
    pub(crate) fn set_refcount(&mut self, c: &Children, cluster: u64, v: u64) -> BlockResult<()> {
        let (bi, i) = self.rb_index(cluster);
        if !self.load_refblock(c, bi)? {
            self.create_refblock(c, bi)?;
            self.load_refblock(c, bi)?;
        }
        let order = self.rc.order;
        if let Some(b) = self.rc.blocks.get_mut(&bi) {
            Refcounts::set(&mut b.data, order, i, v);
            b.dirty = true;
        }
        if v == 0 {
            if cluster < self.free_cluster_index {
                self.free_cluster_index = cluster;
            }
            // The partly used compressed cluster is gone: never pack into it again.
            if self.free_byte_offset != 0 && self.free_byte_offset >> self.cb == cluster {
                self.free_byte_offset = 0;
            }
        }
        Ok(())
    }

    /// Adds `delta` to a cluster's refcount; over- and underflow are errors.
    pub(crate) fn update_refcount(
        &mut self,
        c: &Children,
        cluster: u64,
        delta: i64,
    ) -> BlockResult<u64> {
        let cur = self.get_refcount(c, cluster)?;
        let new = if delta >= 0 {
            cur.checked_add(delta as u64)
                .filter(|&v| v <= self.rc.max_value())
                .ok_or_else(|| BlockError::errno("Refcount overflow", libc::ERANGE))?
        } else {
            cur.checked_sub(delta.unsigned_abs()).ok_or_else(|| {
                BlockError::Corrupt(format!(
                    "qcow2: refcount underflow for cluster {:#x}",
                    cluster << self.cb
                ))
            })?
        };
        self.set_refcount(c, cluster, new)?;
        Ok(new)
    }

    /// Creates refcount block `bi` at the first cluster it covers.
    fn create_refblock(&mut self, c: &Children, bi: u64) -> BlockResult<()> {
        if bi as usize >= self.rc.table.len() {
            self.grow_reftable(c, bi)?;
            if self.rc.table.get(bi as usize).is_some_and(|&o| o != 0) {
                return Ok(());
            }
        }
        let loc = bi << self.rc.rb_bits;
        // A block is only ever needed for clusters at the end of the image;
        // anything further out comes from a corrupt entry.
        let allowance = (64 << 20) / self.cs + self.cs / 8;
        let end_cluster = self.file_len.div_ceil(self.cs).max(self.max_alloc_end) + allowance;
        if loc == 0
            || loc > end_cluster
            || self.meta.contains_key(&loc)
            || (loc << self.cb) >= MAX_HOST_OFFSET
        {
            return Err(self.signal_corruption(
                c,
                true,
                Some(loc << self.cb),
                Some(self.cs),
                "Refcount block would overlap existing metadata".into(),
            ));
        }
        let mut data = vec![0u8; self.cs as usize];
        Refcounts::set(&mut data, self.rc.order, 0, 1);
        let off = loc << self.cb;
        blkdebug::signal(c, BlkdebugEvent::RefblockAllocWrite);
        self.pwrite_meta(c, off, &data)?;
        self.sync(c)?;
        self.rc.table[bi as usize] = off;
        let toff = self.hdr.refcount_table_offset + bi * 8;
        blkdebug::signal(c, BlkdebugEvent::RefblockAllocHookup);
        self.pwrite_meta(c, toff, &off.to_be_bytes())?;
        self.meta.insert(loc, Meta::RefBlock);
        self.max_alloc_end = self.max_alloc_end.max(loc + 1);
        Ok(())
    }

    /// Moves the refcount table to a bigger place at the end of the image.
    fn grow_reftable(&mut self, c: &Children, min_bi: u64) -> BlockResult<()> {
        let cs = self.cs;
        let per_cluster = cs / 8;
        let rb = self.rc.rb_bits;
        let old_len = self.rc.table.len() as u64;
        let mut entries = (min_bi + 1).max(old_len * 2).max(per_cluster);
        let end_cluster = self.file_len.div_ceil(cs).max(self.max_alloc_end);
        let mut p = end_cluster;
        let (t, mut new_blocks) = loop {
            let t = entries.div_ceil(per_cluster);
            if t * cs > MAX_REFTABLE_BYTES {
                return Err(BlockError::errno(
                    "Reference count table too large",
                    libc::EFBIG,
                ));
            }
            let first_b = p >> rb;
            let last_b = (p + t - 1) >> rb;
            if last_b >= t * per_cluster {
                entries = last_b + 1;
                continue;
            }
            let mut new_blocks = Vec::new();
            let mut moved = false;
            for b in first_b..=last_b {
                let exists = (b as usize) < self.rc.table.len() && self.rc.table[b as usize] != 0;
                if !exists {
                    let loc = b << rb;
                    if loc >= p && loc < p + t {
                        p = loc + 1;
                        moved = true;
                        break;
                    }
                    new_blocks.push(b);
                }
            }
            if !moved {
                break (t, new_blocks);
            }
        };
        let new_len = (t * per_cluster) as usize;
        let mut table = self.rc.table.clone();
        table.resize(new_len, 0);
        if (min_bi as usize) < new_len
            && table[min_bi as usize] == 0
            && !new_blocks.contains(&min_bi)
        {
            let loc = min_bi << rb;
            if loc < p || loc >= p + t {
                new_blocks.push(min_bi);
            }
        }
        // New blocks count themselves; the table's clusters are counted in
        // whichever block covers them.
        let old_table = std::mem::replace(&mut self.rc.table, table);
        for &b in &new_blocks {
            let loc = b << rb;
            if loc == 0 || self.meta.contains_key(&loc) {
                return Err(BlockError::Corrupt(
                    "qcow2: refcount block placement overlaps metadata".into(),
                ));
            }
            let mut data = vec![0u8; cs as usize];
            Refcounts::set(&mut data, self.rc.order, 0, 1);
            self.rc.table[b as usize] = loc << self.cb;
            self.evict_refblocks(c)?;
            self.rc.tick += 1;
            self.rc.blocks.insert(
                b,
                RcBlock {
                    data,
                    dirty: true,
                    used: self.rc.tick,
                },
            );
            self.meta.insert(loc, Meta::RefBlock);
        }
        for k in 0..t {
            self.set_refcount(c, p + k, 1)?;
        }
        self.write_dirty_refblocks(c)?;
        self.sync(c)?;
        let mut raw = Vec::with_capacity(new_len * 8);
        for e in &self.rc.table {
            raw.extend_from_slice(&e.to_be_bytes());
        }
        self.pwrite_meta(c, p << self.cb, &raw)?;
        self.sync(c)?;
        let old_off = self.hdr.refcount_table_offset;
        let old_clusters = self.hdr.refcount_table_clusters as u64;
        let mut hb = Vec::with_capacity(12);
        hb.extend_from_slice(&(p << self.cb).to_be_bytes());
        hb.extend_from_slice(&(t as u32).to_be_bytes());
        self.pwrite_meta(c, OFF_REFTABLE, &hb)?;
        self.sync(c)?;
        self.hdr.refcount_table_offset = p << self.cb;
        self.hdr.refcount_table_clusters = t as u32;
        for k in 0..t {
            self.meta.insert(p + k, Meta::RefTable);
        }
        self.max_alloc_end = self.max_alloc_end.max(p + t);
        for &b in &new_blocks {
            self.max_alloc_end = self.max_alloc_end.max((b << rb) + 1);
        }
        drop(old_table);
        for k in 0..old_clusters {
            let cl = (old_off >> self.cb) + k;
            self.meta.remove(&cl);
            self.update_refcount(c, cl, -1)?;
        }
        Ok(())
    }

    /// Allocates `n` contiguous free clusters (refcount 1) for metadata;
    /// returns the host offset. Clusters the metadata uses are never handed
    /// out, whatever their refcount says: metadata writes are not checked
    /// for overlaps.
    pub(crate) fn alloc_clusters(&mut self, c: &Children, n: u64) -> BlockResult<u64> {
        self.alloc_clusters_where(c, n, true)
    }

    /// Allocates clusters for guest data, by refcount alone as QEMU does:
    /// metadata whose refcount says free is found by the overlap check of
    /// the data write (a corruption), not silently stepped over.
    pub(crate) fn alloc_data_clusters(&mut self, c: &Children, n: u64) -> BlockResult<u64> {
        self.alloc_clusters_where(c, n, false)
    }

    fn alloc_clusters_where(&mut self, c: &Children, n: u64, skip_meta: bool) -> BlockResult<u64> {
        blkdebug::signal(c, BlkdebugEvent::ClusterAlloc);
        let mut start = self.free_cluster_index.max(1);
        let max_cluster = MAX_HOST_OFFSET >> self.cb;
        loop {
            let mut i = start;
            let mut run = 0u64;
            while run < n {
                if i >= max_cluster {
                    return Err(BlockError::errno("Image is full", libc::EFBIG));
                }
                let used =
                    (skip_meta && self.meta.contains_key(&i)) || self.get_refcount(c, i)? != 0;
                if used {
                    run = 0;
                    start = i + 1;
                } else {
                    run += 1;
                }
                i += 1;
            }
            let mut created = false;
            let first_b = start >> self.rc.rb_bits;
            let last_b = (start + n - 1) >> self.rc.rb_bits;
            for b in first_b..=last_b {
                if !self.load_refblock(c, b)? {
                    self.create_refblock(c, b)?;
                    created = true;
                }
            }
            if created {
                continue;
            }
            for k in 0..n {
                self.set_refcount(c, start + k, 1)?;
            }
            self.free_cluster_index = start + n;
            self.max_alloc_end = self.max_alloc_end.max(start + n);
            return Ok(start << self.cb);
        }
    }

    /// Allocates `len` (< cluster size) bytes for compressed data, packing
    /// several compressed clusters into one host cluster.
    pub(crate) fn alloc_bytes(&mut self, c: &Children, len: u64) -> BlockResult<u64> {
        let mut fbo = self.free_byte_offset;
        if fbo != 0 && self.get_refcount(c, fbo >> self.cb)? >= self.rc.max_value() {
            // Narrow refcounts (down to 1 bit) cannot count another user.
            fbo = 0;
        }
        if fbo != 0 && !fbo.is_multiple_of(self.cs) && self.cs - fbo % self.cs >= len {
            self.update_refcount(c, fbo >> self.cb, 1)?;
            self.free_byte_offset = fbo + len;
            return Ok(fbo);
        }
        let off = self.alloc_data_clusters(c, 1)?;
        self.free_byte_offset = off + len;
        Ok(off)
    }

    /// Drops one reference to whatever an L2 entry pointed at. The entry must
    /// already be gone from the disk.
    pub(crate) fn free_entry(&mut self, c: &Children, entry: u64) -> BlockResult<()> {
        use super::{L2E_OFFSET_MASK, OFLAG_COMPRESSED};
        if entry & OFLAG_COMPRESSED != 0 {
            let coff = entry & self.coff_mask;
            let nsect = ((entry >> self.csize_shift) & self.csize_mask) + 1;
            let start = coff & !511;
            let end = start + nsect * 512;
            for cl in (start >> self.cb)..=((end - 1) >> self.cb) {
                self.update_refcount(c, cl, -1)?;
            }
            self.dcache = None;
            return Ok(());
        }
        let off = entry & L2E_OFFSET_MASK;
        if off != 0 && self.update_refcount(c, off >> self.cb, -1)? == 0 {
            // Nothing on disk refers to the cluster any more: give the space back
            // to the host (a no-op unless the file node has discard=unmap).
            let f = super::file_of(c)?;
            let _ = crate::node::lock(f).discard(off, self.cs);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_byte_refcounts_pack_lsb_first() {
        let mut d = vec![0u8; 4];
        Refcounts::set(&mut d, 0, 1, 1);
        assert_eq!(d[0], 0b10);
        Refcounts::set(&mut d, 2, 1, 0xa);
        assert_eq!(Refcounts::get(&d, 2, 1), 0xa);
        assert_eq!(d[0], 0xa0 | 0b10 & 0x0f);
    }

    #[test]
    fn wide_refcounts_are_big_endian() {
        let mut d = vec![0u8; 16];
        Refcounts::set(&mut d, 4, 1, 0x1234);
        assert_eq!(&d[2..4], &[0x12, 0x34]);
        assert_eq!(Refcounts::get(&d, 4, 1), 0x1234);
        Refcounts::set(&mut d, 6, 1, u64::MAX);
        assert_eq!(Refcounts::get(&d, 6, 1), u64::MAX);
    }
}
