//! `-drive`, `drive_add` and `-blockdev`: turning QemuOpts-style option
//! strings into a backend (and its nodes), with QEMU 2.8's legacy options,
//! default ids, bus/unit allocation and error wording.

use serde_json::Value;

use block::options::Options;
use block::{lock, BlockGraph, DetectZeroes, NodeRef};

use super::{BackendFront, BlockDevs, IfType, LegacyDrive, OnError, RootState};
use crate::vl::opts::{parse_bool, parse_number, OptsList};

/// `-drive` accepts any key; validation happens here, as in QEMU.
static DRIVE_OPTS: OptsList = OptsList {
    name: "drive",
    implied: None,
    descs: &[],
};

/// Legacy throttling names and their QMP spelling.
const THROTTLE_RENAMES: &[(&str, &str)] = &[
    ("iops", "throttling.iops-total"),
    ("iops_rd", "throttling.iops-read"),
    ("iops_wr", "throttling.iops-write"),
    ("bps", "throttling.bps-total"),
    ("bps_rd", "throttling.bps-read"),
    ("bps_wr", "throttling.bps-write"),
    ("iops_max", "throttling.iops-total-max"),
    ("iops_rd_max", "throttling.iops-read-max"),
    ("iops_wr_max", "throttling.iops-write-max"),
    ("bps_max", "throttling.bps-total-max"),
    ("bps_rd_max", "throttling.bps-read-max"),
    ("bps_wr_max", "throttling.bps-write-max"),
    ("iops_size", "throttling.iops-size"),
    ("group", "throttling.group"),
    ("readonly", "read-only"),
];

/// Options of `-drive` that drive_new consumes itself.
const LEGACY_KEYS: &[&str] = &[
    "bus",
    "unit",
    "index",
    "media",
    "if",
    "cyls",
    "heads",
    "secs",
    "trans",
    "boot",
    "addr",
    "serial",
    "file",
    "read-only",
    "rerror",
    "werror",
    "copy-on-read",
];

/// The options common to `-drive` and blockdev-add with an id.
#[derive(Clone, Debug, Default)]
pub struct CommonOpts {
    pub snapshot: bool,
    pub read_only: bool,
    pub writethrough: bool,
    pub on_read_error: Option<OnError>,
    pub on_write_error: Option<OnError>,
    pub detect_zeroes: DetectZeroes,
    /// stats-account-invalid, stats-account-failed, stats-intervals.N.
    pub stats_opts: Options,
    /// throttling.* limits and group.
    pub throttle: Option<(block::throttle::ThrottleConfig, Option<String>)>,
}

/// A parsed `-drive`: where it goes and what to open.
#[derive(Debug)]
pub struct DriveSpec {
    pub id: String,
    pub legacy: LegacyDrive,
    pub common: CommonOpts,
    /// Node options (dotted keys, string values), without `file`.
    pub node_opts: Options,
    /// Warnings QEMU error_report()s while parsing (to stderr with the
    /// option's location on the command line, to the monitor for HMP).
    pub warnings: Vec<String>,
}

fn get<'a>(items: &'a [(String, String)], key: &str) -> Option<&'a str> {
    items
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn take(items: &mut Vec<(String, String)>, key: &str) -> Option<String> {
    let v = get(items, key).map(str::to_string);
    items.retain(|(k, _)| k != key);
    v
}

fn num(items: &mut Vec<(String, String)>, key: &str) -> Result<Option<u64>, String> {
    take(items, key)
        .map(|v| parse_number(key, &v).map_err(|e| e.message))
        .transpose()
}

fn boolean(items: &mut Vec<(String, String)>, key: &str) -> Result<Option<bool>, String> {
    take(items, key)
        .map(|v| parse_bool(key, &v).map_err(|e| e.message))
        .transpose()
}

fn detect_zeroes(v: &str) -> Result<DetectZeroes, String> {
    match v {
        "off" => Ok(DetectZeroes::Off),
        "on" => Ok(DetectZeroes::On),
        "unmap" => Ok(DetectZeroes::Unmap),
        // qapi_enum_parse's wording (the -drive path), not the QMP visitor's.
        _ => Err(format!("invalid parameter value: {v}")),
    }
}

fn is_throttle_key(k: &str) -> bool {
    k.starts_with("throttling.")
}

