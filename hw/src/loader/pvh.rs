//! PVH boot of an ELF kernel with a `XEN_ELFNOTE_PHYS32_ENTRY` note: segments are
//! loaded at their physical addresses, an `hvm_start_info` (version 1, with memory
//! map, command line and initrd module) is built, and the vCPU enters the note's
//! address in flat 32-bit protected mode, paging off, with EBX = start info.

use super::e820::e820_table;
use super::elf::Elf;
use super::pagetables::{
    code_segment, data_segment, write_boot_gdt, BOOT_CS, BOOT_DS, BOOT_GDT_ADDR, GDT_CODE32,
};
use crate::error::{HwError, Result};
use crate::kvm::EntryState;
use crate::memory::GuestMemory;

pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
pub const HVM_START_MAGIC: u32 = 0x336e_c578;
pub const START_INFO_ADDR: u64 = 0x6000;
const MODLIST_ADDR: u64 = 0x6040;
const MEMMAP_ADDR: u64 = 0x6080;
const MEMMAP_MAX: usize = 32;
pub const PVH_CMDLINE_ADDR: u64 = 0x2_0000;

/// The PVH entry address, if `kernel` is an ELF with the note.
pub fn pvh_entry(kernel: &[u8]) -> Option<u64> {
    let elf = Elf::parse(kernel).ok()?;
    let note = elf
        .notes()
        .into_iter()
        .find(|n| n.name == b"Xen" && n.n_type == XEN_ELFNOTE_PHYS32_ENTRY)?;
    match note.desc.len() {
        4 => Some(
            u32::from_le_bytes([note.desc[0], note.desc[1], note.desc[2], note.desc[3]]) as u64,
        ),
        8.. => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&note.desc[..8]);
            Some(u64::from_le_bytes(b))
        }
        _ => None,
    }
}

pub struct PvhBoot<'a> {
    pub kernel: &'a [u8],
    pub initrd: Option<&'a [u8]>,
    pub cmdline: &'a str,
    pub rsdp: Option<u64>,
}

