//! Images made by qemu-img/qemu-io read back byte-exact; our changes to them
//! pass `qemu-img check` and land where `qemu-img map` says.

mod common;

use block::{lock, BlockGraph, SnapshotInfo};
use common::*;

/// qemu-img's view of an image's content, as a raw file.
fn oracle_raw(img: &str, out: &str) -> Vec<u8> {
    qemu_img(&["convert", "-O", "raw", img, out]);
    std::fs::read(out).unwrap()
}

fn read_matches_qemu(cluster: u64, compat: &str) {
    if !have_qemu_img() {
        return;
    }
    let d = tmpdir(&format!("r-{}-{}", cluster, compat));
    let img = p(&d, "q.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &format!("compat={},cluster_size={}", compat, cluster),
        &img,
        "4M",
    ]);
    qemu_io("qcow2", &img, "write -P 0xab 0 64k");
    qemu_io("qcow2", &img, "write -P 0xcd 1049088 100k");
    qemu_io("qcow2", &img, "write -P 0x11 2M 256k");
    qemu_io("qcow2", &img, "write -z 2M 128k");
    qemu_io("qcow2", &img, "write -P 0x22 4190000 4304");
    let expected = oracle_raw(&img, &p(&d, "exp.raw"));
    let mut g = BlockGraph::new();
    let n = open(&mut g, &img, None, false);
    assert_eq!(lock(&n).driver_name(), "qcow2");
    assert!(read_all(&n, 0, expected.len()) == expected);
    // Our writes on top of qemu's image.
    let mut expected = expected;
    let data = pattern(9, 300_000);
    lock(&n).write(60_000, &data, false).unwrap();
    expected[60_000..360_000].copy_from_slice(&data);
    lock(&n).write_zeroes(2 << 20, 65536, true).unwrap();
    expected[2 << 20..(2 << 20) + 65536].fill(0);
    assert!(read_all(&n, 0, expected.len()) == expected);
    close(n);
    std::fs::write(p(&d, "exp2.raw"), &expected).unwrap();
    assert_check_clean(&img);
    assert_same_content(&img, "qcow2", &p(&d, "exp2.raw"));
}

#[test]
fn qemu_images_v2_512() {
    read_matches_qemu(512, "0.10");
}
#[test]
fn qemu_images_v3_512() {
    read_matches_qemu(512, "1.1");
}
#[test]
fn qemu_images_v2_4k() {
    read_matches_qemu(4096, "0.10");
}
#[test]
fn qemu_images_v3_4k() {
    read_matches_qemu(4096, "1.1");
}
#[test]
fn qemu_images_v2_64k() {
    read_matches_qemu(65536, "0.10");
}
#[test]
fn qemu_images_v3_64k() {
    read_matches_qemu(65536, "1.1");
}
#[test]
fn qemu_images_v3_2m() {
    read_matches_qemu(2 << 20, "1.1");
}
#[test]
fn qemu_images_v2_2m() {
    read_matches_qemu(2 << 20, "0.10");
}

#[test]
fn three_deep_backing_chain_with_relative_names_reads_exact() {
    if !have_qemu_img() {
        return;
    }
    let d = tmpdir("chain");
    let base = p(&d, "base.raw");
    let mid = p(&d, "mid.qcow2");
    let top = p(&d, "top.qcow2");
    qemu_img(&["create", "-q", "-f", "raw", &base, "4M"]);
    qemu_io("raw", &base, "write -P 0x01 0 4M");
    qemu_img(&[
        "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", &mid,
    ]);
    qemu_io("qcow2", &mid, "write -P 0x02 64k 1M");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=4096",
        "-b",
        "mid.qcow2",
        "-F",
        "qcow2",
        &top,
    ]);
    qemu_io("qcow2", &top, "write -P 0x03 1000k 8k");
    qemu_io("qcow2", &top, "write -z 3M 64k");
    let expected = oracle_raw(&top, &p(&d, "exp.raw"));
    let mut g = BlockGraph::new();
    let n = open(&mut g, &top, None, false);
    assert!(read_all(&n, 0, expected.len()) == expected);
    let (ext, depth) = lock(&n).block_status_chain(0, 4 << 20).unwrap();
    assert_eq!(depth, 2, "{:?}", ext);
    // Copy-on-write from the backing chain into the top image.
    let mut expected = expected;
    lock(&n).write(1000 * 1024 + 100, b"xyz", false).unwrap();
    expected[1000 * 1024 + 100..1000 * 1024 + 103].copy_from_slice(b"xyz");
    lock(&n).write(70_000, b"abc", false).unwrap();
    expected[70_000..70_003].copy_from_slice(b"abc");
    close(n);
    drop(g);
    assert_check_clean(&top);
    assert_check_clean(&mid);
    let now = oracle_raw(&top, &p(&d, "now.raw"));
    assert!(now == expected);
}

