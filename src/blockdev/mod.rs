//! The process side of block backends (QEMU's blockdev.c): what the monitor
//! knows about each backend beyond the block graph — the legacy `-drive`
//! record, the guest device model attached (tray, lock), error policies,
//! write-cache mode — plus which nodes the monitor owns, and the rules the
//! QMP/HMP block commands share (lookup, deletion, medium changes).
//!
//! The graph itself (`block::BlockGraph`) lives in `Emulator::block`; this
//! module never does I/O except through it. `drive` parses `-drive` and
//! `-blockdev`, `medium` holds the removable-medium rules, `throttle` runs
//! throttle groups on the main loop's clocks.

pub mod device_io;
pub mod drive;
pub mod medium;
pub mod stopped;
pub mod throttle;

use std::sync::Arc;

use serde_json::{json, Value};

use block::{lock, BlockGraph, DetectZeroes, NodeRef};
use qmp::error::{ErrorClass, QmpError};

/// QEMU's BlockInterfaceType, in QEMU's numbering (HMP prints the number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfType {
    Ide = 0,
    None,
    Scsi,
    Floppy,
    Pflash,
    Mtd,
    Sd,
    Virtio,
    Xen,
}

impl IfType {
    pub const ALL: [IfType; 9] = [
        IfType::Ide,
        IfType::None,
        IfType::Scsi,
        IfType::Floppy,
        IfType::Pflash,
        IfType::Mtd,
        IfType::Sd,
        IfType::Virtio,
        IfType::Xen,
    ];

    pub fn name(self) -> &'static str {
        match self {
            IfType::None => "none",
            IfType::Ide => "ide",
            IfType::Scsi => "scsi",
            IfType::Floppy => "floppy",
            IfType::Pflash => "pflash",
            IfType::Mtd => "mtd",
            IfType::Sd => "sd",
            IfType::Virtio => "virtio",
            IfType::Xen => "xen",
        }
    }

    pub fn from_name(s: &str) -> Option<IfType> {
        IfType::ALL.into_iter().find(|t| t.name() == s)
    }

    /// Units per bus (0: no bus numbering).
    pub fn max_devs(self) -> u32 {
        match self {
            IfType::Ide => 2,
            IfType::Scsi => 7,
            _ => 0,
        }
    }
}

/// What `-drive` recorded beyond the backend (QEMU's DriveInfo). Guest
/// device models read media, serial and address when they attach.
#[allow(dead_code)]
#[derive(Clone, Debug)]
pub struct LegacyDrive {
    pub if_type: IfType,
    pub bus: u32,
    pub unit: u32,
    pub media_cd: bool,
    pub serial: Option<String>,
    pub devaddr: Option<String>,
    /// The file= value, for the orphaned-drive warning.
    pub file: String,
    /// cyls=, heads=, secs= (all zero when not given).
    pub chs: (u32, u32, u32),
}

/// rerror/werror policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    Report,
    Ignore,
    Enospc,
    Stop,
}

impl OnError {
    pub fn parse(s: &str, is_read: bool) -> Result<OnError, String> {
        match s {
            "ignore" => Ok(OnError::Ignore),
            "enospc" if !is_read => Ok(OnError::Enospc),
            "stop" => Ok(OnError::Stop),
            "report" => Ok(OnError::Report),
            _ => Err(format!(
                "'{s}' invalid {} error action",
                if is_read { "read" } else { "write" }
            )),
        }
    }
}

/// A guest device model's view of its medium, for the removable-medium
/// commands. Devices register one when they attach to a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceModel {
    /// qdev id or path, for "in use by" messages.
    pub id: String,
    /// The device has removable media (CD-ROM, floppy).
    pub removable: bool,
    /// Tray state; None for devices without a tray.
    pub tray: Option<Tray>,
    /// The device's own callbacks (media change, eject request).
    pub ops: Option<device_io::DeviceOps>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Tray {
    pub open: bool,
    pub locked: bool,
}

