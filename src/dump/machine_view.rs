//! Adapters from the machine (`hw`) to the dump writers' inputs: guest
//! RAM as [`GuestRam`], KVM register state as [`CpuState`].

use std::sync::Arc;

use hw::kvm_bindings::kvm_segment;
use hw::memory::GuestMemory;

use super::{CpuState, GuestRam, RamRange, Segment};

/// Every block of guest memory (RAM and ROM, as QEMU lists them).
pub struct MachineRam(pub Arc<GuestMemory>);

impl GuestRam for MachineRam {
    fn ranges(&self) -> Vec<RamRange> {
        let mut v: Vec<RamRange> = self
            .0
            .blocks()
            .iter()
            .map(|b| RamRange {
                gpa: b.gpa,
                len: b.size,
            })
            .collect();
        v.sort_by_key(|r| r.gpa);
        v
    }

    fn read_phys(&self, gpa: u64, buf: &mut [u8]) -> bool {
        self.0.read(gpa, buf).is_ok()
    }

    fn visit_phys(&self, gpa: u64, len: u64, f: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        match self.0.slice(gpa, len) {
            Ok(s) => f(s),
            Err(_) => false,
        }
    }
}

fn segment(s: &kvm_segment) -> Segment {
    Segment {
        selector: u32::from(s.selector),
        limit: s.limit,
        flags: Segment::flags_from_kvm(s.type_, s.present, s.dpl, s.db, s.s, s.l, s.g, s.avl),
        base: s.base,
    }
}

/// The registers a dump records, from one vCPU's KVM state.
pub fn cpu_state(st: &hw::kvm::CpuState) -> CpuState {
    let r = &st.regs;
    let s = &st.sregs;
    let table = |base: u64, limit: u16| Segment {
        selector: 0,
        limit: u32::from(limit),
        flags: 0,
        base,
    };
    CpuState {
        index: st.index as u32,
        rax: r.rax,
        rbx: r.rbx,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        rsp: r.rsp,
        rbp: r.rbp,
        r8: r.r8,
        r9: r.r9,
        r10: r.r10,
        r11: r.r11,
        r12: r.r12,
        r13: r.r13,
        r14: r.r14,
        r15: r.r15,
        rip: r.rip,
        rflags: r.rflags,
        cs: segment(&s.cs),
        ds: segment(&s.ds),
        es: segment(&s.es),
        fs: segment(&s.fs),
        gs: segment(&s.gs),
        ss: segment(&s.ss),
        ldt: segment(&s.ldt),
        tr: segment(&s.tr),
        gdt: table(s.gdt.base, s.gdt.limit),
        idt: table(s.idt.base, s.idt.limit),
        cr: [s.cr0, 0, s.cr2, s.cr3, s.cr4],
        efer: s.efer,
    }
}
