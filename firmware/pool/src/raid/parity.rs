//! P (XOR) and Q (Reed-Solomon, `Q = sum g^i * D_i` over GF(2^8), g = 2) parity over
//! the data columns of one extent, and reconstruction of up to two missing columns
//! (two data; data + P; data + Q; P + Q; or one of any).
//!
//! Generation runs on the SIMD kernels of `ingot_hal::cpu::parity` (AVX-512 or AVX2,
//! picked at run time, one pass over the data for P and Q together); the byte-loop
//! versions [`gen_p_scalar`] and [`gen_q_scalar`] stay as the reference the kernels are
//! tested against.
//!
//! A data column shorter than the parity counts as zero past its end (the shorter
//! columns of a RAID-Z extent); reconstruction wants columns of equal length.

use super::gf256;
use ingot_hal::cpu::parity as simd;

/// Why a reconstruction is impossible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParityError {
    /// More columns are missing than the parity can rebuild.
    #[error(
        "{missing_data} data and {missing_parity} parity columns missing, {parity} parity columns exist"
    )]
    TooManyMissing {
        /// Missing data columns.
        missing_data: usize,
        /// Missing parity columns.
        missing_parity: usize,
        /// Parity columns in the layout.
        parity: usize,
    },
    /// Columns of different lengths, or more parity than P and Q.
    #[error("bad column shape: {0}")]
    Shape(String),
}

/// P = XOR of the data columns (SIMD kernel).
pub fn gen_p(data: &[&[u8]], p: &mut [u8]) {
    simd::gen_p(data, p);
}

/// Q = sum over i of 2^i * D_i (SIMD kernel).
pub fn gen_q(data: &[&[u8]], q: &mut [u8]) {
    simd::gen_q(data, q);
}

/// P and Q in one pass over the data (SIMD kernel).
///
/// # Panics
/// If `p` and `q` differ in length.
pub fn gen_pq(data: &[&[u8]], p: &mut [u8], q: &mut [u8]) {
    simd::gen_pq(data, p, q);
}

/// The `parity` (0, 1 or 2) parity columns of `data`, each `len` bytes, as new
/// vectors (P, then Q), written by the SIMD kernel without a zero fill first.
///
/// # Panics
/// If `parity` is more than 2 (the layouts have at most P and Q).
pub fn parity_columns(data: &[&[u8]], parity: usize, len: usize) -> Vec<Vec<u8>> {
    match parity {
        0 => Vec::new(),
        1 | 2 => {
            let (p, q) = simd::new_parity(data, len, parity == 2);
            std::iter::once(p).chain(q).collect()
        }
        _ => panic!("{parity} parity columns (at most 2)"),
    }
}

/// Reference P: a byte loop, column by column.
pub fn gen_p_scalar(data: &[&[u8]], p: &mut [u8]) {
    p.fill(0);
    for d in data {
        xor_into(p, d);
    }
}

/// Reference Q: Horner's rule from the last column, a word loop.
pub fn gen_q_scalar(data: &[&[u8]], q: &mut [u8]) {
    q.fill(0);
    for d in data.iter().rev() {
        gf256::mul2_in_place(q);
        xor_into(q, d);
    }
}

/// Compute `parity.len()` (0, 1 or 2) parity columns of `data`.
pub fn gen_parity(data: &[&[u8]], parity: &mut [Vec<u8>]) -> Result<(), ParityError> {
    match parity {
        [] => Ok(()),
        [p] => {
            gen_p(data, p);
            Ok(())
        }
        [p, q] if p.len() == q.len() => {
            gen_pq(data, p, q);
            Ok(())
        }
        [_, _] => Err(ParityError::Shape(
            "P and Q columns of different lengths".into(),
        )),
        _ => Err(ParityError::Shape(format!(
            "{} parity columns (at most 2)",
            parity.len()
        ))),
    }
}

/// `dst ^= src` over the common length (a plain byte loop the compiler vectorizes).
pub fn xor_into(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= *s;
    }
}

