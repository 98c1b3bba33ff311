//! HMP `info registers`: one vCPU's state in QEMU's x86 dump layout.

use hw::kvm_bindings::{kvm_debugregs, kvm_segment};

use qmp::error::QmpError;

use super::HmpArgs;
use crate::emulator::Emulator;
use crate::qmp_cmds::CmdCtx;

const DESC_A: u32 = 1 << 8;
const DESC_W_R: u32 = 1 << 9;
const DESC_E_C: u32 = 1 << 10;
const DESC_CS: u32 = 1 << 11;
const DESC_S: u32 = 1 << 12;
const DESC_P: u32 = 1 << 15;
const DESC_L: u32 = 1 << 21;
const DESC_B: u32 = 1 << 22;

const SYS_TYPE_NAMES: [[&str; 16]; 2] = [
    [
        "Reserved",
        "TSS16-avl",
        "LDT",
        "TSS16-busy",
        "CallGate16",
        "TaskGate",
        "IntGate16",
        "TrapGate16",
        "Reserved",
        "TSS32-avl",
        "Reserved",
        "TSS32-busy",
        "CallGate32",
        "Reserved",
        "IntGate32",
        "TrapGate32",
    ],
    [
        "<hiword>",
        "Reserved",
        "LDT",
        "Reserved",
        "Reserved",
        "Reserved",
        "Reserved",
        "Reserved",
        "Reserved",
        "TSS64-avl",
        "Reserved",
        "TSS64-busy",
        "CallGate64",
        "Reserved",
        "IntGate64",
        "TrapGate64",
    ],
];

/// QEMU's descriptor-cache flags from KVM's unpacked segment.
fn seg_flags(s: &kvm_segment) -> u32 {
    crate::dump::Segment::flags_from_kvm(s.type_, s.present, s.dpl, s.db, s.s, s.l, s.g, s.avl)
}

struct Mode {
    cs64: bool,
    pe: bool,
    lma: bool,
}

fn seg_line(out: &mut String, m: &Mode, name: &str, s: &kvm_segment) {
    let flags = seg_flags(s);
    if m.cs64 {
        out.push_str(&format!(
            "{name:<3}={:04x} {:016x} {:08x} {:08x}",
            s.selector,
            s.base,
            s.limit,
            flags & 0x00ff_ff00
        ));
    } else {
        out.push_str(&format!(
            "{name:<3}={:04x} {:08x} {:08x} {:08x}",
            s.selector,
            s.base as u32,
            s.limit,
            flags & 0x00ff_ff00
        ));
    }
    if m.pe && flags & DESC_P != 0 {
        out.push_str(&format!(" DPL={} ", (flags >> 13) & 3));
        if flags & DESC_S != 0 {
            let bit = |b: u32, c: char| if flags & b != 0 { c } else { '-' };
            if flags & DESC_CS != 0 {
                out.push_str(if flags & DESC_L != 0 {
                    "CS64"
                } else if flags & DESC_B != 0 {
                    "CS32"
                } else {
                    "CS16"
                });
                out.push_str(&format!(" [{}{}", bit(DESC_E_C, 'C'), bit(DESC_W_R, 'R')));
            } else {
                out.push_str(if flags & DESC_B != 0 || m.lma {
                    "DS  "
                } else {
                    "DS16"
                });
                out.push_str(&format!(" [{}{}", bit(DESC_E_C, 'E'), bit(DESC_W_R, 'W')));
            }
            out.push_str(&format!("{}]", bit(DESC_A, 'A')));
        } else {
            out.push_str(SYS_TYPE_NAMES[usize::from(m.lma)][((flags >> 8) & 15) as usize]);
        }
    }
    out.push('\n');
}

