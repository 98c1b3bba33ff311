//! Output the reference qemu-io printed in formats QEMU 7 changed: map and
//! alloc in sectors (checked against QEMU 7's byte-based answers on the same
//! image), info, help, usage lines, and the reference's own checks.

mod qemu_io_support;

use block::qemu_io::{run_command, QemuIo, QemuIoError};
use block::BlockGraph;
use qemu_io_support::*;

/// Parses QEMU 7's map line: (bytes, allocated, offset).
fn parse_map7(line: &str) -> Option<(u64, bool, u64)> {
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let first = line.split("(0x").nth(1)?.split(')').next()?;
    let last = line.rsplit("(0x").next()?.split(')').next()?;
    Some((hex(first)?, !line.contains("not allocated"), hex(last)?))
}

/// QEMU 7's map of an image, rewritten in the reference's sector format.
fn reference_map(fmt: &str, path: &str, size: u64) -> String {
    let total = size / 512;
    let mut out = String::new();
    for l in theirs(fmt, path, &["map"]).lines() {
        let Some((bytes, alloc, off)) = parse_map7(l) else {
            continue;
        };
        let num = bytes / 512;
        let nb = total - off / 512;
        out.push_str(&format!(
            "[{:>24}] {:>8}/{:>8} sectors {} at offset {} ({})\n",
            format!(" {}", off),
            format!(" {}", num),
            format!(" {}", nb),
            if alloc {
                "    allocated"
            } else {
                "not allocated"
            },
            block::qemu_io::cvtstr(off as f64),
            u8::from(alloc)
        ));
    }
    out
}

/// QEMU 7's `alloc off bytes` answer, rewritten in sectors.
fn reference_alloc(fmt: &str, path: &str, off: u64, sectors: u64) -> String {
    let cmd = format!("alloc {} {}", off, sectors * 512);
    let l = theirs(fmt, path, &[&cmd]);
    let (counts, rest) = l
        .split_once(" bytes allocated at offset ")
        .expect("alloc line");
    let (a, b) = counts.split_once('/').expect("counts");
    let a: u64 = a.parse().expect("num");
    let b: u64 = b.parse().expect("num");
    format!(
        "{}/{} sectors allocated at offset {}",
        a / 512,
        b / 512,
        rest.trim_end()
    )
}

fn chain(dir: &std::path::Path) -> String {
    let base = create(dir, "base.qcow2", "qcow2", "1M", &[]);
    let _ = theirs("qcow2", &base, &["write -P 1 0 256k"]);
    let top = dir.join("top.qcow2").to_string_lossy().into_owned();
    let st = std::process::Command::new("qemu-img")
        .args([
            "create", "-q", "-f", "qcow2", "-b", &base, "-F", "qcow2", &top,
        ])
        .status()
        .expect("qemu-img");
    assert!(st.success());
    top
}

#[test]
fn map_and_alloc_count_top_layer_sectors_like_the_reference() {
    if !have_tools() {
        return;
    }
    let dir = tmpdir("map-chain");
    let top = chain(&dir);
    let mut g = BlockGraph::new();
    let opts = serde_json::json!({"driver": "qcow2", "discard": "unmap",
        "file": {"driver": "file", "filename": top}});
    let serde_json::Value::Object(m) = opts else {
        unreachable!()
    };
    let node = g.open(&m).expect("open chain");
    let _ = ours(
        &node,
        &["write -P 2 64k 64k", "write -z 512k 64k", "write 700k 512"],
    );
    let mine = ours(&node, &["map"]);
    g.close_all();
    assert_eq!(mine, reference_map("qcow2", &top, 1 << 20));
    for (off, n) in [
        (0, 2048),
        (65536, 256),
        (1 << 20, 1),
        (1000 << 10, 128),
        (700 << 10, 1),
    ] {
        let line = ours(&node, &[&format!("alloc {} {}", off, n)]);
        assert_eq!(line.trim_end(), reference_alloc("qcow2", &top, off, n));
    }
}

