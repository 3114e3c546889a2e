//! Controller register procedures: health check, disable, enable, shutdown notification,
//! each bounded by CAP.TO.

use super::error::NvmeError;
use crate::backing::DeviceBacking;
use crate::nvme::spec::{Cap, cc, csts, reg};
use std::time::{Duration, Instant};

/// Why the registers say the device is unusable, if they do.
pub(crate) fn health(csts_v: u32) -> Option<&'static str> {
    if csts_v == u32::MAX {
        Some("registers read all-ones (surprise removal)")
    } else if csts_v & csts::CFS != 0 {
        Some("controller fatal status (CSTS.CFS)")
    } else {
        None
    }
}

/// Read CSTS and report a lost device.
pub(crate) fn check(backing: &dyn DeviceBacking) -> Result<u32, &'static str> {
    let v = backing.read32(reg::CSTS);
    match health(v) {
        Some(why) => Err(why),
        None => Ok(v),
    }
}

/// Poll CSTS until `done(csts)` or the bound passes; fails early on CFS / all-ones
/// (CFS is tolerated while disabling, where it is expected to clear).
fn wait_csts(
    backing: &dyn DeviceBacking,
    what: &'static str,
    timeout_ms: u64,
    allow_cfs: bool,
    done: impl Fn(u32) -> bool,
) -> Result<(), NvmeError> {
    let start = Instant::now();
    let bound = Duration::from_millis(timeout_ms.max(500));
    let mut pause = Duration::from_micros(10);
    loop {
        let v = backing.read32(reg::CSTS);
        if v == u32::MAX || (!allow_cfs && v & csts::CFS != 0) {
            return Err(NvmeError::DeviceLost {
                device: backing.id().to_string(),
                reason: format!(
                    "{} while waiting for the controller to become {what}",
                    health(v).unwrap_or("bad status")
                ),
            });
        }
        if done(v) {
            return Ok(());
        }
        if start.elapsed() > bound {
            return Err(NvmeError::NotReady {
                device: backing.id().to_string(),
                what,
                timeout_ms: bound.as_millis() as u64,
                csts: v,
            });
        }
        // Bounded register polling during bring-up; not on the I/O path.
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// CC.EN=0 and wait for CSTS.RDY=0 within CAP.TO.
pub(crate) fn disable(backing: &dyn DeviceBacking, cap: Cap) -> Result<(), NvmeError> {
    let cc_v = backing.read32(reg::CC);
    if cc_v == u32::MAX {
        return Err(NvmeError::DeviceLost {
            device: backing.id().to_string(),
            reason: "registers read all-ones (surprise removal)".into(),
        });
    }
    if cc_v & cc::EN != 0 {
        let csts_v = backing.read32(reg::CSTS);
        if csts_v != u32::MAX && csts_v & (csts::RDY | csts::CFS) == 0 {
            // Enabling is in progress: the spec wants RDY=1 before EN is cleared. A
            // controller that never gets there is disabled anyway after CAP.TO.
            let _ = wait_csts(backing, "ready", cap.timeout_ms(), true, |v| {
                v & csts::RDY != 0
            });
        }
        backing.write32(reg::CC, cc_v & !cc::EN);
    }
    wait_csts(backing, "disabled", cap.timeout_ms(), true, |v| {
        v & csts::RDY == 0
    })
}

/// Write the standard CC with EN=1 (4 KiB pages, 64/16 B entries) and wait for CSTS.RDY=1.
pub(crate) fn enable(backing: &dyn DeviceBacking, cap: Cap) -> Result<(), NvmeError> {
    backing.write32(reg::CC, cc::standard());
    wait_csts(backing, "ready", cap.timeout_ms(), false, |v| {
        v & csts::RDY != 0
    })
}

/// Normal shutdown notification and wait for CSTS.SHST = complete (bounded by CAP.TO).
pub(crate) fn shutdown(backing: &dyn DeviceBacking, cap: Cap) -> Result<(), NvmeError> {
    let cc_v = backing.read32(reg::CC);
    backing.write32(reg::CC, (cc_v & !cc::SHN_MASK) | cc::SHN_NORMAL);
    wait_csts(backing, "shut down", cap.timeout_ms(), false, |v| {
        v & csts::SHST_MASK == csts::SHST_COMPLETE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_bits() {
        assert_eq!(health(csts::RDY), None);
        assert!(health(u32::MAX).is_some_and(|s| s.contains("all-ones")));
        assert!(health(csts::RDY | csts::CFS).is_some_and(|s| s.contains("CFS")));
    }
}
