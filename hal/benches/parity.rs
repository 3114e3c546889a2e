//! RAID parity kernels (`ingot_hal::cpu::parity`): P and P+Q over the data columns of
//! a 128 KiB extent (RAID-Z1 over 4 devices: 3 data columns; RAID-Z2 over 6: 4 data
//! columns), every backend this CPU supports.
//!
//! Run: `cargo bench -p ingot-hal --bench parity`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ingot_hal::cpu::parity::ParityBackend;
use rand::{RngCore, SeedableRng};
use std::hint::black_box;
use std::time::Duration;

const EXTENT: usize = 128 << 10;

/// `n` data columns holding `EXTENT` bytes, RAID-Z shaped (the first columns one 4 KiB
/// sector longer), and the parity length.
fn columns(n: usize) -> (Vec<Vec<u8>>, usize) {
    let sectors = EXTENT / 4096;
    let (q, r) = (sectors / n, sectors % n);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(n as u64);
    let cols = (0..n)
        .map(|i| {
            let mut v = vec![0u8; (q + usize::from(i < r)) * 4096];
            rng.fill_bytes(&mut v);
            v
        })
        .collect();
    (cols, (q + usize::from(r > 0)) * 4096)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("parity 128 KiB extent");
    g.throughput(Throughput::Bytes(EXTENT as u64))
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for b in ParityBackend::ALL.into_iter().filter(|b| b.is_supported()) {
        let (data, len) = columns(3);
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let mut p = vec![0u8; len];
        g.bench_function(format!("P, 3 data columns, {}", b.name()), |bench| {
            bench.iter(|| b.gen_p(black_box(&refs), &mut p))
        });
        let (data, len) = columns(4);
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let (mut p, mut q) = (vec![0u8; len], vec![0u8; len]);
        g.bench_function(format!("P+Q, 4 data columns, {}", b.name()), |bench| {
            bench.iter(|| b.gen_pq(black_box(&refs), &mut p, &mut q))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
