//! The NBD server against broken and hostile clients, speaking the protocol
//! by hand. After each abuse a well-behaved client must still be served.

mod nbd_harness;

use std::io::Write;
use std::time::{Duration, Instant};

use nbd_harness::*;

const MIB: u64 = 1024 * 1024;

fn setup(test: &str) -> (Running, std::path::PathBuf) {
    let dir = scratch_dir(test);
    let rw = make_image(&dir, "rw.img", 4 * MIB);
    let ro = make_image(&dir, "ro.img", MIB);
    std::fs::write(dir.join("ro.img"), vec![0x42u8; MIB as usize]).expect("fill ro");
    let srv = serve(
        dir,
        vec![
            (export("rw", true, ""), rw.clone()),
            (export("ro", false, ""), ro),
        ],
    );
    (srv, rw)
}

/// A normal client still gets a correct answer.
fn still_serves(srv: &Running) {
    let (mut s, size, _) = connect_to(srv, "ro", false);
    assert_eq!(size, MIB);
    request(&mut s, 0, 0, 99, 4096, 512, &[]);
    assert_eq!(simple_reply(&mut s), (0, 99));
    assert_eq!(recv(&mut s, 512), vec![0x42u8; 512]);
    request(&mut s, 0, 2, 100, 0, 0, &[]);
    assert!(closed_by_server(&mut s));
}