/// Flags a backend remembers for media inserted later (QEMU's root state).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RootState {
    pub read_only: bool,
    pub detect_zeroes: DetectZeroes,
}

/// Monitor-side state of one named backend.
#[derive(Clone, Debug)]
pub struct BackendFront {
    pub name: String,
    pub legacy: Option<LegacyDrive>,
    pub device: Option<DeviceModel>,
    pub on_read_error: OnError,
    pub on_write_error: OnError,
    /// cache.writeback (false = writethrough).
    pub writeback: bool,
    pub root_state: RootState,
    /// Extra users besides the monitor (NBD exports, jobs): while > 0 the
    /// backend is "in use".
    pub users: u32,
    /// io-status is reported once a device enables it.
    pub iostatus: Option<&'static str>,
}

impl BackendFront {
    pub fn new(name: &str) -> BackendFront {
        BackendFront {
            name: name.to_string(),
            legacy: None,
            device: None,
            on_read_error: OnError::Report,
            on_write_error: OnError::Enospc,
            writeback: true,
            root_state: RootState::default(),
            users: 0,
            iostatus: None,
        }
    }

    /// blk_dev_has_removable_media: true without a device.
    pub fn has_removable_media(&self) -> bool {
        self.device.as_ref().is_none_or(|d| d.removable)
    }

    pub fn tray(&self) -> Option<Tray> {
        self.device.as_ref().and_then(|d| d.tray)
    }

    pub fn is_tray_open(&self) -> bool {
        self.tray().is_some_and(|t| t.open)
    }

    pub fn is_locked(&self) -> bool {
        self.tray().is_some_and(|t| t.locked)
    }

    fn set_tray_open(&mut self, open: bool) {
        if let Some(Some(t)) = self.device.as_mut().map(|d| d.tray.as_mut()) {
            t.open = open;
        }
    }
}

/// A temporary overlay made for `snapshot=on`, deleted with its node.
struct TempFile {
    node: NodeRef,
    path: String,
}

/// Everything the monitor keeps about backends and nodes.
#[derive(Default)]
pub struct BlockDevs {
    pub fronts: Vec<BackendFront>,
    /// Nodes created by blockdev-add without an id (or `drive_add -n`):
    /// the monitor holds a reference and x-blockdev-del may delete them.
    monitor_nodes: Vec<NodeRef>,
    temp_files: Vec<TempFile>,
    /// Events raised by medium changes, sent after the command.
    events: Vec<(&'static str, Value)>,
    /// Throttle groups and the requests they hold back.
    pub throttle: throttle::Groups,
    /// The main-loop timer armed for the next throttle deadline.
    pub throttle_timer: Option<crate::main_loop::TimerId>,
    /// Limits from -drive options, applied once the caller has a clock.
    pub pending_limits: Vec<(String, block::throttle::ThrottleConfig, Option<String>)>,
    /// The backend behind each guest IDE drive.
    pub slots: device_io::SlotMap,
    /// The VM ran at the last device service pass (a resume retries
    /// requests the error policy stopped).
    pub was_running: bool,
}

pub fn not_found(device: &str) -> QmpError {
    QmpError::new(
        ErrorClass::DeviceNotFound,
        format!("Device '{device}' not found"),
    )
}

/// Turns a block-layer error into a QMP error (class decided by the block crate).
pub fn qerr(e: block::BlockError) -> QmpError {
    let class = match e.qmp_class() {
        "DeviceNotFound" => ErrorClass::DeviceNotFound,
        _ => ErrorClass::GenericError,
    };
    QmpError::new(class, e.to_string())
}

impl BlockDevs {
    pub fn front(&self, name: &str) -> Option<&BackendFront> {
        self.fronts.iter().find(|f| f.name == name)
    }

