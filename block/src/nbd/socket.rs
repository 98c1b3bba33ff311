//! Listening and connected sockets of the server, TCP or Unix, always in
//! non-blocking mode so that no call into the server can block the main loop.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};

use super::error::NbdError;
use super::iobuf::Sink;

/// Where the server listens: QMP's SocketAddress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NbdAddr {
    /// `host` may be a name or a literal; `port` is a decimal string (QAPI
    /// keeps it a string), "0" picks a free port.
    Inet {
        host: String,
        port: String,
    },
    Unix {
        path: String,
    },
    /// A listening socket passed to the monitor under this name. Only the
    /// caller can look the name up: it does, then calls
    /// `NbdServer::from_listener_fd`; `NbdServer::listen` refuses this variant.
    Fd {
        name: String,
    },
}

impl NbdAddr {
    /// Parse the HMP form of an address: `unix:PATH`, `fd:NAME`, `HOST:PORT`,
    /// `:PORT` or `[IPV6]:PORT`, with QEMU's error wording. Trailing
    /// `,option`s after the port are accepted and ignored.
    pub fn parse(s: &str) -> Result<NbdAddr, NbdError> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(NbdError::InvalidAddress(
                    "invalid Unix socket address".into(),
                ));
            }
            return Ok(NbdAddr::Unix {
                path: path.to_string(),
            });
        }
        if let Some(name) = s.strip_prefix("fd:") {
            if name.is_empty() {
                return Err(NbdError::InvalidAddress(
                    "invalid file descriptor address".into(),
                ));
            }
            return Ok(NbdAddr::Fd {
                name: name.to_string(),
            });
        }
        let port_of = |rest: &str| rest.split(',').next().unwrap_or("").to_string();
        let bad = |what: &str| NbdError::InvalidAddress(format!("error parsing {what} '{s}'"));
        let (host, port) = if let Some(rest) = s.strip_prefix(':') {
            (String::new(), port_of(rest))
        } else if let Some(rest) = s.strip_prefix('[') {
            let (host, rest) = rest.split_once("]:").ok_or_else(|| bad("IPv6 address"))?;
            (host.to_string(), port_of(rest))
        } else {
            match s.split_once(':') {
                Some((host, rest)) if !host.is_empty() => (host.to_string(), port_of(rest)),
                _ => return Err(bad("address")),
            }
        };
        if port.is_empty() {
            return Err(if s.starts_with(':') {
                bad("port in address")
            } else {
                bad("address")
            });
        }
        Ok(NbdAddr::Inet { host, port })
    }
}

pub(crate) enum Listener {
    Tcp(TcpListener),
    /// `path` is the socket file we created (None for an inherited fd).
    Unix {
        listener: UnixListener,
        path: Option<BoundPath>,
    },
}

/// The socket file a listener bound, identified by device and inode so that
/// stopping removes it only while it is still ours: another process (or a
/// later server of ours) may have bound the same path since, and must keep
/// its socket. The emulator's chardevs do the same (src/sys/bound_path.rs);
/// this crate cannot depend on that one.
pub(crate) struct BoundPath {
    path: String,
    dev: u64,
    ino: u64,
}

