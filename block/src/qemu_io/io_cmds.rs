//! The data commands: read, readv, write, writev, aio_read, aio_write,
//! aio_flush, flush, discard, truncate.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::args::{cvtnum, parse_pattern, Getopt, Opt};
use super::commands::{CmdResult, Ctx};
use super::device::{strerror, Errno, INT_MAX, SECTOR};
use super::hooks::{AcctEvent, AcctKind, AcctResult};
use super::report::{dump_buffer, print_report, Elapsed, Report};

/// Largest request in sectors the reference's block layer accepted.
const REQUEST_MAX_SECTORS: u64 = INT_MAX >> 9;

/// What an option handler decided.
pub(super) enum Parsed<T> {
    Go(T),
    /// The command already printed why it stops.
    Stop,
}

/// Parses a number argument, printing qemu-io's message when it is bad.
pub(super) fn num(ctx: &mut Ctx, arg: &str) -> Option<u64> {
    match cvtnum(arg) {
        Ok(v) => Some(v as u64),
        Err(e) => {
            ctx.print(&e.message(arg));
            None
        }
    }
}

pub(super) fn pattern(ctx: &mut Ctx, arg: &str) -> Option<u8> {
    match parse_pattern(arg) {
        Ok(p) => Some(p),
        Err(m) => {
            ctx.print(&m);
            None
        }
    }
}

/// A buffer of `len` bytes set to `fill`, or None when memory runs out.
pub(super) fn alloc_buf(len: u64, fill: u8) -> Option<Vec<u8>> {
    let len = usize::try_from(len).ok()?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).ok()?;
    v.resize(len, fill);
    Some(v)
}

/// Time since `t1`, at least a microsecond: the reference's requests never
/// completed within one gettimeofday tick, and a zero time would print
/// "-nan" and "inf" rates that iotests' filter does not recognise.
pub(super) fn elapsed_since(t1: Instant) -> Elapsed {
    let t = Elapsed::from(t1.elapsed());
    if t.sec == 0 && t.usec == 0 {
        return Elapsed { sec: 0, usec: 1 };
    }
    t
}

/// Parses the lengths of a vectored request; None after printing an error.
pub(super) fn iovec_total(ctx: &mut Ctx, lens: &[String]) -> Option<u64> {
    let mut total = 0u64;
    for a in lens {
        total = total.saturating_add(num(ctx, a)?);
    }
    Some(total)
}

pub(super) fn fails_pattern(buf: &[u8], pattern: u8) -> bool {
    buf.iter().any(|&b| b != pattern)
}

struct ReadOpts {
    machine: bool,
    quiet: bool,
    verbose: bool,
    pattern: Option<u8>,
    pattern_off: Option<u64>,
    pattern_len: Option<u64>,
    vmstate: bool,
}

fn read_opts(ctx: &mut Ctx) -> Parsed<(ReadOpts, Vec<String>)> {
    let mut o = ReadOpts {
        machine: false,
        quiet: false,
        verbose: false,
        pattern: None,
        pattern_off: None,
        pattern_len: None,
        vmstate: false,
    };
    let argv = ctx.argv;
    let mut g = Getopt::new(argv, "bCl:pP:qs:v");
    for opt in g.by_ref() {
        match opt {
            Opt::Flag('b', _) => o.vmstate = true,
            Opt::Flag('C', _) => o.machine = true,
            Opt::Flag('l', Some(a)) => match num(ctx, &a) {
                Some(v) => o.pattern_len = Some(v),
                None => return Parsed::Stop,
            },
            Opt::Flag('p', _) => {}
            Opt::Flag('P', Some(a)) => match pattern(ctx, &a) {
                Some(p) => o.pattern = Some(p),
                None => return Parsed::Stop,
            },
            Opt::Flag('q', _) => o.quiet = true,
            Opt::Flag('s', Some(a)) => match num(ctx, &a) {
                Some(v) => o.pattern_off = Some(v),
                None => return Parsed::Stop,
            },
            Opt::Flag('v', _) => o.verbose = true,
            Opt::Bad(m) => {
                ctx.print(&m);
                let _ = ctx.usage();
                return Parsed::Stop;
            }
            Opt::Flag(..) => {
                let _ = ctx.usage();
                return Parsed::Stop;
            }
        }
    }
    Parsed::Go((o, g.operands()))
}

