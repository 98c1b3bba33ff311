//! vCPU threads: one per vCPU in `KVM_RUN`, taking the big lock for each device access,
//! and [`VcpuControl`], which parks, resumes and runs work on them.
//!
//! Control points: a vCPU thread only looks at requests outside `KVM_RUN`. Before it
//! runs a request's closure or parks, it re-enters `KVM_RUN` once with
//! `immediate_exit` set so that a port or MMIO instruction it just served is completed
//! and the registers are consistent. While it waits for the big lock it still answers
//! pause and `run_on` requests, so a caller that holds the big lock never deadlocks.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::Duration;

use kvm_ioctls::{VcpuExit, VcpuFd};

use super::kick::{install_kick_handler, signal_thread, unblock_kick_signal, ImmediateExit};
use super::vcpu::Vcpu;
use crate::error::{HwError, Result};

/// What the vCPU threads call, under the big lock, for each exit.
pub trait ExitHandler: Send + 'static {
    fn pio_read(&mut self, cpu: usize, port: u16, data: &mut [u8]);
    fn pio_write(&mut self, cpu: usize, port: u16, data: &[u8]);
    fn mmio_read(&mut self, cpu: usize, addr: u64, data: &mut [u8]);
    fn mmio_write(&mut self, cpu: usize, addr: u64, data: &[u8]);
    /// Every other exit. `Park` stops this vCPU until the next `resume_all`.
    fn vcpu_event(&mut self, cpu: usize, event: VcpuEvent) -> VcpuAction;
}

/// A vCPU exit that is not a device access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuEvent {
    /// HLT reached user space (only without an in-kernel LAPIC).
    Hlt,
    /// Triple fault: the CPU shut down.
    Shutdown,
    /// KVM could not emulate something (`KVM_EXIT_INTERNAL_ERROR`).
    InternalError { suberror: u32, data: Vec<u64> },
    /// `KVM_EXIT_SYSTEM_EVENT` (type KVM_SYSTEM_EVENT_*).
    SystemEvent { kind: u32, data: Vec<u64> },
    /// VM entry failed (`KVM_EXIT_FAIL_ENTRY`).
    FailEntry { reason: u64 },
    /// Any exit reason this runner does not handle itself.
    Other { exit_reason: u32 },
    /// `KVM_RUN` itself failed.
    RunError { errno: i32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcpuAction {
    Continue,
    Park,
}

/// A vCPU's host thread, for `query-cpus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuInfo {
    pub index: usize,
    /// Linux thread id (`thread_id` in query-cpus); 0 before the thread started.
    pub thread_id: i32,
    /// Parked (not running guest code) right now.
    pub parked: bool,
}

type Job = Box<dyn FnOnce(&mut Vcpu) + Send>;

#[derive(Default)]
struct CpuCtl {
    thread: Option<libc::pthread_t>,
    tid: i32,
    in_guest: bool,
    parked: bool,
    self_parked: bool,
    exited: bool,
    sync_jobs: VecDeque<Job>,
    posted: VecDeque<Job>,
}

struct CtlState {
    paused: bool,
    quit: bool,
    cpus: Vec<CpuCtl>,
}

struct Shared {
    st: Mutex<CtlState>,
    cond: Condvar,
    imm: Vec<ImmediateExit>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, CtlState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn kick_locked(&self, st: &CtlState, i: usize) {
        if let Some(imm) = self.imm.get(i) {
            imm.set(true);
        }
        if let Some(c) = st.cpus.get(i) {
            if c.in_guest {
                if let Some(t) = c.thread {
                    signal_thread(t);
                }
            }
        }
    }
}

fn runnable(st: &CtlState, i: usize) -> bool {
    !st.paused && !st.quit && !st.cpus[i].self_parked
}

/// Parks, resumes and runs work on the vCPU threads. Cheap to clone.
#[derive(Clone)]
pub struct VcpuControl {
    sh: Arc<Shared>,
}

