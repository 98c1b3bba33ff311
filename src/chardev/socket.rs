//! `socket`: unix or tcp, as a listening server (one client at a time, as
//! QEMU) or as a client.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};

use super::{CharBackend, CharEvent, ChardevError, FdRegistry};
use crate::main_loop::Token;
use crate::sys::fd::ReadOutcome;
use crate::sys::scm::recv_with_fds;
use crate::vl::opts::QemuOpts;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketAddr {
    Unix(String),
    Inet { host: String, port: String },
}

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    fn raw(&self) -> RawFd {
        match self {
            Conn::Unix(s) => s.as_raw_fd(),
            Conn::Tcp(s) => s.as_raw_fd(),
        }
    }
}

impl Listener {
    fn raw(&self) -> RawFd {
        match self {
            Listener::Unix(l) => l.as_raw_fd(),
            Listener::Tcp(l) => l.as_raw_fd(),
        }
    }

    fn accept(&self) -> io::Result<(Conn, String)> {
        match self {
            Listener::Unix(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(true)?;
                Ok((Conn::Unix(s), String::new()))
            }
            Listener::Tcp(l) => {
                let (s, peer) = l.accept()?;
                s.set_nonblocking(true)?;
                let _ = s.set_nodelay(true);
                Ok((Conn::Tcp(s), format!("{}:{}", peer.ip(), peer.port())))
            }
        }
    }
}

pub struct SocketChardev {
    addr: SocketAddr,
    server: bool,
    wait: bool,
    listener: Option<Listener>,
    listen_token: Option<Token>,
    conn: Option<Conn>,
    conn_token: Option<Token>,
    peer: String,
    received_fds: Vec<OwnedFd>,
}

impl SocketChardev {
    pub fn from_opts(opts: &QemuOpts) -> Result<Self, ChardevError> {
        let bool_opt = |k: &str, d: bool| {
            opts.get_bool(k, d)
                .map_err(|e| ChardevError::Msg(e.message))
        };
        let addr = match (opts.get("path"), opts.get("host"), opts.get("port")) {
            (Some(p), _, _) => SocketAddr::Unix(p.to_string()),
            (None, host, Some(port)) => SocketAddr::Inet {
                host: host.unwrap_or("").to_string(),
                port: port.to_string(),
            },
            (None, _, None) => {
                return Err(ChardevError::Msg(
                    "chardev: socket: no host given".to_string(),
                ))
            }
        };
        let server = bool_opt("server", false)?;
        let wait = bool_opt("wait", true)?;
        let mut dev = SocketChardev {
            addr,
            server,
            wait,
            listener: None,
            listen_token: None,
            conn: None,
            conn_token: None,
            peer: String::new(),
            received_fds: Vec::new(),
        };
        if server {
            dev.listen()?;
        } else {
            dev.connect()?;
        }
        Ok(dev)
    }

    pub fn needs_wait(&self) -> bool {
        self.server && self.wait && self.conn.is_none()
    }

    fn listen(&mut self) -> Result<(), ChardevError> {
        let l = match &self.addr {
            SocketAddr::Unix(path) => {
                let _ = std::fs::remove_file(path);
                let l = UnixListener::bind(path).map_err(|e| {
                    ChardevError::Msg(format!("Failed to bind socket to {path}: {e}"))
                })?;
                l.set_nonblocking(true)?;
                Listener::Unix(l)
            }
            SocketAddr::Inet { host, port } => {
                let h = if host.is_empty() { "0.0.0.0" } else { host };
                let l = TcpListener::bind((h, parse_port(port)?))
                    .map_err(|e| ChardevError::Msg(format!("Failed to bind socket: {e}")))?;
                l.set_nonblocking(true)?;
                Listener::Tcp(l)
            }
        };
        self.listener = Some(l);
        Ok(())
    }

