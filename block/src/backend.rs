//! Backends (QEMU's BlockBackend): the named attachment points devices, NBD and
//! QMP `device` arguments refer to. A backend may have no medium. Requests through
//! a backend are checked against the device size, as QEMU's blk_* calls are.

use crate::error::{BlockError, BlockResult};
use crate::node::{lock, MappedRead, NodeRef};
use crate::stats::{AcctType, BlockStats};

/// I/O accounting around every request (see `backend/hooks.rs`).
mod hooks;

/// A named backend.
pub struct Backend {
    name: String,
    root: Option<NodeRef>,
    stats: std::sync::Arc<std::sync::Mutex<BlockStats>>,
    /// Non-zero while a caller QEMU does not account (qemu-io plain I/O, NBD,
    /// jobs) runs requests; see `io_unaccounted`.
    unaccounted: std::sync::atomic::AtomicU32,
}

impl Backend {
    pub(crate) fn new(name: String, root: Option<NodeRef>) -> Backend {
        Backend {
            name,
            root,
            stats: Default::default(),
            unaccounted: Default::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The root node, when a medium is inserted.
    pub fn root(&self) -> Option<NodeRef> {
        self.root.clone()
    }

    pub fn has_medium(&self) -> bool {
        self.root.is_some()
    }

    /// Inserts a medium (fails if one is already there).
    pub fn insert_medium(&mut self, root: NodeRef) -> BlockResult<()> {
        if self.root.is_some() {
            return Err(BlockError::Generic(format!(
                "Device '{}' already has a medium",
                self.name
            )));
        }
        self.root = Some(root);
        Ok(())
    }

    /// Takes the medium out; the node stays in the graph if it is named.
    pub fn remove_medium(&mut self) -> Option<NodeRef> {
        self.root.take()
    }

    fn node(&self) -> BlockResult<&NodeRef> {
        self.root
            .as_ref()
            .ok_or_else(|| BlockError::NoMedium(format!("Device '{}' has no medium", self.name)))
    }

    fn check(&self, offset: u64, len: u64) -> BlockResult<&NodeRef> {
        let n = self.node()?;
        let size = lock(n).length()?;
        if offset > size || size - offset < len {
            return Err(BlockError::OutOfBounds { offset, len, size });
        }
        Ok(n)
    }

    pub fn length(&self) -> BlockResult<u64> {
        lock(self.node()?).length()
    }

    pub fn read(&self, offset: u64, buf: &mut [u8]) -> BlockResult<()> {
        self.accounted(AcctType::Read, buf.len() as u64, || {
            let n = self.check(offset, buf.len() as u64)?;
            lock(n).read(offset, buf)
        })
    }

    /// A read handed out as a map (`Node::read_mapped`): host file ranges,
    /// zeroes, and data read into `to`'s buffers, accounted (statistics) as
    /// one read of `len` bytes like `read`. For servers that send file
    /// ranges without copying them (NBD's sendfile).
    pub fn read_mapped(&self, offset: u64, len: u64, to: &mut dyn MappedRead) -> BlockResult<()> {
        self.accounted(AcctType::Read, len, || {
            let n = self.check(offset, len)?;
            lock(n).read_mapped(offset, len, to)
        })
    }

    pub fn write(&self, offset: u64, buf: &[u8], fua: bool) -> BlockResult<()> {
        self.accounted(AcctType::Write, buf.len() as u64, || {
            let n = self.check(offset, buf.len() as u64)?;
            lock(n).write(offset, buf, fua)
        })
    }

    pub fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> BlockResult<()> {
        self.accounted(AcctType::Write, len, || {
            let n = self.check(offset, len)?;
            lock(n).write_zeroes(offset, len, may_unmap)
        })
    }

    pub fn write_compressed(&self, offset: u64, buf: &[u8]) -> BlockResult<()> {
        self.accounted(AcctType::Write, buf.len() as u64, || {
            let n = self.check(offset, buf.len() as u64)?;
            lock(n).write_compressed(offset, buf)
        })
    }

    pub fn discard(&self, offset: u64, len: u64) -> BlockResult<()> {
        let n = self.check(offset, len)?;
        lock(n).discard(offset, len)
    }

    pub fn flush(&self) -> BlockResult<()> {
        self.accounted(AcctType::Flush, 0, || match &self.root {
            Some(n) => lock(n).flush(),
            None => Ok(()),
        })
    }
}