    pub fn front_mut(&mut self, name: &str) -> Option<&mut BackendFront> {
        self.fronts.iter_mut().find(|f| f.name == name)
    }

    pub fn push_event(&mut self, name: &'static str, data: Value) {
        self.events.push((name, data));
    }

    pub fn take_events(&mut self) -> Vec<(&'static str, Value)> {
        std::mem::take(&mut self.events)
    }

    /// Registers a backend the graph already holds.
    pub fn add_front(&mut self, front: BackendFront) {
        self.fronts.push(front);
    }

    pub fn own_node(&mut self, node: NodeRef) {
        self.monitor_nodes.push(node);
    }

    pub fn is_monitor_owned(&self, node: &NodeRef) -> bool {
        self.monitor_nodes.iter().any(|n| Arc::ptr_eq(n, node))
    }

    pub fn add_temp_file(&mut self, node: NodeRef, path: String) {
        self.temp_files.push(TempFile { node, path });
    }

    /// Attaches a guest device model to a backend (devices call this).
    pub fn attach_device(&mut self, backend: &str, dev: DeviceModel) -> Result<(), String> {
        let f = self
            .front_mut(backend)
            .ok_or_else(|| format!("Device '{backend}' not found"))?;
        if f.device.is_some() {
            return Err(format!(
                "Drive '{backend}' is already in use by another device"
            ));
        }
        f.device = Some(dev);
        Ok(())
    }

    /// A device locks or unlocks its medium (ATAPI PREVENT ALLOW MEDIUM
    /// REMOVAL); `eject` then needs `force`.
    pub fn set_medium_locked(&mut self, backend: &str, locked: bool) {
        if let Some(Some(t)) = self
            .front_mut(backend)
            .map(|f| f.device.as_mut().and_then(|d| d.tray.as_mut()))
        {
            t.locked = locked;
        }
    }

    /// The guest moved the tray itself (START STOP UNIT, eject request
    /// honoured): DEVICE_TRAY_MOVED when it really moved and `announce`
    /// (QEMU announces it only while a medium is inserted).
    pub fn device_tray_moved(&mut self, backend: &str, open: bool, announce: bool) {
        let Some(f) = self.front_mut(backend) else {
            return;
        };
        if f.tray().is_none() || f.is_tray_open() == open {
            return;
        }
        f.set_tray_open(open);
        if !announce {
            return;
        }
        self.push_event(
            "DEVICE_TRAY_MOVED",
            json!({"device": backend, "tray-open": open}),
        );
    }

    /// A device that reports I/O errors enables io-status; query-block
    /// shows it when an error policy can stop the VM (blk_iostatus_is_enabled).
    pub fn enable_iostatus(&mut self, backend: &str) {
        if let Some(f) = self.front_mut(backend) {
            let stops = matches!(f.on_write_error, OnError::Enospc | OnError::Stop)
                || f.on_read_error == OnError::Stop;
            if stops {
                f.iostatus = Some("ok");
            }
        }
    }

    /// Marks a backend used by something besides the monitor (an NBD
    /// export, a block job): x-blockdev-del refuses it meanwhile.
    #[allow(dead_code)]
    pub fn add_user(&mut self, backend: &str) {
        if let Some(f) = self.front_mut(backend) {
            f.users += 1;
        }
    }

    pub fn remove_user(&mut self, backend: &str) {
        if let Some(f) = self.front_mut(backend) {
            f.users = f.users.saturating_sub(1);
        }
    }

    /// Drops a node and, below it, every node nothing else uses and the
    /// monitor does not own.
    pub fn drop_tree(&mut self, graph: &mut BlockGraph, node: &NodeRef) {
        if graph.is_in_use(node) || self.is_monitor_owned(node) {
            return;
        }
        let (name, children) = {
            let g = lock(node);
            let c = g.children();
            let mut kids: Vec<NodeRef> = c.file.iter().chain(c.backing.iter()).cloned().collect();
            kids.extend(g.other_children());
            (g.name().to_string(), kids)
        };
        if graph.find_node(&name).is_some() {
            let _ = graph.remove_node(&name);
        }
        self.forget_temp(node);
        for c in children {
            if graph.nodes().iter().any(|n| Arc::ptr_eq(n, &c)) {
                self.drop_tree(graph, &c);
            }
        }
    }

