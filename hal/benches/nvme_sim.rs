//! 4 KiB random read and write through the NVMe driver on the simulated controller
//! (RAM backing), at queue depth 1 and 32: IOPS and CPU nanoseconds per I/O.
//!
//! Method: one controller with 1 I/O queue pair (QD 1) or 2 (QD 32), a 64 MiB namespace
//! prefilled with data; each run issues I/Os at random 4 KiB-aligned offsets from QD
//! concurrent tokio tasks for `RUN_SECS`; CPU time is the whole process's (getrusage
//! RUSAGE_SELF: driver threads, tokio workers and the simulator's controller thread),
//! and per-thread CPU from /proc/self/task/*/schedstat is split into driver, simulator
//! and tokio. Median of `RUNS` runs. QD 1 runs twice: with the default adaptive spin
//! and with spin 0 (sleep on the MSI-X eventfd at once). Also reports process CPU over
//! one idle second.
//!
//! Run: `cargo bench -p ingot-hal --bench nvme_sim` (env NVME_BENCH_SECS, NVME_BENCH_RUNS).

use ingot_hal::blockdev::{BlockDevice, WriteFlags};
use ingot_hal::nvme::driver::{Controller, DriverConfig, Namespace};
use ingot_hal::sim::{SimConfig, SimController};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SIZE: u64 = 64 << 20;
const IO: usize = 4096;

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

/// CPU nanoseconds per thread group: "driver" (nvme-*), "sim" (sim-*), "tokio", "other".
fn thread_cpu() -> HashMap<&'static str, u64> {
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
    }
    out
}

struct Sample {
    iops: f64,
    cpu_ns_per_io: f64,
    driver_ns_per_io: f64,
    sim_ns_per_io: f64,
    tokio_ns_per_io: f64,
}

async fn run(ns: &Namespace, qd: usize, write: bool, secs: u64, seed: u64) -> Sample {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let cpu0 = process_cpu();
    let t0 = thread_cpu();
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for q in 0..qd {
        let (ns, stop, done) = (ns.clone(), stop.clone(), done.clone());
        set.spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(seed * 1000 + q as u64);
            let mut buf = vec![0u8; IO];
            rng.fill(&mut buf[..]);
            let blocks = SIZE / IO as u64;
            while !stop.load(Ordering::Relaxed) {
                let at = rng.random_range(0..blocks) * IO as u64;
                if write {
                    ns.write(at, &buf, WriteFlags::NONE).await.expect("write");
                } else {
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
    let t1 = thread_cpu();
    let ios = done.load(Ordering::Relaxed) as f64;
    let per =
        |g: &str| (t1.get(g).copied().unwrap_or(0) - t0.get(g).copied().unwrap_or(0)) as f64 / ios;
    Sample {
        iops: ios / elapsed,
        cpu_ns_per_io: cpu / ios,
        driver_ns_per_io: per("driver"),
        sim_ns_per_io: per("sim"),
        tokio_ns_per_io: per("tokio"),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs = env_or("NVME_BENCH_SECS", 1);
    let runs = env_or("NVME_BENCH_RUNS", 5) as usize;
    println!("nvme_sim: 4 KiB random I/O, {secs} s x {runs} runs, median; CPU ns per I/O");
    println!(
        "{:<12} {:>4} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "workload", "QD", "spin", "IOPS", "cpu ns/IO", "driver", "sim", "tokio"
    );
    let default_spin = DriverConfig::default().spin;
    for (qd, spin) in [
        (1usize, default_spin),
        (1, Duration::ZERO),
        (32, default_spin),
    ] {
        let sim =
            Arc::new(SimController::new_ram(SimConfig::ram("bench", SIZE, 4096)).expect("sim"));
        let cfg = DriverConfig {
            io_queues: if qd == 1 { 1 } else { 2 },
            queue_depth: 64,
            spin,
            ..DriverConfig::default()
        };
        let ctrl = Controller::init(sim.clone(), cfg).await.expect("init");
        let ns = ctrl.namespace(1).expect("ns");
        let fill = vec![0xa5u8; 1 << 20];
        for i in 0..SIZE / (1 << 20) {
            ns.write(i << 20, &fill, WriteFlags::NONE)
                .await
                .expect("prefill");
        }
        if qd == 1 && spin == default_spin {
            let c0 = process_cpu();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let idle = (process_cpu() - c0).as_secs_f64() * 100.0;
            println!("idle controller: process CPU {idle:.2}% of one core over 1 s");
        }
        for write in [false, true] {
            let mut samples = Vec::new();
            for r in 0..runs {
                samples.push(run(&ns, qd, write, secs, r as u64).await);
            }
            let m = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
            println!(
                "{:<12} {:>4} {:>6} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>10.0}",
                if write { "randwrite" } else { "randread" },
                qd,
                format!("{}us", spin.as_micros()),
                m(|s| s.iops),
                m(|s| s.cpu_ns_per_io),
                m(|s| s.driver_ns_per_io),
                m(|s| s.sim_ns_per_io),
                m(|s| s.tokio_ns_per_io),
            );
        }
        ctrl.shutdown().await.expect("shutdown");
    }
}
