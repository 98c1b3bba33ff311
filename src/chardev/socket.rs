//! `socket`: unix, tcp or a passed descriptor; a listening server (one
//! client at a time, as QEMU) or a client, with QEMU's options: `wait`
//! (block start-up until a client comes), `telnet` (server-side telnet
//! negotiation and command filtering), `nodelay`, and `reconnect=N` (a
//! client that connects in the background and retries every N seconds
//! on the realtime clock).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};

use super::sockaddr::{describe, numeric, resolve, SockAddr};
use super::spec::SocketSpec;
use super::telnet::{IacFilter, NEGOTIATION};
use super::{CharBackend, CharEvent, ChardevError, FdRegistry};
use crate::main_loop::Token;
use crate::sys::fd::ReadOutcome;
use crate::sys::oserror::{strerror, with_errno};
use crate::sys::scm::recv_with_fds;

const READ_CHUNK: usize = 65536;

/// A plain client connects while the device is created, as in QEMU, but
/// an unreachable peer cannot hold the main loop longer than this.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(data),
            Conn::Tcp(s) => s.write(data),
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

    fn accept(&self) -> io::Result<Conn> {
        match self {
            Listener::Unix(l) => Ok(Conn::Unix(l.accept()?.0)),
            Listener::Tcp(l) => Ok(Conn::Tcp(l.accept()?.0)),
        }
    }
}

/// A TCP connect in progress (reconnecting clients never block).
struct Connecting {
    sock: OwnedFd,
    token: Token,
    rest: Vec<SocketAddr>,
}

pub struct SocketChardev {
    label: String,
    addr: SockAddr,
    server: bool,
    /// `server,wait`: start-up blocks until a client connects.
    wait: bool,
    telnet: bool,
    nodelay: bool,
    reconnect_ns: i64,
    /// Telnet negotiation and filtering (servers only, as QEMU).
    do_telnet: bool,
    iac: IacFilter,
    listener: Option<Listener>,
    listen_token: Option<Token>,
    conn: Option<Conn>,
    conn_token: Option<Token>,
    /// Negotiation bytes still to send before the connection opens.
    telnet_out: Vec<u8>,
    /// The frontend heard `Opened` for this connection.
    connected: bool,
    /// `filename` while connected.
    conn_name: String,
    connecting: Option<Connecting>,
    connect_err_reported: bool,
    unlink_on_close: Option<crate::sys::bound_path::BoundPath>,
    received_fds: Vec<OwnedFd>,
}

/// The family of a socket descriptor (AF_UNIX or an inet one).
fn is_unix_socket(fd: RawFd) -> bool {
    // SAFETY: sockaddr_storage is plain data; getsockname fills it.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: valid pointers to storage of the stated length.
    let r = unsafe {
        libc::getsockname(
            fd,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    r == 0 && i32::from(ss.ss_family) == libc::AF_UNIX
}

/// Starts a non-blocking TCP connect; true when it is still in progress.
fn start_connect(addr: &SocketAddr) -> io::Result<(OwnedFd, bool)> {
    let (family, storage, len) = sockaddr_of(addr);
    // SAFETY: plain socket creation.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is ours.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: storage holds a sockaddr of `len` bytes.
    let r = unsafe { libc::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), len) };
    if r == 0 {
        return Ok((sock, false));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINPROGRESS) {
        return Ok((sock, true));
    }
    Err(e)
}

