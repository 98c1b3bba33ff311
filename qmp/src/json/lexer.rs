//! Byte-level tokenizer for monitor input, with QEMU 2.8's token grammar.
//!
//! Grammar (as QEMU's lexer accepts it):
//! - strings in `"..."` or `'...'`; raw bytes 0x01..=0xBF and 0xC2..=0xF4 (any
//!   control character included), escapes `\b \f \n \r \t \/ \\ \' \"` and
//!   `\uXXXX`;
//! - numbers `-?(0|[1-9][0-9]*)` with optional `.digits`, and an exponent only
//!   after a fraction or a non-zero integer part (`0e1` lexes as `0` then `e1`);
//! - keywords `[a-z]+` (the parser decides which are valid);
//! - interpolation tokens `%d %i %p %s %f %ld %lld %I64d`;
//! - structural characters and whitespace (space, tab, CR, LF).
//!
//! Numbers and keywords end only when the next byte arrives (look-ahead); a
//! byte below 0x80 that cannot continue them ends them, a byte at or above 0x80
//! is an error. An error drops the offending byte and whatever part of the
//! token was read, and the lexer starts over at the following byte.
//!
//! The lexer never copies more than it must: bytes of strings, numbers and
//! keywords go to the caller's arena (the message buffer); structural tokens and
//! whitespace are only counted.

/// QEMU's cap on the length of one token, in input bytes.
pub(crate) const MAX_TOKEN_SIZE: usize = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokKind {
    LCurly,
    RCurly,
    LSquare,
    RSquare,
    Colon,
    Comma,
    Integer,
    Float,
    Keyword,
    /// A string whose stored bytes (between the quotes) hold no backslash.
    PlainString,
    /// A string whose stored bytes need unescaping.
    EscapedString,
    /// `%d` and friends: only valid in QEMU's internal formatting API.
    Interpolation,
    /// An invalid byte or a malformed token.
    Error,
    /// A token that grew past [`MAX_TOKEN_SIZE`]; QEMU passes it on as a token
    /// of no known type.
    Oversized,
}

/// One token: its kind, where its stored bytes are in the arena, and its size
/// in input bytes (what QEMU's limits count).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lexeme {
    pub kind: TokKind,
    pub start: usize,
    pub end: usize,
    pub size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Whitespace,
    Str,
    StrEscape,
    /// Inside `\u`, with this many hex digits still to come.
    StrHex(u8),
    Zero,
    Int,
    Minus,
    /// After the decimal point, before its first digit.
    Dot,
    Fraction,
    /// After `e`/`E`, before a sign or digit.
    ExpMark,
    ExpSign,
    ExpDigits,
    Keyword,
    Percent,
    PercentL,
    PercentLl,
    PercentI,
    PercentI6,
    PercentI64,
}

/// Byte classes inside a string.
const STR_INVALID: u8 = 0;
const STR_PLAIN: u8 = 1;
const STR_BACKSLASH: u8 = 2;
const STR_QUOTE: u8 = 3;

const fn string_classes() -> [u8; 256] {
    let mut t = [STR_INVALID; 256];
    let mut i = 1;
    while i < 256 {
        // 0xC0, 0xC1 and 0xF5.. can never start a valid UTF-8 sequence.
        if i <= 0xBF || (i >= 0xC2 && i <= 0xF4) {
            t[i] = STR_PLAIN;
        }
        i += 1;
    }
    t[b'\\' as usize] = STR_BACKSLASH;
    t[b'"' as usize] = STR_QUOTE;
    t[b'\'' as usize] = STR_QUOTE;
    t
}

static STRING_CLASS: [u8; 256] = string_classes();

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

#[derive(Debug)]
pub(crate) struct Lexer {
    state: State,
    /// The quote character that opened the current string.
    quote: u8,
    /// Arena offset of the current token's stored bytes.
    tok_start: usize,
    /// Length of the current token in input bytes.
    tok_len: usize,
    escaped: bool,
}

impl Lexer {
    pub(crate) fn new() -> Self {
        Lexer {
            state: State::Start,
            quote: b'"',
            tok_start: 0,
            tok_len: 0,
            escaped: false,
        }
    }

