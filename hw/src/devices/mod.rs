//! PC devices. Each is a [`crate::bus::BusDevice`] whose guest-visible state is one
//! plain struct; interrupts go through an [`crate::irq::Irq`] and requests to the owner
//! through an [`crate::events::EventQueue`].

pub mod acpi_pm;
pub mod debug_exit;
pub mod i8042;
pub mod ide;
pub mod pci;
pub mod ps2;
pub mod rtc;
pub mod serial;
