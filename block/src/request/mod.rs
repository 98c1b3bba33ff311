//! Requests that can stop and go on later: at a blkdebug breakpoint, or
//! behind another request they must not overtake (a qcow2 cluster
//! allocation still in flight, an overlapping read-modify-write).
//!
//! There are no coroutines here. A request is a state machine its owner
//! polls: a poll does bounded synchronous I/O and returns `Poll::Ready` with
//! the result, or `Poll::Pending` once the request has stopped. A request
//! holds no lock between polls, so the monitor and other requests carry on
//! while it waits. What it waits for is a set of `Ticket`s (`Wait`),
//! released by qemu-io's `resume`/`remove_break` or by the request it waits
//! behind; the `Inflight` queue polls it again after that.
//!
//! Each layer keeps its part of the request: the node layer a `WriteOp` or
//! `ReadOp`, a driver its private state in `DriverReq::state`, and a layer
//! that stops records what it waits for in the `gate` of its request, which
//! the layer above checks before it polls again.
//!
//! Breakpoints are armed only inside `breakpoint::armed` (the `Inflight`
//! queue opens one around every poll): a synchronous caller could never be
//! resumed, so it passes a breakpoint without stopping and leaves it set.

pub mod breakpoint;
pub mod inflight;

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{BlockError, BlockResult};

pub use inflight::{AsyncRequest, Inflight, InflightHandle};

/// How far a polled request got.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll<T> {
    /// Finished, with this result.
    Ready(T),
    /// Stopped; poll again once what it waits for is over.
    Pending,
}

/// Bumped on every ticket release, so a poller can tell whether another pass
/// could get further.
static RELEASES: AtomicU64 = AtomicU64::new(0);

/// The number of ticket releases so far.
pub fn release_count() -> u64 {
    RELEASES.load(Ordering::Acquire)
}

/// One thing a request waits for: a breakpoint's `resume`, or the end of
/// another request. Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct Ticket(Arc<AtomicBool>);

impl Ticket {
    pub fn new() -> Ticket {
        Ticket::default()
    }

