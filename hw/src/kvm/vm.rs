//! One KVM virtual machine: in-kernel irqchip and PIT, memory slots, vCPU creation.

use std::sync::{Arc, Mutex};

use kvm_bindings::{
    kvm_irqchip, kvm_pit_config, kvm_pit_state2, kvm_userspace_memory_region, CpuId,
    KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_MAX_CPUID_ENTRIES,
    KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Kvm, VmFd};

use super::vcpu::Vcpu;
use crate::error::{HwError, Result};
use crate::irq::IrqChip;
use crate::memory::GuestMemory;

/// Where QEMU puts KVM's real-mode identity page table (one page)...
pub const IDENTITY_MAP_ADDR: u64 = 0xfeff_c000;
/// ...and the three pages of the TSS KVM needs for real mode on VMX.
pub const TSS_ADDR: u64 = 0xfeff_d000;

/// Whether `/dev/kvm` can be opened; `Err` carries the reason (for `not run:` lines and
/// QEMU's "failed to initialize KVM" message).
pub fn kvm_available() -> std::result::Result<(), String> {
    match Kvm::new() {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "Could not access KVM kernel module: {}",
            std::io::Error::from_raw_os_error(e.errno())
        )),
    }
}

/// One registered memory slot.
#[derive(Debug, Clone, Copy)]
struct Slot {
    id: u32,
    gpa: u64,
    size: u64,
    host: u64,
    read_only: bool,
}

/// Pages of one RAM block written since the last harvest: bit `n` of `bitmap`
/// (little-endian u64 words) is the 4 KiB page at `gpa + n * 4096`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyBlock {
    pub gpa: u64,
    pub size: u64,
    pub bitmap: Vec<u64>,
}

/// A VM with the PC's in-kernel interrupt controllers.
pub struct Vm {
    kvm: Kvm,
    fd: VmFd,
    cpuid: CpuId,
    slots: Mutex<Vec<Slot>>,
    memory: Mutex<Vec<Arc<GuestMemory>>>,
    reset_irqchips: Vec<kvm_irqchip>,
    reset_pit: Option<kvm_pit_state2>,
}

