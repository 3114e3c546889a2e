//! The simulated controller's public handle and its BAR0 register file.
//!
//! [`SimController`] implements [`DeviceBacking`]: register reads and writes land
//! in atomics here; CC writes and doorbells wake the controller thread
//! (`sim::engine`), which parks on a condition variable while idle. A doorbell write
//! signals the condition variable only when the thread is parked (a running thread
//! rereads the doorbells before it parks), and a CQ head doorbell only when the thread
//! also waits for room in a completion queue.

use super::drive::{SimDrive, validate_geometry};
use super::engine::Engine;
use super::faults::{FaultState, SimFaults};
use super::health::{Health, PersistedHealth};
use super::iommu::SimIommu;
use super::store::Store;
use super::{SimError, drive};
use crate::backing::{BackingError, DeviceBacking};
use crate::blockdev::DeviceKind;
use crate::dma::DmaMapper;
use crate::nvme::spec::{Cap, csts, reg};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};
use std::thread::JoinHandle;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

/// Asynchronous event: SMART/health status, temperature threshold, log page 02h.
const SMART_TEMPERATURE_EVENT: u32 = 0b001 | (0x01 << 8) | (0x02 << 16);
/// NVMe version the simulator reports: 1.4.0.
pub const SIM_VERSION: u32 = 0x0001_0400;
/// Size of BAR0's register page before the doorbells.
const DOORBELL_BASE: u64 = reg::DOORBELL_BASE;

/// Controller limits; the defaults suit tests and the appliance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTuning {
    /// Identify MDTS: largest transfer is 2^mdts pages of 4 KiB (5 = 128 KiB; 0 = no limit; at most 15).
    pub mdts: u8,
    /// CAP.MQES (0-based largest queue size): 1023 means 1024 entries (1..=16383).
    pub mqes: u16,
    /// I/O queue pairs the controller offers (1..=64).
    pub max_io_queues: u16,
    /// MSI-X vectors offered (at least 1).
    pub msix_vectors: u32,
    /// CAP.TO in 500 ms units.
    pub timeout_500ms: u8,
    /// Whether a volatile write cache is present (enabled after reset).
    pub volatile_write_cache: bool,
}

impl Default for SimTuning {
    fn default() -> Self {
        SimTuning {
            mdts: 5,
            mqes: 1023,
            max_io_queues: 16,
            msix_vectors: 17,
            timeout_500ms: 10,
            volatile_write_cache: true,
        }
    }
}

/// Identity, geometry and limits of one simulated controller with one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// Name; the device id is `sim:NAME`.
    pub name: String,
    /// Serial number (1-20 printable ASCII characters).
    pub serial: String,
    /// Model number.
    pub model: String,
    /// Firmware revision.
    pub firmware: String,
    /// Namespace LBA size: 512 or 4096.
    pub lba_size: u32,
    /// Namespace size in bytes (a multiple of `lba_size`).
    pub size_bytes: u64,
    /// Controller limits.
    pub tuning: SimTuning,
}

impl SimConfig {
    /// A RAM drive config with the default model, firmware and limits; the serial is
    /// `SIM-NAME` (printable ASCII, cut to 20 characters).
    pub fn ram(name: &str, size_bytes: u64, lba_size: u32) -> SimConfig {
        SimConfig {
            name: name.to_string(),
            serial: format!("SIM-{name}")
                .chars()
                .filter(char::is_ascii_graphic)
                .take(20)
                .collect(),
            model: drive::SIM_MODEL.to_string(),
            firmware: drive::SIM_FIRMWARE.to_string(),
            lba_size,
            size_bytes,
            tuning: SimTuning::default(),
        }
    }

    /// Namespace size in logical blocks.
    pub fn blocks(&self) -> u64 {
        self.size_bytes / u64::from(self.lba_size)
    }

