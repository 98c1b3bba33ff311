//! The QOM composition tree as clients see it: `/machine` with its
//! `unattached`, `peripheral` and `peripheral-anon` containers,
//! `/objects/<id>` for user-created objects, `/chardevs/<id>`.
//!
//! The tree is an arena of nodes. Each node has a registered type
//! ([`types`]), child nodes (`child<T>` properties), optional link
//! properties (`link<T>`) and a state object that reads and writes the
//! type's declared properties. Path resolution follows QEMU's
//! object_resolve_path, partial paths included. The tree never does I/O
//! beyond what an object's own state does (iothread threads, backend
//! memory mappings).

// Parts of this API (links, backend memory, chardev removal) are for the
// machine and chardev layers that are still landing.
#![allow(dead_code)]

mod aes;
pub mod hostmem;
pub mod iothread;
pub mod objects;
pub mod props;
pub mod secret;
pub mod types;

use std::any::Any;
use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::emulator::Emulator;
use crate::vl::Config;
pub use props::{Input, QomError};
use types::{PropDef, TypeRegistry};

/// The per-instance side of an object: values of its declared properties
/// and whatever the object really does.
pub trait ObjectImpl: Any + Send {
    /// Reads a declared, readable property.
    fn get(&self, prop: &PropDef) -> Result<Value, QomError>;
    /// Writes a declared, writable property. `type_name` is the object's
    /// type, which some of QEMU's messages name.
    fn set(&mut self, type_name: &str, prop: &PropDef, input: &Input) -> Result<(), QomError>;
    /// User-creatable objects: runs once all properties are set and the
    /// object sits at `path` (QEMU's UserCreatable complete()).
    /// `qom` is the tree as it is before the object joins it (a secret
    /// looks up its key there).
    fn complete(&mut self, _path: &str, _qom: &Qom) -> Result<(), QomError> {
        Ok(())
    }
    /// Whether object-del must refuse to delete it.
    fn in_use(&self) -> bool {
        false
    }
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// Properties kept as plain values (containers, the machine, chardevs,
/// devices that only record their configuration).
#[derive(Default)]
pub struct Stored {
    pub values: Map<String, Value>,
}

impl ObjectImpl for Stored {
    fn get(&self, prop: &PropDef) -> Result<Value, QomError> {
        Ok(self
            .values
            .get(prop.name)
            .cloned()
            .unwrap_or_else(|| prop.default.to_value()))
    }

    fn set(&mut self, _: &str, prop: &PropDef, input: &Input) -> Result<(), QomError> {
        let v = props::parse_typed(prop.ty, prop.name, input)?;
        self.values.insert(prop.name.to_string(), v);
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A `link<T>` property: a reference to another node of type T.
pub struct Link {
    pub name: String,
    pub target_type: String,
    pub target: Option<usize>,
    /// Links without a check function in QEMU cannot be set.
    pub settable: bool,
}

pub struct QomNode {
    pub name: String,
    pub type_name: String,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    pub links: Vec<Link>,
    pub state: Box<dyn ObjectImpl>,
}

/// Outcome of resolving a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    Found(usize),
    Ambiguous,
    NotFound,
}

pub struct Qom {
    nodes: Vec<Option<QomNode>>,
    pub types: TypeRegistry,
    /// Ids given with `-object`: QEMU keeps their options around, so a
    /// later HMP object_add with the same id reports a duplicate ID even
    /// after object_del.
    pub(crate) cmdline_ids: HashSet<String>,
}

impl Default for Qom {
    fn default() -> Self {
        Self::new()
    }
}

pub const ROOT: usize = 0;

impl Qom {
    pub fn new() -> Self {
        let mut q = Qom {
            nodes: Vec::new(),
            types: TypeRegistry::new(),
            cmdline_ids: HashSet::new(),
        };
        q.nodes.push(Some(QomNode {
            name: String::new(),
            type_name: types::TYPE_CONTAINER.into(),
            parent: None,
            children: Vec::new(),
            links: Vec::new(),
            state: Box::new(Stored::default()),
        }));
        q
    }

