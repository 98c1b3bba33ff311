//! Internal snapshots: the snapshot table, and create / delete / goto, which
//! adjust refcounts of every cluster a snapshot's L1 table reaches.

use super::header::OFF_NB_SNAPSHOTS;
use super::{
    Meta, Qcow2, L1E_OFFSET_MASK, L2E_OFFSET_MASK, OFLAG_COMPRESSED, OFLAG_COPIED, OFLAG_ZERO,
};
use crate::driver::{Children, SnapshotInfo};
use crate::error::{BlockError, BlockResult};

/// Largest snapshot table we read (QEMU's limit).
const MAX_TABLE_BYTES: u64 = 64 << 20;

/// One snapshot table entry.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub l1_offset: u64,
    pub l1_size: u32,
    pub id: String,
    pub name: String,
    pub date_sec: u32,
    pub date_nsec: u32,
    pub vm_clock_nsec: u64,
    pub vm_state_size: u64,
    pub disk_size: Option<u64>,
    /// Extra data past the fields we know, kept as it was.
    pub extra_rest: Vec<u8>,
}

fn entry_size(s: &Snapshot) -> u64 {
    (40 + 16 + s.extra_rest.len() + s.id.len() + s.name.len()).next_multiple_of(8) as u64
}

/// Bytes the table of `snaps` takes on disk.
pub(crate) fn table_size(snaps: &[Snapshot]) -> u64 {
    snaps.iter().map(entry_size).sum()
}

fn serialize(snaps: &[Snapshot], disk_size: u64) -> Vec<u8> {
    let mut b = Vec::new();
    for s in snaps {
        let start = b.len();
        b.extend_from_slice(&s.l1_offset.to_be_bytes());
        b.extend_from_slice(&s.l1_size.to_be_bytes());
        b.extend_from_slice(&(s.id.len() as u16).to_be_bytes());
        b.extend_from_slice(&(s.name.len() as u16).to_be_bytes());
        b.extend_from_slice(&s.date_sec.to_be_bytes());
        b.extend_from_slice(&s.date_nsec.to_be_bytes());
        b.extend_from_slice(&s.vm_clock_nsec.to_be_bytes());
        b.extend_from_slice(&(s.vm_state_size.min(u32::MAX as u64) as u32).to_be_bytes());
        b.extend_from_slice(&((16 + s.extra_rest.len()) as u32).to_be_bytes());
        b.extend_from_slice(&s.vm_state_size.to_be_bytes());
        b.extend_from_slice(&s.disk_size.unwrap_or(disk_size).to_be_bytes());
        b.extend_from_slice(&s.extra_rest);
        b.extend_from_slice(s.id.as_bytes());
        b.extend_from_slice(s.name.as_bytes());
        let len = b.len() - start;
        b.resize(start + len.next_multiple_of(8), 0);
    }
    b
}

fn be16(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}
fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn be64(b: &[u8], o: usize) -> u64 {
    (be32(b, o) as u64) << 32 | be32(b, o + 4) as u64
}

impl Qcow2 {
    pub(crate) fn load_snapshots(&mut self, c: &Children) -> BlockResult<()> {
        self.snapshots.clear();
        let mut off = self.hdr.snapshots_offset;
        let mut total = 0u64;
        for _ in 0..self.hdr.nb_snapshots {
            let mut fixed = [0u8; 40];
            self.pread(c, off, &mut fixed)?;
            let id_len = be16(&fixed, 12) as usize;
            let name_len = be16(&fixed, 14) as usize;
            let extra_len = be32(&fixed, 36) as usize;
            if extra_len > 1024 {
                return Err(BlockError::InvalidImage(
                    "Too much extra metadata in snapshot table entry".into(),
                ));
            }
            let var = extra_len + id_len + name_len;
            let size = (40 + var).next_multiple_of(8) as u64;
            total += size;
            if total > MAX_TABLE_BYTES {
                return Err(BlockError::InvalidImage("Snapshot table too large".into()));
            }
            let mut v = vec![0u8; var];
            self.pread(c, off + 40, &mut v)?;
            let l1_offset = be64(&fixed, 0);
            let l1_size = be32(&fixed, 8);
            if !l1_offset.is_multiple_of(self.cs) || (l1_size > 0 && l1_offset < self.cs) {
                return Err(BlockError::InvalidImage(
                    "Snapshot L1 table offset invalid".into(),
                ));
            }
            if l1_size as u64 * 8 > super::header::MAX_L1_BYTES
                || l1_offset > super::header::MAX_TABLE_END
                || l1_offset + l1_size as u64 * 8 > self.file_len.next_multiple_of(self.cs)
            {
                return Err(BlockError::InvalidImage(
                    "Snapshot L1 table too large".into(),
                ));
            }
            let mut vm_state_size = be32(&fixed, 32) as u64;
            let mut disk_size = None;
            let mut extra_rest = Vec::new();
            if extra_len >= 8 {
                vm_state_size = be64(&v, 0);
            }
            if extra_len >= 16 {
                disk_size = Some(be64(&v, 8));
                extra_rest = v[16..extra_len].to_vec();
            }
            self.snapshots.push(Snapshot {
                l1_offset,
                l1_size,
                id: String::from_utf8_lossy(&v[extra_len..extra_len + id_len]).into_owned(),
                name: String::from_utf8_lossy(&v[extra_len + id_len..var]).into_owned(),
                date_sec: be32(&fixed, 16),
                date_nsec: be32(&fixed, 20),
                vm_clock_nsec: be64(&fixed, 24),
                vm_state_size,
                disk_size,
                extra_rest,
            });
            off = off
                .checked_add(size)
                .ok_or_else(|| BlockError::InvalidImage("Invalid snapshot table offset".into()))?;
        }
        self.snap_table_bytes = total;
        Ok(())
    }

