//! The QOM type registry: every type this binary can instantiate or name,
//! with its parent, abstractness, interfaces and the typed properties its
//! instances carry. It answers the questions qom-list-types,
//! device-list-properties, object-add and qom-list ask about types; it owns
//! no instances.
//!
//! Type names, parents and property type strings are QEMU's, so clients
//! that look for `memory-backend-file` or a `link<...>` see what they know.

use std::collections::HashMap;

use serde_json::Value;

/// Who may touch a property: QEMU properties without a getter or setter
/// answer "Insufficient permission to perform this operation".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    WriteOnly,
    ReadWrite,
}

impl Access {
    pub fn readable(self) -> bool {
        self != Access::WriteOnly
    }

    pub fn writable(self) -> bool {
        self != Access::ReadOnly
    }
}

/// The value a stored property has before anyone sets it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dflt {
    /// Strings that were never set read as "", as QEMU's string getters do.
    EmptyStr,
    Str(&'static str),
    Bool(bool),
    Int(i64),
}

impl Dflt {
    pub fn to_value(self) -> Value {
        match self {
            Dflt::EmptyStr => Value::String(String::new()),
            Dflt::Str(s) => Value::String(s.to_string()),
            Dflt::Bool(b) => Value::Bool(b),
            Dflt::Int(i) => Value::from(i),
        }
    }
}

/// One class-declared property. `ty` is QEMU's type string: `string`,
/// `bool`, `int`, `uint64`, `size`, an enum type name such as `OnOffAuto`,
/// or `link<T>`.
#[derive(Clone, Copy, Debug)]
pub struct PropDef {
    pub name: &'static str,
    pub ty: &'static str,
    pub desc: Option<&'static str>,
    pub access: Access,
    pub default: Dflt,
}

pub const fn prop(name: &'static str, ty: &'static str, access: Access, default: Dflt) -> PropDef {
    PropDef {
        name,
        ty,
        desc: None,
        access,
        default,
    }
}

pub const fn dprop(
    name: &'static str,
    ty: &'static str,
    desc: &'static str,
    access: Access,
    default: Dflt,
) -> PropDef {
    PropDef {
        name,
        ty,
        desc: Some(desc),
        access,
        default,
    }
}

/// A registered type.
#[derive(Clone, Debug)]
pub struct TypeDef {
    pub name: &'static str,
    pub parent: Option<&'static str>,
    pub abstract_: bool,
    /// Interface types this type (and so its subtypes) implements.
    pub interfaces: &'static [&'static str],
    /// Properties declared at this level; subtypes inherit them.
    pub props: &'static [PropDef],
}

pub const fn ty(
    name: &'static str,
    parent: &'static str,
    abstract_: bool,
    interfaces: &'static [&'static str],
    props: &'static [PropDef],
) -> TypeDef {
    TypeDef {
        name,
        parent: Some(parent),
        abstract_,
        interfaces,
        props,
    }
}

/// Values of the QAPI enums QOM properties use.
pub fn enum_values(ty: &str) -> Option<&'static [&'static str]> {
    Some(match ty {
        "OnOffAuto" => &["auto", "on", "off"],
        "OnOffSplit" => &["on", "off", "split"],
        "HostMemPolicy" => &["default", "preferred", "bind", "interleave"],
        "QCryptoSecretFormat" => &["raw", "base64"],
        _ => return None,
    })
}

pub const TYPE_OBJECT: &str = "object";
pub const TYPE_INTERFACE: &str = "interface";
pub const TYPE_USER_CREATABLE: &str = "user-creatable";
pub const TYPE_CONTAINER: &str = "container";
pub const TYPE_MACHINE: &str = "machine";
pub const TYPE_DEVICE: &str = "device";
pub const TYPE_IOTHREAD: &str = "iothread";
pub const TYPE_MEMORY_BACKEND: &str = "memory-backend";
pub const TYPE_CHARDEV: &str = "chardev";

