//! Dirty bitmaps: which granules of a node were written since the bitmap was
//! created or cleared. Each node keeps its bitmaps in a `DirtyBitmaps` list; every
//! write, write-zeroes and discard on the node marks them (see `tracking`).
//!
//! The bit store is two-level (a summary bit per 64-bit word) so that iterating a
//! mostly clean bitmap of a large disk skips clean regions quickly.
//!
//! QEMU 2.8 facts kept: query-block's `count` is the number of dirty *sectors*
//! (whole granules), not bytes; bitmaps are listed newest first; a bitmap with a
//! successor (in use by a backup job) is `frozen` and cannot be changed.

use serde_json::{json, Value};

use crate::error::{BlockError, BlockResult};

/// Smallest granularity QEMU allows.
pub const MIN_GRANULARITY: u64 = 512;

/// Most granules one bitmap may track (128 MiB of bits): a small granularity on
/// a huge device is refused instead of exhausting memory.
pub const MAX_GRANULES: u64 = 1 << 30;

/// A plain bitmap over granules with a summary level.
#[derive(Debug, Clone, Default)]
struct Bits {
    words: Vec<u64>,
    summary: Vec<u64>,
    count: u64,
    nbits: u64,
}

impl Bits {
    fn new(nbits: u64) -> Bits {
        let nw = nbits.div_ceil(64) as usize;
        Bits {
            words: vec![0; nw],
            summary: vec![0; nw.div_ceil(64)],
            count: 0,
            nbits,
        }
    }

    fn get(&self, bit: u64) -> bool {
        bit < self.nbits && self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0
    }

    fn update_summary(&mut self, w: usize) {
        let (s, b) = (w / 64, w % 64);
        if self.words[w] != 0 {
            self.summary[s] |= 1 << b;
        } else {
            self.summary[s] &= !(1 << b);
        }
    }

    /// Sets or clears bits `first..=last` (clipped to the bitmap).
    fn change(&mut self, first: u64, last: u64, set: bool) {
        if first >= self.nbits {
            return;
        }
        let last = last.min(self.nbits - 1);
        let (fw, lw) = ((first / 64) as usize, (last / 64) as usize);
        for w in fw..=lw {
            let lo = if w == fw { first % 64 } else { 0 };
            let hi = if w == lw { last % 64 } else { 63 };
            let mask = (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
            let old = self.words[w];
            let new = if set { old | mask } else { old & !mask };
            if new != old {
                let (o, n) = (u64::from(old.count_ones()), u64::from(new.count_ones()));
                self.count = self.count + n - o;
                self.words[w] = new;
                self.update_summary(w);
            }
        }
    }

    /// First set bit at or after `from`.
    fn next_set(&self, from: u64) -> Option<u64> {
        if from >= self.nbits {
            return None;
        }
        let mut w = (from / 64) as usize;
        let first = self.words[w] & (u64::MAX << (from % 64));
        if first != 0 {
            return Some(w as u64 * 64 + u64::from(first.trailing_zeros()));
        }
        w += 1;
        while w < self.words.len() {
            let (s, b) = (w / 64, w % 64);
            let sum = self.summary[s] & (u64::MAX << b);
            if sum == 0 {
                w = (s + 1) * 64;
                continue;
            }
            w = s * 64 + sum.trailing_zeros() as usize;
            let word = self.words[w];
            return Some(w as u64 * 64 + u64::from(word.trailing_zeros()));
        }
        None
    }

    /// First clear bit at or after `from` (or `nbits`).
    fn next_clear(&self, from: u64) -> u64 {
        let mut bit = from;
        while bit < self.nbits {
            let w = (bit / 64) as usize;
            let inv = !self.words[w] & (u64::MAX << (bit % 64));
            if inv != 0 {
                return (w as u64 * 64 + u64::from(inv.trailing_zeros())).min(self.nbits);
            }
            bit = (w as u64 + 1) * 64;
        }
        self.nbits
    }

    fn resize(&mut self, nbits: u64) {
        if nbits < self.nbits {
            self.change(nbits, self.nbits - 1, false);
        }
        let nw = nbits.div_ceil(64) as usize;
        self.words.resize(nw, 0);
        self.summary.resize(nw.div_ceil(64), 0);
        self.nbits = nbits;
        if !nbits.is_multiple_of(64) {
            if let Some(w) = self.words.last_mut() {
                *w &= u64::MAX >> (64 - nbits % 64);
            }
        }
        self.count = self.words.iter().map(|w| u64::from(w.count_ones())).sum();
        for w in 0..self.words.len() {
            self.update_summary(w);
        }
    }
}

/// DirtyBitmapStatus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitmapStatus {
    Active,
    Disabled,
    Frozen,
}

