//! `stdio`: input from fd 0, output to fd 1. When stdin is a terminal it is
//! put in raw mode (keeping signals unless `signal=off`) and restored when
//! the process exits.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::{CharBackend, CharEvent, FdRegistry};
use crate::main_loop::Token;
use crate::sys::fd::{read_nonblocking, set_nonblocking, write_all_blocking, ReadOutcome};

/// Only one chardev may own the terminal, as in QEMU.
static STDIO_IN_USE: AtomicBool = AtomicBool::new(false);

/// The terminal settings to put back at exit.
static SAVED_TERMIOS: Mutex<Option<libc::termios>> = Mutex::new(None);

pub fn restore_terminal() {
    if let Ok(saved) = SAVED_TERMIOS.lock() {
        if let Some(t) = saved.as_ref() {
            // SAFETY: tcsetattr reads the termios struct we saved earlier.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, t) };
        }
    }
}

fn enter_raw_mode(keep_signals: bool) {
    // SAFETY: isatty only inspects fd 0.
    if unsafe { libc::isatty(0) } != 1 {
        return;
    }
    // SAFETY: termios is plain data; tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a termios.
    if unsafe { libc::tcgetattr(0, &mut t) } != 0 {
        return;
    }
    if let Ok(mut saved) = SAVED_TERMIOS.lock() {
        saved.get_or_insert(t);
    }
    t.c_iflag &= !(libc::IGNBRK
        | libc::BRKINT
        | libc::PARMRK
        | libc::ISTRIP
        | libc::INLCR
        | libc::IGNCR
        | libc::ICRNL
        | libc::IXON);
    t.c_oflag |= libc::OPOST;
    t.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::IEXTEN);
    if !keep_signals {
        t.c_lflag &= !libc::ISIG;
    }
    t.c_cflag &= !(libc::CSIZE | libc::PARENB);
    t.c_cflag |= libc::CS8;
    t.c_cc[libc::VMIN] = 1;
    t.c_cc[libc::VTIME] = 0;
    // SAFETY: valid termios pointer.
    unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
}

pub struct StdioChardev {
    token: Option<Token>,
    eof: bool,
}

impl StdioChardev {
    pub fn new(keep_signals: bool) -> Result<Self, super::ChardevError> {
        if STDIO_IN_USE.swap(true, Ordering::SeqCst) {
            return Err(super::ChardevError::msg(
                "cannot use stdio by multiple character devices",
            ));
        }
        enter_raw_mode(keep_signals);
        // Some stdins (e.g. certain special files) refuse O_NONBLOCK; poll
        // still tells us when a read will not block, so go on without it.
        let _ = set_nonblocking(0);
        Ok(StdioChardev {
            token: None,
            eof: false,
        })
    }
}

impl CharBackend for StdioChardev {
    fn attach(&mut self, fds: &mut FdRegistry) -> io::Result<()> {
        self.token = Some(fds.add(0, true, false)?);
        Ok(())
    }

    fn ready(
        &mut self,
        fds: &mut FdRegistry,
        _t: Token,
        readable: bool,
        _w: bool,
    ) -> Vec<CharEvent> {
        if !readable || self.eof {
            return Vec::new();
        }
        let mut buf = [0u8; 4096];
        match read_nonblocking(0, &mut buf) {
            ReadOutcome::Data(n) => vec![CharEvent::Data(buf[..n].to_vec())],
            ReadOutcome::WouldBlock => Vec::new(),
            ReadOutcome::Eof | ReadOutcome::Error => {
                self.eof = true;
                if let Some(t) = self.token.take() {
                    fds.remove(t);
                }
                vec![CharEvent::Closed]
            }
        }
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        write_all_blocking(1, data)?;
        Ok(data.len())
    }

    fn is_open(&self) -> bool {
        true
    }

    fn close(&mut self, fds: &mut FdRegistry) {
        if let Some(t) = self.token.take() {
            fds.remove(t);
        }
        restore_terminal();
        STDIO_IN_USE.store(false, Ordering::SeqCst);
    }

    fn filename(&self) -> String {
        "stdio".to_string()
    }
}
