//! Where guest RAM sits in the PC's physical address space (QEMU 2.8's `pc` rules).

/// Start of the 32-bit PCI hole's fixed end: the IOAPIC.
pub const PCI_HOLE_END: u64 = 0xfec0_0000;
/// RAM above 4 GiB starts here.
pub const HIGH_RAM_START: u64 = 0x1_0000_0000;
/// Default `max-ram-below-4g` (3.5 GiB).
pub const DEFAULT_MAX_RAM_BELOW_4G: u64 = 0xe000_0000;
/// Legacy VGA window and ROM area below 1 MiB that is not plain RAM.
pub const LEGACY_HOLE_START: u64 = 0xa_0000;
pub const LEGACY_HOLE_END: u64 = 0x10_0000;

/// How the RAM of a `pc` machine is split around the 32-bit PCI hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcLayout {
    pub ram_size: u64,
    pub below_4g: u64,
    pub above_4g: u64,
}

impl PcLayout {
    /// The split QEMU 2.8's i440FX machine makes: RAM up to `max_ram_below_4g`
    /// (default 3.5 GiB) stays low; when the RAM does not fit, the split moves down to
    /// 3 GiB (gigabyte alignment of current machine types) and the rest goes above 4 GiB.
    pub fn pc(ram_size: u64, max_ram_below_4g: Option<u64>) -> PcLayout {
        let max_low = match max_ram_below_4g {
            // RAM may not reach the IOAPIC, LAPIC, BIOS and KVM's private pages.
            Some(v) if v > 0 => v.min(PCI_HOLE_END),
            _ => DEFAULT_MAX_RAM_BELOW_4G,
        };
        let mut lowmem = max_low;
        if ram_size >= max_low && lowmem > 0xc000_0000 {
            lowmem = 0xc000_0000;
        }
        if ram_size >= lowmem {
            PcLayout {
                ram_size,
                below_4g: lowmem,
                above_4g: ram_size - lowmem,
            }
        } else {
            PcLayout {
                ram_size,
                below_4g: ram_size,
                above_4g: 0,
            }
        }
    }

    /// The 32-bit PCI hole: from the end of low RAM to the IOAPIC.
    pub fn pci_hole(&self) -> (u64, u64) {
        (self.below_4g, PCI_HOLE_END)
    }

    /// The 64-bit PCI hole start: after high RAM, rounded up to 1 GiB.
    pub fn pci_hole64_start(&self) -> u64 {
        let end = HIGH_RAM_START + self.above_4g;
        (end + (1 << 30) - 1) & !((1 << 30) - 1)
    }

    /// Guest-physical ranges backed by RAM, as (gpa, ram offset, size). `low_rom_ram`
    /// says whether 0xa0000..0x100000 is RAM (no BIOS image aliased there) or a hole.
    pub fn ram_ranges(&self, legacy_hole_is_ram: bool) -> Vec<(u64, u64, u64)> {
        let mut v = Vec::new();
        let low = self.below_4g;
        if legacy_hole_is_ram || low <= LEGACY_HOLE_START {
            if low > 0 {
                v.push((0, 0, low));
            }
        } else {
            v.push((0, 0, LEGACY_HOLE_START));
            if low > LEGACY_HOLE_END {
                v.push((LEGACY_HOLE_END, LEGACY_HOLE_END, low - LEGACY_HOLE_END));
            }
        }
        if self.above_4g > 0 {
            v.push((HIGH_RAM_START, low, self.above_4g));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_ram_is_all_below_4g() {
        let l = PcLayout::pc(512 << 20, None);
        assert_eq!((l.below_4g, l.above_4g), (512 << 20, 0));
    }

    #[test]
    fn ram_of_4g_splits_at_3g_like_qemu_pc() {
        let l = PcLayout::pc(4 << 30, None);
        assert_eq!((l.below_4g, l.above_4g), (3 << 30, 1 << 30));
    }

    #[test]
    fn ram_between_3g_and_3_5g_stays_low() {
        let l = PcLayout::pc(0xd000_0000, None);
        assert_eq!((l.below_4g, l.above_4g), (0xd000_0000, 0));
    }

    #[test]
    fn max_ram_below_4g_lowers_the_split() {
        let l = PcLayout::pc(4 << 30, Some(2 << 30));
        assert_eq!((l.below_4g, l.above_4g), (2 << 30, 2 << 30));
    }

    #[test]
    fn ram_ranges_skip_the_legacy_hole_unless_asked() {
        let l = PcLayout::pc(16 << 20, None);
        assert_eq!(
            l.ram_ranges(false),
            vec![(0, 0, 0xa0000), (0x100000, 0x100000, (16 << 20) - 0x100000)]
        );
        assert_eq!(l.ram_ranges(true), vec![(0, 0, 16 << 20)]);
    }
}
