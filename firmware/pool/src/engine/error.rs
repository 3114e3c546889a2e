//! The pool's error type: what went wrong at create, import, commit or I/O, with context.

use crate::store::StoreError;

/// Why a pool operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The passphrase does not unwrap the pool's key slot. Nothing was changed.
    #[error("wrong passphrase for pool {pool}")]
    WrongPassphrase {
        /// Pool name.
        pool: String,
    },
    /// The pool is encrypted and no passphrase was given (only keyless operations work).
    #[error("pool {pool} is encrypted and locked: a passphrase is needed for this")]
    Locked {
        /// Pool name.
        pool: String,
    },
    /// No valid Ingot label on any of the given devices.
    #[error("not an Ingot pool: {detail}")]
    NotAPool {
        /// What was found.
        detail: String,
    },
    /// A device belongs to another pool (or to no pool) than the others.
    #[error(
        "device {device} belongs to pool {found_pool:#018x}, not to pool {expected_pool:#018x}"
    )]
    ForeignDevice {
        /// Device location.
        device: String,
        /// Pool GUID on that device.
        found_pool: u64,
        /// Pool GUID being imported.
        expected_pool: u64,
    },
    /// Two devices claim the same slot of the pool, or a device is not listed in the pool config.
    #[error("device {device}: {detail}")]
    DeviceConflict {
        /// Device location.
        device: String,
        /// What conflicts.
        detail: String,
    },
    /// Fewer devices than the layout can run with.
    #[error("too few devices: {present} of {needed} needed ({detail})")]
    TooFewDevices {
        /// Devices present and usable.
        present: usize,
        /// Devices needed.
        needed: usize,
        /// Which are missing.
        detail: String,
    },
    /// A device is too small or has an unusable geometry.
    #[error("device {device} unusable: {detail}")]
    BadDevice {
        /// Device location.
        device: String,
        /// Why.
        detail: String,
    },
    /// Invalid pool configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// No transaction group on the devices has a root that verifies.
    #[error("no importable transaction group: {detail}")]
    NoValidTxg {
        /// What was tried.
        detail: String,
    },
    /// On-disk data failed to decode or verify.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// Which structure.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// Device I/O failed beyond redundancy.
    #[error("I/O error: {0}")]
    Io(String),
    /// The pool is out of space.
    #[error("no space left in the pool")]
    NoSpace,
    /// The pool is imported read-only or suspended after a failed commit.
    #[error("pool is read-only: {0}")]
    ReadOnly(String),
    /// Encryption or key handling failed.
    #[error("key error: {0}")]
    Key(String),
    /// An internal invariant was broken (a bug); the pool suspends itself.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::NoSpace => StoreError::NoSpace,
            PoolError::ReadOnly(reason) => StoreError::ReadOnly { reason },
            PoolError::Locked { .. } => StoreError::Locked,
            PoolError::Corrupt { what, detail } => StoreError::Corrupt {
                id: 0,
                offset: 0,
                detail: format!("{what}: {detail}"),
            },
            other => StoreError::Io {
                detail: other.to_string(),
            },
        }
    }
}
