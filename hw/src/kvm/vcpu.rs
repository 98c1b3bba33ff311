//! One vCPU: CPUID, x86 reset state, register access and boot-time entry state.

use kvm_bindings::{
    kvm_fpu, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs,
    kvm_xsave, CpuId, Msrs, KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_UNINITIALIZED,
};
use kvm_ioctls::VcpuFd;

use super::state::{CpuState, SavedMsrs, SAVED_MSRS};
use crate::error::{HwError, Result};

/// State a loader asks the boot vCPU to start in (Linux / PVH entry).
#[derive(Debug, Clone, Default)]
pub struct EntryState {
    pub regs: kvm_regs,
    /// Code segment; data segments DS/ES/FS/GS/SS all get `data`.
    pub cs: kvm_segment,
    pub data: kvm_segment,
    pub gdt_base: u64,
    pub gdt_limit: u16,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

/// The power-on state captured right after creation, restored on reset.
struct ResetState {
    regs: kvm_regs,
    sregs: kvm_sregs,
    fpu: kvm_fpu,
    /// The full FPU/SSE/AVX state; preferred over `fpu`, which some hosts report
    /// incompletely (MXCSR reads 0 through KVM_GET_FPU).
    xsave: Option<Box<kvm_xsave>>,
    lapic: Option<kvm_lapic_state>,
}

pub struct Vcpu {
    index: usize,
    fd: VcpuFd,
    reset: ResetState,
    /// Size of the kvm_run mapping (I/O data lives in its second page).
    run_size: usize,
}

impl Vcpu {
    pub(super) fn new(
        index: usize,
        count: usize,
        fd: VcpuFd,
        supported: &CpuId,
        run_size: usize,
    ) -> Result<Vcpu> {
        let mut cpuid = supported.clone();
        patch_cpuid(&mut cpuid, index as u32, count as u32);
        fd.set_cpuid2(&cpuid)
            .map_err(|e| HwError::vcpu(index, "KVM_SET_CPUID2", e))?;
        let regs = fd
            .get_regs()
            .map_err(|e| HwError::vcpu(index, "KVM_GET_REGS", e))?;
        let sregs = fd
            .get_sregs()
            .map_err(|e| HwError::vcpu(index, "KVM_GET_SREGS", e))?;
        let mut fpu = fd
            .get_fpu()
            .map_err(|e| HwError::vcpu(index, "KVM_GET_FPU", e))?;
        // The architectural power-on MXCSR (some hosts report 0 on a fresh vCPU).
        fpu.mxcsr = 0x1f80;
        let xsave = fd.get_xsave().ok().map(Box::new);
        let lapic = fd.get_lapic().ok();
        let reset = ResetState {
            regs,
            sregs,
            fpu,
            xsave,
            lapic,
        };
        let mut v = Vcpu {
            index,
            fd,
            reset,
            run_size,
        };
        v.reset()?;
        Ok(v)
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// The raw fd, for ioctls this type does not wrap.
    pub fn fd(&self) -> &VcpuFd {
        &self.fd
    }

    pub(super) fn run_size(&self) -> usize {
        self.run_size
    }

    pub(super) fn fd_mut(&mut self) -> &mut VcpuFd {
        &mut self.fd
    }

    fn err(&self, op: &'static str) -> impl Fn(kvm_ioctls::Error) -> HwError {
        let cpu = self.index;
        move |e| HwError::vcpu(cpu, op, e)
    }

    /// x86 reset: real mode at F000:FFF0 (CS base 0xFFFF0000), EDX = CPU signature,
    /// LAPIC back to power-on; vCPU 0 runnable, the others waiting for INIT/SIPI.
    pub fn reset(&mut self) -> Result<()> {
        self.fd
            .set_regs(&self.reset.regs)
            .map_err(self.err("KVM_SET_REGS"))?;
        self.fd
            .set_sregs(&self.reset.sregs)
            .map_err(self.err("KVM_SET_SREGS"))?;
        self.fd
            .set_fpu(&self.reset.fpu)
            .map_err(self.err("KVM_SET_FPU"))?;
        if let Some(x) = &self.reset.xsave {
            // SAFETY: this process never enables dynamic XSTATE features (no
            // arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM)), so the kernel reads exactly the
            // 4096-byte kvm_xsave we pass, which it produced itself.
            unsafe { self.fd.set_xsave(x) }.map_err(self.err("KVM_SET_XSAVE"))?;
        }
        if let Some(l) = &self.reset.lapic {
            self.fd.set_lapic(l).map_err(self.err("KVM_SET_LAPIC"))?;
        }
        let zero: Vec<kvm_msr_entry> = SAVED_MSRS
            .iter()
            .filter(|i| **i != super::state::MSR_PAT)
            .map(|i| kvm_msr_entry {
                index: *i,
                data: 0,
                ..Default::default()
            })
            .collect();
        if let Ok(msrs) = Msrs::from_entries(&zero) {
            // Some MSRs may be absent on this host; the others are still reset.
            let _ = self.fd.set_msrs(&msrs);
        }
        let mp_state = if self.index == 0 {
            KVM_MP_STATE_RUNNABLE
        } else {
            KVM_MP_STATE_UNINITIALIZED
        };
        self.fd
            .set_mp_state(kvm_mp_state { mp_state })
            .map_err(self.err("KVM_SET_MP_STATE"))?;
        Ok(())
    }

    pub fn regs(&self) -> Result<kvm_regs> {
        self.fd.get_regs().map_err(self.err("KVM_GET_REGS"))
    }
    pub fn set_regs(&self, regs: &kvm_regs) -> Result<()> {
        self.fd.set_regs(regs).map_err(self.err("KVM_SET_REGS"))
    }
    pub fn sregs(&self) -> Result<kvm_sregs> {
        self.fd.get_sregs().map_err(self.err("KVM_GET_SREGS"))
    }
    pub fn set_sregs(&self, sregs: &kvm_sregs) -> Result<()> {
        self.fd.set_sregs(sregs).map_err(self.err("KVM_SET_SREGS"))
    }

    /// Sets the program counter as QEMU's x86 `set_pc` does: RIP only, CS unchanged.
    pub fn set_pc(&self, pc: u64) -> Result<()> {
        let mut r = self.regs()?;
        r.rip = pc;
        self.set_regs(&r)
    }

    /// Makes the vCPU runnable now (a loader's `cpu-num` on a secondary vCPU).
    pub fn set_runnable(&self) -> Result<()> {
        self.fd
            .set_mp_state(kvm_mp_state {
                mp_state: KVM_MP_STATE_RUNNABLE,
            })
            .map_err(self.err("KVM_SET_MP_STATE"))
    }

    /// Injects an NMI (`inject-nmi`).
    pub fn nmi(&self) -> Result<()> {
        self.fd.nmi().map_err(self.err("KVM_NMI"))
    }

    /// Loads a loader's entry state (segments, control registers, GPRs).
    pub fn apply_entry(&self, e: &EntryState) -> Result<()> {
        let mut s = self.sregs()?;
        s.cs = e.cs;
        s.ds = e.data;
        s.es = e.data;
        s.fs = e.data;
        s.gs = e.data;
        s.ss = e.data;
        s.gdt.base = e.gdt_base;
        s.gdt.limit = e.gdt_limit;
        s.cr0 = e.cr0;
        s.cr3 = e.cr3;
        s.cr4 = e.cr4;
        s.efer = e.efer;
        self.set_sregs(&s)?;
        self.set_regs(&e.regs)?;
        self.set_runnable()
    }

    /// Everything `info registers`, `query-cpus` and dumps need.
    pub fn get_state(&self) -> Result<CpuState> {
        let regs = self.regs()?;
        let sregs = self.sregs()?;
        let mut fpu = self.fd.get_fpu().map_err(self.err("KVM_GET_FPU"))?;
        if let Ok(x) = self.fd.get_xsave() {
            fpu_from_xsave(&mut fpu, &x);
        }
        let mp_state = self
            .fd
            .get_mp_state()
            .map_err(self.err("KVM_GET_MP_STATE"))?
            .mp_state;
        let mut msrs = SavedMsrs::default();
        for index in SAVED_MSRS {
            let Ok(mut m) = Msrs::from_entries(&[kvm_msr_entry {
                index,
                ..Default::default()
            }]) else {
                continue;
            };
            if let Ok(1) = self.fd.get_msrs(&mut m) {
                msrs.0.push((index, m.as_slice()[0].data));
            }
        }
        let dr = self
            .fd
            .get_debug_regs()
            .map_err(self.err("KVM_GET_DEBUGREGS"))?;
        let debugregs = [dr.db[0], dr.db[1], dr.db[2], dr.db[3], dr.dr6, dr.dr7];
        Ok(CpuState {
            index: self.index,
            regs,
            sregs,
            fpu,
            msrs,
            mp_state,
            debugregs,
        })
    }
}

/// Fills the x87/SSE fields from the XSAVE legacy area (FXSAVE layout), which KVM
/// always reports completely.
fn fpu_from_xsave(fpu: &mut kvm_fpu, x: &kvm_xsave) {
    let mut b = [0u8; 416];
    for (i, w) in x.region.iter().take(104).enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u64_at = |o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(a)
    };
    fpu.fcw = u16_at(0);
    fpu.fsw = u16_at(2);
    fpu.ftwx = b[4];
    fpu.last_opcode = u16_at(6);
    fpu.last_ip = u64_at(8);
    fpu.last_dp = u64_at(16);
    fpu.mxcsr = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
    for i in 0..8 {
        fpu.fpr[i].copy_from_slice(&b[32 + i * 16..48 + i * 16]);
    }
    for i in 0..16 {
        fpu.xmm[i].copy_from_slice(&b[160 + i * 16..176 + i * 16]);
    }
}

/// Adjusts KVM's supported CPUID for vCPU `apic_id` of `count`: APIC ids, the
/// hypervisor bit, and the logical processor count.
fn patch_cpuid(cpuid: &mut CpuId, apic_id: u32, count: u32) {
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x0000_ffff) | (apic_id << 24) | ((count.clamp(1, 255)) << 16);
                if count > 1 {
                    e.edx |= 1 << 28; // HTT: the count field is valid
                }
                e.ecx |= 1 << 31; // running under a hypervisor
            }
            0xb | 0x1f => e.edx = apic_id,
            _ => {}
        }
    }
}
