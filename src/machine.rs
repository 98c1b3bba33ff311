//! The machine as the process layer sees it: its type, accelerator, guest
//! RAM, the PC devices from the `hw` crate, and the requests they raise.
//! Device accesses come from qtest (main loop) or from vCPU threads under
//! the big lock; device output (serial bytes, events) is collected in
//! queues that the emulator drains after each access.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use hw::events::{EventQueue, MachineEvent as HwEvent};
use hw::kvm::{Vcpu, VcpuControl};
use hw::loader::generic::SetPc;
use hw::machine::{KernelImages, MachineConfig, PcMachine};
use hw::memory::{GuestMemory, RamSpec};
use hw::pc::PcDevices;

use crate::chardev::CharEvent;
use crate::devices::DeviceSpec;
use crate::machine_types::MachineType;
use crate::vl::config::{Accel, SmpConfig};

pub mod ide;
mod loader;
mod numa;
mod qom_tree;

use loader::Loader;
pub use numa::apply_numa;
pub use qom_tree::populate_qom;

/// Something the machine asks the emulator to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineEvent {
    Reset,
    Shutdown,
    Suspend,
    /// isa-debug-exit: the process exits with this status.
    Exit(i32),
    RtcChange(i64),
    /// An IDE drive's guest moved its tray or changed its lock.
    Drive(hw::devices::ide::DriveEvent),
}

/// What the command line configures on the machine.
#[derive(Clone)]
pub struct MachineOpts {
    pub ram_size: u64,
    pub smp: SmpConfig,
    pub rtc_base: Option<String>,
    /// `-bios FILE`: the firmware image mapped below 4 GiB.
    pub bios: Option<String>,
    /// `-kernel`, `-initrd`, `-append`.
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    pub append: Option<String>,
    /// Number of serial ports `-serial` asked for (COM1 always exists).
    pub serial_ports: usize,
    /// `-device isa-debug-exit` and `-device loader` instances, in
    /// command-line order.
    pub devices: Vec<DeviceSpec>,
    /// Guest RAM from `-numa node,memdev=` backends; empty: anonymous `-m`.
    pub ram: Vec<RamSpec>,
}

/// vCPU threads of a KVM machine.
struct VcpuThreads {
    /// Created with the VM; handed to their threads once the emulator
    /// (their exit handler) exists.
    pending: Vec<Vcpu>,
    control: Option<VcpuControl>,
}

pub struct Machine {
    pub mtype: &'static MachineType,
    pub accel: Accel,
    pub smp: SmpConfig,
    pub mem: Arc<GuestMemory>,
    /// The PC (`-M pc`): RAM, firmware or kernel, VM, devices.
    pcm: Option<PcMachine>,
    vcpus: Option<VcpuThreads>,
    /// vCPUs are running guest code (between vm_start and vm_stop).
    running: bool,
    /// Per serial port (COM1 first): output not yet sent to its chardev,
    /// input not yet taken by the UART.
    serial_out: Vec<Arc<Mutex<Vec<u8>>>>,
    serial_in: Vec<VecDeque<u8>>,
    uarts: Vec<Arc<Mutex<hw::devices::serial::Serial>>>,
    pub events: EventQueue,
    /// `-device loader` instances, applied again on every system reset.
    loaders: Vec<Loader>,
    /// The options the machine was built from (a rebuild with
    /// `-numa` memory backends starts from them).
    pub opts: MachineOpts,
}

#[derive(Debug)]
pub struct MachineError(pub String);

impl From<hw::HwError> for MachineError {
    fn from(e: hw::HwError) -> Self {
        MachineError(e.to_string())
    }
}

/// COM1..COM4: I/O base and IRQ.
const UARTS: [(u16, u32); 4] = [(0x3f8, 4), (0x2f8, 3), (0x3e8, 4), (0x2e8, 3)];

/// Bytes of serial input held while the UART's FIFO is full; more is
/// dropped, as a real line without flow control would.
const MAX_SERIAL_BACKLOG: usize = 64 << 10;

fn read_image(path: &str, what: &str) -> Result<Vec<u8>, MachineError> {
    std::fs::read(path).map_err(|e| {
        let err = crate::qom::hostmem::strerror(&e);
        MachineError(match what {
            "kernel" => format!("qemu: could not load kernel '{path}': {err}"),
            "initrd" => format!("qemu: error reading initrd {path}: {err}"),
            _ => format!("qemu: could not load {what} '{path}'"),
        })
    })
}

