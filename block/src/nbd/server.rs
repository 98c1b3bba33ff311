//! The NBD server: one listening socket, the export table and the client
//! connections. The caller's main loop polls the fds this hands out and
//! calls back when they are ready; nothing here blocks or spawns threads.
//!
//! Descriptors are never closed behind the caller's back: whatever ends a
//! connection (or the server) returns its fd as `OwnedFd`, so the caller can
//! remove it from its poller before dropping it.

use std::collections::BTreeMap;
use std::os::fd::{OwnedFd, RawFd};

use super::client::{Client, Interest};
use super::error::NbdError;
use super::export::{ExportResolver, NbdExport};
use super::proto;
use super::socket::{Listener, NbdAddr};

/// Identifies a client connection for the life of the server.
pub type ClientId = u64;

/// A connection that has ended; its socket is already shut down, so the
/// peer sees the end at once. Remove `fd` from the poller, then drop it.
#[derive(Debug)]
pub struct ClosedClient {
    pub id: ClientId,
    pub fd: OwnedFd,
}

/// State of a client after `client_ready`.
#[derive(Debug)]
pub enum ClientStatus {
    /// Still connected; re-arm the poller with `client_interest`.
    Open(Interest),
    /// Finished.
    Closed(ClosedClient),
}

/// Everything a stopped server gives back.
#[derive(Debug)]
pub struct ServerShutdown {
    pub listener: Option<OwnedFd>,
    pub clients: Vec<ClosedClient>,
}

pub struct NbdServer {
    listener: Option<Listener>,
    exports: BTreeMap<String, NbdExport>,
    clients: BTreeMap<ClientId, Client>,
    next_id: ClientId,
}

impl NbdServer {
    /// Bind and listen on `addr` (non-blocking).
    pub fn listen(addr: &NbdAddr) -> Result<Self, NbdError> {
        Ok(NbdServer {
            listener: Some(Listener::bind(addr)?),
            exports: BTreeMap::new(),
            clients: BTreeMap::new(),
            next_id: 1,
        })
    }

    /// The listening socket; poll it for readability and call `accept`.
    /// None after `shutdown`.
    pub fn listener_fd(&self) -> Option<RawFd> {
        self.listener.as_ref().map(Listener::fd)
    }

    /// The TCP port actually bound (useful with port "0"); None for Unix.
    pub fn local_port(&self) -> Option<u16> {
        self.listener
            .as_ref()
            .and_then(Listener::local_addr)
            .map(|a| a.port())
    }

    /// Take one pending connection, if any. The new client wants
    /// `client_interest(id)` (it has a greeting to send).
    pub fn accept(&mut self) -> Result<Option<ClientId>, NbdError> {
        let Some(l) = &self.listener else {
            return Ok(None);
        };
        let Some(stream) = l.accept().map_err(NbdError::Accept)? else {
            return Ok(None);
        };
        let id = self.next_id;
        self.next_id += 1;
        self.clients.insert(id, Client::new(stream));
        Ok(Some(id))
    }

    pub fn client_ids(&self) -> Vec<ClientId> {
        self.clients.keys().copied().collect()
    }

    pub fn client_fd(&self, id: ClientId) -> Option<RawFd> {
        self.clients.get(&id).map(Client::fd)
    }

    /// Events the client wants next. Level-triggered pollers must use exactly
    /// these: a client that stopped reading (its peer does not drain replies)
    /// would otherwise wake the loop without end.
    pub fn client_interest(&self, id: ClientId) -> Option<Interest> {
        self.clients.get(&id).map(Client::interest)
    }

    /// Let a client make progress after its fd became ready (or whenever;
    /// spurious calls are harmless). Does bounded work.
    pub fn client_ready(
        &mut self,
        id: ClientId,
        resolver: &mut dyn ExportResolver,
    ) -> Option<ClientStatus> {
        let client = self.clients.get_mut(&id)?;
        if client.ready(&self.exports, resolver) {
            return Some(ClientStatus::Open(client.interest()));
        }
        let client = self.clients.remove(&id)?;
        Some(ClientStatus::Closed(ClosedClient {
            id,
            fd: client.shut(),
        }))
    }

    /// Export a backend. The name and description must fit the protocol's
    /// 4096-byte strings.
    pub fn add_export(&mut self, export: NbdExport) -> Result<(), NbdError> {
        if export.name.len() > proto::MAX_STRING || export.description.len() > proto::MAX_STRING {
            return Err(NbdError::NameTooLong(export.name));
        }
        if self.exports.contains_key(&export.name) {
            return Err(NbdError::ExportExists(export.name));
        }
        self.exports.insert(export.name.clone(), export);
        Ok(())
    }

    pub fn export(&self, name: &str) -> Option<&NbdExport> {
        self.exports.get(name)
    }

    pub fn exports(&self) -> impl Iterator<Item = &NbdExport> {
        self.exports.values()
    }

    /// Stop exporting `name` and disconnect the clients using it. Clients
    /// still negotiating are unaffected (the export is simply gone for them).
    pub fn remove_export(&mut self, name: &str) -> Result<Vec<ClosedClient>, NbdError> {
        if self.exports.remove(name).is_none() {
            return Err(NbdError::NoSuchExport(name.to_string()));
        }
        let ids: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(_, c)| c.export() == Some(name))
            .map(|(id, _)| *id)
            .collect();
        Ok(self.disconnect(&ids))
    }

    /// Exports whose backend is `backend` (to remove them when it goes away).
    pub fn exports_of_backend(&self, backend: &str) -> Vec<String> {
        self.exports
            .values()
            .filter(|e| e.backend == backend)
            .map(|e| e.name.clone())
            .collect()
    }

    /// Stop listening, drop every export and disconnect every client.
    pub fn shutdown(&mut self) -> ServerShutdown {
        self.exports.clear();
        let ids = self.client_ids();
        ServerShutdown {
            listener: self.listener.take().map(Listener::into_fd),
            clients: self.disconnect(&ids),
        }
    }

    fn disconnect(&mut self, ids: &[ClientId]) -> Vec<ClosedClient> {
        ids.iter()
            .filter_map(|id| {
                self.clients.remove(id).map(|c| ClosedClient {
                    id: *id,
                    fd: c.shut(),
                })
            })
            .collect()
    }
}

impl Drop for NbdServer {
    fn drop(&mut self) {
        // Frees a Unix socket path even when the caller forgot `shutdown`.
        let _ = self.shutdown();
    }
}
