//! Test double of the appliance.
//!
//! [`FakeAppliance`] is an in-memory, stateful **test double** of
//! [`Appliance`] for the console's own tests and the browser-test demo
//! (`examples/ingot-console-demo.rs`). It is NOT an appliance: it stores no
//! data and must never be used by the `ingot` binary. Time and progress are
//! driven by the test: jobs advance only when [`FakeAppliance::advance_jobs`]
//! is called, I/O counters only in [`FakeAppliance::simulate_io`], and faults
//! are injected with [`FakeAppliance::fault_device`].

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::appliance::*;
use crate::auth::now_ms;

/// Encryption passphrase the fake starts with.
pub const FAKE_PASSPHRASE: &str = "correct horse battery staple";

const GIB: u64 = 1 << 30;

#[derive(Debug)]
struct FakeState {
    devices: Vec<Device>,
    members: Vec<String>,
    jobs: Vec<Job>,
    next_job: u64,
    locked: bool,
    passphrase: String,
    export: ExportStatus,
    settings: Settings,
    pool_io: IoCounters,
    dev_io: Vec<DeviceIo>,
    cache: CacheStats,
    history: Vec<Event>,
    next_event: u64,
    txg: u64,
    used_bytes: u64,
    pending_checksum: u64,
    rng: u64,
}

/// In-memory test double of the appliance (see the module docs).
#[derive(Debug)]
pub struct FakeAppliance {
    state: Mutex<FakeState>,
    tx: broadcast::Sender<Event>,
    started: Instant,
}

fn device(i: u32, in_pool: bool) -> Device {
    Device {
        id: format!("nvme{i}"),
        location: format!("0000:00:{:02x}.0", 4 + i),
        model: "QEMU NVMe Ctrl".into(),
        serial: format!("INGOT{:04}", 1000 + i),
        firmware: "8.2.2".into(),
        capacity_bytes: 64 * GIB,
        lba_size: 4096,
        state: DeviceState::Online,
        in_pool,
        smart: Some(Smart {
            temperature_celsius: 34 + i as i32,
            percentage_used: (2 + i) as u8,
            media_errors: 0,
            data_read_bytes: 1_200 * GIB + u64::from(i) * 37 * GIB,
            data_written_bytes: 900 * GIB + u64::from(i) * 11 * GIB,
            power_on_hours: 4_000 + u64::from(i) * 13,
        }),
        errors: ErrorCounters::default(),
        fault_reason: None,
    }
}

