//! Machine crate: guest memory, the KVM accelerator (VM, vCPUs and their threads), the
//! x86 PC devices, ACPI tables and the firmware/Linux loaders.
//!
//! This crate never calls up into the process (`src/`): device requests that the owner
//! must act on (reset, power-off, debug-exit, RTC change) are queued as
//! [`events::MachineEvent`] records, and vCPU exits are handed to an
//! [`kvm::ExitHandler`] the owner implements.

pub mod acpi;
pub mod bus;
pub mod devices;
pub mod error;
pub mod events;
pub mod irq;
pub mod kvm;
pub mod loader;
pub mod memory;
pub mod pc;

pub use error::HwError;

/// KVM structure types that appear in this crate's API (registers, segments...).
pub use kvm_bindings;
