//! Assembly of a whole `pc` machine: RAM, firmware or kernel, the KVM VM and vCPUs (or
//! none, under qtest), and the standard devices. The owner then moves `vcpus` into
//! [`crate::kvm::spawn_vcpus`] with its exit handler, which holds `devices`.

use std::sync::Arc;

use crate::acpi::{build_tables, AcpiConfig, ACPI_TABLES_BASE};
use crate::devices::rtc::RtcBase;
use crate::devices::serial::{SerialSink, COM1_BASE, COM1_IRQ};
use crate::error::{HwError, Result};
use crate::events::EventQueue;
use crate::irq::{IrqChip, IrqLevels};
use crate::kvm::{EntryState, Vcpu, Vm};
use crate::loader::linux::{is_bzimage, load_linux, BootEntry, LinuxBoot};
use crate::loader::pvh::{load_pvh, pvh_entry, PvhBoot};
use crate::memory::{GuestMemory, PcLayout, RamSpec};
use crate::pc::{PcConfig, PcDevices};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    /// No guest code runs; interrupts are recorded in `irq_levels`.
    Qtest,
}

/// `-kernel`, `-initrd`, `-append` contents.
#[derive(Debug, Clone, Default)]
pub struct KernelImages {
    pub kernel: Vec<u8>,
    pub initrd: Option<Vec<u8>>,
    pub cmdline: String,
}

pub struct MachineConfig {
    pub accel: Accel,
    pub ram_size: u64,
    /// Backends in `-numa node,memdev=` order; empty means anonymous RAM of `ram_size`.
    pub ram: Vec<RamSpec>,
    pub max_ram_below_4g: Option<u64>,
    pub cpus: usize,
    /// Firmware image (`-bios`); ignored when `kernel` is given (no firmware is needed
    /// for a direct boot and its ROM would cover the ACPI tables).
    pub bios: Option<Vec<u8>>,
    pub kernel: Option<KernelImages>,
    pub rtc_base: RtcBase,
    /// COM1's output; None for no UART (QEMU's pc without `-serial`).
    pub serial_sink: Option<SerialSink>,
}

pub struct PcMachine {
    pub mem: Arc<GuestMemory>,
    pub vm: Option<Arc<Vm>>,
    /// Created vCPUs in reset state (kernel entry already applied to vCPU 0); the owner
    /// moves them into `spawn_vcpus`.
    pub vcpus: Vec<Vcpu>,
    pub devices: PcDevices,
    /// The interrupt recorder under qtest.
    pub irq_levels: Option<Arc<IrqLevels>>,
    /// Entry state of the boot vCPU after a direct kernel boot.
    pub kernel_entry: Option<EntryState>,
    pub rsdp: Option<u64>,
    kernel: Option<KernelImages>,
}

impl PcMachine {
    pub fn build(cfg: MachineConfig) -> Result<PcMachine> {
        if cfg.cpus == 0 || cfg.cpus > 255 {
            return Err(HwError::Invalid {
                what: format!("Invalid SMP CPUs {}", cfg.cpus),
            });
        }
        let layout = PcLayout::pc(cfg.ram_size, cfg.max_ram_below_4g);
        let specs = if cfg.ram.is_empty() {
            vec![RamSpec::anonymous(cfg.ram_size)]
        } else {
            cfg.ram
        };
        let mut mem = GuestMemory::new_pc(layout, &specs)?;
        if cfg.kernel.is_none() {
            if let Some(bios) = &cfg.bios {
                mem.add_bios(bios)?;
            }
        }
        let mem = Arc::new(mem);
        let (vm, chip, irq_levels): (Option<Arc<Vm>>, Arc<dyn IrqChip>, _) = match cfg.accel {
            Accel::Kvm => {
                let vm = Arc::new(Vm::new()?);
                vm.map_memory(&mem)?;
                (Some(vm.clone()), vm, None)
            }
            Accel::Qtest => {
                let levels = IrqLevels::new();
                (None, levels.clone(), Some(levels))
            }
        };
        let mut vcpus = Vec::new();
        if let Some(vm) = &vm {
            for i in 0..cfg.cpus {
                vcpus.push(vm.create_vcpu(i, cfg.cpus)?);
            }
        }
        let pc_cfg = PcConfig {
            rtc_base: cfg.rtc_base,
            acpi_enabled_at_reset: cfg.kernel.is_some(),
            layout,
            cpus: cfg.cpus as u32,
        };
        let mut devices = PcDevices::new(chip, EventQueue::new(), pc_cfg)?;
        if let Some(sink) = cfg.serial_sink {
            devices.add_serial(COM1_BASE, COM1_IRQ, sink)?;
        }
        devices
            .ide
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_memory(mem.clone());
        let mut m = PcMachine {
            mem,
            vm,
            vcpus,
            devices,
            irq_levels,
            kernel_entry: None,
            rsdp: None,
            kernel: cfg.kernel,
        };
        if m.kernel.is_some() {
            m.rsdp = Some(build_tables(
                &m.mem,
                &AcpiConfig {
                    cpus: cfg.cpus as u32,
                },
                ACPI_TABLES_BASE,
            )?);
            m.kernel_entry = m.load_kernel()?;
            if let (Some(e), Some(v)) = (&m.kernel_entry, m.vcpus.first()) {
                v.apply_entry(e)?;
            }
        }
        Ok(m)
    }

