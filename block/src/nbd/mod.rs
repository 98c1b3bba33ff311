//! NBD server (fixed newstyle, structured replies, `base:allocation`) as
//! non-blocking state machines for the main loop: no threads, no blocking
//! calls, bounded work per call and bounded memory per client.
//!
//! The main loop owns the poller and the backends. It polls `listener_fd()`
//! for readability and calls `accept()`; it polls each client's fd for the
//! `Interest` it reports and calls `client_ready()`; it lends backends
//! through an `ExportResolver`. See `server` for the fd ownership rules.

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
pub use export::{ExportResolver, NbdExport, NbdExportBackend};
pub use server::{ClientId, ClientStatus, ClosedClient, NbdServer, ServerShutdown};
pub use socket::NbdAddr;
