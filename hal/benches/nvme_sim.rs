//! Per-command cost of the NVMe driver on the simulated controller, set up as `ingot up`
//! sets up its drives: a file-backed simulated drive on tmpfs, the default driver
//! configuration. Workloads: 4 KiB and 128 KiB sequential writes and 4 KiB random reads,
//! at queue depth 1 and 32. Reports commands per second, CPU nanoseconds per command
//! (whole process, and split by thread group: driver `nvme-*`, simulator `sim-*`, tokio)
//! and context switches per command (all threads, voluntary and involuntary).
//!
//! Method: one controller per run set, a 256 MiB namespace in a sparse file under
//! `NVME_BENCH_DIR` (default `/dev/shm`), prefilled; QD concurrent tokio tasks each
//! issue one command at a time for `NVME_BENCH_SECS`; writes go to consecutive offsets
//! (each task its own stripe), reads to random 4 KiB-aligned offsets. CPU is
//! getrusage(RUSAGE_SELF) and /proc/self/task/*/schedstat. Median of `NVME_BENCH_RUNS`
//! runs. `NVME_BENCH_SPIN_US` overrides `DriverConfig::spin`. Also reports process CPU
//! over one idle second.
//!
//! Run: `cargo bench -p ingot-hal --bench nvme_sim` (env NVME_BENCH_SECS, NVME_BENCH_RUNS,
//! NVME_BENCH_DIR, NVME_BENCH_SPIN_US).

use ingot_hal::blockdev::{BlockDevice, WriteFlags};
use ingot_hal::nvme::driver::{Controller, DriverConfig, Namespace};
use ingot_hal::sim::{SimController, SimDrive};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SIZE: u64 = 256 << 20;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Process CPU time (user + system).
fn process_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass; RUSAGE_SELF is always valid.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Per thread group ("driver" = nvme-*, "sim" = sim-*, "tokio", "other"): CPU
/// nanoseconds, plus "ctxsw": context switches of all threads.
fn thread_counters() -> HashMap<&'static str, u64> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in dir.flatten() {
        let p = t.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let ns: u64 = std::fs::read_to_string(p.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        let switches: u64 = std::fs::read_to_string(p.join("status"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .filter_map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .sum();
        let group = if comm.starts_with("nvme-") {
            "driver"
        } else if comm.starts_with("sim-") {
            "sim"
        } else if comm.starts_with("tokio") {
            "tokio"
        } else {
            "other"
        };
        *out.entry(group).or_default() += ns;
        *out.entry("ctxsw").or_default() += switches;
    }
    out
}

struct Sample {
    cmds_per_s: f64,
    cpu_ns: f64,
    driver_ns: f64,
    sim_ns: f64,
    tokio_ns: f64,
    ctxsw: f64,
}

#[derive(Clone, Copy)]
struct Workload {
    name: &'static str,
    write: bool,
    io: usize,
    qd: usize,
}

async fn run(ns: &Namespace, w: Workload, secs: u64, seed: u64) -> Sample {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let cpu0 = process_cpu();
    let t0 = thread_counters();
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for q in 0..w.qd {
        let (ns, stop, done) = (ns.clone(), stop.clone(), done.clone());
        set.spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(seed * 1000 + q as u64);
            let mut buf = vec![0u8; w.io];
            rng.fill(&mut buf[..]);
            let slots = SIZE / w.io as u64;
            let mut next = q as u64;
            while !stop.load(Ordering::Relaxed) {
                if w.write {
                    let at = (next % slots) * w.io as u64;
                    next += w.qd as u64;
                    ns.write(at, &buf, WriteFlags::NONE).await.expect("write");
                } else {
                    let at = rng.random_range(0..slots) * w.io as u64;
                    ns.read(at, &mut buf).await.expect("read");
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    while set.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = (process_cpu() - cpu0).as_nanos() as f64;
    let t1 = thread_counters();
    let cmds = done.load(Ordering::Relaxed) as f64;
    let per = |g: &str| {
        t1.get(g)
            .copied()
            .unwrap_or(0)
            .saturating_sub(t0.get(g).copied().unwrap_or(0)) as f64
            / cmds
    };
    Sample {
        cmds_per_s: cmds / elapsed,
        cpu_ns: cpu / cmds,
        driver_ns: per("driver"),
        sim_ns: per("sim"),
        tokio_ns: per("tokio"),
        ctxsw: per("ctxsw"),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs = env_or("NVME_BENCH_SECS", 1);
    let runs = env_or("NVME_BENCH_RUNS", 3) as usize;
    let base = std::env::var("NVME_BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let dir = tempfile::Builder::new()
        .prefix("nvme-bench-")
        .tempdir_in(&base)
        .expect("bench directory");
    let mut cfg = DriverConfig::default();
    if let Ok(us) = std::env::var("NVME_BENCH_SPIN_US") {
        cfg.spin = Duration::from_micros(us.parse().expect("NVME_BENCH_SPIN_US"));
    }
    let path = dir.path().join("bench");
    SimDrive::create(&path, SIZE, 4096, "BENCH0001").expect("create drive");
    let sim = Arc::new(SimController::open(&path).expect("open drive"));
    let ctrl = Controller::init(sim.clone(), cfg.clone())
        .await
        .expect("init");
    let ns = ctrl.namespace(1).expect("ns");
    let fill = vec![0xa5u8; 1 << 20];
    for i in 0..SIZE / (1 << 20) {
        ns.write(i << 20, &fill, WriteFlags::NONE)
            .await
            .expect("prefill");
    }
    let c0 = process_cpu();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = (process_cpu() - c0).as_secs_f64() * 100.0;
    println!(
        "nvme_sim: file-backed sim drive in {base}, {} I/O queues, spin {:?}; {secs} s x {runs} runs, median; per command",
        cfg.io_queues, cfg.spin
    );
    println!("idle controller: process CPU {idle:.2}% of one core over 1 s");
    println!(
        "{:<10} {:>6} {:>4} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "workload", "size", "QD", "cmds/s", "cpu ns", "driver", "sim", "tokio", "ctxsw"
    );
    let loads = [
        (true, 4096, 1),
        (true, 4096, 32),
        (true, 128 << 10, 1),
        (true, 128 << 10, 32),
        (false, 4096, 1),
        (false, 4096, 32),
    ];
    for (write, io, qd) in loads {
        let w = Workload {
            name: if write { "seqwrite" } else { "randread" },
            write,
            io,
            qd,
        };
        let mut samples = Vec::new();
        for r in 0..runs {
            samples.push(run(&ns, w, secs, r as u64).await);
        }
        let m = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
        println!(
            "{:<10} {:>5}K {:>4} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>8.2}",
            w.name,
            w.io / 1024,
            w.qd,
            m(|s| s.cmds_per_s),
            m(|s| s.cpu_ns),
            m(|s| s.driver_ns),
            m(|s| s.sim_ns),
            m(|s| s.tokio_ns),
            m(|s| s.ctxsw),
        );
    }
    ctrl.shutdown().await.expect("shutdown");
}
