//! Extent I/O: the one place the engine meets the codec and the vdev.
//!
//! Data extents: plan (compress if it pays) -> allocate `asize` sectors -> seal
//! (encrypt with the extent's pool sector as tweak straight from the caller's bytes into
//! the stored buffer, crc32c per piece) -> write through the vdev (which adds parity).
//! Tree nodes: the payload goes through the same codec, behind a clear header of
//! physical pointers (see `node.rs`). Every read verifies the crc32c from the parent's
//! block pointer (the vdev reconstructs from redundancy when a copy does not verify).

use super::alloc::Allocator;
use super::bptr::{BlockKind, BlockPtr};
use super::cache::NodeCache;
use super::error::PoolError;
use super::node::{ClearHeader, Node, PhysPtr};
use crate::codec::{Codec, Planned};
use crate::compress::CompressionKind;
use crate::raid::Vdev;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Pool sector size.
pub const SECTOR: usize = 4096;

/// Where allocations come from during one operation, and what it took (to undo).
#[derive(Debug)]
pub struct AllocCtx<'a> {
    alloc: &'a Mutex<Allocator>,
    txg: u64,
    use_reserve: bool,
    /// Ranges taken so far.
    pub taken: Vec<(u64, u64)>,
}

impl<'a> AllocCtx<'a> {
    /// Allocate for txg `txg`; `use_reserve` for commit-time metadata.
    pub fn new(alloc: &'a Mutex<Allocator>, txg: u64, use_reserve: bool) -> Self {
        AllocCtx {
            alloc,
            txg,
            use_reserve,
            taken: Vec::new(),
        }
    }

    /// The txg allocations are tagged with.
    pub fn txg(&self) -> u64 {
        self.txg
    }

    fn take(&mut self, len: u64) -> Result<u64, PoolError> {
        let a = self.alloc.lock().alloc(len, self.txg, self.use_reserve)?;
        self.taken.push((a, len));
        Ok(a)
    }

    /// Tie a detached allocation (see `Allocator::alloc_detached`) to this txg; `undo`
    /// gives it back like the others.
    pub fn attach(&mut self, start: u64, len: u64) {
        self.alloc.lock().attach(start, len, self.txg);
        self.taken.push((start, len));
    }

    /// Sectors available to user data now (free minus the pool's reserve).
    pub fn available(&self) -> u64 {
        self.alloc.lock().available()
    }

    /// Give back everything taken (the operation failed before anything referenced it).
    pub fn undo(&mut self) {
        let mut a = self.alloc.lock();
        for (s, l) in self.taken.drain(..) {
            if let Err(e) = a.unalloc(s, l, self.txg) {
                tracing::error!(error = %e, "undo of allocation failed");
            }
        }
    }
}

/// Counters of extent I/O.
#[derive(Debug, Default)]
pub struct IoStats {
    /// Logical bytes of live data written (for the compression ratio).
    pub data_lbytes: AtomicU64,
    /// Stored (compressed) bytes of data written.
    pub data_pbytes: AtomicU64,
    /// Checksum failures seen on read (before reconstruction).
    pub checksum_errors: AtomicU64,
    /// Blocks no redundancy could recover (see [`super::heal`]).
    pub damaged: super::heal::DamageLog,
}

/// Extent I/O over one vdev with one codec, plus the node cache.
#[derive(Debug)]
pub struct BlockIo {
    /// The vdev.
    pub vdev: Vdev,
    /// The codec (`None` cipher when the pool is not encrypted or is locked).
    pub codec: Codec,
    /// Clean node cache.
    pub cache: NodeCache,
    /// Whether the codec can decode (false for a locked encrypted pool).
    pub unlocked: bool,
    /// Rewrite bad copies found by reads (self-healing); off when imported read-only.
    pub repair: bool,
    /// Counters.
    pub stats: IoStats,
}

fn io_err(what: &str, addr: u64, e: impl std::fmt::Display) -> PoolError {
    PoolError::Io(format!("{what} at pool sector {addr}: {e}"))
}

impl BlockIo {
    /// Read `sectors` data sectors at `addr`, verifying crc32c = `crc`.
    async fn read_verified(&self, addr: u64, sectors: u64, crc: u32) -> Result<Vec<u8>, PoolError> {
        self.read_checked(addr, sectors, crc, false).await
    }

