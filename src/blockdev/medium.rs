//! Removable media: trays, ejecting, inserting and changing the medium of a
//! backend, with QEMU's rules for backends with and without a guest device
//! (without one, the medium may be swapped at will and nothing has a tray).

use serde_json::json;

use block::{lock, BlockGraph, NodeRef};
use qmp::error::QmpError;

use super::{not_found, qerr, BackendFront, BlockDevs, RootState};

/// Why opening a tray did not happen (QEMU's -ENOSYS / -EINPROGRESS cases
/// are not errors for every caller).
pub enum TrayError {
    NoTray(QmpError),
    InProgress(QmpError),
    Fail(QmpError),
}

impl TrayError {
    fn into_err(self) -> QmpError {
        match self {
            TrayError::NoTray(e) | TrayError::InProgress(e) | TrayError::Fail(e) => e,
        }
    }
}

fn front_mut<'a>(
    graph: &BlockGraph,
    devs: &'a mut BlockDevs,
    device: &str,
) -> Result<&'a mut BackendFront, QmpError> {
    if graph.backend(device).is_none() {
        return Err(not_found(device));
    }
    if devs.front(device).is_none() {
        devs.add_front(BackendFront::new(device));
    }
    devs.front_mut(device).ok_or_else(|| not_found(device))
}

/// The device's media-change callback: a tray follows the medium, and a
/// move is announced with DEVICE_TRAY_MOVED.
fn change_media_cb(graph: &BlockGraph, devs: &mut BlockDevs, device: &str, load: bool) {
    let Some(f) = devs.front_mut(device) else {
        return;
    };
    if let Some(ops) = f.device.as_ref().and_then(|d| d.ops.clone()) {
        ops.change_media(load, super::device_io::medium_sectors(graph, device));
    }
    if f.tray().is_none() {
        return;
    }
    let was_open = f.is_tray_open();
    f.set_tray_open(!load);
    let is_open = f.is_tray_open();
    if was_open != is_open {
        devs.push_event(
            "DEVICE_TRAY_MOVED",
            json!({"device": device, "tray-open": is_open}),
        );
    }
}

/// do_open_tray.
pub fn do_open_tray(
    graph: &BlockGraph,
    devs: &mut BlockDevs,
    device: &str,
    force: bool,
) -> Result<(), TrayError> {
    let f = front_mut(graph, devs, device).map_err(TrayError::Fail)?;
    if !f.has_removable_media() {
        return Err(TrayError::Fail(QmpError::generic(format!(
            "Device '{device}' is not removable"
        ))));
    }
    if f.tray().is_none() {
        return Err(TrayError::NoTray(QmpError::generic(format!(
            "Device '{device}' does not have a tray"
        ))));
    }
    if f.is_tray_open() {
        return Ok(());
    }
    let locked = f.is_locked();
    if locked {
        if let Some(ops) = f.device.as_ref().and_then(|d| d.ops.clone()) {
            ops.eject_request(force);
        }
        if force {
            // A forced request drops the guest's lock (ide_cd_eject_request_cb).
            devs.set_medium_locked(device, false);
        }
    }
    if !locked || force {
        change_media_cb(graph, devs, device, false);
    }
    if locked && !force {
        return Err(TrayError::InProgress(QmpError::generic(format!(
            "Device '{device}' is locked and force was not specified, wait for tray to open and try again"
        ))));
    }
    Ok(())
}

pub fn open_tray(
    graph: &BlockGraph,
    devs: &mut BlockDevs,
    device: &str,
    force: bool,
) -> Result<(), QmpError> {
    match do_open_tray(graph, devs, device, force) {
        Ok(()) | Err(TrayError::NoTray(_)) | Err(TrayError::InProgress(_)) => Ok(()),
        Err(TrayError::Fail(e)) => Err(e),
    }
}

pub fn close_tray(graph: &BlockGraph, devs: &mut BlockDevs, device: &str) -> Result<(), QmpError> {
    let f = front_mut(graph, devs, device)?;
    if !f.has_removable_media() {
        return Err(QmpError::generic(format!(
            "Device '{device}' is not removable"
        )));
    }
    if f.tray().is_none() || !f.is_tray_open() {
        return Ok(());
    }
    change_media_cb(graph, devs, device, true);
    Ok(())
}

