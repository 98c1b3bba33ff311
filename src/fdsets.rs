//! File descriptor sets (`add-fd`, `remove-fd`, `query-fdsets`) and the
//! `/dev/fdset/N` names that open a duplicate of a matching descriptor.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Weak};

pub struct FdSetEntry {
    pub fd: OwnedFd,
    pub opaque: Option<String>,
    pub removed: bool,
}

#[derive(Default)]
pub struct FdSet {
    pub id: i64,
    pub fds: Vec<FdSetEntry>,
    /// One per descriptor handed out by `dup_for_open` and still open (QEMU's
    /// dup_fds): while any lives, the set stays even with no fds left.
    dups: Vec<Weak<()>>,
}

impl FdSet {
    fn in_use(&mut self) -> bool {
        self.dups.retain(|w| w.strong_count() > 0);
        !self.dups.is_empty()
    }
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

    /// Closes removed descriptors and drops sets with no descriptor left and
    /// none of theirs open in an image. Duplicates handed out by
    /// `dup_for_open` are independent descriptors and stay valid.
    fn cleanup(&mut self) {
        for set in self.sets.iter_mut() {
            set.fds.retain(|e| !e.removed);
        }
        self.sets.retain_mut(|s| !s.fds.is_empty() || s.in_use());
    }

    /// Opens `/dev/fdset/N` with `flags`: duplicates the first fd whose
    /// access mode matches (EACCES when none does, ENOENT for no such set).
    pub fn dup_for_open(&mut self, id: i64, flags: i32) -> Result<block::FdsetFd, std::io::Error> {
        self.cleanup();
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
            let fd = e.fd.try_clone()?;
            let hold = Arc::new(());
            set.dups.push(Arc::downgrade(&hold));
            return Ok(block::FdsetFd {
                fd,
                hold: Some(hold),
            });
        }
        Err(std::io::Error::from_raw_os_error(libc::EACCES))
    }

    pub fn query(&mut self) -> serde_json::Value {
        self.cleanup();
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

/// Parses `/dev/fdset/N`: None unless N is a non-negative decimal number
/// (QEMU then fails the open with EINVAL).
pub fn fdset_id_of_path(path: &str) -> Option<i64> {
    path.strip_prefix("/dev/fdset/")?
        .parse()
        .ok()
        .filter(|n: &i64| *n >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_fd(write: bool) -> OwnedFd {
        let p = std::env::temp_dir().join(format!("rqemu-fdsets-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .create(write)
            .truncate(false)
            .open(&p)
            .unwrap();
        OwnedFd::from(f)
    }

    #[test]
    fn a_removed_set_stays_listed_while_an_image_holds_its_duplicate() {
        let mut s = FdSets::default();
        let (id, raw) = s.add(Some(1), file_fd(true), None);
        let dup = s.dup_for_open(id, libc::O_RDWR).unwrap();
        s.remove(id, Some(raw)).unwrap();
        assert_eq!(s.query(), serde_json::json!([{"fdset-id": 1, "fds": []}]));
        let e = s
            .dup_for_open(id, libc::O_RDWR)
            .err()
            .map(|e| e.raw_os_error());
        assert_eq!(e, Some(Some(libc::EACCES)));
        drop(dup);
        assert_eq!(s.query(), serde_json::json!([]));
    }

    #[test]
    fn the_access_mode_must_match_and_bad_names_do_not_parse() {
        let mut s = FdSets::default();
        let (id, _) = s.add(None, file_fd(true), None);
        let (id2, _) = s.add(None, file_fd(false), None);
        assert!(s.dup_for_open(id, libc::O_RDONLY).is_err());
        assert!(s.dup_for_open(id2, libc::O_RDONLY).is_ok());
        let e = s
            .dup_for_open(9, libc::O_RDWR)
            .err()
            .map(|e| e.raw_os_error());
        assert_eq!(e, Some(Some(libc::ENOENT)));
        assert_eq!(fdset_id_of_path("/dev/fdset/3"), Some(3));
        assert_eq!(fdset_id_of_path("/dev/fdset/-1"), None);
        assert_eq!(fdset_id_of_path("/dev/fdset/x"), None);
    }
}
