//! QMP protocol crate: JSON stream parser and writer, error classes,
//! request checking, the QAPI schema and introspection.

pub mod error;
pub mod json;
pub mod request;
pub mod schema;
