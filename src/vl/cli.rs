//! argv to [`Config`], with QEMU's option names, argument rules and error
//! messages (`qemu-system-x86_64: -foo: invalid option`, exit status 1).

use super::config::{Config, MemoryConfig, MonitorConfig, MonitorMode, SmpConfig};
use super::opts::{desc, OptType, OptsError, OptsList, QemuOpts};

/// A command-line error, printed as `qemu-system-x86_64: LOC: MSG`.
#[derive(Debug, PartialEq, Eq)]
pub struct CliError {
    pub loc: Option<String>,
    pub msg: String,
    pub hint: Option<&'static str>,
}

impl CliError {
    fn at(loc: &str, msg: impl Into<String>) -> Self {
        CliError {
            loc: Some(loc.to_string()),
            msg: msg.into(),
            hint: None,
        }
    }

    fn global(msg: impl Into<String>) -> Self {
        CliError {
            loc: None,
            msg: msg.into(),
            hint: None,
        }
    }

    fn from_opts(loc: &str, e: OptsError) -> Self {
        CliError {
            loc: Some(loc.to_string()),
            msg: e.message,
            hint: e.hint,
        }
    }

    pub fn report(&self) -> String {
        let mut s = match &self.loc {
            Some(l) => format!("qemu-system-x86_64: {l}: {}", self.msg),
            None => format!("qemu-system-x86_64: {}", self.msg),
        };
        if let Some(h) = self.hint {
            s.push('\n');
            s.push_str(h);
        }
        s
    }
}

