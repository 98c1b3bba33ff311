//! Splits the monitor's byte stream into top-level JSON messages, QEMU style.
//!
//! A message ends at the token that brings both the `{}` and the `[]` counts
//! back to zero, or at a closing token that drives either count negative (the
//! parser then reports the stray token). A scalar at top level is a message of
//! its own. A lexical error, or a message exceeding QEMU's limits (64 MiB of
//! token bytes, 2 Mi tokens, nesting deeper than 1024), throws away everything
//! buffered for the message and yields "Invalid JSON syntax"; reading resumes
//! with the next byte, so memory stays bounded by the limits whatever a client
//! sends, and nesting is capped before the parser sees it.

use super::lexer::{Lexeme, Lexer, TokKind, MAX_TOKEN_SIZE};
use super::{parser, JsonError};
use serde_json::Value;

const MAX_TOKEN_COUNT: usize = 2 << 20;
const MAX_NESTING: i64 = 1 << 10;
/// Buffers grown past this by one large message are released afterwards, so a
/// single big message does not pin its memory for the monitor's lifetime.
const KEEP_CAPACITY: usize = 1 << 20;

/// One token of the message being collected; its stored bytes (if any) are
/// `arena[start..end]`. Offsets fit in u32 because the limits discard a message
/// long before its buffer reaches 4 GiB.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Token {
    pub kind: TokKind,
    pub start: u32,
    pub end: u32,
}

/// Incremental reader of monitor input: feed it whatever a socket read
/// returned, get back every complete message (or error) in order.
#[derive(Debug)]
pub struct JsonStreamer {
    lexer: Lexer,
    arena: Vec<u8>,
    tokens: Vec<Token>,
    braces: i64,
    brackets: i64,
    token_size: usize,
}

impl Default for JsonStreamer {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonStreamer {
    pub fn new() -> Self {
        JsonStreamer {
            lexer: Lexer::new(),
            arena: Vec::new(),
            tokens: Vec::new(),
            braces: 0,
            brackets: 0,
            token_size: 0,
        }
    }

    /// Feed raw bytes from a socket read; every complete top-level JSON value
    /// (or error) is appended to `out`, in order. A number or keyword at the
    /// very end of `data` stays pending until the next byte shows where it ends.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<Result<Value, JsonError>>) {
        let mut pos = 0;
        while let Some(lexeme) = self.lexer.next(data, &mut pos, &mut self.arena) {
            self.take(lexeme, out);
        }
    }

    /// Declares the end of input (QEMU's `json_message_parser_flush`): a
    /// trailing number or keyword completes; a partial string is an error; an
    /// unclosed container stays pending.
    pub fn flush(&mut self, out: &mut Vec<Result<Value, JsonError>>) {
        if let Some(lexeme) = self.lexer.flush(&mut self.arena) {
            self.take(lexeme, out);
        }
    }

    fn take(&mut self, lx: Lexeme, out: &mut Vec<Result<Value, JsonError>>) {
        match lx.kind {
            TokKind::LCurly => self.braces += 1,
            TokKind::RCurly => self.braces -= 1,
            TokKind::LSquare => self.brackets += 1,
            TokKind::RSquare => self.brackets -= 1,
            TokKind::Error => {
                out.push(Err(JsonError::invalid_syntax()));
                self.reset();
                return;
            }
            _ => {}
        }
        self.tokens.push(Token {
            kind: lx.kind,
            start: lx.start as u32,
            end: lx.end as u32,
        });
        self.token_size += lx.size;

        if self.braces < 0 || self.brackets < 0 || (self.braces == 0 && self.brackets == 0) {
            out.push(parser::parse(&self.tokens, &self.arena));
            self.reset();
        } else if self.token_size > MAX_TOKEN_SIZE
            || self.tokens.len() > MAX_TOKEN_COUNT
            || self.braces + self.brackets > MAX_NESTING
        {
            out.push(Err(JsonError::invalid_syntax()));
            self.reset();
        }
    }

    /// Forgets the current message. Only called between tokens, when the lexer
    /// holds no partial token in the arena.
    fn reset(&mut self) {
        self.braces = 0;
        self.brackets = 0;
        self.token_size = 0;
        self.tokens.clear();
        self.arena.clear();
        if self.tokens.capacity() > KEEP_CAPACITY / std::mem::size_of::<Token>() {
            self.tokens = Vec::new();
        }
        if self.arena.capacity() > KEEP_CAPACITY {
            self.arena = Vec::new();
        }
    }
}