    fn forget_temp(&mut self, node: &NodeRef) {
        self.temp_files.retain(|t| {
            if Arc::ptr_eq(&t.node, node) {
                let _ = std::fs::remove_file(&t.path);
                false
            } else {
                true
            }
        });
    }

    /// Removes a backend and the nodes only it used.
    pub fn delete_backend(&mut self, graph: &mut BlockGraph, name: &str) {
        let root = graph.backend(name).and_then(|b| b.root());
        let _ = graph.remove_backend(name);
        self.fronts.retain(|f| f.name != name);
        // Requests still held back have nowhere to go any more: qemu-io
        // ones are dropped, guest ones fail on their drive.
        let held = throttle::groups(&self.throttle).disable(name, 0);
        throttle::abandon(held);
        if let Some(r) = root {
            self.drop_tree(graph, &r);
        }
    }

    /// Removes a monitor-owned node (x-blockdev-del node-name=).
    pub fn delete_monitor_node(&mut self, graph: &mut BlockGraph, node: &NodeRef) {
        self.monitor_nodes.retain(|n| !Arc::ptr_eq(n, node));
        self.drop_tree(graph, node);
    }

    /// Temporary overlays are deleted at exit, as QEMU deletes them on close.
    pub fn cleanup(&mut self, graph: &mut BlockGraph) {
        graph.close_all();
        for t in self.temp_files.drain(..) {
            let _ = std::fs::remove_file(&t.path);
        }
    }

    /// The name of the backend whose medium is `node`, or "".
    pub fn device_name_of(&self, graph: &BlockGraph, node: &NodeRef) -> String {
        graph
            .backends()
            .iter()
            .find(|b| b.root().is_some_and(|r| Arc::ptr_eq(&r, node)))
            .map(|b| b.name().to_string())
            .unwrap_or_default()
    }