/// What the command line asks of the process before anything starts.
#[derive(Debug)]
pub enum Action {
    Run(Box<Config>),
    PrintHelp,
    PrintVersion,
    /// `-machine help`, `-accel help` and friends: print and exit 0.
    Print(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Support {
    /// Handled by this parser.
    Yes,
    /// Accepted and handed to the machine layer.
    Machine,
    /// Known QEMU option whose subsystem does not exist here yet.
    NotYet,
}

struct OptionDef {
    name: &'static str,
    has_arg: bool,
    support: Support,
}

const fn opt(name: &'static str, has_arg: bool, support: Support) -> OptionDef {
    OptionDef {
        name,
        has_arg,
        support,
    }
}

use Support::{Machine as M, NotYet as N, Yes as Y};

/// Every option QEMU 2.8's x86-64 binary knows (plus `-accel` and
/// `-blockdev` from later versions), so that unknown ones are told apart
/// from known-but-missing ones.
static OPTIONS: &[OptionDef] = &[
    opt("h", false, Y),
    opt("help", false, Y),
    opt("version", false, Y),
    opt("machine", true, Y),
    opt("M", true, Y),
    opt("accel", true, Y),
    opt("cpu", true, N),
    opt("smp", true, Y),
    opt("numa", true, M),
    opt("add-fd", true, Y),
    opt("set", true, N),
    opt("global", true, N),
    opt("boot", true, N),
    opt("m", true, Y),
    opt("mem-path", true, N),
    opt("mem-prealloc", false, N),
    opt("k", true, N),
    opt("audio-help", false, N),
    opt("soundhw", true, N),
    opt("balloon", true, N),
    opt("device", true, M),
    opt("name", true, Y),
    opt("uuid", true, Y),
    opt("fda", true, M),
    opt("fdb", true, M),
    opt("hda", true, M),
    opt("hdb", true, M),
    opt("hdc", true, M),
    opt("hdd", true, M),
    opt("cdrom", true, M),
    opt("drive", true, M),
    opt("blockdev", true, M),
    opt("mtdblock", true, N),
    opt("sd", true, N),
    opt("pflash", true, N),
    opt("snapshot", false, M),
    opt("hdachs", true, N),
    opt("fsdev", true, N),
    opt("virtfs", true, N),
    opt("virtfs_synth", false, N),
    opt("usb", false, N),
    opt("usbdevice", true, N),
    opt("display", true, Y),
    opt("nographic", false, Y),
    opt("curses", false, N),
    opt("no-frame", false, N),
    opt("alt-grab", false, N),
    opt("ctrl-grab", false, N),
    opt("no-quit", false, N),
    opt("sdl", false, N),
    opt("spice", true, N),
    opt("portrait", false, N),
    opt("rotate", true, N),
    opt("vga", true, Y),
    opt("full-screen", false, N),
    opt("vnc", true, N),
    opt("win2k-hack", false, N),
    opt("rtc-td-hack", false, N),
    opt("no-fd-bootchk", false, N),
    opt("no-acpi", false, N),
    opt("no-hpet", false, N),
    opt("acpitable", true, N),
    opt("smbios", true, N),
    opt("tftp", true, N),
    opt("bootp", true, N),
    opt("redir", true, N),
    opt("smb", true, N),
    opt("netdev", true, N),
    opt("net", true, Y),
    opt("chardev", true, Y),
    opt("iscsi", true, N),
    opt("bt", true, N),
    opt("tpmdev", true, N),
    opt("kernel", true, M),
    opt("append", true, M),
    opt("initrd", true, M),
    opt("dtb", true, N),
    opt("fw_cfg", true, N),
    opt("serial", true, Y),
    opt("parallel", true, Y),
    opt("monitor", true, Y),
    opt("qmp", true, Y),
    opt("qmp-pretty", true, Y),
    opt("mon", true, Y),
    opt("debugcon", true, N),
    opt("pidfile", true, Y),
    opt("singlestep", false, N),
    opt("S", false, Y),
    opt("realtime", true, N),
    opt("gdb", true, N),
    opt("s", false, N),
    opt("d", true, N),
    opt("D", true, N),
    opt("dfilter", true, N),
    opt("L", true, N),
    opt("bios", true, M),
    opt("enable-kvm", false, Y),
    opt("xen-domid", true, N),
    opt("xen-create", false, N),
    opt("xen-attach", false, N),
    opt("no-reboot", false, Y),
    opt("no-shutdown", false, Y),
    opt("loadvm", true, N),
    opt("daemonize", false, Y),
    opt("option-rom", true, N),
    opt("clock", true, N),
    opt("localtime", false, M),
    opt("startdate", true, N),
    opt("rtc", true, M),
    opt("icount", true, N),
    opt("watchdog", true, N),
    opt("watchdog-action", true, N),
    opt("echr", true, N),
    opt("virtioconsole", true, N),
    opt("show-cursor", false, N),
    opt("tb-size", true, N),
    opt("incoming", true, Y),
    opt("nodefaults", false, Y),
    opt("chroot", true, N),
    opt("runas", true, N),
    opt("prom-env", true, N),
    opt("semihosting", false, N),
    opt("semihosting-config", true, N),
    opt("old-param", false, N),
    opt("sandbox", true, N),
    opt("readconfig", true, N),
    opt("writeconfig", true, N),
    opt("nodefconfig", false, Y),
    opt("no-user-config", false, Y),
    opt("trace", true, N),
    opt("qtest", true, Y),
    opt("qtest-log", true, Y),
    opt("enable-fips", false, N),
    opt("no-kvm", false, Y),
    opt("no-kvm-pit-reinjection", false, N),
    opt("no-kvm-pit", false, N),
    opt("no-kvm-irqchip", false, N),
    opt("tdf", false, N),
    opt("msg", true, N),
    opt("dump-vmstate", true, N),
    opt("object", true, Y),
];

pub static MACHINE_OPTS: OptsList = OptsList {
    name: "machine",
    implied: Some("type"),
    descs: &[
        desc("type", OptType::Str),
        desc("accel", OptType::Str),
        desc("kernel_irqchip", OptType::Bool),
        desc("kvm_shadow_mem", OptType::Size),
        desc("kernel", OptType::Str),
        desc("initrd", OptType::Str),
        desc("append", OptType::Str),
        desc("dtb", OptType::Str),
        desc("dumpdtb", OptType::Str),
        desc("phandle_start", OptType::Number),
        desc("dt_compatible", OptType::Str),
        desc("dump-guest-core", OptType::Bool),
        desc("mem-merge", OptType::Bool),
        desc("usb", OptType::Bool),
        desc("firmware", OptType::Str),
        desc("iommu", OptType::Bool),
        desc("suppress-vmdesc", OptType::Bool),
        desc("aes-key-wrap", OptType::Bool),
        desc("dea-key-wrap", OptType::Bool),
        desc("vmport", OptType::Str),
        desc("max-ram-below-4g", OptType::Size),
        desc("smm", OptType::Str),
        desc("nvdimm", OptType::Bool),
        desc("igd-passthru", OptType::Bool),
        desc("graphics", OptType::Bool),
        desc("kernel-irqchip", OptType::Str),
    ],
};

pub static ACCEL_OPTS: OptsList = OptsList {
    name: "accel",
    implied: Some("accel"),
    descs: &[desc("accel", OptType::Str), desc("thread", OptType::Str)],
};

pub static MEMORY_OPTS: OptsList = OptsList {
    name: "memory",
    implied: Some("size"),
    descs: &[
        desc("size", OptType::Size),
        desc("slots", OptType::Number),
        desc("maxmem", OptType::Size),
    ],
};

pub static SMP_OPTS: OptsList = OptsList {
    name: "smp-opts",
    implied: Some("cpus"),
    descs: &[
        desc("cpus", OptType::Number),
        desc("sockets", OptType::Number),
        desc("cores", OptType::Number),
        desc("threads", OptType::Number),
        desc("maxcpus", OptType::Number),
    ],
};

pub static NAME_OPTS: OptsList = OptsList {
    name: "name",
    implied: Some("guest"),
    descs: &[
        desc("guest", OptType::Str),
        desc("process", OptType::Str),
        desc("debug-threads", OptType::Bool),
    ],
};

pub static MON_OPTS: OptsList = OptsList {
    name: "mon",
    implied: Some("chardev"),
    descs: &[
        desc("mode", OptType::Str),
        desc("chardev", OptType::Str),
        desc("default", OptType::Bool),
        desc("pretty", OptType::Bool),
    ],
};

/// `-chardev`, `-object`, `-device`: the consumer validates keys.
pub static FREE_OPTS_BACKEND: OptsList = OptsList {
    name: "chardev",
    implied: Some("backend"),
    descs: &[],
};

pub static FREE_OPTS_QOM_TYPE: OptsList = OptsList {
    name: "object",
    implied: Some("qom-type"),
    descs: &[],
};

pub static ADD_FD_OPTS: OptsList = OptsList {
    name: "add-fd",
    implied: None,
    descs: &[
        desc("fd", OptType::Number),
        desc("set", OptType::Number),
        desc("opaque", OptType::Str),
    ],
};

pub static RTC_OPTS: OptsList = OptsList {
    name: "rtc",
    implied: None,
    descs: &[
        desc("base", OptType::Str),
        desc("clock", OptType::Str),
        desc("driftfix", OptType::Str),
    ],
};

const DEFAULT_RAM: u64 = 128 << 20;

/// Merges repeated `-machine`/`-M` options the way QEMU merges its
/// "machine" list: later keys override earlier ones.
fn merge(into: &mut QemuOpts, from: QemuOpts) {
    into.items.extend(from.items);
}

fn parse_memory(loc: &str, arg: &str) -> Result<MemoryConfig, CliError> {
    let o = MEMORY_OPTS
        .parse(arg, true)
        .map_err(|e| CliError::from_opts(loc, e))?;
    let size = match o
        .get_size("size")
        .map_err(|e| CliError::from_opts(loc, e))?
    {
        None => return Err(CliError::at(loc, "missing 'size' option value")),
        Some(0) => DEFAULT_RAM,
        // Bare numbers mean MiB, as QEMU's -m does.
        Some(s)
            if o.get("size")
                .is_some_and(|v| v.bytes().all(|b| b.is_ascii_digit())) =>
        {
            s.checked_mul(1 << 20)
                .ok_or_else(|| CliError::at(loc, "ram size too large"))?
        }
        Some(s) => s,
    };
    let size = size.div_ceil(8192) * 8192;
    let slots = o
        .get_number("slots")
        .map_err(|e| CliError::from_opts(loc, e))?
        .unwrap_or(0);
    let maxmem = o
        .get_size("maxmem")
        .map_err(|e| CliError::from_opts(loc, e))?
        .unwrap_or(size);
    if o.has("maxmem") != o.has("slots") {
        let msg = if o.has("maxmem") {
            "invalid -m option value: missing 'slots' option"
        } else {
            "invalid -m option value: missing 'maxmem' option"
        };
        return Err(CliError::at(loc, msg));
    }
    if maxmem < size {
        return Err(CliError::at(
            loc,
            format!(
                "invalid value of -m option maxmem: maximum memory size (0x{maxmem:x}) must be at least the initial memory size (0x{size:x})"
            ),
        ));
    }
    if o.has("maxmem") && maxmem > size && slots == 0 {
        return Err(CliError::at(
            loc,
            "invalid value of -m option: maxmem was specified, but no hotplug slots were specified",
        ));
    }
    if o.has("maxmem") && maxmem == size && slots != 0 {
        return Err(CliError::at(
            loc,
            format!(
                "invalid value of -m option maxmem: memory slots were specified but maximum memory size (0x{maxmem:x}) is equal to the initial memory size (0x{size:x})"
            ),
        ));
    }
    Ok(MemoryConfig {
        size,
        slots,
        maxmem,
    })
}

fn parse_smp(loc: &str, arg: &str) -> Result<SmpConfig, CliError> {
    let o = SMP_OPTS
        .parse(arg, true)
        .map_err(|e| CliError::from_opts(loc, e))?;
    let num = |k: &str| -> Result<u32, CliError> {
        let v = o.get_number(k).map_err(|e| CliError::from_opts(loc, e))?;
        u32::try_from(v.unwrap_or(0))
            .map_err(|_| CliError::at(loc, "unsupported number of maxcpus"))
    };
    let (mut cpus, mut sockets, mut cores, mut threads) = (
        num("cpus")?,
        num("sockets")?,
        num("cores")?,
        num("threads")?,
    );
    if cpus == 0 || sockets == 0 {
        sockets = sockets.max(1);
        cores = cores.max(1);
        threads = threads.max(1);
        if cpus == 0 {
            cpus = cores.saturating_mul(threads).saturating_mul(sockets);
        }
    } else if cores == 0 {
        threads = threads.max(1);
        cores = (cpus / (sockets.saturating_mul(threads))).max(1);
    } else if threads == 0 {
        threads = (cpus / (cores.saturating_mul(sockets))).max(1);
    } else if (sockets as u64) * (cores as u64) * (threads as u64) < cpus as u64 {
        return Err(CliError::global(format!(
            "cpu topology: sockets ({sockets}) * cores ({cores}) * threads ({threads}) < smp_cpus ({cpus})"
        )));
    }
    let max_cpus = if o.has("maxcpus") {
        num("maxcpus")?
    } else {
        cpus
    };
    if max_cpus > 288 {
        return Err(CliError::global("unsupported number of maxcpus"));
    }
    if max_cpus < cpus {
        return Err(CliError::global(
            "maxcpus must be equal to or greater than smp",
        ));
    }
    if (sockets as u64) * (cores as u64) * (threads as u64) > max_cpus as u64 {
        return Err(CliError::global(format!(
            "cpu topology: sockets ({sockets}) * cores ({cores}) * threads ({threads}) > maxcpus ({max_cpus})"
        )));
    }
    Ok(SmpConfig {
        cpus,
        max_cpus,
        sockets,
        cores,
        threads,
    })
}

/// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut i = 0;
    while i < 36 {
        if matches!(i, 8 | 13 | 18 | 23) {
            if b[i] != b'-' {
                return None;
            }
            i += 1;
            continue;
        }
        let hi = (b[i] as char).to_digit(16)?;
        let lo = (b[i + 1] as char).to_digit(16)?;
        out[n] = (hi * 16 + lo) as u8;
        n += 1;
        i += 2;
    }
    Some(out)
}

/// The `kvm:qtest` list; names are checked when accelerators start, as
/// QEMU only warns about unknown ones and tries the next.
fn parse_accel_list(list: &str) -> Vec<String> {
    list.split(':').map(String::from).collect()
}

fn add_monitor(
    cfg: &mut Config,
    spec: &str,
    mode: MonitorMode,
    pretty: bool,
    loc: &str,
) -> Result<(), CliError> {
    if spec == "none" {
        return Ok(());
    }
    let (chardev, mode) = if let Some(id) = spec.strip_prefix("chardev:") {
        (id.to_string(), mode)
    } else {
        let label = format!("compat_monitor{}", cfg.monitors.len());
        let mut opts = crate::chardev::compat::parse_compat(&label, spec)
            .ok_or_else(|| CliError::at(loc, format!("parse error: {spec}")))?;
        // A monitor on a legacy spec owns its chardev; mux is decided by
        // the spec itself (`mon:`).
        opts.id = Some(label.clone());
        cfg.chardevs.push(opts);
        cfg.chardev_locs.push(loc.to_string());
        (label, mode)
    };
    cfg.monitors.push(MonitorConfig {
        loc: loc.to_string(),
        chardev,
        mode,
        pretty,
    });
    Ok(())
}

fn add_serial(cfg: &mut Config, spec: &str, loc: &str) -> Result<(), CliError> {
    // `-serial none` only stops the default port, as in QEMU.
    if spec == "none" {
        return Ok(());
    }
    if cfg.serials.len() >= 4 {
        return Err(CliError::at(loc, "too many serial ports"));
    }
    if let Some(id) = spec.strip_prefix("chardev:") {
        cfg.serials.push(id.to_string());
        return Ok(());
    }
    let label = format!("serial{}", cfg.serials.len());
    let opts = crate::chardev::compat::parse_compat(&label, spec).ok_or_else(|| {
        CliError::at(
            loc,
            format!("could not connect serial device to character backend '{spec}'"),
        )
    })?;
    // `mon:` shares the port with a human monitor, as QEMU does.
    let muxed = opts.get("mux") == Some("on");
    cfg.chardevs.push(opts);
    cfg.chardev_locs.push(loc.to_string());
    if muxed {
        cfg.monitors.push(MonitorConfig {
            loc: loc.to_string(),
            chardev: label.clone(),
            mode: MonitorMode::Readline,
            pretty: false,
        });
    }
    cfg.serials.push(label);
    Ok(())
}

fn help_listing(kind: &str) -> Option<String> {
    match kind {
        "machine" => Some(crate::machine_types::help_text()),
        "accel" => Some("Possible accelerators: kvm, qtest\n".to_string()),
        _ => None,
    }
}

pub fn parse_args(args: &[String]) -> Result<Action, CliError> {
    let mut cfg = Config::default();
    let mut serial_given = false;
    let mut parallel_given = false;
    let mut monitor_given = false;
    let mut vga_given = false;
    let mut i = 1;
    while i < args.len() {
        let raw = &args[i];
        if !raw.starts_with('-') {
            // A bare argument is the first hard disk in QEMU.
            cfg.machine_args.push(("".to_string(), raw.to_string()));
            i += 1;
            continue;
        }
        let name = raw.strip_prefix("--").unwrap_or(&raw[1..]);
        let Some(def) = OPTIONS.iter().find(|o| o.name == name) else {
            return Err(CliError::at(raw, "invalid option"));
        };
        let arg = if def.has_arg {
            let Some(a) = args.get(i + 1) else {
                return Err(CliError::at(raw, "requires an argument"));
            };
            i += 2;
            a.as_str()
        } else {
            i += 1;
            ""
        };
        let loc = if def.has_arg {
            format!("{raw} {arg}")
        } else {
            raw.to_string()
        };
        match def.support {
            Support::NotYet => {
                return Err(CliError::at(
                    &loc,
                    "option not supported yet by this emulator",
                ))
            }
            Support::Machine => {
                cfg.machine_args.push((name.to_string(), arg.to_string()));
                if name == "rtc" {
                    cfg.rtc = Some(
                        RTC_OPTS
                            .parse(arg, false)
                            .map_err(|e| CliError::from_opts(&loc, e))?,
                    );
                }
                continue;
            }
            Support::Yes => {}
        }
        match name {
            "h" | "help" => return Ok(Action::PrintHelp),
            "version" => return Ok(Action::PrintVersion),
            "machine" | "M" => {
                if arg == "help" || arg == "?" {
                    return Ok(Action::Print(help_listing("machine").unwrap_or_default()));
                }
                let o = MACHINE_OPTS
                    .parse(arg, true)
                    .map_err(|e| CliError::from_opts(&loc, e))?;
                if let Some(t) = o.get("type") {
                    if t == "help" || t == "?" {
                        return Ok(Action::Print(help_listing("machine").unwrap_or_default()));
                    }
                    cfg.machine = Some(t.to_string());
                }
                if let Some(a) = o.get("accel") {
                    if a == "help" || a == "?" {
                        return Ok(Action::Print(help_listing("accel").unwrap_or_default()));
                    }
                    cfg.accel = parse_accel_list(a);
                }
                merge(&mut cfg.machine_opts, o);
            }
            "accel" => {
                let o = ACCEL_OPTS
                    .parse(arg, true)
                    .map_err(|e| CliError::from_opts(&loc, e))?;
                match o.get("accel") {
                    Some("help") | Some("?") => {
                        return Ok(Action::Print(help_listing("accel").unwrap_or_default()))
                    }
                    Some(a) => cfg.accel = parse_accel_list(a),
                    None => return Err(CliError::at(&loc, "Parameter 'accel' is missing")),
                }
            }
            "enable-kvm" => cfg.accel = vec!["kvm".to_string()],
            "no-kvm" => cfg.accel = vec!["tcg".to_string()],
            "m" => cfg.memory = Some(parse_memory(&loc, arg)?),
            "smp" => cfg.smp = Some(parse_smp(&loc, arg)?),
            "name" => {
                let o = NAME_OPTS
                    .parse(arg, true)
                    .map_err(|e| CliError::from_opts(&loc, e))?;
                if let Some(g) = o.get("guest") {
                    cfg.name = Some(g.to_string());
                }
                if let Some(p) = o.get("process") {
                    cfg.process_name = Some(p.to_string());
                }
                cfg.debug_threads = o
                    .get_bool("debug-threads", false)
                    .map_err(|e| CliError::from_opts(&loc, e))?;
            }
            "uuid" => {
                cfg.uuid = Some(parse_uuid(arg).ok_or_else(|| {
                    CliError::at(&loc, "failed to parse UUID string: wrong format")
                })?);
            }
            "S" => cfg.start_stopped = true,
            "chardev" => {
                let o = FREE_OPTS_BACKEND
                    .parse(arg, true)
                    .map_err(|e| CliError::from_opts(&loc, e))?;
                let Some(id) = o.id.clone() else {
                    return Err(CliError::at(&loc, "chardev: no id specified"));
                };
                if cfg
                    .chardevs
                    .iter()
                    .any(|c| c.id.as_deref() == Some(id.as_str()))
                {
                    return Err(CliError::at(
                        &loc,
                        format!("Duplicate ID '{id}' for chardev"),
                    ));
                }
                cfg.chardevs.push(o);
                cfg.chardev_locs.push(loc.clone());
            }
            "mon" => {
                let o = MON_OPTS
                    .parse(arg, true)
                    .map_err(|e| CliError::from_opts(&loc, e))?;
                let mode = match o.get("mode") {
                    None | Some("readline") => MonitorMode::Readline,
                    Some("control") => MonitorMode::Control,
                    Some(m) => {
                        return Err(CliError::at(&loc, format!("unknown monitor mode \"{m}\"")))
                    }
                };
                let Some(chardev) = o.get("chardev") else {
                    return Err(CliError::at(&loc, "chardev is required"));
                };
                let pretty = o
                    .get_bool("pretty", false)
                    .map_err(|e| CliError::from_opts(&loc, e))?;
                cfg.monitors.push(MonitorConfig {
                    loc: loc.clone(),
                    chardev: chardev.to_string(),
                    mode,
                    pretty,
                });
                monitor_given = true;
            }
            "monitor" => {
                add_monitor(&mut cfg, arg, MonitorMode::Readline, false, &loc)?;
                monitor_given = true;
            }
            "qmp" => {
                add_monitor(&mut cfg, arg, MonitorMode::Control, false, &loc)?;
                monitor_given = true;
            }
            "qmp-pretty" => {
                add_monitor(&mut cfg, arg, MonitorMode::Control, true, &loc)?;
                monitor_given = true;
            }
            "serial" => {
                serial_given = true;
                add_serial(&mut cfg, arg, &loc)?;
            }
            "parallel" => {
                parallel_given = true;
                if arg != "none" {
                    return Err(CliError::at(
                        &loc,
                        "option not supported yet by this emulator",
                    ));
                }
            }
            "net" => {
                if arg != "none" {
                    return Err(CliError::at(
                        &loc,
                        "option not supported yet by this emulator",
                    ));
                }
            }
            "vga" => {
                vga_given = true;
                if arg != "none" {
                    return Err(CliError::at(
                        &loc,
                        "option not supported yet by this emulator",
                    ));
                }
            }
            "display" => {
                let kind = arg.split(',').next().unwrap_or("");
                match kind {
                    "none" => cfg.display_none = true,
                    "sdl" | "curses" | "gtk" | "vnc" | "egl-headless" | "spice-app" => {
                        let name = match kind {
                            "sdl" => "SDL",
                            "gtk" => "GTK",
                            "vnc" => "VNC",
                            other => other,
                        };
                        return Err(CliError::at(&loc, format!("{name} support is disabled")));
                    }
                    _ => return Err(CliError::at(&loc, "unknown display type")),
                }
            }
            "nographic" => cfg.nographic = true,
            "nodefaults" => cfg.nodefaults = true,
            "no-shutdown" => cfg.no_shutdown = true,
            "no-reboot" => cfg.no_reboot = true,
            "daemonize" => cfg.daemonize = true,
            "pidfile" => cfg.pidfile = Some(arg.to_string()),
            "object" => {
                let o = FREE_OPTS_QOM_TYPE
                    .parse(arg, true)
                    .map_err(|e| CliError::from_opts(&loc, e))?;
                cfg.objects.push(o);
            }
            "qtest" => cfg.qtest = Some(arg.to_string()),
            "qtest-log" => cfg.qtest_log = Some(arg.to_string()),
            "incoming" => cfg.incoming = Some(arg.to_string()),
            "add-fd" => {
                let o = ADD_FD_OPTS
                    .parse(arg, false)
                    .map_err(|e| CliError::from_opts(&loc, e))?;
                cfg.add_fds.push((loc.clone(), o));
            }
            // We read no configuration files, so these have nothing to turn off.
            "nodefconfig" | "no-user-config" => {}
            _ => return Err(CliError::at(&loc, "invalid option")),
        }
    }
    if cfg.nographic && cfg.daemonize {
        return Err(CliError::global(
            "-nographic cannot be used with -daemonize",
        ));
    }
    if cfg.qtest.is_some() && cfg.accel.is_empty() {
        cfg.accel = vec!["qtest".to_string()];
    }
    // QEMU's defaults: serial and monitor on stdio with -nographic, else on
    // a (here invisible) virtual console; -nodefaults removes them.
    if !cfg.nodefaults {
        if cfg.nographic {
            if !serial_given && !monitor_given {
                cfg.chardevs.push(
                    crate::chardev::compat::parse_compat("serial0", "mon:stdio")
                        .unwrap_or_default(),
                );
                cfg.chardev_locs.push("-nographic".to_string());
                cfg.serials.insert(0, "serial0".to_string());
                cfg.monitors.push(MonitorConfig {
                    loc: "-nographic".to_string(),
                    chardev: "serial0".to_string(),
                    mode: MonitorMode::Readline,
                    pretty: false,
                });
                monitor_given = true;
                serial_given = true;
            } else if !serial_given {
                add_serial(&mut cfg, "stdio", "-serial")?;
                serial_given = true;
            }
        }
        if !serial_given {
            add_serial(&mut cfg, "vc:80Cx24C", "-serial")?;
        }
        if !monitor_given {
            add_monitor(
                &mut cfg,
                "vc:80Cx24C",
                MonitorMode::Readline,
                false,
                "-monitor",
            )?;
        }
        let _ = (parallel_given, vga_given);
    }
    Ok(Action::Run(Box::new(cfg)))
}

/// The option lists query-command-line-options reports.
pub fn option_lists() -> Vec<&'static OptsList> {
    vec![
        &MACHINE_OPTS,
        &ACCEL_OPTS,
        &MEMORY_OPTS,
        &SMP_OPTS,
        &NAME_OPTS,
        &MON_OPTS,
        &crate::chardev::CHARDEV_OPTS,
        &FREE_OPTS_QOM_TYPE,
        &ADD_FD_OPTS,
        &RTC_OPTS,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        std::iter::once("qemu-system-x86_64")
            .chain(s.iter().copied())
            .map(String::from)
            .collect()
    }

