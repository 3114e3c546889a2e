//! Arithmetic in GF(2^8) with the RAID-6 polynomial x^8+x^4+x^3+x^2+1 (0x11d) and
//! generator 2, via log/exp tables built at compile time.

/// The field polynomial (with the x^8 term).
pub const POLY: u16 = 0x11d;

const fn build_tables() -> ([u8; 512], [u8; 256]) {
    let mut exp = [0u8; 512];
    let mut log = [0u8; 256];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        exp[i] = x as u8;
        exp[i + 255] = x as u8;
        log[x as usize] = i as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= POLY;
        }
        i += 1;
    }
    // exp[510], exp[511] are never reached by sums of two logs (<= 508).
    (exp, log)
}

const TABLES: ([u8; 512], [u8; 256]) = build_tables();
/// exp[i] = 2^i, doubled so exp[log a + log b] needs no reduction.
const EXP: [u8; 512] = TABLES.0;
/// log[a] for a != 0 (log[0] is unused).
const LOG: [u8; 256] = TABLES.1;

/// a * b.
#[inline]
pub fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        0
    } else {
        EXP[usize::from(LOG[usize::from(a)]) + usize::from(LOG[usize::from(b)])]
    }
}

/// The multiplicative inverse of `a`, or `None` for 0.
#[inline]
pub fn inv(a: u8) -> Option<u8> {
    (a != 0).then(|| EXP[255 - usize::from(LOG[usize::from(a)])])
}

/// 2^e (the generator to the power `e`, any `e`).
#[inline]
pub fn exp2(e: usize) -> u8 {
    EXP[e % 255]
}

/// `dst[i] ^= c * src[i]` for every byte (a 256-entry product table for `c`).
pub fn mul_acc(c: u8, src: &[u8], dst: &mut [u8]) {
    let mut table = [0u8; 256];
    for (v, t) in table.iter_mut().enumerate() {
        *t = mul(c, v as u8);
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= table[usize::from(*s)];
    }
}

/// Multiply every byte of `buf` by 2 in place, eight bytes per step.
pub fn mul2_in_place(buf: &mut [u8]) {
    let (words, tail) = buf.as_chunks_mut::<8>();
    for w in words {
        let v = u64::from_ne_bytes(*w);
        let high = v & 0x8080_8080_8080_8080;
        let shifted = (v << 1) & 0xfefe_fefe_fefe_fefe;
        let reduce = (high >> 7).wrapping_mul(0x1d);
        *w = (shifted ^ reduce).to_ne_bytes();
    }
    for b in tail {
        *b = mul(*b, 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow_mul(mut a: u8, mut b: u8) -> u8 {
        let mut p = 0u8;
        while b != 0 {
            if b & 1 != 0 {
                p ^= a;
            }
            let carry = a & 0x80 != 0;
            a <<= 1;
            if carry {
                a ^= 0x1d;
            }
            b >>= 1;
        }
        p
    }

    #[test]
    fn tables_match_shift_and_add() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                assert_eq!(mul(a, b), slow_mul(a, b), "{a} * {b}");
            }
        }
    }

    #[test]
    fn inverses_and_generator() {
        assert_eq!(inv(0), None);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a).unwrap()), 1);
        }
        // 2 generates the whole multiplicative group.
        let mut seen = [false; 256];
        for e in 0..255 {
            seen[usize::from(exp2(e))] = true;
        }
        assert_eq!(seen.iter().filter(|s| **s).count(), 255);
        assert_eq!(exp2(255), 1);
    }

    #[test]
    fn mul2_and_mul_acc() {
        let src: Vec<u8> = (0..=255u8).chain(0..=10).collect();
        let mut b = src.clone();
        mul2_in_place(&mut b);
        for (x, y) in src.iter().zip(&b) {
            assert_eq!(*y, mul(*x, 2));
        }
        let mut acc = vec![0x5au8; src.len()];
        mul_acc(0x8e, &src, &mut acc);
        for (x, y) in src.iter().zip(&acc) {
            assert_eq!(*y, 0x5a ^ mul(*x, 0x8e));
        }
    }
}