#[test]
fn map_of_raw_and_fresh_qcow2_matches_reference_golden_lines() {
    if !have_tools() {
        return;
    }
    let dir = tmpdir("map-golden");
    let raw = create(&dir, "a.raw", "raw", "64k", &[]);
    let q = create(&dir, "a.qcow2", "qcow2", "64k", &[]);
    let mut g = BlockGraph::new();
    let rn = open(&mut g, &raw, "raw");
    let qn = open(&mut g, &q, "qcow2");
    // Golden lines of the reference's iotest 102 shape.
    assert_eq!(
        ours(&rn, &["map"]),
        "[                       0]      128/     128 sectors     allocated at offset 0 bytes (1)\n"
    );
    assert_eq!(
        ours(&qn, &["map"]),
        "[                       0]      128/     128 sectors not allocated at offset 0 bytes (0)\n"
    );
    assert_eq!(
        ours(&qn, &["alloc 0", "alloc 1k 10", "alloc 1 1", "alloc 0 3G"]),
        "0/1 sectors allocated at offset 0 bytes\n\
         0/10 sectors allocated at offset 1 KiB\n\
         offset 1 is not sector aligned\n\
         length argument cannot exceed 2147483647, given 3G\n"
    );
}

#[test]
fn info_prints_format_cluster_vm_state_and_specific_data() {
    if !have_tools() {
        return;
    }
    let dir = tmpdir("info");
    let v3 = create(&dir, "v3.qcow2", "qcow2", "64M", &[]);
    let v2 = create(
        &dir,
        "v2.qcow2",
        "qcow2",
        "600M",
        &["compat=0.10", "cluster_size=4096"],
    );
    let raw = create(&dir, "a.raw", "raw", "1M", &[]);
    let mut g = BlockGraph::new();
    let n3 = open(&mut g, &v3, "qcow2");
    let n2 = open(&mut g, &v2, "qcow2");
    let nr = open(&mut g, &raw, "raw");
    // As iotest 089's golden output shows it.
    assert_eq!(
        ours(&n3, &["info"]),
        "format name: qcow2\ncluster size: 64 KiB\nvm state offset: 512 MiB\n\
         Format specific information:\n    compat: 1.1\n    lazy refcounts: false\n\
         \x20   refcount bits: 16\n    corrupt: false\n"
    );
    assert_eq!(
        ours(&n2, &["info"]),
        "format name: qcow2\ncluster size: 4 KiB\nvm state offset: 600 MiB\n\
         Format specific information:\n    compat: 0.10\n    refcount bits: 16\n"
    );
    assert_eq!(ours(&nr, &["info"]), "format name: raw\n");
    let file = lock_file_child(&nr);
    assert_eq!(
        ours(&file, &["info", "length"]),
        "format name: file\nformat name: file\n1 MiB\n"
    );
}

fn lock_file_child(n: &block::NodeRef) -> block::NodeRef {
    block::lock(n).file().expect("file child")
}

#[test]
fn help_lists_the_reference_commands() {
    let mut g = BlockGraph::new();
    let n = null_node(&mut g);
    let mut out = String::new();
    run_command(&n, "help", &mut out).expect("help");
    let names: Vec<&str> = out
        .lines()
        .take_while(|l| !l.is_empty())
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "abort",
            "aio_flush",
            "aio_read",
            "aio_write",
            "alloc",
            "break",
            "discard",
            "flush",
            "help",
            "info",
            "length",
            "map",
            "read",
            "readv",
            "remove_break",
            "reopen",
            "resume",
            "sigraise",
            "sleep",
            "truncate",
            "wait_break",
            "write",
            "writev"
        ]
    );
    assert!(out.contains("alloc off [sectors] -- checks if a sector is present in the file\n"));
    assert!(out.contains("map  -- prints the allocated areas of a file\n"));
    assert!(out.contains("sleep -- waits for the given value in milliseconds\n"));
    assert!(out.ends_with("\nUse 'help commandname' for extended help.\n"));
}

fn null_node(g: &mut BlockGraph) -> block::NodeRef {
    let opts = serde_json::json!({"driver": "null-co", "size": 1048576});
    let serde_json::Value::Object(m) = opts else {
        unreachable!()
    };
    g.open(&m).expect("null-co")
}

