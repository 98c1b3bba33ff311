//! The machine as the process layer sees it: its type, accelerator, guest
//! RAM, the PC devices from the `hw` crate, and the requests they raise.
//! Device accesses come from qtest (main loop) or from vCPU threads under
//! the big lock; device output (serial bytes, events) is collected in
//! queues that the emulator drains after each access.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use hw::events::{EventQueue, MachineEvent as HwEvent};
use hw::kvm::{Vcpu, VcpuControl};
use hw::loader::generic::{GenericLoader, SetPc};
use hw::machine::{KernelImages, MachineConfig, PcMachine};
use hw::memory::{GuestMemory, RamSpec};
use hw::pc::PcDevices;

use crate::chardev::CharEvent;
use crate::devices::DeviceSpec;
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

/// COM2, COM3, COM4: I/O base and IRQ.
const EXTRA_UARTS: [(u16, u32); 3] = [(0x2f8, 3), (0x3e8, 4), (0x2e8, 3)];

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

/// Writes guest memory as the address space does for a loader: RAM and
/// ROM take the bytes, addresses with nothing behind them drop them.
fn write_ignoring_holes(mem: &GuestMemory, addr: u64, data: &[u8]) {
    if mem.write(addr, data).is_ok() {
        return;
    }
    for (i, b) in data.iter().enumerate() {
        let _ = mem.write(addr.wrapping_add(i as u64), &[*b]);
    }
}

/// One `-device loader`, with its file read once at start-up: a system
/// reset writes the same bytes again even if the file changed or went.
#[derive(Clone)]
struct Loader {
    spec: GenericLoader,
    image: Option<Vec<u8>>,
}

impl Loader {
    fn new(spec: &GenericLoader) -> Result<Loader, MachineError> {
        let image = match &spec.file {
            Some(path) => Some(std::fs::read(path).map_err(|_| {
                MachineError(format!(
                    "-device loader: Cannot load specified image {}",
                    path.display()
                ))
            })?),
            None => None,
        };
        Ok(Loader {
            spec: spec.clone(),
            image,
        })
    }

    /// The file form from the cached bytes: an ELF at its physical
    /// addresses (the PC its entry), anything else raw at `addr`.
    fn load_image(&self, image: &[u8], mem: &GuestMemory) -> hw::error::Result<u64> {
        use hw::loader::elf::{is_elf, Elf};
        if !self.spec.force_raw && is_elf(image) {
            let elf = Elf::parse(image)?;
            elf.load(mem)?;
            return Ok(elf.entry);
        }
        let addr = self.spec.addr.unwrap_or(0);
        let name = self
            .spec
            .file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let bad = || hw::HwError::BadImage {
            what: format!("Cannot load specified image {name}"),
        };
        if image.len() as u64 > mem.ram_size() {
            return Err(bad());
        }
        write_ignoring_holes(mem, addr, image);
        Ok(addr)
    }

    /// Writes the loader into guest memory; the PC it wants set, if any,
    /// names an existing vCPU.
    fn apply(&self, mem: &GuestMemory, cpus: usize) -> Result<Option<SetPc>, MachineError> {
        let l = &self.spec;
        if let Some(cpu) = l.cpu_num {
            if cpu >= cpus {
                return Err(MachineError(format!(
                    "-device loader: Specified boot CPU#{cpu} is nonexistent"
                )));
            }
        }
        let result = match (&self.image, l.data) {
            (Some(image), _) => self
                .load_image(image, mem)
                .map(|pc| l.cpu_num.map(|cpu| SetPc { cpu, pc })),
            // A value: QEMU writes it through the address space, where
            // bytes outside RAM are dropped rather than refused.
            (None, Some(value)) => l.validate().map(|()| {
                let n = usize::from(l.data_len.unwrap_or(8)).min(8);
                let bytes = if l.data_be {
                    value.to_be_bytes()[8 - n..].to_vec()
                } else {
                    value.to_le_bytes()[..n].to_vec()
                };
                write_ignoring_holes(mem, l.addr.unwrap_or(0), &bytes);
                None
            }),
            (None, None) => l.apply(mem),
        };
        result.map_err(|e| {
            MachineError(match e {
                hw::HwError::Invalid { what } | hw::HwError::BadImage { what } => {
                    format!("-device loader: {what}")
                }
                other => format!("-device loader: {other}"),
            })
        })
    }
}

