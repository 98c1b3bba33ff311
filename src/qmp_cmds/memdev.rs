//! query-memdev: the memory backends under /objects with their size and
//! host-memory policy, read through their QOM properties.

use serde_json::{json, Map, Value};

use qmp::error::QmpError;

use super::{Args, CmdCtx};
use crate::emulator::Emulator;

pub fn query_memdev(emu: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    let q = &emu.qom;
    let Some(objs) = q.resolve("/objects") else {
        return Ok(json!([]));
    };
    let children = q.node(objs).map(|n| n.children.clone()).unwrap_or_default();
    let mut list = Vec::new();
    for c in children {
        let Some(n) = q.node(c) else {
            continue;
        };
        if !q.types.implements(&n.type_name, "memory-backend") {
            continue;
        }
        let get = |name: &str| q.get_prop(c, name).unwrap_or(Value::Null);
        let mut m = Map::new();
        m.insert("size".into(), get("size"));
        m.insert("merge".into(), get("merge"));
        m.insert("dump".into(), get("dump"));
        m.insert("prealloc".into(), get("prealloc"));
        m.insert(
            "host-nodes".into(),
            match get("host-nodes") {
                Value::Array(a) => Value::Array(a),
                _ => json!([]),
            },
        );
        m.insert("policy".into(), get("policy"));
        list.push(Value::Object(m));
    }
    // QEMU builds the list by prepending each backend it visits.
    list.reverse();
    Ok(Value::Array(list))
}
