//! QMP protocol crate.

pub mod error;
pub mod request;
pub mod schema;
