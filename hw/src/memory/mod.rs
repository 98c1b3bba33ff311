//! Guest physical memory: RAM (anonymous or file-backed mappings) and ROM images, laid
//! out as QEMU's `pc` machine does, with bounds-checked accessors by guest address.
//!
//! This module owns the host mappings; KVM memory slots point into them, so a
//! `GuestMemory` must outlive the VM that maps it (the VM keeps an `Arc`).

mod backend;
pub mod layout;
pub mod paging;

use std::ptr;

pub use backend::{RamBackend, RamSpec};
pub use layout::PcLayout;

use crate::error::{HwError, Result};
use backend::Backing;

/// VGA window below 1 MiB: never RAM on a PC.
const VGA_HOLE: (u64, u64) = (0xa_0000, 0xc_0000);

/// One contiguous guest-physical range backed by host memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RamBlock {
    /// Guest physical address of the first byte.
    pub gpa: u64,
    pub size: u64,
    /// Host address of the first byte (valid for the life of the `GuestMemory`).
    pub host: *mut u8,
    /// ROM (BIOS image and its alias): the guest cannot write it.
    pub read_only: bool,
    /// Offset in the concatenated RAM (for migration / dumps); ROM blocks use 0.
    pub ram_offset: u64,
}

/// Guest RAM and ROM of one machine.
pub struct GuestMemory {
    backings: Vec<Backing>,
    roms: Vec<memmap2::MmapMut>,
    blocks: Vec<RamBlock>,
    layout: PcLayout,
}

// SAFETY: the raw host pointers in `blocks` point into mappings owned by this struct,
// which are never unmapped while it lives; concurrent access goes through copies.
unsafe impl Send for GuestMemory {}
// SAFETY: as above; all accessors take `&self` and copy bytes with raw pointers, the same
// way the guest itself writes this memory concurrently.
unsafe impl Sync for GuestMemory {}

impl GuestMemory {
    /// Builds the RAM of a `pc` machine from one or more backends (concatenated in
    /// order, as `-numa node,memdev=` lists them) split around the PCI hole.
    pub fn new_pc(layout: PcLayout, specs: &[RamSpec]) -> Result<GuestMemory> {
        let total: u64 = specs.iter().map(|s| s.size).sum();
        if total != layout.ram_size {
            return Err(HwError::Invalid {
                what: format!(
                    "memory backends total {total} bytes but the machine has {}",
                    layout.ram_size
                ),
            });
        }
        let mut backings = Vec::new();
        let mut offset = 0;
        for spec in specs {
            let b = Backing::new(spec, offset)?;
            offset += spec.size;
            backings.push(b);
        }
        let mut mem = GuestMemory {
            backings,
            roms: Vec::new(),
            blocks: Vec::new(),
            layout,
        };
        let mut ranges = Vec::new();
        for (gpa, off, size) in layout.ram_ranges(true) {
            // Punch the VGA window out of low RAM.
            let end = gpa + size;
            if gpa < VGA_HOLE.1 && end > VGA_HOLE.0 {
                if gpa < VGA_HOLE.0 {
                    ranges.push((gpa, off, VGA_HOLE.0 - gpa));
                }
                if end > VGA_HOLE.1 {
                    ranges.push((VGA_HOLE.1, off + (VGA_HOLE.1 - gpa), end - VGA_HOLE.1));
                }
            } else {
                ranges.push((gpa, off, size));
            }
        }
        for (gpa, off, size) in ranges {
            mem.add_ram_range(gpa, off, size)?;
        }
        Ok(mem)
    }

    /// Plain RAM at guest address 0 with no holes (for tests and `-machine none`).
    pub fn new_flat(size: u64) -> Result<GuestMemory> {
        let layout = PcLayout {
            ram_size: size,
            below_4g: size,
            above_4g: 0,
        };
        let spec = RamSpec::anonymous(size);
        let b = Backing::new(&spec, 0)?;
        let mut mem = GuestMemory {
            backings: vec![b],
            roms: Vec::new(),
            blocks: Vec::new(),
            layout,
        };
        mem.add_ram_range(0, 0, size)?;
        Ok(mem)
    }

