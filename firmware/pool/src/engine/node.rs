//! Tree nodes: the in-memory form and the on-disk encoding.
//!
//! A node is stored as one extent of two parts (see docs/FORMAT.md):
//! - a *clear header* (whole 4 KiB sectors, never encrypted): magic, level, birth txg, the
//!   sealed payload's size/compression/crc, and the physical pointers (address, sectors,
//!   crc, kind) of every extent the node references. It holds no keys, names or logical
//!   sizes, and it is what lets a locked pool be verified end to end without keys;
//! - the *payload*: the node's keys and values (or child block pointers), compressed,
//!   encrypted and checksummed by the codec like any data extent.
//!
//! The block pointer in the parent covers both parts with one crc32c.

use super::bptr::{BP_LEN, BlockKind, BlockPtr};
use super::bytes::{Reader, round_up};
use super::error::PoolError;
use super::keys;
use bytes::Bytes;
use std::sync::{Arc, OnceLock};

/// Magic at the start of every node's clear header: "INGN".
pub const NODE_MAGIC: u32 = 0x4e47_4e49;
/// Node format version.
pub const NODE_VERSION: u16 = 1;
/// Deepest tree accepted when decoding (bounds recursion on hostile input).
pub const MAX_LEVEL: u8 = 24;
/// Largest node payload accepted when decoding.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Fixed part of the clear header.
const CLEAR_FIXED: usize = 40;
/// One physical pointer in the clear header.
const PHYS_LEN: usize = 17;
/// Fixed part of the payload.
const PAYLOAD_FIXED: usize = 8;

/// A child reference in an internal node.
#[derive(Debug, Clone)]
pub enum Child {
    /// On disk, not loaded.
    Disk(BlockPtr),
    /// In memory (dirty, or loaded on a path being modified).
    Mem(Arc<Node>),
}

impl Child {
    /// The child's block pointer if it is (still) the one on disk.
    pub fn clean_bp(&self) -> Option<BlockPtr> {
        match self {
            Child::Disk(bp) => Some(*bp),
            Child::Mem(n) => n.slot.get().copied(),
        }
    }
}

/// A node's entries.
///
/// Keys and values are shared byte strings (`Bytes`): copying a node on write (one per node a
/// batch changes, see `tree::node_mut`) copies the entry vectors and bumps reference counts,
/// instead of allocating and copying every key and value.
#[derive(Debug, Clone)]
pub enum Body {
    /// Values, one per key.
    Leaf(Vec<Bytes>),
    /// Children, one per key; key `i` is the least key that may be in child `i`
    /// (key 0 is empty: the lower bound).
    Internal(Vec<Child>),
}

/// One tree node.
///
/// `slot` says where this exact content is stored: set when a commit writes it (or when it
/// was loaded from disk). Modifying a node gives it a fresh slot, and the old slot is
/// recorded as freed (see `tree::Frees`).
#[derive(Debug, Clone)]
pub struct Node {
    /// 0 for leaves.
    pub level: u8,
    /// Sorted keys.
    pub keys: Vec<Bytes>,
    /// Values or children.
    pub body: Body,
    /// Encoded payload size (kept up to date by the tree).
    pub bytes: usize,
    /// Where this content is on disk, once written.
    pub slot: Arc<OnceLock<BlockPtr>>,
}

/// Encoded size of a leaf entry.
pub fn leaf_entry_len(k: &[u8], v: &[u8]) -> usize {
    6 + k.len() + v.len()
}

/// Encoded size of an internal entry.
pub fn internal_entry_len(k: &[u8]) -> usize {
    2 + k.len() + BP_LEN
}