fn sockaddr_of(addr: &SocketAddr) -> (i32, libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            (
                libc::AF_INET,
                ss,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            (
                libc::AF_INET6,
                ss,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

fn take_socket_error(fd: RawFd) -> Option<io::Error> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: err is a c_int of the stated length.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Some(io::Error::last_os_error());
    }
    (err != 0).then(|| io::Error::from_raw_os_error(err))
}

impl SocketChardev {
    /// Creates the device: servers listen at once, plain clients connect
    /// at once (failing creation as QEMU), reconnecting clients connect in
    /// the background. `passed` is the descriptor of an `fd` address.
    pub fn new(
        label: &str,
        spec: &SocketSpec,
        passed: Option<OwnedFd>,
    ) -> Result<Self, ChardevError> {
        if let Some(id) = &spec.tls_creds {
            return Err(ChardevError::Msg(format!(
                "No TLS credentials with id '{id}'"
            )));
        }
        let reconnect = !spec.server && spec.reconnect > 0;
        let mut dev = SocketChardev {
            label: label.to_string(),
            addr: spec.addr.clone(),
            server: spec.server,
            wait: spec.server && spec.wait,
            telnet: spec.telnet,
            nodelay: spec.nodelay,
            reconnect_ns: if reconnect {
                spec.reconnect.saturating_mul(1_000_000_000)
            } else {
                0
            },
            do_telnet: spec.server && spec.telnet,
            iac: IacFilter::default(),
            listener: None,
            listen_token: None,
            conn: None,
            conn_token: None,
            telnet_out: Vec::new(),
            connected: false,
            conn_name: String::new(),
            connecting: None,
            connect_err_reported: false,
            unlink_on_close: None,
            received_fds: Vec::new(),
        };
        if spec.server {
            dev.listen(passed)?;
        } else if !reconnect {
            let conn = dev.connect_sync(passed)?;
            dev.new_client(conn, None);
        }
        Ok(dev)
    }

    /// `server` with `wait`: start-up blocks until a client connects.
    pub fn needs_wait(&self) -> bool {
        self.wait && self.conn.is_none()
    }

    fn listen(&mut self, passed: Option<OwnedFd>) -> Result<(), ChardevError> {
        let l = match &self.addr {
            SockAddr::Fd(_) => {
                let fd = passed.ok_or_else(|| {
                    ChardevError::msg("No file descriptor supplied via SCM_RIGHTS")
                })?;
                if is_unix_socket(fd.as_raw_fd()) {
                    Listener::Unix(UnixListener::from(fd))
                } else {
                    Listener::Tcp(TcpListener::from(fd))
                }
            }
            SockAddr::Unix(path) => {
                if let Err(e) = std::fs::remove_file(path) {
                    if e.kind() != io::ErrorKind::NotFound {
                        return Err(ChardevError::Msg(with_errno(
                            &format!("Failed to unlink socket {path}"),
                            &e,
                        )));
                    }
                }
                let l = UnixListener::bind(path).map_err(|e| {
                    ChardevError::Msg(with_errno(&format!("Failed to bind socket to {path}"), &e))
                })?;
                self.unlink_on_close = crate::sys::bound_path::BoundPath::new(path);
                Listener::Unix(l)
            }
            SockAddr::Inet(a) => {
                let addrs = resolve(a, true).map_err(ChardevError::Msg)?;
                let mut last = None;
                let mut bound = None;
                'outer: for base in addrs {
                    let hi = a.to.unwrap_or(base.port()).max(base.port());
                    for p in base.port()..=hi {
                        let mut sa = base;
                        sa.set_port(p);
                        match TcpListener::bind(sa) {
                            Ok(l) => {
                                bound = Some(l);
                                break 'outer;
                            }
                            Err(e) => last = Some(e),
                        }
                    }
                }
                let l = bound.ok_or_else(|| {
                    ChardevError::Msg(match last {
                        Some(e) => with_errno("Failed to bind socket", &e),
                        None => "Failed to bind socket".into(),
                    })
                })?;
                Listener::Tcp(l)
            }
        };
        match &l {
            Listener::Unix(u) => u.set_nonblocking(true)?,
            Listener::Tcp(t) => t.set_nonblocking(true)?,
        }
        self.listener = Some(l);
        Ok(())
    }

    fn connect_sync(&mut self, passed: Option<OwnedFd>) -> Result<Conn, ChardevError> {
        match &self.addr {
            SockAddr::Fd(_) => {
                let fd = passed.ok_or_else(|| {
                    ChardevError::msg("No file descriptor supplied via SCM_RIGHTS")
                })?;
                Ok(if is_unix_socket(fd.as_raw_fd()) {
                    Conn::Unix(UnixStream::from(fd))
                } else {
                    Conn::Tcp(TcpStream::from(fd))
                })
            }
            SockAddr::Unix(path) => UnixStream::connect(path)
                .map(Conn::Unix)
                .map_err(|e| ChardevError::Msg(with_errno("Failed to connect socket", &e))),
            SockAddr::Inet(a) => {
                let mut last = None;
                for sa in resolve(a, false).map_err(ChardevError::Msg)? {
                    match TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT) {
                        Ok(s) => return Ok(Conn::Tcp(s)),
                        Err(e) => last = Some(e),
                    }
                }
                Err(ChardevError::Msg(match last {
                    Some(e) => with_errno("Failed to connect socket", &e),
                    None => "Failed to connect socket".into(),
                }))
            }
        }
    }

    /// QEMU's filename while connected: the local end, `,server`, and for
    /// inet sockets `<-> peer`.
    fn connected_name(&self, conn: &Conn) -> String {
        let srv = if self.server { ",server" } else { "" };
        match conn {
            Conn::Unix(s) => {
                let local = s
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(|p| p.to_string_lossy().into_owned()))
                    .unwrap_or_default();
                format!("unix:{local}{srv}")
            }
            Conn::Tcp(s) => {
                let proto = if self.telnet { "telnet" } else { "tcp" };
                let local = s.local_addr().map(|a| numeric(&a)).unwrap_or_default();
                let peer = s.peer_addr().map(|a| numeric(&a)).unwrap_or_default();
                format!("{proto}:{local}{srv} <-> {peer}")
            }
        }
    }

    /// Takes a new connection; returns `Opened` unless telnet negotiation
    /// must go out first.
    fn new_client(&mut self, conn: Conn, mut fds: Option<&mut FdRegistry>) -> Vec<CharEvent> {
        match &conn {
            Conn::Unix(s) => {
                let _ = s.set_nonblocking(true);
            }
            Conn::Tcp(s) => {
                let _ = s.set_nonblocking(true);
                if self.nodelay {
                    let _ = s.set_nodelay(true);
                }
            }
        }
        self.conn_name = self.connected_name(&conn);
        let raw = conn.raw();
        self.conn = Some(conn);
        if let Some(fds) = fds.as_deref_mut() {
            if let Some(t) = self.listen_token.take() {
                fds.remove(t);
            }
            self.conn_token = fds.add(raw, true, false).ok();
        }
        if self.do_telnet {
            self.telnet_out = NEGOTIATION.to_vec();
            return self.push_telnet(fds);
        }
        self.connected = true;
        vec![CharEvent::Opened]
    }

    fn push_telnet(&mut self, fds: Option<&mut FdRegistry>) -> Vec<CharEvent> {
        let Some(conn) = self.conn.as_mut() else {
            return Vec::new();
        };
        while !self.telnet_out.is_empty() {
            match conn.write(&self.telnet_out) {
                Ok(0) => break,
                Ok(n) => {
                    self.telnet_out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    // The client left during negotiation.
                    self.telnet_out.clear();
                    return match fds {
                        Some(fds) => self.disconnect(fds),
                        None => {
                            self.conn = None;
                            Vec::new()
                        }
                    };
                }
            }
        }
        if let (Some(fds), Some(t)) = (fds, self.conn_token) {
            // Input waits in the socket until the negotiation is out.
            let pending = !self.telnet_out.is_empty();
            fds.set_interest(t, !pending, pending);
        }
        if self.telnet_out.is_empty() {
            self.connected = true;
            return vec![CharEvent::Opened];
        }
        Vec::new()
    }

    fn disconnect(&mut self, fds: &mut FdRegistry) -> Vec<CharEvent> {
        if let Some(t) = self.conn_token.take() {
            fds.remove(t);
        }
        self.conn = None;
        self.telnet_out.clear();
        self.received_fds.clear();
        let was = std::mem::take(&mut self.connected);
        if let (Some(l), None) = (&self.listener, self.listen_token) {
            self.listen_token = fds.add(l.raw(), true, false).ok();
        }
        if self.reconnect_ns > 0 {
            fds.request_timer(self.reconnect_ns);
        }
        if was {
            vec![CharEvent::Closed]
        } else {
            Vec::new()
        }
    }

    fn accept(&mut self, fds: &mut FdRegistry) -> Vec<CharEvent> {
        let Some(l) = &self.listener else {
            return Vec::new();
        };
        match l.accept() {
            Ok(conn) => self.new_client(conn, Some(fds)),
            Err(_) => Vec::new(),
        }
    }

    fn report_connect_error(&mut self, msg: &str, fds: &mut FdRegistry) {
        if !self.connect_err_reported {
            eprintln!(
                "qemu-system-x86_64: Unable to connect character device {}: {msg}",
                self.label
            );
            self.connect_err_reported = true;
        }
        fds.request_timer(self.reconnect_ns);
    }

    fn connected_client(&mut self, conn: Conn, fds: &mut FdRegistry) -> Vec<CharEvent> {
        self.connect_err_reported = false;
        self.new_client(conn, Some(fds))
    }

    /// One background connect attempt of a reconnecting client.
    fn try_connect(&mut self, fds: &mut FdRegistry) -> Vec<CharEvent> {
        match self.addr.clone() {
            SockAddr::Unix(path) => match UnixStream::connect(&path) {
                Ok(s) => self.connected_client(Conn::Unix(s), fds),
                Err(e) => {
                    self.report_connect_error(&with_errno("Failed to connect socket", &e), fds);
                    Vec::new()
                }
            },
            SockAddr::Inet(a) => match resolve(&a, false) {
                Ok(list) => self.connect_next(list, None, fds),
                Err(m) => {
                    self.report_connect_error(&m, fds);
                    Vec::new()
                }
            },
            SockAddr::Fd(_) => {
                self.report_connect_error("Failed to connect socket: Bad file descriptor", fds);
                Vec::new()
            }
        }
    }

    fn connect_next(
        &mut self,
        mut list: Vec<SocketAddr>,
        mut last: Option<io::Error>,
        fds: &mut FdRegistry,
    ) -> Vec<CharEvent> {
        while !list.is_empty() {
            let sa = list.remove(0);
            match start_connect(&sa) {
                Ok((sock, false)) => {
                    return self.connected_client(Conn::Tcp(TcpStream::from(sock)), fds)
                }
                Ok((sock, true)) => match fds.add(sock.as_raw_fd(), false, true) {
                    Ok(token) => {
                        self.connecting = Some(Connecting {
                            sock,
                            token,
                            rest: list,
                        });
                        return Vec::new();
                    }
                    Err(e) => last = Some(e),
                },
                Err(e) => last = Some(e),
            }
        }
        let msg = match last {
            Some(e) => format!("Failed to connect socket: {}", strerror(&e)),
            None => "Failed to connect socket".into(),
        };
        self.report_connect_error(&msg, fds);
        Vec::new()
    }

    fn connect_progress(&mut self, fds: &mut FdRegistry) -> Vec<CharEvent> {
        let Some(c) = self.connecting.take() else {
            return Vec::new();
        };
        fds.remove(c.token);
        match take_socket_error(c.sock.as_raw_fd()) {
            None => self.connected_client(Conn::Tcp(TcpStream::from(c.sock)), fds),
            Some(e) => self.connect_next(c.rest, Some(e), fds),
        }
    }
}

