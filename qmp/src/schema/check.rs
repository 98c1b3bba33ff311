//! Checking JSON values against schema types, the way QEMU 2.8's strict
//! QMP input visitor does.
//!
//! The wording and the member named in each message follow that visitor:
//! a nested member is named by its own name (not a path), a list element
//! by "null"; a missing scalar is reported as a wrong type; an unknown enum
//! value names the value; an unvisited member anywhere is "unexpected".
//! Checking never modifies the value.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{AlternateCase, Builtin, Command, Schema, TypeId, TypeKind, TypeRef};
use crate::error::QmpError;

/// QEMU's JSON parser nests at most this deep; deeper input cannot reach
/// a command, and the cap keeps recursion here bounded whatever the caller.
const MAX_DEPTH: usize = 1024;

/// The JSON value classes QEMU's QObject distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QType {
    Null,
    Int,
    Float,
    Str,
    Dict,
    List,
    Bool,
}

/// QEMU parses an integer that does not fit in int64 as a float, so only
/// numbers representable as i64 count as integers.
fn qtype(v: &Value) -> QType {
    match v {
        Value::Null => QType::Null,
        Value::Bool(_) => QType::Bool,
        Value::Number(n) if n.as_i64().is_some() => QType::Int,
        Value::Number(_) => QType::Float,
        Value::String(_) => QType::Str,
        Value::Array(_) => QType::List,
        Value::Object(_) => QType::Dict,
    }
}

/// The members of one JSON object and which of them were visited.
struct DictVisit<'v> {
    map: &'v Map<String, Value>,
    visited: HashSet<&'v str>,
}

impl<'v> DictVisit<'v> {
    fn new(map: &'v Map<String, Value>) -> Self {
        DictVisit {
            map,
            visited: HashSet::new(),
        }
    }

    fn take(&mut self, name: &str) -> Option<&'v Value> {
        let (k, v) = self.map.get_key_value(name)?;
        self.visited.insert(k.as_str());
        Some(v)
    }

    fn peek(&self, name: &str) -> Option<&'v Value> {
        self.map.get(name)
    }

    /// QEMU reports one leftover member; it walks a hash table, we take the
    /// first in input order (the same whenever only one is left over).
    fn finish(&self) -> Result<(), QmpError> {
        match self.map.keys().find(|k| !self.visited.contains(k.as_str())) {
            Some(k) => Err(QmpError::qmp_extra_member(k)),
            None => Ok(()),
        }
    }
}

fn int_range(b: Builtin) -> Option<(i64, i64, &'static str)> {
    Some(match b {
        Builtin::Int8 => (i8::MIN.into(), i8::MAX.into(), "int8_t"),
        Builtin::Int16 => (i16::MIN.into(), i16::MAX.into(), "int16_t"),
        Builtin::Int32 => (i32::MIN.into(), i32::MAX.into(), "int32_t"),
        _ => return None,
    })
}

fn uint_max(b: Builtin) -> Option<(u64, &'static str)> {
    Some(match b {
        Builtin::Uint8 => (u8::MAX.into(), "uint8_t"),
        Builtin::Uint16 => (u16::MAX.into(), "uint16_t"),
        Builtin::Uint32 => (u32::MAX.into(), "uint32_t"),
        _ => return None,
    })
}

fn check_builtin(name: &str, b: Builtin, v: Option<&Value>) -> Result<(), QmpError> {
    let wrong = |expected| Err(QmpError::invalid_parameter_type(name, expected));
    match b {
        Builtin::Str => match v {
            Some(Value::String(_)) => Ok(()),
            _ => wrong("string"),
        },
        Builtin::Bool => match v {
            Some(Value::Bool(_)) => Ok(()),
            _ => wrong("boolean"),
        },
        Builtin::Number => match v.map(qtype) {
            Some(QType::Int | QType::Float) => Ok(()),
            _ => wrong("number"),
        },
        // QEMU would crash on a missing 'any' or 'null'; name it instead.
        Builtin::Any => match v {
            Some(_) => Ok(()),
            None => Err(QmpError::missing_parameter(name)),
        },
        Builtin::Null => match v {
            Some(Value::Null) => Ok(()),
            Some(_) => wrong("null"),
            None => Err(QmpError::missing_parameter(name)),
        },
        _ => {
            let Some(i) = v.and_then(Value::as_i64) else {
                return wrong("integer");
            };
            if let Some((min, max, c_type)) = int_range(b) {
                if i < min || i > max {
                    return Err(QmpError::invalid_parameter_value(name, c_type));
                }
            }
            // Unsigned types read the integer's two's-complement bits, as
            // QEMU does, so -1 is out of range for uint8 but fine for uint64.
            if let Some((max, c_type)) = uint_max(b) {
                if i as u64 > max {
                    return Err(QmpError::invalid_parameter_value(name, c_type));
                }
            }
            Ok(())
        }
    }
}

impl Schema {
    /// Check a command's arguments as QEMU's strict QMP input visitor does.
    ///
    /// Commands marked `nogen` (QEMU checks their arguments in the handler:
    /// `device_add`, `netdev_add`, `query-qmp-schema`) are accepted as is.
    pub fn check_arguments(
        &self,
        cmd: &Command,
        args: &Map<String, Value>,
    ) -> Result<(), QmpError> {
        if !cmd.gen() {
            return Ok(());
        }
        let mut dict = DictVisit::new(args);
        if let Some(id) = cmd.arg_type() {
            self.object_members(id, &mut dict, 0)?;
        }
        dict.finish()
    }

