//! A vdev: one RAID layout over a set of block devices, doing extent I/O.
//!
//! Writes are full-stripe: the extent's parity (or copies) is computed from the data
//! and every column is written concurrently; parity is never read-modified-written.
//! Reads fetch the data columns and check them with the caller's `verify` (the
//! extent's crc32c from its block pointer). On a device error, a missing device or a
//! failed verify, every column (and copy) is read and the vdev tries each combination
//! of up to `parity` columns to rebuild (for mirrors: each copy) until `verify`
//! passes; if none does the read fails with [`RaidError::Unrecoverable`]. Wrong data
//! is never returned. [`Vdev::repair`] then rewrites the bad columns (self-healing).
//! Everything works on stored bytes (ciphertext), so it needs no keys.
//!
//! Every device slot has a runtime [`DeviceState`] (see [`state`]): a write or flush
//! error faults the device at once (it missed data), read errors fault it after
//! [`state::READ_FAULT_THRESHOLD`], a lost device is REMOVED. Faulted, removed and
//! missing devices get no I/O; a RESILVERING one gets writes but no reads. Each change
//! is logged and broadcast as a [`DeviceEvent`].

use super::layout::{Column, ExtentMap, Layout, Location, Role};
use super::parity;
use crate::compress::SECTOR_SIZE;
use futures::future::join_all;
use ingot_hal::blockdev::{BlockDevice, BlockError, WriteFlags};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub mod queue;
pub mod state;
pub use state::{DeviceEvent, DeviceState, VdevHealth};

/// Most times one write is reissued because its device slots kept changing under it.
const MAX_WRITE_REISSUES: usize = 4;

/// Most combinations of mirror copies tried for one extent.
const MAX_COPY_COMBINATIONS: usize = 4096;

const SECTOR: u64 = SECTOR_SIZE as u64;

/// Why a vdev operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RaidError {
    /// The layout, device count or device geometry is unusable.
    #[error("invalid vdev configuration: {0}")]
    Config(String),
    /// More devices are missing than the layout tolerates.
    #[error("{missing} of {devices} devices missing; {layout:?} tolerates {tolerated}")]
    TooManyMissing {
        /// Layout.
        layout: Layout,
        /// Devices in the vdev.
        devices: usize,
        /// Devices missing.
        missing: usize,
        /// Devices the layout may lose.
        tolerated: usize,
    },
    /// An extent buffer that is not whole 4 KiB sectors.
    #[error("extent of {len} bytes is not whole 4 KiB sectors")]
    Misaligned {
        /// Buffer length.
        len: usize,
    },
    /// An extent past the end of the address space.
    #[error("extent at sector {addr} ({asize} allocated sectors) runs past capacity {capacity}")]
    OutOfRange {
        /// Pool address (sectors).
        addr: u64,
        /// Allocated sectors of the extent.
        asize: u64,
        /// Address-space size.
        capacity: u64,
    },
    /// Too many columns of a write failed for the extent to be readable.
    #[error(
        "write at sector {addr}: columns lost beyond redundancy {tolerated}; failures {failed:?}"
    )]
    WriteFailed {
        /// Pool address.
        addr: u64,
        /// (device index, error) of each failed device write.
        failed: Vec<(usize, String)>,
        /// Columns the layout could lose.
        tolerated: usize,
    },
    /// No combination of columns or copies passes verification.
    #[error("extent at sector {addr} ({sectors} data sectors) is unrecoverable: {reason}")]
    Unrecoverable {
        /// Pool address.
        addr: u64,
        /// Data sectors.
        sectors: u64,
        /// What was seen.
        reason: String,
    },
    /// A repair could not rewrite the bad columns.
    #[error("repair of extent at sector {addr} failed: {reason}")]
    Repair {
        /// Pool address.
        addr: u64,
        /// What failed.
        reason: String,
    },
    /// Flush failed on more devices than the layout tolerates.
    #[error("flush failed on devices {failed:?}")]
    Flush {
        /// (device index, error).
        failed: Vec<(usize, String)>,
    },
}

/// A verified extent and what it took to get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The extent's data (stored bytes), verified.
    pub data: Vec<u8>,
    /// Columns found bad: (device index, device byte offset, length in bytes). They
    /// failed to read or held wrong bytes; missing devices are not listed.
    /// [`Vdev::repair`] rewrites them.
    pub bad_columns: Vec<(usize, u64, u64)>,
    /// True if the data came from redundancy (reconstruction or another copy) rather
    /// than from the first read of the data columns.
    pub repaired: bool,
}

/// What a write did when it succeeded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Device writes that failed (tolerated by redundancy): (device index, error).
    /// Missing devices are listed with the error "missing".
    pub failed: Vec<(usize, String)>,
}

/// Error counters of one device since the vdev was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceErrorCounts {
    /// Reads the device failed.
    pub read: u64,
    /// Writes or flushes the device failed.
    pub write: u64,
    /// Columns the device returned with wrong contents.
    pub checksum: u64,
}

#[derive(Debug, Default)]
struct Counters {
    read: AtomicU64,
    write: AtomicU64,
    checksum: AtomicU64,
    /// Read errors counted towards faulting (reset by clearing and by state changes).
    strikes: AtomicU64,
}

/// Whether `held` (a slot's device or outgoing device) is `dev` itself.
fn holds(held: &Option<Arc<dyn BlockDevice>>, dev: &Arc<dyn BlockDevice>) -> bool {
    held.as_ref().is_some_and(|d| Arc::ptr_eq(d, dev))
}

