//! Block QMP commands: backends and nodes (query-block,
//! query-named-block-nodes, blockdev-add, x-blockdev-del), image changes
//! (block_resize, change-backing-file, block_passwd) and removable media.
//! Snapshots are in block_snapshot.rs. Handlers are thin: the rules live in
//! `crate::blockdev`.

use serde_json::{json, Map, Value};

use block::{lock, BlockGraph, NodeRef};
use qmp::error::QmpError;

use super::{arg_bool, arg_i64, arg_str, empty, Args, CmdCtx};
use crate::blockdev::medium::{self, ReadOnlyMode};
use crate::blockdev::{self, get_root_bs, lookup_bs, qerr, BackendFront, BlockDevs};
use crate::emulator::Emulator;

// ---- query-block / query-named-block-nodes -----------------------------

/// Depth of the backing chain below `node`.
fn backing_depth(node: &NodeRef) -> i64 {
    let mut depth = 0;
    let mut cur = lock(node).backing();
    while let Some(b) = cur {
        depth += 1;
        if depth > 10_000 {
            break;
        }
        cur = lock(&b).backing();
    }
    depth
}

/// QEMU records an attached backing node's file name and format as the
/// image's backing file (bdrv_set_backing_hd), so query-block shows those
/// rather than the name stored in the header.
fn attached_backing_names(image: &mut Value, node: &NodeRef) {
    let mut img = image;
    let mut cur = node.clone();
    for _ in 0..10_000 {
        let Some(b) = lock(&cur).backing() else {
            return;
        };
        let recorded = lock(&cur).backing_record().cloned();
        let (file, fmt) = recorded.unwrap_or_else(|| {
            let g = lock(&b);
            (g.filename().to_string(), g.driver_name().to_string())
        });
        let full = block::graph::resolve_backing_name(lock(&cur).filename(), &file);
        let Some(m) = img.as_object_mut() else {
            return;
        };
        m.insert("backing-filename".into(), json!(file));
        m.insert("full-backing-filename".into(), json!(full));
        m.insert("backing-filename-format".into(), json!(fmt));
        let Some(next) = m.get_mut("backing-image") else {
            return;
        };
        img = next;
        cur = b;
    }
}

/// BlockDeviceInfo of a node; `front` is the backend it is the medium of.
pub fn block_device_info(node: &NodeRef, front: Option<&BackendFront>) -> Value {
    let depth = backing_depth(node);
    let mut g = lock(node);
    let image = g.image_info().to_json();
    let opts = g.options();
    let mut image = image;
    drop(g);
    attached_backing_names(&mut image, node);
    let g = lock(node);
    let mut m = Map::new();
    m.insert("file".into(), json!(g.filename()));
    m.insert("node-name".into(), json!(g.name()));
    m.insert("ro".into(), json!(g.is_read_only()));
    m.insert("drv".into(), json!(g.driver_name()));
    if let Some(b) = image.get("backing-filename") {
        m.insert("backing_file".into(), b.clone());
    }
    m.insert("backing_file_depth".into(), json!(depth));
    m.insert("encrypted".into(), json!(false));
    m.insert("encryption_key_missing".into(), json!(false));
    m.insert("detect_zeroes".into(), json!(opts.detect_zeroes.as_str()));
    for k in ["bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr"] {
        m.insert(k.into(), json!(0));
    }
    m.insert("image".into(), image);
    m.insert(
        "cache".into(),
        json!({
            "writeback": front.is_none_or(|f| f.writeback),
            "direct": opts.cache_direct,
            "no-flush": opts.no_flush,
        }),
    );
    m.insert(
        "write_threshold".into(),
        json!(g.tracking().threshold.get()),
    );
    Value::Object(m)
}

