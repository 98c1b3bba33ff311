//! qemu-io's command language (HMP `qemu-io <device> "<command>"`): parses
//! one command line, runs it against a node, and produces exactly the text
//! the reference qemu-io printed, statistics lines included (with real
//! timings, in the shape iotests' filters expect).
//!
//! Requests run synchronously; the aio commands print their completion
//! report before returning unless an `AioSubmit` takes them (then they
//! complete when it runs them, and `aio_flush` drains it).
//! The graph is only read, to resolve HMP's device argument (`resolve_device`).

mod aio;
mod aio_cmds;
mod args;
mod commands;
mod device;
mod help_text;
mod hooks;
mod io_cmds;
mod misc_cmds;
mod query_cmds;
mod report;
mod spec_dump;

use std::fmt;

use crate::graph::BlockGraph;
use crate::node::NodeRef;
use crate::request::InflightHandle;

pub use aio::{AioDone, AioOp, AioRequest, AioSubmit};
pub use args::{breakline, cvtnum, parse_pattern, NumError};
pub use hooks::{
    Accounting, AcctEvent, AcctKind, AcctResult, CacheMode, DebugOps, ReopenOps, ReopenRequest,
};
pub use report::cvtstr;

use commands::{find_command, Ctx};
use device::Device;

/// A command line that could not be run at all. The reference printed
/// these on stderr rather than stdout; `Display` gives the text without the
/// final newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QemuIoError {
    /// No command by that name.
    UnknownCommand(String),
    /// Wrong number of arguments for the command.
    BadArgCount {
        cmd: String,
        given: usize,
        min: usize,
        /// None: no upper bound.
        max: Option<usize>,
    },
    /// `abort`: the reference aborted the whole process here.
    Abort,
    /// `sigraise N`: the reference raised signal N in the whole process.
    Raise(i32),
}

impl fmt::Display for QemuIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QemuIoError::UnknownCommand(c) => write!(f, "command \"{}\" not found", c),
            QemuIoError::BadArgCount {
                cmd,
                given,
                min,
                max,
            } => match max {
                None => write!(
                    f,
                    "bad argument count {} to {}, expected at least {} arguments",
                    given, cmd, min
                ),
                Some(m) if m == min => write!(
                    f,
                    "bad argument count {} to {}, expected {} arguments",
                    given, cmd, min
                ),
                Some(m) => write!(
                    f,
                    "bad argument count {} to {}, expected between {} and {} arguments",
                    given, cmd, min, m
                ),
            },
            QemuIoError::Abort => write!(f, "qemu-io: abort requested"),
            QemuIoError::Raise(sig) => write!(f, "qemu-io: signal {} requested", sig),
        }
    }
}

impl std::error::Error for QemuIoError {}

/// Per-device qemu-io state: the hooks to the backend's accounting, to
/// blkdebug, to the graph's reopen, to throttling and to the queue of
/// requests in flight.
#[derive(Default)]
pub struct QemuIo {
    acct: Option<Box<dyn Accounting>>,
    debug: Option<Box<dyn DebugOps>>,
    reopen: Option<Box<dyn ReopenOps>>,
    aio: Option<Box<dyn AioSubmit>>,
    inflight: Option<InflightHandle>,
}

impl QemuIo {
    pub fn new() -> QemuIo {
        QemuIo::default()
    }

    /// Where aio_read/aio_write/aio_flush report their accounting.
    pub fn set_accounting(&mut self, acct: Box<dyn Accounting>) {
        self.acct = Some(acct);
    }

    /// Where break/remove_break/resume/wait_break go.
    pub fn set_debug_ops(&mut self, debug: Box<dyn DebugOps>) {
        self.debug = Some(debug);
    }

    /// What `reopen` calls to change a node's options.
    pub fn set_reopen_ops(&mut self, reopen: Box<dyn ReopenOps>) {
        self.reopen = Some(reopen);
    }

    /// Where aio_read/aio_write send their requests instead of running
    /// them at once (and what aio_flush drains).
    pub fn set_aio_submit(&mut self, aio: Box<dyn AioSubmit>) {
        self.aio = Some(aio);
    }

    /// Where aio_read/aio_write requests go when nothing holds them back:
    /// there they may stop at a blkdebug breakpoint and finish after a
    /// later command (without it they complete before the command returns).
    pub fn set_inflight(&mut self, q: InflightHandle) {
        self.inflight = Some(q);
    }

    /// Runs one command line against `node` (None: a drive without medium),
    /// appending what qemu-io prints, in order, to `out`. Argument-count and
    /// unknown-command errors are returned instead of printed.
    pub fn run(
        &mut self,
        node: Option<&NodeRef>,
        line: &str,
        out: &mut String,
    ) -> Result<(), QemuIoError> {
        let argv = breakline(line);
        let Some(name) = argv.first() else {
            return Ok(());
        };
        let info = find_command(name).ok_or_else(|| QemuIoError::UnknownCommand(name.clone()))?;
        let given = argv.len() - 1;
        let too_many = info.argmax.is_some_and(|m| given > m);
        if given < info.argmin || too_many {
            return Err(QemuIoError::BadArgCount {
                cmd: name.clone(),
                given,
                min: info.argmin,
                max: info.argmax,
            });
        }
        // What blkdebug prints meanwhile follows the command's own output.
        let (r, printed) = crate::console::capture(|| {
            let mut ctx = Ctx {
                io: self,
                dev: Device::new(node),
                out: &mut *out,
                argv: &argv,
                info,
            };
            (info.run)(&mut ctx)
        });
        out.push_str(&printed);
        r
    }

    fn account(&mut self, ev: AcctEvent) {
        if let Some(a) = self.acct.as_mut() {
            a.account(ev);
        }
    }
}

/// What HMP `qemu-io <device>` works on: a backend's medium (None when the
/// drive is empty), else the node with that node-name. The error is the
/// monitor's message when neither exists.
pub fn resolve_device(graph: &BlockGraph, device: &str) -> Result<Option<NodeRef>, String> {
    if let Some(b) = graph.backend(device) {
        return Ok(b.root());
    }
    graph
        .find_node(device)
        .map(Some)
        .ok_or_else(|| format!("Cannot find device= nor node_name={}", device))
}

/// Runs one command line against `node` with no accounting or blkdebug hooks.
pub fn run_command(node: &NodeRef, line: &str, out: &mut String) -> Result<(), QemuIoError> {
    QemuIo::new().run(Some(node), line, out)
}
