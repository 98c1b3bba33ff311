//! Character devices: byte streams that frontends (monitors, serial ports,
//! qtest) read from and write to. Each backend is a small state machine
//! over its file descriptors; the main loop tells it when one is ready.
//!
//! A backend never calls a frontend: it returns [`CharEvent`]s and the
//! emulator routes them, so backends stay testable on their own.

pub mod compat;
pub mod null;
pub mod socket;
pub mod stdio;

use std::collections::VecDeque;
use std::io;
use std::os::fd::{OwnedFd, RawFd};

use crate::main_loop::{FdWatch, Token};
use crate::vl::opts::{desc, OptType, OptsList, QemuOpts};

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
/// which chardev owns each token.
pub struct FdRegistry<'a> {
    pub watch: &'a mut FdWatch,
    pub added: Vec<Token>,
    pub removed: Vec<Token>,
}

impl<'a> FdRegistry<'a> {
    pub fn new(watch: &'a mut FdWatch) -> Self {
        FdRegistry {
            watch,
            added: Vec::new(),
            removed: Vec::new(),
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
    /// The token to watch for writability when output is queued.
    fn write_token(&self) -> Option<Token> {
        None
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
}

#[derive(Debug)]
pub enum ChardevError {
    Msg(String),
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
        ChardevError::Msg(e.to_string())
    }
}

/// Who consumes a chardev's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frontend {
    Monitor(usize),
    Qtest,
    Serial(usize),
}

/// Output a frontend wrote that the device could not take yet. Bounded:
/// a peer that never reads is disconnected rather than growing memory.
const MAX_QUEUED_OUTPUT: usize = 64 << 20;

pub struct Chardev {
    pub id: String,
    pub backend: Box<dyn CharBackend>,
    pub frontend: Option<Frontend>,
    pub tokens: Vec<Token>,
    outbuf: VecDeque<u8>,
    pub log: Option<std::fs::File>,
}

impl Chardev {
    pub fn new(id: String, backend: Box<dyn CharBackend>) -> Self {
        Chardev {
            id,
            backend,
            frontend: None,
            tokens: Vec::new(),
            outbuf: VecDeque::new(),
            log: None,
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
                    self.outbuf.drain(..n);
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
        if let Some(t) = self.backend.write_token() {
            watch.set_interest(t, true, !self.outbuf.is_empty());
        }
    }

    pub fn has_pending_output(&self) -> bool {
        !self.outbuf.is_empty()
    }

    pub fn discard_output(&mut self) {
        self.outbuf.clear();
    }
}

/// Builds a backend from `-chardev` options (after `compat` turned legacy
/// syntax into them).
pub fn create_backend(opts: &QemuOpts) -> Result<Box<dyn CharBackend>, ChardevError> {
    let Some(backend) = opts.get("backend") else {
        return Err(ChardevError::Msg("chardev: \"\" missing backend".into()));
    };
    match backend {
        "null" | "vc" => Ok(Box::new(null::NullChardev::new(backend))),
        "socket" => Ok(Box::new(socket::SocketChardev::from_opts(opts)?)),
        "stdio" => Ok(Box::new(stdio::StdioChardev::new(
            opts.get_bool("signal", true)
                .map_err(|e| ChardevError::Msg(e.message))?,
        )?)),
        other => Err(ChardevError::Msg(format!(
            "'{other}' is not a valid char driver name"
        ))),
    }
}

/// `-chardev` keys, for query-command-line-options. Parsing itself accepts
/// any key; each backend checks its own.
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
