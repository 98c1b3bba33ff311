//! The one copy operation every job is built from: read a range from a
//! source node, write it to a target node, turning all-zero data into
//! write-zeroes requests (so sparse sources stay sparse) and optionally
//! writing whole clusters compressed.

use crate::jobs::job::JobIoError;
use crate::node::{is_zero, lock, Node, NodeRef};

/// How data lands on the target.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteMode {
    /// Write compressed clusters of this size (backup `compress`).
    pub compress_cluster: Option<u64>,
    /// Zero ranges may be unmapped on the target.
    pub unmap: bool,
}

/// Reads `buf.len()` bytes at `offset` from `src`.
pub fn read_source(src: &NodeRef, offset: u64, buf: &mut [u8]) -> Result<(), JobIoError> {
    lock(src).read(offset, buf).map_err(JobIoError::read)
}

/// Writes `data` at `offset` on an already locked target.
pub fn write_locked(
    dst: &mut Node,
    offset: u64,
    data: &[u8],
    mode: WriteMode,
) -> Result<(), JobIoError> {
    if let Some(cs) = mode.compress_cluster.filter(|&c| c > 0) {
        let mut pos = 0usize;
        while pos < data.len() {
            let n = (data.len() - pos).min(cs as usize);
            let chunk = &data[pos..pos + n];
            if is_zero(chunk) {
                dst.write_zeroes(offset + pos as u64, n as u64, mode.unmap)
            } else {
                dst.write_compressed(offset + pos as u64, chunk)
            }
            .map_err(JobIoError::write)?;
            pos += n;
        }
        return Ok(());
    }
    if is_zero(data) {
        dst.write_zeroes(offset, data.len() as u64, mode.unmap)
    } else {
        dst.write(offset, data, false)
    }
    .map_err(JobIoError::write)
}

/// Writes `data` at `offset` on `dst`.
pub fn write_target(
    dst: &NodeRef,
    offset: u64,
    data: &[u8],
    mode: WriteMode,
) -> Result<(), JobIoError> {
    write_locked(&mut lock(dst), offset, data, mode)
}

/// Copies `len` bytes at `offset` from `src` to `dst` through `buf`.
pub fn copy_range(
    src: &NodeRef,
    dst: &NodeRef,
    offset: u64,
    len: u64,
    buf: &mut Vec<u8>,
    mode: WriteMode,
) -> Result<(), JobIoError> {
    buf.resize(len as usize, 0);
    read_source(src, offset, buf)?;
    write_target(dst, offset, buf, mode)
}
