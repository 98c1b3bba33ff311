//! Our qemu-io interpreter against the real qemu-io: the same command
//! sequence on two copies of the same image must print the same text after
//! iotests' filter, and leave the same data behind.

mod qemu_io_support;

use block::BlockGraph;
use qemu_io_support::*;

/// Commands whose output QEMU 7 prints as the reference did.
const DATA_CMDS: &[&str] = &[
    "write -P 0x11 0 64k",
    "read -P 0x11 0 64k",
    "read -P 0x22 0 512",
    "read -v 0 32",
    "write -P 0x41 512 16",
    "read -v 500 40",
    "write -z 64k 64k",
    "read -P 0 64k 64k",
    "writev -P 0x33 128k 512 1k",
    "readv -P 0x33 128k 512 1k",
    "readv -v 128k 16 16",
    "write -f -P 0x44 192k 4k",
    "read -P 0x44 -s 1k -l 1k 192k 4k",
    "read -P 0x45 -s 1k -l 1k 192k 4k",
    "aio_write -P 7 256k 4k",
    "aio_flush",
    "aio_read -P 7 256k 4k",
    "aio_flush",
    "aio_read -P 8 256k 4k",
    "aio_flush",
    "aio_write -z 256k 512",
    "aio_flush",
    "read -C 0 512",
    "write -C 0 512",
    "write -q 4k 4k",
    "read -q -P 0xcd 4k 4k",
    "flush",
    "length",
    "read 1.5k 512",
    "read 0x200 1k",
    "r 0 512",
    "w -P 1 1k 1",
    "read -p 0 1",
];

const ERROR_CMDS: &[&str] = &[
    "read 0 2M",
    "write 1M 512",
    "read 1M 0",
    "readv 1M 512",
    "writev 1020k 4k 4k",
    "aio_read 1M 512",
    "aio_flush",
    "aio_write 1M 512",
    "aio_flush",
    "discard 2M 512",
    "bogus",
    "read -x 0 1",
    "read",
    "read 0",
    "read -P 256 0 1",
    "read -P 0x 0 1",
    "read 1.5 1",
    "read -1 1",
    "read 0 1x",
    "read 0 1kk",
    "read 0 8E",
    "read -l 10 0 512",
    "read -P 1 -s 600 0 512",
    "read -P 1 0",
    "write -u 0 512",
    "write -b -z 0 512",
    "write -f -c 0 512",
    "readv 0 1 x",
    "aio_read -i 0 1",
    "aio_write -i 0 1",
    "aio_write -z 0 512 512",
    "aio_write -u 0 512",
    "discard 0 1x",
    "flush 1",
    "length 1",
    "alloc",
    "help read",
    "help bogus",
];

fn compare(fmt: &str, opts: &[&str], cmds: &[&str]) {
    if !have_tools() {
        eprintln!("qemu-io/qemu-img missing; skipped");
        return;
    }
    let dir = tmpdir(&format!("cmp-{}-{}", fmt, cmds.len()));
    let a = create(&dir, "ours.img", fmt, "1M", opts);
    let b = create(&dir, "theirs.img", fmt, "1M", opts);
    let mut g = BlockGraph::new();
    let node = open(&mut g, &a, fmt);
    let (mine, mine_err) = split_stderr(&normalize(&ours(&node, cmds)));
    g.close_all();
    let (real, real_err) = split_stderr(&normalize(&as_reference(&theirs(fmt, &b, cmds))));
    assert_eq!(mine_err, real_err);
    let ml: Vec<&str> = mine.lines().collect();
    let rl: Vec<&str> = real.lines().collect();
    for (i, (m, r)) in ml.iter().zip(rl.iter()).enumerate() {
        assert_eq!(
            m, r,
            "line {} differs\nours:\n{}\ntheirs:\n{}",
            i, mine, real
        );
    }
    assert_eq!(ml.len(), rl.len(), "ours:\n{}\ntheirs:\n{}", mine, real);
    let cmp = std::process::Command::new("qemu-img")
        .args(["compare", "-f", fmt, "-F", fmt, &a, &b])
        .output()
        .expect("qemu-img compare");
    assert!(cmp.status.success(), "contents differ: {:?}", cmp);
}

#[test]
fn data_commands_print_what_qemu_io_prints_on_qcow2() {
    compare("qcow2", &[], DATA_CMDS);
}

#[test]
fn data_commands_print_what_qemu_io_prints_on_raw() {
    compare("raw", &[], DATA_CMDS);
}

#[test]
fn errors_print_what_qemu_io_prints_on_qcow2() {
    compare("qcow2", &[], ERROR_CMDS);
}