pub fn read_f(ctx: &mut Ctx) -> CmdResult {
    let Parsed::Go((o, ops)) = read_opts(ctx) else {
        return Ok(());
    };
    if ops.len() != 2 {
        return ctx.usage();
    }
    let Some(offset) = num(ctx, &ops[0]) else {
        return Ok(());
    };
    let Some(count) = num(ctx, &ops[1]) else {
        return Ok(());
    };
    if o.pattern.is_none() && (o.pattern_len.is_some() || o.pattern_off.is_some()) {
        return ctx.usage();
    }
    let poff = o.pattern_off.unwrap_or(0) as i64;
    let plen = match o.pattern_len {
        Some(l) => l as i64,
        None => count as i64 - poff,
    };
    if plen < 0 || plen.saturating_add(poff) > count as i64 {
        ctx.print("pattern verification range exceeds end of read data\n");
        return Ok(());
    }
    if o.vmstate {
        if offset & 0x1ff != 0 {
            ctx.print(&format!("offset {} is not sector aligned\n", offset));
            return Ok(());
        }
        if count & 0x1ff != 0 {
            ctx.print(&format!("count {} is not sector aligned\n", count));
            return Ok(());
        }
    }
    let pre = ctx.dev.precheck(offset, count);
    let mut buf = if count > INT_MAX || o.vmstate || pre.is_err() {
        Vec::new()
    } else {
        alloc_buf(count, 0xab).unwrap_or_default()
    };
    let t1 = Instant::now();
    let res = if count > INT_MAX {
        Err(libc::ERANGE)
    } else if o.vmstate {
        // No driver here keeps a VM state area.
        Err(libc::ENOTSUP)
    } else if let Err(e) = pre {
        Err(e)
    } else if buf.len() as u64 != count {
        Err(libc::ENOMEM)
    } else {
        ctx.dev.read(offset, &mut buf)
    };
    let t = elapsed_since(t1);
    if let Err(e) = res {
        ctx.print(&format!("read failed: {}\n", strerror(e)));
        return Ok(());
    }
    if let Some(p) = o.pattern {
        let (s, l) = (poff as usize, plen as usize);
        if fails_pattern(&buf[s..s + l], p) {
            ctx.print(&format!(
                "Pattern verification failed at offset {}, {} bytes\n",
                (offset as i64).saturating_add(poff),
                plen
            ));
        }
    }
    if o.quiet {
        return Ok(());
    }
    if o.verbose {
        dump_buffer(ctx.out, &buf, offset as i64);
    }
    print_report(
        ctx.out,
        &Report {
            op: "read",
            offset: offset as i64,
            count: count as i64,
            total: count as i64,
            machine: o.machine,
        },
        t,
    );
    Ok(())
}

/// Options shared by readv and aio_read.
pub(super) struct VecReadOpts {
    pub(super) machine: bool,
    pub(super) quiet: bool,
    pub(super) verbose: bool,
    pub(super) pattern: Option<u8>,
}