    /// Reads from `input[*pos..]` until one token is complete (returned) or the
    /// input is used up (`None`; a partial token stays pending in the arena).
    /// When a token is returned no partial token is pending, so the caller may
    /// clear the arena.
    pub(crate) fn next(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        arena: &mut Vec<u8>,
    ) -> Option<Lexeme> {
        while *pos < input.len() {
            let b = input[*pos];
            match self.state {
                State::Start => {
                    *pos += 1;
                    let single = match b {
                        b'{' => TokKind::LCurly,
                        b'}' => TokKind::RCurly,
                        b'[' => TokKind::LSquare,
                        b']' => TokKind::RSquare,
                        b':' => TokKind::Colon,
                        b',' => TokKind::Comma,
                        _ => {
                            self.begin(b, arena);
                            if self.state == State::Start {
                                return Some(self.fail(arena));
                            }
                            continue;
                        }
                    };
                    return Some(Lexeme {
                        kind: single,
                        start: arena.len(),
                        end: arena.len(),
                        size: 1,
                    });
                }
                State::Whitespace => {
                    let budget = MAX_TOKEN_SIZE + 1 - self.tok_len;
                    let run = input[*pos..]
                        .iter()
                        .take(budget)
                        .take_while(|&&c| is_ws(c))
                        .count();
                    *pos += run;
                    self.tok_len += run;
                    if self.tok_len > MAX_TOKEN_SIZE {
                        return Some(self.oversized(arena));
                    }
                    if let Some(&c) = input.get(*pos) {
                        if c < 0x80 {
                            // Whitespace is skipped; `c` starts the next token.
                            self.state = State::Start;
                        } else {
                            *pos += 1;
                            return Some(self.fail(arena));
                        }
                    }
                }
                State::Str => {
                    let rest = &input[*pos..];
                    let budget = MAX_TOKEN_SIZE + 1 - self.tok_len;
                    let quote = self.quote;
                    let run = rest
                        .iter()
                        .take(budget)
                        .take_while(|&&c| {
                            let class = STRING_CLASS[c as usize];
                            class == STR_PLAIN || (class == STR_QUOTE && c != quote)
                        })
                        .count();
                    arena.extend_from_slice(&rest[..run]);
                    *pos += run;
                    self.tok_len += run;
                    if self.tok_len > MAX_TOKEN_SIZE {
                        return Some(self.oversized(arena));
                    }
                    let Some(&c) = input.get(*pos) else {
                        continue;
                    };
                    *pos += 1;
                    match STRING_CLASS[c as usize] {
                        STR_QUOTE => {
                            self.state = State::Start;
                            let kind = if self.escaped {
                                TokKind::EscapedString
                            } else {
                                TokKind::PlainString
                            };
                            return Some(self.finish(kind, 1, arena));
                        }
                        STR_BACKSLASH => {
                            self.escaped = true;
                            self.state = State::StrEscape;
                            if let Some(l) = self.keep(c, arena) {
                                return Some(l);
                            }
                        }
                        _ => return Some(self.fail(arena)),
                    }
                }
                State::StrEscape => {
                    *pos += 1;
                    self.state = match b {
                        b'b' | b'f' | b'n' | b'r' | b't' | b'/' | b'\\' | b'\'' | b'"' => {
                            State::Str
                        }
                        b'u' => State::StrHex(4),
                        _ => return Some(self.fail(arena)),
                    };
                    if let Some(l) = self.keep(b, arena) {
                        return Some(l);
                    }
                }
                State::StrHex(left) => {
                    *pos += 1;
                    if !b.is_ascii_hexdigit() {
                        return Some(self.fail(arena));
                    }
                    self.state = if left > 1 {
                        State::StrHex(left - 1)
                    } else {
                        State::Str
                    };
                    if let Some(l) = self.keep(b, arena) {
                        return Some(l);
                    }
                }
                State::Minus => {
                    *pos += 1;
                    self.state = match b {
                        b'0' => State::Zero,
                        b'1'..=b'9' => State::Int,
                        _ => return Some(self.fail(arena)),
                    };
                    if let Some(l) = self.keep(b, arena) {
                        return Some(l);
                    }
                }
                State::Zero => match b {
                    b'.' => {
                        *pos += 1;
                        self.state = State::Dot;
                        if let Some(l) = self.keep(b, arena) {
                            return Some(l);
                        }
                    }
                    b'0'..=b'9' => {
                        *pos += 1;
                        return Some(self.fail(arena));
                    }
                    _ => return Some(self.end_lookahead(TokKind::Integer, b, pos, arena)),
                },
                State::Int | State::Fraction | State::ExpDigits => {
                    if let Some(l) = self.digit_run(input, pos, arena) {
                        return Some(l);
                    }
                    let Some(&c) = input.get(*pos) else {
                        continue;
                    };
                    let next = match (self.state, c) {
                        (State::Int, b'.') => State::Dot,
                        (State::Int | State::Fraction, b'e' | b'E') => State::ExpMark,
                        _ => {
                            let kind = if self.state == State::Int {
                                TokKind::Integer
                            } else {
                                TokKind::Float
                            };
                            return Some(self.end_lookahead(kind, c, pos, arena));
                        }
                    };
                    *pos += 1;
                    self.state = next;
                    if let Some(l) = self.keep(c, arena) {
                        return Some(l);
                    }
                }
                State::Dot | State::ExpSign => {
                    *pos += 1;
                    if !b.is_ascii_digit() {
                        return Some(self.fail(arena));
                    }
                    self.state = if self.state == State::Dot {
                        State::Fraction
                    } else {
                        State::ExpDigits
                    };
                    if let Some(l) = self.keep(b, arena) {
                        return Some(l);
                    }
                }
                State::ExpMark => {
                    *pos += 1;
                    self.state = match b {
                        b'+' | b'-' => State::ExpSign,
                        b'0'..=b'9' => State::ExpDigits,
                        _ => return Some(self.fail(arena)),
                    };
                    if let Some(l) = self.keep(b, arena) {
                        return Some(l);
                    }
                }
                State::Keyword => {
                    let rest = &input[*pos..];
                    let budget = MAX_TOKEN_SIZE + 1 - self.tok_len;
                    let run = rest
                        .iter()
                        .take(budget)
                        .take_while(|c| c.is_ascii_lowercase())
                        .count();
                    arena.extend_from_slice(&rest[..run]);
                    *pos += run;
                    self.tok_len += run;
                    if self.tok_len > MAX_TOKEN_SIZE {
                        return Some(self.oversized(arena));
                    }
                    if let Some(&c) = input.get(*pos) {
                        return Some(self.end_lookahead(TokKind::Keyword, c, pos, arena));
                    }
                }
                State::Percent
                | State::PercentL
                | State::PercentLl
                | State::PercentI
                | State::PercentI6
                | State::PercentI64 => {
                    *pos += 1;
                    self.tok_len += 1;
                    let next = match (self.state, b) {
                        (State::Percent, b'd' | b'i' | b'p' | b's' | b'f')
                        | (State::PercentL | State::PercentLl | State::PercentI64, b'd') => {
                            self.state = State::Start;
                            return Some(self.finish(TokKind::Interpolation, 0, arena));
                        }
                        (State::Percent, b'l') => State::PercentL,
                        (State::Percent, b'I') => State::PercentI,
                        (State::PercentL, b'l') => State::PercentLl,
                        (State::PercentI, b'6') => State::PercentI6,
                        (State::PercentI6, b'4') => State::PercentI64,
                        _ => return Some(self.fail(arena)),
                    };
                    self.state = next;
                }
            }
        }
        None
    }

