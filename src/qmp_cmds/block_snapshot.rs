//! Snapshot commands: external (blockdev-snapshot-sync, blockdev-snapshot)
//! and internal (blockdev-snapshot-internal-sync,
//! blockdev-snapshot-delete-internal-sync). Each action is split into
//! prepare / commit / abort so `transaction` can run several atomically.

use std::sync::Arc;

use serde_json::{json, Value};

use block::options::Options;
use block::{lock, BlockGraph, NodeRef, SnapshotInfo};
use qmp::error::QmpError;

use super::{arg_str, empty, Args, CmdCtx};
use crate::blockdev::{get_root_bs, lookup_bs, qerr, BlockDevs};
use crate::emulator::Emulator;
use crate::main_loop::ClockType;

/// What an external snapshot needs once prepared.
pub struct ExternalSnapshot {
    old: NodeRef,
    new: NodeRef,
    /// The overlay was opened by the action (dropped again on abort).
    opened: bool,
}

/// Options of blockdev-snapshot-sync.
pub struct SnapshotSync<'a> {
    pub device: Option<&'a str>,
    pub node_name: Option<&'a str>,
    pub snapshot_file: &'a str,
    pub snapshot_node_name: Option<&'a str>,
    pub format: Option<&'a str>,
    /// mode=existing
    pub existing: bool,
}