use Access::{ReadOnly as RO, ReadWrite as RW, WriteOnly as WO};

static OBJECT_PROPS: &[PropDef] = &[prop("type", "string", RO, Dflt::EmptyStr)];

/// The machine properties of QEMU 2.8's `machine` class that this binary
/// reads (the device-tree ones are ARM-only and left out).
static MACHINE_PROPS: &[PropDef] = &[
    dprop("accel", "string", "Accelerator list", RW, Dflt::EmptyStr),
    dprop(
        "kernel-irqchip",
        "OnOffSplit",
        "Configure KVM in-kernel irqchip",
        WO,
        Dflt::Str("on"),
    ),
    dprop(
        "kvm-shadow-mem",
        "int",
        "KVM shadow MMU size",
        RW,
        Dflt::Int(-1),
    ),
    dprop(
        "kernel",
        "string",
        "Linux kernel image file",
        RW,
        Dflt::EmptyStr,
    ),
    dprop(
        "initrd",
        "string",
        "Linux initial ramdisk file",
        RW,
        Dflt::EmptyStr,
    ),
    dprop(
        "append",
        "string",
        "Linux kernel command line",
        RW,
        Dflt::EmptyStr,
    ),
    dprop(
        "dump-guest-core",
        "bool",
        "Include guest memory in  a core dump",
        RW,
        Dflt::Bool(true),
    ),
    dprop(
        "mem-merge",
        "bool",
        "Enable/disable memory merge support",
        RW,
        Dflt::Bool(true),
    ),
    dprop(
        "usb",
        "bool",
        "Set on/off to enable/disable usb",
        RW,
        Dflt::Bool(false),
    ),
    dprop(
        "graphics",
        "bool",
        "Set on/off to enable/disable graphics emulation",
        RW,
        Dflt::Bool(true),
    ),
    dprop("firmware", "string", "Firmware image", RW, Dflt::EmptyStr),
    dprop(
        "suppress-vmdesc",
        "bool",
        "Set on to disable self-describing migration",
        RW,
        Dflt::Bool(false),
    ),
];

static DEVICE_PROPS: &[PropDef] = &[
    prop("realized", "bool", RW, Dflt::Bool(false)),
    prop("hotpluggable", "bool", RO, Dflt::Bool(true)),
    prop("hotplugged", "bool", RW, Dflt::Bool(false)),
];

static MEMORY_BACKEND_PROPS: &[PropDef] = &[
    prop("merge", "bool", RW, Dflt::Bool(true)),
    prop("dump", "bool", RW, Dflt::Bool(true)),
    prop("prealloc", "bool", RW, Dflt::Bool(false)),
    prop("size", "int", RW, Dflt::Int(0)),
    prop("host-nodes", "int", RW, Dflt::Int(0)),
    prop("policy", "HostMemPolicy", RW, Dflt::Str("default")),
];

static MEMORY_BACKEND_FILE_PROPS: &[PropDef] = &[
    prop("share", "bool", RW, Dflt::Bool(false)),
    prop("mem-path", "string", RW, Dflt::EmptyStr),
];

static SECRET_PROPS: &[PropDef] = &[
    prop("loaded", "bool", RW, Dflt::Bool(false)),
    prop("format", "QCryptoSecretFormat", RW, Dflt::Str("raw")),
    prop("data", "string", RW, Dflt::EmptyStr),
    prop("file", "string", RW, Dflt::EmptyStr),
    prop("keyid", "string", RW, Dflt::EmptyStr),
    prop("iv", "string", RW, Dflt::EmptyStr),
];

const UC: &[&str] = &[TYPE_USER_CREATABLE];

