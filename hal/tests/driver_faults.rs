//! The NVMe driver under every fault the simulated controller injects. Each test asserts
//! the caller gets the right data or the right error; `tokio::time::timeout` is only a
//! hang guard, never the assertion.

use ingot_hal::backing::{BackingError, DeviceBacking};
use ingot_hal::blockdev::{BlockDevice, BlockError, DeviceKind, WriteFlags};
use ingot_hal::dma::{DmaError, DmaMapper};
use ingot_hal::nvme::driver::{Controller, DriverConfig, Namespace, NvmeError};
use ingot_hal::nvme::spec::{admin, io, sc, sct};
use ingot_hal::sim::{CommandMatch, FaultAction, FaultCount, SimConfig, SimController, SimTuning};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use vmm_sys_util::eventfd::EventFd;

const MIB: u64 = 1 << 20;
/// Command timeout for these tests: long enough that a loaded machine never times out a
/// command the simulator did complete (tests assert exact timeout and reset counts).
const TIMEOUT: Duration = Duration::from_secs(1);

fn sim(name: &str, lba: u32) -> Arc<SimController> {
    let mut cfg = SimConfig::ram(name, 4 * MIB, lba);
    cfg.tuning = SimTuning::default();
    Arc::new(SimController::new_ram(cfg).expect("sim"))
}

fn cfg() -> DriverConfig {
    DriverConfig {
        io_queues: 2,
        queue_depth: 32,
        command_timeout: TIMEOUT,
        max_retries: 2,
        ..DriverConfig::default()
    }
}

/// Hang guard only.
async fn guard<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("operation hung")
}

async fn up(backing: Arc<dyn DeviceBacking>) -> (Controller, Namespace) {
    let ctrl = guard(Controller::init(backing, cfg())).await.expect("init");
    let ns = ctrl.namespace(1).expect("namespace 1");
    (ctrl, ns)
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(seed).fill(&mut v[..]);
    v
}

fn lost_reason(e: &BlockError) -> &str {
    match e {
        BlockError::DeviceLost { reason, .. } => reason,
        other => panic!("expected DeviceLost, got {other}"),
    }
}

