//! Pool configuration (create and import options) and the status report.

use super::label::{PoolCompression, PoolLayout};
use crate::crypto::KdfParams;
use ingot_hal::blockdev::DeviceIdentity;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Default record size of object data.
pub const DEFAULT_RECORD_SIZE: u32 = 128 * 1024;

/// Runtime tunables (not stored on disk).
#[derive(Debug, Clone)]
pub struct Tunables {
    /// Commit the open txg at least this often when it has changes.
    pub txg_interval: Duration,
    /// Commit early once this many bytes are dirty; writers wait once twice this is dirty.
    /// Default: a tenth of physical memory within 64 MiB..4 GiB, as ZFS's
    /// `zfs_dirty_data_max` ([`super::dirty::default_dirty_limit`]).
    pub dirty_limit_bytes: u64,
    /// Bytes of clean tree nodes kept in memory.
    pub cache_bytes: usize,
    /// Memory the decoded-record cache (ARC) may hold; 0 disables it. Default: half of
    /// physical memory, as ZFS sizes its ARC
    /// ([`super::recordcache::default_cache_bytes`]).
    pub record_cache_bytes: usize,
    /// Write-behind: records written whole (or completed by partial writes) are sealed
    /// and written by background tasks while writers go on, up to this many at a time (a
    /// writer waits for a slot: the write throttle); the commit then only links their
    /// extents. 0: whole records are written inside the write, as before.
    pub write_behind_records: usize,
    /// Idle commit: once the open txg has changes and no batch has changed anything for
    /// this long, commit it then rather than at the next [`Tunables::txg_interval`] tick;
    /// dirty records of new data (no extent under them) untouched that long are sealed
    /// and written in the background meanwhile (early writes the commit links). A steady
    /// stream of changes never triggers it. Zero disables both (commits on the timer, the
    /// dirty limit and `sync` only). Default [`DEFAULT_IDLE_COMMIT`].
    pub idle_commit: Duration,
}

/// Default of [`Tunables::idle_commit`].
pub const DEFAULT_IDLE_COMMIT: Duration = Duration::from_millis(200);

impl Default for Tunables {
    fn default() -> Self {
        Tunables {
            txg_interval: Duration::from_secs(5),
            dirty_limit_bytes: super::dirty::default_dirty_limit(),
            cache_bytes: 64 << 20,
            record_cache_bytes: super::recordcache::default_cache_bytes(),
            write_behind_records: super::writebehind::DEFAULT_SLOTS,
            idle_commit: DEFAULT_IDLE_COMMIT,
        }
    }
}

/// What `Pool::create` makes.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Pool name (1..=63 bytes of UTF-8).
    pub name: String,
    /// RAID layout over the devices, in the order given.
    pub layout: PoolLayout,
    /// Compression of new extents.
    pub compression: PoolCompression,
    /// `Some` to encrypt the pool under this passphrase.
    pub passphrase: Option<String>,
    /// Argon2id cost of the key slot.
    pub kdf: KdfParams,
    /// Record size of object data (4 KiB..=1 MiB, a power of two).
    pub record_size: u32,
    /// Runtime tunables.
    pub tunables: Tunables,
}

impl PoolConfig {
    /// A config with defaults: no encryption, zstd level 1, 128 KiB records.
    pub fn new(name: impl Into<String>, layout: PoolLayout) -> Self {
        PoolConfig {
            name: name.into(),
            layout,
            compression: PoolCompression::Default,
            passphrase: None,
            kdf: KdfParams::DEFAULT,
            record_size: DEFAULT_RECORD_SIZE,
            tunables: Tunables::default(),
        }
    }
}

/// How `Pool::import` opens a pool.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Passphrase of an encrypted pool; `None` imports it **locked**: the object API
    /// fails with `Locked`, but unless `read_only` the pool still maintains itself
    /// keylessly (scrub and self-healing reads repair, resilvers and replace run, commits
    /// are label-only).
    pub passphrase: Option<String>,
    /// Never write to the devices.
    pub read_only: bool,
    /// Runtime tunables.
    pub tunables: Tunables,
}

pub use crate::raid::vdev::{DeviceEvent, DeviceState};