    /// Check an event's `data` against the schema; for tests of emitters.
    /// An event without data accepts `null` or `{}`.
    pub fn check_event_data(&self, name: &str, data: &Value) -> Result<(), String> {
        let ev = self
            .event(name)
            .ok_or_else(|| format!("unknown event '{name}'"))?;
        match (ev.data_type(), data) {
            (None, Value::Null) => Ok(()),
            (None, Value::Object(m)) if m.is_empty() => Ok(()),
            (None, _) => Err(format!("event {name} carries no data")),
            (Some(id), Value::Object(m)) => {
                let mut dict = DictVisit::new(m);
                self.object_members(id, &mut dict, 0)
                    .and_then(|()| dict.finish())
                    .map_err(|e| e.desc)
            }
            (Some(_), _) => Err(format!("data of event {name} must be an object")),
        }
    }

    /// Check a command's return value against its declared return type;
    /// for tests of handlers. A command without one must return `{}`.
    pub fn check_return_value(&self, cmd: &Command, ret: &Value) -> Result<(), String> {
        match cmd.returns() {
            None if ret.as_object().is_some_and(Map::is_empty) => Ok(()),
            None => Err(format!("{} must return {{}}", cmd.name())),
            Some(ty) => self.value(None, ty, Some(ret), 0).map_err(|e| e.desc),
        }
    }

    pub(super) fn value(
        &self,
        name: Option<&str>,
        ty: &TypeRef,
        v: Option<&Value>,
        depth: usize,
    ) -> Result<(), QmpError> {
        let n = name.unwrap_or("null");
        if depth > MAX_DEPTH {
            return Err(QmpError::generic(format!(
                "Parameter '{n}' is nested too deeply"
            )));
        }
        match ty {
            TypeRef::Builtin(b) => check_builtin(n, *b, v),
            TypeRef::Array(elem) => {
                let Some(Value::Array(items)) = v else {
                    return Err(QmpError::invalid_parameter_type(n, "list"));
                };
                items
                    .iter()
                    .try_for_each(|item| self.value(None, elem, Some(item), depth + 1))
            }
            TypeRef::Named(id) => match &self.type_def(*id).kind {
                TypeKind::Enum(values) => match v {
                    Some(Value::String(s)) if values.iter().any(|x| x == s) => Ok(()),
                    Some(Value::String(s)) => Err(QmpError::invalid_parameter(s)),
                    _ => Err(QmpError::invalid_parameter_type(n, "string")),
                },
                TypeKind::Object { .. } => self.object(n, *id, v, depth),
                TypeKind::Alternate(cases) => self.alternate(name, *id, cases, v, depth),
            },
        }
    }

    fn object(&self, n: &str, id: TypeId, v: Option<&Value>, depth: usize) -> Result<(), QmpError> {
        let Some(Value::Object(map)) = v else {
            return Err(QmpError::invalid_parameter_type(n, "QDict"));
        };
        let mut dict = DictVisit::new(map);
        self.object_members(id, &mut dict, depth + 1)?;
        dict.finish()
    }

    /// Visit the members of object type `id` (base first, then its own,
    /// then the branch the tag selects) within one JSON object.
    fn object_members(
        &self,
        id: TypeId,
        dict: &mut DictVisit<'_>,
        depth: usize,
    ) -> Result<(), QmpError> {
        let TypeKind::Object {
            base,
            members,
            variants,
        } = &self.type_def(id).kind
        else {
            return Ok(());
        };
        if let Some(b) = base {
            self.object_members(*b, dict, depth)?;
        }
        for m in members {
            let v = dict.take(&m.name);
            if m.optional && v.is_none() {
                continue;
            }
            self.value(Some(&m.name), &m.ty, v, depth)?;
        }
        if let Some(vars) = variants {
            // The tag was checked as an enum member above, so it is a
            // string naming a value. A value without a branch adds nothing.
            let tag = dict.peek(&vars.tag).and_then(Value::as_str);
            if let Some(case) = vars.cases.iter().find(|c| Some(c.name.as_str()) == tag) {
                self.object_members(case.ty, dict, depth)?;
            }
        }
        Ok(())
    }

    /// Which JSON value class selects an alternate branch of this type.
    fn branch_qtype(&self, ty: &TypeRef) -> Option<QType> {
        match ty {
            TypeRef::Builtin(b) => match b {
                Builtin::Str => Some(QType::Str),
                Builtin::Number => Some(QType::Float),
                Builtin::Bool => Some(QType::Bool),
                Builtin::Null => Some(QType::Null),
                Builtin::Any => None,
                _ => Some(QType::Int),
            },
            TypeRef::Array(_) => Some(QType::List),
            TypeRef::Named(id) => match self.type_def(*id).kind {
                TypeKind::Enum(_) => Some(QType::Str),
                TypeKind::Object { .. } => Some(QType::Dict),
                TypeKind::Alternate(_) => None,
            },
        }
    }

    fn alternate(
        &self,
        name: Option<&str>,
        id: TypeId,
        cases: &[AlternateCase],
        v: Option<&Value>,
        depth: usize,
    ) -> Result<(), QmpError> {
        let n = name.unwrap_or("null");
        let Some(v) = v else {
            return Err(QmpError::missing_parameter(n));
        };
        let mut q = qtype(v);
        // Without an integer branch, an integer may take the number branch.
        let has_int = cases
            .iter()
            .any(|c| self.branch_qtype(&c.ty) == Some(QType::Int));
        if q == QType::Int && !has_int {
            q = QType::Float;
        }
        match cases.iter().find(|c| self.branch_qtype(&c.ty) == Some(q)) {
            Some(case) => self.value(name, &case.ty, Some(v), depth + 1),
            None => Err(QmpError::invalid_parameter_type(n, &self.type_def(id).name)),
        }
    }
}
