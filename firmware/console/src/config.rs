//! Console configuration given by the `ingot` binary (or a test).

use std::path::PathBuf;
use std::time::Duration;

/// Configuration of the console.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// JSON state file holding the admin password hash and API token hashes
    /// (written atomically, mode 0600).
    pub state_file: PathBuf,
    /// A pre-set Argon2id PHC hash of the admin password (from
    /// `ingot up --admin-password-file`); overrides the state file's.
    pub admin_password_hash: Option<String>,
    /// Lifetime of a login session.
    pub session_ttl: Duration,
    /// Failed logins allowed per client IP within `login_window`.
    pub login_max_failures: u32,
    /// Window of the login rate limit.
    pub login_window: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Set the `Secure` attribute on cookies (when served over TLS).
    pub secure_cookies: bool,
    /// Period of the I/O statistics pushed on the SSE stream.
    pub stats_interval: Duration,
}

impl ConsoleConfig {
    /// Defaults with the given state file: 12 h sessions, 5 failed logins
    /// per minute, 64 KiB bodies, stats once a second.
    pub fn new(state_file: impl Into<PathBuf>) -> Self {
        Self {
            state_file: state_file.into(),
            admin_password_hash: None,
            session_ttl: Duration::from_secs(12 * 3600),
            login_max_failures: 5,
            login_window: Duration::from_secs(60),
            max_body_bytes: 64 * 1024,
            secure_cookies: false,
            stats_interval: Duration::from_secs(1),
        }
    }
}
