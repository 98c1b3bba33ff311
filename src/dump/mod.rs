//! Guest memory dumps (`dump-guest-memory`): ELF cores and kdump-compressed
//! files, written by a main-loop state machine ([`DumpJob`]).
//!
//! This module owns the file formats and the order in which bytes reach the
//! output. It never touches the machine: guest RAM and vCPU registers arrive
//! through [`GuestRam`] and [`CpuState`], which the caller fills while the
//! guest is stopped. It never blocks for long either: each [`DumpJob::step`]
//! writes a bounded slice of the dump.

mod cpu;
mod elf;
mod elf_core;
mod error;
mod guest_ram;
mod job;
mod kdump;
mod machine_view;
mod mapping;
mod notes;
mod paging;
mod request;
mod sink;
mod status;

#[cfg(test)]
mod tests;

// The monitor layer uses these; until it is wired some stay unused.
#[allow(unused_imports)]
pub use cpu::{CpuState, Segment};
#[allow(unused_imports)]
pub use error::DumpError;
#[allow(unused_imports)]
pub use guest_ram::{GuestRam, RamRange};
#[allow(unused_imports)]
pub use job::{DumpJob, DumpProgress};
pub use machine_view::{cpu_state, MachineRam};
#[allow(unused_imports)]
pub use request::{open_dump_file, DumpFormat, DumpRequest, DumpTarget, FORMATS_BUILT_IN};
#[allow(unused_imports)]
pub use status::{info_dump_text, DumpStatus};
