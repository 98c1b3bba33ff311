//! The JSON layer of the QMP monitor: reading client input and printing replies
//! exactly the way QEMU 2.8 does.
//!
//! Reading ([`JsonStreamer`]) mirrors QEMU's three stages:
//! - `lexer`: a byte-level state machine that cuts the stream into tokens. It
//!   accepts QEMU's extensions (single-quoted strings, `\'` escapes, `%d`-style
//!   interpolation tokens, which the monitor then rejects) and on any invalid byte
//!   reports one error, drops that byte and starts afresh, so a client can resync
//!   (by sending `0xFF`, which is invalid in every state).
//! - `streamer`: groups tokens into top-level messages by counting brackets, and
//!   enforces QEMU's limits (token size, token count, nesting depth) so that memory
//!   stays bounded and nesting is capped before any value is built.
//! - `parser`: turns one message's tokens into a `serde_json::Value`, iteratively
//!   (no recursion), with QEMU's error wording.
//!
//! [`from_json_text`] reads one complete text (feed + flush, last message
//! wins), as QEMU's `qobject_from_json` does for `json:` filenames.
//!
//! Writing ([`to_json_string`]) reproduces `qobject_to_json` and
//! `qobject_to_json_pretty` byte for byte, including QEMU's object member order,
//! which comes from its hash table and not from insertion order; see
//! `qdict_order` for the rule.
//!
//! This module never panics on input and never recurses on client-controlled
//! depth while parsing.

mod lexer;
mod parser;
mod qdict_order;
mod streamer;
mod writer;

#[cfg(test)]
mod bench_tests;
#[cfg(test)]
mod golden_tests;

pub use qdict_order::{qdict_bucket, qdict_order_keys};
pub use streamer::{from_json_text, JsonStreamer};
pub use writer::{to_json_string, write_json};

use std::fmt;

/// A message that could not be read. `message` is the text QEMU 2.8 puts in the
/// `desc` of its GenericError reply: "Invalid JSON syntax" for lexical errors and
/// exceeded limits, `JSON parse error, <reason>` for grammar errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub message: String,
}

/// QEMU's `QERR_JSON_PARSING` text, used when no parser message exists.
pub const INVALID_JSON_SYNTAX: &str = "Invalid JSON syntax";

impl JsonError {
    fn invalid_syntax() -> Self {
        JsonError {
            message: INVALID_JSON_SYNTAX.to_string(),
        }
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JsonError {}
