//! HMP `x /fmt addr` (virtual, through the current vCPU's page tables)
//! and `xp /fmt addr` (physical): guest memory in QEMU's dump layout;
//! `memsave`, `pmemsave` and `nmi`; `info mtree`.
//!
//! The format is `/[count][format][size]`: format one of x d u o c (i,
//! disassembly, is not offered), size b h w g (or L). Like QEMU, the last
//! format and size given become the defaults of later dumps.

use std::sync::atomic::{AtomicU8, Ordering};

use hw::memory::paging::{read_virt, PagingMode};
use qmp::error::QmpError;

use super::HmpArgs;
use crate::emulator::Emulator;
use crate::qmp_cmds::CmdCtx;

static DEFAULT_FORMAT: AtomicU8 = AtomicU8::new(b'x');
static DEFAULT_SIZE: AtomicU8 = AtomicU8::new(4);

/// A parsed `/fmt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpFormat {
    pub count: u64,
    pub format: u8,
    pub size: usize,
}

/// Splits `/fmt addr` into the format and the rest; the error is the
/// line QEMU prints.
fn parse_format(line: &str) -> Result<(DumpFormat, &str), String> {
    let s = line.trim_start();
    let Some(f) = s.strip_prefix('/') else {
        return Ok((
            DumpFormat {
                count: 1,
                format: DEFAULT_FORMAT.load(Ordering::Relaxed),
                size: DEFAULT_SIZE.load(Ordering::Relaxed) as usize,
            },
            s,
        ));
    };
    let digits = f.bytes().take_while(u8::is_ascii_digit).count();
    let count = if digits == 0 {
        1
    } else {
        f[..digits].parse::<u64>().unwrap_or(u64::MAX)
    };
    let mut format = None;
    let mut size = None;
    let mut rest = &f[digits..];
    while let Some(c) = rest.bytes().next() {
        match c {
            b'o' | b'd' | b'u' | b'x' | b'c' | b'i' => format = Some(c),
            b'b' => size = Some(1),
            b'h' => size = Some(2),
            b'w' => size = Some(4),
            b'g' | b'L' => size = Some(8),
            _ => break,
        }
        rest = &rest[1..];
    }
    if let Some(c) = rest.chars().next() {
        if !c.is_whitespace() {
            return Err(format!("invalid char in format: '{c}'"));
        }
    }
    let format = format.unwrap_or(DEFAULT_FORMAT.load(Ordering::Relaxed));
    let size = size.unwrap_or(DEFAULT_SIZE.load(Ordering::Relaxed) as usize);
    if format == b'i' {
        return Err("disassembly (/i) is not supported by this emulator".into());
    }
    DEFAULT_SIZE.store(size as u8, Ordering::Relaxed);
    DEFAULT_FORMAT.store(format, Ordering::Relaxed);
    Ok((
        DumpFormat {
            count,
            format,
            size,
        },
        rest,
    ))
}

/// HMP integers: decimal, 0x hex or leading-0 octal.
fn parse_addr(s: &str) -> Option<u64> {
    let t = s.trim();
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if t.len() > 1 && t.starts_with('0') {
        u64::from_str_radix(&t[1..], 8).ok()
    } else {
        t.parse().ok()
    }
}

/// One value as QEMU's monitor_printc shows a character.
fn printc(v: u64, out: &mut String) {
    out.push('\'');
    match v as u8 {
        b'\'' => out.push_str("\\'"),
        b'\\' => out.push_str("\\\\"),
        b'\n' => out.push_str("\\n"),
        b'\r' => out.push_str("\\r"),
        c @ 32..=126 => out.push(c as char),
        c => out.push_str(&format!("\\x{c:02x}")),
    }
    out.push('\'');
}

