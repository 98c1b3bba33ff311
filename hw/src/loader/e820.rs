//! The BIOS-style memory map given to kernels booted without firmware (boot_params'
//! e820 table, PVH's memmap).

use crate::acpi::{ACPI_TABLES_BASE, ACPI_TABLES_SIZE};
use crate::kvm::IDENTITY_MAP_ADDR;
use crate::memory::layout::{HIGH_RAM_START, LEGACY_HOLE_START};
use crate::memory::PcLayout;

pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

/// Start of the extended BIOS data area: the last KiB of base memory stays reserved.
const EBDA_START: u64 = 0x9_fc00;

/// RAM below the EBDA, the reserved BIOS/ACPI area, RAM from 1 MiB to the PCI hole,
/// KVM's identity-map/TSS pages, and RAM above 4 GiB.
pub fn e820_table(layout: &PcLayout) -> Vec<E820Entry> {
    let mut v = Vec::new();
    let low = layout.below_4g;
    v.push(E820Entry {
        addr: 0,
        size: EBDA_START.min(low),
        kind: E820_RAM,
    });
    if low > EBDA_START {
        v.push(E820Entry {
            addr: EBDA_START,
            size: LEGACY_HOLE_START - EBDA_START,
            kind: E820_RESERVED,
        });
    }
    v.push(E820Entry {
        addr: ACPI_TABLES_BASE,
        size: ACPI_TABLES_SIZE * 2,
        kind: E820_RESERVED,
    });
    if low > 0x10_0000 {
        v.push(E820Entry {
            addr: 0x10_0000,
            size: low - 0x10_0000,
            kind: E820_RAM,
        });
    }
    v.push(E820Entry {
        addr: IDENTITY_MAP_ADDR,
        size: 0x4000,
        kind: E820_RESERVED,
    });
    if layout.above_4g > 0 {
        v.push(E820Entry {
            addr: HIGH_RAM_START,
            size: layout.above_4g,
            kind: E820_RAM,
        });
    }
    v
}
