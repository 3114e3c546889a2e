//! The live appliance behind the console: the drives, the pool, the file system and its FUSE
//! export of a running `ingot up`, managed through the console's [`Appliance`] seam.
//!
//! Locking an encrypted pool exports it and imports it again without its key (read-only;
//! keyless verification still works); unlocking does the reverse. The export must be
//! unmounted to lock, as a mounted file system needs the key.
//!
//! Simulated drives take fault drills (`/api/v1/sim/...`): pulled, reinserted (the NVMe
//! driver is brought up again on the same simulated controller and the namespace handed
//! back to the pool), failing or delaying commands, corrupted sectors; and blank ones are
//! hot-added as replacement targets. A monitor task turns pool and device state changes
//! into events.

use crate::config::DriveSpec;
use crate::drives::OpenDrive;
use crate::events::{EventLog, now_ms};
use crate::metered::{MeteredDevice, add_counters};
use async_trait::async_trait;
use ingot_console::appliance::{
    CacheStats, DamagedBlock, Device, DeviceIo, DeviceState, EncryptionStatus, ErrorCounters,
    Event, EventData, EventPage, EventQuery, ExportState, ExportStatus, IoCounters, IoStats, Job,
    PoolMember, PoolState, PoolStatus, ReplaceRequest, ScrubSchedule, Settings, Severity,
    SimAddRequest, SimDrive, SimFault, SimFaultCounters, Smart, SystemInfo,
};
use ingot_console::appliance::{JobKind, JobState};
use ingot_console::{Appliance, ApplianceError, ApplianceResult};
use ingot_export::{MountHandle, MountOptions};
use ingot_fs::{Fs, FsOptions};
use ingot_hal::blockdev::BlockDevice;
use ingot_hal::nvme::driver::{Controller, DriverConfig};
use ingot_hal::sim::{CommandMatch, FaultCount, SimController};
use ingot_pool::engine::DeviceEvent;
use ingot_pool::engine::scrub::{ScrubHandle, ScrubOptions, ScrubProgress, ScrubState};
use ingot_pool::engine::{DeviceState as PoolDeviceState, PoolError};
use ingot_pool::engine::{
    JobProgress, PoolHealth, ResilverHandle, ResilverOptions, ResilverProgress,
};
use ingot_pool::raid::VdevHealth;
use ingot_pool::store::ObjectStore;
use ingot_pool::{ImportOptions, Pool, Tunables};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, broadcast};

/// One drive of the appliance.
#[derive(Debug)]
pub struct Drive {
    /// Console id: `nvme0`, `nvme1`, ... in config order, then in the order added.
    pub id: String,
    /// Where it comes from.
    pub spec: DriveSpec,
    /// The simulated controller of a `sim` drive.
    sim: Option<Arc<SimController>>,
    /// Pulled by a fault drill and not yet reinserted.
    pulled: AtomicBool,
    /// The driver and device, replaced when a pulled drive is reinserted.
    io: parking_lot::Mutex<DriveIo>,
}

#[derive(Debug, Clone)]
struct DriveIo {
    controller: Option<Controller>,
    device: Arc<MeteredDevice>,
}

impl Drive {
    /// A drive of the appliance over an open drive.
    pub fn new(id: String, spec: DriveSpec, open: &OpenDrive) -> Drive {
        Drive {
            id,
            spec,
            sim: open.sim.clone(),
            pulled: AtomicBool::new(false),
            io: parking_lot::Mutex::new(DriveIo {
                controller: open.controller.clone(),
                device: Arc::new(MeteredDevice::new(open.device.clone())),
            }),
        }
    }

    /// The counted device the pool uses.
    pub fn device(&self) -> Arc<MeteredDevice> {
        self.io.lock().device.clone()
    }

    /// The NVMe controller (None for file drives).
    pub fn controller(&self) -> Option<Controller> {
        self.io.lock().controller.clone()
    }

    fn location(&self) -> String {
        self.device().identity().location
    }

    fn sim_name(&self) -> Option<String> {
        self.sim.as_ref().map(|s| s.config().name.clone())
    }
}

/// The pool and export, which lock/unlock and mount/unmount replace.
#[derive(Debug, Default)]
struct Serving {
    pool: Option<Arc<Pool>>,
    mount: Option<MountHandle>,
}

/// The pool's handle on a job the console lists.
#[derive(Debug)]
enum Handle {
    /// A scrub started from the console; dropping the handle cancels it, so it is kept
    /// while the job is listed.
    Scrub(ScrubHandle),
    /// A resilver (owned by the pool: started by a replace, a reattach or a spare).
    Resilver(ResilverHandle),
}

impl Handle {
    fn scan(&self) -> ScrubProgress {
        match self {
            Handle::Scrub(h) => h.progress(),
            Handle::Resilver(h) => h.progress().scan,
        }
    }
    fn pause(&self) {
        match self {
            Handle::Scrub(h) => h.pause(),
            Handle::Resilver(h) => h.pause(),
        }
    }
    fn resume(&self) {
        match self {
            Handle::Scrub(h) => h.resume(),
            Handle::Resilver(h) => h.resume(),
        }
    }
    fn cancel(&self) {
        match self {
            Handle::Scrub(h) => h.cancel(),
            Handle::Resilver(h) => h.cancel(),
        }
    }
}

/// A scrub or resilver the console lists.
#[derive(Debug)]
struct TrackedJob {
    id: String,
    kind: JobKind,
    /// Device id being rebuilt (resilver).
    device: Option<String>,
    /// Which resilver of the pool this is (so it is adopted once).
    key: Option<String>,
    started_ms: u64,
    finished_ms: Arc<parking_lot::Mutex<Option<u64>>>,
    handle: Handle,
}

/// How many finished jobs the console lists.
const KEEP_JOBS: usize = 20;

/// The console's view of a scan job from its progress.
fn job_of(
    id: &str,
    kind: JobKind,
    device: Option<String>,
    started_ms: u64,
    finished_ms: Option<u64>,
    p: &ScrubProgress,
) -> Job {
    Job {
        id: id.to_string(),
        kind,
        state: match p.state {
            ScrubState::Counting | ScrubState::Running => JobState::Running,
            ScrubState::Paused => JobState::Paused,
            ScrubState::Cancelled => JobState::Cancelled,
            ScrubState::Finished if p.unrecoverable > 0 => JobState::Failed,
            ScrubState::Finished => JobState::Completed,
        },
        device,
        bytes_done: p.scanned_bytes,
        bytes_total: p.total_bytes,
        rate_bytes_per_sec: p.rate_bytes_per_sec as u64,
        eta_secs: p.eta_secs.map(|s| s as u64),
        errors_found: p.errors_found,
        errors_repaired: p.repaired,
        started_ms,
        finished_ms,
    }
}

fn job_view(j: &TrackedJob) -> Job {
    job_of(
        &j.id,
        j.kind,
        j.device.clone(),
        j.started_ms,
        *j.finished_ms.lock(),
        &j.handle.scan(),
    )
}

fn is_active(p: &ScrubProgress) -> bool {
    matches!(
        p.state,
        ScrubState::Counting | ScrubState::Running | ScrubState::Paused
    )
}

/// Most directory entries a damaged-file lookup visits.
const MAX_WALK: usize = 200_000;

