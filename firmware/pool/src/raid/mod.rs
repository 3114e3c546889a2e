//! RAID: GF(2^8) arithmetic, P/Q parity and reconstruction, layouts, and the vdev
//! that does I/O over a set of block devices.
