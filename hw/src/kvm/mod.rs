//! The KVM accelerator: VM, vCPUs, and the threads that run them.
//!
//! Every KVM ioctl of the machine lives below this module; the rest of the crate uses
//! its safe wrappers.

mod kick;
mod runner;
pub mod state;
mod vcpu;
mod vm;

pub use runner::{spawn_vcpus, ExitHandler, VcpuAction, VcpuControl, VcpuEvent, VcpuInfo};
pub use state::{CpuState, SavedMsrs};
pub use vcpu::{EntryState, Vcpu};
pub use vm::{kvm_available, DirtyBlock, Vm, IDENTITY_MAP_ADDR, TSS_ADDR};