impl Vm {
    /// Opens `/dev/kvm` and creates a VM with the identity map, TSS, irqchip (PIC +
    /// IOAPIC + LAPICs) and PIT, as QEMU's pc does.
    pub fn new() -> Result<Vm> {
        let kvm = Kvm::new().map_err(|e| HwError::kvm("open /dev/kvm", e))?;
        let fd = kvm
            .create_vm()
            .map_err(|e| HwError::kvm("KVM_CREATE_VM", e))?;
        fd.set_identity_map_address(IDENTITY_MAP_ADDR)
            .map_err(|e| HwError::kvm("KVM_SET_IDENTITY_MAP_ADDR", e))?;
        fd.set_tss_address(TSS_ADDR as usize)
            .map_err(|e| HwError::kvm("KVM_SET_TSS_ADDR", e))?;
        fd.create_irq_chip()
            .map_err(|e| HwError::kvm("KVM_CREATE_IRQCHIP", e))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit)
            .map_err(|e| HwError::kvm("KVM_CREATE_PIT2", e))?;
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| HwError::kvm("KVM_GET_SUPPORTED_CPUID", e))?;
        let mut reset_irqchips = Vec::new();
        for id in [
            KVM_IRQCHIP_PIC_MASTER,
            KVM_IRQCHIP_PIC_SLAVE,
            KVM_IRQCHIP_IOAPIC,
        ] {
            let mut chip = kvm_irqchip {
                chip_id: id,
                ..Default::default()
            };
            if fd.get_irqchip(&mut chip).is_ok() {
                reset_irqchips.push(chip);
            }
        }
        let reset_pit = fd.get_pit2().ok();
        Ok(Vm {
            kvm,
            fd,
            cpuid,
            slots: Mutex::new(Vec::new()),
            memory: Mutex::new(Vec::new()),
            reset_irqchips,
            reset_pit,
        })
    }

    /// Registers every block of `mem` as a memory slot (ROM blocks read-only, so guest
    /// writes to them come back as MMIO exits). The VM keeps `mem` alive.
    pub fn map_memory(&self, mem: &Arc<GuestMemory>) -> Result<()> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for b in mem.blocks() {
            let slot = Slot {
                id: slots.len() as u32,
                gpa: b.gpa,
                size: b.size,
                host: b.host as u64,
                read_only: b.read_only,
            };
            self.set_slot(&slot, false)?;
            slots.push(slot);
        }
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(mem.clone());
        Ok(())
    }

    fn set_slot(&self, s: &Slot, log_dirty: bool) -> Result<()> {
        let mut flags = if s.read_only { KVM_MEM_READONLY } else { 0 };
        if log_dirty && !s.read_only {
            flags |= KVM_MEM_LOG_DIRTY_PAGES;
        }
        let region = kvm_userspace_memory_region {
            slot: s.id,
            flags,
            guest_phys_addr: s.gpa,
            memory_size: s.size,
            userspace_addr: s.host,
        };
        // SAFETY: `s.host..s.host+s.size` is a live mapping owned by a GuestMemory that
        // `self.memory` keeps alive for as long as the VM exists.
        unsafe { self.fd.set_user_memory_region(region) }
            .map_err(|e| HwError::kvm("KVM_SET_USER_MEMORY_REGION", e))
    }

    /// Starts or stops KVM's dirty-page tracking on every RAM slot (migration).
    pub fn set_dirty_logging(&self, on: bool) -> Result<()> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for s in slots.iter().filter(|s| !s.read_only) {
            self.set_slot(s, on)?;
        }
        Ok(())
    }

    /// Pages written since dirty logging started or since the last call, per RAM slot
    /// (KVM clears its bitmap as it hands it over).
    pub fn take_dirty_pages(&self) -> Result<Vec<DirtyBlock>> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for s in slots.iter().filter(|s| !s.read_only) {
            let bitmap = self
                .fd
                .get_dirty_log(s.id, s.size as usize)
                .map_err(|e| HwError::kvm("KVM_GET_DIRTY_LOG", e))?;
            out.push(DirtyBlock {
                gpa: s.gpa,
                size: s.size,
                bitmap,
            });
        }
        Ok(out)
    }

    /// Creates vCPU `index` of `count`, with KVM's supported CPUID (APIC id = index).
    pub fn create_vcpu(&self, index: usize, count: usize) -> Result<Vcpu> {
        let fd = self
            .fd
            .create_vcpu(index as u64)
            .map_err(|e| HwError::vcpu(index, "KVM_CREATE_VCPU", e))?;
        Vcpu::new(index, count, fd, &self.cpuid, self.fd.run_size())
    }

    /// Sets an irqchip input (ISA IRQ / IOAPIC pin).
    pub fn set_irq_line(&self, gsi: u32, level: bool) -> Result<()> {
        self.fd
            .set_irq_line(gsi, level)
            .map_err(|e| HwError::kvm("KVM_IRQ_LINE", e))
    }

    /// Puts the PIC, IOAPIC and PIT back to their power-on state (system reset).
    pub fn reset_irqchips(&self) -> Result<()> {
        for chip in &self.reset_irqchips {
            self.fd
                .set_irqchip(chip)
                .map_err(|e| HwError::kvm("KVM_SET_IRQCHIP", e))?;
        }
        if let Some(pit) = &self.reset_pit {
            self.fd
                .set_pit2(pit)
                .map_err(|e| HwError::kvm("KVM_SET_PIT2", e))?;
        }
        Ok(())
    }

    /// The raw VM fd (for the lead's own ioctls: dirty log, clock...).
    pub fn fd(&self) -> &VmFd {
        &self.fd
    }

    pub fn kvm(&self) -> &Kvm {
        &self.kvm
    }
}

impl IrqChip for Vm {
    fn set_level(&self, gsi: u32, level: bool) {
        // A failing KVM_IRQ_LINE means a bad line number, a device bug; drop the edge.
        let _ = self.set_irq_line(gsi, level);
    }
}
