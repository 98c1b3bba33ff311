//! The output file, written strictly in sequence (a pipe passed with
//! `getfd` works as well as a file) through one buffer per step.

use std::fs::File;
use std::io::Write;

use super::error::DumpError;

pub struct Sink {
    file: File,
    buf: Vec<u8>,
}

impl Sink {
    pub fn new(file: File) -> Self {
        Sink {
            file,
            buf: Vec::with_capacity(1 << 20),
        }
    }

    pub fn put(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Writes `data` at once, after anything still buffered: large runs
    /// of guest RAM go to the file without a copy.
    pub fn write_direct(&mut self, data: &[u8]) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let res = self.file.write_all(&self.buf);
            self.buf.clear();
            res?;
        }
        self.file.write_all(data)
    }

    /// One record of makedumpfile's flattened format: big-endian offset
    /// and size in the rearranged file, then the bytes.
    pub fn record(&mut self, offset: u64, data: &[u8]) {
        self.buf.extend_from_slice(&offset.to_be_bytes());
        self.buf
            .extend_from_slice(&(data.len() as u64).to_be_bytes());
        self.buf.extend_from_slice(data);
    }

    /// Writes what the step produced; `what` is QEMU's message for the
    /// step should the write fail.
    pub fn flush(&mut self, what: &'static str) -> Result<(), DumpError> {
        let res = self.file.write_all(&self.buf);
        self.buf.clear();
        res.map_err(|e| DumpError::write(what, e))
    }

    /// Leaves no partial dump behind: a truncated file does not pass for a
    /// complete one. A pipe cannot be truncated; its reader sees the cut.
    pub fn discard(&mut self) {
        self.buf.clear();
        let _ = self.file.set_len(0);
    }
}
