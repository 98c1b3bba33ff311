//! Requests from devices that the machine's owner must act on, queued as records.
//!
//! Devices run under the big lock and must never call up into the process; they push a
//! [`MachineEvent`] here and the owner drains the queue after each exit / main-loop turn.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Something the owner must do or report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineEvent {
    /// The guest asked for a reset (i8042 0xFE pulse, 0xCF9, triple fault).
    Reset { source: ResetSource },
    /// The guest powered off (ACPI S5 through PM1 control).
    PowerOff,
    /// ACPI S3 requested through PM1 control.
    Suspend,
    /// `isa-debug-exit`: the process exits with this status.
    DebugExit { code: i32 },
    /// The guest set the RTC; `offset` is guest time minus host time in seconds
    /// (the RTC_CHANGE event's value).
    RtcChange { offset: i64 },
    /// An IDE drive's guest changed its tray, lock or write cache.
    Drive(crate::devices::ide::DriveEvent),
}

/// What caused a reset request (the owner may report it or apply `-no-reboot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetSource {
    Keyboard,
    ResetControl,
    TripleFault,
    Guest,
}

type Notify = Box<dyn Fn() + Send + Sync>;

/// A shared queue of machine events; clones push into the same queue.
#[derive(Clone, Default)]
pub struct EventQueue {
    inner: Arc<Mutex<VecDeque<MachineEvent>>>,
    notify: Arc<Mutex<Option<Notify>>>,
}

impl EventQueue {
    pub fn new() -> EventQueue {
        EventQueue::default()
    }

    /// Sets a callback run after each push (e.g. waking the main loop's poller).
    pub fn set_notify(&self, f: impl Fn() + Send + Sync + 'static) {
        *self.notify.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(f));
    }

    pub fn push(&self, ev: MachineEvent) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(ev);
        if let Some(f) = self
            .notify
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            f();
        }
    }

    /// Takes every queued event, oldest first.
    pub fn drain(&self) -> Vec<MachineEvent> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn drain_returns_events_in_order_and_notifies_each_push() {
        let q = EventQueue::new();
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        q.set_notify(move || {
            n2.fetch_add(1, Ordering::SeqCst);
        });
        q.clone().push(MachineEvent::PowerOff);
        q.push(MachineEvent::DebugExit { code: 3 });
        assert_eq!(
            q.drain(),
            vec![MachineEvent::PowerOff, MachineEvent::DebugExit { code: 3 }]
        );
        assert!(q.is_empty());
        assert_eq!(n.load(Ordering::SeqCst), 2);
    }
}
