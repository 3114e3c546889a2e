//! RAID: GF(2^8) arithmetic, P/Q parity and reconstruction, layouts, and the vdev
//! that does I/O over a set of block devices.
//!
//! - [`gf256`]: the field (poly 0x11d, generator 2).
//! - [`parity`]: P and Q generation; rebuilding up to two missing columns.
//! - [`layout`]: [`Layout`] and the mapping of pool addresses to device sectors.
//! - [`vdev`]: [`Vdev`], full-stripe writes, verified reads with combinatorial
//!   reconstruction, repair, flush, per-device error counters.

pub mod gf256;
pub mod layout;
pub mod parity;
pub mod vdev;

pub use layout::{Layout, Location};
pub use vdev::{
    DeviceErrorCounts, DeviceEvent, DeviceState, RaidError, ReadOutcome, Vdev, VdevHealth,
    WriteOutcome,
};
