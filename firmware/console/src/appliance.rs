//! The seam between the console and the appliance: the [`Appliance`] trait and
//! the plain view types it speaks.
//!
//! The console never touches the pool, the file system or the export directly;
//! everything it shows or does goes through this trait. The `ingot` binary
//! implements it on the real pool; tests use
//! [`crate::testing::FakeAppliance`]. The view types are plain serde structs
//! with `utoipa::ToSchema`, so they appear as-is in the OpenAPI document.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::{IntoParams, ToSchema};

/// Stable, machine-readable error class of an [`ApplianceError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The named device, job or object does not exist (HTTP 404).
    NotFound,
    /// The request is malformed or out of range (HTTP 400).
    Invalid,
    /// The request conflicts with the current state, e.g. a scrub already runs (HTTP 409).
    Conflict,
    /// The pool is locked (encrypted and no key loaded) (HTTP 423).
    Locked,
    /// This appliance does not support the operation (HTTP 501).
    Unsupported,
    /// An internal failure of the appliance (HTTP 500).
    Internal,
}

impl ErrorCode {
    /// The wire name of the code, e.g. `not_found`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::Invalid => "invalid",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Locked => "locked",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Internal => "internal",
        }
    }
}

/// An error of an appliance operation: a stable code plus a human message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ApplianceError {
    /// The stable error class.
    pub code: ErrorCode,
    /// A human-readable message naming what failed (device, job, value).
    pub message: String,
}

impl ApplianceError {
    /// Builds an error from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    /// `not_found` error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    /// `invalid` error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Invalid, message)
    }
    /// `conflict` error.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    /// `locked` error.
    pub fn locked(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Locked, message)
    }
    /// `unsupported` error.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unsupported, message)
    }
    /// `internal` error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

/// Result of an appliance operation.
pub type ApplianceResult<T> = Result<T, ApplianceError>;

/// Firmware and host information.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SystemInfo {
    /// Host name of the appliance.
    pub hostname: String,
    /// Firmware version, e.g. `0.1.0`.
    pub version: String,
    /// Build identifier (git revision, build date).
    pub build: String,
    /// Seconds since the firmware started.
    pub uptime_secs: u64,
}

/// Health state of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeviceState {
    /// Healthy and in service.
    Online,
    /// In service but reporting errors.
    Degraded,
    /// Failed; not used for I/O.
    Faulted,
    /// Gone (unplugged or detached).
    Removed,
    /// Being rebuilt from the rest of the pool.
    Resilvering,
}

impl DeviceState {
    /// The wire name, e.g. `ONLINE`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Online => "ONLINE",
            DeviceState::Degraded => "DEGRADED",
            DeviceState::Faulted => "FAULTED",
            DeviceState::Removed => "REMOVED",
            DeviceState::Resilvering => "RESILVERING",
        }
    }
}

/// SMART / health log data of an NVMe device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Smart {
    /// Composite temperature in degrees Celsius.
    pub temperature_celsius: i32,
    /// Vendor estimate of life used, percent (may exceed 100).
    pub percentage_used: u8,
    /// Unrecovered data integrity errors.
    pub media_errors: u64,
    /// Bytes read from the device over its life.
    pub data_read_bytes: u64,
    /// Bytes written to the device over its life.
    pub data_written_bytes: u64,
    /// Power-on hours.
    pub power_on_hours: u64,
}

/// Error counters kept by the pool for a device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorCounters {
    /// Failed reads.
    pub read: u64,
    /// Failed writes.
    pub write: u64,
    /// Checksum mismatches detected.
    pub checksum: u64,
}

/// One NVMe device: identify data, health and state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Device {
    /// Stable device id used in URLs, e.g. `nvme0`.
    pub id: String,
    /// Where the device sits, e.g. a PCI address.
    pub location: String,
    /// Model number from Identify Controller.
    pub model: String,
    /// Serial number from Identify Controller.
    pub serial: String,
    /// Firmware revision from Identify Controller.
    pub firmware: String,
    /// Namespace capacity in bytes.
    pub capacity_bytes: u64,
    /// Logical block size in bytes.
    pub lba_size: u32,
    /// Health state.
    pub state: DeviceState,
    /// Whether the device is a member of the pool (false for spares and new disks).
    pub in_pool: bool,
    /// SMART data, absent if the device cannot report it.
    pub smart: Option<Smart>,
    /// Pool error counters.
    pub errors: ErrorCounters,
    /// Why the device is FAULTED or REMOVED (driver or pool message), if it is.
    #[serde(default)]
    pub fault_reason: Option<String>,
}