    fn connect(&mut self) -> Result<(), ChardevError> {
        let conn = match &self.addr {
            SocketAddr::Unix(path) => {
                let s = UnixStream::connect(path).map_err(|e| {
                    ChardevError::Msg(format!("Failed to connect socket {path}: {e}"))
                })?;
                s.set_nonblocking(true)?;
                Conn::Unix(s)
            }
            SocketAddr::Inet { host, port } => {
                let h = if host.is_empty() { "localhost" } else { host };
                let addrs = (h, parse_port(port)?).to_socket_addrs().map_err(|e| {
                    ChardevError::Msg(format!("address resolution failed for {h}:{port}: {e}"))
                })?;
                let mut last = None;
                let mut stream = None;
                for a in addrs {
                    match TcpStream::connect(a) {
                        Ok(s) => {
                            stream = Some(s);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let s = stream.ok_or_else(|| {
                    ChardevError::Msg(format!(
                        "Failed to connect socket: {}",
                        last.map_or("no address".to_string(), |e| e.to_string())
                    ))
                })?;
                s.set_nonblocking(true)?;
                let _ = s.set_nodelay(true);
                Conn::Tcp(s)
            }
        };
        self.conn = Some(conn);
        Ok(())
    }

    fn disconnect(&mut self, fds: &mut FdRegistry) {
        if let Some(t) = self.conn_token.take() {
            fds.remove(t);
        }
        self.conn = None;
        self.peer.clear();
        if let (Some(l), None) = (&self.listener, self.listen_token) {
            self.listen_token = fds.add(l.raw(), true, false).ok();
        }
    }

    fn accept(&mut self, fds: &mut FdRegistry) -> Vec<CharEvent> {
        let Some(l) = &self.listener else {
            return Vec::new();
        };
        match l.accept() {
            Ok((conn, peer)) => {
                // One client at a time: stop listening until it leaves.
                if let Some(t) = self.listen_token.take() {
                    fds.remove(t);
                }
                self.conn_token = fds.add(conn.raw(), true, false).ok();
                self.conn = Some(conn);
                self.peer = peer;
                vec![CharEvent::Opened]
            }
            Err(_) => Vec::new(),
        }
    }
}

fn parse_port(port: &str) -> Result<u16, ChardevError> {
    port.parse()
        .map_err(|_| ChardevError::Msg(format!("error parsing port '{port}'")))
}

impl CharBackend for SocketChardev {
    fn attach(&mut self, fds: &mut FdRegistry) -> io::Result<()> {
        if let Some(c) = &self.conn {
            self.conn_token = Some(fds.add(c.raw(), true, false)?);
        } else if let Some(l) = &self.listener {
            self.listen_token = Some(fds.add(l.raw(), true, false)?);
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
        if Some(token) == self.listen_token {
            return self.accept(fds);
        }
        if Some(token) != self.conn_token || !readable {
            return Vec::new();
        }
        let Some(conn) = &self.conn else {
            return Vec::new();
        };
        let mut buf = vec![0u8; 65536];
        let outcome = match conn {
            Conn::Unix(s) => recv_with_fds(s.as_raw_fd(), &mut buf, &mut self.received_fds),
            Conn::Tcp(s) => match (&mut &*s).read(&mut buf) {
                Ok(0) => ReadOutcome::Eof,
                Ok(n) => ReadOutcome::Data(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
                Err(e) => ReadOutcome::Error(e),
            },
        };
        match outcome {
            ReadOutcome::Data(n) => {
                buf.truncate(n);
                vec![CharEvent::Data(buf)]
            }
            ReadOutcome::WouldBlock => Vec::new(),
            ReadOutcome::Eof | ReadOutcome::Error(_) => {
                self.disconnect(fds);
                vec![CharEvent::Closed]
            }
        }
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let r = match &mut self.conn {
            None => return Ok(data.len()),
            Some(Conn::Unix(s)) => s.write(data),
            Some(Conn::Tcp(s)) => s.write(data),
        };
        match r {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => {
                // The peer is gone; the read side reports the close.
                Ok(data.len())
            }
            r => r,
        }
    }

    fn is_open(&self) -> bool {
        self.conn.is_some()
    }

    fn write_token(&self) -> Option<Token> {
        self.conn_token
    }

    fn close(&mut self, fds: &mut FdRegistry) {
        for t in [self.conn_token.take(), self.listen_token.take()]
            .into_iter()
            .flatten()
        {
            fds.remove(t);
        }
        self.conn = None;
        if self.listener.take().is_some() {
            if let SocketAddr::Unix(path) = &self.addr {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    fn filename(&self) -> String {
        let base = match &self.addr {
            SocketAddr::Unix(p) => format!("unix:{p}"),
            SocketAddr::Inet { host, port } => format!("tcp:{host}:{port}"),
        };
        let mut s = if self.server {
            format!("{base},server")
        } else {
            base
        };
        if self.conn.is_none() {
            s = format!("disconnected:{s}");
        } else if !self.peer.is_empty() {
            s = format!("{s} <-> {}", self.peer);
        }
        s
    }

    fn take_received_fds(&mut self) -> Vec<OwnedFd> {
        std::mem::take(&mut self.received_fds)
    }

    fn wait_for_connection(&mut self, fds: &mut FdRegistry) -> io::Result<Vec<CharEvent>> {
        if !self.needs_wait() {
            return Ok(Vec::new());
        }
        let Some(l) = &self.listener else {
            return Ok(Vec::new());
        };
        eprintln!("QEMU waiting for connection on: {}", self.filename());
        let mut pfd = libc::pollfd {
            fd: l.raw(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: one valid pollfd; blocks until a client connects.
            let r = unsafe { libc::poll(&mut pfd, 1, -1) };
            if r > 0 {
                let ev = self.accept(fds);
                if !ev.is_empty() {
                    return Ok(ev);
                }
            } else if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return Err(io::Error::last_os_error());
            }
            if crate::sys::signals::take_pending().is_some() {
                return Err(io::Error::other("interrupted by signal"));
            }
        }
    }
}
