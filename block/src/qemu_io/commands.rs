//! The command table (sorted by name, as qemu-io's `help` lists it), the
//! state one command runs with, and the `help` command itself.

use super::device::Device;
use super::{aio_cmds, help_text, io_cmds, misc_cmds, query_cmds, QemuIo, QemuIoError};

pub type CmdResult = Result<(), QemuIoError>;

/// One command: names, argument bounds (counted without the command word),
/// usage and help text, and its implementation.
pub struct CmdInfo {
    pub name: &'static str,
    pub altname: Option<&'static str>,
    pub argmin: usize,
    pub argmax: Option<usize>,
    pub args: Option<&'static str>,
    pub oneline: &'static str,
    pub help: Option<&'static str>,
    pub run: fn(&mut Ctx) -> CmdResult,
}

/// What a running command works with.
pub struct Ctx<'a> {
    pub io: &'a mut QemuIo,
    pub dev: Device<'a>,
    pub out: &'a mut String,
    /// The words of the command line; `argv[0]` as typed (maybe an alias).
    pub argv: &'a [String],
    pub info: &'static CmdInfo,
}

impl Ctx<'_> {
    pub fn print(&mut self, s: &str) {
        self.out.push_str(s);
    }

    /// Prints the usage line; commands end with it on bad options.
    pub fn usage(&mut self) -> CmdResult {
        let args = self.info.args.unwrap_or("(null)");
        self.out.push_str(&format!(
            "{} {} -- {}\n",
            self.info.name, args, self.info.oneline
        ));
        Ok(())
    }
}

// A positional constructor keeps the table one entry per few lines.
#[allow(clippy::too_many_arguments)]
const fn cmd(
    name: &'static str,
    altname: Option<&'static str>,
    argmin: usize,
    argmax: Option<usize>,
    args: Option<&'static str>,
    oneline: &'static str,
    help: Option<&'static str>,
    run: fn(&mut Ctx) -> CmdResult,
) -> CmdInfo {
    CmdInfo {
        name,
        altname,
        argmin,
        argmax,
        args,
        oneline,
        help,
        run,
    }
}

