//! Memory mappings: the (virtual, physical, length) triples that become
//! PT_LOAD headers, and the ways QEMU builds and trims them.

use super::guest_ram::RamRange;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub phys: u64,
    pub virt: u64,
    pub len: u64,
}

/// One mapping per RAM range, virtual address 0: the layout without
/// `paging`.
pub fn simple(ranges: &[RamRange]) -> Vec<Mapping> {
    ranges
        .iter()
        .map(|r| Mapping {
            phys: r.gpa,
            virt: 0,
            len: r.len,
        })
        .collect()
}

/// Virtual equal to physical: `paging` on a guest that has not enabled it.
pub fn identity(ranges: &[RamRange]) -> Vec<Mapping> {
    ranges
        .iter()
        .map(|r| Mapping {
            phys: r.gpa,
            virt: r.gpa,
            len: r.len,
        })
        .collect()
}

/// Joins mappings that overlap or touch with the same virtual-to-physical
/// offset (the same page seen through several vCPUs, or a region mapped
/// page by page), then orders them by physical address as QEMU lists them.
pub fn normalize(mut maps: Vec<Mapping>) -> Vec<Mapping> {
    maps.sort_unstable_by_key(|m| (m.virt.wrapping_sub(m.phys), m.virt));
    let mut out: Vec<Mapping> = Vec::with_capacity(maps.len());
    for m in maps {
        if let Some(last) = out.last_mut() {
            let same_offset = last.virt.wrapping_sub(last.phys) == m.virt.wrapping_sub(m.phys);
            let last_end = last.virt.saturating_add(last.len);
            if same_offset && m.virt >= last.virt && m.virt <= last_end {
                let end = m.virt.saturating_add(m.len).max(last_end);
                last.len = end - last.virt;
                continue;
            }
        }
        out.push(m);
    }
    out.sort_by_key(|m| (m.phys, m.virt));
    out
}

/// Keeps the parts of mappings inside physical `[begin, end)`, as QEMU's
/// memory_mapping_filter does (a virtual address of 0 stays 0).
pub fn filter(maps: Vec<Mapping>, begin: u64, end: u64) -> Vec<Mapping> {
    maps.into_iter()
        .filter_map(|mut m| {
            let m_end = m.phys.saturating_add(m.len);
            if m.phys >= end || m_end <= begin {
                return None;
            }
            if m.phys < begin {
                let cut = begin - m.phys;
                m.len -= cut;
                if m.virt != 0 {
                    m.virt = m.virt.wrapping_add(cut);
                }
                m.phys = begin;
            }
            let m_end = m.phys.saturating_add(m.len);
            if m_end > end {
                m.len -= m_end - end;
            }
            Some(m)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(phys: u64, virt: u64, len: u64) -> Mapping {
        Mapping { phys, virt, len }
    }

    #[test]
    fn normalize_joins_pages_with_the_same_offset_and_drops_duplicates() {
        let maps = vec![
            m(0x2000, 0xffff_8000_0000_2000, 0x1000),
            m(0x1000, 0xffff_8000_0000_1000, 0x1000),
            m(0x1000, 0xffff_8000_0000_1000, 0x1000),
            m(0x5000, 0x40_0000, 0x1000),
        ];
        let out = normalize(maps);
        assert_eq!(
            out,
            vec![
                m(0x1000, 0xffff_8000_0000_1000, 0x2000),
                m(0x5000, 0x40_0000, 0x1000)
            ]
        );
    }

    #[test]
    fn filter_clips_both_ends_and_moves_nonzero_virtual_start() {
        let maps = vec![
            m(0, 0x1000_0000, 0x10000),
            m(0x20000, 0, 0x10000),
            m(0x40000, 0, 1),
        ];
        let out = filter(maps, 0x8000, 0x28000);
        assert_eq!(
            out,
            vec![m(0x8000, 0x1000_8000, 0x8000), m(0x20000, 0, 0x8000)]
        );
    }
}