/// Parses one `-drive` option string as drive_new does, allocating bus and
/// unit against the drives that already exist.
pub fn parse_drive(
    optstr: &str,
    default_if: IfType,
    devs: &BlockDevs,
) -> Result<DriveSpec, String> {
    let opts = DRIVE_OPTS.parse(optstr, false).map_err(|e| e.message)?;
    let mut items = opts.items;
    if let Some(id) = &opts.id {
        if devs.front(id).is_some_and(|f| f.legacy.is_some()) {
            return Err(format!("Duplicate ID '{id}' for drive"));
        }
    }
    for (from, to) in THROTTLE_RENAMES {
        if get(&items, from).is_some() {
            if get(&items, to).is_some() {
                return Err(format!(
                    "'{to}' and its alias '{from}' can't be used at the same time"
                ));
            }
            for (k, _) in items.iter_mut() {
                if k == from {
                    *k = to.to_string();
                }
            }
        }
    }
    let mut throttle_opts = Options::new();
    for (k, v) in items.iter().filter(|(k, _)| is_throttle_key(k)) {
        throttle_opts.insert(k.clone(), Value::String(v.clone()));
    }
    items.retain(|(k, _)| !is_throttle_key(k));
    let (throttle_cfg, throttle_group) =
        block::throttle::ThrottleConfig::from_drive_options(&throttle_opts)
            .map_err(|e| e.to_string())?;
    throttle_cfg.validate().map_err(|e| e.to_string())?;
    if let Some(mode) = take(&mut items, "cache") {
        let (direct, writethrough, no_flush) = match mode.as_str() {
            "off" | "none" => (true, false, false),
            "directsync" => (true, true, false),
            "writeback" => (false, false, false),
            "unsafe" => (false, false, true),
            "writethrough" => (false, true, false),
            _ => return Err("invalid cache option".into()),
        };
        let onoff = |b: bool| if b { "on" } else { "off" }.to_string();
        // Specific options take precedence over the mode.
        for (k, v) in [
            ("cache.writeback", onoff(!writethrough)),
            ("cache.direct", onoff(direct)),
            ("cache.no-flush", onoff(no_flush)),
        ] {
            if get(&items, k).is_none() {
                items.push((k.to_string(), v));
            }
        }
    }

    // Legacy options.
    let mut media_cd = false;
    let mut read_only = false;
    if let Some(m) = take(&mut items, "media") {
        match m.as_str() {
            "disk" => {}
            "cdrom" => {
                media_cd = true;
                read_only = true;
            }
            _ => return Err(format!("'{m}' invalid media")),
        }
    }
    read_only |= boolean(&mut items, "read-only")?.unwrap_or(false);
    let mut copy_on_read = boolean(&mut items, "copy-on-read")?.unwrap_or(false);
    let mut warnings = Vec::new();
    if read_only && copy_on_read {
        warnings.push("warning: disabling copy-on-read on read-only drive".to_string());
        copy_on_read = false;
    }
    if copy_on_read {
        return Err("copy-on-read is not supported yet by this emulator".into());
    }
    let if_type = match take(&mut items, "if") {
        Some(v) => IfType::from_name(&v).ok_or_else(|| format!("unsupported bus type '{v}'"))?,
        None => default_if,
    };
    let cyls = num(&mut items, "cyls")?.unwrap_or(0);
    let heads = num(&mut items, "heads")?.unwrap_or(0);
    let secs = num(&mut items, "secs")?.unwrap_or(0);
    if cyls != 0 || heads != 0 || secs != 0 {
        if cyls < 1 {
            return Err("invalid physical cyls number".into());
        }
        if heads < 1 {
            return Err("invalid physical heads number".into());
        }
        if secs < 1 {
            return Err("invalid physical secs number".into());
        }
    }
    if let Some(t) = take(&mut items, "trans") {
        if cyls == 0 {
            return Err(format!(
                "'{t}' trans must be used with cyls, heads and secs"
            ));
        }
        if !matches!(t.as_str(), "none" | "lba" | "large" | "rechs" | "auto") {
            return Err(format!("'{t}' invalid translation type"));
        }
    }
    if media_cd && (cyls != 0 || heads != 0 || secs != 0) {
        return Err("CHS can't be set with media=cdrom".into());
    }
    if take(&mut items, "boot").is_some() {
        eprintln!(
            "qemu-kvm: boot=on|off is deprecated and will be ignored. Future versions will reject this parameter. Please update your scripts."
        );
    }
    let bus_opt = num(&mut items, "bus")?;
    let unit_opt = num(&mut items, "unit")?;
    let index = num(&mut items, "index")?;
    let max = if_type.max_devs();
    let mut bus = bus_opt.unwrap_or(0) as u32;
    let mut unit = unit_opt.map(|u| u as u32);
    if let Some(i) = index {
        if bus_opt.unwrap_or(0) != 0 || unit_opt.is_some() {
            return Err("index cannot be used with bus and unit".into());
        }
        let i = i as u32;
        bus = i.checked_div(max).unwrap_or(0);
        unit = Some(if max != 0 { i % max } else { i });
    }
    let taken = |b: u32, u: u32| {
        devs.fronts.iter().any(|f| {
            f.legacy
                .as_ref()
                .is_some_and(|l| l.if_type == if_type && l.bus == b && l.unit == u)
        })
    };
    let unit = match unit {
        Some(u) => u,
        None => {
            let mut u = 0;
            while taken(bus, u) {
                u += 1;
                if max != 0 && u >= max {
                    u -= max;
                    bus += 1;
                }
            }
            u
        }
    };
    if max != 0 && unit >= max {
        return Err(format!("unit {unit} too big (max is {})", max - 1));
    }
    if taken(bus, unit) {
        let idx = index.map_or(-1, |i| i as i64);
        return Err(format!(
            "drive with bus={bus}, unit={unit} (index={idx}) exists"
        ));
    }
    let serial = take(&mut items, "serial");
    let id = match opts.id {
        Some(id) => id,
        None => {
            let mediastr = match if_type {
                IfType::Ide | IfType::Scsi => {
                    if media_cd {
                        "-cd"
                    } else {
                        "-hd"
                    }
                }
                _ => "",
            };
            if max != 0 {
                format!("{}{bus}{mediastr}{unit}", if_type.name())
            } else {
                format!("{}{mediastr}{unit}", if_type.name())
            }
        }
    };
    let devaddr = take(&mut items, "addr");
    if devaddr.is_some() && if_type != IfType::Virtio {
        return Err("addr is not supported by this bus type".into());
    }
    let file = take(&mut items, "file").unwrap_or_default();
    let err_ok = matches!(
        if_type,
        IfType::Ide | IfType::Scsi | IfType::Virtio | IfType::None
    );
    let werror = take(&mut items, "werror");
    if werror.is_some() && !err_ok {
        return Err("werror is not supported by this bus type".into());
    }
    let rerror = take(&mut items, "rerror");
    if rerror.is_some() && !err_ok {
        return Err("rerror is not supported by this bus type".into());
    }
    debug_assert!(LEGACY_KEYS.iter().all(|k| get(&items, k).is_none()));

    let mut common = CommonOpts {
        read_only,
        ..Default::default()
    };
    if throttle_cfg.enabled() {
        common.throttle = Some((throttle_cfg, throttle_group));
    }
    common.snapshot = boolean(&mut items, "snapshot")?.unwrap_or(false);
    common.writethrough = !boolean(&mut items, "cache.writeback")?.unwrap_or(true);
    if let Some(w) = werror {
        common.on_write_error = Some(OnError::parse(&w, false)?);
    }
    if let Some(r) = rerror {
        common.on_read_error = Some(OnError::parse(&r, true)?);
    }
    let mut node_opts = Options::new();
    for (k, v) in items {
        if k == "stats-account-invalid" || k == "stats-account-failed" {
            parse_bool(&k, &v).map_err(|e| e.message)?;
        }
        if k.starts_with("stats-") {
            common.stats_opts.insert(k, Value::String(v));
            continue;
        }
        node_opts.insert(k, Value::String(v));
    }
    common_node_options(&mut node_opts, &mut common)?;
    node_opts.insert(
        "read-only".into(),
        Value::String(if read_only { "on" } else { "off" }.into()),
    );
    if !file.is_empty() {
        node_opts.insert("filename".into(), Value::String(file.clone()));
    }
    Ok(DriveSpec {
        id,
        legacy: LegacyDrive {
            if_type,
            bus,
            unit,
            media_cd,
            serial,
            devaddr,
            file,
            chs: (cyls as u32, heads as u32, secs as u32),
        },
        common,
        node_opts,
        warnings,
    })
}

