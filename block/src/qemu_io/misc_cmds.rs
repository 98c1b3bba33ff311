//! Commands about the process or the node's setup rather than data:
//! reopen, sleep, abort, sigraise and blkdebug's breakpoint commands.

use super::args::{cvtnum, Getopt, Opt};
use super::commands::{CmdResult, Ctx};
use super::device::strerror;
use super::hooks::{CacheMode, ReopenRequest};
use super::QemuIoError;
use crate::node::lock;

/// Highest signal number plus one (glibc's NSIG).
const NSIG: i64 = 65;

/// Splits a `-o` list: "k=v,k2=v2", ",," standing for a comma, a bare key
/// meaning "on".
fn parse_option_list(list: &str, into: &mut Vec<(String, String)>) {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut chars = list.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                items.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    items.push(cur);
    for item in items.into_iter().filter(|s| !s.is_empty()) {
        let (k, v) = match item.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (item, "on".to_string()),
        };
        // Later settings of a key replace earlier ones, as merged option lists do.
        into.retain(|(old, _)| *old != k);
        into.push((k, v));
    }
}

pub fn reopen_f(ctx: &mut Ctx) -> CmdResult {
    let mut read_only = false;
    let mut cache = None;
    let mut options: Vec<(String, String)> = Vec::new();
    let argv = ctx.argv;
    let mut g = Getopt::new(argv, "c:o:r");
    for opt in g.by_ref() {
        match opt {
            Opt::Flag('c', Some(mode)) => match CacheMode::parse(&mode) {
                Some(m) => cache = Some(m),
                None => {
                    ctx.print(&format!("Invalid cache option: {}\n", mode));
                    return Ok(());
                }
            },
            Opt::Flag('o', Some(list)) => parse_option_list(&list, &mut options),
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
    let req = ReopenRequest {
        read_only: read_only || lock(node).is_read_only(),
        cache,
        options,
    };
    if let Some(r) = ctx.io.reopen.as_mut() {
        if let Err(m) = r.reopen(node, &req) {
            ctx.print(&format!("{}\n", m));
        }
        return Ok(());
    }
    // Without the graph's help only the read-only switch can be applied.
    if let Some((k, _)) = req.options.first() {
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
    fn option_lists_split_on_single_commas() {
        let mut v = Vec::new();
        parse_option_list("cache.direct=on,a,,b=1,flag", &mut v);
        parse_option_list("cache.direct=off", &mut v);
        assert_eq!(
            v,
            vec![
                ("a,b".to_string(), "1".to_string()),
                ("flag".to_string(), "on".to_string()),
                ("cache.direct".to_string(), "off".to_string()),
            ]
        );
    }

    #[test]
    fn sleep_argument_follows_c_integer_syntax() {
        assert_eq!(parse_ms("10"), Some(10));
        assert_eq!(parse_ms("0x10"), Some(16));
        assert_eq!(parse_ms("010"), Some(8));
        assert_eq!(parse_ms("-1"), None);
        assert_eq!(parse_ms("1s"), None);
    }
}
