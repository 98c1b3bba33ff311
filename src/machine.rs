//! The machine as the process layer sees it: its type, accelerator, guest
//! RAM and the requests it raises. The x86 PC and its devices live in the
//! `hw` crate; this is the seam the emulator talks to.

use memmap2::MmapMut;

use crate::chardev::CharEvent;
use crate::machine_types::MachineType;
use crate::vl::config::Accel;

/// Something the machine asks the emulator to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineEvent {
    Reset,
    Shutdown,
}

pub struct Machine {
    pub mtype: &'static MachineType,
    pub accel: Accel,
    pub ram_size: u64,
    pub smp: crate::vl::config::SmpConfig,
    /// Guest RAM at guest physical address 0 (the `none` machine's and,
    /// until the PC machine lands, the only memory qtest can reach).
    ram: Option<MmapMut>,
    events: Vec<MachineEvent>,
}

#[derive(Debug)]
pub struct MachineError(pub String);

impl Machine {
    pub fn new(
        mtype: &'static MachineType,
        accel: Accel,
        ram_size: u64,
        smp: crate::vl::config::SmpConfig,
    ) -> Result<Self, MachineError> {
        let ram =
            if ram_size > 0 {
                Some(MmapMut::map_anon(ram_size as usize).map_err(|e| {
                    MachineError(format!("cannot set up guest memory 'pc.ram': {e}"))
                })?)
            } else {
                None
            };
        Ok(Machine {
            mtype,
            accel,
            ram_size,
            smp,
            ram,
            events: Vec::new(),
        })
    }

    pub fn pause(&mut self) {}

    pub fn resume(&mut self) {}

    pub fn reset(&mut self) {}

    /// system_powerdown: the PC raises its ACPI power button; `none` has
    /// nothing to press.
    pub fn powerdown(&mut self) {}

    pub fn take_events(&mut self) -> Vec<MachineEvent> {
        std::mem::take(&mut self.events)
    }

    pub fn serial_input(&mut self, _index: usize, _ev: CharEvent) {}

    /// Reads guest physical memory; bytes outside RAM read as zero, as
    /// unassigned memory does in QEMU under qtest.
    pub fn read_phys(&self, addr: u64, buf: &mut [u8]) {
        buf.fill(0);
        let Some(ram) = &self.ram else { return };
        let len = ram.len() as u64;
        if addr >= len {
            return;
        }
        let n = ((len - addr) as usize).min(buf.len());
        buf[..n].copy_from_slice(&ram[addr as usize..addr as usize + n]);
    }

    /// Writes guest physical memory; bytes outside RAM are dropped.
    pub fn write_phys(&mut self, addr: u64, data: &[u8]) {
        let Some(ram) = &mut self.ram else { return };
        let len = ram.len() as u64;
        if addr >= len {
            return;
        }
        let n = ((len - addr) as usize).min(data.len());
        ram[addr as usize..addr as usize + n].copy_from_slice(&data[..n]);
    }

    /// Port I/O from qtest. No ISA devices are modelled on this seam yet:
    /// reads float high, as an empty ISA bus does.
    pub fn pio_read(&mut self, _port: u16, buf: &mut [u8]) {
        buf.fill(0xff);
    }

    pub fn pio_write(&mut self, _port: u16, _data: &[u8]) {}
}
