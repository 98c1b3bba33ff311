//! Direct Linux boot per the x86 boot protocol (Documentation/arch/x86/boot.rst):
//! the bzImage setup header is copied into a zero page with the command line, initrd
//! and e820 map filled in, the protected-mode kernel is loaded at 1 MiB, and the boot
//! vCPU is set up for the 64-bit entry (identity-mapped paging, GDT with __BOOT_CS /
//! __BOOT_DS, RSI = zero page) or the 32-bit entry (flat protected mode, ESI = zero
//! page, EBP/EDI/EBX = 0).

use super::e820::e820_table;
use super::pagetables::{
    code_segment, data_segment, write_boot_gdt, write_identity_tables, BOOT_CS, BOOT_DS,
    BOOT_GDT_ADDR, GDT_CODE32, GDT_CODE64,
};
use crate::error::{HwError, Result};
use crate::kvm::EntryState;
use crate::memory::GuestMemory;

pub const ZERO_PAGE_ADDR: u64 = 0x7000;
pub const CMDLINE_ADDR: u64 = 0x2_0000;
pub const KERNEL_LOAD_ADDR: u64 = 0x10_0000;
const BOOT_STACK: u64 = 0x8ff0;

// Offsets in the zero page (struct boot_params) and the setup header inside it.
const BP_ACPI_RSDP: usize = 0x070;
const BP_EXT_RAMDISK_IMAGE: usize = 0x0c0;
const BP_EXT_RAMDISK_SIZE: usize = 0x0c4;
const BP_EXT_CMD_LINE_PTR: usize = 0x0c8;
const BP_E820_ENTRIES: usize = 0x1e8;
const BP_E820_TABLE: usize = 0x2d0;
const BP_E820_MAX: usize = 128;
const HDR_START: usize = 0x1f1;
const HDR_SETUP_SECTS: usize = 0x1f1;
const HDR_BOOT_FLAG: usize = 0x1fe;
const HDR_JUMP: usize = 0x200;
const HDR_MAGIC: usize = 0x202;
const HDR_VERSION: usize = 0x206;
const HDR_TYPE_OF_LOADER: usize = 0x210;
const HDR_LOADFLAGS: usize = 0x211;
const HDR_CODE32_START: usize = 0x214;
const HDR_RAMDISK_IMAGE: usize = 0x218;
const HDR_RAMDISK_SIZE: usize = 0x21c;
const HDR_HEAP_END_PTR: usize = 0x224;
const HDR_CMD_LINE_PTR: usize = 0x228;
const HDR_INITRD_ADDR_MAX: usize = 0x22c;
const HDR_XLOADFLAGS: usize = 0x236;
const HDR_CMDLINE_SIZE: usize = 0x238;
const HDR_INIT_SIZE: usize = 0x260;

const LOADED_HIGH: u8 = 0x01;
const CAN_USE_HEAP: u8 = 0x80;
const XLF_KERNEL_64: u16 = 0x01;

/// Which entry point to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootEntry {
    /// 64-bit if the kernel offers it, else 32-bit.
    Auto,
    Protected32,
    Long64,
}

pub struct LinuxBoot<'a> {
    pub kernel: &'a [u8],
    pub initrd: Option<&'a [u8]>,
    pub cmdline: &'a str,
    pub entry: BootEntry,
    /// Written to boot_params.acpi_rsdp_addr (protocol 2.14+) when given.
    pub rsdp: Option<u64>,
}

/// Where things went, for tests and `info` output.
#[derive(Debug, Clone)]
pub struct LinuxLayout {
    pub protocol: u16,
    pub kernel_addr: u64,
    pub kernel_size: u64,
    pub initrd_addr: u64,
    pub initrd_size: u64,
    pub entry: EntryState,
}

fn bad(what: &str) -> HwError {
    HwError::BadImage {
        what: what.to_string(),
    }
}

fn rd16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn rd32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn wr32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

/// Whether `data` carries the bzImage setup header.
pub fn is_bzimage(data: &[u8]) -> bool {
    data.len() > 0x264
        && rd16(data, HDR_BOOT_FLAG) == 0xaa55
        && &data[HDR_MAGIC..HDR_MAGIC + 4] == b"HdrS"
}