pub fn format_registers(st: &hw::kvm::CpuState, dr: &kvm_debugregs) -> String {
    let r = &st.regs;
    let s = &st.sregs;
    let lma = s.efer & (1 << 10) != 0;
    let m = Mode {
        cs64: lma && s.cs.l != 0,
        pe: s.cr0 & 1 != 0,
        lma,
    };
    let fl = r.rflags;
    let f = |bit: u64, c: char| if fl & bit != 0 { c } else { '-' };
    let flag_str = format!(
        "[{}{}{}{}{}{}{}]",
        f(1 << 10, 'D'),
        f(1 << 11, 'O'),
        f(1 << 7, 'S'),
        f(1 << 6, 'Z'),
        f(1 << 4, 'A'),
        f(1 << 2, 'P'),
        f(1, 'C')
    );
    let tail = format!(
        "CPL={} II=0 A20=1 SMM=0 HLT={}",
        s.ss.dpl & 3,
        u8::from(st.halted())
    );
    let mut out = String::new();
    if m.cs64 {
        out.push_str(&format!(
            "RAX={:016x} RBX={:016x} RCX={:016x} RDX={:016x}\n\
             RSI={:016x} RDI={:016x} RBP={:016x} RSP={:016x}\n\
             R8 ={:016x} R9 ={:016x} R10={:016x} R11={:016x}\n\
             R12={:016x} R13={:016x} R14={:016x} R15={:016x}\n\
             RIP={:016x} RFL={:08x} {flag_str} {tail}\n",
            r.rax,
            r.rbx,
            r.rcx,
            r.rdx,
            r.rsi,
            r.rdi,
            r.rbp,
            r.rsp,
            r.r8,
            r.r9,
            r.r10,
            r.r11,
            r.r12,
            r.r13,
            r.r14,
            r.r15,
            r.rip,
            fl as u32
        ));
    } else {
        out.push_str(&format!(
            "EAX={:08x} EBX={:08x} ECX={:08x} EDX={:08x}\n\
             ESI={:08x} EDI={:08x} EBP={:08x} ESP={:08x}\n\
             EIP={:08x} EFL={:08x} {flag_str} {tail}\n",
            r.rax as u32,
            r.rbx as u32,
            r.rcx as u32,
            r.rdx as u32,
            r.rsi as u32,
            r.rdi as u32,
            r.rbp as u32,
            r.rsp as u32,
            r.rip as u32,
            fl as u32
        ));
    }
    for (name, seg) in [
        ("ES", &s.es),
        ("CS", &s.cs),
        ("SS", &s.ss),
        ("DS", &s.ds),
        ("FS", &s.fs),
        ("GS", &s.gs),
    ] {
        seg_line(&mut out, &m, name, seg);
    }
    seg_line(&mut out, &m, "LDT", &s.ldt);
    seg_line(&mut out, &m, "TR", &s.tr);
    if lma {
        out.push_str(&format!(
            "GDT=     {:016x} {:08x}\n",
            s.gdt.base, s.gdt.limit
        ));
        out.push_str(&format!(
            "IDT=     {:016x} {:08x}\n",
            s.idt.base, s.idt.limit
        ));
        out.push_str(&format!(
            "CR0={:08x} CR2={:016x} CR3={:016x} CR4={:08x}\n",
            s.cr0 as u32, s.cr2, s.cr3, s.cr4 as u32
        ));
        for i in 0..4 {
            out.push_str(&format!("DR{i}={:016x} ", dr.db[i]));
        }
        out.push_str(&format!("\nDR6={:016x} DR7={:016x}\n", dr.dr6, dr.dr7));
    } else {
        out.push_str(&format!(
            "GDT=     {:08x} {:08x}\n",
            s.gdt.base as u32, s.gdt.limit
        ));
        out.push_str(&format!(
            "IDT=     {:08x} {:08x}\n",
            s.idt.base as u32, s.idt.limit
        ));
        out.push_str(&format!(
            "CR0={:08x} CR2={:08x} CR3={:08x} CR4={:08x}\n",
            s.cr0 as u32, s.cr2 as u32, s.cr3 as u32, s.cr4 as u32
        ));
        for i in 0..4 {
            out.push_str(&format!("DR{i}={:016x} ", dr.db[i]));
        }
        out.push_str(&format!("\nDR6={:016x} DR7={:016x}\n", dr.dr6, dr.dr7));
    }
    out.push_str(&format!("EFER={:016x}\n", s.efer));
    let fpu = &st.fpu;
    out.push_str(&format!(
        "FCW={:04x} FSW={:04x} [ST={}] FTW={:02x} MXCSR={:08x}\n",
        fpu.fcw,
        fpu.fsw,
        (fpu.fsw >> 11) & 7,
        fpu.ftwx,
        fpu.mxcsr
    ));
    for (i, reg) in fpu.fpr.iter().enumerate() {
        let lower = u64::from_le_bytes([
            reg[0], reg[1], reg[2], reg[3], reg[4], reg[5], reg[6], reg[7],
        ]);
        let upper = u16::from_le_bytes([reg[8], reg[9]]);
        out.push_str(&format!("FPR{i}={lower:016x} {upper:04x}"));
        out.push(if i & 1 == 1 { '\n' } else { ' ' });
    }
    let nb = if m.cs64 { 16 } else { 8 };
    for (i, x) in fpu.xmm.iter().take(nb).enumerate() {
        let l = |k: usize| u32::from_le_bytes([x[k * 4], x[k * 4 + 1], x[k * 4 + 2], x[k * 4 + 3]]);
        out.push_str(&format!(
            "XMM{i:02}={:08x}{:08x}{:08x}{:08x}",
            l(3),
            l(2),
            l(1),
            l(0)
        ));
        out.push(if i & 1 == 1 { '\n' } else { ' ' });
    }
    out
}

pub fn info_registers(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    _: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let cpu = ctx.monitor.map_or(0, |m| emu.monitor_cpu(m));
    match emu.machine.cpu_registers(cpu) {
        Some((st, dr)) => out.push_str(&format_registers(&st, &dr)),
        None => out.push_str("No CPU available\n"),
    }
    Ok(())
}
