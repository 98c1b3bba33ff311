//! A vCPU's architectural state as QEMU's `info registers`, `query-cpus` and an ELF
//! core's NT_PRSTATUS need it.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};

/// MSR indices saved with the state.
pub const MSR_TSC: u32 = 0x10;
pub const MSR_APIC_BASE: u32 = 0x1b;
pub const MSR_SYSENTER_CS: u32 = 0x174;
pub const MSR_SYSENTER_ESP: u32 = 0x175;
pub const MSR_SYSENTER_EIP: u32 = 0x176;
pub const MSR_PAT: u32 = 0x277;
pub const MSR_EFER: u32 = 0xc000_0080;
pub const MSR_STAR: u32 = 0xc000_0081;
pub const MSR_LSTAR: u32 = 0xc000_0082;
pub const MSR_CSTAR: u32 = 0xc000_0083;
pub const MSR_FMASK: u32 = 0xc000_0084;
pub const MSR_FS_BASE: u32 = 0xc000_0100;
pub const MSR_GS_BASE: u32 = 0xc000_0101;
pub const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

pub(crate) const SAVED_MSRS: [u32; 10] = [
    MSR_TSC,
    MSR_SYSENTER_CS,
    MSR_SYSENTER_ESP,
    MSR_SYSENTER_EIP,
    MSR_PAT,
    MSR_STAR,
    MSR_LSTAR,
    MSR_CSTAR,
    MSR_FMASK,
    MSR_KERNEL_GS_BASE,
];

/// MSR values read with the state (absent ones were not readable on this host).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedMsrs(pub Vec<(u32, u64)>);

impl SavedMsrs {
    pub fn get(&self, index: u32) -> Option<u64> {
        self.0.iter().find(|(i, _)| *i == index).map(|(_, v)| *v)
    }
}

/// Registers of one vCPU at one moment.
#[derive(Debug, Clone)]
pub struct CpuState {
    pub index: usize,
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub fpu: kvm_fpu,
    pub msrs: SavedMsrs,
    /// KVM_MP_STATE_* value (HALTED for `query-cpus`'s `halted`).
    pub mp_state: u32,
    /// DR0-DR3, DR6, DR7.
    pub debugregs: [u64; 6],
}

impl CpuState {
    /// The program counter as QEMU reports it (`pc` in query-cpus): CS base + RIP.
    pub fn pc(&self) -> u64 {
        self.sregs.cs.base.wrapping_add(self.regs.rip)
    }

    pub fn halted(&self) -> bool {
        self.mp_state == kvm_bindings::KVM_MP_STATE_HALTED
    }

    /// General registers in the order of Linux's x86-64 `user_regs_struct` (the
    /// `pr_reg` of an NT_PRSTATUS note): r15, r14, r13, r12, rbp, rbx, r11, r10, r9,
    /// r8, rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs, eflags, rsp, ss, fs_base,
    /// gs_base, ds, es, fs, gs.
    pub fn prstatus_regs(&self) -> [u64; 27] {
        let r = &self.regs;
        let s = &self.sregs;
        [
            r.r15,
            r.r14,
            r.r13,
            r.r12,
            r.rbp,
            r.rbx,
            r.r11,
            r.r10,
            r.r9,
            r.r8,
            r.rax,
            r.rcx,
            r.rdx,
            r.rsi,
            r.rdi,
            0, // orig_rax: no system call in progress (QEMU writes 0 too)
            r.rip,
            s.cs.selector as u64,
            r.rflags,
            r.rsp,
            s.ss.selector as u64,
            s.fs.base,
            s.gs.base,
            s.ds.selector as u64,
            s.es.selector as u64,
            s.fs.selector as u64,
            s.gs.selector as u64,
        ]
    }

    /// Long mode active (EFER.LMA): 64-bit register dumps and NT_PRSTATUS.
    pub fn long_mode(&self) -> bool {
        self.sregs.efer & (1 << 10) != 0
    }
}

