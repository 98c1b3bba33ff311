//! Machine crate: guest memory, the KVM accelerator (VM, vCPUs and their threads), the
//! x86 PC devices, ACPI tables and the firmware/Linux loaders.
//!
//! This crate never calls up into the process (`src/`): device requests that the owner
//! must act on (reset, power-off, debug-exit, RTC change) are queued as
//! [`events::MachineEvent`] records, and vCPU exits are handed to an
//! [`kvm::ExitHandler`] the owner implements.
//!
//! How an owner drives it:
//! 1. [`machine::PcMachine::build`] with RAM backends, `-bios` bytes or `-kernel`
//!    images, the CPU count and a COM1 sink. With `Accel::Kvm` it creates the VM and
//!    vCPUs (x86 reset state; vCPU 0 already at the kernel entry for direct boots);
//!    with `Accel::Qtest` there are no vCPUs and IRQs land in `irq_levels`.
//! 2. Apply `-device loader` ([`loader::generic::GenericLoader::apply`], then
//!    `Vcpu::set_pc`) and `-device isa-debug-exit` (`devices.add_debug_exit`).
//! 3. Take `vcpus` out (`std::mem::take`), put the `PcMachine` in the big-lock state
//!    `H`, implement [`kvm::ExitHandler`] by forwarding to
//!    `machine.devices.{pio,mmio}_{read,write}`, then
//!    [`kvm::spawn_vcpus`]`(vcpus, Arc<Mutex<H>>, start_paused)` (`-S`: paused).
//! 4. After each exit / loop turn drain `devices.events` (set a notify callback with
//!    `EventQueue::set_notify` to wake the main loop's poller).
//! 5. stop/cont: `VcpuControl::{pause_all, resume_all}`. System reset:
//!    `pause_all`, `PcMachine::reset_devices`, `post(i, vcpu_reset_job(i))` for each
//!    vCPU, `resume_all`. Register reads: `run_on(i, |v| v.get_state())`. All of these
//!    may be called with the big lock held.

pub mod acpi;
pub mod bus;
pub mod devices;
pub mod error;
pub mod events;
pub mod irq;
pub mod kvm;
pub mod loader;
pub mod machine;
pub mod memory;
pub mod pc;

pub use error::HwError;

/// KVM structure types that appear in this crate's API (registers, segments...).
pub use kvm_bindings;
