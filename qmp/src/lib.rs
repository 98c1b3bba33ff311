//! QMP protocol crate.
pub mod json;