#[test]
fn garbage_instead_of_client_flags_is_dropped() {
    let (srv, _) = setup("garbage");
    let mut s = srv.connect();

    let _ = recv(&mut s, 18);
    send(&mut s, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");

    assert!(closed_by_server(&mut s));
    still_serves(&srv);
}

#[test]
fn bad_option_magic_is_dropped() {
    let (srv, _) = setup("optmagic");
    let mut s = srv.connect();
    greet(&mut s);

    send(&mut s, &[0xffu8; 64]);

    assert!(closed_by_server(&mut s));
    still_serves(&srv);
}

#[test]
fn truncated_handshakes_do_not_disturb_others() {
    let (srv, _) = setup("truncated");
    for cut in [0usize, 2, 4 + 7, 4 + 16 + 3] {
        let mut s = srv.connect();
        let _ = recv(&mut s, 18);
        let mut msg = 3u32.to_be_bytes().to_vec();
        msg.extend_from_slice(b"IHAVEOPT");
        msg.extend_from_slice(&7u32.to_be_bytes());
        msg.extend_from_slice(&go_data("ro"));
        let _ = s.write_all(&msg[..cut.min(msg.len())]);
        drop(s);
    }

    still_serves(&srv);
}

#[test]
fn unknown_and_oversized_options_are_refused_and_negotiation_goes_on() {
    let (srv, _) = setup("options");
    let mut s = srv.connect();
    greet(&mut s);

    option(&mut s, 0x1234, b"whatever");
    let unknown = option_reply(&mut s);
    option(&mut s, 3, &vec![0u8; 1 << 20]);
    let too_big = option_reply(&mut s);
    option(&mut s, 3, b"x");
    let invalid = option_reply(&mut s);
    option(&mut s, 7, &go_data("nope"));
    let missing = option_reply(&mut s);
    option(&mut s, 7, &[0, 0, 0, 200, b'a']);
    let malformed = option_reply(&mut s);
    option(&mut s, 5, &[]);
    let tls = option_reply(&mut s);
    option(&mut s, 10, &[]);
    let meta_without_structured = option_reply(&mut s);
    let (size, flags) = go(&mut s, "ro");

    assert_eq!((unknown.0, unknown.1), (0x1234, 0x8000_0001));
    assert_eq!(too_big.1, 0x8000_0009);
    assert_eq!(invalid.1, 0x8000_0003);
    assert_eq!(missing.1, 0x8000_0006);
    assert_eq!(malformed.1, 0x8000_0003);
    assert_eq!(tls.1, 0x8000_0002);
    assert_eq!(meta_without_structured.1, 0x8000_0003);
    assert_eq!(size, MIB);
    assert_eq!(flags & 0x3, 0x3, "HAS_FLAGS | READ_ONLY");
}

#[test]
fn export_name_of_a_missing_export_hangs_up() {
    let (srv, _) = setup("exportname");
    let mut s = srv.connect();
    greet(&mut s);

    option(&mut s, 1, b"nope");

    assert!(closed_by_server(&mut s));
    still_serves(&srv);
}

#[test]
fn export_name_enters_transmission_without_zero_padding() {
    let (srv, _) = setup("exportname-ok");
    let mut s = srv.connect();
    greet(&mut s);

    option(&mut s, 1, b"ro");
    let reply = recv(&mut s, 10);
    request(&mut s, 0, 0, 5, 0, 4, &[]);

    assert_eq!(be64(&reply[0..8]), MIB);
    assert_eq!(simple_reply(&mut s), (0, 5));
    assert_eq!(recv(&mut s, 4), vec![0x42; 4]);
}

#[test]
fn abort_is_acknowledged_then_closed() {
    let (srv, _) = setup("abort");
    let mut s = srv.connect();
    greet(&mut s);

    option(&mut s, 2, &[]);

    assert_eq!(option_reply(&mut s).1, 1);
    assert!(closed_by_server(&mut s));
}

#[test]
fn bad_requests_get_errors_and_the_connection_stays_in_step() {
    let (srv, rw) = setup("requests");
    let (mut ro, _, _) = connect_to(&srv, "ro", false);
    let (mut s, size, _) = connect_to(&srv, "rw", false);

    request(&mut ro, 0, 1, 1, 0, 4096, &[0x11; 4096]);
    let ro_write = simple_reply(&mut ro);
    request(&mut ro, 0, 6, 2, 0, 4096, &[]);
    let ro_zero = simple_reply(&mut ro);
    request(&mut ro, 0, 4, 3, 0, 4096, &[]);
    let ro_trim = simple_reply(&mut ro);
    request(&mut s, 0, 0, 4, size - 10, 20, &[]);
    let read_past_end = simple_reply(&mut s);
    request(&mut s, 0, 0, 5, u64::MAX - 5, 10, &[]);
    let read_overflow = simple_reply(&mut s);
    request(&mut s, 0, 1, 6, size, 1, &[0x22]);
    let write_past_end = simple_reply(&mut s);
    request(&mut s, 0, 6, 13, size - 512, 4096, &[]);
    let zeroes_past_end = simple_reply(&mut s);
    request(&mut s, 0, 4, 14, size - 512, 4096, &[]);
    let trim_past_end = simple_reply(&mut s);
    request(&mut s, 0, 0, 7, 0, 64 << 20, &[]);
    let huge_read = simple_reply(&mut s);
    let huge = vec![0x33u8; 40 << 20];
    request(&mut s, 0, 1, 8, 0, huge.len() as u32, &huge);
    let huge_write = simple_reply(&mut s);
    request(&mut s, 0, 42, 9, 0, 0, &[]);
    let unknown_cmd = simple_reply(&mut s);
    request(&mut s, 0x8000, 0, 10, 0, 1, &[]);
    let unknown_flag = simple_reply(&mut s);
    request(&mut s, 0, 7, 11, 0, 4096, &[]);
    let status_without_meta = simple_reply(&mut s);
    request(&mut s, 0, 1, 12, 0, 3, b"abc");
    let good_write = simple_reply(&mut s);

    assert_eq!(ro_write, (1, 1));
    assert_eq!(ro_zero, (1, 2));
    assert_eq!(ro_trim, (1, 3));
    assert_eq!(read_past_end, (22, 4));
    assert_eq!(read_overflow, (22, 5));
    // ENOSPC for writes and write-zeroes, EINVAL for the rest: the NBD
    // specification's and QEMU 2.8's choice.
    assert_eq!(write_past_end, (28, 6));
    assert_eq!(zeroes_past_end, (28, 13));
    assert_eq!(trim_past_end, (22, 14));
    assert_eq!(huge_read, (22, 7));
    assert_eq!(huge_write, (22, 8));
    assert_eq!(unknown_cmd, (22, 9));
    assert_eq!(unknown_flag, (22, 10));
    assert_eq!(status_without_meta, (22, 11));
    assert_eq!(good_write, (0, 12));
    assert_eq!(&std::fs::read(&rw).expect("image")[..4], b"abc\0");
}

#[test]
fn bad_request_magic_is_dropped() {
    let (srv, _) = setup("reqmagic");
    let (mut s, _, _) = connect_to(&srv, "rw", false);

    send(&mut s, &[0u8; 28]);

    assert!(closed_by_server(&mut s));
    still_serves(&srv);
}

#[test]
fn disconnect_in_the_middle_of_a_write_leaves_the_image_alone() {
    let (srv, rw) = setup("midwrite");
    let (mut s, _, _) = connect_to(&srv, "rw", false);

    let mut m = Vec::new();
    m.extend_from_slice(&0x2560_9513u32.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 1]);
    m.extend_from_slice(&1u64.to_be_bytes());
    m.extend_from_slice(&0u64.to_be_bytes());
    m.extend_from_slice(&(1u32 << 20).to_be_bytes());
    m.extend_from_slice(&[0x77; 1000]);
    send(&mut s, &m);
    drop(s);

    still_serves(&srv);
    assert!(std::fs::read(&rw).expect("image").iter().all(|&b| b == 0));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (srv, _) = setup("pipeline");
    let (mut s, _, _) = connect_to(&srv, "ro", false);

    let mut batch = Vec::new();
    for cookie in 0..200u64 {
        batch.extend_from_slice(&0x2560_9513u32.to_be_bytes());
        batch.extend_from_slice(&[0, 0, 0, 0]);
        batch.extend_from_slice(&cookie.to_be_bytes());
        batch.extend_from_slice(&(cookie * 4096).to_be_bytes());
        batch.extend_from_slice(&4096u32.to_be_bytes());
    }
    send(&mut s, &batch);
    let mut cookies = Vec::new();
    for _ in 0..200 {
        let (err, cookie) = simple_reply(&mut s);
        assert_eq!(err, 0);
        assert_eq!(recv(&mut s, 4096), vec![0x42; 4096]);
        cookies.push(cookie);
    }

    assert_eq!(cookies, (0..200).collect::<Vec<u64>>());
}

