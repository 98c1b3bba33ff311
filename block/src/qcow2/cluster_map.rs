//! Maps keyed by cluster numbers or host offsets (the metadata map, the L2
//! and refcount caches): looked up several times per request, so they hash
//! a `u64` with a short mixer instead of the default SipHash, which guards
//! against attacker-chosen keys that these maps never see as such (keys are
//! offsets the image itself names, each bounded by the file size).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `u64` key through splitmix64's finalizer: every input bit reaches the
/// low bits the table indexes with, also for offsets that are multiples of
/// a large cluster size.
#[derive(Default, Clone, Copy)]
pub(crate) struct ClusterHasher(u64);

impl Hasher for ClusterHasher {
    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 30;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 27;
        x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are used; other writes still mix every byte in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 ^= v;
    }
}

/// A map from a cluster number or offset to `V`.
pub(crate) type ClusterMap<V> = HashMap<u64, V, BuildHasherDefault<ClusterHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_aligned_offsets_spread_over_the_low_bits() {
        let lows: std::collections::HashSet<u64> = (0..1024u64)
            .map(|i| {
                let mut h = ClusterHasher::default();
                h.write_u64(i << 16);
                h.finish() & 1023
            })
            .collect();
        assert!(lows.len() > 550, "{} distinct buckets of 1024", lows.len());
    }
}