impl BitmapStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BitmapStatus::Active => "active",
            BitmapStatus::Disabled => "disabled",
            BitmapStatus::Frozen => "frozen",
        }
    }
}

/// One dirty bitmap of a node.
#[derive(Debug, Clone)]
pub struct DirtyBitmap {
    name: Option<String>,
    granularity: u64,
    shift: u32,
    size: u64,
    bits: Bits,
    disabled: bool,
    /// Takes new writes while a job uses this bitmap's contents.
    successor: Option<Box<DirtyBitmap>>,
}

impl DirtyBitmap {
    /// A clean bitmap over `size` bytes; `granularity` must be a power of two >= 512.
    pub fn new(name: Option<String>, granularity: u64, size: u64) -> BlockResult<DirtyBitmap> {
        check_granularity(granularity)?;
        if size.div_ceil(granularity) > MAX_GRANULES {
            return Err(BlockError::InvalidArgument(format!(
                "Dirty bitmap of {} bytes with granularity {} is too large",
                size, granularity
            )));
        }
        let shift = granularity.trailing_zeros();
        Ok(DirtyBitmap {
            name,
            granularity,
            shift,
            size,
            bits: Bits::new(size.div_ceil(granularity)),
            disabled: false,
            successor: None,
        })
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn granularity(&self) -> u64 {
        self.granularity
    }

    /// Bytes covered.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn status(&self) -> BitmapStatus {
        if self.successor.is_some() {
            BitmapStatus::Frozen
        } else if self.disabled {
            BitmapStatus::Disabled
        } else {
            BitmapStatus::Active
        }
    }

    pub fn is_enabled(&self) -> bool {
        !self.disabled && self.successor.is_none()
    }

    pub fn is_frozen(&self) -> bool {
        self.successor.is_some()
    }

    /// Stops (or resumes) tracking writes.
    pub fn set_enabled(&mut self, on: bool) {
        self.disabled = !on;
    }

    /// Records a write of `len` bytes at `offset` (whole granules get dirty).
    /// A frozen bitmap passes the write to its successor; a disabled one ignores it.
    pub fn mark(&mut self, offset: u64, len: u64) {
        if let Some(s) = &mut self.successor {
            s.mark(offset, len);
            return;
        }
        if self.disabled {
            return;
        }
        self.set_range(offset, len);
    }

    /// Marks a range dirty regardless of state (jobs re-dirtying failed ranges).
    pub fn set_range(&mut self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let last = offset.saturating_add(len - 1);
        self.bits
            .change(offset >> self.shift, last >> self.shift, true);
    }

    /// Marks the granules inside a range clean.
    pub fn reset_range(&mut self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let last = offset.saturating_add(len - 1);
        self.bits
            .change(offset >> self.shift, last >> self.shift, false);
    }

    /// Marks everything clean.
    pub fn clear(&mut self) {
        self.bits = Bits::new(self.bits.nbits);
    }

    pub fn is_dirty(&self, offset: u64) -> bool {
        self.bits.get(offset >> self.shift)
    }

    /// Dirty granules.
    pub fn dirty_granules(&self) -> u64 {
        self.bits.count
    }

    /// Dirty bytes counted in whole granules.
    pub fn count_bytes(&self) -> u64 {
        self.bits.count << self.shift
    }

    /// Dirty 512-byte sectors in whole granules (QEMU 2.8's reported `count`).
    pub fn count_sectors(&self) -> u64 {
        self.count_bytes() >> 9
    }

