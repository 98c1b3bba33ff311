//! Shared test fixture: file-backed exports served by `NbdServer` over TCP
//! and a Unix socket from a single poll(2) loop, plus a small raw NBD
//! client for hand-made (and hostile) traffic.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use block::nbd::{
    proto, ClientStatus, ExportResolver, NbdAddr, NbdExport, NbdExportBackend, NbdIoError,
    NbdServer,
};
use block::node::MappedRead;

/// A regular file as an export.
pub struct FileBackend {
    file: File,
    size: u64,
    /// Offer reads as file spans (sendfile) instead of copies.
    pub zero_copy: bool,
}

impl FileBackend {
    pub fn open(path: &Path) -> FileBackend {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open test image");
        let size = file.metadata().expect("stat test image").len();
        FileBackend {
            file,
            size,
            zero_copy: true,
        }
    }

    fn punch(&self, offset: u64, len: u64) -> Result<(), NbdIoError> {
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        // SAFETY: fallocate on a file descriptor we own, no memory passed.
        let r = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, offset as i64, len as i64) };
        if r < 0 {
            return Err(NbdIoError::from_io(&std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn seek(&self, offset: u64, whence: i32) -> Option<u64> {
        // SAFETY: lseek on a file descriptor we own; only moves its offset.
        let r = unsafe { libc::lseek(self.file.as_raw_fd(), offset as i64, whence) };
        (r >= 0).then_some(r as u64)
    }
}

impl NbdExportBackend for FileBackend {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), NbdIoError> {
        Ok(self.file.read_exact_at(buf, offset)?)
    }

    fn write(&mut self, offset: u64, data: &[u8], fua: bool) -> Result<(), NbdIoError> {
        self.file.write_all_at(data, offset)?;
        if fua {
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn write_zeroes(
        &mut self,
        offset: u64,
        len: u64,
        may_trim: bool,
        fua: bool,
    ) -> Result<(), NbdIoError> {
        if may_trim {
            self.punch(offset, len)?;
        } else {
            let zeroes = vec![0u8; 1 << 20];
            let mut pos = offset;
            while pos < offset + len {
                let n = (offset + len - pos).min(zeroes.len() as u64) as usize;
                self.file.write_all_at(&zeroes[..n], pos)?;
                pos += n as u64;
            }
        }
        if fua {
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn trim(&mut self, offset: u64, len: u64) -> Result<(), NbdIoError> {
        self.punch(offset, len)
    }

    fn flush(&mut self) -> Result<(), NbdIoError> {
        Ok(self.file.sync_data()?)
    }

    fn read_to(
        &mut self,
        offset: u64,
        len: u64,
        sink: &mut dyn MappedRead,
    ) -> Result<(), NbdIoError> {
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let (l, flags) = self
                .block_status(pos, end - pos)?
                .first()
                .copied()
                .unwrap_or((end - pos, 0));
            let l = l.clamp(1, end - pos);
            if flags & proto::STATE_ZERO != 0 {
                sink.zeroes(l);
            } else if self.zero_copy {
                // A raw file: export offsets are file offsets, always.
                sink.host(self.file.as_fd().try_clone_to_owned()?, pos, l);
            } else {
                self.read(pos, sink.buffer(l))?;
            }
            pos += l;
        }
        Ok(())
    }

    fn block_status(&mut self, offset: u64, len: u64) -> Result<Vec<(u64, u32)>, NbdIoError> {
        let end = (offset + len).min(self.size);
        let mut pos = offset;
        let mut out = Vec::new();
        while pos < end && out.len() < 64 {
            let data = self
                .seek(pos, libc::SEEK_DATA)
                .unwrap_or(self.size)
                .min(end);
            if data > pos {
                out.push((data - pos, proto::STATE_HOLE | proto::STATE_ZERO));
                pos = data;
                continue;
            }
            let hole = self
                .seek(pos, libc::SEEK_HOLE)
                .unwrap_or(self.size)
                .min(end);
            if hole <= pos {
                out.push((end - pos, 0));
                break;
            }
            out.push((hole - pos, 0));
            pos = hole;
        }
        Ok(out)
    }
}

pub struct Backends(pub HashMap<String, FileBackend>);

impl ExportResolver for Backends {
    fn with_backend(
        &mut self,
        backend: &str,
        f: &mut dyn FnMut(&mut dyn NbdExportBackend),
    ) -> bool {
        match self.0.get_mut(backend) {
            Some(b) => {
                f(b);
                true
            }
            None => false,
        }
    }
}

/// Servers on a background thread that runs nothing but the poll loop.
pub struct Running {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    pub port: u16,
    pub socket: PathBuf,
    pub dir: PathBuf,
}

impl Running {
    pub fn tcp_uri(&self, export: &str) -> String {
        format!("nbd://127.0.0.1:{}/{}", self.port, export)
    }

    pub fn unix_uri(&self, export: &str) -> String {
        format!("nbd+unix:///{}?socket={}", export, self.socket.display())
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh scratch directory for one test.
pub fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nbd-test-{}-{}", test, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Create a sparse image of `size` bytes at `dir/name`.
pub fn make_image(dir: &Path, name: &str, size: u64) -> PathBuf {
    let path = dir.join(name);
    let f = File::create(&path).expect("create image");
    f.set_len(size).expect("size image");
    path
}

/// Serve `exports` (export, image path) on 127.0.0.1:<free port> and on
/// `dir/nbd.sock` until the returned handle is dropped.
pub fn serve(dir: PathBuf, exports: Vec<(NbdExport, PathBuf)>) -> Running {
    serve_with(dir, exports, true)
}

/// As `serve`; `zero_copy` false makes every read go through `read`.
pub fn serve_with(dir: PathBuf, exports: Vec<(NbdExport, PathBuf)>, zero_copy: bool) -> Running {
    let socket = dir.join("nbd.sock");
    let mut tcp = NbdServer::listen(&NbdAddr::Inet {
        host: "127.0.0.1".into(),
        port: "0".into(),
    })
    .expect("listen tcp");
    let mut unix = NbdServer::listen(&NbdAddr::Unix {
        path: socket.to_string_lossy().into_owned(),
    })
    .expect("listen unix");
    let mut backends = HashMap::new();
    for (e, path) in exports {
        let mut b = FileBackend::open(&path);
        b.zero_copy = zero_copy;
        backends.insert(e.backend.clone(), b);
        tcp.add_export(e.clone()).expect("add export");
        unix.add_export(e).expect("add export");
    }
    let port = tcp.local_port().expect("port");
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut resolver = Backends(backends);
        let mut servers = [tcp, unix];
        while !stop2.load(Ordering::SeqCst) {
            poll_once(&mut servers, &mut resolver, 50);
        }
        for s in servers.iter_mut() {
            let _ = s.shutdown();
        }
    });
    Running {
        stop,
        handle: Some(handle),
        port,
        socket,
        dir,
    }
}

/// One iteration of a main loop over `servers`.
pub fn poll_once(servers: &mut [NbdServer], resolver: &mut dyn ExportResolver, timeout_ms: i32) {
    // (server index, client id or None for the listener)
    let mut who: Vec<(usize, Option<u64>)> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        if let Some(fd) = s.listener_fd() {
            who.push((i, None));
            fds.push(pollfd(fd, true, false));
        }
        for id in s.client_ids() {
            if let (Some(fd), Some(int)) = (s.client_fd(id), s.client_interest(id)) {
                who.push((i, Some(id)));
                fds.push(pollfd(fd, int.readable, int.writable));
            }
        }
    }
    // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd of the given length.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n <= 0 {
        return;
    }
    for (k, pfd) in fds.iter().enumerate() {
        if pfd.revents == 0 {
            continue;
        }
        let (i, client) = who[k];
        match client {
            None => while let Ok(Some(_)) = servers[i].accept() {},
            Some(id) => {
                if let Some(ClientStatus::Closed(c)) = servers[i].client_ready(id, resolver) {
                    drop(c.fd);
                }
            }
        }
    }
}

fn pollfd(fd: RawFd, r: bool, w: bool) -> libc::pollfd {
    let mut events = 0;
    if r {
        events |= libc::POLLIN;
    }
    if w {
        events |= libc::POLLOUT;
    }
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

pub fn export(name: &str, writable: bool, description: &str) -> NbdExport {
    NbdExport {
        name: name.into(),
        backend: name.into(),
        description: description.into(),
        writable,
    }
}

/// Whether an outside tool is installed; prints the skip line when not.
pub fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        println!("not run: {tool} not installed");
    }
    ok
}

/// Run a command, returning (success, stdout+stderr).
pub fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd).args(args).output().expect("spawn tool");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

