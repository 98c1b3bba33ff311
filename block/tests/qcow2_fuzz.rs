//! Flipping random bytes in the metadata of a small image and using it must
//! never panic, hang, or grow the file without bound.

mod common;

use block::{create_image, lock, BlockGraph, CreateOptions, SnapshotInfo};
use common::*;

fn build(path: &str, cluster: u64) {
    let opts = CreateOptions {
        cluster_size: Some(cluster),
        ..Default::default()
    };
    create_image("qcow2", path, Some(1 << 20), &opts).unwrap();
    let mut g = BlockGraph::new();
    let n = open(&mut g, path, Some("qcow2"), false);
    lock(&n).write(0, &pattern(1, 200_000), false).unwrap();
    lock(&n)
        .write_compressed((1 << 20) - cluster, &vec![7u8; cluster as usize])
        .unwrap();
    lock(&n)
        .snapshot_create(&SnapshotInfo {
            name: "s".into(),
            ..Default::default()
        })
        .unwrap();
    lock(&n)
        .write(cluster * 2, &pattern(2, 5000), false)
        .unwrap();
    close(n);
}

fn exercise(path: &str) {
    let mut g = BlockGraph::new();
    // Durability is not under test here; skipping fsync keeps the run fast.
    let mut o = serde_json::Map::new();
    o.insert("driver".into(), "qcow2".into());
    o.insert("cache".into(), serde_json::json!({"no-flush": true}));
    o.insert(
        "file".into(),
        serde_json::json!({"driver": "file", "filename": path}),
    );
    let Ok(n) = g.open(&o) else {
        return;
    };
    let len = lock(&n).length().unwrap_or(0).min(1 << 20);
    let mut buf = vec![0u8; 65536];
    let mut off = 0;
    while off < len {
        let k = (len - off).min(65536) as usize;
        let _ = lock(&n).read(off, &mut buf[..k]);
        off += k as u64;
    }
    let _ = lock(&n).write(4096, &[0x5a; 8192], false);
    let _ = lock(&n).write(len.saturating_sub(100), &[1; 100], false);
    let _ = lock(&n).write_zeroes(0, 65536, true);
    let _ = lock(&n).discard(65536, 131072);
    let _ = lock(&n).snapshot_list();
    let _ = lock(&n).snapshot_create(&SnapshotInfo {
        name: "t".into(),
        ..Default::default()
    });
    let _ = lock(&n).snapshot_goto("s");
    let _ = lock(&n).snapshot_delete(None, Some("s"));
    let _ = lock(&n).block_status(0, len);
    let _ = lock(&n).flush();
    let _ = lock(&n).close();
    let _ = g.take_events();
}

#[test]
fn random_metadata_corruption_never_panics() {
    for &cluster in &[512u64, 4096, 65536] {
        let d = tmpdir(&format!("fuzz-{}", cluster));
        let img = p(&d, "f.qcow2");
        build(&img, cluster);
        let pristine = std::fs::read(&img).unwrap();
        let meta_end = (6 * cluster as usize).min(pristine.len());
        let mut rng = 0x1234_5678_9abc_def1u64 ^ cluster;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..400 {
            let mut b = pristine.clone();
            let flips = 1 + next() % 4;
            for _ in 0..flips {
                let pos = if next() % 2 == 0 {
                    (next() % 112) as usize
                } else {
                    (next() as usize) % meta_end
                };
                b[pos] ^= 1 << (next() % 8);
            }
            std::fs::write(&img, &b).unwrap();
            exercise(&img);
            let len = std::fs::metadata(&img).unwrap().len();
            assert!(len < 64 << 20, "image grew to {}", len);
        }
    }
}
