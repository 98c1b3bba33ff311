//! Corrupt images give an error or a corruption event, never a panic, a hang
//! or a write outside the image.

mod common;

use std::os::unix::fs::FileExt;

use block::{create_image, lock, BlockError, BlockEvent, BlockGraph, CreateOptions};
use common::*;

const CS: u64 = 65536;

/// A 4 MiB v3 image with data in its first 128 KiB: header at 0, reftable at
/// 64k, refblock at 128k, L1 at 192k, L2 at 256k, data from 320k.
fn sample(d: &std::path::Path) -> String {
    let img = p(d, "c.qcow2");
    create_image("qcow2", &img, Some(4 << 20), &CreateOptions::default()).unwrap();
    let mut g = BlockGraph::new();
    let n = open(&mut g, &img, Some("qcow2"), false);
    lock(&n).write(0, &pattern(1, 131072), false).unwrap();
    close(n);
    img
}

fn be64(f: &std::fs::File, off: u64) -> u64 {
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, off).unwrap();
    u64::from_be_bytes(b)
}

fn put64(path: &str, off: u64, v: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&v.to_be_bytes(), off).unwrap();
}

fn l1_offset(path: &str) -> u64 {
    be64(&std::fs::File::open(path).unwrap(), 40)
}

fn first_l2(path: &str) -> u64 {
    let f = std::fs::File::open(path).unwrap();
    be64(&f, be64(&f, 40)) & 0x00ff_ffff_ffff_fe00
}

fn corrupted_events(g: &BlockGraph) -> Vec<block::ImageCorrupted> {
    g.take_events()
        .into_iter()
        .filter_map(|e| match e {
            BlockEvent::ImageCorrupted(c) => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn l1_entry_pointing_into_refcount_table_reports_corruption() {
    let d = tmpdir("c-l1meta");
    let img = sample(&d);
    let l1 = l1_offset(&img);
    put64(&img, l1, CS | (1 << 63));
    let mut g = BlockGraph::new();
    let n = open(&mut g, &img, Some("qcow2"), false);
    let mut b = vec![0u8; 512];
    let r = lock(&n).read(0, &mut b);
    assert!(matches!(r, Err(BlockError::Corrupt(_))), "{:?}", r);
    let ev = corrupted_events(&g);
    assert_eq!(ev.len(), 1);
    assert!(ev[0].fatal);
    assert!(lock(&n).is_read_only());
    assert!(lock(&n).write(0, &[1], false).is_err());
    // Unusable from then on, as QEMU drops the driver: no medium.
    assert!(lock(&n).is_corrupt());
    let r = lock(&n).read(65536, &mut b);
    assert!(matches!(r, Err(BlockError::NoMedium(_))), "{:?}", r);
    drop(g);
    if have_qemu_img() {
        let info = qemu_img(&["info", &img]);
        assert!(info.contains("corrupt: true"), "{}", info);
    }
}

#[test]
fn l1_entry_past_eof_reports_corruption() {
    let d = tmpdir("c-l1eof");
    let img = sample(&d);
    put64(&img, l1_offset(&img), (1 << 40) | (1 << 63));
    let len_before = std::fs::metadata(&img).unwrap().len();
    let mut g = BlockGraph::new();
    let n = open(&mut g, &img, Some("qcow2"), false);
    assert!(lock(&n).write(0, &[1u8; 4096], false).is_err());
    assert_eq!(corrupted_events(&g).len(), 1);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), len_before);
}

#[test]
fn l2_entry_pointing_into_header_never_overwrites_it() {
    let d = tmpdir("c-l2hdr");
    let img = sample(&d);
    let before = std::fs::read(&img).unwrap()[..104].to_vec();
    let l2 = first_l2(&img);
    // Data cluster 0 "lives" in the header cluster... and cluster 1 in the L1 table.
    put64(&img, l2, (CS * 3) | (1 << 63));
    let mut g = BlockGraph::new();
    let n = open(&mut g, &img, Some("qcow2"), false);
    let r = lock(&n).write(0, &[0xffu8; 512], false);
    assert!(matches!(r, Err(BlockError::Corrupt(_))), "{:?}", r);
    let ev = corrupted_events(&g);
    assert!(
        ev[0].msg.contains("Preventing invalid write on metadata"),
        "{:?}",
        ev
    );
    let after = std::fs::read(&img).unwrap();
    let l1 = l1_offset(&img) as usize;
    assert_eq!(
        be64(&std::fs::File::open(&img).unwrap(), l1 as u64) & !(1 << 63),
        l2
    );
    // Only the corrupt bit changed in the header.
    assert_eq!(after[..72], before[..72]);
    assert_eq!(after[72..80], 2u64.to_be_bytes());
}

#[test]
fn unaligned_l2_entry_reports_corruption_on_read() {
    let d = tmpdir("c-l2unal");
    let img = sample(&d);
    let l2 = first_l2(&img);
    put64(&img, l2 + 8, (CS * 5 + 512) | (1 << 63));
    let mut g = BlockGraph::new();
    let n = open(&mut g, &img, Some("qcow2"), true);
    let mut b = vec![0u8; 4096];
    assert!(lock(&n).read(CS, &mut b).is_err());
    let ev = corrupted_events(&g);
    assert!(ev[0].msg.contains("unaligned"), "{:?}", ev);
}

#[test]
fn refcount_table_entry_into_header_is_refused() {
    let d = tmpdir("c-reft");
    let img = sample(&d);
    put64(&img, CS, 512);
    let mut g = BlockGraph::new();
    let n = open(&mut g, &img, Some("qcow2"), false);
    let r = lock(&n).write(2 << 20, &[1u8; 4096], false);
    assert!(r.is_err());
    assert_eq!(corrupted_events(&g).len(), 1);
}

#[test]
fn fuzzed_header_fields_fail_to_open_cleanly() {
    let d = tmpdir("c-hdr");
    let img = sample(&d);
    let pristine = std::fs::read(&img).unwrap();
    let cases: &[(usize, &[u8])] = &[
        (4, &[0, 0, 0, 9]),                                     // version
        (20, &[0, 0, 0, 40]),                                   // cluster_bits
        (36, &[0x7f, 0xff, 0xff, 0xff]),                        // l1_size
        (40, &[0xff; 8]),                                       // l1 offset
        (48, &[0, 0, 0, 0, 0, 0, 0, 0]),                        // refcount table offset
        (56, &[0xff, 0xff, 0xff, 0xff]),                        // refcount table clusters
        (60, &[0xff, 0xff, 0xff, 0xff]),                        // nb_snapshots
        (96, &[0, 0, 0, 9]),                                    // refcount order
        (100, &[0xff, 0xff, 0, 0]),                             // header length
        (8, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf0]), // backing offset
        (24, &[0xff; 8]),                                       // size
        (72, &[0, 0, 0, 0, 0, 0, 0, 0x80]),                     // unknown incompatible feature
    ];
    for (off, bytes) in cases {
        let mut b = pristine.clone();
        b[*off..*off + bytes.len()].copy_from_slice(bytes);
        std::fs::write(&img, &b).unwrap();
        let mut g = BlockGraph::new();
        let r = g.open_image(&img, Some("qcow2"), false);
        assert!(r.is_err(), "field at {} accepted", off);
    }
}

