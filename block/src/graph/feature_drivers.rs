//! Opening the filter drivers with children of their own: `blkdebug` (one
//! `image` child, or `blkdebug:<config>:<image>` names) and `quorum` (a
//! `children` list).

use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::{with_protocol_driver, BlockGraph, OpenCtx};
use crate::driver::Children;
use crate::drivers::blkdebug::{parse_filename, BlkdebugDriver};
use crate::drivers::quorum::{children_options, QuorumDriver};
use crate::error::{BlockError, BlockResult};
use crate::node::{lock, DetectZeroes, Node, NodeOptions, NodeRef};
use crate::options::{get_str, Options};

impl BlockGraph {
    /// Opens a child given as a node-name reference or an option object;
    /// `protocol`: without a driver, it is picked from the file name rather
    /// than probed from the content (QEMU's child_file role).
    fn open_feature_child(
        &mut self,
        spec: &Value,
        ctx: &mut OpenCtx,
        nopts: NodeOptions,
        protocol: bool,
    ) -> BlockResult<NodeRef> {
        let inherit = NodeOptions {
            detect_zeroes: DetectZeroes::Off,
            ..nopts
        };
        match spec {
            Value::String(r) => self.find_ref(ctx, r),
            Value::Object(o) => {
                let o = if protocol {
                    with_protocol_driver(o)?
                } else {
                    o.clone()
                };
                let n = self.open_node(&o, ctx, Some(inherit), nopts.read_only)?;
                lock(&n).set_implicit(true);
                Ok(n)
            }
            _ => Err(BlockError::InvalidArgument(
                "Invalid parameter type for child, expected: object or string".into(),
            )),
        }
    }

    fn open_file_by_name(
        &mut self,
        filename: &str,
        ctx: &mut OpenCtx,
        nopts: NodeOptions,
    ) -> BlockResult<NodeRef> {
        let mut o = Options::new();
        o.insert("filename".into(), Value::from(filename));
        self.open_feature_child(&Value::Object(o), ctx, nopts, true)
    }

    pub(super) fn open_blkdebug(
        &mut self,
        opts: &Options,
        ctx: &mut OpenCtx,
        node_name: String,
        nopts: NodeOptions,
    ) -> BlockResult<NodeRef> {
        // A protocol-level node is named before the children it opens.
        let pos = ctx.created.len();
        let mut dopts = opts.clone();
        let image = if let Some(spec) = opts.get("image") {
            self.open_feature_child(spec, ctx, nopts, true)?
        } else {
            let name = match (get_str(opts, "x-image")?, get_str(opts, "filename")?) {
                (Some(x), _) => x.to_string(),
                (None, Some(f)) => {
                    let (conf, img) = parse_filename(f)?;
                    if let (Some(c), None) = (conf, opts.get("config")) {
                        dopts.insert("config".into(), Value::from(c));
                    }
                    img
                }
                (None, None) => {
                    return Err(BlockError::InvalidArgument(
                        "A block device must be specified for \"image\"".into(),
                    ))
                }
            };
            self.open_file_by_name(&name, ctx, nopts)?
        };
        let drv = BlkdebugDriver::new(&dopts)?;
        let filename = format!(
            "blkdebug:{}:{}",
            drv.config_file().unwrap_or(""),
            lock(&image).filename()
        );
        let node = Node::new(
            node_name,
            Box::new(drv),
            Children::with_file(image),
            nopts,
            filename,
            self.events.clone(),
        );
        let r = Arc::new(Mutex::new(node));
        ctx.created.insert(pos, r.clone());
        Ok(r)
    }

    pub(super) fn open_quorum(
        &mut self,
        opts: &Options,
        ctx: &mut OpenCtx,
        node_name: String,
        nopts: NodeOptions,
    ) -> BlockResult<NodeRef> {
        let pos = ctx.created.len();
        let specs = children_options(opts)?;
        let mut children = Vec::with_capacity(specs.len());
        for spec in &specs {
            children.push(self.open_feature_child(spec, ctx, nopts, false)?);
        }
        let drv = QuorumDriver::new(opts, children, node_name.clone(), self.events.clone())?;
        let filename = format!("json:{}", Value::Object(opts.clone()));
        let node = Node::new(
            node_name,
            Box::new(drv),
            Children::default(),
            nopts,
            filename,
            self.events.clone(),
        );
        let r = Arc::new(Mutex::new(node));
        ctx.created.insert(pos, r.clone());
        Ok(r)
    }
}
