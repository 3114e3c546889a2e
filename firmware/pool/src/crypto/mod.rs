//! Encryption of everything below the labels: the master key, the key slots that
//! wrap it under a passphrase, and the AES-256-XTS sector cipher.
//!
//! - [`keys`]: [`MasterKey`] (64 random bytes: the XTS data key and tweak key) and
//!   [`KeySlot`] (the master key wrapped with AES-256-GCM under an Argon2id
//!   passphrase key; lives in the labels).
//! - [`xts`]: [`XtsCipher`], AES-256-XTS with a 4 KiB data unit whose tweak is the
//!   pool sector number.

pub mod keys;
pub mod xts;

pub use keys::{KdfParams, KeyError, KeySlot, MasterKey, Passphrase};
pub use xts::{XtsCipher, XtsPath};
