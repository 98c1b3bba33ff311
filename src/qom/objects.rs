//! User-creatable objects (`-object`, object-add).

use crate::emulator::Emulator;
use crate::vl::opts::QemuOpts;

pub fn add_from_opts(_emu: &mut Emulator, opts: &QemuOpts) -> Result<(), String> {
    let ty = opts.get("qom-type").unwrap_or("");
    Err(format!(
        "-object {ty}: object type '{ty}' is not supported yet by this emulator"
    ))
}