    /// Largest data transfer in bytes: 2^MDTS pages of 4 KiB (`u64::MAX` for MDTS 0, no
    /// limit: a Read or Write then moves at most 65536 blocks).
    pub fn max_transfer(&self) -> u64 {
        match self.tuning.mdts {
            0 => u64::MAX,
            m => 4096u64 << m.min(15),
        }
    }

    fn validate(&self) -> Result<(), SimError> {
        let t = &self.tuning;
        let what = format!("sim:{}", self.name);
        validate_geometry(&what, self.size_bytes, self.lba_size, &self.serial)
            .map_err(|reason| SimError::Config { reason })?;
        if !(1..=64).contains(&t.max_io_queues)
            || t.msix_vectors == 0
            || !(1..=16383).contains(&t.mqes)
        {
            return Err(SimError::Config {
                reason: format!(
                    "{what}: need 1-64 I/O queues, at least 1 MSI-X vector and MQES 1-16383 (got {t:?})"
                ),
            });
        }
        if t.mdts > 15 {
            return Err(SimError::Config {
                reason: format!(
                    "{what}: MDTS {} must be 0 (no limit) or 1-15 (8 KiB to 128 MiB)",
                    t.mdts
                ),
            });
        }
        Ok(())
    }
}

/// Counters of the controller's work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Commands completed (posted or deliberately lost).
    pub commands: u64,
    /// Commands that completed with an error status.
    pub failed_commands: u64,
    /// Device accesses the simulated IOMMU refused.
    pub dma_faults: u64,
    /// MSI-X interrupts raised (at most one per completion queue per processing pass).
    pub interrupts: u64,
}

#[derive(Debug, Default)]
pub(super) struct WakeState {
    pub(super) pending: bool,
    /// Asynchronous events raised outside the controller thread.
    pub(super) events: Vec<u32>,
    pub(super) cc_writes: VecDeque<u32>,
    pub(super) stop: bool,
}

/// State shared between the register handle, the fault handle and the controller thread.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) id: String,
    pub(super) cfg: SimConfig,
    pub(super) cap: Cap,
    pub(super) cc: AtomicU32,
    pub(super) csts: AtomicU32,
    pub(super) aqa: AtomicU32,
    pub(super) asq: AtomicU64,
    pub(super) acq: AtomicU64,
    intm: AtomicU32,
    /// SQ tail / CQ head doorbells, indexed `2*qid` and `2*qid+1`.
    pub(super) doorbells: Box<[AtomicU32]>,
    removed: AtomicBool,
    sticky_fatal: AtomicBool,
    pub(super) internal_fatal: AtomicBool,
    pub(super) wake: Mutex<WakeState>,
    pub(super) wake_cv: Condvar,
    /// The controller thread is parked (or about to park) with nothing to do: a
    /// doorbell write must wake it. While it runs, it finds new doorbell values itself.
    pub(super) parked: AtomicBool,
    /// The controller thread waits for CQ head doorbells (a completion queue is full):
    /// only then does a CQ head doorbell write wake a parked thread.
    pub(super) cq_blocked: AtomicBool,
    pub(super) iommu: Arc<SimIommu>,
    pub(super) msix: Mutex<Vec<Arc<EventFd>>>,
    pub(super) removal_efd: Arc<EventFd>,
    pub(super) store: Store,
    pub(super) faults: FaultState,
    pub(super) health: Health,
    pub(super) drive: Option<Mutex<SimDrive>>,
    pub(super) commands: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) interrupts: AtomicU64,
}

impl Shared {
    pub(super) fn notify(&self) {
        let mut w = self.wake.lock();
        w.pending = true;
        self.wake_cv.notify_one();
    }

    /// Queue an asynchronous event for the controller thread to report.
    pub(super) fn raise_event(&self, dw0: u32) {
        let mut w = self.wake.lock();
        w.events.push(dw0);
        w.pending = true;
        self.wake_cv.notify_one();
    }

    pub(super) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    pub(super) fn set_removed(&self, removed: bool) {
        self.removed.store(removed, Ordering::Release);
        self.notify();
    }

