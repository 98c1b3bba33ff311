//! QOM and object commands: query-iothreads, object-add, object-del,
//! qom-list, qom-get, qom-set, qom-list-types, device-list-properties.

use serde_json::{json, Map, Value};

use qmp::error::{ErrorClass, QmpError};

use super::{arg_bool, arg_str, empty, Args, CmdCtx};
use crate::emulator::Emulator;
use crate::qom::objects::{self, PropSource};
use crate::qom::types::TYPE_DEVICE;
use crate::qom::{Input, QomError, Resolved};

pub fn query_iothreads(emu: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    Ok(Value::Array(
        emu.qom
            .iothreads()
            .into_iter()
            .map(|(id, tid)| json!({"id": id, "thread-id": tid}))
            .collect(),
    ))
}

pub fn object_add(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let ty = arg_str(args, "qom-type").unwrap_or("");
    let id = arg_str(args, "id").unwrap_or("");
    let none = Map::new();
    let props = match args.get("props") {
        None => &none,
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(QmpError::generic(
                "Invalid parameter type for 'props', expected: dict",
            ))
        }
    };
    objects::create(&mut emu.qom, ty, id, PropSource::Json(props))?;
    Ok(empty())
}

pub fn object_del(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    objects::delete(&mut emu.qom, arg_str(args, "id").unwrap_or(""))?;
    Ok(empty())
}

pub fn qom_list(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let path = arg_str(args, "path").unwrap_or("");
    let idx = match emu.qom.resolve_path(path) {
        Resolved::Found(i) => i,
        Resolved::Ambiguous => {
            return Err(QmpError::generic(format!("Path '{path}' is ambiguous")))
        }
        Resolved::NotFound => return Err(QomError::device_not_found(path).into()),
    };
    Ok(Value::Array(
        emu.qom
            .list_props(idx)
            .into_iter()
            .map(|(name, ty)| json!({"name": name, "type": ty}))
            .collect(),
    ))
}

pub fn qom_get(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let path = arg_str(args, "path").unwrap_or("");
    let prop = arg_str(args, "property").unwrap_or("");
    let idx = emu
        .qom
        .lookup(path)
        .ok_or_else(|| QomError::device_not_found(path))?;
    Ok(emu.qom.get_prop(idx, prop)?)
}

pub fn qom_set(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let path = arg_str(args, "path").unwrap_or("");
    let prop = arg_str(args, "property").unwrap_or("");
    let idx = emu
        .qom
        .lookup(path)
        .ok_or_else(|| QomError::device_not_found(path))?;
    let value = args.get("value").cloned().unwrap_or(Value::Null);
    emu.qom.set_prop(idx, prop, &Input::Json(&value))?;
    Ok(empty())
}

pub fn qom_list_types(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let implements = arg_str(args, "implements");
    let include_abstract = arg_bool(args, "abstract").unwrap_or(false);
    let r = &emu.qom.types;
    Ok(Value::Array(
        r.all()
            .filter(|t| include_abstract || !t.abstract_)
            .filter(|t| implements.is_none_or(|i| r.implements(t.name, i)))
            .map(|t| json!({"name": t.name}))
            .collect(),
    ))
}

/// Properties QEMU leaves out of device-list-properties: the object's and
/// every device's own.
const HIDDEN: &[&str] = &[
    "type",
    "realized",
    "hotpluggable",
    "hotplugged",
    "parent_bus",
];

