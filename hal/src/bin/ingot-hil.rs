//! `ingot-hil`: the hardware-in-loop run inside the QEMU guest (see `images/`).
//!
//! Binds every NVMe function to vfio-pci and opens it through the VFIO backend. In `probe`
//! mode it checks the VFIO path alone, without the NVMe driver: BAR0 registers, MSI-X and
//! request eventfds, and one hand-built admin Identify through a mapped queue pair, which
//! proves DMA through the IOMMU both ways and MSI-X delivery. Markers on stdout (`INGOT-HIL: PASS drive=...`, `INGOT-HIL: FAIL ...`,
//! `INGOT-HIL: ALL PASS`) are what the host-side `images/hil-smoke` checks.

use ingot_hal::backing::DeviceBacking;
use ingot_hal::dma::DmaBuffer;
use ingot_hal::nvme::spec::{
    self, Cap, Command, Completion, IdentifyController, admin, cc, cns, csts, reg,
};
use ingot_hal::vfio::{PciAddress, PciSysfs, VfioDevice};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: ingot-hil [--mode probe|dma-fault] [--mib N] [--bind-timeout-secs N]";

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// VFIO only: registers, interrupts, DMA mapping.
    Probe,
    /// Like `Probe`, but Identify is pointed at an unmapped IOVA: a self-test of the host-side
    /// checker, which must fail the run on the `DMAR: [DMA Write` fault the guest logs.
    DmaFault,
}

#[derive(Debug)]
struct Args {
    mode: Mode,
    mib: u64,
    bind_timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        mode: Mode::Probe,
        mib: 64,
        bind_timeout: Duration::from_secs(10),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--mode" => {
                args.mode = match value("--mode")?.as_str() {
                    "probe" => Mode::Probe,
                    "dma-fault" => Mode::DmaFault,
                    other => return Err(format!("unknown mode {other:?}")),
                }
            }
            "--mib" => args.mib = value("--mib")?.parse().map_err(|e| format!("--mib: {e}"))?,
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
    let mut failed = 0;
    for address in &drives {
        let t = Instant::now();
        let result = match args.mode {
            Mode::Probe | Mode::DmaFault => probe(&sysfs, address, &args),
        };
        match result {
            Ok(summary) => println!(
                "INGOT-HIL: PASS drive={address} time={:.2}s {summary}",
                t.elapsed().as_secs_f64()
            ),
            Err(e) => {
                failed += 1;
                println!("INGOT-HIL: FAIL drive={address}: {e}");
            }
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
