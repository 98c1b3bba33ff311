//! `memory-backend-ram` and `memory-backend-file`: host memory made at
//! object creation (QEMU maps it in complete(), before any machine uses
//! it) and handed to the machine for `-numa node,memdev=` or a DIMM.
//!
//! Properties are validated as QEMU validates them; once the memory is
//! mapped, size, mem-path and share are frozen ("cannot change property
//! value"), while merge, dump and prealloc act on the live mapping. A
//! backend the machine uses (`set_mapped(true)`) cannot be deleted.

use std::any::Any;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use memmap2::{MmapMut, MmapOptions};
use serde_json::Value;

use super::props::{Input, QomError};
use super::types::{enum_values, PropDef};
use super::ObjectImpl;

/// QEMU's MAX_NODES: host NUMA nodes a backend may name.
pub const MAX_NODES: usize = 128;

const POLICY_DEFAULT: usize = 0;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Ram,
    File {
        mem_path: Option<String>,
        share: bool,
    },
}

pub struct Mapping {
    map: MmapMut,
    file: Option<File>,
}

pub struct MemoryBackend {
    pub kind: BackendKind,
    size: u64,
    merge: bool,
    dump: bool,
    prealloc: bool,
    /// Bit n set: host node n. One spare bit past MAX_NODES, as mbind
    /// wants maxnode + 1 bits.
    host_nodes: [u64; 3],
    policy: usize,
    mapping: Option<Mapping>,
    mapped: bool,
}

/// RAM in an anonymous memory file, so that the machine can map these
/// very pages as guest RAM through `fd()`; None where memfd is missing
/// (the caller then falls back to private anonymous memory).
fn map_memfd(id: &str, size: usize) -> Option<Mapping> {
    let name = std::ffi::CString::new(format!("memory-backend-ram:{id}")).ok()?;
    // SAFETY: memfd_create reads a NUL-terminated name and returns a new fd.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd was just created and is owned by nothing else.
    let file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    file.set_len(size as u64).ok()?;
    // SAFETY: the memory file is private to this process; guest RAM is
    // expected to change under any reader, and no reference assumes
    // otherwise.
    let map = unsafe { MmapOptions::new().len(size).map_mut(&file) }.ok()?;
    Some(Mapping {
        map,
        file: Some(file),
    })
}