/// Starts one thread per vCPU. With `start_paused` (`-S`) they park before running any
/// guest code until `resume_all`.
pub fn spawn_vcpus<H: ExitHandler>(
    vcpus: Vec<Vcpu>,
    handler: Arc<Mutex<H>>,
    start_paused: bool,
) -> Result<VcpuControl> {
    install_kick_handler();
    let mut vcpus = vcpus;
    let imm = vcpus
        .iter_mut()
        .map(|v| ImmediateExit::of(v.fd_mut()))
        .collect();
    let n = vcpus.len();
    let sh = Arc::new(Shared {
        st: Mutex::new(CtlState {
            paused: start_paused,
            quit: false,
            cpus: (0..n).map(|_| CpuCtl::default()).collect(),
        }),
        cond: Condvar::new(),
        imm,
        handles: Mutex::new(Vec::new()),
    });
    for vcpu in vcpus {
        let sh2 = sh.clone();
        let h = handler.clone();
        let idx = vcpu.index();
        let handle = std::thread::Builder::new()
            .name(format!("CPU {idx}/KVM"))
            .spawn(move || vcpu_thread(vcpu, idx, sh2, h))
            .map_err(|e| HwError::Memory {
                what: "cannot start vCPU thread".into(),
                source: e,
            })?;
        sh.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }
    // Wait until every thread has registered, so kicks and thread ids are valid.
    let mut st = sh.lock();
    while st.cpus.iter().any(|c| c.thread.is_none() && !c.exited) {
        st = sh.cond.wait(st).unwrap_or_else(|e| e.into_inner());
    }
    drop(st);
    Ok(VcpuControl { sh })
}

impl VcpuControl {
    fn own_index(&self, st: &CtlState) -> Option<usize> {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        st.cpus.iter().position(|c| c.thread == Some(me))
    }

    pub fn count(&self) -> usize {
        self.sh.imm.len()
    }

    /// Stops all vCPUs and waits until none runs guest code (the calling vCPU thread,
    /// if any, is not waited for). Safe to call with or without the big lock.
    pub fn pause_all(&self) {
        let mut st = self.sh.lock();
        st.paused = true;
        for i in 0..st.cpus.len() {
            self.sh.kick_locked(&st, i);
        }
        let me = self.own_index(&st);
        while st
            .cpus
            .iter()
            .enumerate()
            .any(|(i, c)| Some(i) != me && !c.parked && !c.exited)
        {
            st = self.sh.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Asks all vCPUs to stop without waiting (usable from an exit handler).
    pub fn request_pause(&self) {
        let mut st = self.sh.lock();
        st.paused = true;
        for i in 0..st.cpus.len() {
            self.sh.kick_locked(&st, i);
        }
    }

    /// Lets every vCPU run again, including those that parked themselves.
    pub fn resume_all(&self) {
        let mut st = self.sh.lock();
        st.paused = false;
        for c in st.cpus.iter_mut() {
            c.self_parked = false;
        }
        self.sh.cond.notify_all();
    }

    pub fn is_paused(&self) -> bool {
        self.sh.lock().paused
    }

    /// Runs `f` on vCPU `cpu`'s thread and returns its result. The vCPU is kicked out
    /// of the guest for it and goes on afterwards (or stays parked if paused). Must not
    /// be called from that vCPU's own thread.
    pub fn run_on<R, F>(&self, cpu: usize, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Vcpu) -> R + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        {
            let mut st = self.sh.lock();
            if self.own_index(&st) == Some(cpu) {
                return Err(HwError::Invalid {
                    what: "run_on called from the target vCPU".into(),
                });
            }
            let c = st.cpus.get_mut(cpu).ok_or(HwError::NoSuchCpu(cpu))?;
            if c.exited {
                return Err(HwError::NoSuchCpu(cpu));
            }
            c.sync_jobs.push_back(Box::new(move |v| {
                let _ = tx.send(f(v));
            }));
            self.sh.kick_locked(&st, cpu);
            self.sh.cond.notify_all();
        }
        rx.recv().map_err(|_| HwError::NoSuchCpu(cpu))
    }

    /// Queues `f` to run on vCPU `cpu` before it next enters the guest, after any exit
    /// it is serving has completed (resets, loaders: work that changes registers).
    /// Does not wait.
    pub fn post<F>(&self, cpu: usize, f: F) -> Result<()>
    where
        F: FnOnce(&mut Vcpu) + Send + 'static,
    {
        let mut st = self.sh.lock();
        let c = st.cpus.get_mut(cpu).ok_or(HwError::NoSuchCpu(cpu))?;
        if c.exited {
            return Err(HwError::NoSuchCpu(cpu));
        }
        c.posted.push_back(Box::new(f));
        self.sh.kick_locked(&st, cpu);
        self.sh.cond.notify_all();
        Ok(())
    }

    /// Thread ids and park state of every vCPU.
    pub fn info(&self) -> Vec<VcpuInfo> {
        let st = self.sh.lock();
        st.cpus
            .iter()
            .enumerate()
            .map(|(index, c)| VcpuInfo {
                index,
                thread_id: c.tid,
                parked: c.parked,
            })
            .collect()
    }

    /// Ends every vCPU thread and waits for them (unless called from one of them).
    pub fn quit(&self) {
        let me = {
            let mut st = self.sh.lock();
            st.quit = true;
            for i in 0..st.cpus.len() {
                self.sh.kick_locked(&st, i);
            }
            self.sh.cond.notify_all();
            self.own_index(&st)
        };
        if me.is_none() {
            let handles: Vec<_> = self
                .sh
                .handles
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..)
                .collect();
            for h in handles {
                let _ = h.join();
            }
        }
    }
}

