//! What an IDE drive asks of its owner: block I/O at byte offsets and the
//! error policy for a failed guest request (QEMU's rerror/werror), plus the
//! notifications the drive raises for the monitor.
//!
//! The drive never opens or names a block backend: the owner implements
//! [`BlockIo`] over whatever backend it attached to a [`DriveSlot`].

/// Which drive: channel (IDE bus 0 or 1) and unit (0 master, 1 slave).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DriveSlot {
    pub bus: u8,
    pub unit: u8,
}

/// What the owner decided for a failed guest request (QEMU's
/// BlockErrorAction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorAction {
    /// The guest sees the error.
    Report,
    /// The guest sees success.
    Ignore,
    /// The VM stops; the request is retried when it runs again.
    Stop,
}

/// Block I/O for the drives, implemented by the owner. Errors are POSIX
/// errno values (`ENOMEDIUM` when no medium is inserted).
pub trait BlockIo {
    /// The medium's size in bytes (0 without one).
    fn length(&mut self, slot: DriveSlot) -> u64;
    fn read(&mut self, slot: DriveSlot, offset: u64, buf: &mut [u8]) -> Result<(), i32>;
    fn write(&mut self, slot: DriveSlot, offset: u64, data: &[u8]) -> Result<(), i32>;
    fn flush(&mut self, slot: DriveSlot) -> Result<(), i32>;
    /// A guest ATA request failed: apply the drive's error policy (report,
    /// ignore, stop), raise BLOCK_IO_ERROR and say what the drive must do.
    fn error_action(&mut self, slot: DriveSlot, is_read: bool, errno: i32) -> ErrorAction;
    /// May a guest read or write of `bytes` start now (the backend's I/O
    /// limits)? `false` queues it: the drive keeps the request pending and
    /// the owner calls `IdeController::release(slot, ticket)` when its turn
    /// comes. Owners without limits keep the default.
    fn admit(&mut self, slot: DriveSlot, is_write: bool, bytes: u64, ticket: u64) -> bool {
        let _ = (slot, is_write, bytes, ticket);
        true
    }
}

/// A change the guest made that the monitor must learn about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveEventKind {
    /// START STOP UNIT with LoEj moved the tray (`open` is its new state).
    TrayMoved { open: bool },
    /// PREVENT ALLOW MEDIUM REMOVAL.
    MediumLocked { locked: bool },
    /// SET FEATURES changed the write cache.
    WriteCache { enabled: bool },
    /// A reset closed and unlocked the tray without a guest command (QEMU
    /// announces nothing then).
    Reset,
}

/// A drive notification queued for the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriveEvent {
    pub slot: DriveSlot,
    pub kind: DriveEventKind,
}