/// strerror text: io::Error's Display without the "(os error N)" tail.
pub fn strerror(e: &io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

impl MemoryBackend {
    /// A backend before complete(); merge and dump default to the
    /// machine's mem-merge and dump-guest-core, as in QEMU.
    pub fn new(kind: BackendKind, merge: bool, dump: bool) -> Self {
        MemoryBackend {
            kind,
            size: 0,
            merge,
            dump,
            prealloc: false,
            host_nodes: [0; 3],
            policy: POLICY_DEFAULT,
            mapping: None,
            mapped: false,
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn share(&self) -> bool {
        matches!(self.kind, BackendKind::File { share: true, .. })
    }

    pub fn mem_path(&self) -> Option<&str> {
        match &self.kind {
            BackendKind::File { mem_path, .. } => mem_path.as_deref(),
            BackendKind::Ram => None,
        }
    }

    /// The host memory, once complete() has mapped it. Its length may
    /// exceed `size()` by the rounding to the file's page size.
    pub fn memory(&mut self) -> Option<&mut [u8]> {
        self.mapping.as_mut().map(|m| &mut m.map[..])
    }

    /// The backing file (of a memory-backend-file, or the memory file of a
    /// memory-backend-ram), for the machine that maps it again as guest RAM.
    pub fn fd(&self) -> Option<RawFd> {
        self.mapping.as_ref()?.file.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// The machine marks a backend it uses; object-del then refuses it.
    pub fn set_mapped(&mut self, mapped: bool) {
        self.mapped = mapped;
    }

    pub fn is_mapped(&self) -> bool {
        self.mapped
    }

    fn allocated(&self) -> bool {
        self.mapping.is_some()
    }

    fn host_node_list(&self) -> Vec<u16> {
        (0..MAX_NODES)
            .filter(|&n| self.host_nodes[n / 64] & (1 << (n % 64)) != 0)
            .map(|n| n as u16)
            .collect()
    }

    fn advise(&self, advice: libc::c_int) {
        if let Some(m) = &self.mapping {
            // SAFETY: the range is exactly our live mapping; madvise only
            // changes kernel paging hints for it.
            unsafe {
                libc::madvise(m.map.as_ptr() as *mut libc::c_void, m.map.len(), advice);
            }
        }
    }

    fn touch_pages(&mut self) {
        let Some(m) = &mut self.mapping else {
            return;
        };
        let len = m.map.len();
        let base = m.map.as_mut_ptr();
        let page = page_size();
        let mut off = 0;
        while off < len {
            // SAFETY: off < len, so the byte lies inside our mapping; the
            // volatile read-then-write keeps the content and makes the
            // kernel back the page now.
            unsafe {
                let p = base.add(off);
                std::ptr::write_volatile(p, std::ptr::read_volatile(p));
            }
            off += page;
        }
    }

    fn bind(&self) -> Result<(), QomError> {
        let Some(m) = &self.mapping else {
            return Ok(());
        };
        let nodes = self.host_node_list();
        let maxnode = nodes.last().map_or(0, |&l| usize::from(l) + 1);
        if maxnode > 0 && self.policy == POLICY_DEFAULT {
            return Err(QomError::generic(
                "host-nodes must be empty for policy default, or you should explicitly specify a policy other than default",
            ));
        }
        if maxnode == 0 && self.policy != POLICY_DEFAULT {
            let name = enum_values("HostMemPolicy")
                .and_then(|v| v.get(self.policy))
                .copied()
                .unwrap_or("");
            return Err(QomError::generic(format!(
                "host-nodes must be set for policy {name}"
            )));
        }
        const MPOL_MF_STRICT: libc::c_ulong = 1;
        const MPOL_MF_MOVE: libc::c_ulong = 2;
        let mask = if maxnode > 0 {
            self.host_nodes.as_ptr()
        } else {
            std::ptr::null()
        };
        // SAFETY: the address range is our mapping, the mask holds
        // MAX_NODES + 1 bits (more than maxnode + 1), and mbind only
        // changes the memory policy of that range.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mbind,
                m.map.as_ptr(),
                m.map.len(),
                self.policy as libc::c_ulong,
                mask,
                (maxnode + 1) as libc::c_ulong,
                MPOL_MF_STRICT | MPOL_MF_MOVE,
            )
        };
        if r != 0 {
            let e = io::Error::last_os_error();
            if self.policy != POLICY_DEFAULT || e.raw_os_error() != Some(libc::ENOSYS) {
                return Err(QomError::generic(format!(
                    "cannot bind memory to host NUMA nodes: {}",
                    strerror(&e)
                )));
            }
        }
        Ok(())
    }

    fn alloc(&mut self, path: &str) -> Result<(), QomError> {
        if self.size == 0 {
            return Err(QomError::generic("can't create backend with size 0"));
        }
        let size = usize::try_from(self.size)
            .map_err(|_| QomError::generic("backend size does not fit this host"))?;
        let id = path.rsplit('/').next().unwrap_or(path);
        let mapping = match &self.kind {
            BackendKind::Ram => match map_memfd(id, size) {
                Some(m) => m,
                None => {
                    let map = MmapMut::map_anon(size).map_err(|e| {
                        QomError::generic(format!(
                            "cannot set up guest memory '{id}': {}",
                            strerror(&e)
                        ))
                    })?;
                    Mapping { map, file: None }
                }
            },
            BackendKind::File { mem_path, share } => {
                let Some(mem_path) = mem_path else {
                    return Err(QomError::generic("mem-path property not set"));
                };
                map_file(mem_path, path, size, *share)?
            }
        };
        self.mapping = Some(mapping);
        Ok(())
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).ok().filter(|&p| p > 0).unwrap_or(4096)
}

/// The page size of memory in this file: the huge page size on hugetlbfs.
fn fd_page_size(f: &File) -> usize {
    const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: fstatfs writes one statfs into the buffer we own.
    let r = unsafe { libc::fstatfs(f.as_raw_fd(), st.as_mut_ptr()) };
    if r == 0 {
        // SAFETY: fstatfs succeeded, so the struct is initialised.
        let st = unsafe { st.assume_init() };
        #[allow(clippy::unnecessary_cast)]
        if st.f_type as i64 == HUGETLBFS_MAGIC {
            return usize::try_from(st.f_bsize).unwrap_or(4096);
        }
    }
    page_size()
}

/// QEMU's file_ram_alloc: an existing file is used, a missing one is
/// created (and removed again on failure), a directory gets an unlinked
/// temporary file named after the object.
fn map_file(mem_path: &str, obj_path: &str, size: usize, share: bool) -> Result<Mapping, QomError> {
    let cant_open = |e: io::Error| {
        QomError::generic(format!(
            "can't open backing store {mem_path} for guest RAM: {}",
            strerror(&e)
        ))
    };
    let mut created = false;
    let file = match OpenOptions::new().read(true).write(true).open(mem_path) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(mem_path)
                .map_err(cant_open)?;
            created = true;
            f
        }
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
            let sanitized = obj_path.replace('/', "_");
            temp_file_in(mem_path, &sanitized).map_err(cant_open)?
        }
        Err(e) => return Err(cant_open(e)),
    };
    let fail = |msg: String| {
        if created {
            let _ = std::fs::remove_file(mem_path);
        }
        QomError::generic(msg)
    };
    let page = fd_page_size(&file);
    if size < page {
        return Err(fail(format!(
            "memory size 0x{size:x} must be equal to or larger than page size 0x{page:x}"
        )));
    }
    let Some(len) = size.div_ceil(page).checked_mul(page) else {
        return Err(fail(format!(
            "unable to map backing store for guest RAM: {}",
            strerror(&io::Error::from_raw_os_error(libc::ENOMEM))
        )));
    };
    if let Err(e) = file.set_len(len as u64) {
        // hugetlbfs on old hosts refuses ftruncate; mmap decides.
        eprintln!("ftruncate: {}", strerror(&e));
    }
    let mut opts = MmapOptions::new();
    opts.len(len);
    // SAFETY: the file is ours for the backend's lifetime; as in QEMU,
    // another process writing a shared file changes guest memory, which is
    // the point of share=on, and never touches our own invariants.
    let map = unsafe {
        if share {
            opts.map_mut(&file)
        } else {
            opts.map_copy(&file)
        }
    }
    .map_err(|e| {
        fail(format!(
            "unable to map backing store for guest RAM: {}",
            strerror(&e)
        ))
    })?;
    Ok(Mapping {
        map,
        file: Some(file),
    })
}