    pub fn node(&self, idx: usize) -> Option<&QomNode> {
        self.nodes.get(idx).and_then(Option::as_ref)
    }

    pub fn node_mut(&mut self, idx: usize) -> Option<&mut QomNode> {
        self.nodes.get_mut(idx).and_then(Option::as_mut)
    }

    /// The child of `parent` called `name`.
    pub fn child(&self, parent: usize, name: &str) -> Option<usize> {
        let n = self.node(parent)?;
        n.children
            .iter()
            .copied()
            .find(|&c| self.node(c).is_some_and(|x| x.name == name))
    }

    pub(crate) fn has_property(&self, idx: usize, name: &str) -> bool {
        let Some(n) = self.node(idx) else {
            return false;
        };
        self.types.find_prop(&n.type_name, name).is_some()
            || self.child(idx, name).is_some()
            || n.links.iter().any(|l| l.name == name)
    }

    /// Adds a `child<type>` property to `parent` (QEMU's
    /// object_property_add_child).
    pub fn add_child(
        &mut self,
        parent: usize,
        name: &str,
        type_name: &str,
        state: Box<dyn ObjectImpl>,
    ) -> Result<usize, QomError> {
        let Some(p) = self.node(parent) else {
            return Err(QomError::generic("parent object is gone"));
        };
        if self.has_property(parent, name) {
            return Err(QomError::generic(format!(
                "attempt to add duplicate property '{name}' to object (type '{}')",
                p.type_name
            )));
        }
        let idx = self.nodes.len();
        self.nodes.push(Some(QomNode {
            name: name.to_string(),
            type_name: type_name.to_string(),
            parent: Some(parent),
            children: Vec::new(),
            links: Vec::new(),
            state,
        }));
        if let Some(p) = self.node_mut(parent) {
            p.children.push(idx);
        }
        Ok(idx)
    }

    /// A container child (QEMU's container_get for one level).
    pub fn add_container(&mut self, parent: usize, name: &str) -> usize {
        if let Some(c) = self.child(parent, name) {
            return c;
        }
        self.add_child(
            parent,
            name,
            types::TYPE_CONTAINER,
            Box::new(Stored::default()),
        )
        .unwrap_or(ROOT)
    }

    /// Adds a link property to `idx`, pointing at `target` (or nothing).
    pub fn add_link(
        &mut self,
        idx: usize,
        name: &str,
        target_type: &str,
        target: Option<usize>,
        settable: bool,
    ) -> Result<(), QomError> {
        if self.has_property(idx, name) {
            let ty = self
                .node(idx)
                .map(|n| n.type_name.clone())
                .unwrap_or_default();
            return Err(QomError::generic(format!(
                "attempt to add duplicate property '{name}' to object (type '{ty}')"
            )));
        }
        if let Some(n) = self.node_mut(idx) {
            n.links.push(Link {
                name: name.to_string(),
                target_type: target_type.to_string(),
                target,
                settable,
            });
        }
        Ok(())
    }

    /// Removes a node and everything below it; links that pointed into
    /// the removed part become empty.
    pub fn remove(&mut self, idx: usize) {
        if idx == ROOT {
            return;
        }
        let mut gone = Vec::new();
        let mut stack = vec![idx];
        while let Some(i) = stack.pop() {
            if let Some(n) = self.node(i) {
                stack.extend(n.children.iter().copied());
                gone.push(i);
            }
        }
        if let Some(p) = self.node(idx).and_then(|n| n.parent) {
            if let Some(pn) = self.node_mut(p) {
                pn.children.retain(|&c| c != idx);
            }
        }
        // Children first, as QEMU finalizes them.
        for &i in gone.iter().rev() {
            if let Some(slot) = self.nodes.get_mut(i) {
                *slot = None;
            }
        }
        for n in self.nodes.iter_mut().flatten() {
            for l in &mut n.links {
                if l.target.is_some_and(|t| gone.contains(&t)) {
                    l.target = None;
                }
            }
        }
    }

    // ---- paths ----------------------------------------------------------

