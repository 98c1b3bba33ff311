//! One PCI function's 256-byte configuration space: identity, writable masks, BARs.

/// What a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Memory32,
    Memory64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarInfo {
    pub size: u64,
    pub kind: BarKind,
    pub prefetch: bool,
}

/// A BAR as `query-pci` reports it: its size and programmed address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarRegion {
    pub bar: usize,
    pub kind: BarKind,
    pub prefetch: bool,
    pub address: u64,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct PciConfig {
    pub bytes: [u8; 256],
    wmask: [u8; 256],
    /// Write-one-to-clear bits (status register).
    w1cmask: [u8; 256],
    bars: [Option<BarInfo>; 6],
    initial: [u8; 256],
}

impl PciConfig {
    /// A type-0 header with the given identity. `class` is base class << 8 | subclass.
    pub fn new(vendor: u16, device: u16, class: u16, prog_if: u8, revision: u8) -> PciConfig {
        let mut bytes = [0u8; 256];
        bytes[0..2].copy_from_slice(&vendor.to_le_bytes());
        bytes[2..4].copy_from_slice(&device.to_le_bytes());
        bytes[8] = revision;
        bytes[9] = prog_if;
        bytes[0x0a..0x0c].copy_from_slice(&class.to_le_bytes());
        let mut wmask = [0u8; 256];
        wmask[0x04] = 0x47; // I/O, memory, bus master, parity, SERR
        wmask[0x05] = 0x05; // SERR enable, INTx disable
        wmask[0x0c] = 0xff; // cache line size
        wmask[0x0d] = 0xff; // latency timer
        wmask[0x3c] = 0xff; // interrupt line
        let mut w1cmask = [0u8; 256];
        w1cmask[0x07] = 0xf9;
        PciConfig {
            bytes,
            wmask,
            w1cmask,
            bars: [None; 6],
            initial: bytes,
        }
    }

    pub fn vendor_id(&self) -> u16 {
        u16::from_le_bytes([self.bytes[0], self.bytes[1]])
    }
    pub fn device_id(&self) -> u16 {
        u16::from_le_bytes([self.bytes[2], self.bytes[3]])
    }
    /// Base class << 8 | subclass.
    pub fn class(&self) -> u16 {
        u16::from_le_bytes([self.bytes[0x0a], self.bytes[0x0b]])
    }
    pub fn revision(&self) -> u8 {
        self.bytes[8]
    }
    pub fn header_type(&self) -> u8 {
        self.bytes[0x0e]
    }
    pub fn subsystem(&self) -> (u16, u16) {
        (
            u16::from_le_bytes([self.bytes[0x2c], self.bytes[0x2d]]),
            u16::from_le_bytes([self.bytes[0x2e], self.bytes[0x2f]]),
        )
    }
    /// Interrupt pin (1 = INTA) or 0.
    pub fn irq_pin(&self) -> u8 {
        self.bytes[0x3d]
    }
    pub fn irq_line(&self) -> u8 {
        self.bytes[0x3c]
    }

    pub fn set_header_type(&mut self, v: u8) {
        self.bytes[0x0e] = v;
        self.initial[0x0e] = v;
    }
    pub fn set_subsystem(&mut self, vendor: u16, id: u16) {
        self.bytes[0x2c..0x2e].copy_from_slice(&vendor.to_le_bytes());
        self.bytes[0x2e..0x30].copy_from_slice(&id.to_le_bytes());
        self.initial = self.bytes;
    }
    pub fn set_irq_pin(&mut self, pin: u8) {
        self.bytes[0x3d] = pin;
        self.initial[0x3d] = pin;
    }

    /// Presets a byte (device-specific defaults) including its power-on value.
    pub fn preset(&mut self, off: usize, v: u8) {
        if let Some(b) = self.bytes.get_mut(off) {
            *b = v;
            self.initial[off] = v;
        }
    }

    /// Lets the guest write the given bytes (device-specific registers).
    pub fn set_writable(&mut self, range: std::ops::Range<usize>, mask: u8) {
        for i in range.filter(|i| *i < 256) {
            self.wmask[i] = mask;
        }
    }

    /// Declares BAR `i` (size a power of two). A 64-bit BAR also takes `i + 1`.
    pub fn add_bar(&mut self, i: usize, size: u64, kind: BarKind, prefetch: bool) {
        if i >= 6 || !size.is_power_of_two() {
            return;
        }
        let off = 0x10 + i * 4;
        let flags: u32 = match kind {
            BarKind::Io => 0x1,
            BarKind::Memory32 => u32::from(prefetch) << 3,
            BarKind::Memory64 => 0x4 | u32::from(prefetch) << 3,
        };
        let low_flag_bits: u64 = if kind == BarKind::Io { 0x3 } else { 0xf };
        let mask = !(size - 1) & !low_flag_bits;
        self.bytes[off..off + 4].copy_from_slice(&flags.to_le_bytes());
        self.wmask[off..off + 4].copy_from_slice(&(mask as u32).to_le_bytes());
        if kind == BarKind::Memory64 && i < 5 {
            self.wmask[off + 4..off + 8].copy_from_slice(&((mask >> 32) as u32).to_le_bytes());
        }
        self.bars[i] = Some(BarInfo {
            size,
            kind,
            prefetch,
        });
        self.initial = self.bytes;
    }

    /// Declared BARs with their currently programmed addresses.
    pub fn bars(&self) -> Vec<BarRegion> {
        let mut v = Vec::new();
        for (i, b) in self.bars.iter().enumerate() {
            let Some(b) = b else { continue };
            let off = 0x10 + i * 4;
            let low = u32::from_le_bytes([
                self.bytes[off],
                self.bytes[off + 1],
                self.bytes[off + 2],
                self.bytes[off + 3],
            ]) as u64;
            let address = match b.kind {
                BarKind::Io => low & !0x3,
                BarKind::Memory32 => low & !0xf,
                BarKind::Memory64 => {
                    let h = off + 4;
                    let high = if h + 4 <= 0x28 {
                        u32::from_le_bytes([
                            self.bytes[h],
                            self.bytes[h + 1],
                            self.bytes[h + 2],
                            self.bytes[h + 3],
                        ]) as u64
                    } else {
                        0
                    };
                    (high << 32) | (low & !0xf)
                }
            };
            v.push(BarRegion {
                bar: i,
                kind: b.kind,
                prefetch: b.prefetch,
                address,
                size: b.size,
            });
        }
        v
    }

    pub fn read(&self, off: usize, data: &mut [u8]) {
        for (k, d) in data.iter_mut().enumerate() {
            *d = self.bytes.get(off + k).copied().unwrap_or(0xff);
        }
    }

    pub fn write(&mut self, off: usize, data: &[u8]) {
        for (k, &d) in data.iter().enumerate() {
            let i = off + k;
            if i >= 256 {
                break;
            }
            let m = self.wmask[i];
            let c = self.w1cmask[i];
            self.bytes[i] = (self.bytes[i] & !m) | (d & m);
            self.bytes[i] &= !(d & c);
        }
    }

    /// Back to power-on values.
    pub fn reset(&mut self) {
        self.bytes = self.initial;
    }
}