    /// Maps RAM offsets `[off, off+size)` at `gpa`, one block per backing it crosses.
    fn add_ram_range(&mut self, mut gpa: u64, mut off: u64, mut size: u64) -> Result<()> {
        while size > 0 {
            let b = self
                .backings
                .iter()
                .find(|b| off >= b.offset && off < b.offset + b.size)
                .ok_or(HwError::OutOfBounds { gpa, len: size })?;
            let within = off - b.offset;
            let n = size.min(b.size - within);
            // SAFETY: `within + n <= b.size`, the length of the mapping.
            let host = unsafe { b.host().add(within as usize) };
            self.blocks.push(RamBlock {
                gpa,
                size: n,
                host,
                read_only: false,
                ram_offset: off,
            });
            gpa += n;
            off += n;
            size -= n;
        }
        self.blocks.sort_by_key(|b| b.gpa);
        Ok(())
    }

    /// Removes `[gpa, gpa+len)` from RAM blocks (a ROM is about to cover it).
    fn punch(&mut self, gpa: u64, len: u64) {
        let end = gpa + len;
        let mut out = Vec::new();
        for b in self.blocks.drain(..) {
            let bend = b.gpa + b.size;
            if bend <= gpa || b.gpa >= end {
                out.push(b);
                continue;
            }
            if b.gpa < gpa {
                out.push(RamBlock {
                    size: gpa - b.gpa,
                    ..b
                });
            }
            if bend > end {
                let skip = end - b.gpa;
                // SAFETY: `skip < b.size`, so the pointer stays inside the block.
                let host = unsafe { b.host.add(skip as usize) };
                out.push(RamBlock {
                    gpa: end,
                    size: bend - end,
                    host,
                    read_only: b.read_only,
                    ram_offset: b.ram_offset + skip,
                });
            }
        }
        self.blocks = out;
    }

    /// Adds a read-only image at `gpa` (its own host copy), replacing RAM underneath.
    pub fn add_rom(&mut self, gpa: u64, data: &[u8]) -> Result<*mut u8> {
        let len = data.len() as u64;
        if len == 0 || gpa.checked_add(len).is_none() {
            return Err(HwError::Invalid {
                what: format!("ROM of {len} bytes at 0x{gpa:x}"),
            });
        }
        let mut map = memmap2::MmapOptions::new()
            .len(data.len())
            .map_anon()
            .map_err(|e| HwError::Memory {
                what: "ROM allocation".into(),
                source: e,
            })?;
        map.copy_from_slice(data);
        let host = map.as_mut_ptr();
        self.roms.push(map);
        self.add_rom_alias(gpa, host, len);
        Ok(host)
    }

    /// Maps existing ROM host memory a second time at `gpa` (the BIOS alias below 1 MiB).
    fn add_rom_alias(&mut self, gpa: u64, host: *mut u8, len: u64) {
        self.punch(gpa, len);
        self.blocks.push(RamBlock {
            gpa,
            size: len,
            host,
            read_only: true,
            ram_offset: 0,
        });
        self.blocks.sort_by_key(|b| b.gpa);
    }

    /// Loads a PC BIOS image: mapped so that it ends at 4 GiB, and its last 128 KiB (or
    /// all of it, when smaller) aliased to end at 1 MiB. Both read-only, as QEMU's pc.
    pub fn add_bios(&mut self, image: &[u8]) -> Result<()> {
        let size = image.len() as u64;
        if size == 0 || !size.is_multiple_of(65536) || size > 16 << 20 {
            return Err(HwError::BadImage {
                what: "qemu: could not load PC BIOS".into(),
            });
        }
        let host = self.add_rom(HIGH_4G - size, image)?;
        let isa = size.min(128 << 10);
        // SAFETY: `size - isa < size`, inside the ROM mapping just created.
        let tail = unsafe { host.add((size - isa) as usize) };
        self.add_rom_alias(0x10_0000 - isa, tail, isa);
        Ok(())
    }

    pub fn layout(&self) -> PcLayout {
        self.layout
    }

    /// Every mapped block (RAM and ROM), sorted by guest address.
    pub fn blocks(&self) -> &[RamBlock] {
        &self.blocks
    }

    /// RAM blocks only (what dumps and migration copy).
    pub fn ram_blocks(&self) -> impl Iterator<Item = &RamBlock> {
        self.blocks.iter().filter(|b| !b.read_only)
    }

    /// Total RAM size in bytes.
    pub fn ram_size(&self) -> u64 {
        self.layout.ram_size
    }

    /// The backends, for `query-memdev`.
    pub fn backends(&self) -> Vec<RamSpec> {
        self.backings.iter().map(|b| b.spec.clone()).collect()
    }