/// Reads a complete JSON text the way QEMU's `qobject_from_json` does (for
/// `json:` filenames and JSON command-line options): the whole text is fed
/// and flushed, and the result is that of the last message in it. A text with
/// no complete message is an error.
pub fn from_json_text(text: &[u8]) -> Result<Value, JsonError> {
    let mut streamer = JsonStreamer::new();
    let mut out = Vec::new();
    streamer.feed(text, &mut out);
    streamer.flush(&mut out);
    out.pop()
        .unwrap_or_else(|| Err(JsonError::invalid_syntax()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feed_all(chunks: &[&[u8]]) -> Vec<Result<Value, String>> {
        let mut s = JsonStreamer::new();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut out);
        }
        out.into_iter().map(|r| r.map_err(|e| e.message)).collect()
    }

    fn feed_one(input: &[u8]) -> Vec<Result<Value, String>> {
        feed_all(&[input])
    }

    const SYNTAX: &str = "Invalid JSON syntax";

    #[test]
    fn message_split_across_reads() {
        let out = feed_all(&[b"{\"exec", b"ute\": \"qmp_capa", b"bilities\"", b"}"]);
        assert_eq!(out, vec![Ok(json!({"execute": "qmp_capabilities"}))]);
    }

    #[test]
    fn message_split_at_every_byte() {
        let input = br#"{"execute": "x", "arguments": {"a": [1, 2.5, true, null, 'q']}}"#;
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        let out = feed_all(&chunks);
        assert_eq!(
            out,
            vec![Ok(
                json!({"execute": "x", "arguments": {"a": [1, 2.5, true, null, "q"]}})
            )]
        );
    }

    #[test]
    fn several_messages_in_one_read() {
        let out = feed_one(b"{\"a\": 1}{\"b\": 2}\r\n  [3]\n{}");
        assert_eq!(
            out,
            vec![
                Ok(json!({"a": 1})),
                Ok(json!({"b": 2})),
                Ok(json!([3])),
                Ok(json!({}))
            ]
        );
    }

    #[test]
    fn top_level_scalars_are_messages_of_their_own() {
        let out = feed_one(b"1 \"s\" true null 2.5 ");
        assert_eq!(
            out,
            vec![
                Ok(json!(1)),
                Ok(json!("s")),
                Ok(json!(true)),
                Ok(Value::Null),
                Ok(json!(2.5))
            ]
        );
    }

    #[test]
    fn trailing_number_waits_for_next_byte() {
        let mut s = JsonStreamer::new();
        let mut out = Vec::new();
        s.feed(b"42", &mut out);
        assert!(out.is_empty());
        s.feed(b"\n", &mut out);
        assert_eq!(out, vec![Ok(json!(42))]);
    }

    #[test]
    fn stray_closers_give_parse_errors() {
        let out = feed_one(b"] } : ,");
        let expecting = Err("JSON parse error, expecting value".to_string());
        assert_eq!(
            out,
            vec![
                expecting.clone(),
                expecting.clone(),
                expecting.clone(),
                expecting
            ]
        );
    }

    #[test]
    fn mismatched_closer_ends_the_message() {
        let out = feed_one(b"[1}{\"a\": 1]");
        assert_eq!(
            out,
            vec![
                Err("JSON parse error, expected separator in list".to_string()),
                Err("JSON parse error, expected separator in dict".to_string()),
            ]
        );
    }

    #[test]
    fn lexical_error_drops_message_then_good_message_works() {
        let out = feed_one(b"{\"execute\": @@ \"x\"}{\"execute\": \"ok\"}");
        // '@' kills the message; the second '@' is another error; then the rest
        // of the broken message lexes on: "x" is a scalar, } is stray.
        assert_eq!(
            out,
            vec![
                Err(SYNTAX.to_string()),
                Err(SYNTAX.to_string()),
                Ok(json!("x")),
                Err("JSON parse error, expecting value".to_string()),
                Ok(json!({"execute": "ok"})),
            ]
        );
    }

    #[test]
    fn ff_byte_resets_a_half_message() {
        let out = feed_one(b"{\"execute\": \"qu\xff{\"execute\": \"stop\"}");
        assert_eq!(
            out,
            vec![Err(SYNTAX.to_string()), Ok(json!({"execute": "stop"}))]
        );
    }

    #[test]
    fn ff_byte_alone_is_one_error() {
        assert_eq!(feed_one(b"\xff"), vec![Err(SYNTAX.to_string())]);
        assert_eq!(feed_one(b"\xfe\xff"), vec![Err(SYNTAX.to_string()); 2]);
    }

    #[test]
    fn garbage_recovery_then_good_message() {
        let mut garbage: Vec<u8> = (0..10_000u32)
            .map(|i| (i * 7919 % 251) as u8 | 0x80)
            .collect();
        garbage.extend_from_slice(b"\xff{\"execute\": \"cont\"}");
        let out = feed_one(&garbage);
        assert_eq!(out.last(), Some(&Ok(json!({"execute": "cont"}))));
        assert!(out[..out.len() - 1].iter().all(|r| r.is_err()));
    }

    #[test]
    fn nesting_limit_rejects_1025_levels() {
        let mut deep = vec![b'['; 1024];
        deep.extend(vec![b']'; 1024]);
        assert_eq!(feed_one(&deep).len(), 1);
        assert!(feed_one(&deep)[0].is_ok());

        let too_deep = vec![b'['; 1025];
        assert_eq!(feed_one(&too_deep), vec![Err(SYNTAX.to_string())]);
    }

    #[test]
    fn mixed_nesting_counts_braces_and_brackets_together() {
        let mut input = Vec::new();
        for _ in 0..513 {
            input.extend_from_slice(b"{\"a\":[");
        }
        // The 513th '{' is level 1025: the message is dropped, and its last
        // tokens are then read as top-level input, as QEMU does.
        assert_eq!(
            feed_one(&input),
            vec![
                Err(SYNTAX.to_string()),
                Ok(json!("a")),
                Err("JSON parse error, expecting value".to_string())
            ]
        );
    }

    #[test]
    fn hundred_megabytes_of_open_brackets_stay_bounded() {
        let input = vec![b'['; 100 << 20];
        let mut s = JsonStreamer::new();
        let mut out = Vec::new();
        for chunk in input.chunks(64 << 10) {
            s.feed(chunk, &mut out);
            assert!(s.tokens.len() <= 1025);
            out.clear();
        }
    }

    #[test]
    fn token_count_limit() {
        let mut input = b"[".to_vec();
        for _ in 0..(MAX_TOKEN_COUNT / 2) {
            input.extend_from_slice(b"1,");
        }
        let mut s = JsonStreamer::new();
        let mut out = Vec::new();
        s.feed(&input, &mut out);
        assert_eq!(
            out.into_iter()
                .map(|r| r.map_err(|e| e.message))
                .collect::<Vec<_>>(),
            vec![Err(SYNTAX.to_string())]
        );
        // What follows the dropped prefix is read as new messages.
        let mut out = Vec::new();
        s.feed(b" {\"a\": 1}", &mut out);
        assert_eq!(
            out.pop().map(|r| r.map_err(|e| e.message)),
            Some(Ok(json!({"a": 1})))
        );
    }

    #[test]
    fn endless_string_inside_a_message_is_dropped_at_the_size_limit() {
        let mut s = JsonStreamer::new();
        let mut out = Vec::new();
        s.feed(b"{\"execute\": \"", &mut out);
        let block = vec![b'a'; 1 << 20];
        for _ in 0..80 {
            s.feed(&block, &mut out);
            assert!(s.arena.len() <= MAX_TOKEN_SIZE + 1);
        }
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].clone().map_err(|e| e.message),
            Err(SYNTAX.to_string())
        );
    }

    #[test]
    fn oversized_top_level_token_is_a_parse_error() {
        let mut input = vec![b'"'];
        input.resize(MAX_TOKEN_SIZE + 1, b'x');
        let out = feed_one(&input);
        assert_eq!(
            out,
            vec![Err("JSON parse error, expecting value".to_string())]
        );
    }

    #[test]
    fn total_token_bytes_limit() {
        // Two strings of 40 MiB each: each is fine alone, together too much.
        let mut input = b"[\"".to_vec();
        input.resize(input.len() + (40 << 20), b'y');
        input.extend_from_slice(b"\", \"");
        input.resize(input.len() + (40 << 20), b'y');
        input.extend_from_slice(b"\"]");
        let out = feed_one(&input);
        // The ']' left over after the dropped message is a stray closer.
        assert_eq!(
            out,
            vec![
                Err(SYNTAX.to_string()),
                Err("JSON parse error, expecting value".to_string())
            ]
        );
    }

    #[test]
    fn interpolation_tokens_are_rejected() {
        assert_eq!(feed_one(b"%d"), vec![Err(SYNTAX.to_string())]);
        assert_eq!(
            feed_one(b"{\"a\": %s}"),
            vec![Err("JSON parse error, Missing value in dict".to_string())]
        );
    }

    #[test]
    fn buffers_released_after_big_message() {
        let mut input = b"[\"".to_vec();
        input.resize(input.len() + (8 << 20), b'z');
        input.extend_from_slice(b"\"]");
        let mut s = JsonStreamer::new();
        let mut out = Vec::new();
        s.feed(&input, &mut out);
        assert!(out[0].is_ok());
        assert!(s.arena.capacity() <= KEEP_CAPACITY);
    }

    /// Small deterministic generator for the randomized tests.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn ten_megabytes_of_random_bytes_then_ff_resync() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut input: Vec<u8> = (0..10 << 20).map(|_| rng.next() as u8).collect();
        input.extend_from_slice(b"\xff{\"execute\": \"query-status\"}");
        let mut s = JsonStreamer::new();
        let mut out = Vec::new();
        let mut last = None;
        for chunk in input.chunks(65536) {
            s.feed(chunk, &mut out);
            assert!(s.arena.len() <= MAX_TOKEN_SIZE + 1);
            last = out.pop().or(last);
            out.clear();
        }
        let last = last.map(|r| r.map_err(|e| e.message));
        assert_eq!(last, Some(Ok(json!({"execute": "query-status"}))));
    }

    #[test]
    fn any_split_of_the_input_gives_the_same_results() {
        let alphabet: &[&[u8]] = &[
            b"{",
            b"}",
            b"[",
            b"]",
            b":",
            b",",
            b"\"",
            b"'",
            b"\\",
            b"u",
            b"0",
            b"7",
            b"-",
            b".",
            b"e",
            b"+",
            b" ",
            b"\n",
            b"true",
            b"null",
            b"nul",
            b"%d",
            b"%lld",
            b"\xff",
            b"\xc3\xa9",
            b"\x00",
            b"\"k\"",
            b"'v'",
            b"\\u00e9",
            b"\\ud83d\\ude00",
            b"123456789012345678901234",
        ];
        let mut rng = XorShift(42);
        for _ in 0..300 {
            let mut input = Vec::new();
            for _ in 0..rng.below(400) {
                input.extend_from_slice(alphabet[rng.below(alphabet.len())]);
            }
            let whole = feed_one(&input);
            let mut chunks = Vec::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let (a, b) = rest.split_at(1 + rng.below(rest.len().min(17)));
                chunks.push(a);
                rest = b;
            }
            assert_eq!(
                feed_all(&chunks),
                whole,
                "input {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    #[test]
    fn deep_objects_within_the_limit_parse() {
        let depth = 1024;
        let input = "{\"a\":".repeat(depth) + "1" + &"}".repeat(depth);
        let out = feed_one(input.as_bytes());
        assert_eq!(out.len(), 1);
        assert!(out[0].is_ok());
    }

    #[test]
    fn flush_completes_a_trailing_number_or_keyword() {
        let mut s = JsonStreamer::new();
        let mut out = Vec::new();
        s.feed(b"12", &mut out);
        s.flush(&mut out);
        s.feed(b"true", &mut out);
        s.flush(&mut out);
        s.feed(b"\"open", &mut out);
        s.flush(&mut out);
        let out: Vec<_> = out.into_iter().map(|r| r.map_err(|e| e.message)).collect();
        assert_eq!(
            out,
            vec![Ok(json!(12)), Ok(json!(true)), Err(SYNTAX.to_string())]
        );
    }

    #[test]
    fn from_json_text_takes_the_last_message() {
        assert_eq!(
            from_json_text(b"{\"driver\": \"null-co\"}"),
            Ok(json!({"driver": "null-co"}))
        );
        assert_eq!(from_json_text(b"1 2.5"), Ok(json!(2.5)));
        assert_eq!(
            from_json_text(b"{\"a\": 1").map_err(|e| e.message),
            Err(SYNTAX.to_string())
        );
        assert_eq!(
            from_json_text(b"").map_err(|e| e.message),
            Err(SYNTAX.to_string())
        );
    }
}
