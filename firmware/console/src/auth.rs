//! Authentication state: the admin password (Argon2id PHC hash), API tokens
//! (SHA-256 hashes only), login sessions and the per-IP login rate limit.
//!
//! The persistent part lives in a small JSON state file written atomically
//! (temporary file with mode 0600, fsync, rename, fsync of the directory).
//! Sessions and rate-limit counters are in memory only.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::config::ConsoleConfig;

/// Prefix of every API token, so leaked tokens are easy to recognise.
pub const TOKEN_PREFIX: &str = "ingot_";
/// Shortest accepted admin password.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest accepted admin password (bounds the hashing work).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Errors of the auth store.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The state file cannot be read or parsed.
    #[error("console state file {path}: {reason}")]
    StateFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The configured admin password hash is not a valid PHC string.
    #[error("admin password hash is not a valid Argon2 PHC string: {0}")]
    BadHash(String),
    /// Hashing failed.
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// No randomness available.
    #[error("system random number generator failed: {0}")]
    Random(String),
}

/// A stored API token (hash only).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredToken {
    id: String,
    name: String,
    sha256: String,
    created_ms: u64,
    #[serde(default)]
    last_used_ms: Option<u64>,
}

/// Public view of an API token (never the secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// Token id (for deletion).
    pub id: String,
    /// Name given by the admin.
    pub name: String,
    /// Creation time, Unix milliseconds.
    pub created_ms: u64,
    /// Last use, Unix milliseconds (since this start of the console).
    pub last_used_ms: Option<u64>,
}

/// The persistent state file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StateFile {
    admin_password_hash: Option<String>,
    #[serde(default)]
    tokens: Vec<StoredToken>,
}

/// A login session.
#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    expires: Instant,
}

/// A new login session, as handed to the client.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Session id (cookie value).
    pub id: String,
    /// CSRF token the client must echo in `X-CSRF-Token`.
    pub csrf: String,
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A browser session (cookie), with its id.
    Session(String),
    /// An API token, with its id.
    Token(String),
}

/// Outcome of a login attempt.
#[derive(Debug)]
pub enum LoginOutcome {
    /// Password accepted.
    Ok(NewSession),
    /// Wrong password.
    WrongPassword,
}

#[derive(Debug)]
struct Inner {
    state: StateFile,
    sessions: HashMap<String, Session>,
    failures: HashMap<IpAddr, VecDeque<Instant>>,
}

/// The auth store shared by all requests.
#[derive(Debug)]
pub struct AuthStore {
    cfg: ConsoleConfig,
    inner: Mutex<Inner>,
}

/// Current Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `n` random bytes from the OS, hex-encoded.
pub fn random_hex(n: usize) -> Result<String, AuthError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(hex::encode(buf))
}

/// SHA-256 of a token, hex-encoded.
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Constant-time equality of two strings.
pub fn ct_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Hashes a password with Argon2id (default parameters, random salt) into a PHC string.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hashing(e.to_string()))
}

/// Verifies a password against a PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// Checks a new password's length; returns a human message when rejected.
pub fn check_new_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(format!(
            "password must have at least {MIN_PASSWORD_LEN} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!(
            "password must have at most {MAX_PASSWORD_LEN} bytes"
        ));
    }
    Ok(())
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

