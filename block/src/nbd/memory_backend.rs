//! An in-memory export for unit tests, which also serves as its own resolver.

use super::error::NbdIoError;
use super::export::{ExportResolver, NbdExportBackend};
use super::proto;

/// Bytes in a Vec; all-zero ranges report as zero.
pub(crate) struct Memory(pub Vec<u8>);

impl NbdExportBackend for Memory {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), NbdIoError> {
        let o = offset as usize;
        buf.copy_from_slice(&self.0[o..o + buf.len()]);
        Ok(())
    }
    fn write(&mut self, offset: u64, data: &[u8], _fua: bool) -> Result<(), NbdIoError> {
        let o = offset as usize;
        self.0[o..o + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn write_zeroes(&mut self, offset: u64, len: u64, _: bool, _: bool) -> Result<(), NbdIoError> {
        self.0[offset as usize..(offset + len) as usize].fill(0);
        Ok(())
    }
    fn trim(&mut self, _: u64, _: u64) -> Result<(), NbdIoError> {
        Ok(())
    }
    fn flush(&mut self) -> Result<(), NbdIoError> {
        Ok(())
    }
    fn block_status(&mut self, offset: u64, len: u64) -> Result<Vec<(u64, u32)>, NbdIoError> {
        let zero = self.0[offset as usize..(offset + len) as usize]
            .iter()
            .all(|&b| b == 0);
        Ok(vec![(len, if zero { proto::STATE_ZERO } else { 0 })])
    }
}

impl ExportResolver for Memory {
    fn with_backend(&mut self, _: &str, f: &mut dyn FnMut(&mut dyn NbdExportBackend)) -> bool {
        f(self);
        true
    }
}