    /// Read and verify; `scrub` reads every column and copy (parity included). Bad columns
    /// are rewritten from the verified data when `self.repair` is on.
    async fn read_checked(
        &self,
        addr: u64,
        sectors: u64,
        crc: u32,
        scrub: bool,
    ) -> Result<Vec<u8>, PoolError> {
        let verify = move |b: &[u8]| crate::checksum::crc32c(b) == crc;
        let r = if scrub {
            self.vdev.scrub(addr, sectors, &verify).await
        } else {
            self.vdev.read(addr, sectors, &verify).await
        };
        let out = r.map_err(|e| io_err("read", addr, e))?;
        if !out.bad_columns.is_empty() {
            self.stats
                .checksum_errors
                .fetch_add(out.bad_columns.len() as u64, Ordering::Relaxed);
            let obj = super::heal::reading_now();
            tracing::warn!(
                addr,
                object = ?obj.map(|o| o.0),
                offset = ?obj.map(|o| o.1),
                bad = ?out.bad_columns,
                heal = self.repair,
                "checksum errors on read: reconstructed from redundancy"
            );
            if self.repair
                && let Err(e) = self.vdev.repair(addr, &out).await
            {
                tracing::warn!(addr, error = %e, "self-healing rewrite failed");
            }
        }
        Ok(out.data)
    }

    /// Write one data record; returns its block pointer.
    pub async fn write_data(
        &self,
        logical: &[u8],
        kind: BlockKind,
        ctx: &mut AllocCtx<'_>,
    ) -> Result<BlockPtr, PoolError> {
        let planned = self.plan_checked(logical)?;
        let d = (planned.stored_len() / SECTOR) as u64;
        let asize = self.vdev.asize(d);
        let addr = ctx.take(asize)?;
        let (c, crc, parity) = self.seal_for_vdev(planned, addr, d);
        self.vdev
            .write_with_parity(addr, &c.buf, parity)
            .await
            .map_err(|e| io_err("write", addr, e))?;
        if kind == BlockKind::Data {
            self.count_data(logical.len(), c.buf.len());
        }
        Ok(BlockPtr {
            addr,
            birth: ctx.txg(),
            lsize: logical.len() as u32,
            psize: c.psize,
            asize: asize as u32,
            crc,
            comp: c.kind.code(),
            kind,
        })
    }

    /// Seal a planned extent of `d` stored sectors at `addr`: on a single-parity vdev
    /// the parity column comes out of the encryption loop when the codec can fuse it
    /// ([`Codec::seal_planned_with_parity`]); otherwise `None` and the vdev computes it.
    fn seal_for_vdev(
        &self,
        planned: Planned<'_>,
        addr: u64,
        d: u64,
    ) -> (crate::codec::Compressed, u32, Option<Vec<u8>>) {
        match self.vdev.parity_column_starts(addr, d) {
            Some(starts) => self.codec.seal_planned_with_parity(planned, addr, &starts),
            None => {
                let (c, crc) = self.codec.seal_planned(planned, addr);
                (c, crc, None)
            }
        }
    }

