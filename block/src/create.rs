//! Image creation (qemu-img create, blockdev-snapshot-sync, -snapshot, jobs):
//! one entry point for raw and qcow2.
//!
//! A qcow2 image starts as header + refcount table + one refcount block; its L1
//! table, size, backing file and preallocation are then applied through the
//! driver itself, so creation shares the write ordering of normal operation.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use crate::driver::{Children, Driver};
use crate::drivers::file::FileDriver;
use crate::error::{BlockError, BlockResult};
use crate::events::EventSink;
use crate::graph::{resolve_backing_name, BlockGraph};
use crate::node::{lock, Node, NodeOptions};
use crate::qcow2::{Header, Qcow2};

/// The `preallocation` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preallocation {
    #[default]
    Off,
    Metadata,
    Falloc,
    Full,
}

impl Preallocation {
    pub fn parse(s: &str) -> BlockResult<Preallocation> {
        match s {
            "off" => Ok(Preallocation::Off),
            "metadata" => Ok(Preallocation::Metadata),
            "falloc" => Ok(Preallocation::Falloc),
            "full" => Ok(Preallocation::Full),
            _ => Err(BlockError::InvalidArgument(format!(
                "Invalid preallocation mode: '{}'",
                s
            ))),
        }
    }
}

/// Creation options; `None` means QEMU's default.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// qcow2 cluster size in bytes (default 65536).
    pub cluster_size: Option<u64>,
    pub backing_file: Option<String>,
    pub backing_fmt: Option<String>,
    /// "0.10" or "1.1" (also "v2"/"v3"); default "1.1".
    pub compat: Option<String>,
    pub lazy_refcounts: bool,
    pub preallocation: Preallocation,
    /// qcow2 refcount width (default 16).
    pub refcount_bits: Option<u32>,
}

/// Creates an image of format `fmt` ("raw" or "qcow2") at `path`. Without a
/// size, a qcow2 image takes its backing file's size.
pub fn create_image(
    fmt: &str,
    path: &str,
    size: Option<u64>,
    opts: &CreateOptions,
) -> BlockResult<()> {
    match fmt {
        "raw" => create_raw(path, size, opts),
        "qcow2" => create_qcow2(path, size, opts),
        _ => Err(BlockError::Unsupported(format!(
            "Format driver '{}' does not support image creation",
            fmt
        ))),
    }
}

fn open_err(path: &str, e: &std::io::Error) -> BlockError {
    BlockError::io(format!("Could not create '{}'", path), e)
}

fn create_raw(path: &str, size: Option<u64>, opts: &CreateOptions) -> BlockResult<()> {
    let size = size
        .ok_or_else(|| BlockError::InvalidArgument("Image creation needs a size parameter".into()))?
        .next_multiple_of(512);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| open_err(path, &e))?;
    match opts.preallocation {
        Preallocation::Off => f.set_len(size).map_err(|e| open_err(path, &e))?,
        Preallocation::Metadata => {
            return Err(BlockError::InvalidArgument(
                "Unsupported preallocation mode: metadata".into(),
            ))
        }
        Preallocation::Falloc => {
            f.set_len(size).map_err(|e| open_err(path, &e))?;
            fallocate_keep(&f, 0, size)
                .map_err(|e| BlockError::errno("Could not preallocate data", e))?;
        }
        Preallocation::Full => write_zeroes_file(&f, 0, size).map_err(|e| open_err(path, &e))?,
    }
    Ok(())
}

fn fallocate_keep(f: &std::fs::File, off: u64, len: u64) -> Result<(), i32> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: posix_fallocate on an open fd has no memory effects.
    let r = unsafe { libc::posix_fallocate(f.as_raw_fd(), off as libc::off_t, len as libc::off_t) };
    if r != 0 {
        Err(r)
    } else {
        Ok(())
    }
}

fn write_zeroes_file(f: &std::fs::File, off: u64, len: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let zeros = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        f.write_all_at(&zeros[..n], off + done)?;
        done += n as u64;
    }
    Ok(())
}

fn backing_size(path: &str, opts: &CreateOptions) -> BlockResult<u64> {
    let Some(b) = &opts.backing_file else {
        return Err(BlockError::InvalidArgument(
            "Image creation needs a size parameter".into(),
        ));
    };
    let full = resolve_backing_name(path, b);
    let mut g = BlockGraph::new();
    let n = g
        .open_image(&full, opts.backing_fmt.as_deref(), true)
        .map_err(|e| {
            BlockError::Generic(format!(
                "Could not open backing image to determine size: {}",
                e
            ))
        })?;
    let len = lock(&n).length()?;
    Ok(len)
}

