//! Device labels: identity, layout, the uberblock and the key slot, at fixed places.
//!
//! Every device holds [`LABEL_COPIES`] copies of its label of [`LABEL_BYTES`] each: two at
//! the start of the device and two at the end; the data area lies between. Each copy has
//! its own crc32c. Copies `0` and `2` form pair A, `1` and `3` pair B: label generation `g`
//! is written to pair `g % 2` only, so a torn label write can only damage the pair being
//! written while
//! the other pair still holds the previous label.
//!
//! Version 3 adds a **label generation** (every label write, full commit or label-only,
//! takes the next one; the pair written is `generation % 2`) so that a locked pool, which
//! cannot commit new tree nodes, can still persist membership changes and a keyless
//! resilver position by writing labels that keep the same uberblock. Labels are ordered by
//! (uberblock txg, generation) ([`Label::order`]); a version 2 label's generation is its txg.

use super::bptr::{BP_LEN, BlockPtr};
use super::bytes::Reader;
use super::error::PoolError;
use serde::{Deserialize, Serialize};

/// Bytes of one label copy.
pub const LABEL_BYTES: u64 = 8192;
/// Copies per device.
pub const LABEL_COPIES: usize = 4;
/// Bytes reserved at the start and at the end of every device for labels.
pub const LABEL_AREA: u64 = 2 * LABEL_BYTES;
/// Label magic.
pub const LABEL_MAGIC: [u8; 8] = *b"INGOTLB1";
/// On-disk format version written. Version 2 adds the per-column resilver marks
/// ([`Label::resilver_from`]); version 3 the label generation, the flags and the keyless
/// resilver position. Versions 1 and 2 are still read.
pub const FORMAT_VERSION: u32 = 3;
/// Label flag (version 3): a locked pool wrote this label, so the tree's
/// `resilver-position` record (written by an unlocked pool) may be out of date; the next
/// writable unlocked import drops it.
pub const FLAG_TREE_POSITION_STALE: u32 = 1;
/// Longest keyless position path (tree depth plus the root level).
pub const MAX_POSITION_PATH: usize = 32;
/// Oldest label format version read.
pub const MIN_FORMAT_VERSION: u32 = 1;
/// Most devices in a pool.
pub const MAX_DEVICES: usize = 64;
/// Longest pool name.
pub const MAX_NAME: usize = 63;
/// Largest key slot the label holds.
pub const MAX_KEYSLOT: usize = 2048;

/// RAID layout of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolLayout {
    /// RAID0.
    Stripe,
    /// n-way mirror.
    Mirror,
    /// Striped mirrors.
    Raid10,
    /// Single parity.
    Raidz1,
    /// Double parity.
    Raidz2,
}

impl PoolLayout {
    /// The name used in configs, the CLI and the console (`raidz1`, ...).
    pub fn name(self) -> &'static str {
        match self {
            PoolLayout::Stripe => "stripe",
            PoolLayout::Mirror => "mirror",
            PoolLayout::Raid10 => "raid10",
            PoolLayout::Raidz1 => "raidz1",
            PoolLayout::Raidz2 => "raidz2",
        }
    }

    fn code(self) -> u8 {
        match self {
            PoolLayout::Stripe => 0,
            PoolLayout::Mirror => 1,
            PoolLayout::Raid10 => 2,
            PoolLayout::Raidz1 => 3,
            PoolLayout::Raidz2 => 4,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => PoolLayout::Stripe,
            1 => PoolLayout::Mirror,
            2 => PoolLayout::Raid10,
            3 => PoolLayout::Raidz1,
            4 => PoolLayout::Raidz2,
            _ => return None,
        })
    }
}

/// Compression chosen at create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PoolCompression {
    /// Store raw.
    Off,
    /// zstd at a level (1 is the fast default).
    Zstd {
        /// zstd level, 1..=19.
        level: i8,
    },
    /// zstd level 1.
    #[default]
    Default,
}

