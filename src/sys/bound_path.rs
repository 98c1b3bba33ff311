//! A unix socket file this process bound: removed at close only while it
//! is still ours, so a later instance that re-bound the same path (tests,
//! restarts) does not lose its socket to our exit.

use std::os::unix::fs::MetadataExt;

pub struct BoundPath {
    path: String,
    dev: u64,
    ino: u64,
}

impl BoundPath {
    /// Records the identity of the socket file just bound at `path`.
    pub fn new(path: &str) -> Option<BoundPath> {
        let m = std::fs::symlink_metadata(path).ok()?;
        Some(BoundPath {
            path: path.to_string(),
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    pub fn unlink_if_ours(&self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if m.dev() == self.dev && m.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}
