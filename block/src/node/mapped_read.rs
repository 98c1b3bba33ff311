//! Reads handed out as a map rather than copied: the ranges a node stores
//! plainly in a host file go to the caller as that file and offset (so a
//! server can sendfile(2) them), ranges known to read as zeroes as a length,
//! and only the rest is read into the caller's memory.
//!
//! A caller that reads the host file later (after other requests ran) must
//! check `mapping_generation` first: a format may free a cluster (discard,
//! zeroing, truncation, snapshots, or a write that copies a shared qcow2
//! cluster) and reuse it for other data. The counter is process-wide and
//! coarse: any such request on any node changes it, which costs a stale
//! check a re-read, never a wrong answer.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Node;
use crate::driver::CopySource;
use crate::error::BlockResult;

/// Bumped by every request that may free storage of any node; see
/// `mapping_generation`.
static MAPPING_GENERATION: AtomicU64 = AtomicU64::new(0);

/// A counter that changes whenever some node may have freed storage, after
/// which a host file range handed out by `read_mapped` may hold other data.
/// Mappings taken under one value stay valid while it is unchanged.
pub fn mapping_generation() -> u64 {
    MAPPING_GENERATION.load(Ordering::Acquire)
}

/// Called before a request that may free storage (and so invalidate maps).
pub(super) fn mappings_may_change() {
    MAPPING_GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// Where the pieces of a mapped read go, in order.
pub trait MappedRead {
    /// The next `len` bytes are stored plainly at `offset` of the host file
    /// `fd` (a duplicate descriptor, the caller's to keep).
    fn host(&mut self, fd: OwnedFd, offset: u64, len: u64);
    /// The next `len` bytes read as zeroes.
    fn zeroes(&mut self, len: u64);
    /// Room for the next `len` bytes, which the node fills before the next
    /// call (on failure the read returns an error and the room is garbage).
    fn buffer(&mut self, len: u64) -> &mut [u8];
}

impl Node {
    /// Reads `len` bytes at `offset` as a map (see the module comment): file
    /// ranges and zeroes where every layer can tell (`copy_source`), data
    /// read into `to.buffer` elsewhere (compressed clusters, O_DIRECT files,
    /// filter drivers). Neighbouring pieces that must be read are read with
    /// one request.
    pub fn read_mapped(
        &mut self,
        offset: u64,
        len: u64,
        to: &mut dyn MappedRead,
    ) -> BlockResult<()> {
        self.check_usable()?;
        let end = offset.saturating_add(len);
        let mut pos = offset;
        let mut slow: Option<u64> = None;
        while pos < end {
            let (src, n) = self.copy_source(pos, end - pos)?;
            let n = n.min(end - pos);
            match src {
                CopySource::Unsupported => {
                    slow.get_or_insert(pos);
                }
                src => {
                    if let Some(s) = slow.take() {
                        self.read(s, to.buffer(pos - s))?;
                    }
                    match src {
                        CopySource::Host { fd, offset: at } => to.host(fd, at, n),
                        _ => to.zeroes(n),
                    }
                }
            }
            pos += n;
        }
        if let Some(s) = slow {
            self.read(s, to.buffer(end - s))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;
    use std::path::Path;
    use std::process::Command;

    use serde_json::json;

    use super::*;
    use crate::graph::BlockGraph;
    use crate::node::lock;

    fn tool(args: &[&str]) {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect("qemu tools are installed");
        assert!(out.status.success(), "{args:?}: {out:?}");
    }

    /// The pieces in order, with the bytes of each read back.
    #[derive(Default)]
    struct Collect {
        kinds: Vec<(char, u64)>,
        bytes: Vec<u8>,
    }

    impl MappedRead for Collect {
        fn host(&mut self, fd: OwnedFd, offset: u64, len: u64) {
            let mut b = vec![0u8; len as usize];
            std::fs::File::from(fd)
                .read_exact_at(&mut b, offset)
                .expect("read host range");
            self.bytes.extend_from_slice(&b);
            self.kinds.push(('h', len));
        }
        fn zeroes(&mut self, len: u64) {
            self.bytes.resize(self.bytes.len() + len as usize, 0);
            self.kinds.push(('z', len));
        }
        fn buffer(&mut self, len: u64) -> &mut [u8] {
            self.kinds.push(('b', len));
            let at = self.bytes.len();
            self.bytes.resize(at + len as usize, 0xee);
            &mut self.bytes[at..]
        }
    }

    #[test]
    fn a_qcow2_with_backing_maps_to_file_ranges_zeroes_and_read_data() {
        let dir = std::env::temp_dir().join(format!("rqemu-mapped-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let base = dir.join("base.raw");
        let top = dir.join("top.qcow2");
        let (b, t) = (base.to_str().unwrap_or(""), top.to_str().unwrap_or(""));
        tool(&["qemu-img", "create", "-q", "-f", "raw", b, "4M"]);
        tool(&["qemu-io", "-f", "raw", "-c", "write -P 0x44 0 4M", b]);
        tool(&[
            "qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", b, t, "4M",
        ]);
        for c in [
            "write -P 0x11 0 1M",
            "write -z 1M 128k",
            "write -c -P 0x22 2M 64k",
            "write -P 0x33 3000k 5000",
        ] {
            tool(&["qemu-io", "-f", "qcow2", "-c", c, t]);
        }
        let mut g = BlockGraph::default();
        let o = json!({"driver": "qcow2", "node-name": "top",
                       "file": {"driver": "file", "filename": t}});
        let node = g.open(o.as_object().expect("object")).expect("open top");
        let mut want = vec![0u8; 4 << 20];
        lock(&node).read(0, &mut want).expect("plain read");

        let mut got = Collect::default();
        lock(&node)
            .read_mapped(0, 4 << 20, &mut got)
            .expect("mapped read");

        assert_eq!(got.bytes.len(), want.len());
        assert!(got.bytes == want, "mapped read differs from a plain read");
        let has = |k: char| got.kinds.iter().any(|p| p.0 == k);
        assert!(has('h') && has('z') && has('b'), "{:?}", got.kinds);
        assert_eq!(
            got.kinds[0],
            ('h', 1 << 20),
            "contiguous clusters are one range"
        );
        assert!(
            got.kinds.contains(&('b', 64 * 1024)),
            "the compressed cluster"
        );
        let _ = std::fs::remove_dir_all(Path::new(&dir));
    }

    #[test]
    fn freeing_requests_change_the_mapping_generation() {
        let path = std::env::temp_dir().join(format!("rqemu-mapgen-{}", std::process::id()));
        std::fs::write(&path, vec![1u8; 1 << 20]).expect("image");
        let mut g = BlockGraph::default();
        let o = json!({"driver": "raw", "node-name": "r", "discard": "unmap",
                       "file": {"driver": "file", "filename": path.to_str().unwrap_or("")}});
        let node = g.open(o.as_object().expect("object")).expect("open raw");
        let before = mapping_generation();
        lock(&node).write(0, &[2u8; 512], false).expect("write");
        // Other tests may bump it too; a plain write need not.
        let after_write = mapping_generation();

        lock(&node).discard(0, 65536).expect("discard");

        assert!(mapping_generation() > after_write.max(before));
        let _ = std::fs::remove_file(&path);
    }
}