/// Types every build of this binary has.
fn builtin_types() -> Vec<TypeDef> {
    let mut v = vec![
        TypeDef {
            name: TYPE_OBJECT,
            parent: None,
            abstract_: true,
            interfaces: &[],
            props: OBJECT_PROPS,
        },
        // Interfaces are not objects: QEMU gives them no parent.
        TypeDef {
            name: TYPE_INTERFACE,
            parent: None,
            abstract_: true,
            interfaces: &[],
            props: &[],
        },
        ty(TYPE_USER_CREATABLE, TYPE_INTERFACE, false, &[], &[]),
        ty(TYPE_CONTAINER, TYPE_OBJECT, false, &[], &[]),
        ty(TYPE_MACHINE, TYPE_OBJECT, true, &[], MACHINE_PROPS),
        ty("generic-pc-machine", TYPE_MACHINE, true, &[], &[]),
        ty(TYPE_DEVICE, TYPE_OBJECT, true, &[], DEVICE_PROPS),
        ty(TYPE_IOTHREAD, TYPE_OBJECT, false, UC, &[]),
        ty(
            TYPE_MEMORY_BACKEND,
            TYPE_OBJECT,
            true,
            UC,
            MEMORY_BACKEND_PROPS,
        ),
        ty("memory-backend-ram", TYPE_MEMORY_BACKEND, false, &[], &[]),
        ty(
            "memory-backend-file",
            TYPE_MEMORY_BACKEND,
            false,
            &[],
            MEMORY_BACKEND_FILE_PROPS,
        ),
        ty("secret", TYPE_OBJECT, false, UC, SECRET_PROPS),
        ty(TYPE_CHARDEV, TYPE_OBJECT, true, &[], &[]),
        ty("chardev-fd", TYPE_CHARDEV, true, &[], &[]),
    ];
    for (_, name, parent) in CHARDEV_KINDS {
        v.push(ty(name, parent, false, &[], &[]));
    }
    for m in crate::machine_types::MACHINE_TYPES {
        let parent = if m.name == "none" {
            TYPE_MACHINE
        } else {
            "generic-pc-machine"
        };
        v.push(ty(m.qom_type, parent, false, &[], &[]));
    }
    v
}

/// Chardev backend kinds and the QOM type of their objects under
/// `/chardevs` (QEMU's names from the release that made chardevs objects).
static CHARDEV_KINDS: &[(&str, &str, &str)] = &[
    ("null", "chardev-null", TYPE_CHARDEV),
    ("socket", "chardev-socket", TYPE_CHARDEV),
    ("udp", "chardev-udp", TYPE_CHARDEV),
    ("file", "chardev-file", "chardev-fd"),
    ("pipe", "chardev-pipe", "chardev-fd"),
    ("stdio", "chardev-stdio", "chardev-fd"),
    ("pty", "chardev-pty", TYPE_CHARDEV),
    ("ringbuf", "chardev-ringbuf", TYPE_CHARDEV),
    ("memory", "chardev-memory", "chardev-ringbuf"),
    ("mux", "chardev-mux", TYPE_CHARDEV),
    ("vc", "chardev-vc", TYPE_CHARDEV),
];

/// The QOM type of a chardev made with backend `kind` (`-chardev socket`).
pub fn chardev_type(kind: &str) -> String {
    CHARDEV_KINDS
        .iter()
        .find(|(k, _, _)| *k == kind)
        .map(|(_, t, _)| t.to_string())
        .unwrap_or_else(|| format!("chardev-{kind}"))
}

/// All types, by name, in registration order.
pub struct TypeRegistry {
    types: Vec<TypeDef>,
    index: HashMap<&'static str, usize>,
}

impl Default for TypeRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl TypeRegistry {
    /// A registry holding the built-in types.
    pub fn new() -> Self {
        let mut r = TypeRegistry {
            types: Vec::new(),
            index: HashMap::new(),
        };
        for t in builtin_types() {
            r.register(t);
        }
        r
    }

