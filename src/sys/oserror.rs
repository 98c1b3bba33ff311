//! OS error text as QEMU prints it (`strerror`, without Rust's
//! "(os error N)" suffix).

use std::io;

/// The C library's message for an errno value.
pub fn errno_text(errno: i32) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length; the XSI strerror_r writes a
    // NUL-terminated string into it.
    let r = unsafe { libc::strerror_r(errno, buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return format!("Unknown error {errno}");
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The message of an I/O error: strerror for OS errors, else its text.
pub fn strerror(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => errno_text(n),
        None => e.to_string(),
    }
}

/// QEMU's error_setg_errno: "`msg`: strerror".
pub fn with_errno(msg: &str, e: &io::Error) -> String {
    format!("{msg}: {}", strerror(e))
}

/// QEMU's error_setg_file_open.
pub fn file_open_error(path: &str, e: &io::Error) -> String {
    format!("Could not open '{path}': {}", strerror(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strerror_drops_rust_suffix() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(strerror(&e), "No such file or directory");
        assert_eq!(
            file_open_error("/x", &e),
            "Could not open '/x': No such file or directory"
        );
    }
}
