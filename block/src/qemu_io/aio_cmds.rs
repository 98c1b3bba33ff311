//! aio_read, aio_write and aio_flush: requests built as `AioRequest`s whose
//! completion prints what the reference printed when the request finished.

use std::time::Instant;

use super::aio::{AioDone, AioOp, AioRequest};
use super::commands::{CmdResult, Ctx};
use super::device::strerror;
use super::hooks::{AcctEvent, AcctKind, AcctResult};
use super::io_cmds::{
    alloc_buf, elapsed_since, fails_pattern, invalid, iovec_total, num, since_epoch, vec_read_opts,
    write_opts, Parsed,
};
use super::report::{dump_buffer, print_report, Elapsed, Report};
use crate::request::inflight::lock_inflight;

fn latency(t: Elapsed) -> u64 {
    t.sec * 1_000_000_000 + t.usec * 1000
}

fn acct(kind: AcctKind, bytes: u64, t: Elapsed, ok: bool) -> Option<AcctEvent> {
    Some(AcctEvent {
        kind,
        bytes,
        latency_ns: latency(t),
        result: if ok {
            AcctResult::Done
        } else {
            AcctResult::Failed
        },
    })
}

/// Hands a request to the submitter (throttling), else to the queue of
/// requests in flight, else runs it now; prints what finished.
fn issue(ctx: &mut Ctx, req: AioRequest) {
    if let (Ok(node), Some(sub)) = (ctx.dev.node(), ctx.io.aio.as_mut()) {
        sub.submit(node, req);
        return;
    }
    if let Some(q) = ctx.io.inflight.clone() {
        let acct = ctx.io.acct.as_ref().map(|a| a.share());
        let node = ctx.dev.node().ok().cloned();
        let text = lock_inflight(&q).submit(req.into_async(node, acct));
        ctx.print(&text);
        return;
    }
    let node = ctx.dev.node().ok();
    let done = req.run(node);
    ctx.print(&done.text);
    if let Some(ev) = done.acct {
        ctx.io.account(ev);
    }
}

fn report(out: &mut String, op: &str, offset: u64, size: u64, machine: bool, t: Elapsed) {
    let s = size as i64;
    let r = Report {
        op,
        offset: offset as i64,
        count: s,
        total: s,
        machine,
    };
    print_report(out, &r, t);
}

pub fn aio_read_f(ctx: &mut Ctx) -> CmdResult {
    let Parsed::Go((o, ops)) = vec_read_opts(ctx, "CP:iqv") else {
        return Ok(());
    };
    if ops.len() < 2 {
        return ctx.usage();
    }
    let Some(offset) = num(ctx, &ops[0]) else {
        return Ok(());
    };
    let Some(size) = iovec_total(ctx, &ops[1..]) else {
        ctx.io.account(invalid(AcctKind::Read));
        return Ok(());
    };
    let (machine, quiet, verbose, pattern) = (o.machine, o.quiet, o.verbose, o.pattern);
    let completion = move |res: Result<Vec<u8>, i32>, t1: Instant| {
        let t = elapsed_since(t1);
        let mut text = String::new();
        let buf = match res {
            Ok(b) => b,
            Err(e) => {
                text.push_str(&format!("readv failed: {}\n", strerror(e)));
                let acct = acct(AcctKind::Read, size, t, false);
                return AioDone { text, acct };
            }
        };
        if let Some(p) = pattern {
            if fails_pattern(&buf, p) {
                text.push_str(&format!(
                    "Pattern verification failed at offset {}, {} bytes\n",
                    offset, size
                ));
            }
        }
        if !quiet {
            if verbose {
                dump_buffer(&mut text, &buf, offset as i64);
            }
            report(&mut text, "read", offset, size, machine, t);
        }
        AioDone {
            text,
            acct: acct(AcctKind::Read, size, t, true),
        }
    };
    let req = AioRequest::new(offset, AioOp::Read { len: size }, Box::new(completion));
    issue(ctx, req);
    Ok(())
}

