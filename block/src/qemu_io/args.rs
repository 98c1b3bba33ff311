//! Turning a qemu-io command line into arguments and numbers, with the
//! rules the reference qemu-io applies: words split on single spaces only,
//! GNU-style option scanning (options may follow operands), byte counts with
//! binary suffixes parsed through a floating-point prefix, pattern bytes in C
//! integer syntax.

/// Splits a command line into words the way qemu-io does: only the space
/// character separates words (tabs stay inside words), runs of spaces collapse,
/// and there is no quoting.
pub fn breakline(line: &str) -> Vec<String> {
    line.split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Why a number argument was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumError {
    /// Not a number, or junk after it.
    Invalid,
    /// Negative, or too large for a signed 64-bit byte count.
    TooLarge,
}

impl NumError {
    /// The message qemu-io prints for this error about argument `arg`.
    pub fn message(self, arg: &str) -> String {
        match self {
            NumError::Invalid => format!(
                "Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- {}\n",
                arg
            ),
            NumError::TooLarge => format!("Parsing error: argument too large -- {}\n", arg),
        }
    }
}

/// Result of scanning a C `strtod` prefix.
struct FloatPrefix {
    value: f64,
    /// Bytes consumed (0 when nothing converted).
    end: usize,
    /// The conversion over- or underflowed.
    range_error: bool,
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn starts_with_ci(s: &[u8], word: &str) -> bool {
    s.len() >= word.len() && s[..word.len()].eq_ignore_ascii_case(word.as_bytes())
}

/// Scans the longest prefix of `s` that C's `strtod` would convert
/// (decimal and hexadecimal forms, `inf`, `infinity`, `nan`, `nan(...)`).
fn strtod_prefix(s: &[u8]) -> FloatPrefix {
    let none = FloatPrefix {
        value: 0.0,
        end: 0,
        range_error: false,
    };
    let mut i = 0;
    while i < s.len() && is_c_space(s[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        negative = s[i] == b'-';
        i += 1;
    }
    let sign = if negative { -1.0 } else { 1.0 };
    let rest = &s[i..];
    if starts_with_ci(rest, "infinity") {
        return FloatPrefix {
            value: sign * f64::INFINITY,
            end: i + 8,
            range_error: false,
        };
    }
    if starts_with_ci(rest, "inf") {
        return FloatPrefix {
            value: sign * f64::INFINITY,
            end: i + 3,
            range_error: false,
        };
    }
    if starts_with_ci(rest, "nan") {
        let mut end = i + 3;
        if s.get(end) == Some(&b'(') {
            let mut j = end + 1;
            while j < s.len() && (s[j].is_ascii_alphanumeric() || s[j] == b'_') {
                j += 1;
            }
            if s.get(j) == Some(&b')') {
                end = j + 1;
            }
        }
        return FloatPrefix {
            value: f64::NAN,
            end,
            range_error: false,
        };
    }
    if rest.len() >= 2 && rest[0] == b'0' && (rest[1] == b'x' || rest[1] == b'X') {
        if let Some(p) = hex_float(&rest[2..]) {
            return FloatPrefix {
                value: sign * p.value,
                end: i + 2 + p.end,
                range_error: p.range_error,
            };
        }
        // "0x" without hex digits converts just the "0".
        return FloatPrefix {
            value: 0.0,
            end: i + 1,
            range_error: false,
        };
    }
    let start = i;
    let mut j = i;
    let mut digits = 0;
    let mut nonzero = false;
    while j < s.len() && s[j].is_ascii_digit() {
        nonzero |= s[j] != b'0';
        j += 1;
        digits += 1;
    }
    if j < s.len() && s[j] == b'.' {
        j += 1;
        while j < s.len() && s[j].is_ascii_digit() {
            nonzero |= s[j] != b'0';
            j += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return none;
    }
    if j < s.len() && (s[j] == b'e' || s[j] == b'E') {
        let mut k = j + 1;
        if k < s.len() && (s[k] == b'+' || s[k] == b'-') {
            k += 1;
        }
        if k < s.len() && s[k].is_ascii_digit() {
            while k < s.len() && s[k].is_ascii_digit() {
                k += 1;
            }
            j = k;
        }
    }
    let text = String::from_utf8_lossy(&s[start..j]);
    // Rust's parser accepts exactly the decimal syntax scanned above.
    let v: f64 = text.parse().unwrap_or(0.0);
    let range_error = v.is_infinite() || (nonzero && (v == 0.0 || v.abs() < f64::MIN_POSITIVE));
    FloatPrefix {
        value: sign * v,
        end: j,
        range_error,
    }
}

/// Hexadecimal float after "0x": digits, optional fraction, optional binary exponent.
fn hex_float(s: &[u8]) -> Option<FloatPrefix> {
    let mut j = 0;
    let mut mant = 0.0f64;
    let mut digits = 0;
    let mut exp: i64 = 0;
    while j < s.len() && s[j].is_ascii_hexdigit() {
        mant = mant * 16.0 + f64::from((s[j] as char).to_digit(16).unwrap_or(0));
        j += 1;
        digits += 1;
    }
    if j < s.len() && s[j] == b'.' {
        let mut k = j + 1;
        let mut frac_digits = 0;
        while k < s.len() && s[k].is_ascii_hexdigit() {
            mant = mant * 16.0 + f64::from((s[k] as char).to_digit(16).unwrap_or(0));
            exp -= 4;
            k += 1;
            frac_digits += 1;
        }
        if digits + frac_digits > 0 {
            j = k;
            digits += frac_digits;
        }
    }
    if digits == 0 {
        return None;
    }
    if j < s.len() && (s[j] == b'p' || s[j] == b'P') {
        let mut k = j + 1;
        let mut neg = false;
        if k < s.len() && (s[k] == b'+' || s[k] == b'-') {
            neg = s[k] == b'-';
            k += 1;
        }
        if k < s.len() && s[k].is_ascii_digit() {
            let mut e: i64 = 0;
            while k < s.len() && s[k].is_ascii_digit() {
                e = (e * 10 + i64::from(s[k] - b'0')).min(1 << 20);
                k += 1;
            }
            exp += if neg { -e } else { e };
            j = k;
        }
    }
    let value = mant * 2f64.powi(exp.clamp(-4000, 4000) as i32);
    let range_error = value.is_infinite() || (mant != 0.0 && value < f64::MIN_POSITIVE);
    Some(FloatPrefix {
        value,
        end: j,
        range_error,
    })
}

/// Multiplier for a size suffix letter (case-insensitive), powers of 1024.
fn suffix_mul(c: u8) -> Option<f64> {
    let shift = match c.to_ascii_uppercase() {
        b'B' => 0,
        b'K' => 10,
        b'M' => 20,
        b'G' => 30,
        b'T' => 40,
        b'P' => 50,
        b'E' => 60,
        _ => return None,
    };
    Some((1u64 << shift) as f64)
}

/// qemu-io's byte-count parser: a number (fractions allowed only with a
/// suffix larger than bytes), an optional suffix b/k/M/G/T/P/E, nothing after.
pub fn cvtnum(s: &str) -> Result<i64, NumError> {
    let b = s.as_bytes();
    let p = strtod_prefix(b);
    let mut end = p.end;
    let parsed: Result<i64, NumError> = (|| {
        if p.value.is_nan() || p.end == 0 || p.range_error {
            return Err(NumError::Invalid);
        }
        let fractional = p.value.is_finite() && p.value.fract() != 0.0;
        let mul = match b.get(p.end).and_then(|&c| suffix_mul(c)) {
            Some(m) => {
                end += 1;
                m
            }
            None => 1.0,
        };
        if mul == 1.0 && fractional {
            return Err(NumError::Invalid);
        }
        let v = p.value * mul;
        if v >= i64::MAX as f64 || p.value < 0.0 {
            return Err(NumError::TooLarge);
        }
        Ok(v as i64)
    })();
    if end != b.len() {
        return Err(NumError::Invalid);
    }
    parsed
}

/// `strtol(s, &end, 0)`: C integer syntax with an optional 0x/0 prefix;
/// returns the value (clamped like strtol) and the bytes consumed.
fn strtol_base0(s: &[u8]) -> (i64, usize) {
    let mut i = 0;
    while i < s.len() && is_c_space(s[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        negative = s[i] == b'-';
        i += 1;
    }
    let mut base = 10u32;
    if i < s.len() && s[i] == b'0' {
        if matches!(s.get(i + 1), Some(b'x') | Some(b'X'))
            && s.get(i + 2).is_some_and(|c| c.is_ascii_hexdigit())
        {
            base = 16;
            i += 2;
        } else {
            base = 8;
        }
    }
    let start = i;
    let mut acc: i128 = 0;
    while i < s.len() {
        let d = match (s[i] as char).to_digit(base) {
            Some(d) => d,
            None => break,
        };
        acc = (acc * i128::from(base) + i128::from(d)).min(i128::from(u64::MAX));
        i += 1;
    }
    if i == start {
        return (0, 0);
    }
    let v = if negative { -acc } else { acc };
    (
        v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
        i,
    )
}

/// Parses a `-P` pattern byte; `Err` holds the message qemu-io prints.
pub fn parse_pattern(arg: &str) -> Result<u8, String> {
    let (v, end) = strtol_base0(arg.as_bytes());
    if !(0..=255).contains(&v) || end != arg.len() {
        return Err(format!("{} is not a valid pattern byte\n", arg));
    }
    Ok(v as u8)
}

/// One step of option scanning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opt {
    /// A known option and its argument, if it takes one.
    Flag(char, Option<String>),
    /// An unknown option or a missing argument: the message getopt prints
    /// on stderr. The command then prints its usage line.
    Bad(String),
}

/// GNU getopt over one command's words (`argv[0]` is the command name as
/// typed): options are returned in order, operands collected aside, `--`
/// ends option scanning.
pub struct Getopt<'a> {
    argv: &'a [String],
    optstring: &'static str,
    idx: usize,
    /// Position inside a cluster of short options ("-qv").
    sub: usize,
    operands: Vec<String>,
    done: bool,
}

impl<'a> Getopt<'a> {
    pub fn new(argv: &'a [String], optstring: &'static str) -> Getopt<'a> {
        Getopt {
            argv,
            optstring,
            idx: 1,
            sub: 0,
            operands: Vec::new(),
            done: false,
        }
    }

    fn takes_arg(&self, c: char) -> Option<bool> {
        if c == ':' {
            return None;
        }
        let pos = self.optstring.find(c)?;
        Some(self.optstring[pos + c.len_utf8()..].starts_with(':'))
    }

    /// The operands, in order, once scanning is finished (scans the rest).
    pub fn operands(mut self) -> Vec<String> {
        while self.next().is_some() {}
        self.operands
    }

    fn name(&self) -> &str {
        self.argv.first().map(String::as_str).unwrap_or("")
    }
}

impl Iterator for Getopt<'_> {
    type Item = Opt;

    fn next(&mut self) -> Option<Opt> {
        loop {
            if self.done {
                return None;
            }
            if self.sub == 0 {
                let arg = self.argv.get(self.idx)?;
                if arg == "--" {
                    self.operands
                        .extend(self.argv[self.idx + 1..].iter().cloned());
                    self.done = true;
                    return None;
                }
                if !arg.starts_with('-') || arg.len() == 1 {
                    self.operands.push(arg.clone());
                    self.idx += 1;
                    continue;
                }
                self.sub = 1;
            }
            let arg = &self.argv[self.idx];
            let c = match arg[self.sub..].chars().next() {
                Some(c) => c,
                None => {
                    self.idx += 1;
                    self.sub = 0;
                    continue;
                }
            };
            self.sub += c.len_utf8();
            let at_end = self.sub >= arg.len();
            match self.takes_arg(c) {
                None => {
                    if at_end {
                        self.idx += 1;
                        self.sub = 0;
                    }
                    return Some(Opt::Bad(format!(
                        "{}: invalid option -- '{}'\n",
                        self.name(),
                        c
                    )));
                }
                Some(false) => {
                    if at_end {
                        self.idx += 1;
                        self.sub = 0;
                    }
                    return Some(Opt::Flag(c, None));
                }
                Some(true) => {
                    if !at_end {
                        let v = arg[self.sub..].to_string();
                        self.idx += 1;
                        self.sub = 0;
                        return Some(Opt::Flag(c, Some(v)));
                    }
                    self.idx += 1;
                    self.sub = 0;
                    match self.argv.get(self.idx) {
                        Some(v) => {
                            self.idx += 1;
                            return Some(Opt::Flag(c, Some(v.clone())));
                        }
                        None => {
                            return Some(Opt::Bad(format!(
                                "{}: option requires an argument -- '{}'\n",
                                self.name(),
                                c
                            )))
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        breakline(s)
    }

    #[test]
    fn breakline_splits_on_spaces_only() {
        assert_eq!(words("  read  0\t1 512 "), vec!["read", "0\t1", "512"]);
        assert!(words("   ").is_empty());
    }

    #[test]
    fn cvtnum_accepts_suffixes_and_fractions_with_suffix() {
        assert_eq!(cvtnum("512"), Ok(512));
        assert_eq!(cvtnum("1k"), Ok(1024));
        assert_eq!(cvtnum("1K"), Ok(1024));
        assert_eq!(cvtnum("64b"), Ok(64));
        assert_eq!(cvtnum("1.5k"), Ok(1536));
        assert_eq!(cvtnum("1.3k"), Ok(1331));
        assert_eq!(cvtnum("2M"), Ok(2 << 20));
        assert_eq!(cvtnum("4G"), Ok(4 << 30));
        assert_eq!(cvtnum("1T"), Ok(1 << 40));
        assert_eq!(cvtnum("0x200"), Ok(512));
        assert_eq!(cvtnum("1e3"), Ok(1000));
        assert_eq!(cvtnum("010"), Ok(10));
    }

    #[test]
    fn cvtnum_refuses_junk_fractions_and_negatives() {
        assert_eq!(cvtnum("1.5"), Err(NumError::Invalid));
        assert_eq!(cvtnum("1.5b"), Err(NumError::Invalid));
        assert_eq!(cvtnum("abc"), Err(NumError::Invalid));
        assert_eq!(cvtnum("12x"), Err(NumError::Invalid));
        assert_eq!(cvtnum("1kk"), Err(NumError::Invalid));
        assert_eq!(cvtnum("nan"), Err(NumError::Invalid));
        assert_eq!(cvtnum(""), Err(NumError::Invalid));
        assert_eq!(cvtnum("-1"), Err(NumError::TooLarge));
        assert_eq!(cvtnum("8E"), Err(NumError::TooLarge));
        assert_eq!(cvtnum("inf"), Err(NumError::TooLarge));
        assert_eq!(cvtnum("1e999"), Err(NumError::Invalid));
    }

    #[test]
    fn pattern_accepts_c_integer_syntax_up_to_255() {
        assert_eq!(parse_pattern("0xff"), Ok(255));
        assert_eq!(parse_pattern("077"), Ok(63));
        assert_eq!(parse_pattern("0"), Ok(0));
        assert!(parse_pattern("256").is_err());
        assert!(parse_pattern("-1").is_err());
        assert!(parse_pattern("0x").is_err());
        assert!(parse_pattern("08").is_err());
        assert_eq!(
            parse_pattern("x1"),
            Err("x1 is not a valid pattern byte\n".to_string())
        );
    }

    #[test]
    fn getopt_permutes_and_clusters() {
        let argv = words("read 0 -qv -P5 512 -s 1");
        let mut g = Getopt::new(&argv, "bCl:pP:qs:v");
        let opts: Vec<Opt> = g.by_ref().collect();
        assert_eq!(
            opts,
            vec![
                Opt::Flag('q', None),
                Opt::Flag('v', None),
                Opt::Flag('P', Some("5".into())),
                Opt::Flag('s', Some("1".into())),
            ]
        );
        assert_eq!(g.operands(), vec!["0", "512"]);
    }

    #[test]
    fn getopt_reports_unknown_and_missing_argument() {
        let argv = words("r -x 0 -P");
        let opts: Vec<Opt> = Getopt::new(&argv, "P:").collect();
        assert_eq!(
            opts,
            vec![
                Opt::Bad("r: invalid option -- 'x'\n".into()),
                Opt::Bad("r: option requires an argument -- 'P'\n".into()),
            ]
        );
    }

    #[test]
    fn getopt_double_dash_ends_options() {
        let argv = words("read -q -- -1 2");
        let mut g = Getopt::new(&argv, "q");
        assert_eq!(g.next(), Some(Opt::Flag('q', None)));
        assert_eq!(g.operands(), vec!["-1", "2"]);
    }
}
