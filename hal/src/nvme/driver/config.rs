//! Driver configuration: queue counts and depths, timeouts, recovery bounds and polling knobs.

use std::time::Duration;

/// How the driver sets up and runs a controller. `Default` gives sensible values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverConfig {
    /// I/O queue pairs to create (the controller may grant fewer; at least 1 is required).
    pub io_queues: u16,
    /// Commands in flight per I/O queue pair (capped at CAP.MQES - 1).
    pub queue_depth: u16,
    /// Admin queue entries (2..=4096).
    pub admin_queue_entries: u16,
    /// Time a command may be outstanding before recovery starts (abort, then reset).
    pub command_timeout: Duration,
    /// Reissues of one command after a timeout or retryable error before it fails.
    pub max_retries: u32,
    /// Largest transfer per command in bytes, before the controller's MDTS limit (rounded to pages).
    pub max_transfer: u32,
    /// Busy-poll the completion queue this long while commands are outstanding before sleeping.
    pub spin: Duration,
    /// Longest sleep while commands are outstanding (bounds a lost interrupt; also the
    /// ceiling of the polling backoff when the device offers no MSI-X vectors).
    pub max_sleep: Duration,
    /// First sleep of the polling backoff when the device offers no MSI-X vectors.
    pub min_sleep: Duration,
    /// Use MSI-X interrupts when the device offers them.
    pub use_interrupts: bool,
    /// How often an otherwise idle controller's CSTS is read to notice fatal status or
    /// surprise removal before the next command does.
    pub health_interval: Duration,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            io_queues: 2,
            queue_depth: 64,
            admin_queue_entries: 32,
            command_timeout: Duration::from_secs(5),
            max_retries: 3,
            max_transfer: 256 * 1024,
            spin: Duration::from_micros(20),
            max_sleep: Duration::from_millis(10),
            min_sleep: Duration::from_micros(50),
            use_interrupts: true,
            health_interval: Duration::from_secs(1),
        }
    }
}