/// The checks remove and insert share for backends with a device.
fn check_device_allows_swap(f: &BackendFront, device: &str) -> Result<(), QmpError> {
    if f.device.is_some() && !f.has_removable_media() {
        return Err(QmpError::generic(format!(
            "Device '{device}' is not removable"
        )));
    }
    if f.device.is_some() && f.tray().is_some() && !f.is_tray_open() {
        return Err(QmpError::generic(format!(
            "Tray of device '{device}' is not open"
        )));
    }
    Ok(())
}

pub fn remove_medium(
    graph: &mut BlockGraph,
    devs: &mut BlockDevs,
    device: &str,
) -> Result<(), QmpError> {
    let f = front_mut(graph, devs, device)?;
    check_device_allows_swap(f, device)?;
    let Some(root) = graph.backend(device).and_then(|b| b.root()) else {
        return Ok(());
    };
    {
        let g = lock(&root);
        let rs = RootState {
            read_only: g.is_read_only(),
            detect_zeroes: g.options().detect_zeroes,
        };
        if let Some(f) = devs.front_mut(device) {
            f.root_state = rs;
        }
    }
    if let Some(b) = graph.backend_mut(device) {
        b.remove_medium();
    }
    devs.drop_tree(graph, &root);
    let has_tray = devs.front(device).is_some_and(|f| f.tray().is_some());
    if !has_tray {
        change_media_cb(graph, devs, device, false);
    }
    Ok(())
}

/// qmp_blockdev_insert_anon_medium.
pub fn insert_anon_medium(
    graph: &mut BlockGraph,
    devs: &mut BlockDevs,
    device: &str,
    node: NodeRef,
) -> Result<(), QmpError> {
    let f = front_mut(graph, devs, device)?;
    check_device_allows_swap(f, device)?;
    let Some(b) = graph.backend_mut(device) else {
        return Err(not_found(device));
    };
    if b.has_medium() {
        return Err(QmpError::generic(format!(
            "There already is a medium in device '{device}'"
        )));
    }
    b.insert_medium(node).map_err(qerr)?;
    let has_tray = devs.front(device).is_some_and(|f| f.tray().is_some());
    if !has_tray {
        change_media_cb(graph, devs, device, true);
    }
    Ok(())
}

pub fn insert_medium(
    graph: &mut BlockGraph,
    devs: &mut BlockDevs,
    device: &str,
    node_name: &str,
) -> Result<(), QmpError> {
    let Some(node) = graph.find_node(node_name) else {
        return Err(QmpError::generic(format!("Node '{node_name}' not found")));
    };
    let user = devs.device_name_of(graph, &node);
    if !user.is_empty() {
        return Err(QmpError::generic(format!(
            "Node '{node_name}' is already in use by '{user}'"
        )));
    }
    insert_anon_medium(graph, devs, device, node)
}

pub fn eject(
    graph: &mut BlockGraph,
    devs: &mut BlockDevs,
    device: &str,
    force: bool,
) -> Result<(), QmpError> {
    match do_open_tray(graph, devs, device, force) {
        Ok(()) | Err(TrayError::NoTray(_)) => {}
        Err(e) => return Err(e.into_err()),
    }
    remove_medium(graph, devs, device)
}

/// The `read-only-mode` of blockdev-change-medium.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOnlyMode {
    Retain,
    ReadOnly,
    ReadWrite,
}