fn block_info(graph: &BlockGraph, devs: &BlockDevs, backend: &block::Backend) -> Value {
    let name = backend.name();
    let default = BackendFront::new(name);
    let front = devs.front(name).unwrap_or(&default);
    let mut m = Map::new();
    m.insert("device".into(), json!(name));
    m.insert("locked".into(), json!(front.is_locked()));
    m.insert("removable".into(), json!(front.has_removable_media()));
    // A node that hit a fatal corruption has no driver left in QEMU 2.8:
    // the drive shows as not inserted.
    if let Some(root) = backend.root().filter(|r| !lock(r).is_corrupt()) {
        let mut ins = block_device_info(&root, Some(front));
        let groups = crate::blockdev::throttle::groups(&devs.throttle);
        if let (Some(cfg), Some(o)) = (groups.config_of(name), ins.as_object_mut()) {
            o.extend(cfg.query_fields());
            if let Some(g) = groups.group_of(name) {
                o.insert("group".into(), json!(g));
            }
        }
        m.insert("inserted".into(), ins);
    }
    if let Some(t) = front.tray() {
        m.insert("tray_open".into(), json!(t.open));
    }
    if let Some(s) = front.iostatus {
        m.insert("io-status".into(), json!(s));
    }
    if let Some(root) = backend.root() {
        let g = lock(&root);
        let bitmaps = g.tracking().bitmaps.all();
        if !bitmaps.is_empty() {
            let list: Vec<Value> = bitmaps.iter().map(|b| b.info_json()).collect();
            m.insert("dirty-bitmaps".into(), Value::Array(list));
        }
    }
    m.insert("type".into(), json!("unknown"));
    let _ = graph;
    Value::Object(m)
}

pub fn query_block(emu: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    let list: Vec<Value> = emu
        .block
        .backends()
        .iter()
        .map(|b| block_info(&emu.block, &emu.blockdevs, b))
        .collect();
    Ok(Value::Array(list))
}

pub fn query_named_block_nodes(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    _: &Args,
) -> Result<Value, QmpError> {
    let list: Vec<Value> = emu
        .block
        .nodes()
        .iter()
        // QEMU builds this list by prepending while walking its nodes in
        // creation order, so the newest node comes first.
        .rev()
        // QEMU describes nodes here without their backend: writeback is
        // always reported on.
        .map(|n| block_device_info(n, None))
        .collect();
    Ok(Value::Array(list))
}

// ---- blockdev-add / x-blockdev-del -------------------------------------

pub fn blockdev_add(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let Some(Value::Object(opts)) = args.get("options") else {
        return Err(QmpError::missing_parameter("options"));
    };
    let mut opts = opts.clone();
    if opts.get("aio").and_then(Value::as_str) == Some("native") {
        blockdev::drive::check_native_aio(&opts).map_err(QmpError::generic)?;
    }
    opts.remove("aio");
    let id = opts.remove("id").and_then(|v| v.as_str().map(String::from));
    match id {
        Some(id) => {
            let common = blockdev::drive::CommonOpts {
                read_only: opts
                    .get("read-only")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                detect_zeroes: match opts.get("detect-zeroes").and_then(Value::as_str) {
                    Some("on") => block::DetectZeroes::On,
                    Some("unmap") => block::DetectZeroes::Unmap,
                    _ => block::DetectZeroes::Off,
                },
                ..Default::default()
            };
            blockdev::with_fdsets(emu, |g, d| {
                blockdev::drive::blockdev_init(g, d, &id, &opts, &common, None)
            })
            .map_err(QmpError::generic)?;
        }
        None => {
            if opts.get("node-name").is_none() {
                return Err(QmpError::generic(
                    "'id' and/or 'node-name' need to be specified for the root node",
                ));
            }
            let n = blockdev::with_fdsets(emu, |g, _| g.open(&opts)).map_err(qerr)?;
            blockdev::warn_if_probed_raw(&n);
            emu.blockdevs.own_node(n);
        }
    }
    Ok(empty())
}