impl Machine {
    pub fn new(
        mtype: &'static MachineType,
        accel: Accel,
        opts: &MachineOpts,
    ) -> Result<Self, MachineError> {
        if mtype.name == "none" {
            return Ok(Machine {
                mtype,
                accel,
                smp: opts.smp.clone(),
                mem: Arc::new(GuestMemory::new_flat(opts.ram_size)?),
                pcm: None,
                vcpus: None,
                running: false,
                serial_out: Vec::new(),
                serial_in: Vec::new(),
                uarts: Vec::new(),
                events: EventQueue::new(),
                loaders: Vec::new(),
                opts: opts.clone(),
            });
        }
        let kernel = match &opts.kernel {
            None => None,
            Some(k) => Some(KernelImages {
                kernel: read_image(k, "kernel")?,
                initrd: opts
                    .initrd
                    .as_deref()
                    .map(|p| read_image(p, "initrd"))
                    .transpose()?,
                cmdline: opts.append.clone().unwrap_or_default(),
            }),
        };
        let bios = match &opts.bios {
            Some(path) => Some(read_image(path, "PC BIOS")?),
            None if kernel.is_none() && accel == Accel::Kvm => {
                return Err(MachineError(
                    "qemu: could not load PC BIOS 'bios-256k.bin' (no default firmware ships with this emulator; use -bios or -kernel)".into(),
                ))
            }
            None => None,
        };
        let rtc_base = match &opts.rtc_base {
            Some(b) => hw::devices::rtc::RtcBase::parse(b).map_err(|_| {
                MachineError(
                    "invalid date format\nvalid formats: '2006-06-17T16:01:21' or '2006-06-17'"
                        .to_string(),
                )
            })?,
            None => hw::devices::rtc::RtcBase::Utc,
        };
        let cfg = MachineConfig {
            accel: if accel == Accel::Kvm {
                hw::machine::Accel::Kvm
            } else {
                hw::machine::Accel::Qtest
            },
            ram_size: opts.ram_size,
            ram: opts.ram.clone(),
            max_ram_below_4g: None,
            cpus: opts.smp.cpus as usize,
            bios,
            kernel,
            rtc_base,
            // The UARTs are added below, one per `-serial`.
            serial_sink: None,
        };
        let mut pcm = PcMachine::build(cfg)?;
        let mut loaders = Vec::new();
        for d in &opts.devices {
            match d {
                DeviceSpec::DebugExit { iobase, iosize, .. } => {
                    pcm.devices.add_debug_exit(*iobase, *iosize)?;
                }
                DeviceSpec::Loader { loader, .. } => loaders.push(Loader::new(loader)?),
                // Attached once the drives are open (machine::ide).
                DeviceSpec::Ide(_) => {}
            }
        }
        for l in &loaders {
            let set_pc = l.apply(&pcm.mem, opts.smp.cpus as usize)?;
            let Some(SetPc { cpu, pc }) = set_pc else {
                continue;
            };
            if let Some(v) = pcm.vcpus.get(cpu) {
                v.set_pc(pc)?;
                if cpu != 0 {
                    v.set_runnable()?;
                }
            }
        }
        let mut serial_out = Vec::new();
        let mut uarts = Vec::new();
        // COM1..COM4 at their ISA ports and IRQs, as many as -serial asked
        // (none with -nodefaults and no -serial, as QEMU's pc).
        for &(base, irq) in UARTS.iter().take(opts.serial_ports) {
            let buf = Arc::new(Mutex::new(Vec::new()));
            let out = buf.clone();
            let sink: hw::devices::serial::SerialSink = Box::new(move |b: &[u8]| {
                out.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(b)
            });
            uarts.push(pcm.devices.add_serial(base, irq, sink)?);
            serial_out.push(buf);
        }
        let serial_in = vec![VecDeque::new(); serial_out.len()];
        let vcpus = (accel == Accel::Kvm).then(|| VcpuThreads {
            pending: std::mem::take(&mut pcm.vcpus),
            control: None,
        });
        Ok(Machine {
            mtype,
            accel,
            smp: opts.smp.clone(),
            mem: pcm.mem.clone(),
            events: pcm.devices.events.clone(),
            pcm: Some(pcm),
            vcpus,
            running: false,
            serial_out,
            serial_in,
            uarts,
            loaders,
            opts: opts.clone(),
        })
    }

    /// How many UARTs the machine has (COM1 onwards).
    pub fn uart_count(&self) -> usize {
        self.uarts.len()
    }

    /// The PC's devices (None for `-M none`).
    pub fn pc(&self) -> Option<&PcDevices> {
        self.pcm.as_ref().map(|m| &m.devices)
    }

    /// Whether guest code runs on KVM vCPUs.
    pub fn has_vcpus(&self) -> bool {
        self.vcpus.is_some()
    }

    /// Starts the vCPU threads, parked; `resume` lets them run.
    pub fn start_vcpus<H: hw::kvm::ExitHandler>(
        &mut self,
        handler: Arc<Mutex<H>>,
    ) -> Result<(), MachineError> {
        let Some(t) = self.vcpus.as_mut() else {
            return Ok(());
        };
        let pending = std::mem::take(&mut t.pending);
        t.control = Some(hw::kvm::spawn_vcpus(pending, handler, true)?);
        Ok(())
    }

