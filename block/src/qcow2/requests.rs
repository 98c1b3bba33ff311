//! Reads and writes of guest data as requests that can stop (see
//! `crate::request`), run by run as QEMU 2.8's qcow2_co_preadv and
//! qcow2_co_pwritev do:
//!
//! - a read signals its run's event (read_aio, read_backing_aio,
//!   read_compressed) before the data is read, and reads the backing file
//!   through a request on the backing node, which may stop too;
//! - a write waits for an allocation in flight it starts in, or stops short
//!   of one further on; then it overwrites allocated clusters, or allocates
//!   new ones (entered in the list of allocations in flight), signals
//!   write_aio before the data goes out, copies the untouched head and tail
//!   of its clusters (cow_read, the read's own event, cow_write) and links
//!   the clusters into the L2 table, looked up again at that time.
//!
//! The synchronous driver calls are these requests polled once, with the
//! state on the stack; it is boxed only when a request stops. Over a file
//! child that is not blkdebug, events have no effect and nothing can stop
//! the request, so an allocating write merges head, data and tail into one
//! write to the file.

use super::inflight::{Dependency, Guard};
use super::payload::Payload;
use super::{Cl, Qcow2, L2E_OFFSET_MASK, OFLAG_COMPRESSED, OFLAG_COPIED};
use crate::driver::Children;
use crate::drivers::blkdebug::BlkdebugEvent;
use crate::error::{BlockError, BlockResult};
use crate::node::{lock, signal_stop, ReadOp};
use crate::request::{breakpoint, ready_or_busy, with_state, DriverReq, Poll, ReqKind, Wait};

/// Where a write has got to.
struct WriteState {
    /// Bytes of the request written and linked.
    done: u64,
    step: WStep,
    /// Polled before: the request was stopped and goes on now.
    polled: bool,
}

enum WStep {
    /// At the start of a run: dependencies, then the plan.
    Plan,
    /// Stopped at write_aio before overwriting `len` bytes of allocated
    /// clusters at `host`; entered in flight so discards wait.
    Overwrite { host: u64, len: u64, _guard: Guard },
    /// Clusters allocated for the run and not linked yet.
    Alloc(AllocRun),
}

/// One allocation in flight (QEMU's QCowL2Meta).
struct AllocRun {
    /// In the list of allocations in flight until the run ends.
    _guard: Guard,
    /// Guest offset of the first cluster, host offset of its new place.
    guest: u64,
    host: u64,
    /// Clusters allocated.
    n: u64,
    /// Where the request's data lies in them.
    in_off: u64,
    bytes: u64,
    phase: Phase,
    /// A COW region's content, kept while stopped before its write.
    cow: Option<Vec<u8>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// write_aio signalled: the data goes out next.
    Data,
    /// Copying the head (`tail` false) or tail region.
    Cow { tail: bool, at: CowAt },
    /// Everything written: the L2 entries next.
    Link,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum CowAt {
    /// Nothing signalled yet.
    Start,
    /// cow_read signalled: the read's own event next.
    ReadEvent,
    /// The read's event signalled: the read next.
    Read,
    /// Read, and stopped at cow_write: the write next.
    Write,
}

impl WriteState {
    fn new() -> WriteState {
        WriteState {
            done: 0,
            step: WStep::Plan,
            polled: false,
        }
    }
}

/// Where a read has got to.
struct ReadState {
    done: u64,
    step: RStep,
}

enum RStep {
    /// At the start of a run.
    Plan,
    /// Stopped at the run's read event: read it next (its mapping looked
    /// up again) without signalling again.
    Signalled,
    /// Reading `n` bytes of a `len`-byte run from the backing node.
    Backing { op: Box<ReadOp>, len: u64, n: u64 },
}

impl ReadState {
    fn new() -> ReadState {
        ReadState {
            done: 0,
            step: RStep::Plan,
        }
    }
}

/// What an allocation found and got, before it is entered in flight.
struct AllocPlan {
    guest: u64,
    host: u64,
    n: u64,
    in_off: u64,
    bytes: u64,
    /// The clusters are new at the end of the file (they read as zero).
    fresh: bool,
    old_first: u64,
    old_last: u64,
}

/// Poll's result for a step: Ok(Some(wait)) stops the request.
type Step = BlockResult<Option<Wait>>;

impl Qcow2 {
    /// The synchronous read into `buf` from `off`: the read request polled
    /// once, as a request that cannot stop.
    pub(crate) fn read_now(&mut self, c: &Children, off: u64, buf: &mut [u8]) -> BlockResult<()> {
        self.check_range(off, buf.len() as u64)?;
        let mut st = ReadState::new();
        let mut gate = Wait::none();
        ready_or_busy(breakpoint::synchronous(|| {
            self.drive_read(c, &mut st, off, buf, &mut gate)
        }))
    }

