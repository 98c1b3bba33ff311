//! The diskdump headers QEMU writes: `disk_dump_header` (signature
//! "KDUMP   ", version 6) in block 0 and `kdump_sub_header` in block 1,
//! in their 32- or 64-bit layouts, and the file layout they describe.

use crate::dump::guest_ram::RamRange;

pub const PAGE_SIZE: u64 = 4096;
const HEADER_BLOCKS: u64 = 1;
const HEADER_VERSION: u32 = 6;
const DUMP_LEVEL: u32 = 1;
/// `utsname.machine` of QEMU's x86-64 build, whatever the guest's mode.
const MACHINE: &[u8] = b"x86_64";
const UTS_FIELD: usize = 65;
pub const FLAG_ZLIB: u32 = 1;
pub const FLAG_LZO: u32 = 2;
pub const FLAG_SNAPPY: u32 = 4;

/// Where the parts of the (rearranged) dump file go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub class64: bool,
    pub max_mapnr: u64,
    pub nr_cpus: u32,
    pub note_size: u64,
    pub sub_hdr_blocks: u64,
    /// Bytes of one bitmap (the file holds two).
    pub len_bitmap: u64,
    pub offset_bitmap: u64,
    pub offset_page: u64,
    pub num_dumpable: u64,
}

impl Layout {
    pub fn new(class64: bool, ranges: &[RamRange], nr_cpus: u32, note_size: u64) -> Self {
        let max_mapnr = ranges.last().map_or(0, |r| r.end() / PAGE_SIZE);
        let sub_hdr_blocks = (sub_header_size(class64) + note_size).div_ceil(PAGE_SIZE);
        let len_bitmap = max_mapnr.div_ceil(8).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let bitmap_blocks = len_bitmap.div_ceil(PAGE_SIZE) * 2;
        let offset_bitmap = (HEADER_BLOCKS + sub_hdr_blocks) * PAGE_SIZE;
        Layout {
            class64,
            max_mapnr,
            nr_cpus,
            note_size,
            sub_hdr_blocks,
            len_bitmap,
            offset_bitmap,
            offset_page: offset_bitmap + bitmap_blocks * PAGE_SIZE,
            num_dumpable: ranges.iter().map(|r| r.len / PAGE_SIZE).sum(),
        }
    }

    pub fn offset_note(&self) -> u64 {
        HEADER_BLOCKS * PAGE_SIZE + sub_header_size(self.class64)
    }

    pub fn offset_sub_header(&self) -> u64 {
        HEADER_BLOCKS * PAGE_SIZE
    }

    fn bitmap_blocks(&self) -> u64 {
        self.len_bitmap.div_ceil(PAGE_SIZE) * 2
    }
}

pub fn sub_header_size(class64: bool) -> u64 {
    if class64 {
        104
    } else {
        80
    }
}

struct Fields(Vec<u8>);

impl Fields {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn word(&mut self, class64: bool, v: u64) {
        if class64 {
            self.u64(v)
        } else {
            self.u32(v as u32)
        }
    }
    fn zeros(&mut self, n: usize) {
        self.0.resize(self.0.len() + n, 0);
    }
}

/// `disk_dump_header`, 464 bytes (64-bit) or 452 bytes (32-bit).
pub fn disk_dump_header(l: &Layout, status: u32) -> Vec<u8> {
    let mut f = Fields(Vec::with_capacity(464));
    f.0.extend_from_slice(b"KDUMP   ");
    f.u32(HEADER_VERSION);
    // utsname: sysname, nodename, release, version, machine, domainname.
    f.zeros(4 * UTS_FIELD);
    let machine_at = f.0.len();
    f.zeros(2 * UTS_FIELD);
    f.0[machine_at..machine_at + MACHINE.len()].copy_from_slice(MACHINE);
    // The timestamp (struct timeval after alignment) stays zero.
    f.zeros(if l.class64 { 22 } else { 10 });
    f.u32(status);
    f.u32(PAGE_SIZE as u32);
    f.u32(l.sub_hdr_blocks as u32);
    f.u32(l.bitmap_blocks() as u32);
    f.u32(l.max_mapnr.min(u64::from(u32::MAX)) as u32);
    f.u32(0); // total_ram_blocks
    f.u32(0); // device_blocks
    f.u32(0); // written_blocks
    f.u32(0); // current_cpu
    f.u32(l.nr_cpus);
    f.0
}

/// `kdump_sub_header`, 104 bytes (64-bit) or 80 bytes (32-bit, packed).
pub fn kdump_sub_header(l: &Layout) -> Vec<u8> {
    let c = l.class64;
    let mut f = Fields(Vec::with_capacity(104));
    f.word(c, 0); // phys_base
    f.u32(DUMP_LEVEL);
    f.u32(0); // split
    f.word(c, 0); // start_pfn
    f.word(c, 0); // end_pfn
    f.u64(0); // offset_vmcoreinfo
    f.word(c, 0); // size_vmcoreinfo
    f.u64(l.offset_note());
    f.word(c, l.note_size);
    f.u64(0); // offset_eraseinfo
    f.word(c, 0); // size_eraseinfo
    f.u64(0); // start_pfn_64
    f.u64(0); // end_pfn_64
    f.u64(l.max_mapnr);
    f.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_have_the_packed_c_sizes() {
        let ram = [RamRange {
            gpa: 0,
            len: 128 << 20,
        }];
        for class64 in [true, false] {
            let l = Layout::new(class64, &ram, 2, 1616);
            assert_eq!(
                disk_dump_header(&l, FLAG_ZLIB).len(),
                if class64 { 464 } else { 452 }
            );
            assert_eq!(kdump_sub_header(&l).len() as u64, sub_header_size(class64));
        }
    }

    #[test]
    fn layout_of_128_mib_places_bitmaps_after_one_sub_header_block() {
        let ram = [RamRange {
            gpa: 0,
            len: 128 << 20,
        }];
        let l = Layout::new(true, &ram, 1, 808);
        assert_eq!(l.max_mapnr, 32768);
        assert_eq!(l.len_bitmap, 4096);
        assert_eq!(l.offset_bitmap, 2 * 4096);
        assert_eq!(l.offset_page, 4 * 4096);
        assert_eq!(l.offset_note(), 4096 + 104);
    }
}
