//! Host mappings behind guest RAM: anonymous memory or a file (`memory-backend-file`).

use std::fs::OpenOptions;
use std::path::PathBuf;

use memmap2::{MmapMut, MmapOptions};

use crate::error::{HwError, Result};

/// Where one RAM backend's bytes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RamBackend {
    /// Private anonymous memory (`-m`, `memory-backend-ram`).
    Anonymous,
    /// A file, or a directory in which an unlinked temporary file is made
    /// (`memory-backend-file,mem-path=`); `share` maps it shared instead of private.
    File { path: PathBuf, share: bool },
}

/// One backend as the user configured it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RamSpec {
    pub size: u64,
    pub backend: RamBackend,
    /// Touch every page at creation (`prealloc=on`).
    pub prealloc: bool,
}

impl RamSpec {
    pub fn anonymous(size: u64) -> RamSpec {
        RamSpec {
            size,
            backend: RamBackend::Anonymous,
            prealloc: false,
        }
    }
}

pub(super) struct Backing {
    pub spec: RamSpec,
    /// Offset of this backing in the concatenated RAM.
    pub offset: u64,
    pub size: u64,
    host: *mut u8,
    // Kept alive for `host`; unmapped on drop.
    _map: MmapMut,
}

impl Backing {
    pub fn new(spec: &RamSpec, offset: u64) -> Result<Backing> {
        let size = usize::try_from(spec.size)
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| HwError::Invalid {
                what: format!("memory size {}", spec.size),
            })?;
        let map = match &spec.backend {
            RamBackend::Anonymous => {
                let mut o = MmapOptions::new();
                o.len(size);
                if spec.prealloc {
                    o.populate();
                }
                o.map_anon().map_err(|e| HwError::Memory {
                    what: "cannot set up guest memory".into(),
                    source: e,
                })?
            }
            RamBackend::File { path, share } => {
                let file_err = |e| HwError::File {
                    path: path.display().to_string(),
                    source: e,
                };
                let file = if path.is_dir() {
                    let tmp = path.join(format!("qemu_back_mem.{}.{}", std::process::id(), offset));
                    let f = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create_new(true)
                        .open(&tmp)
                        .map_err(file_err)?;
                    // The file only needs to exist while mapped; unlink it as QEMU does.
                    let _ = std::fs::remove_file(&tmp);
                    f
                } else {
                    OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(path)
                        .map_err(file_err)?
                };
                let cur = file.metadata().map_err(file_err)?.len();
                if cur < spec.size {
                    file.set_len(spec.size).map_err(file_err)?;
                }
                let mut o = MmapOptions::new();
                o.len(size);
                if spec.prealloc {
                    o.populate();
                }
                // SAFETY: the mapping is guest RAM; the guest and the user share the
                // file by their own choice (`share=on`), and we never build references
                // that assume the bytes do not change.
                let m = unsafe {
                    if *share {
                        o.map_mut(&file)
                    } else {
                        o.map_copy(&file)
                    }
                };
                m.map_err(|e| HwError::Memory {
                    what: "cannot map memory-backend-file".into(),
                    source: e,
                })?
            }
        };
        let mut map = map;
        let host = map.as_mut_ptr();
        Ok(Backing {
            spec: spec.clone(),
            offset,
            size: spec.size,
            host,
            _map: map,
        })
    }

    pub fn host(&self) -> *mut u8 {
        self.host
    }
}
