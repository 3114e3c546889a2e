//! AES-256-XTS primitive (`ingot_hal::cpu::xts`): every backend this CPU supports,
//! encrypt and decrypt, against raw AES-256 ECB (the `aes` crate's `encrypt_blocks`,
//! the speed limit of any XTS) and against the `xts-mode` crate.
//!
//! Method: 128 KiB buffers (32 data units of 4 KiB, in L2), single thread. The variants
//! are timed in turn, round after round (`XTS_BENCH_ROUNDS`, default 51, of ~5 ms
//! samples), so each round's samples saw the same load on this shared machine; time is
//! the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`). Prints the median GB/s of each
//! variant and the median per-round ratio to raw AES.
//!
//! Run: `cargo bench -p ingot-hal --bench xts`.

use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use ingot_hal::cpu::xts::{XtsAes256, XtsBackend};
use rand::{RngCore, SeedableRng};
use std::hint::black_box;
use std::time::{Duration, Instant};

const BUF: usize = 128 << 10;
const UNIT: usize = 4096;
const SAMPLE: Duration = Duration::from_millis(5);

/// CPU time of this thread, in seconds.
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which is valid and writable.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

type Variant<'a> = (String, Box<dyn FnMut() + 'a>);

fn main() {
    let rounds: usize = std::env::var("XTS_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(51);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let (mut k1, mut k2) = ([0u8; 32], [0u8; 32]);
    rng.fill_bytes(&mut k1);
    rng.fill_bytes(&mut k2);
    let mut data = vec![0u8; BUF];
    rng.fill_bytes(&mut data);
    println!(
        "best backend: {:?}; supported: {:?}",
        XtsBackend::best(),
        XtsBackend::ALL
            .iter()
            .filter(|b| b.is_supported())
            .collect::<Vec<_>>()
    );

    let ecb = aes::Aes256::new(&Array(k1));
    let oracle = xts_mode::Xts128::new(aes::Aes256::new(&Array(k1)), aes::Aes256::new(&Array(k2)));
    let ciphers: Vec<XtsAes256> = XtsBackend::ALL
        .iter()
        .filter_map(|b| XtsAes256::with_backend(&k1, &k2, *b))
        .collect();

    let mut bufs: Vec<Vec<u8>> = (0..2 + 2 * ciphers.len()).map(|_| data.clone()).collect();
    let mut it = bufs.iter_mut();
    let mut variants: Vec<Variant<'_>> = Vec::new();
    let b = it.next().expect("buffer");
    variants.push((
        "raw AES-256 ECB (aes crate)".into(),
        Box::new(|| {
            let (blocks, _) = Array::slice_as_chunks_mut(black_box(&mut b[..]));
            ecb.encrypt_blocks(blocks);
        }),
    ));
    let b = it.next().expect("buffer");
    variants.push((
        "xts-mode 0.6 encrypt".into(),
        Box::new(|| {
            oracle.encrypt_area(black_box(&mut b[..]), UNIT, 42, xts_mode::get_tweak_default)
        }),
    ));
    for c in &ciphers {
        let b = it.next().expect("buffer");
        variants.push((
            format!("{} encrypt", c.backend().name()),
            Box::new(move || c.encrypt_units(black_box(&mut b[..]), UNIT, 42)),
        ));
        let b = it.next().expect("buffer");
        variants.push((
            format!("{} decrypt", c.backend().name()),
            Box::new(move || c.decrypt_units(black_box(&mut b[..]), UNIT, 42)),
        ));
    }

    // Calibrate calls per sample (also the warm-up).
    let calls: Vec<u32> = variants
        .iter_mut()
        .map(|(_, f)| {
            let start = Instant::now();
            let mut n = 0u32;
            while start.elapsed() < SAMPLE * 4 {
                f();
                n += 1;
            }
            (n / 4).max(1)
        })
        .collect();
    let mut samples = vec![Vec::with_capacity(rounds); variants.len()];
    for _ in 0..rounds {
        for (i, (_, f)) in variants.iter_mut().enumerate() {
            let start = thread_cpu_secs();
            for _ in 0..calls[i] {
                f();
            }
            let secs = thread_cpu_secs() - start;
            samples[i].push(BUF as f64 * f64::from(calls[i]) / secs / 1e9);
        }
    }
    println!();
    println!("| variant (128 KiB, 4 KiB units) | GB/s | / raw AES | / xts-mode |");
    println!("|---|---|---|---|");
    for (i, (name, _)) in variants.iter().enumerate() {
        let ratio = |j: usize| {
            median(
                samples[i]
                    .iter()
                    .zip(&samples[j])
                    .map(|(x, y)| x / y)
                    .collect(),
            )
        };
        println!(
            "| {name} | {:.2} | {:.2} | {:.1}x |",
            median(samples[i].clone()),
            ratio(0),
            ratio(1)
        );
    }
}