#[test]
fn a_client_that_never_reads_does_not_stall_others() {
    let (srv, _) = setup("stuck");
    let (mut stuck, _, _) = connect_to(&srv, "rw", false);
    for cookie in 0..64u64 {
        request(&mut stuck, 0, 0, cookie, 0, 4 << 20, &[]);
    }
    std::thread::sleep(Duration::from_millis(200));

    let start = Instant::now();
    still_serves(&srv);

    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
}

fn meta_data(export: &str, queries: &[&str]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&(export.len() as u32).to_be_bytes());
    d.extend_from_slice(export.as_bytes());
    d.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for q in queries {
        d.extend_from_slice(&(q.len() as u32).to_be_bytes());
        d.extend_from_slice(q.as_bytes());
    }
    d
}

#[test]
fn structured_reads_send_holes_and_block_status_reports_extents() {
    let (srv, rw) = setup("structured");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&rw)
        .and_then(|f| std::os::unix::fs::FileExt::write_all_at(&f, &[0x99u8; 65536], 65536))
        .expect("write data");
    let mut s = srv.connect();
    greet(&mut s);
    option(&mut s, 8, &[]);
    assert_eq!(option_reply(&mut s).1, 1);
    option(&mut s, 9, &meta_data("rw", &["base:"]));
    let listed = option_reply(&mut s);
    assert_eq!(option_reply(&mut s).1, 1);
    option(
        &mut s,
        10,
        &meta_data("rw", &["base:allocation", "x-other:thing"]),
    );
    let (_, typ, ctx) = option_reply(&mut s);
    assert_eq!(option_reply(&mut s).1, 1);
    let (_, flags) = go(&mut s, "rw");

    request(&mut s, 0, 7, 1, 0, 4 << 20, &[]);
    let status = chunk(&mut s);
    request(&mut s, 8, 7, 2, 0, 4096, &[]);
    let one = chunk(&mut s);
    request(&mut s, 0, 0, 3, 0, 3 * 65536, &[]);
    let mut chunks = Vec::new();
    loop {
        let c = chunk(&mut s);
        let done = c.0 & 1 != 0;
        chunks.push(c);
        if done {
            break;
        }
    }
    request(&mut s, 0, 0, 4, 8 << 20, 1, &[]);
    let past_end = chunk(&mut s);

    assert_eq!(&listed.2[4..], b"base:allocation");
    assert_eq!((typ, &ctx[4..]), (4, &b"base:allocation"[..]));
    assert!(flags & (1 << 7) != 0, "SEND_DF with structured replies");
    let id = &ctx[0..4];
    assert_eq!((status.0, status.1, status.2), (1, 5, 1));
    assert_eq!(&status.3[0..4], id);
    let ext: Vec<(u32, u32)> = status.3[4..]
        .chunks(8)
        .map(|e| (be32(&e[0..4]), be32(&e[4..8])))
        .collect();
    assert_eq!(
        ext,
        vec![(65536, 3), (65536, 0), (4 * MIB as u32 - 131072, 3)]
    );
    assert_eq!(one.3.len(), 12, "REQ_ONE gives one extent");
    assert_eq!(be32(&one.3[4..8]), 4096);
    let kinds: Vec<u16> = chunks.iter().map(|c| c.1).collect();
    assert_eq!(kinds, vec![2, 1, 2]);
    assert_eq!(&chunks[1].3[8..], &[0x99u8; 65536][..]);
    assert_eq!(
        (past_end.0, past_end.1, be32(&past_end.3[0..4])),
        (1, 0x8001, 22)
    );
}

