//! The NBD server on the main loop (nbd-server-start/add/stop): the
//! protocol engine lives in `block::nbd`; this module registers its fds,
//! lends it the exported nodes and answers the QMP/HMP commands.

use std::collections::HashMap;

use block::nbd::{
    ClientId, ClientStatus, ClosedClient, ExportResolver, Interest, NbdAddr, NbdExport,
    NbdExportBackend, NbdIoError, NbdServer, NbdTicket,
};
use block::node::MappedRead;
use block::throttle_group::Admission;
use block::{lock, BlockError, NodeRef};
use qmp::error::QmpError;

use crate::blockdev::throttle::{self, Groups, Held, NbdInbox};
use crate::emulator::{Emulator, FdOwner};
use crate::main_loop::Token;

/// The running server and what the main loop knows of it.
pub struct NbdState {
    server: NbdServer,
    listener_token: Option<Token>,
    clients: HashMap<ClientId, Token>,
    /// Exported nodes by export name (the device or node name given).
    nodes: HashMap<String, NodeRef>,
    /// Exports of a named backend, which keep it in use (x-blockdev-del
    /// refuses to delete it).
    backend_users: Vec<String>,
    /// Requests released by their throttle group, to resume. Each server
    /// has its own: client ids start over with a new server, and tickets of
    /// an old one must not reach it.
    inbox: NbdInbox,
}

fn io_err(e: BlockError) -> NbdIoError {
    let errno = e.errno_value();
    NbdIoError::new(if errno > 0 { errno } else { libc::EIO })
}

/// One exported node, seen through the block layer so that throttling,
/// statistics, dirty bitmaps and write thresholds apply to NBD clients.
struct NodeBackend<'a>(&'a NodeRef);

/// NBD_STATE_HOLE and NBD_STATE_ZERO.
const STATE_HOLE: u32 = 1;
const STATE_ZERO: u32 = 2;

impl NbdExportBackend for NodeBackend<'_> {
    fn size(&self) -> u64 {
        lock(self.0).length().unwrap_or(0)
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), NbdIoError> {
        lock(self.0).read(offset, buf).map_err(io_err)
    }

    fn read_to(
        &mut self,
        offset: u64,
        len: u64,
        sink: &mut dyn MappedRead,
    ) -> Result<(), NbdIoError> {
        lock(self.0).read_mapped(offset, len, sink).map_err(io_err)
    }

    fn write(&mut self, offset: u64, data: &[u8], fua: bool) -> Result<(), NbdIoError> {
        lock(self.0).write(offset, data, fua).map_err(io_err)
    }

    fn write_zeroes(
        &mut self,
        offset: u64,
        len: u64,
        may_trim: bool,
        fua: bool,
    ) -> Result<(), NbdIoError> {
        let mut n = lock(self.0);
        n.write_zeroes(offset, len, may_trim).map_err(io_err)?;
        if fua {
            n.flush().map_err(io_err)?;
        }
        Ok(())
    }

    fn trim(&mut self, offset: u64, len: u64) -> Result<(), NbdIoError> {
        lock(self.0).discard(offset, len).map_err(io_err)
    }

    fn flush(&mut self) -> Result<(), NbdIoError> {
        lock(self.0).flush().map_err(io_err)
    }

    fn block_status(&mut self, offset: u64, len: u64) -> Result<Vec<(u64, u32)>, NbdIoError> {
        let mut n = lock(self.0);
        let (ext, _depth) = n.block_status_chain(offset, len).map_err(io_err)?;
        let mut flags = 0;
        if !ext.allocated || !ext.data {
            flags |= STATE_HOLE;
        }
        if ext.zero {
            flags |= STATE_ZERO;
        }
        // A hole that does not read as zero would lie; report it as data.
        if flags == STATE_HOLE {
            flags = 0;
        }
        Ok(vec![(ext.len.max(1), flags)])
    }
}

/// An exported block backend: data goes through the backend, so its I/O
/// statistics count NBD clients like any other user; allocation status
/// comes from its medium.
struct BackendExport<'a> {
    backend: &'a block::Backend,
    root: NodeBackend<'a>,
}

