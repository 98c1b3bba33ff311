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
}

impl CpuState {
    /// The program counter as QEMU reports it (`pc` in query-cpus): CS base + RIP.
    pub fn pc(&self) -> u64 {
        self.sregs.cs.base.wrapping_add(self.regs.rip)
    }

    pub fn halted(&self) -> bool {
        self.mp_state == kvm_bindings::KVM_MP_STATE_HALTED
    }

    /// Long mode active (EFER.LMA): 64-bit register dumps and NT_PRSTATUS.
    pub fn long_mode(&self) -> bool {
        self.sregs.efer & (1 << 10) != 0
    }
}
