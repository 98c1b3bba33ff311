//! Block feature commands on top of the graph: statistics
//! (query-blockstats), write thresholds, dirty bitmaps and quorum children
//! (x-blockdev-change).

use serde_json::Value;

use block::{lock, NodeRef};
use qmp::error::QmpError;

use super::{arg_bool, arg_i64, arg_str, empty, Args, CmdCtx};
use crate::blockdev::{lookup_bs, qerr};
use crate::emulator::Emulator;

pub fn query_blockstats(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let query_nodes = arg_bool(args, "query-nodes").unwrap_or(false);
    let now = block::stats::acct_now();
    Ok(block::stats::query_blockstats(&emu.block, query_nodes, now))
}

pub fn block_set_write_threshold(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let name = arg_str(args, "node-name").unwrap_or("");
    let threshold = args
        .get("write-threshold")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let Some(node) = emu.block.find_node(name) else {
        return Err(QmpError::generic(format!("Device '{name}' not found")));
    };
    lock(&node).tracking_mut().threshold.set(threshold);
    Ok(empty())
}

/// block_dirty_bitmap_lookup's node half.
fn bitmap_node(emu: &Emulator, node: &str) -> Result<NodeRef, QmpError> {
    lookup_bs(&emu.block, Some(node), Some(node))
        .map_err(|_| QmpError::generic(format!("Node '{node}' not found")))
}

pub fn block_dirty_bitmap_add(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let node = arg_str(args, "node").unwrap_or("");
    let name = arg_str(args, "name").unwrap_or("");
    if name.is_empty() {
        return Err(QmpError::generic("Bitmap name cannot be empty"));
    }
    let bs = lookup_bs(&emu.block, Some(node), Some(node))?;
    let granularity = arg_i64(args, "granularity").map(|g| g as u64);
    if let Some(g) = granularity {
        if g < 512 || !g.is_power_of_two() {
            return Err(QmpError::generic(
                "Granularity must be power of 2 and at least 512",
            ));
        }
    }
    let r = lock(&bs).dirty_bitmap_add(name, granularity);
    r.map_err(qerr)?;
    Ok(empty())
}

pub fn block_dirty_bitmap_remove(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let node = arg_str(args, "node").unwrap_or("");
    let name = arg_str(args, "name").unwrap_or("");
    let bs = bitmap_node(emu, node)?;
    let r = lock(&bs).tracking_mut().bitmaps.remove(name);
    r.map_err(qerr)?;
    Ok(empty())
}

pub fn block_dirty_bitmap_clear(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let node = arg_str(args, "node").unwrap_or("");
    let name = arg_str(args, "name").unwrap_or("");
    let bs = bitmap_node(emu, node)?;
    let r = lock(&bs).tracking_mut().bitmaps.clear(name);
    r.map_err(qerr)?;
    Ok(empty())
}

pub fn x_blockdev_change(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let parent = arg_str(args, "parent").unwrap_or("");
    let child = arg_str(args, "child");
    let node = arg_str(args, "node");
    let parent_bs = lookup_bs(&emu.block, Some(parent), Some(parent))?;
    match (child, node) {
        (Some(_), Some(_)) => {
            return Err(QmpError::generic(
                "The parameters child and node are in conflict",
            ))
        }
        (None, None) => return Err(QmpError::generic("Either child or node must be specified")),
        _ => {}
    }
    let new = match node {
        Some(n) => match emu.block.find_node(n) {
            Some(bs) => Some(bs),
            None => return Err(QmpError::generic(format!("Node '{n}' not found"))),
        },
        None => None,
    };
    // The child being removed goes away with it unless something else holds it.
    let removed = child.and_then(|c| {
        let mut g = lock(&parent_bs);
        let q = g.driver_as::<block::drivers::quorum::QuorumDriver>()?;
        q.children()
            .iter()
            .find(|(n, _)| n == c)
            .map(|(_, node)| node.clone())
    });
    let node_arg = new.as_ref().map(|n| (n, emu.block.is_in_use(n)));
    block::drivers::quorum::x_blockdev_change(&parent_bs, child, node_arg).map_err(qerr)?;
    if let Some(r) = removed {
        emu.blockdevs.drop_tree(&mut emu.block, &r);
    }
    Ok(empty())
}

pub fn block_set_io_throttle(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let device = arg_str(args, "device").unwrap_or("");
    let Some(b) = emu.block.backend(device) else {
        return Err(QmpError::device_not_found(device));
    };
    if !b.has_medium() {
        return Err(QmpError::device_has_no_medium(device));
    }
    let cfg = block::throttle::ThrottleConfig::from_qmp(args).map_err(qerr)?;
    cfg.validate().map_err(qerr)?;
    let group = arg_str(args, "group");
    let throttled = crate::blockdev::throttle::groups(&emu.blockdevs.throttle).is_throttled(device);
    // A new group defaults to the device name; an existing one is kept
    // unless another is named.
    let group = match (cfg.enabled(), throttled, group) {
        (true, false, None) => Some(device),
        (_, _, g) => g,
    };
    crate::blockdev::throttle::set_limits(emu, device, group, &cfg).map_err(QmpError::generic)?;
    Ok(empty())
}
