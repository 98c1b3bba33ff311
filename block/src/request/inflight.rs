//! The queue of requests that stopped and have someone waiting for their
//! result (qemu-io's aio requests): polled again whenever what they wait
//! for may be over, in the order they were submitted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{breakpoint, release_count, Poll, Wait};
use crate::console;
use crate::node::NodeRef;

/// A request with a completion: the owner of a whole request tree.
pub trait AsyncRequest: Send {
    /// Goes on as far as it can (breakpoints are armed around the call).
    /// Ready: it finished, and this is what its issuer prints for it.
    fn poll(&mut self) -> Poll<String>;

    /// The node the request was issued to (None: a drive without medium).
    fn node(&self) -> Option<NodeRef>;
}

struct Parked {
    req: Box<dyn AsyncRequest>,
    /// Breakpoints hit inside a step no inner point could stop at: the
    /// request goes on (or reports its result) once they are resumed.
    gate: Wait,
    /// The result of a request that finished while such a breakpoint held it.
    done: Option<String>,
}

/// Requests in flight, oldest first.
#[derive(Default)]
pub struct Inflight {
    parked: VecDeque<Parked>,
}

/// The queue shared between the graph and qemu-io's command hooks.
pub type InflightHandle = Arc<Mutex<Inflight>>;

/// Locks the queue, carrying on after a panic elsewhere.
pub fn lock_inflight(h: &InflightHandle) -> MutexGuard<'_, Inflight> {
    match h.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Polls once with breakpoints armed. Some(text): finished and free to report.
fn poll_parked(p: &mut Parked) -> Option<String> {
    if !p.gate.is_over() {
        return None;
    }
    if p.done.is_some() {
        return p.done.take();
    }
    let (r, stray) = breakpoint::armed(|| p.req.poll());
    p.gate = stray;
    match r {
        Poll::Ready(text) if p.gate.is_empty() => Some(text),
        Poll::Ready(text) => {
            p.done = Some(text);
            None
        }
        Poll::Pending => None,
    }
}

impl Inflight {
    /// Starts a request: it runs until it finishes or stops. Returns what
    /// was printed meanwhile: the reports of every request that finished
    /// (this one included) and blkdebug's messages, in order.
    pub fn submit(&mut self, req: Box<dyn AsyncRequest>) -> String {
        self.parked.push_back(Parked {
            req,
            gate: Wait::none(),
            done: None,
        });
        self.run()
    }

    /// Polls the stopped requests until no pass gets any further; returns
    /// what was printed meanwhile (reports of the requests that finished,
    /// blkdebug's messages), in order.
    pub fn run(&mut self) -> String {
        console::capture(|| self.run_passes()).1
    }

    fn run_passes(&mut self) {
        loop {
            let releases = release_count();
            let mut finished = false;
            let mut i = 0;
            while i < self.parked.len() {
                match poll_parked(&mut self.parked[i]) {
                    Some(text) => {
                        console::print(&text);
                        self.parked.remove(i);
                        finished = true;
                    }
                    None => i += 1,
                }
            }
            // A pass that finished nothing and released nothing changed
            // nothing another pass could build on.
            if !finished && release_count() == releases {
                return;
            }
        }
    }

    /// The nodes requests not finished yet were issued to.
    pub fn nodes(&self) -> Vec<NodeRef> {
        self.parked.iter().filter_map(|p| p.req.node()).collect()
    }

    /// Requests not finished yet.
    pub fn len(&self) -> usize {
        self.parked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parked.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Ticket;
    use super::*;

    /// Stops at a breakpoint ticket on its first poll, then finishes.
    struct Stopper {
        name: &'static str,
        ticket: Option<Ticket>,
        stopped: bool,
        stray: bool,
    }

    impl AsyncRequest for Stopper {
        fn poll(&mut self) -> Poll<String> {
            if let Some(t) = &self.ticket {
                if !self.stopped {
                    self.stopped = true;
                    if self.stray {
                        breakpoint::hit(t.clone());
                        return Poll::Ready(format!("{}\n", self.name));
                    }
                    return Poll::Pending;
                }
                if !t.is_released() {
                    return Poll::Pending;
                }
            }
            Poll::Ready(format!("{}\n", self.name))
        }

        fn node(&self) -> Option<NodeRef> {
            None
        }
    }

    fn stopper(name: &'static str, ticket: Option<Ticket>, stray: bool) -> Box<Stopper> {
        Box::new(Stopper {
            name,
            ticket,
            stopped: false,
            stray,
        })
    }

    #[test]
    fn a_request_that_does_not_stop_reports_at_once() {
        let mut q = Inflight::default();
        assert_eq!(q.submit(stopper("a", None, false)), "a\n");
        assert!(q.is_empty());
    }

    #[test]
    fn stopped_requests_finish_when_their_ticket_is_released() {
        let mut q = Inflight::default();
        let t = Ticket::new();
        assert_eq!(q.submit(stopper("a", Some(t.clone()), false)), "");
        assert_eq!(q.submit(stopper("b", None, false)), "b\n");
        assert_eq!(q.run(), "");
        t.release();
        assert_eq!(q.run(), "a\n");
        assert!(q.is_empty());
    }

    #[test]
    fn a_stray_hit_holds_back_the_result() {
        let mut q = Inflight::default();
        let t = Ticket::new();
        assert_eq!(q.submit(stopper("a", Some(t.clone()), true)), "");
        assert_eq!(q.len(), 1);
        t.release();
        assert_eq!(q.run(), "a\n");
    }
}