/// Checks the options blockdev_init shares with -blockdev (format, aio,
/// discard, detect-zeroes) and leaves the node's own ones in `opts`.
fn common_node_options(opts: &mut Options, common: &mut CommonOpts) -> Result<(), String> {
    let s = |o: &Options, k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
    if let Some(aio) = s(opts, "aio") {
        if aio != "native" && aio != "threads" {
            return Err("invalid aio option".into());
        }
        if aio == "native" {
            check_native_aio(opts)?;
        }
        opts.remove("aio");
    }
    if let Some(d) = s(opts, "discard") {
        if !matches!(d.as_str(), "off" | "ignore" | "on" | "unmap") {
            return Err("Invalid discard option".into());
        }
    }
    if let Some(dz) = s(opts, "detect-zeroes") {
        common.detect_zeroes = detect_zeroes(&dz)?;
        let unmap = matches!(s(opts, "discard").as_deref(), Some("on" | "unmap"));
        if common.detect_zeroes == DetectZeroes::Unmap && !unmap {
            return Err("setting detect-zeroes to unmap is not allowed without setting discard operation to unmap".into());
        }
    }
    if let Some(f) = s(opts, "format") {
        if f == "help" || f == "?" {
            return Err(
                "Supported formats: null-aio null-co qcow2 raw file host_device host_cdrom".into(),
            );
        }
        if opts.contains_key("driver") {
            return Err("Cannot specify both 'driver' and 'format'".into());
        }
        opts.remove("format");
        opts.insert("driver".into(), Value::String(f));
    }
    Ok(())
}

