//! Listening and connected sockets of the server, TCP or Unix, always in
//! non-blocking mode so that no call into the server can block the main loop.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};

use super::error::NbdError;

/// Where the server listens: QMP's SocketAddress, minus the `fd` variant.
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
}

pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        path: String,
    },
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
                    path: path.clone(),
                })
            }
        }
    }

    pub(crate) fn fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix { listener, .. } => listener.as_raw_fd(),
        }
    }

    /// Give up the listening socket; a Unix socket's file is removed so the
    /// path is free again.
    pub(crate) fn into_fd(self) -> OwnedFd {
        match self {
            Listener::Tcp(l) => OwnedFd::from(l),
            Listener::Unix { listener, path } => {
                let _ = std::fs::remove_file(&path);
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

/// accept() failures that only mean "nothing usable right now": the
/// connection was reset before we took it, or we are out of descriptors
/// for a moment. The server keeps listening.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
    ) || matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::EPROTO)
    )
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

    pub(crate) fn into_fd(self) -> OwnedFd {
        match self {
            Stream::Tcp(s) => OwnedFd::from(s),
            Stream::Unix(s) => OwnedFd::from(s),
        }
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

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
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
}
