//! Block job commands (block-stream, block-commit, drive-/blockdev-mirror,
//! drive-/blockdev-backup, block-job-*, query-block-jobs) and the main-loop
//! driving of jobs: each job step runs from a bottom half, or from a
//! realtime timer when the job is rate limited or idle.

use std::sync::Arc;

use serde_json::{json, Value};

use block::jobs::backup::{BackupParams, SyncMode};
use block::jobs::mirror::{BackingMode, MirrorParams, MirrorSync};
use block::jobs::{JobCmdError, JobCore, JobDriver, OnError, Step};
use block::options::Options;
use block::{lock, NodeRef};
use qmp::error::{ErrorClass, QmpError};

use super::{arg_bool, arg_i64, arg_str, empty, Args, CmdCtx};
use crate::blockdev::{get_root_bs, lookup_bs, qerr};
use crate::emulator::Emulator;
use crate::main_loop::ClockType;

// ---- main-loop driving --------------------------------------------------

/// Schedules a step for every job that can run and has none pending.
pub fn drive(emu: &mut Emulator) {
    for (id, epoch) in emu.jobs.take_unscheduled() {
        emu.schedule_bh(Box::new(move |e: &mut Emulator| run_step(e, id, epoch)));
    }
}

/// Runs job `id` now instead of after its pending wait (cancel, complete, resume).
pub fn kick(emu: &mut Emulator, id: &str) {
    if let Some(epoch) = emu.jobs.kick(id) {
        let id = id.to_string();
        emu.schedule_bh(Box::new(move |e: &mut Emulator| run_step(e, id, epoch)));
    }
}

fn run_step(emu: &mut Emulator, id: String, epoch: u64) {
    if !emu.jobs.is_current(&id, epoch) {
        return;
    }
    let step = emu.jobs.step(&id, &mut emu.block);
    flush_job_events(emu);
    match step {
        Step::Continue => emu.schedule_bh(Box::new(move |e: &mut Emulator| run_step(e, id, epoch))),
        Step::Wait(ns) => {
            let ns = i64::try_from(ns).unwrap_or(i64::MAX);
            emu.add_timer(
                ClockType::Realtime,
                ns,
                Box::new(move |e: &mut Emulator| run_step(e, id, epoch)),
            );
        }
        Step::Paused | Step::Done => {}
    }
}

/// Sends BLOCK_JOB_* events (and block events the job raised).
pub fn flush_job_events(emu: &mut Emulator) {
    for ev in emu.jobs.take_events() {
        let (name, data) = ev.to_qmp();
        emu.emit_event(name, Some(data));
    }
    crate::blockdev::flush_events(emu);
}

fn cmd_err(e: JobCmdError) -> QmpError {
    match e {
        JobCmdError::NotActive(m) => QmpError::new(ErrorClass::DeviceNotActive, m),
        JobCmdError::Generic(m) => QmpError::generic(m),
    }
}

// ---- shared argument handling ------------------------------------------

fn speed_arg(args: &Args) -> Result<u64, QmpError> {
    let s = arg_i64(args, "speed").unwrap_or(0);
    if s < 0 {
        return Err(QmpError::invalid_parameter("speed"));
    }
    Ok(s as u64)
}

fn on_error_arg(args: &Args, name: &str) -> OnError {
    arg_str(args, name)
        .and_then(OnError::parse)
        .unwrap_or_default()
}

fn display_name(emu: &Emulator, node: &NodeRef) -> String {
    emu.blockdevs.device_or_node_name(&emu.block, node)
}

/// The op-blocker check: refuses a node a block job works on, with QEMU's
/// "Node '...' is busy: block device is in use by block job: ..." error.
/// Other commands that change or remove a node (eject, change, drive_del,
/// x-blockdev-del, block_resize, snapshots) should call it too.
pub fn check_free(emu: &Emulator, node: &NodeRef) -> Result<(), QmpError> {
    let name = display_name(emu, node);
    emu.jobs.check_node_free(node, &name).map_err(qerr)
}

