//! Opening nodes from blockdev-add / -drive options, naming, references,
//! probing, backends and removal rules.

mod common;

use serde_json::{json, Value};

use block::{create_image, lock, BlockError, BlockGraph, CreateOptions};
use common::*;

fn opts(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn raw_file(d: &std::path::Path, name: &str, len: usize) -> String {
    let f = p(d, name);
    std::fs::write(&f, vec![0u8; len]).unwrap();
    f
}

#[test]
fn nested_file_gets_generated_name_and_goes_with_its_parent() {
    let d = tmpdir("g-nested");
    let img = p(&d, "a.qcow2");
    create_image("qcow2", &img, Some(1 << 20), &CreateOptions::default()).unwrap();
    let mut g = BlockGraph::new();
    let n = g
        .open(&opts(json!({"driver": "qcow2", "node-name": "disk", "file": {"driver": "file", "filename": img}})))
        .unwrap();
    assert_eq!(lock(&n).name(), "disk");
    let f = lock(&n).file().unwrap();
    assert!(lock(&f).name().starts_with("#block"));
    assert_eq!(g.nodes().len(), 2);
    g.remove_node("disk").unwrap();
    assert!(g.nodes().is_empty());
}

#[test]
fn file_referenced_by_name_is_in_use_until_parent_goes() {
    let d = tmpdir("g-ref");
    let img = p(&d, "a.qcow2");
    create_image("qcow2", &img, Some(1 << 20), &CreateOptions::default()).unwrap();
    let mut g = BlockGraph::new();
    g.open(&opts(
        json!({"driver": "file", "node-name": "f0", "filename": img}),
    ))
    .unwrap();
    g.open(&opts(
        json!({"driver": "qcow2", "node-name": "q0", "file": "f0"}),
    ))
    .unwrap();
    let e = g.remove_node("f0").unwrap_err();
    assert!(matches!(e, BlockError::InUse(_)), "{}", e);
    g.add_backend("drive0", g.find_node("q0")).unwrap();
    assert!(g.remove_node("q0").is_err());
    g.remove_backend("drive0").unwrap();
    g.remove_node("q0").unwrap();
    g.remove_node("f0").unwrap();
    assert!(matches!(
        g.remove_node("nope"),
        Err(BlockError::NotFound(_))
    ));
}

#[test]
fn dotted_drive_options_and_cache_flags_are_understood() {
    let d = tmpdir("g-dotted");
    let f = raw_file(&d, "r.img", 1 << 20);
    let mut g = BlockGraph::new();
    let n = g
        .open(&opts(
            json!({"driver": "raw", "file.driver": "file", "file.filename": f,
                            "cache.direct": "on", "cache.no-flush": "on", "read-only": "on"}),
        ))
        .unwrap();
    let o = lock(&n).options();
    assert!(o.cache_direct && o.no_flush && o.read_only);
    let e = lock(&n).write(0, &[1], false).unwrap_err();
    assert_eq!(e.errno_value(), libc::EPERM);
    let file = lock(&n).file().unwrap();
    assert!(lock(&file).options().read_only);
}

#[test]
fn duplicate_and_invalid_node_names_are_refused() {
    let d = tmpdir("g-names");
    let f = raw_file(&d, "r.img", 4096);
    let mut g = BlockGraph::new();
    g.open(&opts(
        json!({"driver": "file", "node-name": "x", "filename": f}),
    ))
    .unwrap();
    assert!(g
        .open(&opts(
            json!({"driver": "file", "node-name": "x", "filename": f})
        ))
        .is_err());
    assert!(g
        .open(&opts(
            json!({"driver": "file", "node-name": "1x", "filename": f})
        ))
        .is_err());
    // A failed open leaves nothing behind.
    assert!(g
        .open(&opts(json!({"driver": "qcow2", "node-name": "q", "file": {"driver": "file", "node-name": "inner", "filename": f}})))
        .is_err());
    assert!(g.find_node("inner").is_none());
    assert_eq!(g.nodes().len(), 1);
}

#[test]
fn probed_raw_refuses_writes_that_would_make_it_look_like_qcow2() {
    let d = tmpdir("g-probe");
    let f = raw_file(&d, "r.img", 1 << 20);
    let mut g = BlockGraph::new();
    let n = open(&mut g, &f, None, false);
    assert_eq!(lock(&n).driver_name(), "raw");
    assert!(lock(&n).probed());
    let mut sector = vec![0u8; 512];
    sector[..8].copy_from_slice(b"QFI\xfb\0\0\0\x03");
    let e = lock(&n).write(0, &sector, false).unwrap_err();
    assert_eq!(e.errno_value(), libc::EPERM);
    lock(&n).write(0, &[0x55; 512], false).unwrap();
    lock(&n).write(4, b"QFI\xfb", false).unwrap();
    // An explicit format lifts the restriction.
    let m = open(&mut g, &f, Some("raw"), false);
    lock(&m).write(0, &sector, false).unwrap();
}

#[test]
fn qcow2_is_probed_and_backing_format_is_honoured() {
    let d = tmpdir("g-bfmt");
    // A raw base whose first bytes look like qcow2: only backing_fmt=raw reads it right.
    let base = p(&d, "base.raw");
    let mut b = vec![0x42u8; 1 << 20];
    b[..4].copy_from_slice(b"QFI\xfb");
    std::fs::write(&base, &b).unwrap();
    let top = p(&d, "top.qcow2");
    let o = CreateOptions {
        backing_file: Some("base.raw".into()),
        backing_fmt: Some("raw".into()),
        ..Default::default()
    };
    create_image("qcow2", &top, None, &o).unwrap();
    let mut g = BlockGraph::new();
    let n = open(&mut g, &top, None, false);
    assert_eq!(lock(&n).driver_name(), "qcow2");
    assert_eq!(lock(&n).length().unwrap(), 1 << 20);
    assert_eq!(read_all(&n, 0, 8), b"QFI\xfb\x42\x42\x42\x42");
    let backing = lock(&n).backing().unwrap();
    assert_eq!(lock(&backing).driver_name(), "raw");
    assert!(lock(&backing).is_read_only());
    assert_eq!(
        lock(&n).backing_file(),
        Some(("base.raw".to_string(), Some("raw".to_string())))
    );
}

#[test]
fn backing_option_empty_reference_and_object() {
    let d = tmpdir("g-backing");
    let base = p(&d, "base.qcow2");
    create_image("qcow2", &base, Some(1 << 20), &CreateOptions::default()).unwrap();
    {
        let mut g = BlockGraph::new();
        let n = open(&mut g, &base, Some("qcow2"), false);
        lock(&n).write(0, &[9u8; 512], false).unwrap();
        close(n);
    }
    let top = p(&d, "top.qcow2");
    let o = CreateOptions {
        backing_file: Some(base.clone()),
        ..Default::default()
    };
    create_image("qcow2", &top, None, &o).unwrap();
    let mut g = BlockGraph::new();
    let none = g
        .open(&opts(
            json!({"driver": "qcow2", "backing": "", "file": {"driver": "file", "filename": top}}),
        ))
        .unwrap();
    assert!(lock(&none).backing().is_none());
    assert_eq!(read_all(&none, 0, 1)[0], 0);
    g.open(&opts(
        json!({"driver": "qcow2", "node-name": "b", "file": {"driver": "file", "filename": base}}),
    ))
    .unwrap();
    let by_ref = g
        .open(&opts(
            json!({"driver": "qcow2", "backing": "b", "file": {"driver": "file", "filename": top}}),
        ))
        .unwrap();
    assert_eq!(read_all(&by_ref, 0, 1)[0], 9);
    let nested = g
        .open(&opts(json!({"driver": "qcow2", "backing": {"driver": "qcow2", "file": {"driver": "file", "filename": base}},
                            "file": {"driver": "file", "filename": top}})))
        .unwrap();
    assert_eq!(read_all(&nested, 0, 1)[0], 9);
    let bn = g.find_node("b").unwrap();
    assert!(
        g.set_backing(&bn, Some(by_ref.clone())).is_err(),
        "loop accepted"
    );
    g.set_backing(&bn, Some(nested.clone())).unwrap();
}

#[test]
fn backends_check_bounds_and_media() {
    let d = tmpdir("g-backend");
    let f = raw_file(&d, "r.img", 8192);
    let mut g = BlockGraph::new();
    let n = open(&mut g, &f, Some("raw"), false);
    g.add_backend("drive0", Some(n)).unwrap();
    assert!(g.add_backend("drive0", None).is_err());
    let b = g.backend("drive0").unwrap();
    let e = b.write(8000, &[0u8; 512], false).unwrap_err();
    assert!(matches!(e, BlockError::OutOfBounds { .. }));
    b.write(0, &[1u8; 512], false).unwrap();
    assert!(g.lookup("drive0").is_ok());
    assert!(matches!(g.lookup("zzz"), Err(BlockError::Generic(_))));
    let root = g.backend_mut("drive0").unwrap().remove_medium();
    assert!(root.is_some());
    let b = g.backend("drive0").unwrap();
    assert!(matches!(
        b.read(0, &mut [0u8; 1]),
        Err(BlockError::NoMedium(_))
    ));
}

#[test]
fn null_and_raw_window_drivers() {
    let d = tmpdir("g-null");
    let mut g = BlockGraph::new();
    let n = g
        .open(&opts(
            json!({"driver": "null-co", "size": "1M", "read-zeroes": true}),
        ))
        .unwrap();
    assert_eq!(lock(&n).length().unwrap(), 1 << 20);
    let mut b = vec![7u8; 16];
    lock(&n).read(0, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0));
    let f = p(&d, "w.img");
    let content: Vec<u8> = (0..8192u32).map(|i| (i / 512) as u8).collect();
    std::fs::write(&f, &content).unwrap();
    let w = g
        .open(&opts(json!({"driver": "raw", "offset": 1024, "size": 2048, "file": {"driver": "file", "filename": f}})))
        .unwrap();
    assert_eq!(lock(&w).length().unwrap(), 2048);
    assert_eq!(read_all(&w, 0, 1)[0], 2);
    assert!(lock(&w).read(2000, &mut [0u8; 100]).is_err());
}