pub fn x_blockdev_del(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let id = arg_str(args, "id");
    let node = arg_str(args, "node-name");
    if let Some(name) = id.or(node) {
        super::jobs::check_name_free(emu, name)?;
    }
    blockdev::x_blockdev_del(&mut emu.block, &mut emu.blockdevs, id, node)?;
    if let Some(name) = id.or(node) {
        emu.nbd_backend_removed(name);
    }
    Ok(empty())
}

// ---- image changes -----------------------------------------------------

pub fn block_resize(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let size = arg_i64(args, "size").unwrap_or(0);
    resize(
        emu,
        arg_str(args, "device"),
        arg_str(args, "node-name"),
        size,
    )
    .map_err(|(e, report)| {
        // QEMU's qcow2 driver error_report()s why; from QMP that goes to stderr.
        if let Some(r) = report {
            eprintln!("{r}");
        }
        e
    })?;
    Ok(empty())
}

/// qmp_block_resize. On failure, besides the error, the line QEMU's qcow2
/// driver reports on its own (shrinking, half sectors, internal snapshots):
/// HMP prints it before the error, QMP on stderr.
pub fn resize(
    emu: &mut Emulator,
    device: Option<&str>,
    node_name: Option<&str>,
    size: i64,
) -> Result<(), (QmpError, Option<String>)> {
    let node = lookup_bs(&emu.block, device, node_name).map_err(|e| (e, None))?;
    // A node without a driver (fatal corruption) is no "first non-filter".
    if lock(&node).is_corrupt() {
        return Err((QmpError::feature_disabled("resize"), None));
    }
    let dev = device.unwrap_or("(null)");
    if size < 0 {
        return Err((QmpError::invalid_parameter_value("size", "a >0 size"), None));
    }
    super::jobs::check_free(emu, &node).map_err(|e| (e, None))?;
    let qcow2 = lock(&node).driver_name() == "qcow2";
    let r = lock(&node).truncate(size as u64);
    r.map_err(|e| {
        let report = match &e {
            block::BlockError::InvalidArgument(m) | block::BlockError::Unsupported(m) if qcow2 => {
                Some(m.clone())
            }
            _ => None,
        };
        let err = match e {
            block::BlockError::ReadOnly(_) => {
                QmpError::generic(format!("Device '{dev}' is read only"))
            }
            block::BlockError::Unsupported(_) => {
                QmpError::generic("this feature or command is not currently supported")
            }
            block::BlockError::InUse(_) => QmpError::device_in_use(dev),
            block::BlockError::NoMedium(_) => QmpError::device_has_no_medium(dev),
            e => QmpError::generic(format!("Could not resize: {}", e.strerror())),
        };
        (err, report)
    })
}

pub fn block_passwd(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let node = lookup_bs(
        &emu.block,
        arg_str(args, "device"),
        arg_str(args, "node-name"),
    )?;
    // No encrypted format is supported, so every image is unencrypted.
    let name = emu.blockdevs.device_or_node_name(&emu.block, &node);
    Err(QmpError::generic(format!("Node '{name}' is not encrypted")))
}

