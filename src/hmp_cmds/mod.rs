//! The human monitor's command table, shared by `-monitor`,
//! `-mon mode=readline` and QMP's human-monitor-command. Most commands call
//! the QMP handler and format its reply as QEMU's hmp.c does.

// HMP commands that are exactly a QMP command with the same argument
// names and no output.
macro_rules! qmp_passthrough {
    ($($fn_name:ident => $qmp:literal),* $(,)?) => {$(
        pub fn $fn_name(
            emu: &mut Emulator,
            ctx: &mut CmdCtx,
            args: &HmpArgs,
            _: &mut String,
        ) -> Result<(), QmpError> {
            $crate::qmp_cmds::dispatch(emu, ctx, $qmp, args).map(|_| ())
        }
    )*};
}

pub mod args;
pub mod block;
pub mod chardev;
pub mod dump;
pub mod info;
pub mod input;
pub mod jobs;
pub mod memory;
pub mod nbd;
pub mod qom;
pub mod registers;
pub mod run;

use serde_json::{Map, Value};

use qmp::error::QmpError;

use crate::emulator::Emulator;
use crate::qmp_cmds::CmdCtx;

pub type HmpArgs = Map<String, Value>;
/// Appends output to the string; an Err is printed as the error message.
pub type HmpHandler = fn(&mut Emulator, &mut CmdCtx, &HmpArgs, &mut String) -> Result<(), QmpError>;

pub struct HmpCommand {
    /// `name` or `name|alias`.
    pub name: &'static str,
    pub args_type: &'static str,
    pub params: &'static str,
    pub help: &'static str,
    pub handler: HmpHandler,
}

pub const fn hmp(
    name: &'static str,
    args_type: &'static str,
    params: &'static str,
    help: &'static str,
    handler: HmpHandler,
) -> HmpCommand {
    HmpCommand {
        name,
        args_type,
        params,
        help,
        handler,
    }
}