/// Wait (hang-guarded) until `cond` holds; for conditions set by other threads.
async fn until(mut cond: impl FnMut() -> bool) {
    guard(async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_status_on_matching_commands() {
    let s = sim("err", 512);
    let (ctrl, ns) = up(s.clone()).await;
    let data = pattern(1, 64 * 1024);
    guard(ns.write(0, &data, WriteFlags::NONE)).await.unwrap();

    // DNR set: reported at once, not retried; only reads touching LBA 100 fail.
    s.faults().inject(
        CommandMatch::io(io::READ).with_lbas(100..101),
        FaultAction::Status {
            sct: sct::MEDIA,
            sc: sc::MEDIA_UNRECOVERED_READ,
            dnr: true,
        },
        FaultCount::Always,
    );
    let mut buf = vec![0u8; 512];
    let e = guard(ns.read(100 * 512, &mut buf)).await.unwrap_err();
    match e {
        BlockError::Nvme {
            status, offset, op, ..
        } => {
            assert_eq!((status.sct, status.sc, status.dnr), (2, 0x81, true));
            assert_eq!((offset, op), (100 * 512, "read"));
        }
        other => panic!("{other}"),
    }
    assert_eq!(s.faults().counters().status_injected, 1, "DNR: no retry");
    // The device logged it: the error log and SMART show it through the admin queue.
    let log = guard(ctrl.error_log()).await.unwrap();
    let entry = log.first().expect("an error log entry");
    assert_eq!(
        (entry.status >> 1) & 0xff,
        u16::from(sc::MEDIA_UNRECOVERED_READ)
    );
    assert_eq!((entry.status >> 9) & 0b111, u16::from(sct::MEDIA));
    assert!((1..=2).contains(&entry.sqid), "an I/O queue: {entry:?}");
    let health = guard(ns.health()).await.unwrap();
    assert!(
        health.media_errors >= 1 && health.error_log_entries >= 1,
        "{health:?}"
    );
    guard(ns.read(0, &mut buf)).await.unwrap();
    assert_eq!(buf, data[..512]);
    s.faults().clear();

    // DNR clear, twice: the driver retries and the caller gets the data.
    s.faults().error_status(
        CommandMatch::io(io::READ),
        sct::GENERIC,
        sc::INTERNAL_ERROR,
        FaultCount::Times(2),
    );
    let mut back = vec![0u8; data.len()];
    guard(ns.read(0, &mut back)).await.unwrap();
    assert!(back == data);

    // DNR clear, always: bounded retries (1 + max_retries attempts), then the status.
    s.faults().clear();
    let before = s.faults().counters().status_injected;
    s.faults().error_status(
        CommandMatch::io(io::WRITE),
        sct::GENERIC,
        sc::INTERNAL_ERROR,
        FaultCount::Always,
    );
    let e = guard(ns.write(0, &data[..4096], WriteFlags::FUA))
        .await
        .unwrap_err();
    assert!(
        matches!(e, BlockError::Nvme { status, .. } if status.sc == sc::INTERNAL_ERROR && !status.dnr),
        "{e}"
    );
    assert_eq!(s.faults().counters().status_injected - before, 3);
    s.faults().clear();
    guard(ns.write(0, &data[..4096], WriteFlags::FUA))
        .await
        .unwrap();
    assert!(ctrl.stats()[1..].iter().map(|q| q.errors).sum::<u64>() >= 6);
    guard(ctrl.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_beyond_timeout_is_aborted_and_reissued() {
    let s = sim("delay", 4096);
    let (ctrl, ns) = up(s.clone()).await;
    let data = pattern(2, 32 * 1024);
    s.faults().delay(
        CommandMatch::io(io::WRITE),
        TIMEOUT * 20,
        FaultCount::Times(1),
    );
    guard(ns.write(8192, &data, WriteFlags::NONE))
        .await
        .unwrap();
    let mut back = vec![0u8; data.len()];
    guard(ns.read(8192, &mut back)).await.unwrap();
    assert!(back == data);
    let stats = ctrl.stats();
    assert_eq!(
        stats.iter().map(|q| q.timeouts).sum::<u64>(),
        1,
        "{stats:?}"
    );
    assert_eq!(stats[0].resets, 0, "Abort sufficed: {stats:?}");
    assert_eq!(s.faults().counters().delayed, 1);
    guard(ctrl.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_completion_resets_and_reissues_with_io_in_flight() {
    let s = sim("lost", 512);
    let (ctrl, ns) = up(s.clone()).await;
    s.faults().lose_completions(
        CommandMatch::io(io::WRITE).with_lbas(0..8),
        FaultCount::Times(1),
    );
    // One lost write among many concurrent ones on both queues: all complete, data intact.
    let mut set = tokio::task::JoinSet::new();
    for t in 0..32u64 {
        let ns = ns.clone();
        set.spawn(async move {
            let data = pattern(100 + t, 4096);
            ns.write(t * 4096, &data, WriteFlags::NONE).await.unwrap();
            let mut back = vec![0u8; 4096];
            ns.read(t * 4096, &mut back).await.unwrap();
            assert!(back == data, "task {t}");
        });
    }
    guard(async {
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    })
    .await;
    let stats = ctrl.stats();
    assert_eq!(s.faults().counters().lost_completions, 1);
    assert_eq!(stats[0].resets, 1, "{stats:?}");
    assert!(
        stats[1..].iter().all(|q| q.resets == 1),
        "every queue was recreated: {stats:?}"
    );
    guard(ctrl.shutdown()).await.unwrap();
    assert_eq!(s.iommu().fault_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_never_come_then_timeout() {
    let s = sim("never", 4096);
    let (ctrl, ns) = up(s.clone()).await;
    s.faults()
        .lose_completions(CommandMatch::io(io::READ), FaultCount::Always);
    let mut buf = vec![0u8; 4096];
    let e = guard(ns.read(0, &mut buf)).await.unwrap_err();
    assert!(matches!(e, BlockError::Timeout { op: "read", .. }), "{e}");
    // Bounded: the first try and max_retries reissues.
    assert_eq!(s.faults().counters().lost_completions, 3);
    // The controller still works once the fault goes away.
    s.faults().clear();
    let data = pattern(3, 4096);
    guard(ns.write(0, &data, WriteFlags::FUA)).await.unwrap();
    guard(ns.read(0, &mut buf)).await.unwrap();
    assert_eq!(buf, data);
    guard(ctrl.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_timeout_resets_and_retries() {
    let s = sim("admin", 4096);
    let (ctrl, _ns) = up(s.clone()).await;
    s.faults().delay(
        CommandMatch::admin(admin::GET_LOG_PAGE),
        TIMEOUT * 20,
        FaultCount::Times(1),
    );
    let smart = guard(ctrl.smart_log()).await.unwrap();
    assert!(smart.temperature_kelvin > 0);
    assert_eq!(ctrl.stats()[0].resets, 1);
    assert_eq!(ctrl.stats()[0].timeouts, 1);
    guard(ctrl.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_fatal_status_fails_everything() {
    let s = sim("cfs", 4096);
    let (ctrl, ns) = up(s.clone()).await;
    s.faults().delay(
        CommandMatch::io(io::READ),
        Duration::from_secs(60),
        FaultCount::Always,
    );
    let mut set = tokio::task::JoinSet::new();
    for t in 0..8u64 {
        let ns = ns.clone();
        set.spawn(async move {
            let mut buf = vec![0u8; 4096];
            ns.read(t * 4096, &mut buf).await
        });
    }
    let faults = s.faults();
    until(|| faults.counters().delayed == 8).await;
    s.faults().controller_fatal();
    while let Some(r) = guard(set.join_next()).await {
        let e = r.unwrap().unwrap_err();
        assert!(lost_reason(&e).contains("CFS"), "{e}");
    }
    let mut buf = vec![0u8; 4096];
    let e = guard(ns.write(0, &buf, WriteFlags::NONE))
        .await
        .unwrap_err();
    assert!(lost_reason(&e).contains("CFS"), "{e}");
    let e = guard(ns.read(0, &mut buf)).await.unwrap_err();
    assert!(lost_reason(&e).contains("CFS"), "{e}");
    assert!(matches!(
        guard(ctrl.smart_log()).await,
        Err(NvmeError::DeviceLost { .. })
    ));
    assert!(ctrl.lost_reason().is_some_and(|r| r.contains("CFS")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surprise_removal_fails_in_flight_and_future_commands() {
    let s = sim("gone", 512);
    let (ctrl, ns) = up(s.clone()).await;
    s.faults().delay(
        CommandMatch::io(io::WRITE),
        Duration::from_secs(60),
        FaultCount::Always,
    );
    let ns2 = ns.clone();
    let inflight =
        tokio::spawn(async move { ns2.write(0, &vec![1u8; 8192], WriteFlags::FUA).await });
    let faults = s.faults();
    until(|| faults.counters().delayed == 1).await;
    s.faults().surprise_removal(false);
    let e = guard(inflight).await.unwrap().unwrap_err();
    assert!(lost_reason(&e).contains("all-ones"), "{e}");
    let mut buf = vec![0u8; 512];
    let e = guard(ns.read(0, &mut buf)).await.unwrap_err();
    assert!(lost_reason(&e).contains("all-ones"), "{e}");
    assert!(guard(ns.flush()).await.is_err());
    assert!(guard(ctrl.shutdown()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_request_releases_the_device() {
    let s = sim("unplug", 4096);
    let (ctrl, ns) = up(s.clone()).await;
    let data = pattern(4, 64 * 1024);
    guard(ns.write(0, &data, WriteFlags::NONE)).await.unwrap();
    assert!(s.iommu().mapping_count() > 0);
    s.faults().removal_notice();
    // Every DMA mapping goes away: rings, admin page and bounce buffers.
    let iommu = s.iommu();
    until(|| iommu.mapping_count() == 0).await;
    let mut buf = vec![0u8; 4096];
    let e = guard(ns.read(0, &mut buf)).await.unwrap_err();
    assert!(lost_reason(&e).contains("hot-unplug"), "{e}");
    assert!(matches!(
        guard(ctrl.error_log()).await,
        Err(NvmeError::DeviceLost { .. })
    ));
}

/// A mapper that, once told to, reports IOVAs the IOMMU never mapped (a driver or
/// mapping bug): the device must be refused and the caller must get an error.
#[derive(Debug)]
struct LyingMapper {
    inner: Arc<dyn DmaMapper>,
    lie: AtomicBool,
    shifted: Mutex<HashSet<u64>>,
}

const SHIFT: u64 = 1 << 44;

impl DmaMapper for LyingMapper {
    unsafe fn map(&self, vaddr: NonNull<u8>, len: usize) -> Result<u64, DmaError> {
        // SAFETY: forwarded with the caller's own promise about `vaddr..vaddr+len`.
        let iova = unsafe { self.inner.map(vaddr, len) }?;
        if self.lie.load(Ordering::SeqCst) {
            self.shifted.lock().insert(iova + SHIFT);
            return Ok(iova + SHIFT);
        }
        Ok(iova)
    }
    fn unmap(&self, iova: u64, len: usize) {
        if self.shifted.lock().remove(&iova) {
            self.inner.unmap(iova - SHIFT, len);
        } else {
            self.inner.unmap(iova, len);
        }
    }
}

#[derive(Debug)]
struct Lying {
    sim: Arc<SimController>,
    mapper: Arc<LyingMapper>,
    /// Offer no MSI-X vectors (the driver must poll).
    no_msix: bool,
}

impl DeviceBacking for Lying {
    fn id(&self) -> &str {
        self.sim.id()
    }
    fn kind(&self) -> DeviceKind {
        self.sim.kind()
    }
    fn read32(&self, offset: u64) -> u32 {
        self.sim.read32(offset)
    }
    fn write32(&self, offset: u64, value: u32) {
        self.sim.write32(offset, value)
    }
    fn dma_mapper(&self) -> Arc<dyn DmaMapper> {
        self.mapper.clone()
    }
    fn msix_count(&self) -> u32 {
        if self.no_msix {
            0
        } else {
            self.sim.msix_count()
        }
    }
    fn enable_msix(&self, count: u32) -> Result<Vec<Arc<EventFd>>, BackingError> {
        self.sim.enable_msix(count)
    }
    fn removal_request(&self) -> Option<Arc<EventFd>> {
        self.sim.removal_request()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dma_to_unmapped_iova_is_rejected() {
    let s = sim("iommu", 4096);
    let mapper = Arc::new(LyingMapper {
        inner: s.dma_mapper(),
        lie: AtomicBool::new(false),
        shifted: Mutex::new(HashSet::new()),
    });
    let backing = Arc::new(Lying {
        sim: s.clone(),
        mapper: mapper.clone(),
        no_msix: false,
    });
    let (ctrl, ns) = up(backing).await;
    // Bounce buffers are allocated on first use: from now on they carry bad IOVAs.
    mapper.lie.store(true, Ordering::SeqCst);
    let e = guard(ns.write(0, &pattern(5, 4096), WriteFlags::NONE))
        .await
        .unwrap_err();
    assert!(
        matches!(e, BlockError::Nvme { status, .. } if status.sc == sc::DATA_TRANSFER_ERROR),
        "{e}"
    );
    assert!(s.iommu().fault_count() > 0);
    assert!(s.iommu().faults().iter().all(|f| f.iova >= SHIFT));
    guard(ctrl.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_msix_vectors_falls_back_to_polling_and_still_recovers() {
    let s = sim("novec", 4096);
    let backing = Arc::new(Lying {
        sim: s.clone(),
        mapper: Arc::new(LyingMapper {
            inner: s.dma_mapper(),
            lie: AtomicBool::new(false),
            shifted: Mutex::new(HashSet::new()),
        }),
        no_msix: true,
    });
    let (ctrl, ns) = up(backing).await;
    s.faults()
        .lose_completions(CommandMatch::io(io::READ), FaultCount::Times(1));
    let data = pattern(6, 16 * 1024);
    guard(ns.write(4096, &data, WriteFlags::NONE))
        .await
        .unwrap();
    let mut back = vec![0u8; data.len()];
    guard(ns.read(4096, &mut back)).await.unwrap();
    assert!(back == data);
    assert_eq!(s.stats().interrupts, 0);
    assert_eq!(ctrl.stats()[0].resets, 1);
    guard(ctrl.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_stuck_io_is_bounded() {
    let s = sim("stuck", 4096);
    let (ctrl, ns) = up(s.clone()).await;
    s.faults().delay(
        CommandMatch::io(io::READ),
        Duration::from_secs(600),
        FaultCount::Always,
    );
    let ns2 = ns.clone();
    let stuck = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        ns2.read(0, &mut buf).await
    });
    let faults = s.faults();
    until(|| faults.counters().delayed >= 1).await;
    // Shutdown drains: the stuck read goes through abort/reissue until it times out.
    guard(ctrl.shutdown()).await.unwrap();
    let e = guard(stuck).await.unwrap().unwrap_err();
    assert!(
        matches!(
            e,
            BlockError::Timeout { .. } | BlockError::DeviceLost { .. }
        ),
        "{e}"
    );
    let csts_v = s.read32(ingot_hal::nvme::spec::reg::CSTS);
    assert_eq!(
        csts_v & ingot_hal::nvme::spec::csts::SHST_MASK,
        ingot_hal::nvme::spec::csts::SHST_COMPLETE
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_controller_notices_fatal_status() {
    let s = sim("idlecfs", 4096);
    let c = DriverConfig {
        health_interval: Duration::from_millis(20),
        ..cfg()
    };
    let ctrl = guard(Controller::init(s.clone(), c)).await.unwrap();
    s.faults().controller_fatal();
    // No command is issued: the supervisor's periodic CSTS read finds CFS.
    until(|| ctrl.lost_reason().is_some()).await;
    assert!(ctrl.lost_reason().is_some_and(|r| r.contains("CFS")));
}

/// Seeded concurrent workload while the simulator loses completions, delays commands past
/// the timeout and returns transient errors at random: every operation succeeds and every
/// read matches the model (recovery is transparent to callers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_workload_with_random_recoverable_faults() {
    let s = sim("random", 512);
    let c = DriverConfig {
        command_timeout: Duration::from_millis(300),
        max_retries: 8,
        queue_depth: 8,
        ..cfg()
    };
    let ctrl = guard(Controller::init(s.clone(), c)).await.unwrap();
    let ns = ctrl.namespace(1).unwrap();
    let region = 4 * MIB / 8;
    let mut set = tokio::task::JoinSet::new();
    for t in 0..8u64 {
        let (ns, faults) = (ns.clone(), s.faults());
        set.spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(500 + t);
            let base = t * region;
            let mut model = vec![0u8; region as usize];
            for _ in 0..25 {
                let any = CommandMatch::any_io();
                match rng.random_range(0..20) {
                    0 => faults.lose_completions(any, FaultCount::Times(1)),
                    1 => faults.delay(any, Duration::from_secs(5), FaultCount::Times(1)),
                    2 | 3 => faults.error_status(
                        any,
                        sct::GENERIC,
                        sc::INTERNAL_ERROR,
                        FaultCount::Times(1),
                    ),
                    _ => {}
                }
                let blocks = rng.random_range(1..=512u64);
                let at = rng.random_range(0..=region / 512 - blocks) * 512;
                let len = (blocks * 512) as usize;
                if rng.random_bool(0.5) {
                    let mut data = vec![0u8; len];
                    rng.fill(&mut data[..]);
                    ns.write(base + at, &data, WriteFlags::NONE).await.unwrap();
                    model[at as usize..at as usize + len].copy_from_slice(&data);
                } else {
                    let mut back = vec![0u8; len];
                    ns.read(base + at, &mut back).await.unwrap();
                    assert!(back == model[at as usize..at as usize + len], "task {t}");
                }
            }
        });
    }
    guard(async {
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    })
    .await;
    let f = s.faults().counters();
    assert!(
        f.lost_completions + f.delayed + f.status_injected > 0,
        "{f:?}"
    );
    guard(ctrl.shutdown()).await.unwrap();
    assert_eq!(s.iommu().fault_count(), 0);
}