#[test]
fn detect_zeroes_unmap_turns_zero_writes_into_zero_clusters() {
    let d = tmpdir("g-dz");
    let img = p(&d, "z.qcow2");
    create_image("qcow2", &img, Some(1 << 20), &CreateOptions::default()).unwrap();
    let mut g = BlockGraph::new();
    let n = g
        .open(&opts(
            json!({"driver": "qcow2", "discard": "unmap", "detect-zeroes": "unmap",
                            "file": {"driver": "file", "filename": img}}),
        ))
        .unwrap();
    lock(&n).write(0, &[1u8; 65536], false).unwrap();
    assert!(lock(&n).block_status(0, 65536).unwrap().data);
    lock(&n).write(0, &[0u8; 65536], false).unwrap();
    let e = lock(&n).block_status(0, 65536).unwrap();
    assert!(e.zero && !e.data, "{:?}", e);
    assert!(g
        .open(&opts(json!({"driver": "qcow2", "detect-zeroes": "unmap",
                            "file": {"driver": "file", "filename": img}})))
        .is_err());
}

#[test]
fn fdset_names_use_the_installed_opener() {
    let d = tmpdir("g-fdset");
    let f = raw_file(&d, "r.img", 4096);
    let mut g = BlockGraph::new();
    g.set_fdset_opener(Box::new(move |name: &str, _flags: i32| {
        if name != "/dev/fdset/3" {
            return Err(BlockError::NotFound(name.into()));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&f)
            .unwrap();
        Ok(std::os::fd::OwnedFd::from(file).into())
    }));
    let n = g
        .open(&opts(json!({"driver": "file", "filename": "/dev/fdset/3"})))
        .unwrap();
    assert_eq!(lock(&n).length().unwrap(), 4096);
    assert!(g
        .open(&opts(json!({"driver": "file", "filename": "/dev/fdset/4"})))
        .is_err());
}

