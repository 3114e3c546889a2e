//! The fs superblock: a fixed object naming the format version and the other fixed objects.
//!
//! Fixed objects: [`SUPERBLOCK_ID`] (this record, as its attribute), [`ROOT_ID`] (the root
//! directory) and [`ORPHANS_ID`] (the orphan list: one record per unlinked-but-open inode,
//! key = inode number u64 BE, empty value, reclaimed at the next mount).
//!
//! Encoding (little-endian): `magic "INGOTFS\0" | version u32 | root u64 | orphans u64 |
//! created secs i64`.

use crate::error::{FsError, FsResult};

/// Object id of the superblock.
pub const SUPERBLOCK_ID: u64 = 1;
/// Object id (= inode number) of the root directory.
pub const ROOT_ID: u64 = 2;
/// Object id of the orphan list.
pub const ORPHANS_ID: u64 = 3;
/// Format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"INGOTFS\0";
const LEN: usize = 8 + 4 + 8 + 8 + 8;

/// The decoded superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// Format version.
    pub version: u32,
    /// Root directory object.
    pub root: u64,
    /// Orphan list object.
    pub orphans: u64,
    /// When the fs was made (Unix seconds).
    pub created: i64,
}

impl Superblock {
    /// A fresh superblock for mkfs.
    pub fn new(created: i64) -> Self {
        Superblock {
            version: FORMAT_VERSION,
            root: ROOT_ID,
            orphans: ORPHANS_ID,
            created,
        }
    }

    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(LEN);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&self.version.to_le_bytes());
        b.extend_from_slice(&self.root.to_le_bytes());
        b.extend_from_slice(&self.orphans.to_le_bytes());
        b.extend_from_slice(&self.created.to_le_bytes());
        b
    }

    /// Decodes and validates a record.
    pub fn decode(b: &[u8]) -> FsResult<Self> {
        let corrupt = |detail: String| FsError::Corrupt {
            id: SUPERBLOCK_ID,
            detail,
        };
        if b.len() < LEN {
            return Err(corrupt(format!(
                "superblock of {} bytes, expected {LEN}",
                b.len()
            )));
        }
        if &b[..8] != MAGIC {
            return Err(corrupt("bad superblock magic".into()));
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let sb = Superblock {
            version: u32_at(8),
            root: u64_at(12),
            orphans: u64_at(20),
            created: u64_at(28) as i64,
        };
        if sb.version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "fs format version {}, this build reads {FORMAT_VERSION}",
                sb.version
            )));
        }
        if sb.root != ROOT_ID || sb.orphans != ORPHANS_ID {
            return Err(corrupt(format!(
                "unexpected fixed objects {} / {}",
                sb.root, sb.orphans
            )));
        }
        Ok(sb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_rejects() {
        let sb = Superblock::new(1234);
        let b = sb.encode();
        assert_eq!(Superblock::decode(&b).unwrap(), sb);
        for n in 0..b.len() {
            assert!(Superblock::decode(&b[..n]).is_err());
        }
        let mut v = b.clone();
        v[8] = 9;
        assert!(Superblock::decode(&v).is_err());
        let mut m = b;
        m[0] = b'X';
        assert!(Superblock::decode(&m).is_err());
    }
}
