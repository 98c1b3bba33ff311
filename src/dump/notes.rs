//! The per-vCPU ELF notes QEMU puts in a dump: a `CORE` NT_PRSTATUS note
//! (Linux's elf_prstatus for x86-64 or i386) for each vCPU, then a `QEMU`
//! note with QEMU's CPU-state record (version 1) for each vCPU.

use super::cpu::{CpuState, Segment};
use super::guest_ram::RamRange;

pub const EM_386: u16 = 3;
pub const EM_X86_64: u16 = 62;
const NT_PRSTATUS: u32 = 1;

/// ELF class and machine of a dump, chosen as QEMU chooses them: x86-64
/// when the first vCPU is in long mode; otherwise i386, in a 64-bit file
/// only when RAM reaches past 4 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchInfo {
    pub class64: bool,
    pub machine: u16,
}

impl ArchInfo {
    pub fn of(cpus: &[CpuState], ranges: &[RamRange]) -> Self {
        let lma = cpus.first().is_none_or(|c| c.long_mode());
        if lma {
            return ArchInfo {
                class64: true,
                machine: EM_X86_64,
            };
        }
        let above_4g = ranges.iter().any(|r| r.end() > u64::from(u32::MAX));
        ArchInfo {
            class64: above_4g,
            machine: EM_386,
        }
    }

    fn x86_64_prstatus(&self) -> bool {
        self.class64 && self.machine == EM_X86_64
    }
}

const NOTE_HEADER: usize = 12;
const NAME_SIZE: usize = 5;
/// Linux x86-64 `struct elf_prstatus`.
const PRSTATUS64_SIZE: usize = 336;
const PRSTATUS64_PID: usize = 32;
const PRSTATUS64_REGS: usize = 112;
/// Linux i386 `struct elf_prstatus`.
const PRSTATUS32_SIZE: usize = 144;
const PRSTATUS32_PID: usize = 24;
const PRSTATUS32_REGS: usize = 72;
/// QEMU's QEMUCPUState.
const QEMU_STATE_SIZE: usize = 432;
const QEMU_STATE_VERSION: u32 = 1;

fn round4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

fn note_len(desc: usize) -> usize {
    round4(NOTE_HEADER) + round4(NAME_SIZE) + round4(desc)
}

/// Bytes of all notes for `ncpus` vCPUs.
pub fn notes_size(arch: ArchInfo, ncpus: usize) -> usize {
    let prstatus = if arch.x86_64_prstatus() {
        PRSTATUS64_SIZE
    } else {
        PRSTATUS32_SIZE
    };
    (note_len(prstatus) + note_len(QEMU_STATE_SIZE)) * ncpus
}

/// All notes, CORE notes first, then QEMU notes.
pub fn build_notes(arch: ArchInfo, cpus: &[CpuState]) -> Vec<u8> {
    let mut out = Vec::with_capacity(notes_size(arch, cpus.len()));
    for cpu in cpus {
        let desc = if arch.x86_64_prstatus() {
            prstatus64(cpu)
        } else {
            prstatus32(cpu)
        };
        push_note(&mut out, b"CORE\0", NT_PRSTATUS, &desc);
    }
    for cpu in cpus {
        push_note(&mut out, b"QEMU\0", 0, &qemu_cpu_state(cpu));
    }
    out
}

fn push_note(out: &mut Vec<u8>, name: &[u8; NAME_SIZE], kind: u32, desc: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&(NAME_SIZE as u32).to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(name);
    out.resize(start + round4(NOTE_HEADER) + round4(NAME_SIZE), 0);
    out.extend_from_slice(desc);
    out.resize(start + note_len(desc.len()), 0);
}

fn put64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn put32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn pid(cpu: &CpuState) -> u32 {
    cpu.index.wrapping_add(1)
}

fn prstatus64(c: &CpuState) -> Vec<u8> {
    let mut d = vec![0u8; PRSTATUS64_SIZE];
    put32(&mut d, PRSTATUS64_PID, pid(c));
    // Order of Linux's x86-64 user_regs_struct; orig_rax stays 0 as in QEMU.
    let regs = [
        c.r15,
        c.r14,
        c.r13,
        c.r12,
        c.rbp,
        c.rbx,
        c.r11,
        c.r10,
        c.r9,
        c.r8,
        c.rax,
        c.rcx,
        c.rdx,
        c.rsi,
        c.rdi,
        0,
        c.rip,
        u64::from(c.cs.selector),
        c.rflags,
        c.rsp,
        u64::from(c.ss.selector),
        c.fs.base,
        c.gs.base,
        u64::from(c.ds.selector),
        u64::from(c.es.selector),
        u64::from(c.fs.selector),
        u64::from(c.gs.selector),
    ];
    for (i, v) in regs.iter().enumerate() {
        put64(&mut d, PRSTATUS64_REGS + i * 8, *v);
    }
    d
}

