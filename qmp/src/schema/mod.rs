//! The QMP schema: every command, event and type of QEMU 2.8's QMP surface.
//!
//! This is the single source of truth for names, member names, optionality
//! and types. It drives argument checking ([`Schema::check_arguments`]),
//! `query-commands`/`query-events` (via [`Schema::commands`] and
//! [`Schema::events`]) and `query-qmp-schema` ([`Schema::introspect`]).
//! It never runs commands and holds no state beyond the parsed schema.
//!
//! # Notation (`qmp/schema/*.qapi`)
//!
//! Definitions follow one another; whitespace and newlines are free and `#`
//! starts a comment. A type is a name (a defined type or a builtin: `str`,
//! `int`, `int8`..`int64`, `uint8`..`uint64`, `size`, `number`, `bool`,
//! `any`, `null`) or `[name]` for an array. Members are `{ name: type, ... }`
//! with `name?:` for an optional member; a trailing comma is allowed.
//!
//! ```text
//! enum Name { value, value, ... }
//! struct Name [: Base] { members }
//! union Name { case: type, ... }                     # simple union
//! union Name : Base tag member { case: Type, ... }   # flat union
//! union Name : { members } tag member { ... }        # flat union, inline base
//! alternate Name { case: type, ... }
//! command name [{ members } | : ArgType] [-> type] [boxed] [nogen] [noresp]
//! event NAME [{ members } | : DataType] [boxed]
//! ```
//!
//! `nogen` marks commands whose arguments QEMU does not check with its
//! generic visitor (the handler checks them itself); `noresp` marks
//! commands that send no success reply.

mod check;
mod introspect;
mod parse;

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

/// The embedded schema files, parsed together (names resolve across files).
const SOURCES: &[(&str, &str)] = &[
    ("common.qapi", include_str!("../../schema/common.qapi")),
    ("crypto.qapi", include_str!("../../schema/crypto.qapi")),
    (
        "block-core.qapi",
        include_str!("../../schema/block-core.qapi"),
    ),
    ("block.qapi", include_str!("../../schema/block.qapi")),
    ("event.qapi", include_str!("../../schema/event.qapi")),
    ("trace.qapi", include_str!("../../schema/trace.qapi")),
    (
        "introspect.qapi",
        include_str!("../../schema/introspect.qapi"),
    ),
    ("misc.qapi", include_str!("../../schema/misc.qapi")),
    ("rocker.qapi", include_str!("../../schema/rocker.qapi")),
];

/// The schema, parsed on first use.
pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| match parse::parse_sources(SOURCES) {
        Ok(s) => s,
        // The files are compiled in and a unit test parses them, so this
        // can only fire on a build whose tests were not run.
        Err(e) => panic!("embedded QMP schema is invalid: {e}"),
    })
}

/// Check an event's `data` against the schema (see
/// [`Schema::check_event_data`]); for tests of code that emits events.
pub fn check_event_data(name: &str, data: &serde_json::Value) -> Result<(), String> {
    schema().check_event_data(name, data)
}

/// Scalar types QAPI knows without a definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Builtin {
    Str,
    Int,
    Int8,
    Int16,
    Int32,
    Int64,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Size,
    Number,
    Bool,
    Any,
    Null,
}

impl Builtin {
    const ALL: [Builtin; 15] = [
        Builtin::Str,
        Builtin::Int,
        Builtin::Int8,
        Builtin::Int16,
        Builtin::Int32,
        Builtin::Int64,
        Builtin::Uint8,
        Builtin::Uint16,
        Builtin::Uint32,
        Builtin::Uint64,
        Builtin::Size,
        Builtin::Number,
        Builtin::Bool,
        Builtin::Any,
        Builtin::Null,
    ];

    /// The schema name of the type.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Str => "str",
            Builtin::Int => "int",
            Builtin::Int8 => "int8",
            Builtin::Int16 => "int16",
            Builtin::Int32 => "int32",
            Builtin::Int64 => "int64",
            Builtin::Uint8 => "uint8",
            Builtin::Uint16 => "uint16",
            Builtin::Uint32 => "uint32",
            Builtin::Uint64 => "uint64",
            Builtin::Size => "size",
            Builtin::Number => "number",
            Builtin::Bool => "bool",
            Builtin::Any => "any",
            Builtin::Null => "null",
        }
    }

    pub fn from_name(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }

    /// The JSON type introspection reports for it.
    pub fn json_type(self) -> &'static str {
        match self {
            Builtin::Str => "string",
            Builtin::Number => "number",
            Builtin::Bool => "boolean",
            Builtin::Any => "value",
            Builtin::Null => "null",
            _ => "int",
        }
    }

    fn is_integer(self) -> bool {
        self.json_type() == "int"
    }
}

/// Index of a named type in its [`Schema`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TypeId(usize);

/// A use of a type: in a member, a variant, a command's return.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TypeRef {
    Builtin(Builtin),
    Named(TypeId),
    Array(Box<TypeRef>),
}

#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub ty: TypeRef,
    pub optional: bool,
}

