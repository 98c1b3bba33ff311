//! What `query-dump`, `info dump` and DUMP_COMPLETED report about the
//! latest dump.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DumpStatus {
    /// No dump has started since the VM started.
    #[default]
    None,
    Active,
    Completed,
    Failed,
}

impl DumpStatus {
    /// The QAPI enum name (`DumpStatus`).
    pub fn name(self) -> &'static str {
        match self {
            DumpStatus::None => "none",
            DumpStatus::Active => "active",
            DumpStatus::Completed => "completed",
            DumpStatus::Failed => "failed",
        }
    }
}

/// The text of HMP `info dump`.
pub fn info_dump_text(status: DumpStatus, completed: u64, total: u64) -> String {
    let mut out = format!("Status: {}\n", status.name());
    if status == DumpStatus::Active {
        // QEMU computes the share in double and keeps it in a float.
        let percent = if total == 0 {
            0.0
        } else {
            (100.0 * completed as f64 / total as f64) as f32
        };
        out.push_str(&format!("Finished: {:.2} %\n", f64::from(percent)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_dump_shows_percentage_only_while_active() {
        assert_eq!(
            info_dump_text(DumpStatus::Active, 1 << 20, 3 << 20),
            "Status: active\nFinished: 33.33 %\n"
        );
        assert_eq!(
            info_dump_text(DumpStatus::Completed, 3 << 20, 3 << 20),
            "Status: completed\n"
        );
        assert_eq!(info_dump_text(DumpStatus::None, 0, 0), "Status: none\n");
    }
}