pub(super) fn vec_read_opts(
    ctx: &mut Ctx,
    optstring: &'static str,
) -> Parsed<(VecReadOpts, Vec<String>)> {
    let mut o = VecReadOpts {
        machine: false,
        quiet: false,
        verbose: false,
        pattern: None,
    };
    let argv = ctx.argv;
    let mut g = Getopt::new(argv, optstring);
    for opt in g.by_ref() {
        match opt {
            Opt::Flag('C', _) => o.machine = true,
            Opt::Flag('P', Some(a)) => match pattern(ctx, &a) {
                Some(p) => o.pattern = Some(p),
                None => return Parsed::Stop,
            },
            Opt::Flag('q', _) => o.quiet = true,
            Opt::Flag('v', _) => o.verbose = true,
            Opt::Flag('i', _) => {
                ctx.print("injecting invalid read request\n");
                ctx.io.account(invalid(AcctKind::Read));
                return Parsed::Stop;
            }
            Opt::Bad(m) => {
                ctx.print(&m);
                let _ = ctx.usage();
                return Parsed::Stop;
            }
            Opt::Flag(..) => {
                let _ = ctx.usage();
                return Parsed::Stop;
            }
        }
    }
    Parsed::Go((o, g.operands()))
}

pub(super) fn invalid(kind: AcctKind) -> AcctEvent {
    AcctEvent {
        kind,
        bytes: 0,
        latency_ns: 0,
        result: AcctResult::Invalid,
    }
}

/// Reads `size` bytes at `offset` for the vectored commands; the time
/// covers the request only, not the buffer's allocation.
fn vec_read(ctx: &mut Ctx, offset: u64, size: u64) -> (Result<(), Errno>, Vec<u8>, Elapsed) {
    let pre = ctx.dev.precheck(offset, size);
    let mut buf = if pre.is_err() {
        Vec::new()
    } else {
        alloc_buf(size, 0xab).unwrap_or_default()
    };
    let t1 = Instant::now();
    let res = if let Err(e) = pre {
        Err(e)
    } else if buf.len() as u64 != size {
        Err(libc::ENOMEM)
    } else {
        ctx.dev.read(offset, &mut buf)
    };
    (res, buf, elapsed_since(t1))
}

/// The end of a vectored read: verification, dump and report.
pub(super) fn finish_vec_read(ctx: &mut Ctx, o: &VecReadOpts, buf: &[u8], offset: u64, t: Elapsed) {
    let size = buf.len() as i64;
    if let Some(p) = o.pattern {
        if fails_pattern(buf, p) {
            ctx.print(&format!(
                "Pattern verification failed at offset {}, {} bytes\n",
                offset, size
            ));
        }
    }
    if o.quiet {
        return;
    }
    if o.verbose {
        dump_buffer(ctx.out, buf, offset as i64);
    }
    print_report(
        ctx.out,
        &Report {
            op: "read",
            offset: offset as i64,
            count: size,
            total: size,
            machine: o.machine,
        },
        t,
    );
}

pub fn readv_f(ctx: &mut Ctx) -> CmdResult {
    let Parsed::Go((o, ops)) = vec_read_opts(ctx, "CP:qv") else {
        return Ok(());
    };
    if ops.len() < 2 {
        return ctx.usage();
    }
    let Some(offset) = num(ctx, &ops[0]) else {
        return Ok(());
    };
    let Some(size) = iovec_total(ctx, &ops[1..]) else {
        return Ok(());
    };
    let (res, buf, t) = vec_read(ctx, offset, size);
    if let Err(e) = res {
        ctx.print(&format!("readv failed: {}\n", strerror(e)));
        return Ok(());
    }
    finish_vec_read(ctx, &o, &buf, offset, t);
    Ok(())
}

#[derive(Default)]
pub(super) struct WriteOpts {
    pub(super) vmstate: bool,
    pub(super) compressed: bool,
    pub(super) machine: bool,
    pub(super) fua: bool,
    pub(super) pattern: Option<u8>,
    pub(super) quiet: bool,
    pub(super) unmap: bool,
    pub(super) zero: bool,
}

