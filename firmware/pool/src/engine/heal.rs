//! Self-healing bookkeeping: the bounded list of damaged blocks (reads that no
//! combination of redundancy could verify), error-counter reset, and the extent
//! locator diagnostics and tests use to aim bit rot at one extent's columns.
//!
//! The healing itself happens on every read in [`super::io::BlockIo`]: the vdev
//! reconstructs, and the bad columns are rewritten through [`crate::raid::Vdev::repair`]
//! unless the pool is read-only (then the errors are only counted). A locked pool heals
//! too (the verified bytes are ciphertext); its damaged blocks carry no object (the
//! names need the key).

use super::bptr::BlockPtr;
use super::error::PoolError;
use super::keys;
use super::pool::Pool;
use super::tree;
use crate::store::ObjectId;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;

tokio::task_local! {
    /// The object and offset a data read is for (so heal events can name them).
    static READING: (ObjectId, u64);
}

/// Run `f`, a read of object `object` at `offset`, so that heal events inside name them.
pub(crate) async fn reading<F: std::future::Future>(
    object: ObjectId,
    offset: u64,
    f: F,
) -> F::Output {
    READING.scope((object, offset), f).await
}

/// The object and offset of the data read running in this task, if any.
pub(crate) fn reading_now() -> Option<(ObjectId, u64)> {
    READING.try_with(|v| *v).ok()
}

/// Most damaged blocks remembered (the oldest are dropped first).
pub const MAX_DAMAGED: usize = 256;

/// A block no redundancy could recover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedBlock {
    /// The object it belongs to; `None` for metadata or when found by a keyless scrub
    /// (which does not know which object owns a block).
    pub object: Option<ObjectId>,
    /// Byte offset in the object (0 when the object is unknown).
    pub offset: u64,
    /// Pool address (4 KiB sectors) of the extent.
    pub addr: u64,
}

/// Bounded, de-duplicated list of damaged blocks since import (or the last clear).
#[derive(Debug, Default)]
pub struct DamageLog {
    list: Mutex<VecDeque<DamagedBlock>>,
}

impl DamageLog {
    /// Remember a damaged block (once; the oldest entry goes when full).
    pub fn record(&self, d: DamagedBlock) {
        let mut l = self.list.lock();
        if let Some(pos) = l.iter().position(|x| x.addr == d.addr) {
            // A read that knows the object beats a keyless scrub that does not.
            if d.object.is_some() {
                l[pos] = d;
            }
            return;
        }
        if l.len() == MAX_DAMAGED {
            l.pop_front();
        }
        l.push_back(d);
    }

    /// The damaged blocks, oldest first.
    pub fn list(&self) -> Vec<DamagedBlock> {
        self.list.lock().iter().copied().collect()
    }

    /// Forget everything.
    pub fn clear(&self) {
        self.list.lock().clear();
    }
}

/// Where one column copy of an extent lives on the devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnLocation {
    /// Column index in the extent (parity columns first for RAID-Z).
    pub column: usize,
    /// Whether the column holds parity.
    pub parity: bool,
    /// Which copy of the column (mirrored layouts; 0 is the one plain reads use first).
    pub copy: usize,
    /// Device index in the layout.
    pub device: usize,
    /// Byte offset on the device.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Pool {
    /// Reset the per-device error counters, the checksum error count and the list of
    /// damaged blocks (`ingot pool clear`). A FAULTED device that is still present is
    /// retried: it becomes RESILVERING and is resilvered for the txgs it missed.
    pub fn clear_errors(&self) {
        let i = &self.inner;
        i.io.vdev.clear_error_counts();
        super::devices::retry_faulted(i);
        i.io.stats.checksum_errors.store(0, Ordering::Relaxed);
        i.io.stats.damaged.clear();
        tracing::info!(pool = %i.id.name, "error counters cleared");
    }

    /// The damaged blocks reads and scrubs found (also in [`Pool::status`]).
    pub fn damaged(&self) -> Vec<DamagedBlock> {
        self.inner.io.stats.damaged.list()
    }

    /// Block pointer of the data record holding byte `offset` of object `id`, in the
    /// tree readers see (`None` for a hole). Needs the key (unlocked pool).
    pub async fn extent_of(
        &self,
        id: ObjectId,
        offset: u64,
    ) -> Result<Option<BlockPtr>, PoolError> {
        let i = &self.inner;
        if i.locked {
            return Err(PoolError::Locked {
                pool: i.id.name.clone(),
            });
        }
        let root = i.readable.read().0.clone();
        let rec = offset / u64::from(i.id.record_size);
        match tree::get(&i.io, &root, &keys::extent(id, rec)).await? {
            Some(v) => Ok(Some(BlockPtr::from_bytes(&v)?)),
            None => Ok(None),
        }
    }

    /// Every column copy of the extent `bp` on the devices (diagnostics and fault tests).
    pub fn locate(&self, bp: &BlockPtr) -> Vec<ColumnLocation> {
        let i = &self.inner;
        let map = i.io.vdev.map(bp.addr, bp.data_sectors());
        let mut out = Vec::new();
        for (ci, col) in map.columns.iter().enumerate() {
            for (k, loc) in col.copies.iter().enumerate() {
                out.push(ColumnLocation {
                    column: ci,
                    parity: matches!(col.role, crate::raid::layout::Role::Parity(_)),
                    copy: k,
                    device: loc.device,
                    offset: i.id.data_offset + loc.sector * 4096,
                    len: col.sectors * 4096,
                });
            }
        }
        out
    }
}

impl super::pool::Inner {
    /// A data read of object `id` at `offset` failed: remember the block as damaged
    /// (anything but a locked pool means the stored bytes could not be recovered).
    pub(crate) fn damaged_read(&self, id: ObjectId, offset: u64, bp: &BlockPtr, e: &PoolError) {
        if matches!(e, PoolError::Locked { .. }) {
            return;
        }
        tracing::error!(
            pool = %self.id.name,
            object = id,
            offset,
            addr = bp.addr,
            error = %e,
            "unrecoverable data read: no redundancy verifies"
        );
        self.io.stats.damaged.record(DamagedBlock {
            object: Some(id),
            offset,
            addr: bp.addr,
        });
    }
}