#[test]
fn deep_backing_chain_reads_through_every_layer() {
    let d = tmpdir("g-deep");
    let depth = 64;
    create_image(
        "qcow2",
        &p(&d, "l0.qcow2"),
        Some(1 << 20),
        &CreateOptions::default(),
    )
    .unwrap();
    for i in 1..depth {
        let o = CreateOptions {
            backing_file: Some(format!("l{}.qcow2", i - 1)),
            backing_fmt: Some("qcow2".into()),
            ..Default::default()
        };
        create_image("qcow2", &p(&d, &format!("l{}.qcow2", i)), None, &o).unwrap();
    }
    {
        let mut g = BlockGraph::new();
        let n = open(&mut g, &p(&d, "l0.qcow2"), Some("qcow2"), false);
        lock(&n).write(4096, b"bottom", false).unwrap();
        close(n);
    }
    let mut g = BlockGraph::new();
    let top = open(
        &mut g,
        &p(&d, &format!("l{}.qcow2", depth - 1)),
        None,
        false,
    );
    assert_eq!(read_all(&top, 4096, 6), b"bottom");
    let (_, layer) = lock(&top).block_status_chain(4096, 512).unwrap();
    assert_eq!(layer, depth - 1);
    assert_eq!(g.nodes().len(), depth as usize * 2);
}