/// QEMU 2.8 passes aio=native down to the host-file nodes, which refuse it
/// unless their cache.direct (their own, else inherited from the parent) is
/// on. `opts` are a node's options, dotted or nested.
pub fn check_native_aio(opts: &Options) -> Result<(), String> {
    let nested = block::options::nest(opts).map_err(|e| e.to_string())?;
    if native_aio_refused(&nested, false, 0) {
        return Err(
            "aio=native was specified, but it requires cache.direct=on, \
             which was not specified."
                .into(),
        );
    }
    Ok(())
}

fn native_aio_refused(opts: &Options, inherited_direct: bool, depth: usize) -> bool {
    let direct = match opts.get("cache").and_then(|c| c.get("direct")) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(v)) => parse_bool("cache.direct", v).unwrap_or(inherited_direct),
        _ => inherited_direct,
    };
    match opts.get("driver").and_then(Value::as_str) {
        Some("file" | "host_device" | "host_cdrom") => !direct,
        // Formats open their file child with the inherited flags; a child
        // given as a node name is already open.
        Some("raw" | "qcow2") | None => match opts.get("file") {
            Some(Value::Object(child)) if depth < 16 => {
                native_aio_refused(child, direct, depth + 1)
            }
            Some(_) => false,
            None => !direct,
        },
        Some(_) => false,
    }
}

/// Where temporary overlays for `snapshot=on` go (QEMU: $TMPDIR or /var/tmp).
fn temp_overlay_path() -> String {
    let dir = std::env::var("TMPDIR").unwrap_or_else(|_| "/var/tmp".into());
    for n in 0..1000u32 {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            ^ std::process::id().rotate_left(16)
            ^ n.wrapping_mul(2654435761);
        let name: String = (0..6)
            .map(|i| {
                let c = (seed >> (i * 5)) % 36;
                char::from_digit(c, 36).unwrap_or('x')
            })
            .collect();
        let p = format!("{dir}/vl.{name}");
        if !std::path::Path::new(&p).exists() {
            return p;
        }
    }
    format!("{dir}/vl.{}", std::process::id())
}

/// `snapshot=on`: a temporary qcow2 overlay on top of `base` takes the writes.
pub fn append_temp_snapshot(
    graph: &mut BlockGraph,
    devs: &mut BlockDevs,
    base: &NodeRef,
    read_only: bool,
) -> Result<NodeRef, String> {
    let (size, base_name) = {
        let mut g = lock(base);
        (g.length().map_err(|e| e.to_string())?, g.name().to_string())
    };
    let path = temp_overlay_path();
    block::create_image("qcow2", &path, Some(size), &block::CreateOptions::default())
        .map_err(|e| format!("Could not create temporary overlay '{path}': {e}"))?;
    let mut o = Options::new();
    o.insert("driver".into(), Value::from("qcow2"));
    o.insert("file.driver".into(), Value::from("file"));
    o.insert("file.filename".into(), Value::from(path.clone()));
    o.insert("backing".into(), Value::from(base_name));
    o.insert("read-only".into(), Value::from(read_only));
    match graph.open(&o) {
        Ok(n) => {
            devs.add_temp_file(n.clone(), path);
            Ok(n)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(e.to_string())
        }
    }
}

