//! Image creation: the options qemu-img knows, checked by qemu-img.

mod common;

use block::{create_image, lock, BlockGraph, CreateOptions, Preallocation};
use common::*;

fn info(path: &str) -> serde_json::Value {
    serde_json::from_str(&qemu_img(&["info", "--output=json", path])).unwrap()
}

#[test]
fn qcow2_options_show_up_in_qemu_img_info() {
    if !have_qemu_img() {
        return;
    }
    let d = tmpdir("cr-opts");
    let img = p(&d, "a.qcow2");
    let o = CreateOptions {
        cluster_size: Some(4096),
        compat: Some("0.10".into()),
        ..Default::default()
    };
    create_image("qcow2", &img, Some(10 << 20), &o).unwrap();
    assert_check_clean(&img);
    let i = info(&img);
    assert_eq!(i["virtual-size"], 10 << 20);
    assert_eq!(i["cluster-size"], 4096);
    assert_eq!(i["format-specific"]["data"]["compat"], "0.10");
    let img2 = p(&d, "b.qcow2");
    let o = CreateOptions {
        lazy_refcounts: true,
        refcount_bits: Some(8),
        ..Default::default()
    };
    create_image("qcow2", &img2, Some(1 << 30), &o).unwrap();
    assert_check_clean(&img2);
    let i = info(&img2);
    assert_eq!(i["format-specific"]["data"]["lazy-refcounts"], true);
    assert_eq!(i["format-specific"]["data"]["refcount-bits"], 8);
    assert_eq!(i["dirty-flag"], false);
}

#[test]
fn invalid_qcow2_options_are_refused_with_qemu_messages() {
    let d = tmpdir("cr-bad");
    let img = p(&d, "x.qcow2");
    let bad = |o: CreateOptions| {
        create_image("qcow2", &img, Some(1 << 20), &o)
            .unwrap_err()
            .to_string()
    };
    assert!(bad(CreateOptions {
        cluster_size: Some(1000),
        ..Default::default()
    })
    .contains("power of two"));
    assert!(bad(CreateOptions {
        compat: Some("0.10".into()),
        lazy_refcounts: true,
        ..Default::default()
    })
    .contains("Lazy refcounts"));
    assert!(bad(CreateOptions {
        refcount_bits: Some(3),
        ..Default::default()
    })
    .contains("Refcount width"));
    assert!(bad(CreateOptions {
        compat: Some("2.0".into()),
        ..Default::default()
    })
    .contains("compatibility level"));
    assert!(create_image("qcow2", &img, None, &CreateOptions::default()).is_err());
}

#[test]
fn qcow2_preallocation_modes_pass_check_and_allocate() {
    if !have_qemu_img() {
        return;
    }
    for mode in [
        Preallocation::Metadata,
        Preallocation::Falloc,
        Preallocation::Full,
    ] {
        let d = tmpdir(&format!("cr-pre-{:?}", mode));
        let img = p(&d, "p.qcow2");
        let o = CreateOptions {
            preallocation: mode,
            ..Default::default()
        };
        create_image("qcow2", &img, Some(4 << 20), &o).unwrap();
        assert_check_clean(&img);
        let map = qemu_img(&["map", "--output=json", &img]);
        let v: serde_json::Value = serde_json::from_str(&map).unwrap();
        let data: u64 = v
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["data"] == true)
            .map(|e| e["length"].as_u64().unwrap())
            .sum();
        assert_eq!(data, 4 << 20, "{:?}: {}", mode, map);
        assert!(std::fs::metadata(&img).unwrap().len() >= 4 << 20);
        let mut g = BlockGraph::new();
        let n = open(&mut g, &img, Some("qcow2"), false);
        assert!(read_all(&n, 0, 4 << 20).iter().all(|&b| b == 0));
        lock(&n).write(100, b"data", false).unwrap();
        close(n);
        assert_check_clean(&img);
    }
}

#[test]
fn raw_creation_and_preallocation() {
    let d = tmpdir("cr-raw");
    let img = p(&d, "r.raw");
    create_image("raw", &img, Some(1000), &CreateOptions::default()).unwrap();
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 1024);
    let o = CreateOptions {
        preallocation: Preallocation::Full,
        ..Default::default()
    };
    create_image("raw", &img, Some(1 << 20), &o).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert!(std::fs::metadata(&img).unwrap().blocks() * 512 >= 1 << 20);
    let o = CreateOptions {
        preallocation: Preallocation::Metadata,
        ..Default::default()
    };
    assert!(create_image("raw", &img, Some(1 << 20), &o).is_err());
}

#[test]
fn overlay_takes_backing_size_and_reads_through() {
    if !have_qemu_img() {
        return;
    }
    let d = tmpdir("cr-overlay");
    let base = p(&d, "base.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &base, "3M"]);
    qemu_io("qcow2", &base, "write -P 0x61 1M 4k");
    let top = p(&d, "top.qcow2");
    let o = CreateOptions {
        backing_file: Some("base.qcow2".into()),
        backing_fmt: Some("qcow2".into()),
        ..Default::default()
    };
    create_image("qcow2", &top, None, &o).unwrap();
    assert_check_clean(&top);
    let i = info(&top);
    assert_eq!(i["virtual-size"], 3 << 20);
    assert_eq!(i["backing-filename"], "base.qcow2");
    assert_eq!(i["backing-filename-format"], "qcow2");
    let (ok, out) = run("qemu-io", &["-c", "read -P 0x61 1M 4k", &top]);
    assert!(ok && !out.contains("fail"), "{}", out);
}

#[test]
fn read_only_backing_reopens_read_write() {
    let d = tmpdir("cr-reopen");
    let base = p(&d, "base.qcow2");
    create_image("qcow2", &base, Some(1 << 20), &CreateOptions::default()).unwrap();
    let top = p(&d, "top.qcow2");
    let o = CreateOptions {
        backing_file: Some(base.clone()),
        ..Default::default()
    };
    create_image("qcow2", &top, None, &o).unwrap();
    let mut g = BlockGraph::new();
    let n = open(&mut g, &top, None, false);
    let b = lock(&n).backing().unwrap();
    assert!(lock(&b).write(0, b"x", false).is_err());
    lock(&b).set_read_only(false).unwrap();
    lock(&b).write(0, b"x", false).unwrap();
    assert_eq!(read_all(&n, 0, 1), b"x");
    g.close_all();
}
