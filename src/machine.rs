//! The machine as the process layer sees it: its type, accelerator, guest
//! RAM, the PC devices from the `hw` crate, and the requests they raise.
//! Device accesses come from qtest (main loop) or from vCPU threads under
//! the big lock; device output (serial bytes, events) is collected in
//! queues that the emulator drains after each access.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use hw::events::{EventQueue, MachineEvent as HwEvent};
use hw::irq::{IrqChip, IrqLevels};
use hw::kvm::{Vcpu, VcpuControl, Vm};
use hw::memory::{GuestMemory, PcLayout};
use hw::pc::{PcConfig, PcDevices};

use crate::chardev::CharEvent;
use crate::machine_types::MachineType;
use crate::vl::config::{Accel, SmpConfig};

/// Something the machine asks the emulator to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineEvent {
    Reset,
    Shutdown,
    Suspend,
    /// isa-debug-exit: the process exits with this status.
    Exit(i32),
    RtcChange(i64),
}

/// What the command line configures on the machine.
pub struct MachineOpts {
    pub ram_size: u64,
    pub smp: SmpConfig,
    pub rtc_base: Option<String>,
    /// `-bios FILE`: the firmware image mapped below 4 GiB.
    pub bios: Option<String>,
    /// `-device isa-debug-exit,iobase=,iosize=` instances.
    pub debug_exits: Vec<(u16, u16)>,
}

/// The KVM side of a PC: the VM and its vCPU threads.
pub struct KvmParts {
    pub vm: Arc<Vm>,
    /// Created with the VM; handed to their threads once the emulator
    /// (their exit handler) exists.
    pending_vcpus: Vec<Vcpu>,
    pub control: Option<VcpuControl>,
}

pub struct Machine {
    pub mtype: &'static MachineType,
    pub accel: Accel,
    pub smp: SmpConfig,
    pub mem: Arc<GuestMemory>,
    pub pc: Option<PcDevices>,
    /// Interrupt line levels when no in-kernel irqchip exists (qtest).
    pub irq_levels: Option<Arc<IrqLevels>>,
    pub kvm: Option<KvmParts>,
    /// vCPUs are running guest code (between vm_start and vm_stop).
    running: bool,
    serial_out: Arc<Mutex<Vec<u8>>>,
    serial_in: VecDeque<u8>,
    pub events: EventQueue,
}

#[derive(Debug)]
pub struct MachineError(pub String);

impl From<hw::HwError> for MachineError {
    fn from(e: hw::HwError) -> Self {
        MachineError(e.to_string())
    }
}

/// Bytes of serial input held while the UART's FIFO is full; more is
/// dropped, as a real line without flow control would.
const MAX_SERIAL_BACKLOG: usize = 64 << 10;

