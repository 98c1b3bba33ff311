//! Cache of L2 tables, decoded to host-endian entries, written back lazily.
//!
//! A dirty table may only reach the disk after the refcount blocks it depends
//! on; the driver enforces that in `write_dirty_l2` and on eviction.

use super::cluster_map::ClusterMap;

use super::{be64_at, Qcow2};
use crate::driver::Children;
use crate::drivers::blkdebug::{self, BlkdebugEvent};
use crate::error::BlockResult;

pub(crate) struct L2Slot {
    pub off: u64,
    pub table: Vec<u64>,
    pub dirty: bool,
    used: u64,
}

pub(crate) struct L2Cache {
    pub slots: Vec<L2Slot>,
    index: ClusterMap<usize>,
    cap: usize,
    tick: u64,
}

impl L2Cache {
    pub fn new(cs: u64) -> L2Cache {
        // 8 MiB of tables (covers 64 GiB of guest data with 64 KiB clusters).
        let cap = ((8u64 << 20) / cs).clamp(16, 1024) as usize;
        L2Cache {
            slots: Vec::new(),
            index: ClusterMap::default(),
            cap,
            tick: 0,
        }
    }

    pub fn any_dirty(&self) -> bool {
        self.slots.iter().any(|s| s.dirty)
    }

    /// Sets the capacity from a byte size (the `l2-cache-size` option).
    pub fn set_size(&mut self, bytes: u64, cs: u64) {
        self.cap = (bytes / cs).clamp(2, 65536) as usize;
    }

    pub fn lookup(&mut self, off: u64) -> Option<usize> {
        let i = *self.index.get(&off)?;
        self.tick += 1;
        self.slots[i].used = self.tick;
        Some(i)
    }

    pub fn contains(&self, off: u64) -> bool {
        self.index.contains_key(&off)
    }

    /// Forgets a table (it was freed); its dirty content is dropped.
    pub fn forget(&mut self, off: u64) {
        if let Some(i) = self.index.remove(&off) {
            self.slots[i].off = u64::MAX;
            self.slots[i].dirty = false;
            self.slots[i].used = 0;
        }
    }

    pub fn mark_dirty(&mut self, slot: usize) {
        self.slots[slot].dirty = true;
    }
}

impl Qcow2 {
    /// Picks a slot for a new table, writing back the evicted one if dirty.
    fn l2_free_slot(&mut self, c: &Children) -> BlockResult<usize> {
        let entries = (self.cs / 8) as usize;
        if self.l2.slots.len() < self.l2.cap {
            self.l2.slots.push(L2Slot {
                off: u64::MAX,
                table: vec![0u64; entries],
                dirty: false,
                used: 0,
            });
            return Ok(self.l2.slots.len() - 1);
        }
        let victim = self
            .l2
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.used)
            .map(|(i, _)| i)
            .unwrap_or(0);
        if self.l2.slots[victim].dirty {
            if self.rc.any_dirty() {
                self.write_dirty_refblocks(c)?;
                if !self.lazy() {
                    self.sync(c)?;
                }
            }
            self.write_l2_slot(c, victim)?;
        }
        let old = self.l2.slots[victim].off;
        self.l2.index.remove(&old);
        self.l2.slots[victim].off = u64::MAX;
        Ok(victim)
    }

    /// The cache slot holding the L2 table at host offset `off`, loading it.
    pub(crate) fn get_l2(&mut self, c: &Children, off: u64) -> BlockResult<usize> {
        if let Some(i) = self.l2.lookup(off) {
            return Ok(i);
        }
        let slot = self.l2_free_slot(c)?;
        let cs = self.cs as usize;
        let mut raw = std::mem::take(&mut self.iobuf);
        raw.resize(cs, 0);
        blkdebug::signal(c, BlkdebugEvent::L2Load);
        let r = self.pread(c, off, &mut raw[..cs]);
        if let Err(e) = r {
            self.iobuf = raw;
            return Err(e);
        }
        let s = &mut self.l2.slots[slot];
        for (i, e) in s.table.iter_mut().enumerate() {
            *e = be64_at(&raw, i);
        }
        self.iobuf = raw;
        s.off = off;
        s.dirty = false;
        self.l2.tick += 1;
        s.used = self.l2.tick;
        self.l2.index.insert(off, slot);
        Ok(slot)
    }

    /// Puts a new table at `off` into the cache (dirty), copied from `from` or zeroed.
    pub(crate) fn new_l2(
        &mut self,
        c: &Children,
        off: u64,
        from: Option<usize>,
    ) -> BlockResult<usize> {
        let copy: Option<Vec<u64>> = from.map(|f| self.l2.slots[f].table.clone());
        let slot = self.l2_free_slot(c)?;
        let s = &mut self.l2.slots[slot];
        match copy {
            Some(t) => s.table.copy_from_slice(&t),
            None => s.table.fill(0),
        }
        s.off = off;
        s.dirty = true;
        self.l2.tick += 1;
        s.used = self.l2.tick;
        self.l2.index.insert(off, slot);
        Ok(slot)
    }

    fn write_l2_slot(&mut self, c: &Children, slot: usize) -> BlockResult<()> {
        let cs = self.cs as usize;
        let mut raw = std::mem::take(&mut self.iobuf);
        raw.resize(cs, 0);
        let off = self.l2.slots[slot].off;
        for (i, e) in self.l2.slots[slot].table.iter().enumerate() {
            raw[i * 8..i * 8 + 8].copy_from_slice(&e.to_be_bytes());
        }
        blkdebug::signal(c, BlkdebugEvent::L2Update);
        let r = self.pwrite_meta(c, off, &raw[..cs]);
        self.iobuf = raw;
        r?;
        self.l2.slots[slot].dirty = false;
        Ok(())
    }

    pub(crate) fn write_dirty_l2(&mut self, c: &Children) -> BlockResult<()> {
        for i in 0..self.l2.slots.len() {
            if self.l2.slots[i].dirty && self.l2.slots[i].off != u64::MAX {
                self.write_l2_slot(c, i)?;
            }
        }
        Ok(())
    }
}
