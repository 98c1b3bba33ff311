//! Identity-mapped page tables and a boot GDT for entering the kernel in 64-bit mode.

use crate::error::Result;
use crate::memory::GuestMemory;

/// Where the boot GDT goes (below the zero page).
pub const BOOT_GDT_ADDR: u64 = 0x500;
/// PML4; the PDPT follows it and then four page directories (first 4 GiB, 2 MiB pages).
pub const PML4_ADDR: u64 = 0x9000;
const PDPT_ADDR: u64 = PML4_ADDR + 0x1000;
const PD_ADDR: u64 = PML4_ADDR + 0x2000;

/// GDT entries of the Linux boot protocol: __BOOT_CS = 0x10, __BOOT_DS = 0x18.
pub const BOOT_CS: u16 = 0x10;
pub const BOOT_DS: u16 = 0x18;
pub const GDT_CODE64: u64 = 0x00af_9b00_0000_ffff;
pub const GDT_CODE32: u64 = 0x00cf_9b00_0000_ffff;
pub const GDT_DATA: u64 = 0x00cf_9300_0000_ffff;

/// Writes a 4-entry GDT (null, null, code, data); returns its limit.
pub fn write_boot_gdt(mem: &GuestMemory, code: u64) -> Result<u16> {
    let gdt = [0u64, 0, code, GDT_DATA];
    for (i, e) in gdt.iter().enumerate() {
        mem.write_u64(BOOT_GDT_ADDR + i as u64 * 8, *e)?;
    }
    Ok((gdt.len() * 8 - 1) as u16)
}

/// Identity-maps the first 4 GiB with 2 MiB pages; returns the CR3 value.
pub fn write_identity_tables(mem: &GuestMemory) -> Result<u64> {
    mem.write_u64(PML4_ADDR, PDPT_ADDR | 0x3)?;
    for i in 1..512 {
        mem.write_u64(PML4_ADDR + i * 8, 0)?;
    }
    for i in 0..512u64 {
        let v = if i < 4 {
            (PD_ADDR + i * 0x1000) | 0x3
        } else {
            0
        };
        mem.write_u64(PDPT_ADDR + i * 8, v)?;
    }
    for d in 0..4u64 {
        for j in 0..512u64 {
            let phys = (d << 30) | (j << 21);
            mem.write_u64(PD_ADDR + d * 0x1000 + j * 8, phys | 0x83)?;
        }
    }
    Ok(PML4_ADDR)
}

/// A flat 4 GiB code segment descriptor as loaded into CS (64-bit when `long`).
pub fn code_segment(selector: u16, long: bool) -> kvm_bindings::kvm_segment {
    kvm_bindings::kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: 0xb,
        present: 1,
        dpl: 0,
        db: u8::from(!long),
        s: 1,
        l: u8::from(long),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// A flat 4 GiB read/write data segment.
pub fn data_segment(selector: u16) -> kvm_bindings::kvm_segment {
    kvm_bindings::kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: 0x3,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}
