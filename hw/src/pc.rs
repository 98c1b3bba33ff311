//! The PC's standard devices wired onto a port-I/O bus: COM1, RTC, i8042, the PCI host
//! bridge (with 0xCF9), the ACPI PM and GPE blocks, and optional `isa-debug-exit`.
//!
//! The owner keeps a `PcDevices` inside its exit handler state and forwards port and
//! MMIO exits to `pio_read`/`pio_write`/`mmio_read`/`mmio_write`; it drains
//! `events` afterwards. Handles to each device stay available for the monitor
//! (serial input, power button, RTC, query-pci).

use std::sync::{Arc, Mutex};

use crate::bus::{Bus, SharedDevice};
use crate::devices::acpi_pm::{self, AcpiGpe, AcpiPm};
use crate::devices::debug_exit::DebugExit;
use crate::devices::i8042::{self, I8042};
use crate::devices::ide::{self, IdeController, IdePorts};
use crate::devices::pci::{self, PciHost};
use crate::devices::rtc::{self, Rtc, RtcBase};
use crate::devices::serial::{Serial, SerialSink};
use crate::error::Result;
use crate::events::EventQueue;
use crate::irq::{Irq, IrqChip};
use crate::memory::PcLayout;

/// 00:01.1, the PIIX3 IDE function.
const IDE_DEVFN: u8 = 0x09;

/// Options for the standard devices.
pub struct PcConfig {
    pub rtc_base: RtcBase,
    /// Start with ACPI's SCI_EN set (no firmware will switch ACPI mode on: `-kernel`).
    pub acpi_enabled_at_reset: bool,
    pub layout: PcLayout,
    pub cpus: u32,
}

pub struct PcDevices {
    pub pio: Bus,
    pub mmio: Bus,
    pub events: EventQueue,
    pub rtc: Arc<Mutex<Rtc>>,
    pub i8042: Arc<Mutex<I8042>>,
    pub pci: Arc<Mutex<PciHost>>,
    pub acpi_pm: Arc<Mutex<AcpiPm>>,
    /// The PIIX3 IDE function's two channels (drives attached by the owner).
    pub ide: Arc<Mutex<IdeController>>,
    pub debug_exits: Vec<Arc<Mutex<DebugExit>>>,
    /// UARTs added with `add_serial`, in order (COM1 first when there is
    /// one: QEMU's pc has none without a `-serial`).
    pub serials: Vec<Arc<Mutex<Serial>>>,
    chip: Arc<dyn IrqChip>,
}

impl PcDevices {
    pub fn new(chip: Arc<dyn IrqChip>, events: EventQueue, cfg: PcConfig) -> Result<PcDevices> {
        let irq = |n| Irq::new(chip.clone(), n);
        let mut r = Rtc::new(cfg.rtc_base, irq(rtc::RTC_IRQ), events.clone());
        r.set_pc_memory(cfg.layout.below_4g, cfg.layout.above_4g, cfg.cpus);
        let rtc = Arc::new(Mutex::new(r));
        let kbc = Arc::new(Mutex::new(I8042::new(
            irq(i8042::KBD_IRQ),
            irq(i8042::MOUSE_IRQ),
            events.clone(),
        )));
        let pci = Arc::new(Mutex::new(PciHost::pc_default(
            events.clone(),
            acpi_pm::PM_BASE,
        )));
        let pm = Arc::new(Mutex::new(AcpiPm::new(
            irq(acpi_pm::SCI_IRQ),
            events.clone(),
            cfg.acpi_enabled_at_reset,
        )));
        let mut pio = Bus::new();
        pio.insert(rtc.clone(), rtc::RTC_BASE as u64, 2, "rtc")?;
        pio.insert(kbc.clone(), i8042::DATA_PORT as u64, 1, "i8042-data")?;
        // The i8042 sees its two ports at offsets 0 and 4 of 0x60.
        pio.insert(
            Arc::new(Mutex::new(PortAlias {
                dev: kbc.clone(),
                offset: 4,
            })),
            i8042::CMD_PORT as u64,
            1,
            "i8042-cmd",
        )?;
        pio.insert(
            pci.clone(),
            pci::PCI_HOST_BASE as u64,
            pci::PCI_HOST_LEN as u64,
            "pci-conf",
        )?;
        pio.insert(
            pm.clone(),
            acpi_pm::PM_BASE as u64,
            acpi_pm::PM_LEN as u64,
            "acpi-pm",
        )?;
        pio.insert(
            Arc::new(Mutex::new(AcpiGpe(pm.clone()))),
            acpi_pm::GPE0_BASE as u64,
            acpi_pm::GPE0_LEN as u64,
            "acpi-gpe0",
        )?;
        let ide_ctrl = Arc::new(Mutex::new(IdeController::new(
            irq(ide::CHANNELS[0].2),
            irq(ide::CHANNELS[1].2),
            events.clone(),
        )));
        for (base, len, ports) in IdePorts::ranges(&ide_ctrl) {
            pio.insert(Arc::new(Mutex::new(ports)), base as u64, len as u64, "ide")?;
        }
        Ok(PcDevices {
            pio,
            mmio: Bus::new(),
            events,
            rtc,
            i8042: kbc,
            pci,
            acpi_pm: pm,
            ide: ide_ctrl,
            debug_exits: Vec::new(),
            serials: Vec::new(),
            chip,
        })
    }

