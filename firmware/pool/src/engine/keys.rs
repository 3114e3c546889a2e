//! Tree keys: `(object id, record kind, suffix)` encoded so that byte order is key order.
//!
//! One btrfs-style tree holds everything. A key is the object id (8 bytes big-endian),
//! a kind byte, and a suffix: nothing for the object record, the record index
//! (8 bytes big-endian) for a data extent, the user key for a map record.

use super::bptr::BlockPtr;
use crate::store::ObjectId;

/// The object record: size and attribute.
pub const KIND_INODE: u8 = 1;
/// A key-value map record.
pub const KIND_KV: u8 = 2;
/// A data extent (one record of `record_size` logical bytes).
pub const KIND_EXTENT: u8 = 3;

/// Object id of the pool's own bookkeeping record (next object id, counters).
pub const META_OID: ObjectId = 0;

/// Key of an object's record.
pub fn inode(id: ObjectId) -> Vec<u8> {
    let mut k = id.to_be_bytes().to_vec();
    k.push(KIND_INODE);
    k
}

/// Key of a map record.
pub fn kv(id: ObjectId, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.len());
    k.extend_from_slice(&id.to_be_bytes());
    k.push(KIND_KV);
    k.extend_from_slice(key);
    k
}

/// Key of a data extent (record index `rec`).
pub fn extent(id: ObjectId, rec: u64) -> Vec<u8> {
    let mut k = id.to_be_bytes().to_vec();
    k.push(KIND_EXTENT);
    k.extend_from_slice(&rec.to_be_bytes());
    k
}

/// First key of an object's keys of `kind` (inclusive).
pub fn kind_start(id: ObjectId, kind: u8) -> Vec<u8> {
    let mut k = id.to_be_bytes().to_vec();
    k.push(kind);
    k
}

/// First key past an object's keys of `kind` (exclusive end).
pub fn kind_end(id: ObjectId, kind: u8) -> Vec<u8> {
    let mut k = id.to_be_bytes().to_vec();
    k.push(kind + 1);
    k
}

/// First key of an object (inclusive).
pub fn object_start(id: ObjectId) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

/// First key past an object (exclusive), `None` for the last possible id.
pub fn object_end(id: ObjectId) -> Option<Vec<u8>> {
    id.checked_add(1).map(|n| n.to_be_bytes().to_vec())
}

/// The kind byte of a key, if it has one.
pub fn kind_of(key: &[u8]) -> Option<u8> {
    key.get(8).copied()
}

/// The record index of an extent key.
pub fn extent_rec(key: &[u8]) -> Option<u64> {
    let b: [u8; 8] = key.get(9..17)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// The user key of a map key.
pub fn kv_user_key(key: &[u8]) -> &[u8] {
    key.get(9..).unwrap_or(&[])
}

/// If `(key, val)` is a data extent, its block pointer.
pub fn extent_bp(key: &[u8], val: &[u8]) -> Option<BlockPtr> {
    if kind_of(key) == Some(KIND_EXTENT) && key.len() == 17 {
        BlockPtr::from_bytes(val).ok()
    } else {
        None
    }
}
