//! Loaders: QEMU's generic `-device loader`, Linux bzImage per the x86 boot protocol,
//! and PVH ELF kernels. Loaders write guest memory and return the entry state for the
//! boot vCPU; they never touch vCPUs themselves.

pub mod e820;
pub mod elf;
pub mod generic;
pub mod linux;
mod pagetables;
pub mod pvh;