/// mkstemp + unlink: `dir/qemu_back_mem.<name>.XXXXXX`.
fn temp_file_in(dir: &str, name: &str) -> io::Result<File> {
    let mut seed = std::process::id() as u64 ^ crate::main_loop::Clocks::host_ns() as u64;
    for _ in 0..100 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let suffix: String = (0..6)
            .map(|i| {
                let c = ((seed >> (i * 6 + 10)) & 63) as u8;
                match c {
                    0..=25 => (b'a' + c) as char,
                    26..=51 => (b'A' + c - 26) as char,
                    _ => (b'0' + (c - 52) % 10) as char,
                }
            })
            .collect();
        let path = format!("{dir}/qemu_back_mem.{name}.{suffix}");
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => {
                let _ = std::fs::remove_file(&path);
                return Ok(f);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(libc::EEXIST))
}

fn frozen() -> QomError {
    QomError::generic("cannot change property value")
}

impl ObjectImpl for MemoryBackend {
    fn get(&self, p: &PropDef) -> Result<Value, QomError> {
        Ok(match p.name {
            "merge" => Value::Bool(self.merge),
            "dump" => Value::Bool(self.dump),
            "prealloc" => Value::Bool(self.prealloc),
            "size" => Value::from(self.size),
            "host-nodes" => Value::from(self.host_node_list()),
            "policy" => Value::String(
                enum_values("HostMemPolicy")
                    .and_then(|v| v.get(self.policy))
                    .copied()
                    .unwrap_or("default")
                    .to_string(),
            ),
            "share" => Value::Bool(self.share()),
            "mem-path" => Value::String(self.mem_path().unwrap_or("").to_string()),
            other => return Err(QomError::prop_not_found(other)),
        })
    }

