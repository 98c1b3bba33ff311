//! Thin safe wrappers around the syscalls the process layer needs. All of
//! the `unsafe` in the process layer's I/O lives here.

pub mod fd;
pub mod process;
pub mod scm;
pub mod signals;

/// strerror()-style text of an I/O error, without Rust's " (os error N)".
pub fn errno_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(pos) => text[..pos].to_string(),
        None => text,
    }
}