    /// The synchronous write of `data` at `off`: the write request polled
    /// once, as a request that cannot stop.
    pub(crate) fn write_now(
        &mut self,
        c: &Children,
        off: u64,
        data: Payload<'_>,
        fua: bool,
    ) -> BlockResult<()> {
        self.check_writable()?;
        self.check_range(off, data.len())?;
        let mut st = WriteState::new();
        let mut gate = Wait::none();
        ready_or_busy(breakpoint::synchronous(|| {
            self.drive_write(c, &mut st, off, data, fua, &mut gate)
        }))
    }

    pub(crate) fn do_write(&mut self, c: &Children, off: u64, data: &[u8]) -> BlockResult<()> {
        self.write_now(c, off, Payload::Mem(data), false)
    }

    /// The driver's poll_read.
    pub(crate) fn poll_read_req(
        &mut self,
        c: &Children,
        req: &mut DriverReq,
        buf: &mut [u8],
    ) -> Poll<BlockResult<()>> {
        if req.state.is_none() {
            if let Err(e) = self.check_range(req.offset, buf.len() as u64) {
                return Poll::Ready(Err(e));
            }
        }
        let DriverReq {
            offset,
            state,
            gate,
            ..
        } = req;
        with_state(state, ReadState::new, |st| {
            self.drive_read(c, st, *offset, buf, gate)
        })
    }

    /// The driver's poll_write, for data and zero writes.
    pub(crate) fn poll_write_req(
        &mut self,
        c: &Children,
        req: &mut DriverReq,
        data: &[u8],
    ) -> Poll<BlockResult<()>> {
        match req.kind {
            ReqKind::Write { fua } => {
                if req.state.is_none() {
                    let r = self.check_writable();
                    if let Err(e) = r.and_then(|_| self.check_range(req.offset, data.len() as u64))
                    {
                        return Poll::Ready(Err(e));
                    }
                }
                let DriverReq {
                    offset,
                    state,
                    gate,
                    ..
                } = req;
                with_state(state, WriteState::new, |st| {
                    self.drive_write(c, st, *offset, Payload::Mem(data), fua, gate)
                })
            }
            ReqKind::WriteZeroes { len, may_unmap } => {
                let r = self.check_writable();
                if let Err(e) = r.and_then(|_| self.check_range(req.offset, len)) {
                    return Poll::Ready(Err(e));
                }
                // Zeroing rewrites whole clusters' entries: wait for every
                // write in flight on them. Then nothing stops it any more.
                let cs = self.cs;
                let (start, end) = (
                    req.offset / cs * cs,
                    (req.offset + len).next_multiple_of(cs),
                );
                if let Some(t) = self.inflight.overlapping(start, end) {
                    req.gate = Wait::on(t);
                    return Poll::Pending;
                }
                let off = req.offset;
                Poll::Ready(breakpoint::synchronous(|| {
                    self.do_write_zeroes(c, off, len, may_unmap)
                }))
            }
            ReqKind::Read => Poll::Ready(Err(BlockError::InvalidArgument(
                "a read polled as a write".into(),
            ))),
        }
    }

