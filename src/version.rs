//! The version this binary reports: QEMU 2.8's interface, with this
//! project named in `package`.

use serde_json::{json, Value};

pub const QEMU_MAJOR: u32 = 2;
pub const QEMU_MINOR: u32 = 8;
pub const QEMU_MICRO: u32 = 0;
pub const QEMU_VERSION: &str = "2.8.0";

/// QEMU's `package` string: a leading space and the package in parentheses.
pub fn package() -> String {
    format!(" (rqemu {})", env!("CARGO_PKG_VERSION"))
}

pub fn version_info() -> Value {
    json!({
        "qemu": {"major": QEMU_MAJOR, "minor": QEMU_MINOR, "micro": QEMU_MICRO},
        "package": package(),
    })
}

pub fn version_banner() -> String {
    format!(
        "QEMU emulator version {QEMU_VERSION}{}\nrqemu is a Rust implementation of QEMU's x86-64 system emulator interface; GPL-2.0-or-later.\n",
        package()
    )
}
