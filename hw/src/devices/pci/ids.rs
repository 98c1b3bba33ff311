//! The PCI functions of QEMU's `pc` machine, with the identities `query-pci` shows.

use super::config::{BarKind, PciConfig};

pub const VENDOR_INTEL: u16 = 0x8086;
/// Subsystem ids QEMU gives its emulated devices.
const QEMU_SUBSYS_VENDOR: u16 = 0x1af4;
const QEMU_SUBSYS: u16 = 0x1100;

/// 00.0: i440FX host bridge (8086:1237).
pub fn i440fx() -> PciConfig {
    let mut c = PciConfig::new(VENDOR_INTEL, 0x1237, 0x0600, 0, 0x02);
    c.set_subsystem(QEMU_SUBSYS_VENDOR, QEMU_SUBSYS);
    // PAM and SMRAM registers keep what the firmware writes.
    c.set_writable(0x50..0x80, 0xff);
    c
}

/// 01.0: PIIX3 PCI-to-ISA bridge (8086:7000), multi-function.
pub fn piix3() -> PciConfig {
    let mut c = PciConfig::new(VENDOR_INTEL, 0x7000, 0x0601, 0, 0);
    c.set_header_type(0x80);
    c.set_subsystem(QEMU_SUBSYS_VENDOR, QEMU_SUBSYS);
    c.set_writable(0x40..0x100, 0xff);
    // PIRQ routing: all disabled until the firmware routes them.
    for off in 0x60..0x64 {
        c.preset(off, 0x80);
    }
    c
}

/// 01.1: PIIX3 IDE (8086:7010), legacy ports, bus-master BAR 4.
pub fn piix3_ide() -> PciConfig {
    let mut c = PciConfig::new(VENDOR_INTEL, 0x7010, 0x0101, 0x80, 0);
    c.set_subsystem(QEMU_SUBSYS_VENDOR, QEMU_SUBSYS);
    c.add_bar(4, 16, BarKind::Io, false);
    c.set_writable(0x40..0x48, 0xff);
    c
}

/// 01.3: PIIX4 power management (8086:7113), class "bridge", INTA.
/// `pm_base` is preset so a kernel booted without firmware finds the PM block.
pub fn piix4_pm(pm_base: u16) -> PciConfig {
    let mut c = PciConfig::new(VENDOR_INTEL, 0x7113, 0x0680, 0, 0x03);
    c.set_subsystem(QEMU_SUBSYS_VENDOR, QEMU_SUBSYS);
    c.set_irq_pin(1);
    c.set_writable(0x40..0x100, 0xff);
    let base = (pm_base as u32 | 1).to_le_bytes();
    for (k, b) in base.iter().enumerate() {
        c.preset(0x40 + k, *b);
    }
    c.preset(0x80, 0x01); // PM I/O space enabled
    c
}