/// QEMU prints the options of every image it creates on stdout.
fn print_formatting(path: &str, fmt: &str, size: u64, backing: &str, backing_fmt: &str) {
    use std::io::Write;
    let esc = |s: &str| s.replace(',', ",,");
    let line = if fmt == "qcow2" {
        format!(
            "Formatting '{path}', fmt=qcow2 size={size} backing_file={} backing_fmt={} encryption=off cluster_size=65536 lazy_refcounts=off refcount_bits=16",
            esc(backing),
            esc(backing_fmt)
        )
    } else {
        format!("Formatting '{path}', fmt={fmt} size={size}")
    };
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn flush_if_writable(node: &NodeRef) -> Result<(), QmpError> {
    let mut g = lock(node);
    if !g.is_read_only() && g.flush().is_err() {
        return Err(QmpError::io_error());
    }
    Ok(())
}

/// Checks an overlay that is about to take `old`'s place.
fn check_overlay(graph: &BlockGraph, devs: &BlockDevs, new: &NodeRef) -> Result<(), QmpError> {
    let user = devs.device_name_of(graph, new);
    if !user.is_empty() {
        return Err(QmpError::generic(format!(
            "The snapshot is already in use by {user}"
        )));
    }
    let g = lock(new);
    if g.backing().is_some() {
        return Err(QmpError::generic(
            "The snapshot already has a backing image",
        ));
    }
    if g.driver_name() != "qcow2" {
        return Err(QmpError::generic(
            "The snapshot does not support backing images",
        ));
    }
    Ok(())
}

/// The checks QEMU makes on the node a snapshot goes on top of: not a
/// backing node (blocked), not a protocol child (not "first non-filter").
fn check_old(graph: &BlockGraph, devs: &BlockDevs, old: &NodeRef) -> Result<(), QmpError> {
    if let Some(e) = crate::blockdev::backing_blocker(graph, devs, old) {
        return Err(e);
    }
    flush_if_writable(old)?;
    if crate::blockdev::is_file_child(graph, old) {
        return Err(QmpError::generic("The feature 'snapshot' is not enabled"));
    }
    Ok(())
}

pub fn snapshot_sync_prepare(
    graph: &mut BlockGraph,
    devs: &mut BlockDevs,
    s: &SnapshotSync,
) -> Result<ExternalSnapshot, QmpError> {
    let old = lookup_bs(graph, s.device, s.node_name)?;
    check_old(graph, devs, &old)?;
    let format = s.format.unwrap_or("qcow2");
    if s.node_name.is_some() && s.snapshot_node_name.is_none() {
        return Err(QmpError::generic("New snapshot node name missing"));
    }
    if let Some(n) = s.snapshot_node_name {
        if graph.backend(n).is_some() || graph.find_node(n).is_some() {
            return Err(QmpError::generic("New snapshot node name already in use"));
        }
    }
    let (old_file, old_fmt, read_only, size) = {
        let mut g = lock(&old);
        let size = g
            .length()
            .map_err(|e| QmpError::generic(format!("bdrv_getlength failed: {}", e.strerror())))?;
        (
            g.filename().to_string(),
            g.driver_name().to_string(),
            g.is_read_only(),
            size,
        )
    };
    if !s.existing {
        let copts = block::CreateOptions {
            backing_file: Some(old_file.clone()),
            backing_fmt: Some(old_fmt.clone()),
            ..Default::default()
        };
        if format != "qcow2" && format != "raw" {
            return Err(QmpError::generic(format!("Unknown file format '{format}'")));
        }
        if format == "raw" {
            return Err(QmpError::generic(
                "Backing file not supported for file format 'raw'",
            ));
        }
        print_formatting(s.snapshot_file, format, size, &old_file, &old_fmt);
        block::create_image(format, s.snapshot_file, Some(size), &copts).map_err(qerr)?;
    }
    let mut o = Options::new();
    if let Some(n) = s.snapshot_node_name {
        o.insert("node-name".into(), json!(n));
    }
    o.insert("driver".into(), json!(format));
    o.insert("filename".into(), json!(s.snapshot_file));
    o.insert("read-only".into(), json!(read_only));
    o.insert("backing".into(), Value::Null);
    let new = graph.open(&o).map_err(qerr)?;
    let prepared = ExternalSnapshot {
        old,
        new,
        opened: true,
    };
    if let Err(e) = check_overlay(graph, devs, &prepared.new) {
        external_abort(graph, devs, prepared);
        return Err(e);
    }
    Ok(prepared)
}

pub fn snapshot_prepare(
    graph: &mut BlockGraph,
    devs: &mut BlockDevs,
    node: &str,
    overlay: &str,
) -> Result<ExternalSnapshot, QmpError> {
    let old = lookup_bs(graph, Some(node), Some(node))?;
    check_old(graph, devs, &old)?;
    let new = lookup_bs(graph, Some(overlay), Some(overlay))?;
    check_overlay(graph, devs, &new)?;
    Ok(ExternalSnapshot {
        old,
        new,
        opened: false,
    })
}

/// bdrv_append: the overlay takes the old node's place in every backend and
/// parent, with the old node as its backing file; the old node turns read-only.
pub fn external_commit(
    graph: &mut BlockGraph,
    _devs: &mut BlockDevs,
    s: ExternalSnapshot,
) -> Result<(), QmpError> {
    graph
        .set_backing(&s.new, Some(s.old.clone()))
        .map_err(qerr)?;
    let names: Vec<String> = graph
        .backends()
        .iter()
        .filter(|b| b.root().is_some_and(|r| Arc::ptr_eq(&r, &s.old)))
        .map(|b| b.name().to_string())
        .collect();
    // bdrv_append moves the backend onto the overlay before attaching the
    // backing file, so the blocker names the device.
    if let Some(n) = names.first() {
        lock(&s.new).set_backing_blocker(Some(n.clone()));
    }
    for n in names {
        if let Some(b) = graph.backend_mut(&n) {
            b.remove_medium();
            b.insert_medium(s.new.clone()).map_err(qerr)?;
        }
    }
    let parents: Vec<NodeRef> = graph
        .nodes()
        .iter()
        .filter(|p| !Arc::ptr_eq(p, &s.new))
        .filter(|p| lock(p).backing().is_some_and(|b| Arc::ptr_eq(&b, &s.old)))
        .cloned()
        .collect();
    for p in parents {
        graph.set_backing(&p, Some(s.new.clone())).map_err(qerr)?;
    }
    let _ = lock(&s.old).set_read_only(true);
    Ok(())
}

pub fn external_abort(graph: &mut BlockGraph, devs: &mut BlockDevs, s: ExternalSnapshot) {
    if s.opened {
        devs.drop_tree(graph, &s.new);
    }
}

pub fn blockdev_snapshot_sync(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let s = SnapshotSync {
        device: arg_str(args, "device"),
        node_name: arg_str(args, "node-name"),
        snapshot_file: arg_str(args, "snapshot-file").unwrap_or(""),
        snapshot_node_name: arg_str(args, "snapshot-node-name"),
        format: arg_str(args, "format"),
        existing: arg_str(args, "mode") == Some("existing"),
    };
    if let Some(name) = s.device.or(s.node_name) {
        super::jobs::check_name_free(emu, name)?;
    }
    // The overlay may be a /dev/fdset/N name (mode=existing).
    crate::blockdev::with_fdsets(emu, |g, d| {
        let p = snapshot_sync_prepare(g, d, &s)?;
        external_commit(g, d, p)
    })?;
    Ok(empty())
}

pub fn blockdev_snapshot(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let node = arg_str(args, "node").unwrap_or("");
    let overlay = arg_str(args, "overlay").unwrap_or("");
    let (g, d) = (&mut emu.block, &mut emu.blockdevs);
    let p = snapshot_prepare(g, d, node, overlay)?;
    external_commit(g, d, p)?;
    Ok(empty())
}

// ---- internal snapshots ---------------------------------------------------

/// A created internal snapshot, for transaction abort.
#[allow(dead_code)] // read by `transaction`'s abort path
pub struct InternalSnapshot {
    node: NodeRef,
    info: SnapshotInfo,
}

fn find_snapshot(node: &NodeRef, id: Option<&str>, name: Option<&str>) -> Option<SnapshotInfo> {
    let list = lock(node).snapshot_list().ok()?;
    list.into_iter()
        .find(|s| id.is_none_or(|i| s.id == i) && name.is_none_or(|n| s.name == n))
}

pub fn internal_prepare(
    graph: &BlockGraph,
    device: &str,
    name: &str,
    vm_clock_ns: i64,
) -> Result<InternalSnapshot, QmpError> {
    let node = get_root_bs(graph, device)?;
    {
        let g = lock(&node);
        if g.is_read_only() {
            return Err(QmpError::generic(format!("Device '{device}' is read only")));
        }
        if g.driver_name() != "qcow2" {
            return Err(QmpError::generic(format!(
                "Block format '{}' used by device '{device}' does not support internal snapshots",
                g.driver_name()
            )));
        }
    }
    if name.is_empty() {
        return Err(QmpError::generic("Name is empty"));
    }
    if find_snapshot(&node, None, Some(name)).is_some() {
        return Err(QmpError::generic(format!(
            "Snapshot with name '{name}' already exists on device '{device}'"
        )));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let req = SnapshotInfo {
        id: String::new(),
        name: name.to_string(),
        vm_state_size: 0,
        date_sec: now.as_secs() as u32,
        date_nsec: now.subsec_micros() * 1000,
        vm_clock_nsec: vm_clock_ns.max(0) as u64,
    };
    let info = lock(&node).snapshot_create(&req).map_err(|e| {
        QmpError::generic(format!(
            "Failed to create snapshot '{name}' on device '{device}': {}",
            e.strerror()
        ))
    })?;
    Ok(InternalSnapshot { node, info })
}

#[allow(dead_code)] // `transaction` calls it when a later action fails
pub fn internal_abort(s: InternalSnapshot) {
    let r = lock(&s.node).snapshot_delete(Some(&s.info.id), Some(&s.info.name));
    if let Err(e) = r {
        eprintln!(
            "Failed to delete snapshot with id '{}' and name '{}' in abort: {e}",
            s.info.id, s.info.name
        );
    }
}

pub fn blockdev_snapshot_internal_sync(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let device = arg_str(args, "device").unwrap_or("");
    let name = arg_str(args, "name").unwrap_or("");
    let clock = emu.clocks.now(ClockType::Virtual);
    super::jobs::check_name_free(emu, device)?;
    internal_prepare(&emu.block, device, name, clock)?;
    Ok(empty())
}

pub fn blockdev_snapshot_delete_internal_sync(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let device = arg_str(args, "device").unwrap_or("");
    let id = arg_str(args, "id");
    let name = arg_str(args, "name");
    let node = get_root_bs(&emu.block, device)?;
    if id.is_none() && name.is_none() {
        return Err(QmpError::generic("Name or id must be provided"));
    }
    // Only qcow2 lists snapshots; QEMU asks the format and then its file,
    // and neither raw nor file can answer.
    if lock(&node).driver_name() != "qcow2" {
        return Err(QmpError::generic(
            "Failed to get a snapshot list: Operation not supported",
        ));
    }
    let Some(sn) = find_snapshot(&node, id, name) else {
        return Err(QmpError::generic(format!(
            "Snapshot with id '{}' and name '{}' does not exist on device '{device}'",
            id.unwrap_or("null"),
            name.unwrap_or("null")
        )));
    };
    lock(&node).snapshot_delete(id, name).map_err(qerr)?;
    Ok(json!({
        "id": sn.id,
        "name": sn.name,
        "vm-state-size": sn.vm_state_size,
        "date-sec": sn.date_sec,
        "date-nsec": sn.date_nsec,
        "vm-clock-sec": sn.vm_clock_nsec / 1_000_000_000,
        "vm-clock-nsec": sn.vm_clock_nsec % 1_000_000_000,
    }))
}