impl Default for FakeAppliance {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeAppliance {
    /// A healthy pool `tank` (raid5 over `nvme0..nvme3`), an unused `nvme4`,
    /// encrypted and unlocked, export mounted at `/mnt/tank`.
    pub fn new() -> Self {
        let mut devices: Vec<Device> = (0..4).map(|i| device(i, true)).collect();
        devices.push(device(4, false));
        let dev_io = devices
            .iter()
            .map(|d| DeviceIo {
                device: d.id.clone(),
                counters: IoCounters {
                    read_latency: LatencyHistogram::with_default_bounds(),
                    write_latency: LatencyHistogram::with_default_bounds(),
                    ..IoCounters::default()
                },
            })
            .collect();
        let (tx, _) = broadcast::channel(1024);
        Self {
            state: Mutex::new(FakeState {
                members: (0..4).map(|i| format!("nvme{i}")).collect(),
                devices,
                jobs: Vec::new(),
                next_job: 1,
                locked: false,
                passphrase: FAKE_PASSPHRASE.into(),
                export: ExportStatus {
                    mountpoint: "/mnt/tank".into(),
                    state: ExportState::Mounted,
                },
                settings: Settings {
                    compression_level: 3,
                    txg_interval_ms: 5_000,
                    scrub_schedule: ScrubSchedule::Weekly,
                },
                pool_io: IoCounters {
                    read_latency: LatencyHistogram::with_default_bounds(),
                    write_latency: LatencyHistogram::with_default_bounds(),
                    ..IoCounters::default()
                },
                dev_io,
                cache: CacheStats {
                    limit_bytes: 8 * GIB,
                    ..CacheStats::default()
                },
                history: Vec::new(),
                next_event: 1,
                txg: 1,
                used_bytes: 37 * GIB,
                pending_checksum: 0,
                rng: 0x9e37_79b9_7f4a_7c15,
            }),
            tx,
            started: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, st: &mut FakeState, severity: Severity, message: String, data: EventData) {
        let ev = Event {
            id: st.next_event,
            time_ms: now_ms(),
            severity,
            message,
            data,
        };
        st.next_event += 1;
        if !matches!(ev.data, EventData::JobProgress { .. }) {
            st.history.push(ev.clone());
            if st.history.len() > 10_000 {
                st.history.remove(0);
            }
        }
        let _ = self.tx.send(ev);
    }

    fn pool_state(st: &FakeState) -> PoolState {
        let bad = st
            .members
            .iter()
            .filter_map(|m| st.devices.iter().find(|d| &d.id == m))
            .filter(|d| d.state != DeviceState::Online)
            .count();
        match bad {
            0 => PoolState::Online,
            1 => PoolState::Degraded,
            _ => PoolState::Faulted,
        }
    }

    fn set_device_state(&self, st: &mut FakeState, id: &str, state: DeviceState) {
        let before = Self::pool_state(st);
        if let Some(d) = st.devices.iter_mut().find(|d| d.id == id) {
            d.state = state;
        }
        let sev = match state {
            DeviceState::Online => Severity::Info,
            DeviceState::Resilvering | DeviceState::Degraded => Severity::Warning,
            DeviceState::Faulted | DeviceState::Removed => Severity::Critical,
        };
        self.emit(
            st,
            sev,
            format!("device {id} is {}", state.as_str()),
            EventData::StateChange {
                subject: "device".into(),
                device: Some(id.to_string()),
                state: state.as_str().into(),
            },
        );
        self.emit_pool_change(st, before);
    }

    fn emit_pool_change(&self, st: &mut FakeState, before: PoolState) {
        let after = Self::pool_state(st);
        if after != before {
            let sev = if after == PoolState::Online {
                Severity::Info
            } else {
                Severity::Critical
            };
            self.emit(
                st,
                sev,
                format!("pool tank is {}", after.as_str()),
                EventData::StateChange {
                    subject: "pool".into(),
                    device: None,
                    state: after.as_str().into(),
                },
            );
        }
    }

    /// Test control: marks a device FAULTED (the pool becomes DEGRADED).
    pub fn fault_device(&self, id: &str) -> ApplianceResult<()> {
        let mut st = self.lock();
        if !st.devices.iter().any(|d| d.id == id) {
            return Err(ApplianceError::not_found(format!("no device {id}")));
        }
        if let Some(d) = st.devices.iter_mut().find(|d| d.id == id) {
            d.errors.read += 3;
            d.errors.write += 1;
        }
        self.set_device_state(&mut st, id, DeviceState::Faulted);
        Ok(())
    }

    /// Test control: the next scrub will find and repair `n` checksum errors.
    pub fn inject_checksum_errors(&self, n: u64) {
        self.lock().pending_checksum += n;
    }

    /// Test control: advances every running job by `bytes` over `elapsed`
    /// (which sets its rate and ETA); finishes jobs that reach their total.
    pub fn advance_jobs(&self, bytes: u64, elapsed: Duration) {
        let mut st = self.lock();
        let secs = elapsed.as_secs_f64().max(1e-3);
        let mut events = Vec::new();
        let mut finished_resilvers = Vec::new();
        let pending = st.pending_checksum;
        let mut consumed = 0;
        for j in st.jobs.iter_mut().filter(|j| j.state == JobState::Running) {
            j.bytes_done = (j.bytes_done + bytes).min(j.bytes_total);
            j.rate_bytes_per_sec = (bytes as f64 / secs) as u64;
            let left = j.bytes_total - j.bytes_done;
            j.eta_secs = (j.rate_bytes_per_sec > 0).then(|| left.div_ceil(j.rate_bytes_per_sec));
            if j.kind == JobKind::Scrub && pending > 0 && j.bytes_done * 2 >= j.bytes_total {
                j.errors_found += pending;
                j.errors_repaired += pending;
                consumed = pending;
            }
            if left == 0 {
                j.state = JobState::Completed;
                j.finished_ms = Some(now_ms());
                j.eta_secs = Some(0);
                if j.kind == JobKind::Resilver
                    && let Some(d) = &j.device
                {
                    finished_resilvers.push(d.clone());
                }
            }
            events.push(j.clone());
        }
        st.pending_checksum -= consumed;
        if consumed > 0 {
            st.pool_io.checksum_errors_repaired += consumed;
            if let Some(d) = st.dev_io.first_mut() {
                d.counters.checksum_errors_repaired += consumed;
            }
            if let Some(d) = st.devices.first_mut() {
                d.errors.checksum += consumed;
            }
            self.emit(
                &mut st,
                Severity::Warning,
                format!("scrub repaired {consumed} checksum errors on nvme0"),
                EventData::Alert {
                    device: Some("nvme0".into()),
                },
            );
        }
        for job in events {
            let done = job.state == JobState::Completed;
            let kind = job.kind;
            self.emit(
                &mut st,
                Severity::Info,
                format!(
                    "{:?} {} at {} of {} bytes",
                    kind, job.id, job.bytes_done, job.bytes_total
                )
                .to_lowercase(),
                EventData::JobProgress { job: job.clone() },
            );
            if done {
                self.emit(
                    &mut st,
                    Severity::Info,
                    format!(
                        "{} {} completed: {} errors found, {} repaired",
                        if kind == JobKind::Scrub {
                            "scrub"
                        } else {
                            "resilver"
                        },
                        job.id,
                        job.errors_found,
                        job.errors_repaired
                    ),
                    EventData::Alert {
                        device: job.device.clone(),
                    },
                );
            }
        }
        for d in finished_resilvers {
            self.set_device_state(&mut st, &d, DeviceState::Online);
        }
    }

    fn next_rand(st: &mut FakeState) -> u64 {
        // xorshift64*: deterministic pseudo-random I/O for the fake.
        let mut x = st.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        st.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Test control: adds one interval's worth of deterministic pseudo-random
    /// I/O to the counters (none while locked) and commits a txg.
    pub fn simulate_io(&self) {
        let mut st = self.lock();
        if st.locked {
            return;
        }
        let r = Self::next_rand(&mut st);
        let reads = 800 + r % 1200;
        let writes = 300 + (r >> 16) % 900;
        let rb = reads * 128 * 1024;
        let wb = writes * 128 * 1024;
        let lat_r = 80 + (r >> 32) % 400;
        let lat_w = 150 + (r >> 40) % 900;
        st.txg += 1;
        st.used_bytes += wb / 4;
        let members: Vec<String> = st.members.clone();
        let online: Vec<String> = members
            .into_iter()
            .filter(|m| {
                st.devices.iter().any(|d| {
                    &d.id == m && matches!(d.state, DeviceState::Online | DeviceState::Resilvering)
                })
            })
            .collect();
        // Most reads of a warm pool hit the record cache, which fills up to its limit.
        let c = &mut st.cache;
        c.hits += reads * 9 / 10;
        c.misses += reads - reads * 9 / 10;
        c.bytes = (c.bytes + wb).min(c.limit_bytes);
        c.records = c.bytes / (128 << 10);
        c.early_writes += writes / 8;
        c.early_linked += writes / 8;
        let p = &mut st.pool_io;
        p.read_ops += reads;
        p.write_ops += writes;
        p.read_bytes += rb;
        p.write_bytes += wb;
        for _ in 0..4 {
            p.read_latency.observe(lat_r);
            p.write_latency.observe(lat_w);
        }
        let n = online.len().max(1) as u64;
        for d in st.dev_io.iter_mut().filter(|d| online.contains(&d.device)) {
            let c = &mut d.counters;
            c.read_ops += reads / n;
            c.write_ops += writes * 4 / 3 / n;
            c.read_bytes += rb / n;
            c.write_bytes += wb * 4 / 3 / n;
            c.read_latency.observe(lat_r);
            c.write_latency.observe(lat_w);
        }
    }

    fn job_mut<'a>(st: &'a mut FakeState, id: &str) -> ApplianceResult<&'a mut Job> {
        st.jobs
            .iter_mut()
            .find(|j| j.id == id)
            .ok_or_else(|| ApplianceError::not_found(format!("no job {id}")))
    }

