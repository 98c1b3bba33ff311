//! Block layer.

pub mod nbd;
