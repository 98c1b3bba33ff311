//! Character devices: byte streams that frontends (monitors, serial ports,
//! qtest) read from and write to. Each backend is a small state machine
//! over its file descriptors; the main loop tells it when one is ready.
//!
//! A backend never calls a frontend: it returns [`CharEvent`]s and the
//! emulator routes them (`lifecycle`), so backends stay testable on their
//! own. A backend never blocks the main loop, except `server,wait` sockets
//! during start-up, as QEMU.

pub mod compat;
pub mod fd;
pub mod lifecycle;
pub mod mux;
pub mod null;

pub mod pty;
pub mod ringbuf;
pub mod ringbuf_format;
pub mod sockaddr;
pub mod socket;
pub mod spec;
pub mod stdio;
pub mod telnet;
pub mod testdev;
pub mod udp;

use std::collections::VecDeque;
use std::io;
use std::os::fd::{OwnedFd, RawFd};

use crate::main_loop::{FdWatch, Token};
use crate::vl::opts::{desc, OptType, OptsList};

/// What a backend reports after the main loop woke it.
#[derive(Debug, PartialEq, Eq)]
pub enum CharEvent {
    /// Bytes for the frontend.
    Data(Vec<u8>),
    /// A peer connected (or the device became usable): frontends such as
    /// monitors send their greeting on this.
    Opened,
    /// The peer went away.
    Closed,
}

/// Registration of a backend's fds with the main loop; the emulator records
/// which chardev owns each token. A backend may also ask to be called back
/// (`CharBackend::timer`) after a delay on the realtime clock.
pub struct FdRegistry<'a> {
    pub watch: &'a mut FdWatch,
    pub added: Vec<Token>,
    pub removed: Vec<Token>,
    /// Nanoseconds until the backend wants its `timer` call.
    pub timer: Option<i64>,
}

impl<'a> FdRegistry<'a> {
    pub fn new(watch: &'a mut FdWatch) -> Self {
        FdRegistry {
            watch,
            added: Vec::new(),
            removed: Vec::new(),
            timer: None,
        }
    }

    pub fn add(&mut self, fd: RawFd, read: bool, write: bool) -> io::Result<Token> {
        let t = self.watch.add(fd, read, write)?;
        self.added.push(t);
        Ok(t)
    }

    pub fn remove(&mut self, token: Token) {
        self.watch.remove(token);
        self.removed.push(token);
    }

    pub fn set_interest(&mut self, token: Token, read: bool, write: bool) {
        self.watch.set_interest(token, read, write);
    }

    /// Asks for a `timer` call after `ns` nanoseconds (the earliest
    /// request of one call wins).
    pub fn request_timer(&mut self, ns: i64) {
        self.timer = Some(self.timer.map_or(ns, |t| t.min(ns)));
    }
}

/// One kind of chardev backend.
pub trait CharBackend: Send {
    /// Registers the fds it needs. Called once after creation.
    fn attach(&mut self, fds: &mut FdRegistry) -> io::Result<()>;
    /// Handles a ready fd (one of the tokens it registered).
    fn ready(
        &mut self,
        fds: &mut FdRegistry,
        token: Token,
        readable: bool,
        writable: bool,
    ) -> Vec<CharEvent>;
    /// Writes as much as the device takes now without blocking. Returns the
    /// count taken; bytes written while nothing is connected are dropped and
    /// counted as taken, as QEMU does.
    fn write(&mut self, data: &[u8]) -> io::Result<usize>;
    /// Whether a write would currently reach a peer.
    fn is_open(&self) -> bool;
    /// Whether a frontend attaching now hears `Opened` (QEMU's `be_open`).
    /// Some devices take writes without ever reporting open (null, udp).
    fn be_open(&self) -> bool {
        self.is_open()
    }
    /// The token to watch for writability when output is queued, and
    /// whether that token also waits for input.
    fn write_watch(&self) -> Option<(Token, bool)> {
        None
    }
    /// A delay asked for with `FdRegistry::request_timer` passed.
    fn timer(&mut self, _fds: &mut FdRegistry) -> Vec<CharEvent> {
        Vec::new()
    }
    /// Unregisters and closes everything.
    fn close(&mut self, fds: &mut FdRegistry);
    /// `filename` as query-chardev and `info chardev` print it.
    fn filename(&self) -> String;
    /// File descriptors received with SCM_RIGHTS since the last call.
    fn take_received_fds(&mut self) -> Vec<OwnedFd> {
        Vec::new()
    }
    /// Blocks until a client connects (socket `server,wait`). Returns
    /// events as `ready` does.
    fn wait_for_connection(&mut self, _fds: &mut FdRegistry) -> io::Result<Vec<CharEvent>> {
        Ok(Vec::new())
    }
    /// The pty path for `chardev-add`'s reply and the startup message.
    fn pty_path(&self) -> Option<String> {
        None
    }
    /// The ring of a `ringbuf`/`memory` device, for ringbuf-read/-write.
    fn as_ringbuf(&mut self) -> Option<&mut ringbuf::RingBuf> {
        None
    }
    /// The routing state of a `mux` device.
    fn as_mux(&mut self) -> Option<&mut mux::MuxState> {
        None
    }
    /// Whether this is a `mux` device (frontends attach through it).
    fn is_mux(&self) -> bool {
        false
    }
    /// Whether writing to the device asked the process to exit
    /// (`testdev`'s `q` command); the exit status.
    fn exit_request(&mut self) -> Option<i32> {
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChardevError {
    Msg(String),
}

impl ChardevError {
    pub fn msg(m: impl Into<String>) -> Self {
        ChardevError::Msg(m.into())
    }
}

impl std::fmt::Display for ChardevError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChardevError::Msg(m) => f.write_str(m),
        }
    }
}