/// Every command, sorted by name.
pub static COMMANDS: &[CmdInfo] = &[
    cmd(
        "abort",
        None,
        0,
        Some(0),
        None,
        "simulate a program crash using abort(3)",
        None,
        misc_cmds::abort_f,
    ),
    cmd(
        "aio_flush",
        None,
        0,
        Some(0),
        None,
        "completes all outstanding aio requests",
        None,
        aio_cmds::aio_flush_f,
    ),
    cmd(
        "aio_read",
        None,
        2,
        None,
        Some("[-Ciqv] [-P pattern] off len [len..]"),
        "asynchronously reads a number of bytes",
        Some(help_text::AIO_READ_HELP),
        aio_cmds::aio_read_f,
    ),
    cmd(
        "aio_write",
        None,
        2,
        None,
        Some("[-Cfiquz] [-P pattern] off len [len..]"),
        "asynchronously writes a number of bytes",
        Some(help_text::AIO_WRITE_HELP),
        aio_cmds::aio_write_f,
    ),
    cmd(
        "alloc",
        Some("a"),
        1,
        Some(2),
        Some("off [sectors]"),
        "checks if a sector is present in the file",
        None,
        query_cmds::alloc_f,
    ),
    cmd(
        "break",
        None,
        2,
        Some(2),
        Some("event tag"),
        "sets a breakpoint on event and tags the stopped request as tag",
        None,
        misc_cmds::break_f,
    ),
    cmd(
        "discard",
        Some("d"),
        2,
        None,
        Some("[-Cq] off len"),
        "discards a number of bytes at a specified offset",
        Some(help_text::DISCARD_HELP),
        io_cmds::discard_f,
    ),
    cmd(
        "flush",
        Some("f"),
        0,
        Some(0),
        None,
        "flush all in-core file state to disk",
        None,
        io_cmds::flush_f,
    ),
    cmd(
        "help",
        Some("?"),
        0,
        Some(1),
        Some("[command]"),
        "help for one or all commands",
        None,
        help_f,
    ),
    cmd(
        "info",
        Some("i"),
        0,
        Some(0),
        None,
        "prints information about the current file",
        None,
        query_cmds::info_f,
    ),
    cmd(
        "length",
        Some("l"),
        0,
        Some(0),
        None,
        "gets the length of the current file",
        None,
        query_cmds::length_f,
    ),
    cmd(
        "map",
        None,
        0,
        Some(0),
        Some(""),
        "prints the allocated areas of a file",
        None,
        query_cmds::map_f,
    ),
    cmd(
        "read",
        Some("r"),
        2,
        None,
        Some("[-abCqv] [-P pattern [-s off] [-l len]] off len"),
        "reads a number of bytes at a specified offset",
        Some(help_text::READ_HELP),
        io_cmds::read_f,
    ),
    cmd(
        "readv",
        None,
        2,
        None,
        Some("[-Cqv] [-P pattern] off len [len..]"),
        "reads a number of bytes at a specified offset",
        Some(help_text::READV_HELP),
        io_cmds::readv_f,
    ),
    cmd(
        "remove_break",
        None,
        1,
        Some(1),
        Some("tag"),
        "remove a breakpoint by tag",
        None,
        misc_cmds::remove_break_f,
    ),
    cmd(
        "reopen",
        None,
        0,
        None,
        Some("[-r] [-c cache] [-o options]"),
        "reopens an image with new options",
        Some(help_text::REOPEN_HELP),
        misc_cmds::reopen_f,
    ),
    cmd(
        "resume",
        None,
        1,
        Some(1),
        Some("tag"),
        "resumes the request tagged as tag",
        None,
        misc_cmds::resume_f,
    ),
    cmd(
        "sigraise",
        None,
        1,
        Some(1),
        Some("signal"),
        "raises a signal",
        Some(help_text::SIGRAISE_HELP),
        misc_cmds::sigraise_f,
    ),
    cmd(
        "sleep",
        None,
        1,
        Some(1),
        None,
        "waits for the given value in milliseconds",
        None,
        misc_cmds::sleep_f,
    ),
    cmd(
        "truncate",
        Some("t"),
        1,
        Some(1),
        Some("off"),
        "truncates the current file at the given offset",
        None,
        io_cmds::truncate_f,
    ),
    cmd(
        "wait_break",
        None,
        1,
        Some(1),
        Some("tag"),
        "waits for the suspension of a request",
        None,
        misc_cmds::wait_break_f,
    ),
    cmd(
        "write",
        Some("w"),
        2,
        None,
        Some("[-bcCfquz] [-P pattern] off len"),
        "writes a number of bytes at a specified offset",
        Some(help_text::WRITE_HELP),
        io_cmds::write_f,
    ),
    cmd(
        "writev",
        None,
        2,
        None,
        Some("[-Cfq] [-P pattern] off len [len..]"),
        "writes a number of bytes at a specified offset",
        Some(help_text::WRITEV_HELP),
        io_cmds::writev_f,
    ),
];

/// A command by name or alias.
pub fn find_command(name: &str) -> Option<&'static CmdInfo> {
    COMMANDS
        .iter()
        .find(|c| c.name == name || c.altname == Some(name))
}

fn help_oneline(out: &mut String, shown_name: &str, c: &CmdInfo) {
    out.push_str(shown_name);
    out.push(' ');
    if let Some(a) = c.args {
        out.push_str(a);
        out.push(' ');
    }
    out.push_str("-- ");
    out.push_str(c.oneline);
    out.push('\n');
}

fn help_f(ctx: &mut Ctx) -> CmdResult {
    let Some(wanted) = ctx.argv.get(1) else {
        for c in COMMANDS {
            help_oneline(ctx.out, c.name, c);
        }
        ctx.print("\nUse 'help commandname' for extended help.\n");
        return Ok(());
    };
    let Some(c) = find_command(wanted) else {
        let msg = format!("command {} not found\n", wanted);
        ctx.print(&msg);
        return Ok(());
    };
    help_oneline(ctx.out, wanted, c);
    if let Some(h) = c.help {
        ctx.print(h);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_by_name() {
        let names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
    }

    #[test]
    fn aliases_find_their_command() {
        assert_eq!(find_command("r").map(|c| c.name), Some("read"));
        assert_eq!(find_command("?").map(|c| c.name), Some("help"));
        assert!(find_command("open").is_none());
    }
}