#[test]
fn format_node_is_created_after_its_file_and_before_its_backing() {
    let d = tmpdir("g-order");
    let base = p(&d, "base.qcow2");
    let top = p(&d, "top.qcow2");
    create_image("qcow2", &base, Some(1 << 20), &CreateOptions::default()).unwrap();
    let o = CreateOptions {
        backing_file: Some(base.clone()),
        backing_fmt: Some("qcow2".into()),
        ..CreateOptions::default()
    };
    create_image("qcow2", &top, Some(1 << 20), &o).unwrap();
    let mut g = BlockGraph::new();
    g.open(&opts(json!({"driver": "qcow2", "node-name": "top",
        "backing": {"node-name": "base"},
        "file": {"driver": "file", "filename": top}})))
        .unwrap();
    let order: Vec<(String, String)> = g
        .nodes()
        .iter()
        .map(|n| {
            let n = lock(n);
            (n.driver_name().to_string(), n.filename().to_string())
        })
        .collect();
    assert_eq!(
        order,
        vec![
            ("file".to_string(), top.clone()),
            ("qcow2".to_string(), top.clone()),
            ("file".to_string(), base.clone()),
            ("qcow2".to_string(), base.clone()),
        ]
    );
    // Options without a file of their own apply to the header's backing file.
    let b = g.find_node("base").unwrap();
    assert_eq!(lock(&b).filename(), base);
    assert_eq!(
        lock(&g.find_node("top").unwrap()).backing_blocker(),
        Some("top")
    );
}

/// QEMU opens `file` (and blkdebug's `image`) children as protocol nodes:
/// without a driver the protocol comes from the file name, and the content
/// is not probed (a qcow2 file is not opened as a qcow2 node below qcow2).
#[test]
fn file_children_without_a_driver_are_protocol_nodes() {
    let d = tmpdir("g-proto-child");
    let img = p(&d, "a.qcow2");
    create_image("qcow2", &img, Some(1 << 20), &CreateOptions::default()).unwrap();
    let mut g = BlockGraph::new();

    let q = g
        .open(&opts(json!({"driver": "qcow2", "file": {"filename": img}})))
        .unwrap();
    let dbg = g
        .open(&opts(json!({"driver": "qcow2",
            "file": {"driver": "blkdebug", "image": {"filename": img}}})))
        .unwrap();

    let file = lock(&q).file().unwrap();
    assert_eq!(lock(&file).driver_name(), "file");
    let blkdebug = lock(&dbg).file().unwrap();
    let image = lock(&blkdebug).file().unwrap();
    assert_eq!(lock(&image).driver_name(), "file");
    g.close_all();
}
