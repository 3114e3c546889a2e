//! The pool master key and the passphrase key slots that wrap it.
//!
//! - [`MasterKey`]: 64 random bytes from the OS (`getrandom`): bytes 0..32 are the
//!   AES-256 data key of XTS, bytes 32..64 the AES-256 tweak key. Zeroized on drop,
//!   never printed, never written in the clear.
//! - [`KeySlot`]: the master key wrapped with AES-256-GCM under a 32-byte key derived
//!   from a passphrase by Argon2id (v1.3). The slot's header (magic, version,
//!   algorithm ids, Argon2 parameters, salt, nonce) is the GCM associated data, so a
//!   wrong passphrase or any altered byte is detected. Changing the passphrase writes
//!   a new slot wrapping the same master key; data is never re-encrypted.
//!
//! Slot byte layout (v1, [`KEY_SLOT_LEN`] = 144 bytes, integers little-endian):
//!
//! | offset | len | field |
//! |---|---|---|
//! | 0 | 4 | magic `"IKSL"` |
//! | 4 | 1 | version = 1 |
//! | 5 | 1 | KDF id = 1 (Argon2id, version 0x13) |
//! | 6 | 1 | wrap id = 1 (AES-256-GCM, 96-bit nonce, 128-bit tag) |
//! | 7 | 1 | reserved = 0 |
//! | 8 | 4 | Argon2 m_cost (KiB) |
//! | 12 | 4 | Argon2 t_cost (passes) |
//! | 16 | 4 | Argon2 p_cost (lanes) |
//! | 20 | 32 | salt (random) |
//! | 52 | 12 | GCM nonce (random) |
//! | 64 | 64 | wrapped master key (GCM ciphertext) |
//! | 128 | 16 | GCM tag |
//!
//! GCM associated data = bytes 0..64. The Argon2 output (32 bytes, no secret, no
//! associated data) is the AES-256-GCM key.

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Master key length: two AES-256 keys.
pub const MASTER_KEY_LEN: usize = 64;
/// Encoded size of a [`KeySlot`].
pub const KEY_SLOT_LEN: usize = 144;
/// Salt length in a key slot.
pub const SALT_LEN: usize = 32;

const MAGIC: &[u8; 4] = b"IKSL";
const VERSION: u8 = 1;
const KDF_ARGON2ID: u8 = 1;
const WRAP_AES256_GCM: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const AAD_LEN: usize = 64;

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The passphrase does not open this slot (or the slot was altered).
    #[error("wrong passphrase (or the key slot is damaged)")]
    WrongPassphrase,
    /// The bytes are not a key slot this version understands.
    #[error("invalid key slot: {0}")]
    BadSlot(String),
    /// Argon2 parameters out of the accepted range.
    #[error(
        "invalid Argon2id parameters m_cost={m_cost_kib} KiB t_cost={t_cost} p_cost={p_cost}: {reason}"
    )]
    BadParams {
        /// Memory in KiB.
        m_cost_kib: u32,
        /// Passes.
        t_cost: u32,
        /// Lanes.
        p_cost: u32,
        /// What is wrong.
        reason: String,
    },
    /// The OS random source failed.
    #[error("OS random source failed: {0}")]
    Random(String),
    /// Key derivation failed.
    #[error("Argon2id failed: {0}")]
    Kdf(String),
}

/// The pool's random master key (XTS data key + tweak key). Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    /// The XTS data key and tweak key.
    halves: Box<[[u8; 32]; 2]>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A fresh key from the OS random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut halves = Box::new([[0u8; 32]; 2]);
        getrandom::fill(halves.as_flattened_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(MasterKey { halves })
    }

    /// A key from its 64 bytes (tests, benchmarks, unwrapping). The source array is
    /// zeroized.
    pub fn from_bytes(mut bytes: [u8; MASTER_KEY_LEN]) -> Self {
        let mut halves = Box::new([[0u8; 32]; 2]);
        halves.as_flattened_mut().copy_from_slice(&bytes);
        bytes.zeroize();
        MasterKey { halves }
    }

    /// The XTS data key and tweak key.
    pub(crate) fn xts_halves(&self) -> (&[u8; 32], &[u8; 32]) {
        (&self.halves[0], &self.halves[1])
    }

    /// The 64 key bytes (data key, then tweak key).
    fn as_bytes(&self) -> &[u8] {
        self.halves.as_flattened()
    }
}

/// A passphrase; its bytes are zeroized on drop and never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Passphrase(Vec<u8>);