/// Rebuild the columns listed in `missing_data` (indices into `data`) and
/// `missing_parity` (0 = P, 1 = Q) from the others, in place. The contents of the
/// missing columns on entry are ignored. All columns must have the same length.
pub fn reconstruct(
    data: &mut [Vec<u8>],
    parity: &mut [Vec<u8>],
    missing_data: &[usize],
    missing_parity: &[usize],
) -> Result<(), ParityError> {
    let len = parity.first().map(Vec::len).or(data.first().map(Vec::len));
    if let Some(len) = len
        && (data.iter().any(|c| c.len() != len) || parity.iter().any(|c| c.len() != len))
    {
        return Err(ParityError::Shape("columns of different lengths".into()));
    }
    let too_many = || ParityError::TooManyMissing {
        missing_data: missing_data.len(),
        missing_parity: missing_parity.len(),
        parity: parity.len(),
    };
    if missing_data.len() + missing_parity.len() > parity.len()
        || missing_data.iter().any(|&i| i >= data.len())
        || missing_parity.iter().any(|&i| i >= parity.len())
    {
        return Err(too_many());
    }
    let have_p = !parity.is_empty() && !missing_parity.contains(&0);
    let have_q = parity.len() > 1 && !missing_parity.contains(&1);
    match *missing_data {
        [] => {}
        [x] if have_p => {
            let mut col = parity[0].clone();
            for (i, d) in data.iter().enumerate() {
                if i != x {
                    xor_into(&mut col, d);
                }
            }
            data[x] = col;
        }
        [x] if have_q => {
            // Q ^ Q(without x) = 2^x * D_x.
            let mut col = q_without(data, &[x]);
            xor_into(&mut col, &parity[1]);
            let scale = gf256::inv(gf256::exp2(x)).ok_or_else(too_many)?;
            let mut out = vec![0u8; col.len()];
            gf256::mul_acc(scale, &col, &mut out);
            data[x] = out;
        }
        [a, b] if have_p && have_q && a != b => {
            let (x, y) = (a.min(b), a.max(b));
            // dp = D_x ^ D_y; dq = 2^x D_x ^ 2^y D_y.
            let mut dp = parity[0].clone();
            for (i, d) in data.iter().enumerate() {
                if i != x && i != y {
                    xor_into(&mut dp, d);
                }
            }
            let mut dq = q_without(data, &[x, y]);
            xor_into(&mut dq, &parity[1]);
            // D_x = (dq ^ 2^y dp) / (2^x ^ 2^y); D_y = dp ^ D_x.
            let gy = gf256::exp2(y);
            let denom = gf256::inv(gf256::exp2(x) ^ gy).ok_or_else(too_many)?;
            gf256::mul_acc(gy, &dp, &mut dq);
            let mut dx = vec![0u8; dq.len()];
            gf256::mul_acc(denom, &dq, &mut dx);
            xor_into(&mut dp, &dx);
            data[x] = dx;
            data[y] = dp;
        }
        _ => return Err(too_many()),
    }
    if !missing_parity.is_empty() {
        let cols: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        for &j in missing_parity {
            match j {
                0 => gen_p(&cols, &mut parity[0]),
                _ => gen_q(&cols, &mut parity[1]),
            }
        }
    }
    Ok(())
}

