//! `null` (and `vc`, which has no display here): discards output, never
//! produces input.

use std::io;

use super::{CharBackend, CharEvent, FdRegistry};
use crate::main_loop::Token;

pub struct NullChardev {
    kind: &'static str,
}

impl NullChardev {
    pub fn new(kind: &str) -> Self {
        NullChardev {
            kind: if kind == "vc" { "vc" } else { "null" },
        }
    }
}

impl CharBackend for NullChardev {
    fn attach(&mut self, _fds: &mut FdRegistry) -> io::Result<()> {
        Ok(())
    }
    fn ready(&mut self, _: &mut FdRegistry, _: Token, _: bool, _: bool) -> Vec<CharEvent> {
        Vec::new()
    }
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        Ok(data.len())
    }
    fn is_open(&self) -> bool {
        true
    }
    fn close(&mut self, _fds: &mut FdRegistry) {}
    fn filename(&self) -> String {
        self.kind.to_string()
    }
}