#[test]
fn reference_checks_and_messages() {
    let mut g = BlockGraph::new();
    let n = null_node(&mut g);
    let out = ours(
        &n,
        &[
            "write -z -P 1 0 512",
            "write -c 1 512",
            "write -c 0 100",
            "read -b 1 512",
            "read -b 0 100",
            "read -b 0 512",
            "write -b 0 512",
            "write -bogus 0 1",
            "truncate 2M",
            "sleep x",
            "sleep 1",
            "sigraise 99",
            "break ev tag",
            "remove_break tag",
            "resume tag",
            "wait_break tag",
            "reopen -c bogus",
            "reopen -o lazy-refcounts=on",
            "reopen x",
            "read 0 3G",
            "write -z 0 3G",
            "discard 0 3G",
        ],
    );
    assert_eq!(
        out,
        "-z and -P cannot be specified at the same time\n\
         offset 1 is not sector aligned\n\
         count 100 is not sector aligned\n\
         offset 1 is not sector aligned\n\
         count 100 is not sector aligned\n\
         read failed: Operation not supported\n\
         write failed: Operation not supported\n\
         write: invalid option -- 'o'\n\
         write [-bcCfquz] [-P pattern] off len -- writes a number of bytes at a specified offset\n\
         truncate: Operation not supported\n\
         x is not a valid number\n\
         signal argument '99' is too large to be a valid signal\n\
         Could not set breakpoint: Operation not supported\n\
         Could not remove breakpoint tag: Operation not supported\n\
         Could not resume request: Operation not supported\n\
         Invalid cache option: bogus\n\
         Cannot change the option 'lazy-refcounts'\n\
         reopen [-r] [-c cache] [-o options] -- reopens an image with new options\n\
         read failed: Numerical result out of range\n\
         write failed: Numerical result out of range\n\
         length cannot exceed 2147483136, given 3G\n"
    );
}

#[test]
fn process_level_commands_are_returned_to_the_caller() {
    let mut g = BlockGraph::new();
    let n = null_node(&mut g);
    let mut out = String::new();
    assert_eq!(run_command(&n, "abort", &mut out), Err(QemuIoError::Abort));
    assert_eq!(
        run_command(&n, "sigraise 15", &mut out),
        Err(QemuIoError::Raise(15))
    );
    assert_eq!(
        run_command(&n, "nope 1", &mut out).map_err(|e| e.to_string()),
        Err("command \"nope\" not found".to_string())
    );
    assert_eq!(out, "");
}

#[test]
fn drive_without_medium_reports_no_medium() {
    let mut io = QemuIo::new();
    let mut out = String::new();
    for c in [
        "read 0 512",
        "write 0 512",
        "length",
        "map",
        "alloc 0",
        "info",
        "flush",
    ] {
        io.run(None, c, &mut out).expect("runs");
    }
    assert_eq!(
        out,
        "read failed: No medium found\n\
         write failed: No medium found\n\
         getlength: No medium found\n\
         Failed to query image length: No medium found\n\
         is_allocated failed: No medium found\n"
    );
}

#[test]
fn read_only_node_refuses_writes_like_the_reference() {
    if !have_tools() {
        return;
    }
    let dir = tmpdir("ro");
    let img = create(&dir, "a.qcow2", "qcow2", "1M", &[]);
    let mut g = BlockGraph::new();
    let n = g.open_image(&img, Some("qcow2"), true).expect("open ro");
    let out = ours(
        &n,
        &[
            "write 0 512",
            "write -z 0 512",
            "discard 0 512",
            "truncate 2M",
            "read -q 0 512",
        ],
    );
    assert_eq!(
        out,
        "write failed: Operation not permitted\n\
         write failed: Operation not permitted\n\
         discard failed: Operation not permitted\n\
         truncate: Permission denied\n"
    );
}

