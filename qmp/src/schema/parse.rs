//! Reading the schema notation (see the parent module) into a [`Schema`].
//!
//! Two steps: each file is tokenized and parsed into raw definitions that
//! borrow from the text; then all names are resolved together, QEMU's
//! implicit types (command argument objects, simple-union enums and
//! wrappers, inline union bases) are created, and the result is checked for
//! consistency.

use std::collections::HashMap;

use super::{
    AlternateCase, Builtin, Command, Event, Member, Schema, TypeDef, TypeId, TypeKind, TypeRef,
    Variant, Variants,
};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Tok<'a> {
    Word(&'a str),
    Punct(u8),
    Arrow,
    End,
}

struct Lexer<'a> {
    file: &'a str,
    src: &'a str,
    pos: usize,
    peeked: Option<(Tok<'a>, usize)>,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+')
}

impl<'a> Lexer<'a> {
    fn new(file: &'a str, src: &'a str) -> Self {
        Lexer {
            file,
            src,
            pos: 0,
            peeked: None,
        }
    }

    fn error(&self, at: usize, msg: impl std::fmt::Display) -> String {
        let line = self.src[..at.min(self.src.len())].matches('\n').count() + 1;
        format!("{}:{}: {}", self.file, line, msg)
    }

    /// Next token and its start offset.
    fn scan(&mut self) -> Result<(Tok<'a>, usize), String> {
        let bytes = self.src.as_bytes();
        loop {
            match bytes.get(self.pos) {
                None => return Ok((Tok::End, self.pos)),
                Some(b'#') => {
                    while self.pos < bytes.len() && bytes[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                Some(b) if b.is_ascii_whitespace() => self.pos += 1,
                Some(_) => break,
            }
        }
        let start = self.pos;
        let b = bytes[start];
        if b == b'-' && bytes.get(start + 1) == Some(&b'>') {
            self.pos += 2;
            return Ok((Tok::Arrow, start));
        }
        if matches!(b, b'{' | b'}' | b'[' | b']' | b':' | b',' | b'?') {
            self.pos += 1;
            return Ok((Tok::Punct(b), start));
        }
        if is_word_byte(b) {
            while self.pos < bytes.len() && is_word_byte(bytes[self.pos]) {
                self.pos += 1;
            }
            return Ok((Tok::Word(&self.src[start..self.pos]), start));
        }
        Err(self.error(start, format!("unexpected character {:?}", b as char)))
    }

    fn peek(&mut self) -> Result<Tok<'a>, String> {
        if self.peeked.is_none() {
            self.peeked = Some(self.scan()?);
        }
        Ok(self.peeked.map_or(Tok::End, |(t, _)| t))
    }

    fn next(&mut self) -> Result<(Tok<'a>, usize), String> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.scan(),
        }
    }

    fn word(&mut self) -> Result<&'a str, String> {
        match self.next()? {
            (Tok::Word(w), _) => Ok(w),
            (t, at) => Err(self.error(at, format!("expected a name, found {t:?}"))),
        }
    }

    fn punct(&mut self, p: u8) -> Result<(), String> {
        match self.next()? {
            (Tok::Punct(q), _) if q == p => Ok(()),
            (t, at) => Err(self.error(at, format!("expected '{}', found {t:?}", p as char))),
        }
    }

    /// Consume `p` if it comes next.
    fn eat(&mut self, p: u8) -> Result<bool, String> {
        if self.peek()? == Tok::Punct(p) {
            self.next()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// `{ item, item, ... }` with an optional trailing comma.
    fn braced<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, String>,
    ) -> Result<Vec<T>, String> {
        self.punct(b'{')?;
        let mut out = Vec::new();
        loop {
            if self.eat(b'}')? {
                return Ok(out);
            }
            out.push(item(self)?);
            if !self.eat(b',')? {
                self.punct(b'}')?;
                return Ok(out);
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct RawType<'a> {
    name: &'a str,
    array: bool,
}

#[derive(Debug)]
struct RawMember<'a> {
    name: &'a str,
    optional: bool,
    ty: RawType<'a>,
}

#[derive(Debug)]
enum RawArgs<'a> {
    None,
    Inline(Vec<RawMember<'a>>),
    Named(&'a str),
}

#[derive(Debug)]
enum RawBase<'a> {
    Named(&'a str),
    Inline(Vec<RawMember<'a>>),
}

#[derive(Debug)]
enum RawDef<'a> {
    Enum {
        name: &'a str,
        values: Vec<&'a str>,
    },
    Struct {
        name: &'a str,
        base: Option<&'a str>,
        members: Vec<RawMember<'a>>,
    },
    Union {
        name: &'a str,
        base: Option<RawBase<'a>>,
        tag: Option<&'a str>,
        cases: Vec<(&'a str, RawType<'a>)>,
    },
    Alternate {
        name: &'a str,
        cases: Vec<(&'a str, RawType<'a>)>,
    },
    Command {
        name: &'a str,
        args: RawArgs<'a>,
        ret: Option<RawType<'a>>,
        boxed: bool,
        nogen: bool,
        noresp: bool,
    },
    Event {
        name: &'a str,
        args: RawArgs<'a>,
        boxed: bool,
    },
}

fn raw_type<'a>(lx: &mut Lexer<'a>) -> Result<RawType<'a>, String> {
    if lx.eat(b'[')? {
        let name = lx.word()?;
        lx.punct(b']')?;
        return Ok(RawType { name, array: true });
    }
    Ok(RawType {
        name: lx.word()?,
        array: false,
    })
}

fn raw_member<'a>(lx: &mut Lexer<'a>) -> Result<RawMember<'a>, String> {
    let name = lx.word()?;
    let optional = lx.eat(b'?')?;
    lx.punct(b':')?;
    Ok(RawMember {
        name,
        optional,
        ty: raw_type(lx)?,
    })
}

