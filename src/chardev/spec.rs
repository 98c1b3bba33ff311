//! What a chardev is made of, as QAPI's ChardevBackend describes it,
//! built either from `-chardev`/HMP options (QEMU's qemu_chr_parse_*) or
//! from QMP `chardev-add` arguments, with each path's defaults.

use serde_json::{Map, Value};

use super::sockaddr::{InetAddr, SockAddr};
use super::ChardevError;
use crate::vl::opts::QemuOpts;

/// ChardevCommon.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Common {
    pub logfile: Option<String>,
    pub logappend: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketSpec {
    pub addr: SockAddr,
    pub tls_creds: Option<String>,
    pub server: bool,
    pub wait: bool,
    pub nodelay: bool,
    pub telnet: bool,
    pub reconnect: i64,
}

/// ChardevBackend's branches. Names are the QAPI tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    File {
        input: Option<String>,
        out: String,
        append: bool,
    },
    Serial {
        device: String,
    },
    Parallel {
        device: String,
    },
    Pipe {
        device: String,
    },
    Socket(SocketSpec),
    Udp {
        remote: SockAddr,
        local: Option<SockAddr>,
    },
    Pty,
    Null,
    Mux {
        chardev: String,
    },
    Msmouse,
    Braille,
    Testdev,
    Stdio {
        signal: Option<bool>,
    },
    Console,
    Spicevmc,
    Spiceport,
    Vc,
    Ringbuf {
        size: Option<i64>,
    },
    Memory {
        size: Option<i64>,
    },
}

impl Backend {
    /// The QAPI tag (ChardevBackendKind), which is also the `filename`
    /// of devices that set none of their own.
    pub fn kind(&self) -> &'static str {
        match self {
            Backend::File { .. } => "file",
            Backend::Serial { .. } => "serial",
            Backend::Parallel { .. } => "parallel",
            Backend::Pipe { .. } => "pipe",
            Backend::Socket(_) => "socket",
            Backend::Udp { .. } => "udp",
            Backend::Pty => "pty",
            Backend::Null => "null",
            Backend::Mux { .. } => "mux",
            Backend::Msmouse => "msmouse",
            Backend::Braille => "braille",
            Backend::Testdev => "testdev",
            Backend::Stdio { .. } => "stdio",
            Backend::Console => "console",
            Backend::Spicevmc => "spicevmc",
            Backend::Spiceport => "spiceport",
            Backend::Vc => "vc",
            Backend::Ringbuf { .. } => "ringbuf",
            Backend::Memory { .. } => "memory",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChardevSpec {
    pub backend: Backend,
    pub common: Common,
}

/// Driver names `backend=` accepts, in QEMU's registration order (which
/// `-chardev help` prints). This build has no brlapi (braille), no SPICE
/// (spicevmc, spiceport) and is not Windows (console), as a QEMU built
/// without those.
pub const DRIVER_NAMES: &[&str] = &[
    "null", "socket", "udp", "ringbuf", "file", "stdio", "serial", "tty", "parallel", "parport",
    "pty", "pipe", "mux", "memory", "vc", "msmouse", "testdev",
];

/// query-chardev-backends lists drivers newest registration first.
pub fn backends_for_query() -> impl Iterator<Item = &'static str> {
    DRIVER_NAMES.iter().rev().copied()
}

/// Whether `chardev-add` can create this branch here.
pub fn available(b: &Backend) -> bool {
    !matches!(
        b,
        Backend::Braille | Backend::Console | Backend::Spicevmc | Backend::Spiceport
    )
}

fn opts_err(e: crate::vl::opts::OptsError) -> ChardevError {
    ChardevError::Msg(e.message)
}

/// Checks every key and value type against `-chardev`'s list, as QEMU's
/// option parser does before any backend sees them.
pub fn validate_opts(opts: &QemuOpts) -> Result<(), ChardevError> {
    for (k, v) in &opts.items {
        let Some(d) = super::CHARDEV_OPTS.descs.iter().find(|d| d.name == k) else {
            return Err(ChardevError::Msg(format!("Invalid parameter '{k}'")));
        };
        use crate::vl::opts::{parse_bool, parse_number, parse_size, OptType};
        match d.ty {
            OptType::Str => {}
            OptType::Bool => {
                parse_bool(k, v).map_err(opts_err)?;
            }
            OptType::Number => {
                parse_number(k, v).map_err(opts_err)?;
            }
            OptType::Size => {
                parse_size(k, v).map_err(opts_err)?;
            }
        }
    }
    Ok(())
}

fn common_from_opts(opts: &QemuOpts) -> Result<Common, ChardevError> {
    Ok(Common {
        logfile: opts.get("logfile").map(String::from),
        logappend: opts.get_bool("logappend", false).map_err(opts_err)?,
    })
}

fn required<'a>(opts: &'a QemuOpts, key: &str, msg: &str) -> Result<&'a str, ChardevError> {
    opts.get(key).ok_or_else(|| ChardevError::msg(msg))
}

