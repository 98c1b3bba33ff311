//! User-creatable objects (`-object`, QMP object-add/object-del, HMP
//! object_add/object_del), in QEMU's order: check the type, make the
//! object, set each property, attach it at `/objects/<id>`, complete it
//! (which is where memory is mapped or the thread started); undo the
//! attachment when completion fails.

use serde_json::{Map, Value};

use super::hostmem::{BackendKind, MemoryBackend};
use super::iothread::IoThread;
use super::props::{Input, QomError};
use super::types::{self, TypeRegistry};
use super::{ObjectImpl, Qom};
use crate::emulator::Emulator;
use crate::vl::opts::QemuOpts;

/// Property values for a new object.
#[derive(Clone, Copy)]
pub enum PropSource<'a> {
    /// object-add's `props` dictionary.
    Json(&'a Map<String, Value>),
    /// `-object`/`object_add` options (`qom-type` and `id` are skipped).
    Opts(&'a QemuOpts),
}

/// The state of a new instance of a user-creatable type, or None when
/// this binary has no implementation for it.
fn new_state(qom: &Qom, type_name: &str) -> Option<Box<dyn ObjectImpl>> {
    let merge = qom
        .machine_prop("mem-merge")
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    let dump = qom
        .machine_prop("dump-guest-core")
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    let r = &qom.types;
    if r.is_ancestor(type_name, types::TYPE_IOTHREAD) {
        Some(Box::new(IoThread::new()))
    } else if r.is_ancestor(type_name, "memory-backend-file") {
        let kind = BackendKind::File {
            mem_path: None,
            share: false,
        };
        Some(Box::new(MemoryBackend::new(kind, merge, dump)))
    } else if r.is_ancestor(type_name, "secret") {
        Some(Box::new(super::secret::Secret::default()))
    } else if r.is_ancestor(type_name, "memory-backend-ram") {
        Some(Box::new(MemoryBackend::new(BackendKind::Ram, merge, dump)))
    } else {
        None
    }
}

fn set_on_state(
    r: &TypeRegistry,
    type_name: &str,
    state: &mut dyn ObjectImpl,
    name: &str,
    input: &Input,
) -> Result<(), QomError> {
    let Some(p) = r.find_prop(type_name, name) else {
        return Err(QomError::prop_not_found(name));
    };
    if !p.access.writable() {
        return Err(QomError::permission_denied());
    }
    state.set(type_name, p, input)
}

/// QEMU's user_creatable_add_type.
pub fn create(
    qom: &mut Qom,
    type_name: &str,
    id: &str,
    props: PropSource,
) -> Result<usize, QomError> {
    let Some(t) = qom.types.get(type_name) else {
        return Err(QomError::generic(format!(
            "invalid object type: {type_name}"
        )));
    };
    if !qom.types.implements(type_name, types::TYPE_USER_CREATABLE) {
        return Err(QomError::generic(format!(
            "object type '{type_name}' isn't supported by object-add"
        )));
    }
    if t.abstract_ {
        return Err(QomError::generic(format!(
            "object type '{type_name}' is abstract"
        )));
    }
    let Some(mut state) = new_state(qom, type_name) else {
        return Err(QomError::generic(format!(
            "invalid object type: {type_name}"
        )));
    };
    match props {
        PropSource::Json(m) => {
            for (k, v) in m {
                set_on_state(&qom.types, type_name, state.as_mut(), k, &Input::Json(v))?;
            }
        }
        PropSource::Opts(o) => {
            for k in o.keys() {
                if k == "qom-type" {
                    continue;
                }
                let vals: Vec<String> = o
                    .items
                    .iter()
                    .filter(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
                    .collect();
                set_on_state(
                    &qom.types,
                    type_name,
                    state.as_mut(),
                    k,
                    &Input::Opts(&vals),
                )?;
            }
        }
    }
    // QEMU attaches the object, completes it and detaches it again on
    // failure; completing before attaching gives the same results and
    // lets completion read the rest of the tree.
    let root = qom.objects_root();
    if qom.has_property(root, id) {
        return Err(QomError::generic(format!(
            "attempt to add duplicate property '{id}' to object (type '{}')",
            types::TYPE_CONTAINER
        )));
    }
    let path = format!("{}/{id}", qom.canonical_path(root));
    state.complete(&path, qom)?;
    qom.add_child(root, id, type_name, state)
}

/// QEMU's user_creatable_del.
pub fn delete(qom: &mut Qom, id: &str) -> Result<(), QomError> {
    let Some(idx) = qom.object(id) else {
        return Err(QomError::generic(format!("object '{id}' not found")));
    };
    if qom.node(idx).is_some_and(|n| n.state.in_use()) {
        return Err(QomError::generic(format!(
            "object '{id}' is in use, can not be deleted"
        )));
    }
    qom.remove(idx);
    Ok(())
}

/// Options-based creation shared by `-object` and HMP object_add:
/// qom-type and id are required, in that order.
pub fn create_from_opts(qom: &mut Qom, opts: &QemuOpts) -> Result<usize, QomError> {
    let Some(ty) = opts.get("qom-type") else {
        return Err(QomError::generic("Parameter 'qom-type' is missing"));
    };
    let Some(id) = opts.id.as_deref() else {
        return Err(QomError::generic("Parameter 'id' is missing"));
    };
    create(qom, ty, id, PropSource::Opts(opts))
}

/// The option text as the user might have typed it, for error locations.
fn opts_text(opts: &QemuOpts) -> String {
    let mut parts = Vec::new();
    if let Some(t) = opts.get("qom-type") {
        parts.push(t.replace(',', ",,"));
    }
    if let Some(id) = &opts.id {
        parts.push(format!("id={id}"));
    }
    for (k, v) in &opts.items {
        if k != "qom-type" {
            parts.push(format!("{k}={}", v.replace(',', ",,")));
        }
    }
    parts.join(",")
}

/// The `-object` argument as typed, found again on the command line (the
/// parsed options do not keep it); rebuilt from the options otherwise.
fn location(opts: &QemuOpts) -> String {
    let args: Vec<String> = std::env::args().collect();
    let typed = args
        .windows(2)
        .filter(|w| w[0] == "-object" || w[0] == "--object")
        .map(|w| &w[1])
        .find(|a| {
            crate::vl::cli::FREE_OPTS_QOM_TYPE
                .parse(a, true)
                .ok()
                .as_ref()
                == Some(opts)
        });
    format!(
        "-object {}",
        typed.cloned().unwrap_or_else(|| opts_text(opts))
    )
}

/// `-object` at start-up. Errors read `-object <options>: <message>`.
pub fn add_from_opts(emu: &mut Emulator, opts: &QemuOpts) -> Result<(), String> {
    let loc = location(opts);
    if let Some(id) = &opts.id {
        if !emu.qom.cmdline_ids.insert(id.clone()) {
            return Err(format!("{loc}: Duplicate ID '{id}' for object"));
        }
    }
    create_from_opts(&mut emu.qom, opts)
        .map(|_| ())
        .map_err(|e| format!("{loc}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn qom_with_objects() -> Qom {
        let mut q = Qom::new();
        q.objects_root();
        q
    }

    fn props(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn unknown_abstract_and_non_creatable_types_are_refused() {
        let mut q = qom_with_objects();
        let m = Map::new();
        let e = |q: &mut Qom, t: &str| create(q, t, "x", PropSource::Json(&m)).unwrap_err();
        assert_eq!(e(&mut q, "bogus").msg(), "invalid object type: bogus");
        assert_eq!(
            e(&mut q, "memory-backend").msg(),
            "object type 'memory-backend' is abstract"
        );
        assert_eq!(
            e(&mut q, "container").msg(),
            "object type 'container' isn't supported by object-add"
        );
    }

    #[test]
    fn iothread_appears_under_objects_and_goes_away() {
        let mut q = qom_with_objects();
        create(&mut q, "iothread", "io0", PropSource::Json(&Map::new())).unwrap();
        let list = q.iothreads();
        assert_eq!(list.len(), 1);
        assert!(list[0].1 > 0);
        assert!(q.resolve("/objects/io0").is_some());
        delete(&mut q, "io0").unwrap();
        assert!(q.iothreads().is_empty());
        assert_eq!(
            delete(&mut q, "io0").unwrap_err().msg(),
            "object 'io0' not found"
        );
    }

    #[test]
    fn duplicate_id_is_refused_after_properties_are_checked() {
        let mut q = qom_with_objects();
        create(&mut q, "iothread", "a", PropSource::Json(&Map::new())).unwrap();
        let e = create(&mut q, "iothread", "a", PropSource::Json(&Map::new())).unwrap_err();
        assert_eq!(
            e.msg(),
            "attempt to add duplicate property 'a' to object (type 'container')"
        );
        let p = props(json!({"bogus": 1}));
        let e = create(&mut q, "iothread", "a", PropSource::Json(&p)).unwrap_err();
        assert_eq!(e.msg(), "Property '.bogus' not found");
    }

    #[test]
    fn memory_backend_needs_a_size_and_is_not_left_behind() {
        let mut q = qom_with_objects();
        let e = create(
            &mut q,
            "memory-backend-ram",
            "m",
            PropSource::Json(&Map::new()),
        )
        .unwrap_err();
        assert_eq!(e.msg(), "can't create backend with size 0");
        assert!(q.object("m").is_none());
        let p = props(json!({"size": 1048576}));
        create(&mut q, "memory-backend-ram", "m", PropSource::Json(&p)).unwrap();
        assert_eq!(q.memory_backend("m").unwrap().size(), 1048576);
    }

    #[test]
    fn backend_in_use_cannot_be_deleted() {
        let mut q = qom_with_objects();
        let p = props(json!({"size": 65536}));
        create(&mut q, "memory-backend-ram", "m", PropSource::Json(&p)).unwrap();
        q.memory_backend_mut("m").unwrap().set_mapped(true);
        assert_eq!(
            delete(&mut q, "m").unwrap_err().msg(),
            "object 'm' is in use, can not be deleted"
        );
        q.memory_backend_mut("m").unwrap().set_mapped(false);
        delete(&mut q, "m").unwrap();
    }

    #[test]
    fn options_need_type_then_id_and_parse_strings() {
        let mut q = qom_with_objects();
        let o = crate::vl::cli::FREE_OPTS_QOM_TYPE
            .parse("id=x", true)
            .unwrap();
        assert_eq!(
            create_from_opts(&mut q, &o).unwrap_err().msg(),
            "Parameter 'qom-type' is missing"
        );
        let o = crate::vl::cli::FREE_OPTS_QOM_TYPE
            .parse("iothread", true)
            .unwrap();
        assert_eq!(
            create_from_opts(&mut q, &o).unwrap_err().msg(),
            "Parameter 'id' is missing"
        );
        let o = crate::vl::cli::FREE_OPTS_QOM_TYPE
            .parse("memory-backend-ram,id=r,size=1M,merge=off", true)
            .unwrap();
        create_from_opts(&mut q, &o).unwrap();
        let idx = q.object("r").unwrap();
        assert_eq!(q.get_prop(idx, "size").unwrap(), json!(1048576));
        assert_eq!(q.get_prop(idx, "merge").unwrap(), json!(false));
        assert_eq!(opts_text(&o), "memory-backend-ram,id=r,size=1M,merge=off");
    }
}
