//! Ingot's storage pool: RAID layouts, checksummed + compressed + encrypted extents,
//! a copy-on-write tree committed in transaction groups, labels, keys and recovery.
//!
//! The layer above sees it through [`store::ObjectStore`].

#![forbid(unsafe_code)]

pub mod store;