impl CharBackend for SocketChardev {
    fn attach(&mut self, fds: &mut FdRegistry) -> io::Result<()> {
        if let Some(c) = &self.conn {
            let pending = !self.telnet_out.is_empty();
            self.conn_token = Some(fds.add(c.raw(), !pending, pending)?);
        } else if let Some(l) = &self.listener {
            self.listen_token = Some(fds.add(l.raw(), true, false)?);
        } else if self.reconnect_ns > 0 {
            fds.request_timer(0);
        }
        Ok(())
    }

    fn ready(
        &mut self,
        fds: &mut FdRegistry,
        token: Token,
        readable: bool,
        writable: bool,
    ) -> Vec<CharEvent> {
        if Some(token) == self.listen_token {
            return self.accept(fds);
        }
        if self.connecting.as_ref().is_some_and(|c| c.token == token) {
            return self.connect_progress(fds);
        }
        if Some(token) != self.conn_token {
            return Vec::new();
        }
        let mut events = Vec::new();
        if writable && !self.telnet_out.is_empty() {
            events = self.push_telnet(Some(fds));
        }
        if !readable || !self.connected {
            return events;
        }
        let Some(conn) = &self.conn else {
            return events;
        };
        let mut buf = vec![0u8; READ_CHUNK];
        let outcome = match conn {
            Conn::Unix(s) => recv_with_fds(s.as_raw_fd(), &mut buf, &mut self.received_fds),
            Conn::Tcp(s) => match (&mut &*s).read(&mut buf) {
                Ok(0) => ReadOutcome::Eof,
                Ok(n) => ReadOutcome::Data(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
                Err(_) => ReadOutcome::Error,
            },
        };
        match outcome {
            ReadOutcome::Data(n) => {
                buf.truncate(n);
                if self.do_telnet {
                    // A telnet BREAK has no frontend event here; dropped.
                    self.iac.filter(&mut buf);
                }
                if !buf.is_empty() {
                    events.push(CharEvent::Data(buf));
                }
            }
            ReadOutcome::WouldBlock => {}
            ReadOutcome::Eof | ReadOutcome::Error => events.extend(self.disconnect(fds)),
        }
        events
    }

    fn timer(&mut self, fds: &mut FdRegistry) -> Vec<CharEvent> {
        if self.reconnect_ns == 0 || self.conn.is_some() || self.connecting.is_some() {
            return Vec::new();
        }
        self.try_connect(fds)
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Some(conn) = self.conn.as_mut().filter(|_| self.connected) else {
            return Ok(data.len());
        };
        match conn.write(data) {
            // The peer is gone; the read side reports the close.
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Ok(data.len()),
            r => r,
        }
    }

    fn is_open(&self) -> bool {
        self.connected
    }

    fn write_watch(&self) -> Option<(Token, bool)> {
        self.conn_token.map(|t| (t, true))
    }

    fn close(&mut self, fds: &mut FdRegistry) {
        for t in [self.conn_token.take(), self.listen_token.take()]
            .into_iter()
            .flatten()
        {
            fds.remove(t);
        }
        if let Some(c) = self.connecting.take() {
            fds.remove(c.token);
        }
        self.conn = None;
        self.connected = false;
        self.reconnect_ns = 0;
        if self.listener.take().is_some() {
            if let Some(bound) = self.unlink_on_close.take() {
                bound.unlink_if_ours();
            }
        }
    }

    fn filename(&self) -> String {
        if self.connected {
            self.conn_name.clone()
        } else {
            format!(
                "disconnected:{}",
                describe(&self.addr, self.server, self.telnet)
            )
        }
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
                if self.conn.is_some() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chardev::sockaddr::InetAddr;
    use crate::main_loop::FdWatch;

    fn spec(addr: SockAddr, server: bool) -> SocketSpec {
        SocketSpec {
            addr,
            tls_creds: None,
            server,
            wait: false,
            nodelay: false,
            telnet: false,
            reconnect: 0,
        }
    }

    fn sock_path(name: &str) -> String {
        std::env::temp_dir()
            .join(format!("rqemu-sock-{}-{name}", std::process::id()))
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn unix_server_accepts_and_names_itself() {
        let path = sock_path("srv");
        let mut d =
            SocketChardev::new("s", &spec(SockAddr::Unix(path.clone()), true), None).unwrap();
        let mut w = FdWatch::new().unwrap();
        let mut reg = FdRegistry::new(&mut w);
        d.attach(&mut reg).unwrap();
        assert_eq!(d.filename(), format!("disconnected:unix:{path},server"));
        let mut client = UnixStream::connect(&path).unwrap();
        let lt = d.listen_token.unwrap();
        assert_eq!(d.ready(&mut reg, lt, true, false), vec![CharEvent::Opened]);
        assert_eq!(d.filename(), format!("unix:{path},server"));
        client.write_all(b"ping").unwrap();
        let ct = d.conn_token.unwrap();
        assert_eq!(
            d.ready(&mut reg, ct, true, false),
            vec![CharEvent::Data(b"ping".to_vec())]
        );
        d.write(b"pong").unwrap();
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"pong");
        drop(client);
        assert_eq!(d.ready(&mut reg, ct, true, false), vec![CharEvent::Closed]);
        assert!(d.listen_token.is_some());
        d.close(&mut reg);
        assert!(!std::path::Path::new(&path).exists());
    }

    #[test]
    fn telnet_server_negotiates_then_strips_commands() {
        let mut s = spec(SockAddr::Inet(InetAddr::new("127.0.0.1", "0")), true);
        s.telnet = true;
        let mut d = SocketChardev::new("t", &s, None).unwrap();
        let port = match &d.listener {
            Some(Listener::Tcp(l)) => l.local_addr().unwrap().port(),
            _ => unreachable!(),
        };
        let mut w = FdWatch::new().unwrap();
        let mut reg = FdRegistry::new(&mut w);
        d.attach(&mut reg).unwrap();
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let lt = d.listen_token.unwrap();
        assert_eq!(d.ready(&mut reg, lt, true, false), vec![CharEvent::Opened]);
        let mut neg = [0u8; 12];
        client.read_exact(&mut neg).unwrap();
        assert_eq!(neg, NEGOTIATION);
        assert!(d.filename().starts_with("telnet:127.0.0.1:"));
        assert!(d.filename().contains(",server <-> 127.0.0.1:"));
        client.write_all(b"a\xff\xfd\x03b\xff\xffc").unwrap();
        let ct = d.conn_token.unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(
            d.ready(&mut reg, ct, true, false),
            vec![CharEvent::Data(b"ab\xffc".to_vec())]
        );
        d.close(&mut reg);
    }

    #[test]
    fn plain_client_fails_at_once_when_nobody_listens() {
        let e = SocketChardev::new("c", &spec(SockAddr::Unix(sock_path("none")), false), None)
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "Failed to connect socket: No such file or directory"
        );
    }

    #[test]
    fn reconnecting_client_connects_in_background_and_after_loss() {
        let path = sock_path("rec");
        let mut s = spec(SockAddr::Unix(path.clone()), false);
        s.reconnect = 1;
        let mut d = SocketChardev::new("r", &s, None).unwrap();
        let mut w = FdWatch::new().unwrap();
        let mut reg = FdRegistry::new(&mut w);
        d.attach(&mut reg).unwrap();
        assert_eq!(reg.timer, Some(0));
        assert_eq!(d.filename(), format!("disconnected:unix:{path}"));
        // Nobody listens: the attempt fails quietly after one report and
        // a retry is scheduled a second later.
        reg.timer = None;
        assert_eq!(d.timer(&mut reg), vec![]);
        assert_eq!(reg.timer, Some(1_000_000_000));
        let l = UnixListener::bind(&path).unwrap();
        assert_eq!(d.timer(&mut reg), vec![CharEvent::Opened]);
        assert_eq!(d.filename(), "unix:");
        let (peer, _) = l.accept().unwrap();
        drop(peer);
        let ct = d.conn_token.unwrap();
        reg.timer = None;
        assert_eq!(d.ready(&mut reg, ct, true, false), vec![CharEvent::Closed]);
        assert_eq!(reg.timer, Some(1_000_000_000));
        assert_eq!(d.timer(&mut reg), vec![CharEvent::Opened]);
        d.close(&mut reg);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn reconnecting_tcp_client_completes_nonblocking_connect() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port().to_string();
        let mut s = spec(SockAddr::Inet(InetAddr::new("127.0.0.1", &port)), false);
        s.reconnect = 5;
        s.nodelay = true;
        let mut d = SocketChardev::new("r", &s, None).unwrap();
        let mut w = FdWatch::new().unwrap();
        let mut reg = FdRegistry::new(&mut w);
        d.attach(&mut reg).unwrap();
        let mut ev = d.timer(&mut reg);
        if ev.is_empty() {
            let t = d.connecting.as_ref().unwrap().token;
            std::thread::sleep(std::time::Duration::from_millis(20));
            ev = d.ready(&mut reg, t, false, true);
        }
        assert_eq!(ev, vec![CharEvent::Opened]);
        assert!(d.filename().starts_with("tcp:127.0.0.1:"));
        assert!(d.filename().ends_with(&format!(" <-> 127.0.0.1:{port}")));
        d.close(&mut reg);
    }

    #[test]
    fn tls_creds_are_refused_without_the_object() {
        let mut s = spec(SockAddr::Inet(InetAddr::new("127.0.0.1", "1")), true);
        s.tls_creds = Some("tls0".into());
        let e = SocketChardev::new("x", &s, None).err().unwrap();
        assert_eq!(e.to_string(), "No TLS credentials with id 'tls0'");
    }
}
