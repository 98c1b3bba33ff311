//! Thin safe wrappers around the syscalls the process layer needs. All of
//! the `unsafe` in the process layer's I/O lives here.

pub mod bound_path;
pub mod fd;
pub mod oserror;
pub mod process;
pub mod scm;
pub mod signals;