impl Node {
    /// An empty leaf.
    pub fn empty_leaf() -> Self {
        Node {
            level: 0,
            keys: Vec::new(),
            body: Body::Leaf(Vec::new()),
            bytes: PAYLOAD_FIXED,
            slot: Arc::new(OnceLock::new()),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the node has no entries.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Recompute `bytes` from scratch.
    pub fn recompute_bytes(&mut self) {
        self.bytes = PAYLOAD_FIXED
            + match &self.body {
                Body::Leaf(v) => self
                    .keys
                    .iter()
                    .zip(v)
                    .map(|(k, v)| leaf_entry_len(k, v))
                    .sum::<usize>(),
                Body::Internal(_) => self.keys.iter().map(|k| internal_entry_len(k)).sum(),
            };
    }

    /// The physical extents this node references (children or data extents).
    /// Fails if a child is in memory and not yet written (a commit writes children first).
    pub fn phys_ptrs(&self) -> Result<Vec<BlockPtr>, PoolError> {
        match &self.body {
            Body::Leaf(vals) => Ok(self
                .keys
                .iter()
                .zip(vals)
                .filter_map(|(k, v)| keys::extent_bp(k, v))
                .collect()),
            Body::Internal(ch) => ch
                .iter()
                .map(|c| {
                    c.clean_bp().ok_or_else(|| {
                        PoolError::Internal("encoding a node whose child is unwritten".into())
                    })
                })
                .collect(),
        }
    }

    /// Encode the payload (keys and values or child pointers). Children must be written.
    pub fn encode_payload(&self, birth: u64) -> Result<Vec<u8>, PoolError> {
        let mut out = Vec::with_capacity(self.bytes);
        out.push(self.level);
        out.extend_from_slice(&[0u8; 3]);
        out.extend_from_slice(&(self.keys.len() as u32).to_le_bytes());
        let _ = birth;
        match &self.body {
            Body::Leaf(vals) => {
                for (k, v) in self.keys.iter().zip(vals) {
                    out.extend_from_slice(&(k.len() as u16).to_le_bytes());
                    out.extend_from_slice(k);
                    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    out.extend_from_slice(v);
                }
            }
            Body::Internal(ch) => {
                for (k, c) in self.keys.iter().zip(ch) {
                    let bp = c.clean_bp().ok_or_else(|| {
                        PoolError::Internal("encoding a node whose child is unwritten".into())
                    })?;
                    out.extend_from_slice(&(k.len() as u16).to_le_bytes());
                    out.extend_from_slice(k);
                    bp.encode(&mut out);
                }
            }
        }
        Ok(out)
    }

    /// Decode a payload. Never panics; checks ordering and sizes.
    pub fn decode_payload(buf: &[u8], slot: Option<BlockPtr>) -> Result<Node, PoolError> {
        let mut r = Reader::new(buf, "tree node");
        let level = r.u8()?;
        r.take(3)?;
        let count = r.u32()? as usize;
        if level > MAX_LEVEL {
            return Err(r.bad(format!("level {level} > {MAX_LEVEL}")));
        }
        if count > buf.len() / 6 + 1 {
            return Err(r.bad(format!(
                "entry count {count} too large for {} bytes",
                buf.len()
            )));
        }
        let mut keys_v: Vec<Bytes> = Vec::with_capacity(count);
        let body = if level == 0 {
            let mut vals = Vec::with_capacity(count);
            for _ in 0..count {
                let kl = r.u16()? as usize;
                let k = Bytes::copy_from_slice(r.take(kl)?);
                let vl = r.u32()? as usize;
                let v = Bytes::copy_from_slice(r.take(vl)?);
                keys_v.push(k);
                vals.push(v);
            }
            Body::Leaf(vals)
        } else {
            if count == 0 {
                return Err(r.bad("internal node with no children"));
            }
            let mut ch = Vec::with_capacity(count);
            for _ in 0..count {
                let kl = r.u16()? as usize;
                let k = Bytes::copy_from_slice(r.take(kl)?);
                let bp = BlockPtr::decode(&mut r)?;
                if bp.kind != BlockKind::Node {
                    return Err(r.bad("internal node child is not a node"));
                }
                keys_v.push(k);
                ch.push(Child::Disk(bp));
            }
            Body::Internal(ch)
        };
        if r.pos() != buf.len() {
            return Err(r.bad(format!("{} trailing bytes", buf.len() - r.pos())));
        }
        for w in keys_v.windows(2) {
            if w[0] >= w[1] {
                return Err(r.bad("keys not strictly increasing"));
            }
        }
        let slot_lock = OnceLock::new();
        if let Some(bp) = slot {
            let _ = slot_lock.set(bp);
        }
        let mut n = Node {
            level,
            keys: keys_v,
            body,
            bytes: 0,
            slot: Arc::new(slot_lock),
        };
        n.recompute_bytes();
        Ok(n)
    }
}

/// The clear header of a stored node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearHeader {
    /// Node level.
    pub level: u8,
    /// Transaction group that wrote the node.
    pub birth: u64,
    /// Sectors of sealed payload following the header.
    pub payload_sectors: u32,
    /// Compressed payload length.
    pub payload_psize: u32,
    /// Decoded payload length.
    pub payload_lsize: u32,
    /// crc32c of the sealed payload sectors.
    pub payload_crc: u32,
    /// Compression code of the payload.
    pub payload_comp: u8,
    /// Physical pointers of everything the node references: (addr, data sectors, crc, kind).
    pub ptrs: Vec<PhysPtr>,
}

/// A keyless pointer: enough to locate and verify an extent, nothing about its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysPtr {
    /// First pool sector.
    pub addr: u64,
    /// Stored data sectors.
    pub sectors: u32,
    /// crc32c of the stored sectors.
    pub crc: u32,
    /// Node or data.
    pub kind: BlockKind,
}

impl PhysPtr {
    /// From a block pointer.
    pub fn of(bp: &BlockPtr) -> Self {
        PhysPtr {
            addr: bp.addr,
            sectors: bp.data_sectors() as u32,
            crc: bp.crc,
            kind: bp.kind,
        }
    }
}

impl ClearHeader {
    /// Encoded length, padded to whole sectors.
    pub fn padded_len(nptrs: usize) -> usize {
        round_up(CLEAR_FIXED + PHYS_LEN * nptrs, 4096)
    }

