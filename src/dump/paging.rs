//! Walks each vCPU's page tables (32-bit, PAE, 4-level and 5-level, with
//! 4 KiB, 2 MiB, 4 MiB and 1 GiB pages) to find the virtual mappings of
//! guest RAM, as `dump-guest-memory paging=true` reports them.
//!
//! The walk is resumable: [`PageWalker::run`] reads a bounded number of
//! tables, so a detached dump of a large guest never stalls the main loop.
//! Guest page tables are untrusted: loops and shared tables are cut off by
//! a cap on tables read and mappings found.

use std::sync::Arc;

use super::cpu::CpuState;
use super::error::DumpError;
use super::guest_ram::{GuestRam, RamRange};
use super::mapping::Mapping;

const PRESENT: u64 = 1;
const PAGE_SIZE_BIT: u64 = 1 << 7;
/// Physical address bits 51:12 of a 64-bit entry.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// No real guest comes near these; a guest that does is treated as hostile.
const MAX_TABLES: u64 = 1 << 20;
const MAX_MAPPINGS: usize = 1 << 23;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Two-level 32-bit paging; `pse` enables 4 MiB pages.
    Bits32 { pse: bool },
    /// Three-level PAE paging (32-bit virtual addresses).
    Pae,
    /// Long mode, four levels.
    Long4,
    /// Long mode, five levels (CR4.LA57).
    Long5,
}

impl Mode {
    fn of(cpu: &CpuState) -> Option<(Mode, u64)> {
        if !cpu.paging() {
            return None;
        }
        let cr3 = cpu.cr[3];
        Some(if cpu.pae() {
            if cpu.long_mode() {
                let mode = if cpu.la57() { Mode::Long5 } else { Mode::Long4 };
                (mode, cr3 & ADDR_MASK)
            } else {
                (Mode::Pae, cr3 & 0xffff_ffe0)
            }
        } else {
            (Mode::Bits32 { pse: cpu.pse() }, cr3 & 0xffff_f000)
        })
    }

    fn top_level(self) -> u8 {
        match self {
            Mode::Bits32 { .. } => 2,
            Mode::Pae => 3,
            Mode::Long4 => 4,
            Mode::Long5 => 5,
        }
    }

    /// Bits of virtual address below one entry of `level`.
    fn shift(self, level: u8) -> u32 {
        match self {
            Mode::Bits32 { .. } => 12 + 10 * u32::from(level - 1),
            _ => 12 + 9 * u32::from(level - 1),
        }
    }

    fn entries(self, level: u8) -> usize {
        match self {
            Mode::Bits32 { .. } => 1024,
            Mode::Pae if level == 3 => 4,
            _ => 512,
        }
    }

    fn entry_bytes(self) -> usize {
        match self {
            Mode::Bits32 { .. } => 4,
            _ => 8,
        }
    }

    /// Physical base of a large page mapped by `entry` at `level`, if the
    /// entry maps one.
    fn large_page(self, level: u8, entry: u64) -> Option<u64> {
        if entry & PAGE_SIZE_BIT == 0 {
            return None;
        }
        match (self, level) {
            (Mode::Bits32 { pse: true }, 2) => {
                // PSE-36: bits 20:13 of the entry are address bits 39:32.
                Some((entry & 0xffc0_0000) | ((entry & 0x1f_e000) << 19))
            }
            (Mode::Pae | Mode::Long4 | Mode::Long5, 2) => Some(entry & ADDR_MASK & !0x1f_ffff),
            (Mode::Long4 | Mode::Long5, 3) => Some(entry & ADDR_MASK & !0x3fff_ffff),
            _ => None,
        }
    }

    fn next_table(self, entry: u64) -> u64 {
        match self {
            Mode::Bits32 { .. } => entry & 0xffff_f000,
            _ => entry & ADDR_MASK,
        }
    }

    /// Sign-extends a long-mode address into canonical form.
    fn canonical(self, va: u64) -> u64 {
        let bits = match self {
            Mode::Long4 => 48,
            Mode::Long5 => 57,
            _ => return va,
        };
        let shift = 64 - bits;
        (((va << shift) as i64) >> shift) as u64
    }
}

struct Frame {
    level: u8,
    entries: Vec<u64>,
    next: usize,
    va_base: u64,
}