/// One device slot: the device (if any), its state and why it is in it.
struct Slot {
    dev: Option<Arc<dyn BlockDevice>>,
    state: DeviceState,
    reason: Option<String>,
    /// Bumped whenever writes start going somewhere else: another device in the slot, or
    /// the slot becoming writable again. A write that straddles a bump is reissued to what
    /// the slot holds now (see [`Vdev::write_extent`]), so no write in flight during a
    /// replace or reattach misses the new device.
    generation: u64,
    /// While a healthy device is being replaced: the old device. It still serves reads of
    /// the column (so the pool keeps its redundancy during the resilver) and takes the
    /// column's new writes, until the resilver completes and it is detached. Held in
    /// memory only; an error on it just detaches it.
    outgoing: Option<Arc<dyn BlockDevice>>,
}

impl Slot {
    /// The device reads of the column go to, if any.
    fn reader(&self) -> Option<&Arc<dyn BlockDevice>> {
        if self.state.readable() {
            self.dev.as_ref()
        } else if self.state == DeviceState::Resilvering {
            self.outgoing.as_ref()
        } else {
            None
        }
    }
}

/// Why one device I/O did not happen.
enum IoFail {
    Missing,
    Error(BlockError),
}

impl fmt::Display for IoFail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoFail::Missing => f.write_str("missing"),
            IoFail::Error(e) => write!(f, "{e}"),
        }
    }
}

/// What was read for one copy of one column.
enum Got {
    Bytes(Vec<u8>),
    Failed,
    Missing,
}

/// A RAID layout over devices.
pub struct Vdev {
    layout: Layout,
    slots: Vec<parking_lot::RwLock<Slot>>,
    data_offset: u64,
    rows: u64,
    counters: Vec<Counters>,
    events: tokio::sync::broadcast::Sender<DeviceEvent>,
    /// Per slot: the write queue that merges small contiguous writes (`queue.rs`).
    queues: Vec<Arc<queue::WriteQueue>>,
}

impl fmt::Debug for Vdev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vdev")
            .field("layout", &self.layout)
            .field("devices", &self.slots.len())
            .field("states", &self.states())
            .field("data_offset", &self.data_offset)
            .field("rows", &self.rows)
            .finish()
    }
}

impl Vdev {
    /// A vdev of `layout` over `devices` (`None` = missing). Each device's data area is
    /// bytes `[data_offset_bytes, data_offset_bytes + data_len_bytes)`; both must be
    /// multiples of 4096 and every present device must hold the area.
    pub fn new(
        layout: Layout,
        devices: Vec<Option<Arc<dyn BlockDevice>>>,
        data_offset_bytes: u64,
        data_len_bytes: u64,
    ) -> Result<Vdev, RaidError> {
        let n = devices.len();
        layout.check_devices(n).map_err(RaidError::Config)?;
        if !data_offset_bytes.is_multiple_of(SECTOR) || !data_len_bytes.is_multiple_of(SECTOR) {
            return Err(RaidError::Config(format!(
                "data area {data_offset_bytes}+{data_len_bytes} is not 4 KiB aligned"
            )));
        }
        let end = data_offset_bytes
            .checked_add(data_len_bytes)
            .ok_or_else(|| RaidError::Config("data area overflows".into()))?;
        for (i, d) in devices.iter().enumerate() {
            let Some(d) = d else { continue };
            fits(d.as_ref(), end).map_err(|e| RaidError::Config(format!("device {i} ({e})")))?;
        }
        let missing = devices.iter().filter(|d| d.is_none()).count();
        let pair_lost = layout == Layout::Raid10
            && devices
                .chunks(2)
                .any(|pair| pair.iter().all(Option::is_none));
        let tolerated = match layout {
            // RAID 10 survives one loss per pair.
            Layout::Raid10 => n / 2,
            _ => layout.redundancy(n),
        };
        if missing > tolerated || pair_lost {
            return Err(RaidError::TooManyMissing {
                layout,
                devices: n,
                missing,
                tolerated,
            });
        }
        Ok(Vdev {
            layout,
            counters: (0..n).map(|_| Counters::default()).collect(),
            slots: devices
                .into_iter()
                .map(|dev| {
                    let state = if dev.is_some() {
                        DeviceState::Online
                    } else {
                        DeviceState::Missing
                    };
                    parking_lot::RwLock::new(Slot {
                        dev,
                        state,
                        reason: None,
                        generation: 0,
                        outgoing: None,
                    })
                })
                .collect(),
            data_offset: data_offset_bytes,
            rows: data_len_bytes / SECTOR,
            events: tokio::sync::broadcast::channel(256).0,
            queues: (0..n).map(|_| Arc::default()).collect(),
        })
    }

    /// Device write commands issued so far for extents (every column and copy, repairs
    /// and rebuilds included; writes merged by the write queue count once; label writes
    /// and writes to the outgoing device of a replace are not counted).
    pub fn write_commands(&self) -> u64 {
        self.queues
            .iter()
            .map(|q| q.stats.commands.load(Ordering::Relaxed))
            .sum()
    }

    /// Column writes that went to a device as part of a merged command.
    pub fn merged_writes(&self) -> u64 {
        self.queues
            .iter()
            .map(|q| q.stats.merged.load(Ordering::Relaxed))
            .sum()
    }

    /// Check that `dev` can hold this vdev's data area (block size, capacity).
    pub fn check_device(&self, dev: &dyn BlockDevice) -> Result<(), RaidError> {
        fits(dev, self.data_offset + self.rows * SECTOR)
            .map_err(|e| RaidError::Config(format!("device {e}")))
    }

    /// Every slot's state, by column.
    pub fn states(&self) -> Vec<DeviceState> {
        self.slots.iter().map(|s| s.read().state).collect()
    }

    /// Column `i`'s state and the reason it is in it.
    pub fn state(&self, i: usize) -> Option<(DeviceState, Option<String>)> {
        self.slots.get(i).map(|s| {
            let s = s.read();
            (s.state, s.reason.clone())
        })
    }

