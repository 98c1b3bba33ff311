//! The NBD server against real clients: qemu-img, qemu-io, nbdinfo, nbdcopy.
//! Each tool is the oracle; a missing tool prints `not run: ...`.

mod nbd_harness;

use nbd_harness::*;

const MIB: u64 = 1024 * 1024;

/// Fill `path` at `offset` with `len` bytes of `pattern` using qemu-io on the
/// local file (not through our server).
fn qemu_io_local(path: &std::path::Path, cmd: &str) {
    let (ok, text) = run(
        "qemu-io",
        &["-f", "raw", &path.to_string_lossy(), "-c", cmd],
    );
    assert!(ok, "{text}");
}

#[test]
fn qemu_img_info_over_tcp_and_unix_reports_export_size() {
    if !have("qemu-img") {
        return;
    }
    let dir = scratch_dir("info");
    let img = make_image(&dir, "disk.img", 4 * MIB);
    let srv = serve(dir, vec![(export("disk", false, ""), img)]);

    let (ok_tcp, tcp) = run("qemu-img", &["info", &srv.tcp_uri("disk")]);
    let (ok_unix, unix) = run("qemu-img", &["info", &srv.unix_uri("disk")]);

    assert!(
        ok_tcp && tcp.contains("virtual size: 4 MiB (4194304 bytes)"),
        "{tcp}"
    );
    assert!(
        ok_unix && unix.contains("virtual size: 4 MiB (4194304 bytes)"),
        "{unix}"
    );
}

#[test]
fn qemu_io_writes_and_reads_back_a_pattern() {
    if !have("qemu-io") {
        return;
    }
    let dir = scratch_dir("qemu-io");
    let img = make_image(&dir, "disk.img", 8 * MIB);
    let srv = serve(dir, vec![(export("disk", true, ""), img.clone())]);

    let (ok, text) = run(
        "qemu-io",
        &[
            "-f",
            "raw",
            &srv.tcp_uri("disk"),
            "-c",
            "write -P 0xab 0 64k",
            "-c",
            "write -P 0xcd 1M 3M",
            "-c",
            "write -z 2M 64k",
            "-c",
            "discard 3M 64k",
            "-c",
            "flush",
            "-c",
            "read -P 0xab 0 64k",
            "-c",
            "read -P 0xcd 1M 1M",
            "-c",
            "read -P 0 2M 64k",
        ],
    );

    assert!(ok, "{text}");
    assert!(
        !text.contains("failed") && !text.contains("error"),
        "{text}"
    );
    assert!(
        text.contains("read 65536/65536 bytes at offset 0"),
        "{text}"
    );
    let data = std::fs::read(&img).expect("image");
    assert!(data[..65536].iter().all(|&b| b == 0xab));
    assert!(data[(MIB as usize)..(2 * MIB as usize)]
        .iter()
        .all(|&b| b == 0xcd));
    assert!(data[(2 * MIB as usize)..(2 * MIB as usize + 65536)]
        .iter()
        .all(|&b| b == 0));
}

#[test]
fn qemu_io_cannot_write_a_read_only_export() {
    if !have("qemu-io") {
        return;
    }
    let dir = scratch_dir("ro");
    let img = make_image(&dir, "disk.img", MIB);
    let srv = serve(dir, vec![(export("disk", false, ""), img.clone())]);

    let (_, text) = run(
        "qemu-io",
        &[
            "-f",
            "raw",
            &srv.tcp_uri("disk"),
            "-c",
            "write -P 0x11 0 4k",
        ],
    );
    let (ok_read, read) = run(
        "qemu-io",
        &[
            "-r",
            "-f",
            "raw",
            &srv.tcp_uri("disk"),
            "-c",
            "read -P 0 0 4k",
        ],
    );

    assert!(
        text.contains("Permission denied") || text.contains("read-only"),
        "{text}"
    );
    assert!(ok_read && read.contains("read 4096/4096"), "{read}");
    assert!(std::fs::read(&img).expect("image").iter().all(|&b| b == 0));
}

#[test]
fn qemu_img_convert_in_and_out_and_compare_agree() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dir = scratch_dir("convert");
    let src = make_image(&dir, "src.img", 64 * MIB);
    qemu_io_local(&src, "write -P 0x5a 0 3M");
    qemu_io_local(&src, "write -P 0xa5 40M 5M");
    qemu_io_local(&src, "write -P 0x01 63M 1M");
    let target = make_image(&dir, "target.img", 64 * MIB);
    let out = dir.join("out.img");
    // Reads copied through memory here; the other tests use sendfile.
    let srv = serve_with(dir.clone(), vec![(export("disk", true, ""), target)], false);
    let (s, u) = (src.to_string_lossy().into_owned(), srv.unix_uri("disk"));

    let (ok_in, t_in) = run(
        "qemu-img",
        &["convert", "-n", "-f", "raw", "-O", "raw", &s, &u],
    );
    let (ok_cmp, t_cmp) = run(
        "qemu-img",
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            "raw",
            &s,
            &srv.tcp_uri("disk"),
        ],
    );
    let (ok_out, t_out) = run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "raw",
            &u,
            &out.to_string_lossy(),
        ],
    );

    assert!(ok_in, "{t_in}");
    assert!(ok_cmp && t_cmp.contains("Images are identical"), "{t_cmp}");
    assert!(ok_out, "{t_out}");
    assert_eq!(std::fs::read(&src).ok(), std::fs::read(&out).ok());
}

