//! Helpers for tests that use qemu-img / qemu-io as oracles.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use block::{lock, BlockGraph, NodeRef};

pub fn have_qemu_img() -> bool {
    Command::new("qemu-img").arg("--version").output().is_ok()
}

/// A fresh directory for one test, removed when the guard drops (kept when the
/// test panics, for inspection).
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn tmpdir(name: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("block-it-{}-{}", std::process::id(), name));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

pub fn p(d: &std::path::Path, f: &str) -> String {
    d.join(f).to_string_lossy().into_owned()
}

/// Runs a command and returns (success, stdout + stderr).
pub fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd).args(args).output().expect("run tool");
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

pub fn qemu_img(args: &[&str]) -> String {
    let (ok, out) = run("qemu-img", args);
    assert!(ok, "qemu-img {:?} failed: {}", args, out);
    out
}

pub fn qemu_io(fmt: &str, path: &str, cmd: &str) -> String {
    let (ok, out) = run("qemu-io", &["-f", fmt, "-c", cmd, path]);
    assert!(
        ok && !out.contains("failed"),
        "qemu-io {} failed: {}",
        cmd,
        out
    );
    out
}

/// `qemu-img check` passes with no leaks and no corruptions.
pub fn assert_check_clean(path: &str) {
    let (ok, out) = run("qemu-img", &["check", path]);
    assert!(ok, "qemu-img check {} failed:\n{}", path, out);
    assert!(
        out.contains("No errors were found"),
        "check output:\n{}",
        out
    );
}

/// The image's content equals the raw file `expected`.
pub fn assert_same_content(img: &str, fmt: &str, expected_raw: &str) {
    let (ok, out) = run(
        "qemu-img",
        &["compare", "-f", fmt, "-F", "raw", img, expected_raw],
    );
    assert!(
        ok && out.contains("Images are identical"),
        "compare failed:\n{}",
        out
    );
}

/// Deterministic pseudo-random bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn open(g: &mut BlockGraph, path: &str, fmt: Option<&str>, ro: bool) -> NodeRef {
    g.open_image(path, fmt, ro)
        .unwrap_or_else(|e| panic!("open {}: {}", path, e))
}

pub fn read_all(n: &NodeRef, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    lock(n).read(off, &mut b).unwrap();
    b
}

/// Closes a node the way removing it from the graph does.
pub fn close(n: NodeRef) {
    lock(&n).close().unwrap();
}

/// xorshift64: the same random sequence for the same seed (seed not 0).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