/// Formats `len` bytes from `read` starting at `addr`; `read` returns
/// None for memory that cannot be accessed (virtual dumps stop there).
pub fn dump(
    f: DumpFormat,
    addr: u64,
    mut read: impl FnMut(u64, &mut [u8]) -> Option<()>,
    out: &mut String,
) {
    let mut wsize = f.size;
    let max_digits = match f.format {
        b'o' => (wsize * 8).div_ceil(3),
        b'u' | b'd' => (wsize * 80).div_ceil(33),
        b'c' => {
            wsize = 1;
            0
        }
        _ => wsize * 2,
    };
    let line_size = if wsize == 1 { 8 } else { 16 };
    // A count from the user may be huge; QEMU would print it all, a
    // monitor reply is better kept to a sane length.
    let mut len = f.count.saturating_mul(wsize as u64).min(1 << 20);
    let mut addr = addr;
    while len > 0 {
        out.push_str(&format!("{addr:016x}:"));
        let l = len.min(line_size) as usize;
        let mut buf = [0u8; 16];
        if read(addr, &mut buf[..l]).is_none() {
            out.push_str(" Cannot access memory\n");
            return;
        }
        let mut i = 0;
        while i < l {
            let mut b = [0u8; 8];
            let n = wsize.min(l - i);
            b[..n].copy_from_slice(&buf[i..i + n]);
            let v = u64::from_le_bytes(b);
            out.push(' ');
            match f.format {
                b'o' => {
                    let s = if v == 0 {
                        "0".to_string()
                    } else {
                        format!("0{v:o}")
                    };
                    out.push_str(&format!("{s:>max_digits$}"));
                }
                b'u' => out.push_str(&format!("{v:>max_digits$}")),
                b'd' => {
                    let sv = match wsize {
                        1 => v as u8 as i8 as i64,
                        2 => v as u16 as i16 as i64,
                        4 => v as u32 as i32 as i64,
                        _ => v as i64,
                    };
                    // QEMU prints the unsigned load with %d of 64 bits,
                    // so narrow values never show negative.
                    let shown = if wsize == 8 { sv } else { v as i64 };
                    out.push_str(&format!("{shown:>max_digits$}"));
                }
                b'c' => printc(v, out),
                _ => out.push_str(&format!("0x{v:0max_digits$x}")),
            }
            i += wsize;
        }
        out.push('\n');
        addr = addr.wrapping_add(l as u64);
        len -= l as u64;
    }
}

fn parse_line(args: &HmpArgs) -> Result<(DumpFormat, u64), String> {
    let line = args.get("args").and_then(|v| v.as_str()).unwrap_or("");
    let (f, rest) = parse_format(line)?;
    let rest = rest.trim();
    if rest.is_empty() {
        return Err("Parameter 'addr' is missing".into());
    }
    let addr = parse_addr(rest).ok_or_else(|| format!("invalid char in expression: '{rest}'"))?;
    Ok((f, addr))
}

/// `xp /fmt addr`.
pub fn xp(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let (f, addr) = match parse_line(args) {
        Ok(v) => v,
        Err(e) => {
            out.push_str(&e);
            out.push('\n');
            return Ok(());
        }
    };
    let m = &emu.machine;
    dump(
        f,
        addr,
        |a, buf| {
            m.read_phys(a, buf);
            Some(())
        },
        out,
    );
    Ok(())
}

/// `x /fmt addr`: virtual addresses of the monitor's current vCPU.
pub fn x(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    args: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let (f, addr) = match parse_line(args) {
        Ok(v) => v,
        Err(e) => {
            out.push_str(&e);
            out.push('\n');
            return Ok(());
        }
    };
    let cpu = ctx.monitor.map_or(0, |m| emu.monitor_cpu(m));
    // Without a running vCPU (qtest) nothing is paged: virtual is physical.
    let mode = emu
        .machine
        .cpu_state(cpu)
        .map(|s| PagingMode::from_sregs(&s.sregs))
        .unwrap_or_default();
    let mem = emu.machine.mem.clone();
    dump(f, addr, |a, buf| read_virt(&mem, &mode, a, buf), out);
    Ok(())
}

/// `memsave addr size file`: virtual memory of the monitor's vCPU.
pub fn memsave(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    args: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let cpu = ctx.monitor.map_or(0, |m| emu.monitor_cpu(m));
    crate::qmp_cmds::cpus::memsave_on(emu, cpu, args).map(|_| ())
}

/// `pmemsave addr size file`.
pub fn pmemsave(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    args: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    crate::qmp_cmds::cpus::pmemsave(emu, ctx, args).map(|_| ())
}

/// `nmi`: inject-nmi.
pub fn nmi(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    args: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    crate::qmp_cmds::cpus::inject_nmi(emu, ctx, args).map(|_| ())
}

/// One line of `info mtree` (QEMU 2.8's layout): `level` two-space
/// indents, the range, priority, R/W flags, the name or alias.
fn mtree_line(
    out: &mut String,
    level: usize,
    start: u64,
    size: u64,
    prio: i32,
    rw: &str,
    what: &str,
) {
    let end = start.wrapping_add(size.saturating_sub(1));
    out.push_str(&"  ".repeat(level));
    out.push_str(&format!(
        "{start:016x}-{end:016x} (prio {prio}, {rw}): {what}\n"
    ));
}

