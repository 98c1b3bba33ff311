//! `-device` for the devices the machine has today: `isa-debug-exit`, the
//! generic `loader`, and the IDE drives `ide-hd`, `ide-cd` and `ide-drive`.

use hw::loader::generic::GenericLoader;

use crate::vl::opts::{OptsList, QemuOpts};

static DEVICE_OPTS: OptsList = OptsList {
    name: "device",
    implied: Some("driver"),
    descs: &[],
};

/// One `-device` the machine understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// `isa-debug-exit[,iobase=N][,iosize=N]`.
    DebugExit {
        id: Option<String>,
        iobase: u16,
        iosize: u16,
    },
    /// `loader,...`: checked by [`GenericLoader::validate`] already.
    Loader {
        id: Option<String>,
        loader: GenericLoader,
    },
    /// `ide-hd`, `ide-cd`, `ide-drive`: attached once the drives are open.
    Ide(IdeDeviceSpec),
}

/// Which IDE device type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdeDriver {
    Hd,
    Cd,
    /// `ide-drive`: a disk or a CD as the drive's `media=` says.
    Drive,
}

impl IdeDriver {
    pub fn type_name(self) -> &'static str {
        match self {
            IdeDriver::Hd => "ide-hd",
            IdeDriver::Cd => "ide-cd",
            IdeDriver::Drive => "ide-drive",
        }
    }
}

/// The properties of one `-device ide-*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdeDeviceSpec {
    pub id: Option<String>,
    pub driver: IdeDriver,
    pub drive: Option<String>,
    pub bus: Option<String>,
    pub unit: Option<u32>,
    pub serial: Option<String>,
    pub model: Option<String>,
    pub ver: Option<String>,
    pub wwn: u64,
    /// write-cache: None is auto (the backend's setting).
    pub write_cache: Option<bool>,
    pub rerror: Option<crate::blockdev::OnError>,
    pub werror: Option<crate::blockdev::OnError>,
    /// cyls, heads, secs (ide-hd only; zero: from -drive or guessed).
    pub chs: (u32, u32, u32),
    pub discard_granularity: Option<u64>,
    pub logical_block_size: u64,
    pub physical_block_size: u64,
    /// The whole argument, for error locations.
    pub arg: String,
}

impl DeviceSpec {
    /// The `id=` given on the command line.
    pub fn id(&self) -> Option<&str> {
        match self {
            DeviceSpec::DebugExit { id, .. } | DeviceSpec::Loader { id, .. } => id.as_deref(),
            DeviceSpec::Ide(s) => s.id.as_deref(),
        }
    }
}

fn number(o: &QemuOpts, key: &str, default: u64) -> Result<u64, String> {
    match o.get_number(key) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Ok(default),
        Err(e) => Err(e.message),
    }
}

fn only_keys(o: &QemuOpts, allowed: &[&str]) -> Result<(), String> {
    for k in o.keys() {
        if k != "driver" && !allowed.contains(&k) {
            return Err(format!("Property '.{k}' not found"));
        }
    }
    Ok(())
}

/// Parses a `-device` argument; `Ok(None)` for a driver the machine does
/// not have.
pub fn parse_device(arg: &str) -> Result<Option<DeviceSpec>, String> {
    let o = DEVICE_OPTS.parse(arg, true).map_err(|e| e.message)?;
    match o.get("driver") {
        Some("isa-debug-exit") => parse_isa_debug_exit(&o).map(Some),
        Some("loader") => parse_loader(&o).map(Some),
        Some("ide-hd") => parse_ide(&o, IdeDriver::Hd, arg).map(Some),
        Some("ide-cd") => parse_ide(&o, IdeDriver::Cd, arg).map(Some),
        Some("ide-drive") => parse_ide(&o, IdeDriver::Drive, arg).map(Some),
        _ => Ok(None),
    }
}

/// The properties every IDE device takes (QEMU 2.8's ide-device, block
/// and block-error properties).
const IDE_KEYS: &[&str] = &[
    "drive",
    "bus",
    "unit",
    "serial",
    "model",
    "ver",
    "wwn",
    "write-cache",
    "rerror",
    "werror",
    "logical_block_size",
    "physical_block_size",
    "min_io_size",
    "opt_io_size",
    "discard_granularity",
];