    /// Adds a type (devices register theirs when the machine is built).
    /// A second registration of a name replaces the first, so a caller
    /// may refine a built-in type.
    pub fn register(&mut self, t: TypeDef) {
        match self.index.get(t.name) {
            Some(&i) => self.types[i] = t,
            None => {
                self.index.insert(t.name, self.types.len());
                self.types.push(t);
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&TypeDef> {
        self.index.get(name).map(|&i| &self.types[i])
    }

    pub fn all(&self) -> impl Iterator<Item = &TypeDef> {
        self.types.iter()
    }

    /// The type and its ancestors, the type itself first.
    pub fn ancestry(&self, name: &str) -> Vec<&TypeDef> {
        let mut out = Vec::new();
        let mut cur = self.get(name);
        while let Some(t) = cur {
            // A registration loop would spin forever; stop at a repeat.
            if out.iter().any(|o: &&TypeDef| o.name == t.name) {
                break;
            }
            out.push(t);
            cur = t.parent.and_then(|p| self.get(p));
        }
        out
    }

    pub fn is_ancestor(&self, name: &str, ancestor: &str) -> bool {
        self.ancestry(name).iter().any(|t| t.name == ancestor)
    }

    /// QEMU's object_class_dynamic_cast: is `name` a `target`, either by
    /// inheritance or through an interface one of its ancestors declares?
    pub fn implements(&self, name: &str, target: &str) -> bool {
        if self.get(target).is_none() {
            return false;
        }
        let chain = self.ancestry(name);
        if chain.iter().any(|t| t.name == target) {
            return true;
        }
        chain
            .iter()
            .flat_map(|t| t.interfaces.iter())
            .any(|i| self.is_ancestor(i, target))
    }

    /// Properties of an instance of `name`, base class first.
    pub fn props(&self, name: &str) -> Vec<&PropDef> {
        let mut chain = self.ancestry(name);
        chain.reverse();
        chain.iter().flat_map(|t| t.props.iter()).collect()
    }

    pub fn find_prop(&self, name: &str, prop: &str) -> Option<&PropDef> {
        self.ancestry(name)
            .iter()
            .flat_map(|t| t.props.iter())
            .find(|p| p.name == prop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_backend_file_inherits_backend_and_object_properties() {
        let r = TypeRegistry::new();
        let names: Vec<&str> = r
            .props("memory-backend-file")
            .iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names[0], "type");
        assert!(names.contains(&"size"));
        assert!(names.contains(&"mem-path"));
        assert!(!r
            .props("memory-backend-ram")
            .iter()
            .any(|p| p.name == "mem-path"));
    }

    #[test]
    fn interfaces_are_inherited_by_subtypes() {
        let r = TypeRegistry::new();
        assert!(r.implements("memory-backend-ram", TYPE_USER_CREATABLE));
        assert!(r.implements("iothread", TYPE_USER_CREATABLE));
        assert!(!r.implements("container", TYPE_USER_CREATABLE));
        assert!(r.implements("none-machine", TYPE_MACHINE));
        assert!(!r.implements("none-machine", "no-such-type"));
        assert!(!r.implements(TYPE_USER_CREATABLE, TYPE_OBJECT));
    }

    #[test]
    fn machine_types_and_chardevs_are_registered_with_their_parents() {
        let r = TypeRegistry::new();
        assert_eq!(
            r.get("pc-i440fx-2.8-machine").unwrap().parent,
            Some("generic-pc-machine")
        );
        assert!(r.get("generic-pc-machine").unwrap().abstract_);
        assert_eq!(chardev_type("socket"), "chardev-socket");
        assert!(r.is_ancestor("chardev-memory", "chardev-ringbuf"));
    }

    #[test]
    fn registering_a_device_makes_it_a_device() {
        let mut r = TypeRegistry::new();
        static P: &[PropDef] = &[prop(
            "iobase",
            "uint32",
            Access::ReadWrite,
            Dflt::Int(0x3f8),
        )];
        r.register(ty("isa-serial", TYPE_DEVICE, false, &[], P));
        assert!(r.implements("isa-serial", TYPE_DEVICE));
        assert_eq!(r.find_prop("isa-serial", "iobase").unwrap().ty, "uint32");
        assert_eq!(r.find_prop("isa-serial", "realized").unwrap().ty, "bool");
    }
}
