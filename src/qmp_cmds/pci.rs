//! query-pci: the functions on the PC's PCI bus 0, as QEMU reports them.

use serde_json::{json, Map, Value};

use hw::devices::pci::{BarKind, PciFunction};
use qmp::error::QmpError;

use super::{Args, CmdCtx};
use crate::emulator::Emulator;

/// QEMU's names for PCI class codes (exact class match).
const CLASS_NAMES: &[(u16, &str)] = &[
    (0x0001, "VGA controller"),
    (0x0100, "SCSI controller"),
    (0x0101, "IDE controller"),
    (0x0102, "Floppy controller"),
    (0x0103, "IPI controller"),
    (0x0104, "RAID controller"),
    (0x0106, "SATA controller"),
    (0x0107, "SAS controller"),
    (0x0180, "Storage controller"),
    (0x0200, "Ethernet controller"),
    (0x0201, "Token Ring controller"),
    (0x0202, "FDDI controller"),
    (0x0203, "ATM controller"),
    (0x0280, "Network controller"),
    (0x0300, "VGA controller"),
    (0x0301, "XGA controller"),
    (0x0302, "3D controller"),
    (0x0380, "Display controller"),
    (0x0400, "Video controller"),
    (0x0401, "Audio controller"),
    (0x0402, "Phone"),
    (0x0403, "Audio controller"),
    (0x0480, "Multimedia controller"),
    (0x0500, "RAM controller"),
    (0x0501, "Flash controller"),
    (0x0580, "Memory controller"),
    (0x0600, "Host bridge"),
    (0x0601, "ISA bridge"),
    (0x0602, "EISA bridge"),
    (0x0603, "MC bridge"),
    (0x0604, "PCI bridge"),
    (0x0605, "PCMCIA bridge"),
    (0x0606, "NUBUS bridge"),
    (0x0607, "CARDBUS bridge"),
    (0x0608, "RACEWAY bridge"),
    (0x0680, "Bridge"),
    (0x0700, "Serial port"),
    (0x0701, "Parallel port"),
    (0x0800, "Interrupt controller"),
    (0x0801, "DMA controller"),
    (0x0802, "Timer"),
    (0x0803, "RTC"),
    (0x0900, "Keyboard"),
    (0x0901, "Pen"),
    (0x0902, "Mouse"),
    (0x0A00, "Dock station"),
    (0x0B00, "i386 cpu"),
    (0x0c00, "Fireware contorller"),
    (0x0c01, "Access bus controller"),
    (0x0c02, "SSA controller"),
    (0x0c03, "USB controller"),
    (0x0c04, "Fibre channel controller"),
    (0x0c05, "SMBus"),
];

const PCI_COMMAND_IO: u8 = 1;
const PCI_COMMAND_MEMORY: u8 = 2;

fn device_info(devfn: u8, f: &PciFunction) -> Value {
    let cfg = &f.config;
    let class = cfg.class();
    let mut class_info = Map::new();
    if let Some((_, desc)) = CLASS_NAMES.iter().find(|(c, _)| *c == class) {
        class_info.insert("desc".into(), json!(desc));
    }
    class_info.insert("class".into(), json!(class));
    let command = cfg.bytes[4];
    let regions: Vec<Value> = cfg
        .bars()
        .iter()
        .filter(|b| b.size > 0)
        .map(|b| {
            let enabled = match b.kind {
                BarKind::Io => command & PCI_COMMAND_IO != 0,
                _ => command & PCI_COMMAND_MEMORY != 0,
            };
            // An address the device does not decode is QEMU's
            // PCI_BAR_UNMAPPED (-1).
            let address: i64 = if enabled && b.address != 0 {
                b.address as i64
            } else {
                -1
            };
            let mut r = Map::new();
            r.insert("bar".into(), json!(b.bar));
            match b.kind {
                BarKind::Io => {
                    r.insert("type".into(), json!("io"));
                }
                k => {
                    r.insert("type".into(), json!("memory"));
                    r.insert("prefetch".into(), json!(b.prefetch));
                    r.insert("mem_type_64".into(), json!(k == BarKind::Memory64));
                }
            }
            r.insert("address".into(), json!(address));
            r.insert("size".into(), json!(b.size));
            Value::Object(r)
        })
        .collect();
    let mut d = Map::new();
    d.insert("bus".into(), json!(0));
    d.insert("slot".into(), json!(devfn >> 3));
    d.insert("function".into(), json!(devfn & 7));
    d.insert("class_info".into(), Value::Object(class_info));
    d.insert(
        "id".into(),
        json!({"device": cfg.device_id(), "vendor": cfg.vendor_id()}),
    );
    if cfg.irq_pin() != 0 {
        d.insert("irq".into(), json!(cfg.irq_line()));
    }
    d.insert("qdev_id".into(), json!(f.qdev_id));
    d.insert("regions".into(), Value::Array(regions));
    Value::Object(d)
}

pub fn query_pci(emu: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    let Some(pc) = emu.machine.pc() else {
        return Ok(Value::Array(Vec::new()));
    };
    let host = pc.pci.lock().unwrap_or_else(|e| e.into_inner());
    let devices: Vec<Value> = host
        .functions()
        .map(|(devfn, f)| device_info(devfn, f))
        .collect();
    Ok(json!([{"bus": 0, "devices": devices}]))
}
