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
use super::export::{ExportResolver, NbdExport, NbdTicket};
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

    /// Serve on a socket the caller already bound and put in listening
    /// state (QMP's `fd` SocketAddress, looked up in the monitor's fds).
    pub fn from_listener_fd(fd: OwnedFd) -> Result<Self, NbdError> {
        Ok(NbdServer {
            listener: Some(Listener::from_fd(fd)?),
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
        self.clients.insert(id, Client::new(id, stream));
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

    /// A request `ExportResolver::admit` held back may run now. Returns
    /// false when the ticket is stale (the client is gone, or the request
    /// was already resumed). Then call `client_ready(ticket.client, ..)`
    /// and re-arm the client's fd with the interest it reports.
    pub fn resume(&mut self, ticket: NbdTicket) -> bool {
        self.clients
            .get_mut(&ticket.client)
            .is_some_and(|c| c.resume(ticket.seq))
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

/// The main loop may keep the server inside state shared with other
/// threads (behind the big lock), so it must stay `Send`.
const _: fn() = || {
    fn check<T: Send>() {}
    check::<NbdServer>();
};

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    use super::*;
    use crate::nbd::memory_backend::Memory;

    fn export(name: &str) -> NbdExport {
        NbdExport {
            name: name.into(),
            backend: name.into(),
            description: String::new(),
            writable: true,
        }
    }

    /// Accept and run every client a few times (data is already queued in
    /// the kernel, so this needs no poll).
    fn pump(srv: &mut NbdServer, mem: &mut Memory) {
        for _ in 0..20 {
            while let Ok(Some(_)) = srv.accept() {}
            for id in srv.client_ids() {
                let _ = srv.client_ready(id, mem);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn client_on(port: u16, name: &str) -> TcpStream {
        let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut msg = 2u32.to_be_bytes().to_vec();
        msg.extend_from_slice(b"IHAVEOPT");
        msg.extend_from_slice(&proto::OPT_EXPORT_NAME.to_be_bytes());
        msg.extend_from_slice(&(name.len() as u32).to_be_bytes());
        msg.extend_from_slice(name.as_bytes());
        c.write_all(&msg).expect("send");
        c
    }

    fn addr() -> NbdAddr {
        NbdAddr::Inet {
            host: "127.0.0.1".into(),
            port: "0".into(),
        }
    }

    #[test]
    fn removing_an_export_disconnects_only_its_clients() {
        let mut srv = NbdServer::listen(&addr()).expect("listen");
        let port = srv.local_port().expect("port");
        let (a, b) = (srv.add_export(export("a")), srv.add_export(export("b")));
        let mut mem = Memory(vec![0; 4096]);
        let mut ca = client_on(port, "a");
        let mut cb = client_on(port, "b");
        pump(&mut srv, &mut mem);
        let mut hello = [0u8; 28];
        ca.read_exact(&mut hello).expect("a in transmission");
        cb.read_exact(&mut hello).expect("b in transmission");

        let closed = srv.remove_export("a").expect("remove");

        assert!(a.is_ok() && b.is_ok());
        assert_eq!(closed.len(), 1);
        assert_eq!(ca.read(&mut hello).ok(), Some(0), "a sees end of stream");
        assert_eq!(srv.client_ids().len(), 1);
        assert!(srv.export("a").is_none() && srv.export("b").is_some());
    }

    #[test]
    fn duplicate_and_missing_exports_are_errors() {
        let mut srv = NbdServer::listen(&addr()).expect("listen");
        let _ = srv.add_export(export("a"));

        let dup = srv.add_export(export("a"));
        let missing = srv.remove_export("zz");

        assert_eq!(
            dup.err().map(|e| e.to_string()).as_deref(),
            Some("NBD server already exporting device 'a'")
        );
        assert!(matches!(missing, Err(NbdError::NoSuchExport(_))));
    }

    #[test]
    fn shutdown_closes_everything_and_frees_the_unix_path() {
        let path = std::env::temp_dir().join(format!("nbd-shutdown-{}", std::process::id()));
        let path_s = path.to_string_lossy().into_owned();
        let mut srv = NbdServer::listen(&NbdAddr::Unix {
            path: path_s.clone(),
        })
        .expect("listen");
        let _ = srv.add_export(export("a"));
        let _c = std::os::unix::net::UnixStream::connect(&path).expect("connect");
        let mut mem = Memory(vec![0; 512]);
        pump(&mut srv, &mut mem);

        let done = srv.shutdown();

        assert!(done.listener.is_some());
        assert_eq!(done.clients.len(), 1);
        assert!(!path.exists());
        assert_eq!(srv.listener_fd(), None);
        assert_eq!(srv.exports().count(), 0);
    }
}
