//! The object-store API the pool offers the fs layer.
//!
//! A pool stores *objects*: byte-addressed files with holes, each with one small
//! attribute record and an ordered key-value map (for directories, xattrs...).
//! Mutations are grouped in [`Op`] batches; a batch is atomic (all of it lands in
//! one transaction group) and batches become durable in the order they were
//! applied. [`ObjectStore::sync`] returns only once everything applied before it
//! is durable.

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An object identifier. Never 0. Ids below [`FIRST_DYNAMIC_ID`] are reserved for
/// fixed objects of the layer above (the fs creates them itself with [`Op::Create`]).
pub type ObjectId = u64;

/// The first id [`ObjectStore::alloc_object_id`] hands out.
pub const FIRST_DYNAMIC_ID: ObjectId = 64;

/// One mutation. A batch of them is applied atomically by [`ObjectStore::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create an empty object (size 0, no attribute, no records). Fails if it exists.
    Create {
        /// The new object's id.
        id: ObjectId,
    },
    /// Delete an object with all its data, its attribute and its records.
    Delete {
        /// The object.
        id: ObjectId,
    },
    /// Write bytes at `offset`, extending the object's size if they end past it.
    Write {
        /// The object.
        id: ObjectId,
        /// Byte offset.
        offset: u64,
        /// The bytes.
        data: Bytes,
    },
    /// Set the object's size: data past it is freed; growing leaves a hole.
    Truncate {
        /// The object.
        id: ObjectId,
        /// New size in bytes.
        size: u64,
    },
    /// Free a byte range; it reads as zeroes afterwards. The size does not change.
    PunchHole {
        /// The object.
        id: ObjectId,
        /// Byte offset.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
    /// Replace the object's attribute record (at most [`MAX_ATTR_LEN`] bytes).
    SetAttr {
        /// The object.
        id: ObjectId,
        /// The record.
        attr: Bytes,
    },
    /// Insert or replace one record of the object's ordered map.
    KvPut {
        /// The object.
        id: ObjectId,
        /// Key (at most [`MAX_KEY_LEN`] bytes).
        key: Bytes,
        /// Value (at most [`MAX_VALUE_LEN`] bytes).
        value: Bytes,
    },
    /// Remove one record; no error if it is absent.
    KvDelete {
        /// The object.
        id: ObjectId,
        /// Key.
        key: Bytes,
    },
}

/// Longest attribute record.
pub const MAX_ATTR_LEN: usize = 1024;
/// Longest record key.
pub const MAX_KEY_LEN: usize = 512;
/// Longest record value.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// Space and activity figures of a store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreStats {
    /// Usable capacity in bytes (after redundancy, before compression).
    pub capacity_bytes: u64,
    /// Bytes allocated (after compression and redundancy overhead is removed).
    pub used_bytes: u64,
    /// Bytes still available for new data (capacity - used - reserve).
    pub available_bytes: u64,
    /// Number of objects.
    pub objects: u64,
    /// Logical bytes written / stored bytes, over live data (1.0 = no savings).
    pub compression_ratio: f64,
    /// The last committed transaction group.
    pub txg: u64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No such object.
    #[error("object {id} does not exist")]
    NotFound {
        /// The object.
        id: ObjectId,
    },
    /// The object exists already.
    #[error("object {id} already exists")]
    Exists {
        /// The object.
        id: ObjectId,
    },
    /// A key, value, attribute or offset is out of the allowed range.
    #[error("invalid argument: {what}")]
    Invalid {
        /// What was wrong.
        what: String,
    },
    /// The pool is out of space; nothing of the batch was applied.
    #[error("no space left in the pool")]
    NoSpace,
    /// The pool is read-only (imported read-only, or suspended past its redundancy).
    #[error("pool is read-only: {reason}")]
    ReadOnly {
        /// Why.
        reason: String,
    },
    /// The pool is encrypted and locked: data cannot be read or written without the key.
    #[error("pool is locked: load the key first")]
    Locked,
    /// Data could not be read back correctly from any redundancy.
    #[error("unrecoverable data error in object {id} at offset {offset}: {detail}")]
    Corrupt {
        /// The object.
        id: ObjectId,
        /// Byte offset (0 for metadata).
        offset: u64,
        /// What failed.
        detail: String,
    },
    /// Device I/O failed beyond what redundancy could absorb.
    #[error("I/O error: {detail}")]
    Io {
        /// What failed.
        detail: String,
    },
}

/// The transactional object store. Implemented by the pool.
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// A fresh object id, never handed out before in this pool.
    async fn alloc_object_id(&self) -> Result<ObjectId, StoreError>;
    /// Apply a batch atomically. On error nothing of the batch is applied.
    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError>;
    /// Read into `buf` from `offset`; holes read as zeroes. Returns the bytes read, short at
    /// the end of the object (0 at or past it). Every byte of `buf[..returned]` is written
    /// (callers may pass a buffer holding old data); the rest of `buf` is left as it was.
    async fn read(&self, id: ObjectId, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError>;
    /// The object's size in bytes.
    async fn size(&self, id: ObjectId) -> Result<u64, StoreError>;
    /// The object's attribute record (`None` if never set).
    async fn get_attr(&self, id: ObjectId) -> Result<Option<Bytes>, StoreError>;
    /// One record of the object's map.
    async fn kv_get(&self, id: ObjectId, key: &[u8]) -> Result<Option<Bytes>, StoreError>;
    /// Records with keys strictly after `after` (from the first if `None`), in key order,
    /// at most `limit` of them.
    async fn kv_scan(
        &self,
        id: ObjectId,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StoreError>;
    /// Make everything applied before this call durable (NVMe flush / FUA) before returning.
    async fn sync(&self) -> Result<(), StoreError>;
    /// Space and activity figures.
    fn stats(&self) -> StoreStats;
    /// The size of the records object data is stored in, if the store has records: a
    /// write of exactly one whole record in a buffer of its own is kept without a copy
    /// (by a cache too), so callers that copy a write's bytes anyway may cut them at
    /// these boundaries.
    fn record_size(&self) -> Option<u32> {
        None
    }
}