    pub(super) fn is_fatal(&self) -> bool {
        self.sticky_fatal.load(Ordering::Acquire) || self.internal_fatal.load(Ordering::Acquire)
    }

    pub(super) fn set_sticky_fatal(&self, on: bool) {
        self.sticky_fatal.store(on, Ordering::Release);
        self.refresh_cfs();
        self.notify();
    }

    /// Make CSTS.CFS reflect the fatal flags.
    pub(super) fn refresh_cfs(&self) {
        if self.is_fatal() {
            self.csts.fetch_or(csts::CFS, Ordering::AcqRel);
        } else {
            self.csts.fetch_and(!csts::CFS, Ordering::AcqRel);
        }
    }

    /// Persist health counters to the sidecar of a file-backed drive.
    pub(super) fn persist(&self, clean_shutdown: bool) {
        let Some(drive) = &self.drive else { return };
        let mut d = drive.lock();
        d.meta.health = self.health.persist(clean_shutdown);
        if let Err(e) = d.write_sidecar() {
            tracing::warn!(device = %self.id, error = %e, "sim: cannot persist health counters");
        }
    }
}

/// An in-process NVMe controller with one namespace, reachable only through its registers.
///
/// Dropping it stops the controller thread (an unsafe shutdown unless the host shut it
/// down through CC.SHN first).
#[derive(Debug)]
pub struct SimController {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl SimController {
    /// A controller whose namespace lives in (sparse) RAM.
    pub fn new_ram(cfg: SimConfig) -> Result<SimController, SimError> {
        cfg.validate()?;
        Self::start(cfg, Store::ram(), None, &PersistedHealth::default())
    }

    /// Open a persistent drive (`DIR/NAME`, `DIR/NAME.img` or `DIR/NAME.json`) with default limits.
    pub fn open(path: &Path) -> Result<SimController, SimError> {
        Self::open_with(path, SimTuning::default())
    }