    fn set(&mut self, type_name: &str, p: &PropDef, input: &Input) -> Result<(), QomError> {
        match p.name {
            "size" => {
                if self.allocated() {
                    return Err(frozen());
                }
                let v = input.size(p.name)?;
                if v == 0 {
                    return Err(QomError::generic(format!(
                        "Property '{type_name}.size' doesn't take value '0'"
                    )));
                }
                self.size = v;
            }
            "merge" => {
                let v = input.bool(p.name)?;
                if self.allocated() && v != self.merge {
                    self.advise(if v {
                        libc::MADV_MERGEABLE
                    } else {
                        libc::MADV_UNMERGEABLE
                    });
                }
                self.merge = v;
            }
            "dump" => {
                let v = input.bool(p.name)?;
                if self.allocated() && v != self.dump {
                    self.advise(if v {
                        libc::MADV_DODUMP
                    } else {
                        libc::MADV_DONTDUMP
                    });
                }
                self.dump = v;
            }
            "prealloc" => {
                let v = input.bool(p.name)?;
                if self.allocated() && v && !self.prealloc {
                    self.touch_pages();
                }
                if !self.allocated() || v {
                    self.prealloc = v;
                }
            }
            "host-nodes" => {
                for n in input.u16_list(p.name)? {
                    let n = usize::from(n);
                    if n >= MAX_NODES {
                        return Err(QomError::bad_value(p.name, "host node numbers below 128"));
                    }
                    self.host_nodes[n / 64] |= 1 << (n % 64);
                }
            }
            "policy" => {
                let vals = enum_values("HostMemPolicy").unwrap_or(&[]);
                let s = input.enumeration(p.name, vals)?;
                self.policy = vals.iter().position(|v| *v == s).unwrap_or(0);
            }
            "share" => {
                if self.allocated() {
                    return Err(frozen());
                }
                let v = input.bool(p.name)?;
                if let BackendKind::File { share, .. } = &mut self.kind {
                    *share = v;
                }
            }
            "mem-path" => {
                if self.allocated() {
                    return Err(frozen());
                }
                let v = input.string(p.name)?;
                if let BackendKind::File { mem_path, .. } = &mut self.kind {
                    *mem_path = Some(v);
                }
            }
            other => return Err(QomError::prop_not_found(other)),
        }
        Ok(())
    }

    fn complete(&mut self, path: &str, _: &super::Qom) -> Result<(), QomError> {
        self.alloc(path)?;
        if self.merge {
            self.advise(libc::MADV_MERGEABLE);
        }
        if !self.dump {
            self.advise(libc::MADV_DONTDUMP);
        }
        let bound = self.bind();
        if bound.is_ok() && self.prealloc {
            self.touch_pages();
        }
        if bound.is_err() {
            // QEMU leaves the object half made; we drop the memory so a
            // failed object-add holds nothing.
            self.mapping = None;
        }
        bound
    }