fn raw_case<'a>(lx: &mut Lexer<'a>) -> Result<(&'a str, RawType<'a>), String> {
    let name = lx.word()?;
    lx.punct(b':')?;
    Ok((name, raw_type(lx)?))
}

fn raw_args<'a>(lx: &mut Lexer<'a>) -> Result<RawArgs<'a>, String> {
    if lx.peek()? == Tok::Punct(b'{') {
        return Ok(RawArgs::Inline(lx.braced(raw_member)?));
    }
    if lx.eat(b':')? {
        return Ok(RawArgs::Named(lx.word()?));
    }
    Ok(RawArgs::None)
}

/// Trailing flag words of a command or event, up to the next definition.
fn flags<'a>(lx: &mut Lexer<'a>, allowed: &[&str]) -> Result<Vec<&'a str>, String> {
    let mut out = Vec::new();
    while let Tok::Word(w) = lx.peek()? {
        if !allowed.contains(&w) {
            break;
        }
        lx.next()?;
        out.push(w);
    }
    Ok(out)
}

fn raw_def<'a>(lx: &mut Lexer<'a>) -> Result<Option<RawDef<'a>>, String> {
    let (kw, at) = match lx.next()? {
        (Tok::End, _) => return Ok(None),
        (Tok::Word(w), at) => (w, at),
        (t, at) => return Err(lx.error(at, format!("expected a definition, found {t:?}"))),
    };
    let name = lx.word()?;
    let def = match kw {
        "enum" => RawDef::Enum {
            name,
            values: lx.braced(|lx| lx.word())?,
        },
        "struct" => {
            let base = if lx.eat(b':')? {
                Some(lx.word()?)
            } else {
                None
            };
            RawDef::Struct {
                name,
                base,
                members: lx.braced(raw_member)?,
            }
        }
        "union" => {
            let base = if lx.eat(b':')? {
                if lx.peek()? == Tok::Punct(b'{') {
                    Some(RawBase::Inline(lx.braced(raw_member)?))
                } else {
                    Some(RawBase::Named(lx.word()?))
                }
            } else {
                None
            };
            let tag = if lx.peek()? == Tok::Word("tag") {
                lx.next()?;
                Some(lx.word()?)
            } else {
                None
            };
            RawDef::Union {
                name,
                base,
                tag,
                cases: lx.braced(raw_case)?,
            }
        }
        "alternate" => RawDef::Alternate {
            name,
            cases: lx.braced(raw_case)?,
        },
        "command" => {
            let args = raw_args(lx)?;
            let ret = if lx.peek()? == Tok::Arrow {
                lx.next()?;
                Some(raw_type(lx)?)
            } else {
                None
            };
            let f = flags(lx, &["boxed", "nogen", "noresp"])?;
            RawDef::Command {
                name,
                args,
                ret,
                boxed: f.contains(&"boxed"),
                nogen: f.contains(&"nogen"),
                noresp: f.contains(&"noresp"),
            }
        }
        "event" => {
            let args = raw_args(lx)?;
            let f = flags(lx, &["boxed"])?;
            RawDef::Event {
                name,
                args,
                boxed: f.contains(&"boxed"),
            }
        }
        other => return Err(lx.error(at, format!("unknown definition kind '{other}'"))),
    };
    Ok(Some(def))
}

