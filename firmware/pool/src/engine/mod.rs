//! The pool engine: copy-on-write tree, transaction groups, labels, allocator, keys,
//! import/export, and the [`crate::store::ObjectStore`] implementation.
//!
//! - [`bptr`], [`node`], [`label`], [`alloc`]: on-disk structures (docs/FORMAT.md);
//! - [`tree`]: the COW B+tree; [`cache`]: the clean node cache;
//! - [`io`]: extents through the codec and the vdev;
//! - [`pool`]: create/import/commit/export; [`objects`]: the object store;
//! - [`scrub`], [`resilver`]: the online tree walks; [`heal`]: damage bookkeeping;
//!   [`devices`]: replace, reattach, hot spares and device events.
//! - [`dirty`]: sub-record writes buffered until the txg commits; [`recordcache`]: decoded
//!   records; [`datapath`]: their shared state and counters.

pub mod alloc;
pub mod bptr;
pub mod bytes;
pub mod cache;
pub mod config;
pub mod datapath;
pub mod devices;
pub mod dirty;
pub mod error;
pub mod heal;
pub mod idle;
pub mod io;
pub mod keys;
pub mod label;
pub mod node;
pub mod objects;
pub mod pool;
pub mod readahead;
pub mod recordcache;
pub mod resilver;
pub mod scrub;
pub mod tree;
pub mod writebehind;

pub use config::{
    DEFAULT_IDLE_COMMIT, DeviceErrors, DeviceEvent, DeviceState, DeviceStatus, ImportOptions,
    PoolConfig, PoolHealth, PoolStatus, SpareStatus, Tunables, VerifyReport,
};
pub use datapath::DataPathStats;
pub use error::PoolError;
pub use label::{Label, PoolCompression, PoolLayout};
pub use pool::Pool;
pub use recordcache::RecordCacheStats;
pub use resilver::{ResilverHandle, ResilverOptions, ResilverProgress};
pub use scrub::{JobHandle, JobProgress, ScrubHandle, ScrubOptions, ScrubProgress, ScrubState};
#[cfg(test)]
mod locked_tests;
#[cfg(test)]
mod tests;