    fn run(s: &[&str]) -> Config {
        match parse_args(&args(s)) {
            Ok(Action::Run(c)) => *c,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn err(s: &[&str]) -> String {
        match parse_args(&args(s)) {
            Err(e) => e.report(),
            Ok(other) => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn unknown_option_is_invalid() {
        assert_eq!(
            err(&["-bogus"]),
            "qemu-system-x86_64: -bogus: invalid option"
        );
        assert_eq!(
            err(&["--bogus"]),
            "qemu-system-x86_64: --bogus: invalid option"
        );
    }

    #[test]
    fn missing_argument() {
        assert_eq!(err(&["-m"]), "qemu-system-x86_64: -m: requires an argument");
    }

    #[test]
    fn unsupported_subsystem_is_refused_clearly() {
        assert!(err(&["-netdev", "user,id=n"]).contains("not supported yet"));
    }

    #[test]
    fn machine_accel_fallback_list() {
        let c = run(&["-machine", "none,accel=kvm:qtest", "-nodefaults"]);
        assert_eq!(c.machine.as_deref(), Some("none"));
        assert_eq!(c.accel, vec!["kvm", "qtest"]);
        let c = run(&["-M", "pc", "-accel", "qtest", "-nodefaults"]);
        assert_eq!(c.machine.as_deref(), Some("pc"));
        assert_eq!(c.accel, vec!["qtest"]);
    }

    #[test]
    fn memory_sizes_and_slots() {
        let c = run(&["-m", "512M", "-nodefaults"]);
        assert_eq!(c.memory.unwrap().size, 512 << 20);
        let c = run(&["-m", "256", "-nodefaults"]);
        assert_eq!(c.memory.unwrap().size, 256 << 20);
        let c = run(&["-m", "size=1G,slots=2,maxmem=4G", "-nodefaults"]);
        let m = c.memory.unwrap();
        assert_eq!((m.size, m.slots, m.maxmem), (1 << 30, 2, 4 << 30));
        assert!(err(&["-m", "1G,maxmem=2G"]).contains("missing 'slots'"));
        assert!(err(&["-m", "12X"]).contains("Parameter 'size' expects a size"));
    }

    #[test]
    fn smp_topology() {
        let c = run(&["-smp", "4,sockets=2", "-nodefaults"]);
        let s = c.smp.unwrap();
        assert_eq!(
            (s.cpus, s.sockets, s.cores, s.threads, s.max_cpus),
            (4, 2, 2, 1, 4)
        );
        let c = run(&["-smp", "sockets=2,cores=2,threads=2", "-nodefaults"]);
        assert_eq!(c.smp.unwrap().cpus, 8);
        assert!(err(&["-smp", "4,maxcpus=2"]).contains("maxcpus must be equal"));
    }

    #[test]
    fn name_and_uuid() {
        let c = run(&[
            "-name",
            "vm1,process=p,debug-threads=on",
            "-uuid",
            "12345678-1234-1234-1234-123456789abc",
            "-nodefaults",
        ]);
        assert_eq!(c.name.as_deref(), Some("vm1"));
        assert_eq!(c.process_name.as_deref(), Some("p"));
        assert!(c.debug_threads);
        assert_eq!(c.uuid.unwrap()[15], 0xbc);
        assert!(err(&["-uuid", "nope"]).contains("wrong format"));
    }

    #[test]
    fn qmp_and_monitor_create_compat_chardevs() {
        let c = run(&[
            "-qmp",
            "unix:/tmp/x.sock,server,nowait",
            "-monitor",
            "none",
            "-nodefaults",
        ]);
        assert_eq!(c.monitors.len(), 1);
        assert_eq!(c.monitors[0].mode, MonitorMode::Control);
        assert_eq!(c.chardevs[0].id.as_deref(), Some("compat_monitor0"));
    }

    #[test]
    fn nographic_muxes_serial_and_monitor_on_stdio() {
        let c = run(&["-nographic"]);
        assert_eq!(c.serials, vec!["serial0"]);
        assert_eq!(c.monitors[0].chardev, "serial0");
        assert_eq!(c.chardevs[0].get("mux"), Some("on"));
    }
}