    /// Writes the snapshot table to a new place, switches the header to it, and
    /// frees the old one.
    fn write_snapshot_table(&mut self, c: &Children) -> BlockResult<()> {
        let raw = serialize(&self.snapshots, self.hdr.size);
        let old_off = self.hdr.snapshots_offset;
        let old_size = if self.hdr.nb_snapshots > 0 && old_off != 0 {
            self.snap_table_bytes
        } else {
            0
        };
        let new_off = if raw.is_empty() {
            0
        } else {
            let clusters = (raw.len() as u64).div_ceil(self.cs);
            let off = self.alloc_clusters(c, clusters)?;
            self.flush_metadata(c, false)?;
            self.pwrite_meta(c, off, &raw)?;
            for k in 0..clusters {
                self.meta.insert((off >> self.cb) + k, Meta::SnapshotTable);
            }
            off
        };
        self.sync(c)?;
        let mut hb = Vec::with_capacity(12);
        hb.extend_from_slice(&(self.snapshots.len() as u32).to_be_bytes());
        hb.extend_from_slice(&new_off.to_be_bytes());
        self.pwrite_meta(c, OFF_NB_SNAPSHOTS, &hb)?;
        self.sync(c)?;
        self.hdr.nb_snapshots = self.snapshots.len() as u32;
        self.hdr.snapshots_offset = new_off;
        self.snap_table_bytes = raw.len() as u64;
        if old_size > 0 {
            for k in 0..old_size.div_ceil(self.cs) {
                let cl = (old_off >> self.cb) + k;
                self.meta.remove(&cl);
                self.update_refcount(c, cl, -1)?;
            }
        }
        Ok(())
    }

    fn read_l1_table(&mut self, c: &Children, off: u64, size: u32) -> BlockResult<Vec<u64>> {
        let mut b = vec![0u8; size as usize * 8];
        self.pread(c, off, &mut b)?;
        Ok((0..size as usize).map(|i| super::be64_at(&b, i)).collect())
    }

