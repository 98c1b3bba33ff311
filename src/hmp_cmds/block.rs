//! Block HMP commands (`info block`, block_resize, snapshots, eject,
//! change, drive_add, drive_del, block_passwd), formatted as QEMU's hmp.c
//! and block/qapi.c print them.

use serde_json::{json, Value};

use qmp::error::QmpError;

use super::HmpArgs;
use crate::blockdev::{self, drive, IfType};
use crate::emulator::Emulator;
use crate::qmp_cmds::{self, CmdCtx};

fn s<'a>(a: &'a HmpArgs, k: &str) -> Option<&'a str> {
    a.get(k).and_then(Value::as_str)
}

fn flag(a: &HmpArgs, k: &str) -> bool {
    a.get(k).and_then(Value::as_bool).unwrap_or(false)
}

fn qmp(emu: &mut Emulator, ctx: &mut CmdCtx, cmd: &str, args: Value) -> Result<Value, QmpError> {
    let Value::Object(m) = args else {
        return Err(QmpError::generic("internal: bad arguments"));
    };
    qmp_cmds::dispatch(emu, ctx, cmd, &m)
}

// ---- info block ------------------------------------------------------------

/// get_human_readable_size: 999, 1.5K, 20M, ...
pub fn human_size(size: u64) -> String {
    if size <= 999 {
        return size.to_string();
    }
    let suffixes = ['K', 'M', 'G', 'T'];
    let mut base: u64 = 1024;
    for (i, sfx) in suffixes.iter().enumerate() {
        if size < 10 * base {
            return format!("{:.1}{}", size as f64 / base as f64, sfx);
        } else if size < 1000 * base || i == suffixes.len() - 1 {
            return format!("{}{}", (size + (base >> 1)) / base, sfx);
        }
        base *= 1024;
    }
    size.to_string()
}

fn local_date(secs: i64) -> String {
    let t: libc::time_t = secs as libc::time_t;
    // SAFETY: an all-zero tm is valid for localtime_r to overwrite.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers refer to live locals.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return String::new();
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// One line of a snapshot table (bdrv_snapshot_dump); None gives the header.
pub fn snapshot_line(sn: Option<&Value>) -> String {
    let Some(sn) = sn else {
        return format!(
            "{:<10}{:<20}{:>7}{:>20}{:>15}",
            "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK"
        );
    };
    let i = |k: &str| sn[k].as_u64().unwrap_or(0);
    let clock_ns = i("vm-clock-sec") * 1_000_000_000 + i("vm-clock-nsec");
    let secs = clock_ns / 1_000_000_000;
    let clock = format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        (clock_ns / 1_000_000) % 1000
    );
    format!(
        "{:<10}{:<20}{:>7}{:>20}{:>15}",
        sn["id"].as_str().unwrap_or(""),
        sn["name"].as_str().unwrap_or(""),
        human_size(i("vm-state-size")),
        local_date(i("date-sec") as i64),
        clock
    )
}

fn dump_value(out: &mut String, indent: usize, v: &Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let composite = v.is_object() || v.is_array();
                let key = k.replace('-', " ");
                out.push_str(&format!(
                    "{:w$}{key}:{}",
                    "",
                    if composite { '\n' } else { ' ' },
                    w = indent * 4
                ));
                dump_value(out, indent + 1, v);
                if !composite {
                    out.push('\n');
                }
            }
        }
        Value::Array(l) => {
            for (i, v) in l.iter().enumerate() {
                let composite = v.is_object() || v.is_array();
                out.push_str(&format!(
                    "{:w$}[{i}]:{}",
                    "",
                    if composite { '\n' } else { ' ' },
                    w = indent * 4
                ));
                dump_value(out, indent + 1, v);
                if !composite {
                    out.push('\n');
                }
            }
        }
        Value::String(s) => out.push_str(s),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::Null => {}
    }
}