impl NbdExportBackend for BackendExport<'_> {
    fn size(&self) -> u64 {
        self.backend.length().unwrap_or(0)
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), NbdIoError> {
        self.backend.read(offset, buf).map_err(io_err)
    }

    /// File ranges, zeroes and data, accounted as one read of the backend.
    fn read_to(
        &mut self,
        offset: u64,
        len: u64,
        sink: &mut dyn MappedRead,
    ) -> Result<(), NbdIoError> {
        self.backend.read_mapped(offset, len, sink).map_err(io_err)
    }

    /// Stale file ranges read again were counted when first read.
    fn read_again(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), NbdIoError> {
        self.backend
            .io_unaccounted(|| self.backend.read(offset, buf))
            .map_err(io_err)
    }

    fn write(&mut self, offset: u64, data: &[u8], fua: bool) -> Result<(), NbdIoError> {
        self.backend.write(offset, data, fua).map_err(io_err)
    }

    fn write_zeroes(
        &mut self,
        offset: u64,
        len: u64,
        may_trim: bool,
        fua: bool,
    ) -> Result<(), NbdIoError> {
        self.backend
            .write_zeroes(offset, len, may_trim)
            .map_err(io_err)?;
        if fua {
            self.backend.flush().map_err(io_err)?;
        }
        Ok(())
    }

    fn trim(&mut self, offset: u64, len: u64) -> Result<(), NbdIoError> {
        self.backend.discard(offset, len).map_err(io_err)
    }

    fn flush(&mut self) -> Result<(), NbdIoError> {
        self.backend.flush().map_err(io_err)
    }

    fn block_status(&mut self, offset: u64, len: u64) -> Result<Vec<(u64, u32)>, NbdIoError> {
        self.root.block_status(offset, len)
    }
}

struct Resolver<'a> {
    nodes: &'a HashMap<String, NodeRef>,
    graph: &'a block::BlockGraph,
    throttle: &'a Groups,
    inbox: &'a NbdInbox,
    /// Now on the throttle clock.
    now: i64,
    /// A request was queued: the throttle timer needs re-arming.
    held: bool,
}

impl ExportResolver for Resolver<'_> {
    fn with_backend(
        &mut self,
        backend: &str,
        f: &mut dyn FnMut(&mut dyn NbdExportBackend),
    ) -> bool {
        let Some(node) = self.nodes.get(backend) else {
            return false;
        };
        match self.graph.backend(backend) {
            Some(b) => f(&mut BackendExport {
                backend: b,
                root: NodeBackend(node),
            }),
            None => f(&mut NodeBackend(node)),
        }
        true
    }

    fn mapping_generation(&self) -> u64 {
        block::node::mapping_generation()
    }

    /// NBD clients share the backend's throttle group with its other users,
    /// as every request goes through the backend (in QEMU 2.8 an export had
    /// a backend of its own, unthrottled). A held request waits in the
    /// group's queue like a qemu-io aio request; only a block backend can
    /// have limits, so node-name exports always go.
    fn admit(&mut self, backend: &str, ticket: NbdTicket, is_write: bool, bytes: u64) -> bool {
        let held = Held::Nbd {
            ticket,
            inbox: self.inbox.clone(),
        };
        match throttle::groups(self.throttle).submit(backend, is_write, bytes, held, self.now) {
            Admission::Go(_) => true,
            Admission::Queued => {
                self.held = true;
                false
            }
        }
    }
}

/// Lets the NBD requests their throttle group released go on.
pub fn resume_released(emu: &mut Emulator) {
    let Some(st) = emu.nbd.as_ref() else { return };
    let tickets = match st.inbox.lock() {
        Ok(mut q) => std::mem::take(&mut *q),
        Err(p) => std::mem::take(&mut *p.into_inner()),
    };
    for t in tickets {
        if emu.nbd.as_mut().is_some_and(|st| st.server.resume(t)) {
            emu.nbd_client_ready(t.client);
        }
    }
}

fn interest_bits(i: Interest) -> (bool, bool) {
    (i.readable, i.writable)
}