    /// Open a persistent drive with the given limits. The data file is locked
    /// exclusively while the controller lives.
    pub fn open_with(path: &Path, tuning: SimTuning) -> Result<SimController, SimError> {
        let mut drive = SimDrive::load(path)?;
        let shown = drive.data_path.display().to_string();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&drive.data_path)
            .map_err(|source| SimError::Io {
                path: shown.clone(),
                op: "open data file",
                source,
            })?;
        // SAFETY: flock on a descriptor we own; it only takes an advisory lock.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(SimError::InUse { path: shown });
        }
        let cfg = SimConfig {
            name: drive.name(),
            serial: drive.meta.serial.clone(),
            model: drive.meta.model.clone(),
            firmware: drive.meta.firmware.clone(),
            lba_size: drive.meta.lba_size,
            size_bytes: drive.meta.size_bytes,
            tuning,
        };
        cfg.validate()?;
        // A new power cycle; the previous one was unsafe if it never shut down cleanly.
        let mut health = drive.meta.health.clone();
        health.power_cycles += 1;
        if !health.clean_shutdown {
            health.unsafe_shutdowns += 1;
        }
        health.clean_shutdown = false;
        drive.meta.health = health.clone();
        drive.write_sidecar()?;
        let store = Store::File {
            file,
            path: drive.data_path.clone(),
        };
        Self::start(cfg, store, Some(drive), &health)
    }

    fn start(
        cfg: SimConfig,
        store: Store,
        drive: Option<SimDrive>,
        health: &PersistedHealth,
    ) -> Result<SimController, SimError> {
        let id = format!("sim:{}", cfg.name);
        let efd = || {
            EventFd::new(EFD_NONBLOCK).map_err(|source| SimError::Io {
                path: id.clone(),
                op: "create eventfd",
                source,
            })
        };
        let removal_efd = Arc::new(efd()?);
        let t = &cfg.tuning;
        let cap = Cap::build(t.mqes, t.timeout_500ms, 0, 0, 0);
        let doorbells = (0..2 * (usize::from(t.max_io_queues) + 1))
            .map(|_| AtomicU32::new(0))
            .collect();
        tracing::info!(
            device = %id,
            store = %store.describe(),
            size_bytes = cfg.size_bytes,
            lba_size = cfg.lba_size,
            "sim: controller created"
        );
        let shared = Arc::new(Shared {
            id: id.clone(),
            cap,
            cc: AtomicU32::new(0),
            csts: AtomicU32::new(0),
            aqa: AtomicU32::new(0),
            asq: AtomicU64::new(0),
            acq: AtomicU64::new(0),
            intm: AtomicU32::new(0),
            doorbells,
            removed: AtomicBool::new(false),
            sticky_fatal: AtomicBool::new(false),
            internal_fatal: AtomicBool::new(false),
            wake: Mutex::new(WakeState::default()),
            wake_cv: Condvar::new(),
            parked: AtomicBool::new(false),
            cq_blocked: AtomicBool::new(false),
            iommu: Arc::new(SimIommu::new()),
            msix: Mutex::new(Vec::new()),
            removal_efd,
            store,
            faults: FaultState::default(),
            health: Health::resume(health),
            drive: drive.map(Mutex::new),
            commands: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            interrupts: AtomicU64::new(0),
            cfg,
        });
        let engine = Engine::new(shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("sim-{}", shared.cfg.name))
            .spawn(move || engine.run())
            .map_err(|source| SimError::Io {
                path: id,
                op: "spawn controller thread",
                source,
            })?;
        Ok(SimController {
            shared,
            thread: Some(thread),
        })
    }

    /// The fault-injection handle.
    pub fn faults(&self) -> SimFaults {
        SimFaults {
            shared: self.shared.clone(),
        }
    }

    /// The simulated IOMMU (also available as a `DmaMapper` through [`DeviceBacking::dma_mapper`]).
    pub fn iommu(&self) -> Arc<SimIommu> {
        self.shared.iommu.clone()
    }

    /// The configuration the controller runs with.
    pub fn config(&self) -> &SimConfig {
        &self.shared.cfg
    }

    /// Work counters.
    pub fn stats(&self) -> SimStats {
        SimStats {
            commands: self.shared.commands.load(Ordering::Relaxed),
            failed_commands: self.shared.failed.load(Ordering::Relaxed),
            dma_faults: self.shared.iommu.fault_count(),
            interrupts: self.shared.interrupts.load(Ordering::Relaxed),
        }
    }

    /// Set the composite temperature the SMART log reports (kelvin).
    ///
    /// Crossing the over-temperature threshold (343 K) upwards raises an asynchronous
    /// event (SMART/health status, temperature threshold, log page 02h).
    pub fn set_temperature(&self, kelvin: u16) {
        if self.shared.health.set_temperature(kelvin) {
            tracing::warn!(device = %self.shared.id, kelvin, "sim: temperature above threshold");
            self.shared.raise_event(SMART_TEMPERATURE_EVENT);
        }
    }
}

impl Drop for SimController {
    fn drop(&mut self) {
        {
            let mut w = self.shared.wake.lock();
            w.stop = true;
            self.shared.wake_cv.notify_one();
        }
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!(device = %self.shared.id, "sim: controller thread panicked");
        }
    }
}

impl DeviceBacking for SimController {
    fn id(&self) -> &str {
        &self.shared.id
    }

    fn kind(&self) -> DeviceKind {
        DeviceKind::NvmeSim
    }

    fn read32(&self, offset: u64) -> u32 {
        let s = &self.shared;
        if s.is_removed() {
            return u32::MAX;
        }
        match offset {
            reg::CAP => s.cap.0 as u32,
            0x04 => (s.cap.0 >> 32) as u32,
            reg::VS => SIM_VERSION,
            reg::INTMS | reg::INTMC => s.intm.load(Ordering::Acquire),
            reg::CC => s.cc.load(Ordering::Acquire),
            reg::CSTS => s.csts.load(Ordering::Acquire),
            reg::AQA => s.aqa.load(Ordering::Acquire),
            reg::ASQ => s.asq.load(Ordering::Acquire) as u32,
            0x2c => (s.asq.load(Ordering::Acquire) >> 32) as u32,
            reg::ACQ => s.acq.load(Ordering::Acquire) as u32,
            0x34 => (s.acq.load(Ordering::Acquire) >> 32) as u32,
            _ => 0,
        }
    }