    /// bdrv_get_device_or_node_name.
    pub fn device_or_node_name(&self, graph: &BlockGraph, node: &NodeRef) -> String {
        let d = self.device_name_of(graph, node);
        if d.is_empty() {
            lock(node).name().to_string()
        } else {
            d
        }
    }
}

/// QEMU's raw driver warns when the format was guessed for a writable image.
pub fn warn_if_probed_raw(node: &NodeRef) {
    let g = lock(node);
    if g.probed() && !g.is_read_only() {
        eprintln!(
            "WARNING: Image format was not specified for '{}' and probing guessed raw.\n         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.\n         Specify the 'raw' format explicitly to remove the restrictions.",
            g.filename()
        );
    }
}

/// bdrv_lookup_bs(device, node_name): a backend's medium first, then a node.
pub fn lookup_bs(
    graph: &BlockGraph,
    device: Option<&str>,
    node_name: Option<&str>,
) -> Result<NodeRef, QmpError> {
    if let Some(d) = device {
        if let Some(b) = graph.backend(d) {
            return b
                .root()
                .ok_or_else(|| QmpError::generic(format!("Device '{d}' has no medium")));
        }
    }
    if let Some(n) = node_name {
        if let Some(node) = graph.find_node(n) {
            return Ok(node);
        }
    }
    Err(QmpError::generic(format!(
        "Cannot find device={} nor node_name={}",
        device.unwrap_or(""),
        node_name.unwrap_or("")
    )))
}

/// True when a node is the root of a backend or has no parent node
/// (bdrv_is_root_node: no parent that is a node).
/// The node whose backing file `node` is, if any: QEMU blocks deleting a
/// backing node with "node is used as backing hd of 'P'".
fn backing_parent(graph: &BlockGraph, node: &NodeRef) -> Option<NodeRef> {
    graph
        .nodes()
        .iter()
        .find(|p| {
            !Arc::ptr_eq(p, node)
                && lock(p)
                    .children()
                    .backing
                    .as_ref()
                    .is_some_and(|b| Arc::ptr_eq(b, node))
        })
        .cloned()
}

/// bdrv_op_is_blocked() for a backing node (QEMU blocks every operation but
/// a few job ones on it): the error QEMU gives.
pub fn backing_blocker(graph: &BlockGraph, devs: &BlockDevs, node: &NodeRef) -> Option<QmpError> {
    let parent = backing_parent(graph, node)?;
    let label = lock(&parent)
        .backing_blocker()
        .map(str::to_string)
        .unwrap_or_else(|| devs.device_or_node_name(graph, &parent));
    Some(QmpError::generic(format!(
        "Node '{}' is busy: node is used as backing hd of '{}'",
        devs.device_or_node_name(graph, node),
        label
    )))
}

/// True when another node has `node` as its protocol (`file`) child: QEMU's
/// bdrv_is_first_non_filter() is false for it.
pub fn is_file_child(graph: &BlockGraph, node: &NodeRef) -> bool {
    graph.nodes().iter().any(|p| {
        !Arc::ptr_eq(p, node)
            && lock(p)
                .children()
                .file
                .as_ref()
                .is_some_and(|f| Arc::ptr_eq(f, node))
    })
}

pub fn is_root_node(graph: &BlockGraph, node: &NodeRef) -> bool {
    !graph.nodes().iter().any(|p| {
        if Arc::ptr_eq(p, node) {
            return false;
        }
        let g = lock(p);
        let c = g.children();
        c.file.as_ref().is_some_and(|f| Arc::ptr_eq(f, node))
            || c.backing.as_ref().is_some_and(|b| Arc::ptr_eq(b, node))
            || g.other_children().iter().any(|o| Arc::ptr_eq(o, node))
    })
}

/// qmp_get_root_bs: a device or node name that must be a root with a medium.
pub fn get_root_bs(graph: &BlockGraph, name: &str) -> Result<NodeRef, QmpError> {
    let node = lookup_bs(graph, Some(name), Some(name))?;
    if !is_root_node(graph, &node) {
        return Err(QmpError::generic("Need a root block node"));
    }
    Ok(node)
}

/// Sends pending block events (corruption reports, tray moves) to the monitors.
pub fn flush_events(emu: &mut crate::emulator::Emulator) {
    for ev in emu.block.take_events() {
        match ev {
            block::BlockEvent::ImageCorrupted(c) => {
                let node = emu.block.find_node(&c.node_name);
                let device = node
                    .map(|n| emu.blockdevs.device_name_of(&emu.block, &n))
                    .unwrap_or_default();
                let mut data = json!({
                    "device": device,
                    "node-name": c.node_name,
                    "msg": c.msg,
                });
                if let Some(o) = c.offset {
                    data["offset"] = json!(o);
                }
                if let Some(s) = c.size {
                    data["size"] = json!(s);
                }
                data["fatal"] = json!(c.fatal);
                emu.emit_event("BLOCK_IMAGE_CORRUPTED", Some(data));
            }
            block::BlockEvent::WriteThreshold(e) => {
                emu.emit_event("BLOCK_WRITE_THRESHOLD", Some(e.to_json()));
            }
            block::BlockEvent::QuorumFailure(mut e) => {
                // QUORUM_FAILURE names the backend when the quorum node has one.
                if let Some(n) = emu.block.find_node(&e.reference) {
                    e.reference = emu.blockdevs.device_or_node_name(&emu.block, &n);
                }
                emu.emit_event("QUORUM_FAILURE", Some(e.to_json()));
            }
            block::BlockEvent::QuorumReportBad(e) => {
                emu.emit_event("QUORUM_REPORT_BAD", Some(e.to_json()));
            }
        }
    }
    for (name, data) in emu.blockdevs.take_events() {
        emu.emit_event(name, Some(data));
    }
}

/// Runs `f` with `/dev/fdset/N` names resolvable through the emulator's fd
/// sets (the graph cannot borrow them, so they are lent for the call).
pub fn with_fdsets<T>(
    emu: &mut crate::emulator::Emulator,
    f: impl FnOnce(&mut BlockGraph, &mut BlockDevs) -> T,
) -> T {
    use std::sync::Mutex;
    let sets = Arc::new(Mutex::new(std::mem::take(&mut emu.fdsets)));
    let s2 = sets.clone();
    emu.block
        .set_fdset_opener(Box::new(move |name: &str, flags: i32| {
            let id = crate::fdsets::fdset_id_of_path(name).ok_or_else(|| {
                block::BlockError::errno(format!("Could not open '{name}'"), libc::EINVAL)
            })?;
            let mut g = match s2.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            g.dup_for_open(id, flags)
                .map_err(|e| block::BlockError::io(format!("Could not open '{name}'"), &e))
        }));
    let r = f(&mut emu.block, &mut emu.blockdevs);
    emu.block.set_fdset_opener(Box::new(|name: &str, _| {
        Err(block::BlockError::errno(
            format!("Could not open '{name}'"),
            libc::ENOENT,
        ))
    }));
    // The opener installed above dropped its clone, so this is the last one.
    match Arc::try_unwrap(sets) {
        Ok(m) => {
            emu.fdsets = match m.into_inner() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            }
        }
        Err(arc) => {
            let mut g = match arc.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            emu.fdsets = std::mem::take(&mut *g);
        }
    }
    r
}

