//! File descriptor sets (`add-fd`, `remove-fd`, `query-fdsets`) and the
//! `/dev/fdset/N` names that open a duplicate of a matching descriptor.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

pub struct FdSetEntry {
    pub fd: OwnedFd,
    pub opaque: Option<String>,
    pub removed: bool,
}

#[derive(Default)]
pub struct FdSet {
    pub id: i64,
    pub fds: Vec<FdSetEntry>,
}

#[derive(Default)]
pub struct FdSets {
    pub sets: Vec<FdSet>,
}

impl FdSets {
    /// Adds `fd` to set `id` (or a new set with the lowest free id).
    /// Returns (fdset-id, fd number).
    pub fn add(&mut self, id: Option<i64>, fd: OwnedFd, opaque: Option<String>) -> (i64, RawFd) {
        let id = id.unwrap_or_else(|| {
            let mut n = 0;
            while self.sets.iter().any(|s| s.id == n) {
                n += 1;
            }
            n
        });
        let raw = fd.as_raw_fd();
        let pos = match self.sets.iter().position(|s| s.id == id) {
            Some(p) => p,
            None => {
                self.sets.push(FdSet {
                    id,
                    ..Default::default()
                });
                self.sets.sort_by_key(|s| s.id);
                self.sets.iter().position(|s| s.id == id).unwrap_or(0)
            }
        };
        self.sets[pos].fds.push(FdSetEntry {
            fd,
            opaque,
            removed: false,
        });
        (id, raw)
    }

    /// Marks an fd (or a whole set) removed; closes it unless a duplicate
    /// is still in use, as QEMU does.
    pub fn remove(&mut self, id: i64, fd: Option<RawFd>) -> Result<(), String> {
        let Some(set) = self.sets.iter_mut().find(|s| s.id == id) else {
            return Err(not_found(id, fd));
        };
        let mut hit = false;
        for e in set.fds.iter_mut() {
            if fd.is_none_or(|f| f == e.fd.as_raw_fd()) {
                e.removed = true;
                hit = true;
            }
        }
        if !hit {
            return Err(not_found(id, fd));
        }
        self.cleanup();
        Ok(())
    }

    /// Closes removed descriptors and drops empty sets. Duplicates handed
    /// out by `dup_for_open` are independent descriptors and stay valid.
    fn cleanup(&mut self) {
        for set in self.sets.iter_mut() {
            set.fds.retain(|e| !e.removed);
        }
        self.sets.retain(|s| !s.fds.is_empty());
    }

    /// Opens `/dev/fdset/N` with `flags`: duplicates the first fd whose
    /// access mode matches.
    pub fn dup_for_open(&mut self, id: i64, flags: i32) -> Result<OwnedFd, std::io::Error> {
        let set = self
            .sets
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENOENT))?;
        let want = flags & libc::O_ACCMODE;
        for e in set.fds.iter().filter(|e| !e.removed) {
            // SAFETY: F_GETFL on an fd we own.
            let fl = unsafe { libc::fcntl(e.fd.as_raw_fd(), libc::F_GETFL) };
            if fl < 0 || fl & libc::O_ACCMODE != want {
                continue;
            }
            return e.fd.try_clone();
        }
        Err(std::io::Error::from_raw_os_error(libc::EACCES))
    }

    pub fn query(&self) -> serde_json::Value {
        // QEMU builds the reply by prepending, so sets come out in
        // descending id order.
        let sets: Vec<serde_json::Value> = self
            .sets
            .iter()
            .rev()
            .map(|s| {
                let fds: Vec<serde_json::Value> = s
                    .fds
                    .iter()
                    .filter(|e| !e.removed)
                    .map(|e| {
                        let mut m = serde_json::Map::new();
                        m.insert("fd".into(), e.fd.as_raw_fd().into());
                        if let Some(o) = &e.opaque {
                            m.insert("opaque".into(), o.clone().into());
                        }
                        serde_json::Value::Object(m)
                    })
                    .collect();
                serde_json::json!({"fdset-id": s.id, "fds": fds})
            })
            .collect();
        serde_json::Value::Array(sets)
    }
}

fn not_found(id: i64, fd: Option<RawFd>) -> String {
    match fd {
        Some(f) => format!("File descriptor named 'fdset-id:{id}, fd:{f}' not found"),
        None => format!("File descriptor named 'fdset-id:{id}' not found"),
    }
}

/// Parses `/dev/fdset/N`.
pub fn fdset_id_of_path(path: &str) -> Option<i64> {
    path.strip_prefix("/dev/fdset/")?.parse().ok()
}