    /// One path component: a child or a link of `idx`.
    fn component(&self, idx: usize, part: &str) -> Option<usize> {
        if let Some(c) = self.child(idx, part) {
            return Some(c);
        }
        self.node(idx)?
            .links
            .iter()
            .find(|l| l.name == part)
            .and_then(|l| l.target)
            .filter(|&t| self.node(t).is_some())
    }

    fn resolve_abs(&self, start: usize, parts: &[&str]) -> Option<usize> {
        let mut cur = start;
        for p in parts.iter().filter(|p| !p.is_empty()) {
            cur = self.component(cur, p)?;
        }
        Some(cur)
    }

    /// QEMU's partial path search: the parts resolved from `parent` and
    /// from every node below it (descending through children only). With
    /// `track`, a second match anywhere makes the result ambiguous; without
    /// it (QEMU passing no flag) a subtree with two matches just counts as
    /// no match, exactly as QEMU behaves.
    fn resolve_partial(
        &self,
        parent: usize,
        parts: &[&str],
        type_name: &str,
        track: bool,
        ambiguous: &mut bool,
        depth: usize,
    ) -> Option<usize> {
        let mut obj = self
            .resolve_abs(parent, parts)
            .filter(|&o| self.is_a(o, type_name));
        // The tree is acyclic through children; the depth bound is a guard
        // against a corrupted arena, not a limit clients meet.
        if depth > 4096 {
            return obj;
        }
        let children = self
            .node(parent)
            .map(|n| n.children.clone())
            .unwrap_or_default();
        for c in children {
            let found = self.resolve_partial(c, parts, type_name, track, ambiguous, depth + 1);
            if let Some(f) = found {
                if obj.is_some() {
                    if track {
                        *ambiguous = true;
                    }
                    return None;
                }
                obj = Some(f);
            }
            if track && *ambiguous {
                return None;
            }
        }
        obj
    }

    fn is_a(&self, idx: usize, type_name: &str) -> bool {
        self.node(idx)
            .is_some_and(|n| self.types.implements(&n.type_name, type_name))
    }

    fn resolve_typed(&self, path: &str, type_name: &str, track: bool) -> Resolved {
        let parts: Vec<&str> = if path.is_empty() {
            Vec::new()
        } else {
            path.split('/').collect()
        };
        if parts.first() == Some(&"") {
            return match self
                .resolve_abs(ROOT, &parts[1..])
                .filter(|&o| self.is_a(o, type_name))
            {
                Some(i) => Resolved::Found(i),
                None => Resolved::NotFound,
            };
        }
        let mut amb = false;
        match self.resolve_partial(ROOT, &parts, type_name, track, &mut amb, 0) {
            Some(i) => Resolved::Found(i),
            None if amb => Resolved::Ambiguous,
            None => Resolved::NotFound,
        }
    }

    /// object_resolve_path with an ambiguity flag (qom-list, HMP).
    pub fn resolve_path(&self, path: &str) -> Resolved {
        self.resolve_typed(path, types::TYPE_OBJECT, true)
    }

    /// object_resolve_path without the flag (qom-get, qom-set).
    pub fn lookup(&self, path: &str) -> Option<usize> {
        match self.resolve_typed(path, types::TYPE_OBJECT, false) {
            Resolved::Found(i) => Some(i),
            _ => None,
        }
    }

    /// Resolves an absolute path such as `/machine/unattached`.
    pub fn resolve(&self, path: &str) -> Option<usize> {
        let rest = path.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        self.resolve_abs(ROOT, &parts)
    }

    /// Whether `path` (absolute, or partial and unambiguous) names an
    /// object.
    pub fn path_exists(&self, path: &str) -> bool {
        matches!(self.resolve_path(path), Resolved::Found(_))
    }

    pub fn canonical_path(&self, idx: usize) -> String {
        let mut comps = Vec::new();
        let mut cur = idx;
        while let Some(n) = self.node(cur) {
            let Some(p) = n.parent else { break };
            comps.push(n.name.as_str());
            cur = p;
        }
        comps.reverse();
        format!("/{}", comps.join("/"))
    }

    // ---- properties -------------------------------------------------------

