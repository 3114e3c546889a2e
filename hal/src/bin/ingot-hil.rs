//! `ingot-hil`: the hardware-in-loop run inside the QEMU guest (see `images/`).
//!
//! Binds every NVMe function to vfio-pci and opens it through the VFIO backend. In `full`
//! mode (the default) it runs the NVMe driver on each drive: bring-up and Identify, I/O
//! queues, the exerciser's seeded writes (mixed sizes so PRP lists are used) and flush, the
//! SMART log, a clean shutdown, then a VFIO close/reopen and bring-up, and verification of
//! everything written. In `probe`
//! mode it checks the VFIO path alone, without the NVMe driver: BAR0 registers, MSI-X and
//! request eventfds, and one hand-built admin Identify through a mapped queue pair, which
//! proves DMA through the IOMMU both ways and MSI-X delivery. Markers on stdout (`INGOT-HIL: PASS drive=...`, `INGOT-HIL: FAIL ...`,
//! `INGOT-HIL: ALL PASS`) are what the host-side `images/hil-smoke` checks.

use ingot_hal::backing::DeviceBacking;
use ingot_hal::blockdev::{BlockDevice, BlockError, WriteFlags};
use ingot_hal::dma::DmaBuffer;
use ingot_hal::exercise::{self, ExerciseConfig};
use ingot_hal::nvme::driver::{Controller, DriverConfig};
use ingot_hal::nvme::spec::{
    self, Cap, Command, Completion, IdentifyController, admin, cc, cns, csts, reg,
};
use ingot_hal::vfio::{PciAddress, PciSysfs, VfioDevice, VfioError};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: ingot-hil [--mode full|probe|dma-fault|hotplug] [--mib N] [--victim SERIAL] [--bind-timeout-secs N]";

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The NVMe driver and the exerciser on every drive.
    Full,
    /// VFIO only: registers, interrupts, DMA mapping.
    Probe,
    /// Hot-unplug: I/O runs on every drive; the host pulls the drive whose serial is
    /// `--victim` (QMP `device_del`) after `INGOT-HIL: UNPLUG-NOW`. The victim must fail its
    /// I/O with a device-lost error and be released (its sysfs node disappears); the others
    /// must pass the exerciser.
    Hotplug,
    /// Like `Probe`, but Identify is pointed at an unmapped IOVA: a self-test of the host-side
    /// checker, which must fail the run on the `DMAR: [DMA Write` fault the guest logs.
    DmaFault,
}