    /// Adds `delta` to the refcount of every cluster reachable from `l1` (its L2
    /// tables and their data), then, when `active`, recomputes the COPIED flags
    /// of the active tables.
    pub(crate) fn update_tree_refcounts(
        &mut self,
        c: &Children,
        l1: &[u64],
        delta: i64,
        active: bool,
    ) -> BlockResult<()> {
        let cs = self.cs;
        let entries = (cs / 8) as usize;
        for (l1i, &l1e) in l1.iter().enumerate() {
            let l2_off = l1e & L1E_OFFSET_MASK;
            if l2_off == 0 {
                continue;
            }
            if !l2_off.is_multiple_of(cs) || l2_off < cs || self.past_eof(c, l2_off) {
                return Err(self.signal_corruption(
                    c,
                    true,
                    Some(l2_off),
                    Some(cs),
                    format!(
                        "L2 table offset {:#x} invalid (L1 index: {:#x})",
                        l2_off, l1i
                    ),
                ));
            }
            let slot = self.get_l2(c, l2_off)?;
            for i in 0..entries {
                let e = self.l2.slots[slot].table[i];
                let mut refcount = None;
                let host = if e & OFLAG_COMPRESSED != 0 {
                    e & self.coff_mask
                } else {
                    e & L2E_OFFSET_MASK
                };
                if self.past_eof(c, host) {
                    return Err(self.signal_corruption(
                        c,
                        true,
                        Some(host),
                        None,
                        format!(
                            "Cluster offset {:#x} is past the end of the image file",
                            host
                        ),
                    ));
                }
                if e & OFLAG_COMPRESSED != 0 {
                    if delta != 0 {
                        let coff = e & self.coff_mask;
                        let nsect = ((e >> self.csize_shift) & self.csize_mask) + 1;
                        let start = coff & !511;
                        let end = start + nsect * 512;
                        for cl in (start >> self.cb)..=((end - 1) >> self.cb) {
                            self.update_refcount(c, cl, delta)?;
                        }
                    }
                } else {
                    let off = e & L2E_OFFSET_MASK;
                    if off != 0 {
                        let r = if delta != 0 {
                            self.update_refcount(c, off >> self.cb, delta)?
                        } else {
                            self.get_refcount(c, off >> self.cb)?
                        };
                        refcount = Some(r);
                    }
                }
                if active {
                    if let Some(r) = refcount {
                        let new = if r == 1 {
                            e | OFLAG_COPIED
                        } else {
                            e & !OFLAG_COPIED
                        };
                        let slot = self.get_l2(c, l2_off)?;
                        if new != e {
                            self.l2.slots[slot].table[i] = new;
                            self.l2.mark_dirty(slot);
                        }
                    }
                }
                let _ = OFLAG_ZERO;
            }
            let r = if delta != 0 {
                self.update_refcount(c, l2_off >> self.cb, delta)?
            } else {
                self.get_refcount(c, l2_off >> self.cb)?
            };
            if r == 0 {
                self.l2.forget(l2_off);
                self.meta.remove(&(l2_off >> self.cb));
            }
            if active {
                let new = if r == 1 {
                    l1e | OFLAG_COPIED
                } else {
                    l1e & !OFLAG_COPIED
                };
                if self.l1.get(l1i).copied() != Some(new) && l1i < self.l1.len() {
                    self.l1[l1i] = new;
                    self.l1_dirty = true;
                }
            }
        }
        Ok(())
    }

    /// Writes the whole active L1 table in place.
    pub(crate) fn write_l1(&mut self, c: &Children) -> BlockResult<()> {
        let mut raw = Vec::with_capacity(self.l1.len() * 8);
        for e in &self.l1 {
            raw.extend_from_slice(&e.to_be_bytes());
        }
        let off = self.hdr.l1_table_offset;
        self.pwrite_meta(c, off, &raw)?;
        self.l1_dirty = false;
        Ok(())
    }

    fn find_snapshot(&self, id: Option<&str>, name: Option<&str>) -> Option<usize> {
        self.snapshots.iter().position(|s| {
            id.is_none_or(|i| s.id == i)
                && name.is_none_or(|n| s.name == n)
                && (id.is_some() || name.is_some())
        })
    }

    pub(crate) fn do_snapshot_create(
        &mut self,
        c: &Children,
        info: &SnapshotInfo,
    ) -> BlockResult<SnapshotInfo> {
        let id = if info.id.is_empty() {
            let max = self
                .snapshots
                .iter()
                .filter_map(|s| s.id.parse::<u64>().ok())
                .max()
                .unwrap_or(0);
            (max + 1).to_string()
        } else {
            info.id.clone()
        };
        if self.snapshots.iter().any(|s| s.id == id) {
            return Err(BlockError::Generic(format!(
                "Snapshot with id '{}' already exists",
                id
            )));
        }
        if self.snapshots.len() as u32 >= super::header::MAX_SNAPSHOTS {
            return Err(BlockError::Generic("Too many snapshots".into()));
        }
        self.mark_dirty(c)?;
        self.flush_metadata(c, true)?;
        let cs = self.cs;
        let l1_size = self.l1.len() as u32;
        let l1_offset = if l1_size > 0 {
            let clusters = (l1_size as u64 * 8).div_ceil(cs);
            let off = self.alloc_clusters(c, clusters)?;
            let mut raw = Vec::with_capacity(l1_size as usize * 8);
            for e in &self.l1 {
                raw.extend_from_slice(&e.to_be_bytes());
            }
            self.pwrite_meta(c, off, &raw)?;
            for k in 0..clusters {
                self.meta.insert((off >> self.cb) + k, Meta::InactiveL1);
            }
            off
        } else {
            0
        };
        let l1 = self.l1.clone();
        self.update_tree_refcounts(c, &l1, 1, true)?;
        // Increments first, then the flags that depend on them, then the table.
        self.flush_metadata(c, true)?;
        self.write_l1(c)?;
        let snap = Snapshot {
            l1_offset,
            l1_size,
            id,
            name: info.name.clone(),
            date_sec: info.date_sec,
            date_nsec: info.date_nsec,
            vm_clock_nsec: info.vm_clock_nsec,
            vm_state_size: info.vm_state_size,
            disk_size: Some(self.hdr.size),
            extra_rest: Vec::new(),
        };
        let out = Self::snapshot_info(&snap);
        self.snapshots.push(snap);
        if let Err(e) = self.write_snapshot_table(c) {
            self.snapshots.pop();
            return Err(e);
        }
        Ok(out)
    }

