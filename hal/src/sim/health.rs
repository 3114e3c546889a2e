//! SMART/health counters and the Error Information log of the simulated controller.
//!
//! Counters are real: bytes moved, commands completed, errors recorded, power-on
//! time from the clock. For file-backed drives they persist in the sidecar.

use crate::nvme::spec::{self, ErrorLogEntry, SmartLog};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Instant;

/// Error log entries the controller keeps (Identify ELPE + 1).
pub const ERROR_LOG_ENTRIES: usize = 64;
/// Default composite temperature: 40 C.
pub const DEFAULT_TEMPERATURE_K: u16 = 313;
/// Temperature above which the critical-warning temperature bit is set.
pub const TEMPERATURE_THRESHOLD_K: u16 = 343;

/// Health counters as persisted in a drive's sidecar.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PersistedHealth {
    /// 512-byte units read.
    pub units_read_512: u64,
    /// 512-byte units written.
    pub units_written_512: u64,
    /// Read commands completed.
    pub host_reads: u64,
    /// Write commands completed.
    pub host_writes: u64,
    /// Seconds powered on over all sessions.
    pub power_on_seconds: u64,
    /// Times the drive was opened.
    pub power_cycles: u64,
    /// Sessions that ended without a shutdown notification.
    pub unsafe_shutdowns: u64,
    /// Media and data integrity errors.
    pub media_errors: u64,
    /// Error log entries ever recorded.
    pub error_log_entries: u64,
    /// Whether the last session ended with a clean shutdown.
    pub clean_shutdown: bool,
}

/// Live health state of one controller.
#[derive(Debug)]
pub(super) struct Health {
    units_read_512: AtomicU64,
    units_written_512: AtomicU64,
    host_reads: AtomicU64,
    host_writes: AtomicU64,
    media_errors: AtomicU64,
    error_count: AtomicU64,
    base_power_on_seconds: u64,
    power_cycles: u64,
    unsafe_shutdowns: u64,
    started: Instant,
    temperature_k: AtomicU16,
    errors: Mutex<VecDeque<ErrorLogEntry>>,
}

impl Health {
    /// Resume from persisted counters (a new power cycle).
    pub(super) fn resume(p: &PersistedHealth) -> Health {
        Health {
            units_read_512: AtomicU64::new(p.units_read_512),
            units_written_512: AtomicU64::new(p.units_written_512),
            host_reads: AtomicU64::new(p.host_reads),
            host_writes: AtomicU64::new(p.host_writes),
            media_errors: AtomicU64::new(p.media_errors),
            error_count: AtomicU64::new(p.error_log_entries),
            base_power_on_seconds: p.power_on_seconds,
            power_cycles: p.power_cycles,
            unsafe_shutdowns: p.unsafe_shutdowns,
            started: Instant::now(),
            temperature_k: AtomicU16::new(DEFAULT_TEMPERATURE_K),
            errors: Mutex::new(VecDeque::new()),
        }
    }

    /// Count a completed read of `bytes`.
    pub(super) fn read_done(&self, bytes: u64) {
        self.host_reads.fetch_add(1, Ordering::Relaxed);
        self.units_read_512
            .fetch_add(bytes / 512, Ordering::Relaxed);
    }

    /// Count a completed write of `bytes`.
    pub(super) fn write_done(&self, bytes: u64) {
        self.host_writes.fetch_add(1, Ordering::Relaxed);
        self.units_written_512
            .fetch_add(bytes / 512, Ordering::Relaxed);
    }

    /// Set the reported composite temperature.
    /// Returns true when this crosses the temperature threshold upwards.
    pub(super) fn set_temperature(&self, kelvin: u16) -> bool {
        let old = self.temperature_k.swap(kelvin, Ordering::Relaxed);
        old <= TEMPERATURE_THRESHOLD_K && kelvin > TEMPERATURE_THRESHOLD_K
    }

    /// Record a failed command in the error log (and the media error count for SCT 2).
    pub(super) fn record_error(&self, sqid: u16, cid: u16, status: u16, lba: u64, nsid: u32) {
        let count = self.error_count.fetch_add(1, Ordering::Relaxed) + 1;
        if (status >> 9) & 0b111 == u16::from(spec::sct::MEDIA) {
            self.media_errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut log = self.errors.lock();
        if log.len() == ERROR_LOG_ENTRIES {
            log.pop_back();
        }
        log.push_front(ErrorLogEntry {
            error_count: count,
            sqid,
            cid,
            status,
            param_error_location: 0xffff,
            lba,
            nsid,
        });
    }

    /// The SMART / Health log page.
    pub(super) fn smart(&self) -> SmartLog {
        let temp = self.temperature_k.load(Ordering::Relaxed);
        // Data units are thousands of 512-byte units, rounded up.
        let units = |v: &AtomicU64| u128::from(v.load(Ordering::Relaxed).div_ceil(1000));
        SmartLog {
            critical_warning: if temp > TEMPERATURE_THRESHOLD_K {
                1 << 1
            } else {
                0
            },
            temperature_kelvin: temp,
            available_spare: 100,
            available_spare_threshold: 10,
            percentage_used: 0,
            data_units_read: units(&self.units_read_512),
            data_units_written: units(&self.units_written_512),
            host_read_commands: u128::from(self.host_reads.load(Ordering::Relaxed)),
            host_write_commands: u128::from(self.host_writes.load(Ordering::Relaxed)),
            power_cycles: u128::from(self.power_cycles),
            power_on_hours: u128::from(self.power_on_seconds() / 3600),
            unsafe_shutdowns: u128::from(self.unsafe_shutdowns),
            media_errors: u128::from(self.media_errors.load(Ordering::Relaxed)),
            error_log_entries: u128::from(self.error_count.load(Ordering::Relaxed)),
        }
    }

    /// The Error Information log page: newest first, `ERROR_LOG_ENTRIES` slots.
    pub(super) fn error_log_page(&self) -> Vec<u8> {
        let mut page = vec![0u8; ERROR_LOG_ENTRIES * spec::ERROR_LOG_ENTRY_SIZE];
        for (slot, e) in page
            .chunks_exact_mut(spec::ERROR_LOG_ENTRY_SIZE)
            .zip(self.errors.lock().iter())
        {
            slot.copy_from_slice(&e.encode());
        }
        page
    }

    fn power_on_seconds(&self) -> u64 {
        self.base_power_on_seconds + self.started.elapsed().as_secs()
    }

    /// The counters to persist, with `clean_shutdown` as given.
    pub(super) fn persist(&self, clean_shutdown: bool) -> PersistedHealth {
        PersistedHealth {
            units_read_512: self.units_read_512.load(Ordering::Relaxed),
            units_written_512: self.units_written_512.load(Ordering::Relaxed),
            host_reads: self.host_reads.load(Ordering::Relaxed),
            host_writes: self.host_writes.load(Ordering::Relaxed),
            power_on_seconds: self.power_on_seconds(),
            power_cycles: self.power_cycles,
            unsafe_shutdowns: self.unsafe_shutdowns,
            media_errors: self.media_errors.load(Ordering::Relaxed),
            error_log_entries: self.error_count.load(Ordering::Relaxed),
            clean_shutdown,
        }
    }
}