/// Health state of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PoolState {
    /// All devices healthy.
    Online,
    /// Data is available but redundancy is reduced.
    Degraded,
    /// Data is not available.
    Faulted,
}

impl PoolState {
    /// The wire name, e.g. `DEGRADED`.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolState::Online => "ONLINE",
            PoolState::Degraded => "DEGRADED",
            PoolState::Faulted => "FAULTED",
        }
    }
}

/// A pool member in the topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PoolMember {
    /// Slot index in the layout.
    pub slot: u32,
    /// Device id (see `/devices/{id}`).
    pub device: String,
    /// State of the member.
    pub state: DeviceState,
    /// Pool error counters of this member.
    #[serde(default)]
    pub errors: ErrorCounters,
    /// Why the member is FAULTED or REMOVED, if it is.
    #[serde(default)]
    pub fault_reason: Option<String>,
}

/// A block no redundancy could recover: reads of it fail with an I/O error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DamagedBlock {
    /// File-system object (inode) the block belongs to, when known.
    pub object: Option<u64>,
    /// Byte offset within the object.
    pub offset: u64,
    /// Pool logical sector of the block.
    pub addr: u64,
    /// Path of the file holding it, when the appliance could resolve it.
    #[serde(default)]
    pub path: Option<String>,
}

/// Pool status and topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PoolStatus {
    /// Pool name.
    pub name: String,
    /// Layout, e.g. `raid5` or `mirror`.
    pub layout: String,
    /// Health state.
    pub state: PoolState,
    /// Usable capacity in bytes.
    pub capacity_bytes: u64,
    /// Allocated bytes (after compression).
    pub used_bytes: u64,
    /// Logical bytes divided by stored bytes (1.0 = no gain).
    pub compression_ratio: f64,
    /// Last committed transaction group.
    pub txg: u64,
    /// Whether data is encrypted at rest.
    pub encrypted: bool,
    /// Whether the pool is locked (encrypted and no key loaded).
    pub locked: bool,
    /// Members in slot order.
    pub members: Vec<PoolMember>,
    /// Hot spares (device ids) waiting to take over a faulted member.
    #[serde(default)]
    pub spares: Vec<String>,
    /// Whether the pool refuses writes (locked, imported read-only or suspended).
    #[serde(default)]
    pub read_only: bool,
    /// Why the pool suspended I/O, if it did.
    #[serde(default)]
    pub suspended: Option<String>,
    /// Checksum errors seen on reads since import.
    #[serde(default)]
    pub checksum_errors: u64,
    /// Blocks no redundancy could recover (bounded list, oldest first).
    #[serde(default)]
    pub damaged: Vec<DamagedBlock>,
}

/// Kind of a background job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Read and verify every block, repair from redundancy.
    Scrub,
    /// Rebuild a replaced device.
    Resilver,
}

/// State of a background job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Making progress.
    Running,
    /// Paused by the admin.
    Paused,
    /// Finished successfully.
    Completed,
    /// Cancelled by the admin.
    Cancelled,
    /// Stopped by an error.
    Failed,
}

/// A scrub or resilver job with its progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// Job id used in URLs.
    pub id: String,
    /// Scrub or resilver.
    pub kind: JobKind,
    /// Current state.
    pub state: JobState,
    /// Device being rebuilt (resilver only).
    pub device: Option<String>,
    /// Bytes processed so far.
    pub bytes_done: u64,
    /// Bytes to process in total.
    pub bytes_total: u64,
    /// Current rate in bytes per second.
    pub rate_bytes_per_sec: u64,
    /// Estimated seconds left, if known.
    pub eta_secs: Option<u64>,
    /// Errors found so far.
    pub errors_found: u64,
    /// Errors repaired so far.
    pub errors_repaired: u64,
    /// Start time, Unix milliseconds.
    pub started_ms: u64,
    /// End time, Unix milliseconds, once finished.
    pub finished_ms: Option<u64>,
}

/// Request to replace a pool member by another device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplaceRequest {
    /// Device id of the member to replace.
    pub old: String,
    /// Device id of the new device (not yet in the pool).
    pub new: String,
}

/// Encryption state of the pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EncryptionStatus {
    /// Whether data is encrypted at rest.
    pub encrypted: bool,
    /// Whether the key is unloaded.
    pub locked: bool,
    /// Cipher, e.g. `AES-256-XTS`.
    pub cipher: Option<String>,
}

/// State of the FUSE export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportState {
    /// Mounted and serving.
    Mounted,
    /// Not mounted.
    Unmounted,
}