/// `info mtree`: the memory and I/O address spaces of the machine as
/// QEMU's pc lays them out, then the regions the aliases point into.
pub fn info_mtree(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    _: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    out.push_str("address-space: memory\n");
    out.push_str("  0000000000000000-ffffffffffffffff (prio 0, RW): system\n");
    let Some(pc) = emu.machine.pc() else {
        out.push_str("\naddress-space: I/O\n");
        out.push_str("  0000000000000000-000000000000ffff (prio 0, RW): io\n\n");
        return Ok(());
    };
    let layout = emu.machine.mem.layout();
    let bios = emu
        .machine
        .mem
        .blocks()
        .iter()
        .filter(|b| b.read_only && b.gpa >= 0x1_0000_0000 - b.size && b.gpa < 0x1_0000_0000)
        .map(|b| (b.gpa, b.size))
        .next();
    // Submregions of "system", sorted by address then priority (higher first).
    let mut subs: Vec<(u64, i32, String)> = Vec::new();
    let mut line = String::new();
    mtree_line(
        &mut line,
        2,
        0,
        layout.below_4g,
        0,
        "RW",
        &format!(
            "alias ram-below-4g @pc.ram 0000000000000000-{:016x}",
            layout.below_4g - 1
        ),
    );
    subs.push((0, 0, line));
    let mut pci = String::new();
    pci.push_str("    0000000000000000-ffffffffffffffff (prio -1, RW): pci\n");
    if let Some((gpa, size)) = bios {
        let isa = size.min(128 << 10);
        mtree_line(
            &mut pci,
            3,
            0x10_0000 - isa,
            isa,
            1,
            "R-",
            &format!(
                "alias isa-bios @pc.bios {:016x}-{:016x}",
                size - isa,
                size - 1
            ),
        );
        mtree_line(&mut pci, 3, gpa, size, 0, "R-", "pc.bios");
    }
    subs.push((0, -1, pci));
    // The interrupt controllers' windows (in the kernel under KVM).
    let kvm = emu.machine.has_vcpus();
    for (base, len, prio, name) in [
        (
            0xfec0_0000u64,
            0x1000u64,
            0,
            if kvm { "kvm-ioapic" } else { "ioapic" },
        ),
        (
            0xfee0_0000,
            0x10_0000,
            4096,
            if kvm { "kvm-apic-msi" } else { "apic-msi" },
        ),
    ] {
        let mut l = String::new();
        mtree_line(&mut l, 2, base, len, prio, "RW", name);
        subs.push((base, prio, l));
    }
    for r in pc.mmio.ranges() {
        let mut l = String::new();
        mtree_line(&mut l, 2, r.base, r.len, 0, "RW", &r.name);
        subs.push((r.base, 0, l));
    }
    if layout.above_4g > 0 {
        let mut l = String::new();
        mtree_line(
            &mut l,
            2,
            0x1_0000_0000,
            layout.above_4g,
            0,
            "RW",
            &format!(
                "alias ram-above-4g @pc.ram {:016x}-{:016x}",
                layout.below_4g,
                layout.below_4g + layout.above_4g - 1
            ),
        );
        subs.push((0x1_0000_0000, 0, l));
    }
    subs.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    for (_, _, l) in subs {
        out.push_str(&l);
    }
    out.push_str("\naddress-space: I/O\n");
    out.push_str("  0000000000000000-000000000000ffff (prio 0, RW): io\n");
    for r in pc.pio.ranges() {
        mtree_line(out, 2, r.base, r.len, 0, "RW", &r.name);
    }
    out.push_str("\nmemory-region: pc.ram\n");
    mtree_line(out, 1, 0, layout.ram_size, 0, "RW", "pc.ram");
    if let Some((_, size)) = bios {
        out.push_str("\nmemory-region: pc.bios\n");
        mtree_line(out, 1, 0, size, 0, "R-", "pc.bios");
    }
    out.push('\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump_of(bytes: &[u8], fmt: &str, addr: u64) -> String {
        let (f, _) = parse_format(fmt).expect("format");
        let mut out = String::new();
        dump(
            f,
            addr,
            |a, buf| {
                let start = (a - addr) as usize;
                buf.copy_from_slice(&bytes[start..start + buf.len()]);
                Some(())
            },
            &mut out,
        );
        out
    }

    #[test]
    fn words_in_hex_sixteen_bytes_a_line() {
        let bytes: Vec<u8> = (0u8..32).collect();
        assert_eq!(
            dump_of(&bytes, "/6xw", 0x1000),
            "0000000000001000: 0x03020100 0x07060504 0x0b0a0908 0x0f0e0d0c\n\
             0000000000001010: 0x13121110 0x17161514\n"
        );
    }

    #[test]
    fn bytes_eight_a_line_and_chars_escaped() {
        let bytes = b"ab'\\\n\x01cdefgh";
        assert_eq!(
            dump_of(bytes, "/6cb", 0),
            "0000000000000000: 'a' 'b' '\\'' '\\\\' '\\n' '\\x01'\n"
        );
    }

    #[test]
    fn decimal_unsigned_and_octal_are_padded() {
        let bytes = [0xffu8, 0, 8, 0];
        assert_eq!(
            dump_of(&bytes, "/2uh", 0),
            "0000000000000000:   255     8\n"
        );
        assert_eq!(dump_of(&bytes, "/1ob", 0), "0000000000000000: 0377\n");
    }

    #[test]
    fn a_bad_format_character_is_named() {
        assert_eq!(
            parse_format("/3z 0").unwrap_err(),
            "invalid char in format: 'z'"
        );
    }
}
