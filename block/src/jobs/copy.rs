//! The one copy operation every job is built from: read a range from a
//! source node, write it to a target node, turning all-zero data into
//! write-zeroes requests (so sparse sources stay sparse) and optionally
//! writing whole clusters compressed.
//!
//! Ranges the source stores plainly in a host file go file-to-file when
//! every layer of the target can take them (copy offload: the target still
//! allocates and accounts the write as usual, the kernel moves the bytes);
//! ranges the source's metadata says are zero become write-zeroes without
//! being read; everything else (compressed clusters, filter drivers,
//! compressed or detect-zeroes targets) is read and written through memory.

use std::os::fd::AsFd;
use std::sync::Arc;

use crate::driver::{CopyFrom, CopySource};
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

/// The source of a copy: a node the caller holds locked (backup, whose
/// copy-before-write hook must not run between looking at a range and copying
/// it), or one locked only while it is looked at and read.
pub enum Source<'a> {
    Locked(&'a mut Node),
    Node(&'a NodeRef),
}

impl Source<'_> {
    fn with<R>(&mut self, f: impl FnOnce(&mut Node) -> R) -> R {
        match self {
            Source::Locked(n) => f(n),
            Source::Node(n) => f(&mut lock(n)),
        }
    }
}

/// The target of a copy: another node, or the source itself (stream writes
/// into the node it reads through).
pub enum Target<'a> {
    Node(&'a NodeRef),
    Source,
}

fn with_target<R>(src: &mut Source<'_>, dst: &Target<'_>, f: impl FnOnce(&mut Node) -> R) -> R {
    match dst {
        Target::Node(d) => f(&mut lock(d)),
        Target::Source => src.with(f),
    }
}

/// Reads `len` bytes at `offset` from `src` into `buf` and writes them.
fn copy_through_memory(
    src: &mut Source<'_>,
    dst: &Target<'_>,
    offset: u64,
    len: u64,
    buf: &mut Vec<u8>,
    mode: WriteMode,
) -> Result<(), JobIoError> {
    buf.resize(len as usize, 0);
    src.with(|s| s.read(offset, buf))
        .map_err(JobIoError::read)?;
    with_target(src, dst, |d| write_locked(d, offset, buf, mode))
}

/// Moves `n` bytes at `offset` without reading them, when the source mapped
/// them as `from` and the target can take them; false when the range has to
/// go through memory (nothing was written then).
fn copy_offloaded(
    src: &mut Source<'_>,
    dst: &Target<'_>,
    from: CopySource,
    offset: u64,
    n: u64,
    mode: WriteMode,
) -> Result<bool, JobIoError> {
    match from {
        CopySource::Zero => {
            with_target(src, dst, |d| d.write_zeroes(offset, n, mode.unmap))
                .map_err(JobIoError::write)?;
            Ok(true)
        }
        CopySource::Host { fd, offset: host } => with_target(src, dst, |d| {
            if !d.can_copy_in(offset, n) {
                return Ok(false);
            }
            let from = CopyFrom {
                fd: fd.as_fd(),
                offset: host,
            };
            d.copy_in(offset, n, from).map_err(JobIoError::write)?;
            Ok(true)
        }),
        CopySource::Unsupported => Ok(false),
    }
}

/// Copies `len` bytes at `offset` from `src` to `dst`, offloaded where the
/// layers allow and through memory (`buf`) elsewhere.
pub fn copy(
    mut src: Source<'_>,
    dst: Target<'_>,
    offset: u64,
    len: u64,
    buf: &mut Vec<u8>,
    mode: WriteMode,
) -> Result<(), JobIoError> {
    if mode.compress_cluster.is_some() {
        // Compression needs the bytes in memory anyway.
        return copy_through_memory(&mut src, &dst, offset, len, buf, mode);
    }
    let end = offset + len;
    let mut pos = offset;
    // Pieces that must go through memory are gathered into one request.
    let mut slow: Option<u64> = None;
    while pos < end {
        let (from, n) = src
            .with(|s| s.copy_source(pos, end - pos))
            .map_err(JobIoError::read)?;
        if copy_offloaded(&mut src, &dst, from, pos, n, mode)? {
            if let Some(s) = slow.take() {
                copy_through_memory(&mut src, &dst, s, pos - s, buf, mode)?;
            }
        } else {
            slow.get_or_insert(pos);
        }
        pos += n;
    }
    if let Some(s) = slow {
        copy_through_memory(&mut src, &dst, s, end - s, buf, mode)?;
    }
    Ok(())
}

/// Copies `len` bytes at `offset` from `src` to `dst` (which may be `src`).
pub fn copy_range(
    src: &NodeRef,
    dst: &NodeRef,
    offset: u64,
    len: u64,
    buf: &mut Vec<u8>,
    mode: WriteMode,
) -> Result<(), JobIoError> {
    let target = if Arc::ptr_eq(src, dst) {
        Target::Source
    } else {
        Target::Node(dst)
    };
    copy(Source::Node(src), target, offset, len, buf, mode)
}

#[cfg(test)]
mod tests;