/// Paths (from the mount's root) of the files whose inode is in `wanted`, by a
/// breadth-first walk of the namespace (bounded by [`MAX_WALK`] entries).
async fn find_paths(
    fs: &ingot_fs::Fs,
    wanted: &std::collections::BTreeSet<u64>,
) -> std::collections::HashMap<u64, String> {
    let mut found = std::collections::HashMap::new();
    let mut queue =
        std::collections::VecDeque::from([(ingot_fs::superblock::ROOT_ID, String::new())]);
    let mut visited = 0usize;
    while let Some((dir, path)) = queue.pop_front() {
        let mut offset = 0;
        loop {
            let Ok(page) = fs.readdir(dir, offset, 256).await else {
                break;
            };
            let Some(last) = page.last() else { break };
            offset = last.offset;
            for e in &page {
                if e.name == b"." || e.name == b".." {
                    continue;
                }
                visited += 1;
                let p = format!("{path}/{}", String::from_utf8_lossy(&e.name));
                if wanted.contains(&e.ino) {
                    found.entry(e.ino).or_insert_with(|| p.clone());
                }
                if e.kind == ingot_fs::inode::FileKind::Dir {
                    queue.push_back((e.ino, p));
                }
            }
            if found.len() == wanted.len() || visited > MAX_WALK {
                return found;
            }
        }
    }
    found
}

/// Which resilver a progress belongs to (of which pool instance: a re-import resumes a
/// resilver as a new job).
fn resilver_key(pool: &Pool, p: &ResilverProgress) -> String {
    format!(
        "{:p}:{}:{}:{:?}",
        std::ptr::from_ref(pool),
        p.device_guid,
        p.from_txg,
        p.columns
    )
}

/// The console's view of the pool's data-path counters.
fn cache_stats(d: &ingot_pool::engine::DataPathStats) -> CacheStats {
    let c = &d.record_cache;
    CacheStats {
        hits: c.hits,
        misses: c.misses,
        evictions: c.evictions,
        bytes: c.bytes,
        limit_bytes: c.limit,
        records: c.records,
        prefetched: c.prefetched,
        prefetch_hits: c.prefetch_hits,
        dirty_records: d.dirty_records,
        dirty_bytes: d.dirty_bytes,
        early_writes: d.early_writes,
        early_linked: d.early_linked,
        early_wasted: d.early_wasted,
    }
}

/// The pool's state right after a device event, as the console shows it (DEGRADED while
/// any member is not ONLINE); `None` when the layout no longer holds every block: whether
/// the pool is then suspended is for its status to say.
fn event_pool_state(ev: &DeviceEvent) -> Option<PoolState> {
    if ev.health == VdevHealth::Failed {
        return None;
    }
    Some(if ev.states.iter().all(|s| *s == PoolDeviceState::Online) {
        PoolState::Online
    } else {
        PoolState::Degraded
    })
}

/// Push a job's progress to the console while it runs (at most twice a second), mark its
/// end and log how it ended.
fn watch_job<P: JobProgress>(
    mut rx: tokio::sync::watch::Receiver<P>,
    events: EventLog,
    template: Job,
    finished: Arc<parking_lot::Mutex<Option<u64>>>,
) {
    tokio::spawn(async move {
        let mut last_emit = Instant::now() - Duration::from_secs(1);
        let what = match (&template.kind, &template.device) {
            (JobKind::Resilver, Some(d)) => format!("{} of {d}", template.id),
            _ => template.id.clone(),
        };
        loop {
            let p = rx.borrow_and_update().scan().clone();
            let done = !is_active(&p);
            if done {
                finished.lock().get_or_insert_with(now_ms);
            }
            let view = job_of(
                &template.id,
                template.kind,
                template.device.clone(),
                template.started_ms,
                *finished.lock(),
                &p,
            );
            if done || last_emit.elapsed().as_millis() >= 500 {
                last_emit = Instant::now();
                events.emit(
                    Severity::Info,
                    format!("{what}: {:.1}% done", p.percent()),
                    EventData::JobProgress { job: view },
                );
            }
            if done {
                let (sev, outcome) = if p.unrecoverable > 0 {
                    (Severity::Critical, "found unrecoverable blocks")
                } else if p.state == ScrubState::Cancelled {
                    (Severity::Warning, "was cancelled")
                } else if p.errors_found > 0 {
                    (Severity::Warning, "repaired errors")
                } else if template.kind == JobKind::Resilver {
                    (Severity::Info, "completed")
                } else {
                    (Severity::Info, "found no errors")
                };
                let kind = match template.kind {
                    JobKind::Scrub => "scrub",
                    JobKind::Resilver => "resilver",
                };
                events.emit(
                    sev,
                    format!(
                        "{what} {outcome} ({} scanned, {} errors found, {} repaired, {} unrecoverable)",
                        p.scanned_bytes, p.errors_found, p.repaired, p.unrecoverable
                    ),
                    EventData::StateChange {
                        subject: kind.into(),
                        device: template.device.clone(),
                        state: format!("{:?}", p.state).to_lowercase(),
                    },
                );
                break;
            }
            if rx.changed().await.is_err() {
                break;
            }
        }
    });
}

/// Where the appliance keeps what it adds at run time.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    /// The config file to record hot-added drives in (None: not recorded).
    pub config: Option<PathBuf>,
    /// Where `ingot sim add` creates simulated drives.
    pub sim_dir: PathBuf,
    /// Where the automatic scrub schedule is kept.
    pub schedule_file: Option<PathBuf>,
    /// Where a txg interval set in the console is kept (the compression level lives in
    /// the pool's labels).
    pub txg_interval_file: Option<PathBuf>,
}

/// The txg interval saved in `file`, if any and in range.
pub fn load_txg_interval(file: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let ms: u64 = text.trim().parse().ok()?;
    Settings::TXG_INTERVAL_MS.contains(&ms).then_some(ms)
}

/// The console's compression level (0 = off) for a pool's compression setting.
fn compression_level(c: ingot_pool::PoolCompression) -> u8 {
    match c {
        ingot_pool::PoolCompression::Off => 0,
        ingot_pool::PoolCompression::Zstd { level } => u8::try_from(level).unwrap_or(0),
        ingot_pool::PoolCompression::Default => 1,
    }
}

/// The scrub schedule saved in `file` (Off if none or unreadable).
pub fn load_schedule(file: &std::path::Path) -> ScrubSchedule {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(ScrubSchedule::Off)
}

fn schedule_period(s: ScrubSchedule) -> Option<Duration> {
    const DAY: u64 = 24 * 3600;
    match s {
        ScrubSchedule::Off => None,
        ScrubSchedule::Daily => Some(Duration::from_secs(DAY)),
        ScrubSchedule::Weekly => Some(Duration::from_secs(7 * DAY)),
        ScrubSchedule::Monthly => Some(Duration::from_secs(30 * DAY)),
    }
}

/// A running appliance.
#[derive(Debug)]
pub struct Live {
    started: Instant,
    drives: parking_lot::RwLock<Vec<Arc<Drive>>>,
    paths: Paths,
    /// Serialises fault drills and hot-adds.
    drills: Mutex<()>,
    closing: AtomicBool,
    serving: Mutex<Serving>,
    mountpoint: PathBuf,
    mount_opts: MountOptions,
    settings: parking_lot::Mutex<Settings>,
    jobs: parking_lot::Mutex<Vec<TrackedJob>>,
    /// Paths of damaged objects found so far (None: not found in the namespace).
    damaged_paths: parking_lot::Mutex<std::collections::HashMap<u64, Option<String>>>,
    /// Bytes per second scrubs may read (None: the pool's default throttle).
    scrub_rate_limit: parking_lot::Mutex<Option<u64>>,
    next_job: std::sync::atomic::AtomicU64,
    /// Tunables of the pool (`[pool]` of ingot.toml), kept for lock/unlock re-imports.
    pool_tunables: Tunables,
    /// The event log (the binary emits start-up and shutdown events too).
    pub events: EventLog,
}

fn internal(e: impl std::fmt::Display) -> ApplianceError {
    ApplianceError::internal(e.to_string())
}