    /// Fails when a write in flight overlaps `off..off + len` (for callers
    /// that cannot wait: discard, compressed writes).
    pub(crate) fn check_no_write_in_flight(&self, off: u64, len: u64) -> BlockResult<()> {
        let cs = self.cs;
        let (start, end) = (off / cs * cs, (off + len).next_multiple_of(cs));
        match self.inflight.overlapping(start, end) {
            Some(_) => Err(crate::request::busy()),
            None => Ok(()),
        }
    }

    /// Fails while any write is in flight: for what restructures metadata
    /// (QEMU would drain, and wait for ever on a stopped request).
    pub(crate) fn check_idle(&self) -> BlockResult<()> {
        if self.inflight.is_empty() {
            return Ok(());
        }
        Err(BlockError::InUse(
            "qcow2: Writes to the image are stopped in flight; resume them first".into(),
        ))
    }

    /// Polls a write of `data` at `off0`; `gate` gets what it waits for.
    fn drive_write(
        &mut self,
        c: &Children,
        st: &mut WriteState,
        off0: u64,
        data: Payload<'_>,
        fua: bool,
        gate: &mut Wait,
    ) -> Poll<BlockResult<()>> {
        // QEMU 2.8 drops the driver of a corrupt image: what was stopped
        // fails as its COW would, with ENOMEDIUM; as after a close.
        if st.polled && (self.corrupt || self.closed) {
            st.step = WStep::Plan;
            return Poll::Ready(Err(BlockError::NoMedium("No medium found".into())));
        }
        st.polled = true;
        loop {
            let r = match &mut st.step {
                WStep::Plan if st.done == data.len() => break,
                WStep::Plan => self.plan_run(c, st, off0 + st.done, data.skip(st.done)),
                WStep::Overwrite { host, len, .. } => {
                    let (host, len) = (*host, *len);
                    self.pwrite_payload(c, host, data.slice(st.done, len))
                        .map(|_| {
                            st.done += len;
                            st.step = WStep::Plan;
                            None
                        })
                }
                WStep::Alloc(run) if run.phase == Phase::Link => {
                    let bytes = run.bytes;
                    self.link(c, run.guest, run.host, run.n).map(|_| {
                        st.done += bytes;
                        // Takes the allocation off the list, letting its waiters go on.
                        st.step = WStep::Plan;
                        None
                    })
                }
                WStep::Alloc(run) => {
                    let d = data.slice(st.done, run.bytes);
                    self.alloc_step(c, run, d)
                }
            };
            match r {
                Ok(None) => {}
                Ok(Some(w)) => {
                    *gate = w;
                    return Poll::Pending;
                }
                Err(e) => {
                    st.step = WStep::Plan;
                    return Poll::Ready(Err(e));
                }
            }
        }
        if fua {
            let r = self.flush_metadata(c, false).and_then(|_| self.sync(c));
            return Poll::Ready(r);
        }
        Poll::Ready(Ok(()))
    }

    /// The start of a run at `off` (`rest` is the data left).
    fn plan_run(&mut self, c: &Children, st: &mut WriteState, off: u64, rest: Payload<'_>) -> Step {
        self.check_writable()?;
        let avail = match self.inflight.write_dependency(off, rest.len()) {
            Dependency::Wait(t) => return Ok(Some(Wait::on(t))),
            Dependency::Clear(n) => n,
        };
        let (kind, n) = self.run(c, off, avail)?;
        let Cl::Normal {
            off: host,
            copied: true,
        } = kind
        else {
            return self.alloc_run(c, st, off, rest.slice(0, avail));
        };
        if self.past_eof(c, host + n - 1) {
            return Err(self.signal_corruption(
                c,
                true,
                Some(host & !(self.cs - 1)),
                Some(self.cs),
                format!(
                    "Data cluster offset {:#x} is past the end of the image file",
                    host
                ),
            ));
        }
        if let Some(w) = signal_stop(c, Some(BlkdebugEvent::WriteAio)) {
            let cs = self.cs;
            let guard =
                self.inflight
                    .register(off / cs * cs, (off + n).next_multiple_of(cs), false);
            st.step = WStep::Overwrite {
                host,
                len: n,
                _guard: guard,
            };
            return Ok(Some(w));
        }
        self.pwrite_payload(c, host, rest.slice(0, n))?;
        st.done += n;
        Ok(None)
    }