#[test]
fn compressed_image_from_qemu_img_convert_reads_exact() {
    if !have_qemu_img() {
        return;
    }
    let d = tmpdir("comp");
    let src = p(&d, "src.raw");
    let mut data = vec![0u8; 3 << 20];
    for (i, b) in data.iter_mut().enumerate().take(1 << 20) {
        *b = (i / 100) as u8;
    }
    data[(1 << 20)..(2 << 20)].copy_from_slice(&pattern(7, 1 << 20));
    data[(2 << 20) + 5..(2 << 20) + 9].copy_from_slice(b"abcd");
    std::fs::write(&src, &data).unwrap();
    let img = p(&d, "c.qcow2");
    qemu_img(&["convert", "-q", "-c", "-O", "qcow2", &src, &img]);
    let mut g = BlockGraph::new();
    let n = open(&mut g, &img, Some("qcow2"), false);
    assert!(read_all(&n, 0, data.len()) == data);
    // Overwriting part of a compressed cluster reallocates it.
    lock(&n).write(100, b"hello", false).unwrap();
    data[100..105].copy_from_slice(b"hello");
    close(n);
    std::fs::write(&src, &data).unwrap();
    assert_check_clean(&img);
    assert_same_content(&img, "qcow2", &src);
}

#[test]
fn our_compressed_writes_pass_check() {
    our_compressed_writes(16);
}

#[test]
fn our_compressed_writes_pass_check_with_1bit_refcounts() {
    our_compressed_writes(1);
}

fn our_compressed_writes(refcount_bits: u32) {
    if !have_qemu_img() {
        return;
    }
    let d = tmpdir(&format!("ourcomp{}", refcount_bits));
    let img = p(&d, "c.qcow2");
    let exp = p(&d, "e.raw");
    let o = block::CreateOptions {
        refcount_bits: Some(refcount_bits),
        ..Default::default()
    };
    block::create_image("qcow2", &img, Some(1 << 20), &o).unwrap();
    let mut g = BlockGraph::new();
    let n = open(&mut g, &img, Some("qcow2"), false);
    let mut data = vec![0u8; 1 << 20];
    for k in 0..8usize {
        let mut cl = vec![0u8; 65536];
        for (i, b) in cl.iter_mut().enumerate() {
            *b = ((i * (k + 1)) / 300) as u8;
        }
        if k == 3 {
            cl = pattern(3, 65536);
        }
        lock(&n).write_compressed(k as u64 * 65536, &cl).unwrap();
        data[k * 65536..(k + 1) * 65536].copy_from_slice(&cl);
    }
    assert!(read_all(&n, 0, data.len()) == data);
    close(n);
    std::fs::write(&exp, &data).unwrap();
    assert_check_clean(&img);
    assert_same_content(&img, "qcow2", &exp);
    let info = qemu_img(&["check", &img]);
    assert!(info.contains("compressed clusters"), "{}", info);
}

