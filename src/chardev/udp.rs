//! `udp`: datagrams to a remote address from an optional local one. As in
//! QEMU the device takes writes at once but never reports itself open,
//! and each datagram received is input.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use super::sockaddr::{resolve, SockAddr};
use super::{CharBackend, CharEvent, ChardevError, FdRegistry};
use crate::main_loop::Token;
use crate::sys::oserror::with_errno;

pub struct UdpChardev {
    sock: UdpSocket,
    token: Option<Token>,
}

impl UdpChardev {
    pub fn new(remote: &SockAddr, local: Option<&SockAddr>) -> Result<Self, ChardevError> {
        let SockAddr::Inet(r) = remote else {
            return Err(ChardevError::msg("socket type unsupported for datagram"));
        };
        let mut r = r.clone();
        if r.host.is_empty() {
            r.host = "localhost".into();
        }
        if r.port.is_empty() {
            return Err(ChardevError::msg("remote port not specified"));
        }
        let peer = *resolve(&r, false)
            .map_err(ChardevError::Msg)?
            .first()
            .ok_or_else(|| ChardevError::msg("address resolution failed"))?;
        let (lhost, lport) = match local {
            Some(SockAddr::Inet(l)) => (
                l.host.clone(),
                if l.port.is_empty() {
                    "0".to_string()
                } else {
                    l.port.clone()
                },
            ),
            _ => (String::new(), "0".to_string()),
        };
        let port: u16 = lport.parse().map_err(|_| {
            ChardevError::Msg(format!(
                "address resolution failed for {lhost}:{lport}: Servname not supported for ai_socktype"
            ))
        })?;
        let bind_to: SocketAddr = if lhost.is_empty() {
            if peer.is_ipv4() {
                SocketAddr::from(([0, 0, 0, 0], port))
            } else {
                SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port))
            }
        } else {
            let l = super::sockaddr::InetAddr::new(&lhost, &lport);
            *resolve(&l, true)
                .map_err(ChardevError::Msg)?
                .iter()
                .find(|a| a.is_ipv4() == peer.is_ipv4())
                .ok_or_else(|| {
                    ChardevError::Msg(format!(
                        "address resolution failed for {lhost}:{lport}: Address family for hostname not supported"
                    ))
                })?
        };
        let sock = UdpSocket::bind(bind_to)
            .map_err(|e| ChardevError::Msg(with_errno("Failed to bind socket", &e)))?;
        sock.connect(peer)
            .map_err(|e| ChardevError::Msg(with_errno("Failed to connect socket", &e)))?;
        sock.set_nonblocking(true)?;
        Ok(UdpChardev { sock, token: None })
    }

    #[cfg(test)]
    fn local_addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }
}

impl CharBackend for UdpChardev {
    fn attach(&mut self, fds: &mut FdRegistry) -> io::Result<()> {
        self.token = Some(fds.add(self.sock.as_raw_fd(), true, false)?);
        Ok(())
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
        match self.sock.recv(&mut buf) {
            Ok(n) if n > 0 => {
                buf.truncate(n);
                vec![CharEvent::Data(buf)]
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Vec::new(),
            // An ICMP "port unreachable" for an earlier datagram: the peer
            // may come up later, keep listening.
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => Vec::new(),
            // Empty datagram or a hard error: stop reading, as QEMU does.
            _ => {
                if let Some(t) = self.token.take() {
                    fds.remove(t);
                }
                Vec::new()
            }
        }
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self.sock.send(data) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Ok(data.len()),
            r => r,
        }
    }

    fn is_open(&self) -> bool {
        true
    }

    fn be_open(&self) -> bool {
        false
    }

    fn close(&mut self, fds: &mut FdRegistry) {
        if let Some(t) = self.token.take() {
            fds.remove(t);
        }
    }

    fn filename(&self) -> String {
        "udp".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chardev::sockaddr::InetAddr;
    use crate::main_loop::FdWatch;

    #[test]
    fn datagrams_flow_both_ways() {
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let pport = peer.local_addr().unwrap().port().to_string();
        let remote = SockAddr::Inet(InetAddr::new("127.0.0.1", &pport));
        let local = SockAddr::Inet(InetAddr::new("127.0.0.1", "0"));
        let mut d = UdpChardev::new(&remote, Some(&local)).unwrap();
        let mut w = FdWatch::new().unwrap();
        let mut reg = FdRegistry::new(&mut w);
        d.attach(&mut reg).unwrap();
        d.write(b"hello").unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from, d.local_addr());
        peer.send_to(b"back", from).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let t = d.token.unwrap();
        assert_eq!(
            d.ready(&mut reg, t, true, false),
            vec![CharEvent::Data(b"back".to_vec())]
        );
        assert!(!d.be_open());
        assert_eq!(d.filename(), "udp");
    }

    #[test]
    fn unix_remote_is_refused() {
        let e = UdpChardev::new(&SockAddr::Unix("/x".into()), None)
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "socket type unsupported for datagram");
    }
}
