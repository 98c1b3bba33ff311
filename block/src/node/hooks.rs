//! The node's side of the block features: write tracking (highest offset, dirty
//! bitmaps, write threshold) and blkdebug event signalling. Kept apart from the
//! request paths in `node.rs`, which only call `write_begin`/`write_end`/
//! `flush_begin`.

use std::any::Any;

use super::{lock, Node};
use crate::drivers::blkdebug::BlkdebugEvent;
use crate::error::BlockResult;
use crate::events::BlockEvent;
use crate::node::NodeRef;
use crate::tracking::WriteTracking;

impl Node {
    /// Before a write-type request: write threshold check, then the event the
    /// generic layer signals on the node itself.
    pub(super) fn write_begin(&mut self, offset: u64, len: u64, ev: BlkdebugEvent) {
        if let Some(e) = self.tracking.before_write(&self.name, offset, len) {
            self.events.push(BlockEvent::WriteThreshold(e));
        }
        self.debug_event(ev);
    }

    /// After a write-type request, whatever its result.
    pub(super) fn write_end(&mut self, offset: u64, len: u64, is_discard: bool) {
        if !is_discard {
            self.debug_event(BlkdebugEvent::PwritevDone);
        }
        self.tracking.after_write(offset, len, is_discard);
    }

    /// A flush signals flush_to_os and flush_to_disk on the file child.
    pub(super) fn flush_begin(&mut self) {
        if let Some(f) = &self.children.file {
            let mut g = lock(f);
            g.debug_event(BlkdebugEvent::FlushToOs);
            g.debug_event(BlkdebugEvent::FlushToDisk);
        }
    }

    /// Signals a blkdebug event on this node (format drivers call this on their
    /// file child: `lock(file).debug_event(BlkdebugEvent::WriteAio)`).
    #[inline]
    pub fn debug_event(&mut self, ev: BlkdebugEvent) {
        if self.observes_events {
            self.driver.debug_event(&self.children, ev);
        }
    }

    /// True when events signalled on this node can have an effect (its
    /// driver is blkdebug).
    #[inline]
    pub fn observes_events(&self) -> bool {
        self.observes_events
    }

    /// Highest offset written, dirty bitmaps, write threshold.
    pub fn tracking(&self) -> &WriteTracking {
        &self.tracking
    }

    pub fn tracking_mut(&mut self) -> &mut WriteTracking {
        &mut self.tracking
    }

    /// block-dirty-bitmap-add on this node (granularity defaults from the
    /// cluster size as QEMU's does).
    pub fn dirty_bitmap_add(&mut self, name: &str, granularity: Option<u64>) -> BlockResult<()> {
        let size = self.length()?;
        let cluster = self.cluster_size();
        self.tracking.bitmaps.add(name, granularity, cluster, size)
    }

    /// The driver as its concrete type (e.g. `QuorumDriver`, `BlkdebugDriver`).
    pub fn driver_as<T: Any>(&mut self) -> Option<&mut T> {
        self.driver.as_any_mut()?.downcast_mut::<T>()
    }

    /// Children the driver holds beyond file and backing (quorum children).
    pub fn other_children(&self) -> Vec<NodeRef> {
        self.driver.other_children()
    }
}

/// The first node at or below `node` (following `file` children) whose driver is
/// `T`: how qemu-io's break/resume commands find the blkdebug layer.
pub fn find_driver_below<T: Any>(node: &NodeRef) -> Option<NodeRef> {
    let mut cur = node.clone();
    for _ in 0..1000 {
        let next = {
            let mut g = lock(&cur);
            if g.driver_as::<T>().is_some() {
                return Some(cur.clone());
            }
            g.file()?
        };
        cur = next;
    }
    None
}