/// Opens `-drive` and `-blockdev` options in command-line order, then warns
/// about drives no device uses, as QEMU's start-up does.
pub fn open_cmdline_drives(
    emu: &mut crate::emulator::Emulator,
    cfg: &crate::vl::Config,
) -> Result<(), String> {
    // Every x86 machine, `none` included, defaults to IDE (QEMU's
    // block_default_type is zero-initialised to IF_IDE).
    let default_if = IfType::Ide;
    // Under qtest, I/O latencies are faked as QEMU's virtual-clock accounting
    // makes them deterministic.
    block::stats::set_qtest_mode(emu.machine.accel == crate::vl::config::Accel::Qtest);
    // -snapshot turns snapshot=on for every -drive that does not say.
    let all_snapshot = cfg.machine_args.iter().any(|(n, _)| n == "snapshot");
    for (name, arg) in &cfg.machine_args {
        let mut warnings = Vec::new();
        let r = match name.as_str() {
            "drive" => with_fdsets(emu, |g, d| {
                let has = arg.split(',').any(|kv| kv.starts_with("snapshot"));
                let opts = if all_snapshot && !has {
                    format!("{arg},snapshot=on")
                } else {
                    arg.clone()
                };
                drive::drive_new_warn(g, d, &opts, default_if, &mut warnings).map(|_| ())
            }),
            "blockdev" => with_fdsets(emu, |g, d| drive::blockdev_from_arg(g, d, arg)),
            "" | "hda" | "hdb" | "hdc" | "hdd" | "cdrom" | "fda" | "fdb" => {
                let mut opts = drive::shortcut_options(name, arg);
                if all_snapshot {
                    opts.push_str(",snapshot=on");
                }
                with_fdsets(emu, |g, d| {
                    drive::drive_new(g, d, &opts, default_if).map(|_| ())
                })
            }
            _ => continue,
        };
        // A bare image argument is reported under its own name, as QEMU does.
        let loc = if name.is_empty() {
            arg.clone()
        } else {
            format!("-{name} {arg}")
        };
        // error_report() names the option being processed.
        for w in warnings {
            eprintln!("qemu-system-x86_64: {loc}: {w}");
        }
        r.map_err(|e| format!("{loc}: {e}"))?;
        apply_pending_limits(emu).map_err(|e| format!("{loc}: {e}"))?;
    }
    crate::machine::ide::attach_cmdline(emu)?;
    drive::warn_orphaned(&emu.block, &emu.blockdevs);
    Ok(())
}