#[test]
fn accounting_sees_aio_requests() {
    use block::qemu_io::{Accounting, AcctEvent, AcctKind, AcctResult};
    use std::sync::{Arc, Mutex};
    struct Rec(Arc<Mutex<Vec<AcctEvent>>>);
    impl Accounting for Rec {
        fn account(&mut self, ev: AcctEvent) {
            self.0.lock().expect("lock").push(ev);
        }
        fn share(&self) -> Box<dyn Accounting> {
            Box::new(Rec(self.0.clone()))
        }
    }
    let mut g = BlockGraph::new();
    let n = null_node(&mut g);
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut io = QemuIo::new();
    io.set_accounting(Box::new(Rec(log.clone())));
    let mut out = String::new();
    for c in [
        "aio_read 0 512",
        "aio_write 0 1k",
        "aio_read -i 0 1",
        "aio_read 2M 512",
        "aio_flush",
        "read 0 512",
    ] {
        io.run(Some(&n), c, &mut out).expect("runs");
    }
    let got: Vec<(AcctKind, u64, AcctResult)> = log
        .lock()
        .expect("lock")
        .iter()
        .map(|e| (e.kind, e.bytes, e.result))
        .collect();
    assert_eq!(
        got,
        [
            (AcctKind::Read, 512, AcctResult::Done),
            (AcctKind::Write, 1024, AcctResult::Done),
            (AcctKind::Read, 0, AcctResult::Invalid),
            (AcctKind::Read, 512, AcctResult::Failed),
            (AcctKind::Flush, 0, AcctResult::Done),
        ]
    );
}

#[test]
fn truncate_grows_and_refuses_what_the_reference_refused() {
    if !have_tools() {
        return;
    }
    let dir = tmpdir("truncate");
    let img = create(&dir, "a.qcow2", "qcow2", "1M", &[]);
    let raw = create(&dir, "a.raw", "raw", "1M", &[]);
    let mut g = BlockGraph::new();
    let n = open(&mut g, &img, "qcow2");
    let r = open(&mut g, &raw, "raw");
    assert_eq!(
        ours(
            &n,
            &[
                "truncate 2M",
                "length",
                "truncate 1M",
                "truncate 3000k1",
                "truncate 2049k",
                "length"
            ]
        ),
        "2 MiB\n\
         qcow2 doesn't support shrinking images yet\n\
         truncate: Operation not supported\n\
         Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- 3000k1\n\
         2.001 MiB\n"
    );
    assert_eq!(
        ours(&r, &["truncate 512k", "length", "t 1000", "l"]),
        "512 KiB\n1 KiB\n"
    );
    g.close_all();
    let info = theirs("qcow2", &img, &["length"]);
    assert_eq!(info, "2.001 MiB\n");
}

#[test]
fn random_command_lines_never_panic() {
    let words = [
        "read",
        "write",
        "readv",
        "writev",
        "aio_read",
        "aio_write",
        "aio_flush",
        "discard",
        "alloc",
        "map",
        "length",
        "info",
        "truncate",
        "help",
        "reopen",
        "-P",
        "-z",
        "-u",
        "-c",
        "-b",
        "-C",
        "-q",
        "-v",
        "-s",
        "-l",
        "-f",
        "-i",
        "-r",
        "-o",
        "0",
        "512",
        "1k",
        "64k",
        "1M",
        "2M",
        "9E",
        "-1",
        "0x",
        "1.5k",
        "inf",
        "nan",
        "1e999",
        "--",
        "-",
        "x",
        "7",
        "3G",
        "8388607",
        "\t",
    ];
    let mut g = BlockGraph::new();
    let n = null_node(&mut g);
    let mut io = QemuIo::new();
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for _ in 0..5000 {
        let mut line = String::new();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 7) as usize;
        for k in 0..len {
            let w = words[((x >> (k * 6)) % words.len() as u64) as usize];
            line.push_str(w);
            line.push(' ');
        }
        let mut out = String::new();
        let _ = io.run(Some(&n), &line, &mut out);
    }
}