    /// Ends the input: a pending number or keyword is complete, pending
    /// whitespace is dropped, and any other partial token is an error.
    pub(crate) fn flush(&mut self, arena: &mut Vec<u8>) -> Option<Lexeme> {
        let kind = match self.state {
            State::Start | State::Whitespace => None,
            State::Zero | State::Int => Some(TokKind::Integer),
            State::Fraction | State::ExpDigits => Some(TokKind::Float),
            State::Keyword => Some(TokKind::Keyword),
            _ => return Some(self.fail(arena)),
        };
        self.state = State::Start;
        kind.map(|k| self.finish(k, 0, arena))
    }

    /// Starts a token at byte `b` (already consumed). Leaves the state at
    /// `Start` when `b` cannot start a token.
    fn begin(&mut self, b: u8, arena: &mut Vec<u8>) {
        self.tok_start = arena.len();
        self.tok_len = 1;
        self.state = match b {
            b'"' | b'\'' => {
                self.quote = b;
                self.escaped = false;
                State::Str
            }
            b'0' => State::Zero,
            b'1'..=b'9' => State::Int,
            b'-' => State::Minus,
            b'a'..=b'z' => State::Keyword,
            b'%' => State::Percent,
            b' ' | b'\t' | b'\r' | b'\n' => State::Whitespace,
            _ => State::Start,
        };
        if matches!(
            self.state,
            State::Zero | State::Int | State::Minus | State::Keyword
        ) {
            arena.push(b);
        }
    }