/// blockdev_init: opens the medium (if any) and registers the backend.
pub fn blockdev_init(
    graph: &mut BlockGraph,
    devs: &mut BlockDevs,
    id: &str,
    node_opts: &Options,
    common: &CommonOpts,
    legacy: Option<LegacyDrive>,
) -> Result<(), String> {
    if !crate::vl::opts::is_valid_id(id) {
        return Err("Invalid device name".into());
    }
    let stats =
        block::stats::BlockStats::from_drive_options(&common.stats_opts, block::stats::acct_now())
            .map_err(|e| e.to_string())?;
    let has_medium = node_opts.keys().any(|k| k != "read-only");
    let root = if has_medium {
        // With snapshot=on the image itself is only read (QEMU opens it as
        // a backing file); the temporary overlay takes the writes.
        let mut base_opts = node_opts.clone();
        if common.snapshot {
            base_opts.insert("read-only".into(), Value::String("on".into()));
        }
        merge_legacy_filename(&mut base_opts);
        let n = graph.open(&base_opts).map_err(|e| e.to_string())?;
        if let Err(e) = check_unknown_options(&base_opts, &n) {
            devs.drop_tree(graph, &n);
            return Err(e);
        }
        super::warn_if_probed_raw(&n);
        let n = if common.snapshot {
            match append_temp_snapshot(graph, devs, &n, common.read_only) {
                Ok(top) => top,
                Err(e) => {
                    devs.drop_tree(graph, &n);
                    return Err(e);
                }
            }
        } else {
            n
        };
        Some(n)
    } else {
        None
    };
    if let Err(e) = graph.add_backend(id, root.clone()) {
        if let Some(r) = root {
            devs.drop_tree(graph, &r);
        }
        return Err(e.to_string());
    }
    if let Some(b) = graph.backend(id) {
        *b.stats() = stats;
    }
    if let Some((cfg, group)) = &common.throttle {
        devs.pending_limits
            .push((id.to_string(), *cfg, group.clone()));
    }
    let mut front = BackendFront::new(id);
    front.legacy = legacy;
    front.writeback = !common.writethrough;
    if let Some(r) = common.on_read_error {
        front.on_read_error = r;
    }
    if let Some(w) = common.on_write_error {
        front.on_write_error = w;
    }
    front.root_state = RootState {
        read_only: common.read_only,
        detect_zeroes: common.detect_zeroes,
    };
    devs.add_front(front);
    Ok(())
}

/// drive_new: parses and opens one `-drive`; returns the backend id.
/// Warnings go to stderr under the program's name.
pub fn drive_new(
    graph: &mut BlockGraph,
    devs: &mut BlockDevs,
    optstr: &str,
    default_if: IfType,
) -> Result<String, String> {
    let mut warnings = Vec::new();
    let r = drive_new_warn(graph, devs, optstr, default_if, &mut warnings);
    for w in warnings {
        eprintln!("qemu-system-x86_64: {w}");
    }
    r
}

/// drive_new, handing the warnings it reports to the caller.
pub fn drive_new_warn(
    graph: &mut BlockGraph,
    devs: &mut BlockDevs,
    optstr: &str,
    default_if: IfType,
    warnings: &mut Vec<String>,
) -> Result<String, String> {
    let mut spec = parse_drive(optstr, default_if, devs)?;
    warnings.append(&mut spec.warnings);
    blockdev_init(
        graph,
        devs,
        &spec.id,
        &spec.node_opts,
        &spec.common,
        Some(spec.legacy),
    )?;
    Ok(spec.id)
}

