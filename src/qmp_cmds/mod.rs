//! QMP command handlers: thin functions that turn validated arguments into
//! calls on the subsystems. One file per area; this file holds the table
//! that is also the list of implemented commands (query-commands,
//! query-qmp-schema).

pub mod block;
pub mod block_features;
pub mod block_snapshot;
pub mod chardev;
pub mod cpus;
pub mod dump;
pub mod fd;
pub mod input;
pub mod jobs;
pub mod memdev;
pub mod misc;
pub mod pci;
pub mod qom;
pub mod run;
pub mod transaction;

use serde_json::{Map, Value};

use qmp::error::{ErrorClass, QmpError};

use crate::emulator::Emulator;

/// Context of the command: which monitor sent it (None for internal use).
pub struct CmdCtx {
    pub monitor: Option<usize>,
}

pub type Args = Map<String, Value>;
pub type Handler = fn(&mut Emulator, &mut CmdCtx, &Args) -> Result<Value, QmpError>;

pub struct CommandEntry {
    pub name: &'static str,
    pub handler: Handler,
}

const fn cmd(name: &'static str, handler: Handler) -> CommandEntry {
    CommandEntry { name, handler }
}

/// Every command this binary implements.
pub static COMMANDS: &[CommandEntry] = &[
    cmd("qmp_capabilities", misc::qmp_capabilities),
    cmd("query-version", misc::query_version),
    cmd("query-commands", misc::query_commands),
    cmd("query-events", misc::query_events),
    cmd("query-qmp-schema", misc::query_qmp_schema),
    cmd("query-name", misc::query_name),
    cmd("query-uuid", misc::query_uuid),
    cmd("query-kvm", misc::query_kvm),
    cmd("query-target", misc::query_target),
    cmd("query-machines", misc::query_machines),
    cmd(
        "query-command-line-options",
        misc::query_command_line_options,
    ),
    cmd("human-monitor-command", misc::human_monitor_command),
    cmd("query-status", run::query_status),
    cmd("stop", run::stop),
    cmd("cont", run::cont),
    cmd("quit", run::quit),
    cmd("system_reset", run::system_reset),
    cmd("system_powerdown", run::system_powerdown),
    cmd("system_wakeup", run::system_wakeup),
    cmd("getfd", fd::getfd),
    cmd("closefd", fd::closefd),
    cmd("add-fd", fd::add_fd),
    cmd("remove-fd", fd::remove_fd),
    cmd("query-fdsets", fd::query_fdsets),
    cmd("query-cpus", cpus::query_cpus),
    cmd("inject-nmi", cpus::inject_nmi),
    cmd("memsave", cpus::memsave),
    cmd("cpu", cpus::cpu),
    cmd("query-hotpluggable-cpus", cpus::query_hotpluggable_cpus),
    cmd("query-memdev", memdev::query_memdev),
    cmd("pmemsave", cpus::pmemsave),
    cmd("query-pci", pci::query_pci),
    cmd("send-key", input::send_key),
    cmd("input-send-event", input::input_send_event),
    cmd("query-mice", input::query_mice),
    cmd("dump-guest-memory", dump::dump_guest_memory),
    cmd("query-dump", dump::query_dump),
    cmd(
        "query-dump-guest-memory-capability",
        dump::query_dump_guest_memory_capability,
    ),
    // chardev commands (chardev.rs)
    cmd("chardev-add", chardev::chardev_add),
    cmd("chardev-remove", chardev::chardev_remove),
    cmd("query-chardev", chardev::query_chardev),
    cmd("query-chardev-backends", chardev::query_chardev_backends),
    cmd("ringbuf-write", chardev::ringbuf_write),
    cmd("ringbuf-read", chardev::ringbuf_read),
    // QOM and object commands (qom.rs)
    cmd("query-iothreads", qom::query_iothreads),
    cmd("object-add", qom::object_add),
    cmd("object-del", qom::object_del),
    cmd("qom-list", qom::qom_list),
    cmd("qom-get", qom::qom_get),
    cmd("qom-set", qom::qom_set),
    cmd("qom-list-types", qom::qom_list_types),
    cmd("device-list-properties", qom::device_list_properties),
    cmd(
        "nbd-server-start",
        crate::nbd::qmp_handlers::nbd_server_start,
    ),
    cmd("nbd-server-add", crate::nbd::qmp_handlers::nbd_server_add),
    cmd("nbd-server-stop", crate::nbd::qmp_handlers::nbd_server_stop),
    // job commands (jobs.rs)
    cmd("block-stream", jobs::block_stream),
    cmd("block-commit", jobs::block_commit),
    cmd("drive-backup", jobs::drive_backup),
    cmd("blockdev-backup", jobs::blockdev_backup),
    cmd("drive-mirror", jobs::drive_mirror),
    cmd("blockdev-mirror", jobs::blockdev_mirror),
    cmd("block-job-set-speed", jobs::block_job_set_speed),
    cmd("block-job-cancel", jobs::block_job_cancel),
    cmd("block-job-pause", jobs::block_job_pause),
    cmd("block-job-resume", jobs::block_job_resume),
    cmd("block-job-complete", jobs::block_job_complete),
    cmd("query-block-jobs", jobs::query_block_jobs),
    // transaction (transaction.rs)
    cmd("transaction", transaction::transaction),
    // block commands (block.rs)
    cmd("query-block", block::query_block),
    cmd("query-named-block-nodes", block::query_named_block_nodes),
    cmd("blockdev-add", block::blockdev_add),
    cmd("x-blockdev-del", block::x_blockdev_del),
    cmd("block_resize", block::block_resize),
    cmd("block_passwd", block::block_passwd),
    cmd("change-backing-file", block::change_backing_file),
    cmd("eject", block::eject),
    cmd("change", block::change),
    cmd("blockdev-change-medium", block::blockdev_change_medium),
    cmd("blockdev-open-tray", block::blockdev_open_tray),
    cmd("blockdev-close-tray", block::blockdev_close_tray),
    cmd("x-blockdev-remove-medium", block::x_blockdev_remove_medium),
    cmd("x-blockdev-insert-medium", block::x_blockdev_insert_medium),
    cmd(
        "blockdev-snapshot-sync",
        block_snapshot::blockdev_snapshot_sync,
    ),
    cmd("blockdev-snapshot", block_snapshot::blockdev_snapshot),
    cmd(
        "blockdev-snapshot-internal-sync",
        block_snapshot::blockdev_snapshot_internal_sync,
    ),
    cmd(
        "blockdev-snapshot-delete-internal-sync",
        block_snapshot::blockdev_snapshot_delete_internal_sync,
    ),
    cmd("query-blockstats", block_features::query_blockstats),
    cmd(
        "block-set-write-threshold",
        block_features::block_set_write_threshold,
    ),
    cmd(
        "block-dirty-bitmap-add",
        block_features::block_dirty_bitmap_add,
    ),
    cmd(
        "block-dirty-bitmap-remove",
        block_features::block_dirty_bitmap_remove,
    ),
    cmd(
        "block-dirty-bitmap-clear",
        block_features::block_dirty_bitmap_clear,
    ),
    cmd("x-blockdev-change", block_features::x_blockdev_change),
    cmd(
        "block_set_io_throttle",
        block_features::block_set_io_throttle,
    ),
];

