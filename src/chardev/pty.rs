//! `pty`: a pseudo-terminal whose slave (`/dev/pts/N`) a user opens with
//! a terminal program. As QEMU, the device counts as open only while
//! some process holds the slave: the master is polled for hang-up once a
//! second while nobody does, and output written meanwhile is dropped.
//! Closing the master (chardev-remove, exit) makes the slave vanish.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::{CharBackend, CharEvent, FdRegistry};
use crate::main_loop::Token;
use crate::sys::fd::{read_nonblocking, set_nonblocking, write_some, ReadOutcome};

const RECHECK_NS: i64 = 1_000_000_000;

/// openpty with the slave in raw mode; returns the master and the slave's
/// path, the slave itself closed (QEMU's qemu_openpty_raw + close).
pub fn open_raw_pty() -> io::Result<(OwnedFd, String)> {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two fds; name/termios/winsize are optional.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created by openpty and are ours.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    crate::sys::fd::set_cloexec(master.as_raw_fd());
    // SAFETY: termios is plain data; cfmakeraw and tcsetattr use a valid pointer.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(slave.as_raw_fd(), &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(slave.as_raw_fd(), libc::TCSAFLUSH, &t);
        }
    }
    let mut buf = [0 as libc::c_char; 128];
    // SAFETY: buf is writable for its length; ptsname_r NUL-terminates.
    if unsafe { libc::ptsname_r(master.as_raw_fd(), buf.as_mut_ptr(), buf.len()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ptsname_r succeeded, so buf holds a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    drop(slave);
    Ok((master, name))
}

pub struct PtyChardev {
    master: OwnedFd,
    name: String,
    connected: bool,
    token: Option<Token>,
}

impl PtyChardev {
    pub fn new() -> io::Result<Self> {
        let (master, name) = open_raw_pty()?;
        set_nonblocking(master.as_raw_fd())?;
        Ok(PtyChardev {
            master,
            name,
            connected: false,
            token: None,
        })
    }

    /// Whether some process holds the slave: the master reports hang-up
    /// while none does.
    fn slave_open(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.master.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let r = unsafe { libc::poll(&mut pfd, 1, 0) };
        r >= 0 && pfd.revents & libc::POLLHUP == 0
    }

    fn disconnect(&mut self, fds: &mut FdRegistry) {
        if let Some(t) = self.token.take() {
            fds.remove(t);
        }
        self.connected = false;
        fds.request_timer(RECHECK_NS);
    }
}

impl CharBackend for PtyChardev {
    fn attach(&mut self, fds: &mut FdRegistry) -> io::Result<()> {
        fds.request_timer(0);
        Ok(())
    }

    fn timer(&mut self, fds: &mut FdRegistry) -> Vec<CharEvent> {
        if self.connected {
            return Vec::new();
        }
        if !self.slave_open() {
            fds.request_timer(RECHECK_NS);
            return Vec::new();
        }
        match fds.add(self.master.as_raw_fd(), true, false) {
            Ok(t) => {
                self.token = Some(t);
                self.connected = true;
                vec![CharEvent::Opened]
            }
            Err(_) => {
                fds.request_timer(RECHECK_NS);
                Vec::new()
            }
        }
    }

    fn ready(
        &mut self,
        fds: &mut FdRegistry,
        token: Token,
        readable: bool,
        _w: bool,
    ) -> Vec<CharEvent> {
        if Some(token) != self.token || !readable {
            return Vec::new();
        }
        let mut buf = vec![0u8; 4096];
        match read_nonblocking(self.master.as_raw_fd(), &mut buf) {
            ReadOutcome::Data(n) => {
                buf.truncate(n);
                vec![CharEvent::Data(buf)]
            }
            ReadOutcome::WouldBlock => Vec::new(),
            // The slave was closed (EIO): back to polling, and, as QEMU,
            // no close event.
            ReadOutcome::Eof | ReadOutcome::Error => {
                self.disconnect(fds);
                Vec::new()
            }
        }
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if !self.connected {
            return Ok(data.len());
        }
        write_some(self.master.as_raw_fd(), data)
    }

    fn is_open(&self) -> bool {
        self.connected
    }

    fn write_watch(&self) -> Option<(Token, bool)> {
        self.token.map(|t| (t, true))
    }

    fn close(&mut self, fds: &mut FdRegistry) {
        if let Some(t) = self.token.take() {
            fds.remove(t);
        }
        self.connected = false;
    }

    fn filename(&self) -> String {
        format!("pty:{}", self.name)
    }

    fn pty_path(&self) -> Option<String> {
        Some(self.name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::main_loop::FdWatch;

    #[test]
    fn pty_opens_when_slave_is_opened_and_relays_both_ways() {
        let mut d = PtyChardev::new().unwrap();
        let mut w = FdWatch::new().unwrap();
        let mut reg = FdRegistry::new(&mut w);
        d.attach(&mut reg).unwrap();
        assert!(d.filename().starts_with("pty:/dev/pts/"));
        assert_eq!(d.timer(&mut reg), vec![]);
        assert_eq!(reg.timer, Some(0));
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(d.pty_path().unwrap())
            .unwrap();
        assert_eq!(d.timer(&mut reg), vec![CharEvent::Opened]);
        assert!(d.is_open());
        d.write(b"hi").unwrap();
        let mut buf = [0u8; 2];
        std::io::Read::read_exact(&mut &slave, &mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        std::io::Write::write_all(&mut &slave, b"yo").unwrap();
        let t = d.token.unwrap();
        assert_eq!(
            d.ready(&mut reg, t, true, false),
            vec![CharEvent::Data(b"yo".to_vec())]
        );
        drop(slave);
        assert_eq!(d.ready(&mut reg, t, true, false), vec![]);
        assert!(!d.is_open());
        d.close(&mut reg);
    }
}