impl Machine {
    pub fn new(
        mtype: &'static MachineType,
        accel: Accel,
        opts: &MachineOpts,
    ) -> Result<Self, MachineError> {
        let events = EventQueue::new();
        let serial_out = Arc::new(Mutex::new(Vec::new()));
        let (mem, pc, irq_levels, kvm) = if mtype.name == "none" {
            (
                Arc::new(GuestMemory::new_flat(opts.ram_size)?),
                None,
                None,
                None,
            )
        } else {
            let layout = PcLayout::pc(opts.ram_size, None);
            let mut mem =
                GuestMemory::new_pc(layout, &[hw::memory::RamSpec::anonymous(opts.ram_size)])?;
            if let Some(path) = &opts.bios {
                let bad = || MachineError(format!("qemu: could not load PC BIOS '{path}'"));
                let image = std::fs::read(path).map_err(|_| bad())?;
                mem.add_bios(&image).map_err(|_| bad())?;
            } else if accel == Accel::Kvm {
                return Err(MachineError(
                    "qemu: could not load PC BIOS 'bios-256k.bin' (no default firmware ships with this emulator; use -bios)".into(),
                ));
            }
            let mem = Arc::new(mem);
            let (chip, levels, kvm): (Arc<dyn IrqChip>, _, _) = if accel == Accel::Kvm {
                let vm = Arc::new(Vm::new()?);
                vm.map_memory(&mem)?;
                let n = opts.smp.cpus as usize;
                let vcpus = (0..n)
                    .map(|i| vm.create_vcpu(i, n))
                    .collect::<Result<Vec<_>, _>>()?;
                let parts = KvmParts {
                    vm: vm.clone(),
                    pending_vcpus: vcpus,
                    control: None,
                };
                (vm, None, Some(parts))
            } else {
                let levels = IrqLevels::new();
                (levels.clone(), Some(levels), None)
            };
            let out = serial_out.clone();
            let rtc_base = match &opts.rtc_base {
                Some(b) => hw::devices::rtc::RtcBase::parse(b).map_err(|_| {
                    MachineError(
                        "invalid date format\nvalid formats: '2006-06-17T16:01:21' or '2006-06-17'"
                            .to_string(),
                    )
                })?,
                None => hw::devices::rtc::RtcBase::Utc,
            };
            let cfg = PcConfig {
                rtc_base,
                serial_sink: Box::new(move |b: &[u8]| {
                    out.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(b)
                }),
                acpi_enabled_at_reset: false,
                layout,
                cpus: opts.smp.cpus,
            };
            let mut pc = PcDevices::new(chip, events.clone(), cfg)?;
            for (base, size) in &opts.debug_exits {
                pc.add_debug_exit(*base, *size)?;
            }
            (mem, Some(pc), levels, kvm)
        };
        Ok(Machine {
            mtype,
            accel,
            smp: opts.smp.clone(),
            mem,
            pc,
            irq_levels,
            kvm,
            running: false,
            serial_out,
            serial_in: VecDeque::new(),
            events,
        })
    }

    /// Starts the vCPU threads, parked; `resume` lets them run.
    pub fn start_vcpus<H: hw::kvm::ExitHandler>(
        &mut self,
        handler: Arc<Mutex<H>>,
    ) -> Result<(), MachineError> {
        let Some(k) = self.kvm.as_mut() else {
            return Ok(());
        };
        let vcpus = std::mem::take(&mut k.pending_vcpus);
        k.control = Some(hw::kvm::spawn_vcpus(vcpus, handler, true)?);
        Ok(())
    }

    fn control(&self) -> Option<&VcpuControl> {
        self.kvm.as_ref().and_then(|k| k.control.as_ref())
    }

    pub fn pause(&mut self) {
        self.running = false;
        if let Some(c) = self.control() {
            c.pause_all();
        }
    }

    pub fn resume(&mut self) {
        self.running = true;
        if let Some(c) = self.control() {
            c.resume_all();
        }
    }

    /// System reset: vCPUs back to the reset vector, interrupt
    /// controllers and devices to power-on state.
    pub fn reset(&mut self) {
        let was_running = self.running;
        if was_running {
            self.pause();
        }
        if let Some(k) = &self.kvm {
            if let Some(c) = &k.control {
                for i in 0..c.count() {
                    let _ = c.run_on(i, |v: &mut Vcpu| v.reset());
                }
            }
            let _ = k.vm.reset_irqchips();
        }
        if let Some(pc) = &self.pc {
            pc.reset();
        }
        if was_running {
            self.resume();
        }
    }

    /// One vCPU's registers and debug registers, for `info registers`.
    pub fn cpu_registers(
        &self,
        cpu: usize,
    ) -> Option<(hw::kvm::CpuState, hw::kvm_bindings::kvm_debugregs)> {
        let c = self.control()?;
        c.run_on(cpu, |v: &mut Vcpu| {
            let st = v.get_state().ok()?;
            let dr = v.fd().get_debug_regs().unwrap_or_default();
            Some((st, dr))
        })
        .ok()?
    }

    /// Host threads of the vCPUs (empty without KVM).
    pub fn vcpu_infos(&self) -> Vec<hw::kvm::VcpuInfo> {
        self.control().map(|c| c.info()).unwrap_or_default()
    }

    /// Register state of every vCPU, in index order (empty without KVM).
    pub fn cpu_states(&self) -> Vec<hw::kvm::CpuState> {
        let Some(c) = self.control() else {
            return Vec::new();
        };
        (0..c.count())
            .filter_map(|i| c.run_on(i, |v: &mut Vcpu| v.get_state()).ok()?.ok())
            .collect()
    }

