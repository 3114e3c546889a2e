//! Driver configuration: queue counts and depths, timeouts, recovery bounds and polling knobs.

use std::time::Duration;

/// How the driver sets up and runs a controller. `Default` gives sensible values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverConfig {
    /// I/O queue pairs to create (the controller may grant fewer; at least 1 is required).
    /// Each has its own owner thread. Default: one per two cores, at most 2: on a 2-core
    /// machine a second owner per drive only splits the batches and adds wake-ups.
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
    /// Busy-poll the completion queue this long while commands are outstanding before
    /// sleeping. 0 (the default): never spin, sleep on the interrupt at once. Spinning
    /// only pays with cores to spare: on a small machine it takes the core the device
    /// (or the simulator) and the file system need, and costs more than the wake-up.
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
            io_queues: default_io_queues(),
            queue_depth: 64,
            admin_queue_entries: 32,
            command_timeout: Duration::from_secs(5),
            max_retries: 3,
            max_transfer: 256 * 1024,
            spin: Duration::ZERO,
            max_sleep: Duration::from_millis(10),
            min_sleep: Duration::from_micros(50),
            use_interrupts: true,
            health_interval: Duration::from_secs(1),
        }
    }
}

/// One I/O queue pair per two cores (at least 1, at most 2).
fn default_io_queues() -> u16 {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (cores / 2).clamp(1, 2) as u16
}