/// Name resolution and creation of implicit types.
struct Builder {
    types: Vec<TypeDef>,
    type_index: HashMap<String, TypeId>,
}

impl Builder {
    fn declare(&mut self, name: &str) -> Result<TypeId, String> {
        if Builtin::from_name(name).is_some() || self.type_index.contains_key(name) {
            return Err(format!("type '{name}' defined twice"));
        }
        let id = TypeId(self.types.len());
        self.types.push(TypeDef {
            name: name.to_string(),
            kind: TypeKind::Enum(Vec::new()),
        });
        self.type_index.insert(name.to_string(), id);
        Ok(id)
    }

    /// An implicit type, shared by every user with the same implicit name
    /// (QEMU shares simple-union wrappers of one branch type this way).
    fn implicit(&mut self, name: String, kind: impl FnOnce() -> TypeKind) -> TypeId {
        if let Some(&id) = self.type_index.get(&name) {
            return id;
        }
        let id = TypeId(self.types.len());
        self.type_index.insert(name.clone(), id);
        self.types.push(TypeDef { name, kind: kind() });
        id
    }

    fn named(&self, name: &str) -> Result<TypeId, String> {
        self.type_index
            .get(name)
            .copied()
            .ok_or_else(|| format!("unknown type '{name}'"))
    }

    fn resolve(&self, t: RawType<'_>) -> Result<TypeRef, String> {
        let scalar = match Builtin::from_name(t.name) {
            Some(b) => TypeRef::Builtin(b),
            None => TypeRef::Named(self.named(t.name)?),
        };
        Ok(if t.array {
            TypeRef::Array(Box::new(scalar))
        } else {
            scalar
        })
    }