#[test]
fn nbdinfo_lists_exports_with_descriptions() {
    if !have("nbdinfo") {
        return;
    }
    let dir = scratch_dir("list");
    let a = make_image(&dir, "a.img", MIB);
    let b = make_image(&dir, "b.img", 2 * MIB);
    let srv = serve(
        dir,
        vec![
            (export("alpha", true, "first disk"), a),
            (export("beta", false, ""), b),
        ],
    );

    let (ok, text) = run(
        "nbdinfo",
        &["--list", &format!("nbd://127.0.0.1:{}", srv.port)],
    );

    assert!(ok, "{text}");
    assert!(
        text.contains("export=\"alpha\"") && text.contains("export=\"beta\""),
        "{text}"
    );
    assert!(text.contains("description: first disk"), "{text}");
    assert!(text.contains("export-size: 2097152"), "{text}");
}

#[test]
fn nbdinfo_shows_flags_block_sizes_and_allocation_map() {
    if !have("nbdinfo") || !have("qemu-io") {
        return;
    }
    let dir = scratch_dir("map");
    let img = make_image(&dir, "disk.img", 4 * MIB);
    qemu_io_local(&img, "write -P 0x77 1M 1M");
    let srv = serve(dir, vec![(export("disk", true, ""), img)]);

    let (ok_info, info) = run("nbdinfo", &[&srv.tcp_uri("disk")]);
    let (ok_map, map) = run("nbdinfo", &["--map", &srv.tcp_uri("disk")]);

    assert!(ok_info, "{info}");
    for needle in [
        "block_size_minimum: 1",
        "block_size_preferred: 4096",
        "block_size_maximum: 33554432",
        "can_multi_conn: true",
        "can_zero: true",
        "can_trim: true",
        "can_fua: true",
        "is_read_only: false",
        "base:allocation",
    ] {
        assert!(info.contains(needle), "missing {needle}: {info}");
    }
    assert!(ok_map, "{map}");
    let rows: Vec<Vec<&str>> = map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0][..3], ["0", "1048576", "3"], "{map}");
    assert_eq!(rows[1][..3], ["1048576", "1048576", "0"], "{map}");
    assert_eq!(rows[2][..3], ["2097152", "2097152", "3"], "{map}");
}

#[test]
fn nbdcopy_copies_in_and_out() {
    if !have("nbdcopy") || !have("qemu-io") {
        return;
    }
    let dir = scratch_dir("nbdcopy");
    let src = make_image(&dir, "src.img", 48 * MIB);
    qemu_io_local(&src, "write -P 0x3c 0 7M");
    qemu_io_local(&src, "write -P 0xc3 20M 9M");
    let target = make_image(&dir, "target.img", 48 * MIB);
    let back = make_image(&dir, "back.img", 48 * MIB);
    let srv = serve(dir.clone(), vec![(export("disk", true, ""), target)]);

    let (ok_in, t_in) = run("nbdcopy", &[&src.to_string_lossy(), &srv.tcp_uri("disk")]);
    let (ok_out, t_out) = run("nbdcopy", &[&srv.unix_uri("disk"), &back.to_string_lossy()]);

    assert!(ok_in, "{t_in}");
    assert!(ok_out, "{t_out}");
    assert_eq!(std::fs::read(&src).ok(), std::fs::read(&back).ok());
}

#[test]
fn many_qemu_io_clients_at_once_each_see_their_own_writes() {
    if !have("qemu-io") {
        return;
    }
    let dir = scratch_dir("many");
    let img = make_image(&dir, "disk.img", 16 * MIB);
    let srv = serve(dir, vec![(export("disk", true, ""), img.clone())]);

    let children: Vec<_> = (0..12u64)
        .map(|i| {
            let (w, r) = (
                format!("write -P {} {}M 1M", i + 1, i),
                format!("read -P {} {}M 1M", i + 1, i),
            );
            std::process::Command::new("qemu-io")
                .args(["-f", "raw", &srv.tcp_uri("disk"), "-c", &w, "-c", &r])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawn qemu-io")
        })
        .collect();

    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().expect("qemu-io ran");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !text.contains("fail"),
            "client {i}: {text}"
        );
    }
    let data = std::fs::read(&img).expect("image");
    for i in 0..12usize {
        assert!(data[i * MIB as usize..(i + 1) * MIB as usize]
            .iter()
            .all(|&b| b as usize == i + 1));
    }
}
