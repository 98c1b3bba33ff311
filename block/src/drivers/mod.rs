//! Protocol and simple format drivers (qcow2 has its own module).

pub mod file;
pub mod null;
pub mod raw;
