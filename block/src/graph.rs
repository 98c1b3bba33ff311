//! The block graph: every node and backend, opening nodes from option maps
//! (blockdev-add / -drive / -blockdev), name lookups, and removal rules.
//!
//! The graph owns naming: user node-names are validated and unique, nodes without
//! one get `#block<counter><2 random digits>` as QEMU generates them.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::backend::Backend;
use crate::driver::{Children, Driver};
use crate::drivers::file::{FdsetOpener, FileDriver};
use crate::drivers::null::{NullDriver, NULL_DEFAULT_SIZE};
use crate::drivers::raw::RawDriver;
use crate::error::{BlockError, BlockResult};
use crate::events::{BlockEvent, EventSink};
use crate::node::{lock, DetectZeroes, Node, NodeOptions, NodeRef};
use crate::options::{get_bool, get_size, get_str, nest, Options};
use crate::probe::{probe_format, PROBE_LEN};
use crate::qcow2::{Qcow2, Qcow2Options};
use crate::request::InflightHandle;

/// Opening blkdebug and quorum nodes.
mod feature_drivers;

/// Deepest backing chain the graph opens (guards against runaway chains).
pub const MAX_BACKING_DEPTH: usize = 1000;

/// All nodes and backends.
pub struct BlockGraph {
    nodes: Vec<NodeRef>,
    backends: Vec<Backend>,
    events: EventSink,
    fdsets: Option<Box<FdsetOpener>>,
    name_counter: u64,
    rng: u64,
    /// Requests that stopped (at a breakpoint, behind another request) and
    /// still have an issuer waiting for their result.
    inflight: InflightHandle,
}

/// State of one `open` call: nodes made so far, committed only on success.
struct OpenCtx {
    created: Vec<NodeRef>,
    /// Canonical file names of the backing chain being opened (loop detection).
    chain: Vec<String>,
}

impl Default for BlockGraph {
    fn default() -> Self {
        Self::new()
    }
}

/// QEMU's node-name rule: a letter first, then letters, digits, '-', '.', '_'; < 32 chars.
pub fn valid_node_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && name.len() < 32
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
}

impl BlockGraph {
    pub fn new() -> BlockGraph {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ ((std::process::id() as u64) << 32);
        BlockGraph {
            nodes: Vec::new(),
            backends: Vec::new(),
            events: EventSink::default(),
            fdsets: None,
            name_counter: 0,
            rng: seed | 1,
            inflight: InflightHandle::default(),
        }
    }

    /// The queue of requests in flight (qemu-io's aio requests).
    pub fn inflight(&self) -> InflightHandle {
        self.inflight.clone()
    }

    /// Polls the requests in flight again (after a breakpoint was resumed,
    /// say); returns what the ones that finished print.
    pub fn run_inflight(&self) -> String {
        crate::request::inflight::lock_inflight(&self.inflight).run()
    }

    /// True when no request is in flight anywhere.
    pub fn inflight_is_idle(&self) -> bool {
        crate::request::inflight::lock_inflight(&self.inflight).is_empty()
    }

    /// True when a request not finished yet (stopped at a breakpoint, or
    /// behind one) goes through `node`, or was issued to a node below it.
    pub fn has_requests_in_flight(&self, node: &NodeRef) -> bool {
        let roots = crate::request::inflight::lock_inflight(&self.inflight).nodes();
        roots
            .iter()
            .any(|r| tree_contains(r, node) || tree_contains(node, r))
    }

    /// Installs the callback that opens `/dev/fdset/N` names.
    pub fn set_fdset_opener(&mut self, opener: Box<FdsetOpener>) {
        self.fdsets = Some(opener);
    }

    /// Events raised since the last call (BLOCK_IMAGE_CORRUPTED, ...).
    pub fn take_events(&self) -> Vec<BlockEvent> {
        self.events.take()
    }

    fn random_2_digits(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % 100
    }

    /// A fresh generated node name.
    pub fn generate_node_name(&mut self) -> String {
        let n = self.name_counter;
        self.name_counter += 1;
        format!("#block{}{:02}", n, self.random_2_digits())
    }

    /// Every node, in creation order.
    pub fn nodes(&self) -> &[NodeRef] {
        &self.nodes
    }

    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// A node by node-name.
    pub fn find_node(&self, name: &str) -> Option<NodeRef> {
        self.nodes.iter().find(|n| lock(n).name() == name).cloned()
    }