/// Events this binary can emit (query-events, query-qmp-schema).
pub static EVENTS: &[&str] = &[
    "SHUTDOWN",
    "POWERDOWN",
    "RESET",
    "STOP",
    "RESUME",
    "WAKEUP",
    "SUSPEND",
    "DUMP_COMPLETED",
    // chardev events
    // job events (jobs.rs)
    "BLOCK_JOB_COMPLETED",
    "BLOCK_JOB_CANCELLED",
    "BLOCK_JOB_ERROR",
    "BLOCK_JOB_READY",
    // block events
    "BLOCK_IMAGE_CORRUPTED",
    "DEVICE_TRAY_MOVED",
    "BLOCK_WRITE_THRESHOLD",
    "QUORUM_FAILURE",
    "QUORUM_REPORT_BAD",
];

pub fn is_implemented(name: &str) -> bool {
    COMMANDS.iter().any(|c| c.name == name)
}

pub fn dispatch(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    name: &str,
    args: &Args,
) -> Result<Value, QmpError> {
    let Some(entry) = COMMANDS.iter().find(|c| c.name == name) else {
        return Err(QmpError::new(
            ErrorClass::CommandNotFound,
            format!("The command {name} has not been found"),
        ));
    };
    if let Some(def) = qmp::schema::schema().command(name) {
        qmp::schema::schema().check_arguments(def, args)?;
    }
    crate::blockdev::stopped::refuse_if_draining(emu, name, args)?;
    let r = (entry.handler)(emu, ctx, args);
    // Block events raised by the command go out before its reply, as in QEMU.
    crate::blockdev::flush_events(emu);
    r
}

// ---- argument access (arguments were checked against the schema) -------

pub fn arg_str<'a>(args: &'a Args, name: &str) -> Option<&'a str> {
    args.get(name).and_then(Value::as_str)
}

pub fn arg_i64(args: &Args, name: &str) -> Option<i64> {
    args.get(name).and_then(Value::as_i64)
}

pub fn arg_bool(args: &Args, name: &str) -> Option<bool> {
    args.get(name).and_then(Value::as_bool)
}

pub fn empty() -> Value {
    Value::Object(Map::new())
}