    /// Stops the vCPU threads for good (process exit).
    pub fn shutdown(&mut self) {
        if let Some(c) = self.control() {
            c.quit();
        }
    }

    pub fn mmio_read(&mut self, addr: u64, buf: &mut [u8]) {
        buf.fill(0xff);
        if let Some(pc) = &self.pc {
            pc.mmio_read(addr, buf);
        }
    }

    pub fn mmio_write(&mut self, addr: u64, data: &[u8]) {
        if let Some(pc) = &self.pc {
            pc.mmio_write(addr, data);
        }
    }

    /// system_powerdown: the PC presses its ACPI power button; `none` has
    /// nothing to press.
    pub fn powerdown(&mut self) {
        if let Some(pc) = &self.pc {
            pc.acpi_pm
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .press_power_button();
        }
    }

    pub fn take_events(&mut self) -> Vec<MachineEvent> {
        self.events
            .drain()
            .into_iter()
            .map(|e| match e {
                HwEvent::Reset { .. } => MachineEvent::Reset,
                HwEvent::PowerOff => MachineEvent::Shutdown,
                HwEvent::Suspend => MachineEvent::Suspend,
                HwEvent::DebugExit { code } => MachineEvent::Exit(code),
                HwEvent::RtcChange { offset } => MachineEvent::RtcChange(offset),
            })
            .collect()
    }

    /// Serial output produced since the last call.
    pub fn take_serial_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut *self.serial_out.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Input for COM1 from its chardev.
    pub fn serial_input(&mut self, _index: usize, ev: CharEvent) {
        if let CharEvent::Data(d) = ev {
            let room = MAX_SERIAL_BACKLOG.saturating_sub(self.serial_in.len());
            self.serial_in.extend(d.iter().take(room));
            self.push_serial_input();
        }
    }

    /// Moves held input into the UART as its FIFO drains.
    pub fn push_serial_input(&mut self) {
        let Some(pc) = &self.pc else {
            self.serial_in.clear();
            return;
        };
        if self.serial_in.is_empty() {
            return;
        }
        let mut s = pc.serial.lock().unwrap_or_else(|e| e.into_inner());
        let n = s.can_receive().min(self.serial_in.len());
        if n > 0 {
            let chunk: Vec<u8> = self.serial_in.drain(..n).collect();
            s.receive(&chunk);
        }
    }

    /// Reads guest physical memory; bytes outside RAM read as zero, as
    /// unassigned memory does in QEMU under qtest.
    pub fn read_phys(&self, addr: u64, buf: &mut [u8]) {
        if self.mem.read(addr, buf).is_ok() {
            return;
        }
        for (i, b) in buf.iter_mut().enumerate() {
            let mut one = [0u8];
            *b = match self.mem.read(addr.wrapping_add(i as u64), &mut one) {
                Ok(()) => one[0],
                Err(_) => 0,
            };
        }
    }

    /// Writes guest physical memory; bytes outside RAM are dropped.
    pub fn write_phys(&mut self, addr: u64, data: &[u8]) {
        if self.mem.write(addr, data).is_ok() {
            return;
        }
        for (i, b) in data.iter().enumerate() {
            let _ = self.mem.write(addr.wrapping_add(i as u64), &[*b]);
        }
    }

    /// Port I/O; an unclaimed port reads all ones, as an empty ISA bus.
    pub fn pio_read(&mut self, port: u16, buf: &mut [u8]) {
        buf.fill(0xff);
        if let Some(pc) = &self.pc {
            pc.pio_read(port, buf);
        }
        self.push_serial_input();
    }

    pub fn pio_write(&mut self, port: u16, data: &[u8]) {
        if let Some(pc) = &self.pc {
            pc.pio_write(port, data);
        }
    }

    /// Interrupt line changes since the last call (qtest's IRQ lines).
    pub fn take_irq_changes(&self) -> Vec<(u32, bool)> {
        self.irq_levels
            .as_ref()
            .map(|l| l.take_changes())
            .unwrap_or_default()
    }
}
