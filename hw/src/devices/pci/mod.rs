//! PCI host bridge on ports 0xCF8 (address) / 0xCFC-0xCFF (data), bus 0 only, plus
//! the PIIX3 reset control register that shares the address range at 0xCF9.

mod config;
pub mod ids;

use std::collections::BTreeMap;

pub use config::{BarInfo, BarKind, BarRegion, PciConfig};

use crate::bus::BusDevice;
use crate::error::{HwError, Result};
use crate::events::{EventQueue, MachineEvent, ResetSource};

/// The host bridge's port range: 0xCF8..0xD00.
pub const PCI_HOST_BASE: u16 = 0xcf8;
pub const PCI_HOST_LEN: u16 = 8;

/// One function on bus 0.
#[derive(Debug, Clone)]
pub struct PciFunction {
    /// QOM type name (`i440FX`, `PIIX3`, `piix3-ide`, `PIIX4_PM`, ...).
    pub name: String,
    /// `-device ...,id=` of the function, empty for built-ins.
    pub qdev_id: String,
    pub config: PciConfig,
}

pub struct PciHost {
    pub config_address: u32,
    /// PIIX3 reset control register (0xCF9).
    pub rcr: u8,
    functions: BTreeMap<u8, PciFunction>,
    events: EventQueue,
}

impl PciHost {
    pub fn new(events: EventQueue) -> PciHost {
        PciHost {
            config_address: 0,
            rcr: 0,
            functions: BTreeMap::new(),
            events,
        }
    }

    /// QEMU's pc set: 00.0 i440FX, 01.0 PIIX3, 01.1 IDE, 01.3 PIIX4 PM.
    pub fn pc_default(events: EventQueue, pm_base: u16) -> PciHost {
        let mut h = PciHost::new(events);
        let add = |h: &mut PciHost, devfn, name: &str, config| {
            h.functions.insert(
                devfn,
                PciFunction {
                    name: name.into(),
                    qdev_id: String::new(),
                    config,
                },
            );
        };
        add(&mut h, 0x00, "i440FX", ids::i440fx());
        add(&mut h, 0x08, "PIIX3", ids::piix3());
        add(&mut h, 0x09, "piix3-ide", ids::piix3_ide());
        add(&mut h, 0x0b, "PIIX4_PM", ids::piix4_pm(pm_base));
        h
    }

    /// Plugs a function at `devfn` (slot << 3 | function).
    pub fn add(&mut self, devfn: u8, f: PciFunction) -> Result<()> {
        if self.functions.contains_key(&devfn) {
            return Err(HwError::Invalid {
                what: format!(
                    "PCI: slot {} function {} not available for {}, in use by {}",
                    devfn >> 3,
                    devfn & 7,
                    f.name,
                    self.functions[&devfn].name
                ),
            });
        }
        self.functions.insert(devfn, f);
        Ok(())
    }

    pub fn remove(&mut self, devfn: u8) -> Option<PciFunction> {
        self.functions.remove(&devfn)
    }

    /// Lowest free slot (function 0) from `first`, for `-device` without `addr`.
    pub fn free_slot(&self, first: u8) -> Option<u8> {
        (first..32).find(|s| !(0..8).any(|f| self.functions.contains_key(&(s << 3 | f))))
    }

    /// Every function, by devfn (what `query-pci` and `info pci` list).
    pub fn functions(&self) -> impl Iterator<Item = (u8, &PciFunction)> {
        self.functions.iter().map(|(d, f)| (*d, f))
    }

    pub fn function_mut(&mut self, devfn: u8) -> Option<&mut PciFunction> {
        self.functions.get_mut(&devfn)
    }

    pub fn reset(&mut self) {
        self.config_address = 0;
        self.rcr = 0;
        for f in self.functions.values_mut() {
            f.config.reset();
        }
    }

    fn target(&self) -> Option<(u8, usize)> {
        let a = self.config_address;
        if a & 0x8000_0000 == 0 || (a >> 16) & 0xff != 0 {
            return None;
        }
        Some((((a >> 8) & 0xff) as u8, (a & 0xfc) as usize))
    }
}