/// An exit copied out of kvm_run, so the vCPU can be lent to jobs while it is served.
enum Exit {
    IoIn {
        port: u16,
        size: usize,
        count: usize,
    },
    IoOut {
        port: u16,
        size: usize,
        data: Vec<u8>,
    },
    MmioRead {
        addr: u64,
        len: usize,
    },
    MmioWrite {
        addr: u64,
        data: Vec<u8>,
    },
    Event(VcpuEvent),
    Interrupted,
}

fn io_size(fd: &mut VcpuFd) -> usize {
    let run = fd.get_kvm_run();
    // SAFETY: only called right after a KVM_EXIT_IO, where `io` is the live union field.
    let io = unsafe { run.__bindgen_anon_1.io };
    io.size as usize
}

fn take_exit(fd: &mut VcpuFd) -> Exit {
    let exit = match fd.run() {
        Ok(VcpuExit::IoIn(port, data)) => Exit::IoIn {
            port,
            size: 0,
            count: data.len(),
        },
        Ok(VcpuExit::IoOut(port, data)) => Exit::IoOut {
            port,
            size: 0,
            data: data.to_vec(),
        },
        Ok(VcpuExit::MmioRead(addr, data)) => Exit::MmioRead {
            addr,
            len: data.len(),
        },
        Ok(VcpuExit::MmioWrite(addr, data)) => Exit::MmioWrite {
            addr,
            data: data.to_vec(),
        },
        Ok(VcpuExit::Hlt) => Exit::Event(VcpuEvent::Hlt),
        Ok(VcpuExit::Shutdown) => Exit::Event(VcpuEvent::Shutdown),
        Ok(VcpuExit::InternalError) => Exit::Event(VcpuEvent::InternalError {
            suberror: 0,
            data: vec![],
        }),
        Ok(VcpuExit::SystemEvent(kind, data)) => Exit::Event(VcpuEvent::SystemEvent {
            kind,
            data: data.to_vec(),
        }),
        Ok(VcpuExit::FailEntry(reason, _)) => Exit::Event(VcpuEvent::FailEntry { reason }),
        Ok(VcpuExit::Intr) => Exit::Interrupted,
        Ok(VcpuExit::Unsupported(r)) => Exit::Event(VcpuEvent::Other { exit_reason: r }),
        Ok(_) => {
            let r = fd.get_kvm_run().exit_reason;
            Exit::Event(VcpuEvent::Other { exit_reason: r })
        }
        Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Exit::Interrupted,
        Err(e) => Exit::Event(VcpuEvent::RunError { errno: e.errno() }),
    };
    match exit {
        Exit::IoIn { port, count, .. } => {
            let size = io_size(fd).max(1);
            Exit::IoIn {
                port,
                size,
                count: count / size,
            }
        }
        Exit::IoOut { port, data, .. } => Exit::IoOut {
            port,
            size: io_size(fd).max(1),
            data,
        },
        Exit::Event(VcpuEvent::InternalError { .. }) => {
            let run = fd.get_kvm_run();
            // SAFETY: exit_reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is live.
            let ie = unsafe { run.__bindgen_anon_1.internal };
            let n = (ie.ndata as usize).min(ie.data.len());
            Exit::Event(VcpuEvent::InternalError {
                suberror: ie.suberror,
                data: ie.data[..n].to_vec(),
            })
        }
        other => other,
    }
}