/// Export (file system mount) status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExportStatus {
    /// Where the file system is mounted.
    pub mountpoint: String,
    /// Mounted or not.
    pub state: ExportState,
}

/// When scrubs run automatically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScrubSchedule {
    /// Never automatically.
    Off,
    /// Every day.
    Daily,
    /// Every week.
    Weekly,
    /// Every month.
    Monthly,
}

/// Tunable appliance settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// zstd level for new writes, 0 = off, 1..=19.
    pub compression_level: u8,
    /// Transaction group commit interval in milliseconds (100..=60000).
    pub txg_interval_ms: u64,
    /// Automatic scrub schedule.
    pub scrub_schedule: ScrubSchedule,
}

impl Settings {
    /// Highest zstd level accepted.
    pub const MAX_COMPRESSION_LEVEL: u8 = 19;
    /// Accepted range of the txg interval.
    pub const TXG_INTERVAL_MS: std::ops::RangeInclusive<u64> = 100..=60_000;

    /// Checks the ranges; implementations call this before applying.
    pub fn validate(&self) -> ApplianceResult<()> {
        if self.compression_level > Self::MAX_COMPRESSION_LEVEL {
            return Err(ApplianceError::invalid(format!(
                "compression_level {} is out of range 0..={}",
                self.compression_level,
                Self::MAX_COMPRESSION_LEVEL
            )));
        }
        if !Self::TXG_INTERVAL_MS.contains(&self.txg_interval_ms) {
            return Err(ApplianceError::invalid(format!(
                "txg_interval_ms {} is out of range {}..={}",
                self.txg_interval_ms,
                Self::TXG_INTERVAL_MS.start(),
                Self::TXG_INTERVAL_MS.end()
            )));
        }
        Ok(())
    }
}

/// A latency histogram with fixed buckets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LatencyHistogram {
    /// Upper bounds of the buckets in microseconds, ascending; a final
    /// implicit bucket holds everything above the last bound.
    pub bounds_us: Vec<u64>,
    /// Count per bucket (not cumulative); `bounds_us.len() + 1` entries.
    pub counts: Vec<u64>,
    /// Sum of all observed latencies in microseconds.
    pub sum_us: u64,
}

impl LatencyHistogram {
    /// Default bucket bounds: 50 us .. 1 s.
    pub const DEFAULT_BOUNDS_US: [u64; 10] = [
        50, 100, 250, 500, 1_000, 2_500, 10_000, 50_000, 250_000, 1_000_000,
    ];

    /// An empty histogram with the default bounds.
    pub fn with_default_bounds() -> Self {
        Self {
            bounds_us: Self::DEFAULT_BOUNDS_US.to_vec(),
            counts: vec![0; Self::DEFAULT_BOUNDS_US.len() + 1],
            sum_us: 0,
        }
    }

    /// Records one observation.
    pub fn observe(&mut self, us: u64) {
        let idx = self
            .bounds_us
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(self.bounds_us.len());
        if let Some(c) = self.counts.get_mut(idx) {
            *c += 1;
        }
        self.sum_us += us;
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Cumulative I/O counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IoCounters {
    /// Completed reads.
    pub read_ops: u64,
    /// Completed writes.
    pub write_ops: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Checksum errors detected and repaired.
    pub checksum_errors_repaired: u64,
    /// Read latency.
    pub read_latency: LatencyHistogram,
    /// Write latency.
    pub write_latency: LatencyHistogram,
}

/// I/O counters of one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceIo {
    /// Device id.
    pub device: String,
    /// Its counters.
    pub counters: IoCounters,
}

/// The pool's memory caches and write-behind (counters since the pool was imported), as
/// ZFS's `arcstats`: what an admin reads to size memory and to see whether reads hit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CacheStats {
    /// Record cache (ARC) lookups answered from memory.
    pub hits: u64,
    /// Lookups that read and decoded the record from the devices.
    pub misses: u64,
    /// Records evicted to stay within the limit.
    pub evictions: u64,
    /// Memory the record cache holds now.
    pub bytes: u64,
    /// Its limit.
    pub limit_bytes: u64,
    /// Records it holds now.
    pub records: u64,
    /// Records read ahead by sequential readahead.
    pub prefetched: u64,
    /// Lookups that found a read-ahead record.
    pub prefetch_hits: u64,
    /// Records dirty in memory now (written, not yet committed).
    pub dirty_records: u64,
    /// Memory the dirty records hold.
    pub dirty_bytes: u64,
    /// Records sealed and written early (write-behind, idle records, pre-flush).
    pub early_writes: u64,
    /// Early writes a commit linked into the tree.
    pub early_linked: u64,
    /// Early writes given back (the record changed before the commit).
    pub early_wasted: u64,
}

