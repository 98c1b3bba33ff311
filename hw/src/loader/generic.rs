//! `-device loader`: QEMU's generic loader. Three forms:
//! - `file=` (with optional `addr=`, `cpu-num=`, `force-raw=`): an ELF is loaded at
//!   its physical addresses and its entry becomes the PC; anything else is copied raw
//!   to `addr`, which becomes the PC. The PC is only set when `cpu-num` is given.
//! - `data=`, `data-len=` (1, 2, 4 or 8), `addr=`, optional `data-be=`: a value
//!   written to memory.
//! - `addr=` with `cpu-num=` alone: sets that vCPU's PC.

use std::path::PathBuf;

use super::elf::{is_elf, Elf};
use crate::error::{HwError, Result};
use crate::memory::GuestMemory;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenericLoader {
    pub file: Option<PathBuf>,
    pub addr: Option<u64>,
    pub data: Option<u64>,
    pub data_len: Option<u8>,
    pub data_be: bool,
    pub cpu_num: Option<usize>,
    pub force_raw: bool,
}

/// A PC the owner must set on a vCPU after loading (on reset, like QEMU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetPc {
    pub cpu: usize,
    pub pc: u64,
}

fn invalid(what: &str) -> HwError {
    HwError::Invalid {
        what: what.to_string(),
    }
}

impl GenericLoader {
    /// The option checks QEMU's loader makes at `-device` time.
    pub fn validate(&self) -> Result<()> {
        let data_mode = self.data.is_some() || self.data_len.is_some() || self.data_be;
        if data_mode {
            if self.file.is_some() {
                return Err(invalid(
                    "Specifying a file is not supported when loading memory values",
                ));
            }
            if self.force_raw {
                return Err(invalid(
                    "Specifying force-raw is not supported when loading memory values",
                ));
            }
            match self.data_len {
                None | Some(0) => return Err(invalid("Both data and data-len must be specified")),
                Some(n) if n > 8 => return Err(invalid("data-len cannot be greater then 8 bytes")),
                Some(1 | 2 | 4 | 8) => {}
                Some(_) => return Err(invalid("data-len must be 1, 2, 4 or 8")),
            }
            if self.data.is_none() {
                return Err(invalid("Both data and data-len must be specified"));
            }
        } else if self.file.is_some() || self.force_raw {
            if self.file.is_none() {
                return Err(invalid("please include valid arguments"));
            }
        } else if self.addr.is_some() {
            if self.cpu_num.is_none() {
                return Err(invalid(
                    "cpu_num must be specified when setting a program counter",
                ));
            }
        } else {
            return Err(invalid("please include valid arguments"));
        }
        Ok(())
    }

    /// Writes the file or value into guest memory; returns the PC to set, if any.
    pub fn apply(&self, mem: &GuestMemory) -> Result<Option<SetPc>> {
        self.validate()?;
        if let Some(value) = self.data {
            let n = self.data_len.unwrap_or(8) as usize;
            let bytes = if self.data_be {
                value.to_be_bytes()[8 - n..].to_vec()
            } else {
                value.to_le_bytes()[..n].to_vec()
            };
            let addr = self.addr.unwrap_or(0);
            mem.write(addr, &bytes)?;
            return Ok(None);
        }
        let Some(path) = &self.file else {
            return Ok(self.cpu_num.map(|cpu| SetPc {
                cpu,
                pc: self.addr.unwrap_or(0),
            }));
        };
        let image = std::fs::read(path).map_err(|e| HwError::File {
            path: path.display().to_string(),
            source: e,
        })?;
        let pc = if !self.force_raw && is_elf(&image) {
            let elf = Elf::parse(&image)?;
            elf.load(mem)?;
            elf.entry
        } else {
            let addr = self.addr.unwrap_or(0);
            if image.len() as u64 > mem.ram_size() {
                return Err(HwError::BadImage {
                    what: format!("Cannot load specified image {}", path.display()),
                });
            }
            mem.write(addr, &image).map_err(|_| HwError::BadImage {
                what: format!("Cannot load specified image {}", path.display()),
            })?;
            addr
        };
        Ok(self.cpu_num.map(|cpu| SetPc { cpu, pc }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
        let p = std::env::temp_dir().join(format!("hw-loader-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).expect("write");
        p
    }

    #[test]
    fn data_is_written_little_or_big_endian() {
        let mem = GuestMemory::new_flat(1 << 20).expect("ram");
        let l = GenericLoader {
            data: Some(0x1122_3344),
            data_len: Some(4),
            addr: Some(0x1000),
            ..Default::default()
        };
        assert_eq!(l.apply(&mem).expect("apply"), None);
        assert_eq!(mem.read_u32(0x1000).expect("read"), 0x1122_3344);
        let b = GenericLoader {
            data_be: true,
            addr: Some(0x2000),
            ..l
        };
        b.apply(&mem).expect("apply");
        assert_eq!(mem.read_u32(0x2000).expect("read"), 0x4433_2211);
    }

    #[test]
    fn raw_file_goes_to_addr_and_sets_pc_with_cpu_num() {
        let mem = GuestMemory::new_flat(1 << 20).expect("ram");
        let p = tmp("raw", b"\xeb\xfe");
        let l = GenericLoader {
            file: Some(p.clone()),
            addr: Some(0x7c00),
            cpu_num: Some(0),
            ..Default::default()
        };
        assert_eq!(
            l.apply(&mem).expect("apply"),
            Some(SetPc { cpu: 0, pc: 0x7c00 })
        );
        assert_eq!(mem.read_u16(0x7c00).expect("read"), 0xfeeb);
        std::fs::remove_file(p).expect("rm");
    }

    #[test]
    fn elf_file_loads_at_paddr_and_pc_is_entry() {
        let mem = GuestMemory::new_flat(4 << 20).expect("ram");
        let img = super::super::elf::tests::build_elf64(0x20_0000, 0x20_0010, &[0xf4; 32], 0, None);
        let p = tmp("elf", &img);
        let l = GenericLoader {
            file: Some(p.clone()),
            cpu_num: Some(1),
            ..Default::default()
        };
        assert_eq!(
            l.apply(&mem).expect("apply"),
            Some(SetPc {
                cpu: 1,
                pc: 0x20_0010
            })
        );
        assert_eq!(mem.read_u8(0x20_0000).expect("read"), 0xf4);
        std::fs::remove_file(p).expect("rm");
    }

    #[test]
    fn option_mistakes_get_qemus_messages() {
        let e = GenericLoader {
            addr: Some(0x1000),
            ..Default::default()
        }
        .validate()
        .expect_err("no cpu");
        assert_eq!(
            e.to_string(),
            "cpu_num must be specified when setting a program counter"
        );
        let e = GenericLoader {
            data: Some(1),
            addr: Some(0),
            ..Default::default()
        }
        .validate()
        .expect_err("no len");
        assert_eq!(e.to_string(), "Both data and data-len must be specified");
        let e = GenericLoader {
            data: Some(1),
            data_len: Some(9),
            ..Default::default()
        }
        .validate()
        .expect_err("len");
        assert_eq!(e.to_string(), "data-len cannot be greater then 8 bytes");
        assert!(GenericLoader::default().validate().is_err());
    }

    #[test]
    fn pc_only_form_returns_the_address() {
        let mem = GuestMemory::new_flat(1 << 20).expect("ram");
        let l = GenericLoader {
            addr: Some(0xfff0),
            cpu_num: Some(0),
            ..Default::default()
        };
        assert_eq!(
            l.apply(&mem).expect("apply"),
            Some(SetPc { cpu: 0, pc: 0xfff0 })
        );
    }
}
