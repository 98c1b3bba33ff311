//! NBD server (fixed newstyle, structured replies, `base:allocation`) as
//! non-blocking state machines for the main loop: no threads, no blocking
//! calls, bounded work per call and bounded memory per client.
//!
//! Protocol (doc/proto.md of the NBD project; QEMU 2.8 had less): fixed
//! newstyle only; options EXPORT_NAME, ABORT, LIST, INFO, GO (INFO_EXPORT,
//! NAME, DESCRIPTION, BLOCK_SIZE 1/4096/32 MiB), STRUCTURED_REPLY,
//! LIST/SET_META_CONTEXT (`base:allocation`); STARTTLS is refused with
//! ERR_POLICY, other options with ERR_UNSUP. Commands READ (simple, or
//! structured with data/hole chunks, DF), WRITE, FLUSH, TRIM, CACHE (a
//! no-op), WRITE_ZEROES (NO_HOLE), BLOCK_STATUS (REQ_ONE), DISC, all taking
//! FUA. Errors: read-only EPERM; past the end EINVAL, ENOSPC for writes (as
//! the spec and QEMU say); oversized READ/WRITE EINVAL (EOVERFLOW for
//! structured reads); unknown commands and flags EINVAL. Requests are
//! answered in order. Garbage, bad magic or unknown client flags end the
//! connection, as the spec allows.
//!
//! The main loop owns the poller and the backends:
//!
//! - `NbdServer::listen(&addr)` (or `from_listener_fd` for an `fd:` address);
//!   register `listener_fd()` for readability.
//! - Listener readable: call `accept()` until `Ok(None)`; register each new
//!   client's `client_fd(id)` with `client_interest(id)`. `Err` means no
//!   connection could be taken (e.g. out of descriptors): stop polling the
//!   listener for a moment rather than spin.
//! - Client fd ready (any event, including hang-up/error): call
//!   `client_ready(id, resolver)`. `Open(interest)`: re-arm the fd with
//!   exactly that interest (a level-triggered poller would otherwise spin on
//!   a client that does not read its replies). `Closed(c)`: remove `c.fd`
//!   from the poller, then drop it.
//! - `remove_export` and `shutdown` hand back the fds they close in the same
//!   way; the caller removes them from the poller before dropping them.
//! - The backends stay with the caller, lent per call through an
//!   `ExportResolver` keyed by `NbdExport::backend`.
//! - Throttling: the resolver's `admit` may hold a request back (it keeps
//!   the `NbdTicket`); that client then waits, wanting no events but
//!   writability while replies are still queued. When the limits allow the
//!   request, call `resume(ticket)`, then `client_ready` and re-arm.

mod client;
mod commands;
mod error;
mod export;
mod handshake;
mod iobuf;
#[cfg(test)]
mod memory_backend;
mod options;
pub mod proto;
mod server;
mod socket;
mod transmission;

pub use client::Interest;
pub use error::{NbdError, NbdIoError};
pub use export::{ExportResolver, NbdExport, NbdExportBackend, NbdTicket};
pub use server::{ClientId, ClientStatus, ClosedClient, NbdServer, ServerShutdown};
pub use socket::NbdAddr;
