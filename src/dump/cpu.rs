//! The vCPU state a dump records: what NT_PRSTATUS and QEMU's "QEMU" note
//! hold, plus what the page-table walk needs (CR0/CR3/CR4, EFER).

/// A segment register, descriptor table register, LDT or TR.
///
/// `flags` uses QEMU's layout, the high dword of a descriptor: type in bits
/// 8..=11, S bit 12, DPL bits 13..=14, P bit 15, AVL bit 20, L bit 21,
/// D/B bit 22, G bit 23. [`Segment::flags_from_kvm`] builds it from the
/// fields of a `kvm_segment`. GDT and IDT use only `base` and `limit`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Segment {
    pub selector: u32,
    pub limit: u32,
    pub flags: u32,
    pub base: u64,
}

impl Segment {
    /// QEMU's segment flags from the unpacked fields KVM reports.
    #[allow(clippy::too_many_arguments)]
    pub fn flags_from_kvm(
        type_: u8,
        present: u8,
        dpl: u8,
        db: u8,
        s: u8,
        l: u8,
        g: u8,
        avl: u8,
    ) -> u32 {
        (u32::from(type_ & 0xf) << 8)
            | (u32::from(present & 1) << 15)
            | (u32::from(dpl & 3) << 13)
            | (u32::from(db & 1) << 22)
            | (u32::from(s & 1) << 12)
            | (u32::from(l & 1) << 21)
            | (u32::from(g & 1) << 23)
            | (u32::from(avl & 1) << 20)
    }
}

/// One vCPU's registers at the time of the dump.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuState {
    /// QEMU's cpu_index (0-based); the notes record it plus one as the pid.
    pub index: u32,
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
    pub cs: Segment,
    pub ds: Segment,
    pub es: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub ss: Segment,
    pub ldt: Segment,
    pub tr: Segment,
    pub gdt: Segment,
    pub idt: Segment,
    /// CR0 to CR4 (CR1 is kept for the note layout; it is always 0).
    pub cr: [u64; 5],
    pub efer: u64,
}

const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;

impl CpuState {
    /// Long mode active (QEMU's HF_LMA flag).
    pub fn long_mode(&self) -> bool {
        self.efer & EFER_LMA != 0
    }

    pub fn paging(&self) -> bool {
        self.cr[0] & CR0_PG != 0
    }

    pub fn pae(&self) -> bool {
        self.cr[4] & CR4_PAE != 0
    }

    pub fn pse(&self) -> bool {
        self.cr[4] & CR4_PSE != 0
    }

    pub fn la57(&self) -> bool {
        self.cr[4] & CR4_LA57 != 0
    }
}
