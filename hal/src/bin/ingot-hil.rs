//! `ingot-hil`: the hardware-in-loop run inside the QEMU guest (see `images/`).
//!
//! Binds every NVMe function to vfio-pci and opens it through the VFIO backend. In `probe`
//! mode it checks the VFIO path alone: BAR0 registers, MSI-X and request eventfds, a DMA
//! mapping. Markers on stdout (`INGOT-HIL: PASS drive=...`, `INGOT-HIL: FAIL ...`,
//! `INGOT-HIL: ALL PASS`) are what the host-side `images/hil-smoke` checks.

use ingot_hal::backing::DeviceBacking;
use ingot_hal::dma::DmaBuffer;
use ingot_hal::nvme::spec::{Cap, reg};
use ingot_hal::vfio::{PciAddress, PciSysfs, VfioDevice};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: ingot-hil [--mode probe] [--mib N] [--bind-timeout-secs N]";

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// VFIO only: registers, interrupts, DMA mapping.
    Probe,
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
    let buf = DmaBuffer::alloc(dev.dma_mapper(), 1 << 20).map_err(|e| e.to_string())?;
    let iova = buf.iova();
    drop(buf);
    Ok(format!(
        "group={} cap={:#018x} mqes={} to_ms={} dstrd={} vs={}.{}.{} csts={csts:#x} bar0={}B mmap={} msix={} req_irq=yes dma_iova={iova:#x} prev_driver={}",
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
        bound.previous_driver.as_deref().unwrap_or("none"),
    ))
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
            Mode::Probe => probe(&sysfs, address, &args),
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