    /// A 16550A (COM1 is 0x3f8 / IRQ 4, COM2 0x2f8 / 3, COM3 0x3e8 / 4,
    /// COM4 0x2e8 / 3).
    pub fn add_serial(
        &mut self,
        base: u16,
        irq: u32,
        sink: SerialSink,
    ) -> Result<Arc<Mutex<Serial>>> {
        let s = Arc::new(Mutex::new(Serial::new(self.irq(irq), sink)));
        self.pio.insert(s.clone(), base as u64, 8, "serial")?;
        self.serials.push(s.clone());
        Ok(s)
    }

    /// `-device isa-debug-exit,iobase=,iosize=`.
    pub fn add_debug_exit(&mut self, iobase: u16, iosize: u16) -> Result<()> {
        let d = Arc::new(Mutex::new(DebugExit::new(self.events.clone())));
        self.pio.insert(
            d.clone(),
            iobase as u64,
            iosize.max(1) as u64,
            "isa-debug-exit",
        )?;
        self.debug_exits.push(d);
        Ok(())
    }

    /// An interrupt line on the same controller (for devices the owner adds).
    pub fn irq(&self, gsi: u32) -> Irq {
        Irq::new(self.chip.clone(), gsi)
    }

    pub fn pio_read(&self, port: u16, data: &mut [u8]) {
        if !self.pio.read(port as u64, data) {
            if let Some(off) = self.bmdma_offset(port) {
                let g = self.ide.lock().unwrap_or_else(|e| e.into_inner());
                g.bmdma_read(off, data);
            }
        }
    }
    pub fn pio_write(&self, port: u16, data: &[u8]) {
        if !self.pio.write(port as u64, data) {
            if let Some(off) = self.bmdma_offset(port) {
                let mut g = self.ide.lock().unwrap_or_else(|e| e.into_inner());
                g.bmdma_write(off, data);
            }
        }
    }

    /// Where `port` falls in the IDE function's bus-master BAR 4, while the
    /// guest has it mapped (I/O decoding on, a non-zero address).
    fn bmdma_offset(&self, port: u16) -> Option<u64> {
        let pci = self.pci.lock().unwrap_or_else(|e| e.into_inner());
        let (_, f) = pci.functions().find(|(d, _)| *d == IDE_DEVFN)?;
        if f.config.bytes[4] & 1 == 0 {
            return None;
        }
        let bar = f.config.bars().into_iter().find(|b| b.bar == 4)?;
        let p = port as u64;
        (bar.address != 0 && p >= bar.address && p < bar.address + bar.size)
            .then(|| p - bar.address)
    }
    pub fn mmio_read(&self, addr: u64, data: &mut [u8]) {
        self.mmio.read(addr, data);
    }
    pub fn mmio_write(&self, addr: u64, data: &[u8]) {
        self.mmio.write(addr, data);
    }