    fn new_job(st: &mut FakeState, kind: JobKind, device: Option<String>, total: u64) -> Job {
        let job = Job {
            id: format!("job{}", st.next_job),
            kind,
            state: JobState::Running,
            device,
            bytes_done: 0,
            bytes_total: total,
            rate_bytes_per_sec: 0,
            eta_secs: None,
            errors_found: 0,
            errors_repaired: 0,
            started_ms: now_ms(),
            finished_ms: None,
        };
        st.next_job += 1;
        st.jobs.insert(0, job.clone());
        job
    }

    fn job_transition(
        &self,
        id: &str,
        from: &[JobState],
        to: JobState,
        verb: &str,
    ) -> ApplianceResult<Job> {
        let mut st = self.lock();
        let j = Self::job_mut(&mut st, id)?;
        if !from.contains(&j.state) {
            return Err(ApplianceError::conflict(
                format!("cannot {verb} job {id}: it is {:?}", j.state).to_lowercase(),
            ));
        }
        j.state = to;
        if to == JobState::Cancelled {
            j.finished_ms = Some(now_ms());
            j.eta_secs = None;
        }
        if to == JobState::Paused {
            j.rate_bytes_per_sec = 0;
            j.eta_secs = None;
        }
        let job = j.clone();
        self.emit(
            &mut st,
            Severity::Info,
            format!("job {id}: {verb}"),
            EventData::JobProgress { job: job.clone() },
        );
        Ok(job)
    }
}

fn check_unlocked(st: &FakeState) -> ApplianceResult<()> {
    if st.locked {
        Err(ApplianceError::locked(
            "pool tank is locked; unlock it first",
        ))
    } else {
        Ok(())
    }
}

#[async_trait]
impl Appliance for FakeAppliance {
    async fn system(&self) -> ApplianceResult<SystemInfo> {
        Ok(SystemInfo {
            hostname: "ingot-demo".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            build: "test double (FakeAppliance)".into(),
            uptime_secs: self.started.elapsed().as_secs(),
        })
    }

