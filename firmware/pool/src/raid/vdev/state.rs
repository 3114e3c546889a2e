//! Runtime state of a vdev's device slots: what each column is doing now (online,
//! faulted, removed, being resilvered, ...), why, and the events emitted when that
//! changes. The vdev decides from a slot's state whether it reads from it, writes to it,
//! or leaves it alone.

use serde::{Deserialize, Serialize};

/// Read errors (after the driver's own retries) that fault a device.
pub const READ_FAULT_THRESHOLD: u64 = 10;

/// State of one device slot (column) of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// Present and current: read and written.
    Online,
    /// Present, but its newest label is older than the pool's (it missed commits) and the
    /// pool cannot resilver it (imported read-only or locked): read, checksums catch what
    /// it lacks.
    Stale,
    /// Not present (absent at import, or detached).
    Missing,
    /// Too many errors: a write or flush failed (it missed data), or reads failed
    /// [`READ_FAULT_THRESHOLD`] times. Gets no I/O until cleared or replaced.
    Faulted,
    /// The device went away (surprise removal, device lost). Gets no I/O until reattached.
    Removed,
    /// Being rebuilt: new writes go to it, reads never do until the resilver completes.
    Resilvering,
}

impl DeviceState {
    /// Upper-case name as `ingot pool status` prints it (`ONLINE`, `FAULTED`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DeviceState::Online => "ONLINE",
            DeviceState::Stale => "STALE",
            DeviceState::Missing => "MISSING",
            DeviceState::Faulted => "FAULTED",
            DeviceState::Removed => "REMOVED",
            DeviceState::Resilvering => "RESILVERING",
        }
    }

    /// Whether reads may use the device.
    pub fn readable(self) -> bool {
        matches!(self, DeviceState::Online | DeviceState::Stale)
    }

    /// Whether writes (data, labels, flushes) go to the device.
    pub fn writable(self) -> bool {
        matches!(
            self,
            DeviceState::Online | DeviceState::Stale | DeviceState::Resilvering
        )
    }
}

/// A device slot changed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEvent {
    /// Column in the layout.
    pub column: usize,
    /// Device location (`None` when no device is in the slot).
    pub device: Option<String>,
    /// State before.
    pub from: DeviceState,
    /// State now.
    pub to: DeviceState,
    /// Why (the error that faulted it, "replaced", "resilver complete", ...).
    pub reason: String,
    /// Every column's state right after this change (by column), so that a listener
    /// knows the pool's state at each change however quickly the next one follows.
    pub states: Vec<DeviceState>,
    /// The vdev's health right after this change.
    pub health: VdevHealth,
}

/// Whether the vdev's readable devices still cover its layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VdevHealth {
    /// Every device readable.
    Online,
    /// Some devices unreadable, within redundancy.
    Degraded,
    /// More devices unreadable than the layout tolerates.
    Failed,
}
