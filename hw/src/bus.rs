//! Port-I/O and MMIO buses: address ranges mapped to devices, refusing overlaps.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::error::{HwError, Result};

/// A device reached by port I/O or MMIO. `offset` is relative to the range it was
/// inserted at; `data.len()` is the access size.
pub trait BusDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A shared handle to a device: the bus and the owner both keep one.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

struct Entry {
    len: u64,
    name: String,
    dev: SharedDevice,
}

/// One address space (I/O ports or MMIO).
#[derive(Default)]
pub struct Bus {
    ranges: BTreeMap<u64, Entry>,
}

/// A mapped range, for `info mtree`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusRange {
    pub base: u64,
    pub len: u64,
    pub name: String,
}

impl Bus {
    pub fn new() -> Bus {
        Bus::default()
    }

    /// Maps `dev` at `[base, base+len)`; fails if any byte is already taken.
    pub fn insert(&mut self, dev: SharedDevice, base: u64, len: u64, name: &str) -> Result<()> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(HwError::Overlap { base, len })?;
        if let Some((b, e)) = self.ranges.range(..end).next_back() {
            if b + e.len > base {
                return Err(HwError::Overlap { base, len });
            }
        }
        self.ranges.insert(
            base,
            Entry {
                len,
                name: name.to_string(),
                dev,
            },
        );
        Ok(())
    }

    /// Unmaps the range starting at `base`.
    pub fn remove(&mut self, base: u64) -> Option<SharedDevice> {
        self.ranges.remove(&base).map(|e| e.dev)
    }

    fn find(&self, addr: u64) -> Option<(u64, &Entry)> {
        let (b, e) = self.ranges.range(..=addr).next_back()?;
        (addr < b + e.len).then_some((*b, e))
    }

    /// Dispatches a read; returns false (leaving `data` as all-ones, as an unassigned
    /// access reads on a PC) when nothing is mapped there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((base, e)) => {
                e.dev
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .read(addr - base, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Dispatches a write; returns false when nothing is mapped there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((base, e)) => {
                e.dev
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .write(addr - base, data);
                true
            }
            None => false,
        }
    }

    pub fn ranges(&self) -> Vec<BusRange> {
        self.ranges
            .iter()
            .map(|(b, e)| BusRange {
                base: *b,
                len: e.len,
                name: e.name.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(Vec<(u64, Vec<u8>)>);
    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn overlapping_ranges_are_refused() {
        let mut bus = Bus::new();
        let d: SharedDevice = Arc::new(Mutex::new(Echo(vec![])));
        bus.insert(d.clone(), 0x3f8, 8, "serial").expect("first");
        assert!(bus.insert(d.clone(), 0x3ff, 1, "x").is_err());
        assert!(bus.insert(d.clone(), 0x3f0, 9, "x").is_err());
        assert!(bus.insert(d.clone(), 0x3f0, 8, "x").is_ok());
        assert!(bus.insert(d, 0x400, 0, "empty").is_err());
    }

    #[test]
    fn accesses_reach_the_device_at_their_offset() {
        let mut bus = Bus::new();
        let echo = Arc::new(Mutex::new(Echo(vec![])));
        bus.insert(echo.clone(), 0x70, 2, "rtc").expect("insert");
        let mut b = [0u8; 1];
        assert!(bus.read(0x71, &mut b));
        assert_eq!(b, [1]);
        assert!(bus.write(0x70, &[9]));
        assert!(!bus.read(0x72, &mut b));
        assert_eq!(b, [0xff]);
        assert_eq!(echo.lock().expect("lock").0, vec![(0, vec![9])]);
    }
}