pub(super) fn write_opts(
    ctx: &mut Ctx,
    optstring: &'static str,
) -> Parsed<(WriteOpts, Vec<String>)> {
    let mut o = WriteOpts::default();
    let argv = ctx.argv;
    let mut g = Getopt::new(argv, optstring);
    for opt in g.by_ref() {
        match opt {
            Opt::Flag('b', _) => o.vmstate = true,
            Opt::Flag('c', _) => o.compressed = true,
            Opt::Flag('C', _) => o.machine = true,
            Opt::Flag('f', _) => o.fua = true,
            Opt::Flag('p', _) => {}
            Opt::Flag('P', Some(a)) => match pattern(ctx, &a) {
                Some(p) => o.pattern = Some(p),
                None => return Parsed::Stop,
            },
            Opt::Flag('q', _) => o.quiet = true,
            Opt::Flag('u', _) => o.unmap = true,
            Opt::Flag('z', _) => o.zero = true,
            Opt::Flag('i', _) => {
                ctx.print("injecting invalid write request\n");
                ctx.io.account(invalid(AcctKind::Write));
                return Parsed::Stop;
            }
            Opt::Bad(m) => {
                ctx.print(&m);
                let _ = ctx.usage();
                return Parsed::Stop;
            }
            Opt::Flag(..) => {
                let _ = ctx.usage();
                return Parsed::Stop;
            }
        }
    }
    Parsed::Go((o, g.operands()))
}

pub fn write_f(ctx: &mut Ctx) -> CmdResult {
    let Parsed::Go((o, ops)) = write_opts(ctx, "bcCfpP:quz") else {
        return Ok(());
    };
    if ops.len() != 2 {
        return ctx.usage();
    }
    if o.vmstate && o.zero {
        ctx.print("-b and -z cannot be specified at the same time\n");
        return Ok(());
    }
    if o.fua && (o.vmstate || o.compressed) {
        ctx.print("-f and -b or -c cannot be specified at the same time\n");
        return Ok(());
    }
    if o.unmap && !o.zero {
        ctx.print("-u requires -z to be specified\n");
        return Ok(());
    }
    if o.zero && o.pattern.is_some() {
        ctx.print("-z and -P cannot be specified at the same time\n");
        return Ok(());
    }
    let Some(offset) = num(ctx, &ops[0]) else {
        return Ok(());
    };
    let Some(count) = num(ctx, &ops[1]) else {
        return Ok(());
    };
    if o.vmstate || o.compressed {
        if offset & 0x1ff != 0 {
            ctx.print(&format!("offset {} is not sector aligned\n", offset));
            return Ok(());
        }
        if count & 0x1ff != 0 {
            ctx.print(&format!("count {} is not sector aligned\n", count));
            return Ok(());
        }
    }
    let fill = o.pattern.unwrap_or(0xcd);
    let too_big = if o.compressed {
        count >> 9 > REQUEST_MAX_SECTORS
    } else {
        count > INT_MAX
    };
    let pre = ctx.dev.precheck(offset, count);
    let buf = if o.zero || o.vmstate || too_big || pre.is_err() {
        Vec::new()
    } else {
        alloc_buf(count, fill).unwrap_or_default()
    };
    let t1 = Instant::now();
    let res = if too_big {
        Err(libc::ERANGE)
    } else if o.vmstate {
        // No driver here keeps a VM state area.
        Err(libc::ENOTSUP)
    } else if let Err(e) = pre {
        Err(e)
    } else if o.zero {
        ctx.dev.write_zeroes(offset, count, o.unmap, o.fua)
    } else if buf.len() as u64 != count {
        Err(libc::ENOMEM)
    } else if o.compressed {
        ctx.dev.write_compressed(offset, &buf)
    } else {
        ctx.dev.write(offset, &buf, o.fua)
    };
    let t = elapsed_since(t1);
    if let Err(e) = res {
        ctx.print(&format!("write failed: {}\n", strerror(e)));
        return Ok(());
    }
    if o.quiet {
        return Ok(());
    }
    print_report(
        ctx.out,
        &Report {
            op: "wrote",
            offset: offset as i64,
            count: count as i64,
            total: count as i64,
            machine: o.machine,
        },
        t,
    );
    Ok(())
}