pub fn device_list_properties(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let name = arg_str(args, "typename").unwrap_or("");
    let r = &emu.qom.types;
    let Some(t) = r.get(name) else {
        return Err(QmpError::new(
            ErrorClass::DeviceNotFound,
            format!("Device '{name}' not found"),
        ));
    };
    if !r.implements(name, TYPE_DEVICE) {
        return Err(QmpError::generic("Parameter 'name' expects device"));
    }
    if t.abstract_ {
        return Err(QmpError::generic(
            "Parameter 'name' expects non-abstract device type",
        ));
    }
    Ok(Value::Array(
        r.props(name)
            .into_iter()
            .filter(|p| !HIDDEN.contains(&p.name) && !p.name.starts_with("legacy-"))
            .map(|p| {
                let mut o = Map::new();
                o.insert("name".into(), json!(p.name));
                o.insert("type".into(), json!(p.ty));
                if let Some(d) = p.desc {
                    o.insert("description".into(), json!(d));
                }
                Value::Object(o)
            })
            .collect(),
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::machine::{Machine, MachineOpts};
    use crate::qmp_cmds::dispatch;
    use crate::vl::config::{Accel, SmpConfig};
    use crate::vl::Config;

    /// An emulator with the `none` machine and its QOM tree, as start-up
    /// builds it.
    pub(crate) fn emu() -> Emulator {
        emu_with(&Config::default())
    }

    pub(crate) fn emu_with(cfg: &Config) -> Emulator {
        let mt = crate::machine_types::find("none").expect("none machine");
        let smp = SmpConfig {
            cpus: 1,
            max_cpus: 1,
            sockets: 1,
            cores: 1,
            threads: 1,
        };
        let opts = MachineOpts {
            ram_size: 1 << 20,
            smp,
            rtc_base: None,
            bios: None,
            kernel: None,
            initrd: None,
            append: None,
            serial_ports: 1,
            devices: Vec::new(),
            ram: Vec::new(),
        };
        let m = Machine::new(mt, Accel::Qtest, &opts).expect("machine");
        let mut e = Emulator::new(cfg, m).expect("emulator");
        crate::qom::populate_machine(&mut e, cfg);
        e
    }

    #[test]
    fn machine_options_become_machine_properties() {
        let cfg = Config {
            machine_opts: crate::vl::cli::MACHINE_OPTS
                .parse(
                    "none,accel=qtest,mem-merge=off,kernel_irqchip=off,append=a b",
                    true,
                )
                .unwrap(),
            nographic: true,
            ..Config::default()
        };
        let mut e = emu_with(&cfg);
        let get = |e: &mut Emulator, p: &str| {
            run(e, "qom-get", json!({"path": "/machine", "property": p})).unwrap()
        };
        assert_eq!(get(&mut e, "accel"), json!("qtest"));
        assert_eq!(get(&mut e, "mem-merge"), json!(false));
        assert_eq!(get(&mut e, "append"), json!("a b"));
        assert_eq!(get(&mut e, "graphics"), json!(false));
        // A backend made now inherits mem-merge=off.
        run(
            &mut e,
            "object-add",
            json!({"qom-type": "memory-backend-ram", "id": "m", "props": {"size": 4096}}),
        )
        .unwrap();
        let v = run(&mut e, "qom-get", json!({"path": "m", "property": "merge"}));
        assert_eq!(v.unwrap(), json!(false));
    }

    pub(crate) fn run(e: &mut Emulator, cmd: &str, args: Value) -> Result<Value, QmpError> {
        let mut ctx = CmdCtx { monitor: None };
        let a = args.as_object().cloned().unwrap_or_default();
        dispatch(e, &mut ctx, cmd, &a)
    }

    fn err(r: Result<Value, QmpError>) -> (ErrorClass, String) {
        let e = r.unwrap_err();
        (e.class, e.desc)
    }

    #[test]
    fn qom_list_root_shows_machine_objects_and_chardevs() {
        let mut e = emu();
        let v = run(&mut e, "qom-list", json!({"path": "/"})).unwrap();
        let list = v.as_array().unwrap();
        assert!(list.contains(&json!({"name": "machine", "type": "child<none-machine>"})));
        assert!(list.contains(&json!({"name": "objects", "type": "child<container>"})));
        assert!(list.contains(&json!({"name": "chardevs", "type": "child<container>"})));
        assert!(list.contains(&json!({"name": "type", "type": "string"})));
    }

    #[test]
    fn qom_list_errors_for_missing_and_ambiguous_paths() {
        let mut e = emu();
        assert_eq!(
            err(run(&mut e, "qom-list", json!({"path": "/nope"}))),
            (
                ErrorClass::DeviceNotFound,
                "Device '/nope' not found".into()
            )
        );
        assert_eq!(
            err(run(&mut e, "qom-list", json!({"path": ""}))),
            (ErrorClass::GenericError, "Path '' is ambiguous".into())
        );
        let v = run(&mut e, "qom-list", json!({"path": "peripheral-anon"})).unwrap();
        assert_eq!(v, json!([{"name": "type", "type": "string"}]));
    }

    #[test]
    fn qom_get_and_set_typed_values() {
        let mut e = emu();
        let get = |e: &mut Emulator, p: &str| {
            run(e, "qom-get", json!({"path": "/machine", "property": p}))
        };
        assert_eq!(get(&mut e, "type").unwrap(), json!("none-machine"));
        assert_eq!(get(&mut e, "dump-guest-core").unwrap(), json!(true));
        assert_eq!(get(&mut e, "kvm-shadow-mem").unwrap(), json!(-1));
        assert_eq!(
            get(&mut e, "peripheral").unwrap(),
            json!("/machine/peripheral")
        );
        assert_eq!(
            err(get(&mut e, "nope")),
            (
                ErrorClass::GenericError,
                "Property '.nope' not found".into()
            )
        );
        run(
            &mut e,
            "qom-set",
            json!({"path": "machine", "property": "append", "value": "console=ttyS0"}),
        )
        .unwrap();
        assert_eq!(get(&mut e, "append").unwrap(), json!("console=ttyS0"));
        assert_eq!(
            err(run(
                &mut e,
                "qom-set",
                json!({"path": "/machine", "property": "append", "value": 1})
            )),
            (
                ErrorClass::GenericError,
                "Invalid parameter type for 'append', expected: string".into()
            )
        );
        assert_eq!(
            err(run(
                &mut e,
                "qom-set",
                json!({"path": "/x", "property": "append", "value": ""})
            )),
            (ErrorClass::DeviceNotFound, "Device '/x' not found".into())
        );
        assert_eq!(
            err(run(
                &mut e,
                "qom-get",
                json!({"path": "/x", "property": "type"})
            )),
            (ErrorClass::DeviceNotFound, "Device '/x' not found".into())
        );
    }

    #[test]
    fn object_add_and_del_an_iothread() {
        let mut e = emu();
        run(
            &mut e,
            "object-add",
            json!({"qom-type": "iothread", "id": "io0"}),
        )
        .unwrap();
        let v = run(&mut e, "query-iothreads", json!({})).unwrap();
        assert_eq!(v[0]["id"], "io0");
        assert!(v[0]["thread-id"].as_i64().unwrap() > 0);
        let t = run(
            &mut e,
            "qom-get",
            json!({"path": "/objects/io0", "property": "type"}),
        );
        assert_eq!(t.unwrap(), json!("iothread"));
        run(&mut e, "object-del", json!({"id": "io0"})).unwrap();
        assert_eq!(
            run(&mut e, "query-iothreads", json!({})).unwrap(),
            json!([])
        );
        assert_eq!(
            err(run(&mut e, "object-del", json!({"id": "io0"}))),
            (ErrorClass::GenericError, "object 'io0' not found".into())
        );
    }

    #[test]
    fn object_add_errors_match_qemu() {
        let mut e = emu();
        let add = |e: &mut Emulator, a: Value| err(run(e, "object-add", a)).1;
        assert_eq!(
            add(&mut e, json!({"qom-type": "nope", "id": "x"})),
            "invalid object type: nope"
        );
        assert_eq!(
            add(&mut e, json!({"qom-type": "memory-backend", "id": "x"})),
            "object type 'memory-backend' is abstract"
        );
        assert_eq!(
            add(&mut e, json!({"qom-type": "none-machine", "id": "x"})),
            "object type 'none-machine' isn't supported by object-add"
        );
        assert_eq!(
            add(
                &mut e,
                json!({"qom-type": "iothread", "id": "x", "props": 3})
            ),
            "Invalid parameter type for 'props', expected: dict"
        );
        assert_eq!(
            add(
                &mut e,
                json!({"qom-type": "memory-backend-ram", "id": "x", "props": {"size": "1G"}})
            ),
            "Invalid parameter type for 'size', expected: integer"
        );
        assert_eq!(
            add(&mut e, json!({"qom-type": "memory-backend-ram", "id": "x"})),
            "can't create backend with size 0"
        );
        assert_eq!(
            add(
                &mut e,
                json!({"qom-type": "memory-backend-ram", "id": "x", "props": {"size": 4096, "policy": "odd"}})
            ),
            "Invalid parameter 'odd'"
        );
        run(
            &mut e,
            "object-add",
            json!({"qom-type": "iothread", "id": "x"}),
        )
        .unwrap();
        assert_eq!(
            add(&mut e, json!({"qom-type": "iothread", "id": "x"})),
            "attempt to add duplicate property 'x' to object (type 'container')"
        );
    }

    #[test]
    fn memory_backend_properties_read_back_and_freeze() {
        let mut e = emu();
        run(
            &mut e,
            "object-add",
            json!({"qom-type": "memory-backend-ram", "id": "m", "props": {"size": 2097152, "merge": false}}),
        )
        .unwrap();
        let get = |e: &mut Emulator, p: &str| {
            run(e, "qom-get", json!({"path": "/objects/m", "property": p})).unwrap()
        };
        assert_eq!(get(&mut e, "size"), json!(2097152));
        assert_eq!(get(&mut e, "merge"), json!(false));
        assert_eq!(get(&mut e, "policy"), json!("default"));
        assert_eq!(get(&mut e, "host-nodes"), json!([]));
        assert_eq!(
            err(run(
                &mut e,
                "qom-set",
                json!({"path": "/objects/m", "property": "size", "value": 4096})
            ))
            .1,
            "cannot change property value"
        );
        run(
            &mut e,
            "qom-set",
            json!({"path": "/objects/m", "property": "dump", "value": false}),
        )
        .unwrap();
        assert_eq!(get(&mut e, "dump"), json!(false));
    }

    #[test]
    fn qom_list_types_filters_abstract_and_implements() {
        let mut e = emu();
        let names = |v: Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_string())
                .collect()
        };
        let all = names(run(&mut e, "qom-list-types", json!({})).unwrap());
        assert!(all.contains(&"iothread".to_string()));
        assert!(!all.contains(&"memory-backend".to_string()));
        let with_abs = names(run(&mut e, "qom-list-types", json!({"abstract": true})).unwrap());
        assert!(with_abs.contains(&"memory-backend".to_string()));
        let machines =
            names(run(&mut e, "qom-list-types", json!({"implements": "machine"})).unwrap());
        assert_eq!(machines, vec!["pc-i440fx-2.8-machine", "none-machine"]);
        let none = run(&mut e, "qom-list-types", json!({"implements": "nope"})).unwrap();
        assert_eq!(none, json!([]));
    }

    #[test]
    fn device_list_properties_errors_and_listing() {
        let mut e = emu();
        let dlp =
            |e: &mut Emulator, t: &str| run(e, "device-list-properties", json!({"typename": t}));
        assert_eq!(
            err(dlp(&mut e, "nope")),
            (ErrorClass::DeviceNotFound, "Device 'nope' not found".into())
        );
        assert_eq!(
            err(dlp(&mut e, "iothread")).1,
            "Parameter 'name' expects device"
        );
        assert_eq!(
            err(dlp(&mut e, "device")).1,
            "Parameter 'name' expects non-abstract device type"
        );
        static P: &[crate::qom::types::PropDef] = &[crate::qom::types::dprop(
            "iobase",
            "uint32",
            "I/O base",
            crate::qom::types::Access::ReadWrite,
            crate::qom::types::Dflt::Int(0x3f8),
        )];
        e.qom
            .register_type(crate::qom::types::ty("isa-serial", "device", false, &[], P));
        assert_eq!(
            dlp(&mut e, "isa-serial").unwrap(),
            json!([{"name": "iobase", "type": "uint32", "description": "I/O base"}])
        );
    }
}
