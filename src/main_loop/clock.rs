//! The three clocks timers run on, as QEMU has them.
//!
//! - realtime: monotonic, always runs (monitor timeouts, reconnects).
//! - host: wall clock (RTC base, event timestamps).
//! - virtual: guest time. It stops while the VM is stopped; under the qtest
//!   accelerator it moves only when the qtest client says `clock_step` or
//!   `clock_set`, which is what makes throttling tests deterministic.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClockType {
    Realtime,
    Host,
    Virtual,
}

pub struct Clocks {
    start: Instant,
    /// Some(ns) when the virtual clock is driven by qtest.
    qtest_virtual: Option<i64>,
    /// Realtime ns at which the virtual clock last started running.
    virtual_running_since: Option<i64>,
    /// Virtual ns accumulated before `virtual_running_since`.
    virtual_base: i64,
}

impl Clocks {
    pub fn new(qtest: bool) -> Self {
        Clocks {
            start: Instant::now(),
            qtest_virtual: qtest.then_some(0),
            virtual_running_since: None,
            virtual_base: 0,
        }
    }

    pub fn is_qtest(&self) -> bool {
        self.qtest_virtual.is_some()
    }

    pub fn realtime_ns(&self) -> i64 {
        i64::try_from(self.start.elapsed().as_nanos()).unwrap_or(i64::MAX)
    }

    pub fn host_ns() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    pub fn now(&self, clock: ClockType) -> i64 {
        match clock {
            ClockType::Realtime => self.realtime_ns(),
            ClockType::Host => Self::host_ns(),
            ClockType::Virtual => self.virtual_ns(),
        }
    }

    pub fn virtual_ns(&self) -> i64 {
        if let Some(v) = self.qtest_virtual {
            return v;
        }
        match self.virtual_running_since {
            Some(since) => self.virtual_base + (self.realtime_ns() - since),
            None => self.virtual_base,
        }
    }

    /// The VM started running: virtual time flows (unless qtest drives it).
    pub fn resume_virtual(&mut self) {
        if self.virtual_running_since.is_none() {
            self.virtual_running_since = Some(self.realtime_ns());
        }
    }

    /// The VM stopped: virtual time freezes.
    pub fn pause_virtual(&mut self) {
        if let Some(since) = self.virtual_running_since.take() {
            self.virtual_base += self.realtime_ns() - since;
        }
    }

    /// qtest's `clock_set`: only moves forward, as QEMU's does.
    pub fn qtest_set(&mut self, ns: i64) {
        if let Some(v) = self.qtest_virtual.as_mut() {
            if ns > *v {
                *v = ns;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qtest_virtual_clock_moves_only_when_set() {
        let mut c = Clocks::new(true);
        assert_eq!(c.virtual_ns(), 0);
        c.resume_virtual();
        assert_eq!(c.virtual_ns(), 0);
        c.qtest_set(1000);
        assert_eq!(c.virtual_ns(), 1000);
        c.qtest_set(10);
        assert_eq!(c.virtual_ns(), 1000);
    }

    #[test]
    fn virtual_clock_stops_while_paused() {
        let mut c = Clocks::new(false);
        c.resume_virtual();
        std::thread::sleep(std::time::Duration::from_millis(2));
        c.pause_virtual();
        let frozen = c.virtual_ns();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(c.virtual_ns(), frozen);
        assert!(frozen >= 2_000_000);
    }
}
