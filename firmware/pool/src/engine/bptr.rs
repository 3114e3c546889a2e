//! Block pointers: where an extent lives and how to verify and decode it.
//!
//! A block pointer sits in the parent (tree node or uberblock) and carries the crc32c of
//! the child's stored bytes, so the tree is Merkle-like: a lost, misdirected or stale
//! write shows up as a checksum mismatch when the parent is followed.

use super::bytes::Reader;
use super::error::PoolError;

/// Encoded size of a [`BlockPtr`].
pub const BP_LEN: usize = 40;

/// What an extent holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockKind {
    /// A tree node (clear pointer header + sealed payload).
    Node = 1,
    /// A data record of an object.
    Data = 2,
    /// The allocator state (space map).
    SpaceMap = 3,
}

impl BlockKind {
    fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(BlockKind::Node),
            2 => Some(BlockKind::Data),
            3 => Some(BlockKind::SpaceMap),
            _ => None,
        }
    }
}

/// A pointer to one stored extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockPtr {
    /// First pool sector (4 KiB) in the vdev address space.
    pub addr: u64,
    /// Transaction group that wrote it.
    pub birth: u64,
    /// Logical (decoded) size in bytes.
    pub lsize: u32,
    /// Stored size in bytes: for data the compressed payload length; for nodes the whole
    /// stored extent (clear header + sealed payload), a multiple of 4 KiB.
    pub psize: u32,
    /// Allocated sectors (data sectors plus redundancy).
    pub asize: u32,
    /// crc32c of the stored bytes (all data sectors, padding included).
    pub crc: u32,
    /// Compression code of the payload (codec's `CompressionKind::code`).
    pub comp: u8,
    /// What the extent holds.
    pub kind: BlockKind,
}

impl BlockPtr {
    /// Number of 4 KiB data sectors the stored bytes occupy.
    pub fn data_sectors(&self) -> u64 {
        u64::from(self.psize).div_ceil(4096)
    }

    /// Encode into exactly [`BP_LEN`] bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.addr.to_le_bytes());
        out.extend_from_slice(&self.birth.to_le_bytes());
        out.extend_from_slice(&self.lsize.to_le_bytes());
        out.extend_from_slice(&self.psize.to_le_bytes());
        out.extend_from_slice(&self.asize.to_le_bytes());
        out.extend_from_slice(&self.crc.to_le_bytes());
        out.push(self.comp);
        out.push(self.kind as u8);
        out.extend_from_slice(&[0u8; 6]);
    }

    /// Decode from a reader (consumes [`BP_LEN`] bytes).
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, PoolError> {
        let addr = r.u64()?;
        let birth = r.u64()?;
        let lsize = r.u32()?;
        let psize = r.u32()?;
        let asize = r.u32()?;
        let crc = r.u32()?;
        let comp = r.u8()?;
        let kind_code = r.u8()?;
        r.take(6)?;
        let kind = BlockKind::from_code(kind_code)
            .ok_or_else(|| r.bad(format!("block pointer kind {kind_code} unknown")))?;
        if psize == 0 || asize == 0 || u64::from(asize) < u64::from(psize).div_ceil(4096) {
            return Err(r.bad(format!(
                "block pointer sizes inconsistent: psize {psize}, asize {asize}"
            )));
        }
        Ok(BlockPtr {
            addr,
            birth,
            lsize,
            psize,
            asize,
            crc,
            comp,
            kind,
        })
    }

    /// Decode from exactly [`BP_LEN`] bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, PoolError> {
        let mut r = Reader::new(b, "block pointer");
        BlockPtr::decode(&mut r)
    }

    /// Encode to a fresh vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(BP_LEN);
        self.encode(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let bp = BlockPtr {
            addr: 77,
            birth: 9,
            lsize: 131072,
            psize: 5000,
            asize: 3,
            crc: 0xdead_beef,
            comp: 1,
            kind: BlockKind::Data,
        };
        let b = bp.to_bytes();
        assert_eq!(b.len(), BP_LEN);
        assert_eq!(BlockPtr::from_bytes(&b).unwrap(), bp);
        assert!(BlockPtr::from_bytes(&b[..10]).is_err());
    }
}
