//! Kicking a vCPU thread out of `KVM_RUN`: `kvm_run.immediate_exit` plus a signal.
//!
//! The signal's handler does nothing; its only job is to make `KVM_RUN` return with
//! EINTR. `immediate_exit` covers the window where the signal lands just before the
//! thread enters `KVM_RUN`.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Once;

use kvm_ioctls::VcpuFd;

/// The signal used for kicks (SIGRTMIN+1: the process's other code must not use it).
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

extern "C" fn on_kick(_: libc::c_int) {}

/// Installs the no-op handler once per process (without SA_RESTART, so KVM_RUN
/// returns EINTR instead of being restarted).
pub fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; we set a
        // handler that touches nothing, so it is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
        }
    });
}

/// A handle on one vCPU's `immediate_exit` byte, usable from any thread.
#[derive(Clone, Copy)]
pub struct ImmediateExit(*const AtomicU8);

// SAFETY: the pointer is into the vCPU's kvm_run mapping, which lives as long as the
// VcpuFd; the runner keeps the VcpuFd alive until every user of this handle is gone
// (the thread only exits after `quit`, and kicks are only sent to live threads).
unsafe impl Send for ImmediateExit {}
// SAFETY: all accesses are atomic byte operations.
unsafe impl Sync for ImmediateExit {}

impl ImmediateExit {
    pub fn of(fd: &mut VcpuFd) -> ImmediateExit {
        let run = fd.get_kvm_run();
        ImmediateExit(std::ptr::addr_of_mut!(run.immediate_exit) as *const AtomicU8)
    }

    pub fn set(&self, v: bool) {
        // SAFETY: see the Send impl; u8 and AtomicU8 have the same layout.
        unsafe { (*self.0).store(v as u8, Ordering::SeqCst) }
    }
}

/// Sends the kick signal to a thread.
pub fn signal_thread(thread: libc::pthread_t) {
    // SAFETY: `thread` is a live vCPU thread (the caller checked `in_guest` under the
    // control lock, and threads only exit after clearing it).
    unsafe {
        libc::pthread_kill(thread, kick_signal());
    }
}

/// Makes sure the calling thread can receive kicks even if the thread that spawned it
/// had blocked signals (e.g. for a signalfd).
pub fn unblock_kick_signal() {
    // SAFETY: a zeroed sigset is valid input for sigemptyset, which initialises it;
    // pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, kick_signal());
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}
