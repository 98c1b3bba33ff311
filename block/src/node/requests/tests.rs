//! Read-modify-write and tracked requests on a blkdebug node with `align`.

use serde_json::{json, Value};

use super::*;
use crate::drivers::blkdebug::{debug_breakpoint, debug_resume, BlkdebugDebugOps, BlkdebugDriver};
use crate::qemu_io::QemuIo;
use crate::BlockGraph;

const ALIGN: u64 = 4096;

/// raw over blkdebug (`align=4096` plus `extra` options) over a 64 KiB file
/// of 0xaa bytes; returns the graph, the raw node and the blkdebug node.
fn rig(name: &str, extra: Value) -> (BlockGraph, NodeRef, NodeRef, String) {
    let dir = std::env::temp_dir().join(format!("rmw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name).to_string_lossy().into_owned();
    std::fs::write(&path, vec![0xaau8; 0x10000]).unwrap();
    let mut bd = json!({"driver": "blkdebug", "align": ALIGN,
                        "image": {"driver": "file", "filename": path}});
    if let (Some(o), Value::Object(e)) = (bd.as_object_mut(), extra) {
        o.extend(e);
    }
    let mut g = BlockGraph::new();
    let o = json!({"driver": "raw", "file": bd});
    let n = g.open(o.as_object().unwrap()).unwrap();
    let b = lock(&n).file().unwrap();
    (g, n, b, path)
}

/// Runs qemu-io commands, polling the queue after each as HMP does.
fn qemu_io(g: &BlockGraph, n: &NodeRef, cmds: &[&str]) -> String {
    let mut io = QemuIo::new();
    io.set_debug_ops(Box::new(BlkdebugDebugOps));
    io.set_inflight(g.inflight());
    let mut out = String::new();
    for c in cmds {
        if let Err(e) = io.run(Some(n), c, &mut out) {
            out.push_str(&format!("{e}\n"));
        }
        out.push_str(&g.run_inflight());
    }
    out
}

fn read_back(n: &NodeRef, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    lock(n).read(offset, &mut buf).unwrap();
    buf
}

fn tracked(n: &NodeRef) -> usize {
    lock(n).tracked.len()
}

#[test]
fn an_unaligned_synchronous_write_does_its_rmw_in_one_poll() {
    // Arrange
    let (_g, n, b, path) = rig("sync.raw", json!({}));

    // Act
    lock(&n).write(0x1200, &[7u8; 0x400], false).unwrap();

    // Assert
    let back = read_back(&n, 0x1000, 0x1000);
    assert!(back[..0x200].iter().all(|&x| x == 0xaa));
    assert!(back[0x200..0x600].iter().all(|&x| x == 7));
    assert!(back[0x600..].iter().all(|&x| x == 0xaa));
    assert_eq!(tracked(&b), 0);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn nodes_without_alignment_track_nothing() {
    // Arrange
    let (_g, n, _b, path) = rig("plain.raw", json!({}));

    // Act
    let mut op = WriteOp::new(0x200, ReqKind::Write { fua: false });
    let r = lock(&n).poll_write(&mut op, &[1u8; 0x200]);

    // Assert: the raw node (alignment 1) never registered or padded it.
    assert!(matches!(r, Poll::Ready(Ok(()))));
    assert!(op.track.is_none() && op.rmw.is_none());
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_request_does_not_wait_for_one_that_waits_for_it() {
    // Arrange: the first write stops right before its head read, after
    // its first wait; the second, on the same block, waits for it.
    let (_g, _n, b, path) = rig("deadlock.raw", json!({}));
    debug_breakpoint(&b, "pwritev_rmw_head", "A").unwrap();
    let mut first = WriteOp::new(0x200, ReqKind::Write { fua: false });
    let mut second = WriteOp::new(0x400, ReqKind::Write { fua: false });
    let (r1, _) = breakpoint::armed(|| lock(&b).poll_write(&mut first, &[1u8; 0x200]));
    let (r2, _) = breakpoint::armed(|| lock(&b).poll_write(&mut second, &[2u8; 0x200]));
    assert!(matches!((r1, r2), (Poll::Pending, Poll::Pending)));

    // Act: the first waits again before its read; the second overlaps it
    // but waits for it, so the first goes on instead of waiting back.
    debug_resume(&b, "A").unwrap();
    let (r1, _) = breakpoint::armed(|| lock(&b).poll_write(&mut first, &[1u8; 0x200]));
    let (r2, _) = breakpoint::armed(|| lock(&b).poll_write(&mut second, &[2u8; 0x200]));

    // Assert
    assert!(matches!(
        (r1, r2),
        (Poll::Ready(Ok(())), Poll::Ready(Ok(())))
    ));
    let back = read_back(&b, 0, 0x600);
    assert!(back[..0x200].iter().all(|&x| x == 0xaa));
    assert!(back[0x200..0x400].iter().all(|&x| x == 1));
    assert!(back[0x400..].iter().all(|&x| x == 2));
    assert_eq!(tracked(&b), 0);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_synchronous_write_behind_a_stopped_rmw_fails_busy_and_leaves_nothing_behind() {
    // Arrange
    let (g, n, b, path) = rig("busy.raw", json!({}));
    let out = qemu_io(
        &g,
        &n,
        &[
            "break pwritev_rmw_after_head A",
            "aio_write -P 5 0x200 0x200",
        ],
    );
    assert!(!out.contains("wrote"), "{out}");

    // Act
    let busy = lock(&n).write(0x800, &[6u8; 0x200], false);
    let elsewhere = lock(&n).write(0x2200, &[6u8; 0x200], false);

    // Assert
    assert_eq!(busy.unwrap_err().errno_value(), libc::EBUSY);
    assert!(elsewhere.is_ok());
    assert_eq!(tracked(&b), 1, "only the stopped request");
    let out = qemu_io(&g, &n, &["resume A"]);
    assert!(out.contains("wrote 512/512 bytes at offset 512"), "{out}");
    assert_eq!(tracked(&b), 0);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn an_unaligned_write_zeroes_rmws_head_and_tail_around_a_zero_write() {
    // Arrange: states 1..11 follow bdrv_co_do_zero_pwritev's events; any
    // other order stops short of 11.
    let chain = [
        "pwritev_rmw_head",
        "pwritev_rmw_after_head",
        "pwritev",
        "pwritev_done",
        "pwritev_zero",
        "pwritev_done",
        "pwritev_rmw_tail",
        "pwritev_rmw_after_tail",
        "pwritev",
        "pwritev_done",
    ];
    let rules: Vec<Value> = chain
        .iter()
        .enumerate()
        .map(|(i, ev)| json!({"event": ev, "state": i + 1, "new_state": i + 2}))
        .collect();
    let (_g, n, b, path) = rig("zero.raw", json!({"set-state": rules}));

    // Act: head 0x200..0x1000, middle 0x1000..0x2000, tail 0x2000..0x2200.
    lock(&n).write_zeroes(0x200, 0x2000, false).unwrap();

    // Assert
    let back = read_back(&n, 0, 0x3000);
    assert!(back[..0x200].iter().all(|&x| x == 0xaa));
    assert!(back[0x200..0x2200].iter().all(|&x| x == 0));
    assert!(back[0x2200..].iter().all(|&x| x == 0xaa));
    let state = lock(&b).driver_as::<BlkdebugDriver>().unwrap().state();
    assert_eq!(state, 11);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_write_zeroes_inside_one_block_is_a_single_rmw() {
    // Arrange
    let (g, n, b, path) = rig("zero1.raw", json!({}));

    // Act: stopped after its head read, then resumed.
    let out = qemu_io(
        &g,
        &n,
        &[
            "break pwritev_rmw_after_head A",
            "aio_write -z 0x1200 0x400",
        ],
    );
    let stopped = crate::drivers::blkdebug::debug_is_suspended(&b, "A");
    let out = out + &qemu_io(&g, &n, &["resume A", "aio_flush"]);

    // Assert
    assert!(stopped);
    assert!(
        out.contains("wrote 1024/1024 bytes at offset 4608"),
        "{out}"
    );
    let back = read_back(&n, 0x1000, 0x1000);
    assert!(back[..0x200].iter().all(|&x| x == 0xaa));
    assert!(back[0x200..0x600].iter().all(|&x| x == 0));
    assert!(back[0x600..].iter().all(|&x| x == 0xaa));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn an_unaligned_read_reads_whole_blocks_and_copies_its_part() {
    // Arrange: a rule failing I/O on sector 7 (in the first block, outside
    // the range asked for), active from the flush on, shows what range
    // reached blkdebug.
    let (_g, n, _b, path) = rig(
        "read.raw",
        json!({"inject-error": [{"event": "flush_to_disk", "sector": 7, "once": true}]}),
    );
    lock(&n).write(0x800, &[9u8; 0x10], false).unwrap();
    lock(&n).flush().unwrap();

    // Act
    let mut buf = vec![0u8; 0x20];
    let r = lock(&n).read(0x7f8, &mut buf);
    let again = lock(&n).read(0x7f8, &mut buf);

    // Assert: the padded read covered sector 7 and failed once; the retry
    // gets exactly its bytes.
    assert_eq!(r.unwrap_err().errno_value(), libc::EIO);
    again.unwrap();
    assert_eq!(&buf[..8], &[0xaa; 8]);
    assert_eq!(&buf[8..0x18], &[9; 0x10]);
    assert_eq!(&buf[0x18..], &[0xaa; 8]);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_read_overlapping_a_stopped_rmw_waits_and_sees_its_data() {
    // Arrange
    let (g, n, b, path) = rig("readwait.raw", json!({}));
    let out = qemu_io(
        &g,
        &n,
        &[
            "break pwritev_rmw_after_head A",
            "aio_write -P 5 0x200 0x200",
            "aio_read -P 5 0x200 0x200",
            "aio_read -P 170 0x1000 0x200",
        ],
    );
    assert_eq!(out.matches("read 512/512").count(), 1, "{out}");
    let sync = qemu_io(&g, &n, &["read -P 5 0x200 0x200"]);

    // Act
    let resumed = qemu_io(&g, &n, &["resume A"]);

    // Assert: the read elsewhere finished at once, the overlapping one after
    // the write; a synchronous one could not wait.
    assert!(out.contains("read 512/512 bytes at offset 4096"), "{out}");
    assert!(
        sync.contains("read failed: Device or resource busy"),
        "{sync}"
    );
    let wrote = resumed.find("wrote 512/512 bytes at offset 512").unwrap();
    let read = resumed.find("read 512/512 bytes at offset 512").unwrap();
    assert!(wrote < read, "{resumed}");
    assert!(
        !resumed.contains("Pattern verification failed"),
        "{resumed}"
    );
    assert_eq!(tracked(&b), 0);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_failed_rmw_read_ends_the_request_and_frees_its_range() {
    // Arrange: the head read fails once.
    let (_g, n, b, path) = rig(
        "fail.raw",
        json!({"inject-error": [{"event": "pwritev_rmw_head", "once": true}]}),
    );

    // Act
    let failed = lock(&n).write(0x200, &[4u8; 0x200], false);
    let mut op = WriteOp::new(0x400, ReqKind::Write { fua: false });
    let (next, _) = breakpoint::armed(|| lock(&b).poll_write(&mut op, &[4u8; 0x200]));

    // Assert
    assert_eq!(failed.unwrap_err().errno_value(), libc::EIO);
    assert!(matches!(next, Poll::Ready(Ok(()))));
    assert_eq!(tracked(&b), 0);
    std::fs::remove_file(&path).unwrap();
}

/// Reads what a write is about to change, as backup's copy-before-write.
struct ReadsOldData(std::sync::Mutex<Vec<u8>>);

impl crate::node::BeforeWrite for ReadsOldData {
    fn before_write(&self, node: &mut Node, offset: u64, len: u64) -> BlockResult<()> {
        let mut old = vec![0u8; len as usize];
        node.read(offset, &mut old)?;
        if let Ok(mut v) = self.0.lock() {
            *v = old;
        }
        Ok(())
    }
}

#[test]
fn copy_before_write_reads_do_not_wait_for_the_write_that_runs_them() {
    // Arrange: the hook is on the aligned node itself.
    let (_g, _n, b, path) = rig("cbw.raw", json!({}));
    let hook = std::sync::Arc::new(ReadsOldData(std::sync::Mutex::new(Vec::new())));
    lock(&b).set_before_write(Some(hook.clone()));

    // Act
    let r = lock(&b).write(0x200, &[8u8; 0x200], false);

    // Assert
    r.unwrap();
    assert_eq!(*hook.0.lock().unwrap(), vec![0xaa; 0x200]);
    assert_eq!(read_back(&b, 0x200, 0x200), vec![8; 0x200]);
    std::fs::remove_file(&path).unwrap();
}
