//! Reading a property value from the three places QEMU takes them: a JSON
//! value (qom-set, object-add `props`), option strings (`-object`,
//! HMP `object_add`) and a single string (HMP `qom-set`). Each source has
//! its own syntax and its own error wording in QEMU, kept here.

use serde_json::Value;

use qmp::error::{ErrorClass, QmpError};

/// A QOM failure, carrying the message clients see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QomError {
    /// Class DeviceNotFound ("Device '%s' not found").
    NotFound(String),
    Generic(String),
}

impl QomError {
    pub fn msg(&self) -> &str {
        match self {
            QomError::NotFound(m) | QomError::Generic(m) => m,
        }
    }

    pub fn generic(m: impl Into<String>) -> Self {
        QomError::Generic(m.into())
    }

    pub fn device_not_found(path: &str) -> Self {
        QomError::NotFound(format!("Device '{path}' not found"))
    }

    pub fn prop_not_found(name: &str) -> Self {
        QomError::generic(format!("Property '.{name}' not found"))
    }

    pub fn permission_denied() -> Self {
        QomError::generic("Insufficient permission to perform this operation")
    }

    pub fn bad_type(name: &str, expected: &str) -> Self {
        QomError::generic(format!(
            "Invalid parameter type for '{name}', expected: {expected}"
        ))
    }

    pub fn bad_value(name: &str, expected: &str) -> Self {
        QomError::generic(format!("Parameter '{name}' expects {expected}"))
    }
}

impl From<QomError> for QmpError {
    fn from(e: QomError) -> Self {
        match e {
            QomError::NotFound(m) => QmpError::new(ErrorClass::DeviceNotFound, m),
            QomError::Generic(m) => QmpError::generic(m),
        }
    }
}

impl std::fmt::Display for QomError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.msg())
    }
}

