//! The VM run state and QEMU's table of allowed transitions.

/// QEMU's whole set: the transition table needs every state even where
/// this emulator never enters one (debug, watchdog...).
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Debug,
    Inmigrate,
    InternalError,
    IoError,
    Paused,
    Postmigrate,
    Prelaunch,
    FinishMigrate,
    RestoreVm,
    Running,
    SaveVm,
    Shutdown,
    Suspended,
    Watchdog,
    GuestPanicked,
}

impl RunState {
    pub fn name(self) -> &'static str {
        use RunState::*;
        match self {
            Debug => "debug",
            Inmigrate => "inmigrate",
            InternalError => "internal-error",
            IoError => "io-error",
            Paused => "paused",
            Postmigrate => "postmigrate",
            Prelaunch => "prelaunch",
            FinishMigrate => "finish-migrate",
            RestoreVm => "restore-vm",
            Running => "running",
            SaveVm => "save-vm",
            Shutdown => "shutdown",
            Suspended => "suspended",
            Watchdog => "watchdog",
            GuestPanicked => "guest-panicked",
        }
    }

    /// Whether QEMU allows going from `self` to `to`.
    pub fn can_become(self, to: RunState) -> bool {
        use RunState::*;
        matches!(
            (self, to),
            (Debug, Running | FinishMigrate | Prelaunch | Suspended)
                | (
                    Inmigrate,
                    InternalError
                        | IoError
                        | Paused
                        | Running
                        | Shutdown
                        | Suspended
                        | Watchdog
                        | GuestPanicked
                        | FinishMigrate
                        | Prelaunch
                        | Postmigrate
                )
                | (InternalError, Paused | FinishMigrate | Prelaunch)
                | (IoError, Running | FinishMigrate | Prelaunch)
                | (Paused, Running | FinishMigrate | Prelaunch)
                | (Postmigrate, Running | FinishMigrate | Prelaunch)
                | (Prelaunch, Running | FinishMigrate | Inmigrate)
                | (FinishMigrate, Running | Postmigrate | Prelaunch)
                | (RestoreVm, Running | Prelaunch)
                | (
                    Running,
                    Debug
                        | InternalError
                        | IoError
                        | Paused
                        | FinishMigrate
                        | RestoreVm
                        | SaveVm
                        | Shutdown
                        | Watchdog
                        | GuestPanicked
                        | Suspended
                )
                | (SaveVm, Running)
                | (Shutdown, Paused | FinishMigrate | Prelaunch)
                | (Suspended, Running | FinishMigrate | Prelaunch)
                | (Watchdog, Running | FinishMigrate | Prelaunch)
                | (GuestPanicked, Running | FinishMigrate | Prelaunch)
        )
    }

    /// States `cont` refuses until `system_reset`.
    pub fn needs_reset(self) -> bool {
        matches!(self, RunState::InternalError | RunState::Shutdown)
    }
}

#[cfg(test)]
mod tests {
    use super::RunState::*;

    #[test]
    fn transitions_follow_qemu_table() {
        assert!(Prelaunch.can_become(Running));
        assert!(Running.can_become(Paused));
        assert!(!Shutdown.can_become(Running));
        assert!(Shutdown.needs_reset());
        assert!(!Paused.needs_reset());
    }
}