/// `-blockdev` / `drive_add -n`: dotted QemuOpts keys opened as a node the
/// monitor owns (no backend), as blockdev-add without an id.
pub fn blockdev_node_from_opts(
    graph: &mut BlockGraph,
    devs: &mut BlockDevs,
    optstr: &str,
) -> Result<NodeRef, String> {
    let opts = DRIVE_OPTS.parse(optstr, false).map_err(|e| e.message)?;
    let mut o = Options::new();
    for (k, v) in opts.items {
        o.insert(k, Value::String(v));
    }
    let mut common = CommonOpts::default();
    common_node_options(&mut o, &mut common)?;
    if let Some(id) = opts.id {
        common.read_only = o
            .get("read-only")
            .and_then(Value::as_str)
            .is_some_and(|v| parse_bool("read-only", v).unwrap_or(false));
        blockdev_init(graph, devs, &id, &o, &common, None)?;
        return graph
            .backend(&id)
            .and_then(|b| b.root())
            .ok_or_else(|| "Device has no medium".to_string());
    }
    if o.get("node-name").is_none() {
        return Err("'node-name' needs to be specified".into());
    }
    let n = graph.open(&o).map_err(|e| e.to_string())?;
    if let Err(e) = check_unknown_options(&o, &n) {
        devs.drop_tree(graph, &n);
        return Err(e);
    }
    super::warn_if_probed_raw(&n);
    devs.own_node(n.clone());
    Ok(n)
}

/// Prints QEMU's warning for drives that no device uses (if= other than none).
pub fn warn_orphaned(graph: &BlockGraph, devs: &BlockDevs) {
    for f in &devs.fronts {
        let Some(l) = &f.legacy else { continue };
        if f.device.is_none() && l.if_type != IfType::None {
            let file = graph
                .backend(&f.name)
                .and_then(|b| b.root())
                .map(|r| lock(&r).filename().to_string())
                .unwrap_or_default();
            eprintln!(
                "Warning: Orphaned drive without device: id={},file={},if={},bus={},unit={}",
                f.name,
                file,
                l.if_type.name(),
                l.bus,
                l.unit
            );
        }
    }
}

/// `-blockdev` takes JSON (`{"driver": ...}`) or dotted keys.
pub fn blockdev_from_arg(
    graph: &mut BlockGraph,
    devs: &mut BlockDevs,
    arg: &str,
) -> Result<(), String> {
    if !arg.trim_start().starts_with('{') {
        return blockdev_node_from_opts(graph, devs, arg).map(|_| ());
    }
    let v: Value = serde_json::from_str(arg).map_err(|e| format!("Invalid JSON: {e}"))?;
    let Value::Object(mut o) = v else {
        return Err("Invalid JSON: expected an object".into());
    };
    let mut common = CommonOpts::default();
    common_node_options(&mut o, &mut common)?;
    match o.remove("id").and_then(|v| v.as_str().map(String::from)) {
        Some(id) => {
            common.read_only = o.get("read-only").and_then(Value::as_bool).unwrap_or(false);
            blockdev_init(graph, devs, &id, &o, &common, None)
        }
        None => {
            if o.get("node-name").is_none() {
                return Err(
                    "'id' and/or 'node-name' need to be specified for the root node".into(),
                );
            }
            let n = graph.open(&o).map_err(|e| e.to_string())?;
            if let Err(e) = check_unknown_options(&o, &n) {
                devs.drop_tree(graph, &n);
                return Err(e);
            }
            super::warn_if_probed_raw(&n);
            devs.own_node(n);
            Ok(())
        }
    }
}

/// Options each driver takes besides the common ones (QEMU 2.8's runtime
/// options). Drivers not listed are not checked.
fn driver_keys(driver: &str) -> Option<&'static [&'static str]> {
    Some(match driver {
        "file" | "host_device" | "host_cdrom" => &["filename", "aio"],
        "null-co" | "null-aio" => &["size", "latency-ns", "read-zeroes"],
        "raw" => &["file", "offset", "size"],
        "qcow2" => &[
            "file",
            "backing",
            "lazy-refcounts",
            "pass-discard-request",
            "pass-discard-snapshot",
            "pass-discard-other",
            "overlap-check",
            "cache-size",
            "l2-cache-size",
            "refcount-cache-size",
            "cache-clean-interval",
        ],
        _ => return None,
    })
}

const COMMON_NODE_KEYS: &[&str] = &[
    "node-name",
    "driver",
    "cache",
    "read-only",
    "discard",
    "detect-zeroes",
    "filename",
];

fn is_protocol(driver: &str) -> bool {
    matches!(
        driver,
        "file" | "host_device" | "host_cdrom" | "null-co" | "null-aio"
    )
}

