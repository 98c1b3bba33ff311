//! `query-qmp-schema`: the schema as a list of SchemaInfo objects.
//!
//! Follows QEMU 2.8's generator: commands and events sorted by name, then
//! every type they reach in order of first use; type names other than
//! builtins are replaced by numbers in order of first use; every integer
//! type is reported as `int`; arrays are named `[element]`; object members
//! are flattened (base first) and optional ones carry `"default": null`.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::{Builtin, Schema, TypeId, TypeKind, TypeRef};
use crate::request::qdict_iteration_order;

/// A type as introspection sees it (integer types already folded to `int`).
#[derive(Clone, PartialEq, Eq, Hash)]
enum Used {
    Builtin(Builtin),
    Named(TypeId),
    Array(Box<Used>),
    /// QEMU's `q_empty`: arguments of commands without any, and the
    /// return type of commands without one.
    Empty,
}

struct Gen<'s> {
    schema: &'s Schema,
    /// Types to describe, in order of first use.
    used: Vec<Used>,
    used_set: HashSet<Used>,
    /// Masked names: numbers in order of first use.
    names: HashMap<Used, usize>,
    out: Vec<Value>,
}

fn fold_int(t: &TypeRef) -> Used {
    match t {
        TypeRef::Builtin(b) if b.is_integer() => Used::Builtin(Builtin::Int),
        TypeRef::Builtin(b) => Used::Builtin(*b),
        TypeRef::Named(id) => Used::Named(*id),
        TypeRef::Array(elem) => Used::Array(Box::new(fold_int(elem))),
    }
}

/// An object with its members in the order QEMU prints a dictionary.
fn qemu_object(pairs: Vec<(&str, Value)>) -> Value {
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
    let mut slots: Vec<Option<Value>> = pairs.into_iter().map(|(_, v)| Some(v)).collect();
    let mut map = Map::new();
    for i in qdict_iteration_order(&keys) {
        if let Some(v) = slots[i].take() {
            map.insert(keys[i].to_string(), v);
        }
    }
    Value::Object(map)
}

impl<'s> Gen<'s> {
    fn masked(&mut self, t: &Used) -> String {
        let next = self.names.len();
        self.names.entry(t.clone()).or_insert(next).to_string()
    }

    /// Record a use of `t` and return the name the output calls it by.
    fn use_type(&mut self, t: Used) -> String {
        if self.used_set.insert(t.clone()) {
            self.used.push(t.clone());
        }
        match t {
            Used::Builtin(b) => b.name().to_string(),
            Used::Array(elem) => format!("[{}]", self.use_type(*elem)),
            Used::Named(_) | Used::Empty => self.masked(&t),
        }
    }

    fn use_ref(&mut self, t: &TypeRef) -> String {
        self.use_type(fold_int(t))
    }

    fn use_object(&mut self, id: Option<TypeId>) -> String {
        self.use_type(id.map_or(Used::Empty, Used::Named))
    }

    fn emit(&mut self, name: String, meta: &str, mut rest: Vec<(&str, Value)>) {
        rest.push(("name", Value::String(name)));
        rest.push(("meta-type", Value::String(meta.to_string())));
        self.out.push(qemu_object(rest));
    }

    fn emit_type(&mut self, t: &Used) {
        let schema = self.schema;
        match t {
            Used::Builtin(b) => {
                let json_type = Value::String(b.json_type().to_string());
                self.emit(
                    b.name().to_string(),
                    "builtin",
                    vec![("json-type", json_type)],
                );
            }
            Used::Empty => {
                let name = self.masked(t);
                self.emit(name, "object", vec![("members", Value::Array(Vec::new()))]);
            }
            Used::Array(elem) => {
                let element = self.use_type((**elem).clone());
                self.emit(
                    format!("[{element}]"),
                    "array",
                    vec![("element-type", Value::String(element))],
                );
            }
            Used::Named(id) => {
                let name = self.masked(t);
                match &schema.type_def(*id).kind {
                    TypeKind::Enum(values) => {
                        let values = values.iter().map(|v| Value::String(v.clone())).collect();
                        self.emit(name, "enum", vec![("values", Value::Array(values))]);
                    }
                    TypeKind::Alternate(cases) => {
                        let members = cases
                            .iter()
                            .map(|c| {
                                qemu_object(vec![("type", Value::String(self.use_ref(&c.ty)))])
                            })
                            .collect();
                        self.emit(name, "alternate", vec![("members", Value::Array(members))]);
                    }
                    TypeKind::Object { variants, .. } => {
                        let mut members = Vec::new();
                        for m in schema.members(*id) {
                            let mut pairs = vec![
                                ("name", Value::String(m.name.clone())),
                                ("type", Value::String(self.use_ref(&m.ty))),
                            ];
                            if m.optional {
                                pairs.push(("default", Value::Null));
                            }
                            members.push(qemu_object(pairs));
                        }
                        let mut rest = vec![("members", Value::Array(members))];
                        if let Some(v) = variants {
                            let cases = v
                                .cases
                                .iter()
                                .map(|c| {
                                    qemu_object(vec![
                                        ("case", Value::String(c.name.clone())),
                                        ("type", Value::String(self.use_object(Some(c.ty)))),
                                    ])
                                })
                                .collect();
                            rest.push(("tag", Value::String(v.tag.clone())));
                            rest.push(("variants", Value::Array(cases)));
                        }
                        self.emit(name, "object", rest);
                    }
                }
            }
        }
    }
}

impl Schema {
    /// `query-qmp-schema`'s return value, covering the commands for which
    /// `implemented(name)` holds, the events for which `event_used(name)`
    /// holds, and every type they reach.
    pub fn introspect(
        &self,
        implemented: &dyn Fn(&str) -> bool,
        event_used: &dyn Fn(&str) -> bool,
    ) -> Value {
        enum Entity<'a> {
            Command(&'a super::Command),
            Event(&'a super::Event),
        }
        let mut entities: Vec<(&str, Entity<'_>)> = self
            .commands()
            .filter(|c| implemented(c.name()))
            .map(|c| (c.name(), Entity::Command(c)))
            .chain(
                self.events()
                    .filter(|e| event_used(e.name()))
                    .map(|e| (e.name(), Entity::Event(e))),
            )
            .collect();
        entities.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));

        let mut gen = Gen {
            schema: self,
            used: Vec::new(),
            used_set: HashSet::new(),
            names: HashMap::new(),
            out: Vec::new(),
        };
        for (name, entity) in &entities {
            match entity {
                Entity::Command(c) => {
                    let arg = gen.use_object(c.arg_type());
                    let ret = match c.returns() {
                        Some(t) => gen.use_ref(t),
                        None => gen.use_object(None),
                    };
                    gen.emit(
                        name.to_string(),
                        "command",
                        vec![
                            ("arg-type", Value::String(arg)),
                            ("ret-type", Value::String(ret)),
                        ],
                    );
                }
                Entity::Event(e) => {
                    let arg = gen.use_object(e.data_type());
                    gen.emit(
                        name.to_string(),
                        "event",
                        vec![("arg-type", Value::String(arg))],
                    );
                }
            }
        }
        // The work list grows while it is walked: a type's members are
        // queued behind it.
        let mut i = 0;
        while i < gen.used.len() {
            let t = gen.used[i].clone();
            gen.emit_type(&t);
            i += 1;
        }
        Value::Array(gen.out)
    }
}
