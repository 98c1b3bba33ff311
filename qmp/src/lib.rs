//! QMP protocol crate.