/// Copies an IN result into kvm_run for KVM to complete on the next entry.
fn complete_io_in(fd: &mut VcpuFd, run_size: usize, data: &[u8]) {
    let run = fd.get_kvm_run();
    // SAFETY: the last exit was KVM_EXIT_IO (IN); nothing ran since.
    let io = unsafe { run.__bindgen_anon_1.io };
    let base = run as *mut kvm_bindings::kvm_run as *mut u8;
    let off = io.data_offset as usize;
    if off
        .checked_add(data.len())
        .is_some_and(|end| end <= run_size)
    {
        // SAFETY: the data area lies inside the kvm_run mapping of `run_size` bytes
        // (offset chosen by KVM, bounds-checked above) and does not overlap `data`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), base.add(off), data.len()) };
    }
}

fn complete_mmio_read(fd: &mut VcpuFd, data: &[u8]) {
    let run = fd.get_kvm_run();
    // SAFETY: the last exit was KVM_EXIT_MMIO (read); nothing ran since.
    let mmio = unsafe { &mut run.__bindgen_anon_1.mmio };
    let n = data.len().min(mmio.data.len());
    mmio.data[..n].copy_from_slice(&data[..n]);
}

/// Re-enters KVM_RUN with immediate_exit set: completes a served I/O instruction
/// without running any further guest code. A string instruction may need another
/// exit to finish; that exit is returned to be served like any other.
fn complete_pending(vcpu: &mut Vcpu, imm: &ImmediateExit) -> Option<Exit> {
    imm.set(true);
    match take_exit(vcpu.fd_mut()) {
        Exit::Interrupted => None,
        other => Some(other),
    }
}