/// Refuses options the opened drivers do not take, as bdrv_open does
/// (dotted `-drive`/`-blockdev` keys have no schema to catch them).
pub fn check_unknown_options(opts: &Options, node: &NodeRef) -> Result<(), String> {
    let nested = block::options::nest(opts).map_err(|e| e.to_string())?;
    check_level(&nested, node, 0)
}

fn check_level(opts: &Options, node: &NodeRef, depth: usize) -> Result<(), String> {
    if depth > 64 {
        return Ok(());
    }
    let (driver, file, backing) = {
        let g = lock(node);
        (g.driver_name(), g.file(), g.backing())
    };
    let Some(keys) = driver_keys(driver) else {
        return Ok(());
    };
    for k in opts.keys() {
        if !COMMON_NODE_KEYS.contains(&k.as_str()) && !keys.contains(&k.as_str()) {
            return Err(if is_protocol(driver) {
                format!("Block protocol '{driver}' doesn't support the option '{k}'")
            } else {
                format!("Block format '{driver}' does not support the option '{k}'")
            });
        }
    }
    if let (Some(Value::Object(f)), Some(n)) = (opts.get("file"), file) {
        check_level(f, &n, depth + 1)?;
    }
    if let (Some(Value::Object(b)), Some(n)) = (opts.get("backing"), backing) {
        check_level(b, &n, depth + 1)?;
    }
    Ok(())
}

/// A legacy `file=` name goes to the protocol child when other `file.*`
/// options are given, as bdrv_open hands the filename down.
fn merge_legacy_filename(opts: &mut Options) {
    let driver = opts.get("driver").and_then(Value::as_str).unwrap_or("");
    if is_protocol(driver) || !opts.keys().any(|k| k.starts_with("file.")) {
        return;
    }
    if opts.contains_key("file.filename") {
        return;
    }
    if let Some(f) = opts.remove("filename") {
        if !opts.contains_key("file.driver") {
            // Protocol probing: device nodes get host_device.
            let proto = if f.as_str().is_some_and(block::is_host_device) {
                "host_device"
            } else {
                "file"
            };
            opts.insert("file.driver".into(), Value::from(proto));
        }
        opts.insert("file.filename".into(), f);
    }
}