    fn block_of(&self, gpa: u64) -> Option<&RamBlock> {
        let i = self.blocks.partition_point(|b| b.gpa <= gpa);
        let b = self.blocks.get(i.checked_sub(1)?)?;
        (gpa < b.gpa + b.size).then_some(b)
    }

    /// Host pointer for `[gpa, gpa+len)`, which must lie inside one block.
    pub fn host_ptr(&self, gpa: u64, len: u64) -> Result<*mut u8> {
        let oob = HwError::OutOfBounds { gpa, len };
        let b = self
            .block_of(gpa)
            .ok_or(HwError::OutOfBounds { gpa, len })?;
        let end = gpa
            .checked_add(len)
            .ok_or(HwError::OutOfBounds { gpa, len })?;
        if end > b.gpa + b.size {
            return Err(oob);
        }
        // SAFETY: `gpa - b.gpa + len <= b.size`, inside the block's mapping.
        Ok(unsafe { b.host.add((gpa - b.gpa) as usize) })
    }

    /// Calls `f(gpa, host, n)` for each piece of `[gpa, gpa+len)`, failing before any
    /// call if some byte is not mapped.
    fn pieces(&self, gpa: u64, len: u64) -> Result<Vec<(*mut u8, usize)>> {
        let mut out = Vec::new();
        let mut cur = gpa;
        let end = gpa
            .checked_add(len)
            .ok_or(HwError::OutOfBounds { gpa, len })?;
        while cur < end {
            let b = self
                .block_of(cur)
                .ok_or(HwError::OutOfBounds { gpa, len })?;
            let n = (b.gpa + b.size).min(end) - cur;
            // SAFETY: `cur` lies in block `b` and `n` stays inside it.
            let host = unsafe { b.host.add((cur - b.gpa) as usize) };
            out.push((host, n as usize));
            cur += n;
        }
        Ok(out)
    }

