//! `-device loader` on the machine: hw's generic loader, with the file
//! read once so that every system reset writes the same bytes again (as
//! QEMU's loader keeps its image), and guest writes that, like QEMU's
//! address space, drop bytes that fall outside RAM.

use hw::loader::generic::{GenericLoader, SetPc};
use hw::memory::GuestMemory;

use super::MachineError;

/// Writes guest memory as the address space does for a loader: RAM and
/// ROM take the bytes, addresses with nothing behind them drop them.
fn write_ignoring_holes(mem: &GuestMemory, addr: u64, data: &[u8]) {
    if mem.write(addr, data).is_ok() {
        return;
    }
    for (i, b) in data.iter().enumerate() {
        let _ = mem.write(addr.wrapping_add(i as u64), &[*b]);
    }
}

/// One `-device loader`, with its file read once at start-up: a system
/// reset writes the same bytes again even if the file changed or went.
#[derive(Clone)]
pub(super) struct Loader {
    spec: GenericLoader,
    image: Option<Vec<u8>>,
}

impl Loader {
    pub(super) fn new(spec: &GenericLoader) -> Result<Loader, MachineError> {
        let image = match &spec.file {
            Some(path) => Some(std::fs::read(path).map_err(|_| {
                MachineError(format!(
                    "-device loader: Cannot load specified image {}",
                    path.display()
                ))
            })?),
            None => None,
        };
        Ok(Loader {
            spec: spec.clone(),
            image,
        })
    }

    /// The file form from the cached bytes: an ELF at its physical
    /// addresses (the PC its entry), anything else raw at `addr`.
    fn load_image(&self, image: &[u8], mem: &GuestMemory) -> hw::error::Result<u64> {
        use hw::loader::elf::{is_elf, Elf};
        if !self.spec.force_raw && is_elf(image) {
            let elf = Elf::parse(image)?;
            elf.load(mem)?;
            return Ok(elf.entry);
        }
        let addr = self.spec.addr.unwrap_or(0);
        let name = self
            .spec
            .file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let bad = || hw::HwError::BadImage {
            what: format!("Cannot load specified image {name}"),
        };
        if image.len() as u64 > mem.ram_size() {
            return Err(bad());
        }
        write_ignoring_holes(mem, addr, image);
        Ok(addr)
    }

    /// Writes the loader into guest memory; the PC it wants set, if any,
    /// names an existing vCPU.
    pub(super) fn apply(
        &self,
        mem: &GuestMemory,
        cpus: usize,
    ) -> Result<Option<SetPc>, MachineError> {
        let l = &self.spec;
        if let Some(cpu) = l.cpu_num {
            if cpu >= cpus {
                return Err(MachineError(format!(
                    "-device loader: Specified boot CPU#{cpu} is nonexistent"
                )));
            }
        }
        let result = match (&self.image, l.data) {
            (Some(image), _) => self
                .load_image(image, mem)
                .map(|pc| l.cpu_num.map(|cpu| SetPc { cpu, pc })),
            // A value: QEMU writes it through the address space, where
            // bytes outside RAM are dropped rather than refused.
            (None, Some(value)) => l.validate().map(|()| {
                let n = usize::from(l.data_len.unwrap_or(8)).min(8);
                let bytes = if l.data_be {
                    value.to_be_bytes()[8 - n..].to_vec()
                } else {
                    value.to_le_bytes()[..n].to_vec()
                };
                write_ignoring_holes(mem, l.addr.unwrap_or(0), &bytes);
                None
            }),
            (None, None) => l.apply(mem),
        };
        result.map_err(|e| {
            MachineError(match e {
                hw::HwError::Invalid { what } | hw::HwError::BadImage { what } => {
                    format!("-device loader: {what}")
                }
                other => format!("-device loader: {other}"),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::devices::DeviceSpec;
    use crate::machine::{Machine, MachineError, MachineOpts};
    use crate::vl::config::{Accel, SmpConfig};

    fn pc_opts(devices: Vec<DeviceSpec>) -> MachineOpts {
        MachineOpts {
            ram_size: 16 << 20,
            smp: SmpConfig {
                cpus: 2,
                max_cpus: 2,
                sockets: 2,
                cores: 1,
                threads: 1,
            },
            rtc_base: None,
            bios: None,
            kernel: None,
            initrd: None,
            append: None,
            serial_ports: 1,
            devices,
            ram: Vec::new(),
        }
    }

    fn loader(arg: &str) -> DeviceSpec {
        crate::devices::parse_device(arg)
            .expect("parse")
            .expect("a loader")
    }

    fn pc(devices: Vec<DeviceSpec>) -> Result<Machine, MachineError> {
        let mt = crate::machine_types::find("pc").expect("pc machine");
        Machine::new(mt, Accel::Qtest, &pc_opts(devices))
    }

    #[test]
    fn loader_values_land_in_ram_and_outside_ram_are_dropped() {
        let m = pc(vec![
            loader("loader,data=0x11223344,data-len=4,addr=0x1000"),
            loader("loader,data=0x5566,data-len=2,addr=0x2000,data-be=on"),
            loader("loader,data=1,data-len=8,addr=0x40000000"),
        ])
        .expect("machine");
        let mut b = [0u8; 4];
        m.read_phys(0x1000, &mut b);
        assert_eq!(b, [0x44, 0x33, 0x22, 0x11]);
        m.read_phys(0x2000, &mut b[..2]);
        assert_eq!(&b[..2], &[0x55, 0x66]);
    }

    #[test]
    fn loader_file_is_written_again_at_reset_after_the_file_is_gone() {
        let path = std::env::temp_dir().join(format!("rqemu-loader-{}.bin", std::process::id()));
        std::fs::write(&path, b"abcd").expect("write file");
        let mut m = pc(vec![loader(&format!(
            "loader,file={},addr=0x3000",
            path.display()
        ))])
        .expect("machine");
        std::fs::remove_file(&path).expect("remove");
        m.write_phys(0x3000, b"zzzz");
        m.reset();
        let mut b = [0u8; 4];
        m.read_phys(0x3000, &mut b);
        assert_eq!(&b, b"abcd");
    }

    #[test]
    fn loader_for_a_missing_cpu_is_refused() {
        let e = pc(vec![loader("loader,addr=0x100,cpu-num=2")])
            .err()
            .expect("error");
        assert_eq!(e.0, "-device loader: Specified boot CPU#2 is nonexistent");
    }
}