    /// The device in slot `i`, whatever its state.
    pub fn device(&self, i: usize) -> Option<Arc<dyn BlockDevice>> {
        self.slots.get(i).and_then(|s| s.read().dev.clone())
    }

    /// The device in slot `i` if writes go to it.
    pub fn writable_device(&self, i: usize) -> Option<Arc<dyn BlockDevice>> {
        let s = self.slots.get(i)?.read();
        if s.state.writable() {
            s.dev.clone()
        } else {
            None
        }
    }

    fn readable_device(&self, i: usize) -> Option<Arc<dyn BlockDevice>> {
        self.slots.get(i)?.read().reader().cloned()
    }

    /// Whether column `i` can be read (its device, or the outgoing one of a replace).
    fn column_readable(&self, i: usize) -> bool {
        self.slots
            .get(i)
            .is_some_and(|s| s.read().reader().is_some())
    }

    /// Keep (or, with `None`, detach) the old device of a column being replaced: see
    /// [`Slot::outgoing`]. Returns the device detached.
    pub fn set_outgoing(
        &self,
        i: usize,
        dev: Option<Arc<dyn BlockDevice>>,
    ) -> Option<Arc<dyn BlockDevice>> {
        let slot = self.slots.get(i)?;
        let mut s = slot.write();
        if let Some(d) = &dev {
            tracing::info!(column = i, device = %d.identity().location, "old device serves reads until the resilver completes");
        }
        // Writes in flight now are reissued to reach the outgoing device too.
        s.generation += 1;
        std::mem::replace(&mut s.outgoing, dev)
    }