    /// Stores one consumed byte of the current token, enforcing the size cap.
    fn keep(&mut self, b: u8, arena: &mut Vec<u8>) -> Option<Lexeme> {
        arena.push(b);
        self.tok_len += 1;
        if self.tok_len > MAX_TOKEN_SIZE {
            return Some(self.oversized(arena));
        }
        None
    }

    /// Consumes a run of ASCII digits into the current token.
    fn digit_run(&mut self, input: &[u8], pos: &mut usize, arena: &mut Vec<u8>) -> Option<Lexeme> {
        let rest = &input[*pos..];
        let budget = MAX_TOKEN_SIZE + 1 - self.tok_len;
        let run = rest
            .iter()
            .take(budget)
            .take_while(|c| c.is_ascii_digit())
            .count();
        arena.extend_from_slice(&rest[..run]);
        *pos += run;
        self.tok_len += run;
        if self.tok_len > MAX_TOKEN_SIZE {
            return Some(self.oversized(arena));
        }
        None
    }

    /// Ends a number or keyword because of the look-ahead byte `c`, which is
    /// left unread unless it is invalid (>= 0x80), in which case the whole token
    /// is an error.
    fn end_lookahead(
        &mut self,
        kind: TokKind,
        c: u8,
        pos: &mut usize,
        arena: &mut Vec<u8>,
    ) -> Lexeme {
        if c >= 0x80 {
            *pos += 1;
            return self.fail(arena);
        }
        self.state = State::Start;
        self.finish(kind, 0, arena)
    }

    fn finish(&mut self, kind: TokKind, extra: usize, arena: &[u8]) -> Lexeme {
        Lexeme {
            kind,
            start: self.tok_start,
            end: arena.len(),
            size: self.tok_len + extra,
        }
    }

    fn fail(&mut self, arena: &mut Vec<u8>) -> Lexeme {
        arena.truncate(self.tok_start);
        self.state = State::Start;
        Lexeme {
            kind: TokKind::Error,
            start: self.tok_start,
            end: self.tok_start,
            size: 0,
        }
    }