fn prstatus32(c: &CpuState) -> Vec<u8> {
    let mut d = vec![0u8; PRSTATUS32_SIZE];
    put32(&mut d, PRSTATUS32_PID, pid(c));
    let r = PRSTATUS32_REGS;
    let low = |v: u64| v as u32;
    // Linux's i386 user_regs_struct: 7 GPRs, 4 data selectors each padded
    // to 32 bits, orig_eax, eip, cs, eflags, esp, ss.
    for (i, v) in [c.rbx, c.rcx, c.rdx, c.rsi, c.rdi, c.rbp, c.rax]
        .iter()
        .enumerate()
    {
        put32(&mut d, r + i * 4, low(*v));
    }
    put16(&mut d, r + 28, c.ds.selector as u16);
    put16(&mut d, r + 32, c.es.selector as u16);
    put16(&mut d, r + 36, c.fs.selector as u16);
    put16(&mut d, r + 40, c.gs.selector as u16);
    put32(&mut d, r + 48, low(c.rip));
    put16(&mut d, r + 52, c.cs.selector as u16);
    put32(&mut d, r + 56, low(c.rflags));
    put32(&mut d, r + 60, low(c.rsp));
    put16(&mut d, r + 64, c.ss.selector as u16);
    d
}

fn put_segment(d: &mut [u8], at: usize, s: &Segment) {
    put32(d, at, s.selector);
    put32(d, at + 4, s.limit);
    put32(d, at + 8, s.flags);
    put64(d, at + 16, s.base);
}

fn qemu_cpu_state(c: &CpuState) -> Vec<u8> {
    let mut d = vec![0u8; QEMU_STATE_SIZE];
    put32(&mut d, 0, QEMU_STATE_VERSION);
    put32(&mut d, 4, QEMU_STATE_SIZE as u32);
    let regs = [
        c.rax, c.rbx, c.rcx, c.rdx, c.rsi, c.rdi, c.rsp, c.rbp, c.r8, c.r9, c.r10, c.r11, c.r12,
        c.r13, c.r14, c.r15, c.rip, c.rflags,
    ];
    for (i, v) in regs.iter().enumerate() {
        put64(&mut d, 8 + i * 8, *v);
    }
    let segs = [
        &c.cs, &c.ds, &c.es, &c.fs, &c.gs, &c.ss, &c.ldt, &c.tr, &c.gdt, &c.idt,
    ];
    for (i, s) in segs.iter().enumerate() {
        put_segment(&mut d, 152 + i * 24, s);
    }
    for (i, v) in c.cr.iter().enumerate() {
        put64(&mut d, 392 + i * 8, *v);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long_mode_cpu(index: u32) -> CpuState {
        CpuState {
            index,
            efer: 0x500,
            rip: 0xffff_ffff_8100_0000,
            rax: 0x1111,
            r15: 0xf15,
            ..Default::default()
        }
    }

    #[test]
    fn x86_64_notes_have_qemu_sizes_and_layout() {
        let arch = ArchInfo::of(&[long_mode_cpu(0)], &[]);
        let notes = build_notes(arch, &[long_mode_cpu(0), long_mode_cpu(1)]);
        assert_eq!(notes.len(), notes_size(arch, 2));
        assert_eq!(notes.len(), 2 * (356 + 452));
        // First note: CORE, NT_PRSTATUS, pid 1, r15 first register.
        assert_eq!(&notes[0..12], &[5, 0, 0, 0, 80, 1, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&notes[12..17], b"CORE\0");
        assert_eq!(notes[20 + 32], 1);
        assert_eq!(&notes[20 + 112..20 + 120], &0xf15u64.to_le_bytes());
        // Third note: QEMU, type 0, version 1, size 432, rax.
        let q = 2 * 356;
        assert_eq!(&notes[q + 12..q + 17], b"QEMU\0");
        assert_eq!(&notes[q + 20..q + 28], &[1, 0, 0, 0, 0xb0, 1, 0, 0]);
        assert_eq!(&notes[q + 28..q + 36], &0x1111u64.to_le_bytes());
    }

    #[test]
    fn protected_mode_below_4g_is_elf32_i386() {
        let cpu = CpuState::default();
        let ram = [RamRange {
            gpa: 0,
            len: 1 << 20,
        }];
        let arch = ArchInfo::of(&[cpu], &ram);
        assert_eq!(
            arch,
            ArchInfo {
                class64: false,
                machine: EM_386
            }
        );
        assert_eq!(notes_size(arch, 1), 164 + 452);
    }
}