/// bdrv_image_info_dump.
pub fn image_info_text(info: &Value, out: &mut String) {
    let vsize = info["virtual-size"].as_u64().unwrap_or(0);
    let dsize = info
        .get("actual-size")
        .and_then(Value::as_u64)
        .map_or_else(|| "unavailable".to_string(), human_size);
    out.push_str(&format!(
        "image: {}\nfile format: {}\nvirtual size: {} ({} bytes)\ndisk size: {}\n",
        info["filename"].as_str().unwrap_or(""),
        info["format"].as_str().unwrap_or(""),
        human_size(vsize),
        vsize,
        dsize
    ));
    if info["encrypted"].as_bool() == Some(true) {
        out.push_str("encrypted: yes\n");
    }
    if let Some(c) = info.get("cluster-size").and_then(Value::as_u64) {
        out.push_str(&format!("cluster_size: {c}\n"));
    }
    if info["dirty-flag"].as_bool() == Some(true) {
        out.push_str("cleanly shut down: no\n");
    }
    if let Some(b) = info.get("backing-filename").and_then(Value::as_str) {
        out.push_str(&format!("backing file: {b}"));
        match info.get("full-backing-filename").and_then(Value::as_str) {
            None => out.push_str(" (cannot determine actual path)"),
            Some(f) if f != b => out.push_str(&format!(" (actual path: {f})")),
            Some(_) => {}
        }
        out.push('\n');
        if let Some(f) = info.get("backing-filename-format").and_then(Value::as_str) {
            out.push_str(&format!("backing file format: {f}\n"));
        }
    }
    if let Some(Value::Array(snaps)) = info.get("snapshots") {
        out.push_str("Snapshot list:\n");
        out.push_str(&snapshot_line(None));
        out.push('\n');
        for sn in snaps {
            out.push_str(&snapshot_line(Some(sn)));
            out.push('\n');
        }
    }
    if let Some(fs) = info.get("format-specific") {
        out.push_str("Format specific information:\n");
        if let Some(d) = fs.get("data") {
            dump_value(out, 1, d);
        }
    }
}

/// print_block_info: `info` is a BlockInfo (None for a bare node).
pub fn print_block_info(
    out: &mut String,
    info: Option<&Value>,
    inserted: Option<&Value>,
    verbose: bool,
) {
    let node_name = inserted
        .and_then(|i| i.get("node-name"))
        .and_then(Value::as_str);
    match info {
        Some(i) => {
            out.push_str(i["device"].as_str().unwrap_or(""));
            if let Some(n) = node_name {
                out.push_str(&format!(" ({n})"));
            }
        }
        None => out.push_str(node_name.unwrap_or("<anonymous>")),
    }
    match inserted {
        Some(ins) => out.push_str(&format!(
            ": {} ({}{}{})\n",
            ins["file"].as_str().unwrap_or(""),
            ins["drv"].as_str().unwrap_or(""),
            if ins["ro"].as_bool() == Some(true) {
                ", read-only"
            } else {
                ""
            },
            if ins["encrypted"].as_bool() == Some(true) {
                ", encrypted"
            } else {
                ""
            }
        )),
        None => out.push_str(": [not inserted]\n"),
    }
    if let Some(i) = info {
        if let Some(st) = i.get("io-status").and_then(Value::as_str) {
            if st != "ok" {
                out.push_str(&format!("    I/O status:       {st}\n"));
            }
        }
        if i["removable"].as_bool() == Some(true) {
            out.push_str(&format!(
                "    Removable device: {}locked, tray {}\n",
                if i["locked"].as_bool() == Some(true) {
                    ""
                } else {
                    "not "
                },
                if i["tray_open"].as_bool() == Some(true) {
                    "open"
                } else {
                    "closed"
                }
            ));
        }
    }
    let Some(ins) = inserted else {
        return;
    };
    let cache = &ins["cache"];
    out.push_str(&format!(
        "    Cache mode:       {}{}{}\n",
        if cache["writeback"].as_bool() == Some(true) {
            "writeback"
        } else {
            "writethrough"
        },
        if cache["direct"].as_bool() == Some(true) {
            ", direct"
        } else {
            ""
        },
        if cache["no-flush"].as_bool() == Some(true) {
            ", ignore flushes"
        } else {
            ""
        }
    ));
    if let Some(b) = ins.get("backing_file").and_then(Value::as_str) {
        out.push_str(&format!(
            "    Backing file:     {b} (chain depth: {})\n",
            ins["backing_file_depth"].as_i64().unwrap_or(0)
        ));
    }
    let dz = ins["detect_zeroes"].as_str().unwrap_or("off");
    if dz != "off" {
        out.push_str(&format!("    Detect zeroes:    {dz}\n"));
    }
    let n = |k: &str| ins.get(k).and_then(Value::as_i64).unwrap_or(0);
    if ["bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr"]
        .iter()
        .any(|k| n(k) != 0)
    {
        out.push_str(&format!(
            "    I/O throttling:   bps={} bps_rd={} bps_wr={} bps_max={} bps_rd_max={} bps_wr_max={} iops={} iops_rd={} iops_wr={} iops_max={} iops_rd_max={} iops_wr_max={} iops_size={} group={}\n",
            n("bps"), n("bps_rd"), n("bps_wr"), n("bps_max"), n("bps_rd_max"), n("bps_wr_max"),
            n("iops"), n("iops_rd"), n("iops_wr"), n("iops_max"), n("iops_rd_max"), n("iops_wr_max"),
            n("iops_size"), ins["group"].as_str().unwrap_or("")
        ));
    }
    if verbose {
        out.push_str("\nImages:\n");
        let mut img = Some(&ins["image"]);
        while let Some(i) = img {
            image_info_text(i, out);
            img = i.get("backing-image");
        }
    }
}