    /// `(name, type)` of every property, as qom-list reports them.
    pub fn list_props(&self, idx: usize) -> Vec<(String, String)> {
        let Some(n) = self.node(idx) else {
            return Vec::new();
        };
        let mut out: Vec<(String, String)> = self
            .types
            .props(&n.type_name)
            .iter()
            .map(|p| (p.name.to_string(), p.ty.to_string()))
            .collect();
        for &c in &n.children {
            if let Some(cn) = self.node(c) {
                out.push((cn.name.clone(), format!("child<{}>", cn.type_name)));
            }
        }
        for l in &n.links {
            out.push((l.name.clone(), format!("link<{}>", l.target_type)));
        }
        out
    }

    /// The QEMU type string of one property.
    pub fn prop_type(&self, idx: usize, name: &str) -> Option<String> {
        self.list_props(idx)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
    }

    /// qom-get: reads a property as JSON.
    pub fn get_prop(&self, idx: usize, name: &str) -> Result<Value, QomError> {
        let Some(n) = self.node(idx) else {
            return Err(QomError::prop_not_found(name));
        };
        if let Some(p) = self.types.find_prop(&n.type_name, name) {
            if !p.access.readable() {
                return Err(QomError::permission_denied());
            }
            if p.name == "type" {
                return Ok(Value::String(n.type_name.clone()));
            }
            return n.state.get(p);
        }
        if let Some(c) = self.child(idx, name) {
            return Ok(Value::String(self.canonical_path(c)));
        }
        if let Some(l) = n.links.iter().find(|l| l.name == name) {
            return Ok(Value::String(
                l.target.map(|t| self.canonical_path(t)).unwrap_or_default(),
            ));
        }
        Err(QomError::prop_not_found(name))
    }

    /// qom-set / object-add: writes a property.
    pub fn set_prop(&mut self, idx: usize, name: &str, input: &Input) -> Result<(), QomError> {
        let Some(n) = self.node(idx) else {
            return Err(QomError::prop_not_found(name));
        };
        let type_name = n.type_name.clone();
        if let Some(p) = self.types.find_prop(&type_name, name).copied() {
            if !p.access.writable() {
                return Err(QomError::permission_denied());
            }
            let Some(n) = self.node_mut(idx) else {
                return Err(QomError::prop_not_found(name));
            };
            return n.state.set(&type_name, &p, input);
        }
        if self.child(idx, name).is_some() {
            return Err(QomError::permission_denied());
        }
        let Some(li) = n.links.iter().position(|l| l.name == name) else {
            return Err(QomError::prop_not_found(name));
        };
        let link = &n.links[li];
        if !link.settable {
            return Err(QomError::permission_denied());
        }
        let target_type = link.target_type.clone();
        let path = input.string(name)?;
        let target = if path.is_empty() {
            None
        } else {
            Some(self.resolve_link(name, &path, &target_type)?)
        };
        if let Some(n) = self.node_mut(idx) {
            n.links[li].target = target;
        }
        Ok(())
    }

    /// QEMU's object_resolve_link: a path that must name one object of
    /// the link's type.
    fn resolve_link(&self, name: &str, path: &str, target_type: &str) -> Result<usize, QomError> {
        match self.resolve_typed(path, target_type, true) {
            Resolved::Found(i) => Ok(i),
            Resolved::Ambiguous => Err(QomError::generic(format!(
                "Path '{path}' does not uniquely identify an object"
            ))),
            Resolved::NotFound => match self.resolve_path(path) {
                Resolved::NotFound => Err(QomError::device_not_found(path)),
                _ => Err(QomError::bad_type(name, target_type)),
            },
        }
    }

    /// The state of the object at `idx`, if it is a `T`.
    pub fn state<T: 'static>(&self, idx: usize) -> Option<&T> {
        self.node(idx)?.state.as_any().downcast_ref::<T>()
    }

    pub fn state_mut<T: 'static>(&mut self, idx: usize) -> Option<&mut T> {
        self.node_mut(idx)?.state.as_any_mut().downcast_mut::<T>()
    }

    /// `/objects`.
    pub fn objects_root(&mut self) -> usize {
        self.add_container(ROOT, "objects")
    }

