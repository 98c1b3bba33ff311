//! Image information as QEMU's ImageInfo shows it (query-block's `image`,
//! `qemu-img info`, `info block -v`), built from a node and its backing chain.

use serde_json::{json, Map, Value};

use crate::driver::SnapshotInfo;
use crate::graph::resolve_backing_name;
use crate::node::{lock, Node};

/// QEMU's ImageInfo.
#[derive(Debug, Clone, Default)]
pub struct ImageInfo {
    pub filename: String,
    pub format: String,
    pub virtual_size: u64,
    pub actual_size: Option<u64>,
    pub cluster_size: Option<u64>,
    pub dirty_flag: Option<bool>,
    pub encrypted: bool,
    pub backing_filename: Option<String>,
    pub full_backing_filename: Option<String>,
    pub backing_filename_format: Option<String>,
    pub snapshots: Vec<SnapshotInfo>,
    pub format_specific: Option<Value>,
    pub backing_image: Option<Box<ImageInfo>>,
}

impl ImageInfo {
    /// The JSON object QMP returns, field names as in the reference.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("filename".into(), self.filename.clone().into());
        m.insert("format".into(), self.format.clone().into());
        if let Some(d) = self.dirty_flag {
            m.insert("dirty-flag".into(), d.into());
        }
        if let Some(a) = self.actual_size {
            m.insert("actual-size".into(), a.into());
        }
        m.insert("virtual-size".into(), self.virtual_size.into());
        if let Some(c) = self.cluster_size {
            m.insert("cluster-size".into(), c.into());
        }
        if self.encrypted {
            m.insert("encrypted".into(), true.into());
        }
        if let Some(b) = &self.backing_filename {
            m.insert("backing-filename".into(), b.clone().into());
        }
        if let Some(b) = &self.full_backing_filename {
            m.insert("full-backing-filename".into(), b.clone().into());
        }
        if let Some(b) = &self.backing_filename_format {
            m.insert("backing-filename-format".into(), b.clone().into());
        }
        if !self.snapshots.is_empty() {
            let snaps: Vec<Value> = self
                .snapshots
                .iter()
                .map(|s| {
                    json!({
                        "id": s.id,
                        "name": s.name,
                        "vm-state-size": s.vm_state_size,
                        "date-sec": s.date_sec,
                        "date-nsec": s.date_nsec,
                        "vm-clock-sec": s.vm_clock_nsec / 1_000_000_000,
                        "vm-clock-nsec": s.vm_clock_nsec % 1_000_000_000,
                    })
                })
                .collect();
            m.insert("snapshots".into(), snaps.into());
        }
        if let Some(b) = &self.backing_image {
            m.insert("backing-image".into(), b.to_json());
        }
        if let Some(fs) = &self.format_specific {
            m.insert("format-specific".into(), fs.clone());
        }
        Value::Object(m)
    }
}

impl Node {
    /// ImageInfo of this node and (recursively) its backing chain.
    pub fn image_info(&mut self) -> ImageInfo {
        let fi = self.format_info();
        let full = fi
            .backing_filename
            .as_ref()
            .map(|b| resolve_backing_name(self.filename(), b));
        let backing_image = self.backing().map(|b| Box::new(lock(&b).image_info()));
        ImageInfo {
            filename: self.filename().to_string(),
            format: self.driver_name().to_string(),
            // QEMU keeps sizes in whole sectors: an odd-sized file shows
            // rounded up.
            virtual_size: self.length().unwrap_or(0).div_ceil(512) * 512,
            actual_size: self.allocated_file_size(),
            cluster_size: fi.cluster_size,
            dirty_flag: fi.dirty_flag,
            encrypted: fi.encrypted,
            backing_filename: fi.backing_filename,
            full_backing_filename: full,
            backing_filename_format: fi.backing_format,
            snapshots: self.snapshot_list().unwrap_or_default(),
            format_specific: fi.format_specific,
            backing_image,
        }
    }
}