    /// Writes the `-kernel` images into memory again (also on every system reset, since
    /// the guest may have overwritten them) and returns the boot vCPU's entry state.
    pub fn load_kernel(&self) -> Result<Option<EntryState>> {
        let Some(k) = &self.kernel else {
            return Ok(None);
        };
        let initrd = k.initrd.as_deref();
        if pvh_entry(&k.kernel).is_some() {
            let e = load_pvh(
                &self.mem,
                &PvhBoot {
                    kernel: &k.kernel,
                    initrd,
                    cmdline: &k.cmdline,
                    rsdp: self.rsdp,
                },
            )?;
            return Ok(Some(e));
        }
        if !is_bzimage(&k.kernel) {
            return Err(HwError::BadImage {
                what: "qemu: linux kernel is neither a bzImage nor a PVH ELF image".into(),
            });
        }
        let boot = LinuxBoot {
            kernel: &k.kernel,
            initrd,
            cmdline: &k.cmdline,
            entry: BootEntry::Auto,
            rsdp: self.rsdp,
        };
        Ok(Some(load_linux(&self.mem, &boot)?.entry))
    }

    /// System reset of everything but the vCPUs: devices (RTC keeps NVRAM) and the
    /// in-kernel PIC/IOAPIC/PIT. The owner then posts `vcpu_reset_job` to every vCPU.
    pub fn reset_devices(&self) -> Result<()> {
        self.devices.reset();
        if let Some(vm) = &self.vm {
            vm.reset_irqchips()?;
        }
        Ok(())
    }

    /// What to run on vCPU `cpu` at system reset: the x86 reset state, then for the
    /// boot vCPU of a direct kernel boot the kernel's entry state (reloading images).
    pub fn vcpu_reset_job(&self, cpu: usize) -> Result<impl FnOnce(&mut Vcpu) + Send + 'static> {
        let entry = if cpu == 0 { self.load_kernel()? } else { None };
        Ok(move |v: &mut Vcpu| {
            // A failing ioctl here leaves the vCPU as it was; KVM_RUN will report it.
            let _ = v.reset();
            if let Some(e) = entry {
                let _ = v.apply_entry(&e);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kernel: Option<KernelImages>) -> MachineConfig {
        MachineConfig {
            accel: Accel::Qtest,
            ram_size: 64 << 20,
            ram: vec![],
            max_ram_below_4g: None,
            cpus: 2,
            bios: None,
            kernel,
            rtc_base: RtcBase::Utc,
            serial_sink: Some(Box::new(|_| {})),
        }
    }

    #[test]
    fn qtest_machine_has_devices_and_records_irqs() {
        let m = PcMachine::build(cfg(None)).expect("build");
        assert!(m.vm.is_none() && m.vcpus.is_empty());
        m.devices.pio_write(0x3f9, &[0x02]);
        assert!(m.irq_levels.as_ref().expect("levels").level(4));
        assert_eq!(m.devices.pci.lock().expect("pci").functions().count(), 4);
    }

    #[test]
    fn direct_boot_builds_acpi_tables_and_entry() {
        let k = crate::loader::linux::tests::synthetic_bzimage(0x20f, 1, 4096);
        let m = PcMachine::build(cfg(Some(KernelImages {
            kernel: k,
            initrd: None,
            cmdline: "ro".into(),
        })))
        .expect("build");
        assert_eq!(m.rsdp, Some(ACPI_TABLES_BASE));
        assert_eq!(m.kernel_entry.as_ref().expect("entry").regs.rip, 0x10_0200);
        assert_eq!(
            m.mem.read_u64(0x7000 + 0x70).expect("rsdp in zero page"),
            ACPI_TABLES_BASE
        );
    }

    #[test]
    fn unknown_kernel_format_is_an_error() {
        let r = PcMachine::build(cfg(Some(KernelImages {
            kernel: vec![0; 4096],
            initrd: None,
            cmdline: String::new(),
        })));
        assert!(r.is_err());
    }
}