fn pool_err(e: PoolError) -> ApplianceError {
    match e {
        PoolError::WrongPassphrase { .. } | PoolError::BadDevice { .. } => {
            ApplianceError::invalid(e.to_string())
        }
        PoolError::Locked { .. } => ApplianceError::locked(e.to_string()),
        PoolError::DeviceConflict { .. }
        | PoolError::ForeignDevice { .. }
        | PoolError::TooFewDevices { .. }
        | PoolError::ReadOnly(_) => ApplianceError::conflict(e.to_string()),
        other => internal(other),
    }
}

fn member_state(s: PoolDeviceState) -> DeviceState {
    match s {
        PoolDeviceState::Online => DeviceState::Online,
        PoolDeviceState::Stale => DeviceState::Degraded,
        PoolDeviceState::Missing | PoolDeviceState::Removed => DeviceState::Removed,
        PoolDeviceState::Faulted => DeviceState::Faulted,
        PoolDeviceState::Resilvering => DeviceState::Resilvering,
    }
}

/// The console's view of the pool's damaged-block list.
fn damaged_view(st: &ingot_pool::PoolStatus) -> Vec<DamagedBlock> {
    st.damaged
        .iter()
        .map(|d| DamagedBlock {
            object: d.object,
            offset: d.offset,
            addr: d.addr,
            path: None,
        })
        .collect()
}

impl Live {
    /// An appliance serving `pool` (and `mount`, if mounted) over `drives`.
    pub fn new(
        drives: Vec<Drive>,
        pool: Arc<Pool>,
        mount: Option<MountHandle>,
        mountpoint: PathBuf,
        mount_opts: MountOptions,
        txg_interval_ms: u64,
        paths: Paths,
    ) -> Live {
        let schedule = paths
            .schedule_file
            .as_deref()
            .map_or(ScrubSchedule::Off, load_schedule);
        let txg_interval_ms = paths
            .txg_interval_file
            .as_deref()
            .and_then(load_txg_interval)
            .unwrap_or(txg_interval_ms);
        if let Err(e) = pool.set_txg_interval(Duration::from_millis(txg_interval_ms)) {
            tracing::warn!(error = %e, "saved txg interval not applied");
        }
        let compression_level = compression_level(pool.status().compression);
        Live {
            started: Instant::now(),
            drives: parking_lot::RwLock::new(drives.into_iter().map(Arc::new).collect()),
            paths,
            drills: Mutex::new(()),
            closing: AtomicBool::new(false),
            serving: Mutex::new(Serving {
                pool: Some(pool),
                mount,
            }),
            mountpoint,
            mount_opts,
            settings: parking_lot::Mutex::new(Settings {
                compression_level,
                txg_interval_ms,
                scrub_schedule: schedule,
            }),
            jobs: parking_lot::Mutex::new(Vec::new()),
            scrub_rate_limit: parking_lot::Mutex::new(None),
            damaged_paths: parking_lot::Mutex::new(std::collections::HashMap::new()),
            next_job: std::sync::atomic::AtomicU64::new(1),
            pool_tunables: Tunables::default(),
            events: EventLog::default(),
        }
    }

    /// The tunables the pool was imported with, used again when it is re-imported
    /// (lock, unlock).
    #[must_use]
    pub fn with_pool_tunables(mut self, tunables: Tunables) -> Live {
        self.pool_tunables = tunables;
        self
    }

    /// Cancel every running scrub (before the pool is exported or re-imported). A
    /// resilver is the pool's: export stops it and the next import resumes it.
    fn cancel_jobs(&self) {
        for j in self.jobs.lock().iter() {
            if matches!(j.handle, Handle::Scrub(_)) && is_active(&j.handle.scan()) {
                j.handle.cancel();
            }
        }
    }

    fn with_job(&self, id: &str, f: impl FnOnce(&Handle)) -> ApplianceResult<Job> {
        let jobs = self.jobs.lock();
        let j = jobs
            .iter()
            .find(|j| j.id == id)
            .ok_or_else(|| ApplianceError::not_found(format!("no job {id:?}")))?;
        if !is_active(&j.handle.scan()) {
            return Err(ApplianceError::conflict(format!("job {id} has ended")));
        }
        f(&j.handle);
        Ok(job_view(j))
    }

    /// List a job, push its progress as events, and drop the oldest finished ones.
    fn track(
        &self,
        kind: JobKind,
        device: Option<String>,
        key: Option<String>,
        handle: Handle,
    ) -> Job {
        let n = self.next_job.fetch_add(1, Ordering::Relaxed);
        let prefix = match kind {
            JobKind::Scrub => "scrub",
            JobKind::Resilver => "resilver",
        };
        let job = TrackedJob {
            id: format!("{prefix}-{n}"),
            kind,
            device,
            key,
            started_ms: now_ms(),
            finished_ms: Arc::new(parking_lot::Mutex::new(None)),
            handle,
        };
        let view = job_view(&job);
        let events = self.events.subscriber_handle();
        match &job.handle {
            Handle::Scrub(h) => {
                watch_job(h.subscribe(), events, view.clone(), job.finished_ms.clone())
            }
            Handle::Resilver(h) => {
                watch_job(h.subscribe(), events, view.clone(), job.finished_ms.clone())
            }
        }
        let mut jobs = self.jobs.lock();
        jobs.push(job);
        while jobs.len() > KEEP_JOBS {
            let Some(pos) = jobs.iter().position(|j| !is_active(&j.handle.scan())) else {
                break;
            };
            jobs.remove(pos);
        }
        drop(jobs);
        view
    }

    /// List the pool's current resilver if the console does not yet (one started by a
    /// reattach, a hot spare or resumed at import). Returns its view when adopted.
    fn adopt_resilver(&self, pool: &Pool) -> Option<Job> {
        let h = pool.resilver_job()?;
        let p = h.progress();
        let key = resilver_key(pool, &p);
        if self
            .jobs
            .lock()
            .iter()
            .any(|j| j.key.as_deref() == Some(key.as_str()))
        {
            return None;
        }
        let device = p
            .device
            .as_ref()
            .and_then(|i| self.drive_at(&i.location))
            .map(|d| d.id.clone());
        let view = self.track(JobKind::Resilver, device, Some(key), Handle::Resilver(h));
        self.state_event(
            "resilver",
            view.device.clone(),
            "started",
            format!(
                "{} of {} started ({} resilver from txg {})",
                view.id,
                view.device.as_deref().unwrap_or("a device"),
                if p.from_txg > 1 { "partial" } else { "full" },
                p.from_txg
            ),
        );
        Some(view)
    }

    async fn pool_handle(&self) -> ApplianceResult<Arc<Pool>> {
        self.serving
            .lock()
            .await
            .pool
            .clone()
            .ok_or_else(|| ApplianceError::conflict("the pool is being re-imported; try again"))
    }

    /// Cap the I/O of the scrubs this appliance starts.
    pub fn set_scrub_rate_limit(&self, bytes_per_sec: Option<u64>) {
        *self.scrub_rate_limit.lock() = bytes_per_sec;
    }

    /// The drives, in id order.
    pub fn drives(&self) -> Vec<Arc<Drive>> {
        self.drives.read().clone()
    }

    /// The drive at `location` (a pool member's identity).
    fn drive_at(&self, location: &str) -> Option<Arc<Drive>> {
        self.drives
            .read()
            .iter()
            .find(|d| d.location() == location)
            .cloned()
    }

    /// A drive by console id, simulated drive name or location.
    fn find_drive(&self, name: &str) -> ApplianceResult<Arc<Drive>> {
        self.drives
            .read()
            .iter()
            .find(|d| d.id == name || d.sim_name().as_deref() == Some(name) || d.location() == name)
            .cloned()
            .ok_or_else(|| ApplianceError::not_found(format!("no device {name:?}")))
    }

