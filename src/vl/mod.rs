//! The command line: QEMU's option table, QemuOpts parsing, and the
//! resulting [`Config`] that start-up builds the emulator from.

pub mod cli;
pub mod config;
pub mod help;
pub mod opts;

pub use cli::parse_args;
pub use config::Config;
