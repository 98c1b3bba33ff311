//! The main loop: one thread that polls every fd with a handler, then runs
//! bottom halves and expired timers, in that order (QEMU's main-loop.c shape).
//!
//! The loop never calls into a subsystem directly: it reports which token is
//! ready and lets the emulator (`crate::emulator`) route it. It owns no
//! subsystem state, so it can be driven from tests without a machine.

pub mod clock;
pub mod fdwatch;
pub mod run;
pub mod timers;

pub use clock::{ClockType, Clocks};
pub use fdwatch::{FdWatch, Readiness, Token};
pub use timers::{TimerId, TimerList};