    /// Receive every device state change from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<DeviceEvent> {
        self.events.subscribe()
    }

    /// Set column `i`'s state (and, with `Some(dev)`, put another device in the slot).
    /// Logs and broadcasts the change; returns the previous state.
    pub fn set_state(
        &self,
        i: usize,
        to: DeviceState,
        dev: Option<Option<Arc<dyn BlockDevice>>>,
        reason: &str,
    ) -> Option<DeviceState> {
        let slot = self.slots.get(i)?;
        let (from, location) = {
            let mut s = slot.write();
            let from = s.state;
            if let Some(d) = dev {
                s.dev = d;
                s.generation += 1;
                s.outgoing = None;
            } else if to.writable() && !from.writable() {
                s.generation += 1;
            }
            s.state = to;
            s.reason = match to {
                DeviceState::Online => None,
                _ => Some(reason.to_string()),
            };
            (from, s.dev.as_ref().map(|d| d.identity().location))
        };
        self.counters[i].strikes.store(0, Ordering::Relaxed);
        self.emit(i, from, to, location, reason);
        Some(from)
    }

    /// Move column `i` from `from` to `to` only if it is in `from` now and `dev` is still
    /// its device.
    fn transition(
        &self,
        i: usize,
        dev: &Arc<dyn BlockDevice>,
        from: &[DeviceState],
        to: DeviceState,
        reason: &str,
    ) -> bool {
        let Some(slot) = self.slots.get(i) else {
            return false;
        };
        let (was, location) = {
            let mut s = slot.write();
            if !from.contains(&s.state) || !holds(&s.dev, dev) {
                return false;
            }
            let was = s.state;
            if to.writable() && !was.writable() {
                s.generation += 1;
            }
            s.state = to;
            s.reason = Some(reason.to_string());
            (was, s.dev.as_ref().map(|d| d.identity().location))
        };
        self.emit(i, was, to, location, reason);
        true
    }

    fn emit(
        &self,
        column: usize,
        from: DeviceState,
        to: DeviceState,
        device: Option<String>,
        reason: &str,
    ) {
        if from == to {
            return;
        }
        match to {
            DeviceState::Faulted | DeviceState::Removed | DeviceState::Missing => {
                tracing::error!(column, device = ?device, from = from.name(), to = to.name(), reason, "device state changed")
            }
            _ => {
                tracing::info!(column, device = ?device, from = from.name(), to = to.name(), reason, "device state changed")
            }
        }
        // No receivers is fine.
        let _ = self.events.send(DeviceEvent {
            column,
            device,
            from,
            to,
            reason: reason.to_string(),
            states: self.states(),
            health: self.health(),
        });
    }

    /// Account a failed I/O of `dev`, column `i`'s device when the I/O was issued: count
    /// it, and a lost device is REMOVED, a failed write or flush FAULTS it at once (it
    /// missed data), reads fault it after [`state::READ_FAULT_THRESHOLD`] errors.
    ///
    /// A device that is no longer column `i`'s (a replace or a hot spare took the column
    /// while the I/O was in flight) changes nothing: the column's new device is not to
    /// blame for the old one's errors.
    pub fn note_error(&self, i: usize, dev: &Arc<dyn BlockDevice>, e: &BlockError, write: bool) {
        if !self.is_device(i, dev) {
            tracing::debug!(column = i, device = %dev.identity().location, error = %e, "error of a device no longer in the column; ignored");
            return;
        }
        let Some(counters) = self.counters.get(i) else {
            return;
        };
        if write {
            counters.write.fetch_add(1, Ordering::Relaxed);
        } else {
            counters.read.fetch_add(1, Ordering::Relaxed);
        }
        let live = [
            DeviceState::Online,
            DeviceState::Stale,
            DeviceState::Resilvering,
        ];
        if matches!(e, BlockError::DeviceLost { .. }) {
            self.transition(i, dev, &live, DeviceState::Removed, &e.to_string());
            return;
        }
        if write {
            self.transition(
                i,
                dev,
                &live,
                DeviceState::Faulted,
                &format!("write failed: {e}"),
            );
            return;
        }
        let strikes = counters.strikes.fetch_add(1, Ordering::Relaxed) + 1;
        if strikes >= state::READ_FAULT_THRESHOLD {
            self.transition(
                i,
                dev,
                &live,
                DeviceState::Faulted,
                &format!("{strikes} read errors, last: {e}"),
            );
        }
    }

    /// Whether `dev` is column `i`'s device now.
    fn is_device(&self, i: usize, dev: &Arc<dyn BlockDevice>) -> bool {
        self.slots.get(i).is_some_and(|s| holds(&s.read().dev, dev))
    }

    /// Whether the readable devices still cover the layout.
    pub fn health(&self) -> VdevHealth {
        self.health_if_down(&[])
    }

    /// [`Vdev::health`] if the columns in `extra` were unreadable too.
    pub fn health_if_down(&self, extra: &[usize]) -> VdevHealth {
        let down: Vec<bool> = (0..self.slots.len())
            .map(|i| !self.column_readable(i) || extra.contains(&i))
            .collect();
        let count = down.iter().filter(|d| **d).count();
        if count == 0 {
            return VdevHealth::Online;
        }
        let lost = match self.layout {
            Layout::Raid10 => down.chunks(2).any(|p| p.iter().all(|d| *d)),
            _ => count > self.redundancy(),
        };
        if lost {
            VdevHealth::Failed
        } else {
            VdevHealth::Degraded
        }
    }

    /// The layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Number of devices (present or not).
    pub fn device_count(&self) -> usize {
        self.slots.len()
    }

    /// Size of the pool address space in 4 KiB sectors (what the allocator hands out;
    /// for RAID-Z it includes parity).
    pub fn capacity_sectors(&self) -> u64 {
        self.layout.capacity(self.slots.len(), self.rows)
    }

    /// Sectors to allocate for an extent of `data_sectors` (parity and padding included).
    pub fn asize(&self, data_sectors: u64) -> u64 {
        self.layout.asize(self.slots.len(), data_sectors)
    }

    /// How many devices may be missing or failed without losing data.
    pub fn redundancy(&self) -> usize {
        self.layout.redundancy(self.slots.len())
    }

    /// The device locations of an extent (for tests, scrub tools and docs).
    pub fn map(&self, addr_sector: u64, data_sectors: u64) -> ExtentMap {
        self.layout.map(self.slots.len(), addr_sector, data_sectors)
    }

    /// Error counters of every device, by device index.
    pub fn error_counts(&self) -> Vec<DeviceErrorCounts> {
        self.counters
            .iter()
            .map(|c| DeviceErrorCounts {
                read: c.read.load(Ordering::Relaxed),
                write: c.write.load(Ordering::Relaxed),
                checksum: c.checksum.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Reset every device's error counters to zero.
    pub fn clear_error_counts(&self) {
        for c in &self.counters {
            c.read.store(0, Ordering::Relaxed);
            c.write.store(0, Ordering::Relaxed);
            c.checksum.store(0, Ordering::Relaxed);
            c.strikes.store(0, Ordering::Relaxed);
        }
    }

    fn byte_offset(&self, loc: Location) -> u64 {
        self.data_offset + loc.sector * SECTOR
    }

    fn check_extent(&self, addr: u64, data_sectors: u64) -> Result<ExtentMap, RaidError> {
        let asize = self.asize(data_sectors);
        let capacity = self.capacity_sectors();
        if addr.checked_add(asize).is_none_or(|end| end > capacity) {
            return Err(RaidError::OutOfRange {
                addr,
                asize,
                capacity,
            });
        }
        Ok(self.map(addr, data_sectors))
    }

    async fn read_at(&self, loc: Location, buf: &mut [u8]) -> Result<(), IoFail> {
        let Some(dev) = self.readable_device(loc.device) else {
            return Err(IoFail::Missing);
        };
        let offset = self.byte_offset(loc);
        if self.is_outgoing(loc.device, &dev) {
            // The old device of a replace: a failure only detaches it (the column's own
            // device, being rebuilt, is not to blame); the read goes on from redundancy.
            return dev.read(offset, buf).await.map_err(|e| {
                tracing::warn!(device = loc.device, error = %e, "outgoing device failed a read; detached");
                self.detach_outgoing(loc.device, &dev);
                IoFail::Missing
            });
        }
        dev.read(offset, buf).await.map_err(|e| {
            tracing::warn!(device = loc.device, offset, len = buf.len(), error = %e, "vdev read failed");
            self.note_error(loc.device, &dev, &e, false);
            IoFail::Error(e)
        })
    }

    /// Whether `dev` is column `i`'s outgoing device (the old one of a replace).
    fn is_outgoing(&self, i: usize, dev: &Arc<dyn BlockDevice>) -> bool {
        self.slots
            .get(i)
            .is_some_and(|s| holds(&s.read().outgoing, dev))
    }

    /// Drop column `i`'s outgoing device if it is still `dev`.
    fn detach_outgoing(&self, i: usize, dev: &Arc<dyn BlockDevice>) {
        if let Some(s) = self.slots.get(i) {
            let mut s = s.write();
            if holds(&s.outgoing, dev) {
                s.outgoing = None;
            }
        }
    }

    fn generation(&self, i: usize) -> u64 {
        self.slots.get(i).map_or(0, |s| s.read().generation)
    }

    /// Write one column copy: to the slot's device and, during a replace, to the
    /// outgoing device too (which keeps it readable; a failure there only detaches it).
    async fn write_at(&self, loc: Location, buf: &[u8]) -> Result<(), IoFail> {
        // One look at the slot: its device (if writes go to it) and any outgoing device.
        let (dev, outgoing) = self.slots.get(loc.device).map_or((None, None), |s| {
            let s = s.read();
            let dev = if s.state.writable() {
                s.dev.clone()
            } else {
                None
            };
            (dev, s.outgoing.clone())
        });
        let Some(old) = outgoing else {
            return self.write_to(loc, dev, buf).await;
        };
        let offset = self.byte_offset(loc);
        let (r, o) = futures::join!(
            self.write_to(loc, dev, buf),
            old.write(offset, buf, WriteFlags::NONE)
        );
        if let Err(e) = o {
            tracing::warn!(device = loc.device, error = %e, "outgoing device failed a write; detached");
            self.detach_outgoing(loc.device, &old);
        }
        r
    }

    /// Write one column copy to the slot's device only.
    async fn write_primary(&self, loc: Location, buf: &[u8]) -> Result<(), IoFail> {
        self.write_to(loc, self.writable_device(loc.device), buf)
            .await
    }

    /// Write one column copy to `dev`, the slot's device (`None`: it takes no writes).
    async fn write_to(
        &self,
        loc: Location,
        dev: Option<Arc<dyn BlockDevice>>,
        buf: &[u8],
    ) -> Result<(), IoFail> {
        let Some(dev) = dev else {
            return Err(IoFail::Missing);
        };
        let offset = self.byte_offset(loc);
        let q = &self.queues[loc.device];
        q.write(&dev, offset, buf).await.map_err(|e| {
            tracing::warn!(device = loc.device, offset, len = buf.len(), error = %e, "vdev write failed");
            self.note_error(loc.device, &dev, &e, true);
            IoFail::Error(e)
        })
    }

    /// Write an extent (a multiple of 4096 bytes) at pool address `addr_sector`,
    /// tolerating up to the layout's redundancy in missing or failing devices.
    pub async fn write(&self, addr_sector: u64, data: &[u8]) -> Result<(), RaidError> {
        self.write_extent(addr_sector, data).await.map(|_| ())
    }

    /// For an extent of `data_sectors` at `addr_sector` on a single-parity layout
    /// (RAID-Z1): the first sector (within the extent) of each data column, in data
    /// order, for a caller that computes the parity column itself while it produces the
    /// data (see [`Vdev::write_with_parity`]). The first data column is the longest;
    /// the parity has as many sectors. `None` on any other layout.
    pub fn parity_column_starts(&self, addr_sector: u64, data_sectors: u64) -> Option<Vec<usize>> {
        let map = self.map(addr_sector, data_sectors);
        if map.parity != 1 {
            return None;
        }
        let starts: Vec<usize> = map
            .data_columns()
            .map(|c| match c.role {
                Role::Data { first } => Some(first as usize),
                Role::Parity(_) => None,
            })
            .collect::<Option<_>>()?;
        let first_is_longest = map.data_columns().next()?.sectors == map.width;
        first_is_longest.then_some(starts)
    }

    /// [`Vdev::write`] with the parity column already computed by the caller (the XOR
    /// of the data columns [`Vdev::parity_column_starts`] describes, as many bytes as
    /// the first data column). `None`, or parity of another length, or a layout that
    /// is not single parity: the vdev computes the parity itself.
    pub async fn write_with_parity(
        &self,
        addr_sector: u64,
        data: &[u8],
        parity: Option<Vec<u8>>,
    ) -> Result<(), RaidError> {
        self.write_extent_with(addr_sector, data, parity)
            .await
            .map(|_| ())
    }

    /// [`Vdev::write`], also reporting the device writes that failed but were tolerated.
    pub async fn write_extent(
        &self,
        addr_sector: u64,
        data: &[u8],
    ) -> Result<WriteOutcome, RaidError> {
        self.write_extent_with(addr_sector, data, None).await
    }

    /// [`Vdev::write_extent`], with the parity column precomputed when `parity` is given
    /// (used only if it fits a single-parity map).
    async fn write_extent_with(
        &self,
        addr_sector: u64,
        data: &[u8],
        parity: Option<Vec<u8>>,
    ) -> Result<WriteOutcome, RaidError> {
        if !data.len().is_multiple_of(SECTOR_SIZE) {
            return Err(RaidError::Misaligned { len: data.len() });
        }
        let map = self.check_extent(addr_sector, (data.len() / SECTOR_SIZE) as u64)?;
        let contents = column_contents(&map, data, parity);
        let mut jobs = Vec::new();
        for (ci, col) in map.columns.iter().enumerate() {
            for &loc in &col.copies {
                let buf: &[u8] = &contents[ci];
                let generation = self.generation(loc.device);
                jobs.push(async move { (ci, loc, generation, self.write_at(loc, buf).await) });
            }
        }
        let mut results = join_all(jobs).await;
        // A slot that changed while this write was in flight (a replace put a new device
        // in it, or a removed device came back) may have missed the column, and the
        // resilver may already have walked past this extent: write it again, to what the
        // slot holds now, until the slot stays put for the whole write.
        for _ in 0..MAX_WRITE_REISSUES {
            let stale: Vec<usize> = results
                .iter()
                .enumerate()
                .filter(|(_, (_, loc, g, _))| self.generation(loc.device) != *g)
                .map(|(k, _)| k)
                .collect();
            if stale.is_empty() {
                break;
            }
            let again = stale.into_iter().map(|k| {
                let (ci, loc, _, _) = results[k];
                let buf: &[u8] = &contents[ci];
                async move {
                    let generation = self.generation(loc.device);
                    tracing::debug!(
                        device = loc.device,
                        addr = addr_sector,
                        "vdev: slot changed during a write; reissued"
                    );
                    (k, generation, self.write_at(loc, buf).await)
                }
            });
            for (k, g, r) in join_all(again).await {
                results[k].2 = g;
                results[k].3 = r;
            }
        }
        let results = results.into_iter().map(|(ci, loc, _, r)| (ci, loc, r));
        let mut column_ok = vec![false; map.columns.len()];
        let mut failed = Vec::new();
        for (ci, loc, r) in results {
            match r {
                // A resilvering device holds the column but is not read until done.
                Ok(()) => {
                    if self.column_readable(loc.device) {
                        column_ok[ci] = true;
                    }
                }
                Err(e) => failed.push((loc.device, e.to_string())),
            }
        }
        let lost = column_ok.iter().filter(|ok| !**ok).count();
        if lost > map.parity {
            return Err(RaidError::WriteFailed {
                addr: addr_sector,
                failed,
                tolerated: map.parity,
            });
        }
        if !failed.is_empty() {
            tracing::warn!(addr = addr_sector, ?failed, "vdev write degraded");
        }
        Ok(WriteOutcome { failed })
    }

    /// Read and verify the extent of `data_sectors` at `addr_sector`, reconstructing
    /// from redundancy if a device fails, is missing, or `verify` rejects the data.
    pub async fn read(
        &self,
        addr_sector: u64,
        data_sectors: u64,
        verify: &(dyn Fn(&[u8]) -> bool + Send + Sync),
    ) -> Result<ReadOutcome, RaidError> {
        self.read_inner(addr_sector, data_sectors, verify, false)
            .await
    }

    /// Like [`Vdev::read`], but always reads every column and copy (parity included)
    /// and reports every one that does not hold what it should: the scrub and
    /// resilver read. `repaired` is true if the data needed redundancy.
    pub async fn scrub(
        &self,
        addr_sector: u64,
        data_sectors: u64,
        verify: &(dyn Fn(&[u8]) -> bool + Send + Sync),
    ) -> Result<ReadOutcome, RaidError> {
        self.read_inner(addr_sector, data_sectors, verify, true)
            .await
    }

    async fn read_inner(
        &self,
        addr_sector: u64,
        data_sectors: u64,
        verify: &(dyn Fn(&[u8]) -> bool + Send + Sync),
        thorough: bool,
    ) -> Result<ReadOutcome, RaidError> {
        let map = self.check_extent(addr_sector, data_sectors)?;
        let len = usize::try_from(data_sectors * SECTOR).map_err(|_| RaidError::OutOfRange {
            addr: addr_sector,
            asize: data_sectors,
            capacity: self.capacity_sectors(),
        })?;
        // Fast path: the data columns, first present copy of each, straight into place.
        let mut data = vec![0u8; len];
        let fast;
        {
            let mut rest: &mut [u8] = &mut data;
            let mut jobs = Vec::new();
            for (ci, col) in map.columns.iter().enumerate().skip(map.parity) {
                let (chunk, tail) = rest.split_at_mut(col.sectors as usize * SECTOR_SIZE);
                rest = tail;
                let pick = col
                    .copies
                    .iter()
                    .position(|l| self.column_readable(l.device))
                    .unwrap_or(0);
                let loc = col.copies[pick];
                jobs.push(async move { (ci, pick, self.read_at(loc, chunk).await) });
            }
            fast = join_all(jobs).await;
        }
        let fast_ok = fast.iter().all(|(_, _, r)| r.is_ok());
        if fast_ok && !thorough && verify(&data) {
            return Ok(ReadOutcome {
                data,
                bad_columns: Vec::new(),
                repaired: false,
            });
        }
        // Slow path: every copy of every column (reusing what the fast path read).
        let mut got: Vec<Vec<Option<Got>>> = map
            .columns
            .iter()
            .map(|c| c.copies.iter().map(|_| None).collect())
            .collect();
        for (ci, pick, r) in fast {
            let col = &map.columns[ci];
            got[ci][pick] = Some(match (r, col.role) {
                (Ok(()), Role::Data { first }) => {
                    let start = first as usize * SECTOR_SIZE;
                    Got::Bytes(data[start..start + col.sectors as usize * SECTOR_SIZE].to_vec())
                }
                (Ok(()), Role::Parity(_)) | (Err(IoFail::Missing), _) => Got::Missing,
                (Err(IoFail::Error(_)), _) => Got::Failed,
            });
        }
        let mut jobs = Vec::new();
        for (ci, col) in map.columns.iter().enumerate() {
            for (k, &loc) in col.copies.iter().enumerate() {
                if got[ci][k].is_some() {
                    continue;
                }
                let sectors = col.sectors as usize;
                jobs.push(async move {
                    let mut buf = vec![0u8; sectors * SECTOR_SIZE];
                    let g = match self.read_at(loc, &mut buf).await {
                        Ok(()) => Got::Bytes(buf),
                        Err(IoFail::Missing) => Got::Missing,
                        Err(IoFail::Error(_)) => Got::Failed,
                    };
                    (ci, k, g)
                });
            }
        }
        for (ci, k, g) in join_all(jobs).await {
            got[ci][k] = Some(g);
        }
        let got: Vec<Vec<Got>> = got
            .into_iter()
            .map(|c| c.into_iter().map(|g| g.unwrap_or(Got::Missing)).collect())
            .collect();
        // In a scrub the data as read has not been checked yet.
        let try_as_read = thorough || !fast_ok;
        let found = if map.parity > 0 {
            search_parity(&map, &got, verify, try_as_read)
        } else {
            search_copies(&map, &got, verify)
        };
        let Some((data, used_redundancy)) = found else {
            let failed = got
                .iter()
                .flatten()
                .filter(|g| matches!(g, Got::Failed))
                .count();
            let missing = got
                .iter()
                .flatten()
                .filter(|g| matches!(g, Got::Missing))
                .count();
            return Err(RaidError::Unrecoverable {
                addr: addr_sector,
                sectors: data_sectors,
                reason: format!(
                    "no combination of columns verifies ({failed} column reads failed, {missing} on missing devices, redundancy {})",
                    self.redundancy()
                ),
            });
        };
        // Compare every column copy with what it should hold.
        let expected = column_contents(&map, &data, None);
        let mut bad_columns = Vec::new();
        for (ci, col) in map.columns.iter().enumerate() {
            for (k, &loc) in col.copies.iter().enumerate() {
                let bad = match &got[ci][k] {
                    Got::Bytes(b) => {
                        let wrong = b[..] != expected[ci][..];
                        if wrong {
                            self.counters[loc.device]
                                .checksum
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        wrong
                    }
                    Got::Failed => true,
                    Got::Missing => false,
                };
                if bad {
                    let off = self.byte_offset(loc);
                    tracing::warn!(
                        device = loc.device,
                        offset = off,
                        addr = addr_sector,
                        "vdev: bad column, reconstructed"
                    );
                    bad_columns.push((loc.device, off, col.sectors * SECTOR));
                }
            }
        }
        Ok(ReadOutcome {
            data,
            bad_columns,
            repaired: used_redundancy,
        })
    }

    /// Rewrite the bad columns of a read (self-healing): every bad column's correct
    /// bytes follow from the verified data (parity is recomputed, copies are the data).
    pub async fn repair(&self, addr_sector: u64, outcome: &ReadOutcome) -> Result<(), RaidError> {
        if outcome.bad_columns.is_empty() {
            return Ok(());
        }
        if !outcome.data.len().is_multiple_of(SECTOR_SIZE) {
            return Err(RaidError::Misaligned {
                len: outcome.data.len(),
            });
        }
        let map = self.check_extent(addr_sector, (outcome.data.len() / SECTOR_SIZE) as u64)?;
        let contents = column_contents(&map, &outcome.data, None);
        let mut jobs = Vec::new();
        for &(device, offset, len) in &outcome.bad_columns {
            let hit = map.columns.iter().enumerate().find_map(|(ci, col)| {
                col.copies
                    .iter()
                    .find(|l| l.device == device && self.byte_offset(**l) == offset)
                    .map(|l| (ci, *l, col))
            });
            let Some((ci, loc, col)) = hit else {
                return Err(RaidError::Repair {
                    addr: addr_sector,
                    reason: format!("device {device} offset {offset} is not part of this extent"),
                });
            };
            if len != col.sectors * SECTOR {
                return Err(RaidError::Repair {
                    addr: addr_sector,
                    reason: format!(
                        "column on device {device} is {} bytes, not {len}",
                        col.sectors * SECTOR
                    ),
                });
            }
            let buf: &[u8] = &contents[ci];
            jobs.push(async move { (loc, self.write_at(loc, buf).await) });
        }
        let failures: Vec<String> = join_all(jobs)
            .await
            .into_iter()
            .filter_map(|(loc, r)| r.err().map(|e| format!("device {}: {e}", loc.device)))
            .collect();
        if failures.is_empty() {
            tracing::info!(
                addr = addr_sector,
                columns = outcome.bad_columns.len(),
                "vdev: repaired"
            );
            Ok(())
        } else {
            Err(RaidError::Repair {
                addr: addr_sector,
                reason: failures.join("; "),
            })
        }
    }

    /// Flush every device writes go to, concurrently. Fails only if more devices are
    /// failed or unavailable than the layout tolerates (the others' failures are
    /// counted, logged, and fault the device).
    pub async fn flush(&self) -> Result<(), RaidError> {
        let jobs = (0..self.slots.len()).filter_map(|i| {
            self.writable_device(i).map(|d| async move {
                let r = d.flush().await;
                (i, d, r)
            })
        });
        let mut failed = Vec::new();
        for (i, d, r) in join_all(jobs).await {
            if let Err(e) = r {
                tracing::warn!(device = i, error = %e, "vdev flush failed");
                self.note_error(i, &d, &e, true);
                failed.push((i, e.to_string()));
            }
        }
        if self.health() == VdevHealth::Failed {
            for (i, st) in self.states().into_iter().enumerate() {
                if !st.readable() && !failed.iter().any(|(d, _)| *d == i) {
                    failed.push((i, st.name().to_lowercase()));
                }
            }
            return Err(RaidError::Flush { failed });
        }
        Ok(())
    }

    /// Write column `device`'s share of the extent whose verified data is `data` at
    /// `addr_sector` (the resilver write). Returns the bytes written (0 when the extent
    /// has no column on that device).
    pub async fn rebuild(
        &self,
        addr_sector: u64,
        data: &[u8],
        device: usize,
    ) -> Result<u64, RaidError> {
        if !data.len().is_multiple_of(SECTOR_SIZE) {
            return Err(RaidError::Misaligned { len: data.len() });
        }
        let map = self.check_extent(addr_sector, (data.len() / SECTOR_SIZE) as u64)?;
        let mine: Vec<(usize, Location)> = map
            .columns
            .iter()
            .enumerate()
            .flat_map(|(ci, c)| c.copies.iter().map(move |l| (ci, *l)))
            .filter(|(_, l)| l.device == device)
            .collect();
        if mine.is_empty() {
            return Ok(0);
        }
        let contents = column_contents(&map, data, None);
        let mut written = 0u64;
        for (ci, loc) in mine {
            self.write_primary(loc, &contents[ci])
                .await
                .map_err(|e| RaidError::Repair {
                    addr: addr_sector,
                    reason: format!("resilver write to device {device}: {e}"),
                })?;
            written += contents[ci].len() as u64;
        }
        Ok(written)
    }
}

/// Whether `dev` has a usable block size and holds a data area ending at byte `end`;
/// the error names the device and what is wrong.
fn fits(dev: &dyn BlockDevice, end: u64) -> Result<(), String> {
    let g = dev.geometry();
    let location = dev.identity().location;
    if g.block_size == 0 || !SECTOR.is_multiple_of(u64::from(g.block_size)) {
        return Err(format!(
            "{location}: block size {} does not divide 4096",
            g.block_size
        ));
    }
    if g.capacity() < end {
        return Err(format!(
            "{location}: capacity {} < data area end {end}",
            g.capacity()
        ));
    }
    Ok(())
}

/// What every column of an extent holds, given its data: data columns borrow from
/// `data`, parity columns are computed.
fn column_contents<'a>(
    map: &ExtentMap,
    data: &'a [u8],
    parity: Option<Vec<u8>>,
) -> Vec<Cow<'a, [u8]>> {
    let slice = |col: &Column| -> &'a [u8] {
        match col.role {
            Role::Data { first } => {
                let start = first as usize * SECTOR_SIZE;
                &data[start..start + col.sectors as usize * SECTOR_SIZE]
            }
            Role::Parity(_) => &[],
        }
    };
    let data_cols: Vec<&[u8]> = map.data_columns().map(slice).collect();
    let width = map.width as usize * SECTOR_SIZE;
    // At most two parity columns by construction of the layouts.
    let parity_cols = match parity {
        Some(p) if map.parity == 1 && p.len() == width => vec![p],
        _ => parity::parity_columns(&data_cols, map.parity, width),
    };
    let mut out: Vec<Cow<'a, [u8]>> = parity_cols.into_iter().map(Cow::Owned).collect();
    out.extend(data_cols.into_iter().map(Cow::Borrowed));
    out
}