pub fn info_block(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let device = s(a, "device");
    let verbose = flag(a, "verbose");
    let nodes = flag(a, "nodes");
    let mut printed = false;
    if !nodes {
        let list = qmp(emu, ctx, "query-block", json!({}))?;
        let mut first = true;
        for info in list.as_array().into_iter().flatten() {
            if device.is_some_and(|d| info["device"].as_str() != Some(d)) {
                first = false;
                continue;
            }
            if !first {
                out.push('\n');
            }
            first = false;
            print_block_info(out, Some(info), info.get("inserted"), verbose);
            printed = true;
        }
    }
    if (device.is_none() && !nodes) || printed {
        return Ok(());
    }
    let list = qmp(emu, ctx, "query-named-block-nodes", json!({}))?;
    let mut first = true;
    for n in list.as_array().into_iter().flatten() {
        if device.is_some_and(|d| n["node-name"].as_str() != Some(d)) {
            first = false;
            continue;
        }
        if !first {
            out.push('\n');
        }
        first = false;
        print_block_info(out, None, Some(n), verbose);
    }
    Ok(())
}

pub fn info_blockstats(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    _: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let list = qmp(emu, ctx, "query-blockstats", json!({}))?;
    for e in list.as_array().into_iter().flatten() {
        let Some(dev) = e.get("device").and_then(Value::as_str) else {
            continue;
        };
        let st = &e["stats"];
        let n = |k: &str| st.get(k).and_then(Value::as_i64).unwrap_or(0);
        out.push_str(&format!(
            "{dev}: rd_bytes={} wr_bytes={} rd_operations={} wr_operations={} flush_operations={} wr_total_time_ns={} rd_total_time_ns={} flush_total_time_ns={} rd_merged={} wr_merged={} idle_time_ns={}\n",
            n("rd_bytes"),
            n("wr_bytes"),
            n("rd_operations"),
            n("wr_operations"),
            n("flush_operations"),
            n("wr_total_time_ns"),
            n("rd_total_time_ns"),
            n("flush_total_time_ns"),
            n("rd_merged"),
            n("wr_merged"),
            n("idle_time_ns")
        ));
    }
    Ok(())
}

// ---- commands ----------------------------------------------------------------

pub fn block_resize(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    a: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let size = a.get("size").and_then(Value::as_i64).unwrap_or(0);
    blockdev::stopped::check_idle(emu, s(a, "device").unwrap_or(""))?;
    qmp_cmds::block::resize(emu, s(a, "device"), None, size).map_err(|(e, report)| {
        // The driver's own error_report() reaches the monitor first.
        if let Some(r) = report {
            out.push_str(&r);
            out.push('\n');
        }
        e
    })
}

pub fn block_set_io_throttle(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let n = |k: &str| a.get(k).and_then(Value::as_i64).unwrap_or(0);
    let args = json!({
        "device": s(a, "device"),
        "bps": n("bps"), "bps_rd": n("bps_rd"), "bps_wr": n("bps_wr"),
        "iops": n("iops"), "iops_rd": n("iops_rd"), "iops_wr": n("iops_wr"),
    });
    qmp(emu, ctx, "block_set_io_throttle", args).map(|_| ())
}

pub fn block_passwd(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let args = json!({"device": s(a, "device"), "password": s(a, "password")});
    qmp(emu, ctx, "block_passwd", args).map(|_| ())
}

pub fn snapshot_blkdev(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let Some(file) = s(a, "snapshot-file") else {
        return Err(QmpError::missing_parameter("snapshot-file"));
    };
    let mut args = json!({
        "device": s(a, "device"),
        "snapshot-file": file,
        "mode": if flag(a, "reuse") { "existing" } else { "absolute-paths" },
    });
    if let Some(f) = s(a, "format") {
        args["format"] = json!(f);
    }
    qmp(emu, ctx, "blockdev-snapshot-sync", args).map(|_| ())
}

pub fn snapshot_blkdev_internal(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let args = json!({"device": s(a, "device"), "name": s(a, "name")});
    qmp(emu, ctx, "blockdev-snapshot-internal-sync", args).map(|_| ())
}