/// Writes `size` bytes of `fill` at `offset` for the vectored commands; the
/// time covers the request only.
fn vec_write(
    ctx: &mut Ctx,
    offset: u64,
    size: u64,
    fill: u8,
    fua: bool,
) -> (Result<(), Errno>, Elapsed) {
    let pre = ctx.dev.precheck(offset, size);
    let buf = if pre.is_err() {
        Vec::new()
    } else {
        alloc_buf(size, fill).unwrap_or_default()
    };
    let t1 = Instant::now();
    let res = if let Err(e) = pre {
        Err(e)
    } else if buf.len() as u64 != size {
        Err(libc::ENOMEM)
    } else {
        ctx.dev.write(offset, &buf, fua)
    };
    (res, elapsed_since(t1))
}

pub fn writev_f(ctx: &mut Ctx) -> CmdResult {
    let Parsed::Go((o, ops)) = write_opts(ctx, "CfqP:") else {
        return Ok(());
    };
    if ops.len() < 2 {
        return ctx.usage();
    }
    let Some(offset) = num(ctx, &ops[0]) else {
        return Ok(());
    };
    let Some(size) = iovec_total(ctx, &ops[1..]) else {
        return Ok(());
    };
    let (res, t) = vec_write(ctx, offset, size, o.pattern.unwrap_or(0xcd), o.fua);
    if let Err(e) = res {
        ctx.print(&format!("writev failed: {}\n", strerror(e)));
        return Ok(());
    }
    if !o.quiet {
        print_report(
            ctx.out,
            &Report {
                op: "wrote",
                offset: offset as i64,
                count: size as i64,
                total: size as i64,
                machine: o.machine,
            },
            t,
        );
    }
    Ok(())
}

/// Time since the epoch: the reference's `aio_write -z` measured its
/// request from a start time it never set.
pub(super) fn since_epoch() -> Elapsed {
    Elapsed::from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

pub fn flush_f(ctx: &mut Ctx) -> CmdResult {
    // The reference ignored the result of this flush.
    let _ = ctx.dev.flush();
    Ok(())
}

pub fn truncate_f(ctx: &mut Ctx) -> CmdResult {
    let arg = ctx.argv[1].clone();
    let Some(size) = num(ctx, &arg) else {
        return Ok(());
    };
    if let Err((e, msg)) = ctx.dev.truncate(size) {
        if let Some(m) = msg {
            ctx.print(&format!("{}\n", m));
        }
        ctx.print(&format!("truncate: {}\n", strerror(e)));
    }
    Ok(())
}

pub fn discard_f(ctx: &mut Ctx) -> CmdResult {
    let mut machine = false;
    let mut quiet = false;
    let argv = ctx.argv;
    let mut g = Getopt::new(argv, "Cq");
    for opt in g.by_ref() {
        match opt {
            Opt::Flag('C', _) => machine = true,
            Opt::Flag('q', _) => quiet = true,
            Opt::Bad(m) => {
                ctx.print(&m);
                return ctx.usage();
            }
            Opt::Flag(..) => return ctx.usage(),
        }
    }
    let ops = g.operands();
    if ops.len() != 2 {
        return ctx.usage();
    }
    let Some(offset) = num(ctx, &ops[0]) else {
        return Ok(());
    };
    let Some(count) = num(ctx, &ops[1]) else {
        return Ok(());
    };
    if count >> 9 > REQUEST_MAX_SECTORS {
        ctx.print(&format!(
            "length cannot exceed {}, given {}\n",
            REQUEST_MAX_SECTORS * SECTOR,
            ops[1]
        ));
        return Ok(());
    }
    let t1 = Instant::now();
    let res = ctx.dev.discard(offset, count);
    let t = elapsed_since(t1);
    if let Err(e) = res {
        ctx.print(&format!("discard failed: {}\n", strerror(e)));
        return Ok(());
    }
    if !quiet {
        let c = count as i64;
        print_report(
            ctx.out,
            &Report {
                op: "discard",
                offset: offset as i64,
                count: c,
                total: c,
                machine,
            },
            t,
        );
    }
    Ok(())
}