    /// System reset of every standard device (the RTC keeps its clock and NVRAM).
    pub fn reset(&self) {
        fn l<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
            m.lock().unwrap_or_else(|e| e.into_inner())
        }
        for s in &self.serials {
            l(s).reset();
        }
        l(&self.rtc).reset();
        l(&self.i8042).reset();
        l(&self.pci).reset();
        l(&self.acpi_pm).reset();
        l(&self.ide).reset();
    }
}

/// Presents a device at a fixed offset (a second, non-contiguous port of one device).
struct PortAlias {
    dev: SharedDevice,
    offset: u64,
}

impl crate::bus::BusDevice for PortAlias {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.dev
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read(self.offset + offset, data);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        self.dev
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write(self.offset + offset, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::MachineEvent;
    use crate::irq::IrqLevels;

    fn pc() -> (PcDevices, Arc<Mutex<Vec<u8>>>) {
        let out = Arc::new(Mutex::new(Vec::new()));
        let o2 = out.clone();
        let cfg = PcConfig {
            rtc_base: RtcBase::Utc,
            acpi_enabled_at_reset: true,
            layout: PcLayout::pc(128 << 20, None),
            cpus: 1,
        };
        let mut pc = PcDevices::new(IrqLevels::new(), EventQueue::new(), cfg).expect("pc");
        let sink = Box::new(move |b: &[u8]| o2.lock().expect("lock").extend_from_slice(b));
        pc.add_serial(
            crate::devices::serial::COM1_BASE,
            crate::devices::serial::COM1_IRQ,
            sink,
        )
        .expect("COM1");
        (pc, out)
    }

    #[test]
    fn ports_reach_their_devices() {
        let (mut pc, out) = pc();
        pc.pio_write(0x3f8, b"A");
        assert_eq!(*out.lock().expect("lock"), b"A");
        pc.pio_write(0x64, &[0xaa]);
        let mut b = [0u8];
        pc.pio_read(0x60, &mut b);
        assert_eq!(b, [0x55]);
        pc.add_debug_exit(0xf4, 4).expect("debug exit");
        pc.pio_write(0xf4, &[1]);
        pc.pio_write(0xcf9, &[0x06]);
        assert_eq!(
            pc.events.drain(),
            vec![
                MachineEvent::DebugExit { code: 3 },
                MachineEvent::Reset {
                    source: crate::events::ResetSource::ResetControl
                }
            ]
        );
    }

    #[test]
    fn any_port_access_of_any_size_never_panics() {
        let (mut pc, _) = pc();
        pc.add_debug_exit(0x501, 2).expect("debug exit");
        let mut x: u32 = 0x1234_5678;
        let ranges: Vec<(u64, u64)> = pc.pio.ranges().iter().map(|r| (r.base, r.len)).collect();
        for (base, len) in ranges {
            for port in base.saturating_sub(2)..base + len + 2 {
                for size in [0usize, 1, 2, 3, 4, 8] {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let data = x.to_le_bytes().repeat(2);
                    pc.pio_write(port as u16, &data[..size]);
                    let mut buf = vec![0u8; size];
                    pc.pio_read(port as u16, &mut buf);
                }
            }
        }
        pc.events.drain();
    }

    #[test]
    fn reset_keeps_nvram() {
        let (pc, _) = pc();
        pc.pio_write(0x70, &[0x50]);
        pc.pio_write(0x71, &[0x99]);
        pc.reset();
        pc.pio_write(0x70, &[0x50]);
        let mut b = [0u8];
        pc.pio_read(0x71, &mut b);
        assert_eq!(b, [0x99]);
    }
}