fn opt_bool(opts: &QemuOpts, key: &str, default: bool) -> Result<bool, ChardevError> {
    opts.get_bool(key, default).map_err(opts_err)
}

fn opt_flag(opts: &QemuOpts, key: &str) -> Result<Option<bool>, ChardevError> {
    match opts.get(key) {
        None => Ok(None),
        Some(_) => opt_bool(opts, key, false).map(Some),
    }
}

/// QemuOpts (already checked with `validate_opts`) to a spec, as QEMU's
/// per-driver parse functions. `driver` is the `backend=` name.
pub fn from_opts(driver: &str, opts: &QemuOpts) -> Result<ChardevSpec, ChardevError> {
    let common = common_from_opts(opts)?;
    let backend = match driver {
        "file" => Backend::File {
            input: None,
            out: required(opts, "path", "chardev: file: no filename given")?.to_string(),
            append: opt_bool(opts, "append", false)?,
        },
        "stdio" => Backend::Stdio {
            signal: Some(opt_bool(opts, "signal", true)?),
        },
        "serial" | "tty" => Backend::Serial {
            device: required(opts, "path", "chardev: serial/tty: no device path given")?
                .to_string(),
        },
        "parallel" | "parport" => Backend::Parallel {
            device: required(opts, "path", "chardev: parallel: no device path given")?.to_string(),
        },
        "pipe" => Backend::Pipe {
            device: required(opts, "path", "chardev: pipe: no device path given")?.to_string(),
        },
        "ringbuf" | "memory" => {
            // QEMU keeps the size in an int: larger values wrap.
            let v = opts.get_size("size").map_err(opts_err)?.unwrap_or(0) as i32;
            let size = (v != 0).then_some(i64::from(v));
            if driver == "ringbuf" {
                Backend::Ringbuf { size }
            } else {
                Backend::Memory { size }
            }
        }
        "mux" => Backend::Mux {
            chardev: required(opts, "chardev", "chardev: mux: no chardev given")?.to_string(),
        },
        "socket" => Backend::Socket(socket_from_opts(opts)?),
        "udp" => udp_from_opts(opts)?,
        "null" => Backend::Null,
        "pty" => Backend::Pty,
        "vc" => Backend::Vc,
        "msmouse" => Backend::Msmouse,
        "testdev" => Backend::Testdev,
        other => {
            return Err(ChardevError::Msg(format!(
                "chardev: backend \"{other}\" not found"
            )))
        }
    };
    Ok(ChardevSpec { backend, common })
}