    /// The user-created object with this id.
    pub fn object(&self, id: &str) -> Option<usize> {
        self.child(ROOT, "objects").and_then(|o| self.child(o, id))
    }

    /// The machine object, `/machine`.
    pub fn machine(&self) -> Option<usize> {
        self.child(ROOT, "machine")
    }

    /// A stored machine property (mem-merge, dump-guest-core...).
    pub fn machine_prop(&self, name: &str) -> Option<Value> {
        self.machine().and_then(|m| self.get_prop(m, name).ok())
    }

    /// `(id, thread id)` of every iothread, as query-iothreads lists them.
    pub fn iothreads(&self) -> Vec<(String, i64)> {
        let Some(objs) = self.child(ROOT, "objects") else {
            return Vec::new();
        };
        let Some(n) = self.node(objs) else {
            return Vec::new();
        };
        n.children
            .iter()
            .filter_map(|&c| {
                let t = self.state::<iothread::IoThread>(c)?;
                Some((self.node(c)?.name.clone(), t.thread_id()))
            })
            .collect()
    }

    /// The memory backend object `/objects/<id>`.
    pub fn memory_backend(&self, id: &str) -> Option<&hostmem::MemoryBackend> {
        self.object(id).and_then(|i| self.state(i))
    }

    pub fn memory_backend_mut(&mut self, id: &str) -> Option<&mut hostmem::MemoryBackend> {
        let i = self.object(id)?;
        self.state_mut(i)
    }

    /// Registers a device's QOM type (the machine calls this for each
    /// device model before it builds the board).
    pub fn register_type(&mut self, t: types::TypeDef) {
        self.types.register(t);
    }
}

/// Builds `/machine` (typed from the machine type, with the machine
/// options as property values), its containers, `/objects` and
/// `/chardevs`.
pub fn populate_machine(emu: &mut Emulator, cfg: &Config) {
    let qom_type = emu.machine.mtype.qom_type;
    let mut st = Stored::default();
    for key in cfg.machine_opts.keys() {
        let name = key.replace('_', "-");
        let Some(p) = emu.qom.types.find_prop(qom_type, &name).copied() else {
            continue;
        };
        let vals: Vec<String> = cfg
            .machine_opts
            .items
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect();
        if p.name != "type" {
            // The command line already checked these values.
            let _ = st.set(qom_type, &p, &Input::Opts(&vals));
        }
    }
    if !st.values.contains_key("accel") && !cfg.accel.is_empty() {
        st.values
            .insert("accel".into(), Value::String(cfg.accel.join(":")));
    }
    if cfg.nographic {
        st.values.insert("graphics".into(), Value::Bool(false));
    }
    let machine = emu
        .qom
        .add_child(ROOT, "machine", qom_type, Box::new(st))
        .unwrap_or(ROOT);
    emu.qom.add_container(machine, "unattached");
    emu.qom.add_container(machine, "peripheral");
    emu.qom.add_container(machine, "peripheral-anon");
    emu.qom.add_container(ROOT, "objects");
    emu.qom.add_container(ROOT, "chardevs");
}

/// Hook: a chardev `id` with backend `kind` now exists.
pub fn chardev_added(emu: &mut Emulator, id: &str, kind: &str) {
    let root = emu.qom.add_container(ROOT, "chardevs");
    let ty = types::chardev_type(kind);
    if emu.qom.types.get(&ty).is_none() {
        emu.qom.types.register(types::ty(
            leak(ty.clone()),
            types::TYPE_CHARDEV,
            false,
            &[],
            &[],
        ));
    }
    // A duplicate id was refused by the chardev layer already.
    let _ = emu
        .qom
        .add_child(root, id, &ty, Box::new(Stored::default()));
}

/// Hook: chardev `id` was removed.
pub fn chardev_removed(emu: &mut Emulator, id: &str) {
    let Some(root) = emu.qom.child(ROOT, "chardevs") else {
        return;
    };
    if let Some(c) = emu.qom.child(root, id) {
        emu.qom.remove(c);
    }
}

/// Type names are `&'static str`; a chardev kind unknown to the table is
/// registered once per kind, so the leak is bounded by the kinds that exist.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[cfg(test)]
mod tests;
