//! `transaction`: prepares every action, then commits all of them, or, when
//! one fails to prepare, aborts every prepared one so that the group leaves
//! no trace (no new nodes, no new files, bitmaps and snapshots as before).
//! With `completion-mode: grouped` the backup jobs it starts finish together
//! and one failing cancels the others.

use serde_json::Value;

use block::dirty_bitmap::DirtyBitmap;
use block::{lock, NodeRef};
use qmp::error::QmpError;

use super::block_snapshot::{
    external_abort, external_commit, internal_abort, internal_prepare, snapshot_prepare,
    snapshot_sync_prepare, ExternalSnapshot, InternalSnapshot, SnapshotSync,
};
use super::{arg_str, empty, Args, CmdCtx};
use crate::blockdev::lookup_bs;
use crate::emulator::Emulator;
use crate::main_loop::ClockType;

/// One prepared action and what undoing it needs.
enum Prepared {
    External {
        snap: ExternalSnapshot,
        /// The overlay file this action created.
        created: Option<String>,
    },
    Internal(InternalSnapshot),
    Job {
        id: String,
        created: Option<String>,
    },
    BitmapAdded {
        node: NodeRef,
        name: String,
    },
    BitmapClear {
        node: NodeRef,
        name: String,
        saved: DirtyBitmap,
    },
}

const ACTIONS: &[&str] = &[
    "abort",
    "block-dirty-bitmap-add",
    "block-dirty-bitmap-clear",
    "blockdev-backup",
    "blockdev-snapshot",
    "blockdev-snapshot-internal-sync",
    "blockdev-snapshot-sync",
    "drive-backup",
];

/// A path that does not exist yet (so the action's file is its own to remove).
fn new_file(path: &str, existing: bool) -> Option<String> {
    (!existing && !std::path::Path::new(path).exists()).then(|| path.to_string())
}

fn prepare(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    kind: &str,
    data: &Args,
    txn: Option<u64>,
) -> Result<Option<Prepared>, QmpError> {
    match kind {
        "abort" => Err(QmpError::generic("Transaction aborted using Abort action")),
        "blockdev-snapshot-sync" => {
            let file = arg_str(data, "snapshot-file").unwrap_or("");
            let existing = arg_str(data, "mode") == Some("existing");
            let created = new_file(file, existing);
            let s = SnapshotSync {
                device: arg_str(data, "device"),
                node_name: arg_str(data, "node-name"),
                snapshot_file: file,
                snapshot_node_name: arg_str(data, "snapshot-node-name"),
                format: arg_str(data, "format"),
                existing,
            };
            match snapshot_sync_prepare(&mut emu.block, &mut emu.blockdevs, &s) {
                Ok(snap) => Ok(Some(Prepared::External { snap, created })),
                Err(e) => {
                    if let Some(f) = created {
                        let _ = std::fs::remove_file(f);
                    }
                    Err(e)
                }
            }
        }
        "blockdev-snapshot" => {
            let node = arg_str(data, "node").unwrap_or("");
            let overlay = arg_str(data, "overlay").unwrap_or("");
            let snap = snapshot_prepare(&mut emu.block, &mut emu.blockdevs, node, overlay)?;
            Ok(Some(Prepared::External {
                snap,
                created: None,
            }))
        }
        "blockdev-snapshot-internal-sync" => {
            let device = arg_str(data, "device").unwrap_or("");
            let name = arg_str(data, "name").unwrap_or("");
            let clock = emu.clocks.now(ClockType::Virtual);
            let s = internal_prepare(&emu.block, device, name, clock)?;
            Ok(Some(Prepared::Internal(s)))
        }
        "drive-backup" | "blockdev-backup" => {
            let created = if kind == "drive-backup" {
                let existing = arg_str(data, "mode") == Some("existing");
                new_file(arg_str(data, "target").unwrap_or(""), existing)
            } else {
                None
            };
            let r = if kind == "drive-backup" {
                super::jobs::do_drive_backup(emu, data)
            } else {
                super::jobs::do_blockdev_backup(emu, data)
            };
            match r {
                Ok(id) => {
                    if let Some(t) = txn {
                        emu.jobs.set_txn(&id, t);
                    }
                    Ok(Some(Prepared::Job { id, created }))
                }
                Err(e) => {
                    if let Some(f) = created {
                        let _ = std::fs::remove_file(f);
                    }
                    Err(e)
                }
            }
        }
        "block-dirty-bitmap-add" => {
            super::block_features::block_dirty_bitmap_add(emu, ctx, data)?;
            let node = arg_str(data, "node").unwrap_or("");
            let node = lookup_bs(&emu.block, Some(node), Some(node))?;
            Ok(Some(Prepared::BitmapAdded {
                node,
                name: arg_str(data, "name").unwrap_or("").to_string(),
            }))
        }
        "block-dirty-bitmap-clear" => {
            let n = arg_str(data, "node").unwrap_or("");
            let name = arg_str(data, "name").unwrap_or("").to_string();
            let saved = lookup_bs(&emu.block, Some(n), Some(n))
                .ok()
                .and_then(|node| {
                    let b = lock(&node).tracking().bitmaps.get(&name).cloned()?;
                    Some((node, b))
                });
            super::block_features::block_dirty_bitmap_clear(emu, ctx, data)?;
            Ok(saved.map(|(node, saved)| Prepared::BitmapClear { node, name, saved }))
        }
        other => Err(QmpError::generic(format!(
            "Invalid parameter 'type': unknown action '{other}'"
        ))),
    }
}