impl Passphrase {
    /// Wrap passphrase bytes (any bytes; UTF-8 is not required).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Passphrase(bytes.into())
    }

    fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<&str> for Passphrase {
    fn from(s: &str) -> Self {
        Passphrase(s.as_bytes().to_vec())
    }
}

impl From<String> for Passphrase {
    fn from(s: String) -> Self {
        Passphrase(s.into_bytes())
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// Argon2id cost parameters, stored in each slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes over memory.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl KdfParams {
    /// Appliance default: 64 MiB, 3 passes, 1 lane (about a quarter second on one core).
    pub const DEFAULT: KdfParams = KdfParams {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };

    /// Weak and fast, for tests only.
    pub const FAST_INSECURE: KdfParams = KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };

    /// Largest memory cost a slot may ask for (4 GiB): bounds what decoding a
    /// damaged or hostile slot can make unwrap allocate.
    pub const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
    /// Largest pass count accepted.
    pub const MAX_T_COST: u32 = 64;
    /// Largest lane count accepted.
    pub const MAX_P_COST: u32 = 64;

    fn to_argon2(self) -> Result<argon2::Argon2<'static>, KeyError> {
        let bad = |reason: String| KeyError::BadParams {
            m_cost_kib: self.m_cost_kib,
            t_cost: self.t_cost,
            p_cost: self.p_cost,
            reason,
        };
        if self.m_cost_kib > Self::MAX_M_COST_KIB
            || self.t_cost > Self::MAX_T_COST
            || self.p_cost > Self::MAX_P_COST
        {
            return Err(bad("above the accepted maximum".into()));
        }
        let params = argon2::Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| bad(e.to_string()))?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams::DEFAULT
    }
}

/// The master key wrapped under one passphrase (see the module docs for the layout).
#[derive(Clone, PartialEq, Eq)]
pub struct KeySlot {
    params: KdfParams,
    salt: [u8; SALT_LEN],
    nonce: [u8; NONCE_LEN],
    wrapped: [u8; MASTER_KEY_LEN],
    tag: [u8; TAG_LEN],
}

