//! The legacy chardev syntax of `-serial`, `-monitor`, `-qmp`
//! (`unix:/path,server,nowait`, `tcp:host:port`, `mon:stdio`, ...) turned
//! into `-chardev` options.

use crate::vl::opts::{OptsList, QemuOpts};

/// `-chardev`'s keys with no implied key, for the options after a
/// legacy `tcp:` spec.
static KEYS: OptsList = OptsList {
    name: "chardev",
    implied: None,
    descs: super::CHARDEV_OPTS.descs,
};

/// The same keys with `path` implied, for `unix:`.
static UNIX_KEYS: OptsList = OptsList {
    name: "chardev",
    implied: Some("path"),
    descs: super::CHARDEV_OPTS.descs,
};

/// sscanf's `%7[0-9]` then `sep`: 1 to 7 digits and what follows `sep`.
fn digits_then<'a>(s: &'a str, sep: &str) -> Option<(&'a str, &'a str)> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 || n > 7 {
        return None;
    }
    Some((&s[..n], s[n..].strip_prefix(sep)?))
}

/// sscanf's trailing `%7[0-9]`.
fn leading_digits(rest: &str) -> Option<&str> {
    let n = rest.bytes().take_while(u8::is_ascii_digit).count();
    (n > 0 && n <= 7).then(|| &rest[..n])
}

/// `WxH` in pixels or `WCxHC` in characters, as QEMU's sscanf patterns
/// (anything after the second number is ignored).
fn vc_geometry(g: &str) -> Option<(bool, &str, &str)> {
    if let Some((w, rest)) = digits_then(g, "x") {
        if let Some(h) = leading_digits(rest) {
            return Some((false, w, h));
        }
    }
    let (w, rest) = digits_then(g, "Cx")?;
    let h = leading_digits(rest)?;
    rest[h.len()..].starts_with('C').then_some((true, w, h))
}

fn set(opts: &mut QemuOpts, k: &str, v: &str) {
    opts.items.push((k.to_string(), v.to_string()));
}

/// Splits `host:port` (host may be empty) at the first `:`; the port ends
/// at any of `stop`.
fn host_port<'a>(p: &'a str, stop: &[char]) -> Option<(&'a str, &'a str, &'a str)> {
    let colon = p.find(':')?;
    let host = &p[..colon];
    let rest = &p[colon + 1..];
    let end = rest.find(stop).unwrap_or(rest.len());
    let port = &rest[..end];
    if port.is_empty() {
        return None;
    }
    Some((host, port, &rest[end..]))
}