    /// The devices of the pool's present members (what an import needs).
    fn member_devices(&self, st: &ingot_pool::PoolStatus) -> Vec<Arc<dyn BlockDevice>> {
        st.devices
            .iter()
            .filter_map(|m| m.identity.as_ref())
            .filter_map(|i| self.drive_at(&i.location))
            .map(|d| d.device() as Arc<dyn BlockDevice>)
            .collect()
    }

    /// Shut every drive's NVMe controller down (after [`Live::shutdown`]).
    pub async fn close_drives(&self) {
        for d in self.drives() {
            let Some(c) = d.controller() else { continue };
            // A lost (pulled) controller cannot be shut down; one shut down already is done.
            if c.lost_reason().is_some() {
                continue;
            }
            if let Err(e) = c.shutdown().await {
                tracing::warn!(device = %d.id, error = %e, "drive shutdown failed");
            }
        }
    }

    /// Unmount and export everything (shutdown). Returns what happened, for the log.
    pub async fn shutdown(&self) -> Result<(), String> {
        self.closing.store(true, Ordering::Release);
        self.cancel_jobs();
        let mut s = self.serving.lock().await;
        if let Some(m) = s.mount.take() {
            match tokio::task::spawn_blocking(move || m.unmount()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "unmount failed"),
                Err(e) => tracing::error!(error = %e, "unmount task failed"),
            }
        }
        let Some(pool) = s.pool.take() else {
            return Ok(());
        };
        match Arc::try_unwrap(pool) {
            Ok(pool) => pool.export().await.map_err(|e| e.to_string()),
            Err(pool) => {
                // Open files on a lazily detached mount still hold it: make it all durable.
                let txg = pool.sync_now().await.map_err(|e| e.to_string())?;
                tracing::warn!(
                    txg,
                    "pool still referenced at shutdown; synced instead of exported"
                );
                Ok(())
            }
        }
    }

    /// Export the pool and import it again with `passphrase` (None: locked; still writable
    /// for keyless maintenance: scrub repairs, resilver and replace run, commits are
    /// label-only; the object API fails with `Locked`).
    async fn reimport(&self, s: &mut Serving, passphrase: Option<String>) -> ApplianceResult<()> {
        self.cancel_jobs();
        let Some(pool) = s.pool.take() else {
            return Err(ApplianceError::conflict("the pool is being re-imported"));
        };
        let pool = match Arc::try_unwrap(pool) {
            Ok(p) => p,
            Err(p) => {
                s.pool = Some(p);
                return Err(ApplianceError::conflict(
                    "the pool is still in use (open files on a detached mount)",
                ));
            }
        };
        let devs = self.member_devices(&pool.status());
        pool.export().await.map_err(pool_err)?;
        let opts = ImportOptions {
            passphrase: passphrase.clone(),
            tunables: self.pool_tunables.clone(),
            ..ImportOptions::default()
        };
        match Pool::import(devs.clone(), opts).await {
            Ok(p) => {
                let ms = self.settings.lock().txg_interval_ms;
                if let Err(e) = p.set_txg_interval(Duration::from_millis(ms)) {
                    tracing::warn!(error = %e, "txg interval not applied after re-import");
                }
                s.pool = Some(Arc::new(p));
                Ok(())
            }
            Err(e) => {
                // Wrong passphrase: bring the pool back locked so the console keeps working.
                let back = Pool::import(
                    devs,
                    ImportOptions {
                        passphrase: None,
                        tunables: self.pool_tunables.clone(),
                        ..ImportOptions::default()
                    },
                )
                .await
                .map_err(pool_err)?;
                s.pool = Some(Arc::new(back));
                Err(pool_err(e))
            }
        }
    }

    /// The console's view of the pool: member states from the pool, overridden to REMOVED
    /// where the drive's NVMe controller is gone (the pool may not have tried it yet).
    fn pool_view(&self, st: &ingot_pool::PoolStatus) -> PoolStatus {
        let members: Vec<PoolMember> = st
            .devices
            .iter()
            .map(|m| {
                let drive = m.identity.as_ref().and_then(|i| self.drive_at(&i.location));
                let lost = drive
                    .as_ref()
                    .and_then(|d| d.controller())
                    .and_then(|c| c.lost_reason());
                let mut state = member_state(m.state);
                let mut fault_reason = m.fault_reason.clone();
                if let Some(why) = lost
                    && matches!(state, DeviceState::Online | DeviceState::Degraded)
                {
                    state = DeviceState::Removed;
                    fault_reason = Some(why);
                }
                PoolMember {
                    slot: m.index,
                    device: drive
                        .map(|d| d.id.clone())
                        .unwrap_or_else(|| format!("missing ({})", m.guid)),
                    state,
                    errors: ErrorCounters {
                        read: m.errors.read,
                        write: m.errors.write,
                        checksum: m.errors.checksum,
                    },
                    fault_reason,
                }
            })
            .collect();
        let state = if st.health == PoolHealth::Suspended || st.suspended.is_some() {
            PoolState::Faulted
        } else if st.health == PoolHealth::Degraded
            || members.iter().any(|m| m.state != DeviceState::Online)
        {
            PoolState::Degraded
        } else {
            PoolState::Online
        };
        let spares = st
            .spares
            .iter()
            .filter(|s| s.in_use_for.is_none())
            .filter_map(|s| self.drive_at(&s.identity.location))
            .map(|d| d.id.clone())
            .collect();
        PoolStatus {
            name: st.name.clone(),
            layout: st.layout.name().into(),
            state,
            capacity_bytes: st.capacity_bytes,
            used_bytes: st.used_bytes,
            compression_ratio: st.compression_ratio,
            txg: st.txg,
            encrypted: st.encrypted,
            locked: st.locked,
            members,
            spares,
            read_only: st.read_only,
            suspended: st.suspended.clone(),
            checksum_errors: st.checksum_errors,
            damaged: damaged_view(st),
        }
    }

    /// Fill in the file paths of damaged blocks (walking the namespace of the mounted file
    /// system once per object; results are kept until the errors are cleared).
    async fn name_damaged(&self, damaged: &mut [DamagedBlock]) {
        let wanted: std::collections::BTreeSet<u64> = {
            let known = self.damaged_paths.lock();
            damaged
                .iter()
                .filter_map(|d| d.object)
                .filter(|o| !known.contains_key(o))
                .collect()
        };
        if !wanted.is_empty() {
            let fs = self
                .serving
                .lock()
                .await
                .mount
                .as_ref()
                .map(|m| m.fs().clone());
            if let Some(fs) = fs {
                let found = find_paths(&fs, &wanted).await;
                let mut known = self.damaged_paths.lock();
                for o in wanted {
                    known.insert(o, found.get(&o).cloned());
                }
            }
        }
        let known = self.damaged_paths.lock();
        for d in damaged {
            d.path = d.object.and_then(|o| known.get(&o).cloned().flatten());
        }
    }

    /// Watch the pool: turn member and pool state changes into events. Ends at shutdown.
    pub fn start_monitor(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut last: Option<PoolStatus> = None;
            // The pool's own device events (of the pool instance they came from) and the
            // device states already announced, so both sources never say a thing twice.
            let mut sub: Option<(usize, String, broadcast::Receiver<DeviceEvent>)> = None;
            let mut said: HashMap<String, DeviceState> = HashMap::new();
            // The pool state last announced (from either source, like `said`).
            let mut said_pool: Option<PoolState> = None;
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                // A device event is announced as it comes (so the log keeps the order of
                // what happened, and a degradation shorter than a tick is not missed);
                // the rest is polled at each tick.
                let event = {
                    let next = async {
                        match &mut sub {
                            Some((_, _, rx)) => Some(rx.recv().await),
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = tick.tick() => None,
                        r = next => r,
                    }
                };
                let Some(live) = weak.upgrade() else { break };
                if live.closing.load(Ordering::Acquire) {
                    break;
                }
                if let Some(r) = event {
                    match r {
                        Ok(ev) => {
                            if let Some((_, name, _)) = &sub {
                                live.pool_device_event(&mut said, &ev);
                                if let Some(state) = event_pool_state(&ev) {
                                    live.pool_state_event(&mut said_pool, name, state, None);
                                }
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "device events missed");
                        }
                        // That pool instance is gone: the next tick subscribes to the new one.
                        Err(broadcast::error::RecvError::Closed) => sub = None,
                    }
                    continue;
                }
                let Ok(pool) = live.pool_handle().await else {
                    continue;
                };
                let key = Arc::as_ptr(&pool) as usize;
                if sub.as_ref().is_none_or(|(k, _, _)| *k != key) {
                    sub = Some((key, pool.status().name, pool.subscribe_device_events()));
                }
                live.adopt_resilver(&pool);
                let view = live.pool_view(&pool.status());
                drop(pool);
                match &last {
                    Some(prev) => live.state_events(prev, &view, &mut said, &mut said_pool),
                    None => {
                        for m in &view.members {
                            said.insert(m.device.clone(), m.state);
                        }
                        said_pool = Some(view.state);
                    }
                }
                live.scheduled_scrub(&view).await;
                last = Some(view);
            }
        });
    }

    /// Announce that device `id` is `state` (unless that was the last thing said of it).
    fn device_event(
        &self,
        said: &mut HashMap<String, DeviceState>,
        id: &str,
        state: DeviceState,
        reason: Option<&str>,
    ) {
        if said.get(id) == Some(&state) {
            return;
        }
        said.insert(id.to_string(), state);
        let sev = match state {
            DeviceState::Faulted | DeviceState::Removed => Severity::Critical,
            DeviceState::Degraded | DeviceState::Resilvering => Severity::Warning,
            DeviceState::Online => Severity::Info,
        };
        let why = reason
            .filter(|r| !r.is_empty())
            .map_or(String::new(), |r| format!(": {r}"));
        self.events.emit(
            sev,
            format!("{id} is {}{why}", state.as_str()),
            EventData::StateChange {
                subject: "device".into(),
                device: Some(id.to_string()),
                state: state.as_str().into(),
            },
        );
    }

    /// A device state change the pool reported.
    fn pool_device_event(&self, said: &mut HashMap<String, DeviceState>, ev: &DeviceEvent) {
        let id = ev
            .device
            .as_deref()
            .and_then(|loc| self.drive_at(loc))
            .map_or_else(|| format!("column {}", ev.column), |d| d.id.clone());
        self.device_event(said, &id, member_state(ev.to), Some(&ev.reason));
    }

    /// Start the scheduled scrub when one is due: a period after the last scrub ended
    /// (or after start-up), with no job running and the pool healthy and writable. A locked
    /// pool is scrubbed too: scrub verifies and repairs ciphertext without the key.
    async fn scheduled_scrub(&self, view: &PoolStatus) {
        let Some(period) = schedule_period(self.settings.lock().scrub_schedule) else {
            return;
        };
        if view.read_only || view.state != PoolState::Online {
            return;
        }
        let last_end = {
            let jobs = self.jobs.lock();
            if jobs.iter().any(|j| is_active(&j.handle.scan())) {
                return;
            }
            jobs.iter().filter_map(|j| *j.finished_ms.lock()).max()
        };
        let started_ms = now_ms().saturating_sub(self.started.elapsed().as_millis() as u64);
        let since = last_end.unwrap_or(started_ms);
        if now_ms().saturating_sub(since) < period.as_millis() as u64 {
            return;
        }
        match self.start_scrub().await {
            Ok(j) => tracing::info!(job = %j.id, "scheduled scrub started"),
            Err(e) => tracing::warn!(error = %e, "scheduled scrub could not start"),
        }
    }

    /// Events for what changed between two views of the pool.
    fn state_events(
        &self,
        prev: &PoolStatus,
        now: &PoolStatus,
        said: &mut HashMap<String, DeviceState>,
        said_pool: &mut Option<PoolState>,
    ) {
        for m in &now.members {
            let Some(p) = prev.members.iter().find(|p| p.slot == m.slot) else {
                continue;
            };
            if p.device != m.device {
                self.events.emit(
                    Severity::Info,
                    format!(
                        "slot {} of pool {}: {} replaced by {}",
                        m.slot, now.name, p.device, m.device
                    ),
                    EventData::StateChange {
                        subject: "device".into(),
                        device: Some(m.device.clone()),
                        state: m.state.as_str().into(),
                    },
                );
                said.insert(m.device.clone(), m.state);
            } else {
                self.device_event(said, &m.device, m.state, m.fault_reason.as_deref());
            }
        }
        self.pool_state_event(said_pool, &now.name, now.state, now.suspended.as_deref());
    }

    /// Announce that pool `name` is `state` (unless that was the last thing said of it).
    fn pool_state_event(
        &self,
        said: &mut Option<PoolState>,
        name: &str,
        state: PoolState,
        suspended: Option<&str>,
    ) {
        if *said == Some(state) {
            return;
        }
        *said = Some(state);
        let (sev, what) = match state {
            PoolState::Online => (Severity::Info, "all devices online".to_string()),
            PoolState::Degraded => (
                Severity::Critical,
                "redundancy is reduced: replace or reinsert the device".to_string(),
            ),
            PoolState::Faulted => (
                Severity::Critical,
                suspended.unwrap_or("I/O suspended").to_string(),
            ),
        };
        self.events.emit(
            sev,
            format!("pool {name} is {}: {what}", state.as_str()),
            EventData::StateChange {
                subject: "pool".into(),
                device: None,
                state: state.as_str().into(),
            },
        );
    }

    /// The simulated drive `name` (device id or drive name).
    fn sim_drive(&self, name: &str) -> ApplianceResult<(Arc<Drive>, Arc<SimController>)> {
        if self.drives.read().iter().all(|d| d.sim.is_none()) {
            return Err(ApplianceError::not_found(
                ingot_console::appliance::NO_SIM_DRIVES,
            ));
        }
        let d = self.find_drive(name)?;
        let sim = d
            .sim
            .clone()
            .ok_or_else(|| ApplianceError::invalid(format!("{} is not a simulated drive", d.id)))?;
        Ok((d, sim))
    }

    async fn sim_view(&self, d: &Drive, sim: &SimController) -> ApplianceResult<SimDrive> {
        let st = self.pool_handle().await?.status();
        let loc = d.location();
        let c = sim.faults().counters();
        Ok(SimDrive {
            id: d.id.clone(),
            name: sim.config().name.clone(),
            path: match &d.spec {
                DriveSpec::Sim { path } => path.display().to_string(),
                _ => String::new(),
            },
            size_bytes: sim.config().size_bytes,
            removed: d.pulled.load(Ordering::Acquire),
            in_pool: st
                .devices
                .iter()
                .any(|m| m.identity.as_ref().is_some_and(|i| i.location == loc)),
            faults: SimFaultCounters {
                status_injected: c.status_injected,
                delayed: c.delayed,
                removals: c.removals,
                corrupted_sectors: c.corrupted_sectors,
            },
        })
    }

    /// Pull a simulated drive: a surprise removal announced the way VFIO announces a
    /// hot-unplug, so the driver fails everything in flight at once.
    fn pull(&self, d: &Drive, sim: &SimController) -> ApplianceResult<()> {
        if d.pulled.swap(true, Ordering::AcqRel) {
            return Err(ApplianceError::conflict(format!(
                "{} is already pulled",
                d.id
            )));
        }
        sim.faults().surprise_removal(true);
        self.events.emit(
            Severity::Warning,
            format!("fault drill: {} pulled (surprise removal)", d.id),
            EventData::Alert {
                device: Some(d.id.clone()),
            },
        );
        Ok(())
    }

    /// Put a pulled drive back: bring the NVMe driver up again on the same simulated
    /// controller and give the pool the namespace back.
    async fn reinsert(&self, d: &Drive, sim: &Arc<SimController>) -> ApplianceResult<()> {
        if !d.pulled.load(Ordering::Acquire) {
            return Err(ApplianceError::conflict(format!(
                "{} is not pulled (reinsert follows remove)",
                d.id
            )));
        }
        // The old driver instance must have let go of the controller first; the removal
        // notice makes that immediate, the bound only guards a hang.
        if let Some(old) = d.controller() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while old.lost_reason().is_none() {
                if Instant::now() > deadline {
                    return Err(ApplianceError::internal(format!(
                        "{}: the driver did not notice the removal within 10 s",
                        d.id
                    )));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        sim.faults().clear();
        let backing: Arc<dyn ingot_hal::backing::DeviceBacking> = sim.clone();
        let controller = Controller::init(backing, DriverConfig::default())
            .await
            .map_err(|e| internal(format!("{}: controller bring-up failed: {e}", d.id)))?;
        let ns = controller
            .namespace(1)
            .map_err(|e| internal(format!("{}: {e}", d.id)))?;
        let device = d.device();
        device.swap(Arc::new(ns));
        d.io.lock().controller = Some(controller);
        d.pulled.store(false, Ordering::Release);
        self.events.emit(
            Severity::Info,
            format!("fault drill: {} reinserted", d.id),
            EventData::Alert {
                device: Some(d.id.clone()),
            },
        );
        self.reattach(d, device).await
    }

    /// Hand a reinserted drive's device back to the pool, which resilvers the txgs it
    /// missed. If the pool never noticed the drive was gone (no I/O reached it), it
    /// missed nothing: the same device handle simply works again.
    async fn reattach(&self, d: &Drive, device: Arc<MeteredDevice>) -> ApplianceResult<()> {
        let pool = self.pool_handle().await?;
        let loc = d.location();
        let st = pool.status();
        let member = st
            .devices
            .iter()
            .find(|m| m.identity.as_ref().is_some_and(|i| i.location == loc));
        let down = member.is_none_or(|m| {
            matches!(
                m.state,
                PoolDeviceState::Faulted
                    | PoolDeviceState::Removed
                    | PoolDeviceState::Missing
                    | PoolDeviceState::Stale
            )
        });
        if !down {
            return Ok(());
        }
        match pool.reattach(device).await {
            Ok(column) => {
                self.adopt_resilver(&pool);
                tracing::info!(device = %d.id, column, "reattached");
                Ok(())
            }
            Err(e @ (PoolError::DeviceConflict { .. } | PoolError::ForeignDevice { .. })) => {
                // Replaced meanwhile (by a spare or an admin): it stays unassigned.
                self.events.emit(
                    Severity::Info,
                    format!("{} is back but not a pool member any more: {e}", d.id),
                    EventData::Alert {
                        device: Some(d.id.clone()),
                    },
                );
                Ok(())
            }
            Err(e) => Err(pool_err(e)),
        }
    }

    /// Create a blank simulated drive in the sim directory and open it.
    async fn add_sim_drive(&self, req: &SimAddRequest) -> ApplianceResult<Arc<Drive>> {
        let size = match req.size_bytes {
            Some(s) => s,
            None => self
                .drives
                .read()
                .iter()
                .find_map(|d| d.sim.as_ref().map(|s| s.config().size_bytes))
                .ok_or_else(|| {
                    ApplianceError::not_found(ingot_console::appliance::NO_SIM_DRIVES)
                })?,
        };
        if self.drives.read().iter().all(|d| d.sim.is_none()) {
            return Err(ApplianceError::not_found(
                ingot_console::appliance::NO_SIM_DRIVES,
            ));
        }
        let dir = &self.paths.sim_dir;
        let n = (0..10_000u32)
            .find(|n| {
                let (img, json) = ingot_hal::sim::SimDrive::paths(&dir.join(format!("sim{n}")));
                !img.exists() && !json.exists()
            })
            .ok_or_else(|| ApplianceError::conflict("no free simulated drive name"))?;
        let serial = format!("SIM{:08X}{n:03}", now_ms() / 1000 % 0xffff_ffff);
        let made =
            ingot_hal::sim::SimDrive::create(&dir.join(format!("sim{n}")), size, 4096, &serial)
                .map_err(|e| ApplianceError::invalid(e.to_string()))?;
        let spec = DriveSpec::Sim {
            path: made.data_path.clone(),
        };
        let open = crate::drives::open(&spec).await.map_err(internal)?;
        let drive = {
            let mut drives = self.drives.write();
            let d = Arc::new(Drive::new(
                format!("nvme{}", drives.len()),
                spec.clone(),
                &open,
            ));
            drives.push(d.clone());
            d
        };
        if let Some(cfg) = &self.paths.config
            && let Err(e) = crate::config::append_drive(cfg, &spec)
        {
            tracing::warn!(error = %e, "the new drive is not recorded in the config");
        }
        self.events.emit(
            Severity::Info,
            format!(
                "{} added: simulated drive {} of {} bytes (not in the pool)",
                drive.id,
                made.name(),
                size
            ),
            EventData::StateChange {
                subject: "device".into(),
                device: Some(drive.id.clone()),
                state: "added".into(),
            },
        );
        Ok(drive)
    }

    fn export_status(&self, s: &Serving) -> ExportStatus {
        ExportStatus {
            mountpoint: self.mountpoint.display().to_string(),
            state: if s.mount.is_some() {
                ExportState::Mounted
            } else {
                ExportState::Unmounted
            },
        }
    }

    fn state_event(&self, subject: &str, device: Option<String>, state: &str, message: String) {
        self.events.emit(
            Severity::Info,
            message,
            EventData::StateChange {
                subject: subject.into(),
                device,
                state: state.into(),
            },
        );
    }
}

#[async_trait]
impl Appliance for Live {
    async fn system(&self) -> ApplianceResult<SystemInfo> {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "ingot".into());
        Ok(SystemInfo {
            hostname,
            version: env!("CARGO_PKG_VERSION").into(),
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .into(),
            uptime_secs: self.started.elapsed().as_secs(),
        })
    }

    async fn devices(&self) -> ApplianceResult<Vec<Device>> {
        let view = self.pool().await?;
        let status = self.pool_handle().await?.status();
        let drives = self.drives();
        let mut out = Vec::with_capacity(drives.len());
        for d in &drives {
            let dev = d.device();
            let ident = dev.identity();
            let geom = dev.geometry();
            let member = status.devices.iter().position(|m| {
                m.identity
                    .as_ref()
                    .is_some_and(|i| i.location == ident.location)
            });
            let controller = d.controller();
            let lost = controller.as_ref().and_then(Controller::lost_reason);
            let smart = match &controller {
                Some(c) if lost.is_none() => c.smart_log().await.ok().map(|s| Smart {
                    temperature_celsius: i32::from(s.temperature_kelvin) - 273,
                    percentage_used: s.percentage_used,
                    media_errors: u64::try_from(s.media_errors).unwrap_or(u64::MAX),
                    data_read_bytes: s.data_read_bytes(),
                    data_written_bytes: s.data_written_bytes(),
                    power_on_hours: u64::try_from(s.power_on_hours).unwrap_or(u64::MAX),
                }),
                _ => None,
            };
            let slot = member.and_then(|i| view.members.get(i));
            let (state, errors, fault_reason) = match slot {
                Some(m) => (m.state, m.errors, m.fault_reason.clone()),
                None if lost.is_some() => (DeviceState::Removed, ErrorCounters::default(), lost),
                None => (DeviceState::Online, ErrorCounters::default(), None),
            };
            out.push(Device {
                id: d.id.clone(),
                location: ident.location.clone(),
                model: ident.model,
                serial: ident.serial,
                firmware: ident.firmware,
                capacity_bytes: geom.capacity(),
                lba_size: geom.block_size,
                state,
                in_pool: member.is_some(),
                smart,
                errors,
                fault_reason,
            });
        }
        Ok(out)
    }

    async fn device(&self, id: &str) -> ApplianceResult<Device> {
        self.devices()
            .await?
            .into_iter()
            .find(|d| d.id == id)
            .ok_or_else(|| ApplianceError::not_found(format!("no device {id:?}")))
    }

    async fn pool(&self) -> ApplianceResult<PoolStatus> {
        let st = self.pool_handle().await?.status();
        let mut view = self.pool_view(&st);
        if !view.damaged.is_empty() {
            self.name_damaged(&mut view.damaged).await;
        }
        Ok(view)
    }

    async fn jobs(&self) -> ApplianceResult<Vec<Job>> {
        if let Ok(pool) = self.pool_handle().await {
            self.adopt_resilver(&pool);
        }
        Ok(self.jobs.lock().iter().rev().map(job_view).collect())
    }

    async fn start_scrub(&self) -> ApplianceResult<Job> {
        if let Some(j) = self
            .jobs
            .lock()
            .iter()
            .find(|j| is_active(&j.handle.scan()))
        {
            return Err(ApplianceError::conflict(format!("{} is running", j.id)));
        }
        let pool = self.pool_handle().await?;
        // Scrub covers committed txgs: commit what was just written so it is covered too.
        if !pool.status().read_only {
            pool.sync_now().await.map_err(pool_err)?;
        }
        let opts = ScrubOptions {
            max_bytes_per_sec: *self.scrub_rate_limit.lock(),
            ..ScrubOptions::default()
        };
        let handle = pool.start_scrub(opts).await.map_err(pool_err)?;
        let view = self.track(JobKind::Scrub, None, None, Handle::Scrub(handle));
        self.state_event("scrub", None, "started", format!("{} started", view.id));
        Ok(view)
    }

    async fn pause_job(&self, id: &str) -> ApplianceResult<Job> {
        self.with_job(id, Handle::pause)
    }

    async fn resume_job(&self, id: &str) -> ApplianceResult<Job> {
        self.with_job(id, Handle::resume)
    }

    async fn cancel_job(&self, id: &str) -> ApplianceResult<Job> {
        self.with_job(id, Handle::cancel)
    }

    async fn replace_device(&self, req: ReplaceRequest) -> ApplianceResult<Job> {
        let _drill = self.drills.lock().await;
        let pool = self.pool_handle().await?;
        let st = pool.status();
        // The member: by device id, drive name or location, or `missing (GUID)` / GUID.
        let column = match self.find_drive(&req.old) {
            Ok(d) => {
                let loc = d.location();
                st.devices
                    .iter()
                    .find(|m| m.identity.as_ref().is_some_and(|i| i.location == loc))
                    .map(|m| m.index)
                    .ok_or_else(|| {
                        ApplianceError::conflict(format!("{} is not a member of the pool", d.id))
                    })?
            }
            Err(_) => st
                .devices
                .iter()
                .find(|m| req.old == m.guid || req.old == format!("missing ({})", m.guid))
                .map(|m| m.index)
                .ok_or_else(|| {
                    ApplianceError::not_found(format!("no pool member {:?}", req.old))
                })?,
        };
        let new = self.find_drive(&req.new)?;
        let new_loc = new.location();
        if st
            .devices
            .iter()
            .any(|m| m.identity.as_ref().is_some_and(|i| i.location == new_loc))
        {
            return Err(ApplianceError::conflict(format!(
                "{} is already a member of the pool",
                new.id
            )));
        }
        if new.pulled.load(Ordering::Acquire)
            || new.controller().is_some_and(|c| c.lost_reason().is_some())
        {
            return Err(ApplianceError::conflict(format!(
                "{} is not available (removed)",
                new.id
            )));
        }
        let old_name = st
            .devices
            .iter()
            .find(|m| m.index == column)
            .and_then(|m| m.identity.as_ref())
            .and_then(|i| self.drive_at(&i.location))
            .map_or_else(|| format!("column {column}"), |d| d.id.clone());
        let handle = pool
            .replace(
                column as usize,
                new.device() as Arc<dyn BlockDevice>,
                ResilverOptions::default(),
            )
            .await
            .map_err(pool_err)?;
        let key = resilver_key(&pool, &handle.progress());
        let view = self.track(
            JobKind::Resilver,
            Some(new.id.clone()),
            Some(key),
            Handle::Resilver(handle),
        );
        self.events.emit(
            Severity::Warning,
            format!(
                "{old_name} replaced by {} in slot {column}: {} started",
                new.id, view.id
            ),
            EventData::StateChange {
                subject: "device".into(),
                device: Some(new.id.clone()),
                state: DeviceState::Resilvering.as_str().into(),
            },
        );
        Ok(view)
    }

    async fn encryption(&self) -> ApplianceResult<EncryptionStatus> {
        let st = self.pool_handle().await?.status();
        Ok(EncryptionStatus {
            encrypted: st.encrypted,
            locked: st.locked,
            cipher: st.encrypted.then(|| "aes-256-xts".to_string()),
        })
    }

    async fn unlock(&self, passphrase: &str) -> ApplianceResult<EncryptionStatus> {
        if passphrase.is_empty() {
            return Err(ApplianceError::invalid("the passphrase is empty"));
        }
        {
            let mut s = self.serving.lock().await;
            let st = s
                .pool
                .as_ref()
                .ok_or_else(|| ApplianceError::conflict("the pool is being re-imported"))?
                .status();
            if !st.encrypted {
                return Err(ApplianceError::conflict("the pool is not encrypted"));
            }
            if !st.locked {
                return Err(ApplianceError::conflict("the pool is already unlocked"));
            }
            self.reimport(&mut s, Some(passphrase.to_string())).await?;
        }
        self.state_event("pool", None, "unlocked", "pool unlocked".into());
        self.encryption().await
    }

    async fn lock(&self) -> ApplianceResult<EncryptionStatus> {
        {
            let mut s = self.serving.lock().await;
            if s.mount.is_some() {
                return Err(ApplianceError::conflict(
                    "unmount the export first: a mounted file system needs the key",
                ));
            }
            let st = s
                .pool
                .as_ref()
                .ok_or_else(|| ApplianceError::conflict("the pool is being re-imported"))?
                .status();
            if !st.encrypted {
                return Err(ApplianceError::conflict("the pool is not encrypted"));
            }
            if st.locked {
                return Err(ApplianceError::conflict("the pool is already locked"));
            }
            self.reimport(&mut s, None).await?;
        }
        self.state_event("pool", None, "locked", "pool locked: key unloaded".into());
        self.encryption().await
    }

    async fn change_passphrase(&self, old: &str, new: &str) -> ApplianceResult<()> {
        if new.is_empty() {
            return Err(ApplianceError::invalid("the new passphrase is empty"));
        }
        let pool = self.pool_handle().await?;
        pool.change_passphrase(old, new).await.map_err(pool_err)?;
        self.state_event(
            "pool",
            None,
            "passphrase_changed",
            "pool passphrase changed (key re-wrapped)".into(),
        );
        Ok(())
    }

    async fn export(&self) -> ApplianceResult<ExportStatus> {
        Ok(self.export_status(&*self.serving.lock().await))
    }

    async fn mount(&self) -> ApplianceResult<ExportStatus> {
        let mut s = self.serving.lock().await;
        if s.mount.is_some() {
            return Err(ApplianceError::conflict("already mounted"));
        }
        let pool = s
            .pool
            .clone()
            .ok_or_else(|| ApplianceError::conflict("the pool is being re-imported"))?;
        if pool.status().locked {
            return Err(ApplianceError::locked("unlock the pool before mounting"));
        }
        let store: Arc<dyn ObjectStore> = pool;
        let fs = Fs::mount(store, FsOptions::default())
            .await
            .map_err(internal)?;
        let handle = ingot_export::mount(Arc::new(fs), &self.mountpoint, &self.mount_opts)
            .map_err(internal)?;
        s.mount = Some(handle);
        let st = self.export_status(&s);
        drop(s);
        self.state_event(
            "export",
            None,
            "mounted",
            format!("file system mounted at {}", self.mountpoint.display()),
        );
        Ok(st)
    }

    async fn unmount(&self) -> ApplianceResult<ExportStatus> {
        let mut s = self.serving.lock().await;
        let Some(m) = s.mount.take() else {
            return Err(ApplianceError::conflict("not mounted"));
        };
        tokio::task::spawn_blocking(move || m.unmount())
            .await
            .map_err(internal)?
            .map_err(internal)?;
        let st = self.export_status(&s);
        drop(s);
        self.state_event(
            "export",
            None,
            "unmounted",
            format!("file system unmounted from {}", self.mountpoint.display()),
        );
        Ok(st)
    }

    async fn settings(&self) -> ApplianceResult<Settings> {
        Ok(self.settings.lock().clone())
    }

    async fn update_settings(&self, settings: Settings) -> ApplianceResult<Settings> {
        settings.validate()?;
        let current = self.settings.lock().clone();
        if settings.compression_level != current.compression_level {
            let pool = self.pool_handle().await?;
            let c = match settings.compression_level {
                0 => ingot_pool::PoolCompression::Off,
                level => ingot_pool::PoolCompression::Zstd {
                    level: i8::try_from(level).map_err(|_| {
                        ApplianceError::invalid(format!(
                            "compression_level {level} is out of range"
                        ))
                    })?,
                },
            };
            pool.set_compression(c).await.map_err(pool_err)?;
            self.settings.lock().compression_level = settings.compression_level;
            self.state_event(
                "settings",
                None,
                "changed",
                format!(
                    "compression of new writes: {}",
                    match c {
                        ingot_pool::PoolCompression::Zstd { level } =>
                            format!("zstd level {level}"),
                        _ => "off".into(),
                    }
                ),
            );
        }
        if settings.txg_interval_ms != current.txg_interval_ms {
            let pool = self.pool_handle().await?;
            pool.set_txg_interval(Duration::from_millis(settings.txg_interval_ms))
                .map_err(pool_err)?;
            if let Some(f) = &self.paths.txg_interval_file {
                std::fs::write(f, settings.txg_interval_ms.to_string())
                    .map_err(|e| internal(format!("cannot save {}: {e}", f.display())))?;
            }
            self.settings.lock().txg_interval_ms = settings.txg_interval_ms;
            self.state_event(
                "settings",
                None,
                "changed",
                format!("txg interval: {} ms", settings.txg_interval_ms),
            );
        }
        if settings.scrub_schedule != current.scrub_schedule {
            if let Some(f) = &self.paths.schedule_file {
                let text = serde_json::to_string(&settings.scrub_schedule).map_err(internal)?;
                std::fs::write(f, text)
                    .map_err(|e| internal(format!("cannot save {}: {e}", f.display())))?;
            }
            self.settings.lock().scrub_schedule = settings.scrub_schedule;
            self.state_event(
                "settings",
                None,
                "changed",
                format!("automatic scrub: {:?}", settings.scrub_schedule).to_lowercase(),
            );
        }
        Ok(settings)
    }

    async fn stats(&self) -> ApplianceResult<IoStats> {
        let mut pool = IoCounters::default();
        let drives = self.drives();
        let mut devices = Vec::with_capacity(drives.len());
        for d in &drives {
            let c = d.device().counters();
            add_counters(&mut pool, &c);
            devices.push(DeviceIo {
                device: d.id.clone(),
                counters: c,
            });
        }
        let cache = match self.pool_handle().await {
            Ok(p) => cache_stats(&p.datapath_stats()),
            // Being re-imported: no caches to report.
            Err(_) => CacheStats::default(),
        };
        Ok(IoStats {
            time_ms: now_ms(),
            pool,
            devices,
            cache,
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    async fn events(&self, query: EventQuery) -> ApplianceResult<EventPage> {
        self.events.page(&query)
    }

    async fn clear_errors(&self) -> ApplianceResult<PoolStatus> {
        let pool = self.pool_handle().await?;
        pool.clear_errors();
        self.damaged_paths.lock().clear();
        self.state_event(
            "pool",
            None,
            "errors_cleared",
            "pool error counters cleared".into(),
        );
        Ok(self.pool_view(&pool.status()))
    }

    async fn sim_drives(&self) -> ApplianceResult<Vec<SimDrive>> {
        let drives = self.drives();
        if drives.iter().all(|d| d.sim.is_none()) {
            return Err(ApplianceError::not_found(
                ingot_console::appliance::NO_SIM_DRIVES,
            ));
        }
        let mut out = Vec::new();
        for d in &drives {
            if let Some(sim) = &d.sim {
                out.push(self.sim_view(d, sim).await?);
            }
        }
        Ok(out)
    }

    async fn sim_fault(&self, id: &str, fault: SimFault) -> ApplianceResult<SimDrive> {
        let _drill = self.drills.lock().await;
        let (d, sim) = self.sim_drive(id)?;
        let count = |c: Option<u32>| c.map_or(FaultCount::Always, FaultCount::Times);
        let pulled = d.pulled.load(Ordering::Acquire);
        match fault {
            SimFault::Remove => self.pull(&d, &sim)?,
            SimFault::Reinsert => self.reinsert(&d, &sim).await?,
            SimFault::Clear if pulled => {
                return Err(ApplianceError::conflict(format!(
                    "{} is pulled: reinsert it",
                    d.id
                )));
            }
            SimFault::Clear => sim.faults().clear(),
            SimFault::Fail { sct, sc, count: c } => {
                sim.faults()
                    .error_status(CommandMatch::any_io(), sct, sc, count(c));
            }
            SimFault::Delay { ms, count: c } => {
                sim.faults()
                    .delay(CommandMatch::any_io(), Duration::from_millis(ms), count(c));
            }
            SimFault::Corrupt { lba, blocks } => {
                sim.faults()
                    .corrupt_lbas(lba, blocks)
                    .map_err(|e| ApplianceError::invalid(e.to_string()))?;
            }
        }
        if !matches!(fault, SimFault::Remove | SimFault::Reinsert) {
            self.events.emit(
                Severity::Warning,
                format!("fault drill on {}: {fault:?}", d.id),
                EventData::Alert {
                    device: Some(d.id.clone()),
                },
            );
        }
        self.sim_view(&d, &sim).await
    }

    async fn sim_add(&self, req: SimAddRequest) -> ApplianceResult<Device> {
        let _drill = self.drills.lock().await;
        let d = self.add_sim_drive(&req).await?;
        self.device(&d.id).await
    }
}