/// A snapshot of the I/O statistics (counters are cumulative since start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IoStats {
    /// Snapshot time, Unix milliseconds.
    pub time_ms: u64,
    /// Pool-level (logical) counters.
    pub pool: IoCounters,
    /// Per-device counters.
    pub devices: Vec<DeviceIo>,
    /// The pool's caches (all zero while no pool is imported).
    #[serde(default)]
    pub cache: CacheStats,
}

/// Severity of an event.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Informational.
    Info,
    /// Needs attention.
    Warning,
    /// Data at risk or lost redundancy.
    Critical,
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventData {
    /// A device, the pool, the export or the encryption changed state.
    StateChange {
        /// What changed: `pool`, `device`, `export` or `encryption`.
        subject: String,
        /// Device id when `subject` is `device`.
        device: Option<String>,
        /// The new state, e.g. `DEGRADED`, `locked`, `mounted`.
        state: String,
    },
    /// A job made progress or changed state.
    JobProgress {
        /// The job snapshot.
        job: Job,
    },
    /// An alert that is not a state change (e.g. errors repaired, temperature).
    Alert {
        /// Device concerned, if any.
        device: Option<String>,
    },
}

/// An appliance event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Increasing event id.
    pub id: u64,
    /// Unix milliseconds.
    pub time_ms: u64,
    /// Severity.
    pub severity: Severity,
    /// Human-readable message.
    pub message: String,
    /// Typed payload.
    pub data: EventData,
}

/// Query of the event history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only events of at least this severity.
    pub severity: Option<Severity>,
    /// Only events with an id lower than this (paging cursor).
    pub before: Option<u64>,
    /// Page size, 1..=500 (default 50).
    pub limit: Option<u32>,
}

impl EventQuery {
    /// Default page size.
    pub const DEFAULT_LIMIT: u32 = 50;
    /// Largest page size.
    pub const MAX_LIMIT: u32 = 500;

    /// The effective page size, validated.
    pub fn effective_limit(&self) -> ApplianceResult<usize> {
        match self.limit {
            None => Ok(Self::DEFAULT_LIMIT as usize),
            Some(l) if (1..=Self::MAX_LIMIT).contains(&l) => Ok(l as usize),
            Some(l) => Err(ApplianceError::invalid(format!(
                "limit {l} is out of range 1..={}",
                Self::MAX_LIMIT
            ))),
        }
    }
}

/// One page of event history, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    /// Events, newest first.
    pub events: Vec<Event>,
    /// Cursor for the next (older) page, absent on the last page.
    pub next_before: Option<u64>,
}

/// A simulated NVMe drive of the appliance, for fault drills.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SimDrive {
    /// Device id (see `/devices/{id}`).
    pub id: String,
    /// Drive name, e.g. `sim2`.
    pub name: String,
    /// Its data file.
    pub path: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Whether the drive is pulled (`remove`) and not yet reinserted.
    pub removed: bool,
    /// Whether it is a pool member.
    pub in_pool: bool,
    /// Faults injected so far.
    pub faults: SimFaultCounters,
}

/// Counts of faults injected into a simulated drive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SimFaultCounters {
    /// Commands completed with an injected error status.
    pub status_injected: u64,
    /// Commands delayed.
    pub delayed: u64,
    /// Surprise removals.
    pub removals: u64,
    /// Sectors silently corrupted.
    pub corrupted_sectors: u64,
}

/// A fault to inject into a simulated drive (like ZFS `zinject`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum SimFault {
    /// Pull the drive: surprise removal (registers read all-ones, nothing completes),
    /// announced the way VFIO announces a hot-unplug.
    Remove,
    /// Put a pulled drive back: clear its faults, bring the NVMe controller up again and
    /// hand it back to the pool, which resilvers what it missed.
    Reinsert,
    /// Complete I/O commands with this NVMe status instead of executing them.
    Fail {
        /// Status Code Type (0 generic, 1 command specific, 2 media/data integrity).
        sct: u8,
        /// Status Code.
        sc: u8,
        /// Only the next `count` commands (default: every one until `clear`).
        #[serde(default)]
        count: Option<u32>,
    },
    /// Hold I/O commands this long before executing them (past the driver's timeout,
    /// the driver aborts, resets and retries).
    Delay {
        /// Milliseconds, 1..=3600000.
        ms: u64,
        /// Only the next `count` commands (default: every one until `clear`).
        #[serde(default)]
        count: Option<u32>,
    },
    /// Silently flip a bit in each of `blocks` logical blocks from `lba`.
    Corrupt {
        /// First logical block.
        lba: u64,
        /// Number of blocks, 1..=65536.
        blocks: u64,
    },
    /// Remove every rule (errors, delays); corrupted sectors stay corrupted.
    Clear,
}

