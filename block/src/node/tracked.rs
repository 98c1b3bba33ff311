//! The requests in flight through a node whose driver wants aligned
//! requests (QEMU's tracked requests): the range each one covers, which are
//! serialising (read-modify-write widens a request to whole blocks and keeps
//! overlapping requests out until it is done), and whom each one waits for.
//!
//! Nodes with an alignment of 1 register nothing: the list stays empty and
//! unallocated there.

use crate::request::Ticket;

/// A request's place in the list; dropping it ends the request (its ticket
/// is released, and the list forgets it on its next use), so a request that
/// fails or is abandoned half-way never holds others back.
#[derive(Debug)]
pub(crate) struct TrackGuard {
    id: u64,
    done: Ticket,
}

impl Drop for TrackGuard {
    fn drop(&mut self) {
        self.done.release();
    }
}

#[derive(Debug)]
struct Entry {
    id: u64,
    /// The range overlap checks use (widened to whole blocks once serialising).
    start: u64,
    end: u64,
    serialising: bool,
    /// Set while the request waits behind another one (the id may be of a
    /// request that has ended since: it stays set until the waiter runs).
    waiting_for: Option<u64>,
    done: Ticket,
}

impl Entry {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start < end && start < self.end
    }
}

/// Requests in flight through one node, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Tracked {
    reqs: Vec<Entry>,
    next_id: u64,
}

impl Tracked {
    /// Registers a request on `offset..offset+len`.
    pub(crate) fn begin(&mut self, offset: u64, len: u64) -> TrackGuard {
        self.prune();
        let id = self.next_id;
        self.next_id += 1;
        let done = Ticket::new();
        self.reqs.push(Entry {
            id,
            start: offset,
            end: offset.saturating_add(len),
            serialising: false,
            waiting_for: None,
            done: done.clone(),
        });
        TrackGuard { id, done }
    }

    /// The request is over: others waiting for it go on.
    pub(crate) fn end(&mut self, g: TrackGuard) {
        self.reqs.retain(|e| e.id != g.id);
    }

    /// Makes the request serialising and widens its range to whole
    /// `align`-sized blocks (QEMU's mark_request_serialising).
    pub(crate) fn mark_serialising(&mut self, g: &TrackGuard, align: u64) {
        if let Some(e) = self.reqs.iter_mut().find(|e| e.id == g.id) {
            let start = e.start & !(align - 1);
            let end = e.end.checked_next_multiple_of(align).unwrap_or(u64::MAX);
            e.serialising = true;
            e.start = e.start.min(start);
            e.end = e.end.max(end);
        }
    }

    /// What the request must wait for before it goes on, as QEMU's
    /// wait_serialising_requests: the newest overlapping request where one
    /// of the two is serialising, skipping requests that wait themselves
    /// (they may wait for this one: waiting for them could deadlock).
    /// None: go on. Call again once the ticket is released.
    pub(crate) fn wait_for(&mut self, g: &TrackGuard) -> Option<Ticket> {
        self.prune();
        if !self.reqs.iter().any(|e| e.serialising) {
            return None;
        }
        let me = self.reqs.iter().position(|e| e.id == g.id)?;
        // Polled again: whatever it waited for is over.
        self.reqs[me].waiting_for = None;
        let (start, end, serialising) = {
            let e = &self.reqs[me];
            (e.start, e.end, e.serialising)
        };
        let other = self.reqs.iter().rev().find(|o| {
            o.id != g.id
                && (o.serialising || serialising)
                && o.overlaps(start, end)
                && o.waiting_for.is_none()
        })?;
        let (id, ticket) = (other.id, other.done.clone());
        self.reqs[me].waiting_for = Some(id);
        Some(ticket)
    }

    /// Forgets requests whose guard was dropped without `end`.
    fn prune(&mut self) {
        self.reqs.retain(|e| !e.done.is_released());
    }

    /// Requests registered and not over.
    #[cfg(test)]
    pub(crate) fn len(&mut self) -> usize {
        self.prune();
        self.reqs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_that_are_not_serialising_never_wait() {
        let mut t = Tracked::default();
        let a = t.begin(0, 4096);
        let b = t.begin(0, 4096);
        assert!(t.wait_for(&a).is_none());
        assert!(t.wait_for(&b).is_none());
    }

    #[test]
    fn a_serialising_request_widens_to_blocks_and_waits_for_the_newest_overlap() {
        let mut t = Tracked::default();
        let old = t.begin(0, 512);
        let newer = t.begin(4096, 512);
        let me = t.begin(3584, 1024);
        t.mark_serialising(&me, 4096);
        let ticket = t.wait_for(&me).expect("overlaps both");
        // The newest overlapping request is the one it waits for.
        t.end(newer);
        assert!(ticket.is_released());
        assert!(!t
            .wait_for(&me)
            .expect("still overlaps the old one")
            .is_released());
        drop(old);
        assert!(t.wait_for(&me).is_none());
    }

    #[test]
    fn a_request_does_not_wait_for_one_that_waits_for_it() {
        let mut t = Tracked::default();
        let first = t.begin(0, 512);
        t.mark_serialising(&first, 4096);
        let second = t.begin(512, 512);
        t.mark_serialising(&second, 4096);
        assert!(t.wait_for(&second).is_some());
        // `first` goes on: the only overlap waits for it.
        assert!(t.wait_for(&first).is_none());
    }

    #[test]
    fn a_dropped_guard_releases_and_unregisters() {
        let mut t = Tracked::default();
        let a = t.begin(0, 512);
        t.mark_serialising(&a, 4096);
        let b = t.begin(0, 512);
        let ticket = t.wait_for(&b).expect("a is serialising");
        drop(a);
        assert!(ticket.is_released());
        assert_eq!(t.len(), 1);
        assert!(t.wait_for(&b).is_none());
    }
}
