//! Serve one raw file over NBD from a single-threaded poll loop, for manual
//! testing and benchmarks:
//!
//!   cargo run -p block --release --example nbd_serve -- IMAGE [tcp:HOST:PORT | unix:PATH] [ro]
//!
//! The export is named "disk". Runs until killed.

#[path = "../tests/nbd_harness/mod.rs"]
mod nbd_harness;

use std::collections::HashMap;
use std::path::Path;

use block::nbd::{NbdAddr, NbdServer};
use nbd_harness::{export, poll_once, Backends, FileBackend};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(image) = args.get(1) else {
        eprintln!("usage: nbd_serve IMAGE [tcp:HOST:PORT | unix:PATH] [ro]");
        std::process::exit(2);
    };
    let where_ = args
        .get(2)
        .map(String::as_str)
        .unwrap_or("tcp:127.0.0.1:10809");
    let writable = args.get(3).map(String::as_str) != Some("ro");
    let addr = if let Some(path) = where_.strip_prefix("unix:") {
        NbdAddr::Unix {
            path: path.to_string(),
        }
    } else {
        let hp = where_.strip_prefix("tcp:").unwrap_or(where_);
        let (host, port) = hp.rsplit_once(':').unwrap_or((hp, "10809"));
        NbdAddr::Inet {
            host: host.to_string(),
            port: port.to_string(),
        }
    };
    let mut server = match NbdServer::listen(&addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nbd_serve: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = server.add_export(export("disk", writable, image)) {
        eprintln!("nbd_serve: {e}");
        std::process::exit(1);
    }
    let mut backends = HashMap::new();
    backends.insert("disk".to_string(), FileBackend::open(Path::new(image)));
    let mut resolver = Backends(backends);
    eprintln!(
        "nbd_serve: serving {image} as 'disk' on {where_} (port {:?})",
        server.local_port()
    );
    let mut servers = [server];
    loop {
        poll_once(&mut servers, &mut resolver, 1000);
    }
}