    fn control(&self) -> Option<&VcpuControl> {
        self.vcpus.as_ref().and_then(|t| t.control.as_ref())
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

    /// System reset: devices and interrupt controllers to power-on state,
    /// vCPUs to the reset vector (or the kernel entry of a direct boot,
    /// with the images loaded again).
    pub fn reset(&mut self) {
        let was_running = self.running;
        if was_running {
            self.pause();
        }
        if let Some(pcm) = &self.pcm {
            let _ = pcm.reset_devices();
            if let Some(c) = self.vcpus.as_ref().and_then(|t| t.control.as_ref()) {
                for i in 0..c.count() {
                    if let Ok(job) = pcm.vcpu_reset_job(i) {
                        let _ = c.post(i, job);
                    }
                }
            }
            // As QEMU's loader: the image or value is written again and
            // the PC set after the CPU reset.
            for l in &self.loaders {
                let Ok(Some(SetPc { cpu, pc })) = l.apply(&pcm.mem, self.smp.cpus as usize) else {
                    continue;
                };
                if let Some(c) = self.vcpus.as_ref().and_then(|t| t.control.as_ref()) {
                    let _ = c.post(cpu, move |v: &mut Vcpu| {
                        let _ = v.set_pc(pc);
                        if cpu != 0 {
                            let _ = v.set_runnable();
                        }
                    });
                }
            }
        }
        if was_running {
            self.resume();
        }
    }

    /// Wake-up from S3: a system reset, then the vCPUs run again (the
    /// run state is already back to running).
    pub fn wakeup(&mut self) {
        self.reset();
        self.resume();
    }

    /// One vCPU's registers, for `info registers`.
    pub fn cpu_state(&self, cpu: usize) -> Option<hw::kvm::CpuState> {
        let c = self.control()?;
        c.run_on(cpu, |v: &mut Vcpu| v.get_state().ok()).ok()?
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

    /// inject-nmi / HMP `nmi`: an NMI to every vCPU, as QEMU's x86 does.
    /// Without vCPUs there is nothing to interrupt.
    pub fn inject_nmi(&self) -> Result<(), MachineError> {
        let Some(c) = self.control() else {
            return Ok(());
        };
        for i in 0..c.count() {
            c.post(i, |v: &mut Vcpu| {
                // A failure shows up as the guest never taking the NMI.
                let _ = v.nmi();
            })?;
        }
        Ok(())
    }

    /// Stops the vCPU threads for good (process exit).
    pub fn shutdown(&mut self) {
        if let Some(c) = self.control() {
            c.quit();
        }
    }

    pub fn mmio_read(&mut self, addr: u64, buf: &mut [u8]) {
        buf.fill(0xff);
        if let Some(pc) = self.pc() {
            pc.mmio_read(addr, buf);
        }
    }

    pub fn mmio_write(&mut self, addr: u64, data: &[u8]) {
        if let Some(pc) = self.pc() {
            pc.mmio_write(addr, data);
        }
    }

    /// system_powerdown: the PC presses its ACPI power button; `none` has
    /// nothing to press.
    pub fn powerdown(&mut self) {
        if let Some(pc) = self.pc() {
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
                HwEvent::Drive(ev) => MachineEvent::Drive(ev),
            })
            .collect()
    }

    /// Serial output produced since the last call, per port.
    pub fn take_serial_output(&mut self) -> Vec<(usize, Vec<u8>)> {
        self.serial_out
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let data = std::mem::take(&mut *b.lock().unwrap_or_else(|e| e.into_inner()));
                (!data.is_empty()).then_some((i, data))
            })
            .collect()
    }

    /// Input for serial port `index` from its chardev.
    pub fn serial_input(&mut self, index: usize, ev: CharEvent) {
        if let (CharEvent::Data(d), Some(q)) = (ev, self.serial_in.get_mut(index)) {
            let room = MAX_SERIAL_BACKLOG.saturating_sub(q.len());
            q.extend(d.iter().take(room));
            self.push_serial_input();
        }
    }

    /// Moves held input into the UARTs as their FIFOs drain.
    pub fn push_serial_input(&mut self) {
        for (q, uart) in self.serial_in.iter_mut().zip(self.uarts.iter()) {
            if q.is_empty() {
                continue;
            }
            let mut s = uart.lock().unwrap_or_else(|e| e.into_inner());
            let n = s.can_receive().min(q.len());
            if n > 0 {
                let chunk: Vec<u8> = q.drain(..n).collect();
                s.receive(&chunk);
            }
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
        if let Some(pc) = self.pc() {
            pc.pio_read(port, buf);
        }
        self.push_serial_input();
    }

    pub fn pio_write(&mut self, port: u16, data: &[u8]) {
        if let Some(pc) = self.pc() {
            pc.pio_write(port, data);
        }
    }

    /// Interrupt line changes since the last call (qtest's IRQ lines).
    pub fn take_irq_changes(&self) -> Vec<(u32, bool)> {
        self.pcm
            .as_ref()
            .and_then(|m| m.irq_levels.as_ref())
            .map(|l| l.take_changes())
            .unwrap_or_default()
    }
}