impl BusDevice for PciHost {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        match (offset, data.len()) {
            (0, 4) => data.copy_from_slice(&self.config_address.to_le_bytes()),
            (1, 1) => data[0] = self.rcr,
            (4..=7, _) => {
                let Some((devfn, reg)) = self.target() else {
                    return;
                };
                if let Some(f) = self.functions.get(&devfn) {
                    f.config.read(reg + (offset as usize - 4), data);
                }
            }
            _ => {}
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (offset, data.len()) {
            (0, 4) => {
                let mut b = [0u8; 4];
                b.copy_from_slice(data);
                self.config_address = u32::from_le_bytes(b) & 0x80ff_fffc;
            }
            (1, 1) => {
                if data[0] & 0x04 != 0 {
                    self.events.push(MachineEvent::Reset {
                        source: ResetSource::ResetControl,
                    });
                } else {
                    self.rcr = data[0] & 0x02;
                }
            }
            (4..=7, _) => {
                let Some((devfn, reg)) = self.target() else {
                    return;
                };
                if let Some(f) = self.functions.get_mut(&devfn) {
                    f.config.write(reg + (offset as usize - 4), data);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg_read32(h: &mut PciHost, devfn: u8, reg: u8) -> u32 {
        h.write(
            0,
            &(0x8000_0000u32 | (devfn as u32) << 8 | reg as u32).to_le_bytes(),
        );
        let mut b = [0u8; 4];
        h.read(4, &mut b);
        u32::from_le_bytes(b)
    }

    fn cfg_write32(h: &mut PciHost, devfn: u8, reg: u8, v: u32) {
        h.write(
            0,
            &(0x8000_0000u32 | (devfn as u32) << 8 | reg as u32).to_le_bytes(),
        );
        h.write(4, &v.to_le_bytes());
    }

    #[test]
    fn host_bridge_and_isa_bridge_have_intel_identities() {
        let mut h = PciHost::pc_default(EventQueue::new(), 0x600);
        assert_eq!(cfg_read32(&mut h, 0x00, 0), 0x1237_8086);
        assert_eq!(cfg_read32(&mut h, 0x08, 0), 0x7000_8086);
        assert_eq!(cfg_read32(&mut h, 0x08, 0x08) >> 16, 0x0601);
        assert_eq!((cfg_read32(&mut h, 0x08, 0x0c) >> 16) & 0xff, 0x80);
        assert_eq!(cfg_read32(&mut h, 0x0b, 0), 0x7113_8086);
    }

    #[test]
    fn absent_function_reads_all_ones() {
        let mut h = PciHost::pc_default(EventQueue::new(), 0x600);
        assert_eq!(cfg_read32(&mut h, 0x10, 0), 0xffff_ffff);
    }

    #[test]
    fn config_address_reads_back_without_low_bits() {
        let mut h = PciHost::new(EventQueue::new());
        h.write(0, &0x8000_0843u32.to_le_bytes());
        let mut b = [0u8; 4];
        h.read(0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x8000_0840);
    }

    #[test]
    fn bar_sizing_reports_the_size_mask() {
        let mut h = PciHost::pc_default(EventQueue::new(), 0x600);
        cfg_write32(&mut h, 0x09, 0x20, 0xffff_ffff);
        assert_eq!(cfg_read32(&mut h, 0x09, 0x20), 0xffff_fff1);
        cfg_write32(&mut h, 0x09, 0x20, 0xc000);
        let f = h
            .functions()
            .find(|(d, _)| *d == 0x09)
            .map(|(_, f)| f.config.bars())
            .expect("ide");
        assert_eq!(f[0].address, 0xc000);
        assert_eq!(f[0].size, 16);
    }

    #[test]
    fn identity_registers_are_read_only() {
        let mut h = PciHost::pc_default(EventQueue::new(), 0x600);
        cfg_write32(&mut h, 0x00, 0, 0);
        assert_eq!(cfg_read32(&mut h, 0x00, 0), 0x1237_8086);
    }

    #[test]
    fn byte_write_to_cf9_with_rst_cpu_requests_reset() {
        let q = EventQueue::new();
        let mut h = PciHost::new(q.clone());
        h.write(1, &[0x02]);
        assert!(q.is_empty());
        h.write(1, &[0x06]);
        assert_eq!(
            q.drain(),
            vec![MachineEvent::Reset {
                source: ResetSource::ResetControl
            }]
        );
    }

    #[test]
    fn duplicate_devfn_is_refused() {
        let mut h = PciHost::pc_default(EventQueue::new(), 0x600);
        let f = PciFunction {
            name: "x".into(),
            qdev_id: String::new(),
            config: ids::piix3(),
        };
        assert!(h.add(0x00, f.clone()).is_err());
        assert_eq!(h.free_slot(2), Some(2));
        assert!(h.add(0x10, f).is_ok());
    }
}