    fn write32(&self, offset: u64, value: u32) {
        let s = &self.shared;
        if s.is_removed() || !offset.is_multiple_of(4) {
            return;
        }
        let set_lo = |r: &AtomicU64| {
            let old = r.load(Ordering::Acquire);
            r.store((old & !0xffff_ffff) | u64::from(value), Ordering::Release);
        };
        let set_hi = |r: &AtomicU64| {
            let old = r.load(Ordering::Acquire);
            r.store(
                (old & 0xffff_ffff) | (u64::from(value) << 32),
                Ordering::Release,
            );
        };
        match offset {
            reg::INTMS => {
                s.intm.fetch_or(value, Ordering::AcqRel);
            }
            reg::INTMC => {
                s.intm.fetch_and(!value, Ordering::AcqRel);
            }
            reg::CC => {
                s.cc.store(value, Ordering::Release);
                let mut w = s.wake.lock();
                w.cc_writes.push_back(value);
                s.wake_cv.notify_one();
            }
            reg::AQA => s.aqa.store(value & 0x0fff_0fff, Ordering::Release),
            reg::ASQ => set_lo(&s.asq),
            0x2c => set_hi(&s.asq),
            reg::ACQ => set_lo(&s.acq),
            0x34 => set_hi(&s.acq),
            o if o >= DOORBELL_BASE => {
                let idx = ((o - DOORBELL_BASE) / 4) as usize;
                match s.doorbells.get(idx) {
                    Some(db) => {
                        db.store(value & 0xffff, Ordering::SeqCst);
                        // Check before notify. Pairs with the thread's store of `parked`
                        // (then `cq_blocked`'s value is current) and its doorbell re-check
                        // before it sleeps: either it sees this value or this sees it parked.
                        // A running thread rereads the doorbells before it parks, and a CQ
                        // head only matters to it while a completion queue is full.
                        fence(Ordering::SeqCst);
                        if s.parked.load(Ordering::SeqCst)
                            && (idx.is_multiple_of(2) || s.cq_blocked.load(Ordering::SeqCst))
                        {
                            s.notify();
                        }
                    }
                    None => tracing::warn!(
                        device = %s.id,
                        offset = format_args!("{o:#x}"),
                        "sim: write to a doorbell beyond the supported queues; ignored"
                    ),
                }
            }
            _ => {}
        }
    }

    fn dma_mapper(&self) -> Arc<dyn DmaMapper> {
        self.shared.iommu.clone()
    }

    fn msix_count(&self) -> u32 {
        self.shared.cfg.tuning.msix_vectors
    }

    fn enable_msix(&self, count: u32) -> Result<Vec<Arc<EventFd>>, BackingError> {
        let s = &self.shared;
        if count == 0 || count > s.cfg.tuning.msix_vectors {
            return Err(BackingError::Interrupts {
                device: s.id.clone(),
                count,
                reason: format!("the controller offers 1..={}", s.cfg.tuning.msix_vectors),
            });
        }
        let efds = (0..count)
            .map(|_| EventFd::new(EFD_NONBLOCK).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BackingError::Interrupts {
                device: s.id.clone(),
                count,
                reason: e.to_string(),
            })?;
        *s.msix.lock() = efds.clone();
        tracing::debug!(device = %s.id, count, "sim: MSI-X enabled");
        Ok(efds)
    }

    fn removal_request(&self) -> Option<Arc<EventFd>> {
        Some(self.shared.removal_efd.clone())
    }
}