    /// Allocates clusters for (the start of) `data` at `off` and enters them
    /// in flight; over a blkdebug file the rest follows in `alloc_step`.
    fn alloc_run(
        &mut self,
        c: &Children,
        st: &mut WriteState,
        off: u64,
        data: Payload<'_>,
    ) -> Step {
        let split = c.file_observes_events();
        let p = self.plan_alloc(c, off, data.len())?;
        let guard = self
            .inflight
            .register(p.guest, p.guest + p.n * self.cs, true);
        // QEMU's overlap check comes before write_aio.
        self.check_data_target(c, p.host + p.in_off, p.bytes)?;
        if !split {
            self.write_merged(c, &p, data.slice(0, p.bytes))?;
            self.link(c, p.guest, p.host, p.n)?;
            drop(guard);
            st.done += p.bytes;
            return Ok(None);
        }
        st.step = WStep::Alloc(AllocRun {
            _guard: guard,
            guest: p.guest,
            host: p.host,
            n: p.n,
            in_off: p.in_off,
            bytes: p.bytes,
            phase: Phase::Data,
            cow: None,
        });
        Ok(signal_stop(c, Some(BlkdebugEvent::WriteAio)))
    }

    /// Finds how many clusters from `off` need new ones (QEMU's
    /// count_cow_clusters: up to an allocated, unshared cluster) and
    /// allocates them; ordering: refcounts, L2 table, then L1 entry.
    fn plan_alloc(&mut self, c: &Children, off: u64, len: u64) -> BlockResult<AllocPlan> {
        self.mark_dirty(c)?;
        let cs = self.cs;
        let cl = off >> self.cb;
        let in_off = off & (cs - 1);
        let entries = 1u64 << self.l2_bits;
        let l1i = cl >> self.l2_bits;
        let l2i = cl & (entries - 1);
        let l2_off = self.writable_l2(c, l1i)?;
        let max_n = (in_off + len).div_ceil(cs).min(entries - l2i);
        let slot = self.get_l2(c, l2_off)?;
        let table = &self.l2.slots[slot].table;
        let mut n = 1u64;
        while n < max_n {
            let e = table[(l2i + n) as usize];
            if e & OFLAG_COPIED != 0
                && e & (OFLAG_COMPRESSED | super::OFLAG_ZERO) == 0
                && e & L2E_OFFSET_MASK != 0
            {
                break;
            }
            n += 1;
        }
        let old_first = table[l2i as usize];
        let old_last = table[(l2i + n - 1) as usize];
        let fresh_from = self.file_len.next_multiple_of(cs);
        let host = self.alloc_data_clusters(c, n)?;
        Ok(AllocPlan {
            guest: cl * cs,
            host,
            n,
            in_off,
            bytes: (n * cs - in_off).min(len),
            fresh: host >= fresh_from,
            old_first,
            old_last,
        })
    }

