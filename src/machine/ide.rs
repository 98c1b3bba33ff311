//! Guest IDE drives on the PC's PIIX3 controller: the board's own devices
//! for `-drive if=ide` (and `-hda`..`-hdd`, `-cdrom`), then `-device ide-hd`,
//! `ide-cd` and `ide-drive`, with QEMU 2.8's checks and messages. Each drive
//! is registered with its backend (tray, lock, io-status) and in the QOM
//! tree.

use serde_json::json;

use hw::devices::ide::{DriveConfig, DriveIdentity, DriveKind, DriveSlot};

use crate::blockdev::device_io::{medium_sectors, DeviceOps};
use crate::blockdev::{DeviceModel, IfType, Tray};
use crate::devices::{DeviceSpec, IdeDeviceSpec, IdeDriver};
use crate::emulator::Emulator;

/// The firmware version string QEMU 2.8's pc machines report.
const HW_VERSION: &str = "2.5+";

/// What to attach in one slot.
struct Attach<'a> {
    slot: DriveSlot,
    kind: DriveKind,
    backend: Option<String>,
    serial: Option<String>,
    model: Option<String>,
    ver: Option<String>,
    qdev_id: Option<&'a str>,
    type_name: &'static str,
    /// Cylinders, heads, sectors per track; zeros: guess from the size.
    chs: (u32, u32, u32),
    wwn: u64,
    discard: bool,
    physical_block_exp: u8,
}

/// An `if=ide` drive the board attaches.
struct BoardDrive {
    bus: u32,
    unit: u32,
    name: String,
    cd: bool,
    serial: Option<String>,
    chs: (u32, u32, u32),
}

/// Why a device could not be created: a property error (one line) or a
/// failed initialisation (its reason, then QEMU's generic line).
enum AttachError {
    Property(String),
    Init(String),
}

fn loc_error(arg: &str, e: AttachError) -> String {
    match e {
        AttachError::Property(m) => format!("-device {arg}: {m}"),
        AttachError::Init(m) => format!(
            "-device {arg}: {m}\nqemu-system-x86_64: -device {arg}: Device initialization failed."
        ),
    }
}