fn socket_from_opts(opts: &QemuOpts) -> Result<SocketSpec, ChardevError> {
    let server = opt_bool(opts, "server", false)?;
    let wait = server && opt_bool(opts, "wait", true)?;
    let telnet = opt_bool(opts, "telnet", false)?;
    let nodelay = !opt_bool(opts, "delay", true)?;
    let reconnect = opts.get_number("reconnect").map_err(opts_err)?.unwrap_or(0) as i64;
    let tls_creds = opts.get("tls-creds").map(String::from);
    let addr = match opts.get("path") {
        Some(path) => {
            if tls_creds.is_some() {
                return Err(ChardevError::msg("TLS can only be used over TCP socket"));
            }
            SockAddr::Unix(path.to_string())
        }
        None => {
            let host = required(opts, "host", "chardev: socket: no host given")?;
            let port = required(opts, "port", "chardev: socket: no port given")?;
            let to = match opts.get_number("to").map_err(opts_err)? {
                None => None,
                Some(t) => Some(
                    u16::try_from(t)
                        .map_err(|_| ChardevError::msg("Parameter 'to' expects uint16_t"))?,
                ),
            };
            SockAddr::Inet(InetAddr {
                host: host.to_string(),
                port: port.to_string(),
                to,
                ipv4: opt_flag(opts, "ipv4")?,
                ipv6: opt_flag(opts, "ipv6")?,
            })
        }
    };
    Ok(SocketSpec {
        addr,
        tls_creds,
        server,
        wait,
        nodelay,
        telnet,
        reconnect,
    })
}

fn udp_from_opts(opts: &QemuOpts) -> Result<Backend, ChardevError> {
    let nonempty = |k: &str| opts.get(k).filter(|v| !v.is_empty());
    let host = nonempty("host").unwrap_or("localhost");
    let Some(port) = nonempty("port") else {
        return Err(ChardevError::msg("chardev: udp: remote port not specified"));
    };
    let has_local = nonempty("localport").is_some() || nonempty("localaddr").is_some();
    let mut remote = InetAddr::new(host, port);
    remote.ipv4 = opt_flag(opts, "ipv4")?;
    remote.ipv6 = opt_flag(opts, "ipv6")?;
    let local = has_local.then(|| {
        SockAddr::Inet(InetAddr::new(
            nonempty("localaddr").unwrap_or(""),
            nonempty("localport").unwrap_or("0"),
        ))
    });
    Ok(Backend::Udp {
        remote: SockAddr::Inet(remote),
        local,
    })
}

// ---- QMP ---------------------------------------------------------------

fn s(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(String::from)
}

fn b(m: &Map<String, Value>, k: &str) -> Option<bool> {
    m.get(k).and_then(Value::as_bool)
}

fn i(m: &Map<String, Value>, k: &str) -> Option<i64> {
    m.get(k).and_then(Value::as_i64)
}

fn sockaddr_from_qmp(v: Option<&Value>) -> SockAddr {
    let empty = Map::new();
    let m = v.and_then(Value::as_object).unwrap_or(&empty);
    let data = m.get("data").and_then(Value::as_object).unwrap_or(&empty);
    match m.get("type").and_then(Value::as_str) {
        Some("unix") => SockAddr::Unix(s(data, "path").unwrap_or_default()),
        Some("fd") => SockAddr::Fd(s(data, "str").unwrap_or_default()),
        _ => SockAddr::Inet(InetAddr {
            host: s(data, "host").unwrap_or_default(),
            port: s(data, "port").unwrap_or_default(),
            to: i(data, "to").and_then(|t| u16::try_from(t).ok()),
            ipv4: b(data, "ipv4"),
            ipv6: b(data, "ipv6"),
        }),
    }
}

