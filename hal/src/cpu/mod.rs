//! CPU-specific acceleration with a safe API: code that needs instruction-set
//! extensions (and so `unsafe` `#[target_feature]` calls) the rest of Ingot may not write.
//!
//! - [`xts`]: AES-256-XTS over whole data units with AES-NI, VAES/AVX2 or
//!   VAES/AVX-512, chosen at run time; on VAES/AVX-512 the out-of-place encryption can
//!   also fold the crc32c of the ciphertext and a RAID P parity into the same loop.
//! - [`parity`]: RAID P (XOR) and Q (GF(2^8) Reed-Solomon) parity with AVX-512 or
//!   AVX2, chosen at run time, with a portable fallback.

pub mod parity;
pub mod xts;