/// Creates the board's drives for `if=ide`, then the `-device ide-*` ones.
pub fn attach_cmdline(emu: &mut Emulator) -> Result<(), String> {
    let specs: Vec<IdeDeviceSpec> = emu
        .machine
        .opts
        .devices
        .iter()
        .filter_map(|d| match d {
            DeviceSpec::Ide(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    if emu.machine.pc().is_none() {
        if let Some(s) = specs.first() {
            return Err(format!(
                "-device {}: No 'IDE' bus found for device '{}'",
                s.arg,
                s.driver.type_name()
            ));
        }
        return Ok(());
    }
    let mut legacy: Vec<BoardDrive> = emu
        .blockdevs
        .fronts
        .iter()
        .filter_map(|f| {
            let l = f.legacy.as_ref()?;
            (l.if_type == IfType::Ide).then(|| BoardDrive {
                bus: l.bus,
                unit: l.unit,
                name: f.name.clone(),
                cd: l.media_cd,
                serial: l.serial.clone(),
                chs: l.chs,
            })
        })
        .collect();
    legacy.sort_by_key(|d| (d.bus, d.unit));
    if let Some(max) = legacy.iter().map(|l| l.bus).max() {
        if max >= 2 {
            return Err(format!("Too many IDE buses defined ({} > 2)", max + 1));
        }
    }
    for BoardDrive {
        bus,
        unit,
        name,
        cd,
        serial,
        chs,
    } in legacy
    {
        let a = Attach {
            slot: DriveSlot {
                bus: bus as u8,
                unit: unit as u8,
            },
            kind: if cd { DriveKind::Cd } else { DriveKind::Hd },
            backend: Some(name.clone()),
            serial,
            model: None,
            ver: None,
            qdev_id: None,
            type_name: if cd { "ide-cd" } else { "ide-hd" },
            chs: if cd { (0, 0, 0) } else { chs },
            wwn: 0,
            discard: true,
            physical_block_exp: 0,
        };
        let ty = a.type_name;
        // Board devices fail as qdev_init_nofail reports it.
        let board_err = |e| {
            match e {
            AttachError::Property(m) => m,
            AttachError::Init(m) => format!(
                "{m}\nqemu-system-x86_64: Initialization of device {ty} failed: Device initialization failed."
            ),
        }
        };
        if !cd {
            check_chs(chs).map_err(board_err)?;
        }
        attach(emu, &a).map_err(board_err)?;
    }
    for s in &specs {
        attach_device(emu, s).map_err(|e| loc_error(&s.arg, e))?;
    }
    Ok(())
}

fn attach_device(emu: &mut Emulator, s: &IdeDeviceSpec) -> Result<(), AttachError> {
    let ty = s.driver.type_name();
    let bus = match s.bus.as_deref() {
        None => 0,
        Some("ide.0") => 0,
        Some("ide.1") => 1,
        Some(b) => return Err(AttachError::Property(format!("Bus '{b}' not found"))),
    };
    if let Some(d) = &s.drive {
        let Some(f) = emu.blockdevs.front(d) else {
            return Err(AttachError::Property(format!(
                "Property '{ty}.drive' can't find value '{d}'"
            )));
        };
        if f.device.is_some() {
            let auto = f.legacy.as_ref().is_some_and(|l| l.if_type != IfType::None);
            return Err(AttachError::Property(if auto {
                format!("Drive '{d}' is already in use because it has been automatically connected to another device (did you need 'if=none' in the drive options?)")
            } else {
                format!("Drive '{d}' is already in use by another device")
            }));
        }
    }
    let ctrl = emu.machine.pc().map(|pc| pc.ide.clone());
    let used = |unit: u32| {
        ctrl.as_ref().is_some_and(|c| {
            c.lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_used(DriveSlot {
                    bus,
                    unit: unit as u8,
                })
        })
    };
    let unit = match s.unit {
        Some(u) => u,
        None => u32::from(used(0)),
    };
    if unit >= 2 {
        return Err(AttachError::Init(format!(
            "Can't create IDE unit {unit}, bus supports only 2 units"
        )));
    }
    if used(unit) {
        return Err(AttachError::Init(format!("IDE unit {unit} is in use")));
    }
    let kind = match s.driver {
        IdeDriver::Hd => DriveKind::Hd,
        IdeDriver::Cd => DriveKind::Cd,
        IdeDriver::Drive => {
            let cd = s
                .drive
                .as_deref()
                .and_then(|d| emu.blockdevs.front(d))
                .and_then(|f| f.legacy.as_ref())
                .is_some_and(|l| l.media_cd);
            if cd {
                DriveKind::Cd
            } else {
                DriveKind::Hd
            }
        }
    };
    if s.drive.is_none() && kind != DriveKind::Cd {
        return Err(AttachError::Init("No drive specified".into()));
    }
    let discard = match s.discard_granularity {
        None | Some(512) => true,
        Some(0) => false,
        Some(_) => {
            return Err(AttachError::Init(
                "discard_granularity must be 512 for ide".into(),
            ))
        }
    };
    if !matches!(s.logical_block_size, 0 | 512) {
        return Err(AttachError::Init(
            "logical_block_size must be 512 for IDE".into(),
        ));
    }
    let physical = s.physical_block_size.max(512);
    let physical_block_exp = (physical / 512).trailing_zeros() as u8;
    let front = s.drive.as_deref().and_then(|d| emu.blockdevs.front(d));
    let chs = if kind == DriveKind::Hd {
        let chs = if s.chs == (0, 0, 0) {
            front
                .and_then(|f| f.legacy.as_ref())
                .map_or((0, 0, 0), |l| l.chs)
        } else {
            s.chs
        };
        check_chs(chs)?;
        chs
    } else {
        (0, 0, 0)
    };
    // blkconf_apply_backend_options: the device's settings win over the
    // drive's.
    if let Some(f) = s.drive.as_deref().and_then(|d| emu.blockdevs.front_mut(d)) {
        if let Some(wc) = s.write_cache {
            f.writeback = wc;
        }
        if let Some(r) = s.rerror {
            f.on_read_error = r;
        }
        if let Some(w) = s.werror {
            f.on_write_error = w;
        }
    }
    let legacy_serial = s
        .drive
        .as_deref()
        .and_then(|d| emu.blockdevs.front(d))
        .and_then(|f| f.legacy.as_ref())
        .and_then(|l| l.serial.clone());
    attach(
        emu,
        &Attach {
            slot: DriveSlot {
                bus,
                unit: unit as u8,
            },
            kind,
            backend: s.drive.clone(),
            serial: s.serial.clone().or(legacy_serial),
            model: s.model.clone(),
            ver: s.ver.clone(),
            qdev_id: s.id.as_deref(),
            type_name: ty,
            chs,
            wwn: s.wwn,
            discard,
            physical_block_exp,
        },
    )
}

/// blkconf_geometry's limits for an IDE disk.
fn check_chs((c, h, sec): (u32, u32, u32)) -> Result<(), AttachError> {
    if c == 0 && h == 0 && sec == 0 {
        return Ok(());
    }
    let bad =
        |what: &str, max: u32| AttachError::Init(format!("{what} must be between 1 and {max}"));
    if !(1..=65535).contains(&c) {
        return Err(bad("cyls", 65535));
    }
    if !(1..=16).contains(&h) {
        return Err(bad("heads", 16));
    }
    if !(1..=255).contains(&sec) {
        return Err(bad("secs", 255));
    }
    Ok(())
}

fn attach(emu: &mut Emulator, a: &Attach) -> Result<(), AttachError> {
    let Some(ctrl) = emu.machine.pc().map(|pc| pc.ide.clone()) else {
        return Ok(());
    };
    let (sectors, writeback) = match &a.backend {
        Some(name) => {
            let b = emu.block.backend(name);
            let inserted = b.is_some_and(|b| b.has_medium());
            if a.kind == DriveKind::Hd {
                if !inserted {
                    return Err(AttachError::Init(
                        "Device needs media, but drive is empty".into(),
                    ));
                }
                let ro = b
                    .and_then(|b| b.root())
                    .is_some_and(|r| block::lock(&r).is_read_only());
                if ro {
                    return Err(AttachError::Init("Can't use a read-only drive".into()));
                }
            }
            let wb = emu.blockdevs.front(name).is_none_or(|f| f.writeback);
            (medium_sectors(&emu.block, name), wb)
        }
        None => (0, true),
    };
    // QEMU numbers drives in slot order from 1: QM00001 is ide0 master.
    let n = a.slot.bus as u32 * 2 + a.slot.unit as u32 + 1;
    let identity = DriveIdentity {
        serial: a.serial.clone().unwrap_or_else(|| format!("QM{n:05}")),
        model: a.model.clone().unwrap_or_else(|| {
            match a.kind {
                DriveKind::Cd => "QEMU DVD-ROM",
                DriveKind::Hd => "QEMU HARDDISK",
            }
            .to_string()
        }),
        version: a.ver.clone().unwrap_or_else(|| HW_VERSION.to_string()),
    };
    let qdev_path = qom_add(emu, a, &identity);
    if let Some(name) = &a.backend {
        let cd = a.kind == DriveKind::Cd;
        let model = DeviceModel {
            id: a.qdev_id.map(str::to_string).unwrap_or(qdev_path),
            removable: cd,
            tray: cd.then(Tray::default),
            ops: Some(DeviceOps {
                ctrl: ctrl.clone(),
                slot: a.slot,
            }),
        };
        emu.blockdevs
            .attach_device(name, model)
            .map_err(AttachError::Property)?;
        emu.blockdevs.enable_iostatus(name);
    }
    emu.blockdevs.slots.slots.push((a.slot, a.backend.clone()));
    ctrl.lock().unwrap_or_else(|e| e.into_inner()).attach(
        a.slot,
        DriveConfig {
            kind: a.kind,
            identity,
            sectors,
            cylinders: a.chs.0,
            heads: a.chs.1,
            secs_per_track: a.chs.2,
            write_cache: writeback,
            wwn: a.wwn,
            discard: a.discard,
            physical_block_exp: a.physical_block_exp,
        },
    );
    Ok(())
}

/// Adds the device to the QOM tree; returns its path.
fn qom_add(emu: &mut Emulator, a: &Attach, id: &DriveIdentity) -> String {
    let mut st = crate::qom::Stored::default();
    st.values
        .insert("drive".into(), json!(a.backend.clone().unwrap_or_default()));
    st.values.insert("unit".into(), json!(a.slot.unit));
    st.values.insert("serial".into(), json!(id.serial));
    st.values.insert("model".into(), json!(id.model));
    st.values.insert("ver".into(), json!(id.version));
    let (container, name) = match a.qdev_id {
        Some(qid) => ("/machine/peripheral", qid.to_string()),
        None if a.backend.as_ref().is_some_and(|b| {
            emu.blockdevs
                .front(b)
                .and_then(|f| f.legacy.as_ref())
                .is_some_and(|l| l.if_type == IfType::Ide)
        }) && a.type_name != "ide-drive" =>
        {
            (
                "/machine/unattached",
                free_index(emu, "/machine/unattached"),
            )
        }
        None => (
            "/machine/peripheral-anon",
            free_index(emu, "/machine/peripheral-anon"),
        ),
    };
    if let Some(parent) = emu.qom.resolve(container) {
        let _ = emu.qom.add_child(parent, &name, a.type_name, Box::new(st));
    }
    format!("{container}/{name}")
}

fn free_index(emu: &Emulator, container: &str) -> String {
    (0..)
        .map(|i| format!("device[{i}]"))
        .find(|n| emu.qom.resolve(&format!("{container}/{n}")).is_none())
        .unwrap_or_default()
}