pub fn change_medium(
    graph: &mut BlockGraph,
    devs: &mut BlockDevs,
    device: &str,
    filename: &str,
    format: Option<&str>,
    mode: ReadOnlyMode,
) -> Result<(), QmpError> {
    if graph.backend(device).is_none() {
        return Err(not_found(device));
    }
    let root = graph.backend(device).and_then(|b| b.root());
    let mut rs = devs.front(device).map(|f| f.root_state).unwrap_or_default();
    if let Some(r) = &root {
        let g = lock(r);
        rs.read_only = g.is_read_only();
        rs.detect_zeroes = g.options().detect_zeroes;
    }
    let read_only = match mode {
        ReadOnlyMode::Retain => rs.read_only,
        ReadOnlyMode::ReadOnly => true,
        ReadOnlyMode::ReadWrite => false,
    };
    let medium = graph
        .open_image(filename, format, read_only)
        .map_err(qerr)?;
    super::warn_if_probed_raw(&medium);
    let r = (|| {
        match do_open_tray(graph, devs, device, false) {
            Ok(()) | Err(TrayError::NoTray(_)) => {}
            Err(e) => return Err(e.into_err()),
        }
        remove_medium(graph, devs, device)?;
        insert_anon_medium(graph, devs, device, medium.clone())?;
        lock(&medium).set_detect_zeroes(rs.detect_zeroes);
        close_tray(graph, devs, device)
    })();
    if r.is_err() {
        devs.drop_tree(graph, &medium);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::{DeviceModel, Tray};

    fn setup() -> (BlockGraph, BlockDevs) {
        let mut g = BlockGraph::new();
        let mut d = BlockDevs::default();
        let mut o = block::options::Options::new();
        o.insert("driver".into(), "null-co".into());
        let n = g.open(&o).unwrap();
        g.add_backend("cd0", Some(n)).unwrap();
        d.add_front(BackendFront::new("cd0"));
        (g, d)
    }

    #[test]
    fn eject_without_device_removes_medium_silently() {
        let (mut g, mut d) = setup();
        eject(&mut g, &mut d, "cd0", false).unwrap();
        assert!(!g.backend("cd0").unwrap().has_medium());
        assert!(g.nodes().is_empty());
        assert!(d.take_events().is_empty());
    }

    #[test]
    fn unknown_device_is_device_not_found() {
        let (mut g, mut d) = setup();
        let e = eject(&mut g, &mut d, "nope", false).unwrap_err();
        assert_eq!(e.desc, "Device 'nope' not found");
        assert_eq!(e.class, qmp::error::ErrorClass::DeviceNotFound);
    }

    #[test]
    fn locked_tray_refuses_without_force_and_moves_with_it() {
        let (mut g, mut d) = setup();
        d.attach_device(
            "cd0",
            DeviceModel {
                id: "ide-cd".into(),
                removable: true,
                tray: Some(Tray {
                    open: false,
                    locked: true,
                }),
                ops: None,
            },
        )
        .unwrap();
        let e = eject(&mut g, &mut d, "cd0", false).unwrap_err();
        assert!(e.desc.contains("is locked and force was not specified"));
        assert!(d.take_events().is_empty());
        eject(&mut g, &mut d, "cd0", true).unwrap();
        let ev = d.take_events();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].1, json!({"device": "cd0", "tray-open": true}));
        let e = remove_medium(&mut g, &mut d, "cd0");
        assert!(e.is_ok());
        close_tray(&g, &mut d, "cd0").unwrap();
        assert_eq!(d.take_events()[0].1["tray-open"], false);
        let e = remove_medium(&mut g, &mut d, "cd0").unwrap_err();
        assert_eq!(e.desc, "Tray of device 'cd0' is not open");
    }

    #[test]
    fn insert_refuses_a_second_medium_and_nodes_in_use() {
        let (mut g, mut d) = setup();
        let mut o = block::options::Options::new();
        o.insert("driver".into(), "null-co".into());
        o.insert("node-name".into(), "n1".into());
        g.open(&o).unwrap();
        let e = insert_medium(&mut g, &mut d, "cd0", "n1").unwrap_err();
        assert_eq!(e.desc, "There already is a medium in device 'cd0'");
        let root = g.backend("cd0").unwrap().root().unwrap();
        let rname = lock(&root).name().to_string();
        g.add_backend("cd1", None).unwrap();
        let e = insert_medium(&mut g, &mut d, "cd1", &rname).unwrap_err();
        assert_eq!(e.desc, format!("Node '{rname}' is already in use by 'cd0'"));
        insert_medium(&mut g, &mut d, "cd1", "n1").unwrap();
        let e = insert_medium(&mut g, &mut d, "cd1", "zz").unwrap_err();
        assert_eq!(e.desc, "Node 'zz' not found");
    }
}

#[cfg(test)]
mod drop_tests {
    use super::*;

    #[test]
    fn dropping_a_monitor_node_drops_its_file_child() {
        let dir = std::env::temp_dir().join(format!("bq-drop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("r.img");
        std::fs::write(&p, vec![0u8; 65536]).unwrap();
        let mut g = BlockGraph::new();
        let mut d = BlockDevs::default();
        let o: block::options::Options = serde_json::from_value(serde_json::json!({
            "driver": "raw", "node-name": "rn",
            "file": {"driver": "file", "filename": p.to_str().unwrap()}
        }))
        .unwrap();
        let n = g.open(&o).unwrap();
        d.own_node(n.clone());
        assert_eq!(g.nodes().len(), 2);
        d.delete_monitor_node(&mut g, &n);
        let names: Vec<String> = g
            .nodes()
            .iter()
            .map(|n| lock(n).name().to_string())
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }
}