    fn oversized(&mut self, arena: &mut Vec<u8>) -> Lexeme {
        arena.truncate(self.tok_start);
        self.state = State::Start;
        Lexeme {
            kind: TokKind::Oversized,
            start: self.tok_start,
            end: self.tok_start,
            size: self.tok_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(input: &[u8]) -> Vec<(TokKind, String)> {
        let mut lx = Lexer::new();
        let mut arena = Vec::new();
        let mut pos = 0;
        let mut out = Vec::new();
        while let Some(l) = lx.next(input, &mut pos, &mut arena) {
            out.push((
                l.kind,
                String::from_utf8_lossy(&arena[l.start..l.end]).into_owned(),
            ));
            arena.clear();
        }
        out
    }

    fn kinds(input: &[u8]) -> Vec<TokKind> {
        lex(input).into_iter().map(|(k, _)| k).collect()
    }

    use TokKind::*;

    #[test]
    fn structural_tokens_and_whitespace() {
        assert_eq!(
            kinds(b" {\t}\r[\n] : , "),
            vec![LCurly, RCurly, LSquare, RSquare, Colon, Comma]
        );
    }

    #[test]
    fn numbers_need_lookahead_to_end() {
        assert_eq!(kinds(b"123"), vec![]);
        assert_eq!(lex(b"123 "), vec![(Integer, "123".into())]);
        assert_eq!(
            lex(b"-0,"),
            vec![(Integer, "-0".into()), (Comma, "".into())]
        );
        assert_eq!(
            lex(b"1.5e+3]"),
            vec![(Float, "1.5e+3".into()), (RSquare, "".into())]
        );
        assert_eq!(lex(b"7E2 "), vec![(Float, "7E2".into())]);
        assert_eq!(lex(b"0.25 "), vec![(Float, "0.25".into())]);
    }

    #[test]
    fn zero_takes_no_exponent_and_no_more_digits() {
        assert_eq!(
            lex(b"0e5 "),
            vec![
                (Integer, "0".into()),
                (Keyword, "e".into()),
                (Integer, "5".into())
            ]
        );
        assert_eq!(kinds(b"01 "), vec![Error]);
    }

    #[test]
    fn malformed_numbers_are_errors() {
        assert_eq!(kinds(b"- "), vec![Error]);
        assert_eq!(kinds(b"1. "), vec![Error]);
        assert_eq!(kinds(b"1e "), vec![Error]);
        assert_eq!(kinds(b"1e+ "), vec![Error]);
        assert_eq!(kinds(b"1\xc3\xa9 "), vec![Error, Error]);
    }

    #[test]
    fn strings_single_and_double_quoted() {
        assert_eq!(lex(b"\"a'b\""), vec![(PlainString, "a'b".into())]);
        assert_eq!(lex(b"'a\"b'"), vec![(PlainString, "a\"b".into())]);
        assert_eq!(lex(b"'it\\'s'"), vec![(EscapedString, "it\\'s".into())]);
        assert_eq!(lex(b"\"\\u00e9\""), vec![(EscapedString, "\\u00e9".into())]);
    }

    #[test]
    fn bad_string_bytes_and_escapes_are_errors() {
        assert_eq!(kinds(b"\"a\x00"), vec![Error]);
        assert_eq!(kinds(b"\"a\xff"), vec![Error]);
        assert_eq!(kinds(b"\"a\xc0"), vec![Error]);
        assert_eq!(kinds(b"\"\\x\""), vec![Error]);
        assert_eq!(kinds(b"\"\\u12g"), vec![Error]);
    }

    #[test]
    fn error_drops_the_bad_byte_and_restarts() {
        assert_eq!(kinds(b"\xff{"), vec![Error, LCurly]);
        assert_eq!(kinds(b"X1 "), vec![Error, Integer]);
        assert_eq!(kinds(b"true\xff"), vec![Error]);
        assert_eq!(kinds(b"true\x00"), vec![Keyword, Error]);
    }

    #[test]
    fn interpolation_tokens() {
        assert_eq!(kinds(b"%d%i%p%s%f%ld%lld%I64d"), vec![Interpolation; 8]);
        assert_eq!(kinds(b"%x"), vec![Error]);
        assert_eq!(kinds(b"%I65"), vec![Error]);
    }

    #[test]
    fn tokens_split_across_feeds_resume() {
        let mut lx = Lexer::new();
        let mut arena = Vec::new();
        let mut got = Vec::new();
        for chunk in [&b"\"ab"[..], b"\\", b"u00", b"41c\"", b"12", b"3,"] {
            let mut pos = 0;
            while let Some(l) = lx.next(chunk, &mut pos, &mut arena) {
                got.push((l.kind, arena[l.start..l.end].to_vec(), l.size));
                arena.clear();
            }
        }
        assert_eq!(
            got,
            vec![
                (EscapedString, b"ab\\u0041c".to_vec(), 11),
                (Integer, b"123".to_vec(), 3),
                (Comma, vec![], 1),
            ]
        );
    }

    #[test]
    fn oversized_string_is_cut_at_the_limit() {
        let mut input = vec![b'"'];
        input.resize(MAX_TOKEN_SIZE + 10, b'a');
        let mut lx = Lexer::new();
        let mut arena = Vec::new();
        let mut pos = 0;
        let l = lx
            .next(&input, &mut pos, &mut arena)
            .map(|l| (l.kind, l.size));
        assert_eq!(l, Some((Oversized, MAX_TOKEN_SIZE + 1)));
        assert_eq!(pos, MAX_TOKEN_SIZE + 1);
        assert!(arena.is_empty());
    }
}