    pub(crate) fn do_snapshot_delete(
        &mut self,
        c: &Children,
        id: Option<&str>,
        name: Option<&str>,
    ) -> BlockResult<SnapshotInfo> {
        let idx = self.find_snapshot(id, name).ok_or_else(|| {
            BlockError::NotFound(format!(
                "Snapshot with id '{}' and name '{}' does not exist",
                id.unwrap_or("(null)"),
                name.unwrap_or("(null)")
            ))
        })?;
        self.mark_dirty(c)?;
        self.flush_metadata(c, true)?;
        let snap = self.snapshots.remove(idx);
        if let Err(e) = self.write_snapshot_table(c) {
            self.snapshots.insert(idx, snap);
            return Err(e);
        }
        let l1 = self.read_l1_table(c, snap.l1_offset, snap.l1_size)?;
        self.update_tree_refcounts(c, &l1, -1, false)?;
        let clusters = (snap.l1_size as u64 * 8).div_ceil(self.cs);
        for k in 0..clusters {
            let cl = (snap.l1_offset >> self.cb) + k;
            self.meta.remove(&cl);
            self.update_refcount(c, cl, -1)?;
        }
        self.flush_metadata(c, true)?;
        let active = self.l1.clone();
        self.update_tree_refcounts(c, &active, 0, true)?;
        self.flush_metadata(c, true)?;
        if self.l1_dirty {
            self.write_l1(c)?;
        }
        self.dcache = None;
        Ok(Self::snapshot_info(&snap))
    }

    pub(crate) fn do_snapshot_goto(&mut self, c: &Children, id_or_name: &str) -> BlockResult<()> {
        let idx = self
            .find_snapshot(Some(id_or_name), None)
            .or_else(|| self.find_snapshot(None, Some(id_or_name)))
            .ok_or_else(|| BlockError::NotFound(format!("Can't find snapshot '{}'", id_or_name)))?;
        let snap = self.snapshots[idx].clone();
        if let Some(ds) = snap.disk_size {
            if ds != self.hdr.size {
                return Err(BlockError::Unsupported(
                    "qcow2: Loading snapshots with different disk size is not supported".into(),
                ));
            }
        }
        self.mark_dirty(c)?;
        if snap.l1_size as usize > self.l1.len() {
            self.grow_l1(c, snap.l1_size as u64)?;
        }
        let sn_l1 = self.read_l1_table(c, snap.l1_offset, snap.l1_size)?;
        self.update_tree_refcounts(c, &sn_l1, 1, false)?;
        self.flush_metadata(c, true)?;
        let old = self.l1.clone();
        // Mark snapshot L2 tables as active metadata before the switch.
        for e in &sn_l1 {
            let o = e & L1E_OFFSET_MASK;
            if o != 0 {
                self.meta.insert(o >> self.cb, Meta::ActiveL2);
            }
        }
        for (i, e) in self.l1.iter_mut().enumerate() {
            *e = sn_l1.get(i).copied().unwrap_or(0);
        }
        self.write_l1(c)?;
        self.sync(c)?;
        for e in &old {
            let o = e & L1E_OFFSET_MASK;
            if o != 0 && !sn_l1.iter().any(|s| s & L1E_OFFSET_MASK == o) {
                self.meta.remove(&(o >> self.cb));
            }
        }
        self.update_tree_refcounts(c, &old, -1, false)?;
        self.flush_metadata(c, true)?;
        let active = self.l1.clone();
        self.update_tree_refcounts(c, &active, 0, true)?;
        self.flush_metadata(c, true)?;
        if self.l1_dirty {
            self.write_l1(c)?;
        }
        self.dcache = None;
        Ok(())
    }
}