    /// Dirty ranges in bytes, in order, from `offset` on; the last range is
    /// clipped to the device size.
    pub fn dirty_ranges(&self, offset: u64) -> DirtyRanges<'_> {
        DirtyRanges {
            bm: self,
            next_bit: offset >> self.shift,
        }
    }

    /// Follows a device resize (growth past `MAX_GRANULES` is not tracked).
    pub fn resize(&mut self, size: u64) {
        self.size = size;
        self.bits
            .resize(size.div_ceil(self.granularity).min(MAX_GRANULES));
        if let Some(s) = &mut self.successor {
            s.resize(size);
        }
    }

    /// Freezes the bitmap for a job: new writes go to an anonymous successor.
    pub fn create_successor(&mut self) -> BlockResult<()> {
        if self.is_frozen() {
            return Err(BlockError::Generic(
                "Cannot create a successor for a bitmap that is currently frozen".into(),
            ));
        }
        if self.disabled {
            return Err(BlockError::Generic(
                "Cannot create a successor for a bitmap that is currently disabled".into(),
            ));
        }
        let mut s = DirtyBitmap::new(None, self.granularity, self.size)?;
        s.disabled = false;
        self.successor = Some(Box::new(s));
        Ok(())
    }

    /// The job succeeded: the successor's contents replace this bitmap's.
    pub fn abdicate(&mut self) -> BlockResult<()> {
        let s = self.successor.take().ok_or_else(|| {
            BlockError::Generic("Cannot relinquish control if there's no successor present".into())
        })?;
        self.bits = s.bits;
        Ok(())
    }

    /// The job failed: the successor's dirty granules are merged back in.
    pub fn reclaim(&mut self) -> BlockResult<()> {
        let s = self.successor.take().ok_or_else(|| {
            BlockError::Generic("Cannot reclaim a successor when none is present".into())
        })?;
        for (off, len) in s.dirty_ranges(0) {
            self.set_range(off, len);
        }
        Ok(())
    }

    /// BlockDirtyInfo.
    pub fn info_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        if let Some(n) = &self.name {
            m.insert("name".into(), json!(n));
        }
        m.insert("count".into(), json!(self.count_sectors()));
        m.insert("granularity".into(), json!(self.granularity));
        m.insert("status".into(), json!(self.status().as_str()));
        Value::Object(m)
    }
}

/// Iterator over dirty byte ranges `(offset, len)`.
pub struct DirtyRanges<'a> {
    bm: &'a DirtyBitmap,
    next_bit: u64,
}

impl Iterator for DirtyRanges<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        let first = self.bm.bits.next_set(self.next_bit)?;
        let end = self.bm.bits.next_clear(first);
        self.next_bit = end;
        let off = first << self.bm.shift;
        let stop = (end << self.bm.shift).min(self.bm.size);
        Some((off, stop.saturating_sub(off)))
    }
}

fn check_granularity(g: u64) -> BlockResult<()> {
    if g < MIN_GRANULARITY || !g.is_power_of_two() || g > u64::from(u32::MAX) {
        return Err(BlockError::InvalidArgument(
            "Granularity must be power of 2, and at least 512".into(),
        ));
    }
    Ok(())
}

/// QEMU's default granularity: the cluster size clamped to 4 KiB..64 KiB, else 64 KiB.
pub fn default_granularity(cluster_size: Option<u64>) -> u64 {
    match cluster_size {
        Some(c) if c > 0 => c.clamp(4096, 65536),
        _ => 65536,
    }
}

/// The bitmaps of one node, newest first (the order query-block lists them).
#[derive(Debug, Clone, Default)]
pub struct DirtyBitmaps {
    list: Vec<DirtyBitmap>,
}

impl DirtyBitmaps {
    /// block-dirty-bitmap-add. `granularity` None picks QEMU's default from the
    /// node's cluster size.
    pub fn add(
        &mut self,
        name: &str,
        granularity: Option<u64>,
        cluster_size: Option<u64>,
        size: u64,
    ) -> BlockResult<()> {
        if name.is_empty() {
            return Err(BlockError::InvalidArgument(
                "Bitmap name cannot be empty".into(),
            ));
        }
        let g = match granularity {
            Some(g) => {
                check_granularity(g)?;
                g
            }
            None => default_granularity(cluster_size),
        };
        if self.get(name).is_some() {
            return Err(BlockError::Generic(format!(
                "Bitmap already exists: {}",
                name
            )));
        }
        self.list
            .insert(0, DirtyBitmap::new(Some(name.to_string()), g, size)?);
        Ok(())
    }

    /// Adds an anonymous bitmap (mirror and backup jobs); returns its index.
    pub fn add_anonymous(&mut self, granularity: u64, size: u64) -> BlockResult<usize> {
        self.list
            .insert(0, DirtyBitmap::new(None, granularity, size)?);
        Ok(0)
    }

    fn not_found(name: &str) -> BlockError {
        BlockError::Generic(format!("Dirty bitmap '{}' not found", name))
    }