    pub fn backend(&self, name: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.name() == name)
    }

    pub fn backend_mut(&mut self, name: &str) -> Option<&mut Backend> {
        self.backends.iter_mut().find(|b| b.name() == name)
    }

    /// QEMU's device-or-node lookup: a backend's root first, then a node-name.
    pub fn lookup(&self, device_or_node: &str) -> BlockResult<NodeRef> {
        if let Some(b) = self.backend(device_or_node) {
            return b.root().ok_or_else(|| {
                BlockError::NoMedium(format!("Device '{}' has no medium", device_or_node))
            });
        }
        // bdrv_lookup_bs: a GenericError, not DeviceNotFound.
        self.find_node(device_or_node).ok_or_else(|| {
            BlockError::Generic(format!(
                "Cannot find device={} nor node_name={}",
                device_or_node, device_or_node
            ))
        })
    }

    /// Creates a backend named `name` with an optional medium.
    pub fn add_backend(&mut self, name: &str, root: Option<NodeRef>) -> BlockResult<()> {
        if self.backend(name).is_some() {
            return Err(BlockError::Generic(format!(
                "Device with id '{}' already exists",
                name
            )));
        }
        if self.find_node(name).is_some() {
            return Err(BlockError::Generic(format!(
                "Device name '{}' conflicts with an existing node name",
                name
            )));
        }
        self.backends.push(Backend::new(name.to_string(), root));
        Ok(())
    }

    /// Removes a backend; its medium's nodes go too unless something else uses them.
    pub fn remove_backend(&mut self, name: &str) -> BlockResult<()> {
        let pos = self
            .backends
            .iter()
            .position(|b| b.name() == name)
            .ok_or_else(|| BlockError::NotFound(format!("Device '{}' not found", name)))?;
        let b = self.backends.remove(pos);
        if let Some(root) = b.root() {
            self.release_if_unused(&root);
        }
        Ok(())
    }

    /// Flushes and closes every node (marks images clean); for process exit.
    pub fn close_all(&mut self) {
        for n in self.nodes.iter().rev() {
            let _ = lock(n).close();
        }
    }

    /// True when a node is a child of another node or the medium of a backend.
    pub fn is_in_use(&self, node: &NodeRef) -> bool {
        self.backends
            .iter()
            .any(|b| b.root().is_some_and(|r| Arc::ptr_eq(&r, node)))
            || self.parents_of(node).next().is_some()
    }

    fn parents_of<'a>(&'a self, node: &'a NodeRef) -> impl Iterator<Item = &'a NodeRef> + 'a {
        self.nodes.iter().filter(move |p| {
            if Arc::ptr_eq(p, node) {
                return false;
            }
            let g = lock(p);
            let c = g.children();
            c.file.as_ref().is_some_and(|f| Arc::ptr_eq(f, node))
                || c.backing.as_ref().is_some_and(|b| Arc::ptr_eq(b, node))
                || g.other_children().iter().any(|o| Arc::ptr_eq(o, node))
        })
    }

    /// Deletes a node by name (x-blockdev-del); refused while it is in use.
    pub fn remove_node(&mut self, name: &str) -> BlockResult<()> {
        let node = self
            .find_node(name)
            .ok_or_else(|| BlockError::NotFound(format!("Cannot find node {}", name)))?;
        if self.is_in_use(&node) {
            return Err(BlockError::InUse(format!("Node {} is in use", name)));
        }
        self.drop_node(&node);
        Ok(())
    }

    /// Drops an implicitly created node that nothing uses any more.
    fn release_if_unused(&mut self, node: &NodeRef) {
        if lock(node).implicit() && !self.is_in_use(node) {
            self.drop_node(node);
        }
    }

    fn drop_node(&mut self, node: &NodeRef) {
        let (file, backing, others) = {
            let mut g = lock(node);
            // Closing writes back caches and marks the image clean; a failure
            // here cannot be reported to anyone and leaves a dirty image at worst.
            let _ = g.close();
            (g.file(), g.backing(), g.other_children())
        };
        self.nodes.retain(|n| !Arc::ptr_eq(n, node));
        {
            let mut g = lock(node);
            g.set_file_child(None);
            g.set_backing_child(None);
        }
        for child in [file, backing].into_iter().flatten().chain(others) {
            self.release_if_unused(&child);
        }
    }

    /// Replaces a node's backing child (blockdev-snapshot, jobs); refuses loops.
    pub fn set_backing(&mut self, node: &NodeRef, backing: Option<NodeRef>) -> BlockResult<()> {
        if let Some(b) = &backing {
            if tree_contains(b, node) {
                return Err(BlockError::InvalidArgument(
                    "Making this node the backing file would create a loop".into(),
                ));
            }
        }
        // QEMU words the blocker once, with the parent's device-or-node
        // name at the time a backing file first appears, and keeps it
        // while the backing is swapped.
        let label = self
            .backends
            .iter()
            .find(|b| b.root().is_some_and(|r| Arc::ptr_eq(&r, node)))
            .map(|b| b.name().to_string());
        let old = {
            let mut g = lock(node);
            let old = g.backing();
            if backing.is_none() {
                g.set_backing_blocker(None);
            } else if old.is_none() {
                let l = label.unwrap_or_else(|| g.name().to_string());
                g.set_backing_blocker(Some(l));
            }
            let rec = backing.as_ref().map(|b| {
                let bg = lock(b);
                (bg.filename().to_string(), bg.driver_name().to_string())
            });
            if rec.is_some() {
                g.set_backing_record(rec);
            }
            g.set_backing_child(backing);
            old
        };
        if let Some(old) = old {
            self.release_if_unused(&old);
        }
        Ok(())
    }

    /// Adds a node made elsewhere (e.g. by a job) under a name.
    pub fn insert_node(&mut self, node: NodeRef) -> BlockResult<()> {
        let name = lock(&node).name().to_string();
        if self.find_node(&name).is_some() {
            return Err(BlockError::Generic(format!(
                "Duplicate node name '{}'",
                name
            )));
        }
        self.nodes.push(node);
        Ok(())
    }

    /// Opens a node tree from blockdev-add style options and adds it to the graph.
    pub fn open(&mut self, opts: &Options) -> BlockResult<NodeRef> {
        let opts = nest(opts)?;
        let mut ctx = OpenCtx {
            created: Vec::new(),
            chain: Vec::new(),
        };
        match self.open_node(&opts, &mut ctx, None, false) {
            Ok(n) => {
                self.nodes.extend(ctx.created);
                Ok(n)
            }
            Err(e) => {
                for n in ctx.created {
                    let mut g = lock(&n);
                    let _ = g.close();
                }
                Err(e)
            }
        }
    }

    /// Opens an image file by name with an optional format (probed when None).
    pub fn open_image(
        &mut self,
        filename: &str,
        format: Option<&str>,
        read_only: bool,
    ) -> BlockResult<NodeRef> {
        let mut o = Options::new();
        if let Some(f) = format {
            o.insert("driver".into(), Value::from(f));
        }
        o.insert("filename".into(), Value::from(filename));
        o.insert("read-only".into(), Value::from(read_only));
        self.open(&o)
    }

    fn name_taken(&self, ctx: &OpenCtx, name: &str) -> bool {
        self.find_node(name).is_some() || ctx.created.iter().any(|n| lock(n).name() == name)
    }

    fn find_ref(&self, ctx: &OpenCtx, name: &str) -> BlockResult<NodeRef> {
        if let Some(n) = ctx.created.iter().find(|n| lock(n).name() == name) {
            return Ok(n.clone());
        }
        self.lookup(name)
    }

    /// Opens one node (and, recursively, its children). `inherit` carries the
    /// parent's flags to a child that does not set its own.
    fn open_node(
        &mut self,
        opts: &Options,
        ctx: &mut OpenCtx,
        inherit: Option<NodeOptions>,
        force_read_only: bool,
    ) -> BlockResult<NodeRef> {
        let base = inherit.unwrap_or_default();
        let node_name = match get_str(opts, "node-name")? {
            Some(n) => {
                if !valid_node_name(n) {
                    return Err(BlockError::InvalidArgument("Invalid node name".into()));
                }
                // QEMU checks the backend namespace first, and names no
                // name in its duplicate error.
                if self.backend(n).is_some() {
                    return Err(BlockError::Generic(format!(
                        "node-name={} is conflicting with a device id",
                        n
                    )));
                }
                if self.name_taken(ctx, n) {
                    return Err(BlockError::Generic("Duplicate node name".into()));
                }
                n.to_string()
            }
            None => self.generate_node_name(),
        };
        let mut nopts = NodeOptions {
            read_only: get_bool(opts, "read-only")?.unwrap_or(base.read_only) || force_read_only,
            ..base
        };
        if let Some(Value::Object(cache)) = opts.get("cache") {
            if let Some(d) = get_bool(cache, "direct")? {
                nopts.cache_direct = d;
            }
            if let Some(nf) = get_bool(cache, "no-flush")? {
                nopts.no_flush = nf;
            }
        }
        if let Some(d) = get_str(opts, "discard")? {
            nopts.discard_unmap = match d {
                "ignore" | "off" => false,
                "unmap" | "on" => true,
                _ => return Err(BlockError::InvalidArgument("Invalid discard option".into())),
            };
        }
        if let Some(dz) = get_str(opts, "detect-zeroes")? {
            nopts.detect_zeroes = match dz {
                "off" => DetectZeroes::Off,
                "on" => DetectZeroes::On,
                "unmap" => DetectZeroes::Unmap,
                _ => {
                    return Err(BlockError::InvalidArgument(format!(
                        "Parameter 'detect-zeroes' does not accept value '{}'",
                        dz
                    )))
                }
            };
            if nopts.detect_zeroes == DetectZeroes::Unmap && !nopts.discard_unmap {
                return Err(BlockError::InvalidArgument(
                    "setting detect-zeroes to unmap is not allowed without setting discard operation to unmap".into(),
                ));
            }
        }
        let driver = get_str(opts, "driver")?;
        let node = match driver {
            Some(d @ ("file" | "host_device" | "host_cdrom")) => {
                let filename = get_str(opts, "filename")?.ok_or_else(|| {
                    BlockError::InvalidArgument("Parameter 'filename' is missing".into())
                })?;
                let d = match d {
                    "host_device" => "host_device",
                    "host_cdrom" => "host_cdrom",
                    _ => "file",
                };
                let drv = FileDriver::open_as(
                    d,
                    filename,
                    nopts.read_only,
                    nopts.cache_direct,
                    self.fdsets.as_deref(),
                )?;
                Node::new(
                    node_name,
                    Box::new(drv),
                    Children::default(),
                    nopts,
                    filename.to_string(),
                    self.events.clone(),
                )
            }
            Some(d @ ("null-co" | "null-aio")) => {
                let size = get_size(opts, "size")?.unwrap_or(NULL_DEFAULT_SIZE);
                let zeroes = get_bool(opts, "read-zeroes")?.unwrap_or(false);
                let latency = crate::drivers::null::parse_latency_ns(opts)?;
                Node::new(
                    node_name,
                    Box::new(
                        NullDriver::new(d == "null-aio", size, zeroes).with_latency_ns(latency),
                    ),
                    Children::default(),
                    nopts,
                    null_filename(d, opts),
                    self.events.clone(),
                )
            }
            Some("raw") | Some("qcow2") | None => {
                return self.open_format(opts, ctx, driver, node_name, nopts);
            }
            // blkdebug and quorum: see graph/feature_drivers.rs.
            Some("blkdebug") => return self.open_blkdebug(opts, ctx, node_name, nopts),
            Some("quorum") => return self.open_quorum(opts, ctx, node_name, nopts),
            Some(other) => {
                return Err(BlockError::InvalidArgument(format!(
                    "Unknown driver '{}'",
                    other
                )))
            }
        };
        let r = Arc::new(std::sync::Mutex::new(node));
        ctx.created.push(r.clone());
        Ok(r)
    }

    fn open_file_child(
        &mut self,
        opts: &Options,
        ctx: &mut OpenCtx,
        nopts: NodeOptions,
    ) -> BlockResult<NodeRef> {
        let child_inherit = NodeOptions {
            detect_zeroes: DetectZeroes::Off,
            ..nopts
        };
        match opts.get("file") {
            Some(Value::String(r)) => self.find_ref(ctx, r),
            Some(Value::Object(o)) => {
                let o = with_protocol_driver(o)?;
                let n = self.open_node(&o, ctx, Some(child_inherit), nopts.read_only)?;
                lock(&n).set_implicit(true);
                Ok(n)
            }
            Some(_) => Err(BlockError::InvalidArgument(
                "Invalid parameter type for 'file', expected: object or string".into(),
            )),
            None => match get_str(opts, "filename")? {
                Some(f) => {
                    let mut o = Options::new();
                    o.insert("filename".into(), Value::from(f));
                    let o = with_protocol_driver(&o)?;
                    let n = self.open_node(&o, ctx, Some(child_inherit), nopts.read_only)?;
                    lock(&n).set_implicit(true);
                    Ok(n)
                }
                None => Err(BlockError::InvalidArgument(
                    "A block device must be specified for \"file\"".into(),
                )),
            },
        }
    }

    fn open_format(
        &mut self,
        opts: &Options,
        ctx: &mut OpenCtx,
        driver: Option<&str>,
        node_name: String,
        nopts: NodeOptions,
    ) -> BlockResult<NodeRef> {
        let file = self.open_file_child(opts, ctx, nopts)?;
        // QEMU names a format node after its file and before its backing
        // chain; query-named-block-nodes lists nodes in that order.
        let pos = ctx.created.len();
        let filename = lock(&file).filename().to_string();
        let (fmt, probed) = match driver {
            Some(d) => (d.to_string(), false),
            None => {
                let mut buf = [0u8; PROBE_LEN];
                let mut f = lock(&file);
                let len = f.length()?.min(PROBE_LEN as u64) as usize;
                f.read(0, &mut buf[..len])?;
                (probe_format(&buf[..len]).to_string(), true)
            }
        };
        let children = Children::with_file(file.clone());
        let driver: Box<dyn Driver> = match fmt.as_str() {
            "raw" => Box::new(RawDriver::open(
                &children,
                get_size(opts, "offset")?.unwrap_or(0),
                get_size(opts, "size")?,
            )?),
            "qcow2" => {
                let qo = Qcow2Options {
                    l2_cache_size: get_size(opts, "l2-cache-size")?,
                    refcount_cache_size: get_size(opts, "refcount-cache-size")?,
                };
                Box::new(Qcow2::open_with(&children, nopts.read_only, &qo)?)
            }
            other => {
                return Err(BlockError::Unsupported(format!(
                    "Unknown driver '{}'",
                    other
                )))
            }
        };
        let mut node = Node::new(
            node_name,
            driver,
            children,
            nopts,
            filename.clone(),
            self.events.clone(),
        );
        node.set_probed(probed && fmt == "raw");
        let backing = if fmt == "qcow2" {
            self.open_backing(opts, ctx, &node, &filename, nopts)?
        } else {
            None
        };
        if let Some(b) = &backing {
            let label = node.name().to_string();
            node.set_backing_blocker(Some(label));
            let bg = lock(b);
            node.set_backing_record(Some((
                bg.filename().to_string(),
                bg.driver_name().to_string(),
            )));
        }
        node.set_backing_child(backing);
        let r = Arc::new(std::sync::Mutex::new(node));
        ctx.created.insert(pos, r.clone());
        Ok(r)
    }

    fn open_backing(
        &mut self,
        opts: &Options,
        ctx: &mut OpenCtx,
        node: &Node,
        filename: &str,
        nopts: NodeOptions,
    ) -> BlockResult<Option<NodeRef>> {
        let inherit = NodeOptions {
            read_only: true,
            detect_zeroes: DetectZeroes::Off,
            ..nopts
        };
        match opts.get("backing") {
            Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) if s.is_empty() => return Ok(None),
            Some(Value::String(r)) => {
                return self.find_ref(ctx, r).map(Some).map_err(|e| {
                    BlockError::Generic(format!("Could not open backing file: {}", e))
                })
            }
            // Options naming their own file open on their own; others
            // (node-name, a further backing...) apply to the file the image
            // header names, as QEMU merges them with it.
            Some(Value::Object(o)) if o.contains_key("file") || o.contains_key("filename") => {
                let n = self.open_node(o, ctx, Some(inherit), true)?;
                lock(&n).set_implicit(true);
                return Ok(Some(n));
            }
            Some(Value::Object(_)) => {}
            Some(_) => {
                return Err(BlockError::InvalidArgument(
                    "Invalid parameter type for 'backing', expected: object or string".into(),
                ))
            }
            None => {}
        }
        let Some((name, fmt)) = node.backing_file() else {
            return Ok(None);
        };
        let path = resolve_backing_name(filename, &name);
        let canon = std::fs::canonicalize(&path)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| path.clone());
        if ctx.chain.is_empty() {
            let me = std::fs::canonicalize(filename)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| filename.to_string());
            ctx.chain.push(me);
        }
        if ctx.chain.contains(&canon) {
            return Err(BlockError::InvalidImage(format!(
                "Backing file '{}' creates an infinite loop.",
                path
            )));
        }
        if ctx.chain.len() >= MAX_BACKING_DEPTH {
            return Err(BlockError::InvalidImage(
                "Backing file chain is too deep".into(),
            ));
        }
        ctx.chain.push(canon);
        let mut o = Options::new();
        if let Some(f) = fmt {
            o.insert("driver".into(), Value::from(f));
        }
        let mut fo = Options::new();
        fo.insert("driver".into(), Value::from("file"));
        fo.insert("filename".into(), Value::from(path.clone()));
        o.insert("file".into(), Value::Object(fo));
        if let Some(Value::Object(extra)) = opts.get("backing") {
            for (k, v) in extra {
                o.insert(k.clone(), v.clone());
            }
        }
        let r = self.open_node(&o, ctx, Some(inherit), true);
        ctx.chain.pop();
        let n = r.map_err(|e| match e {
            BlockError::InvalidImage(m) if m.contains("infinite loop") => {
                BlockError::InvalidImage(m)
            }
            e => BlockError::Generic(format!("Could not open backing file: {}", e)),
        })?;
        lock(&n).set_implicit(true);
        Ok(Some(n))
    }
}