#[test]
fn reopen_passes_cache_mode_and_options_to_the_graph() {
    use block::qemu_io::{CacheMode, ReopenOps, ReopenRequest};
    use std::sync::{Arc, Mutex};
    struct Rec(Arc<Mutex<Vec<ReopenRequest>>>);
    impl ReopenOps for Rec {
        fn reopen(&mut self, _n: &block::NodeRef, req: &ReopenRequest) -> Result<(), String> {
            self.0.lock().expect("lock").push(req.clone());
            Err("Cannot change cache.writeback: Device attached".into())
        }
    }
    let mut g = BlockGraph::new();
    let n = null_node(&mut g);
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut io = QemuIo::new();
    io.set_reopen_ops(Box::new(Rec(log.clone())));
    let mut out = String::new();
    io.run(
        Some(&n),
        "reopen -c none -o cache.direct=on,cache.no-flush=on",
        &mut out,
    )
    .expect("runs");
    assert_eq!(out, "Cannot change cache.writeback: Device attached\n");
    let got = log.lock().expect("lock").clone();
    assert_eq!(
        got,
        [ReopenRequest {
            read_only: false,
            cache: CacheMode::parse("none"),
            options: vec![
                ("cache.direct".into(), "on".into()),
                ("cache.no-flush".into(), "on".into())
            ],
        }]
    );
}

#[test]
fn reopen_read_only_without_graph_help_refuses_later_writes() {
    let mut g = BlockGraph::new();
    let n = null_node(&mut g);
    assert_eq!(
        ours(&n, &["reopen -r", "write -q 0 512", "read -q 0 512"]),
        "write failed: Operation not permitted\n"
    );
}

#[test]
fn aio_requests_wait_in_a_submitter_until_aio_flush_drains_them() {
    use block::qemu_io::{AioRequest, AioSubmit};
    use std::sync::{Arc, Mutex};
    struct Queue {
        pending: Vec<(block::NodeRef, AioRequest)>,
        accounted: Arc<Mutex<usize>>,
    }
    impl AioSubmit for Queue {
        fn submit(&mut self, node: &block::NodeRef, req: AioRequest) {
            self.pending.push((node.clone(), req));
        }
        fn drain(&mut self, out: &mut String) {
            for (node, req) in self.pending.drain(..) {
                let done = req.run(Some(&node));
                out.push_str(&done.text);
                if done.acct.is_some() {
                    *self.accounted.lock().expect("lock") += 1;
                }
            }
        }
    }
    let mut g = BlockGraph::new();
    let n = null_node(&mut g);
    let accounted = Arc::new(Mutex::new(0));
    let mut io = QemuIo::new();
    io.set_aio_submit(Box::new(Queue {
        pending: Vec::new(),
        accounted: accounted.clone(),
    }));
    let mut before = String::new();
    for c in [
        "aio_write -P 5 0 1k",
        "aio_read -P 5 0 512 512",
        "aio_read 2M 512",
    ] {
        io.run(Some(&n), c, &mut before).expect("runs");
    }
    assert_eq!(before, "");
    let mut after = String::new();
    io.run(Some(&n), "aio_flush", &mut after).expect("runs");
    let after = normalize(&after);
    assert_eq!(
        after,
        "wrote 1024/1024 bytes at offset 0\n\
         1 KiB, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)\n\
         Pattern verification failed at offset 0, 1024 bytes\n\
         read 1024/1024 bytes at offset 0\n\
         1 KiB, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)\n\
         readv failed: Input/output error\n"
    );
    assert_eq!(*accounted.lock().expect("lock"), 3);
}

#[test]
fn hmp_device_argument_resolves_backends_then_node_names() {
    use block::qemu_io::resolve_device;
    let mut g = BlockGraph::new();
    let opts = serde_json::json!({"driver": "null-co", "node-name": "nullnode"});
    let serde_json::Value::Object(m) = opts else {
        unreachable!()
    };
    let n = g.open(&m).expect("null-co");
    g.add_backend("drive0", Some(n.clone())).expect("backend");
    g.add_backend("empty", None).expect("backend");
    assert!(resolve_device(&g, "drive0").expect("found").is_some());
    assert!(resolve_device(&g, "nullnode").expect("found").is_some());
    assert!(resolve_device(&g, "empty").expect("found").is_none());
    assert_eq!(
        resolve_device(&g, "nope").err(),
        Some("Cannot find device= nor node_name=nope".to_string())
    );
}