pub fn snapshot_delete_blkdev_internal(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let mut args = json!({"device": s(a, "device"), "name": s(a, "name")});
    if let Some(id) = s(a, "id") {
        args["id"] = json!(id);
    }
    qmp(emu, ctx, "blockdev-snapshot-delete-internal-sync", args).map(|_| ())
}

pub fn eject(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let args = json!({"device": s(a, "device"), "force": flag(a, "force")});
    qmp(emu, ctx, "eject", args).map(|_| ())
}

pub fn change(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    a: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let device = s(a, "device").unwrap_or("");
    let target = s(a, "target").unwrap_or("");
    let ro = s(a, "read-only-mode");
    if device == "vnc" {
        if ro.is_some() {
            out.push_str("Parameter 'read-only-mode' is invalid for VNC\n");
            return Ok(());
        }
        return Err(QmpError::feature_disabled("vnc"));
    }
    // hmp_change parses the mode with qapi_enum_parse before anything else.
    if let Some(m) = ro {
        if !matches!(m, "retain" | "read-only" | "read-write") {
            return Err(QmpError::generic(format!("invalid parameter value: {m}")));
        }
    }
    blockdev::stopped::check_idle(emu, device)?;
    let r = qmp_cmds::block::change_medium(emu, device, target, s(a, "arg"), ro);
    crate::blockdev::flush_events(emu);
    r
}

pub fn drive_add(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    a: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let opts = s(a, "opts").unwrap_or("");
    if flag(a, "node") {
        let r = blockdev::with_fdsets(emu, |g, d| drive::blockdev_node_from_opts(g, d, opts));
        if let Err(e) = r {
            out.push_str(&e);
            out.push('\n');
        }
        return Ok(());
    }
    let default_if = IfType::Ide;
    let mut warnings = Vec::new();
    let r = blockdev::with_fdsets(emu, |g, d| {
        drive::drive_new_warn(g, d, opts, default_if, &mut warnings)
    });
    // Reported on the monitor, without a location.
    for w in warnings {
        out.push_str(&w);
        out.push('\n');
    }
    let id = match r {
        Ok(id) => id,
        Err(e) => {
            out.push_str(&e);
            out.push('\n');
            return Ok(());
        }
    };
    if let Err(e) = blockdev::apply_pending_limits(emu) {
        out.push_str(&e);
        out.push('\n');
    }
    let legacy = emu.blockdevs.front(&id).and_then(|f| f.legacy.clone());
    let msg = match legacy {
        Some(l) if l.devaddr.is_some() => Some("Parameter addr not supported\n".to_string()),
        Some(l) if l.if_type != IfType::None => Some(format!(
            "Can't hot-add drive to type {}\n",
            l.if_type as i32
        )),
        _ => None,
    };
    match msg {
        None => out.push_str("OK\n"),
        Some(m) => {
            out.push_str(&m);
            emu.blockdevs.delete_backend(&mut emu.block, &id);
        }
    }
    Ok(())
}

pub fn drive_del(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let id = s(a, "id").unwrap_or("");
    crate::qmp_cmds::jobs::check_name_free(emu, id)?;
    if emu.block.find_node(id).is_some() {
        return qmp(emu, ctx, "x-blockdev-del", json!({"node-name": id})).map(|_| ());
    }
    if emu.block.backend(id).is_none() {
        out.push_str(&format!("Device '{id}' not found\n"));
        return Ok(());
    }
    let legacy = emu.blockdevs.front(id).is_some_and(|f| f.legacy.is_some());
    if !legacy {
        out.push_str("Deleting device added with blockdev-add is not supported\n");
        return Ok(());
    }
    blockdev::stopped::check_idle(emu, id)?;
    // A device keeps using an anonymous, medium-less backend; we have no
    // device models yet, so the backend goes entirely.
    emu.blockdevs.delete_backend(&mut emu.block, id);
    emu.nbd_backend_removed(id);
    Ok(())
}

