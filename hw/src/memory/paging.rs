//! Guest virtual to physical translation by walking the guest's page tables in guest
//! memory (for `x`, `memsave` and dumps), as the CPU would for a read.

use super::GuestMemory;

const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const EFER_LMA: u64 = 1 << 10;
const PRESENT: u64 = 1;
const PAGE_SIZE_BIT: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The control registers that decide how addresses are translated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PagingMode {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

impl PagingMode {
    pub fn from_sregs(s: &kvm_bindings::kvm_sregs) -> PagingMode {
        PagingMode {
            cr0: s.cr0,
            cr3: s.cr3,
            cr4: s.cr4,
            efer: s.efer,
        }
    }
}

/// Translates a linear address; `None` when a table entry is not present or the
/// tables lie outside guest memory. Without paging the address is physical.
pub fn virt_to_phys(mem: &GuestMemory, mode: &PagingMode, addr: u64) -> Option<u64> {
    if mode.cr0 & CR0_PG == 0 {
        return Some(addr);
    }
    if mode.efer & EFER_LMA != 0 {
        let mut table = mode.cr3 & ADDR_MASK;
        for (level, shift) in [(4, 39), (3, 30), (2, 21), (1, 12)] {
            let idx = (addr >> shift) & 0x1ff;
            let e = mem.read_u64(table + idx * 8).ok()?;
            if e & PRESENT == 0 {
                return None;
            }
            if (level == 3 || level == 2) && e & PAGE_SIZE_BIT != 0 {
                let mask = (1u64 << shift) - 1;
                return Some((e & ADDR_MASK & !mask) | (addr & mask));
            }
            table = e & ADDR_MASK;
        }
        return Some(table | (addr & 0xfff));
    }
    if mode.cr4 & CR4_PAE != 0 {
        let addr = addr & 0xffff_ffff;
        let pdpte = mem
            .read_u64((mode.cr3 & 0xffff_ffe0) + ((addr >> 30) & 3) * 8)
            .ok()?;
        if pdpte & PRESENT == 0 {
            return None;
        }
        let pde = mem
            .read_u64((pdpte & ADDR_MASK) + ((addr >> 21) & 0x1ff) * 8)
            .ok()?;
        if pde & PRESENT == 0 {
            return None;
        }
        if pde & PAGE_SIZE_BIT != 0 {
            return Some((pde & ADDR_MASK & !0x1f_ffff) | (addr & 0x1f_ffff));
        }
        let pte = mem
            .read_u64((pde & ADDR_MASK) + ((addr >> 12) & 0x1ff) * 8)
            .ok()?;
        if pte & PRESENT == 0 {
            return None;
        }
        return Some((pte & ADDR_MASK) | (addr & 0xfff));
    }
    let addr = addr & 0xffff_ffff;
    let pde = mem
        .read_u32((mode.cr3 & 0xffff_f000) + ((addr >> 22) & 0x3ff) * 4)
        .ok()? as u64;
    if pde & PRESENT == 0 {
        return None;
    }
    if pde & PAGE_SIZE_BIT != 0 && mode.cr4 & CR4_PSE != 0 {
        // PSE-36: bits 13..20 of the entry are physical address bits 32..39.
        let high = ((pde >> 13) & 0xff) << 32;
        return Some(high | (pde & 0xffc0_0000) | (addr & 0x3f_ffff));
    }
    let pte = mem
        .read_u32((pde & 0xffff_f000) + ((addr >> 12) & 0x3ff) * 4)
        .ok()? as u64;
    if pte & PRESENT == 0 {
        return None;
    }
    Some((pte & 0xffff_f000) | (addr & 0xfff))
}

/// Reads `buf.len()` bytes at a virtual address, page by page.
pub fn read_virt(mem: &GuestMemory, mode: &PagingMode, addr: u64, buf: &mut [u8]) -> Option<()> {
    let mut done = 0usize;
    while done < buf.len() {
        let va = addr.wrapping_add(done as u64);
        let pa = virt_to_phys(mem, mode, va)?;
        let n = ((0x1000 - (va & 0xfff)) as usize).min(buf.len() - done);
        mem.read(pa, &mut buf[done..done + n]).ok()?;
        done += n;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_paging_addresses_are_physical() {
        let mem = GuestMemory::new_flat(1 << 20).expect("ram");
        assert_eq!(
            virt_to_phys(&mem, &PagingMode::default(), 0x1234),
            Some(0x1234)
        );
    }

    #[test]
    fn long_mode_walk_handles_4k_and_2m_pages() {
        let mem = GuestMemory::new_flat(4 << 20).expect("ram");
        // PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000; PD[0] -> PT 0x4000; PD[1] 2 MiB page.
        mem.write_u64(0x1000, 0x2003).expect("pml4");
        mem.write_u64(0x2000, 0x3003).expect("pdpt");
        mem.write_u64(0x3000, 0x4003).expect("pd0");
        mem.write_u64(0x3008, 0x20_0083).expect("pd1");
        mem.write_u64(0x4000 + 5 * 8, 0x9000 | 3).expect("pte");
        let mode = PagingMode {
            cr0: CR0_PG | 1,
            cr3: 0x1000,
            cr4: CR4_PAE,
            efer: EFER_LMA | (1 << 8),
        };
        assert_eq!(virt_to_phys(&mem, &mode, 0x5123), Some(0x9123));
        assert_eq!(virt_to_phys(&mem, &mode, 0x20_1234), Some(0x20_1234));
        assert_eq!(virt_to_phys(&mem, &mode, 0x6000), None);
        mem.write(0x9ffe, b"ab").expect("data");
        let mut b = [0u8; 2];
        assert!(read_virt(&mem, &mode, 0x5ffe, &mut b).is_some());
        assert_eq!(&b, b"ab");
    }

    #[test]
    fn legacy_32_bit_walk_handles_4m_pages() {
        let mem = GuestMemory::new_flat(16 << 20).expect("ram");
        mem.write_u32(0x1000 + 4, 0x40_0083).expect("pde 4M");
        mem.write_u32(0x1000, 0x2003).expect("pde");
        mem.write_u32(0x2000 + 8, 0x7003).expect("pte");
        let mode = PagingMode {
            cr0: CR0_PG | 1,
            cr3: 0x1000,
            cr4: CR4_PSE,
            efer: 0,
        };
        assert_eq!(virt_to_phys(&mem, &mode, 0x40_0010), Some(0x40_0010));
        assert_eq!(virt_to_phys(&mem, &mode, 0x2abc), Some(0x7abc));
    }

    #[test]
    fn tables_outside_memory_give_none_not_a_panic() {
        let mem = GuestMemory::new_flat(1 << 20).expect("ram");
        let mode = PagingMode {
            cr0: CR0_PG | 1,
            cr3: 0xffff_f000,
            cr4: CR4_PAE,
            efer: EFER_LMA,
        };
        assert_eq!(virt_to_phys(&mem, &mode, 0x1000), None);
    }
}