#[derive(Debug)]
struct Args {
    mode: Mode,
    mib: u64,
    victim: String,
    bind_timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        mode: Mode::Full,
        mib: 64,
        victim: "ingot1".into(),
        bind_timeout: Duration::from_secs(10),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--mode" => {
                args.mode = match value("--mode")?.as_str() {
                    "full" => Mode::Full,
                    "probe" => Mode::Probe,
                    "dma-fault" => Mode::DmaFault,
                    "hotplug" => Mode::Hotplug,
                    other => return Err(format!("unknown mode {other:?}")),
                }
            }
            "--mib" => args.mib = value("--mib")?.parse().map_err(|e| format!("--mib: {e}"))?,
            "--victim" => args.victim = value("--victim")?,
            "--bind-timeout-secs" => {
                let s: u64 = value("--bind-timeout-secs")?
                    .parse()
                    .map_err(|e| format!("--bind-timeout-secs: {e}"))?;
                args.bind_timeout = Duration::from_secs(s);
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

/// Open one function through VFIO and check what can be checked without the NVMe driver.
fn probe(sysfs: &PciSysfs, address: &PciAddress, args: &Args) -> Result<String, String> {
    let bound = sysfs
        .bind_vfio(address, args.bind_timeout)
        .map_err(|e| e.to_string())?;
    let dev = VfioDevice::open(address.as_str()).map_err(|e| e.to_string())?;
    let cap = Cap(dev.read64(reg::CAP));
    let vs = dev.read32(reg::VS);
    let csts = dev.read32(reg::CSTS);
    if cap.0 == u64::MAX || vs == u32::MAX {
        return Err(format!(
            "registers read all-ones (CAP {:#x}, VS {vs:#x})",
            cap.0
        ));
    }
    if !cap.css_nvm() || cap.mqes() < 2 {
        return Err(format!("implausible CAP {:#018x}", cap.0));
    }
    let vectors = dev.msix_count().min(2);
    let fds = dev.enable_msix(vectors).map_err(|e| e.to_string())?;
    if fds.len() != vectors as usize {
        return Err(format!("asked {vectors} MSI-X eventfds, got {}", fds.len()));
    }
    if dev.removal_request().is_none() {
        return Err("VFIO request interrupt not registered".into());
    }
    // An IOVA far above anything the allocator has handed out, so never mapped.
    let bad_iova = (args.mode == Mode::DmaFault).then_some(0x40_0000_0000);
    let (id, irq, iova) = raw_identify(&dev, cap, &fds, bad_iova)?;
    if vectors > 0 && !irq {
        return Err("admin completion posted but MSI-X vector 0 never signalled".into());
    }
    Ok(format!(
        "group={} cap={:#018x} mqes={} to_ms={} dstrd={} vs={}.{}.{} csts={csts:#x} bar0={}B mmap={} msix={} req_irq=yes identify_iova={iova:#x} model={:?} serial={:?} msix_irq_seen={irq} prev_driver={}",
        bound.group,
        cap.0,
        cap.mqes(),
        cap.timeout_ms(),
        cap.dstrd(),
        vs >> 16,
        (vs >> 8) & 0xff,
        vs & 0xff,
        dev.bar0_len(),
        dev.bar0_mapped(),
        dev.msix_count(),
        id.model,
        id.serial,
        bound.previous_driver.as_deref().unwrap_or("none"),
    ))
}

/// Open `address` through VFIO and bring the NVMe driver up on it. A group still held by
/// a previous open (its DMA buffers not yet all released) is retried for up to 5 s.
async fn bring_up(address: &PciAddress) -> Result<(Controller, bool, f64), String> {
    let t = Instant::now();
    let dev = loop {
        match VfioDevice::open(address.as_str()) {
            Ok(d) => break d,
            Err(VfioError::GroupBusy { .. }) if t.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    let request_irq = dev.removal_request().is_some();
    let backing: Arc<dyn DeviceBacking> = Arc::new(dev);
    let ctrl = Controller::init(backing, DriverConfig::default())
        .await
        .map_err(|e| format!("bring-up: {e}"))?;
    if ctrl.io_queue_count() == 0 {
        return Err("no I/O queues created".into());
    }
    Ok((ctrl, request_irq, t.elapsed().as_secs_f64()))
}

/// Shut the controller down cleanly and check no recovery was ever needed; returns the
/// per-queue counters for the report.
async fn shut_down(ctrl: &Controller) -> Result<String, String> {
    ctrl.shutdown()
        .await
        .map_err(|e| format!("shutdown: {e}"))?;
    let stats = ctrl.stats();
    let queues: Vec<String> = stats
        .iter()
        .map(|q| {
            format!(
                "q{}:{}cmds/{}err/{}tmo/{}rst",
                q.qid, q.commands, q.errors, q.timeouts, q.resets
            )
        })
        .collect();
    // A healthy emulated drive never needs recovery: any of it is a driver or backend bug.
    if stats
        .iter()
        .any(|q| q.errors > 0 || q.timeouts > 0 || q.resets > 0)
    {
        return Err(format!("recovery happened on a healthy drive: {queues:?}"));
    }
    Ok(queues.join(" "))
}

/// The NVMe driver on one drive: bring-up, Identify, I/O queues, the exerciser's writes and
/// flush, SMART, clean shutdown; then the VFIO device is closed, reopened and brought up
/// again, and everything written is read back and verified (durability across a controller
/// shutdown and a VFIO close/reopen), and the drive is shut down again.
async fn full(sysfs: &PciSysfs, address: &PciAddress, args: &Args) -> Result<String, String> {
    let bound = sysfs
        .bind_vfio(address, args.bind_timeout)
        .map_err(|e| e.to_string())?;
    let (ctrl, request_irq, init_s) = bring_up(address).await?;
    let id = ctrl.identify().clone();
    let Some(ns_info) = ctrl.namespaces().first().cloned() else {
        return Err(format!("no usable namespace (NN {})", id.nn));
    };
    let namespace = |ctrl: &Controller| -> Result<Arc<dyn BlockDevice>, String> {
        Ok(Arc::new(
            ctrl.namespace(ns_info.nsid)
                .map_err(|e| format!("namespace {}: {e}", ns_info.nsid))?,
        ))
    };
    let ns = namespace(&ctrl)?;
    let cfg = ExerciseConfig {
        bytes: args.mib << 20,
        ..Default::default()
    };
    let mut report = exercise::write(ns.clone(), &cfg)
        .await
        .map_err(|e| e.to_string())?;
    if report.write_errors > 0 || report.flush_error {
        return Err(format!("exerciser writes: {report}; {:?}", report.errors));
    }
    let smart = ctrl.smart_log().await.map_err(|e| format!("SMART: {e}"))?;
    // NVMe counts data units of 1000 x 512 bytes, rounded up.
    let want_units = u128::from(report.bytes_written / 512).div_ceil(1000);
    if smart.data_units_written < want_units {
        return Err(format!(
            "SMART data units written {} < {want_units} for {} bytes written",
            smart.data_units_written, report.bytes_written
        ));
    }
    let health = ns.health().await.map_err(|e| format!("health: {e}"))?;
    let queues1 = shut_down(&ctrl).await?;
    drop((ns, ctrl));

    let (ctrl, _, reopen_s) = bring_up(address)
        .await
        .map_err(|e| format!("reopen: {e}"))?;
    let ns = namespace(&ctrl)?;
    exercise::verify(ns.clone(), &cfg, &mut report)
        .await
        .map_err(|e| e.to_string())?;
    if !report.passed() {
        return Err(format!(
            "exerciser verify after reopen: {report}; {:?}",
            report.errors
        ));
    }
    let queues2 = shut_down(&ctrl).await?;
    Ok(format!(
        "group={} model={:?} serial={:?} fw={:?} nsid={} lba={} capacity={}B mdts_bytes={} io_queues={} init={init_s:.2}s reopen={reopen_s:.2}s req_irq={request_irq} exercise: {report} (verified after shutdown+reopen) smart: temp={}K units_written={} units_read={} write_cmds={} critical_warning={:#x} media_errors={} health_temp={:?} queues=[{queues1}] [{queues2}] shutdown=ok",
        bound.group,
        id.model,
        id.serial,
        id.firmware,
        ns_info.nsid,
        ns_info.block_size,
        ns_info.blocks * u64::from(ns_info.block_size),
        ctrl.max_transfer(),
        ctrl.io_queue_count(),
        smart.temperature_kelvin,
        smart.data_units_written,
        smart.data_units_read,
        smart.host_write_commands,
        smart.critical_warning,
        smart.media_errors,
        health.temperature_kelvin,
    ))
}

/// How long the victim may keep answering after `UNPLUG-NOW` before the run fails.
const UNPLUG_DEADLINE: Duration = Duration::from_secs(60);

/// Keep I/O going on the victim until it is lost; then check it was released.
async fn victim_io(
    address: &PciAddress,
    sysfs_dir: std::path::PathBuf,
    ctrl: Controller,
    ns: Arc<dyn BlockDevice>,
) -> Result<String, String> {
    let bs = u64::from(ns.geometry().block_size).max(4096);
    let chunk = 32 * bs;
    let span = (ns.geometry().capacity() / chunk).clamp(1, 256);
    println!("INGOT-HIL: UNPLUG-NOW drive={address}");
    let t = Instant::now();
    let mut ops = 0u64;
    let mut buf = vec![0u8; chunk as usize];
    let mut back = vec![0u8; chunk as usize];
    let lost = loop {
        if t.elapsed() > UNPLUG_DEADLINE {
            return Err(format!(
                "still answering {UNPLUG_DEADLINE:?} after UNPLUG-NOW ({ops} I/Os)"
            ));
        }
        let offset = (ops % span) * chunk;
        exercise::fill_pattern(ops, offset, &mut buf);
        let r = match ns.write(offset, &buf, WriteFlags::NONE).await {
            Ok(()) => ns.read(offset, &mut back).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(()) if back == buf => ops += 1,
            Ok(()) => return Err(format!("data mismatch at {offset} before removal")),
            Err(e) => break e,
        }
    };
    let lost_after = t.elapsed().as_secs_f64();
    if !matches!(lost, BlockError::DeviceLost { .. }) {
        return Err(format!("I/O failed with {lost}, expected device lost"));
    }
    let reason = ctrl.lost_reason().unwrap_or_default();
    // Later I/O fails at once, without hanging.
    let again = tokio::time::timeout(Duration::from_secs(5), ns.read(0, &mut back)).await;
    if !matches!(again, Ok(Err(BlockError::DeviceLost { .. }))) {
        return Err(format!("I/O after loss did not fail fast: {again:?}"));
    }
    drop((ns, ctrl));
    // The kernel finishes the removal only once every holder let go of the device.
    let gone = Instant::now();
    while sysfs_dir.exists() {
        if gone.elapsed() > Duration::from_secs(20) {
            return Err(format!(
                "{} still present 20 s after release",
                sysfs_dir.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(format!(
        "unplugged ios_before_loss={ops} lost_after={lost_after:.2}s error=\"{lost}\" reason={reason:?} sysfs_gone_after_release={:.2}s",
        gone.elapsed().as_secs_f64()
    ))
}

/// The hot-unplug scenario over all drives; one result per drive.
async fn hotplug(
    sysfs: &PciSysfs,
    drives: &[PciAddress],
    args: &Args,
) -> Vec<(PciAddress, Result<String, String>)> {
    let mut results = Vec::new();
    let mut victim = None;
    let mut survivors = tokio::task::JoinSet::new();
    for address in drives {
        let up = async {
            sysfs
                .bind_vfio(address, args.bind_timeout)
                .map_err(|e| e.to_string())?;
            let (ctrl, request_irq, _) = bring_up(address).await?;
            if !request_irq {
                return Err("no VFIO request interrupt: removal would block".to_string());
            }
            let nsid = ctrl
                .namespaces()
                .first()
                .map(|n| n.nsid)
                .ok_or("no namespace")?;
            let ns: Arc<dyn BlockDevice> =
                Arc::new(ctrl.namespace(nsid).map_err(|e| e.to_string())?);
            Ok::<_, String>((ctrl, ns))
        };
        match up.await {
            Err(e) => results.push((address.clone(), Err(e))),
            Ok((ctrl, ns)) if ctrl.identify().serial == args.victim => {
                victim = Some((address.clone(), ctrl, ns));
            }
            Ok((ctrl, ns)) => {
                let cfg = ExerciseConfig {
                    bytes: args.mib << 20,
                    ..Default::default()
                };
                let address = address.clone();
                survivors.spawn(async move {
                    let r = match exercise::run(ns, &cfg).await {
                        Ok(rep) if rep.passed() => match shut_down(&ctrl).await {
                            Ok(q) => Ok(format!("survivor exercise: {rep} queues=[{q}]")),
                            Err(e) => Err(e),
                        },
                        Ok(rep) => Err(format!("survivor exercise: {rep}; {:?}", rep.errors)),
                        Err(e) => Err(e.to_string()),
                    };
                    (address, r)
                });
            }
        }
    }
    match victim {
        Some((address, ctrl, ns)) => {
            let dir = std::path::Path::new("/sys/bus/pci/devices").join(address.as_str());
            let r = victim_io(&address, dir, ctrl, ns).await;
            results.push((address, r));
        }
        None => results.push((
            PciAddress::parse("0000:00:00.0").unwrap_or_else(|_| drives[0].clone()),
            Err(format!("no drive with serial {:?} to unplug", args.victim)),
        )),
    }
    while let Some(done) = survivors.join_next().await {
        match done {
            Ok(r) => results.push(r),
            Err(e) => results.push((drives[0].clone(), Err(format!("survivor task: {e}")))),
        }
    }
    results
}

/// Wait until `done` holds, polling, for at most `limit`.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// One admin Identify Controller by hand: disable, set up a 16-entry admin queue pair in DMA
/// memory, enable (MSI-X already routed, as QEMU requires), submit, poll the completion,
/// check vector 0 fired, then shut the controller down. A VFIO self-check, not the driver.
fn raw_identify(
    dev: &VfioDevice,
    cap: Cap,
    vectors: &[std::sync::Arc<vmm_sys_util::eventfd::EventFd>],
    bad_iova: Option<u64>,
) -> Result<(IdentifyController, bool, u64), String> {
    let to = Duration::from_millis(cap.timeout_ms().max(500));
    let err = |what: &str| format!("{what} (CSTS {:#x})", dev.read32(reg::CSTS));
    dev.write32(reg::CC, 0);
    if !wait_until(to, || dev.read32(reg::CSTS) & csts::RDY == 0) {
        return Err(err("controller did not disable"));
    }
    let mapper = dev.dma_mapper();
    let alloc = |len| DmaBuffer::alloc(mapper.clone(), len).map_err(|e| e.to_string());
    let mut sq = alloc(4096)?;
    let cq = alloc(4096)?;
    let data = alloc(spec::IDENTIFY_SIZE)?;
    dev.write32(reg::AQA, spec::aqa(16, 16));
    dev.write64(reg::ASQ, sq.iova());
    dev.write64(reg::ACQ, cq.iova());
    dev.write32(reg::CC, cc::standard());
    if !wait_until(to, || dev.read32(reg::CSTS) & csts::RDY != 0) {
        return Err(err("controller did not become ready"));
    }
    let mut cmd = Command::new(admin::IDENTIFY, 0);
    cmd.set_cid(0x4242);
    cmd.prp1 = bad_iova.unwrap_or(data.iova());
    cmd.cdw10 = cns::CONTROLLER;
    sq.write_volatile(0, &cmd.to_bytes());
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    dev.write32(reg::sq_tail_doorbell(0, cap.dstrd()), 1);
    let mut raw = [0u8; spec::CQE_SIZE];
    let posted = wait_until(Duration::from_secs(5), || {
        cq.read_volatile(0, &mut raw);
        Completion::from_bytes(&raw).phase()
    });
    if !posted {
        return Err(err("Identify completion never posted"));
    }
    let c = Completion::from_bytes(&raw);
    dev.write32(reg::cq_head_doorbell(0, cap.dstrd()), 1);
    if c.cid != 0x4242 || !c.is_success() {
        return Err(format!(
            "Identify completed with cid {:#x} status sct {} sc {:#x}",
            c.cid,
            c.sct(),
            c.sc()
        ));
    }
    let irq = match vectors.first() {
        Some(v) => wait_until(Duration::from_secs(1), || v.read().is_ok()),
        None => false,
    };
    let id = IdentifyController::parse(data.as_slice());
    if bad_iova.is_none() && (id.model.is_empty() || id.vid == 0) {
        return Err(format!(
            "Identify data empty (vid {:#x}): DMA did not land",
            id.vid
        ));
    }
    dev.write32(reg::CC, cc::standard() | cc::SHN_NORMAL);
    let shut = wait_until(to, || {
        dev.read32(reg::CSTS) & csts::SHST_MASK == csts::SHST_COMPLETE
    });
    dev.write32(reg::CC, 0);
    if !shut {
        return Err(err("shutdown did not complete"));
    }
    Ok((id, irq, data.iova()))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("INGOT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            println!("INGOT-HIL: FAIL bad arguments");
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    let sysfs = PciSysfs::default();
    let drives = match sysfs.nvme_functions() {
        Ok(d) if !d.is_empty() => d,
        Ok(_) => {
            println!("INGOT-HIL: FAIL no NVMe functions found");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            println!("INGOT-HIL: FAIL cannot list PCI devices: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "INGOT-HIL: START mode={:?} drives={} mib={}",
        args.mode,
        drives.len(),
        args.mib
    );
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("INGOT-HIL: FAIL cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = 0;
    let mut report = |address: &PciAddress, t: Instant, result: Result<String, String>| match result
    {
        Ok(summary) => println!(
            "INGOT-HIL: PASS drive={address} time={:.2}s {summary}",
            t.elapsed().as_secs_f64()
        ),
        Err(e) => {
            failed += 1;
            println!("INGOT-HIL: FAIL drive={address}: {e}");
        }
    };
    if args.mode == Mode::Hotplug {
        let t = Instant::now();
        for (address, result) in rt.block_on(hotplug(&sysfs, &drives, &args)) {
            report(&address, t, result);
        }
    } else {
        for address in &drives {
            let t = Instant::now();
            let result = match args.mode {
                Mode::Full | Mode::Hotplug => rt.block_on(full(&sysfs, address, &args)),
                Mode::Probe | Mode::DmaFault => probe(&sysfs, address, &args),
            };
            report(address, t, result);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if failed == 0 {
        println!(
            "INGOT-HIL: ALL PASS drives={} time={secs:.2}s",
            drives.len()
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "INGOT-HIL: FAILED {failed} of {} drives time={secs:.2}s",
            drives.len()
        );
        ExitCode::FAILURE
    }
}