/// `qemu-io <device> "<command>"`: one qemu-io command on a backend's medium
/// or a node. Like the reference, its report goes to stdout (the monitor
/// reply stays empty), argument errors to stderr, `abort` aborts the process
/// and `sigraise` raises the signal in it.
pub fn qemu_io(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    a: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let device = s(a, "device").unwrap_or("");
    let command = s(a, "command").unwrap_or("");
    let node = block::qemu_io::resolve_device(&emu.block, device).map_err(QmpError::generic)?;
    let mut io = block::qemu_io::QemuIo::new();
    io.set_debug_ops(Box::new(block::drivers::blkdebug::BlkdebugDebugOps));
    io.set_inflight(emu.block.inflight());
    // aio requests on a backend are booked in its statistics, as in QEMU,
    // and wait for its throttle group when it has limits.
    if let Some(b) = emu.block.backend(device) {
        let stats = b.stats_handle();
        io.set_accounting(Box::new(block::stats::StatsAccounting(stats.clone())));
        let groups = emu.blockdevs.throttle.clone();
        if blockdev::throttle::groups(&groups).is_throttled(device) {
            io.set_aio_submit(Box::new(blockdev::throttle::ThrottledSubmit {
                groups,
                backend: device.to_string(),
                now: blockdev::throttle::now(emu),
                stats: Some(stats),
                inflight: emu.block.inflight(),
            }));
        }
    }
    let mut text = String::new();
    let r = io.run(node.as_ref(), command, &mut text);
    // Requests the command let go on (resume, remove_break) finish now.
    text.push_str(&emu.block.run_inflight());
    // QEMU 2.8's qemu-io prints on the process's stdout, not into the
    // monitor reply, and events raised by the I/O come out first.
    crate::blockdev::flush_events(emu);
    if !text.is_empty() {
        use std::io::Write;
        let mut so = std::io::stdout();
        let _ = so.write_all(text.as_bytes());
        let _ = so.flush();
    }
    let _ = out;
    // Requests held back by throttling wait for the group's timer.
    blockdev::throttle::rearm(emu);
    match r {
        Ok(()) => {}
        Err(block::qemu_io::QemuIoError::Abort) => std::process::abort(),
        Err(block::qemu_io::QemuIoError::Raise(sig)) => {
            // SAFETY: raise only delivers a signal to this process.
            unsafe { libc::raise(sig) };
        }
        Err(e) => eprintln!("{e}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes_round_as_qemu() {
        assert_eq!(human_size(999), "999");
        assert_eq!(human_size(1024), "1.0K");
        assert_eq!(human_size(200704), "196K");
        assert_eq!(human_size(1 << 20), "1.0M");
        assert_eq!(human_size(20 << 30), "20G");
        assert_eq!(human_size(5000 << 40), "5000T");
    }

    #[test]
    fn block_info_lines_follow_hmp_layout() {
        let info = json!({
            "device": "d0", "removable": true, "locked": false, "type": "unknown",
            "inserted": {
                "file": "/x/top.qcow2", "node-name": "top0", "drv": "qcow2", "ro": true,
                "encrypted": false, "backing_file": "/x/base.qcow2", "backing_file_depth": 1,
                "detect_zeroes": "unmap", "bps": 0, "bps_rd": 0, "bps_wr": 0, "iops": 0,
                "iops_rd": 0, "iops_wr": 0,
                "cache": {"writeback": false, "direct": true, "no-flush": true},
                "image": {"filename": "/x/top.qcow2", "format": "qcow2",
                          "virtual-size": 1048576, "cluster-size": 65536,
                          "format-specific": {"type": "qcow2", "data": {"compat": "1.1",
                              "lazy-refcounts": false}}}
            }
        });
        let mut out = String::new();
        print_block_info(&mut out, Some(&info), info.get("inserted"), true);
        assert_eq!(
            out,
            "d0 (top0): /x/top.qcow2 (qcow2, read-only)\n\
             \x20   Removable device: not locked, tray closed\n\
             \x20   Cache mode:       writethrough, direct, ignore flushes\n\
             \x20   Backing file:     /x/base.qcow2 (chain depth: 1)\n\
             \x20   Detect zeroes:    unmap\n\
             \n\
             Images:\n\
             image: /x/top.qcow2\n\
             file format: qcow2\n\
             virtual size: 1.0M (1048576 bytes)\n\
             disk size: unavailable\n\
             cluster_size: 65536\n\
             Format specific information:\n\
             \x20   compat: 1.1\n\
             \x20   lazy refcounts: false\n"
        );
    }

    #[test]
    fn snapshot_table_columns_are_fixed_width() {
        assert_eq!(
            snapshot_line(None),
            "ID        TAG                 VM SIZE                DATE       VM CLOCK"
        );
        let sn = json!({"id": "1", "name": "s1", "vm-state-size": 0, "date-sec": 0,
                        "date-nsec": 0, "vm-clock-sec": 3723, "vm-clock-nsec": 5_000_000});
        let line = snapshot_line(Some(&sn));
        assert!(
            line.starts_with("1         s1                        0 "),
            "{line}"
        );
        assert!(line.ends_with("   01:02:03.005"), "{line}");
    }
}
