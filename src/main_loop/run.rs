//! The loop itself: hold the big lock while dispatching, release it only
//! while blocked in poll (QEMU's main_loop_wait), so vCPU threads can take
//! it for device accesses in between.

use std::sync::{Arc, Mutex, MutexGuard};

use polling::Events;

use super::fdwatch::{wait_on, Readiness};
use crate::emulator::{Emulator, ExitReason};

/// The big lock. A panic while holding it must not wedge the process.
pub fn lock(emu: &Mutex<Emulator>) -> MutexGuard<'_, Emulator> {
    emu.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn run(emu: &Arc<Mutex<Emulator>>) -> ExitReason {
    let mut events = Events::new();
    let mut ready: Vec<Readiness> = Vec::new();
    // Frontends attached during start-up hear `Opened` before any input.
    lock(emu).dispatch(&[]);
    loop {
        let (poller, timeout) = {
            let g = lock(emu);
            if let Some(e) = g.exit {
                return e;
            }
            g.poll_plan()
        };
        ready.clear();
        wait_on(&poller, &mut events, timeout, &mut ready);
        lock(emu).dispatch(&ready);
    }
}
