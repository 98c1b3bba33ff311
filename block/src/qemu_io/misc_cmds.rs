//! Commands about the process or the node's setup rather than data:
//! reopen, sleep, abort, sigraise and blkdebug's breakpoint commands.

use super::args::{cvtnum, Getopt, Opt};
use super::commands::{CmdResult, Ctx};
use super::device::strerror;
use super::QemuIoError;
use crate::node::lock;

pub const REOPEN_HELP: &str = "
 Changes the open options of an already opened image

 Example:
 'reopen -o lazy-refcounts=on' - activates lazy refcount writeback on a qcow2 image

 -r, -- Reopen the image read-only
 -c, -- Change the cache mode to the given value
 -o, -- Changes block driver options (cf. 'open' command)

";

pub const SIGRAISE_HELP: &str = "
 raises the given signal

 Example:
 'sigraise 15' - raises SIGTERM

 Invokes raise(signal), where \"signal\" is the mandatory integer argument
 given to sigraise.

";

/// Highest signal number plus one (glibc's NSIG).
const NSIG: i64 = 65;

fn valid_cache_mode(mode: &str) -> bool {
    matches!(
        mode,
        "off" | "none" | "directsync" | "writeback" | "unsafe" | "writethrough"
    )
}

pub fn reopen_f(ctx: &mut Ctx) -> CmdResult {
    let mut read_only = false;
    let mut option_keys: Vec<String> = Vec::new();
    let argv = ctx.argv;
    let mut g = Getopt::new(argv, "c:o:r");
    for opt in g.by_ref() {
        match opt {
            Opt::Flag('c', Some(mode)) => {
                if !valid_cache_mode(&mode) {
                    ctx.print(&format!("Invalid cache option: {}\n", mode));
                    return Ok(());
                }
            }
            Opt::Flag('o', Some(list)) => {
                for item in list.split(',').filter(|s| !s.is_empty()) {
                    let key = item.split('=').next().unwrap_or(item);
                    option_keys.push(key.to_string());
                }
            }
            Opt::Flag('r', _) => read_only = true,
            Opt::Bad(m) => {
                ctx.print(&m);
                return ctx.usage();
            }
            Opt::Flag(..) => return ctx.usage(),
        }
    }
    if !g.operands().is_empty() {
        return ctx.usage();
    }
    let Ok(node) = ctx.dev.node() else {
        return Ok(());
    };
    // Driver options cannot be changed on an open node here.
    if let Some(k) = option_keys.first() {
        ctx.print(&format!("Cannot change the option '{}'\n", k));
        return Ok(());
    }
    if read_only {
        if let Err(e) = lock(node).set_read_only(true) {
            ctx.print(&format!("{}\n", e));
        }
    }
    Ok(())
}

pub fn sleep_f(ctx: &mut Ctx) -> CmdResult {
    let arg = &ctx.argv[1];
    let ms = match parse_ms(arg) {
        Some(ms) => ms,
        None => {
            let s = format!("{} is not a valid number\n", arg);
            ctx.print(&s);
            return Ok(());
        }
    };
    std::thread::sleep(std::time::Duration::from_millis(ms));
    Ok(())
}

/// strtol(arg, 0) accepting only a whole non-negative number.
fn parse_ms(arg: &str) -> Option<u64> {
    let t = arg.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let t = t.strip_prefix('+').unwrap_or(t);
    if t == "-0" {
        return Some(0);
    }
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16).ok();
    }
    if t.len() > 1 && t.starts_with('0') {
        return u64::from_str_radix(&t[1..], 8).ok();
    }
    t.parse().ok()
}

pub fn abort_f(_ctx: &mut Ctx) -> CmdResult {
    Err(QemuIoError::Abort)
}

pub fn sigraise_f(ctx: &mut Ctx) -> CmdResult {
    let arg = ctx.argv[1].clone();
    let sig = match cvtnum(&arg) {
        Ok(s) => s,
        Err(e) => {
            ctx.print(&e.message(&arg));
            return Ok(());
        }
    };
    if sig > NSIG {
        ctx.print(&format!(
            "signal argument '{}' is too large to be a valid signal\n",
            arg
        ));
        return Ok(());
    }
    Err(QemuIoError::Raise(sig as i32))
}

pub fn break_f(ctx: &mut Ctx) -> CmdResult {
    let (event, tag) = (ctx.argv[1].clone(), ctx.argv[2].clone());
    let r = match (ctx.dev.node(), ctx.io.debug.as_mut()) {
        (Ok(n), Some(d)) => d.breakpoint(n, &event, &tag),
        (Err(e), _) => Err(e),
        (Ok(_), None) => Err(libc::ENOTSUP),
    };
    if let Err(e) = r {
        ctx.print(&format!("Could not set breakpoint: {}\n", strerror(e)));
    }
    Ok(())
}

pub fn remove_break_f(ctx: &mut Ctx) -> CmdResult {
    let tag = ctx.argv[1].clone();
    let r = match (ctx.dev.node(), ctx.io.debug.as_mut()) {
        (Ok(n), Some(d)) => d.remove_breakpoint(n, &tag),
        (Err(e), _) => Err(e),
        (Ok(_), None) => Err(libc::ENOTSUP),
    };
    if let Err(e) = r {
        ctx.print(&format!(
            "Could not remove breakpoint {}: {}\n",
            tag,
            strerror(e)
        ));
    }
    Ok(())
}

pub fn resume_f(ctx: &mut Ctx) -> CmdResult {
    let tag = ctx.argv[1].clone();
    let r = match (ctx.dev.node(), ctx.io.debug.as_mut()) {
        (Ok(n), Some(d)) => d.resume(n, &tag),
        (Err(e), _) => Err(e),
        (Ok(_), None) => Err(libc::ENOTSUP),
    };
    if let Err(e) = r {
        ctx.print(&format!("Could not resume request: {}\n", strerror(e)));
    }
    Ok(())
}

pub fn wait_break_f(ctx: &mut Ctx) -> CmdResult {
    // Without blkdebug no request can ever stop: the reference waited
    // forever; returning keeps the monitor alive.
    let tag = ctx.argv[1].clone();
    if let (Ok(n), Some(d)) = (ctx.dev.node(), ctx.io.debug.as_mut()) {
        d.wait_break(n, &tag);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_argument_follows_c_integer_syntax() {
        assert_eq!(parse_ms("10"), Some(10));
        assert_eq!(parse_ms("0x10"), Some(16));
        assert_eq!(parse_ms("010"), Some(8));
        assert_eq!(parse_ms("-1"), None);
        assert_eq!(parse_ms("1s"), None);
    }
}
