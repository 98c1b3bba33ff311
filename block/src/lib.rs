//! Block layer: the node graph, drivers (file, raw, null, qcow2), backends,
//! format probing and image creation. Synchronous and coroutine-free: every call
//! does its I/O before returning; callers decide chunking.

mod aligned;
pub mod backend;
pub mod create;
pub mod dirty_bitmap;
pub mod driver;
pub mod drivers;
pub mod error;
pub mod events;
pub mod graph;
pub mod info;
pub mod node;
pub mod options;
pub mod probe;
pub mod qcow2;
pub mod stats;
pub mod throttle;
pub mod throttle_group;
pub mod tracking;
pub mod write_threshold;

pub use backend::Backend;
pub use create::{create_image, CreateOptions, Preallocation};
pub use driver::{Children, CorruptionReport, Driver, Extent, FormatInfo, SnapshotInfo};
pub use drivers::file::FdsetOpener;
pub use error::{BlockError, BlockResult};
pub use events::{BlockEvent, ImageCorrupted};
pub use graph::BlockGraph;
pub use info::ImageInfo;
pub use node::{lock, DetectZeroes, Node, NodeOptions, NodeRef};