/// x-blockdev-del: deletes a backend added with blockdev-add, or a node the
/// monitor owns, refusing as QEMU does while anything else uses it.
pub fn x_blockdev_del(
    graph: &mut BlockGraph,
    devs: &mut BlockDevs,
    id: Option<&str>,
    node_name: Option<&str>,
) -> Result<(), QmpError> {
    match (id, node_name) {
        (Some(_), Some(_)) => Err(QmpError::generic(
            "Only one of id and node-name must be specified",
        )),
        (None, None) => Err(QmpError::generic("No block device specified")),
        (Some(id), None) => {
            let Some(b) = graph.backend(id) else {
                return Err(QmpError::generic(format!("Cannot find block backend {id}")));
            };
            let root = b.root();
            let front = devs.front(id);
            if front.is_some_and(|f| f.legacy.is_some()) {
                return Err(QmpError::generic(
                    "Deleting block backend added with drive-add is not supported",
                ));
            }
            if front.is_some_and(|f| f.device.is_some() || f.users > 0) {
                return Err(QmpError::generic(format!("Block backend {id} is in use")));
            }
            if let Some(r) = &root {
                if let Some(e) = backing_blocker(graph, devs, r) {
                    return Err(e);
                }
                if !is_root_node(graph, r) || devs.is_monitor_owned(r) {
                    return Err(QmpError::generic(format!("Block device {id} is in use")));
                }
            }
            devs.delete_backend(graph, id);
            Ok(())
        }
        (None, Some(name)) => {
            let Some(node) = graph.find_node(name) else {
                return Err(QmpError::generic(format!("Cannot find node {name}")));
            };
            let user = devs.device_name_of(graph, &node);
            if !user.is_empty() {
                return Err(QmpError::generic(format!(
                    "Node {name} is in use by {user}"
                )));
            }
            if let Some(e) = backing_blocker(graph, devs, &node) {
                return Err(e);
            }
            if !devs.is_monitor_owned(&node) {
                return Err(QmpError::generic(format!(
                    "Node {name} is not owned by the monitor"
                )));
            }
            if !is_root_node(graph, &node) {
                return Err(QmpError::generic(format!("Block device {name} is in use")));
            }
            devs.delete_monitor_node(graph, &node);
            Ok(())
        }
    }
}