    /// block-dirty-bitmap-remove.
    pub fn remove(&mut self, name: &str) -> BlockResult<()> {
        let pos = self
            .list
            .iter()
            .position(|b| b.name() == Some(name))
            .ok_or_else(|| Self::not_found(name))?;
        if self.list[pos].is_frozen() {
            return Err(BlockError::Generic(format!(
                "Bitmap '{}' is currently frozen and cannot be removed",
                name
            )));
        }
        self.list.remove(pos);
        Ok(())
    }

    /// block-dirty-bitmap-clear.
    pub fn clear(&mut self, name: &str) -> BlockResult<()> {
        let b = self.get_mut(name).ok_or_else(|| Self::not_found(name))?;
        if b.is_frozen() {
            return Err(BlockError::Generic(format!(
                "Bitmap '{}' is currently frozen and cannot be modified",
                name
            )));
        }
        if b.disabled {
            return Err(BlockError::Generic(format!(
                "Bitmap '{}' is currently disabled and cannot be cleared",
                name
            )));
        }
        b.clear();
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&DirtyBitmap> {
        self.list.iter().find(|b| b.name() == Some(name))
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut DirtyBitmap> {
        self.list.iter_mut().find(|b| b.name() == Some(name))
    }

    /// Like `get` but with QEMU's "not found" error.
    pub fn lookup(&self, name: &str) -> BlockResult<&DirtyBitmap> {
        self.get(name).ok_or_else(|| Self::not_found(name))
    }

    pub fn lookup_mut(&mut self, name: &str) -> BlockResult<&mut DirtyBitmap> {
        self.get_mut(name).ok_or_else(|| Self::not_found(name))
    }

    /// All bitmaps, newest first (anonymous ones included).
    pub fn all(&self) -> &[DirtyBitmap] {
        &self.list
    }

    pub fn all_mut(&mut self) -> &mut [DirtyBitmap] {
        &mut self.list
    }

    /// Removes a bitmap by index (anonymous job bitmaps).
    pub fn remove_index(&mut self, idx: usize) -> Option<DirtyBitmap> {
        (idx < self.list.len()).then(|| self.list.remove(idx))
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Marks every bitmap dirty for a write/write-zeroes/discard.
    pub fn mark(&mut self, offset: u64, len: u64) {
        for b in &mut self.list {
            b.mark(offset, len);
        }
    }

    pub fn resize(&mut self, size: u64) {
        for b in &mut self.list {
            b.resize(size);
        }
    }

    /// query-block's `dirty-bitmaps` list (None when there are none: QEMU omits it).
    pub fn info_json(&self) -> Option<Value> {
        if self.list.is_empty() {
            return None;
        }
        Some(Value::Array(
            self.list.iter().map(DirtyBitmap::info_json).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_dirty_whole_granules_and_count_in_sectors() {
        let mut b = DirtyBitmap::new(Some("b".into()), 65536, 1 << 30).unwrap();
        b.mark(1000, 10);
        b.mark(65536 * 3 - 1, 2);
        assert_eq!(b.dirty_granules(), 3);
        assert_eq!(b.count_bytes(), 3 * 65536);
        assert_eq!(b.count_sectors(), 3 * 128);
        assert!(b.is_dirty(0) && !b.is_dirty(65536) && b.is_dirty(65536 * 2));
    }

    #[test]
    fn dirty_ranges_merge_adjacent_granules_and_clip_to_size() {
        let mut b = DirtyBitmap::new(None, 512, 10 * 512 + 100).unwrap();
        b.mark(0, 1024);
        b.mark(4096, 1);
        b.mark(10 * 512, 1);
        let r: Vec<_> = b.dirty_ranges(0).collect();
        assert_eq!(r, vec![(0, 1024), (4096, 512), (5120, 100)]);
        let r: Vec<_> = b.dirty_ranges(1024).collect();
        assert_eq!(r, vec![(4096, 512), (5120, 100)]);
    }

    #[test]
    fn iteration_skips_large_clean_regions() {
        let mut b = DirtyBitmap::new(None, 512, 1 << 36).unwrap();
        b.mark((1 << 36) - 512, 512);
        b.mark(1 << 20, 512 * 130);
        let r: Vec<_> = b.dirty_ranges(0).collect();
        assert_eq!(r, vec![(1 << 20, 512 * 130), ((1 << 36) - 512, 512)]);
        b.reset_range(1 << 20, 512 * 130);
        assert_eq!(b.dirty_granules(), 1);
    }

    #[test]
    fn bad_granularity_is_refused_with_qemu_message() {
        let mut l = DirtyBitmaps::default();
        for g in [256, 1000, 0] {
            let e = l.add("x", Some(g), None, 1 << 20).unwrap_err();
            assert_eq!(
                e.to_string(),
                "Granularity must be power of 2, and at least 512"
            );
        }
    }

    #[test]
    fn duplicate_and_missing_names_get_qemu_errors() {
        let mut l = DirtyBitmaps::default();
        l.add("a", None, Some(65536), 1 << 20).unwrap();
        let e = l.add("a", None, None, 1 << 20).unwrap_err();
        assert_eq!(e.to_string(), "Bitmap already exists: a");
        let e = l.remove("zz").unwrap_err();
        assert_eq!(e.to_string(), "Dirty bitmap 'zz' not found");
        let e = l.add("", None, None, 1).unwrap_err();
        assert_eq!(e.to_string(), "Bitmap name cannot be empty");
    }

    #[test]
    fn default_granularity_follows_cluster_size() {
        assert_eq!(default_granularity(Some(512)), 4096);
        assert_eq!(default_granularity(Some(65536)), 65536);
        assert_eq!(default_granularity(Some(2 << 20)), 65536);
        assert_eq!(default_granularity(None), 65536);
    }

    #[test]
    fn frozen_bitmap_refuses_remove_and_clear_and_routes_writes_to_successor() {
        let mut l = DirtyBitmaps::default();
        l.add("a", Some(512), None, 1 << 20).unwrap();
        l.mark(0, 512);
        l.get_mut("a").unwrap().create_successor().unwrap();
        l.mark(4096, 512);
        let b = l.get("a").unwrap();
        assert_eq!(b.status(), BitmapStatus::Frozen);
        assert_eq!(b.dirty_granules(), 1);
        assert!(l
            .remove("a")
            .unwrap_err()
            .to_string()
            .contains("frozen and cannot be removed"));
        assert!(l
            .clear("a")
            .unwrap_err()
            .to_string()
            .contains("frozen and cannot be modified"));
        l.get_mut("a").unwrap().reclaim().unwrap();
        assert_eq!(l.get("a").unwrap().dirty_granules(), 2);
    }

    #[test]
    fn abdicate_keeps_only_writes_made_during_the_job() {
        let mut b = DirtyBitmap::new(Some("a".into()), 512, 1 << 20).unwrap();
        b.mark(0, 512);
        b.create_successor().unwrap();
        b.mark(8192, 512);
        b.abdicate().unwrap();
        assert_eq!(b.dirty_ranges(0).collect::<Vec<_>>(), vec![(8192, 512)]);
        assert_eq!(b.status(), BitmapStatus::Active);
    }

    #[test]
    fn disabled_bitmap_ignores_writes_and_refuses_clear() {
        let mut l = DirtyBitmaps::default();
        l.add("a", Some(512), None, 4096).unwrap();
        l.get_mut("a").unwrap().set_enabled(false);
        l.mark(0, 4096);
        assert_eq!(l.get("a").unwrap().dirty_granules(), 0);
        let e = l.clear("a").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Bitmap 'a' is currently disabled and cannot be cleared"
        );
    }

    #[test]
    fn info_lists_newest_first_with_qemu_fields() {
        let mut l = DirtyBitmaps::default();
        assert!(l.info_json().is_none());
        l.add("old", Some(512), None, 4096).unwrap();
        l.add("new", Some(1024), None, 4096).unwrap();
        l.mark(0, 1);
        let v = l.info_json().unwrap();
        assert_eq!(
            v,
            json!([
                {"name": "new", "count": 2, "granularity": 1024, "status": "active"},
                {"name": "old", "count": 1, "granularity": 512, "status": "active"}
            ])
        );
    }

    #[test]
    fn shrinking_drops_dirty_bits_past_the_end() {
        let mut b = DirtyBitmap::new(None, 512, 1 << 20).unwrap();
        b.mark(0, 1 << 20);
        b.resize(4096 + 100);
        assert_eq!(b.dirty_granules(), 9);
        b.resize(1 << 20);
        assert_eq!(b.dirty_granules(), 9);
    }

    #[test]
    fn huge_bitmaps_are_refused_not_allocated() {
        let mut l = DirtyBitmaps::default();
        assert!(l.add("big", Some(512), None, 1 << 62).is_err());
        assert!(l.all().is_empty());
    }
}