impl Machine {
    pub fn new(
        mtype: &'static MachineType,
        accel: Accel,
        opts: &MachineOpts,
    ) -> Result<Self, MachineError> {
        let serial_out = vec![Arc::new(Mutex::new(Vec::new()))];
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
        let out = serial_out[0].clone();
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
            serial_sink: Box::new(move |b: &[u8]| {
                out.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(b)
            }),
        };
        let mut pcm = PcMachine::build(cfg)?;
        let mut loaders = Vec::new();
        for d in &opts.devices {
            match d {
                DeviceSpec::DebugExit { iobase, iosize, .. } => {
                    pcm.devices.add_debug_exit(*iobase, *iosize)?;
                }
                DeviceSpec::Loader { loader, .. } => loaders.push(Loader::new(loader)?),
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
        let mut serial_out = serial_out;
        let mut uarts = vec![pcm.devices.serial.clone()];
        // COM2..COM4 at their ISA ports and IRQs, as many as -serial asked.
        for &(base, irq) in EXTRA_UARTS.iter().take(opts.serial_ports.saturating_sub(1)) {
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

static NUMA_OPTS: crate::vl::opts::OptsList = crate::vl::opts::OptsList {
    name: "numa",
    implied: Some("type"),
    descs: &[],
};

/// One `-numa node` as far as guest RAM cares.
struct NumaNode {
    arg: String,
    memdev: Option<String>,
    mem: Option<u64>,
}

fn parse_numa_node(arg: &str) -> Result<NumaNode, String> {
    let o = NUMA_OPTS
        .parse(arg, true)
        .map_err(|e| format!("-numa {arg}: {}", e.message))?;
    match o.get("type") {
        Some("node") => {}
        Some(t) => {
            return Err(format!(
                "-numa {arg}: Invalid parameter 'type'; {t} is not a valid value"
            ))
        }
        None => return Err(format!("-numa {arg}: Parameter 'type' is missing")),
    }
    for k in o.keys() {
        if !matches!(k, "type" | "nodeid" | "cpus" | "mem" | "memdev") {
            return Err(format!("-numa {arg}: Invalid parameter '{k}'"));
        }
    }
    let mem = match o.get("mem") {
        None => None,
        Some(v) => {
            let n = crate::vl::opts::parse_size("mem", v)
                .map_err(|e| format!("-numa {arg}: {}", e.message))?;
            // A suffix-less size is in MiB, for compatibility.
            Some(if v.ends_with(|c: char| c.is_ascii_digit()) {
                n << 20
            } else {
                n
            })
        }
    };
    let node = NumaNode {
        arg: arg.to_string(),
        memdev: o.get("memdev").map(String::from),
        mem,
    };
    if node.mem.is_some() && node.memdev.is_some() {
        return Err(format!(
            "-numa {arg}: qemu: cannot specify both mem= and memdev="
        ));
    }
    Ok(node)
}

/// The host memory of one backend as guest RAM. The backend's file (or
/// memory file) is mapped again through its open descriptor, so the guest
/// uses the very pages the backend holds (and, with `share=on`, the host
/// file's). A private file backend gets a private copy-on-write mapping
/// of the same file, which is what QEMU's `share=off` is.
fn ram_spec_of(b: &crate::qom::hostmem::MemoryBackend) -> RamSpec {
    use hw::memory::RamBackend;
    let backend = match (&b.kind, b.fd()) {
        (crate::qom::hostmem::BackendKind::File { share, .. }, Some(fd)) => RamBackend::File {
            path: format!("/proc/self/fd/{fd}").into(),
            share: *share,
        },
        // memory-backend-ram keeps its pages in a memory file: shared, so
        // the guest's RAM is those pages.
        (crate::qom::hostmem::BackendKind::Ram, Some(fd)) => RamBackend::File {
            path: format!("/proc/self/fd/{fd}").into(),
            share: true,
        },
        _ => RamBackend::Anonymous,
    };
    RamSpec {
        size: b.size(),
        backend,
        prealloc: false,
    }
}

/// `-numa node,memdev=ID`: once the `-object`s exist, the machine is
/// built again on their memory and the backends are marked in use.
pub fn apply_numa(
    emu: &mut crate::emulator::Emulator,
    cfg: &crate::vl::Config,
) -> Result<(), String> {
    let mut nodes = Vec::new();
    for (name, arg) in &cfg.machine_args {
        if name == "numa" {
            nodes.push(parse_numa_node(arg)?);
        }
    }
    if nodes.is_empty() {
        return Ok(());
    }
    let with_memdev = nodes[0].memdev.is_some();
    if let Some(n) = nodes.iter().find(|n| n.memdev.is_some() != with_memdev) {
        return Err(format!(
            "-numa {}: qemu: memdev option must be specified for either all or no nodes",
            n.arg
        ));
    }
    let ram_size = emu.machine.opts.ram_size;
    let mut specs = Vec::new();
    let mut used: Vec<&str> = Vec::new();
    for n in &nodes {
        let Some(id) = n.memdev.as_deref() else {
            continue;
        };
        let Some(b) = emu.qom.memory_backend(id) else {
            return Err(format!("-numa {}: memdev={id} is ambiguous", n.arg));
        };
        if used.contains(&id) {
            return Err(format!(
                "memory backend {id} is used multiple times. Each -numa option must use a different memdev value."
            ));
        }
        used.push(id);
        specs.push(ram_spec_of(b));
    }
    let total: u64 = if with_memdev {
        specs.iter().map(|s| s.size).sum()
    } else {
        let given: u64 = nodes.iter().filter_map(|n| n.mem).sum();
        // Nodes without mem= share what is left, as QEMU spreads it.
        if nodes.iter().any(|n| n.mem.is_none()) {
            ram_size
        } else {
            given
        }
    };
    if total != ram_size {
        return Err(format!(
            "total memory for NUMA nodes (0x{total:x}) should equal RAM size (0x{ram_size:x})"
        ));
    }
    if !with_memdev || emu.machine.pc().is_none() {
        return Ok(());
    }
    let mut opts = emu.machine.opts.clone();
    opts.ram = specs;
    let (mtype, accel) = (emu.machine.mtype, emu.machine.accel);
    let new = Machine::new(mtype, accel, &opts).map_err(|e| e.0)?;
    emu.machine = new;
    for id in used {
        if let Some(b) = emu.qom.memory_backend_mut(id) {
            b.set_mapped(true);
        }
    }
    Ok(())
}

mod qom_types {
    //! QOM types of the PC's devices, so that qom-list, qom-get and
    //! device-list-properties see them.
    use crate::qom::types::{prop, ty, Access, Dflt, PropDef, TypeDef, TYPE_DEVICE};

    const RW: Access = Access::ReadWrite;

    pub static DEBUG_EXIT_PROPS: &[PropDef] = &[
        prop("iobase", "uint32", RW, Dflt::Int(0x501)),
        prop("iosize", "uint32", RW, Dflt::Int(2)),
    ];

    pub static LOADER_PROPS: &[PropDef] = &[
        prop("addr", "uint64", RW, Dflt::Int(0)),
        prop("data", "uint64", RW, Dflt::Int(0)),
        prop("data-len", "uint8", RW, Dflt::Int(0)),
        prop("data-be", "bool", RW, Dflt::Bool(false)),
        prop("cpu-num", "uint32", RW, Dflt::Int(u32::MAX as i64)),
        prop("file", "str", RW, Dflt::EmptyStr),
        prop("force-raw", "bool", RW, Dflt::Bool(false)),
    ];

    pub static CPU_PROPS: &[PropDef] = &[prop("apic-id", "uint32", RW, Dflt::Int(0))];

    /// Types in parent-first order.
    pub fn all() -> Vec<TypeDef> {
        vec![
            ty("cpu", TYPE_DEVICE, true, &[], &[]),
            ty("x86_64-cpu", "cpu", true, &[], &[]),
            ty("qemu64-x86_64-cpu", "x86_64-cpu", false, &[], CPU_PROPS),
            ty("sys-bus-device", TYPE_DEVICE, true, &[], &[]),
            ty("pci-host-bridge", "sys-bus-device", true, &[], &[]),
            ty("i440FX-pcihost", "pci-host-bridge", false, &[], &[]),
            ty("pci-device", TYPE_DEVICE, true, &[], &[]),
            ty("i440FX", "pci-device", false, &[], &[]),
            ty("PIIX3", "pci-device", false, &[], &[]),
            ty("piix3-ide", "pci-device", false, &[], &[]),
            ty("PIIX4_PM", "pci-device", false, &[], &[]),
            ty("ioapic", "sys-bus-device", false, &[], &[]),
            ty("kvm-ioapic", "sys-bus-device", false, &[], &[]),
            ty("isa-device", TYPE_DEVICE, true, &[], &[]),
            ty("isa-serial", "isa-device", false, &[], &[]),
            ty("mc146818rtc", "isa-device", false, &[], &[]),
            ty("i8042", "isa-device", false, &[], &[]),
            ty("isa-debug-exit", "isa-device", false, &[], DEBUG_EXIT_PROPS),
            ty("loader", TYPE_DEVICE, false, &[], LOADER_PROPS),
        ]
    }
}

/// Puts the machine's CPUs and devices into the QOM tree as QEMU's pc
/// has them: CPUs first under /machine/unattached, the host bridge at
/// /machine/i440fx, the I/O APIC at /machine/ioapic, the rest of the
/// board under /machine/unattached, `-device`s under /machine/peripheral
/// (with id) or /machine/peripheral-anon.
pub fn populate_qom(emu: &mut crate::emulator::Emulator) {
    use crate::qom::Stored;
    use serde_json::{json, Value};

    for t in qom_types::all() {
        emu.qom.register_type(t);
    }
    if emu.machine.pc().is_none() {
        return;
    }
    let Some(machine) = emu.qom.resolve("/machine") else {
        return;
    };
    let unattached = emu.qom.add_container(machine, "unattached");
    let mut n = 0;
    let add = |emu: &mut crate::emulator::Emulator, parent, name: String, ty, st: Stored| {
        let _ = emu.qom.add_child(parent, &name, ty, Box::new(st));
    };
    for i in 0..emu.machine.smp.cpus {
        let mut st = Stored::default();
        st.values.insert("apic-id".into(), json!(i));
        add(
            emu,
            unattached,
            format!("device[{n}]"),
            "qemu64-x86_64-cpu",
            st,
        );
        n += 1;
    }
    add(
        emu,
        machine,
        "i440fx".into(),
        "i440FX-pcihost",
        Stored::default(),
    );
    let ioapic = if emu.machine.accel == crate::vl::config::Accel::Kvm {
        "kvm-ioapic"
    } else {
        "ioapic"
    };
    add(emu, machine, "ioapic".into(), ioapic, Stored::default());
    for ty in [
        "i440FX",
        "PIIX3",
        "piix3-ide",
        "PIIX4_PM",
        "mc146818rtc",
        "isa-serial",
        "i8042",
    ] {
        add(
            emu,
            unattached,
            format!("device[{n}]"),
            ty,
            Stored::default(),
        );
        n += 1;
    }
    let peripheral = emu.qom.add_container(machine, "peripheral");
    let anon = emu.qom.add_container(machine, "peripheral-anon");
    let mut anon_n = 0;
    for d in emu.machine.opts.devices.clone() {
        let (id, ty, values): (Option<String>, &str, Vec<(&str, Value)>) = match d {
            DeviceSpec::DebugExit { id, iobase, iosize } => (
                id,
                "isa-debug-exit",
                vec![("iobase", json!(iobase)), ("iosize", json!(iosize))],
            ),
            DeviceSpec::Loader { id, loader } => {
                let mut v = vec![
                    ("addr", json!(loader.addr.unwrap_or(0))),
                    ("data", json!(loader.data.unwrap_or(0))),
                    ("data-len", json!(loader.data_len.unwrap_or(0))),
                    ("data-be", json!(loader.data_be)),
                    ("force-raw", json!(loader.force_raw)),
                ];
                if let Some(c) = loader.cpu_num {
                    v.push(("cpu-num", json!(c)));
                }
                if let Some(f) = &loader.file {
                    v.push(("file", json!(f.display().to_string())));
                }
                (id, "loader", v)
            }
        };
        let mut st = Stored::default();
        for (k, v) in values {
            st.values.insert(k.into(), v);
        }
        match id {
            Some(id) => add(emu, peripheral, id, ty, st),
            None => {
                add(emu, anon, format!("device[{anon_n}]"), ty, st);
                anon_n += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vl::config::Accel;

    fn pc_opts(devices: Vec<DeviceSpec>) -> MachineOpts {
        MachineOpts {
            ram_size: 16 << 20,
            smp: SmpConfig {
                cpus: 2,
                max_cpus: 2,
                sockets: 2,
                cores: 1,
                threads: 1,
            },
            rtc_base: None,
            bios: None,
            kernel: None,
            initrd: None,
            append: None,
            serial_ports: 1,
            devices,
            ram: Vec::new(),
        }
    }

    fn loader(arg: &str) -> DeviceSpec {
        crate::devices::parse_device(arg)
            .expect("parse")
            .expect("a loader")
    }

    fn pc(devices: Vec<DeviceSpec>) -> Result<Machine, MachineError> {
        let mt = crate::machine_types::find("pc").expect("pc machine");
        Machine::new(mt, Accel::Qtest, &pc_opts(devices))
    }

    #[test]
    fn loader_values_land_in_ram_and_outside_ram_are_dropped() {
        let m = pc(vec![
            loader("loader,data=0x11223344,data-len=4,addr=0x1000"),
            loader("loader,data=0x5566,data-len=2,addr=0x2000,data-be=on"),
            loader("loader,data=1,data-len=8,addr=0x40000000"),
        ])
        .expect("machine");
        let mut b = [0u8; 4];
        m.read_phys(0x1000, &mut b);
        assert_eq!(b, [0x44, 0x33, 0x22, 0x11]);
        m.read_phys(0x2000, &mut b[..2]);
        assert_eq!(&b[..2], &[0x55, 0x66]);
    }

    #[test]
    fn loader_file_is_written_again_at_reset_after_the_file_is_gone() {
        let path = std::env::temp_dir().join(format!("rqemu-loader-{}.bin", std::process::id()));
        std::fs::write(&path, b"abcd").expect("write file");
        let mut m = pc(vec![loader(&format!(
            "loader,file={},addr=0x3000",
            path.display()
        ))])
        .expect("machine");
        std::fs::remove_file(&path).expect("remove");
        m.write_phys(0x3000, b"zzzz");
        m.reset();
        let mut b = [0u8; 4];
        m.read_phys(0x3000, &mut b);
        assert_eq!(&b, b"abcd");
    }

    #[test]
    fn numa_node_mem_without_suffix_is_mebibytes() {
        let n = parse_numa_node("node,mem=32").expect("parse");
        assert_eq!(n.mem, Some(32 << 20));
        let n = parse_numa_node("node,nodeid=1,memdev=m0").expect("parse");
        assert_eq!(n.memdev.as_deref(), Some("m0"));
    }

    #[test]
    fn numa_mistakes_get_qemus_messages() {
        assert_eq!(
            parse_numa_node("node,mem=1G,memdev=m0")
                .err()
                .expect("error"),
            "-numa node,mem=1G,memdev=m0: qemu: cannot specify both mem= and memdev="
        );
        assert_eq!(
            parse_numa_node("node,bogus=1").err().expect("error"),
            "-numa node,bogus=1: Invalid parameter 'bogus'"
        );
    }

    #[test]
    fn loader_for_a_missing_cpu_is_refused() {
        let e = pc(vec![loader("loader,addr=0x100,cpu-num=2")])
            .err()
            .expect("error");
        assert_eq!(e.0, "-device loader: Specified boot CPU#2 is nonexistent");
    }
}
