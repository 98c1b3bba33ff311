//! Copy offload checked against qemu-img: every test copies a whole image
//! with `copy_range`, closes the graph and has `qemu-img compare` and
//! `qemu-img check` judge the result. An untouched scratch buffer proves that
//! no byte went through memory.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use super::*;
use crate::graph::BlockGraph;

fn tool(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("qemu tools are installed");
    assert!(
        out.status.success(),
        "{:?}: {}{}",
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn scratch(base: &str, tag: &str) -> PathBuf {
    let d = Path::new(base).join(format!("rqemu-copy-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn shm(tag: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    scratch(base, tag)
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn open(g: &mut BlockGraph, path: &Path, fmt: &str, name: &str) -> NodeRef {
    let o = json!({"driver": fmt, "node-name": name,
                   "file": {"driver": "file", "filename": path_str(path)}});
    g.open(o.as_object().unwrap()).unwrap()
}

/// Writes a mix of data, zeroes, partial clusters and holes with qemu-io.
fn fill(path: &Path, fmt: &str, extra: &[&str]) {
    let mut args = vec!["qemu-io", "-f", fmt];
    for c in [
        "write -P 0x11 0 1M",
        "write -P 0x22 1M 64k",
        "write -P 0x33 1200k 3000",
        "write -z 2M 512k",
        "write -P 0x44 3M 2M",
        "write -P 0x55 7M 1M",
    ] {
        args.push("-c");
        args.push(c);
    }
    for c in extra {
        args.push("-c");
        args.push(c);
    }
    args.push(path_str(path));
    tool(&args);
}

/// Copies all of `src` to `dst` and closes the graph; returns the scratch
/// buffer's capacity (0: everything was offloaded or zero).
fn copy_all(mut g: BlockGraph, src: &NodeRef, dst: &NodeRef) -> usize {
    let len = lock(src).length().unwrap();
    let mut buf = Vec::new();
    let mode = WriteMode {
        compress_cluster: None,
        unmap: false,
    };
    copy_range(src, dst, 0, len, &mut buf, mode).unwrap();
    g.close_all();
    buf.capacity()
}

fn assert_same(src: &Path, sfmt: &str, dst: &Path) {
    tool(&[
        "qemu-img",
        "compare",
        "-f",
        sfmt,
        "-F",
        "qcow2",
        path_str(src),
        path_str(dst),
    ]);
    tool(&["qemu-img", "check", "-f", "qcow2", path_str(dst)]);
}

fn new_qcow2(path: &Path, backing: Option<&Path>) {
    let mut args = vec!["qemu-img", "create", "-q", "-f", "qcow2"];
    if let Some(b) = backing {
        args.extend(["-F", "qcow2", "-b", path_str(b)]);
    }
    args.extend([path_str(path), "8M"]);
    tool(&args);
}

#[test]
fn qcow2_to_qcow2_copy_is_offloaded_and_exact() {
    let d = shm("qq");
    let (src, dst) = (d.join("src.qcow2"), d.join("dst.qcow2"));
    new_qcow2(&src, None);
    new_qcow2(&dst, None);
    fill(&src, "qcow2", &[]);
    let mut g = BlockGraph::new();
    let s = open(&mut g, &src, "qcow2", "src");
    let t = open(&mut g, &dst, "qcow2", "dst");

    let through_memory = copy_all(g, &s, &t);

    assert_eq!(through_memory, 0);
    assert_same(&src, "qcow2", &dst);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn raw_to_qcow2_copy_is_offloaded_and_exact() {
    let d = shm("rq");
    let (src, dst) = (d.join("src.raw"), d.join("dst.qcow2"));
    tool(&[
        "qemu-img",
        "create",
        "-q",
        "-f",
        "raw",
        path_str(&src),
        "8M",
    ]);
    new_qcow2(&dst, None);
    fill(&src, "raw", &[]);
    let mut g = BlockGraph::new();
    let s = open(&mut g, &src, "raw", "src");
    let t = open(&mut g, &dst, "qcow2", "dst");

    let through_memory = copy_all(g, &s, &t);

    assert_eq!(through_memory, 0);
    assert_same(&src, "raw", &dst);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn copy_of_an_overlay_takes_unallocated_ranges_from_its_backing_file() {
    let d = shm("bk");
    let (base, src, dst) = (
        d.join("base.qcow2"),
        d.join("src.qcow2"),
        d.join("dst.qcow2"),
    );
    new_qcow2(&base, None);
    fill(&base, "qcow2", &[]);
    new_qcow2(&src, Some(&base));
    tool(&[
        "qemu-io",
        "-f",
        "qcow2",
        "-c",
        "write -P 0x66 512k 1M",
        "-c",
        "write -z 5M 64k",
        path_str(&src),
    ]);
    new_qcow2(&dst, None);
    let mut g = BlockGraph::new();
    let s = open(&mut g, &src, "qcow2", "src");
    let t = open(&mut g, &dst, "qcow2", "dst");

    let through_memory = copy_all(g, &s, &t);

    assert_eq!(through_memory, 0);
    assert_same(&src, "qcow2", &dst);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn compressed_source_clusters_fall_back_to_read_and_write() {
    let d = shm("cz");
    let (src, dst) = (d.join("src.qcow2"), d.join("dst.qcow2"));
    new_qcow2(&src, None);
    new_qcow2(&dst, None);
    fill(
        &src,
        "qcow2",
        &["write -c -P 0x77 6M 64k", "write -c -P 0x78 6208k 64k"],
    );
    let mut g = BlockGraph::new();
    let s = open(&mut g, &src, "qcow2", "src");
    let t = open(&mut g, &dst, "qcow2", "dst");

    let through_memory = copy_all(g, &s, &t);

    assert!(through_memory >= 128 << 10);
    assert_same(&src, "qcow2", &dst);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn copy_across_file_systems_falls_back_inside_the_file_driver() {
    let a = shm("xa");
    // /tmp is a disk file system where /dev/shm is tmpfs.
    let b = scratch(path_str(&std::env::temp_dir()), "xb");
    let (src, dst) = (a.join("src.qcow2"), b.join("dst.qcow2"));
    new_qcow2(&src, None);
    new_qcow2(&dst, None);
    fill(&src, "qcow2", &[]);
    let mut g = BlockGraph::new();
    let s = open(&mut g, &src, "qcow2", "src");
    let t = open(&mut g, &dst, "qcow2", "dst");

    copy_all(g, &s, &t);

    assert_same(&src, "qcow2", &dst);
    std::fs::remove_dir_all(a).unwrap();
    std::fs::remove_dir_all(b).unwrap();
}

#[test]
fn detect_zeroes_target_takes_the_copy_through_memory() {
    let d = shm("dz");
    let (src, dst) = (d.join("src.qcow2"), d.join("dst.qcow2"));
    new_qcow2(&src, None);
    new_qcow2(&dst, None);
    fill(&src, "qcow2", &[]);
    let mut g = BlockGraph::new();
    let s = open(&mut g, &src, "qcow2", "src");
    let t = open(&mut g, &dst, "qcow2", "dst");
    lock(&t).set_detect_zeroes(crate::node::DetectZeroes::On);

    let through_memory = copy_all(g, &s, &t);

    assert!(through_memory > 0);
    assert_same(&src, "qcow2", &dst);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn offloaded_copy_sets_the_targets_dirty_bitmap() {
    let d = shm("bm");
    let (src, dst) = (d.join("src.qcow2"), d.join("dst.qcow2"));
    new_qcow2(&src, None);
    new_qcow2(&dst, None);
    fill(&src, "qcow2", &[]);
    let mut g = BlockGraph::new();
    let s = open(&mut g, &src, "qcow2", "src");
    let t = open(&mut g, &dst, "qcow2", "dst");
    lock(&t).dirty_bitmap_add("b", Some(65536)).unwrap();
    let mut buf = Vec::new();

    copy_range(&s, &t, 3 << 20, 1 << 20, &mut buf, WriteMode::default()).unwrap();

    let g2 = lock(&t);
    let bm = g2.tracking().bitmaps.get("b").unwrap();
    assert_eq!(bm.count_bytes(), 1 << 20);
    assert_eq!(bm.dirty_ranges(0).next(), Some((3 << 20, 1 << 20)));
    assert_eq!(buf.capacity(), 0);
    drop(g2);
    g.close_all();
    std::fs::remove_dir_all(d).unwrap();
}

struct RecordWrites(std::sync::Mutex<Vec<(u64, u64)>>);

impl crate::node::BeforeWrite for RecordWrites {
    fn before_write(&self, _node: &mut Node, offset: u64, len: u64) -> crate::BlockResult<()> {
        self.0.lock().unwrap().push((offset, len));
        Ok(())
    }
}

#[test]
fn offloaded_copy_runs_the_targets_before_write_hook() {
    let d = shm("hook");
    let (src, dst) = (d.join("src.qcow2"), d.join("dst.qcow2"));
    new_qcow2(&src, None);
    new_qcow2(&dst, None);
    fill(&src, "qcow2", &[]);
    let mut g = BlockGraph::new();
    let s = open(&mut g, &src, "qcow2", "src");
    let t = open(&mut g, &dst, "qcow2", "dst");
    let hook = std::sync::Arc::new(RecordWrites(std::sync::Mutex::new(Vec::new())));
    lock(&t).set_before_write(Some(hook.clone()));
    let mut buf = Vec::new();

    copy_range(&s, &t, 3 << 20, 2 << 20, &mut buf, WriteMode::default()).unwrap();

    let seen: u64 = hook.0.lock().unwrap().iter().map(|r| r.1).sum();
    assert_eq!(seen, 2 << 20);
    assert_eq!(hook.0.lock().unwrap()[0].0, 3 << 20);
    assert_eq!(buf.capacity(), 0);
    lock(&t).set_before_write(None);
    g.close_all();
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn unaligned_offloaded_copy_merges_with_the_targets_backing_data() {
    let d = shm("merge");
    let (src, base, dst) = (
        d.join("src.qcow2"),
        d.join("base.qcow2"),
        d.join("dst.qcow2"),
    );
    new_qcow2(&src, None);
    fill(&src, "qcow2", &[]);
    new_qcow2(&base, None);
    tool(&[
        "qemu-io",
        "-f",
        "qcow2",
        "-c",
        "write -P 0x99 0 1M",
        path_str(&base),
    ]);
    new_qcow2(&dst, Some(&base));
    let mut g = BlockGraph::new();
    let s = open(&mut g, &src, "qcow2", "src");
    let t = open(&mut g, &dst, "qcow2", "dst");
    let mut buf = Vec::new();

    copy_range(&s, &t, 100_000, 50_000, &mut buf, WriteMode::default()).unwrap();

    let mut got = vec![0u8; 1 << 20];
    lock(&t).read(0, &mut got).unwrap();
    assert!(got[..100_000].iter().all(|&b| b == 0x99));
    assert!(got[100_000..150_000].iter().all(|&b| b == 0x11));
    assert!(got[150_000..].iter().all(|&b| b == 0x99));
    assert_eq!(buf.capacity(), 0);
    g.close_all();
    tool(&["qemu-img", "check", "-f", "qcow2", path_str(&dst)]);
    std::fs::remove_dir_all(d).unwrap();
}