pub static COMMANDS: &[HmpCommand] = &[
    hmp("help|?", "name:S?", "[cmd]", "show the help", help),
    hmp(
        "info",
        "item:S?",
        "[subcommand]",
        "show various information about the system state",
        info_cmd,
    ),
    hmp("quit|q", "", "", "quit the emulator", run::quit),
    hmp(
        "x",
        "args:S?",
        "/fmt addr",
        "virtual memory dump starting at 'addr'",
        memory::x,
    ),
    hmp(
        "memsave",
        "val:l,size:i,filename:s",
        "addr size file",
        "save to disk virtual memory dump starting at 'addr' of size 'size'",
        memory::memsave,
    ),
    hmp(
        "pmemsave",
        "val:l,size:i,filename:s",
        "addr size file",
        "save to disk physical memory dump starting at 'addr' of size 'size'",
        memory::pmemsave,
    ),
    hmp("nmi", "", "", "inject an NMI", memory::nmi),
    hmp(
        "xp",
        "args:S?",
        "/fmt addr",
        "physical memory dump starting at 'addr'",
        memory::xp,
    ),
    hmp("stop", "", "", "stop emulation", run::stop),
    hmp("cont|c", "", "", "resume emulation", run::cont),
    hmp(
        "system_reset",
        "",
        "",
        "reset the system",
        run::system_reset,
    ),
    hmp(
        "system_powerdown",
        "",
        "",
        "send system power down event",
        run::system_powerdown,
    ),
    hmp(
        "system_wakeup",
        "",
        "",
        "wakeup guest from suspend",
        run::system_wakeup,
    ),
    hmp("cpu", "index:i", "index", "set the default CPU", run::cpu),
    hmp(
        "sendkey",
        "keys:s,hold-time:i?",
        "keys [hold_ms]",
        "send keys to the VM (e.g. 'sendkey ctrl-alt-f1', default hold time=100 ms)",
        input::sendkey,
    ),
    hmp(
        "mouse_move",
        "dx_str:s,dy_str:s,dz_str:s?",
        "dx dy [dz]",
        "send mouse move events",
        input::mouse_move,
    ),
    hmp(
        "mouse_button",
        "button_state:i",
        "state",
        "change mouse button state (1=L, 2=M, 4=R)",
        input::mouse_button,
    ),
    hmp(
        "mouse_set",
        "index:i",
        "index",
        "set which mouse device receives events",
        input::mouse_set,
    ),
    hmp(
        "getfd",
        "fdname:s",
        "getfd name",
        "receive a file descriptor via SCM rights and assign it a name",
        run::getfd,
    ),
    hmp(
        "closefd",
        "fdname:s",
        "closefd name",
        "close a file descriptor previously passed via SCM rights",
        run::closefd,
    ),
    hmp(
        "dump-guest-memory",
        "paging:-p,zlib:-z,lzo:-l,snappy:-s,filename:F,begin:i?,length:i?",
        "[-p] [-z|-l|-s] filename [begin length]",
        "dump guest memory into file 'filename'.",
        dump::dump_guest_memory,
    ),
    // chardev commands (chardev.rs)
    hmp(
        "ringbuf_write",
        "device:s,data:s",
        "device data",
        "Write to a ring buffer character device",
        chardev::ringbuf_write,
    ),
    hmp(
        "ringbuf_read",
        "device:s,size:i",
        "device size",
        "Read from a ring buffer character device",
        chardev::ringbuf_read,
    ),
    hmp(
        "chardev-add",
        "args:s",
        "args",
        "add chardev",
        chardev::chardev_add,
    ),
    hmp(
        "chardev-remove",
        "id:s",
        "id",
        "remove chardev",
        chardev::chardev_remove,
    ),
    // QOM and object commands (qom.rs)
    hmp(
        "object_add",
        "object:S?",
        "[qom-type=]type,id=str[,prop=value][,...]",
        "create QOM object",
        qom::object_add,
    ),
    hmp(
        "object_del",
        "id:s",
        "id",
        "destroy QOM object",
        qom::object_del,
    ),
    hmp(
        "qom-list",
        "path:s?",
        "path",
        "list QOM properties",
        qom::qom_list,
    ),
    hmp(
        "qom-set",
        "path:s,property:s,value:s",
        "path property value",
        "set QOM property",
        qom::qom_set,
    ),
    hmp(
        "nbd_server_start",
        "all:-a,writable:-w,uri:s",
        "nbd_server_start [-a] [-w] host:port",
        "serve block devices on the given host and port",
        nbd::nbd_server_start,
    ),
    hmp(
        "nbd_server_add",
        "writable:-w,device:B",
        "nbd_server_add [-w] device",
        "export a block device via NBD",
        nbd::nbd_server_add,
    ),
    hmp("nbd_server_stop", "", "nbd_server_stop", "stop serving block devices using the NBD protocol", nbd::nbd_server_stop),
    // job commands (jobs.rs)
    hmp(
        "block_stream",
        "device:B,speed:o?,base:s?",
        "device [speed [base]]",
        "copy data from a backing file into a block device",
        jobs::block_stream,
    ),
    hmp(
        "block_job_set_speed",
        "device:B,speed:o",
        "device speed",
        "set maximum speed for a background block operation",
        jobs::block_job_set_speed,
    ),
    hmp(
        "block_job_cancel",
        "force:-f,device:B",
        "[-f] device",
        "stop an active background block operation (use -f\n\t\t\t if the operation is currently paused)",
        jobs::block_job_cancel,
    ),
    hmp(
        "block_job_complete",
        "device:B",
        "device",
        "stop an active background block operation",
        jobs::block_job_complete,
    ),
    hmp(
        "block_job_pause",
        "device:B",
        "device",
        "pause an active background block operation",
        jobs::block_job_pause,
    ),
    hmp(
        "block_job_resume",
        "device:B",
        "device",
        "resume a paused background block operation",
        jobs::block_job_resume,
    ),
    hmp(
        "drive_mirror",
        "reuse:-n,full:-f,device:B,target:s,format:s?",
        "[-n] [-f] device target [format]",
        "initiates live storage\n\t\t\tmigration for a device. The device's contents are\n\t\t\tcopied to the new image file, including data that\n\t\t\tis written after the command is started.\n\t\t\tThe -n flag requests QEMU to reuse the image found\n\t\t\tin new-image-file, instead of recreating it from scratch.\n\t\t\tThe -f flag requests QEMU to copy the whole disk,\n\t\t\tso that the result does not need a backing file.\n\t\t\t",
        jobs::drive_mirror,
    ),
    hmp(
        "drive_backup",
        "reuse:-n,full:-f,compress:-c,device:B,target:s,format:s?",
        "[-n] [-f] [-c] device target [format]",
        "initiates a point-in-time\n\t\t\tcopy for a device. The device's contents are\n\t\t\tcopied to the new image file, excluding data that\n\t\t\tis written after the command is started.\n\t\t\tThe -n flag requests QEMU to reuse the image found\n\t\t\tin new-image-file, instead of recreating it from scratch.\n\t\t\tThe -f flag requests QEMU to copy the whole disk,\n\t\t\tso that the result does not need a backing file.\n\t\t\tThe -c flag requests QEMU to compress backup data\n\t\t\t(if the target format supports it).\n\t\t\t",
        jobs::drive_backup,
    ),
    hmp(
        "commit",
        "device:B",
        "device|all",
        "commit changes to the disk images (if -snapshot is used) or backing files",
        jobs::commit,
    ),
    // block commands (block.rs)
    hmp(
        "block_resize",
        "device:B,size:o",
        "device size",
        "resize a block image",
        block::block_resize,
    ),
    hmp(
        "snapshot_blkdev",
        "reuse:-n,device:B,snapshot-file:s?,format:s?",
        "[-n] device [new-image-file] [format]",
        "initiates a live snapshot\n\t\t\tof device. If a new image file is specified, the\n\t\t\tnew image file will become the new root image.\n\t\t\tIf format is specified, the snapshot file will\n\t\t\tbe created in that format.\n\t\t\tThe default format is qcow2.  The -n flag requests QEMU\n\t\t\tto reuse the image found in new-image-file, instead of\n\t\t\trecreating it from scratch.",
        block::snapshot_blkdev,
    ),
    hmp(
        "snapshot_blkdev_internal",
        "device:B,name:s",
        "device name",
        "take an internal snapshot of device.\n\t\t\tThe format of the image used by device must\n\t\t\tsupport it, such as qcow2.\n\t\t\t",
        block::snapshot_blkdev_internal,
    ),
    hmp(
        "snapshot_delete_blkdev_internal",
        "device:B,name:s,id:s?",
        "device name [id]",
        "delete an internal snapshot of device.\n\t\t\tIf id is specified, qemu will try delete\n\t\t\tthe snapshot matching both id and name.\n\t\t\tThe format of the image used by device must\n\t\t\tsupport it, such as qcow2.\n\t\t\t",
        block::snapshot_delete_blkdev_internal,
    ),
    hmp(
        "eject",
        "force:-f,device:B",
        "[-f] device",
        "eject a removable medium (use -f to force it)",
        block::eject,
    ),
    hmp(
        "change",
        "device:B,target:F,arg:s?,read-only-mode:s?",
        "device filename [format [read-only-mode]]",
        "change a removable medium, optional format",
        block::change,
    ),
    hmp(
        "drive_add",
        "node:-n,pci_addr:s,opts:s",
        "[-n] [[<domain>:]<bus>:]<slot>\n[file=file][,if=type][,bus=n]\n[,unit=m][,media=d][,index=i]\n[,cyls=c,heads=h,secs=s[,trans=t]]\n[,snapshot=on|off][,cache=on|off]\n[,readonly=on|off][,copy-on-read=on|off]",
        "add drive to PCI storage controller",
        block::drive_add,
    ),
    hmp(
        "drive_del",
        "id:B",
        "device",
        "remove host block device",
        block::drive_del,
    ),
    hmp(
        "qemu-io",
        "device:B,command:s",
        "[device] \"[command]\"",
        "run a qemu-io command on a block device",
        block::qemu_io,
    ),
    hmp(
        "block_set_io_throttle",
        "device:B,bps:l,bps_rd:l,bps_wr:l,iops:l,iops_rd:l,iops_wr:l",
        "device bps bps_rd bps_wr iops iops_rd iops_wr",
        "change I/O throttle limits for a block drive",
        block::block_set_io_throttle,
    ),
    hmp(
        "block_passwd",
        "device:B,password:s",
        "block_passwd device password",
        "set the password of encrypted block devices",
        block::block_passwd,
    ),
];