/// Applies throttling limits that -drive/drive_add options asked for.
pub fn apply_pending_limits(emu: &mut crate::emulator::Emulator) -> Result<(), String> {
    for (backend, cfg, group) in std::mem::take(&mut emu.blockdevs.pending_limits) {
        let group = group.unwrap_or_else(|| backend.clone());
        throttle::set_limits(emu, &backend, Some(&group), &cfg)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use block::options::Options;
    use serde_json::json;

    fn opts(v: Value) -> Options {
        match v {
            Value::Object(m) => m,
            _ => Options::new(),
        }
    }

    fn tmp_image(name: &str, fmt: &str) -> String {
        let dir = std::env::temp_dir().join(format!("bq-mod-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name).to_string_lossy().into_owned();
        block::create_image(fmt, &p, Some(1 << 20), &block::CreateOptions::default()).unwrap();
        p
    }

    #[test]
    fn x_blockdev_del_refuses_nodes_in_use_and_not_owned() {
        let mut g = BlockGraph::new();
        let mut d = BlockDevs::default();
        let base = g
            .open(&opts(json!({"driver": "null-co", "node-name": "base"})))
            .unwrap();
        d.own_node(base);
        let img = tmp_image("top.qcow2", "qcow2");
        let top = g
            .open(&opts(
                json!({"driver": "qcow2", "node-name": "top", "backing": "base",
                               "file": {"driver": "file", "filename": img}}),
            ))
            .unwrap();
        d.own_node(top);
        let e = x_blockdev_del(&mut g, &mut d, None, Some("base")).unwrap_err();
        assert_eq!(
            e.desc,
            "Node 'base' is busy: node is used as backing hd of 'top'"
        );
        let file = g
            .nodes()
            .iter()
            .find(|n| lock(n).driver_name() == "file")
            .cloned()
            .unwrap();
        let fname = lock(&file).name().to_string();
        let e = x_blockdev_del(&mut g, &mut d, None, Some(&fname)).unwrap_err();
        assert_eq!(e.desc, format!("Node {fname} is not owned by the monitor"));
        x_blockdev_del(&mut g, &mut d, None, Some("top")).unwrap();
        x_blockdev_del(&mut g, &mut d, None, Some("base")).unwrap();
        assert!(g.nodes().is_empty());
    }

    #[test]
    fn x_blockdev_del_refuses_legacy_drives_and_busy_backends() {
        let mut g = BlockGraph::new();
        let mut d = BlockDevs::default();
        drive::drive_new(
            &mut g,
            &mut d,
            "driver=null-co,if=none,id=leg",
            IfType::None,
        )
        .unwrap();
        let e = x_blockdev_del(&mut g, &mut d, Some("leg"), None).unwrap_err();
        assert_eq!(
            e.desc,
            "Deleting block backend added with drive-add is not supported"
        );
        let n = g
            .open(&opts(json!({"driver": "null-co", "node-name": "n0"})))
            .unwrap();
        d.own_node(n.clone());
        g.add_backend("b", Some(n)).unwrap();
        d.add_front(BackendFront::new("b"));
        let e = x_blockdev_del(&mut g, &mut d, Some("b"), None).unwrap_err();
        assert_eq!(e.desc, "Block device b is in use");
        let e = x_blockdev_del(&mut g, &mut d, None, Some("n0")).unwrap_err();
        assert_eq!(e.desc, "Node n0 is in use by b");
        let e = x_blockdev_del(&mut g, &mut d, Some("zz"), None).unwrap_err();
        assert_eq!(e.desc, "Cannot find block backend zz");
    }

    #[test]
    fn snapshot_on_keeps_the_base_image_untouched() {
        let mut g = BlockGraph::new();
        let mut d = BlockDevs::default();
        let img = tmp_image("base.raw", "raw");
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
            f.write_all_at(&[0x5a; 512], 0).unwrap();
        }
        let id = drive::drive_new(
            &mut g,
            &mut d,
            &format!("file={img},format=raw,if=none,snapshot=on"),
            IfType::None,
        )
        .unwrap();
        let b = g.backend(&id).unwrap();
        b.write(4096, &[0xab; 512], false).unwrap();
        let mut buf = [0u8; 512];
        b.read(4096, &mut buf).unwrap();
        assert_eq!(buf, [0xab; 512]);
        b.read(0, &mut buf).unwrap();
        assert_eq!(buf, [0x5a; 512], "unwritten ranges read the base image");
        let on_disk = std::fs::read(&img).unwrap();
        assert!(on_disk[4096..4608].iter().all(|&x| x == 0));
        let root = b.root().unwrap();
        assert_eq!(lock(&root).driver_name(), "qcow2");
        let base = lock(&root).backing().unwrap();
        assert!(
            lock(&base).is_read_only(),
            "the image under the overlay is read-only"
        );
        let overlay = lock(&root).filename().to_string();
        d.delete_backend(&mut g, &id);
        assert!(!std::path::Path::new(&overlay).exists());
        assert!(g.nodes().is_empty());
    }
}