#[test]
fn qemu_snapshots_list_and_apply() {
    if !have_qemu_img() {
        return;
    }
    let d = tmpdir("snap");
    let img = p(&d, "s.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &img, "2M"]);
    qemu_io("qcow2", &img, "write -P 0xaa 0 1M");
    qemu_img(&["snapshot", "-c", "first", &img]);
    qemu_io("qcow2", &img, "write -P 0xbb 512k 1M");
    let mut g = BlockGraph::new();
    let n = open(&mut g, &img, Some("qcow2"), false);
    let list = lock(&n).snapshot_list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].id.as_str(), list[0].name.as_str()), ("1", "first"));
    assert_eq!(read_all(&n, 600 << 10, 1)[0], 0xbb);
    lock(&n).snapshot_goto("first").unwrap();
    assert_eq!(read_all(&n, 600 << 10, 1)[0], 0xaa);
    assert_eq!(read_all(&n, 1536 << 10, 1)[0], 0);
    let info = SnapshotInfo {
        name: "second".into(),
        date_sec: 1000,
        ..Default::default()
    };
    let made = lock(&n).snapshot_create(&info).unwrap();
    assert_eq!(made.id, "2");
    lock(&n).write(0, &[0xcc; 4096], false).unwrap();
    lock(&n).snapshot_delete(None, Some("first")).unwrap();
    close(n);
    assert_check_clean(&img);
    let l = qemu_img(&["snapshot", "-l", &img]);
    assert!(l.contains("second") && !l.contains("first"), "{}", l);
    qemu_img(&[
        "convert",
        "-l",
        "snapshot.name=second",
        "-O",
        "raw",
        &img,
        &p(&d, "s2.raw"),
    ]);
    let s2 = std::fs::read(p(&d, "s2.raw")).unwrap();
    assert_eq!(s2[600 << 10], 0xaa);
    assert_eq!(s2[0], 0xaa);
}