pub struct PageWalker {
    ram: Arc<dyn GuestRam>,
    ranges: Vec<RamRange>,
    roots: Vec<(Mode, u64)>,
    mode: Mode,
    stack: Vec<Frame>,
    found: Vec<Mapping>,
    tables_read: u64,
}

impl PageWalker {
    /// A walker over the page tables of every vCPU that has paging on,
    /// each distinct root once. None when no vCPU has paging enabled.
    pub fn new(ram: Arc<dyn GuestRam>, ranges: &[RamRange], cpus: &[CpuState]) -> Option<Self> {
        let mut roots: Vec<(Mode, u64)> = Vec::new();
        for root in cpus.iter().filter_map(Mode::of) {
            if !roots.contains(&root) {
                roots.push(root);
            }
        }
        roots.reverse();
        let (mode, _) = *roots.last()?;
        Some(PageWalker {
            ram,
            ranges: ranges.to_vec(),
            roots,
            mode,
            stack: Vec::new(),
            found: Vec::new(),
            tables_read: 0,
        })
    }

    fn read_table(&mut self, mode: Mode, level: u8, gpa: u64) -> Vec<u64> {
        self.tables_read += 1;
        let n = mode.entries(level);
        let width = mode.entry_bytes();
        let mut raw = vec![0u8; n * width];
        if !self.ram.read_phys(gpa, &mut raw) {
            // A table outside RAM reads as all "not present".
            raw.fill(0);
        }
        raw.chunks_exact(width)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..width].copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect()
    }

    fn in_ram(&self, gpa: u64) -> bool {
        let i = self.ranges.partition_point(|r| r.end() <= gpa);
        self.ranges.get(i).is_some_and(|r| r.contains(gpa))
    }

    fn add(&mut self, phys: u64, virt: u64, len: u64) -> Result<(), DumpError> {
        // Pages of device memory are not dumped (QEMU skips I/O regions).
        if !self.in_ram(phys) {
            return Ok(());
        }
        if let Some(last) = self.found.last_mut() {
            if last.phys.wrapping_add(last.len) == phys && last.virt.wrapping_add(last.len) == virt
            {
                last.len += len;
                return Ok(());
            }
        }
        if self.found.len() >= MAX_MAPPINGS {
            return Err(DumpError::PageTablesTooLarge);
        }
        self.found.push(Mapping { phys, virt, len });
        Ok(())
    }

    /// Reads up to `budget` page tables. Returns true once every root has
    /// been walked.
    pub fn run(&mut self, budget: u32) -> Result<bool, DumpError> {
        let mut left = budget;
        loop {
            if self.stack.is_empty() {
                let Some((mode, table)) = self.roots.pop() else {
                    return Ok(true);
                };
                if left == 0 {
                    self.roots.push((mode, table));
                    return Ok(false);
                }
                left -= 1;
                self.mode = mode;
                let level = mode.top_level();
                let entries = self.read_table(mode, level, table);
                self.stack.push(Frame {
                    level,
                    entries,
                    next: 0,
                    va_base: 0,
                });
                continue;
            }
            let mode = self.mode;
            let Some(top) = self.stack.last_mut() else {
                continue;
            };
            let i = top.next;
            let Some(&entry) = top.entries.get(i) else {
                self.stack.pop();
                continue;
            };
            top.next += 1;
            let level = top.level;
            let shift = mode.shift(level);
            let va = top.va_base | ((i as u64) << shift);
            if entry & PRESENT == 0 {
                continue;
            }
            if level == 1 {
                let phys = mode.next_table(entry);
                self.add(phys, mode.canonical(va), 1 << 12)?;
                continue;
            }
            if let Some(phys) = mode.large_page(level, entry) {
                self.add(phys, mode.canonical(va), 1 << shift)?;
                continue;
            }
            if left == 0 {
                // Come back to this entry on the next call.
                if let Some(top) = self.stack.last_mut() {
                    top.next -= 1;
                }
                return Ok(false);
            }
            if self.tables_read >= MAX_TABLES {
                return Err(DumpError::PageTablesTooLarge);
            }
            left -= 1;
            let entries = self.read_table(mode, level - 1, mode.next_table(entry));
            self.stack.push(Frame {
                level: level - 1,
                entries,
                next: 0,
                va_base: va,
            });
        }
    }

    /// The mappings found, one per run of pages contiguous in both address
    /// spaces, in walk order.
    pub fn into_mappings(self) -> Vec<Mapping> {
        self.found
    }
}