    async fn devices(&self) -> ApplianceResult<Vec<Device>> {
        Ok(self.lock().devices.clone())
    }

    async fn device(&self, id: &str) -> ApplianceResult<Device> {
        self.lock()
            .devices
            .iter()
            .find(|d| d.id == id)
            .cloned()
            .ok_or_else(|| ApplianceError::not_found(format!("no device {id}")))
    }

    async fn pool(&self) -> ApplianceResult<PoolStatus> {
        let st = self.lock();
        let members = st
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| PoolMember {
                slot: i as u32,
                device: m.clone(),
                state: st
                    .devices
                    .iter()
                    .find(|d| &d.id == m)
                    .map(|d| d.state)
                    .unwrap_or(DeviceState::Removed),
                errors: st
                    .devices
                    .iter()
                    .find(|d| &d.id == m)
                    .map(|d| d.errors)
                    .unwrap_or_default(),
                fault_reason: None,
            })
            .collect();
        Ok(PoolStatus {
            name: "tank".into(),
            layout: "raid5".into(),
            state: Self::pool_state(&st),
            capacity_bytes: 3 * 64 * GIB,
            used_bytes: st.used_bytes,
            compression_ratio: 1.0 + f64::from(st.settings.compression_level.min(10)) * 0.12,
            txg: st.txg,
            encrypted: true,
            locked: st.locked,
            members,
            spares: Vec::new(),
            read_only: st.locked,
            suspended: None,
            checksum_errors: 0,
            damaged: Vec::new(),
        })
    }

    async fn jobs(&self) -> ApplianceResult<Vec<Job>> {
        Ok(self.lock().jobs.clone())
    }

    async fn start_scrub(&self) -> ApplianceResult<Job> {
        let mut st = self.lock();
        check_unlocked(&st)?;
        if st
            .jobs
            .iter()
            .any(|j| matches!(j.state, JobState::Running | JobState::Paused))
        {
            return Err(ApplianceError::conflict(
                "a scrub or resilver is already running",
            ));
        }
        let total = st.used_bytes;
        let job = Self::new_job(&mut st, JobKind::Scrub, None, total);
        self.emit(
            &mut st,
            Severity::Info,
            format!("scrub {} started", job.id),
            EventData::JobProgress { job: job.clone() },
        );
        Ok(job)
    }