    /// Reads guest memory (RAM or ROM) into `buf`; may span blocks but not holes.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<()> {
        let mut done = 0;
        for (host, n) in self.pieces(gpa, buf.len() as u64)? {
            // SAFETY: `host..host+n` is mapped (checked by `pieces`) and `buf` has room;
            // guest memory never overlaps a Rust buffer.
            unsafe { ptr::copy_nonoverlapping(host, buf[done..].as_mut_ptr(), n) };
            done += n;
        }
        Ok(())
    }

    /// Writes `data` into guest memory. ROM is writable from the host side (loaders).
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<()> {
        let mut done = 0;
        for (host, n) in self.pieces(gpa, data.len() as u64)? {
            // SAFETY: as in `read`, with the copy going the other way.
            unsafe { ptr::copy_nonoverlapping(data[done..].as_ptr(), host, n) };
            done += n;
        }
        Ok(())
    }

    /// Sets `len` bytes at `gpa` to `byte` (zeroing a segment's BSS); fails before
    /// writing anything if some byte is not mapped.
    pub fn fill(&self, gpa: u64, len: u64, byte: u8) -> Result<()> {
        for (host, n) in self.pieces(gpa, len)? {
            // SAFETY: `host..host+n` is mapped (checked by `pieces`).
            unsafe { ptr::write_bytes(host, byte, n) };
        }
        Ok(())
    }

    /// A view of `[gpa, gpa+len)` inside one block. The guest may change these bytes
    /// while it runs; callers that need a stable copy use `read`.
    pub fn slice(&self, gpa: u64, len: u64) -> Result<&[u8]> {
        let p = self.host_ptr(gpa, len)?;
        // SAFETY: `host_ptr` checked the range lies in one live mapping.
        Ok(unsafe { std::slice::from_raw_parts(p, len as usize) })
    }

    pub fn read_u8(&self, gpa: u64) -> Result<u8> {
        let mut b = [0u8; 1];
        self.read(gpa, &mut b)?;
        Ok(b[0])
    }
    pub fn read_u16(&self, gpa: u64) -> Result<u16> {
        let mut b = [0u8; 2];
        self.read(gpa, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    pub fn read_u32(&self, gpa: u64) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    pub fn read_u64(&self, gpa: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    pub fn write_u16(&self, gpa: u64, v: u16) -> Result<()> {
        self.write(gpa, &v.to_le_bytes())
    }
    pub fn write_u32(&self, gpa: u64, v: u32) -> Result<()> {
        self.write(gpa, &v.to_le_bytes())
    }
    pub fn write_u64(&self, gpa: u64, v: u64) -> Result<()> {
        self.write(gpa, &v.to_le_bytes())
    }
}

const HIGH_4G: u64 = 0x1_0000_0000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pc_memory_reads_back_writes_across_blocks() {
        let mem = GuestMemory::new_pc(PcLayout::pc(2 << 20, None), &[RamSpec::anonymous(2 << 20)])
            .expect("ram");
        mem.write(0x9_fffe, &[1, 2]).expect("write");
        mem.write(0x10_0000 - 2, &[3, 4, 5, 6])
            .expect("write across blocks");
        let mut b = [0u8; 4];
        mem.read(0x10_0000 - 2, &mut b).expect("read");
        assert_eq!(b, [3, 4, 5, 6]);
        assert_eq!(mem.read_u16(0x9_fffe).expect("u16"), 0x0201);
    }

    #[test]
    fn vga_window_is_not_memory() {
        let mem = GuestMemory::new_pc(PcLayout::pc(2 << 20, None), &[RamSpec::anonymous(2 << 20)])
            .expect("ram");
        assert!(mem.read_u8(0xa_0000).is_err());
        assert!(mem.write(0x9_ffff, &[0, 0]).is_err());
    }

    #[test]
    fn access_past_ram_end_is_refused() {
        let mem = GuestMemory::new_flat(1 << 20).expect("ram");
        assert!(mem.read_u32((1 << 20) - 2).is_err());
        assert!(mem.read_u64(u64::MAX - 3).is_err());
    }

    #[test]
    fn bios_maps_at_4g_top_and_aliases_below_1m() {
        let mut mem =
            GuestMemory::new_pc(PcLayout::pc(2 << 20, None), &[RamSpec::anonymous(2 << 20)])
                .expect("ram");
        let mut image = vec![0u8; 256 << 10];
        image[(256 << 10) - 16] = 0xea;
        mem.add_bios(&image).expect("bios");
        assert_eq!(mem.read_u8(0xffff_fff0).expect("top"), 0xea);
        assert_eq!(mem.read_u8(0xf_fff0).expect("alias"), 0xea);
        assert!(mem
            .blocks()
            .iter()
            .any(|b| b.gpa == 0xe_0000 && b.read_only));
        mem.write(0xf_fff1, &[0x77]).expect("host write");
        assert_eq!(mem.read_u8(0xffff_fff1).expect("same bytes"), 0x77);
    }

    #[test]
    fn bios_of_odd_size_is_refused() {
        let mut mem = GuestMemory::new_flat(1 << 20).expect("ram");
        assert!(mem.add_bios(&[0u8; 1000]).is_err());
    }

    #[test]
    fn above_4g_ram_is_its_own_block() {
        let layout = PcLayout {
            ram_size: 3 << 20,
            below_4g: 2 << 20,
            above_4g: 1 << 20,
        };
        let mem = GuestMemory::new_pc(
            layout,
            &[RamSpec::anonymous(1 << 20), RamSpec::anonymous(2 << 20)],
        )
        .expect("ram");
        mem.write_u32(0x1_0000_0000, 0xdead_beef).expect("high");
        assert_eq!(mem.read_u32(0x1_0000_0000).expect("high"), 0xdead_beef);
        let ram: Vec<_> = mem
            .ram_blocks()
            .map(|b| (b.gpa, b.size, b.ram_offset))
            .collect();
        assert_eq!(
            ram,
            vec![
                (0, 0xa0000, 0),
                (0xc0000, 0x100000 - 0xc0000, 0xc0000),
                (0x100000, 0x100000, 0x100000),
                (0x1_0000_0000, 0x100000, 0x200000)
            ]
        );
    }

    #[test]
    fn file_backend_shares_bytes_with_the_file() {
        let dir = std::env::temp_dir().join(format!("hw-mem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("ram");
        let spec = RamSpec {
            size: 1 << 20,
            backend: RamBackend::File {
                path: path.clone(),
                share: true,
            },
            prealloc: true,
        };
        let mem = GuestMemory::new_pc(PcLayout::pc(1 << 20, None), &[spec]).expect("ram");
        mem.write(0x1000, b"shared").expect("write");
        drop(mem);
        let bytes = std::fs::read(&path).expect("file");
        assert_eq!(&bytes[0x1000..0x1006], b"shared");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