// ---- raw client -------------------------------------------------------

pub fn send(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).expect("send");
}

pub fn recv(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    s.read_exact(&mut b).expect("recv");
    b
}

pub fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

pub fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// True when the server closes the connection within the read timeout.
pub fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Read the greeting and send client flags (fixed newstyle + no zeroes).
pub fn greet(s: &mut TcpStream) {
    let g = recv(s, 18);
    assert_eq!(&g[0..16], b"NBDMAGICIHAVEOPT");
    send(s, &3u32.to_be_bytes());
}

pub fn option(s: &mut TcpStream, opt: u32, data: &[u8]) {
    let mut m = Vec::new();
    m.extend_from_slice(b"IHAVEOPT");
    m.extend_from_slice(&opt.to_be_bytes());
    m.extend_from_slice(&(data.len() as u32).to_be_bytes());
    m.extend_from_slice(data);
    send(s, &m);
}

/// One option reply: (option, type, data).
pub fn option_reply(s: &mut TcpStream) -> (u32, u32, Vec<u8>) {
    let h = recv(s, 20);
    assert_eq!(be64(&h[0..8]), 0x0003_e889_0455_65a9);
    let len = be32(&h[16..20]) as usize;
    (be32(&h[8..12]), be32(&h[12..16]), recv(s, len))
}