impl fmt::Debug for KeySlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySlot")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl KeySlot {
    /// Wrap `master` under `passphrase` with a fresh random salt and nonce.
    pub fn create(
        master: &MasterKey,
        passphrase: &Passphrase,
        params: KdfParams,
    ) -> Result<KeySlot, KeyError> {
        let mut salt = [0u8; SALT_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut salt).map_err(|e| KeyError::Random(e.to_string()))?;
        getrandom::fill(&mut nonce).map_err(|e| KeyError::Random(e.to_string()))?;
        let mut slot = KeySlot {
            params,
            salt,
            nonce,
            wrapped: [0; MASTER_KEY_LEN],
            tag: [0; TAG_LEN],
        };
        slot.wrapped.copy_from_slice(master.as_bytes());
        let kek = derive(passphrase, &params, &salt)?;
        let aad = slot.header();
        let Ok(tag) =
            kek.encrypt_inout_detached(&nonce.into(), &aad, (&mut slot.wrapped[..]).into())
        else {
            // Never leave the clear key behind.
            slot.wrapped.zeroize();
            return Err(KeyError::Kdf("AES-GCM refused the key wrap".into()));
        };
        slot.tag = tag.0;
        Ok(slot)
    }

    /// Unwrap the master key; a wrong passphrase (or altered slot) is
    /// [`KeyError::WrongPassphrase`].
    pub fn unwrap(&self, passphrase: &Passphrase) -> Result<MasterKey, KeyError> {
        let kek = derive(passphrase, &self.params, &self.salt)?;
        let mut buf = Zeroizing::new(self.wrapped);
        kek.decrypt_inout_detached(
            &self.nonce.into(),
            &self.header(),
            (&mut buf[..]).into(),
            &self.tag.into(),
        )
        .map_err(|_| KeyError::WrongPassphrase)?;
        Ok(MasterKey::from_bytes(*buf))
    }

    /// A new slot wrapping the same master key under `new` (fresh salt and nonce).
    pub fn change_passphrase(
        &self,
        old: &Passphrase,
        new: &Passphrase,
        params: KdfParams,
    ) -> Result<KeySlot, KeyError> {
        let master = self.unwrap(old)?;
        KeySlot::create(&master, new, params)
    }

    /// The Argon2id parameters of this slot.
    pub fn params(&self) -> KdfParams {
        self.params
    }

    /// The fixed-size on-disk form.
    pub fn encode(&self) -> [u8; KEY_SLOT_LEN] {
        let mut out = [0u8; KEY_SLOT_LEN];
        out[..AAD_LEN].copy_from_slice(&self.header());
        out[64..128].copy_from_slice(&self.wrapped);
        out[128..144].copy_from_slice(&self.tag);
        out
    }

    /// Parse the on-disk form. Never panics; anything unexpected is [`KeyError::BadSlot`]
    /// or [`KeyError::BadParams`]. (Authenticity is only known after [`KeySlot::unwrap`].)
    pub fn decode(bytes: &[u8]) -> Result<KeySlot, KeyError> {
        let bad = |s: String| KeyError::BadSlot(s);
        let b: &[u8; KEY_SLOT_LEN] = bytes
            .try_into()
            .map_err(|_| bad(format!("{} bytes, expected {KEY_SLOT_LEN}", bytes.len())))?;
        if &b[0..4] != MAGIC {
            return Err(bad(format!("magic {:02x?}, expected \"IKSL\"", &b[0..4])));
        }
        if b[4] != VERSION {
            return Err(bad(format!(
                "version {} (this build reads {VERSION})",
                b[4]
            )));
        }
        if b[5] != KDF_ARGON2ID {
            return Err(bad(format!("unknown KDF id {}", b[5])));
        }
        if b[6] != WRAP_AES256_GCM {
            return Err(bad(format!("unknown wrap id {}", b[6])));
        }
        if b[7] != 0 {
            return Err(bad(format!("reserved byte is {}", b[7])));
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let params = KdfParams {
            m_cost_kib: u32_at(8),
            t_cost: u32_at(12),
            p_cost: u32_at(16),
        };
        params.to_argon2()?;
        let mut slot = KeySlot {
            params,
            salt: [0; SALT_LEN],
            nonce: [0; NONCE_LEN],
            wrapped: [0; MASTER_KEY_LEN],
            tag: [0; TAG_LEN],
        };
        slot.salt.copy_from_slice(&b[20..52]);
        slot.nonce.copy_from_slice(&b[52..64]);
        slot.wrapped.copy_from_slice(&b[64..128]);
        slot.tag.copy_from_slice(&b[128..144]);
        Ok(slot)
    }

    /// Bytes 0..64 of the encoding: the GCM associated data.
    fn header(&self) -> [u8; AAD_LEN] {
        let mut h = [0u8; AAD_LEN];
        h[0..4].copy_from_slice(MAGIC);
        h[4] = VERSION;
        h[5] = KDF_ARGON2ID;
        h[6] = WRAP_AES256_GCM;
        h[7] = 0;
        h[8..12].copy_from_slice(&self.params.m_cost_kib.to_le_bytes());
        h[12..16].copy_from_slice(&self.params.t_cost.to_le_bytes());
        h[16..20].copy_from_slice(&self.params.p_cost.to_le_bytes());
        h[20..52].copy_from_slice(&self.salt);
        h[52..64].copy_from_slice(&self.nonce);
        h
    }
}

