//! The writes in flight on one image, as QEMU 2.8's list of cluster
//! allocations: an allocation not linked into its L2 table yet, which later
//! writes to the same guest clusters must wait for, and an overwrite of
//! allocated clusters stopped before its data went out, which discard and
//! zero writes wait for. While either kind is in flight, nothing may
//! restructure the image's metadata.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::request::Ticket;

struct Entry {
    id: u64,
    /// Guest bytes, whole clusters.
    start: u64,
    end: u64,
    alloc: bool,
    /// Created when a request first waits on the entry.
    ticket: Option<Ticket>,
}

#[derive(Default)]
struct List {
    entries: Vec<Entry>,
    next_id: u64,
}

/// Shared with the requests' guards, so a request dropped before it
/// finished still takes its entry off.
#[derive(Clone, Default)]
pub(crate) struct InFlight(Arc<Shared>);

#[derive(Default)]
struct Shared {
    /// The number of entries, so that the usual empty list costs no lock.
    len: AtomicUsize,
    list: Mutex<List>,
}

/// One entry; dropping it removes the entry and lets its waiters go on.
pub(crate) struct Guard {
    list: InFlight,
    id: u64,
}

/// What a write may do at an offset, given the allocations in flight.
pub(crate) enum Dependency {
    /// Go on with at most this many bytes (stopping short of an allocation).
    Clear(u64),
    /// Wait until this allocation is over, then look again.
    Wait(Ticket),
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, List> {
        match self.0.list.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Enters guest range `start..end` (whole clusters).
    pub(crate) fn register(&self, start: u64, end: u64, alloc: bool) -> Guard {
        let mut l = self.lock();
        l.next_id += 1;
        let id = l.next_id;
        l.entries.push(Entry {
            id,
            start,
            end,
            alloc,
            ticket: None,
        });
        self.0.len.store(l.entries.len(), Ordering::Release);
        Guard {
            list: self.clone(),
            id,
        }
    }

    /// QEMU's handle_dependencies for a write of `len` bytes at `off`: one
    /// starting inside an allocation waits for it, one reaching into an
    /// allocation further on stops short of it.
    pub(crate) fn write_dependency(&self, off: u64, len: u64) -> Dependency {
        if self.is_empty() {
            return Dependency::Clear(len);
        }
        let mut l = self.lock();
        let end = off + len;
        let mut avail = len;
        for e in l.entries.iter_mut().filter(|e| e.alloc) {
            if e.end <= off || e.start >= end {
                continue;
            }
            if e.start <= off {
                return Dependency::Wait(e.ticket.get_or_insert_with(Ticket::new).clone());
            }
            avail = avail.min(e.start - off);
        }
        Dependency::Clear(avail)
    }

    /// An entry of either kind overlapping `start..end`, to wait for.
    pub(crate) fn overlapping(&self, start: u64, end: u64) -> Option<Ticket> {
        if self.is_empty() {
            return None;
        }
        let mut l = self.lock();
        l.entries
            .iter_mut()
            .find(|e| e.start < end && start < e.end)
            .map(|e| e.ticket.get_or_insert_with(Ticket::new).clone())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.len.load(Ordering::Acquire) == 0
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let ticket = {
            let mut l = self.list.lock();
            let Some(i) = l.entries.iter().position(|e| e.id == self.id) else {
                return;
            };
            let e = l.entries.swap_remove(i);
            self.list.0.len.store(l.entries.len(), Ordering::Release);
            e.ticket
        };
        if let Some(t) = ticket {
            t.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_starting_inside_an_allocation_waits_until_its_guard_drops() {
        let l = InFlight::default();
        let g = l.register(0x10000, 0x20000, true);
        let Dependency::Wait(t) = l.write_dependency(0x12000, 0x2000) else {
            panic!("no wait");
        };
        assert!(!t.is_released());
        drop(g);
        assert!(t.is_released());
        assert!(l.is_empty());
        assert!(matches!(
            l.write_dependency(0x12000, 0x2000),
            Dependency::Clear(0x2000)
        ));
    }

    #[test]
    fn a_write_reaching_into_an_allocation_stops_short_of_it() {
        let l = InFlight::default();
        let _a = l.register(0xd0000, 0xe0000, true);
        let _b = l.register(0xf0000, 0x100000, true);
        assert!(matches!(
            l.write_dependency(0xc4000, 0x40000),
            Dependency::Clear(0xc000)
        ));
    }

    #[test]
    fn overwrites_hold_back_discards_but_not_writes() {
        let l = InFlight::default();
        let _g = l.register(0, 0x10000, false);
        assert!(matches!(
            l.write_dependency(0, 0x1000),
            Dependency::Clear(0x1000)
        ));
        assert!(l.overlapping(0x8000, 0x9000).is_some());
        assert!(l.overlapping(0x10000, 0x20000).is_none());
    }
}