impl Emulator {
    fn nbd_register_client(&mut self, id: ClientId) {
        let Some(st) = self.nbd.as_mut() else { return };
        let (Some(fd), Some(int)) = (st.server.client_fd(id), st.server.client_interest(id)) else {
            return;
        };
        let (r, w) = interest_bits(int);
        if let Ok(t) = self.fdwatch.add(fd, r, w) {
            st.clients.insert(id, t);
            self.owners.insert(t, FdOwner::NbdClient(id));
        }
    }

    fn nbd_drop_clients(&mut self, closed: Vec<ClosedClient>) {
        for c in closed {
            if let Some(t) = self.nbd.as_mut().and_then(|s| s.clients.remove(&c.id)) {
                self.fdwatch.remove(t);
                self.owners.remove(&t);
            }
            drop(c.fd);
        }
    }

    /// The listening socket is readable: take every waiting client.
    pub fn nbd_accept(&mut self) {
        loop {
            let Some(st) = self.nbd.as_mut() else { return };
            match st.server.accept() {
                Ok(Some(id)) => self.nbd_register_client(id),
                Ok(None) => return,
                Err(e) => {
                    eprintln!("qemu-system-x86_64: {e}");
                    return;
                }
            }
        }
    }

    /// A client's socket is ready: let it make bounded progress.
    pub fn nbd_client_ready(&mut self, id: ClientId) {
        let now = throttle::now(self);
        let Some(st) = self.nbd.as_mut() else { return };
        let mut resolver = Resolver {
            nodes: &st.nodes,
            graph: &self.block,
            throttle: &self.blockdevs.throttle,
            inbox: &st.inbox,
            now,
            held: false,
        };
        let status = st.server.client_ready(id, &mut resolver);
        let held = resolver.held;
        match status {
            Some(ClientStatus::Open(int)) => {
                if let Some(t) = st.clients.get(&id).copied() {
                    let (r, w) = interest_bits(int);
                    self.fdwatch.set_interest(t, r, w);
                }
            }
            Some(ClientStatus::Closed(c)) => self.nbd_drop_clients(vec![c]),
            None => {}
        }
        // Writes through NBD may raise block events (thresholds, corruption).
        crate::blockdev::flush_events(self);
        if held {
            throttle::rearm(self);
        }
    }

    /// A backend or node is going away: its exports end and their clients
    /// are disconnected.
    pub fn nbd_backend_removed(&mut self, name: &str) {
        let Some(st) = self.nbd.as_mut() else { return };
        let mut closed = Vec::new();
        for export in st.server.exports_of_backend(name) {
            if let Ok(c) = st.server.remove_export(&export) {
                closed.extend(c);
            }
        }
        st.nodes.remove(name);
        if let Some(pos) = st.backend_users.iter().position(|b| b == name) {
            st.backend_users.remove(pos);
            self.blockdevs.remove_user(name);
        }
        self.nbd_drop_clients(closed);
    }
}

/// QMP's SocketAddress (`{"type": "inet", "data": {...}}`) as an NBD address.
fn parse_socket_address(v: &serde_json::Value) -> Result<NbdAddr, QmpError> {
    let data = &v["data"];
    let s = |k: &str| data[k].as_str().unwrap_or("").to_string();
    match v["type"].as_str() {
        Some("inet") => Ok(NbdAddr::Inet {
            host: s("host"),
            port: s("port"),
        }),
        Some("unix") => Ok(NbdAddr::Unix { path: s("path") }),
        Some("fd") => Ok(NbdAddr::Fd { name: s("str") }),
        _ => Err(QmpError::generic("Invalid parameter 'addr'")),
    }
}