fn commit(emu: &mut Emulator, p: Prepared) -> Result<(), QmpError> {
    match p {
        Prepared::External { snap, .. } => {
            external_commit(&mut emu.block, &mut emu.blockdevs, snap)
        }
        _ => Ok(()),
    }
}

fn abort(emu: &mut Emulator, p: Prepared) {
    match p {
        Prepared::External { snap, created } => {
            external_abort(&mut emu.block, &mut emu.blockdevs, snap);
            if let Some(f) = created {
                let _ = std::fs::remove_file(f);
            }
        }
        Prepared::Internal(s) => internal_abort(s),
        Prepared::Job { id, created } => {
            emu.jobs.cancel_sync(&id, &mut emu.block);
            if let Some(f) = created {
                let _ = std::fs::remove_file(f);
            }
        }
        Prepared::BitmapAdded { node, name } => {
            let _ = lock(&node).tracking_mut().bitmaps.remove(&name);
        }
        Prepared::BitmapClear { node, name, saved } => {
            if let Some(b) = lock(&node).tracking_mut().bitmaps.get_mut(&name) {
                *b = saved;
            }
        }
    }
}

/// The actions of `transaction`, each as (type, data).
fn actions(args: &Args) -> Result<Vec<(String, Args)>, QmpError> {
    let list = args
        .get("actions")
        .and_then(Value::as_array)
        .ok_or_else(|| QmpError::generic("Parameter 'actions' is missing"))?;
    let mut out = Vec::new();
    for a in list {
        let kind = a
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| QmpError::generic("Parameter 'type' is missing"))?;
        if !ACTIONS.contains(&kind) {
            return Err(QmpError::generic(format!("Invalid parameter '{kind}'")));
        }
        let data = a
            .get("data")
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| QmpError::generic("Parameter 'data' is missing"))?;
        out.push((kind.to_string(), data));
    }
    Ok(out)
}

pub fn transaction(emu: &mut Emulator, ctx: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let list = actions(args)?;
    let grouped = args
        .get("properties")
        .and_then(|p| p.get("completion-mode"))
        .and_then(Value::as_str)
        == Some("grouped");
    if grouped {
        if let Some((k, _)) = list
            .iter()
            .find(|(k, _)| k != "drive-backup" && k != "blockdev-backup")
        {
            return Err(QmpError::generic(format!(
                "Action '{k}' does not support Transaction property completion-mode = grouped"
            )));
        }
    }
    let txn = grouped.then(|| emu.jobs.new_txn());
    let mut prepared = Vec::new();
    for (kind, data) in &list {
        match prepare(emu, ctx, kind, data, txn) {
            Ok(p) => prepared.extend(p),
            Err(e) => {
                for p in prepared {
                    abort(emu, p);
                }
                super::jobs::flush_job_events(emu);
                return Err(e);
            }
        }
    }
    let mut first_err = None;
    for p in prepared {
        if let Err(e) = commit(emu, p) {
            first_err.get_or_insert(e);
        }
    }
    super::jobs::drive(emu);
    match first_err {
        Some(e) => Err(e),
        None => Ok(empty()),
    }
}
