//! Timers on the three clocks. Few timers exist at once (reconnects,
//! throttling, job rate limits), so a plain vector keeps this simple.

use super::clock::{ClockType, Clocks};

pub type TimerId = u64;

struct Timer<T> {
    id: TimerId,
    clock: ClockType,
    deadline_ns: i64,
    payload: T,
}

/// Pending timers, each carrying a payload that says what to do when it
/// fires (the owner decides; the list only orders them).
pub struct TimerList<T> {
    timers: Vec<Timer<T>>,
    next_id: TimerId,
}

impl<T> Default for TimerList<T> {
    fn default() -> Self {
        TimerList {
            timers: Vec::new(),
            next_id: 1,
        }
    }
}

impl<T> TimerList<T> {
    pub fn add(&mut self, clock: ClockType, deadline_ns: i64, payload: T) -> TimerId {
        let id = self.next_id;
        self.next_id += 1;
        self.timers.push(Timer {
            id,
            clock,
            deadline_ns,
            payload,
        });
        id
    }

    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let pos = self.timers.iter().position(|t| t.id == id)?;
        Some(self.timers.swap_remove(pos).payload)
    }

    /// Nanoseconds until the nearest deadline; `None` when no timer can fire
    /// by the passage of real time (empty, or only qtest-driven virtual ones).
    pub fn next_timeout_ns(&self, clocks: &Clocks) -> Option<i64> {
        self.timers
            .iter()
            .filter(|t| !(t.clock == ClockType::Virtual && clocks.is_qtest()))
            .map(|t| (t.deadline_ns - clocks.now(t.clock)).max(0))
            .min()
    }

    /// The earliest deadline among timers on `clock`.
    pub fn next_deadline(&self, clock: ClockType) -> Option<i64> {
        self.timers
            .iter()
            .filter(|t| t.clock == clock)
            .map(|t| t.deadline_ns)
            .min()
    }

    /// Removes and returns every expired timer, earliest first.
    pub fn take_expired(&mut self, clocks: &Clocks) -> Vec<(TimerId, T)> {
        let mut expired = Vec::new();
        let mut i = 0;
        while i < self.timers.len() {
            let t = &self.timers[i];
            if t.deadline_ns <= clocks.now(t.clock) {
                let t = self.timers.swap_remove(i);
                expired.push((t.deadline_ns, t.id, t.payload));
            } else {
                i += 1;
            }
        }
        expired.sort_by_key(|(d, id, _)| (*d, *id));
        expired.into_iter().map(|(_, id, p)| (id, p)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_timers_fire_only_after_qtest_clock_step() {
        let mut clocks = Clocks::new(true);
        let mut list = TimerList::default();
        list.add(ClockType::Virtual, 100, "a");
        list.add(ClockType::Virtual, 50, "b");
        assert!(list.take_expired(&clocks).is_empty());
        assert_eq!(list.next_timeout_ns(&clocks), None);
        clocks.qtest_set(100);
        let fired: Vec<_> = list
            .take_expired(&clocks)
            .into_iter()
            .map(|x| x.1)
            .collect();
        assert_eq!(fired, vec!["b", "a"]);
    }

    #[test]
    fn cancelled_timer_never_fires() {
        let clocks = Clocks::new(false);
        let mut list = TimerList::default();
        let id = list.add(ClockType::Realtime, 0, 1);
        assert_eq!(list.cancel(id), Some(1));
        assert!(list.take_expired(&clocks).is_empty());
    }
}
