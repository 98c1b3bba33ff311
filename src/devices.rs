//! `-device` for the devices the machine has today.

use crate::vl::opts::{OptsList, QemuOpts};

static DEVICE_OPTS: OptsList = OptsList {
    name: "device",
    implied: Some("driver"),
    descs: &[],
};

fn number(o: &QemuOpts, key: &str, default: u64) -> Result<u64, String> {
    match o.get_number(key) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Ok(default),
        Err(e) => Err(e.message),
    }
}

/// `isa-debug-exit[,iobase=N][,iosize=N]`: Some((iobase, iosize)); None for
/// any other driver.
pub fn parse_isa_debug_exit(arg: &str) -> Result<Option<(u16, u16)>, String> {
    let o = DEVICE_OPTS.parse(arg, true).map_err(|e| e.message)?;
    if o.get("driver") != Some("isa-debug-exit") {
        return Ok(None);
    }
    for k in o.keys() {
        if !matches!(k, "driver" | "iobase" | "iosize") {
            return Err(format!("Property '.{k}' not found"));
        }
    }
    let base = number(&o, "iobase", 0x501)?;
    let size = number(&o, "iosize", 2)?;
    let base = u16::try_from(base)
        .map_err(|_| format!("Property 'isa-debug-exit.iobase' doesn't take value '{base}'"))?;
    let size = u16::try_from(size)
        .map_err(|_| format!("Property 'isa-debug-exit.iosize' doesn't take value '{size}'"))?;
    Ok(Some((base, size)))
}