pub fn change_backing_file(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let device = arg_str(args, "device").unwrap_or("");
    let image_name = arg_str(args, "image-node-name").unwrap_or("");
    let backing = arg_str(args, "backing-file").unwrap_or("");
    let top = get_root_bs(&emu.block, device)?;
    let image = lookup_bs(&emu.block, None, Some(image_name))?;
    if lock(&image).backing().is_none() {
        return Err(QmpError::generic(
            "not allowing backing file change on an image without a backing file",
        ));
    }
    let mut in_chain = false;
    let mut cur = Some(top);
    while let Some(n) = cur {
        if std::sync::Arc::ptr_eq(&n, &image) {
            in_chain = true;
            break;
        }
        cur = lock(&n).backing();
    }
    if !in_chain {
        return Err(QmpError::generic(format!(
            "'{device}' and image file are not in the same chain"
        )));
    }
    let mut g = lock(&image);
    let was_ro = g.is_read_only();
    if was_ro {
        g.set_read_only(false).map_err(qerr)?;
    }
    // QEMU 2.8 records the image's own format as the backing format here.
    let fmt = g.driver_name();
    let r = g.change_backing_file(Some(backing), Some(fmt));
    if r.is_ok() {
        let rec = (backing.to_string(), fmt.to_string());
        g.set_backing_record(Some(rec));
    }
    let mut err = r.err().map(|e| {
        QmpError::generic(format!(
            "Could not change backing file to '{backing}': {}",
            e.strerror()
        ))
    });
    if was_ro {
        if let Err(e) = g.set_read_only(true) {
            err.get_or_insert(qerr(e));
        }
    }
    match err {
        Some(e) => Err(e),
        None => Ok(empty()),
    }
}

// ---- removable media -----------------------------------------------------

pub fn eject(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let device = arg_str(args, "device").unwrap_or("");
    let force = arg_bool(args, "force").unwrap_or(false);
    super::jobs::check_name_free(emu, device)?;
    medium::eject(&mut emu.block, &mut emu.blockdevs, device, force)?;
    // An NBD export of the medium ends with it, as QEMU's eject notifier does.
    emu.nbd_backend_removed(device);
    Ok(empty())
}

pub fn blockdev_open_tray(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let device = arg_str(args, "device").unwrap_or("");
    let force = arg_bool(args, "force").unwrap_or(false);
    medium::open_tray(&emu.block, &mut emu.blockdevs, device, force)?;
    Ok(empty())
}

pub fn blockdev_close_tray(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let device = arg_str(args, "device").unwrap_or("");
    medium::close_tray(&emu.block, &mut emu.blockdevs, device)?;
    Ok(empty())
}

pub fn x_blockdev_remove_medium(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let device = arg_str(args, "device").unwrap_or("");
    super::jobs::check_name_free(emu, device)?;
    medium::remove_medium(&mut emu.block, &mut emu.blockdevs, device)?;
    emu.nbd_backend_removed(device);
    Ok(empty())
}

pub fn x_blockdev_insert_medium(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let device = arg_str(args, "device").unwrap_or("");
    let node = arg_str(args, "node-name").unwrap_or("");
    medium::insert_medium(&mut emu.block, &mut emu.blockdevs, device, node)?;
    Ok(empty())
}

fn read_only_mode(s: Option<&str>) -> Result<ReadOnlyMode, QmpError> {
    match s {
        None | Some("retain") => Ok(ReadOnlyMode::Retain),
        Some("read-only") => Ok(ReadOnlyMode::ReadOnly),
        Some("read-write") => Ok(ReadOnlyMode::ReadWrite),
        Some(other) => Err(QmpError::invalid_parameter(other)),
    }
}

/// Shared by blockdev-change-medium, `change` and HMP `change`.
pub fn change_medium(
    emu: &mut Emulator,
    device: &str,
    filename: &str,
    format: Option<&str>,
    mode: Option<&str>,
) -> Result<(), QmpError> {
    let mode = read_only_mode(mode)?;
    super::jobs::check_name_free(emu, device)?;
    blockdev::with_fdsets(emu, |g, d| {
        medium::change_medium(g, d, device, filename, format, mode)
    })?;
    emu.nbd_backend_removed(device);
    Ok(())
}

pub fn blockdev_change_medium(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    change_medium(
        emu,
        arg_str(args, "device").unwrap_or(""),
        arg_str(args, "filename").unwrap_or(""),
        arg_str(args, "format"),
        arg_str(args, "read-only-mode"),
    )?;
    Ok(empty())
}

