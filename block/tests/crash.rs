//! A writer killed with SIGKILL leaves an image that `qemu-img check` finds
//! clean or with leaked clusters only, and every write acknowledged before a
//! completed flush is still there.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use block::{create_image, lock, BlockGraph, CreateOptions};
use common::*;

const CHILD_ENV: &str = "BLOCK_CRASH_CHILD_IMAGE";

/// Child side: writes block i (4 KiB, content pattern(i)) at i * 20 KiB forever,
/// flushing every 16 writes and printing the index that is now stable.
fn child(img: &str) {
    let mut g = BlockGraph::new();
    let n = g.open_image(img, Some("qcow2"), false).unwrap();
    let mut i = 0u64;
    // One pass over the image, so no acknowledged block is overwritten later.
    while i < (60 << 20) / 20480 {
        let off = i * 20480;
        lock(&n).write(off, &pattern(i, 4096), false).unwrap();
        if i % 7 == 3 {
            lock(&n).write_zeroes(off + 8192, 8192, true).unwrap();
        }
        if i % 16 == 15 {
            lock(&n).flush().unwrap();
            println!("stable {}", i);
        }
        i += 1;
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn run_and_kill(lazy: bool) {
    if let Ok(img) = std::env::var(CHILD_ENV) {
        child(&img);
        return;
    }
    if !have_qemu_img() {
        return;
    }
    let d = tmpdir(&format!("crash-{}", lazy));
    let img = p(&d, "c.qcow2");
    let opts = CreateOptions {
        lazy_refcounts: lazy,
        cluster_size: Some(65536),
        ..Default::default()
    };
    create_image("qcow2", &img, Some(64 << 20), &opts).unwrap();
    let test_name = if lazy {
        "sigkill_during_writes_with_lazy_refcounts_is_repairable"
    } else {
        "sigkill_during_writes_leaves_at_worst_leaks"
    };
    let mut ch = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &img)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = ch.stdout.take().unwrap();
    let mut stable = None;
    let start = Instant::now();
    let mut lines = BufReader::new(out).lines();
    // Kill in the middle of the workload, right after some progress.
    while start.elapsed() < Duration::from_secs(20) {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(v) = l.strip_prefix("stable ") {
                    stable = v.trim().parse::<u64>().ok();
                    if stable.is_some_and(|s| s >= 1000) {
                        break;
                    }
                }
            }
            _ => break,
        }
    }
    ch.kill().unwrap();
    ch.wait().unwrap();
    let stable = stable.expect("child made progress");
    assert!(stable > 16);
    if !lazy {
        let (ok, outp) = run("qemu-img", &["check", &img]);
        assert!(
            ok || outp.contains("leaked"),
            "check after crash:\n{}",
            outp
        );
        assert!(!outp.contains("ERROR"), "{}", outp);
    }
    // Reopen (repairs a dirty lazy-refcount image) and verify acknowledged data.
    let mut g = BlockGraph::new();
    let n = open(&mut g, &img, Some("qcow2"), false);
    for i in 0..=stable {
        let off = i * 20480;
        let got = read_all(&n, off, 4096);
        assert!(got == pattern(i, 4096), "write {} lost", i);
    }
    close(n);
    let (ok, outp) = run("qemu-img", &["check", &img]);
    assert!(
        ok || outp.contains("leaked"),
        "check after reopen:\n{}",
        outp
    );
    assert!(!outp.contains("ERROR"), "{}", outp);
}

#[test]
fn sigkill_during_writes_leaves_at_worst_leaks() {
    run_and_kill(false);
}

#[test]
fn sigkill_during_writes_with_lazy_refcounts_is_repairable() {
    run_and_kill(true);
}
