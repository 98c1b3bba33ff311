//! The machine as the process layer sees it: its type, accelerator, guest
//! RAM, the PC devices from the `hw` crate, and the requests they raise.
//! Device accesses come from qtest (main loop) or from vCPU threads under
//! the big lock; device output (serial bytes, events) is collected in
//! queues that the emulator drains after each access.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use hw::events::{EventQueue, MachineEvent as HwEvent};
use hw::irq::{IrqChip, IrqLevels};
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
}

pub struct Machine {
    pub mtype: &'static MachineType,
    pub accel: Accel,
    pub smp: SmpConfig,
    pub mem: Arc<GuestMemory>,
    pub pc: Option<PcDevices>,
    /// Interrupt line levels when no in-kernel irqchip exists (qtest).
    pub irq_levels: Option<Arc<IrqLevels>>,
    serial_out: Arc<Mutex<Vec<u8>>>,
    serial_in: VecDeque<u8>,
    events: EventQueue,
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
        let (mem, pc, irq_levels) = if mtype.name == "none" {
            (GuestMemory::new_flat(opts.ram_size)?, None, None)
        } else {
            let layout = PcLayout::pc(opts.ram_size, None);
            let mem =
                GuestMemory::new_pc(layout, &[hw::memory::RamSpec::anonymous(opts.ram_size)])?;
            let levels = IrqLevels::new();
            let chip: Arc<dyn IrqChip> = levels.clone();
            let out = serial_out.clone();
            let rtc_base = match &opts.rtc_base {
                Some(b) => hw::devices::rtc::RtcBase::parse(b).map_err(|_| {
                    MachineError(format!(
                        "invalid date format\nvalid formats: '2006-06-17T16:01:21' or '2006-06-17'"
                    ))
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
            let pc = PcDevices::new(chip, events.clone(), cfg)?;
            (mem, Some(pc), Some(levels))
        };
        Ok(Machine {
            mtype,
            accel,
            smp: opts.smp.clone(),
            mem: Arc::new(mem),
            pc,
            irq_levels,
            serial_out,
            serial_in: VecDeque::new(),
            events,
        })
    }

    pub fn pause(&mut self) {}

    pub fn resume(&mut self) {}

    pub fn reset(&mut self) {
        if let Some(pc) = &self.pc {
            pc.reset();
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
