//! Protocol and simple format drivers (qcow2 has its own module).

pub mod blkdebug;
pub mod file;
pub mod null;
pub mod quorum;
pub mod raw;