fn create_qcow2(path: &str, size: Option<u64>, opts: &CreateOptions) -> BlockResult<()> {
    let cs = opts.cluster_size.unwrap_or(65536);
    if !cs.is_power_of_two() || !(512..=(2 << 20)).contains(&cs) {
        return Err(BlockError::InvalidArgument(
            "Cluster size must be a power of two between 512 and 2048k".into(),
        ));
    }
    let version = match opts.compat.as_deref() {
        None | Some("1.1") | Some("v3") => 3,
        Some("0.10") | Some("v2") => 2,
        Some(other) => {
            return Err(BlockError::InvalidArgument(format!(
                "Invalid compatibility level: '{}'",
                other
            )))
        }
    };
    let refcount_bits = opts.refcount_bits.unwrap_or(16);
    if !refcount_bits.is_power_of_two() || refcount_bits > 64 {
        return Err(BlockError::InvalidArgument(
            "Refcount width must be a power of two and may not exceed 64 bits".into(),
        ));
    }
    if version == 2 && refcount_bits != 16 {
        return Err(BlockError::InvalidArgument(
            "Different refcount widths than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)".into(),
        ));
    }
    if version == 2 && opts.lazy_refcounts {
        return Err(BlockError::InvalidArgument(
            "Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or greater)".into(),
        ));
    }
    if opts.backing_file.is_some() && opts.preallocation != Preallocation::Off {
        return Err(BlockError::InvalidArgument(
            "Backing file and preallocation cannot be used at the same time".into(),
        ));
    }
    let size = match size {
        Some(s) => s,
        None => backing_size(path, opts)?,
    }
    .next_multiple_of(512);
    let order = refcount_bits.trailing_zeros();
    let cb = cs.trailing_zeros();
    let hdr = Header {
        version,
        backing_file_offset: 0,
        backing_file_size: 0,
        cluster_bits: cb,
        size: 0,
        crypt_method: 0,
        l1_size: 0,
        l1_table_offset: 0,
        refcount_table_offset: cs,
        refcount_table_clusters: 1,
        nb_snapshots: 0,
        snapshots_offset: 0,
        incompatible: 0,
        compatible: 0,
        autoclear: 0,
        refcount_order: order,
        header_length: if version == 3 { 104 } else { 72 },
        tail: Vec::new(),
        backing_file: None,
        backing_format: None,
        other_exts: Vec::new(),
    };
    let mut image = vec![0u8; 3 * cs as usize];
    let h = hdr.serialize()?;
    image[..h.len()].copy_from_slice(&h);
    image[cs as usize..cs as usize + 8].copy_from_slice(&(2 * cs).to_be_bytes());
    let rb = &mut image[2 * cs as usize..];
    for i in 0..3 {
        crate::qcow2::set_refcount_entry(rb, order, i, 1);
    }
    {
        use std::io::Write;
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| open_err(path, &e))?;
        f.write_all(&image).map_err(|e| open_err(path, &e))?;
    }
    let file = FileDriver::open(path, false, false, None)?;
    let fnode = Arc::new(Mutex::new(Node::new(
        String::new(),
        Box::new(file),
        Children::default(),
        NodeOptions::default(),
        path.to_string(),
        EventSink::default(),
    )));
    let c = Children::with_file(fnode.clone());
    let mut q = Qcow2::open(&c, false)?;
    if opts.lazy_refcounts {
        q.set_lazy_refcounts(&c)?;
    }
    if let Some(b) = &opts.backing_file {
        q.change_backing_file(&c, Some(b), opts.backing_fmt.as_deref())?;
    }
    q.truncate(&c, size)?;
    if opts.preallocation != Preallocation::Off && size > 0 {
        let end = q.preallocate_all(&c, size)?;
        let mut f = lock(&fnode);
        if f.length()? < end {
            f.truncate(end)?;
        }
        drop(f);
        let raw = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| open_err(path, &e))?;
        match opts.preallocation {
            Preallocation::Falloc => fallocate_keep(&raw, 0, end)
                .map_err(|e| BlockError::errno("Could not preallocate data", e))?,
            Preallocation::Full => {
                for (off, len) in q.data_runs(&c, size)? {
                    write_zeroes_file(&raw, off, len).map_err(|e| open_err(path, &e))?;
                }
            }
            _ => {}
        }
    }
    q.close(&c)?;
    Ok(())
}