/// All `k`-element subsets of `items`, in lexicographic order.
fn combinations(items: &[usize], k: usize) -> Vec<Vec<usize>> {
    if k == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for (i, &first) in items.iter().enumerate() {
        for mut rest in combinations(&items[i + 1..], k - 1) {
            rest.insert(0, first);
            out.push(rest);
        }
    }
    out
}

/// RAID-Z: try rebuilding every set of columns made of the unreadable ones plus up to
/// `parity` minus that many suspects, until the data verifies.
fn search_parity(
    map: &ExtentMap,
    got: &[Vec<Got>],
    verify: &(dyn Fn(&[u8]) -> bool + Send + Sync),
    try_as_read: bool,
) -> Option<(Vec<u8>, bool)> {
    let p = map.parity;
    let width = map.width as usize * SECTOR_SIZE;
    let erased: Vec<usize> = (0..map.columns.len())
        .filter(|&ci| !matches!(got[ci][0], Got::Bytes(_)))
        .collect();
    if erased.len() > p {
        return None;
    }
    let readable: Vec<usize> = (0..map.columns.len())
        .filter(|ci| !erased.contains(ci))
        .collect();
    let padded = |ci: usize| -> Vec<u8> {
        let mut v = match &got[ci][0] {
            Got::Bytes(b) => b.clone(),
            _ => Vec::new(),
        };
        v.resize(width, 0);
        v
    };
    for k in 0..=(p - erased.len()) {
        for suspects in combinations(&readable, k) {
            if k == 0 && erased.is_empty() && !try_as_read {
                continue; // exactly what the fast path already rejected
            }
            let rebuild: Vec<usize> = erased.iter().chain(&suspects).copied().collect();
            let mut parity_cols: Vec<Vec<u8>> = (0..p).map(padded).collect();
            let mut data_cols: Vec<Vec<u8>> = (p..map.columns.len()).map(padded).collect();
            let md: Vec<usize> = rebuild
                .iter()
                .filter(|&&c| c >= p)
                .map(|&c| c - p)
                .collect();
            let mp: Vec<usize> = rebuild.iter().filter(|&&c| c < p).copied().collect();
            if parity::reconstruct(&mut data_cols, &mut parity_cols, &md, &mp).is_err() {
                continue;
            }
            let mut data = Vec::with_capacity(width * data_cols.len());
            for (col, bytes) in map.data_columns().zip(&data_cols) {
                data.extend_from_slice(&bytes[..col.sectors as usize * SECTOR_SIZE]);
            }
            if verify(&data) {
                return Some((data, !rebuild.is_empty()));
            }
        }
    }
    None
}