#[test]
fn errors_print_what_qemu_io_prints_on_raw() {
    compare("raw", &[], ERROR_CMDS);
}

#[test]
fn discard_and_zero_writes_match_on_qcow2_v2_and_v3() {
    let cmds = [
        "write -P 0x5a 0 256k",
        "discard 0 64k",
        "read -P 0 0 64k",
        "discard -q 64k 64k",
        "discard -C 128k 512",
        "write -z -u 192k 64k",
        "read -P 0 192k 64k",
        "read -P 0x5a 128k 512",
        "write -c 512k 64k",
        "read -P 0xcd 512k 64k",
    ];
    compare("qcow2", &["compat=1.1"], &cmds);
    compare("qcow2", &["compat=0.10"], &cmds);
    let mut small = cmds;
    small[8] = "write -c 512k 4k";
    small[9] = "read -P 0xcd 512k 4k";
    compare("qcow2", &["cluster_size=4096"], &small);
}

#[test]
fn data_we_write_reads_back_in_real_qemu_io() {
    if !have_tools() {
        return;
    }
    let dir = tmpdir("readback");
    let img = create(&dir, "a.qcow2", "qcow2", "4M", &[]);
    let mut g = BlockGraph::new();
    let node = open(&mut g, &img, "qcow2");
    let out = ours(
        &node,
        &[
            "write -P 0x61 0 100k",
            "writev -P 0x62 1M 3k 5k 512",
            "write -z 64k 4k",
            "aio_write -P 0x63 2M 64k 64k",
            "aio_flush",
            "write -c 3M 64k",
            "discard 3M 64k",
            "write -P 0x64 3M 512",
        ],
    );
    assert!(!out.contains("failed"), "{}", out);
    g.close_all();
    drop(node);
    let check = theirs(
        "qcow2",
        &img,
        &[
            "read -q -P 0x61 0 64k",
            "read -q -P 0 64k 4k",
            "read -q -P 0x61 68k 32k",
            "read -q -P 0x62 1M 8704",
            "read -q -P 0x63 2M 128k",
            "read -q -P 0x64 3M 512",
            "read -q -P 0 3145728 512",
        ],
    );
    assert_eq!(
        check,
        "Pattern verification failed at offset 3145728, 512 bytes\n"
    );
    let ck = std::process::Command::new("qemu-img")
        .args(["check", &img])
        .output()
        .expect("qemu-img check");
    assert!(ck.status.success(), "{:?}", ck);
}

#[test]
fn help_texts_unchanged_since_the_reference_match_qemu_io() {
    // readv and writev are left out: qemu-io 8 and later sort their option
    // lines and add -r.
    compare(
        "raw",
        &[],
        &[
            "help discard",
            "help flush",
            "help length",
            "help aio_flush",
            "help ?",
        ],
    );
}

#[test]
fn reads_through_a_backing_chain_match_qemu_io() {
    if !have_tools() {
        return;
    }
    let dir = tmpdir("chain");
    let mk = |name: &str| {
        let base = create(&dir, &format!("{}-base.qcow2", name), "qcow2", "1M", &[]);
        let _ = theirs("qcow2", &base, &["write -P 0x0b 0 512k"]);
        let top = dir
            .join(format!("{}-top.qcow2", name))
            .to_string_lossy()
            .into_owned();
        let st = std::process::Command::new("qemu-img")
            .args([
                "create", "-q", "-f", "qcow2", "-b", &base, "-F", "qcow2", &top,
            ])
            .status()
            .expect("qemu-img");
        assert!(st.success());
        top
    };
    let a = mk("ours");
    let b = mk("theirs");
    let cmds = [
        "read -P 0x0b 0 512k",
        "read -P 0 512k 512k",
        "write -P 0x0c 64k 4k",
        "read -P 0x0b 0 64k",
        "read -P 0x0c 64k 4k",
        "read -P 0x0b 68k 60k",
        "write -z 128k 64k",
        "read -P 0 128k 64k",
        "discard 64k 64k",
        "read -v 65536 16",
    ];
    let mut g = BlockGraph::new();
    let opts = serde_json::json!({"driver": "qcow2", "discard": "unmap",
        "file": {"driver": "file", "filename": a}});
    let serde_json::Value::Object(m) = opts else {
        unreachable!()
    };
    let node = g.open(&m).expect("open chain");
    let mine = normalize(&ours(&node, &cmds));
    g.close_all();
    let real = normalize(&theirs("qcow2", &b, &cmds));
    assert_eq!(mine, real);
}
