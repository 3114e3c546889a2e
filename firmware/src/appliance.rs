//! The live appliance behind the console: the drives, the pool, the file system and its FUSE
//! export of a running `ingot up`, managed through the console's [`Appliance`] seam.
//!
//! Locking an encrypted pool exports it and imports it again without its key (read-only;
//! keyless verification still works); unlocking does the reverse. The export must be
//! unmounted to lock, as a mounted file system needs the key.

use crate::events::{EventLog, now_ms};
use crate::metered::{MeteredDevice, add_counters};
use async_trait::async_trait;
use ingot_console::appliance::{
    Device, DeviceIo, DeviceState, EncryptionStatus, ErrorCounters, Event, EventData, EventPage,
    EventQuery, ExportState, ExportStatus, IoCounters, IoStats, Job, PoolMember, PoolState,
    PoolStatus, ReplaceRequest, ScrubSchedule, Settings, Severity, Smart, SystemInfo,
};
use ingot_console::appliance::{JobKind, JobState};
use ingot_console::{Appliance, ApplianceError, ApplianceResult};
use ingot_export::{MountHandle, MountOptions};
use ingot_fs::{Fs, FsOptions};
use ingot_hal::blockdev::BlockDevice;
use ingot_hal::nvme::driver::Controller;
use ingot_pool::engine::scrub::{ScrubHandle, ScrubOptions, ScrubProgress, ScrubState};
use ingot_pool::engine::{DeviceState as PoolDeviceState, PoolError};
use ingot_pool::store::ObjectStore;
use ingot_pool::{ImportOptions, Pool};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{Mutex, broadcast};

/// One drive of the appliance.
#[derive(Debug)]
pub struct Drive {
    /// Console id: `nvme0`, `nvme1`, ... in config order.
    pub id: String,
    /// The NVMe controller (None for file drives).
    pub controller: Option<Controller>,
    /// The counted device the pool uses.
    pub device: Arc<MeteredDevice>,
}

/// The pool and export, which lock/unlock and mount/unmount replace.
#[derive(Debug, Default)]
struct Serving {
    pool: Option<Arc<Pool>>,
    mount: Option<MountHandle>,
}

/// A scrub started from the console.
#[derive(Debug)]
struct ScrubJob {
    id: String,
    started_ms: u64,
    finished_ms: Arc<parking_lot::Mutex<Option<u64>>>,
    /// Dropping it cancels the scrub, so it is kept while the job is listed.
    handle: ScrubHandle,
}

/// How many finished jobs the console lists.
const KEEP_JOBS: usize = 20;