#[test]
fn backing_file_loops_are_detected() {
    let d = tmpdir("c-loop");
    let a = p(&d, "a.qcow2");
    let b = p(&d, "b.qcow2");
    let o = |bf: &str| CreateOptions {
        backing_file: Some(bf.into()),
        backing_fmt: Some("qcow2".into()),
        ..Default::default()
    };
    create_image("qcow2", &b, Some(1 << 20), &CreateOptions::default()).unwrap();
    create_image("qcow2", &a, Some(1 << 20), &o("b.qcow2")).unwrap();
    {
        let mut g = BlockGraph::new();
        let n = open(&mut g, &b, Some("qcow2"), false);
        lock(&n)
            .change_backing_file(Some("a.qcow2"), Some("qcow2"))
            .unwrap();
        close(n);
    }
    let mut g = BlockGraph::new();
    let e = g.open_image(&a, None, false).err().expect("loop must fail");
    assert!(e.to_string().contains("infinite loop"), "{}", e);
    // A self-referencing image too.
    create_image(
        "qcow2",
        &p(&d, "self.qcow2"),
        Some(1 << 20),
        &o("self.qcow2"),
    )
    .err();
    let s = p(&d, "s.qcow2");
    create_image("qcow2", &s, Some(1 << 20), &CreateOptions::default()).unwrap();
    {
        let mut g = BlockGraph::new();
        let n = open(&mut g, &s, Some("qcow2"), false);
        lock(&n).change_backing_file(Some("s.qcow2"), None).unwrap();
        close(n);
    }
    assert!(BlockGraph::new().open_image(&s, None, true).is_err());
}

#[test]
fn refcount_block_pointing_into_l1_table_reports_corruption() {
    let d = tmpdir("c-rbl1");
    let img = sample(&d);
    let l1 = l1_offset(&img);
    put64(&img, CS, l1);
    let before = std::fs::read(&img).unwrap()[l1 as usize..l1 as usize + 64].to_vec();
    let mut g = BlockGraph::new();
    let n = open(&mut g, &img, Some("qcow2"), false);
    assert!(lock(&n).write(3 << 20, &[1u8; 4096], false).is_err());
    assert_eq!(corrupted_events(&g).len(), 1);
    let after = std::fs::read(&img).unwrap()[l1 as usize..l1 as usize + 64].to_vec();
    assert_eq!(before, after);
}

#[test]
fn l1_table_overlapping_refcount_table_fails_to_open() {
    let d = tmpdir("c-l1reft");
    let img = sample(&d);
    put64(&img, 40, CS);
    let e = BlockGraph::new()
        .open_image(&img, Some("qcow2"), false)
        .err()
        .unwrap();
    assert!(e.to_string().contains("overlaps"), "{}", e);
}
