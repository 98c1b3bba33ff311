//! The text qemu-io prints about requests: human-readable sizes, elapsed
//! times, the two-line statistics report (or its `-C` one-line form), and
//! hex dumps. Number formatting follows C's printf where Rust's differs
//! (infinities and NaNs).

use std::time::Duration;

/// An elapsed time as gettimeofday differences give it: seconds and microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed {
    pub sec: u64,
    pub usec: u64,
}

impl From<Duration> for Elapsed {
    fn from(d: Duration) -> Elapsed {
        Elapsed {
            sec: d.as_secs(),
            usec: u64::from(d.subsec_micros()),
        }
    }
}

impl Elapsed {
    fn as_secs_f64(self) -> f64 {
        self.sec as f64 + self.usec as f64 / 1_000_000.0
    }
}

/// printf("%.Nf") including C's spelling of infinities and NaNs.
pub fn fmt_fixed(v: f64, prec: usize) -> String {
    if v.is_nan() {
        return if v.is_sign_negative() { "-nan" } else { "nan" }.to_string();
    }
    if v.is_infinite() {
        return if v < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    format!("{:.*}", prec, v)
}

/// A byte count in binary units, three decimals, trailing ".000" dropped
/// ("512 bytes", "1 KiB", "1.500 KiB", "4.001 GiB").
pub fn cvtstr(value: f64) -> String {
    const UNITS: [(u32, &str); 6] = [
        (60, " EiB"),
        (50, " PiB"),
        (40, " TiB"),
        (30, " GiB"),
        (20, " MiB"),
        (10, " KiB"),
    ];
    let mut text = None;
    for (shift, suffix) in UNITS {
        let unit = (1u64 << shift) as f64;
        if value >= unit {
            text = Some((fmt_fixed(value / unit, 3), suffix));
            break;
        }
    }
    let (mut s, suffix) = text.unwrap_or_else(|| (fmt_fixed(value, 6), " bytes"));
    // The first ".000" ends the number, even when more digits follow it.
    if let Some(i) = s.find(".000") {
        s.truncate(i);
    }
    s.push_str(suffix);
    s
}

/// Elapsed time: "0.0012 sec" below a second, "H:MM:SS.cc" from a second on
/// or always with `verbose` (the `-C` form).
pub fn timestr(t: Elapsed, verbose: bool) -> String {
    let frac = t.usec as f64 / 1_000_000.0;
    if verbose || t.sec != 0 {
        format!(
            "{}:{:02}:{:02}.{:02}",
            (t.sec / 3600) as u32,
            ((t.sec % 3600) / 60) as u32,
            (t.sec % 60) as u32,
            (frac * 100.0) as u32
        )
    } else {
        format!("0.{:04} sec", (frac * 10000.0) as u32)
    }
}

fn per_sec(value: f64, t: Elapsed) -> f64 {
    value / t.as_secs_f64()
}

/// What a statistics report is about.
pub struct Report<'a> {
    /// "read", "wrote" or "discard".
    pub op: &'a str,
    pub offset: i64,
    /// Bytes asked for.
    pub count: i64,
    /// Bytes done.
    pub total: i64,
    /// `-C`: one machine-readable line.
    pub machine: bool,
}

/// The statistics qemu-io prints after a request (always one operation).
pub fn print_report(out: &mut String, r: &Report, t: Elapsed) {
    let Report {
        op,
        offset,
        count,
        total,
        machine,
    } = *r;
    let cnt = 1i32;
    let ts = timestr(t, machine);
    if machine {
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            total,
            cnt,
            ts,
            fmt_fixed(per_sec(total as f64, t), 3),
            fmt_fixed(per_sec(f64::from(cnt), t), 3)
        ));
    } else {
        out.push_str(&format!(
            "{} {}/{} bytes at offset {}\n",
            op, total, count, offset
        ));
        out.push_str(&format!(
            "{}, {} ops; {} ({}/sec and {} ops/sec)\n",
            cvtstr(total as f64),
            cnt,
            ts,
            cvtstr(per_sec(total as f64, t)),
            fmt_fixed(per_sec(f64::from(cnt), t), 4)
        ));
    }
}

/// Hex dump, 16 bytes a line: offset, bytes in hex, then alphanumerics
/// (anything else as '.').
pub fn dump_buffer(out: &mut String, buf: &[u8], offset: i64) {
    for (i, line) in buf.chunks(16).enumerate() {
        out.push_str(&format!("{:08x}:  ", offset as u64 + (i as u64) * 16));
        for b in line {
            out.push_str(&format!("{:02x} ", b));
        }
        out.push(' ');
        for &b in line {
            out.push(if b.is_ascii_alphanumeric() {
                b as char
            } else {
                '.'
            });
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvtstr_drops_exact_decimals_and_keeps_others() {
        assert_eq!(cvtstr(0.0), "0 bytes");
        assert_eq!(cvtstr(512.0), "512 bytes");
        assert_eq!(cvtstr(1024.0), "1 KiB");
        assert_eq!(cvtstr(1536.0), "1.500 KiB");
        assert_eq!(cvtstr((1u64 << 20) as f64), "1 MiB");
        assert_eq!(cvtstr(4.001 * (1u64 << 30) as f64), "4.001 GiB");
        assert_eq!(cvtstr(1023.5), "1023.500000 bytes");
        assert_eq!(cvtstr(f64::INFINITY), "inf EiB");
    }

    #[test]
    fn timestr_short_and_verbose_forms() {
        let t = Elapsed { sec: 0, usec: 1234 };
        assert_eq!(timestr(t, false), "0.0012 sec");
        assert_eq!(timestr(t, true), "0:00:00.00");
        let long = Elapsed {
            sec: 3723,
            usec: 500_000,
        };
        assert_eq!(timestr(long, false), "1:02:03.50");
    }

    #[test]
    fn report_has_qemu_shape() {
        let mut s = String::new();
        let t = Elapsed { sec: 0, usec: 100 };
        let r = Report {
            op: "read",
            offset: 0,
            count: 512,
            total: 512,
            machine: false,
        };
        print_report(&mut s, &r, t);
        assert_eq!(
            s,
            "read 512/512 bytes at offset 0\n512 bytes, 1 ops; 0.0001 sec (4.883 MiB/sec and 10000.0000 ops/sec)\n"
        );
        let mut c = String::new();
        let rc = Report { machine: true, ..r };
        print_report(&mut c, &rc, t);
        assert_eq!(c, "512,1,0:00:00.00,5120000.000,10000.000\n");
    }

    #[test]
    fn dump_buffer_formats_partial_last_line() {
        let mut s = String::new();
        let mut data = vec![0x41u8; 17];
        data[1] = 0;
        dump_buffer(&mut s, &data, 0x200);
        assert_eq!(
            s,
            "00000200:  41 00 41 41 41 41 41 41 41 41 41 41 41 41 41 41  A.AAAAAAAAAAAAAA\n00000210:  41  A\n"
        );
    }
}