/// Refuses to change the medium or graph of `device_or_node` while a job
/// uses the node, as QEMU's op blockers do. Names that resolve to nothing
/// pass: the command's own lookup reports them.
pub fn check_name_free(emu: &Emulator, device_or_node: &str) -> Result<(), QmpError> {
    let node = match emu.block.backend(device_or_node) {
        Some(b) => b.root(),
        None => emu.block.find_node(device_or_node),
    };
    match node {
        Some(n) => check_free(emu, &n),
        None => Ok(()),
    }
}

/// block_job_create's checks: a free node and a valid, unused id.
fn new_core(emu: &Emulator, args: &Args, bs: &NodeRef, speed: u64) -> Result<JobCore, QmpError> {
    if emu.jobs.job_of_node(bs).is_some() {
        return Err(QmpError::device_in_use(
            &emu.blockdevs.device_name_of(&emu.block, bs),
        ));
    }
    let device = emu.blockdevs.device_name_of(&emu.block, bs);
    let id = emu
        .jobs
        .new_job_id(arg_str(args, "job-id"), &device)
        .map_err(qerr)?;
    Ok(JobCore::new(id, bs.clone(), speed))
}

fn start_job(emu: &mut Emulator, core: JobCore, driver: Box<dyn JobDriver>) {
    emu.jobs.add(core, driver);
    drive(emu);
}

/// bdrv_find_backing_image: the node below `top` whose file name is `name`
/// (relative names are taken relative to each overlay's directory).
fn find_backing_image(top: &NodeRef, name: &str) -> Option<NodeRef> {
    let want = std::fs::canonicalize(name).ok();
    let mut cur = lock(top).backing();
    let mut parent_file = lock(top).filename().to_string();
    for _ in 0..block::graph::MAX_BACKING_DEPTH {
        let node = cur?;
        let file = lock(&node).filename().to_string();
        if file == name {
            return Some(node);
        }
        let rel = block::graph::resolve_backing_name(&parent_file, name);
        let canon = std::fs::canonicalize(&file).ok();
        if canon.is_some() && (canon == want || canon == std::fs::canonicalize(&rel).ok()) {
            return Some(node);
        }
        parent_file = file;
        cur = lock(&node).backing();
    }
    None
}

/// The last node of `top`'s backing chain (bdrv_find_base).
fn find_base(top: &NodeRef) -> NodeRef {
    let mut cur = top.clone();
    for _ in 0..block::graph::MAX_BACKING_DEPTH {
        let next = lock(&cur).backing();
        match next {
            Some(n) => cur = n,
            None => break,
        }
    }
    cur
}

/// The node in `active`'s chain whose backing is `node`.
fn overlay_of(active: &NodeRef, node: &NodeRef) -> Option<NodeRef> {
    let mut cur = active.clone();
    for _ in 0..block::graph::MAX_BACKING_DEPTH {
        let b = lock(&cur).backing()?;
        if Arc::ptr_eq(&b, node) {
            return Some(cur);
        }
        cur = b;
    }
    None
}