/// `change`: the block form; the VNC form reports VNC as not built in.
pub fn change(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let device = arg_str(args, "device").unwrap_or("");
    if device == "vnc" {
        return Err(QmpError::feature_disabled("vnc"));
    }
    change_medium(
        emu,
        device,
        arg_str(args, "target").unwrap_or(""),
        arg_str(args, "arg"),
        None,
    )?;
    Ok(empty())
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::qmp_cmds::qom::tests::{emu, run};

    fn check_schema(cmd: &str, ret: &Value) {
        let s = qmp::schema::schema();
        let def = s.command(cmd).unwrap();
        s.check_return_value(def, ret).unwrap();
    }

    fn image(dir: &std::path::Path, name: &str, fmt: &str) -> String {
        let p = dir.join(name).to_string_lossy().into_owned();
        block::create_image(fmt, &p, Some(1 << 20), &block::CreateOptions::default()).unwrap();
        p
    }

    #[test]
    fn query_block_and_named_nodes_match_the_schema() {
        let dir = std::env::temp_dir().join(format!("bq-qmp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let base = image(&dir, "base.qcow2", "qcow2");
        let mut e = emu();
        run(
            &mut e,
            "blockdev-add",
            json!({"options": {"driver": "qcow2", "node-name": "base",
                   "file": {"driver": "file", "filename": base}}}),
        )
        .unwrap();
        run(
            &mut e,
            "blockdev-add",
            json!({"options": {"driver": "null-co", "id": "d0", "read-only": true}}),
        )
        .unwrap();
        run(
            &mut e,
            "blockdev-add",
            json!({"options": {"driver": "raw", "id": "empty0",
            "file": {"driver": "null-aio"}}}),
        )
        .unwrap();
        run(
            &mut e,
            "x-blockdev-remove-medium",
            json!({"device": "empty0"}),
        )
        .unwrap();
        let qb = run(&mut e, "query-block", json!({})).unwrap();
        check_schema("query-block", &qb);
        assert_eq!(qb[0]["device"], "d0");
        assert_eq!(qb[0]["inserted"]["ro"], true);
        assert_eq!(qb[0]["removable"], true);
        assert_eq!(qb[0]["type"], "unknown");
        assert!(qb[1].get("inserted").is_none());
        let nodes = run(&mut e, "query-named-block-nodes", json!({})).unwrap();
        check_schema("query-named-block-nodes", &nodes);
        assert!(nodes
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["node-name"] == "base" && n["drv"] == "qcow2"));
    }

    #[test]
    fn snapshot_sync_puts_the_overlay_on_top() {
        let dir = std::env::temp_dir().join(format!("bq-snap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let base = image(&dir, "base.qcow2", "qcow2");
        let ov = dir.join("ov.qcow2").to_string_lossy().into_owned();
        let mut e = emu();
        run(
            &mut e,
            "blockdev-add",
            json!({"options": {"driver": "qcow2", "id": "d0",
            "node-name": "n0", "file": {"driver": "file", "filename": base}}}),
        )
        .unwrap();
        run(
            &mut e,
            "blockdev-snapshot-sync",
            json!({"device": "d0",
            "snapshot-file": ov, "snapshot-node-name": "ov0"}),
        )
        .unwrap();
        let qb = run(&mut e, "query-block", json!({})).unwrap();
        let ins = &qb[0]["inserted"];
        assert_eq!(ins["node-name"], "ov0");
        assert_eq!(ins["backing_file"], json!(base));
        assert_eq!(ins["backing_file_depth"], 1);
        assert_eq!(ins["image"]["backing-image"]["filename"], json!(base));
        let old = e.block.find_node("n0").unwrap();
        assert!(block::lock(&old).is_read_only());
        // The old top is the overlay's backing now: QEMU's blocker refuses
        // before asking who owns it.
        let err = run(&mut e, "x-blockdev-del", json!({"node-name": "n0"})).unwrap_err();
        assert_eq!(
            err.desc,
            "Node 'n0' is busy: node is used as backing hd of 'd0'"
        );
    }
}
