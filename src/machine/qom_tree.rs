//! The machine's CPUs and devices in the QOM tree, and their QOM types
//! (so that qom-list, qom-get and device-list-properties see them).

use crate::devices::DeviceSpec;

mod qom_types {
    use crate::qom::types::{prop, ty, Access, Dflt, PropDef, TypeDef, TYPE_DEVICE};

    const RW: Access = Access::ReadWrite;

    pub static DEBUG_EXIT_PROPS: &[PropDef] = &[
        prop("iobase", "uint32", RW, Dflt::Int(0x501)),
        prop("iosize", "uint32", RW, Dflt::Int(2)),
    ];

    pub static LOADER_PROPS: &[PropDef] = &[
        prop("addr", "uint64", RW, Dflt::Int(0)),
        prop("data", "uint64", RW, Dflt::Int(0)),
        prop("data-len", "uint8", RW, Dflt::Int(0)),
        prop("data-be", "bool", RW, Dflt::Bool(false)),
        prop("cpu-num", "uint32", RW, Dflt::Int(u32::MAX as i64)),
        prop("file", "str", RW, Dflt::EmptyStr),
        prop("force-raw", "bool", RW, Dflt::Bool(false)),
    ];

    /// QEMU 2.8's ide-device, block and block-error properties.
    pub static IDE_PROPS: &[PropDef] = &[
        prop("unit", "uint32", RW, Dflt::Int(u32::MAX as i64)),
        prop("drive", "str", RW, Dflt::EmptyStr),
        prop("logical_block_size", "uint16", RW, Dflt::Int(0)),
        prop("physical_block_size", "uint16", RW, Dflt::Int(0)),
        prop("min_io_size", "uint16", RW, Dflt::Int(0)),
        prop("opt_io_size", "uint32", RW, Dflt::Int(0)),
        prop(
            "discard_granularity",
            "uint32",
            RW,
            Dflt::Int(u32::MAX as i64),
        ),
        prop("write-cache", "OnOffAuto", RW, Dflt::Str("auto")),
        prop("rerror", "BlockdevOnError", RW, Dflt::Str("auto")),
        prop("werror", "BlockdevOnError", RW, Dflt::Str("auto")),
        prop("ver", "str", RW, Dflt::EmptyStr),
        prop("wwn", "uint64", RW, Dflt::Int(0)),
        prop("serial", "str", RW, Dflt::EmptyStr),
        prop("model", "str", RW, Dflt::EmptyStr),
    ];

    /// ide-hd adds the geometry.
    pub static IDE_HD_PROPS: &[PropDef] = &[
        prop("unit", "uint32", RW, Dflt::Int(u32::MAX as i64)),
        prop("drive", "str", RW, Dflt::EmptyStr),
        prop("logical_block_size", "uint16", RW, Dflt::Int(0)),
        prop("physical_block_size", "uint16", RW, Dflt::Int(0)),
        prop("min_io_size", "uint16", RW, Dflt::Int(0)),
        prop("opt_io_size", "uint32", RW, Dflt::Int(0)),
        prop(
            "discard_granularity",
            "uint32",
            RW,
            Dflt::Int(u32::MAX as i64),
        ),
        prop("write-cache", "OnOffAuto", RW, Dflt::Str("auto")),
        prop("rerror", "BlockdevOnError", RW, Dflt::Str("auto")),
        prop("werror", "BlockdevOnError", RW, Dflt::Str("auto")),
        prop("ver", "str", RW, Dflt::EmptyStr),
        prop("wwn", "uint64", RW, Dflt::Int(0)),
        prop("serial", "str", RW, Dflt::EmptyStr),
        prop("model", "str", RW, Dflt::EmptyStr),
        prop("cyls", "uint32", RW, Dflt::Int(0)),
        prop("heads", "uint32", RW, Dflt::Int(0)),
        prop("secs", "uint32", RW, Dflt::Int(0)),
        prop(
            "bios-chs-trans",
            "BiosAtaTranslation",
            RW,
            Dflt::Str("auto"),
        ),
    ];

    pub static CPU_PROPS: &[PropDef] = &[prop("apic-id", "uint32", RW, Dflt::Int(0))];