/// An integer property: QEMU's visitor names the property and the type.
fn ide_int(o: &QemuOpts, key: &str, ty: &str, max: u64) -> Result<Option<u64>, String> {
    match o.get(key) {
        None => Ok(None),
        Some(v) => crate::vl::opts::parse_number(key, v)
            .ok()
            .filter(|n| *n <= max)
            .map(Some)
            .ok_or_else(|| format!("Parameter '{key}' expects {ty}")),
    }
}

/// A block size: 512..=32768 and a power of two, or 0 for "unset".
fn block_size(o: &QemuOpts, key: &str, id: &str) -> Result<u64, String> {
    let v = ide_int(o, key, "uint16", u16::MAX as u64)?.unwrap_or(0);
    if v != 0 && !(512..=32768).contains(&v) {
        return Err(format!(
            "Property {id}.{key} doesn't take value {v} (minimum: 512, maximum: 32768)"
        ));
    }
    if v & v.wrapping_sub(1) != 0 {
        return Err(format!(
            "Property {id}.{key} doesn't take value '{v}', it's not a power of 2"
        ));
    }
    Ok(v)
}

fn on_error(o: &QemuOpts, key: &str) -> Result<Option<crate::blockdev::OnError>, String> {
    use crate::blockdev::OnError;
    match o.get(key) {
        None | Some("auto") => Ok(None),
        Some("report") => Ok(Some(OnError::Report)),
        Some("ignore") => Ok(Some(OnError::Ignore)),
        Some("enospc") => Ok(Some(OnError::Enospc)),
        Some("stop") => Ok(Some(OnError::Stop)),
        Some(v) => Err(format!("Invalid parameter '{v}'")),
    }
}

fn parse_ide(o: &QemuOpts, driver: IdeDriver, arg: &str) -> Result<DeviceSpec, String> {
    let mut keys = IDE_KEYS.to_vec();
    if driver == IdeDriver::Hd {
        keys.extend(["cyls", "heads", "secs", "bios-chs-trans"]);
    }
    only_keys(o, &keys)?;
    let id = o.id.clone().unwrap_or_default();
    let unit = ide_int(o, "unit", "uint32", u32::MAX as u64)?.map(|u| u as u32);
    let chs_of = |k| ide_int(o, k, "uint32", u32::MAX as u64).map(|v| v.unwrap_or(0) as u32);
    let chs = (chs_of("cyls")?, chs_of("heads")?, chs_of("secs")?);
    ide_int(o, "min_io_size", "uint16", u16::MAX as u64)?;
    ide_int(o, "opt_io_size", "uint32", u32::MAX as u64)?;
    if let Some(t) = o.get("bios-chs-trans") {
        if !matches!(t, "auto" | "none" | "lba" | "large" | "rechs") {
            return Err(format!("Invalid parameter '{t}'"));
        }
    }
    let write_cache = match o.get("write-cache") {
        None | Some("auto") => None,
        Some("on") => Some(true),
        Some("off") => Some(false),
        Some(v) => return Err(format!("Invalid parameter '{v}'")),
    };
    Ok(DeviceSpec::Ide(IdeDeviceSpec {
        id: o.id.clone(),
        driver,
        drive: o.get("drive").map(str::to_string),
        bus: o.get("bus").map(str::to_string),
        unit,
        serial: o.get("serial").map(str::to_string),
        model: o.get("model").map(str::to_string),
        ver: o.get("ver").map(str::to_string),
        wwn: ide_int(o, "wwn", "uint64", u64::MAX)?.unwrap_or(0),
        write_cache,
        rerror: on_error(o, "rerror")?,
        werror: on_error(o, "werror")?,
        chs,
        discard_granularity: ide_int(o, "discard_granularity", "uint32", u32::MAX as u64)?,
        logical_block_size: block_size(o, "logical_block_size", &id)?,
        physical_block_size: block_size(o, "physical_block_size", &id)?,
        arg: arg.to_string(),
    }))
}

fn parse_isa_debug_exit(o: &QemuOpts) -> Result<DeviceSpec, String> {
    only_keys(o, &["iobase", "iosize"])?;
    let base = number(o, "iobase", 0x501)?;
    let size = number(o, "iosize", 2)?;
    let iobase = u16::try_from(base)
        .map_err(|_| format!("Property 'isa-debug-exit.iobase' doesn't take value '{base}'"))?;
    let iosize = u16::try_from(size)
        .map_err(|_| format!("Property 'isa-debug-exit.iosize' doesn't take value '{size}'"))?;
    Ok(DeviceSpec::DebugExit {
        id: o.id.clone(),
        iobase,
        iosize,
    })
}

