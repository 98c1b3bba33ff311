//! Block layer: the node graph, drivers (file, raw, null, qcow2), backends,
//! format probing and image creation. Synchronous and coroutine-free: every call
//! does its I/O before returning; callers decide chunking.
//!
//! Typical use from the monitor side:
//!
//! ```no_run
//! use block::{lock, BlockGraph};
//! let mut g = BlockGraph::new();
//! // blockdev-add / -blockdev / -drive options, nested or dotted.
//! let opts = serde_json::json!({"driver": "qcow2", "node-name": "disk0",
//!                               "file": {"driver": "file", "filename": "/tmp/a.qcow2"}});
//! let node = g.open(opts.as_object().unwrap()).unwrap();
//! g.add_backend("drive0", Some(node.clone())).unwrap();
//! g.backend("drive0").unwrap().write(0, &[0u8; 512], false).unwrap();
//! for ev in g.take_events() { /* BLOCK_IMAGE_CORRUPTED ... */ let _ = ev; }
//! let info = lock(&node).image_info().to_json(); // query-block "image"
//! # let _ = info;
//! g.close_all();
//! ```

mod aligned;
pub mod backend;
pub mod console;
pub mod create;
pub mod dirty_bitmap;
pub mod driver;
pub mod drivers;
pub mod error;
pub mod events;
pub mod graph;
pub mod info;
pub mod jobs;
pub mod nbd;
pub mod node;
pub mod options;
pub mod probe;
pub mod qcow2;
pub mod qemu_io;
pub mod request;
pub mod stats;
pub mod throttle;
pub mod throttle_group;
pub mod tracking;
pub mod write_threshold;

pub use backend::Backend;
pub use create::{create_image, CreateOptions, Preallocation};
pub use driver::{
    Children, CopyFrom, CopySource, CorruptionReport, Driver, Extent, FormatInfo, SnapshotInfo,
};
pub use drivers::file::{is_host_device, FdsetFd, FdsetOpener};
pub use error::{BlockError, BlockResult};
pub use events::{BlockEvent, ImageCorrupted};
pub use graph::BlockGraph;
pub use info::ImageInfo;
pub use node::{lock, DetectZeroes, Node, NodeOptions, NodeRef};