    /// Lets everything that waits on this ticket go on.
    pub fn release(&self) {
        if !self.0.swap(true, Ordering::AcqRel) {
            RELEASES.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub fn is_released(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Everything a stopped request waits for; over when every ticket is released.
/// Nearly every request waits for nothing: then it is a null pointer, with
/// nothing to build, scan or drop (a `Vec` would be three words, and its
/// drop a loop the compiler keeps inline in every request's drop).
#[derive(Debug, Default)]
#[allow(clippy::box_collection)]
pub struct Wait(Option<Box<Vec<Ticket>>>);

impl Wait {
    #[inline]
    pub fn none() -> Wait {
        Wait(None)
    }

    pub fn on(ticket: Ticket) -> Wait {
        Wait(Some(Box::new(vec![ticket])))
    }

    pub fn push(&mut self, ticket: Ticket) {
        self.0.get_or_insert_default().push(ticket);
    }

    /// Adds what `other` waits for.
    pub fn extend(&mut self, mut other: Wait) {
        match (&mut self.0, other.0.take()) {
            (_, None) => {}
            (Some(mine), Some(theirs)) => mine.extend(*theirs),
            (mine @ None, theirs) => *mine = theirs,
        }
    }

    /// True when there is nothing (left) to wait for; drops released tickets.
    #[inline]
    pub fn is_over(&mut self) -> bool {
        let Some(tickets) = &mut self.0 else {
            return true;
        };
        tickets.retain(|t| !t.is_released());
        if !tickets.is_empty() {
            return false;
        }
        self.0 = None;
        true
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|t| t.is_empty())
    }
}

impl Drop for Wait {
    /// The tickets' drop stays out of line, so the requests that hold a
    /// `Wait` are cheap to drop.
    #[inline]
    fn drop(&mut self) {
        if let Some(tickets) = self.0.take() {
            drop_tickets(tickets);
        }
    }
}

#[inline(never)]
#[allow(clippy::box_collection)]
fn drop_tickets(tickets: Box<Vec<Ticket>>) {
    drop(tickets);
}

/// What a request does at one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqKind {
    Read,
    /// Writes the caller's data; `fua` asks for it to be stable on return.
    Write {
        fua: bool,
    },
    /// Makes `len` bytes read as zeroes (no data buffer).
    WriteZeroes {
        len: u64,
        may_unmap: bool,
    },
}

/// A request as one driver sees it. The data is not kept here: every poll
/// passes the caller's buffer again, so a request never owns a copy.
pub struct DriverReq {
    pub offset: u64,
    pub kind: ReqKind,
    /// What the driver waits for after it returned `Pending`; the node
    /// does not poll the driver again until it is over.
    pub gate: Wait,
    /// The driver's own progress (its state machine), set once it stops.
    pub state: Option<Box<dyn Any + Send>>,
}

impl DriverReq {
    pub fn new(offset: u64, kind: ReqKind) -> DriverReq {
        DriverReq {
            offset,
            kind,
            gate: Wait::none(),
            state: None,
        }
    }

    /// Makes it a new request at `offset`, with nothing to wait for and no
    /// state (a layer that reuses one for its next step).
    #[inline(always)]
    pub fn restart(&mut self, offset: u64, kind: ReqKind) {
        self.offset = offset;
        self.kind = kind;
        // Mostly there is nothing to drop: no call to drop it then.
        if !self.gate.is_empty() {
            self.gate = Wait::none();
        }
        if self.state.is_some() {
            self.state = None;
        }
    }

    /// The driver's state as `T`, created by `init` on the first poll.
    pub fn state_or<T: Any + Send>(&mut self, init: impl FnOnce() -> T) -> &mut T {
        if !self.state.as_ref().is_some_and(|s| s.is::<T>()) {
            self.state = Some(Box::new(init()));
        }
        match self.state.as_mut().and_then(|s| s.downcast_mut::<T>()) {
            Some(s) => s,
            None => unreachable!("state was just set to T"),
        }
    }
}

/// Runs `f` on a request's state, made by `init` on the stack on the first
/// poll and boxed into `state` (a `DriverReq::state`) only when the request
/// stops; dropped once it is ready.
#[inline]
pub fn with_state<S: Any + Send, R>(
    state: &mut Option<Box<dyn Any + Send>>,
    init: impl FnOnce() -> S,
    f: impl FnOnce(&mut S) -> Poll<R>,
) -> Poll<R> {
    if let Some(st) = state.as_mut().and_then(|s| s.downcast_mut::<S>()) {
        let r = f(st);
        if matches!(r, Poll::Ready(_)) {
            *state = None;
        }
        return r;
    }
    let mut st = init();
    let r = f(&mut st);
    if matches!(r, Poll::Pending) {
        *state = Some(Box::new(st));
    }
    r
}

/// The error a synchronous caller gets when its request would have to wait
/// behind a stopped one (QEMU would block the whole monitor there).
pub fn busy() -> BlockError {
    BlockError::InUse("Request overlaps a request stopped at a breakpoint".into())
}

/// The result of a request polled by a caller that cannot wait.
pub fn ready_or_busy<T>(p: Poll<BlockResult<T>>) -> BlockResult<T> {
    match p {
        Poll::Ready(r) => r,
        Poll::Pending => Err(busy()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_over_once_every_ticket_is_released() {
        let (a, b) = (Ticket::new(), Ticket::new());
        let mut w = Wait::on(a.clone());
        w.push(b.clone());
        let before = release_count();
        a.release();
        assert!(!w.is_over());
        b.release();
        b.release();
        assert!(w.is_over());
        assert!(release_count() >= before + 2);
    }

    #[test]
    fn driver_state_is_created_once_and_kept() {
        let mut r = DriverReq::new(0, ReqKind::Read);
        *r.state_or(|| 1u32) += 1;
        assert_eq!(*r.state_or(|| 7u32), 2);
    }
}