    fn members(&self, raw: &[RawMember<'_>]) -> Result<Vec<Member>, String> {
        raw.iter()
            .map(|m| {
                Ok(Member {
                    name: m.name.to_string(),
                    ty: self.resolve(m.ty)?,
                    optional: m.optional,
                })
            })
            .collect()
    }

    fn object(&mut self, name: String, members: Vec<Member>) -> TypeId {
        self.implicit(name, || TypeKind::Object {
            base: None,
            members,
            variants: None,
        })
    }

    /// The argument object of a command or event; `None` when it has none.
    fn args(&mut self, owner: &str, raw: &RawArgs<'_>) -> Result<Option<TypeId>, String> {
        match raw {
            RawArgs::None => Ok(None),
            RawArgs::Inline(m) if m.is_empty() => Ok(None),
            RawArgs::Inline(m) => {
                let members = self.members(m)?;
                Ok(Some(self.object(format!("q_obj_{owner}-arg"), members)))
            }
            RawArgs::Named(n) => Ok(Some(self.named(n)?)),
        }
    }

    fn set_kind(&mut self, name: &str, kind: TypeKind) -> Result<(), String> {
        let id = self.named(name)?;
        self.types[id.0].kind = kind;
        Ok(())
    }

    fn union(
        &mut self,
        name: &str,
        base: &Option<RawBase<'_>>,
        tag: Option<&str>,
        cases: &[(&str, RawType<'_>)],
    ) -> Result<TypeKind, String> {
        let base = match base {
            None => None,
            Some(RawBase::Named(b)) => Some(self.named(b)?),
            Some(RawBase::Inline(m)) => {
                let members = self.members(m)?;
                Some(self.object(format!("q_obj_{name}-base"), members))
            }
        };
        if let Some(tag) = tag {
            let cases = cases
                .iter()
                .map(|(case, t)| {
                    if t.array {
                        return Err(format!("union '{name}': branch '{case}' is an array"));
                    }
                    Ok(Variant {
                        name: case.to_string(),
                        ty: self.named(t.name)?,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            return Ok(TypeKind::Object {
                base,
                members: Vec::new(),
                variants: Some(Variants {
                    tag: tag.to_string(),
                    cases,
                }),
            });
        }
        // Simple union: lower it as QEMU does.
        let mut variants = Vec::new();
        for (case, t) in cases {
            let ty = self.resolve(*t)?;
            let type_name = if t.array {
                format!("{}List", t.name)
            } else {
                t.name.to_string()
            };
            let wrapper = self.object(
                format!("q_obj_{type_name}-wrapper"),
                vec![Member {
                    name: "data".to_string(),
                    ty,
                    optional: false,
                }],
            );
            variants.push(Variant {
                name: case.to_string(),
                ty: wrapper,
            });
        }
        let values = cases.iter().map(|(c, _)| c.to_string()).collect();
        let kind_enum = self.implicit(format!("{name}Kind"), || TypeKind::Enum(values));
        Ok(TypeKind::Object {
            base,
            members: vec![Member {
                name: "type".to_string(),
                ty: TypeRef::Named(kind_enum),
                optional: false,
            }],
            variants: Some(Variants {
                tag: "type".to_string(),
                cases: variants,
            }),
        })
    }
}

/// Parse and resolve all schema files into one [`Schema`].
pub(super) fn parse_sources(sources: &[(&str, &str)]) -> Result<Schema, String> {
    let mut defs = Vec::new();
    for (file, text) in sources {
        let mut lx = Lexer::new(file, text);
        while let Some(def) = raw_def(&mut lx)? {
            defs.push(def);
        }
    }
    build(&defs)
}

fn build(defs: &[RawDef<'_>]) -> Result<Schema, String> {
    let mut b = Builder {
        types: Vec::new(),
        type_index: HashMap::new(),
    };
    for def in defs {
        match def {
            RawDef::Enum { name, .. }
            | RawDef::Struct { name, .. }
            | RawDef::Union { name, .. }
            | RawDef::Alternate { name, .. } => {
                b.declare(name)?;
            }
            RawDef::Command { .. } | RawDef::Event { .. } => {}
        }
    }
    let mut commands = Vec::new();
    let mut command_index = HashMap::new();
    let mut events = Vec::new();
    let mut event_index = HashMap::new();
    for def in defs {
        match def {
            RawDef::Enum { name, values } => {
                let values = values.iter().map(|v| v.to_string()).collect();
                b.set_kind(name, TypeKind::Enum(values))?;
            }
            RawDef::Struct {
                name,
                base,
                members,
            } => {
                let base = base.map(|n| b.named(n)).transpose()?;
                let members = b.members(members)?;
                b.set_kind(
                    name,
                    TypeKind::Object {
                        base,
                        members,
                        variants: None,
                    },
                )?;
            }
            RawDef::Union {
                name,
                base,
                tag,
                cases,
            } => {
                let kind = b.union(name, base, *tag, cases)?;
                b.set_kind(name, kind)?;
            }
            RawDef::Alternate { name, cases } => {
                let cases = cases
                    .iter()
                    .map(|(case, t)| {
                        Ok(AlternateCase {
                            name: case.to_string(),
                            ty: b.resolve(*t)?,
                        })
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                b.set_kind(name, TypeKind::Alternate(cases))?;
            }
            RawDef::Command {
                name,
                args,
                ret,
                boxed,
                nogen,
                noresp,
            } => {
                if command_index.contains_key(*name) {
                    return Err(format!("command '{name}' defined twice"));
                }
                let args = b.args(name, args)?;
                let ret = ret.map(|t| b.resolve(t)).transpose()?;
                command_index.insert(name.to_string(), commands.len());
                commands.push(Command {
                    name: name.to_string(),
                    args,
                    ret,
                    boxed: *boxed,
                    gen: !nogen,
                    success_response: !noresp,
                });
            }
            RawDef::Event { name, args, boxed } => {
                if event_index.contains_key(*name) {
                    return Err(format!("event '{name}' defined twice"));
                }
                let data = b.args(name, args)?;
                event_index.insert(name.to_string(), events.len());
                events.push(Event {
                    name: name.to_string(),
                    data,
                    boxed: *boxed,
                });
            }
        }
    }
    let schema = Schema {
        types: b.types,
        type_index: b.type_index,
        commands,
        command_index,
        events,
        event_index,
    };
    validate(&schema)?;
    Ok(schema)
}

/// Consistency rules the checker and introspection rely on.
fn validate(s: &Schema) -> Result<(), String> {
    let is_object = |id: TypeId| matches!(s.type_def(id).kind, TypeKind::Object { .. });
    for def in &s.types {
        let TypeKind::Object { base, variants, .. } = &def.kind else {
            continue;
        };
        if let Some(b) = base {
            if !is_object(*b) {
                return Err(format!("'{}': base is not an object", def.name));
            }
        }
        let Some(v) = variants else { continue };
        for case in &v.cases {
            if !is_object(case.ty) {
                return Err(format!(
                    "'{}': branch '{}' is not an object",
                    def.name, case.name
                ));
            }
        }
        // The tag must be an enum member of the union itself (its base for
        // flat unions) and every branch one of the enum's values.
        let own = match &def.kind {
            TypeKind::Object { members, .. } => members.iter().collect::<Vec<_>>(),
            _ => Vec::new(),
        };
        let mut all: Vec<&Member> = base.map(|b| s.members(b)).unwrap_or_default();
        all.extend(own);
        let tag = all
            .iter()
            .find(|m| m.name == v.tag)
            .ok_or_else(|| format!("'{}': tag '{}' is not a member", def.name, v.tag))?;
        let values = match &tag.ty {
            TypeRef::Named(id) => match &s.type_def(*id).kind {
                TypeKind::Enum(values) => values,
                _ => return Err(format!("'{}': tag is not an enum", def.name)),
            },
            _ => return Err(format!("'{}': tag is not an enum", def.name)),
        };
        if tag.optional {
            return Err(format!("'{}': tag is optional", def.name));
        }
        for case in &v.cases {
            if !values.contains(&case.name) {
                return Err(format!(
                    "'{}': branch '{}' is not a tag value",
                    def.name, case.name
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Schema, String> {
        parse_sources(&[("t.qapi", text)])
    }

    #[test]
    fn comments_and_trailing_commas_are_accepted() {
        let s = parse("# c\nenum E { a, b, }\nstruct S { x?: E, y: [int], } # end").unwrap();
        let id = s.lookup_type("S").unwrap();
        let m = s.members(id);
        assert_eq!(m.len(), 2);
        assert!(m[0].optional);
        assert_eq!(s.type_name(&m[1].ty), "[int]");
    }

    #[test]
    fn unknown_type_is_an_error() {
        let e = parse("struct S { x: Nope }").unwrap_err();
        assert!(e.contains("unknown type 'Nope'"), "{e}");
    }

    #[test]
    fn error_names_file_and_line() {
        let e = parse("enum E { a }\nstruct S = { }").unwrap_err();
        assert!(e.starts_with("t.qapi:2:"), "{e}");
    }

    #[test]
    fn simple_union_is_lowered_with_kind_enum_and_wrappers() {
        let s = parse("union U { a: int, b: [str] }\nunion V { c: int }").unwrap();
        let kind = s.lookup_type("UKind").unwrap();
        assert_eq!(s.enum_values(kind), ["a", "b"]);
        assert!(s.lookup_type("q_obj_strList-wrapper").is_some());
        // Both unions share the wrapper of their `int` branch.
        let wrappers = s
            .types
            .iter()
            .filter(|t| t.name == "q_obj_int-wrapper")
            .count();
        assert_eq!(wrappers, 1);
    }

    #[test]
    fn flat_union_tag_must_be_enum_member_of_base() {
        let bad = "enum K { x }\nstruct B { k: str }\nstruct X { }\nunion U : B tag k { x: X }";
        assert!(parse(bad).unwrap_err().contains("tag is not an enum"));
        let good = "enum K { x }\nstruct X { }\nunion U : { k: K } tag k { x: X }";
        let s = parse(good).unwrap();
        assert!(s.lookup_type("q_obj_U-base").is_some());
    }

    #[test]
    fn command_flags_and_args_are_read() {
        let s = parse("struct A { x: int }\ncommand c : A -> [A] boxed nogen\ncommand d { }\nevent E { y: str }")
            .unwrap();
        let c = s.command("c").unwrap();
        assert!(c.boxed() && !c.gen() && c.success_response() && c.has_args());
        assert_eq!(s.type_name(c.returns().unwrap()), "[A]");
        assert!(!s.command("d").unwrap().has_args());
        let e = s.event("E").unwrap();
        assert_eq!(s.type_def(e.data_type().unwrap()).name, "q_obj_E-arg");
    }
}