    /// Data plus the old content of the head and tail in one write (only
    /// where no one sees the events in between); skips copying what is known
    /// to read as zero into clusters new at the end of the file. The data
    /// touches every cluster of the run, which `alloc_run` has checked just
    /// before, and reading the old content allocates nothing: no second check.
    fn write_merged(&mut self, c: &Children, p: &AllocPlan, data: Payload<'_>) -> BlockResult<()> {
        let total = p.n * self.cs;
        let tail = p.in_off + p.bytes;
        let need_head = p.in_off > 0 && !(p.fresh && self.reads_zero(c, p.old_first));
        // Past the image's end a cluster holds zeroes whatever lies below
        // (cow_read never asks the backing there).
        let tail_past_end = p.guest + tail >= self.hdr.size;
        let need_tail =
            tail < total && !(p.fresh && (tail_past_end || self.reads_zero(c, p.old_last)));
        if !need_head && !need_tail {
            return self.pwrite_checked(c, p.host + p.in_off, data);
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.resize(total as usize, 0);
        let (in_off, tail) = (p.in_off as usize, tail as usize);
        let mut r = Ok(());
        if need_head {
            r = self.cow_read(c, p.guest, &mut buf[..in_off]);
        }
        if r.is_ok() {
            r = data.fill(&mut buf[in_off..tail]);
        }
        if r.is_ok() && need_tail {
            r = self.cow_read(c, p.guest + tail as u64, &mut buf[tail..]);
        }
        if r.is_ok() {
            r = self.pwrite_checked(c, p.host, Payload::Mem(&buf));
        }
        self.buf = buf;
        r
    }

    /// The COW region of `run`: (offset into its clusters, length).
    fn cow_region(&self, run: &AllocRun, tail: bool) -> (u64, u64) {
        if tail {
            let start = run.in_off + run.bytes;
            (start, run.n * self.cs - start)
        } else {
            (0, run.in_off)
        }
    }

    /// One step of an allocation over a blkdebug file (QEMU's order:
    /// data, COW head, COW tail; each COW is cow_read, the read's event,
    /// the read, cow_write, the write). `data` is the run's data.
    fn alloc_step(&mut self, c: &Children, run: &mut AllocRun, data: Payload<'_>) -> Step {
        let (tail, at) = match run.phase {
            Phase::Data => {
                self.pwrite_payload(c, run.host + run.in_off, data)?;
                run.phase = Phase::Cow {
                    tail: false,
                    at: CowAt::Start,
                };
                return Ok(None);
            }
            Phase::Cow { tail, at } => (tail, at),
            Phase::Link => return Ok(None),
        };
        let (start, len) = self.cow_region(run, tail);
        let next = if tail {
            Phase::Link
        } else {
            Phase::Cow {
                tail: true,
                at: CowAt::Start,
            }
        };
        if len == 0 {
            run.phase = next;
            return Ok(None);
        }
        let goff = run.guest + start;
        let (hstart, ulen) = (run.host + start, len as usize);
        match at {
            CowAt::Start => {
                run.phase = Phase::Cow {
                    tail,
                    at: CowAt::ReadEvent,
                };
                Ok(signal_stop(c, Some(BlkdebugEvent::CowRead)))
            }
            CowAt::ReadEvent => {
                run.phase = Phase::Cow {
                    tail,
                    at: CowAt::Read,
                };
                let ev = if goff >= self.hdr.size {
                    None
                } else {
                    let (kind, n) = self.run(c, goff, len)?;
                    self.read_event(c, kind, goff, n)?
                };
                Ok(signal_stop(c, ev))
            }
            CowAt::Read => {
                let mut buf = std::mem::take(&mut self.buf);
                buf.clear();
                buf.resize(ulen, 0);
                let mut r = self.cow_read(c, goff, &mut buf);
                // QEMU's overlap check comes before cow_write.
                if r.is_ok() {
                    r = self.check_data_target(c, hstart, len);
                }
                if let Err(e) = r {
                    self.buf = buf;
                    return Err(e);
                }
                if let Some(w) = signal_stop(c, Some(BlkdebugEvent::CowWrite)) {
                    run.cow = Some(buf.clone());
                    run.phase = Phase::Cow {
                        tail,
                        at: CowAt::Write,
                    };
                    self.buf = buf;
                    return Ok(Some(w));
                }
                let r = self.pwrite_data(c, hstart, &buf);
                self.buf = buf;
                r?;
                run.phase = next;
                Ok(None)
            }
            CowAt::Write => {
                let Some(buf) = run.cow.take() else {
                    return Err(BlockError::Generic("qcow2: COW data lost".into()));
                };
                self.pwrite_data(c, hstart, &buf)?;
                run.phase = next;
                Ok(None)
            }
        }
    }

    /// Reads the guest data at `goff` as it is now, for a COW: zeroes past
    /// the image's end, where the backing is never asked.
    fn cow_read(&mut self, c: &Children, goff: u64, buf: &mut [u8]) -> BlockResult<()> {
        let mut pos = 0usize;
        while pos < buf.len() {
            let o = goff + pos as u64;
            if o >= self.hdr.size {
                buf[pos..].fill(0);
                break;
            }
            let (kind, n) = self.run(c, o, (buf.len() - pos) as u64)?;
            let n = n as usize;
            self.read_sync(c, kind, o, &mut buf[pos..pos + n])?;
            pos += n;
        }
        Ok(())
    }

    /// Points the L2 entries of `n` guest clusters from `guest` at the new
    /// clusters from `host`, and frees what they pointed at before (QEMU's
    /// qcow2_alloc_cluster_link_l2). The table is looked up again: the
    /// request may have stopped since it was planned.
    fn link(&mut self, c: &Children, guest: u64, host: u64, n: u64) -> BlockResult<()> {
        self.mark_dirty(c)?;
        let cs = self.cs;
        let cl = guest >> self.cb;
        let l1i = cl >> self.l2_bits;
        let l2i = cl & ((1u64 << self.l2_bits) - 1);
        let l2_off = self.writable_l2(c, l1i)?;
        let slot = self.get_l2(c, l2_off)?;
        self.frees.clear();
        for i in 0..n {
            let idx = (l2i + i) as usize;
            let old = self.l2.slots[slot].table[idx];
            if old & OFLAG_COMPRESSED != 0 || old & L2E_OFFSET_MASK != 0 {
                self.frees.push(old);
            }
            self.l2.slots[slot].table[idx] = (host + i * cs) | OFLAG_COPIED;
        }
        self.l2.mark_dirty(slot);
        self.release_frees(c)
    }

    /// Bytes of a run at `off` (of `n` bytes, unallocated here) that come
    /// from the backing file; the rest reads as zero.
    fn backing_bytes(&mut self, c: &Children, off: u64, n: u64) -> BlockResult<u64> {
        let Some(b) = &c.backing else {
            return Ok(0);
        };
        if off >= self.hdr.size {
            return Ok(0);
        }
        let blen = lock(b).length()?;
        Ok(blen.saturating_sub(off).min(n))
    }

    /// The event QEMU signals before reading a run of `n` bytes at `off`
    /// stored as `kind` (none for zeroes, nor for a cached compressed cluster).
    #[inline]
    fn read_event(
        &mut self,
        c: &Children,
        kind: Cl,
        off: u64,
        n: u64,
    ) -> BlockResult<Option<BlkdebugEvent>> {
        Ok(match kind {
            Cl::Unalloc => {
                (self.backing_bytes(c, off, n)? > 0).then_some(BlkdebugEvent::ReadBackingAio)
            }
            Cl::Zero { .. } => None,
            Cl::Normal { .. } => Some(BlkdebugEvent::ReadAio),
            Cl::Compressed { entry } => (self.dcache != Some(entry & self.coff_mask))
                .then_some(BlkdebugEvent::ReadCompressed),
        })
    }

    /// Reads one run's worth of guest data stored as `kind`, synchronously.
    #[inline]
    fn read_sync(&mut self, c: &Children, kind: Cl, off: u64, buf: &mut [u8]) -> BlockResult<()> {
        match kind {
            Cl::Unalloc => self.read_backing(c, off, buf),
            Cl::Zero { .. } => {
                buf.fill(0);
                Ok(())
            }
            Cl::Normal { off: host, .. } => self.pread(c, host, buf),
            Cl::Compressed { entry } => {
                let in_off = (off & (self.cs - 1)) as usize;
                self.read_compressed(c, entry, in_off, buf)
            }
        }
    }

    /// Polls a read into `buf` from `off0`.
    #[inline]
    fn drive_read(
        &mut self,
        c: &Children,
        st: &mut ReadState,
        off0: u64,
        buf: &mut [u8],
        gate: &mut Wait,
    ) -> Poll<BlockResult<()>> {
        loop {
            let pos = st.done as usize;
            if pos >= buf.len() {
                return Poll::Ready(Ok(()));
            }
            let off = off0 + st.done;
            let r = match st.step {
                RStep::Plan => self.read_run(c, st, off, &mut buf[pos..], false),
                _ => match std::mem::replace(&mut st.step, RStep::Plan) {
                    RStep::Backing { op, len, n } => {
                        self.read_backing_op(c, st, Some(op), off, len, n, &mut buf[pos..])
                    }
                    _ => self.read_run(c, st, off, &mut buf[pos..], true),
                },
            };
            match r {
                Ok(None) => {}
                Ok(Some(w)) => {
                    *gate = w;
                    return Poll::Pending;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Reads the run at `off` into the start of `buf`; `signalled` when its
    /// event was signalled before the request stopped.
    fn read_run(
        &mut self,
        c: &Children,
        st: &mut ReadState,
        off: u64,
        buf: &mut [u8],
        signalled: bool,
    ) -> Step {
        let (kind, n) = self.run(c, off, buf.len() as u64)?;
        let buf = &mut buf[..n as usize];
        let from_backing = match kind {
            Cl::Unalloc => self.backing_bytes(c, off, n)?,
            _ => 0,
        };
        if !signalled {
            let ev = match kind {
                Cl::Unalloc => (from_backing > 0).then_some(BlkdebugEvent::ReadBackingAio),
                k => self.read_event(c, k, off, n)?,
            };
            if let Some(w) = signal_stop(c, ev) {
                st.step = RStep::Signalled;
                return Ok(Some(w));
            }
        }
        if let Cl::Unalloc = kind {
            buf[from_backing as usize..].fill(0);
            if from_backing > 0 {
                return self.read_backing_op(c, st, None, off, n, from_backing, buf);
            }
        } else {
            self.read_sync(c, kind, off, buf)?;
        }
        st.done += n;
        Ok(None)
    }

    /// Polls the request on the backing node at `off` for the first `n`
    /// bytes of a `len`-byte run that starts `buf`: the one that stopped
    /// before, or a new one (on the stack, boxed only if it stops).
    #[allow(clippy::too_many_arguments)]
    fn read_backing_op(
        &mut self,
        c: &Children,
        st: &mut ReadState,
        stopped: Option<Box<ReadOp>>,
        off: u64,
        len: u64,
        n: u64,
        buf: &mut [u8],
    ) -> Step {
        let Some(b) = &c.backing else {
            return Err(BlockError::Generic(
                "qcow2: the backing file went away".into(),
            ));
        };
        let mut stopped = stopped;
        let mut fresh = None;
        let op = match stopped.as_deref_mut() {
            Some(op) => op,
            None => fresh.insert(ReadOp::new(off)),
        };
        match lock(b).poll_read(op, &mut buf[..n as usize]) {
            Poll::Ready(r) => {
                r?;
                st.done += len;
                Ok(None)
            }
            // The backing node keeps what it waits for; poll again later.
            Poll::Pending => {
                let Some(op) = stopped.or_else(|| fresh.map(Box::new)) else {
                    return Err(BlockError::Generic("qcow2: backing read lost".into()));
                };
                st.step = RStep::Backing { op, len, n };
                Ok(Some(Wait::none()))
            }
        }
    }
}
