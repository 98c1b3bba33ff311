//! QemuOpts-style option strings: `key=val,key2=val2`, `,,` for a literal
//! comma, an implied first key (`-m 512M` is `size=512M`), bare `flag` for
//! `flag=on` and `noflag` for `flag=off`.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptType {
    Str,
    Bool,
    Number,
    Size,
}

#[derive(Clone, Copy, Debug)]
pub struct OptDesc {
    pub name: &'static str,
    pub ty: OptType,
}

pub const fn desc(name: &'static str, ty: OptType) -> OptDesc {
    OptDesc { name, ty }
}

/// A QemuOptsList: which keys an option accepts. An empty `descs` accepts
/// any key (validated later by whoever consumes it, as QEMU does for
/// `-object` and `-device`).
#[derive(Debug)]
pub struct OptsList {
    pub name: &'static str,
    pub implied: Option<&'static str>,
    pub descs: &'static [OptDesc],
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QemuOpts {
    pub id: Option<String>,
    /// In order of appearance; later duplicates win on lookup.
    pub items: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptsError {
    pub message: String,
    pub hint: Option<&'static str>,
}

impl fmt::Display for OptsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl OptsError {
    fn new(message: String) -> Self {
        OptsError {
            message,
            hint: None,
        }
    }
}

pub const SIZE_HINT: &str =
    "You may use k, M, G or T suffixes for kilobytes, megabytes, gigabytes and terabytes.";

/// Reads an option value up to an unescaped comma; `,,` is a comma.
/// Returns the value and the rest of the input starting at the delimiter.
fn take_value(s: &str) -> (String, &str) {
    let mut out = String::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b',' {
            if bytes.get(i + 1) == Some(&b',') {
                out.push(',');
                i += 2;
                continue;
            }
            break;
        }
        let ch_len = s[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&s[i..i + ch_len]);
        i += ch_len;
    }
    (out, &s[i..])
}

/// Reads an option name up to `delim` or a comma (names never escape commas).
fn take_name(s: &str, delim: char) -> (&str, &str) {
    let end = s.find([delim, ',']).unwrap_or(s.len());
    (&s[..end], &s[end..])
}

pub fn parse_bool(name: &str, value: &str) -> Result<bool, OptsError> {
    match value {
        "on" | "yes" | "true" | "y" => Ok(true),
        "off" | "no" | "false" | "n" => Ok(false),
        _ => Err(OptsError::new(format!(
            "Parameter '{name}' expects 'on' or 'off'"
        ))),
    }
}

pub fn parse_number(name: &str, value: &str) -> Result<u64, OptsError> {
    let v = value.trim_start();
    let (digits, radix) = if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        (h, 16)
    } else if v.len() > 1 && v.starts_with('0') {
        (&v[1..], 8)
    } else {
        (v, 10)
    };
    u64::from_str_radix(digits, radix)
        .map_err(|_| OptsError::new(format!("Parameter '{name}' expects a number")))
}

/// QEMU's size syntax: a decimal (possibly fractional) number with an
/// optional `b`, `k`/`K`, `M`, `G`, `T` suffix.
pub fn parse_size(name: &str, value: &str) -> Result<u64, OptsError> {
    let bad = || OptsError {
        message: format!("Parameter '{name}' expects a size"),
        hint: Some(SIZE_HINT),
    };
    let v = value.trim_start();
    // strtod accepts a sign; a negative size is then out of range.
    if v.starts_with('-') && v[1..].starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return Err(OptsError::new(format!(
            "Parameter '{name}' expects a non-negative number below 2^64"
        )));
    }
    let v = v.strip_prefix('+').unwrap_or(v);
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, suffix) = v.split_at(split);
    if num.is_empty() {
        return Err(bad());
    }
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match suffix {
        "" | "b" => 1.0,
        "k" | "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let total = n * mult;
    if !(0.0..18446744073709551616.0).contains(&total) {
        return Err(OptsError::new(format!(
            "Parameter '{name}' expects a non-negative number below 2^64"
        )));
    }
    Ok(total as u64)
}

impl OptsList {
    fn find(&self, name: &str) -> Option<&OptDesc> {
        self.descs.iter().find(|d| d.name == name)
    }

    fn check(&self, name: &str, value: &str) -> Result<(), OptsError> {
        if self.descs.is_empty() {
            return Ok(());
        }
        let Some(d) = self.find(name) else {
            return Err(OptsError::new(format!("Invalid parameter '{name}'")));
        };
        match d.ty {
            OptType::Str => Ok(()),
            OptType::Bool => parse_bool(name, value).map(|_| ()),
            OptType::Number => parse_number(name, value).map(|_| ()),
            OptType::Size => parse_size(name, value).map(|_| ()),
        }
    }

