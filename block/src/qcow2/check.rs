//! Rebuilding refcounts from the metadata that references clusters, for images
//! left dirty by a crash with lazy refcounts (QEMU repairs them on open too).

use std::collections::HashMap;

use super::{Qcow2, L1E_OFFSET_MASK, L2E_OFFSET_MASK, OFLAG_COMPRESSED};
use crate::driver::Children;
use crate::error::BlockResult;

impl Qcow2 {
    fn count_range(&self, exp: &mut HashMap<u64, u64>, off: u64, bytes: u64) {
        // References past the end of the file are corrupt; counting them would
        // only create refcount blocks far outside the image.
        if bytes == 0 || off >= self.file_len.next_multiple_of(self.cs) {
            return;
        }
        for cl in (off >> self.cb)..=((off + bytes - 1) >> self.cb) {
            *exp.entry(cl).or_insert(0) += 1;
        }
    }

    fn count_tree(
        &mut self,
        c: &Children,
        exp: &mut HashMap<u64, u64>,
        l1: &[u64],
    ) -> BlockResult<()> {
        let cs = self.cs;
        for &l1e in l1 {
            let l2_off = l1e & L1E_OFFSET_MASK;
            if l2_off == 0 || !l2_off.is_multiple_of(cs) || l2_off >= self.file_len {
                continue;
            }
            self.count_range(exp, l2_off, cs);
            let slot = self.get_l2(c, l2_off)?;
            let table = self.l2.slots[slot].table.clone();
            for e in table {
                if e & OFLAG_COMPRESSED != 0 {
                    let coff = e & self.coff_mask;
                    let nsect = ((e >> self.csize_shift) & self.csize_mask) + 1;
                    let start = coff & !511;
                    self.count_range(exp, start, nsect * 512);
                } else if e & L2E_OFFSET_MASK != 0 {
                    self.count_range(exp, e & L2E_OFFSET_MASK, cs);
                }
            }
        }
        Ok(())
    }

    /// Makes every refcount match the references found in the image.
    pub(crate) fn rebuild_refcounts(&mut self, c: &Children) -> BlockResult<()> {
        let cs = self.cs;
        let mut exp: HashMap<u64, u64> = HashMap::new();
        self.count_range(&mut exp, 0, cs);
        self.count_range(&mut exp, self.hdr.l1_table_offset, self.l1.len() as u64 * 8);
        let l1 = self.l1.clone();
        self.count_tree(c, &mut exp, &l1)?;
        self.count_range(
            &mut exp,
            self.hdr.refcount_table_offset,
            self.hdr.refcount_table_clusters as u64 * cs,
        );
        let table = self.rc.table.clone();
        for off in table.iter().copied().filter(|&o| o != 0) {
            self.count_range(&mut exp, off, cs);
        }
        if self.hdr.nb_snapshots > 0 {
            self.count_range(&mut exp, self.hdr.snapshots_offset, self.snap_table_bytes);
        }
        let snaps = self.snapshots.clone();
        for s in &snaps {
            self.count_range(&mut exp, s.l1_offset, s.l1_size as u64 * 8);
            let mut raw = vec![0u8; s.l1_size as usize * 8];
            self.pread(c, s.l1_offset, &mut raw)?;
            let sl1: Vec<u64> = (0..s.l1_size as usize)
                .map(|i| super::be64_at(&raw, i))
                .collect();
            self.count_tree(c, &mut exp, &sl1)?;
        }
        let max_cl = exp
            .keys()
            .copied()
            .max()
            .map(|m| m + 1)
            .unwrap_or(0)
            .max(self.file_len.div_ceil(cs));
        for cl in 0..max_cl {
            let want = exp.get(&cl).copied().unwrap_or(0);
            if self.get_refcount(c, cl)? != want {
                self.set_refcount(c, cl, want)?;
            }
        }
        self.free_cluster_index = 0;
        self.update_tree_refcounts(c, &l1, 0, true)?;
        if self.l1_dirty {
            self.flush_metadata(c, true)?;
            self.write_l1(c)?;
        }
        Ok(())
    }
}