#[test]
fn zero_length_requests_and_do_not_fragment_reads_are_answered() {
    let (srv, rw) = setup("zerolen");
    std::fs::write(&rw, vec![0x5au8; 4 * MIB as usize]).expect("fill");
    let mut s = srv.connect();
    greet(&mut s);
    option(&mut s, 8, &[]);
    assert_eq!(option_reply(&mut s).1, 1);
    option(&mut s, 10, &meta_data("rw", &["base:allocation"]));
    while option_reply(&mut s).1 != 1 {}
    let _ = go(&mut s, "rw");

    request(&mut s, 0, 0, 1, 4 * MIB, 0, &[]);
    let empty_read = chunk(&mut s);
    request(&mut s, 0, 7, 2, 0, 0, &[]);
    let empty_status = chunk(&mut s);
    request(&mut s, 0, 1, 3, 0, 0, &[]);
    let empty_write = simple_reply(&mut s);
    request(&mut s, 4, 0, 4, 1, 3 * MIB as u32, &[]);
    let df = chunk(&mut s);

    assert_eq!((empty_read.0, empty_read.1, empty_read.2), (1, 0, 1));
    assert_eq!(
        (empty_status.0, empty_status.1, be32(&empty_status.3)),
        (1, 0x8001, 22)
    );
    assert_eq!(empty_write, (0, 3));
    assert_eq!((df.1, df.2, be64(&df.3[0..8])), (1, 4, 1));
    assert_eq!(df.3.len(), 8 + 3 * MIB as usize);
    assert!(df.3[8..].iter().all(|&b| b == 0x5a));
    let end = chunk(&mut s);
    assert_eq!(
        (end.0, end.1, end.2),
        (1, 0, 4),
        "DF read longer than a piece ends with NONE"
    );
}

/// Deterministic pseudo-random bytes (xorshift64).
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn random_bytes_in_every_phase_never_bring_the_server_down() {
    let (srv, _) = setup("noise");
    for seed in 1..=60u64 {
        let len = 1 + (seed as usize * 7919) % 5000;
        let mut s = srv.connect();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let _ = recv(&mut s, 18);
        match seed % 3 {
            0 => {}
            1 => send(&mut s, &3u32.to_be_bytes()),
            _ => {
                send(&mut s, &3u32.to_be_bytes());
                let _ = go(&mut s, "rw");
            }
        }
        // Plausible headers with random fields as well as raw noise.
        let mut junk = noise(seed, len);
        if seed % 2 == 0 && junk.len() >= 28 {
            junk[0..4].copy_from_slice(&0x2560_9513u32.to_be_bytes());
        }
        let _ = s.write_all(&junk);
        drop(s);
    }

    still_serves(&srv);
}
