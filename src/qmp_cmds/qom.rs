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