pub fn server_start(
    emu: &mut Emulator,
    ctx: &crate::qmp_cmds::CmdCtx,
    addr: &NbdAddr,
    tls_creds: Option<&str>,
) -> Result<(), QmpError> {
    if emu.nbd.is_some() {
        return Err(QmpError::generic("NBD server already running"));
    }
    let server = match addr {
        NbdAddr::Fd { name } => {
            let fd = crate::qmp_cmds::fd::take_named_fd(emu, ctx, name)?;
            NbdServer::from_listener_fd(fd)
        }
        a => NbdServer::listen(a),
    }
    .map_err(|e| QmpError::generic(e.to_string()))?;
    if let Some(id) = tls_creds {
        // QEMU looks the credentials object up first.
        if emu.qom.object(id).is_none() {
            return Err(QmpError::generic(format!(
                "No TLS credentials with id '{id}'"
            )));
        }
        return Err(QmpError::generic("TLS is not supported by this NBD server"));
    }
    let mut st = NbdState {
        server,
        listener_token: None,
        clients: HashMap::new(),
        nodes: HashMap::new(),
        backend_users: Vec::new(),
        inbox: NbdInbox::default(),
    };
    if let Some(fd) = st.server.listener_fd() {
        let t = emu
            .fdwatch
            .add(fd, true, false)
            .map_err(|e| QmpError::generic(e.to_string()))?;
        emu.owners.insert(t, FdOwner::NbdListener);
        st.listener_token = Some(t);
    }
    emu.nbd = Some(st);
    Ok(())
}

pub fn server_add(emu: &mut Emulator, device: &str, writable: bool) -> Result<(), QmpError> {
    if emu.nbd.is_none() {
        return Err(QmpError::generic("NBD server not running"));
    }
    if emu
        .nbd
        .as_ref()
        .is_some_and(|s| s.server.export(device).is_some())
    {
        return Err(QmpError::generic(format!(
            "NBD server already exporting device '{device}'"
        )));
    }
    let node = crate::blockdev::lookup_bs(&emu.block, Some(device), Some(device))?;
    // A read-only node is exported read-only, silently, as QEMU does.
    let writable = writable && !lock(&node).is_read_only();
    let Some(st) = emu.nbd.as_mut() else {
        return Err(QmpError::generic("NBD server not running"));
    };
    st.server
        .add_export(NbdExport {
            name: device.to_string(),
            backend: device.to_string(),
            description: String::new(),
            writable,
        })
        .map_err(|e| QmpError::generic(e.to_string()))?;
    st.nodes.insert(device.to_string(), node);
    if emu.block.backend(device).is_some() {
        st.backend_users.push(device.to_string());
        emu.blockdevs.add_user(device);
    }
    Ok(())
}

/// Stops the server if one runs (QEMU's nbd-server-stop never fails).
pub fn server_stop(emu: &mut Emulator) {
    let Some(mut st) = emu.nbd.take() else { return };
    for b in st.backend_users.drain(..) {
        emu.blockdevs.remove_user(&b);
    }
    let down = st.server.shutdown();
    for c in down.clients {
        if let Some(t) = st.clients.remove(&c.id) {
            emu.fdwatch.remove(t);
            emu.owners.remove(&t);
        }
    }
    if let Some(t) = st.listener_token.take() {
        emu.fdwatch.remove(t);
        emu.owners.remove(&t);
    }
    drop(down.listener);
}

pub mod qmp_handlers {
    use serde_json::Value;

    use qmp::error::QmpError;

    use super::{parse_socket_address, server_add, server_start, server_stop};
    use crate::emulator::Emulator;
    use crate::qmp_cmds::{arg_bool, arg_str, empty, Args, CmdCtx};

    pub fn nbd_server_start(
        emu: &mut Emulator,
        ctx: &mut CmdCtx,
        args: &Args,
    ) -> Result<Value, QmpError> {
        let addr = parse_socket_address(args.get("addr").unwrap_or(&Value::Null))?;
        server_start(emu, ctx, &addr, arg_str(args, "tls-creds"))?;
        Ok(empty())
    }

    pub fn nbd_server_add(
        emu: &mut Emulator,
        _: &mut CmdCtx,
        args: &Args,
    ) -> Result<Value, QmpError> {
        let device = arg_str(args, "device").unwrap_or("");
        server_add(emu, device, arg_bool(args, "writable").unwrap_or(false))?;
        Ok(empty())
    }

    pub fn nbd_server_stop(
        emu: &mut Emulator,
        _: &mut CmdCtx,
        _: &Args,
    ) -> Result<Value, QmpError> {
        server_stop(emu);
        Ok(empty())
    }
}