/// The `-drive` options behind `-hda`..`-hdd`, `-cdrom`, `-fda`/`-fdb` and a
/// bare image argument (`name` empty), as QEMU's drive_add builds them.
pub fn shortcut_options(name: &str, file: &str) -> String {
    let file = file.replace(',', ",,");
    let (ifopt, index, media) = match name {
        "hdb" => ("", 1, "media=disk"),
        "hdc" => ("", 2, "media=disk"),
        "hdd" => ("", 3, "media=disk"),
        "cdrom" => ("", 2, "media=cdrom"),
        "fda" => ("if=floppy,", 0, ""),
        "fdb" => ("if=floppy,", 1, ""),
        _ => ("", 0, "media=disk"),
    };
    let media = if media.is_empty() {
        String::new()
    } else {
        format!("{media},")
    };
    format!("{media}{ifopt}index={index},file={file}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> Result<DriveSpec, String> {
        parse_drive(s, IfType::Ide, &BlockDevs::default())
    }

    #[test]
    fn default_ids_follow_interface_bus_and_unit() {
        assert_eq!(spec("file=x").unwrap().id, "ide0-hd0");
        assert_eq!(spec("file=x,if=none").unwrap().id, "none0");
        assert_eq!(spec("file=x,media=cdrom,index=3").unwrap().id, "ide1-cd1");
        assert_eq!(spec("file=x,if=virtio").unwrap().id, "virtio0");
        assert_eq!(spec("file=x,if=scsi,unit=2").unwrap().id, "scsi0-hd2");
    }

    #[test]
    fn cache_mode_expands_to_specific_options() {
        let s = spec("file=x,if=none,cache=none").unwrap();
        assert_eq!(s.node_opts["cache.direct"], "on");
        assert_eq!(s.node_opts["cache.no-flush"], "off");
        assert!(!s.common.writethrough);
        let s = spec("file=x,if=none,cache=writethrough").unwrap();
        assert!(s.common.writethrough);
        assert_eq!(
            spec("file=x,cache=bogus").unwrap_err(),
            "invalid cache option"
        );
    }

    #[test]
    fn legacy_option_errors_use_qemu_wording() {
        assert_eq!(spec("if=foo").unwrap_err(), "unsupported bus type 'foo'");
        assert_eq!(spec("media=tape").unwrap_err(), "'tape' invalid media");
        assert_eq!(
            spec("if=none,werror=bogus").unwrap_err(),
            "'bogus' invalid write error action"
        );
        assert_eq!(
            spec("if=none,rerror=enospc").unwrap_err(),
            "'enospc' invalid read error action"
        );
        assert_eq!(
            spec("if=floppy,werror=stop").unwrap_err(),
            "werror is not supported by this bus type"
        );
        assert_eq!(spec("unit=2").unwrap_err(), "unit 2 too big (max is 1)");
        assert_eq!(
            spec("if=none,format=raw,driver=raw").unwrap_err(),
            "Cannot specify both 'driver' and 'format'"
        );
        assert_eq!(
            spec("if=none,readonly=on,read-only=on").unwrap_err(),
            "'read-only' and its alias 'readonly' can't be used at the same time"
        );
        assert_eq!(
            spec("if=none,detect-zeroes=unmap").unwrap_err(),
            "setting detect-zeroes to unmap is not allowed without setting discard operation to unmap"
        );
    }

    #[test]
    fn throttling_options_become_limits() {
        let s = spec("if=none,bps=100,group=g1").unwrap();
        let (cfg, group) = s.common.throttle.unwrap();
        assert!(cfg.enabled());
        assert_eq!(group.as_deref(), Some("g1"));
        assert!(!s.node_opts.keys().any(|k| k.starts_with("throttling")));
    }

    #[test]
    fn node_options_keep_driver_and_filename() {
        let s = spec("file=/tmp/a.img,format=qcow2,if=none,node-name=n0,readonly").unwrap();
        assert_eq!(s.node_opts["driver"], "qcow2");
        assert_eq!(s.node_opts["filename"], "/tmp/a.img");
        assert_eq!(s.node_opts["node-name"], "n0");
        assert_eq!(s.node_opts["read-only"], "on");
        assert!(s.common.read_only);
    }

    #[test]
    fn unknown_driver_options_are_refused_with_the_driver_named() {
        let mut g = BlockGraph::new();
        let mut d = BlockDevs::default();
        let e = drive_new(
            &mut g,
            &mut d,
            "driver=null-co,if=none,bogus=1",
            IfType::None,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "Block protocol 'null-co' doesn't support the option 'bogus'"
        );
        assert!(g.nodes().is_empty() && g.backends().is_empty());
        drive_new(
            &mut g,
            &mut d,
            "driver=null-co,if=none,size=4096",
            IfType::None,
        )
        .unwrap();
    }

    #[test]
    fn shortcuts_map_to_qemu_drive_options() {
        assert_eq!(
            shortcut_options("hda", "a,b.img"),
            "media=disk,index=0,file=a,,b.img"
        );
        assert_eq!(
            shortcut_options("cdrom", "x.iso"),
            "media=cdrom,index=2,file=x.iso"
        );
        assert_eq!(
            shortcut_options("fdb", "f.img"),
            "if=floppy,index=1,file=f.img"
        );
        let s = spec(&shortcut_options("cdrom", "x.iso")).unwrap();
        assert_eq!(s.id, "ide1-cd0");
        let s = spec(&shortcut_options("fda", "f.img")).unwrap();
        assert_eq!(s.id, "floppy0");
    }

    #[test]
    fn native_aio_needs_direct_on_the_host_file_node_set_or_inherited() {
        let o = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
        let msg = "aio=native was specified, but it requires cache.direct=on, \
                   which was not specified.";
        let plain = o(serde_json::json!({"driver": "raw", "file": {"driver": "file"}}));
        assert_eq!(check_native_aio(&plain).unwrap_err(), msg);
        let top = o(
            serde_json::json!({"driver": "raw", "cache": {"direct": true},
                                       "file": {"driver": "file"}}),
        );
        assert!(check_native_aio(&top).is_ok());
        let child_off = o(
            serde_json::json!({"driver": "raw", "cache": {"direct": true},
                                   "file": {"driver": "file", "cache": {"direct": false}}}),
        );
        assert!(check_native_aio(&child_off).is_err());
        let dotted = o(serde_json::json!({"driver": "raw", "cache.direct": "on"}));
        assert!(check_native_aio(&dotted).is_ok());
        let null = o(serde_json::json!({"driver": "null-co"}));
        assert!(check_native_aio(&null).is_ok());
    }
}
