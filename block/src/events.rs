//! Events the block layer raises for the monitor to send (BLOCK_IMAGE_CORRUPTED, ...).
//!
//! Nodes push into a shared sink; the main loop drains it with
//! `BlockGraph::take_events` and turns each record into a QMP event.

use std::sync::{Arc, Mutex};

/// BLOCK_IMAGE_CORRUPTED's data (the caller adds `device`, the backend name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageCorrupted {
    pub node_name: String,
    pub msg: String,
    pub offset: Option<u64>,
    pub size: Option<u64>,
    pub fatal: bool,
}

/// An event raised by the block layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockEvent {
    ImageCorrupted(ImageCorrupted),
    WriteThreshold(crate::write_threshold::WriteThresholdEvent),
    QuorumFailure(crate::drivers::quorum::QuorumFailure),
    QuorumReportBad(crate::drivers::quorum::QuorumReportBad),
}

/// Queue of pending events shared by the graph and its nodes.
#[derive(Clone, Default)]
pub struct EventSink(Arc<Mutex<Vec<BlockEvent>>>);

impl EventSink {
    pub fn push(&self, ev: BlockEvent) {
        match self.0.lock() {
            Ok(mut q) => q.push(ev),
            Err(p) => p.into_inner().push(ev),
        }
    }

    pub fn take(&self) -> Vec<BlockEvent> {
        match self.0.lock() {
            Ok(mut q) => std::mem::take(&mut *q),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }
}