/// Returns None when the string is not a chardev spec QEMU understands.
pub fn parse_compat(label: &str, spec: &str) -> Option<QemuOpts> {
    let mut opts = QemuOpts {
        id: Some(label.to_string()),
        items: Vec::new(),
    };
    let mut s = spec;
    if let Some(rest) = s.strip_prefix("mon:") {
        s = rest;
        set(&mut opts, "mux", "on");
        if s == "stdio" {
            // -nographic style: Ctrl-C goes to the guest.
            set(&mut opts, "signal", "off");
        }
    }
    if matches!(
        s,
        "null" | "pty" | "msmouse" | "braille" | "testdev" | "stdio"
    ) {
        set(&mut opts, "backend", s);
        return Some(opts);
    }
    if let Some(p) = s.strip_prefix("vc") {
        set(&mut opts, "backend", "vc");
        if let Some(geom) = p.strip_prefix(':') {
            let (chars, w, h) = vc_geometry(geom)?;
            if chars {
                set(&mut opts, "cols", w);
                set(&mut opts, "rows", h);
            } else {
                set(&mut opts, "width", w);
                set(&mut opts, "height", h);
            }
        }
        return Some(opts);
    }
    if s == "con:" {
        set(&mut opts, "backend", "console");
        return Some(opts);
    }
    if s.starts_with("COM") {
        set(&mut opts, "backend", "serial");
        set(&mut opts, "path", s);
        return Some(opts);
    }
    if let Some(p) = s.strip_prefix("file:") {
        set(&mut opts, "backend", "file");
        set(&mut opts, "path", p);
        return Some(opts);
    }
    if let Some(p) = s.strip_prefix("pipe:") {
        set(&mut opts, "backend", "pipe");
        set(&mut opts, "path", p);
        return Some(opts);
    }
    let telnet = s.starts_with("telnet:");
    if let Some(p) = s.strip_prefix("tcp:").or_else(|| s.strip_prefix("telnet:")) {
        let (host, port, rest) = host_port(p, &[','])?;
        set(&mut opts, "backend", "socket");
        set(&mut opts, "host", host);
        set(&mut opts, "port", port);
        if let Some(more) = rest.strip_prefix(',') {
            let extra = KEYS.parse(more, false).ok()?;
            opts.items.extend(extra.items);
        }
        if telnet {
            set(&mut opts, "telnet", "on");
        }
        return Some(opts);
    }
    if let Some(p) = s.strip_prefix("udp:") {
        let (host, port, rest) = host_port(p, &['@', ','])?;
        set(&mut opts, "backend", "udp");
        set(&mut opts, "host", host);
        set(&mut opts, "port", port);
        if let Some(local) = rest.strip_prefix('@') {
            let (lhost, lport, _) = host_port(local, &[','])?;
            set(&mut opts, "localaddr", lhost);
            set(&mut opts, "localport", lport);
        }
        return Some(opts);
    }
    if let Some(p) = s.strip_prefix("unix:") {
        set(&mut opts, "backend", "socket");
        let extra = UNIX_KEYS.parse(p, true).ok()?;
        opts.items.extend(extra.items);
        return Some(opts);
    }
    if s.starts_with("/dev/parport") || s.starts_with("/dev/ppi") {
        set(&mut opts, "backend", "parport");
        set(&mut opts, "path", s);
        return Some(opts);
    }
    if s.starts_with("/dev/") {
        set(&mut opts, "backend", "tty");
        set(&mut opts, "path", s);
        return Some(opts);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_server_nowait() {
        let o = parse_compat("compat_monitor0", "unix:/tmp/q.sock,server,nowait").unwrap();
        assert_eq!(o.get("backend"), Some("socket"));
        assert_eq!(o.get("path"), Some("/tmp/q.sock"));
        assert_eq!(o.get("server"), Some("on"));
        assert_eq!(o.get("wait"), Some("off"));
    }

    #[test]
    fn tcp_with_empty_host_and_telnet() {
        let o = parse_compat("s", "telnet::4444,server").unwrap();
        assert_eq!(o.get("host"), Some(""));
        assert_eq!(o.get("port"), Some("4444"));
        assert_eq!(o.get("telnet"), Some("on"));
    }

    #[test]
    fn mon_stdio_muxes_and_passes_ctrl_c() {
        let o = parse_compat("serial0", "mon:stdio").unwrap();
        assert_eq!(o.get("mux"), Some("on"));
        assert_eq!(o.get("signal"), Some("off"));
        assert_eq!(o.get("backend"), Some("stdio"));
    }

    #[test]
    fn udp_with_local_address() {
        let o = parse_compat("u", "udp:127.0.0.1:5000@:5001").unwrap();
        assert_eq!(o.get("port"), Some("5000"));
        assert_eq!(o.get("localport"), Some("5001"));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse_compat("x", "bogus").is_none());
        assert!(parse_compat("x", "tcp:").is_none());
        assert!(parse_compat("x", "vc:80x").is_none());
        assert!(parse_compat("x", "unix:/p,bogus=1").is_none());
    }

    #[test]
    fn vc_geometry_in_pixels_or_characters() {
        let o = parse_compat("v", "vc:800x600").unwrap();
        assert_eq!(
            (o.get("width"), o.get("height")),
            (Some("800"), Some("600"))
        );
        let o = parse_compat("v", "vc:80Cx24C").unwrap();
        assert_eq!((o.get("cols"), o.get("rows")), (Some("80"), Some("24")));
        // QEMU accepts `vc` followed by anything but `:`.
        assert_eq!(
            parse_compat("v", "vcfoo").unwrap().get("backend"),
            Some("vc")
        );
    }
}