/// QEMU's segment-cache flags word (descriptor high dword layout) from a KVM segment.
fn seg_flags(s: &kvm_bindings::kvm_segment) -> u32 {
    let present = s.present != 0 && s.unusable == 0;
    ((s.type_ as u32) << 8)
        | ((s.s as u32) << 12)
        | ((s.dpl as u32) << 13)
        | ((present as u32) << 15)
        | ((s.avl as u32) << 20)
        | ((s.l as u32) << 21)
        | ((s.db as u32) << 22)
        | ((s.g as u32) << 23)
}

const SYS_TYPES_32: [&str; 16] = [
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
];
const SYS_TYPES_64: [&str; 16] = [
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
];

impl CpuState {
    fn cs64(&self) -> bool {
        self.long_mode() && self.sregs.cs.l != 0
    }

    fn protected(&self) -> bool {
        self.sregs.cr0 & 1 != 0
    }

    fn seg_line(&self, out: &mut String, name: &str, s: &kvm_bindings::kvm_segment) {
        use std::fmt::Write;
        let flags = seg_flags(s);
        if self.cs64() {
            let _ = write!(
                out,
                "{name:<3}={:04x} {:016x} {:08x} {:08x}",
                s.selector,
                s.base,
                s.limit,
                flags & 0x00ff_ff00
            );
        } else {
            let _ = write!(
                out,
                "{name:<3}={:04x} {:08x} {:08x} {:08x}",
                s.selector,
                s.base as u32,
                s.limit,
                flags & 0x00ff_ff00
            );
        }
        if self.protected() && flags & (1 << 15) != 0 {
            let _ = write!(out, " DPL={} ", (flags >> 13) & 3);
            if flags & (1 << 12) != 0 {
                let bit = |b: u32, c: char| if flags & (1 << b) != 0 { c } else { '-' };
                if flags & (1 << 11) != 0 {
                    let kind = if flags & (1 << 21) != 0 {
                        "CS64"
                    } else if flags & (1 << 22) != 0 {
                        "CS32"
                    } else {
                        "CS16"
                    };
                    let _ = write!(out, "{kind} [{}{}", bit(10, 'C'), bit(9, 'R'));
                } else {
                    let kind = if flags & (1 << 22) != 0 || self.long_mode() {
                        "DS  "
                    } else {
                        "DS16"
                    };
                    let _ = write!(out, "{kind} [{}{}", bit(10, 'E'), bit(9, 'W'));
                }
                let _ = write!(out, "{}]", bit(8, 'A'));
            } else {
                let table = if self.long_mode() {
                    &SYS_TYPES_64
                } else {
                    &SYS_TYPES_32
                };
                out.push_str(table[((flags >> 8) & 0xf) as usize]);
            }
        }
        out.push('\n');
    }

