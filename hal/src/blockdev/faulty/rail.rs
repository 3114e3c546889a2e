//! The power rail: one switch shared by every device of a simulated machine, so a power cut
//! hits all of them at the same instant.
//!
//! Devices ask the rail to admit each state-changing operation (write, FUA write, flush,
//! write zeroes, deallocate). The rail numbers them in one sequence across all its devices;
//! [`PowerRail::arm_after`] lets the next `n` through and cuts the power on the one after, which
//! is then in flight when the power drops. Reads are not counted, but they fail once the power
//! is off, as does everything else.

use parking_lot::Mutex;
use std::sync::Arc;

/// What the rail says about an operation that wants to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Power is on: run it.
    Run,
    /// This operation is the one the rail was armed to cut on: power is now off, and the
    /// operation is in flight (a write may partially persist).
    Tripped,
    /// Power is off.
    Off,
}

#[derive(Debug, Default)]
struct RailState {
    cut: bool,
    /// Operations still let through before the cut, when armed.
    armed: Option<u64>,
    /// State-changing operations admitted since the rail was made.
    ops: u64,
    /// Power cuts so far.
    cuts: u64,
}

/// A power supply shared by the [`FaultyBlockDevice`](super::FaultyBlockDevice)s of a pool.
///
/// After a cut every operation of every device on the rail fails with
/// [`BlockError::DeviceLost`](crate::blockdev::BlockError::DeviceLost) ("power cut"). To come
/// back, call [`FaultyBlockDevice::recover`](super::FaultyBlockDevice::recover) on each device
/// (which decides what its volatile cache left on the media) and then [`PowerRail::restore`];
/// [`power_cycle`](super::power_cycle) does both.
#[derive(Debug, Default)]
pub struct PowerRail {
    state: Mutex<RailState>,
}

impl PowerRail {
    /// A rail with the power on and nothing armed.
    pub fn new() -> Arc<PowerRail> {
        Arc::new(PowerRail::default())
    }

    /// Let the next `n` state-changing operations (across all devices on the rail) complete, and
    /// cut the power when the one after them starts; that operation fails with `DeviceLost`, and
    /// if it is a write its data may or may not persist. `arm_after(0)` cuts on the next one.
    /// Replaces any earlier arming.
    pub fn arm_after(&self, n: u64) {
        self.state.lock().armed = Some(n);
    }

    /// Cancel an [`arm_after`](Self::arm_after) that has not fired.
    pub fn disarm(&self) {
        self.state.lock().armed = None;
    }

    /// Cut the power now. Does nothing if it is already off.
    pub fn cut_now(&self) {
        let mut s = self.state.lock();
        if !s.cut {
            s.cut = true;
            s.armed = None;
            s.cuts += 1;
            tracing::info!(ops = s.ops, cut = s.cuts, "power rail cut");
        }
    }

    /// Whether the power is off.
    pub fn is_cut(&self) -> bool {
        self.state.lock().cut
    }

    /// Turn the power back on. Devices whose caches were not settled by
    /// [`FaultyBlockDevice::recover`](super::FaultyBlockDevice::recover) since the cut keep
    /// failing with `DeviceLost` until they are.
    pub fn restore(&self) {
        let mut s = self.state.lock();
        if s.cut {
            s.cut = false;
            tracing::info!(cut = s.cuts, "power rail restored");
        }
    }

    /// State-changing operations admitted so far (all devices), including one that tripped.
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// Number of power cuts so far.
    pub fn cuts(&self) -> u64 {
        self.state.lock().cuts
    }

    /// Admit a state-changing operation.
    pub(super) fn admit(&self) -> Admit {
        let mut s = self.state.lock();
        if s.cut {
            return Admit::Off;
        }
        s.ops += 1;
        match s.armed {
            Some(0) => {
                s.cut = true;
                s.armed = None;
                s.cuts += 1;
                tracing::info!(op = s.ops, cut = s.cuts, "power rail cut by armed trigger");
                Admit::Tripped
            }
            Some(n) => {
                s.armed = Some(n - 1);
                Admit::Run
            }
            None => Admit::Run,
        }
    }

    /// Power state and cut count, read together.
    pub(super) fn status(&self) -> (bool, u64) {
        let s = self.state.lock();
        (s.cut, s.cuts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armed_rail_trips_on_the_next_op_after_n() {
        let r = PowerRail::new();
        r.arm_after(2);
        assert_eq!(r.admit(), Admit::Run);
        assert_eq!(r.admit(), Admit::Run);
        assert!(!r.is_cut());
        assert_eq!(r.admit(), Admit::Tripped);
        assert!(r.is_cut());
        assert_eq!(r.admit(), Admit::Off);
        assert_eq!((r.ops(), r.cuts()), (3, 1));
        r.restore();
        assert_eq!(r.admit(), Admit::Run);
        r.cut_now();
        r.cut_now();
        assert_eq!(r.cuts(), 2);
    }

    #[test]
    fn disarm_cancels() {
        let r = PowerRail::new();
        r.arm_after(0);
        r.disarm();
        assert_eq!(r.admit(), Admit::Run);
        assert!(!r.is_cut());
    }
}