pub fn go_data(name: &str) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&(name.len() as u32).to_be_bytes());
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&0u16.to_be_bytes());
    d
}

/// NBD_OPT_GO; returns (size, flags) after the final ACK.
pub fn go(s: &mut TcpStream, name: &str) -> (u64, u16) {
    option(s, 7, &go_data(name));
    let mut info = None;
    loop {
        let (_, typ, data) = option_reply(s);
        match typ {
            3 if data[0..2] == [0, 0] => {
                info = Some((be64(&data[2..10]), u16::from_be_bytes([data[10], data[11]])))
            }
            3 => {}
            1 => return info.expect("NBD_INFO_EXPORT before ACK"),
            other => panic!("NBD_OPT_GO failed with reply type {other:#x}"),
        }
    }
}

/// Connect, negotiate, enter transmission on `name`.
pub fn connect_to(r: &Running, name: &str, structured: bool) -> (TcpStream, u64, u16) {
    let mut s = r.connect();
    greet(&mut s);
    if structured {
        option(&mut s, 8, &[]);
        assert_eq!(option_reply(&mut s).1, 1);
    }
    let (size, flags) = go(&mut s, name);
    (s, size, flags)
}

pub fn request(
    s: &mut TcpStream,
    flags: u16,
    typ: u16,
    cookie: u64,
    offset: u64,
    len: u32,
    payload: &[u8],
) {
    let mut m = Vec::with_capacity(28 + payload.len());
    m.extend_from_slice(&0x2560_9513u32.to_be_bytes());
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&typ.to_be_bytes());
    m.extend_from_slice(&cookie.to_be_bytes());
    m.extend_from_slice(&offset.to_be_bytes());
    m.extend_from_slice(&len.to_be_bytes());
    m.extend_from_slice(payload);
    send(s, &m);
}

/// A simple reply header: (error, cookie).
pub fn simple_reply(s: &mut TcpStream) -> (u32, u64) {
    let h = recv(s, 16);
    assert_eq!(be32(&h[0..4]), 0x6744_6698, "simple reply magic");
    (be32(&h[4..8]), be64(&h[8..16]))
}

/// A structured chunk: (flags, type, cookie, payload).
pub fn chunk(s: &mut TcpStream) -> (u16, u16, u64, Vec<u8>) {
    let h = recv(s, 20);
    assert_eq!(be32(&h[0..4]), 0x668e_33ef, "structured reply magic");
    let len = be32(&h[16..20]) as usize;
    (
        u16::from_be_bytes([h[4], h[5]]),
        u16::from_be_bytes([h[6], h[7]]),
        be64(&h[8..16]),
        recv(s, len),
    )
}
