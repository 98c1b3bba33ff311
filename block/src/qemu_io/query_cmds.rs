//! The commands that look at the device without changing it: length, info,
//! alloc, map. Allocation is counted in 512-byte sectors of the top layer,
//! as the reference did.

use super::args::cvtnum;
use super::commands::{CmdResult, Ctx};
use super::device::{strerror, INT_MAX, SECTOR};
use super::report::cvtstr;
use super::spec_dump::dump_specific;
use crate::node::lock;

pub fn length_f(ctx: &mut Ctx) -> CmdResult {
    match ctx.dev.length() {
        Ok(len) => {
            let s = format!("{}\n", cvtstr(len as f64));
            ctx.print(&s);
        }
        Err(e) => {
            let s = format!("getlength: {}\n", strerror(e));
            ctx.print(&s);
        }
    }
    Ok(())
}

/// Drivers that are protocols: the reference printed their name twice.
fn is_protocol(driver: &str) -> bool {
    matches!(
        driver,
        "file" | "host_device" | "host_cdrom" | "null-co" | "null-aio" | "blkdebug" | "nbd"
    )
}

pub fn info_f(ctx: &mut Ctx) -> CmdResult {
    // The reference had no answer for a drive without medium (it crashed).
    let Ok(node) = ctx.dev.node() else {
        return Ok(());
    };
    let (driver, cluster, spec) = {
        let mut g = lock(node);
        let driver = g.driver_name();
        let cluster = if driver == "qcow2" {
            g.cluster_size()
        } else {
            None
        };
        let spec = g.format_info().format_specific;
        (driver, cluster, spec)
    };
    ctx.print(&format!("format name: {}\n", driver));
    if is_protocol(driver) {
        ctx.print(&format!("format name: {}\n", driver));
    }
    // Only qcow2 answered the driver-info query among our drivers.
    let Some(cs) = cluster else {
        return Ok(());
    };
    let len = ctx.dev.length().unwrap_or(0);
    // The VM state lives just past what the L1 table can map for the disk.
    let l1_span = cs.saturating_mul(cs / 8).max(1);
    let vm_state = len.div_ceil(l1_span).saturating_mul(l1_span);
    ctx.print(&format!("cluster size: {}\n", cvtstr(cs as f64)));
    ctx.print(&format!("vm state offset: {}\n", cvtstr(vm_state as f64)));
    if let Some(spec) = spec {
        ctx.print("Format specific information:\n");
        dump_specific(ctx.out, &spec);
    }
    Ok(())
}

pub fn alloc_f(ctx: &mut Ctx) -> CmdResult {
    let arg = ctx.argv[1].clone();
    let offset = match cvtnum(&arg) {
        Ok(v) => v as u64,
        Err(e) => {
            ctx.print(&e.message(&arg));
            return Ok(());
        }
    };
    if offset & 0x1ff != 0 {
        ctx.print(&format!("offset {} is not sector aligned\n", offset));
        return Ok(());
    }
    let mut nb_sectors = 1u64;
    if let Some(a) = ctx.argv.get(2).cloned() {
        match cvtnum(&a) {
            Ok(v) if v as u64 > INT_MAX => {
                ctx.print(&format!(
                    "length argument cannot exceed {}, given {}\n",
                    INT_MAX, a
                ));
                return Ok(());
            }
            Ok(v) => nb_sectors = v as u64,
            Err(e) => {
                ctx.print(&e.message(&a));
                return Ok(());
            }
        }
    }
    let mut remaining = nb_sectors;
    let mut sum_alloc = 0u64;
    let mut sector = offset / SECTOR;
    while remaining > 0 {
        let (allocated, num) = match ctx.dev.is_allocated(sector, remaining) {
            Ok(r) => r,
            Err(e) => {
                ctx.print(&format!("is_allocated failed: {}\n", strerror(e)));
                return Ok(());
            }
        };
        sector += num;
        remaining -= num;
        if allocated {
            sum_alloc += num;
        }
        if num == 0 {
            nb_sectors -= remaining;
            remaining = 0;
        }
    }
    ctx.print(&format!(
        "{}/{} sectors allocated at offset {}\n",
        sum_alloc,
        nb_sectors,
        cvtstr(offset as f64)
    ));
    Ok(())
}

/// Allocation state of the run starting at `sector` and how many sectors
/// (up to `nb`) share it.
fn map_run(ctx: &mut Ctx, mut sector: u64, mut nb: u64) -> Result<(bool, u64), i32> {
    let (first, mut num) = ctx.dev.is_allocated(sector, nb.min(INT_MAX))?;
    let mut total = num;
    while nb > 0 {
        sector += num;
        nb -= num.min(nb);
        let (a, n) = ctx.dev.is_allocated(sector, nb.min(INT_MAX))?;
        if a == first && n > 0 {
            total += n;
            num = n;
        } else {
            break;
        }
    }
    Ok((first, total))
}

/// printf's "% Nd": a sign column (a space) and right alignment to N.
fn spaced(v: u64, width: usize) -> String {
    format!("{:>w$}", format!(" {}", v), w = width)
}

pub fn map_f(ctx: &mut Ctx) -> CmdResult {
    let total_sectors = match ctx.dev.length() {
        Ok(l) => l / SECTOR,
        Err(e) => {
            ctx.print(&format!("Failed to query image length: {}\n", strerror(e)));
            return Ok(());
        }
    };
    let mut offset = 0u64;
    let mut nb = total_sectors;
    loop {
        let (allocated, num) = match map_run(ctx, offset, nb) {
            Ok(r) => r,
            Err(e) => {
                ctx.print(&format!(
                    "Failed to get allocation status: {}\n",
                    strerror(e)
                ));
                return Ok(());
            }
        };
        if num == 0 {
            ctx.print("Unexpected end of image\n");
            return Ok(());
        }
        let line = format!(
            "[{}] {}/{} sectors {} at offset {} ({})\n",
            spaced(offset * SECTOR, 24),
            spaced(num, 8),
            spaced(nb, 8),
            if allocated {
                "    allocated"
            } else {
                "not allocated"
            },
            cvtstr((offset * SECTOR) as f64),
            u8::from(allocated)
        );
        ctx.print(&line);
        offset += num;
        nb = nb.saturating_sub(num);
        if offset >= total_sectors {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaced_keeps_a_sign_column() {
        assert_eq!(spaced(128, 8), "     128");
        assert_eq!(spaced(12345678, 8), " 12345678");
        assert_eq!(spaced(0, 24).len(), 24);
    }
}