/// Loads a bzImage; returns the layout with the boot vCPU's entry state.
pub fn load_linux(mem: &GuestMemory, boot: &LinuxBoot) -> Result<LinuxLayout> {
    let k = boot.kernel;
    if !is_bzimage(k) {
        return Err(bad("not a bzImage (no boot protocol header)"));
    }
    let protocol = rd16(k, HDR_VERSION);
    if protocol < 0x202 || k[HDR_LOADFLAGS] & LOADED_HIGH == 0 {
        return Err(bad(
            "linux kernel too old: boot protocol 2.02 with a bzImage is required",
        ));
    }
    let setup_sects = match k[HDR_SETUP_SECTS] {
        0 => 4,
        n => n as usize,
    };
    let setup_size = (setup_sects + 1) * 512;
    if setup_size >= k.len() {
        return Err(bad("linux kernel is truncated"));
    }
    let xloadflags = if protocol >= 0x20c {
        rd16(k, HDR_XLOADFLAGS)
    } else {
        0
    };
    let long = match boot.entry {
        BootEntry::Auto => xloadflags & XLF_KERNEL_64 != 0,
        BootEntry::Protected32 => false,
        BootEntry::Long64 => {
            if xloadflags & XLF_KERNEL_64 == 0 {
                return Err(bad("kernel has no 64-bit entry point"));
            }
            true
        }
    };
    let cmdline_max = if protocol >= 0x206 {
        rd32(k, HDR_CMDLINE_SIZE) as usize
    } else {
        255
    };
    if boot.cmdline.len() > cmdline_max {
        return Err(bad("kernel command line too long"));
    }

    // Protected-mode kernel at 1 MiB.
    let pm = &k[setup_size..];
    let kernel_size = pm.len() as u64;
    mem.write(KERNEL_LOAD_ADDR, pm)?;
    let init_size = if protocol >= 0x20a {
        rd32(k, HDR_INIT_SIZE) as u64
    } else {
        0
    };
    let kernel_end = KERNEL_LOAD_ADDR + kernel_size.max(init_size);

    // Zero page: the setup header as the kernel has it, then the loader's fields.
    let mut zp = vec![0u8; 4096];
    let hdr_end = (HDR_JUMP + 2 + k[HDR_JUMP + 1] as usize)
        .min(0x290)
        .min(k.len());
    zp[HDR_START..hdr_end].copy_from_slice(&k[HDR_START..hdr_end]);
    zp[HDR_TYPE_OF_LOADER] = 0xff;
    zp[HDR_LOADFLAGS] = (zp[HDR_LOADFLAGS] | CAN_USE_HEAP) & !0x40;
    zp[HDR_HEAP_END_PTR..HDR_HEAP_END_PTR + 2].copy_from_slice(&0xfe00u16.to_le_bytes());
    wr32(&mut zp, HDR_CODE32_START, KERNEL_LOAD_ADDR as u32);

    let mut cmd = boot.cmdline.as_bytes().to_vec();
    cmd.push(0);
    mem.write(CMDLINE_ADDR, &cmd)?;
    wr32(&mut zp, HDR_CMD_LINE_PTR, CMDLINE_ADDR as u32);
    wr32(&mut zp, BP_EXT_CMD_LINE_PTR, 0);

    let layout = mem.layout();
    let (mut initrd_addr, mut initrd_size) = (0u64, 0u64);
    if let Some(initrd) = boot.initrd {
        let addr_max = if protocol >= 0x203 {
            rd32(k, HDR_INITRD_ADDR_MAX) as u64
        } else {
            0x37ff_ffff
        };
        let ram_top = layout.below_4g.saturating_sub(1);
        let max = addr_max.min(ram_top);
        let size = initrd.len() as u64;
        if size == 0 || size > max {
            return Err(bad("qemu: initrd is too large"));
        }
        let addr = (max + 1 - size) & !0xfff;
        if addr < kernel_end {
            return Err(bad(&format!(
                "qemu: initrd is too large, cannot support.(max: {}, need {})",
                max.saturating_sub(kernel_end),
                size
            )));
        }
        mem.write(addr, initrd)?;
        wr32(&mut zp, HDR_RAMDISK_IMAGE, addr as u32);
        wr32(&mut zp, HDR_RAMDISK_SIZE, size as u32);
        wr32(&mut zp, BP_EXT_RAMDISK_IMAGE, (addr >> 32) as u32);
        wr32(&mut zp, BP_EXT_RAMDISK_SIZE, (size >> 32) as u32);
        initrd_addr = addr;
        initrd_size = size;
    }

    let e820 = e820_table(&layout);
    let n = e820.len().min(BP_E820_MAX);
    zp[BP_E820_ENTRIES] = n as u8;
    for (i, e) in e820.iter().take(n).enumerate() {
        let at = BP_E820_TABLE + i * 20;
        zp[at..at + 8].copy_from_slice(&e.addr.to_le_bytes());
        zp[at + 8..at + 16].copy_from_slice(&e.size.to_le_bytes());
        zp[at + 16..at + 20].copy_from_slice(&e.kind.to_le_bytes());
    }
    if let Some(rsdp) = boot.rsdp {
        if protocol >= 0x20e {
            zp[BP_ACPI_RSDP..BP_ACPI_RSDP + 8].copy_from_slice(&rsdp.to_le_bytes());
        }
    }
    mem.write(ZERO_PAGE_ADDR, &zp)?;

    let mut entry = EntryState::default();
    entry.regs.rflags = 0x2;
    entry.regs.rsi = ZERO_PAGE_ADDR;
    entry.regs.rsp = BOOT_STACK;
    entry.data = data_segment(BOOT_DS);
    entry.gdt_base = BOOT_GDT_ADDR;
    if long {
        entry.gdt_limit = write_boot_gdt(mem, GDT_CODE64)?;
        entry.cs = code_segment(BOOT_CS, true);
        entry.cr3 = write_identity_tables(mem)?;
        entry.cr0 = 0x8000_0011; // PG | ET | PE
        entry.cr4 = 0x20; // PAE
        entry.efer = 0x500; // LMA | LME
        entry.regs.rip = KERNEL_LOAD_ADDR + 0x200;
    } else {
        entry.gdt_limit = write_boot_gdt(mem, GDT_CODE32)?;
        entry.cs = code_segment(BOOT_CS, false);
        entry.cr0 = 0x11; // ET | PE
        entry.regs.rip = KERNEL_LOAD_ADDR;
    }
    Ok(LinuxLayout {
        protocol,
        kernel_addr: KERNEL_LOAD_ADDR,
        kernel_size,
        initrd_addr,
        initrd_size,
        entry,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::memory::{PcLayout, RamSpec};

    /// A synthetic bzImage: 4 setup sectors plus the boot sector, a header of protocol
    /// `version`, and `pm_len` bytes of protected-mode kernel.
    pub fn synthetic_bzimage(version: u16, xloadflags: u16, pm_len: usize) -> Vec<u8> {
        let mut k = vec![0u8; 5 * 512 + pm_len];
        k[HDR_SETUP_SECTS] = 4;
        k[HDR_BOOT_FLAG..HDR_BOOT_FLAG + 2].copy_from_slice(&0xaa55u16.to_le_bytes());
        k[HDR_JUMP] = 0xeb;
        k[HDR_JUMP + 1] = 0x66; // header ends at 0x268
        k[HDR_MAGIC..HDR_MAGIC + 4].copy_from_slice(b"HdrS");
        k[HDR_VERSION..HDR_VERSION + 2].copy_from_slice(&version.to_le_bytes());
        k[HDR_LOADFLAGS] = LOADED_HIGH;
        wr32(&mut k, HDR_CODE32_START, 0x10_0000);
        wr32(&mut k, HDR_INITRD_ADDR_MAX, 0x7fff_ffff);
        k[HDR_XLOADFLAGS..HDR_XLOADFLAGS + 2].copy_from_slice(&xloadflags.to_le_bytes());
        wr32(&mut k, HDR_CMDLINE_SIZE, 2048);
        wr32(&mut k, HDR_INIT_SIZE, 0x40_0000);
        for (i, b) in k[5 * 512..].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        k
    }

    fn mem(mb: u64) -> GuestMemory {
        GuestMemory::new_pc(
            PcLayout::pc(mb << 20, None),
            &[RamSpec::anonymous(mb << 20)],
        )
        .expect("ram")
    }

    #[test]
    fn sixty_four_bit_entry_follows_the_protocol() {
        let m = mem(128);
        let k = synthetic_bzimage(0x20f, XLF_KERNEL_64, 8192);
        let initrd = vec![0x5au8; 10000];
        let boot = LinuxBoot {
            kernel: &k,
            initrd: Some(&initrd),
            cmdline: "console=ttyS0",
            entry: BootEntry::Auto,
            rsdp: Some(0xe0000),
        };
        let l = load_linux(&m, &boot).expect("load");
        let e = &l.entry;
        assert_eq!(e.regs.rip, 0x10_0200);
        assert_eq!(e.regs.rsi, ZERO_PAGE_ADDR);
        assert_eq!((e.cs.selector, e.cs.l, e.cs.db), (0x10, 1, 0));
        assert_eq!(e.data.selector, 0x18);
        assert_eq!(e.cr0 & 0x8000_0001, 0x8000_0001);
        assert_eq!(e.efer & 0x500, 0x500);
        assert_eq!(e.cr4 & 0x20, 0x20);
        assert_eq!(e.regs.rflags & 0x200, 0, "interrupts must be off");
        // GDT descriptors at 0x10 / 0x18 in guest memory.
        assert_eq!(m.read_u64(e.gdt_base + 0x10).expect("cs"), GDT_CODE64);
        assert_eq!(
            m.read_u64(e.gdt_base + 0x18).expect("ds"),
            0x00cf_9300_0000_ffff
        );
        // Identity map covers the kernel, zero page and command line.
        let pml4 = m.read_u64(e.cr3).expect("pml4") & !0xfff;
        let pdpt0 = m.read_u64(pml4).expect("pdpt") & !0xfff;
        let pde = m.read_u64(pdpt0).expect("pde");
        assert_eq!(pde & 0x83, 0x83);
        assert_eq!(pde & !0xfff, 0);
        // Kernel bytes at 1 MiB.
        assert_eq!(m.read_u8(0x10_0000 + 300).expect("k"), (300 % 251) as u8);
    }

    #[test]
    fn zero_page_carries_header_cmdline_initrd_and_e820() {
        let m = mem(128);
        let k = synthetic_bzimage(0x20f, XLF_KERNEL_64, 4096);
        let initrd = vec![0x5au8; 10000];
        let boot = LinuxBoot {
            kernel: &k,
            initrd: Some(&initrd),
            cmdline: "console=ttyS0 quiet",
            entry: BootEntry::Auto,
            rsdp: Some(0xe0000),
        };
        let l = load_linux(&m, &boot).expect("load");
        let zp = ZERO_PAGE_ADDR;
        assert_eq!(m.read_u16(zp + 0x1fe).expect("flag"), 0xaa55);
        assert_eq!(
            m.read_u32(zp + 0x202).expect("magic"),
            u32::from_le_bytes(*b"HdrS")
        );
        assert_eq!(m.read_u8(zp + 0x210).expect("loader"), 0xff);
        assert_eq!(
            m.read_u8(zp + 0x211).expect("flags") & (LOADED_HIGH | CAN_USE_HEAP),
            LOADED_HIGH | CAN_USE_HEAP
        );
        let cmd = m.read_u32(zp + 0x228).expect("cmd") as u64;
        let mut c = vec![0u8; 20];
        m.read(cmd, &mut c).expect("cmdline");
        assert_eq!(&c, b"console=ttyS0 quiet\0");
        let rd = m.read_u32(zp + 0x218).expect("initrd") as u64;
        assert_eq!(m.read_u32(zp + 0x21c).expect("size"), 10000);
        assert_eq!(rd, l.initrd_addr);
        assert_eq!(rd % 4096, 0);
        assert!(rd + 10000 <= 128 << 20);
        assert!(rd >= 0x10_0000 + 0x40_0000, "initrd overlaps init_size");
        assert_eq!(m.read_u8(rd + 9999).expect("initrd byte"), 0x5a);
        assert_eq!(m.read_u64(zp + 0x70).expect("rsdp"), 0xe0000);
        let n = m.read_u8(zp + 0x1e8).expect("e820 count") as u64;
        let mut ram = 0;
        for i in 0..n {
            let at = zp + 0x2d0 + i * 20;
            if m.read_u32(at + 16).expect("type") == 1 {
                ram += m.read_u64(at + 8).expect("size");
            }
        }
        assert_eq!(ram, 0x9_fc00 + (128 << 20) - 0x10_0000);
    }

    #[test]
    fn thirty_two_bit_entry_sets_flat_segments_and_esi() {
        let m = mem(64);
        let k = synthetic_bzimage(0x20a, 0, 4096);
        let boot = LinuxBoot {
            kernel: &k,
            initrd: None,
            cmdline: "",
            entry: BootEntry::Auto,
            rsdp: None,
        };
        let l = load_linux(&m, &boot).expect("load");
        let e = &l.entry;
        assert_eq!(e.regs.rip, 0x10_0000);
        assert_eq!(e.regs.rsi, ZERO_PAGE_ADDR);
        assert_eq!((e.regs.rbp, e.regs.rdi, e.regs.rbx), (0, 0, 0));
        assert_eq!(
            (e.cs.selector, e.cs.db, e.cs.l, e.cs.limit),
            (0x10, 1, 0, 0xffff_ffff)
        );
        assert_eq!(e.cr0 & 0x8000_0001, 1);
        assert_eq!(e.efer, 0);
        assert_eq!(m.read_u32(ZERO_PAGE_ADDR + 0x218).expect("no initrd"), 0);
    }

    #[test]
    fn long_entry_on_a_32_bit_only_kernel_is_refused() {
        let m = mem(64);
        let k = synthetic_bzimage(0x20a, 0, 4096);
        let boot = LinuxBoot {
            kernel: &k,
            initrd: None,
            cmdline: "",
            entry: BootEntry::Long64,
            rsdp: None,
        };
        assert!(load_linux(&m, &boot).is_err());
    }

    #[test]
    fn garbage_and_truncated_kernels_are_errors() {
        let m = mem(64);
        let boot = LinuxBoot {
            kernel: &[0u8; 100],
            initrd: None,
            cmdline: "",
            entry: BootEntry::Auto,
            rsdp: None,
        };
        assert!(load_linux(&m, &boot).is_err());
        let mut k = synthetic_bzimage(0x20f, 1, 16);
        k[HDR_SETUP_SECTS] = 200;
        let boot = LinuxBoot {
            kernel: &k,
            initrd: None,
            cmdline: "",
            entry: BootEntry::Auto,
            rsdp: None,
        };
        assert!(load_linux(&m, &boot).is_err());
    }

    #[test]
    fn mutated_and_truncated_images_never_panic() {
        let m = mem(64);
        let base = synthetic_bzimage(0x20f, 1, 2048);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..400 {
            let mut k = base.clone();
            for _ in 0..8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = 0x1e0 + (x as usize % 0x90);
                k[at] = (x >> 32) as u8;
            }
            let cut = if round % 3 == 0 {
                (x as usize) % k.len()
            } else {
                k.len()
            };
            let boot = LinuxBoot {
                kernel: &k[..cut],
                initrd: Some(&[1, 2, 3]),
                cmdline: "a",
                entry: BootEntry::Auto,
                rsdp: Some(1),
            };
            let _ = load_linux(&m, &boot);
            let _ = crate::loader::pvh::pvh_entry(&k[..cut]);
        }
    }

    #[test]
    fn too_long_command_line_is_refused() {
        let m = mem(64);
        let k = synthetic_bzimage(0x20f, 1, 16);
        let long = "x".repeat(3000);
        let boot = LinuxBoot {
            kernel: &k,
            initrd: None,
            cmdline: &long,
            entry: BootEntry::Auto,
            rsdp: None,
        };
        assert!(load_linux(&m, &boot).is_err());
    }
}