#[test]
fn our_writes_land_where_qemu_img_map_says() {
    if !have_qemu_img() {
        return;
    }
    let d = tmpdir("map");
    let img = p(&d, "m.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &img, "4M"]);
    qemu_io("qcow2", &img, "write -P 1 1M 64k");
    let mut g = BlockGraph::new();
    let n = open(&mut g, &img, Some("qcow2"), false);
    lock(&n).write(3 << 20, &[7u8; 65536], false).unwrap();
    let mut ours = Vec::new();
    let mut off = 0u64;
    while off < 4 << 20 {
        let e = lock(&n).block_status(off, (4 << 20) - off).unwrap();
        if e.data {
            ours.push((off, e.len, e.offset.unwrap()));
        }
        off += e.len;
    }
    close(n);
    let out = qemu_img(&["map", "--output=json", &img]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let theirs: Vec<(u64, u64, u64)> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"].as_bool() == Some(true))
        .map(|e| {
            (
                e["start"].as_u64().unwrap(),
                e["length"].as_u64().unwrap(),
                e["offset"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ours, theirs);
    let (ok, io) = run("qemu-io", &["-f", "qcow2", "-c", "read -P 7 3M 64k", &img]);
    assert!(ok && !io.contains("fail"), "{}", io);
}

#[test]
fn discard_and_zero_writes_pass_check_v2_and_v3() {
    if !have_qemu_img() {
        return;
    }
    for compat in ["0.10", "1.1"] {
        let d = tmpdir(&format!("disc-{}", compat));
        let img = p(&d, "d.qcow2");
        let exp = p(&d, "e.raw");
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            &format!("compat={}", compat),
            &img,
            "2M",
        ]);
        let mut g = BlockGraph::new();
        let mut o = serde_json::Map::new();
        o.insert("driver".into(), "qcow2".into());
        o.insert("discard".into(), "unmap".into());
        o.insert(
            "file".into(),
            serde_json::json!({"driver": "file", "filename": img}),
        );
        let n = g.open(&o).unwrap();
        let mut data = pattern(5, 2 << 20);
        lock(&n).write(0, &data, false).unwrap();
        lock(&n).discard(65536, 3 * 65536).unwrap();
        data[65536..4 * 65536].fill(0);
        lock(&n).write_zeroes(300_000, 400_000, false).unwrap();
        data[300_000..700_000].fill(0);
        lock(&n).write_zeroes(1 << 20, 5000, true).unwrap();
        data[1 << 20..(1 << 20) + 5000].fill(0);
        assert!(read_all(&n, 0, data.len()) == data);
        close(n);
        std::fs::write(&exp, &data).unwrap();
        assert_check_clean(&img);
        assert_same_content(&img, "qcow2", &exp);
    }
}

#[test]
fn grow_through_l1_and_refcount_table_growth_passes_check() {
    if !have_qemu_img() {
        return;
    }
    let d = tmpdir("grow");
    let img = p(&d, "g.qcow2");
    let opts = block::CreateOptions {
        cluster_size: Some(512),
        ..Default::default()
    };
    block::create_image("qcow2", &img, Some(1 << 20), &opts).unwrap();
    let mut g = BlockGraph::new();
    let n = open(&mut g, &img, Some("qcow2"), false);
    lock(&n).truncate(64 << 20).unwrap();
    let data = pattern(11, 12 << 20);
    lock(&n).write(40 << 20, &data, false).unwrap();
    assert!(read_all(&n, 40 << 20, data.len()) == data);
    assert!(lock(&n).truncate(1 << 20).is_err());
    close(n);
    assert_check_clean(&img);
    let info = qemu_img(&["info", &img]);
    assert!(info.contains("64 MiB"), "{}", info);
}

#[test]
fn lazy_refcounts_image_left_dirty_is_repaired_on_open() {
    if !have_qemu_img() {
        return;
    }
    let d = tmpdir("lazy");
    let img = p(&d, "l.qcow2");
    let opts = block::CreateOptions {
        lazy_refcounts: true,
        cluster_size: Some(4096),
        ..Default::default()
    };
    block::create_image("qcow2", &img, Some(4 << 20), &opts).unwrap();
    let data = pattern(12, 1 << 20);
    {
        let mut g = BlockGraph::new();
        let n = open(&mut g, &img, Some("qcow2"), false);
        lock(&n).write(0, &data, false).unwrap();
        lock(&n).flush().unwrap();
        lock(&n).write(2 << 20, &data, false).unwrap();
        // Dropped without close: the dirty bit stays set, as after a crash.
    }
    let info = qemu_img(&["info", "--force-share", &img]);
    assert!(info.contains("lazy refcounts: true"), "{}", info);
    {
        let mut g = BlockGraph::new();
        let n = open(&mut g, &img, Some("qcow2"), false);
        assert!(read_all(&n, 0, data.len()) == data);
        close(n);
    }
    assert_check_clean(&img);
}

#[test]
fn qcow2_over_o_direct_passes_check() {
    if !have_qemu_img() {
        return;
    }
    let d = tmpdir("direct");
    let img = p(&d, "d.qcow2");
    let exp = p(&d, "e.raw");
    block::create_image("qcow2", &img, Some(2 << 20), &Default::default()).unwrap();
    let mut g = BlockGraph::new();
    let mut o = serde_json::Map::new();
    o.insert("driver".into(), "qcow2".into());
    o.insert("cache".into(), serde_json::json!({"direct": true}));
    o.insert(
        "file".into(),
        serde_json::json!({"driver": "file", "filename": img}),
    );
    let Ok(n) = g.open(&o) else {
        return; // file system without O_DIRECT
    };
    let mut data = vec![0u8; 2 << 20];
    let w = pattern(3, 100_000);
    lock(&n).write(12_345, &w, false).unwrap();
    data[12_345..112_345].copy_from_slice(&w);
    assert!(read_all(&n, 0, data.len()) == data);
    close(n);
    std::fs::write(&exp, &data).unwrap();
    assert_check_clean(&img);
    assert_same_content(&img, "qcow2", &exp);
}

#[test]
fn image_info_matches_qemu_img_info() {
    if !have_qemu_img() {
        return;
    }
    let d = tmpdir("info");
    let base = p(&d, "b.qcow2");
    let top = p(&d, "t.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "compat=0.10,cluster_size=4096",
        &base,
        "1M",
    ]);
    qemu_img(&["snapshot", "-c", "snap1", &base]);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "lazy_refcounts=on",
        "-b",
        "b.qcow2",
        "-F",
        "qcow2",
        &top,
    ]);
    let mut g = BlockGraph::new();
    let n = open(&mut g, &top, None, true);
    let info = lock(&n).image_info().to_json();
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual-size"], 1 << 20);
    assert_eq!(info["cluster-size"], 65536);
    assert_eq!(info["backing-filename"], "b.qcow2");
    assert_eq!(info["full-backing-filename"], p(&d, "b.qcow2"));
    assert_eq!(info["backing-filename-format"], "qcow2");
    assert_eq!(info["format-specific"]["data"]["compat"], "1.1");
    assert_eq!(info["format-specific"]["data"]["lazy-refcounts"], true);
    let b = &info["backing-image"];
    assert_eq!(b["cluster-size"], 4096);
    assert_eq!(b["format-specific"]["data"]["compat"], "0.10");
    assert_eq!(b["snapshots"][0]["name"], "snap1");
    assert_eq!(b["snapshots"][0]["id"], "1");
}