impl AuthStore {
    /// Loads the state file (a missing file means a fresh console) and
    /// applies a pre-set admin password hash from the config.
    pub fn open(cfg: ConsoleConfig) -> Result<Self, AuthError> {
        let path = cfg.state_file.clone();
        let mut state = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<StateFile>(&bytes).map_err(|e| AuthError::StateFile {
                    path: path.clone(),
                    reason: format!("not valid console state JSON: {e}"),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile::default(),
            Err(e) => {
                return Err(AuthError::StateFile {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        let mut dirty = false;
        if let Some(h) = &cfg.admin_password_hash {
            PasswordHash::new(h).map_err(|e| AuthError::BadHash(e.to_string()))?;
            if state.admin_password_hash.as_deref() != Some(h.as_str()) {
                state.admin_password_hash = Some(h.clone());
                dirty = true;
            }
        }
        if let Some(h) = &state.admin_password_hash {
            PasswordHash::new(h).map_err(|e| AuthError::StateFile {
                path: path.clone(),
                reason: format!("admin_password_hash is not a PHC string: {e}"),
            })?;
        }
        let store = Self {
            cfg,
            inner: Mutex::new(Inner {
                state,
                sessions: HashMap::new(),
                failures: HashMap::new(),
            }),
        };
        if dirty {
            let inner = store.lock();
            store.save(&inner).map_err(|e| AuthError::StateFile {
                path: store.cfg.state_file.clone(),
                reason: e.to_string(),
            })?;
        }
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, inner: &Inner) -> std::io::Result<()> {
        let data = serde_json::to_vec_pretty(&inner.state).map_err(std::io::Error::other)?;
        write_atomic(&self.cfg.state_file, &data)
    }

    /// The configuration.
    pub fn config(&self) -> &ConsoleConfig {
        &self.cfg
    }

    /// Whether an admin password is set.
    pub fn password_set(&self) -> bool {
        self.lock().state.admin_password_hash.is_some()
    }

    fn new_session(&self, inner: &mut Inner) -> Result<NewSession, AuthError> {
        let now = Instant::now();
        inner.sessions.retain(|_, s| s.expires > now);
        let s = NewSession {
            id: random_hex(32)?,
            csrf: random_hex(32)?,
        };
        inner.sessions.insert(
            s.id.clone(),
            Session {
                csrf: s.csrf.clone(),
                expires: now + self.cfg.session_ttl,
            },
        );
        Ok(s)
    }

    /// Sets the first admin password; `Ok(None)` if one is already set.
    /// `phc` must come from [`hash_password`].
    pub fn set_initial_password(&self, phc: String) -> Result<Option<NewSession>, String> {
        let mut inner = self.lock();
        if inner.state.admin_password_hash.is_some() {
            return Ok(None);
        }
        inner.state.admin_password_hash = Some(phc);
        if let Err(e) = self.save(&inner) {
            inner.state.admin_password_hash = None;
            return Err(format!(
                "cannot write state file {}: {e}",
                self.cfg.state_file.display()
            ));
        }
        tracing::info!("admin password set");
        self.new_session(&mut inner)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// Drops failures of `ip` older than the window; returns the seconds
    /// until it may try again if it is at the limit.
    fn limit_for(&self, inner: &mut Inner, ip: IpAddr, now: Instant) -> Option<u64> {
        let window = self.cfg.login_window;
        let q = inner.failures.entry(ip).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        if q.len() >= self.cfg.login_max_failures as usize {
            let oldest = q.front().copied().unwrap_or(now);
            let left = window.saturating_sub(now.duration_since(oldest));
            Some(left.as_secs_f64().ceil().max(1.0) as u64)
        } else {
            None
        }
    }

    /// Seconds until `ip` may try again, if it is rate-limited now.
    pub fn rate_limited(&self, ip: IpAddr) -> Option<u64> {
        let mut inner = self.lock();
        self.limit_for(&mut inner, ip, Instant::now())
    }

    /// Starts a password check for `ip`: counts it as a failure up front (so
    /// concurrent attempts cannot exceed the limit) unless `ip` is already
    /// limited, in which case the seconds to wait are returned.
    pub fn begin_login(&self, ip: IpAddr) -> Result<(), u64> {
        let mut inner = self.lock();
        let now = Instant::now();
        if let Some(secs) = self.limit_for(&mut inner, ip, now) {
            return Err(secs);
        }
        inner.failures.entry(ip).or_default().push_back(now);
        Ok(())
    }

    /// The stored admin hash, if any.
    pub fn admin_hash(&self) -> Option<String> {
        self.lock().state.admin_password_hash.clone()
    }

    /// Finishes a check begun with [`AuthStore::begin_login`] (which already
    /// counted it as a failure): on success clears the failures of `ip` and
    /// opens a session.
    pub fn finish_login(&self, ip: IpAddr, ok: bool) -> Result<LoginOutcome, AuthError> {
        let mut inner = self.lock();
        if ok {
            inner.failures.remove(&ip);
            Ok(LoginOutcome::Ok(self.new_session(&mut inner)?))
        } else {
            tracing::warn!(client = %ip, "failed console login");
            Ok(LoginOutcome::WrongPassword)
        }
    }

    /// Replaces the admin password and ends every session but `keep`.
    pub fn change_password(&self, phc: String, keep: Option<&str>) -> Result<(), String> {
        let mut inner = self.lock();
        let old = inner.state.admin_password_hash.replace(phc);
        if let Err(e) = self.save(&inner) {
            inner.state.admin_password_hash = old;
            return Err(format!(
                "cannot write state file {}: {e}",
                self.cfg.state_file.display()
            ));
        }
        inner.sessions.retain(|id, _| Some(id.as_str()) == keep);
        tracing::info!("admin password changed");
        Ok(())
    }

    /// Ends a session.
    pub fn logout(&self, session: &str) {
        self.lock().sessions.remove(session);
    }

    /// Looks up a live session; returns its CSRF token.
    pub fn session_csrf(&self, id: &str) -> Option<String> {
        let mut inner = self.lock();
        let now = Instant::now();
        match inner.sessions.get(id) {
            Some(s) if s.expires > now => Some(s.csrf.clone()),
            Some(_) => {
                inner.sessions.remove(id);
                None
            }
            None => None,
        }
    }

    /// Checks a bearer token; returns its id.
    pub fn check_token(&self, token: &str) -> Option<String> {
        if !token.starts_with(TOKEN_PREFIX) {
            return None;
        }
        let h = token_hash(token);
        let mut inner = self.lock();
        let t = inner
            .state
            .tokens
            .iter_mut()
            .find(|t| ct_eq(&t.sha256, &h))?;
        t.last_used_ms = Some(now_ms());
        Some(t.id.clone())
    }

    /// Lists tokens (without secrets).
    pub fn tokens(&self) -> Vec<TokenInfo> {
        self.lock()
            .state
            .tokens
            .iter()
            .map(|t| TokenInfo {
                id: t.id.clone(),
                name: t.name.clone(),
                created_ms: t.created_ms,
                last_used_ms: t.last_used_ms,
            })
            .collect()
    }

    /// Creates a token; returns its info and the secret (shown once).
    pub fn create_token(&self, name: &str) -> Result<(TokenInfo, String), String> {
        let secret = format!(
            "{TOKEN_PREFIX}{}",
            random_hex(32).map_err(|e| e.to_string())?
        );
        let id = random_hex(8).map_err(|e| e.to_string())?;
        let stored = StoredToken {
            id: id.clone(),
            name: name.to_string(),
            sha256: token_hash(&secret),
            created_ms: now_ms(),
            last_used_ms: None,
        };
        let info = TokenInfo {
            id,
            name: stored.name.clone(),
            created_ms: stored.created_ms,
            last_used_ms: None,
        };
        let mut inner = self.lock();
        inner.state.tokens.push(stored);
        if let Err(e) = self.save(&inner) {
            inner.state.tokens.pop();
            return Err(format!(
                "cannot write state file {}: {e}",
                self.cfg.state_file.display()
            ));
        }
        tracing::info!(token = %info.id, name = %info.name, "API token created");
        Ok((info, secret))
    }

    /// Deletes a token; `Ok(false)` if no such token.
    pub fn delete_token(&self, id: &str) -> Result<bool, String> {
        let mut inner = self.lock();
        let Some(pos) = inner.state.tokens.iter().position(|t| t.id == id) else {
            return Ok(false);
        };
        let removed = inner.state.tokens.remove(pos);
        if let Err(e) = self.save(&inner) {
            inner.state.tokens.insert(pos, removed);
            return Err(format!(
                "cannot write state file {}: {e}",
                self.cfg.state_file.display()
            ));
        }
        tracing::info!(token = %id, "API token deleted");
        Ok(true)
    }

    /// Session lifetime.
    pub fn session_ttl(&self) -> Duration {
        self.cfg.session_ttl
    }
}