/// A loader property given as a number: QEMU's qdev integer properties
/// name the property and the expected type when the text is not one.
fn loader_number(o: &QemuOpts, key: &str, ty: &str) -> Result<Option<u64>, String> {
    o.get_number(key)
        .map_err(|_| format!("Parameter '{key}' expects {ty}"))
}

fn loader_bool(o: &QemuOpts, key: &str) -> Result<bool, String> {
    o.get_bool(key, false)
        .map_err(|_| format!("Parameter '{key}' expects 'on' or 'off'"))
}

fn parse_loader(o: &QemuOpts) -> Result<DeviceSpec, String> {
    only_keys(
        o,
        &[
            "file",
            "addr",
            "data",
            "data-len",
            "data-be",
            "cpu-num",
            "force-raw",
        ],
    )?;
    let data_len = loader_number(o, "data-len", "uint8")?
        .map(|n| u8::try_from(n).map_err(|_| "Parameter 'data-len' expects uint8".to_string()))
        .transpose()?;
    let cpu_num = loader_number(o, "cpu-num", "uint32")?
        .map(|n| {
            u32::try_from(n)
                .map(|n| n as usize)
                .map_err(|_| "Parameter 'cpu-num' expects uint32".to_string())
        })
        .transpose()?;
    let loader = GenericLoader {
        file: o.get("file").map(std::path::PathBuf::from),
        addr: loader_number(o, "addr", "uint64")?,
        data: loader_number(o, "data", "uint64")?,
        data_len,
        data_be: loader_bool(o, "data-be")?,
        cpu_num,
        force_raw: loader_bool(o, "force-raw")?,
    };
    loader.validate().map_err(|e| match e {
        hw::HwError::Invalid { what } => what,
        other => other.to_string(),
    })?;
    Ok(DeviceSpec::Loader {
        id: o.id.clone(),
        loader,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isa_debug_exit_defaults_to_port_0x501_size_2() {
        let d = parse_device("isa-debug-exit").expect("parse");
        assert_eq!(
            d,
            Some(DeviceSpec::DebugExit {
                id: None,
                iobase: 0x501,
                iosize: 2
            })
        );
    }

    #[test]
    fn loader_data_form_parses_every_field() {
        let d = parse_device("loader,data=0x1234,data-len=2,addr=0x1000,data-be=on,id=l0")
            .expect("parse");
        let Some(DeviceSpec::Loader { id, loader }) = d else {
            panic!("not a loader: {d:?}");
        };
        assert_eq!(id.as_deref(), Some("l0"));
        assert_eq!(loader.data, Some(0x1234));
        assert_eq!(loader.data_len, Some(2));
        assert_eq!(loader.addr, Some(0x1000));
        assert!(loader.data_be);
    }

    #[test]
    fn loader_mistakes_get_the_loaders_messages() {
        assert_eq!(
            parse_device("loader").unwrap_err(),
            "please include valid arguments"
        );
        assert_eq!(
            parse_device("loader,data=1,data-len=3").unwrap_err(),
            "data-len must be 1, 2, 4 or 8"
        );
        assert_eq!(
            parse_device("loader,addr=0x100").unwrap_err(),
            "cpu_num must be specified when setting a program counter"
        );
        assert_eq!(
            parse_device("loader,bogus=1").unwrap_err(),
            "Property '.bogus' not found"
        );
        assert_eq!(
            parse_device("loader,addr=x,cpu-num=0").unwrap_err(),
            "Parameter 'addr' expects uint64"
        );
    }

    #[test]
    fn ide_devices_keep_drive_bus_and_unit() {
        let d = parse_device("ide-cd,drive=cd0,bus=ide.1,unit=1,id=c").expect("parse");
        let Some(DeviceSpec::Ide(s)) = d else {
            panic!("not ide: {d:?}");
        };
        assert_eq!(s.driver, IdeDriver::Cd);
        assert_eq!(s.drive.as_deref(), Some("cd0"));
        assert_eq!(s.bus.as_deref(), Some("ide.1"));
        assert_eq!(s.unit, Some(1));
        assert_eq!(s.id.as_deref(), Some("c"));
        assert_eq!(
            parse_device("ide-hd,bogus=1").unwrap_err(),
            "Property '.bogus' not found"
        );
    }

    #[test]
    fn other_drivers_are_not_ours() {
        assert_eq!(parse_device("e1000").expect("parse"), None);
    }
}
