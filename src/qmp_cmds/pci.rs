//! query-pci: the functions on the PC's PCI bus 0, as QEMU reports them.

use serde_json::{json, Map, Value};

use hw::devices::pci::{BarKind, PciFunction};
use qmp::error::QmpError;

use super::{Args, CmdCtx};
use crate::emulator::Emulator;

const PCI_COMMAND_IO: u8 = 1;
const PCI_COMMAND_MEMORY: u8 = 2;

fn device_info(devfn: u8, f: &PciFunction) -> Value {
    let cfg = &f.config;
    let class = cfg.class();
    let mut class_info = Map::new();
    if let Some(desc) = hw::devices::pci::ids::class_description(class) {
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