/// QEMU prints the options of every image it creates.
pub fn print_formatting(path: &str, fmt: &str, size: u64, backing: Option<(&str, &str)>) {
    use std::io::Write;
    let esc = |s: &str| s.replace(',', ",,");
    let line = match (fmt, backing) {
        ("qcow2", Some((b, bf))) => format!(
            "Formatting '{path}', fmt=qcow2 size={size} backing_file={} backing_fmt={} encryption=off cluster_size=65536 lazy_refcounts=off refcount_bits=16",
            esc(b),
            esc(bf)
        ),
        ("qcow2", None) => format!(
            "Formatting '{path}', fmt=qcow2 size={size} encryption=off cluster_size=65536 lazy_refcounts=off refcount_bits=16"
        ),
        _ => format!("Formatting '{path}', fmt={fmt} size={size}"),
    };
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// bdrv_img_create for drive-backup/drive-mirror targets.
fn create_target(
    path: &str,
    fmt: &str,
    size: u64,
    backing: Option<&NodeRef>,
) -> Result<(), QmpError> {
    let b = backing.map(|n| {
        let g = lock(n);
        (g.filename().to_string(), g.driver_name().to_string())
    });
    if fmt != "qcow2" && fmt != "raw" {
        return Err(QmpError::generic(format!("Unknown file format '{fmt}'")));
    }
    if fmt == "raw" && b.is_some() {
        return Err(QmpError::generic(
            "Backing file not supported for file format 'raw'",
        ));
    }
    print_formatting(
        path,
        fmt,
        size,
        b.as_ref().map(|(f, d)| (f.as_str(), d.as_str())),
    );
    let copts = block::CreateOptions {
        backing_file: b.as_ref().map(|x| x.0.clone()),
        backing_fmt: b.as_ref().map(|x| x.1.clone()),
        ..Default::default()
    };
    block::create_image(fmt, path, Some(size), &copts).map_err(qerr)
}

/// Opens a job target image by file name.
fn open_target(
    emu: &mut Emulator,
    path: &str,
    fmt: Option<&str>,
    node_name: Option<&str>,
    with_backing: bool,
) -> Result<NodeRef, QmpError> {
    let mut o = Options::new();
    if let Some(f) = fmt {
        o.insert("driver".into(), json!(f));
    }
    if let Some(n) = node_name {
        o.insert("node-name".into(), json!(n));
    }
    o.insert("filename".into(), json!(path));
    if !with_backing {
        o.insert("backing".into(), Value::Null);
    }
    emu.block.open(&o).map_err(qerr)
}

/// Creating or opening a job target over a file of the source's own chain
/// would destroy the data being copied; refused before anything is touched.
fn refuse_chain_file(bs: &NodeRef, target: &str) -> Result<(), QmpError> {
    let Ok(t) = std::fs::canonicalize(target) else {
        return Ok(());
    };
    let mut cur = Some(bs.clone());
    for _ in 0..block::graph::MAX_BACKING_DEPTH {
        let Some(n) = cur else { break };
        let file = lock(&n).filename().to_string();
        if std::fs::canonicalize(&file).is_ok_and(|f| f == t) {
            return Err(QmpError::generic("Source and target cannot be the same"));
        }
        cur = lock(&n).backing();
    }
    Ok(())
}

fn drop_target(emu: &mut Emulator, node: &NodeRef) {
    let name = lock(node).name().to_string();
    let _ = emu.block.remove_node(&name);
}

// ---- block-stream ---------------------------------------------------------

pub fn block_stream(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let device = arg_str(args, "device").unwrap_or("");
    let bs = get_root_bs(&emu.block, device)?;
    check_free(emu, &bs)?;
    let base_name = arg_str(args, "base");
    let base = match base_name {
        Some(b) => Some(find_backing_image(&bs, b).ok_or_else(|| QmpError::base_not_found(b))?),
        None => None,
    };
    let backing_file = arg_str(args, "backing-file");
    if base.is_none() && backing_file.is_some() {
        return Err(QmpError::generic(
            "backing file specified, but streaming the entire chain",
        ));
    }
    let speed = speed_arg(args)?;
    let mut core = new_core(emu, args, &bs, speed)?;
    core.on_source_error = on_error_arg(args, "on-error");
    core.on_target_error = core.on_source_error;
    let bf = backing_file.or(base_name).map(str::to_string);
    let job = block::jobs::stream::start(&mut core, bs, base, bf).map_err(qerr)?;
    start_job(emu, core, Box::new(job));
    Ok(empty())
}

// ---- block-commit ---------------------------------------------------------

pub fn block_commit(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let device = arg_str(args, "device").unwrap_or("");
    let bs = match get_root_bs(&emu.block, device) {
        Ok(n) => n,
        Err(e) => {
            return Err(match lookup_bs(&emu.block, Some(device), Some(device)) {
                Ok(_) => e,
                Err(_) => QmpError::device_not_found(device),
            })
        }
    };
    check_free(emu, &bs)?;
    let top_arg = arg_str(args, "top");
    let top = match top_arg {
        Some(t) if lock(&bs).filename() != t => find_backing_image(&bs, t),
        _ => Some(bs.clone()),
    }
    .ok_or_else(|| {
        QmpError::generic(format!(
            "Top image file {} not found",
            top_arg.unwrap_or("NULL")
        ))
    })?;
    let base_arg = arg_str(args, "base");
    let base = match base_arg {
        Some(b) => find_backing_image(&top, b),
        None => Some(find_base(&top)),
    }
    .ok_or_else(|| QmpError::base_not_found(base_arg.unwrap_or("NULL")))?;
    check_free(emu, &base)?;
    if Arc::ptr_eq(&top, &base) {
        return Err(QmpError::generic("cannot commit an image into itself"));
    }
    let speed = speed_arg(args)?;
    let backing_file = arg_str(args, "backing-file");
    if Arc::ptr_eq(&top, &bs) {
        if backing_file.is_some() {
            return Err(QmpError::generic(
                "'backing-file' specified, but 'top' is the active layer",
            ));
        }
        let mut core = new_core(emu, args, &bs, speed)?;
        let job = block::jobs::mirror::start_active_commit(&mut core, bs, base).map_err(qerr)?;
        start_job(emu, core, Box::new(job));
        return Ok(empty());
    }
    let overlay = overlay_of(&bs, &top)
        .ok_or_else(|| QmpError::generic("Could not find overlay image for top"))?;
    let mut core = new_core(emu, args, &bs, speed)?;
    let job = block::jobs::commit::start(
        &mut core,
        top,
        base,
        overlay,
        backing_file.map(str::to_string),
    )
    .map_err(qerr)?;
    start_job(emu, core, Box::new(job));
    Ok(empty())
}

// ---- backup ---------------------------------------------------------------

fn sync_arg(args: &Args) -> SyncMode {
    arg_str(args, "sync")
        .and_then(SyncMode::parse)
        .unwrap_or(SyncMode::Full)
}

fn backup_core(emu: &Emulator, args: &Args, bs: &NodeRef) -> Result<JobCore, QmpError> {
    let speed = speed_arg(args)?;
    let mut core = new_core(emu, args, bs, speed)?;
    core.on_source_error = on_error_arg(args, "on-source-error");
    core.on_target_error = on_error_arg(args, "on-target-error");
    Ok(core)
}

/// drive-backup, also used by transaction's prepare step.
pub fn do_drive_backup(emu: &mut Emulator, args: &Args) -> Result<String, QmpError> {
    let device = arg_str(args, "device").unwrap_or("");
    let bs = get_root_bs(&emu.block, device)?;
    check_free(emu, &bs)?;
    let mut sync = sync_arg(args);
    let existing = arg_str(args, "mode") == Some("existing");
    let format = match arg_str(args, "format") {
        Some(f) => Some(f.to_string()),
        None if existing => None,
        None => Some(lock(&bs).driver_name().to_string()),
    };
    let backing = lock(&bs).backing();
    let source = match sync {
        SyncMode::Top if backing.is_none() => {
            sync = SyncMode::Full;
            None
        }
        SyncMode::Top => backing,
        SyncMode::None => Some(bs.clone()),
        _ => None,
    };
    let size = lock(&bs)
        .length()
        .map_err(|e| QmpError::generic(format!("bdrv_getlength failed: {}", e.strerror())))?;
    let target_path = arg_str(args, "target").unwrap_or("");
    refuse_chain_file(&bs, target_path)?;
    if !existing {
        create_target(
            target_path,
            format.as_deref().unwrap_or("qcow2"),
            size,
            source.as_ref(),
        )?;
    }
    let target = open_target(emu, target_path, format.as_deref(), None, false)?;
    let bitmap = arg_str(args, "bitmap").map(str::to_string);
    if let Some(b) = &bitmap {
        if lock(&bs).tracking().bitmaps.get(b).is_none() {
            drop_target(emu, &target);
            return Err(QmpError::generic(format!(
                "Bitmap '{b}' could not be found"
            )));
        }
    }
    let started = (|| {
        let mut core = backup_core(emu, args, &bs)?;
        let p = BackupParams {
            sync,
            bitmap,
            compress: arg_bool(args, "compress").unwrap_or(false),
            owned_target: true,
        };
        let job =
            block::jobs::backup::start(&mut core, bs.clone(), target.clone(), p).map_err(qerr)?;
        Ok::<_, QmpError>((core, job))
    })();
    match started {
        Ok((core, job)) => {
            let id = core.id.clone();
            start_job(emu, core, Box::new(job));
            Ok(id)
        }
        Err(e) => {
            drop_target(emu, &target);
            Err(e)
        }
    }
}

pub fn drive_backup(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    do_drive_backup(emu, args).map(|_| empty())
}

/// blockdev-backup, also used by transaction's prepare step.
pub fn do_blockdev_backup(emu: &mut Emulator, args: &Args) -> Result<String, QmpError> {
    let device = arg_str(args, "device").unwrap_or("");
    let bs = get_root_bs(&emu.block, device)?;
    let t = arg_str(args, "target").unwrap_or("");
    let target = lookup_bs(&emu.block, Some(t), Some(t))?;
    check_free(emu, &bs)?;
    check_free(emu, &target)?;
    let mut core = backup_core(emu, args, &bs)?;
    let p = BackupParams {
        sync: sync_arg(args),
        bitmap: None,
        compress: arg_bool(args, "compress").unwrap_or(false),
        owned_target: false,
    };
    let job = block::jobs::backup::start(&mut core, bs, target, p).map_err(qerr)?;
    let id = core.id.clone();
    start_job(emu, core, Box::new(job));
    Ok(id)
}

pub fn blockdev_backup(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    do_blockdev_backup(emu, args).map(|_| empty())
}

// ---- mirror ---------------------------------------------------------------

fn mirror_sync_arg(args: &Args) -> MirrorSync {
    match arg_str(args, "sync") {
        Some("top") => MirrorSync::Top,
        Some("none") => MirrorSync::None,
        _ => MirrorSync::Full,
    }
}

/// blockdev_mirror_common's argument checks; returns (granularity, buf_size).
fn mirror_sizes(args: &Args) -> Result<(u64, u64), QmpError> {
    let g = arg_i64(args, "granularity").unwrap_or(0);
    if g != 0 && !(512..=64 << 20).contains(&g) {
        return Err(QmpError::invalid_parameter_value(
            "granularity",
            "a value in range [512B, 64MB]",
        ));
    }
    if g & (g - 1).max(0) != 0 {
        return Err(QmpError::invalid_parameter_value(
            "granularity",
            "power of 2",
        ));
    }
    let b = arg_i64(args, "buf-size").unwrap_or(0);
    if b < 0 {
        return Err(QmpError::generic("Invalid parameter 'buf-size'"));
    }
    Ok((g as u64, b as u64))
}

fn start_mirror(
    emu: &mut Emulator,
    args: &Args,
    bs: NodeRef,
    target: NodeRef,
    mut p: MirrorParams,
) -> Result<(), QmpError> {
    if arg_str(args, "sync") == Some("incremental") {
        return Err(QmpError::generic("Sync mode 'incremental' not supported"));
    }
    if let Some(r) = arg_str(args, "replaces") {
        let node = emu
            .block
            .find_node(r)
            .ok_or_else(|| QmpError::generic(format!("Node name '{r}' not found")))?;
        p.replaces = Some(node);
    }
    let speed = speed_arg(args)?;
    let mut core = new_core(emu, args, &bs, speed)?;
    core.on_source_error = on_error_arg(args, "on-source-error");
    core.on_target_error = on_error_arg(args, "on-target-error");
    let job = block::jobs::mirror::start(&mut core, bs, target, p).map_err(qerr)?;
    start_job(emu, core, Box::new(job));
    Ok(())
}

pub fn drive_mirror(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let device = arg_str(args, "device").unwrap_or("");
    let bs = get_root_bs(&emu.block, device)?;
    let existing = arg_str(args, "mode") == Some("existing");
    let format = match arg_str(args, "format") {
        Some(f) => Some(f.to_string()),
        None if existing => None,
        None => Some(lock(&bs).driver_name().to_string()),
    };
    let mut sync = mirror_sync_arg(args);
    let backing = lock(&bs).backing();
    if backing.is_none() && sync == MirrorSync::Top {
        sync = MirrorSync::Full;
    }
    let source = match sync {
        MirrorSync::None => Some(bs.clone()),
        _ => backing,
    };
    let size = lock(&bs)
        .length()
        .map_err(|e| QmpError::generic(format!("bdrv_getlength failed: {}", e.strerror())))?;
    if arg_str(args, "replaces").is_some() && arg_str(args, "node-name").is_none() {
        return Err(QmpError::generic(
            "a node-name must be provided when replacing a named node of the graph",
        ));
    }
    let (granularity, buf_size) = mirror_sizes(args)?;
    check_free(emu, &bs)?;
    let target_path = arg_str(args, "target").unwrap_or("");
    refuse_chain_file(&bs, target_path)?;
    if !existing {
        let fmt = format.as_deref().unwrap_or("qcow2");
        let chain = if sync == MirrorSync::Full {
            None
        } else {
            source.as_ref()
        };
        create_target(target_path, fmt, size, chain)?;
    }
    let target = open_target(
        emu,
        target_path,
        format.as_deref(),
        arg_str(args, "node-name"),
        existing,
    )?;
    let p = MirrorParams {
        sync,
        granularity,
        buf_size,
        unmap: arg_bool(args, "unmap").unwrap_or(true),
        backing_mode: if existing {
            BackingMode::Leave
        } else {
            BackingMode::SourceChain
        },
        replaces: None,
        owned_target: true,
    };
    if let Err(e) = start_mirror(emu, args, bs, target.clone(), p) {
        drop_target(emu, &target);
        return Err(e);
    }
    Ok(empty())
}

pub fn blockdev_mirror(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let device = arg_str(args, "device").unwrap_or("");
    let bs = lookup_bs(&emu.block, Some(device), None)?;
    let t = arg_str(args, "target").unwrap_or("");
    let target = lookup_bs(&emu.block, None, Some(t))?;
    let (granularity, buf_size) = mirror_sizes(args)?;
    check_free(emu, &bs)?;
    check_free(emu, &target)?;
    let p = MirrorParams {
        sync: mirror_sync_arg(args),
        granularity,
        buf_size,
        unmap: arg_bool(args, "unmap").unwrap_or(true),
        backing_mode: BackingMode::Leave,
        replaces: None,
        owned_target: false,
    };
    start_mirror(emu, args, bs, target, p)?;
    Ok(empty())
}

// ---- job control ----------------------------------------------------------

fn device_arg(args: &Args) -> &str {
    arg_str(args, "device").unwrap_or("")
}

pub fn block_job_set_speed(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let speed = arg_i64(args, "speed").unwrap_or(0);
    emu.jobs
        .set_speed(device_arg(args), speed)
        .map_err(cmd_err)?;
    // A job sleeping off the old limit runs at once under the new one.
    kick(emu, device_arg(args));
    Ok(empty())
}

pub fn block_job_cancel(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let force = arg_bool(args, "force").unwrap_or(false);
    emu.jobs.cancel(device_arg(args), force).map_err(cmd_err)?;
    kick(emu, device_arg(args));
    Ok(empty())
}

pub fn block_job_pause(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    emu.jobs.pause(device_arg(args)).map_err(cmd_err)?;
    Ok(empty())
}

pub fn block_job_resume(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    emu.jobs.resume(device_arg(args)).map_err(cmd_err)?;
    kick(emu, device_arg(args));
    Ok(empty())
}

pub fn block_job_complete(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    emu.jobs.complete(device_arg(args)).map_err(cmd_err)?;
    kick(emu, device_arg(args));
    Ok(empty())
}

pub fn query_block_jobs(emu: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    Ok(emu.jobs.query())
}