/// True when `node` appears in the backing/file tree below (and including) `top`.
/// The options of a child in QEMU's child_file role: without a driver, the
/// protocol is picked from the file name (`blkdebug:` names, device nodes
/// as host_device, else file), never probed from the content.
pub(crate) fn with_protocol_driver(o: &Options) -> BlockResult<Options> {
    let mut o = o.clone();
    if o.contains_key("driver") {
        return Ok(o);
    }
    if let Some(f) = get_str(&o, "filename")? {
        let proto = if f.starts_with("blkdebug:") {
            "blkdebug"
        } else if crate::drivers::file::is_host_device(f) {
            "host_device"
        } else {
            "file"
        };
        o.insert("driver".into(), Value::from(proto));
    }
    Ok(o)
}

/// True when `node` is `top` or below it through any child (file, backing,
/// quorum children). A graph too deep to walk counts as containing it.
fn tree_contains(top: &NodeRef, node: &NodeRef) -> bool {
    let mut stack = vec![top.clone()];
    let mut seen = 0usize;
    while let Some(n) = stack.pop() {
        if Arc::ptr_eq(&n, node) {
            return true;
        }
        seen += 1;
        if seen > 100_000 {
            return true;
        }
        let g = lock(&n);
        stack.extend(g.file());
        stack.extend(g.backing());
        stack.extend(g.other_children());
    }
    false
}