    /// Plan one logical extent for writing ([`Codec::plan`]: compressed if it pays,
    /// else borrowed raw until [`Codec::seal_planned`] encrypts it into the stored
    /// buffer): refused on a locked pool, and for an extent outside
    /// 1..=`MAX_EXTENT_BYTES` bytes.
    fn plan_checked<'a>(&self, logical: &'a [u8]) -> Result<Planned<'a>, PoolError> {
        if !self.unlocked {
            return Err(PoolError::Locked {
                pool: String::new(),
            });
        }
        if logical.is_empty() || logical.len() > crate::compress::MAX_EXTENT_BYTES {
            return Err(PoolError::Internal(format!(
                "extent of {} bytes outside 1..={}",
                logical.len(),
                crate::compress::MAX_EXTENT_BYTES
            )));
        }
        Ok(self.codec.plan(logical))
    }

    /// Count a data extent written: logical and stored bytes (the compression ratio).
    fn count_data(&self, lbytes: usize, pbytes: usize) {
        self.stats
            .data_lbytes
            .fetch_add(lbytes as u64, Ordering::Relaxed);
        self.stats
            .data_pbytes
            .fetch_add(pbytes as u64, Ordering::Relaxed);
    }

    /// Write one data record into a detached allocation (no txg yet: the caller attaches
    /// it when the record enters the tree, or gives it back). `birth` is left 0.
    pub async fn write_data_detached(
        &self,
        logical: &[u8],
        alloc: &Mutex<Allocator>,
    ) -> Result<BlockPtr, PoolError> {
        let planned = self.plan_checked(logical)?;
        let d = (planned.stored_len() / SECTOR) as u64;
        let asize = self.vdev.asize(d);
        let addr = alloc.lock().alloc_detached(asize)?;
        let (c, crc, parity) = self.seal_for_vdev(planned, addr, d);
        if let Err(e) = self.vdev.write_with_parity(addr, &c.buf, parity).await {
            if let Err(e2) = alloc.lock().unalloc_detached(addr, asize) {
                tracing::error!(error = %e2, "giving back a detached allocation failed");
            }
            return Err(io_err("write", addr, e));
        }
        self.count_data(logical.len(), c.buf.len());
        Ok(BlockPtr {
            addr,
            birth: 0,
            lsize: logical.len() as u32,
            psize: c.psize,
            asize: asize as u32,
            crc,
            comp: c.kind.code(),
            kind: BlockKind::Data,
        })
    }

    /// Read and decode one data (or space map) extent.
    pub async fn read_data(&self, bp: &BlockPtr) -> Result<Vec<u8>, PoolError> {
        if !self.unlocked {
            return Err(PoolError::Locked {
                pool: String::new(),
            });
        }
        let kind = CompressionKind::from_code(bp.comp).map_err(|e| PoolError::Corrupt {
            what: "block pointer",
            detail: e.to_string(),
        })?;
        // Verified against `bp.crc` by the vdev read; decoded in place.
        let stored = self
            .read_verified(bp.addr, bp.data_sectors(), bp.crc)
            .await?;
        self.codec
            .open_verified(stored, bp.addr, kind, bp.psize, bp.lsize)
            .map_err(|e| PoolError::Corrupt {
                what: "extent",
                detail: format!("at pool sector {}: {e}", bp.addr),
            })
    }

    /// Logical bytes `[a, b)` of an uncompressed data extent: the whole stored extent is
    /// read and its crc32c verified (the checksum covers all of it), but only the 4 KiB
    /// XTS data units that hold `[a, b)` are decrypted.
    pub async fn read_data_range(
        &self,
        bp: &BlockPtr,
        a: usize,
        b: usize,
    ) -> Result<Vec<u8>, PoolError> {
        if !self.unlocked {
            return Err(PoolError::Locked {
                pool: String::new(),
            });
        }
        let corrupt = |detail: String| PoolError::Corrupt {
            what: "extent",
            detail: format!("at pool sector {}: {detail}", bp.addr),
        };
        if bp.comp != CompressionKind::None.code() || bp.psize != bp.lsize {
            return Err(corrupt(format!(
                "partial read of a compressed extent (comp {}, psize {}, lsize {})",
                bp.comp, bp.psize, bp.lsize
            )));
        }
        if a >= b || b > bp.lsize as usize {
            return Err(PoolError::Internal(format!(
                "partial read [{a}, {b}) outside the {} logical bytes of the extent at {}",
                bp.lsize, bp.addr
            )));
        }
        // Verified against the whole extent's crc32c by the vdev read.
        let mut stored = self
            .read_verified(bp.addr, bp.data_sectors(), bp.crc)
            .await?;
        let ua = a / SECTOR;
        let ub = b.div_ceil(SECTOR);
        if ub * SECTOR > stored.len() {
            return Err(corrupt(format!(
                "{} stored bytes, logical size {}",
                stored.len(),
                bp.lsize
            )));
        }
        let units = &mut stored[ua * SECTOR..ub * SECTOR];
        let len = units.len() as u32;
        let crc = crc32c::crc32c(units);
        let clear = self
            .codec
            .open(
                units,
                bp.addr + ua as u64,
                crc,
                CompressionKind::None,
                len,
                len,
            )
            .map_err(|e| corrupt(e.to_string()))?;
        let off = ua * SECTOR;
        Ok(clear[a - off..b - off].to_vec())
    }

    /// Write one tree node whose children are all written; returns its block pointer.
    pub async fn write_node(
        &self,
        node: &Node,
        ctx: &mut AllocCtx<'_>,
    ) -> Result<BlockPtr, PoolError> {
        let (bp, stored) = self.seal_node(node, ctx)?;
        self.write_sealed(bp.addr, &stored).await?;
        Ok(bp)
    }

    /// Encode, allocate and seal one tree node whose children all have block pointers:
    /// its block pointer and the stored bytes to write at its address
    /// ([`BlockIo::write_sealed`]). Nothing is written yet.
    pub fn seal_node(
        &self,
        node: &Node,
        ctx: &mut AllocCtx<'_>,
    ) -> Result<(BlockPtr, Vec<u8>), PoolError> {
        let payload = node.encode_payload(ctx.txg())?;
        if payload.len() > super::node::MAX_PAYLOAD {
            return Err(PoolError::Internal(format!(
                "node payload of {} bytes too large",
                payload.len()
            )));
        }
        let ptrs: Vec<PhysPtr> = node.phys_ptrs()?.iter().map(PhysPtr::of).collect();
        let mut c = self.codec.compress(&payload);
        let clear_len = ClearHeader::padded_len(ptrs.len());
        let total = clear_len + c.buf.len();
        let d = (total / SECTOR) as u64;
        let asize = self.vdev.asize(d);
        let addr = ctx.take(asize)?;
        let payload_addr = addr + (clear_len / SECTOR) as u64;
        let payload_crc = self.codec.seal(&mut c.buf, payload_addr);
        let hdr = ClearHeader {
            level: node.level,
            birth: ctx.txg(),
            payload_sectors: (c.buf.len() / SECTOR) as u32,
            payload_psize: c.psize,
            payload_lsize: payload.len() as u32,
            payload_crc,
            payload_comp: c.kind.code(),
            ptrs,
        };
        let mut stored = hdr.encode();
        stored.extend_from_slice(&c.buf);
        let crc = crc32c::crc32c(&stored);
        let bp = BlockPtr {
            addr,
            birth: ctx.txg(),
            lsize: payload.len() as u32,
            psize: total as u32,
            asize: asize as u32,
            crc,
            comp: c.kind.code(),
            kind: BlockKind::Node,
        };
        Ok((bp, stored))
    }

    /// Write the stored bytes of a sealed node ([`BlockIo::seal_node`]) at `addr`.
    pub async fn write_sealed(&self, addr: u64, stored: &[u8]) -> Result<(), PoolError> {
        self.vdev
            .write(addr, stored)
            .await
            .map_err(|e| io_err("node write", addr, e))
    }

    /// Read a node's stored bytes and its clear header (keyless).
    pub async fn read_node_raw(
        &self,
        bp: &BlockPtr,
    ) -> Result<(Vec<u8>, ClearHeader, usize), PoolError> {
        self.read_node_checked(bp, false).await
    }

    /// [`BlockIo::read_node_raw`], optionally as a scrub read (every column and copy).
    pub async fn read_node_checked(
        &self,
        bp: &BlockPtr,
        scrub: bool,
    ) -> Result<(Vec<u8>, ClearHeader, usize), PoolError> {
        let stored = self
            .read_checked(bp.addr, bp.data_sectors(), bp.crc, scrub)
            .await?;
        let (hdr, clear_len) = ClearHeader::decode(&stored)?;
        // birth 0: a keyless walk that only knows the physical pointer.
        if bp.birth != 0 && hdr.birth != bp.birth {
            return Err(PoolError::Corrupt {
                what: "tree node",
                detail: format!(
                    "at pool sector {}: birth txg {} but parent expects {} (stale or misdirected write)",
                    bp.addr, hdr.birth, bp.birth
                ),
            });
        }
        if clear_len + hdr.payload_sectors as usize * SECTOR != stored.len() {
            return Err(PoolError::Corrupt {
                what: "tree node",
                detail: format!(
                    "at pool sector {}: sizes disagree with block pointer",
                    bp.addr
                ),
            });
        }
        Ok((stored, hdr, clear_len))
    }

    /// Load a node (through the cache). `level`: the level the parent expects.
    pub async fn load_node(
        &self,
        bp: &BlockPtr,
        level: Option<u8>,
    ) -> Result<Arc<Node>, PoolError> {
        if let Some(n) = self.cache.get(bp) {
            return Ok(n);
        }
        if !self.unlocked {
            return Err(PoolError::Locked {
                pool: String::new(),
            });
        }
        let (mut stored, hdr, clear_len) = self.read_node_raw(bp).await?;
        let kind =
            CompressionKind::from_code(hdr.payload_comp).map_err(|e| PoolError::Corrupt {
                what: "tree node",
                detail: e.to_string(),
            })?;
        let payload_addr = bp.addr + (clear_len / SECTOR) as u64;
        let payload = self
            .codec
            .open(
                &mut stored[clear_len..],
                payload_addr,
                hdr.payload_crc,
                kind,
                hdr.payload_psize,
                hdr.payload_lsize,
            )
            .map_err(|e| PoolError::Corrupt {
                what: "tree node",
                detail: format!("at pool sector {}: {e}", bp.addr),
            })?;
        let node = Node::decode_payload(&payload, Some(*bp))?;
        if node.level != hdr.level || level.is_some_and(|l| l != node.level) {
            return Err(PoolError::Corrupt {
                what: "tree node",
                detail: format!(
                    "at pool sector {}: level {} where {:?} expected",
                    bp.addr, node.level, level
                ),
            });
        }
        let node = Arc::new(node);
        self.cache.put(bp, node.clone());
        Ok(node)
    }

    /// Keylessly verify one extent's stored bytes against its crc.
    pub async fn verify_extent(
        &self,
        addr: u64,
        sectors: u64,
        crc: u32,
    ) -> Result<Vec<u8>, PoolError> {
        self.read_verified(addr, sectors, crc).await
    }

    /// Keylessly scrub one extent: read every column and copy, verify, repair bad ones.
    pub async fn scrub_extent(
        &self,
        addr: u64,
        sectors: u64,
        crc: u32,
    ) -> Result<Vec<u8>, PoolError> {
        self.read_checked(addr, sectors, crc, true).await
    }

    /// Flush every device.
    pub async fn flush(&self) -> Result<(), PoolError> {
        self.vdev
            .flush()
            .await
            .map_err(|e| PoolError::Io(format!("flush: {e}")))
    }
}
