//! Images we create and write pass `qemu-img check` and match the expected content.

mod common;

use block::{create_image, lock, BlockGraph, CreateOptions};
use common::*;

/// Writes the same data into our qcow2 and a raw mirror.
fn write_both(n: &block::NodeRef, raw: &mut [u8], off: u64, data: &[u8]) {
    lock(n).write(off, data, false).unwrap();
    raw[off as usize..off as usize + data.len()].copy_from_slice(data);
}

fn exercise(cluster: u64, compat: &str, refcount_bits: u32) {
    if !have_qemu_img() {
        return;
    }
    let d = tmpdir(&format!("w-{}-{}-{}", cluster, compat, refcount_bits));
    let img = p(&d, "t.qcow2");
    let exp = p(&d, "exp.raw");
    let size = 8u64 << 20;
    let opts = CreateOptions {
        cluster_size: Some(cluster),
        compat: Some(compat.into()),
        refcount_bits: Some(refcount_bits),
        ..Default::default()
    };
    create_image("qcow2", &img, Some(size), &opts).unwrap();
    assert_check_clean(&img);
    let mut raw = vec![0u8; size as usize];
    let mut g = BlockGraph::new();
    let n = open(&mut g, &img, Some("qcow2"), false);
    write_both(&n, &mut raw, 0, &pattern(1, 4096));
    write_both(&n, &mut raw, 1000, &pattern(2, 70000));
    write_both(&n, &mut raw, 3 << 20, &pattern(3, 1 << 20));
    write_both(&n, &mut raw, size - 777, &pattern(4, 777));
    write_both(&n, &mut raw, 5000, &pattern(5, 10));
    let back = read_all(&n, 0, size as usize);
    assert!(back == raw, "read back differs");
    lock(&n).flush().unwrap();
    close(n);
    std::fs::write(&exp, &raw).unwrap();
    assert_check_clean(&img);
    assert_same_content(&img, "qcow2", &exp);
}

#[test]
fn writes_pass_check_v3_64k() {
    exercise(65536, "1.1", 16);
}

#[test]
fn writes_pass_check_v2_64k() {
    exercise(65536, "0.10", 16);
}

#[test]
fn writes_pass_check_512_byte_clusters() {
    exercise(512, "1.1", 16);
}

#[test]
fn writes_pass_check_4k_clusters_1bit_refcounts() {
    exercise(4096, "1.1", 1);
}

#[test]
fn writes_pass_check_2m_clusters_64bit_refcounts() {
    exercise(2 << 20, "1.1", 64);
}