/// The key-encryption key: Argon2id(passphrase, salt) as an AES-256-GCM instance.
fn derive(
    passphrase: &Passphrase,
    params: &KdfParams,
    salt: &[u8; SALT_LEN],
) -> Result<Aes256Gcm, KeyError> {
    let argon = params.to_argon2()?;
    let mut kek = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, &mut kek[..])
        .map_err(|e| KeyError::Kdf(e.to_string()))?;
    Aes256Gcm::new_from_slice(&kek[..]).map_err(|e| KeyError::Kdf(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> MasterKey {
        let mut k = [0u8; MASTER_KEY_LEN];
        for (i, x) in k.iter_mut().enumerate() {
            *x = b.wrapping_add(i as u8);
        }
        MasterKey::from_bytes(k)
    }

    #[test]
    fn wrap_unwrap_roundtrip_through_encoding() {
        let mk = key(3);
        let pass = Passphrase::from("correct horse");
        let slot = KeySlot::create(&mk, &pass, KdfParams::FAST_INSECURE).unwrap();
        let bytes = slot.encode();
        assert_eq!(bytes.len(), KEY_SLOT_LEN);
        assert_eq!(&bytes[0..4], b"IKSL");
        // The clear key never appears in the slot.
        assert!(!bytes.windows(32).any(|w| w == &mk.as_bytes()[..32]));
        assert!(!bytes.windows(32).any(|w| w == &mk.as_bytes()[32..]));
        let back = KeySlot::decode(&bytes).unwrap();
        assert_eq!(back, slot);
        assert_eq!(back.unwrap(&pass).unwrap().as_bytes(), mk.as_bytes());
    }

    #[test]
    fn wrong_passphrase_is_detected() {
        let mk = key(5);
        let slot =
            KeySlot::create(&mk, &Passphrase::from("right"), KdfParams::FAST_INSECURE).unwrap();
        assert!(matches!(
            slot.unwrap(&Passphrase::from("wrong")),
            Err(KeyError::WrongPassphrase)
        ));
        assert!(matches!(
            slot.unwrap(&Passphrase::from("")),
            Err(KeyError::WrongPassphrase)
        ));
    }

    #[test]
    fn tampered_slot_is_rejected() {
        let mk = key(7);
        let pass = Passphrase::from("pw");
        let bytes = KeySlot::create(&mk, &pass, KdfParams::FAST_INSECURE)
            .unwrap()
            .encode();
        // Flip one bit in the salt, nonce, ciphertext and tag: each must fail.
        for off in [20usize, 55, 70, 130] {
            let mut b = bytes;
            b[off] ^= 1;
            let slot = KeySlot::decode(&b).unwrap();
            assert!(
                matches!(slot.unwrap(&pass), Err(KeyError::WrongPassphrase)),
                "offset {off}"
            );
        }
        // Raising t_cost is caught by the AAD.
        let mut b = bytes;
        b[12] = 2;
        assert!(matches!(
            KeySlot::decode(&b).unwrap().unwrap(&pass),
            Err(KeyError::WrongPassphrase)
        ));
    }

    #[test]
    fn change_passphrase_keeps_master_key() {
        let mk = key(11);
        let old = Passphrase::from("old");
        let new = Passphrase::from("new");
        let slot = KeySlot::create(&mk, &old, KdfParams::FAST_INSECURE).unwrap();
        let slot2 = slot
            .change_passphrase(&old, &new, KdfParams::FAST_INSECURE)
            .unwrap();
        assert_ne!(slot.encode(), slot2.encode());
        assert_eq!(slot2.unwrap(&new).unwrap().as_bytes(), mk.as_bytes());
        assert!(matches!(slot2.unwrap(&old), Err(KeyError::WrongPassphrase)));
        assert!(matches!(
            slot.change_passphrase(&new, &old, KdfParams::FAST_INSECURE),
            Err(KeyError::WrongPassphrase)
        ));
    }

    #[test]
    fn decode_rejects_bad_headers() {
        let bytes = KeySlot::create(&key(1), &Passphrase::from("p"), KdfParams::FAST_INSECURE)
            .unwrap()
            .encode();
        assert!(matches!(
            KeySlot::decode(&bytes[..100]),
            Err(KeyError::BadSlot(_))
        ));
        for (off, val) in [(0usize, b'X'), (4, 2), (5, 9), (6, 9), (7, 1)] {
            let mut b = bytes;
            b[off] = val;
            assert!(
                matches!(KeySlot::decode(&b), Err(KeyError::BadSlot(_))),
                "{off}"
            );
        }
        let mut b = bytes;
        b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            KeySlot::decode(&b),
            Err(KeyError::BadParams { .. })
        ));
        let mut b = bytes;
        b[16..20].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            KeySlot::decode(&b),
            Err(KeyError::BadParams { .. })
        ));
    }

    #[test]
    fn generated_keys_differ_and_debug_is_redacted() {
        let a = MasterKey::generate().unwrap();
        let b = MasterKey::generate().unwrap();
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_eq!(format!("{a:?}"), "MasterKey(<redacted>)");
        assert_eq!(
            format!("{:?}", Passphrase::from("x")),
            "Passphrase(<redacted>)"
        );
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(256))]
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = KeySlot::decode(&bytes);
        }

        #[test]
        fn decode_of_mutated_valid_header_never_panics(off in 0usize..64, val in any::<u8>()) {
            let slot = KeySlot {
                params: KdfParams::FAST_INSECURE,
                salt: [1; SALT_LEN],
                nonce: [2; NONCE_LEN],
                wrapped: [3; MASTER_KEY_LEN],
                tag: [4; TAG_LEN],
            };
            let mut b = slot.encode();
            b[off] = val;
            let _ = KeySlot::decode(&b);
        }
    }
}