    async fn pause_job(&self, id: &str) -> ApplianceResult<Job> {
        self.job_transition(id, &[JobState::Running], JobState::Paused, "pause")
    }

    async fn resume_job(&self, id: &str) -> ApplianceResult<Job> {
        self.job_transition(id, &[JobState::Paused], JobState::Running, "resume")
    }

    async fn cancel_job(&self, id: &str) -> ApplianceResult<Job> {
        self.job_transition(
            id,
            &[JobState::Running, JobState::Paused],
            JobState::Cancelled,
            "cancel",
        )
    }

    async fn replace_device(&self, req: ReplaceRequest) -> ApplianceResult<Job> {
        let mut st = self.lock();
        check_unlocked(&st)?;
        let Some(slot) = st.members.iter().position(|m| *m == req.old) else {
            return Err(ApplianceError::not_found(format!(
                "{} is not a member of pool tank",
                req.old
            )));
        };
        let Some(new) = st.devices.iter().find(|d| d.id == req.new) else {
            return Err(ApplianceError::not_found(format!("no device {}", req.new)));
        };
        if new.in_pool {
            return Err(ApplianceError::conflict(format!(
                "{} is already in the pool",
                req.new
            )));
        }
        if new.state != DeviceState::Online {
            return Err(ApplianceError::conflict(format!(
                "{} is {}; it cannot replace a member",
                req.new,
                new.state.as_str()
            )));
        }
        if st.jobs.iter().any(|j| {
            j.kind == JobKind::Resilver && matches!(j.state, JobState::Running | JobState::Paused)
        }) {
            return Err(ApplianceError::conflict("a resilver is already running"));
        }
        let before = Self::pool_state(&st);
        // A running scrub is cancelled by the replacement.
        for j in st
            .jobs
            .iter_mut()
            .filter(|j| j.kind == JobKind::Scrub && j.state == JobState::Running)
        {
            j.state = JobState::Cancelled;
            j.finished_ms = Some(now_ms());
        }
        st.members[slot] = req.new.clone();
        for d in st.devices.iter_mut() {
            if d.id == req.old {
                d.in_pool = false;
            }
            if d.id == req.new {
                d.in_pool = true;
            }
        }
        self.emit(
            &mut st,
            Severity::Warning,
            format!("replacing {} by {}", req.old, req.new),
            EventData::Alert {
                device: Some(req.old.clone()),
            },
        );
        if let Some(d) = st.devices.iter_mut().find(|d| d.id == req.new) {
            d.state = DeviceState::Resilvering;
        }
        self.emit(
            &mut st,
            Severity::Warning,
            format!("device {} is RESILVERING", req.new),
            EventData::StateChange {
                subject: "device".into(),
                device: Some(req.new.clone()),
                state: DeviceState::Resilvering.as_str().into(),
            },
        );
        self.emit_pool_change(&mut st, before);
        let total = st.used_bytes / 3;
        let job = Self::new_job(&mut st, JobKind::Resilver, Some(req.new.clone()), total);
        self.emit(
            &mut st,
            Severity::Info,
            format!("resilver {} of {} started", job.id, req.new),
            EventData::JobProgress { job: job.clone() },
        );
        Ok(job)
    }

    async fn encryption(&self) -> ApplianceResult<EncryptionStatus> {
        let st = self.lock();
        Ok(EncryptionStatus {
            encrypted: true,
            locked: st.locked,
            cipher: Some("AES-256-XTS".into()),
        })
    }

    async fn unlock(&self, passphrase: &str) -> ApplianceResult<EncryptionStatus> {
        let mut st = self.lock();
        if !st.locked {
            return Err(ApplianceError::conflict("pool tank is already unlocked"));
        }
        if passphrase != st.passphrase {
            return Err(ApplianceError::invalid("wrong passphrase"));
        }
        st.locked = false;
        self.emit(
            &mut st,
            Severity::Info,
            "pool tank unlocked".into(),
            EventData::StateChange {
                subject: "encryption".into(),
                device: None,
                state: "unlocked".into(),
            },
        );
        Ok(EncryptionStatus {
            encrypted: true,
            locked: false,
            cipher: Some("AES-256-XTS".into()),
        })
    }