    /// Parses `params`; with `permit_abbrev` the first item may omit
    /// `key=` and then names the implied key.
    pub fn parse(&self, params: &str, permit_abbrev: bool) -> Result<QemuOpts, OptsError> {
        let firstname = if permit_abbrev { self.implied } else { None };
        let mut opts = QemuOpts::default();
        let mut p = params;
        let mut first = true;
        while !p.is_empty() {
            let eq = p.find('=');
            let comma = p.find(',');
            let (name, value, rest) = match (eq, comma) {
                (Some(e), c) if c.is_none_or(|c| c > e) => {
                    let (name, r) = take_name(p, '=');
                    let (value, r) = take_value(&r[1..]);
                    (name.to_string(), value, r)
                }
                _ => {
                    if first && firstname.is_some() {
                        let (value, r) = take_value(p);
                        (firstname.unwrap_or_default().to_string(), value, r)
                    } else {
                        let (name, r) = take_name(p, ',');
                        match name.strip_prefix("no") {
                            Some(flag) if !flag.is_empty() => {
                                (flag.to_string(), "off".to_string(), r)
                            }
                            _ => (name.to_string(), "on".to_string(), r),
                        }
                    }
                }
            };
            first = false;
            if name == "id" {
                if !is_valid_id(&value) {
                    return Err(OptsError {
                        message: "Parameter 'id' expects an identifier".to_string(),
                        hint: Some(
                            "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.",
                        ),
                    });
                }
                opts.id = Some(value);
            } else {
                self.check(&name, &value)?;
                opts.items.push((name, value));
            }
            match rest.strip_prefix(',') {
                Some(r) => p = r,
                None => break,
            }
        }
        Ok(opts)
    }
}

/// QEMU's id_wellformed(): a letter, then letters, digits, '-', '.', '_'.
pub fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

impl QemuOpts {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.items
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn get_bool(&self, name: &str, default: bool) -> Result<bool, OptsError> {
        self.get(name).map_or(Ok(default), |v| parse_bool(name, v))
    }

    pub fn get_size(&self, name: &str) -> Result<Option<u64>, OptsError> {
        self.get(name).map(|v| parse_size(name, v)).transpose()
    }

    pub fn get_number(&self, name: &str) -> Result<Option<u64>, OptsError> {
        self.get(name).map(|v| parse_number(name, v)).transpose()
    }

    /// Keys in first-seen order, without duplicates.
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = Vec::new();
        for (k, _) in &self.items {
            if !keys.contains(&k.as_str()) {
                keys.push(k);
            }
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static ANY: OptsList = OptsList {
        name: "any",
        implied: Some("type"),
        descs: &[],
    };
    static MEM: OptsList = OptsList {
        name: "memory",
        implied: Some("size"),
        descs: &[
            desc("size", OptType::Size),
            desc("slots", OptType::Number),
            desc("maxmem", OptType::Size),
        ],
    };

    #[test]
    fn implied_first_key_and_pairs() {
        let o = ANY.parse("pc,accel=kvm:qtest", true).unwrap();
        assert_eq!(o.get("type"), Some("pc"));
        assert_eq!(o.get("accel"), Some("kvm:qtest"));
    }

    #[test]
    fn double_comma_escapes_a_comma() {
        let o = ANY.parse("file,path=a,,b,,,mode=x", false).unwrap();
        assert_eq!(o.get("path"), Some("a,b,"));
        assert_eq!(o.get("mode"), Some("x"));
        assert_eq!(o.get("file"), Some("on"));
    }

    #[test]
    fn bare_flags_and_no_prefix() {
        let o = ANY.parse("server,nowait", false).unwrap();
        assert_eq!(o.get("server"), Some("on"));
        assert_eq!(o.get("wait"), Some("off"));
    }

    #[test]
    fn id_is_taken_out_and_validated() {
        let o = ANY.parse("socket,id=mon0,path=/x", true).unwrap();
        assert_eq!(o.id.as_deref(), Some("mon0"));
        assert!(ANY.parse("socket,id=0bad", true).is_err());
    }

    #[test]
    fn sizes_with_suffixes() {
        assert_eq!(parse_size("size", "512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("size", "1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("size", "4k").unwrap(), 4096);
        assert_eq!(parse_size("size", "100").unwrap(), 100);
        let e = parse_size("size", "12Q").unwrap_err();
        assert_eq!(e.message, "Parameter 'size' expects a size");
        assert!(parse_size("size", "").is_err());
        assert!(parse_size("size", "-1").is_err());
    }

    #[test]
    fn unknown_key_is_refused_with_qemu_wording() {
        let e = MEM.parse("1G,bogus=1", true).unwrap_err();
        assert_eq!(e.message, "Invalid parameter 'bogus'");
        let e = MEM.parse("slots=x", true).unwrap_err();
        assert_eq!(e.message, "Parameter 'slots' expects a number");
    }

    #[test]
    fn booleans_accept_on_off_yes_no() {
        assert!(parse_bool("x", "yes").unwrap());
        assert!(!parse_bool("x", "off").unwrap());
        assert_eq!(
            parse_bool("x", "maybe").unwrap_err().message,
            "Parameter 'x' expects 'on' or 'off'"
        );
    }

    #[test]
    fn empty_and_trailing_commas_do_not_panic() {
        for s in [
            "",
            ",",
            ",,",
            "=",
            "a=",
            "=b",
            ",a",
            "a,,",
            "x=1,",
            "\u{e9}=\u{e9},,",
        ] {
            let _ = ANY.parse(s, true);
            let _ = MEM.parse(s, true);
        }
    }
}