    fn in_use(&self) -> bool {
        self.mapped
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qom::types::TypeRegistry;
    use serde_json::json;

    fn set(b: &mut MemoryBackend, ty: &str, name: &str, v: Value) -> Result<(), QomError> {
        let r = TypeRegistry::new();
        let p = *r.find_prop(ty, name).unwrap();
        b.set(ty, &p, &Input::Json(&v))
    }

    #[test]
    fn ram_backend_maps_memory_and_freezes_size() {
        let mut b = MemoryBackend::new(BackendKind::Ram, true, true);
        set(&mut b, "memory-backend-ram", "size", json!(1 << 20)).unwrap();
        b.complete("/objects/m0", &crate::qom::Qom::new()).unwrap();
        let mem = b.memory().unwrap();
        mem[4096] = 7;
        assert_eq!(mem.len(), 1 << 20);
        assert_eq!(
            set(&mut b, "memory-backend-ram", "size", json!(4096))
                .unwrap_err()
                .msg(),
            "cannot change property value"
        );
    }

    #[test]
    fn zero_size_and_missing_size_are_refused() {
        let mut b = MemoryBackend::new(BackendKind::Ram, true, true);
        assert_eq!(
            set(&mut b, "memory-backend-ram", "size", json!(0))
                .unwrap_err()
                .msg(),
            "Property 'memory-backend-ram.size' doesn't take value '0'"
        );
        assert_eq!(
            b.complete("/objects/m", &crate::qom::Qom::new())
                .unwrap_err()
                .msg(),
            "can't create backend with size 0"
        );
    }

    #[test]
    fn file_backend_shares_bytes_with_its_file() {
        let dir = std::env::temp_dir().join(format!("rqemu-hostmem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ram");
        let kind = BackendKind::File {
            mem_path: None,
            share: false,
        };
        let mut b = MemoryBackend::new(kind, true, true);
        let ty = "memory-backend-file";
        set(&mut b, ty, "size", json!(65536)).unwrap();
        set(&mut b, ty, "mem-path", json!(path.to_str().unwrap())).unwrap();
        set(&mut b, ty, "share", json!(true)).unwrap();
        b.complete("/objects/f", &crate::qom::Qom::new()).unwrap();
        b.memory().unwrap()[10] = 0x5a;
        drop(b);
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len(), 65536);
        assert_eq!(data[10], 0x5a);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn file_backend_in_a_directory_uses_an_unlinked_file() {
        let dir = std::env::temp_dir().join(format!("rqemu-hostmem-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kind = BackendKind::File {
            mem_path: Some(dir.to_str().unwrap().to_string()),
            share: true,
        };
        let mut b = MemoryBackend::new(kind, true, true);
        set(&mut b, "memory-backend-file", "size", json!(65536)).unwrap();
        b.complete("/objects/f", &crate::qom::Qom::new()).unwrap();
        assert!(b.fd().is_some());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn file_backend_errors_match_qemu() {
        let kind = BackendKind::File {
            mem_path: None,
            share: false,
        };
        let mut b = MemoryBackend::new(kind, true, true);
        set(&mut b, "memory-backend-file", "size", json!(65536)).unwrap();
        assert_eq!(
            b.complete("/objects/f", &crate::qom::Qom::new())
                .unwrap_err()
                .msg(),
            "mem-path property not set"
        );
        set(
            &mut b,
            "memory-backend-file",
            "mem-path",
            json!("/nonexistent-dir/x"),
        )
        .unwrap();
        assert_eq!(
            b.complete("/objects/f", &crate::qom::Qom::new())
                .unwrap_err()
                .msg(),
            "can't open backing store /nonexistent-dir/x for guest RAM: No such file or directory"
        );
    }

    #[test]
    fn absurd_sizes_fail_cleanly() {
        let mut b = MemoryBackend::new(BackendKind::Ram, true, true);
        set(&mut b, "memory-backend-ram", "size", json!(-1)).unwrap();
        let e = b
            .complete("/objects/m0", &crate::qom::Qom::new())
            .unwrap_err();
        assert!(
            e.msg().starts_with("cannot set up guest memory 'm0': "),
            "{e}"
        );
        let kind = BackendKind::File {
            mem_path: Some("/tmp".into()),
            share: false,
        };
        let mut b = MemoryBackend::new(kind, true, true);
        set(&mut b, "memory-backend-file", "size", json!(-1)).unwrap();
        let e = b
            .complete("/objects/f", &crate::qom::Qom::new())
            .unwrap_err();
        assert!(
            e.msg()
                .starts_with("unable to map backing store for guest RAM"),
            "{e}"
        );
    }

    #[test]
    fn policy_needs_host_nodes_and_the_reverse() {
        let mut b = MemoryBackend::new(BackendKind::Ram, true, true);
        set(&mut b, "memory-backend-ram", "size", json!(1 << 20)).unwrap();
        set(&mut b, "memory-backend-ram", "policy", json!("bind")).unwrap();
        assert_eq!(
            b.complete("/objects/m", &crate::qom::Qom::new())
                .unwrap_err()
                .msg(),
            "host-nodes must be set for policy bind"
        );
        let mut b = MemoryBackend::new(BackendKind::Ram, true, true);
        set(&mut b, "memory-backend-ram", "size", json!(1 << 20)).unwrap();
        set(&mut b, "memory-backend-ram", "host-nodes", json!([0])).unwrap();
        assert!(b
            .complete("/objects/m", &crate::qom::Qom::new())
            .unwrap_err()
            .msg()
            .starts_with("host-nodes must be empty for policy default"));
    }

    #[test]
    fn bind_to_node_zero_with_prealloc_works() {
        let mut b = MemoryBackend::new(BackendKind::Ram, true, true);
        set(&mut b, "memory-backend-ram", "size", json!(1 << 20)).unwrap();
        set(&mut b, "memory-backend-ram", "host-nodes", json!([0])).unwrap();
        set(&mut b, "memory-backend-ram", "policy", json!("bind")).unwrap();
        set(&mut b, "memory-backend-ram", "prealloc", json!(true)).unwrap();
        b.complete("/objects/m", &crate::qom::Qom::new()).unwrap();
        assert_eq!(
            b.get(&crate::qom::types::prop(
                "host-nodes",
                "int",
                crate::qom::types::Access::ReadWrite,
                crate::qom::types::Dflt::Int(0)
            ))
            .unwrap(),
            json!([0])
        );
    }
}
