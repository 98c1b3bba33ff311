//! What the server exports and how it reaches the data: the backend trait the
//! block layer implements, the resolver through which the caller lends a
//! backend for one call, and the export table entry.
//!
//! The server never owns a backend: every operation borrows one through
//! `ExportResolver::with_backend`, so the block layer keeps sole ownership and
//! all I/O passes through it (throttling, dirty bitmaps, statistics, write
//! thresholds apply to NBD clients like to any other writer).

use super::error::NbdIoError;
use super::proto;
use super::server::ClientId;
use crate::node::MappedRead;

/// The I/O an export needs. Offsets and lengths are in bytes and already
/// checked against `size()` by the server.
pub trait NbdExportBackend {
    /// Current size of the export in bytes.
    fn size(&self) -> u64;
    /// Fill `buf` from `offset`.
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), NbdIoError>;
    /// Write `data` at `offset`; with `fua`, the data is on stable storage
    /// when this returns.
    fn write(&mut self, offset: u64, data: &[u8], fua: bool) -> Result<(), NbdIoError>;
    /// Make `len` bytes at `offset` read as zeroes; `may_trim` allows
    /// deallocating them instead of writing.
    fn write_zeroes(
        &mut self,
        offset: u64,
        len: u64,
        may_trim: bool,
        fua: bool,
    ) -> Result<(), NbdIoError>;
    /// Hint that `len` bytes at `offset` are no longer needed.
    fn trim(&mut self, offset: u64, len: u64) -> Result<(), NbdIoError>;
    /// Put every completed write on stable storage.
    fn flush(&mut self) -> Result<(), NbdIoError>;
    /// Allocation status of consecutive extents starting at `offset`, as
    /// `(length, flags)` with `flags` a mask of `STATE_HOLE` and `STATE_ZERO`.
    /// The extents may cover less than `len` (at least one byte) or more;
    /// the server clips them.
    fn block_status(&mut self, offset: u64, len: u64) -> Result<Vec<(u64, u32)>, NbdIoError>;

    /// Produce the `len` bytes at `offset` as a map: host file ranges the
    /// server sends with sendfile(2) (sparing the copy through memory),
    /// zero ranges it sends as holes or zeroes, and data read into the
    /// sink's buffers. Accounted (statistics) as one read. The server may
    /// send a file range after later requests ran: it checks
    /// `ExportResolver::mapping_generation` first and calls `read_again`
    /// when the map may have gone stale.
    /// The default asks `block_status` for zero ranges and `read`s the rest.
    fn read_to(
        &mut self,
        offset: u64,
        len: u64,
        sink: &mut dyn MappedRead,
    ) -> Result<(), NbdIoError> {
        // An error here only costs the zero shortcut.
        let extents = self.block_status(offset, len).unwrap_or_default();
        let mut pos = offset;
        let end = offset + len;
        for (l, flags) in extents {
            if pos >= end {
                break;
            }
            let l = l.min(end - pos);
            if flags & proto::STATE_ZERO != 0 {
                sink.zeroes(l);
            } else {
                self.read(pos, sink.buffer(l))?;
            }
            pos += l;
        }
        if pos < end {
            self.read(pos, sink.buffer(end - pos))?;
        }
        Ok(())
    }

    /// Read again bytes whose file range went stale after `read_to` handed
    /// it out; they were accounted then, so this is not counted again.
    fn read_again(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), NbdIoError> {
        self.read(offset, buf)
    }
}

/// Lends backends to the server for the duration of one call. `backend` is
/// the `backend` field of the export (the block backend or node name given
/// to nbd-server-add). Returns false when no such backend exists (any more);
/// `f` is then not called.
pub trait ExportResolver {
    fn with_backend(&mut self, backend: &str, f: &mut dyn FnMut(&mut dyn NbdExportBackend))
        -> bool;

    /// A value that changes whenever storage may have been freed, after
    /// which file ranges handed out by `read_to` may hold other data
    /// (`block::node::mapping_generation`). The default never changes.
    fn mapping_generation(&self) -> u64 {
        0
    }

    /// Throttling: may a request moving `bytes` on `backend` (a write when
    /// `is_write`, else a read) run now? Asked once per READ, WRITE and
    /// WRITE_ZEROES, before its payload is read; true books it against the
    /// limits. False means the caller queued it under `ticket`: the client
    /// then serves nothing more (its later requests wait behind this one,
    /// so replies keep their order, and a write's payload stays in the
    /// socket) until the caller passes the ticket to `NbdServer::resume`.
    /// The default lets everything run.
    fn admit(&mut self, backend: &str, ticket: NbdTicket, is_write: bool, bytes: u64) -> bool {
        let _ = (backend, ticket, is_write, bytes);
        true
    }
}

/// A request that `ExportResolver::admit` held back, named so that its
/// release can find it: the client and that client's request number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NbdTicket {
    pub client: ClientId,
    pub seq: u64,
}

/// One entry of the export table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdExport {
    /// Name the clients ask for.
    pub name: String,
    /// Key handed to the resolver.
    pub backend: String,
    /// Free text shown by NBD_OPT_LIST and NBD_INFO_DESCRIPTION; may be empty.
    pub description: String,
    /// False: the export is advertised read-only and write commands fail
    /// with EPERM.
    pub writable: bool,
}

/// Run `f` on the named backend; None when the resolver does not know it.
pub(crate) fn with_backend<R>(
    resolver: &mut dyn ExportResolver,
    backend: &str,
    f: impl FnOnce(&mut dyn NbdExportBackend) -> R,
) -> Option<R> {
    let mut f = Some(f);
    let mut result = None;
    resolver.with_backend(backend, &mut |b| {
        if let Some(f) = f.take() {
            result = Some(f(b));
        }
    });
    result
}
