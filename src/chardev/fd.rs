//! Descriptor-backed devices: `file` (output file, optional input file),
//! `pipe` (`path.in`/`path.out`, or `path` both ways), `serial`/`tty` (a
//! host terminal in raw 115200 8N1) and `parallel`/`parport` (a claimed
//! Linux parallel port that discards output, as QEMU's).
//!
//! epoll cannot watch regular files, so input from one is read in
//! bounded chunks from zero-delay timers instead of readiness events.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::{CharBackend, CharEvent, ChardevError, FdRegistry};
use crate::main_loop::Token;
use crate::sys::fd::{read_nonblocking, set_nonblocking, write_some, ReadOutcome};
use crate::sys::oserror::{file_open_error, with_errno};

const READ_CHUNK: usize = 4096;

fn open(path: &str, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    loop {
        // SAFETY: c is a valid NUL-terminated path; open returns a new fd
        // or -1.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode) };
        if fd >= 0 {
            // SAFETY: fd was just returned by open and nobody else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

pub struct FdChardev {
    kind: &'static str,
    input: Option<OwnedFd>,
    in_token: Option<Token>,
    /// Input is a regular file: read from timers, not readiness.
    in_by_timer: bool,
    output: Option<OwnedFd>,
    out_token: Option<Token>,
    /// `parallel`: claimed port, output discarded.
    sink: bool,
}

impl FdChardev {
    fn new(kind: &'static str, input: Option<OwnedFd>, output: Option<OwnedFd>) -> Self {
        if let Some(o) = &output {
            let _ = set_nonblocking(o.as_raw_fd());
        }
        if let Some(i) = &input {
            let _ = set_nonblocking(i.as_raw_fd());
        }
        FdChardev {
            kind,
            input,
            in_token: None,
            in_by_timer: false,
            output,
            out_token: None,
            sink: false,
        }
    }

    /// `file`: output truncated unless `append`, optional input file.
    pub fn open_file(input: Option<&str>, out: &str, append: bool) -> Result<Self, ChardevError> {
        let flags = libc::O_WRONLY
            | libc::O_CREAT
            | if append {
                libc::O_APPEND
            } else {
                libc::O_TRUNC
            };
        let out_fd =
            open(out, flags, 0o666).map_err(|e| ChardevError::Msg(file_open_error(out, &e)))?;
        let in_fd = match input {
            None => None,
            Some(p) => Some(
                open(p, libc::O_RDONLY, 0)
                    .map_err(|e| ChardevError::Msg(file_open_error(p, &e)))?,
            ),
        };
        Ok(Self::new("file", in_fd, Some(out_fd)))
    }

    /// `pipe`: `path.in` and `path.out` when both open, else `path` for
    /// both directions.
    pub fn open_pipe(path: &str) -> Result<Self, ChardevError> {
        let pair = (
            open(&format!("{path}.in"), libc::O_RDWR, 0),
            open(&format!("{path}.out"), libc::O_RDWR, 0),
        );
        let (i, o) = match pair {
            (Ok(i), Ok(o)) => (i, o),
            _ => {
                let fd = open(path, libc::O_RDWR, 0)
                    .map_err(|e| ChardevError::Msg(file_open_error(path, &e)))?;
                let dup = fd.try_clone()?;
                (fd, dup)
            }
        };
        Ok(Self::new("pipe", Some(i), Some(o)))
    }

    /// `serial`/`tty`: a host terminal put in raw mode.
    pub fn open_serial(device: &str) -> Result<Self, ChardevError> {
        let fd = open(device, libc::O_RDWR, 0)
            .map_err(|e| ChardevError::Msg(file_open_error(device, &e)))?;
        init_tty(fd.as_raw_fd());
        let dup = fd.try_clone()?;
        Ok(Self::new("serial", Some(fd), Some(dup)))
    }

    /// `parallel`/`parport`: claims the port; output is discarded.
    pub fn open_parallel(device: &str) -> Result<Self, ChardevError> {
        let fd = open(device, libc::O_RDWR, 0)
            .map_err(|e| ChardevError::Msg(file_open_error(device, &e)))?;
        // SAFETY: PPCLAIM takes no argument; on a non-parport fd it fails
        // with ENOTTY and changes nothing.
        if unsafe { libc::ioctl(fd.as_raw_fd(), PPCLAIM) } < 0 {
            return Err(ChardevError::Msg(with_errno(
                "not a parallel port",
                &io::Error::last_os_error(),
            )));
        }
        let mut dev = Self::new("parallel", None, Some(fd));
        dev.sink = true;
        Ok(dev)
    }

    fn read_input(&mut self, fds: &mut FdRegistry) -> Vec<CharEvent> {
        let Some(i) = &self.input else {
            return Vec::new();
        };
        let mut buf = vec![0u8; READ_CHUNK];
        match read_nonblocking(i.as_raw_fd(), &mut buf) {
            ReadOutcome::Data(n) => {
                buf.truncate(n);
                if self.in_by_timer {
                    fds.request_timer(0);
                }
                vec![CharEvent::Data(buf)]
            }
            ReadOutcome::WouldBlock => Vec::new(),
            ReadOutcome::Eof | ReadOutcome::Error => {
                // End of input: stop reading, as QEMU removes its watch.
                if let Some(t) = self.in_token.take() {
                    fds.remove(t);
                }
                self.in_by_timer = false;
                vec![CharEvent::Closed]
            }
        }
    }
}

/// Linux parallel-port ioctls (`_IO('p', 0x8b)` and `_IO('p', 0x8c)`).
const PPCLAIM: libc::c_ulong = 0x708b;
const PPRELEASE: libc::c_ulong = 0x708c;

/// QEMU's tty_serial_init(fd, 115200, 'N', 8, 1); not a terminal: no-op.
fn init_tty(fd: i32) {
    // SAFETY: termios is plain data filled by tcgetattr.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: valid termios pointer; fails harmlessly on a non-tty.
    if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
        return;
    }
    // SAFETY: valid termios pointer.
    unsafe {
        libc::cfsetispeed(&mut t, libc::B115200);
        libc::cfsetospeed(&mut t, libc::B115200);
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
    t.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::IEXTEN | libc::ISIG);
    t.c_cflag &= !(libc::CSIZE | libc::PARENB | libc::PARODD | libc::CRTSCTS | libc::CSTOPB);
    t.c_cflag |= libc::CS8;
    // SAFETY: valid termios pointer.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
}

fn file_type(fd: &OwnedFd) -> libc::mode_t {
    // SAFETY: stat is plain data filled by fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and stat pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return 0;
    }
    st.st_mode & libc::S_IFMT
}

fn is_regular(fd: &OwnedFd) -> bool {
    file_type(fd) == libc::S_IFREG
}

/// Whether writes to it can block, so a full buffer must wait for
/// writability: pipes, sockets and terminals. Files and devices such as
/// /dev/null never make a writer wait (and some cannot be polled).
fn writes_can_block(fd: &OwnedFd) -> bool {
    let t = file_type(fd);
    // SAFETY: isatty only inspects the fd.
    t == libc::S_IFIFO || t == libc::S_IFSOCK || unsafe { libc::isatty(fd.as_raw_fd()) } == 1
}

impl CharBackend for FdChardev {
    fn attach(&mut self, fds: &mut FdRegistry) -> io::Result<()> {
        if let Some(i) = &self.input {
            if is_regular(i) {
                self.in_by_timer = true;
                fds.request_timer(0);
            } else {
                self.in_token = Some(fds.add(i.as_raw_fd(), true, false)?);
            }
        }
        if let Some(o) = &self.output {
            if !self.sink && writes_can_block(o) {
                // Only to learn when a full pipe or tty drains.
                self.out_token = fds.add(o.as_raw_fd(), false, false).ok();
            }
        }
        Ok(())
    }

    fn ready(
        &mut self,
        fds: &mut FdRegistry,
        token: Token,
        readable: bool,
        _w: bool,
    ) -> Vec<CharEvent> {
        if Some(token) == self.in_token && readable {
            return self.read_input(fds);
        }
        Vec::new()
    }

    fn timer(&mut self, fds: &mut FdRegistry) -> Vec<CharEvent> {
        if self.in_by_timer {
            return self.read_input(fds);
        }
        Vec::new()
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.sink {
            return Ok(data.len());
        }
        match &self.output {
            Some(o) => write_some(o.as_raw_fd(), data),
            None => Ok(data.len()),
        }
    }

    fn is_open(&self) -> bool {
        true
    }

    fn write_watch(&self) -> Option<(Token, bool)> {
        self.out_token.map(|t| (t, false))
    }

    fn close(&mut self, fds: &mut FdRegistry) {
        for t in [self.in_token.take(), self.out_token.take()]
            .into_iter()
            .flatten()
        {
            fds.remove(t);
        }
        self.in_by_timer = false;
        if self.sink {
            if let Some(o) = &self.output {
                // SAFETY: PPRELEASE takes no argument.
                unsafe { libc::ioctl(o.as_raw_fd(), PPRELEASE) };
            }
        }
        self.input = None;
        self.output = None;
    }

    fn filename(&self) -> String {
        self.kind.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::main_loop::FdWatch;

    fn tmp(name: &str) -> String {
        let d = std::env::temp_dir().join(format!("rqemu-fdchr-{}-{name}", std::process::id()));
        d.to_string_lossy().into_owned()
    }

    #[test]
    fn file_output_truncates_or_appends() {
        let p = tmp("out");
        std::fs::write(&p, b"old").unwrap();
        let mut d = FdChardev::open_file(None, &p, true).unwrap();
        d.write(b"+new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"old+new");
        let mut d = FdChardev::open_file(None, &p, false).unwrap();
        d.write(b"x").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"x");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn file_input_is_read_by_timer_then_closes() {
        let (i, o) = (tmp("in"), tmp("out2"));
        std::fs::write(&i, b"hello").unwrap();
        let mut d = FdChardev::open_file(Some(&i), &o, false).unwrap();
        let mut w = FdWatch::new().unwrap();
        let mut reg = FdRegistry::new(&mut w);
        d.attach(&mut reg).unwrap();
        assert_eq!(reg.timer, Some(0));
        assert_eq!(d.timer(&mut reg), vec![CharEvent::Data(b"hello".to_vec())]);
        assert_eq!(d.timer(&mut reg), vec![CharEvent::Closed]);
        std::fs::remove_file(&i).unwrap();
        std::fs::remove_file(&o).unwrap();
    }

    #[test]
    fn missing_file_reports_qemu_error() {
        let e = FdChardev::open_file(Some("/nonexistent/in"), &tmp("o3"), false)
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "Could not open '/nonexistent/in': No such file or directory"
        );
        let _ = std::fs::remove_file(tmp("o3"));
    }

    #[test]
    fn pipe_uses_in_and_out_fifos() {
        let base = tmp("fifo");
        for s in [".in", ".out"] {
            let c = CString::new(format!("{base}{s}")).unwrap();
            // SAFETY: valid path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        }
        let mut d = FdChardev::open_pipe(&base).unwrap();
        let mut w = FdWatch::new().unwrap();
        let mut reg = FdRegistry::new(&mut w);
        d.attach(&mut reg).unwrap();
        assert_eq!(d.write(b"out!").unwrap(), 4);
        let mut peer_out = std::fs::File::open(format!("{base}.out")).unwrap();
        let mut buf = [0u8; 4];
        std::io::Read::read_exact(&mut peer_out, &mut buf).unwrap();
        assert_eq!(&buf, b"out!");
        let mut peer_in = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("{base}.in"))
            .unwrap();
        std::io::Write::write_all(&mut peer_in, b"in!").unwrap();
        let t = d.in_token.unwrap();
        assert_eq!(
            d.ready(&mut reg, t, true, false),
            vec![CharEvent::Data(b"in!".to_vec())]
        );
        d.close(&mut reg);
        for s in [".in", ".out"] {
            std::fs::remove_file(format!("{base}{s}")).unwrap();
        }
    }

    #[test]
    fn parallel_on_non_port_is_refused() {
        let e = FdChardev::open_parallel("/dev/null").err().unwrap();
        assert_eq!(
            e.to_string(),
            "not a parallel port: Inappropriate ioctl for device"
        );
    }

    #[test]
    fn serial_on_pty_slave_reads_and_writes() {
        let (m, s) = crate::chardev::pty::open_raw_pty().unwrap();
        let mut d = FdChardev::open_serial(&s).unwrap();
        d.write(b"to-host").unwrap();
        let mut buf = [0u8; 16];
        // SAFETY: reading into a stack buffer from the master we own.
        let n = unsafe { libc::read(m.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(&buf[..n as usize], b"to-host");
        assert_eq!(d.filename(), "serial");
    }
}