impl From<io::Error> for ChardevError {
    fn from(e: io::Error) -> Self {
        ChardevError::Msg(crate::sys::oserror::strerror(&e))
    }
}

/// Who consumes a chardev's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frontend {
    Monitor(usize),
    Qtest,
    Serial(usize),
    /// The chardev is the base of a `mux` device, which routes its input
    /// to the mux's frontends.
    Mux,
}

/// Output a frontend wrote that the device could not take yet. Bounded:
/// a peer that never reads loses output rather than growing memory.
const MAX_QUEUED_OUTPUT: usize = 64 << 20;

pub struct Chardev {
    pub id: String,
    pub backend: Box<dyn CharBackend>,
    pub frontend: Option<Frontend>,
    pub tokens: Vec<Token>,
    outbuf: VecDeque<u8>,
    /// `logfile=`: a copy of everything frontends write (output only).
    pub log: Option<std::fs::File>,
    /// Unique over the process's life: timers scheduled for a removed
    /// chardev never reach a later one with the same id.
    pub serial: u64,
    /// Made from `-chardev`-style options (HMP's chardev-add reports an
    /// id clash with these as a duplicate option id).
    pub from_opts: bool,
}

static NEXT_SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Chardev {
    pub fn new(id: String, backend: Box<dyn CharBackend>) -> Self {
        Chardev {
            id,
            backend,
            frontend: None,
            tokens: Vec::new(),
            outbuf: VecDeque::new(),
            log: None,
            serial: NEXT_SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            from_opts: false,
        }
    }

    /// Applies a registry's changes to this chardev's token list.
    pub fn note_tokens(&mut self, fds: &FdRegistry) {
        self.tokens.retain(|t| !fds.removed.contains(t));
        self.tokens.extend(fds.added.iter().copied());
    }

    /// Queues and writes what the device takes now; the rest waits for
    /// writability.
    pub fn write(&mut self, watch: &mut FdWatch, data: &[u8]) {
        if let Some(log) = self.log.as_mut() {
            use std::io::Write;
            // Logs are best effort, as QEMU's.
            let _ = log.write_all(data);
        }
        if !self.backend.is_open() {
            return;
        }
        if self.outbuf.len() + data.len() > MAX_QUEUED_OUTPUT {
            // The reader is stuck; drop output rather than grow forever.
            return;
        }
        self.outbuf.extend(data);
        self.flush(watch);
    }

    pub fn flush(&mut self, watch: &mut FdWatch) {
        while !self.outbuf.is_empty() {
            let (a, _) = self.outbuf.as_slices();
            match self.backend.write(a) {
                Ok(0) => break,
                Ok(n) => {
                    self.outbuf.drain(..n.min(a.len()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.outbuf.clear();
                    break;
                }
            }
        }
        if !self.backend.is_open() {
            self.outbuf.clear();
        }
        if let Some((t, read)) = self.backend.write_watch() {
            watch.set_interest(t, read, !self.outbuf.is_empty());
        }
    }

    pub fn has_pending_output(&self) -> bool {
        !self.outbuf.is_empty()
    }

    pub fn discard_output(&mut self) {
        self.outbuf.clear();
    }

    /// QEMU's `frontend-open`: some frontend is attached.
    pub fn frontend_open(&mut self) -> bool {
        if self.frontend.is_some() {
            return true;
        }
        self.backend
            .as_mux()
            .is_some_and(|m| !m.frontends.is_empty())
    }
}

/// `-chardev` keys and their types: QEMU checks every key of `-chardev`,
/// HMP `chardev-add` and the legacy syntax against this list.
pub static CHARDEV_OPTS: OptsList = OptsList {
    name: "chardev",
    implied: Some("backend"),
    descs: &[
        desc("backend", OptType::Str),
        desc("path", OptType::Str),
        desc("host", OptType::Str),
        desc("port", OptType::Str),
        desc("localaddr", OptType::Str),
        desc("localport", OptType::Str),
        desc("to", OptType::Number),
        desc("ipv4", OptType::Bool),
        desc("ipv6", OptType::Bool),
        desc("wait", OptType::Bool),
        desc("server", OptType::Bool),
        desc("delay", OptType::Bool),
        desc("reconnect", OptType::Number),
        desc("telnet", OptType::Bool),
        desc("tls-creds", OptType::Str),
        desc("width", OptType::Number),
        desc("height", OptType::Number),
        desc("cols", OptType::Number),
        desc("rows", OptType::Number),
        desc("mux", OptType::Bool),
        desc("signal", OptType::Bool),
        desc("name", OptType::Str),
        desc("debug", OptType::Number),
        desc("size", OptType::Size),
        desc("chardev", OptType::Str),
        desc("append", OptType::Bool),
        desc("logfile", OptType::Str),
        desc("logappend", OptType::Bool),
    ],
};
