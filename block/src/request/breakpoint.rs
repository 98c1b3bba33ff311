//! Where blkdebug breakpoints meet the requests they stop.
//!
//! A breakpoint that fires hands its ticket to the innermost open scope.
//! `armed` opens the outermost one (the `Inflight` queue, around a poll);
//! `catch` opens an inner one around an event a request can stop right
//! after, so the request learns it must stop there. A hit that no inner
//! scope catches (an event deep inside a metadata update) reaches `armed`'s
//! caller, which holds the request back after that poll. With no scope
//! open, breakpoints are not armed at all.

use std::cell::{Cell, RefCell};

use super::{Ticket, Wait};

thread_local! {
    static SCOPES: RefCell<Vec<Wait>> = const { RefCell::new(Vec::new()) };
    /// `SCOPES.len()`, read on every request's hot path without a borrow.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Pops the scope it pushed, also when the code inside panics.
struct ScopeGuard;

impl ScopeGuard {
    fn open() -> ScopeGuard {
        SCOPES.with(|s| s.borrow_mut().push(Wait::none()));
        DEPTH.with(|d| d.set(d.get() + 1));
        ScopeGuard
    }

    fn close(self) -> Wait {
        let w = SCOPES.with(|s| s.borrow_mut().pop()).unwrap_or_default();
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        std::mem::forget(self);
        w
    }
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        SCOPES.with(|s| s.borrow_mut().pop());
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// True when a breakpoint hit now would stop a request.
#[inline]
pub fn is_armed() -> bool {
    DEPTH.with(|d| d.get() > 0)
}

/// A breakpoint fired: the innermost scope's request waits on `ticket`.
pub fn hit(ticket: Ticket) {
    SCOPES.with(|s| {
        if let Some(w) = s.borrow_mut().last_mut() {
            w.push(ticket);
        }
    });
}

/// Runs `f` with breakpoints armed; returns its result and the breakpoints
/// it hit that no inner `catch` took.
pub fn armed<R>(f: impl FnOnce() -> R) -> (R, Wait) {
    let g = ScopeGuard::open();
    let r = f();
    (r, g.close())
}

thread_local! {
    /// Depth of `synchronous` calls around the current code.
    static SYNC: Cell<u32> = const { Cell::new(0) };
}

/// Leaves the synchronous region it entered, also on panic.
struct SyncGuard;

impl Drop for SyncGuard {
    fn drop(&mut self) {
        SYNC.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Runs `f`, a request that cannot stop (a synchronous call, maybe made
/// while an armed request is polled: a copy-before-write hook, a driver's
/// own metadata write). Its events pass every stop point; a breakpoint it
/// hits still fires and holds the armed request around it after the
/// current poll, as a hit deep inside a metadata update does.
#[inline]
pub fn synchronous<R>(f: impl FnOnce() -> R) -> R {
    if !is_armed() {
        return f();
    }
    SYNC.with(|d| d.set(d.get() + 1));
    let _g = SyncGuard;
    f()
}

/// Runs `f` (which signals an event) and returns the breakpoints it hit;
/// nothing is armed unless an `armed` scope is open around the call, and a
/// synchronous request never stops (its hits go to the armed scope).
#[inline]
pub fn catch<R>(f: impl FnOnce() -> R) -> (R, Wait) {
    if !is_armed() || SYNC.with(|d| d.get()) > 0 {
        return (f(), Wait::none());
    }
    armed(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_go_to_the_innermost_scope() {
        let t1 = Ticket::new();
        let t2 = Ticket::new();
        let (mut inner, mut outer) = armed(|| {
            let ((), c) = catch(|| hit(t1.clone()));
            hit(t2.clone());
            c
        });
        assert!(!inner.is_over());
        t1.release();
        assert!(inner.is_over());
        assert!(!outer.is_over());
        assert!(!is_armed());
    }

    #[test]
    fn a_synchronous_request_inside_an_armed_scope_holds_the_armed_one() {
        let t = Ticket::new();
        let ((), mut outer) = armed(|| {
            synchronous(|| {
                let ((), w) = catch(|| hit(t.clone()));
                assert!(w.is_empty(), "a synchronous request never stops");
            });
            let ((), w) = catch(|| {});
            assert!(w.is_empty());
        });
        assert!(!outer.is_over(), "the armed request is held after its poll");
        t.release();
        assert!(outer.is_over());
    }

    #[test]
    fn catch_outside_an_armed_scope_arms_nothing() {
        let ((), w) = catch(|| {
            assert!(!is_armed());
            hit(Ticket::new());
        });
        assert!(w.is_empty());
    }
}