pub fn load_pvh(mem: &GuestMemory, boot: &PvhBoot) -> Result<EntryState> {
    let entry_addr = pvh_entry(boot.kernel).ok_or_else(|| HwError::BadImage {
        what: "ELF kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)".into(),
    })?;
    let elf = Elf::parse(boot.kernel)?;
    let (_, kernel_end) = elf.load(mem)?;

    let mut cmd = boot.cmdline.as_bytes().to_vec();
    cmd.push(0);
    mem.write(PVH_CMDLINE_ADDR, &cmd)?;

    let layout = mem.layout();
    let mut nr_modules = 0u32;
    if let Some(initrd) = boot.initrd {
        let size = initrd.len() as u64;
        let top = layout.below_4g.min(0x1_0000_0000);
        let addr = top
            .checked_sub(size)
            .map(|a| a & !0xfff)
            .filter(|a| *a >= kernel_end && size > 0);
        let addr = addr.ok_or_else(|| HwError::BadImage {
            what: "qemu: initrd is too large".into(),
        })?;
        mem.write(addr, initrd)?;
        let mut m = [0u8; 32];
        m[0..8].copy_from_slice(&addr.to_le_bytes());
        m[8..16].copy_from_slice(&size.to_le_bytes());
        mem.write(MODLIST_ADDR, &m)?;
        nr_modules = 1;
    }

    let map = e820_table(&layout);
    let n = map.len().min(MEMMAP_MAX);
    for (i, e) in map.iter().take(n).enumerate() {
        let mut b = [0u8; 24];
        b[0..8].copy_from_slice(&e.addr.to_le_bytes());
        b[8..16].copy_from_slice(&e.size.to_le_bytes());
        b[16..20].copy_from_slice(&e.kind.to_le_bytes());
        mem.write(MEMMAP_ADDR + i as u64 * 24, &b)?;
    }

    let mut si = [0u8; 56];
    si[0..4].copy_from_slice(&HVM_START_MAGIC.to_le_bytes());
    si[4..8].copy_from_slice(&1u32.to_le_bytes());
    si[12..16].copy_from_slice(&nr_modules.to_le_bytes());
    if nr_modules > 0 {
        si[16..24].copy_from_slice(&MODLIST_ADDR.to_le_bytes());
    }
    si[24..32].copy_from_slice(&PVH_CMDLINE_ADDR.to_le_bytes());
    si[32..40].copy_from_slice(&boot.rsdp.unwrap_or(0).to_le_bytes());
    si[40..48].copy_from_slice(&MEMMAP_ADDR.to_le_bytes());
    si[48..52].copy_from_slice(&(n as u32).to_le_bytes());
    mem.write(START_INFO_ADDR, &si)?;

    let mut e = EntryState {
        gdt_limit: write_boot_gdt(mem, GDT_CODE32)?,
        gdt_base: BOOT_GDT_ADDR,
        cs: code_segment(BOOT_CS, false),
        data: data_segment(BOOT_DS),
        cr0: 0x11,
        ..Default::default()
    };
    e.regs.rflags = 0x2;
    e.regs.rbx = START_INFO_ADDR;
    e.regs.rip = entry_addr;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::elf::tests::build_elf64;
    use crate::memory::{PcLayout, RamSpec};

    fn mem() -> GuestMemory {
        GuestMemory::new_pc(
            PcLayout::pc(64 << 20, None),
            &[RamSpec::anonymous(64 << 20)],
        )
        .expect("ram")
    }

    #[test]
    fn start_info_and_registers_follow_the_pvh_abi() {
        let m = mem();
        let k = build_elf64(
            0x100_0000,
            0xffff_ffff_8100_0000,
            &[0xf4; 64],
            0,
            Some(("Xen", 18, &0x100_0010u32.to_le_bytes())),
        );
        let initrd = vec![7u8; 5000];
        let e = load_pvh(
            &m,
            &PvhBoot {
                kernel: &k,
                initrd: Some(&initrd),
                cmdline: "console=ttyS0",
                rsdp: Some(0xe0000),
            },
        )
        .expect("load");
        assert_eq!(e.regs.rip, 0x100_0010);
        assert_eq!(e.regs.rbx, START_INFO_ADDR);
        assert_eq!((e.cs.db, e.cs.l), (1, 0));
        assert_eq!(e.cr0 & 0x8000_0001, 1);
        assert_eq!(m.read_u32(START_INFO_ADDR).expect("magic"), HVM_START_MAGIC);
        assert_eq!(m.read_u32(START_INFO_ADDR + 4).expect("version"), 1);
        assert_eq!(m.read_u32(START_INFO_ADDR + 12).expect("modules"), 1);
        let modlist = m.read_u64(START_INFO_ADDR + 16).expect("modlist");
        let rd = m.read_u64(modlist).expect("initrd addr");
        assert_eq!(m.read_u64(modlist + 8).expect("initrd size"), 5000);
        assert_eq!(m.read_u8(rd).expect("initrd"), 7);
        let cmd = m.read_u64(START_INFO_ADDR + 24).expect("cmdline");
        let mut c = [0u8; 14];
        m.read(cmd, &mut c).expect("cmd");
        assert_eq!(&c, b"console=ttyS0\0");
        assert_eq!(m.read_u64(START_INFO_ADDR + 32).expect("rsdp"), 0xe0000);
        assert!(m.read_u32(START_INFO_ADDR + 48).expect("memmap entries") >= 3);
        assert_eq!(m.read_u8(0x100_0000).expect("kernel"), 0xf4);
    }

    #[test]
    fn elf_without_the_note_is_refused() {
        let m = mem();
        let k = build_elf64(0x100_0000, 0x100_0000, &[0xf4; 4], 0, None);
        assert!(load_pvh(
            &m,
            &PvhBoot {
                kernel: &k,
                initrd: None,
                cmdline: "",
                rsdp: None
            }
        )
        .is_err());
        assert_eq!(pvh_entry(b"not elf"), None);
    }
}
