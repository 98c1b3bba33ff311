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

/// The class names QEMU prints in `info pci` and `query-pci`'s `class_info.desc`.
pub fn class_description(class: u16) -> Option<&'static str> {
    const TABLE: &[(u16, &str)] = &[
        (0x0001, "VGA controller"),
        (0x0100, "SCSI controller"),
        (0x0101, "IDE controller"),
        (0x0102, "Floppy controller"),
        (0x0103, "IPI controller"),
        (0x0104, "RAID controller"),
        (0x0106, "SATA controller"),
        (0x0107, "SAS controller"),
        (0x0180, "Storage controller"),
        (0x0200, "Ethernet controller"),
        (0x0201, "Token Ring controller"),
        (0x0202, "FDDI controller"),
        (0x0203, "ATM controller"),
        (0x0280, "Network controller"),
        (0x0300, "VGA controller"),
        (0x0301, "XGA controller"),
        (0x0302, "3D controller"),
        (0x0380, "Display controller"),
        (0x0400, "Video controller"),
        (0x0401, "Audio controller"),
        (0x0402, "Phone"),
        (0x0403, "Audio controller"),
        (0x0480, "Multimedia controller"),
        (0x0500, "RAM controller"),
        (0x0501, "Flash controller"),
        (0x0580, "Memory controller"),
        (0x0600, "Host bridge"),
        (0x0601, "ISA bridge"),
        (0x0602, "EISA bridge"),
        (0x0603, "MC bridge"),
        (0x0604, "PCI bridge"),
        (0x0605, "PCMCIA bridge"),
        (0x0606, "NUBUS bridge"),
        (0x0607, "CARDBUS bridge"),
        (0x0608, "RACEWAY bridge"),
        (0x0680, "Bridge"),
        (0x0700, "Serial port"),
        (0x0701, "Parallel port"),
        (0x0800, "Interrupt controller"),
        (0x0801, "DMA controller"),
        (0x0802, "Timer"),
        (0x0803, "RTC"),
        (0x0900, "Keyboard"),
        (0x0901, "Pen"),
        (0x0902, "Mouse"),
        (0x0a00, "Dock station"),
        (0x0b00, "i386 cpu"),
        (0x0c00, "Fireware contorller"),
        (0x0c01, "Access bus controller"),
        (0x0c02, "SSA controller"),
        (0x0c03, "USB controller"),
        (0x0c04, "Fibre channel controller"),
        (0x0c05, "SMBus"),
    ];
    TABLE.iter().find(|(c, _)| *c == class).map(|(_, d)| *d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pc_functions_have_qemus_class_names() {
        assert_eq!(class_description(i440fx().class()), Some("Host bridge"));
        assert_eq!(class_description(piix3().class()), Some("ISA bridge"));
        assert_eq!(
            class_description(piix3_ide().class()),
            Some("IDE controller")
        );
        assert_eq!(class_description(piix4_pm(0x600).class()), Some("Bridge"));
        assert_eq!(class_description(0x1234), None);
    }
}
