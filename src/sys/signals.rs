//! Termination signals become a flag the main loop reads, plus a wake-up
//! through a self-pipe so poll returns at once.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

static PENDING_SIGNAL: AtomicI32 = AtomicI32::new(0);
static SENDER_PID: AtomicI32 = AtomicI32::new(0);
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t with SA_SIGINFO.
    let pid = if info.is_null() {
        0
    } else {
        // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t.
        unsafe { (*info).si_pid() }
    };
    SENDER_PID.store(pid, Ordering::SeqCst);
    PENDING_SIGNAL.store(sig, Ordering::SeqCst);
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let b = 1u8;
        // SAFETY: write(2) is async-signal-safe; one byte from the stack.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

/// Installs handlers for SIGTERM, SIGINT and SIGHUP and ignores SIGPIPE.
/// Returns the read end of the wake-up pipe for the main loop to watch.
pub fn install() -> std::io::Result<RawFd> {
    let mut p = [0 as RawFd; 2];
    // SAFETY: p has room for two fds.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    WAKE_FD.store(p[1], Ordering::SeqCst);
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: sigaction is plain data; the handler only touches atomics
        // and write(2).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART | libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    // SAFETY: ignoring SIGPIPE so writes to closed sockets return EPIPE.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    Ok(p[0])
}

/// The signal that asked us to terminate and the sender's pid (0 when
/// the kernel sent it, e.g. ^C at a terminal), cleared by reading.
pub fn take_pending() -> Option<(i32, i32)> {
    match PENDING_SIGNAL.swap(0, Ordering::SeqCst) {
        0 => None,
        s => Some((s, SENDER_PID.load(Ordering::SeqCst))),
    }
}
