//! `null-co` / `null-aio`: a device of a given size that stores nothing.

use std::time::Duration;

use crate::driver::{Children, Driver, Extent};
use crate::error::{BlockError, BlockResult};
use crate::options::Options;
use serde_json::Value;

/// Default size of a null device, as QEMU (1 GiB).
pub const NULL_DEFAULT_SIZE: u64 = 1 << 30;

/// A null device.
pub struct NullDriver {
    name: &'static str,
    size: u64,
    read_zeroes: bool,
    latency: Duration,
}

/// `latency-ns` as QEMU 2.8 reads it: a number option (decimal, 0x hex or
/// 0 octal) taken as a signed 64-bit count, refused when negative.
pub fn parse_latency_ns(opts: &Options) -> BlockResult<u64> {
    let invalid = || BlockError::InvalidArgument("latency-ns is invalid".into());
    let v = match opts.get("latency-ns") {
        None | Some(Value::Null) => return Ok(0),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u,
            (None, Some(_)) => return Err(invalid()),
            _ => return Err(number_expected()),
        },
        Some(Value::String(s)) => parse_c_number(s).ok_or_else(number_expected)?,
        Some(_) => return Err(number_expected()),
    };
    if v > i64::MAX as u64 {
        return Err(invalid());
    }
    Ok(v)
}

fn number_expected() -> BlockError {
    BlockError::InvalidArgument("Parameter 'latency-ns' expects a number".into())
}

/// strtoull with base 0: a leading '-' negates (wrapping), as C does.
fn parse_c_number(s: &str) -> Option<u64> {
    let (neg, t) = match s.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()?
    } else if t.len() > 1 && t.starts_with('0') {
        u64::from_str_radix(&t[1..], 8).ok()?
    } else {
        t.parse().ok()?
    };
    Some(if neg { v.wrapping_neg() } else { v })
}

impl NullDriver {
    /// `aio` selects the `null-aio` name; both behave the same here.
    pub fn new(aio: bool, size: u64, read_zeroes: bool) -> NullDriver {
        NullDriver {
            name: if aio { "null-aio" } else { "null-co" },
            size,
            read_zeroes,
            latency: Duration::ZERO,
        }
    }

    /// Each read, write and flush takes `ns` nanoseconds. QEMU waits in a
    /// coroutine; this waits in the caller.
    pub fn with_latency_ns(mut self, ns: u64) -> NullDriver {
        self.latency = Duration::from_nanos(ns);
        self
    }

    fn delay(&self) {
        if !self.latency.is_zero() {
            std::thread::sleep(self.latency);
        }
    }

    fn check(&self, offset: u64, len: u64) -> BlockResult<()> {
        if offset.checked_add(len).is_none_or(|e| e > self.size) {
            return Err(BlockError::OutOfBounds {
                offset,
                len,
                size: self.size,
            });
        }
        Ok(())
    }
}

impl Driver for NullDriver {
    fn format_name(&self) -> &'static str {
        self.name
    }

    fn is_format(&self) -> bool {
        false
    }

    fn length(&mut self, _c: &Children) -> BlockResult<u64> {
        Ok(self.size)
    }

    fn read(&mut self, _c: &Children, offset: u64, buf: &mut [u8]) -> BlockResult<()> {
        self.check(offset, buf.len() as u64)?;
        // Without read-zeroes QEMU 2.8 leaves the caller's buffer as it was.
        if self.read_zeroes {
            buf.fill(0);
        }
        self.delay();
        Ok(())
    }

    fn write(&mut self, _c: &Children, offset: u64, buf: &[u8], _fua: bool) -> BlockResult<()> {
        self.check(offset, buf.len() as u64)?;
        self.delay();
        Ok(())
    }

    fn write_zeroes(&mut self, _c: &Children, offset: u64, len: u64, _u: bool) -> BlockResult<()> {
        self.check(offset, len)
    }

    fn discard(&mut self, _c: &Children, _offset: u64, _len: u64) -> BlockResult<()> {
        Ok(())
    }

    fn flush(&mut self, _c: &Children) -> BlockResult<()> {
        self.delay();
        Ok(())
    }

    fn block_status(&mut self, _c: &Children, offset: u64, len: u64) -> BlockResult<Extent> {
        let n = len.min(self.size.saturating_sub(offset)).max(1);
        // QEMU 2.8 reports only "offset valid" without read-zeroes: neither
        // data nor zero, so not allocated either.
        if self.read_zeroes {
            Ok(Extent::zero(n))
        } else {
            Ok(Extent {
                len: n,
                allocated: false,
                zero: false,
                data: false,
                offset: Some(offset),
            })
        }
    }

    fn truncate(&mut self, _c: &Children, _size: u64) -> BlockResult<()> {
        Err(BlockError::Unsupported(
            "Image format driver does not support resize".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(v: Value) -> Options {
        match v {
            Value::Object(m) => m,
            _ => Options::new(),
        }
    }

    #[test]
    fn latency_ns_parses_like_a_c_number_and_refuses_negatives() {
        assert_eq!(parse_latency_ns(&opts(json!({}))).unwrap(), 0);
        assert_eq!(
            parse_latency_ns(&opts(json!({"latency-ns": "0x10"}))).unwrap(),
            16
        );
        assert_eq!(
            parse_latency_ns(&opts(json!({"latency-ns": 1000}))).unwrap(),
            1000
        );
        let e = parse_latency_ns(&opts(json!({"latency-ns": "-1"}))).unwrap_err();
        assert_eq!(e.to_string(), "latency-ns is invalid");
        let e = parse_latency_ns(&opts(json!({"latency-ns": "x"}))).unwrap_err();
        assert_eq!(e.to_string(), "Parameter 'latency-ns' expects a number");
    }

    #[test]
    fn reads_leave_the_buffer_unless_read_zeroes() {
        let c = Children::default();
        let mut buf = [0xabu8; 512];
        NullDriver::new(false, 1 << 20, false)
            .read(&c, 0, &mut buf)
            .unwrap();
        assert_eq!(buf, [0xab; 512]);
        NullDriver::new(true, 1 << 20, true)
            .read(&c, 0, &mut buf)
            .unwrap();
        assert_eq!(buf, [0; 512]);
        let e = NullDriver::new(false, 1 << 20, false)
            .block_status(&c, 0, 4096)
            .unwrap();
        assert!(!e.allocated && !e.zero && !e.data);
    }
}
