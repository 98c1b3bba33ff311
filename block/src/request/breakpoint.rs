//! Where blkdebug breakpoints meet the requests they stop.
//!
//! A breakpoint that fires hands its ticket to the innermost open scope.
//! `armed` opens the outermost one (the `Inflight` queue, around a poll);
//! `catch` opens an inner one around an event a request can stop right
//! after, so the request learns it must stop there. A hit that no inner
//! scope catches (an event deep inside a metadata update) reaches `armed`'s
//! caller, which holds the request back after that poll. With no scope
//! open, breakpoints are not armed at all.

use std::cell::RefCell;

use super::{Ticket, Wait};

thread_local! {
    static SCOPES: RefCell<Vec<Wait>> = const { RefCell::new(Vec::new()) };
}

/// Pops the scope it pushed, also when the code inside panics.
struct ScopeGuard;

impl ScopeGuard {
    fn open() -> ScopeGuard {
        SCOPES.with(|s| s.borrow_mut().push(Wait::none()));
        ScopeGuard
    }

    fn close(self) -> Wait {
        let w = SCOPES.with(|s| s.borrow_mut().pop()).unwrap_or_default();
        std::mem::forget(self);
        w
    }
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        SCOPES.with(|s| s.borrow_mut().pop());
    }
}

/// True when a breakpoint hit now would stop a request.
#[inline]
pub fn is_armed() -> bool {
    SCOPES.with(|s| !s.borrow().is_empty())
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

/// Puts back the scopes `disarmed` hid, also when the code inside panics.
struct Hidden(Vec<Wait>);

impl Drop for Hidden {
    fn drop(&mut self) {
        let saved = std::mem::take(&mut self.0);
        SCOPES.with(|s| *s.borrow_mut() = saved);
    }
}

/// Runs `f` with breakpoints disarmed: a synchronous request made while an
/// armed one is polled could never be resumed, so it must not stop.
#[inline]
pub fn disarmed<R>(f: impl FnOnce() -> R) -> R {
    if !is_armed() {
        return f();
    }
    let _hidden = Hidden(SCOPES.with(|s| std::mem::take(&mut *s.borrow_mut())));
    f()
}

/// Runs `f` (which signals an event) and returns the breakpoints it hit;
/// nothing is armed unless an `armed` scope is open around the call.
#[inline]
pub fn catch<R>(f: impl FnOnce() -> R) -> (R, Wait) {
    if !is_armed() {
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
    fn disarmed_code_inside_an_armed_scope_cannot_stop() {
        let t = Ticket::new();
        let ((), mut outer) = armed(|| {
            disarmed(|| {
                assert!(!is_armed());
                let ((), w) = catch(|| hit(t.clone()));
                assert!(w.is_empty());
            });
            assert!(is_armed());
        });
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