impl PoolCompression {
    fn code(self) -> (u8, i8) {
        match self {
            PoolCompression::Off => (0, 0),
            PoolCompression::Zstd { level } => (1, level),
            PoolCompression::Default => (1, 1),
        }
    }
    fn from_code(c: u8, level: i8) -> Option<Self> {
        match c {
            0 => Some(PoolCompression::Off),
            1 => Some(PoolCompression::Zstd { level }),
            _ => None,
        }
    }
}

/// The pointer to a transaction group's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uberblock {
    /// Transaction group.
    pub txg: u64,
    /// Unix seconds of the commit.
    pub timestamp: u64,
    /// Root node of the tree.
    pub root: BlockPtr,
    /// The allocator state.
    pub space_map: BlockPtr,
}

/// Where an interrupted keyless (locked-pool) resilver or scrub was, kept in the labels
/// (version 3).
///
/// `path` locates the next block to rebuild in the depth-first walk of the tree of txg
/// `txg` (the label's own uberblock txg: a locked pool never commits a new tree): index 0
/// is the walk's root level (0 the space map, 1 the root node), each further entry the
/// index of a child in its node's physical pointers. Every block before it in the walk
/// is rebuilt (scrubbed) and durable. Only valid for the same `txg`, `from_txg` and targets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanPosition {
    /// A scrub's position (`from_txg` and `targets` are 0), not a resilver's.
    pub scrub: bool,
    /// Txg of the tree the path is in.
    pub txg: u64,
    /// Oldest birth txg the resilver rebuilds.
    pub from_txg: u64,
    /// Digest of the target columns and their device GUIDs.
    pub targets: u64,
    /// Allocated bytes scanned so far.
    pub scanned: u64,
    /// Bad columns found so far.
    pub found: u64,
    /// Columns repaired so far.
    pub repaired: u64,
    /// The next block's path (at most [`MAX_POSITION_PATH`] entries).
    pub path: Vec<u32>,
}

/// One label copy, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Pool identity.
    pub pool_guid: u64,
    /// This device's identity.
    pub device_guid: u64,
    /// This device's column in the layout.
    pub device_index: u32,
    /// Device GUIDs of every column, in order.
    pub device_guids: Vec<u64>,
    /// Layout.
    pub layout: PoolLayout,
    /// Compression for new extents.
    pub compression: PoolCompression,
    /// Whether the pool is encrypted.
    pub encrypted: bool,
    /// Record size of object data in bytes.
    pub record_size: u32,
    /// Byte offset of the data area on each device.
    pub data_offset: u64,
    /// Bytes of data area on each device.
    pub data_len: u64,
    /// Pool name.
    pub name: String,
    /// Unix seconds of creation.
    pub created: u64,
    /// The uberblock.
    pub uber: Uberblock,
    /// The wrapped master key (empty when not encrypted).
    pub key_slot: Vec<u8>,
    /// Per column: 0 when the device holds every block, else the device is being
    /// resilvered and lacks blocks born at or after this txg (1: a new device, lacks all).
    /// Format version 2; empty or all zeros in version 1 labels.
    pub resilver_from: Vec<u64>,
    /// Label generation (version 3; the txg in older labels): every label write takes the
    /// next one, label-only commits of a locked pool included.
    pub generation: u64,
    /// Flags ([`FLAG_TREE_POSITION_STALE`]); 0 in older labels.
    pub flags: u32,
    /// A keyless resilver's saved position (version 3).
    pub scan_position: Option<ScanPosition>,
}

/// Byte offset of label copy `i` on a device of `capacity` bytes.
pub fn label_offset(i: usize, capacity: u64) -> u64 {
    let end = capacity / 4096 * 4096;
    match i {
        0 => 0,
        1 => LABEL_BYTES,
        2 => end - 2 * LABEL_BYTES,
        _ => end - LABEL_BYTES,
    }
}