fn names(c: &HmpCommand) -> impl Iterator<Item = &'static str> {
    c.name.split('|')
}

pub fn find<'a>(table: &'a [HmpCommand], name: &str) -> Option<&'a HmpCommand> {
    table.iter().find(|c| names(c).any(|n| n == name))
}

fn help_line(prefix: &str, c: &HmpCommand) -> String {
    format!("{prefix}{} {} -- {}\n", c.name, c.params, c.help)
}

/// Runs one command line; returns everything it printed.
pub fn run_line(emu: &mut Emulator, ctx: &mut CmdCtx, line: &str) -> String {
    let mut out = String::new();
    let trimmed = line.trim_start();
    if trimmed.is_empty() {
        return out;
    }
    let name_end = trimmed
        .find(|c: char| c.is_whitespace())
        .unwrap_or(trimmed.len());
    let (name, rest) = trimmed.split_at(name_end);
    let Some(cmd) = find(COMMANDS, name) else {
        out.push_str(&format!("unknown command: '{name}'\n"));
        return out;
    };
    run_command(emu, ctx, cmd, rest, &mut out);
    out
}

fn run_command(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    cmd: &HmpCommand,
    rest: &str,
    out: &mut String,
) {
    let primary = cmd.name.split('|').next().unwrap_or(cmd.name);
    let args = match args::parse(primary, cmd.args_type, rest) {
        Ok(a) => a,
        Err(e) => {
            out.push_str(&e);
            out.push('\n');
            out.push_str(&format!("Try \"help {primary}\" for more information\n"));
            return;
        }
    };
    if let Err(e) = (cmd.handler)(emu, ctx, &args, out) {
        out.push_str(&e.desc);
        out.push('\n');
    }
}