    async fn lock(&self) -> ApplianceResult<EncryptionStatus> {
        let mut st = self.lock();
        if st.locked {
            return Err(ApplianceError::conflict("pool tank is already locked"));
        }
        if st.export.state == ExportState::Mounted {
            return Err(ApplianceError::conflict(
                "the export is mounted; unmount it before locking",
            ));
        }
        if st
            .jobs
            .iter()
            .any(|j| matches!(j.state, JobState::Running | JobState::Paused))
        {
            return Err(ApplianceError::conflict(
                "a job is running; cancel it or wait before locking",
            ));
        }
        st.locked = true;
        self.emit(
            &mut st,
            Severity::Warning,
            "pool tank locked".into(),
            EventData::StateChange {
                subject: "encryption".into(),
                device: None,
                state: "locked".into(),
            },
        );
        Ok(EncryptionStatus {
            encrypted: true,
            locked: true,
            cipher: Some("AES-256-XTS".into()),
        })
    }

    async fn change_passphrase(&self, old: &str, new: &str) -> ApplianceResult<()> {
        let mut st = self.lock();
        check_unlocked(&st)?;
        if old != st.passphrase {
            return Err(ApplianceError::invalid("current passphrase is wrong"));
        }
        st.passphrase = new.to_string();
        self.emit(
            &mut st,
            Severity::Info,
            "encryption passphrase changed".into(),
            EventData::Alert { device: None },
        );
        Ok(())
    }

    async fn export(&self) -> ApplianceResult<ExportStatus> {
        Ok(self.lock().export.clone())
    }

    async fn mount(&self) -> ApplianceResult<ExportStatus> {
        let mut st = self.lock();
        check_unlocked(&st)?;
        if st.export.state == ExportState::Mounted {
            return Err(ApplianceError::conflict("the export is already mounted"));
        }
        st.export.state = ExportState::Mounted;
        let mp = st.export.mountpoint.clone();
        self.emit(
            &mut st,
            Severity::Info,
            format!("export mounted at {mp}"),
            EventData::StateChange {
                subject: "export".into(),
                device: None,
                state: "mounted".into(),
            },
        );
        Ok(st.export.clone())
    }

    async fn unmount(&self) -> ApplianceResult<ExportStatus> {
        let mut st = self.lock();
        if st.export.state == ExportState::Unmounted {
            return Err(ApplianceError::conflict("the export is not mounted"));
        }
        st.export.state = ExportState::Unmounted;
        self.emit(
            &mut st,
            Severity::Info,
            "export unmounted".into(),
            EventData::StateChange {
                subject: "export".into(),
                device: None,
                state: "unmounted".into(),
            },
        );
        Ok(st.export.clone())
    }

    async fn settings(&self) -> ApplianceResult<Settings> {
        Ok(self.lock().settings.clone())
    }

    async fn update_settings(&self, settings: Settings) -> ApplianceResult<Settings> {
        settings.validate()?;
        let mut st = self.lock();
        st.settings = settings.clone();
        self.emit(
            &mut st,
            Severity::Info,
            "settings changed".into(),
            EventData::Alert { device: None },
        );
        Ok(settings)
    }

    async fn stats(&self) -> ApplianceResult<IoStats> {
        let st = self.lock();
        Ok(IoStats {
            time_ms: now_ms(),
            pool: st.pool_io.clone(),
            devices: st.dev_io.clone(),
            cache: st.cache.clone(),
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    async fn events(&self, query: EventQuery) -> ApplianceResult<EventPage> {
        let limit = query.effective_limit()?;
        let st = self.lock();
        let mut events: Vec<Event> = st
            .history
            .iter()
            .rev()
            .filter(|e| query.before.is_none_or(|b| e.id < b))
            .filter(|e| query.severity.is_none_or(|s| e.severity >= s))
            .take(limit + 1)
            .cloned()
            .collect();
        let more = events.len() > limit;
        events.truncate(limit);
        let next_before = if more {
            events.last().map(|e| e.id)
        } else {
            None
        };
        Ok(EventPage {
            events,
            next_before,
        })
    }

    async fn clear_errors(&self) -> ApplianceResult<PoolStatus> {
        for d in self.lock().devices.iter_mut() {
            d.errors = ErrorCounters::default();
        }
        self.pool().await
    }
}