#[test]
fn snapshots_over_compressed_clusters_keep_refcounts_right() {
    if !have_qemu_img() {
        return;
    }
    let d = tmpdir("snapcomp");
    let src = p(&d, "src.raw");
    let data: Vec<u8> = (0..(2 << 20)).map(|i: usize| (i / 1000) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let img = p(&d, "c.qcow2");
    qemu_img(&["convert", "-q", "-c", "-O", "qcow2", &src, &img]);
    let mut g = BlockGraph::new();
    let n = open(&mut g, &img, Some("qcow2"), false);
    let s = SnapshotInfo {
        name: "before".into(),
        ..Default::default()
    };
    lock(&n).snapshot_create(&s).unwrap();
    lock(&n).write(70_000, &[1u8; 100_000], false).unwrap();
    lock(&n).discard(1 << 20, 65536).unwrap();
    lock(&n).write_zeroes(1 << 20, 131072, false).unwrap();
    lock(&n)
        .snapshot_create(&SnapshotInfo {
            name: "after".into(),
            ..Default::default()
        })
        .unwrap();
    lock(&n).snapshot_goto("before").unwrap();
    assert!(read_all(&n, 0, data.len()) == data);
    lock(&n).snapshot_delete(None, Some("before")).unwrap();
    lock(&n).snapshot_goto("after").unwrap();
    assert_eq!(read_all(&n, 70_000, 1)[0], 1);
    close(n);
    assert_check_clean(&img);
    let l = qemu_img(&["snapshot", "-l", &img]);
    assert!(l.contains("after") && !l.contains("before"), "{}", l);
}

#[test]
fn zero_writes_on_unallocated_clusters_make_zero_clusters_as_qemu_2_8() {
    if !have_qemu_img() {
        return;
    }
    let d = tmpdir("zero-unalloc");
    let img = p(&d, "z.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &img, "1M"]);
    let mut g = BlockGraph::new();
    let mut o = serde_json::Map::new();
    o.insert("driver".into(), "qcow2".into());
    o.insert(
        "file".into(),
        serde_json::json!({"driver": "file", "filename": img}),
    );
    let n = g.open(&o).unwrap();
    // A whole cluster and a part of one, nothing allocated before (not
    // even an L2 table): both become zero clusters.
    lock(&n).write_zeroes(65536, 65536, true).unwrap();
    lock(&n).write_zeroes(3 * 65536 + 512, 4096, false).unwrap();
    close(n);
    assert_check_clean(&img);
    let (ok, out) = run("qemu-img", &["map", "--output=json", &img]);
    assert!(ok, "{}", out);
    let map: serde_json::Value = serde_json::from_str(&out).unwrap();
    let present: Vec<u64> = map
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["present"] == true)
        .map(|e| {
            assert_eq!(e["zero"], true);
            assert_eq!(e["data"], false);
            e["start"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(present, vec![65536, 3 * 65536]);
}