pub fn aio_write_f(ctx: &mut Ctx) -> CmdResult {
    let Parsed::Go((o, ops)) = write_opts(ctx, "CfiqP:uz") else {
        return Ok(());
    };
    if ops.len() < 2 {
        return ctx.usage();
    }
    if o.zero && ops.len() != 2 {
        ctx.print("-z supports only a single length parameter\n");
        return Ok(());
    }
    if o.unmap && !o.zero {
        ctx.print("-u requires -z to be specified\n");
        return Ok(());
    }
    let Some(offset) = num(ctx, &ops[0]) else {
        return Ok(());
    };
    let (machine, quiet) = (o.machine, o.quiet);
    if o.zero {
        let Some(count) = num(ctx, &ops[1]) else {
            return Ok(());
        };
        let completion = move |res: Result<Vec<u8>, i32>, _t1: Instant| {
            // The reference timed and accounted this request from a start
            // it never recorded: time since the epoch, a zero-byte read.
            let t = since_epoch();
            let acct = acct(AcctKind::Read, 0, t, res.is_ok());
            let mut text = String::new();
            match res {
                Err(e) => text.push_str(&format!("aio_write failed: {}\n", strerror(e))),
                Ok(_) if !quiet => report(&mut text, "wrote", offset, count, machine, t),
                Ok(_) => {}
            }
            AioDone { text, acct }
        };
        let op = AioOp::WriteZeroes {
            len: count,
            unmap: o.unmap,
            fua: o.fua,
        };
        issue(ctx, AioRequest::new(offset, op, Box::new(completion)));
        return Ok(());
    }
    let Some(size) = iovec_total(ctx, &ops[1..]) else {
        ctx.io.account(invalid(AcctKind::Write));
        return Ok(());
    };
    let completion = move |res: Result<Vec<u8>, i32>, t1: Instant| {
        let t = elapsed_since(t1);
        let mut text = String::new();
        match &res {
            Err(e) => text.push_str(&format!("aio_write failed: {}\n", strerror(*e))),
            Ok(_) if !quiet => report(&mut text, "wrote", offset, size, machine, t),
            Ok(_) => {}
        }
        AioDone {
            text,
            acct: acct(AcctKind::Write, size, t, res.is_ok()),
        }
    };
    // A request bound to fail the backend's checks gets no buffer.
    let data = if ctx.dev.precheck(offset, size).is_err() {
        Vec::new()
    } else {
        alloc_buf(size, o.pattern.unwrap_or(0xcd)).unwrap_or_default()
    };
    let req = if data.len() as u64 == size {
        AioRequest::new(
            offset,
            AioOp::Write { data, fua: o.fua },
            Box::new(completion),
        )
    } else {
        // Nothing to write from: fail the request as the backend would.
        let err = ctx.dev.precheck(offset, size).err().unwrap_or(libc::ENOMEM);
        let done = completion(Err(err), Instant::now());
        ctx.print(&done.text);
        if let Some(ev) = done.acct {
            ctx.io.account(ev);
        }
        return Ok(());
    };
    issue(ctx, req);
    Ok(())
}

pub fn aio_flush_f(ctx: &mut Ctx) -> CmdResult {
    let t1 = Instant::now();
    if let Some(sub) = ctx.io.aio.as_mut() {
        sub.drain(ctx.out);
    }
    // Requests stopped at a breakpoint stay stopped: QEMU would wait here
    // for ever, as nothing could resume them.
    if let Some(q) = ctx.io.inflight.clone() {
        let text = lock_inflight(&q).run();
        ctx.print(&text);
    }
    let t = Elapsed::from(t1.elapsed());
    ctx.io.account(AcctEvent {
        kind: AcctKind::Flush,
        bytes: 0,
        latency_ns: latency(t),
        result: AcctResult::Done,
    });
    Ok(())
}