fn help(
    _: &mut Emulator,
    _: &mut CmdCtx,
    args: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let which = args.get("name").and_then(Value::as_str).map(str::trim);
    match which {
        None | Some("") => {
            for c in COMMANDS {
                out.push_str(&help_line("", c));
            }
        }
        Some(w) => {
            let mut words = w.split_whitespace();
            let first = words.next().unwrap_or("");
            if first == "info" {
                match words.next() {
                    None => {
                        for c in info::COMMANDS {
                            out.push_str(&help_line("info ", c));
                        }
                    }
                    Some(sub) => match find(info::COMMANDS, sub) {
                        Some(c) => out.push_str(&help_line("info ", c)),
                        None => out.push_str(&format!("unknown command: 'info {sub}'\n")),
                    },
                }
            } else {
                match find(COMMANDS, first) {
                    Some(c) => out.push_str(&help_line("", c)),
                    None => out.push_str(&format!("unknown command: '{first}'\n")),
                }
            }
        }
    }
    Ok(())
}

fn info_cmd(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    args: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let Some(item) = args.get("item").and_then(Value::as_str) else {
        for c in info::COMMANDS {
            out.push_str(&help_line("info ", c));
        }
        return Ok(());
    };
    // `info` re-parses the rest of its line for the subcommand's own args.
    let (sub, rest) = match item.split_once(char::is_whitespace) {
        Some((s, r)) => (s, r),
        None => (item, ""),
    };
    let Some(c) = find(info::COMMANDS, sub) else {
        out.push_str(&format!("unknown command: 'info {sub}'\n"));
        return Ok(());
    };
    run_command(emu, ctx, c, rest, out);
    Ok(())
}