/// Resolves a backing file name stored in an image: relative names are relative
/// to the directory of the image that names them; protocol names are kept.
pub fn resolve_backing_name(image: &str, backing: &str) -> String {
    if backing.starts_with('/') || backing.contains("://") || image.is_empty() {
        return backing.to_string();
    }
    match Path::new(image).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            dir.join(backing).to_string_lossy().into_owned()
        }
        _ => backing.to_string(),
    }
}

/// A null node's name as QEMU 2.8 refreshes it: `null-co://` when no driver
/// option was given, else `json:` and those options with the driver.
fn null_filename(driver: &str, opts: &Options) -> String {
    let mut m = Options::new();
    for key in ["size", "latency-ns", "read-zeroes"] {
        match opts.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => {
                m.insert(key.to_string(), v.clone());
            }
        }
    }
    if m.is_empty() {
        return format!("{driver}://");
    }
    m.insert("driver".into(), Value::String(driver.into()));
    format!(
        "json:{}",
        qmp::json::to_json_string(&Value::Object(m), false)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_follow_qemu_rules() {
        assert!(valid_node_name("disk0"));
        assert!(valid_node_name("a-b.c_d"));
        assert!(!valid_node_name("0disk"));
        assert!(!valid_node_name("#block1"));
        assert!(!valid_node_name(&"a".repeat(32)));
    }

    #[test]
    fn generated_names_start_with_hash_block() {
        let mut g = BlockGraph::new();
        let a = g.generate_node_name();
        let b = g.generate_node_name();
        assert!(a.starts_with("#block0") && a.len() == 9, "{}", a);
        assert!(b.starts_with("#block1"));
    }

    #[test]
    fn relative_backing_names_resolve_against_the_image_directory() {
        assert_eq!(
            resolve_backing_name("/a/b/top.qcow2", "base.qcow2"),
            "/a/b/base.qcow2"
        );
        assert_eq!(resolve_backing_name("/a/b/top.qcow2", "/x/base"), "/x/base");
        assert_eq!(resolve_backing_name("top.qcow2", "base"), "base");
    }
}