/// The console's view of a scrub from its progress.
fn scrub_job(id: &str, started_ms: u64, finished_ms: Option<u64>, p: &ScrubProgress) -> Job {
    Job {
        id: id.to_string(),
        kind: JobKind::Scrub,
        state: match p.state {
            ScrubState::Counting | ScrubState::Running => JobState::Running,
            ScrubState::Paused => JobState::Paused,
            ScrubState::Cancelled => JobState::Cancelled,
            ScrubState::Finished if p.unrecoverable > 0 => JobState::Failed,
            ScrubState::Finished => JobState::Completed,
        },
        device: None,
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

fn job_view(j: &ScrubJob) -> Job {
    scrub_job(
        &j.id,
        j.started_ms,
        *j.finished_ms.lock(),
        &j.handle.progress(),
    )
}

fn is_active(p: &ScrubProgress) -> bool {
    matches!(
        p.state,
        ScrubState::Counting | ScrubState::Running | ScrubState::Paused
    )
}

/// A running appliance.
#[derive(Debug)]
pub struct Live {
    started: Instant,
    drives: Vec<Drive>,
    serving: Mutex<Serving>,
    mountpoint: PathBuf,
    mount_opts: MountOptions,
    settings: parking_lot::Mutex<Settings>,
    jobs: parking_lot::Mutex<Vec<ScrubJob>>,
    next_job: std::sync::atomic::AtomicU64,
    /// The event log (the binary emits start-up and shutdown events too).
    pub events: EventLog,
}

fn internal(e: impl std::fmt::Display) -> ApplianceError {
    ApplianceError::internal(e.to_string())
}

fn pool_err(e: PoolError) -> ApplianceError {
    match e {
        PoolError::WrongPassphrase { .. } => ApplianceError::invalid(e.to_string()),
        PoolError::Locked { .. } => ApplianceError::locked(e.to_string()),
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

impl Live {
    /// An appliance serving `pool` (and `mount`, if mounted) over `drives`.
    pub fn new(
        drives: Vec<Drive>,
        pool: Arc<Pool>,
        mount: Option<MountHandle>,
        mountpoint: PathBuf,
        mount_opts: MountOptions,
        txg_interval_ms: u64,
    ) -> Live {
        Live {
            started: Instant::now(),
            drives,
            serving: Mutex::new(Serving {
                pool: Some(pool),
                mount,
            }),
            mountpoint,
            mount_opts,
            settings: parking_lot::Mutex::new(Settings {
                compression_level: 1,
                txg_interval_ms,
                scrub_schedule: ScrubSchedule::Off,
            }),
            jobs: parking_lot::Mutex::new(Vec::new()),
            next_job: std::sync::atomic::AtomicU64::new(1),
            events: EventLog::default(),
        }
    }

    /// Cancel every running job (before the pool is exported or re-imported).
    fn cancel_jobs(&self) {
        for j in self.jobs.lock().iter() {
            if is_active(&j.handle.progress()) {
                j.handle.cancel();
            }
        }
    }

    fn with_job(&self, id: &str, f: impl FnOnce(&ScrubHandle)) -> ApplianceResult<Job> {
        let jobs = self.jobs.lock();
        let j = jobs
            .iter()
            .find(|j| j.id == id)
            .ok_or_else(|| ApplianceError::not_found(format!("no job {id:?}")))?;
        if !is_active(&j.handle.progress()) {
            return Err(ApplianceError::conflict(format!("job {id} has ended")));
        }
        f(&j.handle);
        Ok(job_view(j))
    }

    async fn pool_handle(&self) -> ApplianceResult<Arc<Pool>> {
        self.serving
            .lock()
            .await
            .pool
            .clone()
            .ok_or_else(|| ApplianceError::conflict("the pool is being re-imported; try again"))
    }

    /// The console id of the drive at `location` (a pool member's identity).
    fn drive_id(&self, location: &str) -> Option<String> {
        self.drives
            .iter()
            .find(|d| d.device.identity().location == location)
            .map(|d| d.id.clone())
    }

    /// Unmount and export everything (shutdown). Returns what happened, for the log.
    pub async fn shutdown(&self) -> Result<(), String> {
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

    /// Export the pool and import it again with `passphrase` (None: locked, read-only).
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
        pool.export().await.map_err(pool_err)?;
        let devs: Vec<Arc<dyn BlockDevice>> = self
            .drives
            .iter()
            .map(|d| d.device.clone() as Arc<dyn BlockDevice>)
            .collect();
        let read_only = passphrase.is_none();
        let opts = ImportOptions {
            passphrase: passphrase.clone(),
            read_only,
            ..ImportOptions::default()
        };
        match Pool::import(devs.clone(), opts).await {
            Ok(p) => {
                s.pool = Some(Arc::new(p));
                Ok(())
            }
            Err(e) => {
                // Wrong passphrase: bring the pool back locked so the console keeps working.
                let back = Pool::import(
                    devs,
                    ImportOptions {
                        passphrase: None,
                        read_only: true,
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
        let status = self.pool_handle().await?.status();
        let mut out = Vec::with_capacity(self.drives.len());
        for d in &self.drives {
            let ident = d.device.identity();
            let geom = d.device.geometry();
            let member = status.devices.iter().find(|m| {
                m.identity
                    .as_ref()
                    .is_some_and(|i| i.location == ident.location)
            });
            let smart = match &d.controller {
                Some(c) => c.smart_log().await.ok().map(|s| Smart {
                    temperature_celsius: i32::from(s.temperature_kelvin) - 273,
                    percentage_used: s.percentage_used,
                    media_errors: u64::try_from(s.media_errors).unwrap_or(u64::MAX),
                    data_read_bytes: s.data_read_bytes(),
                    data_written_bytes: s.data_written_bytes(),
                    power_on_hours: u64::try_from(s.power_on_hours).unwrap_or(u64::MAX),
                }),
                None => None,
            };
            let lost = d.controller.as_ref().and_then(Controller::lost_reason);
            out.push(Device {
                id: d.id.clone(),
                location: ident.location.clone(),
                model: ident.model,
                serial: ident.serial,
                firmware: ident.firmware,
                capacity_bytes: geom.capacity(),
                lba_size: geom.block_size,
                state: if lost.is_some() {
                    DeviceState::Removed
                } else {
                    member.map_or(DeviceState::Online, |m| member_state(m.state))
                },
                in_pool: member.is_some(),
                smart,
                errors: member.map_or(ErrorCounters::default(), |m| ErrorCounters {
                    read: m.errors.read,
                    write: m.errors.write,
                    checksum: m.errors.checksum,
                }),
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
        let members: Vec<PoolMember> = st
            .devices
            .iter()
            .map(|m| PoolMember {
                slot: m.index,
                device: m
                    .identity
                    .as_ref()
                    .and_then(|i| self.drive_id(&i.location))
                    .unwrap_or_else(|| format!("missing ({})", m.guid)),
                state: member_state(m.state),
            })
            .collect();
        let state = if st.suspended.is_some() {
            PoolState::Faulted
        } else if members.iter().any(|m| m.state != DeviceState::Online) {
            PoolState::Degraded
        } else {
            PoolState::Online
        };
        Ok(PoolStatus {
            name: st.name,
            layout: st.layout.name().into(),
            state,
            capacity_bytes: st.capacity_bytes,
            used_bytes: st.used_bytes,
            compression_ratio: st.compression_ratio,
            txg: st.txg,
            encrypted: st.encrypted,
            locked: st.locked,
            members,
        })
    }

    async fn jobs(&self) -> ApplianceResult<Vec<Job>> {
        Ok(self.jobs.lock().iter().rev().map(job_view).collect())
    }

    async fn start_scrub(&self) -> ApplianceResult<Job> {
        if self
            .jobs
            .lock()
            .iter()
            .any(|j| is_active(&j.handle.progress()))
        {
            return Err(ApplianceError::conflict("a scrub is already running"));
        }
        let pool = self.pool_handle().await?;
        // Scrub covers committed txgs: commit what was just written so it is covered too.
        if !pool.status().read_only {
            pool.sync_now().await.map_err(pool_err)?;
        }
        let handle = pool
            .start_scrub(ScrubOptions::default())
            .await
            .map_err(pool_err)?;
        let n = self
            .next_job
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let job = ScrubJob {
            id: format!("scrub-{n}"),
            started_ms: now_ms(),
            finished_ms: Arc::new(parking_lot::Mutex::new(None)),
            handle,
        };
        // Push progress to the console while it runs, and mark the end.
        let mut rx = job.handle.subscribe();
        let events = self.events.subscriber_handle();
        let (id, started_ms, finished) = (job.id.clone(), job.started_ms, job.finished_ms.clone());
        tokio::spawn(async move {
            let mut last_emit = Instant::now() - std::time::Duration::from_secs(1);
            loop {
                let p = rx.borrow_and_update().clone();
                let done = !is_active(&p);
                if done {
                    *finished.lock() = Some(now_ms());
                }
                let view = scrub_job(&id, started_ms, *finished.lock(), &p);
                if done || last_emit.elapsed().as_millis() >= 500 {
                    last_emit = Instant::now();
                    events.emit(
                        Severity::Info,
                        format!("{id}: {:.1}% scanned", p.percent()),
                        EventData::JobProgress { job: view },
                    );
                }
                if done {
                    let (sev, what) = if p.unrecoverable > 0 {
                        (Severity::Critical, "found unrecoverable blocks")
                    } else if p.errors_found > 0 {
                        (Severity::Warning, "repaired errors")
                    } else {
                        (Severity::Info, "found no errors")
                    };
                    events.emit(
                        sev,
                        format!(
                            "{id} {:?}: {what} ({} found, {} repaired, {} unrecoverable)",
                            p.state, p.errors_found, p.repaired, p.unrecoverable
                        ),
                        EventData::StateChange {
                            subject: "scrub".into(),
                            device: None,
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
        let view = job_view(&job);
        let mut jobs = self.jobs.lock();
        jobs.push(job);
        while jobs.len() > KEEP_JOBS {
            let Some(pos) = jobs.iter().position(|j| !is_active(&j.handle.progress())) else {
                break;
            };
            jobs.remove(pos);
        }
        drop(jobs);
        self.state_event("scrub", None, "started", format!("{} started", view.id));
        Ok(view)
    }

    async fn pause_job(&self, id: &str) -> ApplianceResult<Job> {
        self.with_job(id, ScrubHandle::pause)
    }

    async fn resume_job(&self, id: &str) -> ApplianceResult<Job> {
        self.with_job(id, ScrubHandle::resume)
    }

    async fn cancel_job(&self, id: &str) -> ApplianceResult<Job> {
        self.with_job(id, ScrubHandle::cancel)
    }

    async fn replace_device(&self, req: ReplaceRequest) -> ApplianceResult<Job> {
        Err(ApplianceError::unsupported(format!(
            "replacing {} with {}: device replacement and resilver are not available in this build yet",
            req.old, req.new
        )))
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
        if settings != current {
            // The pool takes its compression and txg interval at create/import; changing
            // them on a running pool is not supported yet, so refuse rather than pretend.
            return Err(ApplianceError::unsupported(
                "changing settings of a running pool is not supported yet",
            ));
        }
        Ok(current)
    }

    async fn stats(&self) -> ApplianceResult<IoStats> {
        let mut pool = IoCounters::default();
        let mut devices = Vec::with_capacity(self.drives.len());
        for d in &self.drives {
            let c = d.device.counters();
            add_counters(&mut pool, &c);
            devices.push(DeviceIo {
                device: d.id.clone(),
                counters: c,
            });
        }
        Ok(IoStats {
            time_ms: now_ms(),
            pool,
            devices,
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    async fn events(&self, query: EventQuery) -> ApplianceResult<EventPage> {
        self.events.page(&query)
    }
}
