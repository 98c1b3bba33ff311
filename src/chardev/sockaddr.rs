//! QAPI's SocketAddress for chardevs (inet, unix, fd), name resolution
//! with QEMU's error wording, and the address text QEMU shows in
//! `filename`.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InetAddr {
    pub host: String,
    pub port: String,
    pub to: Option<u16>,
    pub ipv4: Option<bool>,
    pub ipv6: Option<bool>,
}

impl InetAddr {
    pub fn new(host: &str, port: &str) -> Self {
        InetAddr {
            host: host.to_string(),
            port: port.to_string(),
            to: None,
            ipv4: None,
            ipv6: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SockAddr {
    Inet(InetAddr),
    Unix(String),
    /// A descriptor the client passed with `getfd`, by name.
    Fd(String),
}

/// Which address families an address allows (QEMU's
/// inet_ai_family_from_address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Any,
    V4,
    V6,
}

pub fn family(a: &InetAddr) -> Result<Family, String> {
    if a.ipv4 == Some(false) && a.ipv6 == Some(false) {
        return Err("Cannot disable IPv4 and IPv6 at same time".into());
    }
    if a.ipv6 == Some(true) || a.ipv4 == Some(false) {
        return Ok(Family::V6);
    }
    if a.ipv4 == Some(true) || a.ipv6 == Some(false) {
        return Ok(Family::V4);
    }
    Ok(Family::Any)
}

fn family_allows(f: Family, a: &SocketAddr) -> bool {
    match f {
        Family::Any => true,
        Family::V4 => a.is_ipv4(),
        Family::V6 => a.is_ipv6(),
    }
}

/// getaddrinfo's message for a failed lookup, from std's error text.
fn gai_message(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.strip_prefix("failed to lookup address information: ") {
        Some(m) => m.to_string(),
        None if s.contains("invalid port") => "Servname not supported for ai_socktype".into(),
        None => s,
    }
}

/// Resolves `host:port`; an empty host means the wildcard address when
/// `passive` (listening), else localhost.
pub fn resolve(a: &InetAddr, passive: bool) -> Result<Vec<SocketAddr>, String> {
    let fam = family(a)?;
    let fail = |m: String| format!("address resolution failed for {}:{}: {m}", a.host, a.port);
    let Ok(port) = a.port.parse::<u16>() else {
        return Err(fail("Servname not supported for ai_socktype".into()));
    };
    let list: Vec<SocketAddr> = if a.host.is_empty() {
        if passive {
            match fam {
                Family::V6 => vec![SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port))],
                _ => vec![SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port))],
            }
        } else {
            ("localhost", port)
                .to_socket_addrs()
                .map_err(|e| fail(gai_message(&e)))?
                .collect()
        }
    } else {
        (a.host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| fail(gai_message(&e)))?
            .collect()
    };
    let list: Vec<SocketAddr> = list.into_iter().filter(|s| family_allows(fam, s)).collect();
    if list.is_empty() {
        return Err(fail("Address family for hostname not supported".into()));
    }
    Ok(list)
}

/// `host:port` as getnameinfo(NI_NUMERICHOST) prints it, IPv6 hosts in
/// brackets.
pub fn numeric(a: &SocketAddr) -> String {
    match a.ip() {
        IpAddr::V4(ip) => format!("{ip}:{}", a.port()),
        IpAddr::V6(ip) => format!("[{ip}]:{}", a.port()),
    }
}

/// The configured address as QEMU's SocketAddress_to_str prints it.
pub fn describe(addr: &SockAddr, server: bool, telnet: bool) -> String {
    let srv = if server { ",server" } else { "" };
    match addr {
        SockAddr::Inet(a) => format!(
            "{}:{}:{}{srv}",
            if telnet { "telnet" } else { "tcp" },
            a.host,
            a.port
        ),
        SockAddr::Unix(p) => format!("unix:{p}{srv}"),
        SockAddr::Fd(n) => format!("fd:{n}{srv}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_matches_qemu_text() {
        let a = SockAddr::Inet(InetAddr::new("", "4444"));
        assert_eq!(describe(&a, true, true), "telnet::4444,server");
        assert_eq!(
            describe(&SockAddr::Unix("/s".into()), false, false),
            "unix:/s"
        );
        assert_eq!(
            describe(&SockAddr::Fd("f".into()), true, false),
            "fd:f,server"
        );
    }

    #[test]
    fn numeric_brackets_ipv6() {
        assert_eq!(numeric(&"[::1]:5".parse().unwrap()), "[::1]:5");
        assert_eq!(numeric(&"127.0.0.1:5".parse().unwrap()), "127.0.0.1:5");
    }

    #[test]
    fn family_flags() {
        let mut a = InetAddr::new("h", "1");
        a.ipv4 = Some(false);
        a.ipv6 = Some(false);
        assert_eq!(
            family(&a).unwrap_err(),
            "Cannot disable IPv4 and IPv6 at same time"
        );
        a.ipv6 = Some(true);
        assert_eq!(family(&a), Ok(Family::V6));
    }

    #[test]
    fn bad_port_is_a_resolution_error() {
        let e = resolve(&InetAddr::new("127.0.0.1", "nope"), false).unwrap_err();
        assert_eq!(
            e,
            "address resolution failed for 127.0.0.1:nope: Servname not supported for ai_socktype"
        );
    }
}