/// One branch of a union: when the tag member has value `name`, the
/// members of object type `ty` are present too.
#[derive(Clone, Debug)]
pub struct Variant {
    pub name: String,
    pub ty: TypeId,
}

#[derive(Clone, Debug)]
pub struct Variants {
    /// The member whose value selects the branch.
    pub tag: String,
    pub cases: Vec<Variant>,
}

#[derive(Clone, Debug)]
pub struct AlternateCase {
    pub name: String,
    pub ty: TypeRef,
}

#[derive(Clone, Debug)]
pub enum TypeKind {
    Enum(Vec<String>),
    /// Structs and unions. A simple union is stored as QEMU lowers it: a
    /// `type` member of an implicit enum, with one wrapper object per
    /// branch holding a `data` member.
    Object {
        base: Option<TypeId>,
        members: Vec<Member>,
        variants: Option<Variants>,
    },
    Alternate(Vec<AlternateCase>),
}

#[derive(Clone, Debug)]
pub struct TypeDef {
    /// QEMU's name; implicit types get QEMU's implicit names
    /// (`q_obj_<command>-arg`, `<Union>Kind`, `q_obj_<type>-wrapper`).
    pub name: String,
    pub kind: TypeKind,
}

#[derive(Clone, Debug)]
pub struct Command {
    pub name: String,
    args: Option<TypeId>,
    ret: Option<TypeRef>,
    boxed: bool,
    gen: bool,
    success_response: bool,
}

impl Command {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the command takes any argument at all.
    pub fn has_args(&self) -> bool {
        self.args.is_some()
    }

    /// The object type describing the arguments.
    pub fn arg_type(&self) -> Option<TypeId> {
        self.args
    }

    /// The return type; `None` means the command returns `{}`.
    pub fn returns(&self) -> Option<&TypeRef> {
        self.ret.as_ref()
    }

    /// Arguments are one object passed whole to the handler.
    pub fn boxed(&self) -> bool {
        self.boxed
    }

    /// False when QEMU's generic argument checking does not apply and the
    /// handler checks its own arguments (`device_add`, `netdev_add`,
    /// `query-qmp-schema`).
    pub fn gen(&self) -> bool {
        self.gen
    }

    pub fn success_response(&self) -> bool {
        self.success_response
    }
}

#[derive(Clone, Debug)]
pub struct Event {
    pub name: String,
    data: Option<TypeId>,
    boxed: bool,
}

impl Event {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The object type describing `data`; `None` for events without data.
    pub fn data_type(&self) -> Option<TypeId> {
        self.data
    }

    pub fn boxed(&self) -> bool {
        self.boxed
    }
}

/// The parsed schema. Obtain it with [`schema()`].
#[derive(Debug)]
pub struct Schema {
    types: Vec<TypeDef>,
    type_index: HashMap<String, TypeId>,
    commands: Vec<Command>,
    command_index: HashMap<String, usize>,
    events: Vec<Event>,
    event_index: HashMap<String, usize>,
}

impl Schema {
    pub fn command(&self, name: &str) -> Option<&Command> {
        self.command_index.get(name).map(|&i| &self.commands[i])
    }

    /// All commands in definition order.
    pub fn commands(&self) -> impl Iterator<Item = &Command> {
        self.commands.iter()
    }

    pub fn event(&self, name: &str) -> Option<&Event> {
        self.event_index.get(name).map(|&i| &self.events[i])
    }

    /// All events in definition order.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    pub fn lookup_type(&self, name: &str) -> Option<TypeId> {
        self.type_index.get(name).copied()
    }

    pub fn type_def(&self, id: TypeId) -> &TypeDef {
        &self.types[id.0]
    }

    /// The values of an enum type; empty for other types.
    pub fn enum_values(&self, id: TypeId) -> &[String] {
        match &self.type_def(id).kind {
            TypeKind::Enum(values) => values,
            _ => &[],
        }
    }

    /// An object type's members with its base's first, as they appear in
    /// JSON (branch members of unions excluded).
    pub fn members(&self, id: TypeId) -> Vec<&Member> {
        let mut out = Vec::new();
        self.collect_members(id, &mut out);
        out
    }

    fn collect_members<'a>(&'a self, id: TypeId, out: &mut Vec<&'a Member>) {
        if let TypeKind::Object { base, members, .. } = &self.type_def(id).kind {
            if let Some(b) = base {
                self.collect_members(*b, out);
            }
            out.extend(members.iter());
        }
    }

    /// The schema spelling of a type use: `str`, `BlockInfo`, `[BlockInfo]`.
    pub fn type_name(&self, ty: &TypeRef) -> String {
        TypeNameDisplay { schema: self, ty }.to_string()
    }
}

struct TypeNameDisplay<'a> {
    schema: &'a Schema,
    ty: &'a TypeRef,
}

impl fmt::Display for TypeNameDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ty {
            TypeRef::Builtin(b) => f.write_str(b.name()),
            TypeRef::Named(id) => f.write_str(&self.schema.type_def(*id).name),
            TypeRef::Array(elem) => write!(
                f,
                "[{}]",
                TypeNameDisplay {
                    schema: self.schema,
                    ty: elem
                }
            ),
        }
    }
}

#[cfg(test)]
mod tests;