/// A new blank simulated drive to hot-add (a replacement target).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimAddRequest {
    /// Size in bytes (default: the size of the appliance's first drive).
    #[serde(default)]
    pub size_bytes: Option<u64>,
}

/// The message of the error an appliance without simulated drives gives.
pub const NO_SIM_DRIVES: &str =
    "this appliance has no simulated drives: fault drills need drives of kind \"sim\"";

/// Everything the console shows and does, implemented by the appliance.
///
/// Every method returns an [`ApplianceError`] with a stable code on failure.
/// Job-progress events are broadcast but need not be kept in the history.
#[async_trait]
pub trait Appliance: Send + Sync + 'static {
    /// Firmware version, build and uptime.
    async fn system(&self) -> ApplianceResult<SystemInfo>;
    /// All devices, pool members and others.
    async fn devices(&self) -> ApplianceResult<Vec<Device>>;
    /// One device by id.
    async fn device(&self, id: &str) -> ApplianceResult<Device>;
    /// Pool status and topology.
    async fn pool(&self) -> ApplianceResult<PoolStatus>;
    /// Current and recent jobs, newest first.
    async fn jobs(&self) -> ApplianceResult<Vec<Job>>;
    /// Starts a scrub.
    async fn start_scrub(&self) -> ApplianceResult<Job>;
    /// Pauses a running job.
    async fn pause_job(&self, id: &str) -> ApplianceResult<Job>;
    /// Resumes a paused job.
    async fn resume_job(&self, id: &str) -> ApplianceResult<Job>;
    /// Cancels a running or paused job.
    async fn cancel_job(&self, id: &str) -> ApplianceResult<Job>;
    /// Replaces a pool member; returns the resilver job.
    async fn replace_device(&self, req: ReplaceRequest) -> ApplianceResult<Job>;
    /// Encryption state.
    async fn encryption(&self) -> ApplianceResult<EncryptionStatus>;
    /// Loads the key from the passphrase.
    async fn unlock(&self, passphrase: &str) -> ApplianceResult<EncryptionStatus>;
    /// Unloads the key.
    async fn lock(&self) -> ApplianceResult<EncryptionStatus>;
    /// Re-wraps the key under a new passphrase.
    async fn change_passphrase(&self, old: &str, new: &str) -> ApplianceResult<()>;
    /// Export state.
    async fn export(&self) -> ApplianceResult<ExportStatus>;
    /// Mounts the export.
    async fn mount(&self) -> ApplianceResult<ExportStatus>;
    /// Unmounts the export.
    async fn unmount(&self) -> ApplianceResult<ExportStatus>;
    /// Current settings.
    async fn settings(&self) -> ApplianceResult<Settings>;
    /// Applies new settings (validated with [`Settings::validate`]).
    async fn update_settings(&self, settings: Settings) -> ApplianceResult<Settings>;
    /// A snapshot of the I/O statistics.
    async fn stats(&self) -> ApplianceResult<IoStats>;
    /// Subscribes to live events.
    fn subscribe(&self) -> broadcast::Receiver<Event>;
    /// A page of the event history, newest first.
    async fn events(&self, query: EventQuery) -> ApplianceResult<EventPage>;
    /// Resets the pool's per-device error counters and the damaged-block list.
    async fn clear_errors(&self) -> ApplianceResult<PoolStatus> {
        Err(ApplianceError::unsupported(
            "clearing error counters is not supported by this appliance",
        ))
    }
    /// The simulated drives (fault drills). Default: none (`not_found`).
    async fn sim_drives(&self) -> ApplianceResult<Vec<SimDrive>> {
        Err(ApplianceError::not_found(NO_SIM_DRIVES))
    }
    /// Injects a fault into simulated drive `id` (device id or drive name).
    async fn sim_fault(&self, id: &str, fault: SimFault) -> ApplianceResult<SimDrive> {
        let _ = (id, fault);
        Err(ApplianceError::not_found(NO_SIM_DRIVES))
    }
    /// Creates a blank simulated drive and hot-adds it (not a pool member).
    async fn sim_add(&self, req: SimAddRequest) -> ApplianceResult<Device> {
        let _ = req;
        Err(ApplianceError::not_found(NO_SIM_DRIVES))
    }
}