fn vcpu_thread<H: ExitHandler>(mut vcpu: Vcpu, i: usize, sh: Arc<Shared>, bql: Arc<Mutex<H>>) {
    let imm = sh.imm[i];
    unblock_kick_signal();
    {
        let mut st = sh.lock();
        // SAFETY: pthread_self and gettid have no preconditions.
        st.cpus[i].thread = Some(unsafe { libc::pthread_self() });
        // SAFETY: as above.
        st.cpus[i].tid = unsafe { libc::gettid() };
        sh.cond.notify_all();
    }
    let mut pending = false;
    loop {
        // Control point: leaves with an exit to serve, from the guest or from
        // completing a pending instruction.
        let exit = 'control: {
            let mut st = sh.lock();
            loop {
                if st.quit {
                    st.cpus[i].exited = true;
                    st.cpus[i].parked = true;
                    sh.cond.notify_all();
                    return;
                }
                let has_jobs = !st.cpus[i].sync_jobs.is_empty() || !st.cpus[i].posted.is_empty();
                if pending && (has_jobs || !runnable(&st, i)) {
                    pending = false;
                    if let Some(exit) = complete_pending(&mut vcpu, &imm) {
                        break 'control exit;
                    }
                }
                let job = st.cpus[i]
                    .sync_jobs
                    .pop_front()
                    .or_else(|| st.cpus[i].posted.pop_front());
                if let Some(job) = job {
                    drop(st);
                    job(&mut vcpu);
                    st = sh.lock();
                    continue;
                }
                if !runnable(&st, i) {
                    if !st.cpus[i].parked {
                        st.cpus[i].parked = true;
                        sh.cond.notify_all();
                    }
                    st = sh.cond.wait(st).unwrap_or_else(|e| e.into_inner());
                    continue;
                }
                break;
            }
            st.cpus[i].parked = false;
            imm.set(false);
            st.cpus[i].in_guest = true;
            drop(st);
            let exit = take_exit(vcpu.fd_mut());
            sh.lock().cpus[i].in_guest = false;
            exit
        };
        pending = false;
        match exit {
            Exit::Interrupted => {}
            Exit::IoIn { port, size, count } => {
                let mut buf = vec![0u8; size * count];
                let Some(mut h) = lock_bql(&bql, &sh, &mut vcpu, i) else {
                    continue;
                };
                for chunk in buf.chunks_mut(size) {
                    h.pio_read(i, port, chunk);
                }
                drop(h);
                let run_size = vcpu.run_size();
                complete_io_in(vcpu.fd_mut(), run_size, &buf);
                pending = true;
            }
            Exit::IoOut { port, size, data } => {
                let Some(mut h) = lock_bql(&bql, &sh, &mut vcpu, i) else {
                    continue;
                };
                for chunk in data.chunks(size) {
                    h.pio_write(i, port, chunk);
                }
                pending = true;
            }
            Exit::MmioRead { addr, len } => {
                let mut buf = vec![0u8; len];
                let Some(mut h) = lock_bql(&bql, &sh, &mut vcpu, i) else {
                    continue;
                };
                h.mmio_read(i, addr, &mut buf);
                drop(h);
                complete_mmio_read(vcpu.fd_mut(), &buf);
                pending = true;
            }
            Exit::MmioWrite { addr, data } => {
                let Some(mut h) = lock_bql(&bql, &sh, &mut vcpu, i) else {
                    continue;
                };
                h.mmio_write(i, addr, &data);
                pending = true;
            }
            Exit::Event(ev) => {
                let Some(mut h) = lock_bql(&bql, &sh, &mut vcpu, i) else {
                    continue;
                };
                let action = h.vcpu_event(i, ev);
                drop(h);
                if action == VcpuAction::Park {
                    sh.lock().cpus[i].self_parked = true;
                }
            }
        }
    }
}

/// Takes the big lock, answering pause and `run_on` requests while it waits so that a
/// requester holding the lock is never deadlocked. `None` when asked to quit.
fn lock_bql<'a, H>(
    bql: &'a Mutex<H>,
    sh: &Shared,
    vcpu: &mut Vcpu,
    i: usize,
) -> Option<MutexGuard<'a, H>> {
    let mut wait = Duration::from_micros(20);
    loop {
        match bql.try_lock() {
            Ok(g) => return Some(g),
            Err(TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => {}
        }
        let mut st = sh.lock();
        if st.quit {
            return None;
        }
        while let Some(job) = st.cpus[i].sync_jobs.pop_front() {
            drop(st);
            job(vcpu);
            st = sh.lock();
        }
        if !runnable(&st, i) && !st.cpus[i].parked {
            st.cpus[i].parked = true;
            sh.cond.notify_all();
        }
        let (g, _) = sh
            .cond
            .wait_timeout(st, wait)
            .unwrap_or_else(|e| e.into_inner());
        drop(g);
        wait = (wait * 2).min(Duration::from_millis(1));
    }
}