    /// Types in parent-first order.
    pub fn all() -> Vec<TypeDef> {
        vec![
            ty("cpu", TYPE_DEVICE, true, &[], &[]),
            ty("x86_64-cpu", "cpu", true, &[], &[]),
            ty("qemu64-x86_64-cpu", "x86_64-cpu", false, &[], CPU_PROPS),
            ty("sys-bus-device", TYPE_DEVICE, true, &[], &[]),
            ty("pci-host-bridge", "sys-bus-device", true, &[], &[]),
            ty("i440FX-pcihost", "pci-host-bridge", false, &[], &[]),
            ty("pci-device", TYPE_DEVICE, true, &[], &[]),
            ty("i440FX", "pci-device", false, &[], &[]),
            ty("PIIX3", "pci-device", false, &[], &[]),
            ty("piix3-ide", "pci-device", false, &[], &[]),
            ty("PIIX4_PM", "pci-device", false, &[], &[]),
            ty("ioapic", "sys-bus-device", false, &[], &[]),
            ty("kvm-ioapic", "sys-bus-device", false, &[], &[]),
            ty("isa-device", TYPE_DEVICE, true, &[], &[]),
            ty("isa-serial", "isa-device", false, &[], &[]),
            ty("mc146818rtc", "isa-device", false, &[], &[]),
            ty("i8042", "isa-device", false, &[], &[]),
            ty("isa-debug-exit", "isa-device", false, &[], DEBUG_EXIT_PROPS),
            ty("loader", TYPE_DEVICE, false, &[], LOADER_PROPS),
            ty("ide-device", TYPE_DEVICE, true, &[], &[]),
            ty("ide-hd", "ide-device", false, &[], IDE_HD_PROPS),
            ty("ide-cd", "ide-device", false, &[], IDE_PROPS),
            ty("ide-drive", "ide-device", false, &[], IDE_PROPS),
        ]
    }
}

/// Puts the machine's CPUs and devices into the QOM tree as QEMU's pc
/// has them: CPUs first under /machine/unattached, the host bridge at
/// /machine/i440fx, the I/O APIC at /machine/ioapic, the rest of the
/// board under /machine/unattached, `-device`s under /machine/peripheral
/// (with id) or /machine/peripheral-anon.
pub fn populate_qom(emu: &mut crate::emulator::Emulator) {
    use crate::qom::Stored;
    use serde_json::{json, Value};

    for t in qom_types::all() {
        emu.qom.register_type(t);
    }
    if emu.machine.pc().is_none() {
        return;
    }
    let Some(machine) = emu.qom.resolve("/machine") else {
        return;
    };
    let unattached = emu.qom.add_container(machine, "unattached");
    let mut n = 0;
    let add = |emu: &mut crate::emulator::Emulator, parent, name: String, ty, st: Stored| {
        let _ = emu.qom.add_child(parent, &name, ty, Box::new(st));
    };
    for i in 0..emu.machine.smp.cpus {
        let mut st = Stored::default();
        st.values.insert("apic-id".into(), json!(i));
        add(
            emu,
            unattached,
            format!("device[{n}]"),
            "qemu64-x86_64-cpu",
            st,
        );
        n += 1;
    }
    add(
        emu,
        machine,
        "i440fx".into(),
        "i440FX-pcihost",
        Stored::default(),
    );
    let ioapic = if emu.machine.accel == crate::vl::config::Accel::Kvm {
        "kvm-ioapic"
    } else {
        "ioapic"
    };
    add(emu, machine, "ioapic".into(), ioapic, Stored::default());
    let uarts = emu.machine.uart_count();
    let board = ["i440FX", "PIIX3", "piix3-ide", "PIIX4_PM", "mc146818rtc"];
    let serials = std::iter::repeat_n("isa-serial", uarts);
    for ty in board.into_iter().chain(serials).chain(["i8042"]) {
        add(
            emu,
            unattached,
            format!("device[{n}]"),
            ty,
            Stored::default(),
        );
        n += 1;
    }
    let peripheral = emu.qom.add_container(machine, "peripheral");
    let anon = emu.qom.add_container(machine, "peripheral-anon");
    let mut anon_n = 0;
    for d in emu.machine.opts.devices.clone() {
        let (id, ty, values): (Option<String>, &str, Vec<(&str, Value)>) = match d {
            DeviceSpec::DebugExit { id, iobase, iosize } => (
                id,
                "isa-debug-exit",
                vec![("iobase", json!(iobase)), ("iosize", json!(iosize))],
            ),
            DeviceSpec::Loader { id, loader } => {
                let mut v = vec![
                    ("addr", json!(loader.addr.unwrap_or(0))),
                    ("data", json!(loader.data.unwrap_or(0))),
                    ("data-len", json!(loader.data_len.unwrap_or(0))),
                    ("data-be", json!(loader.data_be)),
                    ("force-raw", json!(loader.force_raw)),
                ];
                if let Some(c) = loader.cpu_num {
                    v.push(("cpu-num", json!(c)));
                }
                if let Some(f) = &loader.file {
                    v.push(("file", json!(f.display().to_string())));
                }
                (id, "loader", v)
            }
            // Added with their drives (machine::ide).
            DeviceSpec::Ide(_) => continue,
        };
        let mut st = Stored::default();
        for (k, v) in values {
            st.values.insert(k.into(), v);
        }
        match id {
            Some(id) => add(emu, peripheral, id, ty, st),
            None => {
                add(emu, anon, format!("device[{anon_n}]"), ty, st);
                anon_n += 1;
            }
        }
    }
}