/// Label copies that label generation `generation` is written to (in version 2 labels
/// the generation is the txg).
pub fn copies_for_txg(generation: u64) -> [usize; 2] {
    if generation.is_multiple_of(2) {
        [0, 2]
    } else {
        [1, 3]
    }
}

impl Label {
    /// Import order: the newest label has the highest (uberblock txg, generation).
    pub fn order(&self) -> (u64, u64) {
        (self.uber.txg, self.generation)
    }

    /// Encode to exactly [`LABEL_BYTES`].
    pub fn encode(&self) -> Result<Vec<u8>, PoolError> {
        if self.device_guids.len() > MAX_DEVICES
            || self.name.len() > MAX_NAME
            || self.key_slot.len() > MAX_KEYSLOT
            || self
                .scan_position
                .as_ref()
                .is_some_and(|p| p.path.len() > MAX_POSITION_PATH)
            || self.flags & !FLAG_TREE_POSITION_STALE != 0
        {
            return Err(PoolError::Config(
                "label fields too large (devices, name or key slot)".into(),
            ));
        }
        let mut o = Vec::with_capacity(LABEL_BYTES as usize);
        o.extend_from_slice(&LABEL_MAGIC);
        o.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        o.extend_from_slice(&self.flags.to_le_bytes());
        o.extend_from_slice(&self.pool_guid.to_le_bytes());
        o.extend_from_slice(&self.device_guid.to_le_bytes());
        o.extend_from_slice(&self.device_index.to_le_bytes());
        o.extend_from_slice(&(self.device_guids.len() as u32).to_le_bytes());
        let (ck, cl) = self.compression.code();
        o.push(self.layout.code());
        o.push(ck);
        o.push(cl as u8);
        o.push(u8::from(self.encrypted));
        o.extend_from_slice(&self.record_size.to_le_bytes());
        o.extend_from_slice(&self.data_offset.to_le_bytes());
        o.extend_from_slice(&self.data_len.to_le_bytes());
        o.push(self.name.len() as u8);
        let mut name = [0u8; MAX_NAME];
        name[..self.name.len()].copy_from_slice(self.name.as_bytes());
        o.extend_from_slice(&name);
        o.extend_from_slice(&self.created.to_le_bytes());
        for g in &self.device_guids {
            o.extend_from_slice(&g.to_le_bytes());
        }
        o.extend_from_slice(&self.uber.txg.to_le_bytes());
        o.extend_from_slice(&self.uber.timestamp.to_le_bytes());
        self.uber.root.encode(&mut o);
        self.uber.space_map.encode(&mut o);
        o.extend_from_slice(&(self.key_slot.len() as u16).to_le_bytes());
        o.extend_from_slice(&self.key_slot);
        for k in 0..self.device_guids.len() {
            let r = self.resilver_from.get(k).copied().unwrap_or(0);
            o.extend_from_slice(&r.to_le_bytes());
        }
        o.extend_from_slice(&self.generation.to_le_bytes());
        match &self.scan_position {
            None => o.push(0),
            Some(p) => {
                o.push(if p.scrub { 2 } else { 1 });
                for x in [p.txg, p.from_txg, p.targets, p.scanned, p.found, p.repaired] {
                    o.extend_from_slice(&x.to_le_bytes());
                }
                o.push(p.path.len() as u8);
                for x in &p.path {
                    o.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
        o.resize(LABEL_BYTES as usize - 4, 0);
        let crc = crc32c::crc32c(&o);
        o.extend_from_slice(&crc.to_le_bytes());
        Ok(o)
    }

    /// Decode one copy. Never panics.
    pub fn decode(buf: &[u8]) -> Result<Label, PoolError> {
        let n = LABEL_BYTES as usize;
        let mut r = Reader::new(buf, "label");
        if buf.len() < n {
            return Err(r.bad(format!("{} bytes, need {n}", buf.len())));
        }
        if buf[..8] != LABEL_MAGIC {
            // Not a damaged label but none at all: callers tell blank drives apart by this.
            return Err(PoolError::NotAPool {
                detail: "no Ingot label magic".into(),
            });
        }
        let stored = u32::from_le_bytes([buf[n - 4], buf[n - 3], buf[n - 2], buf[n - 1]]);
        if crc32c::crc32c(&buf[..n - 4]) != stored {
            return Err(r.bad("label checksum mismatch (torn or damaged copy)"));
        }
        r.take(8)?;
        let version = r.u32()?;
        if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(r.bad(format!(
                "format version {version}, this build reads {MIN_FORMAT_VERSION}..={FORMAT_VERSION}"
            )));
        }
        // Older versions wrote 0 and gave the field no meaning.
        let flags = if version >= 3 {
            r.u32()?
        } else {
            r.u32().map(|_| 0)?
        };
        if flags & !FLAG_TREE_POSITION_STALE != 0 {
            return Err(r.bad(format!("unknown label flags {flags:#x}")));
        }
        let pool_guid = r.u64()?;
        let device_guid = r.u64()?;
        let device_index = r.u32()?;
        let count = r.u32()? as usize;
        if count == 0 || count > MAX_DEVICES || device_index as usize >= count {
            return Err(r.bad(format!("device {device_index} of {count}")));
        }
        let layout = PoolLayout::from_code(r.u8()?).ok_or_else(|| r.bad("unknown layout"))?;
        let ck = r.u8()?;
        let cl = r.u8()? as i8;
        let compression =
            PoolCompression::from_code(ck, cl).ok_or_else(|| r.bad("unknown compression"))?;
        let encrypted = r.u8()? != 0;
        let record_size = r.u32()?;
        let data_offset = r.u64()?;
        let data_len = r.u64()?;
        let name_len = r.u8()? as usize;
        let name_b = r.take(MAX_NAME)?;
        let name = std::str::from_utf8(name_b.get(..name_len).ok_or_else(|| r.bad("name"))?)
            .map_err(|_| r.bad("name is not UTF-8"))?
            .to_string();
        let created = r.u64()?;
        let mut device_guids = Vec::with_capacity(count);
        for _ in 0..count {
            device_guids.push(r.u64()?);
        }
        let txg = r.u64()?;
        let timestamp = r.u64()?;
        let root = BlockPtr::decode(&mut r)?;
        let space_map = BlockPtr::decode(&mut r)?;
        let ks = r.u16()? as usize;
        if ks > MAX_KEYSLOT {
            return Err(r.bad("key slot too large"));
        }
        let key_slot = r.take(ks)?.to_vec();
        let mut resilver_from = vec![0u64; count];
        if version >= 2 {
            for x in &mut resilver_from {
                *x = r.u64()?;
            }
        }
        if device_guids[device_index as usize] != device_guid {
            return Err(r.bad("device GUID not at its index"));
        }
        let mut generation = txg;
        let mut scan_position = None;
        if version >= 3 {
            generation = r.u64()?;
            match r.u8()? {
                0 => {}
                tag @ (1 | 2) => {
                    let mut f = [0u64; 6];
                    for x in &mut f {
                        *x = r.u64()?;
                    }
                    let len = r.u8()? as usize;
                    if len > MAX_POSITION_PATH {
                        return Err(r.bad(format!("resilver position path of {len} entries")));
                    }
                    let mut path = Vec::with_capacity(len);
                    for _ in 0..len {
                        path.push(r.u32()?);
                    }
                    scan_position = Some(ScanPosition {
                        scrub: tag == 2,
                        txg: f[0],
                        from_txg: f[1],
                        targets: f[2],
                        scanned: f[3],
                        found: f[4],
                        repaired: f[5],
                        path,
                    });
                }
                other => return Err(r.bad(format!("resilver position tag {other}"))),
            }
        }
        let _ = BP_LEN;
        Ok(Label {
            pool_guid,
            device_guid,
            device_index,
            device_guids,
            layout,
            compression,
            encrypted,
            record_size,
            data_offset,
            data_len,
            name,
            created,
            uber: Uberblock {
                txg,
                timestamp,
                root,
                space_map,
            },
            key_slot,
            resilver_from,
            generation,
            flags,
            scan_position,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::bptr::BlockKind;
    use proptest::prelude::*;

    pub(crate) fn sample() -> Label {
        let bp = BlockPtr {
            addr: 1,
            birth: 5,
            lsize: 10,
            psize: 4096,
            asize: 1,
            crc: 9,
            comp: 0,
            kind: BlockKind::Node,
        };
        Label {
            pool_guid: 11,
            device_guid: 22,
            device_index: 1,
            device_guids: vec![21, 22],
            layout: PoolLayout::Mirror,
            compression: PoolCompression::Zstd { level: 3 },
            encrypted: true,
            record_size: 131072,
            data_offset: LABEL_AREA,
            data_len: 1 << 20,
            name: "tank".into(),
            created: 1,
            uber: Uberblock {
                txg: 5,
                timestamp: 6,
                root: bp,
                space_map: BlockPtr {
                    kind: BlockKind::SpaceMap,
                    ..bp
                },
            },
            key_slot: vec![7; 100],
            resilver_from: vec![0, 3],
            generation: 9,
            flags: FLAG_TREE_POSITION_STALE,
            scan_position: Some(ScanPosition {
                scrub: false,
                txg: 5,
                from_txg: 2,
                targets: 77,
                scanned: 4096,
                found: 1,
                repaired: 1,
                path: vec![1, 0, 3],
            }),
        }
    }

    #[test]
    fn roundtrip_and_torn() {
        let l = sample();
        let mut e = l.encode().unwrap();
        assert_eq!(e.len(), LABEL_BYTES as usize);
        assert_eq!(Label::decode(&e).unwrap(), l);
        e[100] ^= 1;
        assert!(Label::decode(&e).is_err());
    }

    #[test]
    fn version_2_labels_still_decode_with_generation_equal_to_txg() {
        // A version 2 encoding: the version 3 one without flags, generation and position.
        let mut l = sample();
        l.flags = 0;
        l.scan_position = None;
        l.generation = l.uber.txg;
        let mut e = l.encode().unwrap();
        e[8..12].copy_from_slice(&2u32.to_le_bytes());
        // Zero what version 3 appended after the resilver marks (generation, position tag).
        let tail = 136 + 8 * 2 + 96 + 2 + 100 + 8 * 2;
        e[tail..tail + 9].fill(0);
        let n = e.len();
        let crc = crc32c::crc32c(&e[..n - 4]);
        e[n - 4..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Label::decode(&e).unwrap(), l);
        // Unknown flag bits are refused.
        let mut bad = sample().encode().unwrap();
        bad[12] = 0x80;
        let crc = crc32c::crc32c(&bad[..n - 4]);
        bad[n - 4..].copy_from_slice(&crc.to_le_bytes());
        assert!(Label::decode(&bad).is_err());
    }

    #[test]
    fn order_is_txg_then_generation() {
        let mut a = sample();
        let mut b = sample();
        b.generation += 1;
        assert!(b.order() > a.order());
        a.uber.txg += 1;
        assert!(a.order() > b.order());
    }

    proptest! {
        #![proptest_config(crate::testutil::proptest_config(256))]
        #[test]
        fn decode_arbitrary_never_panics(b in proptest::collection::vec(any::<u8>(), 0..9000)) {
            let _ = Label::decode(&b);
        }
        #[test]
        fn decode_mutated_never_panics(pos in 0usize..8192, val in any::<u8>()) {
            let mut e = sample().encode().unwrap();
            e[pos] = val;
            // fix the crc so the body parser itself is exercised
            let n = e.len();
            let crc = crc32c::crc32c(&e[..n - 4]);
            e[n - 4..].copy_from_slice(&crc.to_le_bytes());
            let _ = Label::decode(&e);
        }
    }
}
