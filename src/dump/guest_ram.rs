//! The dumper's view of guest RAM: a list of RAM ranges and a way to copy
//! guest-physical bytes out of them.

/// One contiguous range of guest RAM, in guest-physical addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RamRange {
    pub gpa: u64,
    pub len: u64,
}

impl RamRange {
    pub fn end(&self) -> u64 {
        self.gpa.saturating_add(self.len)
    }

    pub fn contains(&self, gpa: u64) -> bool {
        gpa >= self.gpa && gpa < self.end()
    }
}

/// Guest RAM as the dump sees it. The guest must stay stopped while a dump
/// runs, so the contents do not change between reads.
///
/// Compression workers read pages from other threads, hence `Send + Sync`.
pub trait GuestRam: Send + Sync {
    /// RAM ranges that belong in a dump (RAM and ROM, not MMIO), in
    /// ascending address order and not overlapping, as QEMU lists its
    /// guest-physical blocks (ranges contiguous in both guest and host
    /// memory already joined into one).
    fn ranges(&self) -> Vec<RamRange>;

    /// Copies `buf.len()` bytes at guest-physical `gpa` into `buf`. Returns
    /// false, leaving `buf` unspecified, when any byte lies outside RAM.
    fn read_phys(&self, gpa: u64, buf: &mut [u8]) -> bool;
}