/// Mirrored layouts: try every combination of the distinct copies of each column.
fn search_copies(
    map: &ExtentMap,
    got: &[Vec<Got>],
    verify: &(dyn Fn(&[u8]) -> bool + Send + Sync),
) -> Option<(Vec<u8>, bool)> {
    let mut variants: Vec<Vec<&[u8]>> = Vec::with_capacity(map.columns.len());
    for copies in got {
        let mut v: Vec<&[u8]> = Vec::new();
        for g in copies {
            if let Got::Bytes(b) = g
                && !v.iter().any(|x| *x == &b[..])
            {
                v.push(b);
            }
        }
        if v.is_empty() {
            return None;
        }
        variants.push(v);
    }
    let mut idx = vec![0usize; variants.len()];
    for _ in 0..MAX_COPY_COMBINATIONS {
        let mut data = Vec::with_capacity(variants.iter().map(|v| v[0].len()).sum());
        for (v, &i) in variants.iter().zip(&idx) {
            data.extend_from_slice(v[i]);
        }
        if verify(&data) {
            // Redundancy was used unless this is the first readable copy of every column.
            let first_copies = got
                .iter()
                .zip(&idx)
                .all(|(copies, &i)| i == 0 && matches!(copies.first(), Some(Got::Bytes(_))));
            return Some((data, !first_copies));
        }
        // Next combination (odometer).
        let mut c = 0;
        loop {
            if c == idx.len() {
                return None;
            }
            idx[c] += 1;
            if idx[c] < variants[c].len() {
                break;
            }
            idx[c] = 0;
            c += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests;
