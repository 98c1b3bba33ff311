//! Devices that discard output and never produce input here: `null`;
//! `vc` (a text console with no display to show it); `msmouse` (a serial
//! mouse with no pointer events to report). As QEMU, `null` never reports
//! itself open while the others do.

use std::io;

use super::{CharBackend, CharEvent, FdRegistry};
use crate::main_loop::Token;

pub struct NullChardev {
    kind: &'static str,
}

impl NullChardev {
    pub fn new(kind: &'static str) -> Self {
        NullChardev { kind }
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
    fn be_open(&self) -> bool {
        self.kind != "null"
    }
    fn close(&mut self, _fds: &mut FdRegistry) {}
    fn filename(&self) -> String {
        self.kind.to_string()
    }
}