    /// The text of QEMU's HMP `info registers` (x86 dump with FPU state).
    pub fn info_registers(&self) -> String {
        use std::fmt::Write;
        let r = &self.regs;
        let s = &self.sregs;
        let mut o = String::new();
        let fl = r.rflags as u32;
        let f = |b: u32, c: char| if fl & (1 << b) != 0 { c } else { '-' };
        let flag_str = format!(
            "[{}{}{}{}{}{}{}]",
            f(10, 'D'),
            f(11, 'O'),
            f(7, 'S'),
            f(6, 'Z'),
            f(4, 'A'),
            f(2, 'P'),
            f(0, 'C')
        );
        let cpl = if self.protected() { s.ss.dpl } else { 0 };
        let tail = format!("CPL={cpl} II=0 A20=1 SMM=0 HLT={}", u8::from(self.halted()));
        if self.cs64() {
            let _ = writeln!(
                o,
                "RAX={:016x} RBX={:016x} RCX={:016x} RDX={:016x}",
                r.rax, r.rbx, r.rcx, r.rdx
            );
            let _ = writeln!(
                o,
                "RSI={:016x} RDI={:016x} RBP={:016x} RSP={:016x}",
                r.rsi, r.rdi, r.rbp, r.rsp
            );
            let _ = writeln!(
                o,
                "R8 ={:016x} R9 ={:016x} R10={:016x} R11={:016x}",
                r.r8, r.r9, r.r10, r.r11
            );
            let _ = writeln!(
                o,
                "R12={:016x} R13={:016x} R14={:016x} R15={:016x}",
                r.r12, r.r13, r.r14, r.r15
            );
            let _ = writeln!(o, "RIP={:016x} RFL={:08x} {flag_str} {tail}", r.rip, fl);
        } else {
            let _ = writeln!(
                o,
                "EAX={:08x} EBX={:08x} ECX={:08x} EDX={:08x}",
                r.rax as u32, r.rbx as u32, r.rcx as u32, r.rdx as u32
            );
            let _ = writeln!(
                o,
                "ESI={:08x} EDI={:08x} EBP={:08x} ESP={:08x}",
                r.rsi as u32, r.rdi as u32, r.rbp as u32, r.rsp as u32
            );
            let _ = writeln!(
                o,
                "EIP={:08x} EFL={:08x} {flag_str} {tail}",
                r.rip as u32, fl
            );
        }
        for (name, seg) in [
            ("ES", &s.es),
            ("CS", &s.cs),
            ("SS", &s.ss),
            ("DS", &s.ds),
            ("FS", &s.fs),
            ("GS", &s.gs),
            ("LDT", &s.ldt),
            ("TR", &s.tr),
        ] {
            self.seg_line(&mut o, name, seg);
        }
        if self.long_mode() {
            let _ = writeln!(o, "GDT=     {:016x} {:08x}", s.gdt.base, s.gdt.limit);
            let _ = writeln!(o, "IDT=     {:016x} {:08x}", s.idt.base, s.idt.limit);
            let _ = writeln!(
                o,
                "CR0={:08x} CR2={:016x} CR3={:016x} CR4={:08x}",
                s.cr0 as u32, s.cr2, s.cr3, s.cr4 as u32
            );
        } else {
            let _ = writeln!(o, "GDT=     {:08x} {:08x}", s.gdt.base as u32, s.gdt.limit);
            let _ = writeln!(o, "IDT=     {:08x} {:08x}", s.idt.base as u32, s.idt.limit);
            let _ = writeln!(
                o,
                "CR0={:08x} CR2={:08x} CR3={:08x} CR4={:08x}",
                s.cr0 as u32, s.cr2 as u32, s.cr3 as u32, s.cr4 as u32
            );
        }
        for i in 0..4 {
            let _ = write!(o, "DR{i}={:016x} ", self.debugregs[i]);
        }
        let _ = writeln!(
            o,
            "\nDR6={:016x} DR7={:016x}",
            self.debugregs[4], self.debugregs[5]
        );
        let _ = writeln!(o, "EFER={:016x}", s.efer);
        let fpu = &self.fpu;
        let _ = writeln!(
            o,
            "FCW={:04x} FSW={:04x} [ST={}] FTW={:02x} MXCSR={:08x}",
            fpu.fcw,
            fpu.fsw,
            (fpu.fsw >> 11) & 7,
            fpu.ftwx,
            fpu.mxcsr
        );
        for (i, reg) in fpu.fpr.iter().enumerate() {
            let mut lo = [0u8; 8];
            lo.copy_from_slice(&reg[..8]);
            let hi = u16::from_le_bytes([reg[8], reg[9]]);
            let _ = write!(o, "FPR{i}={:016x} {hi:04x}", u64::from_le_bytes(lo));
            o.push(if i & 1 == 1 { '\n' } else { ' ' });
        }
        let nb = if self.cs64() { 16 } else { 8 };
        for (i, x) in fpu.xmm.iter().take(nb).enumerate() {
            let _ = write!(o, "XMM{i:02}={:032x}", u128::from_le_bytes(*x));
            o.push(if i & 1 == 1 { '\n' } else { ' ' });
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};

    fn real_mode_reset() -> CpuState {
        let seg = |sel: u16, base: u64, t: u8| kvm_segment {
            selector: sel,
            base,
            limit: 0xffff,
            type_: t,
            present: 1,
            s: 1,
            ..Default::default()
        };
        let mut sregs = kvm_sregs {
            cs: seg(0xf000, 0xffff_0000, 0xb),
            ds: seg(0, 0, 3),
            es: seg(0, 0, 3),
            fs: seg(0, 0, 3),
            gs: seg(0, 0, 3),
            ss: seg(0, 0, 3),
            cr0: 0x6000_0010,
            ..Default::default()
        };
        sregs.ldt = kvm_segment {
            limit: 0xffff,
            type_: 2,
            present: 1,
            ..Default::default()
        };
        sregs.tr = kvm_segment {
            limit: 0xffff,
            type_: 0xb,
            present: 1,
            ..Default::default()
        };
        sregs.gdt.limit = 0xffff;
        sregs.idt.limit = 0xffff;
        let regs = kvm_regs {
            rip: 0xfff0,
            rflags: 2,
            rdx: 0x663,
            ..Default::default()
        };
        let fpu = kvm_fpu {
            fcw: 0x37f,
            mxcsr: 0x1f80,
            ..Default::default()
        };
        CpuState {
            index: 0,
            regs,
            sregs,
            fpu,
            msrs: SavedMsrs::default(),
            mp_state: 0,
            debugregs: [0, 0, 0, 0, 0xffff0ff0, 0x400],
        }
    }

    #[test]
    fn reset_state_prints_like_qemu_info_registers() {
        let text = real_mode_reset().info_registers();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "EAX=00000000 EBX=00000000 ECX=00000000 EDX=00000663"
        );
        assert_eq!(
            lines[2],
            "EIP=0000fff0 EFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0"
        );
        assert_eq!(lines[3], "ES =0000 00000000 0000ffff 00009300");
        assert_eq!(lines[4], "CS =f000 ffff0000 0000ffff 00009b00");
        assert_eq!(lines[9], "LDT=0000 00000000 0000ffff 00008200");
        assert_eq!(lines[10], "TR =0000 00000000 0000ffff 00008b00");
        assert_eq!(lines[11], "GDT=     00000000 0000ffff");
        assert_eq!(
            lines[13],
            "CR0=60000010 CR2=00000000 CR3=00000000 CR4=00000000"
        );
        assert_eq!(
            lines[14],
            "DR0=0000000000000000 DR1=0000000000000000 DR2=0000000000000000 DR3=0000000000000000 "
        );
        assert_eq!(lines[15], "DR6=00000000ffff0ff0 DR7=0000000000000400");
        assert_eq!(lines[16], "EFER=0000000000000000");
        assert_eq!(lines[17], "FCW=037f FSW=0000 [ST=0] FTW=00 MXCSR=00001f80");
        assert_eq!(
            lines[18],
            "FPR0=0000000000000000 0000 FPR1=0000000000000000 0000"
        );
        assert_eq!(
            lines[22],
            "XMM00=00000000000000000000000000000000 XMM01=00000000000000000000000000000000"
        );
        assert_eq!(lines.len(), 26);
    }

    #[test]
    fn long_mode_state_uses_64_bit_layout_and_segment_kinds() {
        let mut st = real_mode_reset();
        st.sregs.cr0 = 0x8000_0011;
        st.sregs.efer = 0x500;
        st.sregs.cs = kvm_segment {
            selector: 0x10,
            limit: 0xffff_ffff,
            type_: 0xb,
            present: 1,
            s: 1,
            l: 1,
            g: 1,
            ..Default::default()
        };
        st.sregs.ds = kvm_segment {
            selector: 0x18,
            limit: 0xffff_ffff,
            type_: 0x3,
            present: 1,
            s: 1,
            db: 1,
            g: 1,
            ..Default::default()
        };
        let text = st.info_registers();
        assert!(text.starts_with("RAX=0000000000000000 RBX="));
        assert!(text.contains("CS =0010 0000000000000000 ffffffff 00a09b00 DPL=0 CS64 [-RA]\n"));
        assert!(text.contains("DS =0018 0000000000000000 ffffffff 00c09300 DPL=0 DS   [-WA]\n"));
        assert!(text.contains("TR =0000 0000000000000000 0000ffff 00008b00 DPL=0 TSS64-busy\n"));
        assert!(text.contains("XMM15="));
    }
}