/// Health of the whole pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolHealth {
    /// Every device online.
    Online,
    /// Some device is not online (faulted, removed, missing, stale or resilvering) but the
    /// others hold every block: reads reconstruct, writes continue.
    Degraded,
    /// Beyond redundancy, or a commit failed: writes are refused (reads return only data
    /// that verifies). See `PoolStatus::suspended` for why.
    Suspended,
}

impl PoolHealth {
    /// Upper-case name (`ONLINE`, `DEGRADED`, `SUSPENDED`).
    pub fn name(self) -> &'static str {
        match self {
            PoolHealth::Online => "ONLINE",
            PoolHealth::Degraded => "DEGRADED",
            PoolHealth::Suspended => "SUSPENDED",
        }
    }
}

/// A hot spare in the status report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpareStatus {
    /// Who it is.
    pub identity: DeviceIdentity,
    /// `None` while available; the column it replaced once it took over.
    pub in_use_for: Option<u32>,
}

/// One device in the status report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// Column in the layout.
    pub index: u32,
    /// Device GUID (hex).
    pub guid: String,
    /// Who it is, when present.
    pub identity: Option<DeviceIdentity>,
    /// State.
    pub state: DeviceState,
    /// Why it is faulted, removed or resilvering (`None` when online).
    #[serde(default)]
    pub fault_reason: Option<String>,
    /// Newest label txg written to it (at import: the newest found on it; 0 if none).
    pub label_txg: u64,
    /// Error counters since import.
    pub errors: DeviceErrors,
}

/// Per-device error counters (since import).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceErrors {
    /// Failed reads.
    pub read: u64,
    /// Failed writes or flushes.
    pub write: u64,
    /// Columns returned with wrong contents.
    pub checksum: u64,
}

/// What `Pool::status` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolStatus {
    /// Pool name.
    pub name: String,
    /// Pool GUID (hex).
    pub guid: String,
    /// Layout.
    pub layout: PoolLayout,
    /// Compression setting.
    pub compression: PoolCompression,
    /// Record size.
    pub record_size: u32,
    /// Devices.
    pub devices: Vec<DeviceStatus>,
    /// Usable capacity in bytes.
    pub capacity_bytes: u64,
    /// Allocated bytes.
    pub used_bytes: u64,
    /// Bytes available to new data.
    pub available_bytes: u64,
    /// Logical / stored bytes of live data.
    pub compression_ratio: f64,
    /// Last durable txg.
    pub txg: u64,
    /// Whether the pool is encrypted.
    pub encrypted: bool,
    /// Whether it is encrypted and no key is loaded.
    pub locked: bool,
    /// Whether it was imported read-only (a locked pool is not, unless asked: it
    /// repairs and resilvers keylessly; its object API fails with `Locked`).
    pub read_only: bool,
    /// Why the pool suspended itself, if it did.
    pub suspended: Option<String>,
    /// Checksum errors seen on reads since import.
    pub checksum_errors: u64,
    /// Blocks no redundancy could recover (bounded list, oldest first).
    #[serde(default)]
    pub damaged: Vec<super::heal::DamagedBlock>,
    /// Set on a locked pool: damaged blocks are reported by pool address only (naming
    /// the objects they belong to needs the key).
    #[serde(default)]
    pub damaged_note: Option<String>,
    /// Pool health.
    pub health: PoolHealth,
    /// The current (or last) resilver, if any ran since import.
    #[serde(default)]
    pub resilver: Option<super::resilver::ResilverProgress>,
    /// Hot spares.
    #[serde(default)]
    pub spares: Vec<SpareStatus>,
    /// The data path: decoded-record cache (size, bound, hits) and dirty records.
    #[serde(default)]
    pub datapath: super::datapath::DataPathStats,
}

/// Result of a keyless verification walk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Txg walked.
    pub txg: u64,
    /// Tree nodes verified.
    pub nodes: u64,
    /// Data extents verified.
    pub extents: u64,
    /// Stored bytes read.
    pub bytes: u64,
    /// Bad columns or copies found (and rewritten unless read-only) during the walk.
    pub bad_columns: u64,
    /// Problems found.
    pub errors: Vec<String>,
}