    /// Encode, padded to whole sectors.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::padded_len(self.ptrs.len()));
        out.extend_from_slice(&NODE_MAGIC.to_le_bytes());
        out.extend_from_slice(&NODE_VERSION.to_le_bytes());
        out.push(self.level);
        out.push(0);
        out.extend_from_slice(&self.birth.to_le_bytes());
        out.extend_from_slice(&self.payload_sectors.to_le_bytes());
        out.extend_from_slice(&self.payload_psize.to_le_bytes());
        out.extend_from_slice(&self.payload_lsize.to_le_bytes());
        out.extend_from_slice(&self.payload_crc.to_le_bytes());
        out.push(self.payload_comp);
        out.extend_from_slice(&[0u8; 3]);
        out.extend_from_slice(&(self.ptrs.len() as u32).to_le_bytes());
        for p in &self.ptrs {
            out.extend_from_slice(&p.addr.to_le_bytes());
            out.extend_from_slice(&p.sectors.to_le_bytes());
            out.extend_from_slice(&p.crc.to_le_bytes());
            out.push(p.kind as u8);
        }
        out.resize(Self::padded_len(self.ptrs.len()), 0);
        out
    }

    /// Decode from the start of a stored node; returns the header and its padded length.
    pub fn decode(buf: &[u8]) -> Result<(ClearHeader, usize), PoolError> {
        let mut r = Reader::new(buf, "node header");
        let magic = r.u32()?;
        if magic != NODE_MAGIC {
            return Err(r.bad(format!("bad magic {magic:#x}")));
        }
        let version = r.u16()?;
        if version != NODE_VERSION {
            return Err(r.bad(format!("unsupported node version {version}")));
        }
        let level = r.u8()?;
        r.u8()?;
        let birth = r.u64()?;
        let payload_sectors = r.u32()?;
        let payload_psize = r.u32()?;
        let payload_lsize = r.u32()?;
        let payload_crc = r.u32()?;
        let payload_comp = r.u8()?;
        r.take(3)?;
        let n = r.u32()? as usize;
        if n > buf.len() / PHYS_LEN {
            return Err(r.bad(format!("{n} pointers cannot fit")));
        }
        let mut ptrs = Vec::with_capacity(n);
        for _ in 0..n {
            let addr = r.u64()?;
            let sectors = r.u32()?;
            let crc = r.u32()?;
            let kind = match r.u8()? {
                1 => BlockKind::Node,
                2 => BlockKind::Data,
                3 => BlockKind::SpaceMap,
                k => return Err(r.bad(format!("pointer kind {k}"))),
            };
            ptrs.push(PhysPtr {
                addr,
                sectors,
                crc,
                kind,
            });
        }
        let padded = Self::padded_len(n);
        if padded > buf.len()
            || (payload_psize as usize) > (payload_sectors as usize) * 4096
            || payload_lsize as usize > MAX_PAYLOAD
            || level > MAX_LEVEL
        {
            return Err(r.bad("sizes inconsistent"));
        }
        Ok((
            ClearHeader {
                level,
                birth,
                payload_sectors,
                payload_psize,
                payload_lsize,
                payload_crc,
                payload_comp,
                ptrs,
            },
            padded,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(256))]
        #[test]
        fn leaf_roundtrip(mut entries in proptest::collection::btree_map(
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 0..100), 0..50)) {
            let mut n = Node::empty_leaf();
            let (k, v): (Vec<_>, Vec<_>) = std::mem::take(&mut entries).into_iter().unzip();
            n.keys = k.iter().map(|k| Bytes::copy_from_slice(k)).collect();
            n.body = Body::Leaf(v.iter().map(|v| Bytes::copy_from_slice(v)).collect());
            n.recompute_bytes();
            let p = n.encode_payload(3).unwrap();
            prop_assert_eq!(p.len(), n.bytes);
            let d = Node::decode_payload(&p, None).unwrap();
            prop_assert_eq!(d.keys, k);
            match d.body { Body::Leaf(dv) => prop_assert_eq!(dv, v), Body::Internal(_) => prop_assert!(false) }
            // A copy shares its entries with the original and encodes the same.
            let copy = n.clone();
            prop_assert_eq!(copy.encode_payload(3).unwrap(), p);
        }

        #[test]
        fn decode_arbitrary_never_panics(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Node::decode_payload(&b, None);
            let _ = ClearHeader::decode(&b);
        }

        #[test]
        fn clear_header_roundtrip(n in 0usize..300, level in 0u8..5) {
            let h = ClearHeader { level, birth: 7, payload_sectors: 2, payload_psize: 5000,
                payload_lsize: 9000, payload_crc: 1, payload_comp: 1,
                ptrs: (0..n).map(|i| PhysPtr { addr: i as u64, sectors: 1, crc: i as u32,
                    kind: BlockKind::Data }).collect() };
            let e = h.encode();
            prop_assert_eq!(e.len() % 4096, 0);
            let (d, len) = ClearHeader::decode(&e).unwrap();
            prop_assert_eq!(len, e.len());
            prop_assert_eq!(d, h);
        }
    }
}