/// A `ChardevBackend` value (checked against the schema) to a spec, with
/// QMP's defaults (a socket is a server unless `server` is false).
pub fn from_qmp(v: &Value) -> ChardevSpec {
    let empty = Map::new();
    let m = v.as_object().unwrap_or(&empty);
    let data = m.get("data").and_then(Value::as_object).unwrap_or(&empty);
    let common = Common {
        logfile: s(data, "logfile"),
        logappend: b(data, "logappend").unwrap_or(false),
    };
    let device = || s(data, "device").unwrap_or_default();
    let backend = match m.get("type").and_then(Value::as_str).unwrap_or("") {
        "file" => Backend::File {
            input: s(data, "in"),
            out: s(data, "out").unwrap_or_default(),
            append: b(data, "append").unwrap_or(false),
        },
        "serial" => Backend::Serial { device: device() },
        "parallel" => Backend::Parallel { device: device() },
        "pipe" => Backend::Pipe { device: device() },
        "socket" => Backend::Socket(SocketSpec {
            addr: sockaddr_from_qmp(data.get("addr")),
            tls_creds: s(data, "tls-creds"),
            server: b(data, "server").unwrap_or(true),
            wait: b(data, "wait").unwrap_or(false),
            nodelay: b(data, "nodelay").unwrap_or(false),
            telnet: b(data, "telnet").unwrap_or(false),
            reconnect: i(data, "reconnect").unwrap_or(0),
        }),
        "udp" => Backend::Udp {
            remote: sockaddr_from_qmp(data.get("remote")),
            local: data.get("local").map(|l| sockaddr_from_qmp(Some(l))),
        },
        "pty" => Backend::Pty,
        "mux" => Backend::Mux {
            chardev: s(data, "chardev").unwrap_or_default(),
        },
        "msmouse" => Backend::Msmouse,
        "braille" => Backend::Braille,
        "testdev" => Backend::Testdev,
        "stdio" => Backend::Stdio {
            signal: b(data, "signal"),
        },
        "console" => Backend::Console,
        "spicevmc" => Backend::Spicevmc,
        "spiceport" => Backend::Spiceport,
        "vc" => Backend::Vc,
        "ringbuf" => Backend::Ringbuf {
            size: i(data, "size"),
        },
        "memory" => Backend::Memory {
            size: i(data, "size"),
        },
        _ => Backend::Null,
    };
    ChardevSpec { backend, common }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(s: &str) -> QemuOpts {
        super::super::CHARDEV_OPTS.parse(s, true).unwrap()
    }

    #[test]
    fn socket_opts_defaults_match_cli() {
        let o = opts("socket,id=s,path=/tmp/x,server,nowait");
        let spec = from_opts("socket", &o).unwrap();
        let Backend::Socket(s) = spec.backend else {
            panic!()
        };
        assert!(s.server && !s.wait && !s.nodelay && !s.telnet);
        assert_eq!(s.addr, SockAddr::Unix("/tmp/x".into()));
    }

    #[test]
    fn socket_qmp_defaults_to_server() {
        let v = json!({"type": "socket", "data": {"addr": {"type": "inet",
            "data": {"host": "127.0.0.1", "port": "0"}}}});
        let Backend::Socket(s) = from_qmp(&v).backend else {
            panic!()
        };
        assert!(s.server && !s.wait);
    }

    #[test]
    fn missing_paths_use_qemu_messages() {
        let e = from_opts("file", &opts("file,id=f")).unwrap_err();
        assert_eq!(e.to_string(), "chardev: file: no filename given");
        let e = from_opts("socket", &opts("socket,id=s,host=h")).unwrap_err();
        assert_eq!(e.to_string(), "chardev: socket: no port given");
        let e = from_opts("udp", &opts("udp,id=u")).unwrap_err();
        assert_eq!(e.to_string(), "chardev: udp: remote port not specified");
        let e = from_opts("nope", &opts("nope,id=u")).unwrap_err();
        assert_eq!(e.to_string(), "chardev: backend \"nope\" not found");
    }

    #[test]
    fn validate_rejects_unknown_keys_and_bad_bools() {
        assert_eq!(
            validate_opts(&QemuOpts {
                id: None,
                items: vec![("bogus".into(), "1".into())]
            })
            .unwrap_err()
            .to_string(),
            "Invalid parameter 'bogus'"
        );
        assert_eq!(
            validate_opts(&QemuOpts {
                id: None,
                items: vec![("server".into(), "maybe".into())]
            })
            .unwrap_err()
            .to_string(),
            "Parameter 'server' expects 'on' or 'off'"
        );
    }

    #[test]
    fn ringbuf_size_wraps_like_an_int() {
        let spec = from_opts("ringbuf", &opts("ringbuf,id=r,size=4G")).unwrap();
        assert_eq!(spec.backend, Backend::Ringbuf { size: None });
        let spec = from_opts("memory", &opts("memory,id=r,size=1k")).unwrap();
        assert_eq!(spec.backend, Backend::Memory { size: Some(1024) });
    }

    #[test]
    fn backends_query_is_newest_first() {
        let v: Vec<_> = backends_for_query().collect();
        assert_eq!(v.first(), Some(&"testdev"));
        assert_eq!(v.last(), Some(&"null"));
    }
}
