//! dump-guest-memory, query-dump, query-dump-guest-memory-capability.
//! The dump runs as a main-loop state machine: a detached dump steps from
//! bottom halves, so the monitor keeps answering.

use serde_json::{json, Map, Value};

use qmp::error::QmpError;

use super::{arg_bool, arg_i64, arg_str, empty, Args, CmdCtx};
use crate::dump::{
    cpu_state, open_dump_file, DumpError, DumpFormat, DumpJob, DumpProgress, DumpRequest,
    DumpStatus, DumpTarget, MachineRam, FORMATS_BUILT_IN,
};
use crate::emulator::Emulator;
use crate::runstate::RunState;

/// The latest dump, for query-dump and `info dump`.
#[derive(Default)]
pub struct DumpState {
    pub status: DumpStatus,
    pub completed: u64,
    pub total: u64,
    job: Option<DumpJob>,
    /// The VM was running when the dump started: resume it at the end.
    resume: bool,
}

impl DumpState {
    pub fn in_progress(&self) -> bool {
        self.status == DumpStatus::Active
    }
}

fn err(e: DumpError) -> QmpError {
    QmpError::generic(e.to_string())
}

/// Validates, stops the VM and creates the job. Shared by QMP and HMP.
pub fn start_dump(
    emu: &mut Emulator,
    ctx: &CmdCtx,
    req: &DumpRequest,
    protocol: &str,
    detach: bool,
) -> Result<(), QmpError> {
    if emu.dump.in_progress() {
        return Err(err(DumpError::InProgress));
    }
    if emu.runstate == RunState::Inmigrate {
        return Err(err(DumpError::IncomingMigration));
    }
    req.validate().map_err(err)?;
    let out = match DumpTarget::parse(protocol).map_err(err)? {
        DumpTarget::File(path) => open_dump_file(&path).map_err(err)?,
        DumpTarget::Fd(name) => std::fs::File::from(super::fd::take_named_fd(emu, ctx, &name)?),
    };
    let resume = emu.is_running();
    if resume {
        emu.vm_stop(RunState::SaveVm);
    }
    let cpus: Vec<_> = emu.machine.cpu_states().iter().map(cpu_state).collect();
    let ram = std::sync::Arc::new(MachineRam(emu.machine.mem.clone()));
    let mut job = match DumpJob::new(req, ram, &cpus, out) {
        Ok(j) => j,
        Err(e) => {
            if resume {
                emu.vm_start();
            }
            return Err(err(e));
        }
    };
    if detach {
        // Without a writer thread the dump still works, only a slow pipe
        // would then hold up the main loop.
        let _ = job.detach();
    }
    emu.dump = DumpState {
        status: DumpStatus::Active,
        completed: 0,
        total: job.total(),
        job: Some(job),
        resume,
    };
    if detach {
        emu.schedule_bh(Box::new(step_detached));
        Ok(())
    } else {
        loop {
            match step_once(emu) {
                Some(Ok(())) => return Ok(()),
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
    }
}

/// One bounded step; Some when the dump ended.
fn step_once(emu: &mut Emulator) -> Option<Result<(), QmpError>> {
    let job = emu.dump.job.as_mut()?;
    let result = job.step();
    emu.dump.completed = job.completed();
    emu.dump.total = job.total();
    match result {
        Ok(DumpProgress::InProgress { .. }) => None,
        Ok(DumpProgress::Done) => {
            finish(emu, None);
            Some(Ok(()))
        }
        Err(e) => {
            let msg = e.to_string();
            finish(emu, Some(msg.clone()));
            Some(Err(QmpError::generic(msg)))
        }
    }
}

/// Queued output above which a detached dump waits for its writer thread
/// instead of producing more.
const MAX_BACKLOG: usize = 32 << 20;
/// How long it waits then: the monitor runs meanwhile.
const BACKLOG_WAIT_NS: i64 = 1_000_000;

fn step_detached(emu: &mut Emulator) {
    let backlog = |emu: &Emulator| emu.dump.job.as_ref().map_or(0, |j| j.backlog());
    let full = backlog(emu) > MAX_BACKLOG;
    let before = emu.dump.completed;
    if !full && step_once(emu).is_some() {
        return;
    }
    // Waiting for the writer thread (too much queued, or everything
    // produced and not yet written): look again a little later rather
    // than spin.
    let idle = full || (backlog(emu) > 0 && emu.dump.completed == before);
    if idle {
        emu.add_timer(
            crate::main_loop::ClockType::Realtime,
            BACKLOG_WAIT_NS,
            Box::new(step_detached),
        );
    } else {
        emu.schedule_bh(Box::new(step_detached));
    }
}

fn finish(emu: &mut Emulator, error: Option<String>) {
    emu.dump.job = None;
    emu.dump.status = if error.is_some() {
        DumpStatus::Failed
    } else {
        DumpStatus::Completed
    };
    let mut data = Map::new();
    data.insert("result".into(), query_result(emu));
    if let Some(e) = error {
        data.insert("error".into(), json!(e));
    }
    // QEMU reports the dump before it lets the guest run again.
    emu.emit_event("DUMP_COMPLETED", Some(Value::Object(data)));
    if std::mem::take(&mut emu.dump.resume) {
        emu.vm_start();
    }
}

fn query_result(emu: &Emulator) -> Value {
    json!({
        "status": emu.dump.status.name(),
        "completed": emu.dump.completed,
        "total": emu.dump.total,
    })
}

pub fn dump_guest_memory(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let format = match arg_str(args, "format") {
        None => None,
        Some(f) => Some(
            DumpFormat::from_name(f)
                .ok_or_else(|| QmpError::generic(format!("Invalid parameter '{f}'")))?,
        ),
    };
    let req = DumpRequest {
        paging: arg_bool(args, "paging").unwrap_or(false),
        format,
        begin: arg_i64(args, "begin"),
        length: arg_i64(args, "length"),
    };
    let protocol = arg_str(args, "protocol").unwrap_or("");
    let detach = arg_bool(args, "detach").unwrap_or(false);
    start_dump(emu, ctx, &req, protocol, detach)?;
    Ok(empty())
}

pub fn query_dump(emu: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    Ok(query_result(emu))
}

pub fn query_dump_guest_memory_capability(
    _: &mut Emulator,
    _: &mut CmdCtx,
    _: &Args,
) -> Result<Value, QmpError> {
    let formats: Vec<&str> = FORMATS_BUILT_IN.iter().map(|f| f.name()).collect();
    Ok(json!({"formats": formats}))
}