impl BoundPath {
    /// Identity of the file just bound at `path`; None if it cannot be seen
    /// (then it is never removed: leaving a file is better than removing
    /// someone else's).
    fn record(path: &str) -> Option<BoundPath> {
        let m = std::fs::symlink_metadata(path).ok()?;
        Some(BoundPath {
            path: path.to_string(),
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    fn unlink_if_ours(&self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if m.dev() == self.dev && m.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

impl Listener {
    /// Bind and listen. Host name resolution may block briefly, as it does in
    /// QEMU's nbd-server-start.
    pub(crate) fn bind(addr: &NbdAddr) -> Result<Self, NbdError> {
        match addr {
            NbdAddr::Inet { host, port } => {
                let port = parse_port(port)?;
                let host = if host.is_empty() {
                    "0.0.0.0"
                } else {
                    host.as_str()
                };
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let candidates: Vec<SocketAddr> = (host, port)
                    .to_socket_addrs()
                    .map_err(|e| {
                        NbdError::InvalidAddress(format!(
                            "address resolution failed for {host}:{port}: {e}"
                        ))
                    })?
                    .collect();
                let mut last = None;
                for sa in candidates {
                    match TcpListener::bind(sa) {
                        Ok(l) => {
                            l.set_nonblocking(true)
                                .map_err(|e| listen_err("Failed to listen on socket", e))?;
                            return Ok(Listener::Tcp(l));
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(match last {
                    Some(e) => listen_err("Failed to bind socket", e),
                    None => NbdError::InvalidAddress(format!(
                        "address resolution failed for {host}:{port}: no address"
                    )),
                })
            }
            NbdAddr::Unix { path } => {
                if path.is_empty() {
                    return Err(NbdError::InvalidAddress(
                        "invalid Unix socket address".into(),
                    ));
                }
                // A stale socket file from an earlier run would make bind fail.
                let _ = std::fs::remove_file(path);
                let listener = UnixListener::bind(path)
                    .map_err(|e| listen_err(&format!("Failed to bind socket to {path}"), e))?;
                listener
                    .set_nonblocking(true)
                    .map_err(|e| listen_err("Failed to listen on socket", e))?;
                Ok(Listener::Unix {
                    listener,
                    path: BoundPath::record(path),
                })
            }
            NbdAddr::Fd { name } => Err(NbdError::InvalidAddress(format!(
                "socket address 'fd:{name}' must be resolved by the caller"
            ))),
        }
    }

    /// Adopt a socket that is already bound and listening (TCP or Unix).
    pub(crate) fn from_fd(fd: OwnedFd) -> Result<Self, NbdError> {
        let mut domain: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `domain`, a local
        // c_int whose size `len` gives; the fd stays open (owned by `fd`).
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_DOMAIN,
                (&mut domain as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if r < 0 {
            return Err(listen_err(
                "File descriptor is not a socket",
                io::Error::last_os_error(),
            ));
        }
        let listener = match domain {
            libc::AF_UNIX => Listener::Unix {
                listener: UnixListener::from(fd),
                path: None,
            },
            libc::AF_INET | libc::AF_INET6 => Listener::Tcp(TcpListener::from(fd)),
            _ => {
                return Err(NbdError::InvalidAddress(
                    "socket family not supported".into(),
                ))
            }
        };
        let nb = match &listener {
            Listener::Tcp(l) => l.set_nonblocking(true),
            Listener::Unix { listener, .. } => listener.set_nonblocking(true),
        };
        nb.map_err(|e| listen_err("Failed to listen on socket", e))?;
        Ok(listener)
    }

    pub(crate) fn fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix { listener, .. } => listener.as_raw_fd(),
        }
    }

    /// Give up the listening socket; a Unix socket's file is removed so the
    /// path is free again, unless something else has been bound there since.
    pub(crate) fn into_fd(self) -> OwnedFd {
        match self {
            Listener::Tcp(l) => OwnedFd::from(l),
            Listener::Unix { listener, path } => {
                if let Some(path) = path {
                    path.unlink_if_ours();
                }
                OwnedFd::from(listener)
            }
        }
    }

    /// The bound TCP address (to learn the port picked for "0").
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix { .. } => None,
        }
    }

    /// Next pending connection, None when there is none right now.
    pub(crate) fn accept(&self) -> io::Result<Option<Stream>> {
        let res = match self {
            Listener::Tcp(l) => l.accept().map(|(s, _)| {
                // Replies are written whole; delaying small ones only adds latency.
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }),
            Listener::Unix { listener, .. } => listener.accept().map(|(s, _)| Stream::Unix(s)),
        };
        match res {
            Ok(s) => {
                s.set_nonblocking()?;
                Ok(Some(s))
            }
            Err(e) if is_transient(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn parse_port(port: &str) -> Result<u16, NbdError> {
    let n: u64 = port
        .parse()
        .map_err(|_| NbdError::InvalidAddress(format!("can't convert to a number: {port}")))?;
    u16::try_from(n).map_err(|_| NbdError::InvalidAddress(format!("port {port} out of range")))
}

fn listen_err(what: &str, source: io::Error) -> NbdError {
    NbdError::Listen {
        what: what.to_string(),
        source,
    }
}

/// accept() failures that only concern the one connection (reset before
/// we took it) or mean "nothing now". Running out of descriptors is not
/// among them: the connection stays queued and the listener stays readable,
/// so the caller must hear of it and back off instead of spinning.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
    ) || e.raw_os_error() == Some(libc::EPROTO)
}

/// One client connection.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(true),
            Stream::Unix(s) => s.set_nonblocking(true),
        }
    }

    pub(crate) fn fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }

    /// send(2) with MSG_NOSIGNAL: a client that vanished must give us EPIPE,
    /// never a SIGPIPE that would kill the process if it is not ignored.
    fn send(&self, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
        // SAFETY: `buf` is a valid readable slice for its whole length and the
        // fd is a connected socket owned by `self` for the duration of the call.
        let n = unsafe {
            libc::send(
                self.fd(),
                buf.as_ptr().cast(),
                buf.len(),
                flags | libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    pub(crate) fn into_fd(self) -> OwnedFd {
        match self {
            Stream::Tcp(s) => OwnedFd::from(s),
            Stream::Unix(s) => OwnedFd::from(s),
        }
    }

    /// Whether the peer has hung up entirely or the socket has failed
    /// (POLLHUP / POLLERR now), without reading anything.
    pub(crate) fn peer_gone(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.fd(),
            events: 0,
            revents: 0,
        };
        // SAFETY: `p` is one valid pollfd for the call; the fd is owned by
        // `self`; timeout 0 never blocks.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n > 0 && p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
    }

    pub(crate) fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Sink for Stream {
    fn send_file(&mut self, fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<usize> {
        let mut off =
            i64::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        // SAFETY: both fds are open for the call (`fd` is borrowed, the socket
        // is owned by `self`); `off` is a local the kernel may update.
        let n = unsafe { libc::sendfile(self.fd(), fd.as_raw_fd(), &mut off, len) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn write_more(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf, libc::MSG_MORE)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf, 0)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_must_be_a_number_in_range() {
        assert_eq!(parse_port("10809").ok(), Some(10809));
        assert_eq!(
            parse_port("nbd").err().map(|e| e.to_string()).as_deref(),
            Some("can't convert to a number: nbd")
        );
        assert_eq!(
            parse_port("70000").err().map(|e| e.to_string()).as_deref(),
            Some("port 70000 out of range")
        );
    }

    fn parsed(s: &str) -> Result<NbdAddr, String> {
        NbdAddr::parse(s).map_err(|e| e.to_string())
    }

    #[test]
    fn hmp_addresses_parse_like_qemu() {
        let inet = |h: &str, p: &str| {
            Ok(NbdAddr::Inet {
                host: h.into(),
                port: p.into(),
            })
        };
        assert_eq!(parsed("localhost:10809"), inet("localhost", "10809"));
        assert_eq!(parsed(":10809"), inet("", "10809"));
        assert_eq!(parsed("[::1]:10809,ipv6"), inet("::1", "10809"));
        assert_eq!(
            parsed("unix:/tmp/s"),
            Ok(NbdAddr::Unix {
                path: "/tmp/s".into()
            })
        );
        assert_eq!(parsed("fd:srv"), Ok(NbdAddr::Fd { name: "srv".into() }));
        assert_eq!(parsed("unix:"), Err("invalid Unix socket address".into()));
        assert_eq!(
            parsed("localhost"),
            Err("error parsing address 'localhost'".into())
        );
        assert_eq!(
            parsed("[::1"),
            Err("error parsing IPv6 address '[::1'".into())
        );
        assert_eq!(parsed(":"), Err("error parsing port in address ':'".into()));
    }

    #[test]
    fn an_inherited_listening_socket_is_adopted() {
        let std_listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = std_listener.local_addr().expect("addr").port();

        let l = Listener::from_fd(OwnedFd::from(std_listener));

        let got = l.ok().and_then(|l| l.local_addr()).map(|a| a.port());
        assert_eq!(got, Some(port));
    }

    #[test]
    fn tcp_listener_on_port_zero_reports_its_port() {
        let l = Listener::bind(&NbdAddr::Inet {
            host: "127.0.0.1".into(),
            port: "0".into(),
        });
        let port = l.ok().and_then(|l| l.local_addr()).map(|a| a.port());
        assert!(matches!(port, Some(p) if p != 0));
    }

    #[test]
    fn unix_listener_removes_its_socket_file_when_given_up() {
        let path = std::env::temp_dir().join(format!("nbd-sock-test-{}", std::process::id()));
        let path = path.to_string_lossy().into_owned();
        let l = Listener::bind(&NbdAddr::Unix { path: path.clone() });
        assert!(l.is_ok());
        assert!(std::path::Path::new(&path).exists());
        drop(l.map(Listener::into_fd));
        assert!(!std::path::Path::new(&path).exists());
    }

    #[test]
    fn unix_listener_leaves_a_socket_file_bound_by_someone_else_since() {
        let path = std::env::temp_dir().join(format!("nbd-sock-rebound-{}", std::process::id()));
        let path = path.to_string_lossy().into_owned();
        let ours = Listener::bind(&NbdAddr::Unix { path: path.clone() });
        assert!(ours.is_ok());
        // Another server takes the path over (its bind removes our file).
        let theirs = Listener::bind(&NbdAddr::Unix { path: path.clone() });
        assert!(theirs.is_ok());

        drop(ours.map(Listener::into_fd));

        assert!(
            std::path::Path::new(&path).exists(),
            "their socket file is gone"
        );
        drop(theirs.map(Listener::into_fd));
        assert!(!std::path::Path::new(&path).exists());
    }
}
