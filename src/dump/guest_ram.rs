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

    /// Hands `f` the `len` bytes at `gpa`, in order and in pieces of any
    /// size. RAM that is mapped in the host should pass slices of the
    /// mapping so ELF dumps write straight from guest memory; the default
    /// copies through [`GuestRam::read_phys`]. `f` returns false to stop.
    /// Returns false when stopped or when a byte lies outside RAM.
    fn visit_phys(&self, gpa: u64, len: u64, f: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        const CHUNK: u64 = 1 << 20;
        let mut buf = vec![0u8; len.min(CHUNK) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK) as usize;
            let Some(at) = gpa.checked_add(done) else {
                return false;
            };
            if !self.read_phys(at, &mut buf[..n]) || !f(&buf[..n]) {
                return false;
            }
            done += n as u64;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only `read_phys`, so `visit_phys` takes the default path.
    struct Counting(Vec<u8>);

    impl GuestRam for Counting {
        fn ranges(&self) -> Vec<RamRange> {
            vec![RamRange {
                gpa: 0x1000,
                len: self.0.len() as u64,
            }]
        }

        fn read_phys(&self, gpa: u64, buf: &mut [u8]) -> bool {
            let Some(at) = gpa.checked_sub(0x1000) else {
                return false;
            };
            match self.0.get(at as usize..at as usize + buf.len()) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    true
                }
                None => false,
            }
        }
    }

    #[test]
    fn default_visit_phys_hands_over_every_byte_in_order() {
        let ram = Counting((0..3u32 << 20).map(|i| (i % 251) as u8).collect());
        let mut seen = Vec::new();

        let ok = ram.visit_phys(0x1000 + 5, (3 << 20) - 5, &mut |s| {
            seen.extend_from_slice(s);
            true
        });

        assert!(ok);
        assert!(seen == ram.0[5..]);
    }

    #[test]
    fn default_visit_phys_fails_past_the_end_of_ram() {
        let ram = Counting(vec![1; 8192]);
        assert!(!ram.visit_phys(0x1000, 8193, &mut |_| true));
        assert!(!ram.visit_phys(0x1000, 8192, &mut |_| false));
    }
}