/// Where a value being set comes from.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// QMP: typed JSON.
    Json(&'a Value),
    /// QemuOpts: every value given for the key, in order (lists repeat the
    /// key; scalars use the last).
    Opts(&'a [String]),
    /// HMP qom-set: one string, parsed by type.
    Str(&'a str),
}

/// strtoll/strtoull with base 0: `0x` hex, leading `0` octal, decimal.
fn parse_c_int(s: &str) -> Option<i128> {
    let (neg, t) = match s.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        i128::from_str_radix(h, 16).ok()?
    } else if t.len() > 1 && t.starts_with('0') {
        i128::from_str_radix(&t[1..], 8).ok()?
    } else {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

/// qemu_strtosz with bytes as the default unit: a number (fractions
/// allowed) and an optional B/K/M/G/T/P/E suffix in either case.
pub fn parse_size(s: &str) -> Option<u64> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() {
        return None;
    }
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        "P" => 50,
        "E" => 60,
        _ => return None,
    };
    if !num.contains('.') {
        let n: u64 = num.parse().ok()?;
        let v = n.checked_mul(1u64 << shift)?;
        return (v <= i64::MAX as u64).then_some(v);
    }
    let n: f64 = num.parse().ok()?;
    let v = n * (1u64 << shift) as f64;
    (v.is_finite() && v >= 0.0 && v < i64::MAX as f64).then_some(v as u64)
}

impl<'a> Input<'a> {
    fn last(vals: &'a [String]) -> &'a str {
        vals.last().map(String::as_str).unwrap_or("")
    }

    pub fn string(&self, name: &str) -> Result<String, QomError> {
        match self {
            Input::Json(v) => v
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| QomError::bad_type(name, "string")),
            Input::Opts(v) => Ok(Self::last(v).to_string()),
            Input::Str(s) => Ok(s.to_string()),
        }
    }

    pub fn bool(&self, name: &str) -> Result<bool, QomError> {
        match self {
            Input::Json(v) => v
                .as_bool()
                .ok_or_else(|| QomError::bad_type(name, "boolean")),
            Input::Opts(v) => match Self::last(v) {
                "on" | "yes" | "y" => Ok(true),
                "off" | "no" | "n" => Ok(false),
                _ => Err(QomError::bad_value(name, "on|yes|y|off|no|n")),
            },
            Input::Str(s) => match s.to_ascii_lowercase().as_str() {
                "on" | "yes" | "true" => Ok(true),
                "off" | "no" | "false" => Ok(false),
                _ => Err(QomError::bad_type(name, "boolean")),
            },
        }
    }

    pub fn int(&self, name: &str) -> Result<i64, QomError> {
        match self {
            Input::Json(v) => v
                .as_i64()
                .ok_or_else(|| QomError::bad_type(name, "integer")),
            Input::Opts(v) => parse_c_int(Self::last(v))
                .and_then(|x| i64::try_from(x).ok())
                .ok_or_else(|| QomError::bad_value(name, "an int64 value")),
            Input::Str(s) => parse_c_int(s)
                .and_then(|x| i64::try_from(x).ok())
                .ok_or_else(|| QomError::bad_value(name, "an int64 value or range")),
        }
    }

    pub fn uint64(&self, name: &str) -> Result<u64, QomError> {
        match self {
            // QEMU reads the JSON integer as int64 and reinterprets it.
            Input::Json(v) => v
                .as_i64()
                .map(|x| x as u64)
                .ok_or_else(|| QomError::bad_type(name, "integer")),
            Input::Opts(v) => {
                let s = Self::last(v);
                parse_c_int(s)
                    .filter(|_| !s.starts_with('-'))
                    .and_then(|x| u64::try_from(x).ok())
                    .ok_or_else(|| QomError::bad_value(name, "a uint64 value"))
            }
            Input::Str(s) => parse_c_int(s)
                .and_then(|x| u64::try_from(x).ok())
                .ok_or_else(|| QomError::bad_value(name, "an int64 value or range")),
        }
    }

    pub fn size(&self, name: &str) -> Result<u64, QomError> {
        match self {
            Input::Json(_) => self.uint64(name),
            Input::Opts(v) => parse_size(Self::last(v)).ok_or_else(|| {
                QomError::bad_value(name, "a size value representible as a non-negative int64")
            }),
            Input::Str(s) => parse_size(s).ok_or_else(|| QomError::bad_type(name, "size")),
        }
    }

    /// An enum member; QEMU names the rejected value, not the property.
    pub fn enumeration(&self, name: &str, values: &[&str]) -> Result<String, QomError> {
        let s = self.string(name)?;
        if values.contains(&s.as_str()) {
            Ok(s)
        } else {
            Err(QomError::generic(format!("Invalid parameter '{s}'")))
        }
    }

    /// A list of uint16 (host-nodes): a JSON array, or in option strings
    /// numbers and `a-b` ranges, repeated or comma separated.
    pub fn u16_list(&self, name: &str) -> Result<Vec<u16>, QomError> {
        match self {
            Input::Json(v) => {
                let arr = v
                    .as_array()
                    .ok_or_else(|| QomError::bad_type(name, "list"))?;
                arr.iter()
                    .map(|e| {
                        let n = e
                            .as_i64()
                            .ok_or_else(|| QomError::bad_type("null", "integer"))?;
                        u16::try_from(n as u64).map_err(|_| QomError::bad_value("null", "uint16_t"))
                    })
                    .collect()
            }
            Input::Opts(v) => {
                let mut out = Vec::new();
                for s in v.iter() {
                    ranges(s, name, &mut out)?;
                }
                Ok(out)
            }
            Input::Str(s) => {
                let mut out = Vec::new();
                for part in s.split(',') {
                    ranges(part, name, &mut out)?;
                }
                Ok(out)
            }
        }
    }
}

/// Range lists are capped, as QEMU's options visitor caps them.
const RANGE_MAX: u64 = 65536;

fn ranges(s: &str, name: &str, out: &mut Vec<u16>) -> Result<(), QomError> {
    let bad = || QomError::bad_value(name, "a uint64 value or range");
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let lo = parse_c_int(a)
        .and_then(|x| u64::try_from(x).ok())
        .ok_or_else(bad)?;
    let hi = match b {
        Some(b) => parse_c_int(b)
            .and_then(|x| u64::try_from(x).ok())
            .ok_or_else(bad)?,
        None => lo,
    };
    if hi < lo || hi - lo >= RANGE_MAX {
        return Err(bad());
    }
    for n in lo..=hi {
        out.push(u16::try_from(n).map_err(|_| QomError::bad_value(name, "uint16_t"))?);
    }
    Ok(())
}

/// Checks and converts `input` for a stored property of QEMU type `ty`.
pub fn parse_typed(ty: &str, name: &str, input: &Input) -> Result<Value, QomError> {
    Ok(match ty {
        "string" | "str" => Value::String(input.string(name)?),
        "bool" => Value::Bool(input.bool(name)?),
        "int" | "int64" | "int32" | "int16" | "int8" => Value::from(input.int(name)?),
        "uint64" | "uint32" | "uint16" | "uint8" => {
            let v = input.uint64(name)?;
            let max = match ty {
                "uint32" => u64::from(u32::MAX),
                "uint16" => u64::from(u16::MAX),
                "uint8" => u64::from(u8::MAX),
                _ => u64::MAX,
            };
            if v > max {
                return Err(QomError::bad_value(name, &format!("{ty}_t")));
            }
            Value::from(v)
        }
        "size" => Value::from(input.size(name)?),
        other => match super::types::enum_values(other) {
            Some(vals) => Value::String(input.enumeration(name, vals)?),
            None => return Err(QomError::permission_denied()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_type_mismatch_uses_qemu_wording() {
        let v = json!("yes");
        assert_eq!(
            Input::Json(&v).bool("merge").unwrap_err().msg(),
            "Invalid parameter type for 'merge', expected: boolean"
        );
        assert_eq!(
            Input::Json(&v).size("size").unwrap_err().msg(),
            "Invalid parameter type for 'size', expected: integer"
        );
    }

    #[test]
    fn option_strings_parse_sizes_bools_and_ranges() {
        let v = vec!["1G".to_string()];
        assert_eq!(Input::Opts(&v).size("size").unwrap(), 1 << 30);
        let v = vec!["y".to_string()];
        assert!(Input::Opts(&v).bool("share").unwrap());
        let v = vec!["maybe".to_string()];
        assert_eq!(
            Input::Opts(&v).bool("share").unwrap_err().msg(),
            "Parameter 'share' expects on|yes|y|off|no|n"
        );
        let v = vec!["0-2".to_string(), "5".to_string()];
        assert_eq!(
            Input::Opts(&v).u16_list("host-nodes").unwrap(),
            vec![0, 1, 2, 5]
        );
        let v = vec!["12Q".to_string()];
        assert_eq!(
            Input::Opts(&v).size("size").unwrap_err().msg(),
            "Parameter 'size' expects a size value representible as a non-negative int64"
        );
    }

    #[test]
    fn hmp_strings_accept_true_and_reject_garbage() {
        assert!(Input::Str("TRUE").bool("x").unwrap());
        assert_eq!(
            Input::Str("2").bool("x").unwrap_err().msg(),
            "Invalid parameter type for 'x', expected: boolean"
        );
        assert_eq!(Input::Str("0x10").int("x").unwrap(), 16);
    }

    #[test]
    fn enum_errors_name_the_value() {
        let v = json!("weird");
        assert_eq!(
            parse_typed("HostMemPolicy", "policy", &Input::Json(&v))
                .unwrap_err()
                .msg(),
            "Invalid parameter 'weird'"
        );
    }

    #[test]
    fn sizes_overflowing_int64_are_refused() {
        assert_eq!(parse_size("8E"), None);
        assert_eq!(parse_size("1.5K"), Some(1536));
        assert_eq!(parse_size("-1"), None);
    }
}
