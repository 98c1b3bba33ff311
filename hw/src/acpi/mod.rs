//! ACPI tables for direct kernel boots: RSDP, RSDT, XSDT, FADT (+FACS), DSDT and
//! MADT, built into guest memory. They describe the PIIX4 PM block of
//! [`crate::devices::acpi_pm`] (fixed power button, S5 through SLP_TYP 0).

pub mod aml;
mod tables;

pub use tables::{build_tables, AcpiConfig, ACPI_TABLES_BASE, ACPI_TABLES_SIZE};
