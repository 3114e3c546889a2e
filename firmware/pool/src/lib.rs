//! Ingot's storage pool: RAID layouts, checksummed + compressed + encrypted extents,
//! a copy-on-write tree committed in transaction groups, labels, keys and recovery.
//!
//! The layer above sees it through [`store::ObjectStore`].

#![forbid(unsafe_code)]

pub mod checksum;
pub mod codec;
pub mod compress;
pub mod crypto;
pub mod engine;
pub mod raid;
pub mod store;

pub use engine::{
    DEFAULT_IDLE_COMMIT, DeviceEvent, DeviceState, DeviceStatus, ImportOptions, Pool,
    PoolCompression, PoolConfig, PoolError, PoolHealth, PoolLayout, PoolStatus, ResilverHandle,
    ResilverOptions, ResilverProgress, ScrubHandle, ScrubOptions, ScrubProgress, SpareStatus,
    Tunables,
};
#[cfg(test)]
mod testutil;