/// Q computed with the columns in `skip` taken as zero.
fn q_without(data: &[Vec<u8>], skip: &[usize]) -> Vec<u8> {
    let len = data.first().map_or(0, Vec::len);
    let mut q = vec![0u8; len];
    for (i, d) in data.iter().enumerate().rev() {
        gf256::mul2_in_place(&mut q);
        if !skip.contains(&i) {
            xor_into(&mut q, d);
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{RngCore, SeedableRng};

    fn columns(n: usize, len: usize, seed: u64) -> Vec<Vec<u8>> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let mut v = vec![0u8; len];
                rng.fill_bytes(&mut v);
                v
            })
            .collect()
    }

    fn parity_of(data: &[Vec<u8>], p: usize) -> Vec<Vec<u8>> {
        let len = data[0].len();
        let mut parity = vec![vec![0u8; len]; p];
        let cols: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        gen_parity(&cols, &mut parity).unwrap();
        parity
    }

    #[test]
    fn q_matches_definition() {
        let data = columns(5, 37, 1);
        let q = &parity_of(&data, 2)[1];
        for k in 0..37 {
            let mut want = 0u8;
            for (i, d) in data.iter().enumerate() {
                want ^= gf256::mul(gf256::exp2(i), d[k]);
            }
            assert_eq!(q[k], want);
        }
    }

    #[test]
    fn too_many_missing_is_an_error() {
        let mut data = columns(4, 16, 2);
        let mut parity = parity_of(&data, 1);
        assert!(matches!(
            reconstruct(&mut data, &mut parity, &[0, 1], &[]),
            Err(ParityError::TooManyMissing { .. })
        ));
        let mut parity2 = parity_of(&data, 2);
        assert!(reconstruct(&mut data, &mut parity2, &[0], &[0, 1]).is_err());
        assert!(reconstruct(&mut data, &mut parity2, &[9], &[]).is_err());
    }

    /// Columns of `lens` bytes each, parity `len` bytes: the SIMD P, Q and P+Q equal the
    /// scalar reference.
    fn check_against_scalar(lens: &[usize], len: usize, seed: u64) {
        let data: Vec<Vec<u8>> = lens
            .iter()
            .enumerate()
            .map(|(i, &l)| columns(1, l, seed ^ i as u64).remove(0))
            .collect();
        let cols: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let (mut wp, mut wq) = (vec![0u8; len], vec![0u8; len]);
        gen_p_scalar(&cols, &mut wp);
        gen_q_scalar(&cols, &mut wq);
        let (mut p, mut q) = (vec![0xeeu8; len], vec![0xeeu8; len]);
        gen_p(&cols, &mut p);
        assert!(p == wp, "P, columns {lens:?}, parity {len}");
        gen_q(&cols, &mut q);
        assert!(q == wq, "Q, columns {lens:?}, parity {len}");
        let (mut p2, mut q2) = (vec![0x11u8; len], vec![0x22u8; len]);
        gen_pq(&cols, &mut p2, &mut q2);
        assert!(p2 == wp && q2 == wq, "P+Q, columns {lens:?}, parity {len}");
        assert!(parity_columns(&cols, 0, len).is_empty());
        assert!(
            parity_columns(&cols, 1, len) == [wp.clone()],
            "new P, {lens:?}"
        );
        assert!(
            parity_columns(&cols, 2, len) == [wp, wq],
            "new P+Q, {lens:?}"
        );
    }

    #[test]
    fn simd_matches_scalar_for_every_column_count() {
        // Every column count a vdev can have (up to 255 devices, so up to 254 data
        // columns with P, 253 with P+Q), RAID-Z shapes: the first columns one sector
        // longer than the others, parity as long as the longest.
        for n in 1..=254usize {
            let long = n / 3 + 1;
            let lens: Vec<usize> = (0..n)
                .map(|i| if i < long { 2 * 4096 } else { 4096 })
                .collect();
            check_against_scalar(&lens, 2 * 4096, n as u64);
        }
    }

    #[test]
    fn gen_parity_rejects_p_and_q_of_different_lengths() {
        let data = columns(3, 64, 5);
        let cols: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let mut parity = vec![vec![0u8; 64], vec![0u8; 65]];
        assert!(matches!(
            gen_parity(&cols, &mut parity),
            Err(ParityError::Shape(_))
        ));
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(256))]
        #[test]
        fn simd_matches_scalar_on_odd_lengths(
            lens in proptest::collection::vec(0usize..1500, 1..20),
            len in 0usize..1500,
            seed in any::<u64>(),
        ) {
            check_against_scalar(&lens, len, seed);
        }
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(256))]
        #[test]
        fn any_allowed_missing_set_is_rebuilt(
            ndata in 1usize..12,
            p in 1usize..=2,
            len in 1usize..100,
            seed in any::<u64>(),
            picks in proptest::collection::vec(any::<usize>(), 0..=2),
        ) {
            let data = columns(ndata, len, seed);
            let parity = parity_of(&data, p);
            // Choose up to p distinct columns among ndata + p.
            let total = ndata + p;
            let mut missing: Vec<usize> = Vec::new();
            for pick in picks.into_iter().take(p) {
                let c = pick % total;
                if !missing.contains(&c) {
                    missing.push(c);
                }
            }
            let md: Vec<usize> = missing.iter().copied().filter(|&c| c < ndata).collect();
            let mp: Vec<usize> = missing.iter().filter(|&&c| c >= ndata).map(|&c| c - ndata).collect();
            let mut d2 = data.clone();
            let mut p2 = parity.clone();
            for &i in &md { d2[i].fill(0xee); }
            for &j in &mp { p2[j].fill(0xee); }
            reconstruct(&mut d2, &mut p2, &md, &mp).unwrap();
            prop_assert_eq!(d2, data);
            prop_assert_eq!(p2, parity);
        }
    }
}
