//! Random operation sequences checked against a plain in-memory model, with
//! `qemu-img check` and `qemu-img compare` as the final word.

mod common;

use std::collections::HashMap;

use block::{create_image, lock, BlockGraph, CreateOptions, SnapshotInfo};
use common::*;

fn run_model(cluster: u64, compat: &str, with_backing: bool, seed: u64) {
    if !have_qemu_img() {
        return;
    }
    let d = tmpdir(&format!(
        "model-{}-{}-{}-{}",
        cluster, compat, with_backing, seed
    ));
    let size: u64 = 1 << 20;
    let img = p(&d, "m.qcow2");
    let mut model = vec![0u8; size as usize];
    let mut opts = CreateOptions {
        cluster_size: Some(cluster),
        compat: Some(compat.into()),
        lazy_refcounts: compat == "1.1" && seed.is_multiple_of(3),
        ..Default::default()
    };
    if with_backing {
        let base = p(&d, "base.raw");
        model = pattern(seed ^ 0xbeef, size as usize);
        std::fs::write(&base, &model).unwrap();
        opts.backing_file = Some("base.raw".into());
        opts.backing_fmt = Some("raw".into());
    }
    create_image("qcow2", &img, Some(size), &opts).unwrap();
    let mut g = BlockGraph::new();
    let mut o = serde_json::Map::new();
    o.insert("driver".into(), "qcow2".into());
    o.insert("discard".into(), "unmap".into());
    o.insert("cache".into(), serde_json::json!({"no-flush": true}));
    // Tiny caches make every path through eviction run.
    if seed.is_multiple_of(2) {
        o.insert("l2-cache-size".into(), (2 * cluster).into());
        o.insert("refcount-cache-size".into(), (4 * cluster).into());
    }
    o.insert(
        "file".into(),
        serde_json::json!({"driver": "file", "filename": img}),
    );
    let n = g.open(&o).unwrap();
    let mut rng = Rng(seed | 1);
    let mut snaps: HashMap<String, Vec<u8>> = HashMap::new();
    let v3 = compat == "1.1";
    let verify_each = std::env::var("MODEL_VERIFY").is_ok();
    let mut last_op = String::new();
    for step in 0..(std::env::var("MODEL_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300u64))
    {
        let off = rng.below(size);
        let len = (1 + rng.below(3 * cluster)).min(size - off);
        match rng.below(100) {
            0..=49 => {
                let data = pattern(rng.next(), len as usize);
                last_op = format!("write {} {}", off, len);
                lock(&n).write(off, &data, false).unwrap();
                model[off as usize..(off + len) as usize].copy_from_slice(&data);
            }
            50..=64 => {
                let unmap = rng.below(2) == 0;
                last_op = format!("zero {} {} unmap={}", off, len, unmap);
                lock(&n).write_zeroes(off, len, unmap).unwrap();
                model[off as usize..(off + len) as usize].fill(0);
            }
            65..=74 => {
                last_op = format!("discard {} {}", off, len);
                lock(&n).discard(off, len).unwrap();
                // Discard only affects whole clusters; v3 makes them read as
                // zero, v2 lets the backing file show through again.
                let start = off.next_multiple_of(cluster);
                let end = if off + len == size {
                    size
                } else {
                    (off + len) / cluster * cluster
                };
                if start < end {
                    let (s, e) = (start as usize, end as usize);
                    if v3 || !with_backing {
                        model[s..e].fill(0);
                    } else {
                        let base = std::fs::read(p(&d, "base.raw")).unwrap();
                        model[s..e].copy_from_slice(&base[s..e]);
                    }
                }
            }
            75..=82 => {
                let c = rng.below(size / cluster) * cluster;
                let mut data = vec![0u8; cluster as usize];
                for (i, b) in data.iter_mut().enumerate() {
                    *b = (i as u64 / 97 + step) as u8;
                }
                last_op = format!("compressed {}", c);
                let r = lock(&n).write_compressed(c, &data);
                if r.is_ok() {
                    model[c as usize..(c + cluster) as usize].copy_from_slice(&data);
                }
            }
            83..=88 if snaps.len() < 4 => {
                let name = format!("s{}", step);
                lock(&n)
                    .snapshot_create(&SnapshotInfo {
                        name: name.clone(),
                        ..Default::default()
                    })
                    .unwrap();
                last_op = format!("snapshot {}", name);
                snaps.insert(name, model.clone());
            }
            89..=93 if !snaps.is_empty() => {
                let mut names: Vec<_> = snaps.keys().cloned().collect();
                names.sort();
                let name = names[rng.below(names.len() as u64) as usize].clone();
                last_op = format!("goto {}", name);
                lock(&n).snapshot_goto(&name).unwrap();
                model = snaps[&name].clone();
            }
            94..=97 if !snaps.is_empty() => {
                let mut names: Vec<_> = snaps.keys().cloned().collect();
                names.sort();
                let name = names[rng.below(names.len() as u64) as usize].clone();
                last_op = format!("delete {}", name);
                lock(&n).snapshot_delete(None, Some(&name)).unwrap();
                snaps.remove(&name);
            }
            _ if false => {}
            _ => {
                let mut b = vec![0u8; len as usize];
                lock(&n).read(off, &mut b).unwrap();
                assert!(
                    b == model[off as usize..(off + len) as usize],
                    "step {} read differs",
                    step
                );
            }
        }
        if verify_each {
            let all = read_all(&n, 0, size as usize);
            if let Some(i) = all.iter().zip(model.iter()).position(|(a, b)| a != b) {
                panic!(
                    "cs={} {} backing={} seed={} step {} after `{}`: first difference at {} (got {}, want {})",
                    cluster, compat, with_backing, seed, step, last_op, i, all[i], model[i]
                );
            }
        }
    }
    assert!(
        read_all(&n, 0, size as usize) == model,
        "final content differs"
    );
    close(n);
    drop(g);
    let exp = p(&d, "exp.raw");
    std::fs::write(&exp, &model).unwrap();
    assert_check_clean(&img);
    assert_same_content(&img, "qcow2", &exp);
}

#[test]
fn random_ops_many_seeds() {
    let seeds: u64 = std::env::var("MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    for seed in 100..100 + seeds {
        for (cs, compat, backing) in [
            (512, "1.1", true),
            (4096, "0.10", false),
            (2048, "1.1", false),
        ] {
            run_model(cs, compat, backing, seed);
        }
    }
}

#[test]
fn random_ops_v3_512() {
    run_model(512, "1.1", false, 1);
}
#[test]
fn random_ops_v3_4k_backing() {
    run_model(4096, "1.1", true, 2);
}
#[test]
fn random_ops_v2_4k_backing() {
    run_model(4096, "0.10", true, 3);
}
#[test]
fn random_ops_v2_64k() {
    run_model(65536, "0.10", false, 4);
}
#[test]
fn random_ops_v3_64k_backing() {
    run_model(65536, "1.1", true, 5);
}
