//! `-object iothread`: a real host thread whose id query-iothreads
//! reports. Our block layer runs every request on the main loop (see
//! DESIGN.md), so no work is ever handed to it: the thread idles until
//! object-del stops and joins it. That keeps what management tools see
//! (a thread per iothread, with its tid for pinning) true.

use std::any::Any;
use std::sync::mpsc;
use std::thread::JoinHandle;

use serde_json::Value;

use super::props::{Input, QomError};
use super::types::PropDef;
use super::ObjectImpl;

pub struct IoThread {
    thread_id: i64,
    /// Dropping the sender wakes the thread, which then exits.
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl IoThread {
    /// Not yet started: the thread starts on complete(), as in QEMU.
    pub fn new() -> Self {
        IoThread {
            thread_id: -1,
            stop: None,
            handle: None,
        }
    }

    pub fn thread_id(&self) -> i64 {
        self.thread_id
    }

    fn start(&mut self, id: &str) -> Result<(), QomError> {
        let (tid_tx, tid_rx) = mpsc::channel::<i64>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        // Linux thread names hold 15 bytes.
        let name: String = format!("IO {id}").chars().take(15).collect();
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                // SAFETY: gettid has no preconditions and cannot fail.
                let tid = unsafe { libc::syscall(libc::SYS_gettid) };
                let _ = tid_tx.send(tid);
                // Idle until the owner drops the sender.
                let _ = stop_rx.recv();
            })
            .map_err(|e| QomError::generic(format!("failed to create iothread: {e}")))?;
        self.thread_id = tid_rx.recv().unwrap_or(-1);
        self.stop = Some(stop_tx);
        self.handle = Some(handle);
        Ok(())
    }
}

impl Default for IoThread {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for IoThread {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl ObjectImpl for IoThread {
    fn get(&self, p: &PropDef) -> Result<Value, QomError> {
        Err(QomError::prop_not_found(p.name))
    }

    fn set(&mut self, _: &str, p: &PropDef, _: &Input) -> Result<(), QomError> {
        Err(QomError::prop_not_found(p.name))
    }

    fn complete(&mut self, path: &str, _: &super::Qom) -> Result<(), QomError> {
        let id = path.rsplit('/').next().unwrap_or(path);
        self.start(id)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_reports_a_real_tid_and_stops_on_drop() {
        let mut t = IoThread::new();
        t.complete("/objects/io0", &super::super::Qom::new())
            .unwrap();
        let tid = t.thread_id();
        assert!(tid > 0);
        let pid = std::process::id();
        assert!(std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists());
        drop(t);
        assert!(!std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists());
    }
}
